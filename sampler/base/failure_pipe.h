/* Captures that could not start and dumps that could not be written, told to
 * `mem_profiler run` (failure_pipe.c). */
#ifndef MEMPROF_FAILURE_PIPE_H
#define MEMPROF_FAILURE_PIPE_H

#include "base/common.h"

void memprof_failure_pipe_open(int fd) HIDDEN;   /* MEMPROF_REPORT_FD, if it is a pipe */
void memprof_report_failure(const char *message) HIDDEN;   /* to the pipe, else stderr */

#endif
