/* The deduplicated stacks (stack_table.c), each named by a dense id. */
#ifndef MEMPROF_STACK_TABLE_H
#define MEMPROF_STACK_TABLE_H

#include "common.h"

#define STACK_NONE UINT32_MAX

struct memprof_stack_key {
    const uintptr_t *frames;
    int depth;
    uint32_t heap;       /* enum memprof_heap */
    uint64_t label;      /* HAL allocation flags; 0 for other heaps */
};
int memprof_stack_table_init(uint32_t capacity) HIDDEN;
void memprof_stack_table_reset(void) HIDDEN;
/* The dense id of a stack (interned on first sight), or STACK_NONE if full. */
uint32_t memprof_stack_intern(const struct memprof_stack_key *k) HIDDEN;
uint32_t memprof_stack_ids(void) HIDDEN;   /* ids in use are < this */
void memprof_stack_get(uint32_t id, struct memprof_stack_key *k) HIDDEN;

#endif
