/* The interposed dlsym (hooks_dlsym.c and the stub of arch/<arch>.S): an explicit
 * handle's answer, a device entry point swapped for our wrapper. */
#ifndef MEMPROF_HOOKS_DLSYM_H
#define MEMPROF_HOOKS_DLSYM_H

#include "base/common.h"

void *memprof_dlsym_handle(void *handle, const char *name) HIDDEN;

#endif
