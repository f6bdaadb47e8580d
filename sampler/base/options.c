/* The sampler's configuration: what a capture takes when it is not told otherwise,
 * and the environment, read once at load.
 *
 * Environment:
 *   MEMPROF_CAPTURE=1          open a window at load, dump it at exit
 *   MEMPROF_RATE=1024          mean bytes between samples (1 = every allocation)
 *   MEMPROF_DEVICE_RATE=1      the same for the device and HAL heaps
 *   MEMPROF_DEPTH=64           frames per stack (at most 128)
 *   MEMPROF_PREFIX=./custom_profiler_   output prefix: <prefix><pid>.<seq>.heap
 *   MEMPROF_UNWIND=hybrid|libunwind|fp   (see unwind.c)
 *   MEMPROF_PARENT_PID=N       capture only if our parent is N (set by
 *                              `mem_profiler run` so that programs the target
 *                              runs load the sampler idle; unset = every process
 *                              that inherits the environment captures)
 *   MEMPROF_FOLLOW_FORK=1      a child forked in a window carries it on and writes
 *                              its own files (unset: the window ends unwritten there)
 *   MEMPROF_STACK_MEMORY=512   MiB the stack table and the calling-context tree may take
 *   MEMPROF_MAX_LIVE           the live table's capacity
 *   MEMPROF_VERBOSE=1          say on stderr where each dump went
 *   MEMPROF_CONTROL=0          no control block: not capturable from outside
 *   MEMPROF_CONTROL=on-request a control block, and its thread only once a controller
 *                              asks (a zygote's is so by itself: control.c)
 *   MEMPROF_MODE=log           also write the event log (event_log.c)
 *   MEMPROF_LEAK_SCAN=1        at the program's end, find the live samples nothing
 *                              points to (reachable.c): `run --leak-check`
 *   MEMPROF_LOG_CAP=104857600  bytes per log file, MEMPROF_LOG_FILES=10 files kept
 *   MEMPROF_PYTHON=1           in a CPython process, wrap its allocators while a
 *                              window is open (hooks_python.c); 0 leaves them alone
 *   MEMPROF_REPORT_FD=N        a pipe (`mem_profiler run`'s) told of each dump
 *                              that could not be written, and why (failure_pipe.c)
 * None of them in secure-execution mode (AT_SECURE: a setuid or setcap program, whose
 * environment is its caller's): secure_getenv reads none there. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/defaults.h"
#include "base/options.h"
#include "base/sysutil.h"

/* The most MEMPROF_MAX_LIVE may ask for (MEMPROF_STACK_MEMORY's is in defaults.h). */
#define MAX_LIVE_LIMIT (1u << 28)

struct memprof_config memprof_cfg = {
    .rates = {MEMPROF_DEFAULT_RATE, MEMPROF_DEFAULT_DEVICE_RATE},
    .max_depth = MEMPROF_DEFAULT_DEPTH,
    .max_stacks = MEMPROF_DEFAULT_STACK_MEMORY << 14,
    .max_nodes = MEMPROF_DEFAULT_STACK_MEMORY << 15,
    .max_live = MEMPROF_DEFAULT_MAX_LIVE,
    .log_cap = MEMPROF_DEFAULT_LOG_FILE_BYTES,
    .log_files = MEMPROF_DEFAULT_LOG_FILES,
    .report_fd = -1,
    .prefix = MEMPROF_DEFAULT_PREFIX,
};

int memprof_set_prefix(const char *prefix)
{
    char cwd[MEMPROF_PATH_MAX];
    if (prefix[0] == '/')
        cwd[0] = '\0';
    else if (getcwd(cwd, sizeof cwd - 1) != NULL)
        strcat(cwd, "/");
    else
        return -1;
    size_t need = strlen(cwd) + strlen(prefix) + 1;
    if (need > sizeof memprof_cfg.prefix - 32)   /* room for "<pid>.<seq>.<heap>.heap" */
        return -1;
    strcpy(memprof_cfg.prefix, cwd);
    strcat(memprof_cfg.prefix, prefix);
    memprof_pin_folder(memprof_cfg.prefix);
    return 0;
}

