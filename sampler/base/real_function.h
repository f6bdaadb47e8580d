/* The real functions of other libraries' hooks (real_function.c). */
#ifndef MEMPROF_REAL_FUNCTION_H
#define MEMPROF_REAL_FUNCTION_H

#include "base/common.h"

struct memprof_real_fn {
    const char *symbol;
    const char *library;      /* basename prefix of the library defining it */
    const char *fallback;     /* a twin with the same signature, or NULL */
    _Atomic(void *) fn;
};
void *memprof_real_function(struct memprof_real_fn *r) HIDDEN;

/* glibc's own dlsym, behind our interposed one (hooks_dlsym.c), which the dlsym stub
 * (arch/<arch>.S) calls too. */
extern void *(*memprof_real_dlsym)(void *, const char *) HIDDEN;
void *memprof_resolve_dlsym(void) HIDDEN;

#endif
