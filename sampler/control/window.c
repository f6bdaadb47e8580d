/* Capture windows: opening and closing them (for the memprof_* API and the control
 * thread's requests), writing their files, their deadline, the status the control
 * block publishes, and what becomes of an open window in a forked child. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/defaults.h"
#include "base/failure_pipe.h"
#include "base/options.h"
#include "base/sysutil.h"
#include "base/ticks.h"
#include "base/thread_state.h"
#include "base/upcalls.h"
#include "control/control.h"
#include "control/window.h"
#include "sample/sample.h"
#include "tables/estimate.h"
#include "tables/live_bytes.h"
#include "tables/live_table.h"
#include "tables/notes.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"
#include "unwind/python_frames.h"
#include "writers/event_log.h"
#include "writers/heap_writer.h"
#include "writers/reachable.h"
#include "writers/window_snapshot.h"

static _Atomic bool window_page_shared;

static pthread_mutex_t window_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t last_window;
static uint64_t window_start_ns;
static _Atomic uint64_t window_deadline_ns;
static bool window_is_view;                /* mem_profiler top's: its end writes no file */
static unsigned dump_seq;                  /* .heap files written: failures do not count */
/* The sequence number of the last window's files under the prefix in use: a prefix's
 * files are numbered from 0001 after those of this process already there. */
static unsigned name_seq;
static char name_seq_prefix[MEMPROF_PATH_MAX];
static char last_dump[MEMPROF_PATH_MAX];
static unsigned failed_dumps;
static char dump_failure[MEMPROF_PATH_MAX + 128];   /* why the last failed dump failed */
static uint64_t closed_dropped;   /* the samples dropped that the closed window's files say */
static bool tables_ready;
static pid_t forked_from;  /* the parent whose window this forked child carries on, or 0 */

/* The highest sequence number of the files named <prefix><pid>.<seq>... in the prefix's
 * folder (memprof_each_entry's visits: window_lock held). */
static const char *scanned_base;
static size_t scanned_base_len;
static unsigned scanned_highest;

static void note_sequence(int dir, const char *name)
{
    (void)dir;
    if (strncmp(name, scanned_base, scanned_base_len) != 0)
        return;
    char *end;
    unsigned long pid = strtoul(name + scanned_base_len, &end, 10);
    if (end == name + scanned_base_len || pid != (unsigned long)getpid() || *end != '.')
        return;
    const char *digits = end + 1;
    unsigned long seq = strtoul(digits, &end, 10);
    if (end - digits == 4 && (*end == '.' || *end == '\0') && seq > scanned_highest)
        scanned_highest = (unsigned)seq;
}

/* Numbers the window's files for the prefix in use (window_lock held). */
static void number_for_prefix(void)
{
    if (strcmp(name_seq_prefix, memprof_cfg.prefix) == 0)
        return;
    strcpy(name_seq_prefix, memprof_cfg.prefix);
    char folder[MEMPROF_PATH_MAX];
    strcpy(folder, memprof_cfg.prefix);
    char *slash = strrchr(folder, '/');
    scanned_base = slash ? memprof_cfg.prefix + (slash - folder) + 1 : memprof_cfg.prefix;
    scanned_base_len = strlen(scanned_base);
    if (slash != NULL)
        slash[slash == folder ? 1 : 0] = '\0';
    scanned_highest = 0;
    memprof_each_entry(slash ? folder : ".", note_sequence);
    name_seq = scanned_highest;
}

static void next_window_id(void)
{
    if (++last_window == 0 || last_window == MEMPROF_WINDOW_WAKE)
        last_window = 1;
}

/* The page's size where the window page can be one: a page of its own. */
static size_t window_page_size(void)
{
    size_t size = (size_t)getpagesize();
    return size <= MEMPROF_WINDOW_PAGE && (uintptr_t)&memprof_window_page % size == 0 ? size : 0;
}

