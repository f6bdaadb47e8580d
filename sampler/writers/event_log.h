/* The event log of log mode (event_log.c; format in memprof_log.h). */
#ifndef MEMPROF_EVENT_LOG_H
#define MEMPROF_EVENT_LOG_H

#include "base/common.h"
#include "memprof_log.h"

#define MEMPROF_LOG_INTERVAL_MS 100
int memprof_log_open(const char *prefix, unsigned seq, uint64_t cap, unsigned files) HIDDEN;
void memprof_log_close(void) HIDDEN;
void memprof_log_after_fork(void) HIDDEN;
bool memprof_log_active(void) HIDDEN;
/* <prefix><pid>.<seq> of this process's log of the window, else NULL. */
const char *memprof_log_base(void) HIDDEN;
int memprof_log_error(void) HIDDEN;   /* errno of the write that stopped the log, or 0 */
void memprof_log_forget(void) HIDDEN;  /* a window without a log: no base any more */
void memprof_log_event(enum memprof_log_type type, enum memprof_heap heap, uint32_t stack,
                       uint64_t size, uintptr_t address) HIDDEN;
void memprof_log_mark(enum memprof_mark_kind kind, uint64_t id, const char *text) HIDDEN;
/* A device operation (log mode): at most MEMPROF_USE_VALUES values, written as given. */
#define MEMPROF_USE_VALUES 64
void memprof_log_use(enum memprof_heap heap, enum memprof_use_op op, unsigned flags,
                     const uint64_t *values, unsigned n) HIDDEN;
void memprof_log_tick(void) HIDDEN;   /* timeline records, flush: every interval */

#endif
