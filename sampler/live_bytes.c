/* Estimated live bytes in the open window: per heap, with their peak, which the
 * budget gate checks (exact at rate 1) and the timeline plots; and per stack, with
 * what each stack held at its heap's peak, which `mem_parser --peak` reports of a
 * capture without an event log.  Each sampled allocation adds its unsampled
 * estimate, its size times its weight, and its free takes the same back.
 *
 * The stacks at the peak are kept as memray's high-water mark is, in O(1) per
 * sample: a heap's peak is over once a free follows it, and that free starts a
 * new epoch of the heap.  Each stack copies what it holds to its at-peak figures
 * the first time it changes in a new epoch, before the change: so a stack's
 * at-peak figures are its current ones until it changes after a peak.  Threads
 * racing at a peak can shift it by the samples in flight, well inside the
 * sampling error. */
#include "estimate.h"
#include "live_bytes.h"
#include "options.h"
#include "sysutil.h"

struct heap_live {
    _Atomic int64_t now;
    _Atomic int64_t peak;            /* of the window */
    _Atomic int64_t interval_peak;   /* since the timeline's last look */
    _Atomic uint64_t peak_time_ns;
    _Atomic uint32_t epoch;          /* peaks ended so far, from 1 */
} __attribute__((aligned(64)));

struct live_sum {
    _Atomic uint64_t samples, bytes;
    _Atomic int64_t est_bytes, est_objs;   /* est_objs: sample weights in 1/2^16 */
};

struct stack_live {                 /* a cache line each */
    struct live_sum now, at_peak;
} __attribute__((aligned(64)));

#define OBJS_SCALE 65536.0

static struct heap_live live[HEAP_COUNT];
static struct stack_live *stacks;
static uint32_t max_stacks;
static _Atomic uint32_t stacks_touched;   /* ids below it may be non-zero */
/* a stack's epoch: that of its heap when it last copied now to at_peak (0: never) */
static _Atomic uint32_t *stack_epoch;

int memprof_live_bytes_init(uint32_t capacity)
{
    stacks = memprof_map(sizeof(*stacks) * capacity);
    stack_epoch = memprof_map(sizeof(*stack_epoch) * capacity);
    if (stacks == NULL || stack_epoch == NULL)
        return -1;
    max_stacks = capacity;
    return 0;
}

static int64_t estimate(enum memprof_heap heap, uint64_t size, double *weight)
{
    *weight = memprof_sample_weight(memprof_cfg.rates, heap, size);
    return (int64_t)((double)size * *weight + 0.5);
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
        atomic_store(&live[h].epoch, 1);
    }
    uint32_t touched = atomic_exchange(&stacks_touched, 0);
    memprof_zero_pages(stacks, sizeof(*stacks) * touched);
    memprof_zero_pages(stack_epoch, sizeof(*stack_epoch) * touched);
}

static void copy_sum(struct live_sum *to, struct live_sum *from)
{
    atomic_store_explicit(&to->samples, atomic_load_explicit(&from->samples, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&to->bytes, atomic_load_explicit(&from->bytes, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&to->est_bytes,
                          atomic_load_explicit(&from->est_bytes, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&to->est_objs,
                          atomic_load_explicit(&from->est_objs, memory_order_relaxed),
                          memory_order_relaxed);
}

/* The stack about to change: its figures at the heap's last ended peak kept first. */
static struct stack_live *stack_to_change(enum memprof_heap heap, uint32_t stack)
{
    if (stack >= max_stacks || stacks == NULL)
        return NULL;
    uint32_t touched = atomic_load_explicit(&stacks_touched, memory_order_relaxed);
    while (stack >= touched &&
           !atomic_compare_exchange_weak_explicit(&stacks_touched, &touched, stack + 1,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    struct stack_live *s = &stacks[stack];
    uint32_t epoch = atomic_load_explicit(&live[heap].epoch, memory_order_relaxed);
    uint32_t seen = atomic_load_explicit(&stack_epoch[stack], memory_order_relaxed);
    if (seen != epoch && atomic_compare_exchange_strong_explicit(&stack_epoch[stack], &seen, epoch,
                                                                 memory_order_relaxed,
                                                                 memory_order_relaxed))
        copy_sum(&s->at_peak, &s->now);
    return s;
}

static void change_stack(struct stack_live *s, int sign, uint64_t size, int64_t est, double weight)
{
    if (s == NULL)
        return;
    atomic_fetch_add_explicit(&s->now.samples, (uint64_t)(int64_t)sign, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->now.bytes, (uint64_t)(sign * (int64_t)size),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&s->now.est_bytes, sign * est, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->now.est_objs, sign * (int64_t)(weight * OBJS_SCALE + 0.5),
                              memory_order_relaxed);
}

void memprof_live_bytes_add(enum memprof_heap heap, uint32_t stack, uint64_t size)
{
    struct heap_live *l = &live[heap];
    double weight;
    int64_t est = estimate(heap, size, &weight);
    change_stack(stack_to_change(heap, stack), 1, size, est, weight);
    int64_t now = atomic_fetch_add_explicit(&l->now, est, memory_order_relaxed) + est;
    raise_to(&l->interval_peak, now);
    if (now > atomic_load_explicit(&l->peak, memory_order_relaxed)) {
        raise_to(&l->peak, now);
        atomic_store_explicit(&l->peak_time_ns, memprof_now_ns(), memory_order_relaxed);
    }
}

void memprof_live_bytes_sub(enum memprof_heap heap, uint32_t stack, uint64_t size)
{
    struct heap_live *l = &live[heap];
    int64_t now = atomic_load_explicit(&l->now, memory_order_relaxed);
    if (now > 0 && now >= atomic_load_explicit(&l->peak, memory_order_relaxed))
        atomic_fetch_add_explicit(&l->epoch, 1, memory_order_relaxed);   /* the peak ends */
    double weight;
    int64_t est = estimate(heap, size, &weight);
    change_stack(stack_to_change(heap, stack), -1, size, est, weight);
    atomic_fetch_sub_explicit(&l->now, est, memory_order_relaxed);
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

struct memprof_stack_live memprof_live_at_peak(enum memprof_heap heap, uint32_t stack)
{
    if (stack >= atomic_load(&stacks_touched))
        return (struct memprof_stack_live){0, 0, 0, 0};
    struct heap_live *l = &live[heap];
    struct stack_live *s = &stacks[stack];
    /* at the peak still, or unchanged since it ended: what it holds now */
    bool peak_ended = atomic_load(&l->now) < atomic_load(&l->peak);
    struct live_sum *sum =
        peak_ended && atomic_load(&stack_epoch[stack]) == atomic_load(&l->epoch) ? &s->at_peak
                                                                                : &s->now;
    int64_t samples = (int64_t)atomic_load(&sum->samples);
    int64_t bytes = (int64_t)atomic_load(&sum->bytes);
    int64_t est_bytes = atomic_load(&sum->est_bytes), est_objs = atomic_load(&sum->est_objs);
    if (samples <= 0 || bytes <= 0 || est_bytes <= 0 || est_objs <= 0)
        return (struct memprof_stack_live){0, 0, 0, 0};   /* none, or a race's remainder */
    return (struct memprof_stack_live){(uint64_t)samples, (uint64_t)bytes, (double)est_bytes,
                                       (double)est_objs / OBJS_SCALE};
}
