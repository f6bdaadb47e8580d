/* The calling-context tree.  A stack is a chain of nodes from the root: a node is
 * (parent node, frame), made once, so a new stack costs only the frames it does
 * not share from the root with the stacks seen before, and no stack is stored in
 * full (ARCHITECTURE.md, "Interning").
 *
 * Two interning tables, each a record array by dense id and a hash index
 * (hash_index.c: found without a lock, made under the index's): frames (an
 * address, or a Python frame's pseudo-address) and nodes (parent id, frame id and
 * the high half of the path's hash: 12 bytes).  Ids only grow, and a parent is
 * always made before its children, so a parent's id is below its child's.  Ids are
 * stable for the life of the process; a forked child starts over, and a generation
 * tells the threads' chain memos so. */
#include <string.h>

#include "base/sysutil.h"
#include "base/thread_state.h"
#include "tables/frame_tree.h"
#include "tables/hash_index.h"

/* A node as kept.  The index reads only the high half of a hash (its slot and tag),
 * so that half is what a growth places the node by again; leaf_by_path tells a chain
 * by it, its parent's and its frame. */
struct node_record {
    uint32_t parent, frame;
    uint32_t path_high;
};

static struct memprof_index frame_index, node_index;
static uintptr_t *frames;
static struct node_record *nodes;
static uint32_t max_nodes;
static _Atomic uint32_t used_frames, used_nodes;
static _Atomic uint32_t generation = 1;

static uint64_t frame_hash(const struct memprof_index *x, uint32_t id);
static uint64_t node_hash(const struct memprof_index *x, uint32_t id);

int memprof_tree_init(uint32_t capacity)
{
    /* Reserved, not committed: pages are touched as entries arrive.  A node makes
     * at most one new frame, so the frames never outnumber the nodes. */
    frames = memprof_map(sizeof(*frames) * capacity);
    nodes = memprof_map(sizeof(*nodes) * ((size_t)capacity + 1));
    if (frames == NULL || nodes == NULL ||
        memprof_index_init(&frame_index, capacity, frame_hash) != 0 ||
        memprof_index_init(&node_index, capacity, node_hash) != 0)
        return -1;
    max_nodes = capacity;
    atomic_store(&used_nodes, 1);   /* id 0 is the root */
    return 0;
}

void memprof_tree_reset(void)
{
    memprof_index_reset(&frame_index);
    memprof_index_reset(&node_index);
    memprof_zero_pages(frames, sizeof(*frames) * max_nodes);
    memprof_zero_pages(nodes, sizeof(*nodes) * ((size_t)max_nodes + 1));
    atomic_store(&used_frames, 0);
    atomic_store(&used_nodes, 1);
    atomic_fetch_add(&generation, 1);
}

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    return x ^ x >> 29;   /* the index reads the high half */
}

/* ---- frames ---- */
static inline uint64_t hash_of_frame(uintptr_t frame) { return mix(frame * 0xff51afd7ed558ccdull); }

static uint64_t frame_hash(const struct memprof_index *x, uint32_t id)
{
    (void)x;
    return hash_of_frame(frames[id]);
}

static bool same_frame(uint32_t id, const void *key)
{
    return frames[id] == *(const uintptr_t *)key;
}

static uint32_t make_frame(const void *key)
{
    uint32_t id = atomic_load_explicit(&used_frames, memory_order_relaxed);
    if (id >= max_nodes)
        return MEMPROF_INDEX_NONE;
    frames[id] = *(const uintptr_t *)key;
    atomic_store_explicit(&used_frames, id + 1, memory_order_release);
    return id;
}

/* The thread's memo first: a program's frames are few beside its nodes, so most are
 * found there without a miss into the shared index. */
static uint32_t frame_id(uintptr_t frame, uint32_t gen)
{
    uint64_t h = hash_of_frame(frame);
    struct memprof_memos *memos = memprof_thread.memos;
    __typeof__(memos->frames[0]) *memo =
        memos ? &memos->frames[h & (MEMPROF_FRAME_MEMOS - 1)] : NULL;
    if (memo != NULL && memo->frame == frame && memo->generation == gen)
        return memo->id;
    struct memprof_index_key key = {&frame, same_frame};
    uint32_t id = memprof_index_intern(&frame_index, h, &key, make_frame);
    if (memo != NULL && id != MEMPROF_INDEX_NONE)
        *memo = (__typeof__(*memo)){frame, id, gen};
    return id;
}

/* ---- nodes ----
 * A node is found by the hash of its whole path from the root, not of (parent id,
 * frame): the hashes of a chain's levels need no lookup, so the index slots and
 * node records of many levels are fetched at once before the levels are walked
 * one by one, instead of one cache miss after the other.  A level is taken when its
 * parent and frame are the ones asked for; only a whole chain's leaf is found by its
 * hash alone (leaf_by_path). */
