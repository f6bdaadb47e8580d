/* Capture windows and the sampler's life cycle: configuration from the
 * environment at load, opening and closing windows (the memprof_* API and the
 * control thread's requests), the dump at exit, and a fresh start in a forked
 * child.
 *
 * Environment (read once at load):
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
 *   MEMPROF_MAX_STACKS, MEMPROF_MAX_LIVE   table capacities
 *   MEMPROF_VERBOSE=1          say on stderr where each dump went
 *   MEMPROF_CONTROL=0          no control block: not capturable from outside
 *   MEMPROF_TRACK_LIVE=1       keep live bytes and their peak (live_bytes.c): shared
 *                              counters, so off unless asked (the gate, log mode)
 *   MEMPROF_MODE=log           also write the event log (event_log.c)
 *   MEMPROF_LOG_CAP=104857600  bytes per log file, MEMPROF_LOG_FILES=10 files kept
 *   MEMPROF_PYTHON=1           in a CPython process, wrap its allocators while a
 *                              window is open (hooks_python.c); 0 leaves them alone
 *   MEMPROF_REPORT_FD=N        a pipe (`mem_profiler run`'s) told of each dump
 *                              that could not be written, and why */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memprof.h"
#include "memprof_internal.h"

const char *const memprof_heap_names[HEAP_COUNT] = {
    [HEAP_HOST] = "host", [HEAP_CUDA] = "cuda", [HEAP_CUDA_HOST] = "cuda_host",
    [HEAP_ACL] = "acl", [HEAP_ACL_HOST] = "acl_host", [HEAP_HAL] = "hal",
};

/* Stacks the table can hold.  A Python program sampled at -c 1 makes stacks by the
 * hundred thousand (its lines multiply them): the fixture that imports numpy makes
 * 122,000.  The table is reserved, not committed: its pages, and its hash index's
 * (hash_index.c), are touched as stacks arrive. */
#define DEFAULT_MAX_STACKS (1u << 19)

struct memprof_config memprof_cfg = {
    .rate = MEMPROF_DEFAULT_RATE,
    .device_rate = 1,
    .max_depth = MEMPROF_DEFAULT_DEPTH,
    .max_stacks = DEFAULT_MAX_STACKS,
    .max_live = 1u << 24,
    .log_cap = 100u << 20,
    .log_files = 10,
    .prefix = MEMPROF_DEFAULT_PREFIX,
};
_Atomic uint32_t memprof_active_window;

static pthread_mutex_t window_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t last_window;
static uint64_t window_start_ns;
static _Atomic uint64_t window_deadline_ns;
static bool window_is_view;                /* mem_profiler top's: its end writes no file */
static unsigned dump_seq;                  /* .heap files written: failures do not count */
static char last_dump[MEMPROF_PATH_MAX];
static unsigned failed_dumps;
static char dump_failure[MEMPROF_PATH_MAX + 128];   /* why the last failed dump failed */
static bool tables_ready;
static int report_fd = -1;                 /* MEMPROF_REPORT_FD, while it is that pipe */
static ino_t report_ino;
static bool verbose;
static bool control;   /* a control block, so the process can be captured from outside */
static pid_t forked_from;  /* the parent whose window this forked child carries on, or 0 */

static int set_prefix(const char *prefix)
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
    return 0;
}

static int prepare_tables(void)
{
    if (tables_ready) {   /* stack counters start over by themselves in a new window */
        memprof_live_table_reset();
        return 0;
    }
    if (memprof_stack_table_init(memprof_cfg.max_stacks) != 0 ||
        memprof_live_table_init(memprof_cfg.max_live) != 0)
        return -1;
    tables_ready = true;
    return 0;
}

/* The open window's event log, named after the dump `seq` that will close it. */
static void open_window_log(unsigned seq)
{
    if (memprof_log_open(memprof_cfg.prefix, seq, memprof_cfg.log_cap, memprof_cfg.log_files) != 0)
        memprof_log("could not write the event log next to %s: %s", memprof_cfg.prefix,
                    strerror(errno));
}

