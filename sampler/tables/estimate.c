/* The in-use estimates of the live samples, for the .heap files and the status. */
#include <string.h>

#include "tables/estimate.h"
#include "tables/live_table.h"
#include "tables/stack_table.h"

struct live_sum {
    struct memprof_rates rates;
    struct memprof_live_totals *t;
};

static void add_totals(struct memprof_stack_totals *t, uint64_t size, double weight)
{
    t->objs += 1;
    t->bytes += size;
    t->est_objs += weight;
    t->est_bytes += weight * (double)size;
}

static void add_live_sample(uintptr_t key, uint32_t stack, uint64_t size, void *arg)
{
    const struct live_sum *sum = arg;
    enum memprof_heap heap = memprof_live_key_heap(key);
    double weight = memprof_sample_weight(sum->rates, heap, size);
    add_totals(&sum->t->by_heap[heap], size, weight);
    struct memprof_stack_totals *of_stack =
        sum->t->of_stack != NULL ? sum->t->of_stack(stack, sum->t->arg) : NULL;
    if (of_stack != NULL)
        add_totals(of_stack, size, weight);
}

void memprof_live_totals(struct memprof_rates rates, struct memprof_live_totals *t)
{
    struct live_sum sum = {rates, t};
    memprof_live_foreach(add_live_sample, &sum);
}

static uint64_t mix(uint64_t h, uint64_t word)
{
    h = (h ^ word) * 0x9e3779b97f4a7c15ull;
    return h ^ h >> 32;
}

uint64_t memprof_totals_digest(uint64_t h, const struct memprof_stack_totals *t)
{
    uint64_t est_objs, est_bytes;
    memcpy(&est_objs, &t->est_objs, sizeof est_objs);
    memcpy(&est_bytes, &t->est_bytes, sizeof est_bytes);
    return mix(mix(mix(mix(h, t->objs), t->bytes), est_objs), est_bytes);
}
