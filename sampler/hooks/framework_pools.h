/* The device memory pools of frameworks, through their USDT probes (framework_pools.c). */
#ifndef MEMPROF_FRAMEWORK_POOLS_H
#define MEMPROF_FRAMEWORK_POOLS_H

#include "base/common.h"

void memprof_pools_arm(void) HIDDEN;      /* a window opened: arm the probes found */
void memprof_pools_disarm(void) HIDDEN;   /* it closes: every site and semaphore back */
/* The heap of an allocation from CUDA's runtime or driver meant for `heap`: while a
 * pool's blocks are tracked, device memory is the pool's segments.  Arms the probes
 * of objects loaded since the last look first (called outside the sampler's locks). */
enum memprof_heap memprof_pools_heap_of(enum memprof_heap heap) HIDDEN;
/* Why a pool's library was seen and its blocks are not tracked, or "". */
const char *memprof_pools_note(void) HIDDEN;

#endif
