/* Capture windows (window.c): opened and closed by the API (api.c) and the control
 * thread (control.c), their files, deadline and status. */
#ifndef MEMPROF_WINDOW_H
#define MEMPROF_WINDOW_H

#include <sys/types.h>

#include "base/common.h"
#include "memprof_control.h"
#include "sample/window_page.h"

/* The window page mapped from `fd` at `offset` (a control block's wake page), so that a
 * controller's store reaches the hooks; 0 or -1 with errno.  Only while no window is
 * open. */
int memprof_window_page_share(int fd, off_t offset) HIDDEN;
/* The window page the process's own again, its word 0; `clear_shared`: a wake read is
 * taken, and the shared word is cleared for the processes that share it (a child made
 * by clone without fork's handlers). */
void memprof_window_page_own(bool clear_shared) HIDDEN;

struct memprof_status {
    bool capturing;
    unsigned dumps;                  /* .heap files written by this process */
    uint64_t window_start_ns, deadline_ns;
    uint64_t live_samples, dropped_samples;
    uint64_t heap_live_bytes[HEAP_COUNT];   /* unsampled estimates */
    uint64_t heap_peak_bytes[HEAP_COUNT];   /* when tracking live bytes */
    char last_dump[MEMPROF_PATH_MAX];
    unsigned failed_dumps;           /* dumps that could not be written */
    char dump_failure[MEMPROF_PATH_MAX + 128];   /* why the last of them failed */
};
/* deadline_ns: CLOCK_REALTIME at which the control thread closes the window (0: none).
 * view: a live view's window (mem_profiler top), read by snapshots: its end writes no file. */
int memprof_capture_start(uint64_t rate, uint64_t device_rate, int max_depth, const char *prefix,
                          uint64_t deadline_ns, bool view) HIDDEN;
int memprof_capture_stop(char *path_out, size_t path_len) HIDDEN;
/* The same at the process's exit, which then ends: its tables' lookups given back
 * before the files are written. */
int memprof_capture_stop_at_exit(void) HIDDEN;
/* The same as the Python interpreter begins to finalize, after the program's atexit
 * handlers, while its modules and their objects still exist: the program's end. */
int memprof_capture_stop_at_python_exit(void) HIDDEN;
int memprof_capture_dump(char *path_out, size_t path_len) HIDDEN;   /* the window stays open */
/* The window's figures so far for a reader that follows it, to <prefix><pid>.0000.snapshot
 * (prefix absolute): since the snapshot whose token is `since` where that was the last
 * (memprof_write_snapshot); *token receives this one's.  No sequence number is taken and
 * nothing of the window changes. */
int memprof_capture_snapshot(const char *prefix, uint64_t since, uint64_t *token) HIDDEN;
/* What was live when a device allocation of `bytes` failed with `error`, or when a
 * framework raised its out-of-memory error `raised` (NULL: none; bytes 0: no allocation
 * of the device failed before it): the open window's files as they are then, once per
 * window, under the prefix followed by MEMPROF_FAILURE_TAG and the sequence number of
 * the dump that will close the window (`# taken_at: device_allocation_failure ...`);
 * the window goes on. */
#define MEMPROF_FAILURE_TAG "oom_"
int memprof_capture_at_failure(enum memprof_heap heap, uint64_t bytes, int error,
                               const char *raised) HIDDEN;
uint64_t memprof_capture_deadline(void) HIDDEN;
/* Moves the open window's deadline (EINVAL for a window without one, or to none). */
int memprof_capture_set_deadline(uint64_t deadline_ns) HIDDEN;
void memprof_capture_status(struct memprof_status *s) HIDDEN;
/* In a forked child (process.c): the window carried on or ended, the files counted afresh. */
void memprof_window_after_fork(void) HIDDEN;

#endif
