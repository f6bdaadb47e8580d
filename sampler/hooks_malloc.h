/* The malloc family's hooks (hooks_malloc.c). */
#ifndef MEMPROF_HOOKS_MALLOC_H
#define MEMPROF_HOOKS_MALLOC_H

#include "common.h"

/* Our own hook of a relocated name, or NULL (for got_hooks.c). */
void *memprof_malloc_hook_for(const char *name) HIDDEN;
/* Finds the real functions and whether this sampler was injected (process.c, at its
 * set-up). */
void memprof_malloc_resolve(void) HIDDEN;

#endif
