/* glibc's own dlsym, behind our interposed one (hooks_dlsym.c). */
#ifndef MEMPROF_HOOKS_DLSYM_H
#define MEMPROF_HOOKS_DLSYM_H

#include "common.h"

extern void *(*memprof_real_dlsym)(void *, const char *) HIDDEN;
void *memprof_resolve_dlsym(void) HIDDEN;

#endif
