/* The sampler's life in its process: set up at load (configuration, the control
 * thread, a window when asked for: at the first call into the malloc hooks, which may
 * come from a library initialized before ours), started afresh in a forked child, and
 * at exit the open window's files written. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "base/failure_pipe.h"
#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "base/upcalls.h"
#include "control/control.h"
#include "control/window.h"
#include "hooks/framework_pools.h"
#include "hooks/got_hooks.h"
#include "hooks/hooks_device.h"
#include "hooks/hooks_libc.h"
#include "hooks/hooks_malloc.h"
#include "hooks/hooks_python.h"
#include "hooks/interposers.h"
#include "hooks/process.h"
#include "memprof.h"
#include "sample/sample.h"
#include "tables/live_bytes.h"
#include "tables/notes.h"
#include "unwind/python_frames.h"
#include "unwind/unwind.h"
#include "writers/event_log.h"

/* A forked child is a process of its own.  Each module first drops what it cannot keep
 * of the parent's (its wake page, locks a thread of the parent may have held, counters,
 * the log), then the window is carried on or ended (window.c), and last the child gets
 * a control block and thread of its own, which find nothing of the parent's left. */
static void on_fork_child(void)
{
    memprof_window_page_own(false);   /* the parent's wake page: its word is not ours */
    memprof_got_after_fork();
    memprof_python_after_fork();
    memprof_pymem_after_fork();
    memprof_drops_reset();
    memprof_notes_after_fork();
    memprof_live_bytes_reset();
    memprof_log_after_fork();
    memprof_thread.tid = 0;
    memprof_window_after_fork();
    if (memprof_cfg.control)
        memprof_control_after_fork();
}

/* What the lower layers call upward (upcalls.h), given before anything is set up. */
static void register_upcalls(void)
{
    memprof_upcalls = (struct memprof_upcalls){
        .own_malloc = memprof_own_malloc,
        .is_injected = memprof_is_injected,
        .got_redirected = memprof_got_redirected,
        .got_arm = memprof_got_arm,
        .got_disarm = memprof_got_disarm,
        .pools_arm = memprof_pools_arm,
        .pools_disarm = memprof_pools_disarm,
        .pools_note = memprof_pools_note,
        .pymem_find = memprof_pymem_find,
        .pymem_sync = memprof_pymem_sync,
        .pymem_poll = memprof_pymem_poll,
        .device_heaps_used = memprof_device_heaps_used,
        .control_look = memprof_control_look,
    };
}

void memprof_process_set_up(void)
{
    static _Atomic bool claimed;
    if (atomic_exchange(&claimed, true))
        return;
    register_upcalls();
    memprof_got_hooks_from(memprof_hook_for);   /* before a window redirects a slot */
    memprof_malloc_resolve();
    memprof_enter();
    memprof_options_from_environment();
    memprof_unwind_init();
    memprof_failure_pipe_open(memprof_cfg.report_fd);
    if (memprof_cfg.control)
        memprof_libc_resolve();   /* not first in a vfork child, which shares the loader's locks */
    pthread_atfork(NULL, NULL, on_fork_child);
    memprof_leave();

    /* The control thread first: pthread_create allocates its thread's memory through
     * the program's malloc, which must not fall inside the window. */
    memprof_control_hold_requests(memprof_cfg.capture_at_load);
    if (memprof_cfg.control)
        memprof_control_init();
    if (memprof_cfg.capture_at_load && memprof_own_malloc()[0] != '\0')
        memprof_log("%s", memprof_own_malloc());
    int err = memprof_cfg.capture_at_load &&
                      memprof_start(memprof_cfg.rates.host, memprof_cfg.max_depth, NULL) != 0
                  ? errno
                  : 0;
    memprof_control_hold_requests(false);
    if (err != 0) {
        char why[256];
        snprintf(why, sizeof why, "could not start capturing: %s%s", strerror(err),
                 err == ENOMEM ? " (the sampler's tables do not fit under the process's "
                                   "memory limit: raise `ulimit -v`, or lower --stack-memory)"
                                 : "");
        memprof_report_failure(why);
    }
}

__attribute__((constructor)) static void process_init(void)
{
    memprof_process_set_up();
}

__attribute__((destructor)) static void process_fini(void)
{
    if (memprof_window_id() != 0) {
        memprof_control_settle();
        memprof_capture_stop_at_exit();
    }
    memprof_control_fini();
}
