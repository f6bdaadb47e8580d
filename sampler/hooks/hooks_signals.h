/* sigaction, signal and the masks, as the program calls them (hooks_signals.c). */
#ifndef MEMPROF_HOOKS_SIGNALS_H
#define MEMPROF_HOOKS_SIGNALS_H

#include "base/common.h"

/* Our hook of a relocated name of these calls, or NULL. */
void *memprof_signals_hook_for(const char *name) HIDDEN;

#endif
