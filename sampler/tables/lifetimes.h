/* How long the sampled allocations lived, by stack (lifetimes.c): at each sampled free,
 * its lifetime's bin and whether it was temporary. */
#ifndef MEMPROF_LIFETIMES_H
#define MEMPROF_LIFETIMES_H

#include "base/common.h"

/* Lifetimes below 1 us, 10 us, ... 1 s, then 1 s and longer: the parser's BIN_NAMES. */
#define MEMPROF_LIFETIME_BINS 8

/* One stack's sampled frees in the window: raw samples, as the counters are. */
struct memprof_stack_lifetimes {
    uint32_t freed[MEMPROF_LIFETIME_BINS];   /* by how long they lived */
    uint32_t temporary;                      /* freed by their thread with nothing
                                                allocated on it between */
    uint32_t unused;
    uint64_t temporary_bytes;
};

int memprof_lifetimes_init(uint32_t max_stacks) HIDDEN;
/* Empty again, for a new window (stack ids in use are below `stacks`). */
void memprof_lifetimes_reset(uint32_t stacks) HIDDEN;
void memprof_lifetimes_note(uint32_t stack, uint64_t lived_ns, bool temporary,
                            uint64_t size) HIDDEN;
/* Stack id's, and whether it has any. */
bool memprof_lifetimes_of(uint32_t stack, struct memprof_stack_lifetimes *out) HIDDEN;

#endif
