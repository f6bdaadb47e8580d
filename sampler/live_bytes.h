/* Estimated live bytes per heap and their peak (live_bytes.c). */
#ifndef MEMPROF_LIVE_BYTES_H
#define MEMPROF_LIVE_BYTES_H

#include "common.h"

struct memprof_live_bytes {
    int64_t now, peak;
    uint64_t peak_time_ns;
};
void memprof_live_bytes_reset(void) HIDDEN;
void memprof_live_bytes_add(enum memprof_heap heap, uint64_t size) HIDDEN;
void memprof_live_bytes_sub(enum memprof_heap heap, uint64_t size) HIDDEN;
struct memprof_live_bytes memprof_live_bytes_of(enum memprof_heap heap) HIDDEN;
/* The peak since the last call (the timeline's 100 ms interval). */
int64_t memprof_live_bytes_interval_peak(enum memprof_heap heap) HIDDEN;

#endif
