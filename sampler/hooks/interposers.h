/* Every function of the program's that the sampler interposes, by family
 * (interposers.c): preloaded, each is an exported definition in its family's file;
 * injected, the GOT slots of these names are redirected to them (got_hooks.c). */
#ifndef MEMPROF_INTERPOSERS_H
#define MEMPROF_INTERPOSERS_H

#include "base/common.h"

/* Our hook of a relocated name, or NULL: a function the sampler lets be. */
void *memprof_hook_for(const char *name) HIDDEN;

#endif
