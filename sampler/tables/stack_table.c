/* The stack table.  A stack is what one sample met: a native chain and a Python
 * chain of the calling-context tree (frame_tree.c), and the heap it allocated from
 * with its label (the HAL's allocation flags; 0 elsewhere), which head the native
 * chain, so each id belongs to one heap.  Its record (the chains' leaf nodes and
 * the heap) goes into an array by dense id, and a hash index (hash_index.c) finds
 * the id again: found without a lock, made under the index's.  Ids are stable for
 * the life of the process (a forked child starts over) and index the per-thread
 * counters (thread_block.c).  When the table or the tree is full, new stacks are
 * refused and the sample is dropped. */
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "tables/frame_tree.h"
#include "tables/hash_index.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"

struct stack_record {                /* by id; written before its id is published */
    uint32_t native, python, heap;
};

static struct memprof_index index_of_stacks;
static struct stack_record *records;
static uint32_t max_stacks;
static _Atomic uint32_t used_stacks;

static inline uint64_t hash_of_stack(uint32_t native, uint32_t python)
{
    return ((uint64_t)native << 32 | python) * 0x9e3779b97f4a7c15ull;
}

static uint64_t stack_hash(const struct memprof_index *x, uint32_t id)
{
    (void)x;
    return hash_of_stack(records[id].native, records[id].python);
}

int memprof_stack_table_init(uint32_t capacity, uint32_t max_nodes)
{
    records = memprof_map(sizeof(*records) * capacity);
    if (records == NULL || memprof_index_init(&index_of_stacks, capacity, stack_hash) != 0 ||
        memprof_tree_init(max_nodes) != 0 || memprof_stack_counts_init(capacity) != 0)
        return -1;
    max_stacks = capacity;
    return 0;
}

void memprof_stack_table_reset(void)
{
    memprof_index_reset(&index_of_stacks);
    memprof_zero_pages(records, sizeof(*records) * max_stacks);
    atomic_store(&used_stacks, 0);
    memprof_tree_reset();
}

/* A native chain's head: the heap (bits 0-8) and the HAL's device (label bits
 * 0-9), memory type (10-13) and module (56-63), which is what reports show of it. */
static uintptr_t context_frame(uint32_t heap, uint64_t label)
{
    return MEMPROF_HEAD_BASE | (label >> 56) << 32 | (label & 0x3fff) << 12 | (heap & 0x1ff);
}

/* The label a HAL context frame holds. */
static uint64_t context_label(uintptr_t head)
{
    return (head >> 32 & 0xff) << 56 | (head >> 12 & 0x3fff);
}

static bool same_stack(uint32_t id, const void *key)
{
    const struct stack_record *k = key, *r = &records[id];
    return r->native == k->native && r->python == k->python;
}

static uint32_t make_stack(const void *key)
{
    uint32_t id = atomic_load_explicit(&used_stacks, memory_order_relaxed);
    if (id >= max_stacks)
        return MEMPROF_INDEX_NONE;
    records[id] = *(const struct stack_record *)key;
    atomic_store_explicit(&used_stacks, id + 1, memory_order_release);
    return id;
}

/* A stack the thread met lately is found by the hashes of its two chains' whole paths
 * (64 bits each, as a chain's leaf is: frame_tree.c) in its memo of stacks, with no
 * look into the tree; another through the chain memos and the tree, then the table. */
uint32_t memprof_stack_intern(const struct memprof_stack_key *k)
{
    struct memprof_memos *memos = memprof_thread.memos;
    struct stack_record r = {0, 0, k->heap};
    struct memprof_chain native, python = {.leaf_path = 0};   /* both hashed first */
    memprof_chain_hash(&native, context_frame(k->heap, k->label), k->frames, k->depth);
    if (k->python_len > 0)
        memprof_chain_hash(&python, MEMPROF_PYTHON_HEAD, k->python, k->python_len);
    uint32_t generation = memprof_tree_generation();
    __typeof__(memos->stacks[0]) *memo = NULL;
    if (memos != NULL) {
        uint64_t h = (native.leaf_path ^ python.leaf_path * 0x9e3779b97f4a7c15ull) >> 40;
        memo = &memos->stacks[h & (MEMPROF_STACK_MEMOS - 1)];
        if (memo->native == native.leaf_path && memo->python == python.leaf_path &&
            memo->generation == generation)
            return memo->id;
    }
    r.native = memprof_chain_intern(memos ? &memos->native : NULL, &native);
    if (r.native == NODE_NONE)
        return STACK_NONE;
    if (k->python_len > 0) {
        r.python = memprof_chain_intern(memos ? &memos->python : NULL, &python);
        if (r.python == NODE_NONE)
            return STACK_NONE;
    }
    struct memprof_index_key key = {&r, same_stack};
    uint32_t id = memprof_index_intern(&index_of_stacks, hash_of_stack(r.native, r.python), &key,
                                       make_stack);
    if (id == MEMPROF_INDEX_NONE)
        return STACK_NONE;
    if (memo != NULL)
        *memo = (__typeof__(*memo)){native.leaf_path, python.leaf_path, generation, id};
    return id;
}

void memprof_stack_table_release_lookups(void)
{
    memprof_index_release(&index_of_stacks);
    memprof_tree_release_lookups();
}

uint32_t memprof_stack_ids(void)
{
    return atomic_load_explicit(&used_stacks, memory_order_acquire);
}

uint32_t memprof_stack_heap(uint32_t id) { return records[id].heap; }

struct memprof_stack memprof_stack_get(uint32_t id)
{
    const struct stack_record *r = &records[id];
    struct memprof_stack s = {r->native, r->python, r->heap, 0};
    if ((r->heap & 0xff) == HEAP_HAL) {   /* the label is in the native chain's head */
        uint32_t n = r->native;
        struct memprof_node node = memprof_tree_node(n);
        for (; node.parent != 0; node = memprof_tree_node(n))
            n = node.parent;
        s.label = context_label(memprof_tree_frame(node.frame));
    }
    return s;
}
