/* Deduplicated stack table.  A stack is its frames plus the heap it allocated
 * from and a label (the HAL's allocation flags; 0 elsewhere), so each id
 * belongs to one heap.  Open addressing over a preallocated (mmap)
 * array; lookups and inserts take no lock: a slot is claimed by a CAS on its
 * hash word, the claimant copies the frames into a shared frame pool, takes
 * the next dense id and then publishes the slot.  Ids are stable for the life
 * of the process (a forked child starts over) and index the per-thread
 * counters (thread_block.c).  When the table or the frame pool is full, new
 * stacks are refused and the sample is dropped. */
#include <sched.h>
#include <string.h>

#include "memprof_internal.h"

/* A claimed slot stays SLOT_EMPTY until its frames are copied. */
enum { SLOT_EMPTY = 0, SLOT_READY = 1, SLOT_DEAD = 2 };
#define MAX_PROBES 128

struct stack_slot {                 /* read-only once published */
    _Atomic uint64_t hash;
    _Atomic uint32_t state;
    uint32_t id;
};

struct stack_record {                /* by id */
    uint64_t frames_at;              /* index into the frame pool */
    uint64_t label;
    uint32_t depth;
    uint32_t heap;
};

static struct stack_slot *slots;
static struct stack_record *records;
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
    /* Room for every stack at the largest depth: reserved, not committed (NORESERVE,
     * touched as stacks arrive), so an interpreter's deep stacks (a Python program's
     * hold its Python frames besides native ones often at the depth limit) fill the
     * table before the pool. */
    frame_pool_len = (uint64_t)capacity * MEMPROF_MAX_DEPTH;
    slots = memprof_map(sizeof(*slots) * nslots);
    records = memprof_map(sizeof(*records) * capacity);
    frame_pool = memprof_map(sizeof(uintptr_t) * frame_pool_len);
    if (slots == NULL || records == NULL || frame_pool == NULL ||
        memprof_stack_counts_init(capacity) != 0)
        return -1;
    slot_mask = nslots - 1;
    max_stacks = capacity;
    return 0;
}

void memprof_stack_table_reset(void)
{
    memprof_zero_pages(slots, sizeof(*slots) * ((size_t)slot_mask + 1));
    memprof_zero_pages(records, sizeof(*records) * max_stacks);
    memprof_zero_pages(frame_pool, sizeof(uintptr_t) * frame_pool_len);
    atomic_store(&used_stacks, 0);
    atomic_store(&frame_pool_used, 0);
}

static uint64_t hash_stack(const struct memprof_stack_key *k)
{
    const uintptr_t *frames = k->frames;
    int depth = k->depth;
    uint64_t h = (0x84222325cbf29ce4ull ^ (uint64_t)depth ^ (uint64_t)k->heap << 40) + k->label;
    for (int i = 0; i < depth; i++) {
        h ^= frames[i];
        h *= 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    return h ? h : 1;
}

static bool same_stack(const struct stack_slot *s, const struct memprof_stack_key *k)
{
    const struct stack_record *r = &records[s->id];
    return r->depth == (uint32_t)k->depth && r->heap == k->heap && r->label == k->label &&
           memcmp(frame_pool + r->frames_at, k->frames, sizeof(uintptr_t) * (size_t)k->depth) == 0;
}

/* The claimant of a slot fills it in; a dead slot keeps its hash so probes
 * for other stacks pass over it. */
static uint32_t fill_slot(uint32_t i, const struct memprof_stack_key *k)
{
    struct stack_slot *s = &slots[i];
    int depth = k->depth;
    uint64_t at = atomic_fetch_add_explicit(&frame_pool_used, (uint64_t)depth, memory_order_relaxed);
    uint32_t id = atomic_fetch_add_explicit(&used_stacks, 1, memory_order_relaxed);
    if (id >= max_stacks || at + (uint64_t)depth > frame_pool_len) {
        atomic_store_explicit(&s->state, SLOT_DEAD, memory_order_release);
        return STACK_NONE;
    }
    memcpy(frame_pool + at, k->frames, sizeof(uintptr_t) * (size_t)depth);
    records[id] = (struct stack_record){.frames_at = at, .label = k->label,
                                        .depth = (uint32_t)depth, .heap = k->heap};
    s->id = id;
    atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
    return id;
}

uint32_t memprof_stack_intern(const struct memprof_stack_key *k)
{
    uint64_t h = hash_stack(k);
    uint32_t i = (uint32_t)h & slot_mask;
    for (int probe = 0; probe < MAX_PROBES; probe++, i = (i + 1) & slot_mask) {
        struct stack_slot *s = &slots[i];
        uint64_t seen = atomic_load_explicit(&s->hash, memory_order_acquire);
        if (seen == 0) {
            uint64_t expected = 0;
            if (atomic_compare_exchange_strong(&s->hash, &expected, h))
                return fill_slot(i, k);
            seen = expected;
        }
        if (seen != h)
            continue;
        uint32_t state;
        while ((state = atomic_load_explicit(&s->state, memory_order_acquire)) < SLOT_READY)
            sched_yield();   /* another thread is copying this stack's frames */
        if (state == SLOT_READY && same_stack(s, k))
            return s->id;
    }
    return STACK_NONE;
}

uint32_t memprof_stack_ids(void)
{
    uint32_t n = atomic_load_explicit(&used_stacks, memory_order_acquire);
    return n < max_stacks ? n : max_stacks;
}

void memprof_stack_get(uint32_t id, struct memprof_stack_key *k)
{
    const struct stack_record *r = &records[id];
    *k = (struct memprof_stack_key){frame_pool + r->frames_at, (int)r->depth, r->heap, r->label};
}
