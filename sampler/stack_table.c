/* Deduplicated stack table.  A stack is its frames plus the heap it allocated
 * from and a label (the HAL's allocation flags; 0 elsewhere), so each id
 * belongs to one heap.  A stack's frames go into a shared frame pool, its record
 * (where they are, how many, heap, label) into an array by dense id, and a
 * hash index (hash_index.c) finds the id again: found without a lock, made
 * under the index's.  Ids are stable for the life of the process (a forked
 * child starts over) and index the per-thread counters (thread_block.c).  When
 * the table or the frame pool is full, new stacks are refused and the sample is
 * dropped. */
#include <string.h>

#include "defaults.h"
#include "hash_index.h"
#include "stack_table.h"
#include "sysutil.h"
#include "thread_block.h"
#include "thread_state.h"

struct stack_record {                /* by id; written before its id is published */
    uint64_t frames_at;              /* index into the frame pool */
    uint64_t label;
    uint32_t depth;
    uint32_t heap;
};

static struct memprof_index index_of_stacks;
static struct stack_record *records;
static uint32_t max_stacks;
static _Atomic uint32_t used_stacks;
static uintptr_t *frame_pool;
static uint64_t frame_pool_len, frame_pool_used;   /* used: under the index's lock */

int memprof_stack_table_init(uint32_t capacity)
{
    /* Room for every stack at the largest depth: reserved, not committed (NORESERVE,
     * touched as stacks arrive), so an interpreter's deep stacks (a Python program's
     * hold its Python frames besides native ones often at the depth limit) fill the
     * table before the pool. */
    frame_pool_len = (uint64_t)capacity * MEMPROF_MAX_DEPTH;
    records = memprof_map(sizeof(*records) * capacity);
    frame_pool = memprof_map(sizeof(uintptr_t) * frame_pool_len);
    if (records == NULL || frame_pool == NULL || memprof_index_init(&index_of_stacks, capacity) != 0 ||
        memprof_stack_counts_init(capacity) != 0)
        return -1;
    max_stacks = capacity;
    return 0;
}

void memprof_stack_table_reset(void)
{
    memprof_index_reset(&index_of_stacks);
    memprof_zero_pages(records, sizeof(*records) * max_stacks);
    memprof_zero_pages(frame_pool, sizeof(uintptr_t) * frame_pool_len);
    atomic_store(&used_stacks, 0);
    frame_pool_used = 0;
}

static uint64_t hash_stack(const struct memprof_stack_key *k)
{
    const uintptr_t *frames = k->frames;
    int depth = k->depth;
    uint64_t h = (0x84222325cbf29ce4ull ^ (uint64_t)depth ^ (uint64_t)k->heap << 40) + k->label;
    for (int i = 0; i < depth; i++)   /* the index and the memo read the high bits */
        h = (h ^ frames[i]) * 0x9e3779b97f4a7c15ull;
    return h;
}

static bool same_stack(uint32_t id, const void *key)
{
    const struct memprof_stack_key *k = key;
    const struct stack_record *r = &records[id];
    return r->depth == (uint32_t)k->depth && r->heap == k->heap && r->label == k->label &&
           memcmp(frame_pool + r->frames_at, k->frames, sizeof(uintptr_t) * (size_t)k->depth) == 0;
}

/* Under the index's lock: the stack's frames copied and its record made. */
static uint32_t make_stack(const void *key)
{
    const struct memprof_stack_key *k = key;
    uint32_t id = atomic_load_explicit(&used_stacks, memory_order_relaxed);
    if (id >= max_stacks || frame_pool_used + (uint64_t)k->depth > frame_pool_len)
        return MEMPROF_INDEX_NONE;
    memcpy(frame_pool + frame_pool_used, k->frames, sizeof(uintptr_t) * (size_t)k->depth);
    records[id] = (struct stack_record){.frames_at = frame_pool_used, .label = k->label,
                                        .depth = (uint32_t)k->depth, .heap = k->heap};
    frame_pool_used += (uint64_t)k->depth;
    atomic_store_explicit(&used_stacks, id + 1, memory_order_release);
    return id;
}

/* The thread's memo first, then the index: a hot stack is found in a few lines
 * this core has seen lately. */
uint32_t memprof_stack_intern(const struct memprof_stack_key *k)
{
    uint64_t h = hash_stack(k);
    struct memprof_memos *memos = memprof_thread.memos;
    __typeof__(memos->stacks[0]) *memo =
        memos ? &memos->stacks[h >> 56 & (MEMPROF_STACK_MEMOS - 1)] : NULL;
    if (memo != NULL && memo->hash == h && memo->id < max_stacks && same_stack(memo->id, k))
        return memo->id;
    struct memprof_index_key key = {k, same_stack};
    uint32_t id = memprof_index_intern(&index_of_stacks, h, &key, make_stack);
    if (id == MEMPROF_INDEX_NONE)
        return STACK_NONE;
    if (memo != NULL) {
        memo->hash = h;
        memo->id = id;
    }
    return id;
}

uint32_t memprof_stack_ids(void)
{
    return atomic_load_explicit(&used_stacks, memory_order_acquire);
}

void memprof_stack_get(uint32_t id, struct memprof_stack_key *k)
{
    const struct stack_record *r = &records[id];
    *k = (struct memprof_stack_key){frame_pool + r->frames_at, (int)r->depth, r->heap, r->label};
}