struct node_key {
    uint32_t parent;
    uintptr_t frame;
    uint64_t path;
};

/* One multiply per level, as the levels are hashed one after the other: the product's
 * high half (well mixed) feeds the next level's low bits through the rotation, and is
 * what the index reads. */
static inline uint64_t path_hash(uint64_t parent_path, uintptr_t frame)
{
    uint64_t p = parent_path << 27 | parent_path >> 37;
    return ((p ^ frame) + 0x632be59bd9b4e019ull) * 0xff51afd7ed558ccdull;
}

static inline uint32_t path_high(uint64_t path) { return (uint32_t)(path >> 32); }

static bool same_node(uint32_t id, const void *key)
{
    const struct node_key *k = key;
    const struct node_record *n = &nodes[id];
    return n->parent == k->parent && frames[n->frame] == k->frame;
}

static uint32_t make_node(const void *key)
{
    const struct node_key *k = key;
    uint32_t id = atomic_load_explicit(&used_nodes, memory_order_relaxed);
    if (id > max_nodes)
        return MEMPROF_INDEX_NONE;
    uint32_t frame = frame_id(k->frame, memprof_tree_generation());
    if (frame == MEMPROF_INDEX_NONE)
        return MEMPROF_INDEX_NONE;
    nodes[id] = (struct node_record){k->parent, frame, path_high(k->path)};
    atomic_store_explicit(&used_nodes, id + 1, memory_order_release);
    return id;
}

static inline __typeof__(((struct memprof_memos *)0)->nodes[0]) *
node_memo(struct memprof_memos *memos, uint64_t path)
{
    return &memos->nodes[path >> 32 & (MEMPROF_NODE_MEMOS - 1)];
}

/* The thread's memo of nodes first: the calls a program makes again are found in a
 * few lines this core has seen lately, not in the shared index. */
static uint32_t node_intern(struct memprof_memos *memos, uint32_t parent, uintptr_t frame,
                            uint64_t path)
{
    __typeof__(memos->nodes[0]) *memo = memos ? node_memo(memos, path) : NULL;
    if (memo != NULL && memo->frame == frame && memo->parent == parent && memo->node != 0)
        return memo->node;
    struct node_key k = {parent, frame, path};
    struct memprof_index_key key = {&k, same_node};
    uint32_t id = memprof_index_intern(&node_index, path, &key, make_node);
    if (id == MEMPROF_INDEX_NONE)
        return NODE_NONE;
    if (memo != NULL)
        *memo = (__typeof__(*memo)){frame, parent, id};
    return id;
}

/* How much of the chain, from the root, the memo holds (0: none), and its node there. */
static uint32_t shared_part(const struct memprof_chain_memo *memo, uint32_t gen, uintptr_t head,
                            const uintptr_t *leaf_first, uint32_t len)
{
    if (memo->generation != gen || memo->len == 0 || memo->frames[0] != head)
        return 0;
    uint32_t limit = len < memo->len ? len : memo->len, j = 1;
    while (j < limit && memo->frames[j] == leaf_first[len - 1 - j])
        j++;
    return j;
}

/* Levels fetched ahead at a time: about the misses a core keeps in flight. */
#define FETCH_AHEAD 16

static uint64_t node_hash(const struct memprof_index *x, uint32_t id)
{
    (void)x;
    return (uint64_t)nodes[id].path_high << 32;
}

/* The chain's leaf, found by the hashes of its whole path and of its parent's and by
 * its frame, with no lookup of a level above it: 64 bits of hash, and a sibling (the
 * same parent) told apart by its frame.  MEMPROF_INDEX_NONE when the chain is new. */
static bool same_path(uint32_t id, const void *key)
{
    const struct memprof_chain *c = key;
    const struct node_record *n = &nodes[id];
    return n->path_high == path_high(c->leaf_path) &&
           nodes[n->parent].path_high == path_high(c->parent_path) &&
           frames[n->frame] == (c->n > 0 ? c->frames[0] : c->head);
}

static uint32_t leaf_by_path(const struct memprof_chain *c)
{
    struct memprof_index_key key = {c, same_path};
    return memprof_index_find(&node_index, c->leaf_path, &key);
}

void memprof_chain_hash(struct memprof_chain *c, uintptr_t head, const uintptr_t *frames, int n)
{
    c->head = head;
    c->frames = frames;
    c->n = n;
    uint32_t len = (uint32_t)n + 1;
    uint64_t path = 0, parent = 0;
    for (uint32_t i = 0; i < len; i++) {
        parent = path;
        path = path_hash(path, i == 0 ? head : frames[len - 1 - i]);
    }
    c->leaf_path = path;
    c->parent_path = parent;
    memprof_index_prefetch(&node_index, path);
}

