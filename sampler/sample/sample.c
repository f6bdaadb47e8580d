/* The sampling decision.  Per thread, a countdown of bytes until the next
 * sample is drawn from an exponential distribution with mean `rate`; each
 * allocation subtracts its size and the one that crosses zero is sampled
 * (jemalloc and tcmalloc do the same).  An allocation of s bytes is then
 * sampled with probability 1 - exp(-s/rate), which is what the reader
 * divides by.  rate = 1 samples every allocation. */
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "base/defaults.h"
#include "base/options.h"
#include "base/thread_state.h"
#include "base/ticks.h"
#include "base/upcalls.h"
#include "memprof_log.h"
#include "sample/sample.h"
#include "sample/window_page.h"
#include "tables/estimate.h"
#include "tables/live_bytes.h"
#include "tables/live_table.h"
#include "tables/notes.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"
#include "unwind/python_frames.h"
#include "unwind/unwind.h"
#include "writers/event_log.h"

/* Set by control.c while the process has no control thread (sample.h). */
_Atomic bool memprof_control_thread_less;
/* The window page (window_page.h): window.c maps it, the hooks and this file read it. */
union memprof_window_page memprof_window_page __attribute__((aligned(MEMPROF_WINDOW_PAGE)));
struct memprof_drops memprof_drops;

void memprof_drops_reset(void)
{
    atomic_store(&memprof_drops.stack_table, 0);
    atomic_store(&memprof_drops.live_table, 0);
    atomic_store(&memprof_drops.memory, 0);
    atomic_store(&memprof_drops.bytes, 0);
}

struct memprof_drop_counts memprof_drops_now(void)
{
    return (struct memprof_drop_counts){
        atomic_load(&memprof_drops.stack_table), atomic_load(&memprof_drops.live_table),
        atomic_load(&memprof_drops.memory), atomic_load(&memprof_drops.bytes)};
}

static void drop(_Atomic uint64_t *cause, double weight, uint64_t size)
{
    atomic_fetch_add_explicit(cause, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&memprof_drops.bytes, (uint64_t)(weight * (double)size),
                              memory_order_relaxed);
}

