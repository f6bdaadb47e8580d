/* The control block and thread (control.c; layout in memprof_control.h). */
#ifndef MEMPROF_CONTROL_THREAD_H
#define MEMPROF_CONTROL_THREAD_H

#include "base/common.h"

void memprof_control_init(void) HIDDEN;
void memprof_control_after_fork(void) HIDDEN;
void memprof_control_fini(void) HIDDEN;
void memprof_control_wake(void) HIDDEN;
/* At exit, before the files are written: the thread's start-up work is done. */
void memprof_control_settle(void) HIDDEN;
/* The requests of controllers held (true) while the program opens its own window as it
 * loads, and let go (false) once it has. */
void memprof_control_hold_requests(bool hold) HIDDEN;
/* What the hooks of the program's calls (hooks_libc.c) tell the control thread: a
 * thread calls pthread_exit (the main thread's end is watched for), the process calls
 * _exit (the open window's files are written first). */
void memprof_control_thread_exits(void) HIDDEN;
void memprof_control_process_exits(void) HIDDEN;
/* Around a set*id call: the control thread ended before it (true: it was), and made
 * again after it, with the caller's new credentials (control.c, "a change of
 * credentials"). */
bool memprof_control_pause(void) HIDDEN;
void memprof_control_resume(bool paused) HIDDEN;

/* From a sample's slow path while memprof_control_thread_less (sample.h), through
 * memprof_upcalls: a request waiting makes the thread, and a window waiting for
 * Python's start looks for it. */
void memprof_control_look(void) HIDDEN;
/* A window opening in-process: the window page becomes the process's own (a log mode
 * window makes the thread: it drains the threads' log buffers). */
void memprof_control_window_opens(void) HIDDEN;
/* A window closed: a thread-less process shares its window page again. */
void memprof_control_window_closed(void) HIDDEN;

#endif