void memprof_options_from_environment(void)
{
    memprof_cfg.rates.host = memprof_getenv_u64("MEMPROF_RATE", MEMPROF_DEFAULT_RATE);
    memprof_cfg.rates.device = memprof_getenv_u64("MEMPROF_DEVICE_RATE", MEMPROF_DEFAULT_DEVICE_RATE);
    if (memprof_cfg.rates.host == 0)
        memprof_cfg.rates.host = MEMPROF_DEFAULT_RATE;
    if (memprof_cfg.rates.device == 0)
        memprof_cfg.rates.device = MEMPROF_DEFAULT_DEVICE_RATE;
    memprof_cfg.max_depth = (int)memprof_getenv_u64("MEMPROF_DEPTH", MEMPROF_DEFAULT_DEPTH);
    if (memprof_cfg.max_depth <= 0 || memprof_cfg.max_depth > MEMPROF_MAX_DEPTH)
        memprof_cfg.max_depth = MEMPROF_DEFAULT_DEPTH;
    /* per MiB: 2^14 stacks (12 bytes each, and their index) and 2^15 nodes (12, and
     * theirs): the per-thread counters are reserved for every stack but touched
     * only for those a thread counts */
    uint64_t mib = memprof_getenv_u64("MEMPROF_STACK_MEMORY", MEMPROF_DEFAULT_STACK_MEMORY);
    if (mib == 0 || mib > MEMPROF_STACK_MEMORY_LIMIT)
        mib = MEMPROF_DEFAULT_STACK_MEMORY;
    memprof_cfg.max_stacks =
        (uint32_t)(mib << 14 < MEMPROF_MAX_STACK_IDS ? mib << 14 : MEMPROF_MAX_STACK_IDS);
    memprof_cfg.max_nodes = (uint32_t)(mib << 15);
    memprof_cfg.max_live = (uint32_t)memprof_getenv_u64("MEMPROF_MAX_LIVE", memprof_cfg.max_live);
    if (memprof_cfg.max_live == 0 || memprof_cfg.max_live > MAX_LIVE_LIMIT)
        memprof_cfg.max_live = MEMPROF_DEFAULT_MAX_LIVE;
    const char *unwind = secure_getenv("MEMPROF_UNWIND");
    memprof_cfg.unwinder = !unwind || !*unwind || strcmp(unwind, "hybrid") == 0 ? UNWIND_HYBRID
                           : strcmp(unwind, "fp") == 0                           ? UNWIND_FRAME_POINTER
                           : strcmp(unwind, "libunwind") == 0                    ? UNWIND_LIBUNWIND
                                                                                 : UNWIND_HYBRID;
    memprof_cfg.verbose = memprof_getenv_u64("MEMPROF_VERBOSE", 0) != 0;
    memprof_cfg.python = memprof_getenv_u64("MEMPROF_PYTHON", 1) != 0;
    const char *mode = secure_getenv("MEMPROF_MODE");
    memprof_cfg.log_mode = mode != NULL && strcmp(mode, "log") == 0;
    memprof_cfg.follow_fork = memprof_getenv_u64("MEMPROF_FOLLOW_FORK", 0) != 0;
    memprof_cfg.leak_scan = memprof_getenv_u64("MEMPROF_LEAK_SCAN", 0) != 0;
    memprof_cfg.log_cap = memprof_getenv_u64("MEMPROF_LOG_CAP", memprof_cfg.log_cap);
    memprof_cfg.log_files = (uint32_t)memprof_getenv_u64("MEMPROF_LOG_FILES", memprof_cfg.log_files);
    const char *prefix = secure_getenv("MEMPROF_PREFIX");
    if (memprof_set_prefix(prefix && *prefix ? prefix : MEMPROF_DEFAULT_PREFIX) != 0)
        memprof_log("MEMPROF_PREFIX is too long; using %s", MEMPROF_DEFAULT_PREFIX);
    memprof_cfg.report_fd = (int)memprof_getenv_u64("MEMPROF_REPORT_FD", (uint64_t)-1);
    const char *control = secure_getenv("MEMPROF_CONTROL");
    memprof_cfg.control_on_request = control != NULL && strcmp(control, "on-request") == 0;
    memprof_cfg.control = memprof_cfg.control_on_request || memprof_getenv_u64("MEMPROF_CONTROL", 1) != 0;
    uint64_t parent = memprof_getenv_u64("MEMPROF_PARENT_PID", 0);
    memprof_cfg.capture_at_load = memprof_getenv_u64("MEMPROF_CAPTURE", 0) != 0 &&
                                  (parent == 0 || parent == (uint64_t)getppid());
}
