/* The sampler's set-up in its process (process.c). */
#ifndef MEMPROF_PROCESS_H
#define MEMPROF_PROCESS_H

#include "base/common.h"

/* Once per process, by the first of: the first call into the malloc hooks once the
 * environment is set, the sampler's constructor.  Returns at once when it is done or
 * in hand on another thread. */
void memprof_process_set_up(void) HIDDEN;

#endif
