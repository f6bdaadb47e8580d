/* Estimated live bytes per heap and per stack, and what they were at the heap's
 * peak (live_bytes.c). */
#ifndef MEMPROF_LIVE_BYTES_H
#define MEMPROF_LIVE_BYTES_H

#include "common.h"

struct memprof_live_bytes {
    int64_t now, peak;
    uint64_t peak_time_ns;
};
/* What one stack holds live: its samples, their sizes, and the unsampled bytes and
 * objects they stand for. */
struct memprof_stack_live {
    uint64_t samples, bytes;
    double est_bytes, est_objs;
};
int memprof_live_bytes_init(uint32_t max_stacks) HIDDEN;
void memprof_live_bytes_reset(void) HIDDEN;
void memprof_live_bytes_add(enum memprof_heap heap, uint32_t stack, uint64_t size) HIDDEN;
void memprof_live_bytes_sub(enum memprof_heap heap, uint32_t stack, uint64_t size) HIDDEN;
struct memprof_live_bytes memprof_live_bytes_of(enum memprof_heap heap) HIDDEN;
/* The peak since the last call (the timeline's 100 ms interval). */
int64_t memprof_live_bytes_interval_peak(enum memprof_heap heap) HIDDEN;
/* What the stack (of `heap`) held at that heap's peak so far in the window. */
struct memprof_stack_live memprof_live_at_peak(enum memprof_heap heap, uint32_t stack) HIDDEN;

#endif
