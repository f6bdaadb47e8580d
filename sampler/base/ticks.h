/* The clock of the samples' lifetimes (ticks.c): the architecture's tick counter where it
 * runs at one rate on every core, which a sample reads in a few cycles where
 * clock_gettime costs tens of nanoseconds; else CLOCK_MONOTONIC's nanoseconds. */
#ifndef MEMPROF_TICKS_H
#define MEMPROF_TICKS_H

#include "arch.h"
#include "base/common.h"

extern bool memprof_ticks_by_arch HIDDEN;

/* Measures the ticks' rate once, before the first window opens. */
void memprof_ticks_calibrate(void) HIDDEN;
uint64_t memprof_monotonic_ns(void) HIDDEN;
/* A span of ticks in nanoseconds. */
uint64_t memprof_ticks_ns(uint64_t ticks) HIDDEN;

static inline uint64_t memprof_ticks_now(void)
{
    return memprof_ticks_by_arch ? arch_ticks() : memprof_monotonic_ns();
}

#endif