static uint64_t next_random(struct memprof_thread *t)
{
    if (UNLIKELY(t->rng == 0)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
                 (uintptr_t)t * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid() << 40;
        if (t->rng == 0)
            t->rng = 0x2545f4914f6cdd1dull;
    }
    uint64_t x = t->rng;   /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    t->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Bytes until the next sample: floor(Exp(rate)) + 1, so that an allocation
 * of s bytes crosses zero with probability exactly 1 - exp(-s/rate). */
static int64_t draw_countdown(struct memprof_thread *t, uint64_t rate)
{
    if (rate <= 1)
        return 0;
    /* 53 random bits -> u in (0, 1] */
    double u = ((double)(next_random(t) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double bytes = -log(u) * (double)rate;
    if (bytes > 9.0e18)
        bytes = 9.0e18;
    return (int64_t)bytes + 1;
}

/* The calling thread's stack: its native frames and, in a Python program, its
 * Python chain; interned into a stack id (STACK_NONE: the tables are full). */
static uint32_t intern_stack(uint32_t heap, uint64_t label)
{
    /* sized to what is used: a handler's sigaltstack may leave only a few KiB.  The
     * depth is read once: a window opening on another thread may change it. */
    int depth = *(volatile int *)&memprof_cfg.max_depth;
    if (depth <= 0 || depth > MEMPROF_MAX_DEPTH)
        depth = MEMPROF_MAX_DEPTH;
    bool in_python = UNLIKELY(memprof_python_eval_lo != 0);
    uintptr_t frames[depth], python[in_python ? MEMPROF_PY_CHAIN_ROOM : 1];
    struct memprof_stack_key k = {frames, memprof_unwind(frames, depth), python, 0, heap, label};
    if (in_python)
        k.python_len = memprof_python_chain(python, MEMPROF_PY_CHAIN_ROOM);
    return memprof_stack_intern(&k);
}

/* A sample of `weight` made live (LOG_ALLOC) or ended (LOG_FREE), in the live bytes and
 * the log: the log counts it itself, so that a timeline record finds the two agreeing. */
static void count_live(enum memprof_log_type type, enum memprof_heap heap, uint32_t stack,
                       uint64_t size, uintptr_t address, double weight)
{
    if (memprof_log_active())
        memprof_log_event(type, heap, stack, size, address);
    else if (type == LOG_ALLOC)
        memprof_live_bytes_add(heap, size, weight, true);
    else
        memprof_live_bytes_sub(heap, stack, size, weight, true);
}

/* When a sample is made, for its lifetime at its free (memprof_sample_ended); an event
 * log times both itself. */
static uint64_t born_now(void)
{
    return memprof_log_active() ? 0 : memprof_ticks_now();
}

/* Unwinds, interns the stack and records one sampled allocation. */
static void record_sample(uintptr_t key, uint64_t size, uint64_t label, uint32_t window)
{
    memprof_live_prefetch(key);
    enum memprof_heap heap = memprof_live_key_heap(key);
    uint64_t rate = memprof_heap_rate(memprof_cfg.rates, heap);
    double weight = memprof_weight_at(rate, size);   /* its exp runs beside the walk */
    uint32_t stack = intern_stack(heap, label);
    if (stack == STACK_NONE)
        drop(&memprof_drops.stack_table, weight, size);
    else if (!memprof_stack_count(stack, size, rate, weight, window))
        drop(&memprof_drops.memory, weight, size);
    else if (!memprof_live_insert(key, (struct memprof_live_sample){stack, size, born_now()}))
        drop(&memprof_drops.live_table, weight, size);
    else
        count_live(LOG_ALLOC, heap, stack, size, memprof_live_key_address(key), weight);
}

/* Reached when the countdown crossed zero, or when the thread's countdown
 * belongs to an older window. */
void memprof_sample_slow(void *ptr, size_t size, uint32_t window)
{
    struct memprof_thread *t = &memprof_thread;
    if (t->busy)
        return;   /* the sampler's own allocation */
    t->busy = 1;
    /* acquire: control sets the flag after set-up filled memprof_upcalls, which a thread
     * that allocated before set-up (an injected sampler's) must then see whole */
    if (UNLIKELY(atomic_load_explicit(&memprof_control_thread_less, memory_order_acquire)))
        memprof_upcalls.control_look();   /* a request waiting, in a process without its thread */
    if (UNLIKELY(window == MEMPROF_WINDOW_WAKE))
        goto out;   /* no window: a controller's wake */

    /* Each draw keeps allocated_base - countdown, the bytes the thread allocated, as
     * it was: the allocations between two samples cost nothing more to count. */
    uint64_t rate = memprof_cfg.rates.host;
    int64_t allocated = t->allocated_base - t->countdown;
    if (t->window != window) {   /* an older window's countdown: this size not taken off */
        t->window = window;
        t->countdown = draw_countdown(t, rate);
        t->allocated_base = allocated + t->countdown;
        t->countdown -= (int64_t)size;
        if (t->countdown > 0)
            goto out;
        allocated += (int64_t)size;
    }
    t->countdown = draw_countdown(t, rate);
    t->allocated_base = allocated + t->countdown;

    record_sample((uintptr_t)ptr, size, 0, window);
    t->last_sample = (uintptr_t)ptr;
    t->last_sample_after = allocated;
out:
    t->busy = 0;
}

/* ---- device and HAL heaps --------------------------------------------------
 * Few, large allocations: each heap has its own per-thread countdown with mean
 * device_rate (1 by default: every allocation). */

void memprof_device_alloc(enum memprof_heap heap, uintptr_t key, uint64_t size, uint64_t label)
{
    uint32_t window = memprof_window_id();
    struct memprof_thread *t = &memprof_thread;
    if (window == 0 || t->busy)
        return;
    t->busy = 1;
    uint64_t rate = memprof_cfg.rates.device;
    if (t->device_window != window) {
        t->device_window = window;
        for (int h = 0; h < HEAP_COUNT; h++)
            t->device_countdown[h] = draw_countdown(t, rate);
    }
    if ((t->device_countdown[heap] -= (int64_t)size) <= 0) {
        t->device_countdown[heap] = draw_countdown(t, rate);
        record_sample(memprof_live_key(heap, key), size, label, window);
    }
    t->busy = 0;
}

bool memprof_device_free(enum memprof_heap heap, uintptr_t key)
{
    if (memprof_window_id() == 0)
        return false;
    struct memprof_taken taken;
    if (!memprof_live_maybe(memprof_live_key(heap, key)) ||
        !memprof_take_sample((void *)memprof_live_key(heap, key), &taken))
        return false;
    memprof_sample_ended(&taken);
    return true;
}

void memprof_device_note(enum memprof_note_list list, enum memprof_heap heap,
                         struct memprof_note note)
{
    struct memprof_thread *t = &memprof_thread;
    if (memprof_window_id() == 0 || t->busy)
        return;
    t->busy = 1;
    note.stack = intern_stack((uint32_t)heap | MEMPROF_NOTED_HEAP, 0);   /* apart from the heap's */
    memprof_note_add(list, heap, note);
    t->busy = 0;
}

/* The busy flag keeps a signal handler on this thread out of the notes' lock. */
void memprof_device_unnote(enum memprof_note_list list, enum memprof_heap heap, uint64_t address)
{
    struct memprof_thread *t = &memprof_thread;
    if (memprof_window_id() == 0 || t->busy)
        return;
    t->busy = 1;
    memprof_note_remove(list, heap, address);
    t->busy = 0;
}

/* The busy flag also covers the table's lock: a signal handler that frees
 * while this thread holds it passes through instead of spinning forever. */
bool memprof_take_sample(void *ptr, struct memprof_taken *taken)
{
    struct memprof_thread *t = &memprof_thread;
    if (t->busy)
        return false;
    t->busy = 1;
    uintptr_t key = (uintptr_t)ptr;
    struct memprof_live_sample *s = &taken->sample;
    bool found = memprof_live_remove(key, s);
    if (found) {
        enum memprof_heap heap = memprof_live_key_heap(key);
        count_live(LOG_FREE, heap, s->stack, s->size, memprof_live_key_address(key),
                   memprof_sample_weight(memprof_cfg.rates, heap, s->size));
        taken->temporary = key == t->last_sample &&
                           t->allocated_base - t->countdown == t->last_sample_after;
    }
    if (key == t->last_sample)
        t->last_sample = 0;
    t->busy = 0;
    return found;
}

/* A failed realloc leaves its old block live: put back what taking it undid. */
void memprof_restore_sample(void *ptr, const struct memprof_taken *taken)
{
    struct memprof_thread *t = &memprof_thread;
    t->busy = 1;   /* as in memprof_take_sample: the locks below are not reentrant */
    const struct memprof_live_sample *s = &taken->sample;
    if (memprof_live_insert((uintptr_t)ptr, *s))
        count_live(LOG_ALLOC, HEAP_HOST, s->stack, s->size, (uintptr_t)ptr,
                   memprof_sample_weight(memprof_cfg.rates, HEAP_HOST, s->size));
    t->busy = 0;
}

/* An event log times each free itself: the lifetimes are a table-mode window's. */
void memprof_sample_ended(const struct memprof_taken *taken)
{
    if (memprof_log_active())
        return;
    uint32_t window = memprof_window_id();
    if (window == 0)
        return;
    uint64_t now = memprof_ticks_now();
    const struct memprof_live_sample *s = &taken->sample;
    memprof_stack_freed(s->stack, now > s->born ? memprof_ticks_ns(now - s->born) : 0,
                        taken->temporary, s->size, window);
}

void memprof_free_slow(void *ptr)
{
    struct memprof_taken taken;
    if (memprof_take_sample(ptr, &taken))
        memprof_sample_ended(&taken);
}
