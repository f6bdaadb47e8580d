/* What the samples stand for (estimate.c): the rate each heap is sampled at, the
 * weight of one sample, and the in-use estimates of the live samples. */
#ifndef MEMPROF_ESTIMATE_H
#define MEMPROF_ESTIMATE_H

#include <math.h>

#include "base/common.h"
#include "base/options.h"

/* How many allocations one sample of `size` bytes stands for at a `rate` above 1:
 * 1 / (1 - exp(-size/rate)), the inverse of its chance of being sampled.  Summed per
 * stack it gives unbiased object and byte counts, whatever the mix of sizes.
 * 1 - exp(-x) is taken from exp, a table lookup in glibc and far cheaper than its
 * expm1, except below 2^-10, where exp's rounding would cancel and five terms of the
 * series are exact to double precision: within 1e-13 of expm1's either way. */
static inline double memprof_weight(double size, uint64_t rate)
{
    double x = size / (double)rate;
    if (x >= 0x1p-10)
        return 1.0 / (1.0 - exp(-x));
    return 1.0 / (x * (1.0 - x * (0.5 - x * (1.0 / 6 - x * (1.0 / 24 - x * (1.0 / 120))))));
}

/* The weight of one sample of `size` bytes at `rate` (1 at rate 1). */
static inline double memprof_weight_at(uint64_t rate, uint64_t size)
{
    return rate > 1 && size > 0 ? memprof_weight((double)size, rate) : 1.0;
}

/* The weight of one sample of `size` bytes of `heap`. */
static inline double memprof_sample_weight(struct memprof_rates rates, uint32_t heap, uint64_t size)
{
    return memprof_weight_at(memprof_heap_rate(rates, heap), size);
}

/* Counts of samples: how many and their bytes, as jeprof reads them, and the sums of
 * their weights and of their weighted sizes, the unbiased estimates. */
struct memprof_stack_totals {
    uint64_t objs, bytes;
    double est_objs, est_bytes;
};

/* `h` (0 to begin) and then all of `t`'s counts, hashed: two totals that differ in any
 * count, bytes alone included, differ here (but for one chance in 2^64); all-zero
 * totals from 0 give 0. */
uint64_t memprof_totals_digest(uint64_t h, const struct memprof_stack_totals *t) HIDDEN;

/* The live samples' totals per heap and, when of_stack is given, per stack: into
 * what of_stack(stack, arg) answers (NULL: that stack's are not kept). */
struct memprof_live_totals {
    struct memprof_stack_totals *(*of_stack)(uint32_t stack, void *arg);
    void *arg;
    struct memprof_stack_totals by_heap[HEAP_COUNT];
};
/* Adds each live sample, weighted at its heap's rate, into t. */
void memprof_live_totals(struct memprof_rates rates, struct memprof_live_totals *t) HIDDEN;

/* The samples the tables had no room for (memprof_drops, sample.h) at one moment
 * (memprof_drops_now): a dump takes one for all its files and its status. */
struct memprof_drop_counts {
    uint64_t stack_table, live_table, memory, bytes;
};
static inline uint64_t memprof_dropped_samples(const struct memprof_drop_counts *d)
{
    return d->stack_table + d->live_table + d->memory;
}

#endif