int memprof_capture_start(uint64_t rate, uint64_t device_rate, int max_depth, const char *prefix,
                          uint64_t deadline_ns, bool view)
{
    if (rate == 0 || device_rate == 0 || max_depth < 0 || max_depth > MEMPROF_MAX_DEPTH) {
        errno = EINVAL;
        return -1;
    }
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (atomic_load(&memprof_active_window) != 0) {
        errno = EBUSY;
    } else if (prefix != NULL && set_prefix(prefix) != 0) {
        errno = ENAMETOOLONG;
    } else if (prepare_tables() != 0) {
        errno = ENOMEM;
    } else {
        memprof_python_init();   /* an interpreter loaded since the last window */
        memprof_cfg.rate = rate;
        memprof_cfg.device_rate = device_rate;
        memprof_cfg.max_depth = max_depth ? max_depth : MEMPROF_DEFAULT_DEPTH;
        memprof_drops_reset();
        memprof_notes_reset();
        memprof_live_bytes_reset();
        if (memprof_cfg.log_mode) {   /* the log is named after the dump that will close it */
            memprof_cfg.track_live = true;
            open_window_log(dump_seq + 1);
        } else {
            memprof_log_forget();   /* an earlier window's log is not this window's */
        }
        window_start_ns = memprof_now_ns();
        atomic_store(&window_deadline_ns, deadline_ns);
        window_is_view = view;
        if (++last_window == 0)
            last_window = 1;
        memprof_pymem_find();
        atomic_store_explicit(&memprof_active_window, last_window, memory_order_release);
        if (memprof_got_arm() != 0)
            memprof_log("could not redirect the GOT: allocations are not seen");
        if (memprof_cfg.log_mode)
            memprof_control_wake();
        rc = 0;
    }
    pthread_mutex_unlock(&window_lock);
    if (rc == 0)
        memprof_pymem_sync();   /* Python's allocators wrapped */
    memprof_leave();
    return rc;
}

/* The pipe of MEMPROF_REPORT_FD, if the descriptor is one: checked again before each
 * report, so that a program that closed it and opened a file under its number
 * never gets our line written into that file. */
static void open_report_pipe(void)
{
    struct stat st;
    int fd = (int)memprof_getenv_u64("MEMPROF_REPORT_FD", (uint64_t)-1);
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode)) {
        report_fd = fd;
        report_ino = st.st_ino;
    }
}

/* Tells the pipe, or else stderr. */
static void report_failure(const char *message)
{
    struct stat st;
    if (report_fd < 0 || fstat(report_fd, &st) != 0 || !S_ISFIFO(st.st_mode) ||
        st.st_ino != report_ino) {
        memprof_log("%s", message);
        return;
    }
    char line[PIPE_BUF];   /* written at once: lines of several processes never mix */
    int n = snprintf(line, sizeof line, "%d %s\n", (int)getpid(), message);
    if (n >= (int)sizeof line) {
        n = (int)sizeof line;
        line[n - 1] = '\n';
    }
    ssize_t unused = write(report_fd, line, (size_t)n);
    (void)unused;
}

/* The open window until now, as its files describe it (window_lock held). */
static struct memprof_window_info window_so_far(void)
{
    return (struct memprof_window_info){
        .id = last_window,
        .rate = memprof_cfg.rate,
        .device_rate = memprof_cfg.device_rate,
        .max_depth = memprof_cfg.max_depth,
        .start_ns = window_start_ns,
        .end_ns = memprof_now_ns(),
        .forked_from = forked_from,
    };
}

