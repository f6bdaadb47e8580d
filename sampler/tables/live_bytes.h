/* Estimated live bytes per heap and their peak, and what each stack held at that
 * peak (live_bytes.c). */
#ifndef MEMPROF_LIVE_BYTES_H
#define MEMPROF_LIVE_BYTES_H

#include <stddef.h>

#include "base/common.h"

struct memprof_live_bytes {
    int64_t now, peak;
    uint64_t peak_time_ns;
};
/* What one stack held: its live samples, their sizes, and the objects and bytes they
 * stand for. */
struct memprof_stack_live {       /* 32 bytes: one per live stack of a peak record read */
    uint32_t stack, samples;
    uint64_t bytes;
    double est_objs, est_bytes;
};
int memprof_live_bytes_init(uint32_t max_stacks) HIDDEN;
void memprof_live_bytes_reset(void) HIDDEN;
/* A sample of `stack` and `weight` (estimate.h) made live, or ended.  `table`: a
 * table-mode window's, whose heap figure may take it later, with the thread's next
 * few, and whose peaks are recorded with their stacks; else the event log's, whose
 * timeline must agree with its events at once and whose own events give its peaks. */
void memprof_live_bytes_add(enum memprof_heap heap, uint64_t size, double weight,
                            bool table) HIDDEN;
void memprof_live_bytes_sub(enum memprof_heap heap, uint32_t stack, uint64_t size,
                            double weight, bool table) HIDDEN;
/* What the calling thread holds back, added to the heaps' figures (at its end). */
void memprof_live_bytes_flush(void) HIDDEN;
struct memprof_live_bytes memprof_live_bytes_of(enum memprof_heap heap) HIDDEN;
/* The peak since the last call (the timeline's 100 ms interval). */
int64_t memprof_live_bytes_interval_peak(enum memprof_heap heap) HIDDEN;
/* The stacks that held memory at the heap's peak so far, copied into `rows` (at most
 * `cap`), and the heap's figure when they were recorded (*at: within a step of the peak,
 * live_bytes.c): how many; -1 when the heap is at that peak now, or none was recorded:
 * what is live is then what it held. */
int64_t memprof_live_peak_rows(enum memprof_heap heap, struct memprof_stack_live *rows,
                               size_t cap, int64_t *at) HIDDEN;

#endif
