/* Estimated live bytes in the open window: per heap, with their peak, which the budget
 * gate checks (exact at rate 1) and the timeline plots; and what each stack held at its
 * heap's peak, which `mem_parser --peak` reports of a capture without an event log.
 * Each sampled allocation adds its unsampled estimate, its size times its weight, and
 * its free takes the same back.
 *
 * A heap's figure is one cache line that every sample of every thread would change: in
 * table mode, at a rate above 1, a thread holds its changes back until they come to
 * BATCH_SAMPLES times the rate or 1/HELD_SHARE of the heap's figure, the less, so that
 * threads sampling at once do not queue for that line.  The figure and its peak are
 * then off by at most that much per thread: about a sample's estimate while the heap
 * is small beside the rate, 1/HELD_SHARE of it once it is large.
 *
 * The stacks at a peak cost the sample path nothing: a peak ends at the first fall of
 * the heap's figure after it, and there, on the thread that freed, the heap's live
 * samples are copied into a record of that peak (the block that thread just freed put
 * back), a word each, which its reader sums by stack: a record is made many times for
 * each time it is read.  A new record is made only where the peak rose by 1/PEAK_STEP
 * of the last recorded one: the records' sizes grow geometrically, so their work in all
 * is a few times the live samples at the highest peak, and the last record is within
 * that step of the peak.  The heap's peak figure itself is kept exactly.  A record is
 * made over the last one, in its memory: its readers wait for it as its makers do. */
#include <string.h>
#include <sys/mman.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "tables/estimate.h"
#include "tables/live_bytes.h"
#include "tables/live_table.h"
#include "tables/stack_table.h"

#define BATCH_SAMPLES 16
#define HELD_SHARE 64
#define PEAK_STEP 16        /* a new record where the peak rose by 1/16 of the last */
#define WEIGHTS 1024        /* sizes whose weight a record's reader remembers */
#define MIN_SAMPLES 4096

struct heap_live {
    _Atomic int64_t now;
    _Atomic int64_t peak;            /* of the window */
    _Atomic int64_t interval_peak;   /* since the timeline's last look */
    _Atomic uint64_t peak_time_ns;
} __attribute__((aligned(64)));

/* A record of the stacks at a peak: the live samples' stacks and sizes
 * (memprof_live_pack), grown by mremap (no malloc). */
struct peak_record {
    uint64_t *samples;
    size_t n, cap;
    int64_t peak;                    /* the heap's figure it was made at */
};

static struct heap_live live[HEAP_COUNT];
static _Atomic uint32_t generation = 1;   /* of the counts: a thread's held-back changes
                                             of an earlier one are dropped */
/* Records are made and read one at a time: the flag is taken with an exchange, and a
 * thread that finds it taken while ending a peak makes no record of it. */
static _Atomic bool recording;
static struct peak_record records[HEAP_COUNT];
static uint32_t *row_of;                  /* by stack id: its row in the rows read, plus 1 */
static uint32_t max_stacks;
/* The weights of the sizes a record met (a program allocates a few sizes many times),
 * kept while it is read: its exp is most of the work per live sample. */
static struct {
    uint64_t size;
    double weight;
} weights[WEIGHTS];

int memprof_live_bytes_init(uint32_t capacity)
{
    row_of = memprof_map(sizeof(*row_of) * capacity);
    if (row_of == NULL)
        return -1;
    max_stacks = capacity;
    return 0;
}

