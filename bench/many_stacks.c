/* The target of `make bench`'s rows with many distinct stacks: N blocks, block i
 * allocated at the end of LEVELS calls of descend, each made from one of two call sites
 * by a bit of i, under a fixed chain of PREFIX calls: each block has a stack of its own,
 * LEVELS + PREFIX + 5 frames deep with main and libc's (29 with the defaults below;
 * -DLEVELS=21 -DPREFIX=34 gives 2^21 stacks of 60 frames).  Built with -O0, so that the
 * two call sites stay two.
 *
 * usage: many_stacks N        blocks of 64 B, all kept; then it prints "ready" and
 *                             sleeps until killed (the row for mem_profiler top)
 *        many_stacks N BYTES  each block of BYTES bytes freed as soon as it is made;
 *                             then it exits
 * (N <= 2^LEVELS) */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef LEVELS
#define LEVELS 17
#endif
#ifndef PREFIX
#define PREFIX 7
#endif

static size_t block_size = 64;

static void *descend(unsigned i, int level)
{
    if (level == LEVELS)
        return malloc(block_size);
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
    if (n > 1u << LEVELS)
        n = 1u << LEVELS;
    if (argc > 2) {
        block_size = (size_t)atol(argv[2]);
        /* Each free leaves the heap's top as it was: no sbrk and trim per block. */
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
        for (unsigned i = 0; i < n; i++)
            free(prefix(i, 1));
        return 0;
    }
    void **kept = malloc(sizeof *kept * n);
    for (unsigned i = 0; i < n; i++)
        kept[i] = prefix(i, 1);
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
