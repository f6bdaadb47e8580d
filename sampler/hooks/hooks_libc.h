/* The C library's calls the sampler sees besides the allocator's: pthread_exit,
 * _exit, _Exit and the set*id calls (hooks_libc.c). */
#ifndef MEMPROF_HOOKS_LIBC_H
#define MEMPROF_HOOKS_LIBC_H

#include "base/common.h"

/* The set*id calls' real functions found now, before a vfork child, which shares the
 * loader's locks, may need them. */
void memprof_libc_resolve(void) HIDDEN;
/* Our hook of a relocated name of these calls, or NULL. */
void *memprof_libc_hook_for(const char *name) HIDDEN;

#endif
