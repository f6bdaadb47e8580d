/* The sampler's configuration (options.c): the defaults, then the environment read
 * at load, then each window's settings. */
#ifndef MEMPROF_OPTIONS_H
#define MEMPROF_OPTIONS_H

#include "base/common.h"

enum memprof_unwinder { UNWIND_HYBRID = 0, UNWIND_LIBUNWIND = 1, UNWIND_FRAME_POINTER = 2 };

/* Mean bytes between samples (1: every allocation). */
struct memprof_rates {
    uint64_t host;      /* the host heap's */
    uint64_t device;    /* every device and HAL heap's */
};

static inline uint64_t memprof_heap_rate(struct memprof_rates rates, uint32_t heap)
{
    return heap == HEAP_HOST ? rates.host : rates.device;
}

struct memprof_config {
    struct memprof_rates rates;
    int max_depth;
    enum memprof_unwinder unwinder;
    uint32_t max_stacks;         /* stack table capacity */
    uint32_t max_nodes;          /* calling-context tree capacity */
    uint32_t max_live;           /* live-sample table capacity */
    bool log_mode;               /* write the event log (event_log.c) */
    bool leak_scan;              /* at the end, which live samples are reachable (reachable.c) */
    bool follow_fork;            /* a forked child carries on the window (window.c) */
    bool python;                 /* wrap CPython's allocators in a window (hooks_python.c) */
    uint64_t log_cap;            /* bytes per log file */
    uint32_t log_files;          /* log files kept */
    bool verbose;                /* say on stderr where each dump went */
    bool control;                /* a control block: capturable from outside (control.c) */
    bool control_on_request;     /* its thread made only when a controller asks */
    bool capture_at_load;        /* open a window at load */
    int report_fd;               /* MEMPROF_REPORT_FD (failure_pipe.c), or -1 */
    char prefix[MEMPROF_PATH_MAX];
};
extern struct memprof_config memprof_cfg HIDDEN;

/* Reads the environment into memprof_cfg (once, at load). */
void memprof_options_from_environment(void) HIDDEN;
/* The output prefix, made absolute; -1 when it is too long or the folder unknown. */
int memprof_set_prefix(const char *prefix) HIDDEN;

#endif
