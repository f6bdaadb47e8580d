/* Hooks by GOT redirection in an injected sampler (got_hooks.c). */
#ifndef MEMPROF_GOT_HOOKS_H
#define MEMPROF_GOT_HOOKS_H

#include "base/common.h"

bool memprof_detect_injection(void) HIDDEN;   /* once, from a constructor */
bool memprof_is_injected(void) HIDDEN;
int memprof_got_arm(void) HIDDEN;              /* when a window opens; no-op if preloaded */
void memprof_got_disarm(void) HIDDEN;          /* when it closes: every slot back */
void memprof_got_after_fork(void) HIDDEN;
uint32_t memprof_got_redirected(void) HIDDEN;  /* slots holding a hook now */

#endif
