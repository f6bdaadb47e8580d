/* The device operations of log mode: what a kernel launch, copy or set was
 * passed, for the parser to find the blocks it used (device_uses.c). */
#ifndef MEMPROF_DEVICE_USES_H
#define MEMPROF_DEVICE_USES_H

#include "base/common.h"
#include "memprof_log.h"

/* A CUDA kernel launch of `function` (a CUfunction) with its kernelParams and extra. */
void memprof_use_cuda_launch(void *function, void *const *params, void *const *extra) HIDDEN;
/* A runtime launch: the host stub `function` is turned into its CUfunction first. */
void memprof_use_runtime_launch(const void *function, void *const *params) HIDDEN;
/* An ACL launch: its arguments are in device memory, `args`, which the host
 * cannot read: a use of that block, the rest unknown. */
void memprof_use_acl_launch(uintptr_t args) HIDDEN;
/* A copy (destination and source) or a set (destination only, source 0). */
void memprof_use_memory(enum memprof_heap heap, enum memprof_use_op op, uintptr_t destination,
                        uintptr_t source) HIDDEN;

#endif
