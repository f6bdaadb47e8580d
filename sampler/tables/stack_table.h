/* The stacks (stack_table.c), each named by a dense id: a native chain and a Python
 * chain of the calling-context tree (frame_tree.c), of one heap. */
#ifndef MEMPROF_STACK_TABLE_H
#define MEMPROF_STACK_TABLE_H

#include "base/common.h"

#define STACK_NONE UINT32_MAX

/* What a sample met: its native frames, leaf first; its Python frames, innermost
 * first, each group ended by MEMPROF_PY_GROUP_END (python_frames.h); its heap and
 * label (the HAL's allocation flags, 0 elsewhere). */
struct memprof_stack_key {
    const uintptr_t *frames;
    int depth;
    const uintptr_t *python;
    int python_len;
    uint32_t heap;       /* enum memprof_heap, | MEMPROF_NOTED_HEAP for a noted event's */
    uint64_t label;
};
#define MEMPROF_NOTED_HEAP 0x100u

/* A stack as the table keeps it: the leaf nodes of its two chains (python 0: none). */
struct memprof_stack {
    uint32_t native, python;
    uint32_t heap;       /* as in the key */
    uint64_t label;
};
int memprof_stack_table_init(uint32_t max_stacks, uint32_t max_nodes) HIDDEN;
void memprof_stack_table_reset(void) HIDDEN;
/* The stacks' and the tree's indexes given back (memprof_tree_release_lookups). */
void memprof_stack_table_release_lookups(void) HIDDEN;
/* The dense id of a stack (interned on first sight), or STACK_NONE if full. */
uint32_t memprof_stack_intern(const struct memprof_stack_key *k) HIDDEN;
uint32_t memprof_stack_ids(void) HIDDEN;   /* ids in use are < this */
struct memprof_stack memprof_stack_get(uint32_t id) HIDDEN;
uint32_t memprof_stack_heap(uint32_t id) HIDDEN;   /* as in its key */

#endif
