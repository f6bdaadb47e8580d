/* CPython's allocators, wrapped while a window is open (hooks_python.c). */
#ifndef MEMPROF_HOOKS_PYTHON_H
#define MEMPROF_HOOKS_PYTHON_H

#include "base/common.h"

void memprof_pymem_find(void) HIDDEN;         /* a window is about to open */
void memprof_pymem_sync(void) HIDDEN;         /* a window opened or closed */
/* For the control thread (a thread-less process's samples): 0, or the time (memprof_now_ns) to call it again, while an
 * interpreter found at a window's start is not initialized yet. */
uint64_t memprof_pymem_poll(void) HIDDEN;
void memprof_pymem_after_fork(void) HIDDEN;

#endif
