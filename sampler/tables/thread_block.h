/* Per-thread blocks (thread_block.c): each thread's counters per stack, the window's
 * counts as a dump reads them, and its buffer of log events. */
#ifndef MEMPROF_THREAD_BLOCK_H
#define MEMPROF_THREAD_BLOCK_H

#include "base/common.h"
#include "tables/estimate.h"

int memprof_stack_counts_init(uint32_t max_stacks) HIDDEN;
/* One sample of the stack in the window, of `weight` (its heap is sampled at `rate`);
 * false when the thread has no block (no memory). */
bool memprof_stack_count(uint32_t stack, uint64_t size, uint64_t rate, double weight,
                         uint32_t window) HIDDEN;
/* One sampled free of the stack in the window, after `lived_ns`; temporary: its
 * thread's latest sample, with nothing allocated on it between. */
void memprof_stack_freed(uint32_t stack, uint64_t lived_ns, bool temporary, uint64_t size,
                         uint32_t window) HIDDEN;
/* A window's counts per stack id as a dump reads them.  Once the window has closed
 * (`closed`), from the one block that holds its counts in place where only one does (as
 * in a program that samples on one thread), so that the last dump does not double the
 * counters' memory; else summed once into a mapping of their own, at one moment, as a
 * dump of an open window reads its live samples. */
struct thread_block;
struct memprof_stack_lifetimes;
#define MEMPROF_LIFETIME_HOLDERS 16
struct memprof_window_counts {
    const struct thread_block *only;      /* the one block, or NULL */
    struct memprof_stack_totals *sum;     /* the blocks' sum by stack id, or NULL */
    /* The sampled frees: read from the blocks of the window as each stack is asked for,
     * or, past MEMPROF_LIFETIME_HOLDERS blocks, summed by stack id once. */
    const struct thread_block *holders[MEMPROF_LIFETIME_HOLDERS];
    uint32_t nholders;
    struct memprof_stack_lifetimes *lifetimes_sum;
    size_t sum_bytes, lifetimes_bytes;
    struct memprof_rates rates;           /* the window's: the estimates of one-size counts */
};
bool memprof_window_counts_read(struct memprof_window_counts *wc, uint32_t nstacks,
                                uint32_t window, bool closed,
                                struct memprof_rates rates) HIDDEN;   /* false: no memory */
struct memprof_stack_totals memprof_window_counts_of(const struct memprof_window_counts *wc,
                                                     uint32_t stack) HIDDEN;
/* The stack's sampled frees by lifetime; false: none. */
bool memprof_window_lifetimes_of(const struct memprof_window_counts *wc, uint32_t stack,
                                 struct memprof_stack_lifetimes *out) HIDDEN;
void memprof_window_counts_release(struct memprof_window_counts *wc) HIDDEN;
void memprof_stack_counts_after_fork(void) HIDDEN;
/* Each thread's buffer of log events (event_log.c fills and drains them). */
struct memprof_log_chunk;
struct memprof_log_chunk **memprof_log_chunk_slot(void) HIDDEN;   /* NULL: no block */
void memprof_log_chunks_each(void (*fn)(struct memprof_log_chunk *)) HIDDEN;

#endif
