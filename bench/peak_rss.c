/* `make bench`'s runner: runs CMD as its child, waits for it, writes the child's peak
 * resident set size in KiB (ru_maxrss of wait4: the largest of it and of the processes
 * it waited for) to OUT and exits as the child did.
 *
 * The bench's Python process cannot take that figure from a child of its own: Linux
 * carries the peak of the memory a process leaves at exec into its ru_maxrss, and a
 * child of Python's leaves a copy of Python's memory (fork) or Python's memory itself
 * (vfork), so its peak would never be below the bench's.  This program is small, and so
 * is the child it forks.  The child is killed if this program dies.
 *
 * What the child is to preload comes in PEAK_RSS_PRELOAD, which becomes its LD_PRELOAD:
 * this program itself runs without the sampler (or another allocator), which would
 * write files of its own and take its share of the machine.
 *
 * usage: [PEAK_RSS_PRELOAD=LIBS] peak_rss OUT CMD ARGS... */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: peak_rss OUT CMD ARGS...\n");
        return 2;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("peak_rss: fork");
        return 2;
    }
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        const char *preload = getenv("PEAK_RSS_PRELOAD");
        if (preload != NULL && (setenv("LD_PRELOAD", preload, 1) != 0 ||
                                unsetenv("PEAK_RSS_PRELOAD") != 0))
            _exit(127);
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("peak_rss: wait4");
            return 2;
        }
    }
    FILE *out = fopen(argv[1], "w");
    if (out == NULL || fprintf(out, "%ld\n", ru.ru_maxrss) < 0 || fclose(out) != 0) {
        perror(argv[1]);
        return 2;
    }
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