static void raise_to(_Atomic int64_t *max, int64_t value)
{
    int64_t seen = atomic_load_explicit(max, memory_order_relaxed);
    while (value > seen &&
           !atomic_compare_exchange_weak_explicit(max, &seen, value, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

void memprof_live_bytes_reset(void)
{
    for (int h = 0; h < HEAP_COUNT; h++) {
        atomic_store(&live[h].now, 0);
        atomic_store(&live[h].peak, 0);
        atomic_store(&live[h].interval_peak, 0);
        atomic_store(&live[h].peak_time_ns, 0);
        records[h].n = 0;
        records[h].peak = 0;
    }
    atomic_fetch_add(&generation, 1);
    /* a forked child's parent may have been making a record */
    atomic_store(&recording, false);
    memprof_zero_pages(row_of, sizeof(*row_of) * max_stacks);
}

/* Room in the record for `n` samples: false where memory is short. */
static bool room_for(struct peak_record *r, size_t n)
{
    if (n <= r->cap)
        return true;
    size_t cap = r->cap ? r->cap : MIN_SAMPLES;
    while (cap < n)
        cap *= 2;
    void *samples = r->samples == NULL
                        ? memprof_map(sizeof(*r->samples) * cap)
                        : mremap(r->samples, sizeof(*r->samples) * r->cap,
                                 sizeof(*r->samples) * cap, MREMAP_MAYMOVE);
    if (samples == NULL || samples == MAP_FAILED)
        return false;
    r->samples = samples;
    r->cap = cap;
    return true;
}

/* The record of the peak that the free of one sample (`ended`: its stack and size,
 * memprof_live_pack) just ended, made where the peak rose enough since the last. */
static void record_peak(enum memprof_heap heap, int64_t peak, uint64_t ended)
{
    struct peak_record *r = &records[heap];
    int64_t step = r->peak / PEAK_STEP;
    if (step < (int64_t)memprof_heap_rate(memprof_cfg.rates, heap))
        step = (int64_t)memprof_heap_rate(memprof_cfg.rates, heap);
    if (r->n > 0 && peak < r->peak + step)
        return;
    if (atomic_exchange_explicit(&recording, true, memory_order_acquire))
        return;   /* another thread is making or reading one */
    /* room for those live now and some that other threads add meanwhile (the rest are
     * left out), and the one just freed */
    uint64_t live_now = memprof_live_count();
    if (room_for(r, live_now + live_now / 8 + 64)) {
        r->n = memprof_live_copy(heap, r->samples, r->cap - 1);
        r->samples[r->n++] = ended;
        r->peak = peak;
    }
    atomic_store_explicit(&recording, false, memory_order_release);
}

/* The heap's figure moved by delta: a rise may make a new peak; a fall from the peak
 * ends it, and with `ended` (the sample whose free it is), records its stacks. */
static void apply(enum memprof_heap heap, int64_t delta, const uint64_t *ended)
{
    struct heap_live *l = &live[heap];
    if (delta < 0) {
        int64_t now = atomic_load_explicit(&l->now, memory_order_relaxed);
        int64_t peak = atomic_load_explicit(&l->peak, memory_order_relaxed);
        if (ended != NULL && now > 0 && now >= peak)
            record_peak(heap, peak, *ended);
        atomic_fetch_add_explicit(&l->now, delta, memory_order_relaxed);
        return;
    }
    int64_t now = atomic_fetch_add_explicit(&l->now, delta, memory_order_relaxed) + delta;
    raise_to(&l->interval_peak, now);
    if (now > atomic_load_explicit(&l->peak, memory_order_relaxed)) {
        raise_to(&l->peak, now);
        atomic_store_explicit(&l->peak_time_ns, memprof_now_ns(), memory_order_relaxed);
    }
}

static int64_t *held_back(enum memprof_heap heap)
{
    struct memprof_thread *t = &memprof_thread;
    uint32_t current = atomic_load_explicit(&generation, memory_order_relaxed);
    if (t->live_generation != current) {
        memset(t->live_pending, 0, sizeof t->live_pending);
        t->live_generation = current;
    }
    return &t->live_pending[heap];
}

static void change_heap(enum memprof_heap heap, int64_t delta, bool table,
                        const uint64_t *ended)
{
    uint64_t rate = memprof_heap_rate(memprof_cfg.rates, heap);
    if (!table || rate <= 1) {
        apply(heap, delta, table ? ended : NULL);
        return;
    }
    int64_t *held = held_back(heap), limit = BATCH_SAMPLES * (int64_t)rate;
    int64_t share = atomic_load_explicit(&live[heap].now, memory_order_relaxed) / HELD_SHARE;
    if (share < limit)
        limit = share > (int64_t)rate ? share : (int64_t)rate;
    *held += delta;
    if (*held >= limit || *held <= -limit) {
        int64_t all = *held;
        *held = 0;
        apply(heap, all, ended);
    }
}

static int64_t estimate(uint64_t size, double weight)
{
    return (int64_t)((double)size * weight + 0.5);
}

void memprof_live_bytes_add(enum memprof_heap heap, uint64_t size, double weight, bool table)
{
    change_heap(heap, estimate(size, weight), table, NULL);
}

void memprof_live_bytes_sub(enum memprof_heap heap, uint32_t stack, uint64_t size, double weight,
                            bool table)
{
    uint64_t ended = memprof_live_pack(stack, size);
    change_heap(heap, -estimate(size, weight), table, &ended);
}

void memprof_live_bytes_flush(void)
{
    for (int h = 0; h < HEAP_COUNT; h++) {
        int64_t *held = held_back((enum memprof_heap)h);
        if (*held != 0) {
            int64_t all = *held;
            *held = 0;
            apply((enum memprof_heap)h, all, NULL);
        }
    }
}

struct memprof_live_bytes memprof_live_bytes_of(enum memprof_heap heap)
{
    struct heap_live *l = &live[heap];
    return (struct memprof_live_bytes){
        .now = atomic_load(&l->now),
        .peak = atomic_load(&l->peak),
        .peak_time_ns = atomic_load(&l->peak_time_ns),
    };
}

int64_t memprof_live_bytes_interval_peak(enum memprof_heap heap)
{
    struct heap_live *l = &live[heap];
    /* The next interval starts from where this one ends. */
    return atomic_exchange(&l->interval_peak, atomic_load(&l->now));
}

/* The record's samples summed by stack into rows (at most cap): how many rows. */
static int64_t sum_by_stack(enum memprof_heap heap, const struct peak_record *r,
                            struct memprof_stack_live *rows, size_t cap)
{
    memset(weights, 0, sizeof weights);   /* the heap's rate may be another window's */
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        uint32_t stack = memprof_live_packed_stack(r->samples[i]);
        uint64_t size = memprof_live_packed_size(r->samples[i]);
        if (stack >= max_stacks)
            continue;
        if (row_of[stack] == 0) {
            if (n == cap)
                continue;
            rows[n] = (struct memprof_stack_live){stack, 0, 0, 0, 0};
            row_of[stack] = (uint32_t)++n;
        }
        size_t slot = (size * 0x9e3779b97f4a7c15ull) >> 54;   /* 10 bits: WEIGHTS */
        if (weights[slot].size != size + 1) {
            weights[slot].size = size + 1;   /* 0: none */
            weights[slot].weight = memprof_sample_weight(memprof_cfg.rates, heap, size);
        }
        struct memprof_stack_live *row = &rows[row_of[stack] - 1];
        row->samples++;
        row->bytes += size;
        row->est_objs += weights[slot].weight;
        row->est_bytes += weights[slot].weight * (double)size;
    }
    for (size_t i = 0; i < n; i++)
        row_of[rows[i].stack] = 0;
    return (int64_t)n;
}

int64_t memprof_live_peak_rows(enum memprof_heap heap, struct memprof_stack_live *rows,
                               size_t cap, int64_t *at)
{
    struct heap_live *l = &live[heap];
    if (atomic_load(&l->now) >= atomic_load(&l->peak))
        return -1;
    for (int tries = 0; atomic_exchange_explicit(&recording, true, memory_order_acquire);)
        if (++tries == 1 << 24)
            return -1;   /* its maker stopped (a signal's handler): what is live, then */
    const struct peak_record *r = &records[heap];
    int64_t n = r->n == 0 ? -1 : sum_by_stack(heap, r, rows, cap);
    *at = r->peak;
    atomic_store_explicit(&recording, false, memory_order_release);
    return n;
}
