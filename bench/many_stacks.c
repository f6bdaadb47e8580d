/* The target of `make bench`'s row for mem_profiler top: N blocks of 64 B, block i
 * allocated at the end of LEVELS calls of descend, each made from one of two call sites
 * by a bit of i, under a fixed chain of PREFIX calls: each block has a stack of its own,
 * 29 frames deep with main and libc's.  All are kept; then it prints "ready" and sleeps
 * until killed.  Built with -O0, so that the two call sites stay two.
 * usage: many_stacks N  (N <= 2^LEVELS) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LEVELS 17
#define PREFIX 7

static void *descend(unsigned i, int level)
{
    if (level == LEVELS)
        return malloc(64);
    void *p;
    if ((i >> level) & 1)
        p = descend(i, level + 1);
    else
        p = descend(i, level + 1);
    return p;
}

static void *prefix(unsigned i, int depth)
{
    void *p = depth == PREFIX ? descend(i, 0) : prefix(i, depth + 1);
    return p;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
    void **kept = malloc(sizeof *kept * n);
    for (unsigned i = 0; i < n && i < 1u << LEVELS; i++)
        kept[i] = prefix(i, 1);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
