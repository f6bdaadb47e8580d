/* The control block and thread (control.c; layout in memprof_control.h). */
#ifndef MEMPROF_CONTROL_THREAD_H
#define MEMPROF_CONTROL_THREAD_H

#include "common.h"

void memprof_control_init(void) HIDDEN;
void memprof_control_after_fork(void) HIDDEN;
void memprof_control_fini(void) HIDDEN;
void memprof_control_wake(void) HIDDEN;
void *memprof_control_hook_for(const char *name) HIDDEN;   /* pthread_exit, set*id */

#endif