uint32_t memprof_chain_intern(struct memprof_chain_memos *chains, const struct memprof_chain *c)
{
    uint32_t gen = atomic_load_explicit(&generation, memory_order_relaxed);
    uintptr_t head = c->head;
    const uintptr_t *leaf_first = c->frames;
    uint32_t len = (uint32_t)c->n + 1, j = 0, node = 0;
    struct memprof_memos *memos = memprof_thread.memos;
    if (memos != NULL && memos->nodes_generation != gen) {
        memset(memos->nodes, 0, sizeof memos->nodes);
        memos->nodes_generation = gen;
    }
    /* a chain seen lately, then one seen before: known by its whole path's hash, as
     * leaf_by_path knows it, without a look at its frames */
    bool memoed = chains != NULL && len <= MEMPROF_CHAIN_ROOM;
    for (int m = 0; memoed && m < MEMPROF_CHAIN_MEMOS; m++) {
        const struct memprof_chain_memo *memo_m = &chains->chains[m];
        if (memo_m->generation == gen && memo_m->len == len &&
            memo_m->paths[len - 1] == c->leaf_path)
            return memo_m->nodes[len - 1];
    }
    uint32_t leaf = leaf_by_path(c);
    if (leaf != MEMPROF_INDEX_NONE)
        return leaf;

    /* a new chain: the memo that shares most with it, from the root */
    const struct memprof_chain_memo *best = NULL;
    for (int m = 0; memoed && m < MEMPROF_CHAIN_MEMOS; m++) {
        uint32_t shared = shared_part(&chains->chains[m], gen, head, leaf_first, len);
        if (shared > j) {
            j = shared;
            best = &chains->chains[m];
        }
    }

    struct memprof_chain_memo *memo = NULL;
    if (memoed) {
        if (best != NULL)
            node = best->nodes[j - 1];
        /* the chain replaces the oldest of the memos: they are the thread's last few */
        memo = &chains->chains[chains->next++ % MEMPROF_CHAIN_MEMOS];
        if (memo != best) {
            if (j > 0) {
                memcpy(memo->frames, best->frames, sizeof *memo->frames * j);
                memcpy(memo->paths, best->paths, sizeof *memo->paths * j);
                memcpy(memo->nodes, best->nodes, sizeof *memo->nodes * j);
            }
            memo->generation = gen;
        }
    }
    uint64_t path = j > 0 ? best->paths[j - 1] : 0;
    while (j < len) {
        uint32_t batch = len - j < FETCH_AHEAD ? len - j : FETCH_AHEAD;
        uint64_t paths[FETCH_AHEAD];
        for (uint32_t i = 0; i < batch; i++) {   /* the index slots of the levels not in the memo */
            uintptr_t frame = j + i == 0 ? head : leaf_first[len - 1 - j - i];
            paths[i] = path = path_hash(path, frame);
            if (memos == NULL || node_memo(memos, path)->frame != frame)
                memprof_index_prefetch(&node_index, path);
        }
        uint32_t ids[FETCH_AHEAD], found = 0;
        for (; found < batch; found++) {   /* then the records those slots name */
            ids[found] = memprof_index_candidate(&node_index, paths[found]);
            if (ids[found] == MEMPROF_INDEX_NONE)
                break;   /* a new node: the levels under it are new too */
            __builtin_prefetch(&nodes[ids[found]]);
        }
        for (uint32_t i = 0; i < found; i++)   /* and their frames, which tell them apart */
            __builtin_prefetch(&frames[nodes[ids[i]].frame]);
        for (uint32_t i = 0; i < batch; i++, j++) {
            uintptr_t frame = j == 0 ? head : leaf_first[len - 1 - j];
            node = node_intern(memos, node, frame, paths[i]);
            if (node == NODE_NONE) {
                if (memo != NULL)
                    memo->len = j;
                return NODE_NONE;
            }
            if (memo != NULL) {
                memo->frames[j] = frame;
                memo->paths[j] = paths[i];
                memo->nodes[j] = node;
            }
        }
    }
    if (memo != NULL)
        memo->len = len;
    return node;
}

void memprof_tree_release_lookups(void)
{
    memprof_index_release(&node_index);
    memprof_index_release(&frame_index);
}

uint32_t memprof_tree_generation(void)
{
    return atomic_load_explicit(&generation, memory_order_relaxed);
}

uint32_t memprof_tree_nodes(void)
{
    return atomic_load_explicit(&used_nodes, memory_order_acquire);
}

uint32_t memprof_tree_frames(void)
{
    return atomic_load_explicit(&used_frames, memory_order_acquire);
}

struct memprof_node memprof_tree_node(uint32_t id)
{
    return (struct memprof_node){nodes[id].parent, nodes[id].frame};
}

uintptr_t memprof_tree_frame(uint32_t frame_id_) { return frames[frame_id_]; }
