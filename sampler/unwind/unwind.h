/* Stack capture (unwind.c). */
#ifndef MEMPROF_UNWIND_H
#define MEMPROF_UNWIND_H

#include "base/common.h"

void memprof_unwind_init(void) HIDDEN;
/* Fills frames[] leaf first (the leaf is a call-site PC, the rest return
 * addresses) without the sampler's own frames; returns the depth. */
int memprof_unwind(uintptr_t *frames, int max_depth) HIDDEN;
const char *memprof_unwinder_name(void) HIDDEN;

#endif
