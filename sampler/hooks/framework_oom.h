/* A framework's own out-of-memory error, the moment its caching allocator gives up
 * (framework_oom.c). */
#ifndef MEMPROF_FRAMEWORK_OOM_H
#define MEMPROF_FRAMEWORK_OOM_H

#include "base/common.h"
#include "base/thread_state.h"

/* A device allocation made from the code at `caller` failed: true when the library
 * there raises the framework's error itself, the failure then kept as the thread's
 * pending one (written if the error is raised); false when it is to be written now. */
bool memprof_framework_defers(uintptr_t caller, enum memprof_heap heap, uint64_t bytes,
                              int error) HIDDEN;
/* A device allocation of this thread succeeded: its pending failure was retried. */
static inline void memprof_framework_retried(void) { memprof_thread.pending_failure.window = 0; }
/* Our __cxa_throw for GOT redirection (got_hooks.c), or NULL for another name. */
void *memprof_framework_hook_for(const char *name) HIDDEN;

#endif
