/* The CUDA, ACL and HAL hooks (hooks_device.c). */
#ifndef MEMPROF_HOOKS_DEVICE_H
#define MEMPROF_HOOKS_DEVICE_H

#include "base/common.h"

uint32_t memprof_device_heaps_used(void) HIDDEN;   /* bit mask of heaps whose hooks ran */
/* A heap has blocks to write (its hooks ran, or a probe recorded one in it). */
void memprof_device_use_heap(enum memprof_heap heap) HIDDEN;
/* Our wrapper for a driver entry point a getter or dlsym found, else `found`. */
void *memprof_device_entry_point(const char *name, void *found) HIDDEN;
/* Our own hook of a relocated name, or NULL (for got_hooks.c). */
void *memprof_device_hook_for(const char *name) HIDDEN;

#endif
