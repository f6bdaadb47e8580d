/* The live samples of the host heap that nothing points to at the program's end
 * (reachable.c): leaks as LeakSanitizer and valgrind mean them. */
#ifndef MEMPROF_REACHABLE_H
#define MEMPROF_REACHABLE_H

#include "base/common.h"

/* Per stack id, the samples no pointer reaches and their bytes. */
struct memprof_unreachable {
    uint64_t *samples, *bytes;   /* by stack id, below nstacks */
    uint32_t nstacks;
};
/* Scans the process's memory for pointers to the live samples of the host heap, from
 * its objects' writable data and thread-local storage and the calling thread's stack
 * on through the blocks they reach: exact only where every allocation was sampled (rate
 * 1), as every block a pointer may pass through is then known.  false: no memory for it. */
bool memprof_unreachable_scan(struct memprof_unreachable *u, uint32_t nstacks) HIDDEN;
void memprof_unreachable_release(struct memprof_unreachable *u) HIDDEN;

#endif