/* The open window's files, under the next sequence number (window_lock held). */
static int dump_window(char *path_out, size_t path_len)
{
    struct memprof_window_info w = window_so_far();
    char path[MEMPROF_PATH_MAX];
    int rc = memprof_write_dump(&w, memprof_cfg.prefix, dump_seq + 1, memprof_device_heaps_used(),
                                path, sizeof path);
    if (rc == 0) {
        dump_seq++;
        strcpy(last_dump, path);
        if (verbose)
            memprof_log("wrote %s", path);
    } else {
        failed_dumps++;
        int n = snprintf(dump_failure, sizeof dump_failure, "could not write %s%d.%04u.heap: %s",
                         memprof_cfg.prefix, (int)getpid(), dump_seq + 1, strerror(errno));
        (void)n;   /* it fits: set_prefix keeps the prefix 32 bytes short of the path limit */
        report_failure(dump_failure);
    }
    if (rc == 0 && path_out != NULL && path_len > 0)
        strncpy(path_out, path, path_len - 1)[path_len - 1] = '\0';
    return rc;
}

/* Writes the open window's files; `close` ends the window first, and the end of a
 * live view's window writes none (path_out is then ""). */
static int write_window(bool close, char *path_out, size_t path_len)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (atomic_load(&memprof_active_window) == 0) {
        errno = ESRCH;
    } else {
        if (close) {
            memprof_got_disarm();
            atomic_store_explicit(&memprof_active_window, 0, memory_order_release);
            atomic_store(&window_deadline_ns, 0);
            memprof_log_tick();   /* the window's last interval */
            memprof_log_close();
        }
        if (!close || !window_is_view) {
            rc = dump_window(path_out, path_len);
        } else {
            rc = 0;
            if (path_out != NULL && path_len > 0)
                path_out[0] = '\0';
        }
    }
    pthread_mutex_unlock(&window_lock);
    if (close) {
        int saved = errno;
        memprof_pymem_sync();   /* Python's allocators unwrapped */
        errno = saved;
    }
    memprof_leave();
    return rc;
}

EXPORT int memprof_start(uint64_t rate, int max_depth, const char *prefix)
{
    return memprof_capture_start(rate, memprof_cfg.device_rate, max_depth, prefix, 0, false);
}

int memprof_capture_stop(char *path_out, size_t path_len)
{
    return write_window(true, path_out, path_len);
}

EXPORT int memprof_stop(char *path_out, size_t path_len)
{
    return memprof_capture_stop(path_out, path_len);
}

uint64_t memprof_capture_deadline(void)
{
    return atomic_load(&window_deadline_ns);
}

int memprof_capture_set_deadline(uint64_t deadline_ns)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (atomic_load(&memprof_active_window) == 0)
        errno = ESRCH;
    else if (deadline_ns == 0 || atomic_load(&window_deadline_ns) == 0)
        errno = EINVAL;   /* a window without a deadline (opened in-process) gets none */
    else {
        atomic_store(&window_deadline_ns, deadline_ns);
        rc = 0;
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
    return rc;
}

struct live_sum {
    uint64_t samples;
    double bytes[HEAP_COUNT];
};

static void add_live_sample(uint32_t stack, uint64_t size, void *arg)
{
    struct live_sum *sum = arg;
    struct memprof_stack_key k;
    memprof_stack_get(stack, &k);
    uint64_t rate = k.heap == HEAP_HOST ? memprof_cfg.rate : memprof_cfg.device_rate;
    sum->samples++;
    sum->bytes[k.heap] += memprof_sample_weight(size, rate) * (double)size;
}

void memprof_capture_status(struct memprof_status *s)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    s->capturing = atomic_load(&memprof_active_window) != 0;
    s->dumps = dump_seq;
    s->window_start_ns = window_start_ns;
    s->deadline_ns = atomic_load(&window_deadline_ns);
    s->dropped_samples = memprof_dropped_samples();
    strcpy(s->last_dump, last_dump);
    s->failed_dumps = failed_dumps;
    strcpy(s->dump_failure, dump_failure);
    struct live_sum sum = {0, {0}};
    if (s->capturing)
        memprof_live_foreach(add_live_sample, &sum);
    s->live_samples = sum.samples;
    for (int h = 0; h < HEAP_COUNT; h++) {
        s->heap_live_bytes[h] = (uint64_t)sum.bytes[h];
        int64_t peak = memprof_cfg.track_live ? memprof_live_bytes_of((enum memprof_heap)h).peak : 0;
        s->heap_peak_bytes[h] = peak > 0 ? (uint64_t)peak : 0;
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
}

