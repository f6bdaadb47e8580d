/* Hooks by GOT redirection in an injected sampler (got_hooks.c). */
#ifndef MEMPROF_GOT_HOOKS_H
#define MEMPROF_GOT_HOOKS_H

#include "base/common.h"

typedef void *memprof_hook_lookup(const char *name);

/* The hooks the slots take: interposers.c's table, given once as the process is set up
 * (process.c), before a slot is redirected. */
void memprof_got_hooks_from(memprof_hook_lookup *lookup) HIDDEN;
bool memprof_detect_injection(void) HIDDEN;   /* once, from a constructor */
bool memprof_is_injected(void) HIDDEN;
int memprof_got_arm(void) HIDDEN;              /* when a window opens; no-op if preloaded */
void memprof_got_disarm(void) HIDDEN;          /* when it closes: every slot back */
void memprof_got_after_fork(void) HIDDEN;
uint32_t memprof_got_redirected(void) HIDDEN;  /* slots holding a hook now */
/* Our hook of dlopen (which redirects a library loaded later) and dlsym, or NULL. */
void *memprof_loader_hook_for(const char *name) HIDDEN;

#endif
