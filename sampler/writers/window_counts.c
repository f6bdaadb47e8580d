/* The window's counts per stack id as the writers read them (window_counts.h). */
#include <math.h>

#include "base/sysutil.h"
#include "tables/stack_table.h"
#include "writers/window_counts.h"

static struct memprof_stack_totals *live_entry(uint32_t stack, void *arg)
{
    struct memprof_counts *c = arg;
    if (stack >= c->nstacks)
        return NULL;   /* made after the count of stacks was read */
    if (c->live_at[stack] == 0)
        c->live_at[stack] = ++c->nlive;
    return &c->live[c->live_at[stack] - 1];
}

bool memprof_counts_gather(struct memprof_counts *c, const struct memprof_window_info *w)
{
    c->nstacks = memprof_stack_ids();
    c->nlive = 0;
    c->acc = (struct memprof_window_counts){.rates = w->rates};
    c->bytes = sizeof(struct memprof_stack_totals) * ((size_t)c->nstacks + 1);
    c->live = memprof_map(c->bytes);
    c->live_at = memprof_map(sizeof(uint32_t) * ((size_t)c->nstacks + 1));
    if (c->live == NULL || c->live_at == NULL)
        return false;
    /* The live table before the counters: a sample counts before it goes live
     * (record_sample), so one taken between the two reads is allocated and not yet
     * in use, never the other way round: no stack is more in use than allocated. */
    struct memprof_live_totals live = {.of_stack = live_entry, .arg = c};
    memprof_live_totals(w->rates, &live);
    return memprof_window_counts_read(&c->acc, c->nstacks, w->id, w->closed, w->rates);
}

void memprof_counts_release(struct memprof_counts *c)
{
    memprof_window_counts_release(&c->acc);
    memprof_unmap(c->live, c->bytes);
    memprof_unmap(c->live_at, sizeof(uint32_t) * ((size_t)c->nstacks + 1));
}

static bool estimate_implied(const struct memprof_stack_totals *t, uint64_t rate)
{
    if (t->objs == 0)
        return t->est_objs == 0 && t->est_bytes == 0;
    double mean = (double)t->bytes / (double)t->objs;
    double scale = rate > 1 && mean > 0 ? memprof_weight(mean, rate) : 1.0;
    double objs = (double)t->objs * scale, bytes = (double)t->bytes * scale;
    return fabs(t->est_objs - objs) <= 1e-9 * objs && fabs(t->est_bytes - bytes) <= 1e-9 * bytes;
}

bool memprof_estimates_implied(const struct memprof_counts *c, uint32_t id, uint64_t rate)
{
    struct memprof_stack_totals acc = memprof_acc_of(c, id);
    return estimate_implied(memprof_live_of(c, id), rate) && estimate_implied(&acc, rate);
}
