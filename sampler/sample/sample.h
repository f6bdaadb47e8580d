/* The sample path's entry (sample.c): the allocation and free hooks' inline checks,
 * the slow path they call, the device and HAL heaps' samples and notes, and the
 * samples dropped. */
#ifndef MEMPROF_SAMPLE_H
#define MEMPROF_SAMPLE_H

#include "base/common.h"
#include "base/thread_state.h"
#include "sample/window_page.h"
#include "tables/estimate.h"
#include "tables/live_table.h"
#include "tables/notes.h"
#include "tables/stack_table.h"

/* A process whose control thread is made on request ("a thread on request" in
 * control.c) while it has none yet: its samples call memprof_upcalls.control_look. */
extern _Atomic bool memprof_control_thread_less HIDDEN;

void memprof_sample_slow(void *ptr, size_t size, uint32_t window) HIDDEN;
void memprof_free_slow(void *ptr) HIDDEN;
/* A live sample taken out of the table, and whether it was temporary: the block its
 * thread sampled last, freed by that thread before it allocated anything else. */
struct memprof_taken {
    struct memprof_live_sample sample;
    bool temporary;
};
/* Removes ptr from the live samples if it is one (for realloc, which may
 * have to put it back); false if it was not sampled.  Callers ask the live
 * filter first (memprof_live_maybe). */
bool memprof_take_sample(void *ptr, struct memprof_taken *taken) HIDDEN;
void memprof_restore_sample(void *ptr, const struct memprof_taken *taken) HIDDEN;
/* A sample taken for good: its lifetime counted (lifetimes.c). */
void memprof_sample_ended(const struct memprof_taken *taken) HIDDEN;

/* Device and HAL heaps (hooks_device.c calls these; key: pointer or handle). */
void memprof_device_alloc(enum memprof_heap heap, uintptr_t key, uint64_t size, uint64_t label) HIDDEN;
/* false: key was no live sample of the heap */
bool memprof_device_free(enum memprof_heap heap, uintptr_t key) HIDDEN;
/* A noted event of a device heap, its stack taken here and kept apart from the
 * heap's own stacks; the removal of the latest note of an address. */
void memprof_device_note(enum memprof_note_list list, enum memprof_heap heap,
                         struct memprof_note note) HIDDEN;
void memprof_device_unnote(enum memprof_note_list list, enum memprof_heap heap,
                           uint64_t address) HIDDEN;

/* Samples the tables had no room for in the open window, by cause, and the
 * allocations (unsampled) they stood for. */
struct memprof_drops {
    _Atomic uint64_t stack_table;   /* no stack id: missing from every figure */
    _Atomic uint64_t live_table;    /* counted as allocated, missing from in-use */
    _Atomic uint64_t memory;        /* no per-thread block: missing from every figure */
    _Atomic uint64_t bytes;         /* unsampled bytes of all of them */
};
extern struct memprof_drops memprof_drops HIDDEN;
void memprof_drops_reset(void) HIDDEN;
struct memprof_drop_counts memprof_drops_now(void) HIDDEN;

/* Called by every allocation hook after the real allocator returned. */
static inline void memprof_on_alloc(void *ptr, size_t size)
{
    uint32_t window = atomic_load_explicit(&memprof_active_window, memory_order_relaxed);
    if (LIKELY(window == 0) || UNLIKELY(ptr == NULL))
        return;
    struct memprof_thread *t = &memprof_thread;
    if (UNLIKELY(t->python_depth != 0))
        return;   /* one allocation, counted once: by the Python wrapper around this call */
    if (LIKELY(t->window == window) && (t->countdown -= (int64_t)size) > 0)
        return;
    memprof_sample_slow(ptr, size, window);
}

/* For a hook that passes a request on by a tail call: true when the allocation of
 * `size` bytes about to be made is not sampled (no window, or the thread's countdown
 * stays above zero, and is taken down here); false: make it, then call
 * memprof_on_alloc, which decides as always. */
static inline bool memprof_alloc_unsampled(size_t size)
{
    uint32_t window = atomic_load_explicit(&memprof_active_window, memory_order_relaxed);
    if (LIKELY(window == 0))
        return true;
    struct memprof_thread *t = &memprof_thread;
    if (LIKELY(t->window == window) && t->countdown > (int64_t)size) {
        t->countdown -= (int64_t)size;
        return true;
    }
    return false;
}

/* Whether the free of ptr has to go to memprof_free_slow: a window is open and
 * ptr may be a live sample. */
static inline bool memprof_free_may_be_sampled(void *ptr)
{
    return UNLIKELY(atomic_load_explicit(&memprof_active_window, memory_order_relaxed) != 0) &&
           memprof_live_maybe((uintptr_t)ptr);
}

/* Called by every free hook before the real free. */
static inline void memprof_on_free(void *ptr)
{
    if (UNLIKELY(memprof_free_may_be_sampled(ptr)))
        memprof_free_slow(ptr);
}

/* A realloc's old block is a free, recorded before the allocator may hand its
 * address to another thread; when the realloc fails the block stays live and
 * its sample is put back.  Then the new block is an allocation (memprof_on_alloc). */
struct memprof_moved {
    bool sampled;
    struct memprof_taken taken;
};

static inline struct memprof_moved memprof_on_realloc(void *old)
{
    struct memprof_moved m = {.sampled = false};
    if (UNLIKELY(atomic_load_explicit(&memprof_active_window, memory_order_relaxed) != 0) &&
        old != NULL && memprof_live_maybe((uintptr_t)old))
        m.sampled = memprof_take_sample(old, &m.taken);
    return m;
}

static inline void memprof_on_realloc_done(struct memprof_moved m, void *old, bool failed)
{
    if (LIKELY(!m.sampled))
        return;
    if (failed)
        memprof_restore_sample(old, &m.taken);
    else
        memprof_sample_ended(&m.taken);
}

#endif
