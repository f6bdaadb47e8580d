/* The window as the writers read it (window_counts.c): what they are told of it, and its
 * counts per stack id, gathered once for all the files of one dump or snapshot. */
#ifndef MEMPROF_WINDOW_COUNTS_H
#define MEMPROF_WINDOW_COUNTS_H

#include "base/common.h"
#include "tables/estimate.h"
#include "tables/thread_block.h"
#include "writers/reachable.h"

struct memprof_window_info {
    uint32_t id;
    struct memprof_rates rates;
    int max_depth;
    uint64_t start_ns, end_ns;
    int32_t forked_from;         /* a forked child's parent, whose window it carries on */
    struct memprof_drop_counts drops;   /* as of end_ns: every file of a dump says the same */
    bool closed;                 /* the window has closed: its counts no longer change */
    bool python_exit;            /* closed as the Python interpreter began to finalize */
    struct {                     /* taken as a device allocation failed (heap -1: not) */
        int heap, error;
        uint64_t bytes;
        const char *raised;      /* the framework's error raised then, or NULL */
    } failure;
    /* at the program's end, the host heap's live samples nothing points to; NULL: not
     * looked for */
    const struct memprof_unreachable *unreachable;
};

/* Those in use are kept only for the stacks that have live samples, which at a dump are
 * few beside those that allocated: their array is reserved for every stack and filled
 * from its start, and a stack finds its entry through live_at. */
struct memprof_counts {
    struct memprof_window_counts acc;    /* allocated in the window, by stack id */
    struct memprof_stack_totals *live;   /* live now, in the order first met */
    uint32_t *live_at;                   /* by stack id: its index in live + 1, or 0 */
    uint32_t nstacks, nlive;             /* stack ids counted are < nstacks */
    size_t bytes;
};
/* false: no memory (release them all the same) */
bool memprof_counts_gather(struct memprof_counts *c, const struct memprof_window_info *w) HIDDEN;
void memprof_counts_release(struct memprof_counts *c) HIDDEN;

static inline const struct memprof_stack_totals *memprof_live_of(const struct memprof_counts *c,
                                                                 uint32_t id)
{
    static const struct memprof_stack_totals none;
    return c->live_at[id] == 0 ? &none : &c->live[c->live_at[id] - 1];
}

static inline struct memprof_stack_totals memprof_acc_of(const struct memprof_counts *c,
                                                         uint32_t id)
{
    return memprof_window_counts_of(&c->acc, id);
}

/* Whether stack id's estimates are what a reader computes from its counts, the weight of
 * their mean size times each count (so a file need not hold them): so it is for a stack
 * whose samples are of one size.  `rate`: its heap's. */
bool memprof_estimates_implied(const struct memprof_counts *c, uint32_t id, uint64_t rate) HIDDEN;

#endif
