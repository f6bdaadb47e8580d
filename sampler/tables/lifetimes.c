/* Lifetimes by stack.  A record per stack id, in one array reserved for every id and
 * touched as stacks are freed: a sampled free adds to its stack's record with one or
 * three relaxed atomic adds, so threads that free the same stack need no lock.  The
 * counts are of samples, like the stacks' counters; a reader weighs them as it weighs
 * those.  A count stops short of wrapping (a stack freed four billion times in one
 * window at -c 1), some adds from its last before it. */
#include "base/sysutil.h"
#include "tables/lifetimes.h"

static struct memprof_stack_lifetimes *records;
static uint32_t max_records;

#define COUNT_CEILING (UINT32_MAX - (1u << 16))

int memprof_lifetimes_init(uint32_t max_stacks)
{
    records = memprof_map(sizeof(*records) * (size_t)max_stacks);
    max_records = max_stacks;
    return records == NULL ? -1 : 0;
}

void memprof_lifetimes_reset(uint32_t stacks)
{
    memprof_zero_pages(records, sizeof(*records) * (size_t)(stacks < max_records ? stacks : max_records));
}

static void count(uint32_t *c)
{
    if (__atomic_load_n(c, __ATOMIC_RELAXED) < COUNT_CEILING)
        __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

static unsigned bin_of(uint64_t lived_ns)
{
    unsigned bin = 0;
    for (uint64_t end = 1000; bin < MEMPROF_LIFETIME_BINS - 1 && lived_ns >= end; end *= 10)
        bin++;
    return bin;
}

void memprof_lifetimes_note(uint32_t stack, uint64_t lived_ns, bool temporary, uint64_t size)
{
    if (records == NULL || stack >= max_records)
        return;
    struct memprof_stack_lifetimes *r = &records[stack];
    count(&r->freed[bin_of(lived_ns)]);
    if (temporary) {
        count(&r->temporary);
        __atomic_fetch_add(&r->temporary_bytes, size, __ATOMIC_RELAXED);
    }
}

bool memprof_lifetimes_of(uint32_t stack, struct memprof_stack_lifetimes *out)
{
    *out = (struct memprof_stack_lifetimes){0};
    if (records == NULL || stack >= max_records)
        return false;
    bool any = false;
    for (int b = 0; b < MEMPROF_LIFETIME_BINS; b++) {
        out->freed[b] = __atomic_load_n(&records[stack].freed[b], __ATOMIC_RELAXED);
        any |= out->freed[b] != 0;
    }
    out->temporary = __atomic_load_n(&records[stack].temporary, __ATOMIC_RELAXED);
    out->temporary_bytes = __atomic_load_n(&records[stack].temporary_bytes, __ATOMIC_RELAXED);
    return any;
}
