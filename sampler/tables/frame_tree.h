/* The calling-context tree (frame_tree.c): every distinct frame once, every
 * (caller node, frame) once, each named by a dense id. */
#ifndef MEMPROF_FRAME_TREE_H
#define MEMPROF_FRAME_TREE_H

#include "base/common.h"
#include "base/thread_state.h"

#define NODE_NONE UINT32_MAX
/* A chain's first node, under the root (parent 0): what the chain is of, never a
 * frame.  Native chains start at their heap's context (context_frame in
 * stack_table.c), Python chains at MEMPROF_PYTHON_HEAD. */
#define MEMPROF_HEAD_BASE 0x5078000000000000ull
#define MEMPROF_PYTHON_HEAD (MEMPROF_HEAD_BASE | 0xffffull)

struct memprof_node {
    uint32_t parent;              /* 0: the root */
    uint32_t frame;               /* id of its frame */
};

int memprof_tree_init(uint32_t max_nodes) HIDDEN;
void memprof_tree_reset(void) HIDDEN;   /* single-threaded: a forked child */
/* The indexes' memory given back, the nodes and frames kept: for the last dump of a
 * process, which reads the tree without a lookup.  A chain interned after it gets
 * nodes of its own again, as the indexes no longer know the old ones. */
void memprof_tree_release_lookups(void) HIDDEN;
/* A chain: its head, then frames[n-1] ... frames[0] (frames leaf first), and the
 * hashes of its whole path and of its leaf's parent's. */
struct memprof_chain {
    uintptr_t head;
    const uintptr_t *frames;
    int n;
    uint64_t leaf_path, parent_path;
};
/* Hashes the chain and starts fetching where its leaf would be found, so that the
 * caller can go on with other work (another chain) while that line comes in. */
void memprof_chain_hash(struct memprof_chain *c, uintptr_t head, const uintptr_t *frames,
                        int n) HIDDEN;
/* The node of the chain's leaf, interned on first sight; NODE_NONE when the tree is
 * full.  chains (the thread's memos of its last chains) may be NULL. */
uint32_t memprof_chain_intern(struct memprof_chain_memos *chains,
                              const struct memprof_chain *c) HIDDEN;
uint32_t memprof_tree_generation(void) HIDDEN;   /* moves when the tree is emptied */
uint32_t memprof_tree_nodes(void) HIDDEN;    /* node ids in use are 1 .. this - 1 */
uint32_t memprof_tree_frames(void) HIDDEN;   /* frame ids in use are < this */
struct memprof_node memprof_tree_node(uint32_t id) HIDDEN;
uintptr_t memprof_tree_frame(uint32_t frame_id) HIDDEN;

#endif
