/* How long the sampled allocations lived, by stack (lifetimes.c): what each thread counts
 * at its sampled frees, in its block (thread_block.c), by lifetime bin and temporary. */
#ifndef MEMPROF_LIFETIMES_H
#define MEMPROF_LIFETIMES_H

#include "base/common.h"

/* Lifetimes below 1 us, 10 us, ... 1 s, then 1 s and longer: the parser's bins. */
#define MEMPROF_LIFETIME_BINS 8

/* One stack's sampled frees in the window: raw samples, as the counters are. */
struct memprof_stack_lifetimes {
    uint32_t freed[MEMPROF_LIFETIME_BINS];   /* by how long they lived */
    uint32_t temporary;                      /* freed by their thread with nothing
                                                allocated on it between */
    uint32_t unused;
    uint64_t temporary_bytes;
};

/* A thread's: a word per stack id, and the records of the stacks that outgrew theirs,
 * taken in order.  Only the owner writes; a reader loads the same words. */
struct memprof_lifetimes_area {
    _Atomic uint64_t *words;
    struct memprof_stack_lifetimes *records;
    uint32_t records_used;
    uint32_t end;   /* above the stack ids with frees */
};

/* The bytes of an area for max_stacks, each of its two parts on pages of its own;
 * an area over such memory (reserved: touched as stacks are freed). */
size_t memprof_lifetimes_area_bytes(uint32_t max_stacks) HIDDEN;
struct memprof_lifetimes_area memprof_lifetimes_area_at(void *memory, uint32_t max_stacks) HIDDEN;
void memprof_lifetimes_clear(struct memprof_lifetimes_area *a) HIDDEN;
void memprof_lifetimes_add(struct memprof_lifetimes_area *a, uint32_t stack, uint64_t lived_ns,
                           bool temporary, uint64_t size) HIDDEN;
/* Adds stack id's, as the area holds them now, into *sum. */
void memprof_lifetimes_read(const struct memprof_lifetimes_area *a, uint32_t stack,
                            struct memprof_stack_lifetimes *sum) HIDDEN;
bool memprof_lifetimes_any(const struct memprof_stack_lifetimes *l) HIDDEN;

#endif