int memprof_capture_dump(char *path_out, size_t path_len)
{
    return write_window(false, path_out, path_len);
}

int memprof_capture_snapshot(const char *prefix)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (atomic_load(&memprof_active_window) == 0) {
        errno = ESRCH;
    } else if (prefix[0] != '/') {
        errno = EINVAL;
    } else {
        struct memprof_window_info w = window_so_far();
        char path[MEMPROF_PATH_MAX];
        rc = memprof_write_dump(&w, prefix, 0, memprof_device_heaps_used(), path, sizeof path);
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
    return rc;
}

EXPORT int memprof_dump(char *path_out, size_t path_len)
{
    return memprof_capture_dump(path_out, path_len);
}

EXPORT int memprof_is_capturing(void)
{
    return atomic_load(&memprof_active_window) != 0;
}

EXPORT void memprof_track_live(int on)
{
    memprof_cfg.track_live = on != 0;
}

EXPORT int memprof_heap_bytes(const char *heap, uint64_t *live, uint64_t *peak)
{
    for (int h = 0; heap != NULL && h < HEAP_COUNT; h++) {
        if (strcmp(heap, memprof_heap_names[h]) != 0)
            continue;
        if (!memprof_cfg.track_live)
            return -1;
        struct memprof_live_bytes lb = memprof_live_bytes_of((enum memprof_heap)h);
        *live = lb.now > 0 ? (uint64_t)lb.now : 0;
        *peak = lb.peak > 0 ? (uint64_t)lb.peak : 0;
        return 0;
    }
    return -1;
}

/* A forked child is a process of its own: empty tables, its own pid in the
 * file names, sequence numbers from 1.  It carries on its parent's window only
 * where forks are followed (MEMPROF_FOLLOW_FORK=1, `run --follow-fork`), under a
 * new id so no counter of the parent's window is summed, and its files name the
 * parent; otherwise the window ends unwritten there: a shell's subshells and a
 * server's workers are not the program asked for (ARCHITECTURE.md, *Which
 * processes are profiled*).  The GOT stays as it is: its hooks pass through
 * while no window is open. */
static void on_fork_child(void)
{
    pid_t parent = getppid();
    pthread_mutex_init(&window_lock, NULL);
    memprof_got_after_fork();
    memprof_python_after_fork();
    memprof_pymem_after_fork();
    if (tables_ready) {
        memprof_stack_table_reset();
        memprof_live_table_after_fork();
        memprof_stack_counts_after_fork();
    }
    if (++last_window == 0)
        last_window = 1;
    bool follow = atomic_load(&memprof_active_window) != 0 && memprof_cfg.follow_fork;
    atomic_store(&memprof_active_window, follow ? last_window : 0);
    if (!follow)
        atomic_store(&window_deadline_ns, 0);
    forked_from = follow ? parent : 0;
    last_dump[0] = '\0';
    if (control)
        memprof_control_after_fork();
    memprof_drops_reset();
    memprof_notes_after_fork();
    memprof_live_bytes_reset();
    memprof_log_after_fork();
    memprof_thread.tid = 0;
    window_start_ns = memprof_now_ns();
    dump_seq = 0;
    failed_dumps = 0;
    dump_failure[0] = '\0';
    /* The child's window gets a log of its own, named after the child. */
    if (follow && memprof_cfg.log_mode)
        open_window_log(1);
}