int memprof_window_page_share(int fd, off_t offset)
{
    size_t size = window_page_size();
    if (size == 0) {
        errno = ENOTSUP;
        return -1;
    }
    if (mmap(&memprof_window_page, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
             offset) == MAP_FAILED)
        return -1;
    atomic_store(&window_page_shared, true);
    return 0;
}

void memprof_window_page_own(bool clear_shared)
{
    if (!atomic_load(&window_page_shared))
        return;
    if (clear_shared)
        atomic_store(&memprof_active_window, 0);
    /* A zero page in its place: a thread reading meanwhile finds 0 in one or the other. */
    mmap(&memprof_window_page, window_page_size(), PROT_READ | PROT_WRITE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    atomic_store(&window_page_shared, false);
}

static int prepare_tables(void)
{
    if (tables_ready) {   /* stack counters start over by themselves in a new window */
        memprof_live_table_reset();
        return 0;
    }
    memprof_ticks_calibrate();
    if (memprof_stack_table_init(memprof_cfg.max_stacks, memprof_cfg.max_nodes) != 0 ||
        memprof_live_bytes_init(memprof_cfg.max_stacks) != 0 ||
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
    memprof_control_window_opens();
    int rc = -1;
    if (memprof_window_id() != 0) {
        errno = EBUSY;
    } else if (prefix != NULL && memprof_set_prefix(prefix) != 0) {
        errno = ENAMETOOLONG;
    } else if (prepare_tables() != 0) {
        errno = ENOMEM;
    } else {
        number_for_prefix();
        memprof_python_init();   /* an interpreter loaded since the last window */
        memprof_cfg.rates = (struct memprof_rates){rate, device_rate};
        memprof_live_table_set_rate(rate);
        memprof_cfg.max_depth = max_depth ? max_depth : MEMPROF_DEFAULT_DEPTH;
        memprof_drops_reset();
        memprof_notes_reset();
        memprof_live_bytes_reset();
        if (memprof_cfg.log_mode) {   /* the log is named after the dump that will close it */
            open_window_log(name_seq + 1);
        } else {
            memprof_log_forget();   /* an earlier window's log is not this window's */
        }
        window_start_ns = memprof_now_ns();
        atomic_store(&window_deadline_ns, deadline_ns);
        window_is_view = view;
        next_window_id();
        memprof_upcalls.pymem_find();
        atomic_store_explicit(&memprof_active_window, last_window, memory_order_release);
        if (memprof_upcalls.got_arm() != 0)
            memprof_log("could not redirect the GOT: allocations are not seen");
        memprof_upcalls.pools_arm();
        memprof_control_wake();   /* the block says so at once (and log mode ticks) */
        rc = 0;
    }
    pthread_mutex_unlock(&window_lock);
    if (rc == 0)
        memprof_upcalls.pymem_sync();   /* Python's allocators wrapped */
    memprof_leave();
    return rc;
}

/* The open window until now, as its files describe it (window_lock held). */
static struct memprof_window_info window_so_far(void)
{
    return (struct memprof_window_info){
        .id = last_window,
        .rates = memprof_cfg.rates,
        .max_depth = memprof_cfg.max_depth,
        .start_ns = window_start_ns,
        .end_ns = memprof_now_ns(),
        .forked_from = forked_from,
        .drops = memprof_drops_now(),
        .failure = {.heap = -1},
    };
}

/* The window's files, under the next sequence number (window_lock held). */
static int dump_window(const struct memprof_window_info *w, char *path_out, size_t path_len)
{
    char path[MEMPROF_PATH_MAX];
    int rc = memprof_write_dump(w, memprof_cfg.prefix, name_seq + 1, path, sizeof path);
    if (rc == 0) {
        dump_seq++;
        name_seq++;
        strcpy(last_dump, path);
        if (memprof_cfg.verbose)
            memprof_log("wrote %s", path);
    } else {
        failed_dumps++;
        /* ESTALE: sysutil.c's word for a folder replaced since the window opened */
        const char *why = errno == ESTALE ? "its folder was replaced since the window opened "
                                            "(a link or another folder in its place)"
                                          : strerror(errno);
        int n = snprintf(dump_failure, sizeof dump_failure, "could not write %s%d.%04u.heap: %s",
                         memprof_cfg.prefix, (int)getpid(), name_seq + 1, why);
        (void)n;   /* it fits: memprof_set_prefix keeps the prefix 32 bytes short of the path limit */
        memprof_report_failure(dump_failure);
    }
    if (rc == 0 && path_out != NULL && path_len > 0)
        strncpy(path_out, path, path_len - 1)[path_len - 1] = '\0';
    return rc;
}

/* Writes the open window's files; `close` ends the window first, and the end of a
 * live view's window writes none (path_out is then ""). `at_exit`: the process ends
 * after it, so the lookups of the stack table go before the files are written, which
 * read the tables without them: the dump's own memory no longer adds to theirs at the
 * process's peak. */
static int write_window(bool close, bool at_exit, bool python_exit, char *path_out,
                        size_t path_len)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (memprof_window_id() == 0) {
        errno = ESRCH;
    } else {
        if (close) {
            memprof_upcalls.got_disarm();
            memprof_upcalls.pools_disarm();
            atomic_store_explicit(&memprof_active_window, 0, memory_order_release);
            memprof_control_window_closed();
            atomic_store(&window_deadline_ns, 0);
            memprof_log_tick();   /* the window's last interval */
            memprof_log_close();
        }
        memprof_live_bytes_flush();   /* what this thread held back, in the figures */
        struct memprof_window_info w = window_so_far();
        w.closed = close;
        w.python_exit = python_exit;
        if (close)
            closed_dropped = memprof_dropped_samples(&w.drops);
        /* every block a pointer may pass through is known only at rate 1 */
        struct memprof_unreachable unreachable;
        bool scanned = close && (at_exit || python_exit) && memprof_cfg.leak_scan &&
                       w.rates.host == 1 && memprof_unreachable_scan(&unreachable, memprof_stack_ids());
        w.unreachable = scanned ? &unreachable : NULL;
        if (close && at_exit)
            memprof_stack_table_release_lookups();
        if (!close || !window_is_view) {
            rc = dump_window(&w, path_out, path_len);
        } else {
            rc = 0;
            if (path_out != NULL && path_len > 0)
                path_out[0] = '\0';
        }
        if (close) {
            int saved = errno;
            if (at_exit || python_exit)   /* the reader's last period, as the process ends */
                memprof_write_last_snapshot(&w);
            memprof_snapshot_release();
            errno = saved;
        }
        if (scanned)
            memprof_unreachable_release(&unreachable);
    }
    pthread_mutex_unlock(&window_lock);
    if (close) {
        int saved = errno;
        memprof_upcalls.pymem_sync();   /* Python's allocators unwrapped */
        memprof_control_wake();
        errno = saved;
    }
    memprof_leave();
    return rc;
}

int memprof_capture_stop(char *path_out, size_t path_len)
{
    return write_window(true, false, false, path_out, path_len);
}

int memprof_capture_stop_at_exit(void)
{
    return write_window(true, true, false, NULL, 0);
}

int memprof_capture_stop_at_python_exit(void)
{
    return write_window(true, false, true, NULL, 0);
}

int memprof_capture_dump(char *path_out, size_t path_len)
{
    return write_window(false, false, false, path_out, path_len);
}

int memprof_capture_snapshot(const char *prefix, uint64_t since, uint64_t *token)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = -1;
    if (memprof_window_id() == 0) {
        errno = ESRCH;
    } else if (prefix[0] != '/') {
        errno = EINVAL;
    } else {
        struct memprof_window_info w = window_so_far();
        char path[MEMPROF_PATH_MAX];
        rc = memprof_write_snapshot(&w, prefix, since, token, path, sizeof path);
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
    return rc;
}

int memprof_capture_at_failure(enum memprof_heap heap, uint64_t bytes, int error,
                               const char *raised)
{
    static _Atomic uint32_t written_for;   /* the window whose files were written */
    uint32_t window = memprof_window_id();
    if (window == 0 || atomic_exchange(&written_for, window) == window)
        return 0;
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    int rc = 0;
    if (memprof_window_id() == window && !window_is_view) {
        /* it fits: memprof_set_prefix keeps the prefix 32 bytes short of the path limit */
        char prefix[MEMPROF_PATH_MAX + sizeof MEMPROF_FAILURE_TAG], path[MEMPROF_PATH_MAX];
        snprintf(prefix, sizeof prefix, "%s" MEMPROF_FAILURE_TAG, memprof_cfg.prefix);
        struct memprof_window_info w = window_so_far();
        w.failure.heap = (int)heap;
        w.failure.bytes = bytes;
        w.failure.error = error;
        w.failure.raised = raised;
        rc = memprof_write_dump(&w, prefix, name_seq + 1, path, sizeof path);
        if (rc == 0 && memprof_cfg.verbose)
            memprof_log("wrote %s", path);
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
    return rc;
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
    if (memprof_window_id() == 0)
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

void memprof_capture_status(struct memprof_status *s)
{
    memprof_enter();
    pthread_mutex_lock(&window_lock);
    s->capturing = memprof_window_id() != 0;
    s->dumps = dump_seq;
    s->window_start_ns = window_start_ns;
    s->deadline_ns = atomic_load(&window_deadline_ns);
    /* Samples a thread was taking as the window closed may be dropped after its files
     * were written: once closed, the status says what the files say. */
    struct memprof_drop_counts drops = memprof_drops_now();
    s->dropped_samples = s->capturing ? memprof_dropped_samples(&drops) : closed_dropped;
    strcpy(s->last_dump, last_dump);
    s->failed_dumps = failed_dumps;
    strcpy(s->dump_failure, dump_failure);
    struct memprof_live_totals live = {.of_stack = NULL};
    if (s->capturing)
        memprof_live_totals(memprof_cfg.rates, &live);
    s->live_samples = 0;
    for (int h = 0; h < HEAP_COUNT; h++) {
        s->live_samples += live.by_heap[h].objs;
        s->heap_live_bytes[h] = (uint64_t)live.by_heap[h].est_bytes;
        int64_t peak = memprof_live_bytes_of((enum memprof_heap)h).peak;
        s->heap_peak_bytes[h] = peak > 0 ? (uint64_t)peak : 0;
    }
    pthread_mutex_unlock(&window_lock);
    memprof_leave();
}

/* A forked child is a process of its own: empty tables, its own pid in the
 * file names, sequence numbers from 1.  It carries on its parent's window only
 * where forks are followed (MEMPROF_FOLLOW_FORK=1, `run --follow-fork`), under a
 * new id so no counter of the parent's window is summed, and its files name the
 * parent; otherwise the window ends unwritten there: a shell's subshells and a
 * server's workers are not the program asked for (ARCHITECTURE.md, *Which
 * processes are profiled*).  The GOT stays as it is: its hooks pass through
 * while no window is open. */
void memprof_window_after_fork(void)
{
    pid_t parent = getppid();
    pthread_mutex_init(&window_lock, NULL);
    if (tables_ready) {
        memprof_stack_table_reset();
        memprof_live_table_after_fork();
        memprof_stack_counts_after_fork();
    }
    next_window_id();
    bool follow = memprof_window_id() != 0 && memprof_cfg.follow_fork;
    atomic_store(&memprof_active_window, follow ? last_window : 0);
    if (!follow)
        atomic_store(&window_deadline_ns, 0);
    forked_from = follow ? parent : 0;
    last_dump[0] = '\0';
    window_start_ns = memprof_now_ns();
    dump_seq = 0;
    name_seq = 0;
    name_seq_prefix[0] = '\0';
    failed_dumps = 0;
    dump_failure[0] = '\0';
    memprof_snapshot_release();   /* the parent's reader is not the child's */
    /* The child's window gets a log of its own, named after the child. */
    if (follow && memprof_cfg.log_mode)
        open_window_log(1);
}
