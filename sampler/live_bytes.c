/* Estimated live bytes per heap in the open window, and their peak: what the
 * budget gate checks (exact at rate 1) and what the timeline plots.  Each
 * sampled allocation adds its unsampled estimate, its size times its weight, and
 * its free takes the same back.  These are shared counters, so they are kept
 * only when the window asks for them (memprof_cfg.track_live). */
#include "estimate.h"
#include "live_bytes.h"
#include "options.h"
#include "sysutil.h"

struct heap_live {
    _Atomic int64_t now;
    _Atomic int64_t peak;            /* of the window */
    _Atomic int64_t interval_peak;   /* since the timeline's last look */
    _Atomic uint64_t peak_time_ns;
} __attribute__((aligned(64)));

static struct heap_live live[HEAP_COUNT];

static int64_t estimate(enum memprof_heap heap, uint64_t size)
{
    return (int64_t)((double)size * memprof_sample_weight(memprof_cfg.rates, heap, size) + 0.5);
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
    }
}

void memprof_live_bytes_add(enum memprof_heap heap, uint64_t size)
{
    struct heap_live *l = &live[heap];
    int64_t now = atomic_fetch_add_explicit(&l->now, estimate(heap, size), memory_order_relaxed) +
                  estimate(heap, size);
    raise_to(&l->interval_peak, now);
    if (now > atomic_load_explicit(&l->peak, memory_order_relaxed)) {
        raise_to(&l->peak, now);
        atomic_store_explicit(&l->peak_time_ns, memprof_now_ns(), memory_order_relaxed);
    }
}

void memprof_live_bytes_sub(enum memprof_heap heap, uint64_t size)
{
    atomic_fetch_sub_explicit(&live[heap].now, estimate(heap, size), memory_order_relaxed);
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