__attribute__((constructor(102))) static void capture_init(void)
{
    memprof_enter();
    memprof_cfg.rate = memprof_getenv_u64("MEMPROF_RATE", MEMPROF_DEFAULT_RATE);
    memprof_cfg.device_rate = memprof_getenv_u64("MEMPROF_DEVICE_RATE", 1);
    if (memprof_cfg.rate == 0)
        memprof_cfg.rate = MEMPROF_DEFAULT_RATE;
    if (memprof_cfg.device_rate == 0)
        memprof_cfg.device_rate = 1;
    memprof_cfg.max_depth = (int)memprof_getenv_u64("MEMPROF_DEPTH", MEMPROF_DEFAULT_DEPTH);
    if (memprof_cfg.max_depth <= 0 || memprof_cfg.max_depth > MEMPROF_MAX_DEPTH)
        memprof_cfg.max_depth = MEMPROF_DEFAULT_DEPTH;
    memprof_cfg.max_stacks = (uint32_t)memprof_getenv_u64("MEMPROF_MAX_STACKS", memprof_cfg.max_stacks);
    if (memprof_cfg.max_stacks == 0 || memprof_cfg.max_stacks > (1u << 22))
        memprof_cfg.max_stacks = DEFAULT_MAX_STACKS;
    memprof_cfg.max_live = (uint32_t)memprof_getenv_u64("MEMPROF_MAX_LIVE", memprof_cfg.max_live);
    if (memprof_cfg.max_live == 0 || memprof_cfg.max_live > (1u << 28))
        memprof_cfg.max_live = 1u << 24;
    const char *unwind = getenv("MEMPROF_UNWIND");
    memprof_cfg.unwinder = !unwind || !*unwind || strcmp(unwind, "hybrid") == 0 ? UNWIND_HYBRID
                           : strcmp(unwind, "fp") == 0                           ? UNWIND_FRAME_POINTER
                           : strcmp(unwind, "libunwind") == 0                    ? UNWIND_LIBUNWIND
                                                                                 : UNWIND_HYBRID;
    verbose = memprof_getenv_u64("MEMPROF_VERBOSE", 0) != 0;
    memprof_cfg.python = memprof_getenv_u64("MEMPROF_PYTHON", 1) != 0;
    memprof_cfg.track_live = memprof_getenv_u64("MEMPROF_TRACK_LIVE", 0) != 0;
    const char *mode = getenv("MEMPROF_MODE");
    memprof_cfg.log_mode = mode != NULL && strcmp(mode, "log") == 0;
    memprof_cfg.follow_fork = memprof_getenv_u64("MEMPROF_FOLLOW_FORK", 0) != 0;
    memprof_cfg.log_cap = memprof_getenv_u64("MEMPROF_LOG_CAP", memprof_cfg.log_cap);
    memprof_cfg.log_files = (uint32_t)memprof_getenv_u64("MEMPROF_LOG_FILES", memprof_cfg.log_files);
    const char *prefix = getenv("MEMPROF_PREFIX");
    if (set_prefix(prefix && *prefix ? prefix : MEMPROF_DEFAULT_PREFIX) != 0)
        memprof_log("MEMPROF_PREFIX is too long; using %s", MEMPROF_DEFAULT_PREFIX);

    memprof_unwind_init();
    open_report_pipe();
    pthread_atfork(NULL, NULL, on_fork_child);
    control = memprof_getenv_u64("MEMPROF_CONTROL", 1) != 0;
    uint64_t parent = memprof_getenv_u64("MEMPROF_PARENT_PID", 0);
    bool capture = memprof_getenv_u64("MEMPROF_CAPTURE", 0) != 0 &&
                   (parent == 0 || parent == (uint64_t)getppid());
    memprof_leave();

    /* The control thread first: pthread_create allocates its thread's memory through
     * the program's malloc, which must not fall inside the window. */
    if (control)
        memprof_control_init();
    if (capture && memprof_start(memprof_cfg.rate, memprof_cfg.max_depth, NULL) != 0)
        memprof_log("could not start capturing: %s", strerror(errno));
}

__attribute__((destructor)) static void capture_fini(void)
{
    if (atomic_load(&memprof_active_window) != 0)
        memprof_stop(NULL, 0);
    memprof_control_fini();
}
