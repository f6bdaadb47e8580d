/* The pipe of MEMPROF_REPORT_FD (`mem_profiler run`'s), told of each dump that could
 * not be written and why, one line "<pid> <why>" each; without it, stderr. */
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/failure_pipe.h"
#include "base/sysutil.h"

static int report_fd = -1;   /* while it is that pipe */
static ino_t report_ino;

/* Checked again before each report, so that a program that closed the pipe and opened
 * a file under its number never gets our line written into that file. */
void memprof_failure_pipe_open(int fd)
{
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        report_fd = fd;
        report_ino = st.st_ino;
    }
}

void memprof_report_failure(const char *message)
{
    struct stat st;
    if (report_fd < 0 || fstat(report_fd, &st) != 0 || !S_ISFIFO(st.st_mode) ||
        st.st_ino != report_ino) {
        memprof_log("%s", message);
        return;
    }
    char line[PIPE_BUF];   /* written at once: lines of several processes never mix */
    int n = snprintf(line, sizeof line, "%d %s\n", (int)getpid(), message);
    if (n >= (int)sizeof line) {
        n = (int)sizeof line;
        line[n - 1] = '\n';
    }
    ssize_t unused = write(report_fd, line, (size_t)n);
    (void)unused;
}
