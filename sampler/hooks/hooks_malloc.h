/* The malloc family's hooks (hooks_malloc.c). */
#ifndef MEMPROF_HOOKS_MALLOC_H
#define MEMPROF_HOOKS_MALLOC_H

#include "base/common.h"

/* Our own hook of a relocated name, or NULL (for got_hooks.c). */
void *memprof_malloc_hook_for(const char *name) HIDDEN;
/* Finds the real functions, whether this sampler was injected, and the program's own
 * malloc (process.c, at its set-up). */
void memprof_malloc_resolve(void) HIDDEN;
/* The sentence saying that the program's malloc is its own, which no hook sees, or "". */
const char *memprof_own_malloc(void) HIDDEN;

#endif
