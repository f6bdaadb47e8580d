/* Per-thread blocks (thread_block.c): each thread's counters per stack, the window's
 * counts once summed, and its buffer of log events. */
#ifndef MEMPROF_THREAD_BLOCK_H
#define MEMPROF_THREAD_BLOCK_H

#include "common.h"
#include "estimate.h"

int memprof_stack_counts_init(uint32_t max_stacks) HIDDEN;
bool memprof_stack_count(uint32_t stack, uint64_t size, double weight, uint32_t window) HIDDEN;
/* Adds the window's counts per stack id into out[id]. */
void memprof_stack_counts_sum(struct memprof_stack_totals *out, uint32_t nstacks,
                              uint32_t window) HIDDEN;
void memprof_stack_counts_after_fork(void) HIDDEN;
/* Each thread's buffer of log events (event_log.c fills and drains them). */
struct memprof_log_chunk;
struct memprof_log_chunk **memprof_log_chunk_slot(void) HIDDEN;   /* NULL: no block */
void memprof_log_chunks_each(void (*fn)(struct memprof_log_chunk *)) HIDDEN;

#endif
