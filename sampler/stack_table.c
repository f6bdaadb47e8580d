/* Deduplicated stack table.  Open addressing over a preallocated (mmap)
 * array; lookups and inserts take no lock: a slot is claimed by a CAS on its
 * hash word, the claimant copies the frames into a shared frame pool and then
 * publishes the slot.  A stack's id is its slot index, stable for the life of
 * the process (windows only clear the counters).  When the table or the
 * frame pool is full, new stacks are refused and the sample is dropped. */
#include <sched.h>
#include <string.h>

#include "memprof_internal.h"

/* A claimed slot stays SLOT_EMPTY until its frames are copied. */
enum { SLOT_EMPTY = 0, SLOT_READY = 1, SLOT_DEAD = 2 };
#define MAX_PROBES 128

struct stack_slot {
    _Atomic uint64_t hash;
    _Atomic uint32_t state;
    uint32_t depth;
    uint64_t frames_at;              /* index into the frame pool */
    _Atomic uint64_t accum_objs;     /* sampled allocations in the window */
    _Atomic uint64_t accum_bytes;
};

static struct stack_slot *slots;
static uint32_t slot_mask;
static uint32_t max_stacks;
static _Atomic uint32_t used_stacks;
static uintptr_t *frame_pool;
static uint64_t frame_pool_len;
static _Atomic uint64_t frame_pool_used;

int memprof_stack_table_init(uint32_t capacity)
{
    uint32_t nslots = 1024;
    while (nslots < 2 * capacity)
        nslots <<= 1;
    frame_pool_len = (uint64_t)capacity * 24;   /* average depth budget */
    slots = memprof_map(sizeof(*slots) * nslots);
    frame_pool = memprof_map(sizeof(uintptr_t) * frame_pool_len);
    if (slots == NULL || frame_pool == NULL)
        return -1;
    slot_mask = nslots - 1;
    max_stacks = capacity;
    return 0;
}

void memprof_stack_table_reset(void)
{
    memprof_zero_pages(slots, sizeof(*slots) * ((size_t)slot_mask + 1));
    memprof_zero_pages(frame_pool, sizeof(uintptr_t) * frame_pool_len);
    atomic_store(&used_stacks, 0);
    atomic_store(&frame_pool_used, 0);
}

void memprof_stack_table_clear_counts(void)
{
    for (uint32_t i = 0; i <= slot_mask; i++) {
        if (atomic_load_explicit(&slots[i].state, memory_order_relaxed) != SLOT_READY)
            continue;
        atomic_store_explicit(&slots[i].accum_objs, 0, memory_order_relaxed);
        atomic_store_explicit(&slots[i].accum_bytes, 0, memory_order_relaxed);
    }
}

static uint64_t hash_frames(const uintptr_t *frames, int depth)
{
    uint64_t h = 0x84222325cbf29ce4ull ^ (uint64_t)depth;
    for (int i = 0; i < depth; i++) {
        h ^= frames[i];
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

static bool same_stack(const struct stack_slot *s, const uintptr_t *frames, int depth)
{
    return s->depth == (uint32_t)depth &&
           memcmp(frame_pool + s->frames_at, frames, sizeof(uintptr_t) * (size_t)depth) == 0;
}

/* The claimant of a slot fills it in; a dead slot keeps its hash so probes
 * for other stacks pass over it. */
static uint32_t fill_slot(uint32_t i, const uintptr_t *frames, int depth)
{
    struct stack_slot *s = &slots[i];
    uint64_t at = atomic_fetch_add_explicit(&frame_pool_used, (uint64_t)depth, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&used_stacks, 1, memory_order_relaxed) >= max_stacks ||
        at + (uint64_t)depth > frame_pool_len) {
        atomic_store_explicit(&s->state, SLOT_DEAD, memory_order_release);
        return STACK_NONE;
    }
    memcpy(frame_pool + at, frames, sizeof(uintptr_t) * (size_t)depth);
    s->frames_at = at;
    s->depth = (uint32_t)depth;
    atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
    return i;
}

uint32_t memprof_stack_intern(const uintptr_t *frames, int depth)
{
    uint64_t h = hash_frames(frames, depth);
    uint32_t i = (uint32_t)h & slot_mask;
    for (int probe = 0; probe < MAX_PROBES; probe++, i = (i + 1) & slot_mask) {
        struct stack_slot *s = &slots[i];
        uint64_t seen = atomic_load_explicit(&s->hash, memory_order_acquire);
        if (seen == 0) {
            uint64_t expected = 0;
            if (atomic_compare_exchange_strong(&s->hash, &expected, h))
                return fill_slot(i, frames, depth);
            seen = expected;
        }
        if (seen != h)
            continue;
        uint32_t state;
        while ((state = atomic_load_explicit(&s->state, memory_order_acquire)) < SLOT_READY)
            sched_yield();   /* another thread is copying this stack's frames */
        if (state == SLOT_READY && same_stack(s, frames, depth))
            return i;
    }
    return STACK_NONE;
}

void memprof_stack_account(uint32_t id, uint64_t size)
{
    atomic_fetch_add_explicit(&slots[id].accum_objs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&slots[id].accum_bytes, size, memory_order_relaxed);
}

uint32_t memprof_stack_slots(void)
{
    return slot_mask + 1;
}

bool memprof_stack_get(uint32_t id, const uintptr_t **frames, int *depth,
                       uint64_t *accum_objs, uint64_t *accum_bytes)
{
    const struct stack_slot *s = &slots[id];
    if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
        return false;
    *frames = frame_pool + s->frames_at;
    *depth = (int)s->depth;
    *accum_objs = atomic_load_explicit(&s->accum_objs, memory_order_relaxed);
    *accum_bytes = atomic_load_explicit(&s->accum_bytes, memory_order_relaxed);
    return true;
}
