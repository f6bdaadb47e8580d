/* Capture windows (window.c): opened and closed by the API (api.c) and the control
 * thread (control.c), their files, deadline and status. */
#ifndef MEMPROF_WINDOW_H
#define MEMPROF_WINDOW_H

#include "common.h"

/* Non-zero while a window is open: the id of that window.  The only global the
 * malloc/free fast path reads. */
extern _Atomic uint32_t memprof_active_window HIDDEN;

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
int memprof_capture_dump(char *path_out, size_t path_len) HIDDEN;   /* the window stays open */
/* The window's figures so far, to <prefix><pid>.0000[.<heap>].heap (prefix absolute); no
 * sequence number is taken and nothing of the window changes. */
int memprof_capture_snapshot(const char *prefix) HIDDEN;
uint64_t memprof_capture_deadline(void) HIDDEN;
/* Moves the open window's deadline (EINVAL for a window without one, or to none). */
int memprof_capture_set_deadline(uint64_t deadline_ns) HIDDEN;
void memprof_capture_status(struct memprof_status *s) HIDDEN;
/* In a forked child (process.c): the window carried on or ended, the files counted afresh. */
void memprof_window_after_fork(void) HIDDEN;

#endif
