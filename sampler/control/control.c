/* The control block and the control thread: how a controller in another
 * process (mem_profiler -p PID) opens and closes capture windows here without
 * ptrace or signals (layout and protocol in memprof_control.h).
 *
 * One thread per process sleeps on a futex on command_seq: no CPU while idle,
 * no polling.  While a window with a deadline is open it sleeps only until the
 * deadline, then closes the window and writes its dump itself, so a window
 * whose controller died still ends and nothing captured is lost.  In log mode
 * it also wakes every interval to write the timeline records.
 *
 * The thread never keeps the process alive: glibc ends a process when its
 * last thread ends, and this thread, which blocks every signal, would
 * otherwise outlive a main thread that called pthread_exit and leave the
 * process unkillable but by SIGKILL.  It leaves as soon as it is alone (see
 * watch_main_thread). */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/options.h"
#include "base/real_function.h"
#include "base/signals.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "base/upcalls.h"
#include "control/block_file.h"
#include "control/control.h"
#include "control/requests.h"
#include "control/window.h"
#include "memprof_control.h"
#include "sample/sample.h"
#include "writers/event_log.h"

_Static_assert(HEAP_COUNT <= MEMPROF_CONTROL_HEAPS, "every heap has a status slot");
_Static_assert(sizeof(struct memprof_control) <= MEMPROF_CONTROL_WAKE_OFFSET &&
                   MEMPROF_CONTROL_WAKE_OFFSET + MEMPROF_WINDOW_PAGE <= MEMPROF_CONTROL_FILE_SIZE,
               "the wake page follows the block in its file");

static struct memprof_control *block;
static char block_path[64];   /* where it is: mem_profiler.<pid>[.<random>] */
static int block_fd = -1;     /* a thread-less process's block file, for its wake page */
static _Atomic bool main_thread_gone;

/* The control thread, joinable, so that a change of credentials can wait for its end
 * (see "a change of credentials" below). */
enum { THREAD_RUN, THREAD_QUIT_ASKED, THREAD_LEAVING };
static pthread_t control_id;
static pid_t control_pid;   /* the process it runs in: not a vfork child sharing our memory */
static bool control_running;
static _Atomic int control_quit;

#define MAIN_WATCH_IDLE_NS 1000000000ull   /* main thread alive: look once a second */
#define MAIN_WATCH_GONE_NS 10000000ull     /* gone: look for being alone every 10 ms */
#define PYTHON_LOOK_NS 100000000ull        /* a thread-less window: Python's start looked for */

static long futex(uint32_t *word, int op, uint32_t value, const struct timespec *timeout)
{
    return syscall(SYS_futex, word, op, value, timeout, NULL, 0);
}

/* Field `field` (from 3) of a /proc stat line, NULL if it has none; the command
 * name (field 2) may hold spaces and ')', so fields count after its last ')'. */
static const char *stat_field(const char *stat, int field)
{
    const char *p = strrchr(stat, ')');
    for (int at = 2; p != NULL && at < field; at++)
        p = strchr(p + 1, ' ');
    return p ? p + 1 : NULL;
}

/* As a controller reads it from /proc/<pid>/stat: the main thread's own entry where
 * it asks (qemu-user emulates /proc/self/stat, with another start time), else the
 * process's. */
static uint64_t process_start_time(void)
{
    char stat[1024];
    bool main_thread = syscall(SYS_gettid) == getpid();
    memprof_read_small_file(main_thread ? PROC_THREAD_SELF "stat" : "/proc/self/stat", stat,
                            sizeof stat);
    const char *start = stat_field(stat, 22);
    return start ? strtoull(start, NULL, 10) : 0;
}

/* The control thread's start-up (its look through /dev/shm, then its first look at
 * /proc/self/stat) holds a descriptor or two; a process ending meanwhile waits for it
 * (a second at most), so that a program with no descriptor to spare still has one for
 * its files. */
#define START_WAIT_NS 1000000000ull
static uint32_t started_up;   /* futex word */

static void mark_started_up(void)
{
    if (!__atomic_load_n(&started_up, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&started_up, 1, __ATOMIC_RELEASE);
        futex(&started_up, FUTEX_WAKE, INT32_MAX, NULL);
    }
}

/* Waits while the futex word holds `value`, `most_ns` at most. */
static void wait_while(uint32_t *word, uint32_t value, uint64_t most_ns)
{
    uint64_t deadline = memprof_now_ns() + most_ns;
    for (uint64_t now; __atomic_load_n(word, __ATOMIC_ACQUIRE) == value &&
                       (now = memprof_now_ns()) < deadline;) {
        struct timespec left = {(time_t)((deadline - now) / 1000000000u),
                                (long)((deadline - now) % 1000000000u)};
        futex(word, FUTEX_WAIT, value, &left);
    }
}

void memprof_control_settle(void)
{
    if (control_running && !pthread_equal(control_id, pthread_self()))
        wait_while(&started_up, 0, START_WAIT_NS);
}

/* A program started to be captured (`run`) opens its window as it loads, just after
 * its control block is made: a controller's request that came between (a view's
 * window, for `run --push`) waits for it, a second at most, or the program's own
 * window would find one open and not start. */
static uint32_t requests_held;   /* futex word */

void memprof_control_hold_requests(bool hold)
{
    __atomic_store_n(&requests_held, hold, __ATOMIC_RELEASE);
    if (!hold)
        futex(&requests_held, FUTEX_WAKE, INT32_MAX, NULL);
}

/* ---- a main thread that ended with pthread_exit ----------------------------
 * pthread_exit from main is seen at once where its hook is reached (hooks_libc.c:
 * preloaded, or a redirected slot); otherwise (attached while it happened, or after a
 * detach) the once-a-second look at /proc/self/stat finds it. */
static struct memprof_real_fn real_pthread_exit = {"pthread_exit", "libc.so", NULL, NULL};

void memprof_control_thread_exits(void)
{
    if (syscall(SYS_gettid) == getpid()) {
        atomic_store(&main_thread_gone, true);
        memprof_control_wake();
    }
}

/* Leaves when this thread is the last one: glibc's exit(0) then runs in it,
 * with the program's exit handlers and our dump, as it would have run in the
 * program's last thread (their allocations are not sampled: this thread stays
 * busy).  Signals sent meanwhile are delivered first. */
static void watch_main_thread(void)
{
    /* Field 3 is the state ('Z': the main thread has ended), field 20 the
     * threads, the ended main thread among them. */
    char stat[1024];
    memprof_read_small_file("/proc/self/stat", stat, sizeof stat);
    const char *state = stat_field(stat, 3), *threads = stat_field(stat, 20);
    if (state != NULL && state[0] == 'Z')
        atomic_store(&main_thread_gone, true);
    if (threads == NULL || !atomic_load(&main_thread_gone) || strtol(threads, NULL, 10) > 2)
        return;
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    ((void (*)(void *))memprof_real_function(&real_pthread_exit))(NULL);
}

/* Whether a window opened or closed in-process since the block last said. */
static bool block_behind(void)
{
    bool capturing = memprof_window_id() != 0;
    return capturing != (block->state == MEMPROF_STATE_CAPTURING);
}

static bool follow_owner(void);
static void keep_wake_page(int fd);

/* ---- a program ended by a signal --------------------------------------------------
 * SIGTERM, SIGINT, SIGHUP and SIGQUIT, while the program's action for them is the
 * default, write the open window's files before the process ends by them.  The handler
 * asks this process's control thread to write them (the interrupted thread may hold the
 * window's lock or the allocator's; the control thread holds neither) and waits for it,
 * ENDING_WAIT_S at most; then the signal takes its default action: the exit status the
 * signal gives, a core where it makes one.  A handler of the program's stays in charge
 * (signals.c). */
#define ENDING_WAIT_S 10
#define ENDED_BY_EXIT (-1)   /* _exit asked, not a signal */
static const int ending_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
static _Atomic int ending_reason;   /* the first signal that asked, ENDED_BY_EXIT, 0: none */
static uint32_t ending_done;         /* futex word: the files are written (or could not be) */

/* Has the control thread write the open window's files, and waits for it. */
static void wait_for_ending_files(int reason)
{
    int none = 0;
    bool first = atomic_compare_exchange_strong(&ending_reason, &none, reason);
    if (control_running && (memprof_window_id() != 0 || !first)) {
        if (first)
            memprof_control_wake();
        struct timespec left = {ENDING_WAIT_S, 0};
        uint64_t deadline = memprof_now_ns() + ENDING_WAIT_S * 1000000000ull;
        while (!__atomic_load_n(&ending_done, __ATOMIC_ACQUIRE) && memprof_now_ns() < deadline) {
            futex(&ending_done, FUTEX_WAIT, 0, &left);
            uint64_t now = memprof_now_ns(), rest = deadline > now ? deadline - now : 0;
            left = (struct timespec){(time_t)(rest / 1000000000u), (long)(rest % 1000000000u)};
        }
    }
}

static void on_ending_signal(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    wait_for_ending_files(sig);
    errno = saved;
    memprof_signal_pass_on(sig, info, context);
}

/* In the control thread: a signal or _exit asked for the window's files. */
static void write_files_for_ending(void)
{
    if (atomic_load(&ending_reason) == 0 || __atomic_load_n(&ending_done, __ATOMIC_ACQUIRE))
        return;
    if (memprof_window_id() != 0)
        memprof_capture_stop_at_exit();
    __atomic_store_n(&ending_done, 1, __ATOMIC_RELEASE);
    futex(&ending_done, FUTEX_WAKE, INT32_MAX, NULL);
}

/* ---- a program ended by _exit ---------------------------------------------------
 * _exit (and _Exit) skip exit's handlers, and with them the sampler's destructor: a
 * forked worker ends so (Python's multiprocessing, PyTorch's DataLoader).  The open
 * window's files are written first, by the control thread as for an ending signal.
 * Not in the child of a vfork or posix_spawn, which shares its parent's memory and ran
 * no fork handler: its pid is not the one this control thread serves. */
void memprof_control_process_exits(void)
{
    if (getpid() == control_pid)
        wait_for_ending_files(ENDED_BY_EXIT);
}

static void *control_thread(void *arg)
{
    (void)arg;
    memprof_enter();   /* this thread's own allocations are never sampled */
    memprof_remove_stale_blocks();
    if (!follow_owner()) {
        mark_started_up();
        return NULL;
    }
    /* From the last answered request: one sent before this thread ran is not lost. */
    uint32_t seen = __atomic_load_n(&block->ack_seq, __ATOMIC_ACQUIRE);
    uint64_t next_tick = 0, next_watch = 0;
    for (;;) {
        int asked = THREAD_QUIT_ASKED;
        if (atomic_compare_exchange_strong(&control_quit, &asked, THREAD_LEAVING)) {
            mark_started_up();
            return NULL;
        }
        if (memprof_now_ns() >= next_watch || atomic_load(&main_thread_gone)) {
            watch_main_thread();
            struct memprof_control *was = block;
            if (!follow_owner()) {
                mark_started_up();
                return NULL;
            }
            if (block != was)
                seen = __atomic_load_n(&block->ack_seq, __ATOMIC_ACQUIRE);
            next_watch = memprof_now_ns() + MAIN_WATCH_IDLE_NS;
        }
        mark_started_up();
        struct timespec timeout, *wait_for = NULL;
        uint64_t deadline = memprof_capture_deadline();
        if (memprof_log_active()) {
            uint64_t now = memprof_now_ns();
            if (next_tick == 0 || now >= next_tick) {
                if (next_tick != 0)
                    memprof_log_tick();
                next_tick = now + MEMPROF_LOG_INTERVAL_MS * 1000000ull;
            }
            if (deadline == 0 || next_tick < deadline)
                deadline = next_tick;
        } else {
            next_tick = 0;
        }
        uint64_t watch = atomic_load(&main_thread_gone) ? memprof_now_ns() + MAIN_WATCH_GONE_NS
                                                        : next_watch;
        uint64_t python = memprof_upcalls.pymem_poll();   /* an interpreter starting: a look soon */
        if (python != 0 && python < watch)
            watch = python;
        bool only_watching = deadline == 0 || watch < deadline;
        if (only_watching)
            deadline = watch;
        if (deadline != 0) {
            uint64_t now = memprof_now_ns();
            uint64_t left = deadline > now ? deadline - now : 0;
            timeout = (struct timespec){(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
            wait_for = &timeout;
        }
        bool timed_out = false;
        /* not while the block is behind the window: its wake may have come before this
         * wait began */
        if ((deadline == 0 || deadline > memprof_now_ns()) && !block_behind())
            timed_out = futex(&block->command_seq, FUTEX_WAIT, seen, wait_for) != 0 &&
                        errno == ETIMEDOUT;

        write_files_for_ending();
        uint64_t window_deadline = memprof_capture_deadline();
        bool window_ended = window_deadline != 0 && memprof_now_ns() >= window_deadline;
        if (window_ended) {
            __atomic_store_n(&block->working, 1, __ATOMIC_RELAXED);
            memprof_control_stop_window();   /* the window's time is up */
        }

        uint32_t seq = __atomic_load_n(&block->command_seq, __ATOMIC_ACQUIRE);
        /* A wake of the timer alone (the main thread's watch, the log's tick) publishes
         * nothing: the status sums every live sample, and a controller's request, a
         * window's end and a window opened or closed in-process publish it. */
        if (timed_out && !window_ended && seq == seen && !block_behind())
            continue;
        if (seq != seen) {
            wait_while(&requests_held, 1, START_WAIT_NS);
            __atomic_store_n(&block->working, 1, __ATOMIC_RELAXED);
            seen = seq;
            const char *why = NULL;
            int rc = memprof_control_carry_out(block, block->command, &why);
            block->result = rc == 0 ? 0 : errno;
            if (rc != 0)
                snprintf(block->message, sizeof block->message, "%s", why ? why : strerror(errno));
            else
                block->message[0] = '\0';
        }
        memprof_control_publish(block);
        __atomic_store_n(&block->working, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&block->ack_seq, seen, __ATOMIC_RELEASE);
        futex(&block->ack_seq, FUTEX_WAKE, INT32_MAX, NULL);
    }
    return NULL;
}

/* The block is made under a new, unpredictable temporary name (O_EXCL,
 * O_NOFOLLOW) and renamed into place once its identity is written, so a reader
 * never finds a half-made block; the rename replaces a block left by an earlier
 * process of ours with our pid (see memprof_block_file_place).  Where another user has taken the
 * name mem_profiler.<pid> (a file of theirs, a directory, the block this process
 * made as root before it changed user), or a process of another PID namespace with
 * our pid has made its block there, the block goes to mem_profiler.<pid>.<random>
 * instead: readers look at both and trust only a regular file of the process's
 * owner or root, mode 0600, that names the process.  `replaced` (the block of the
 * process's former user) is retired just before the new one appears. */
static int create_block(struct memprof_control *replaced, const char *replaced_path)
{
    char tmp[96];
    uid_t owner = memprof_block_owner(replaced != NULL ? replaced->uid : geteuid());
    int fd = memprof_block_file_create(owner, tmp, sizeof tmp);
    if (fd < 0)
        return -1;
    /* Its pages allocated before it is mapped: a store into a page a full /dev/shm
     * cannot back would kill the process with SIGBUS. */
    void *p = MAP_FAILED;
    struct memprof_fsize_guard guard;
    memprof_fsize_hold(&guard);
    bool thread_less = atomic_load(&memprof_control_thread_less);
    int err = fchmod(fd, 0600) == 0 ? posix_fallocate(fd, 0, sizeof *block) : errno;
    if (err == 0 && thread_less)   /* the file is then MEMPROF_CONTROL_FILE_SIZE */
        err = posix_fallocate(fd, MEMPROF_CONTROL_WAKE_OFFSET,
                              MEMPROF_CONTROL_FILE_SIZE - MEMPROF_CONTROL_WAKE_OFFSET);
    memprof_fsize_release(&guard);
    if (err == 0) {
        p = mmap(NULL, sizeof *block, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        err = errno;
    }
    if (p == MAP_FAILED) {
        unlink(tmp);
        close(fd);
        errno = err;
        return -1;
    }
    block = p;
    block->magic = MEMPROF_CONTROL_MAGIC;
    block->abi = MEMPROF_CONTROL_ABI;
    block->pid = (int32_t)getpid();
    block->uid = (uint32_t)owner;
    block->pid_ns = memprof_own_pid_namespace();
    block->start_time = process_start_time();
    /* the process's identity as a controller sees it from outside (under qemu-user, the
     * emulator's), not memprof_proc_file's view of the program */
    ssize_t n = readlink(PROC_THREAD_SELF "exe", block->exe, sizeof block->exe - 1);
    block->exe[n > 0 ? n : 0] = '\0';
    snprintf(block->own_malloc, sizeof block->own_malloc, "%s", memprof_upcalls.own_malloc());
    block->thread_less = thread_less;
    memprof_control_publish(block);
    if (replaced != NULL)
        memprof_block_file_retire(replaced, replaced_path);
    snprintf(block_path, sizeof block_path, "/dev/shm/mem_profiler.%d", (int)getpid());
    for (int attempt = 0; !memprof_block_file_place(tmp, block_path); attempt++) {
        char name[9];
        memprof_random_name(name);
        if (attempt == 8 || (errno != EISDIR && errno != EPERM && errno != EACCES &&
                             errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR)) {
            int saved = errno;
            unlink(tmp);
            close(fd);
            munmap(block, sizeof *block);
            block = NULL;
            errno = saved;
            return -1;
        }
        snprintf(block_path, sizeof block_path, "/dev/shm/mem_profiler.%d.%s", (int)getpid(),
                 name);
    }
    /* Locked until now, so that it was never taken for a dead process's temporary;
     * unlocked by hand, the mapping keeping the open file (and its lock) alive. */
    flock(fd, LOCK_UN);
    if (thread_less)
        keep_wake_page(fd);
    else
        close(fd);
    return 0;
}

/* A block for the user the process runs as now (block_owner), made by the control
 * thread when it starts (after each set*id call: see "a change of credentials") and
 * once a second (a prctl(PR_SET_DUMPABLE), or a change the hooks did not see: an
 * attached process while no window is open).  The former block is retired; it
 * stays where no new one can be made.  False when the thread has no block left. */
static bool follow_owner(void)
{
    if (block->uid == (uint32_t)memprof_block_owner(block->uid))
        return true;
    struct memprof_control *former = block;
    char former_path[sizeof block_path];
    memcpy(former_path, block_path, sizeof block_path);
    if (create_block(former, former_path) == 0)
        return true;
    if (block == NULL) {   /* retired already: it had no place to go */
        memprof_log("no control block (%s): this process cannot be captured from outside",
                    strerror(errno));
        return false;
    }
    memprof_log("no control block for its new user (%s): only root can capture it",
                strerror(errno));
    block = former;
    memcpy(block_path, former_path, sizeof block_path);
    return true;
}

static bool said_no_block;   /* once per process and its forked children */

/* The thread takes no signals meant for the program (glibc's own, SIGSETXID among
 * them, stay open: sigfillset leaves them out). */
static bool spawn_control_thread(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    atomic_store(&control_quit, THREAD_RUN);
    control_pid = getpid();
    control_running = pthread_create(&control_id, &attr, control_thread, NULL) == 0;
    if (control_running)
        pthread_setname_np(control_id, "memprof-ctl");
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return control_running;
}

/* ---- a thread on request --------------------------------------------------------
 * A zygote checks that it has one thread before it forks its sandboxed children
 * (Chromium's and its kin's, started with --type=zygote), and any process may ask for
 * the same (MEMPROF_CONTROL=on-request).  Such a process gets its block but no thread
 * until a controller asks.  While it has no window, the window word's page is its
 * block file's wake page (sample/window_page.h): a controller's request stores
 * MEMPROF_CONTROL_WAKE there, the next allocation goes down the slow path and makes
 * the thread, which answers.  While a window opened in-process is open (run's, the API's), the page is
 * the process's own and each sample looks for a request not answered.  A process that
 * does not allocate does not answer: the controller says so. */
static pthread_mutex_t credentials_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t python_look_ns;   /* when a thread-less window looks for Python's start */

/* The thread-less process's block file kept open: its wake page is shared while no
 * window is open. */
static void keep_wake_page(int fd)
{
    if (block_fd >= 0)
        close(block_fd);
    block_fd = fd;
    if (memprof_window_id() == 0 && memprof_window_page_share(fd, MEMPROF_CONTROL_WAKE_OFFSET) != 0)
        memprof_log("no wake page (%s): this process answers a controller only while it "
                    "captures", strerror(errno));
}

/* Its thread, made once.  `from_sample`: by an allocating thread, which must not wait
 * for a lock (a change of credentials under way looks again at its end). */
static void make_thread_now(bool from_sample)
{
    if (from_sample ? pthread_mutex_trylock(&credentials_lock) != 0
                    : pthread_mutex_lock(&credentials_lock) != 0)
        return;
    if (atomic_load(&memprof_control_thread_less)) {
        memprof_window_page_own(true);
        atomic_store(&memprof_control_thread_less, false);
        block->thread_less = 0;
        close(block_fd);
        block_fd = -1;
        if (!spawn_control_thread())
            memprof_log("could not make the control thread (%s): this process cannot be "
                        "captured from outside", strerror(errno));
    }
    pthread_mutex_unlock(&credentials_lock);
}

static bool asked(void)
{
    return atomic_load_explicit(&memprof_active_window, memory_order_relaxed) ==
               MEMPROF_WINDOW_WAKE ||
           __atomic_load_n(&block->command_seq, __ATOMIC_ACQUIRE) !=
               __atomic_load_n(&block->ack_seq, __ATOMIC_ACQUIRE);
}

void memprof_control_look(void)
{
    if (block == NULL)
        return;
    if (asked()) {
        if (block->pid == (int32_t)getpid())
            make_thread_now(true);
        else   /* a child made by clone, without fork's handlers: the wake is its parent's */
            memprof_window_page_own(false);
        return;
    }
    uint64_t now = memprof_now_ns();
    if (memprof_window_id() != 0 && now >= python_look_ns) {
        uint64_t next = memprof_upcalls.pymem_poll();
        python_look_ns = next != 0 ? next : now + PYTHON_LOOK_NS;
    }
}

/* window_lock held */
void memprof_control_window_opens(void)
{
    for (size_t i = 0; control_running && i < sizeof ending_signals / sizeof *ending_signals; i++)
        memprof_signal_take(ending_signals[i], on_ending_signal, false);
    if (!atomic_load(&memprof_control_thread_less))
        return;
    if (memprof_cfg.log_mode)
        make_thread_now(false);
    else
        memprof_window_page_own(true);   /* a request waiting is seen by the samples */
}

/* window_lock held */
void memprof_control_window_closed(void)
{
    if (atomic_load(&memprof_control_thread_less) && block_fd >= 0 &&
        memprof_window_page_share(block_fd, MEMPROF_CONTROL_WAKE_OFFSET) != 0)
        memprof_log("no wake page (%s): this process answers a controller only while it "
                    "captures", strerror(errno));
}

static void start_control_thread(void)
{
    if (create_block(NULL, NULL) != 0) {
        if (!said_no_block)
            memprof_log("no control block (%s): this process cannot be captured from outside",
                        strerror(errno));
        said_no_block = true;
        atomic_store(&memprof_control_thread_less, false);
        return;
    }
    if (!atomic_load(&memprof_control_thread_less) && !spawn_control_thread())
        memprof_control_fini();
}

void memprof_control_init(void)
{
    memprof_enter();
    atomic_store(&memprof_control_thread_less,
                 memprof_cfg.control_on_request || memprof_has_argument("--type=zygote"));
    start_control_thread();
    memprof_leave();
}

/* A forked child has no control thread and shares its parent's block: it
 * gets a block and a thread of its own. */
void memprof_control_after_fork(void)
{
    pthread_mutex_init(&credentials_lock, NULL);
    control_running = false;
    atomic_store(&ending_reason, 0);   /* the parent's ending is not the child's */
    ending_done = 0;
    if (block != NULL)
        munmap(block, sizeof *block);
    block = NULL;
    if (block_fd >= 0)
        close(block_fd);
    block_fd = -1;
    memprof_control_init();
}

/* ---- a change of credentials ---------------------------------------------------
 * glibc has every thread of the process make a set*id call (SIGSETXID) and aborts
 * when one thread's result differs from the caller's.  Capabilities and
 * PR_SET_KEEPCAPS are per thread: a program that drops its uid keeping its
 * capabilities (setpriv) raises them again in its own thread only, and a control
 * thread left without them fails the next call.  So the control thread is ended
 * before each such call and made again after it by the calling thread, whose
 * credentials it then has.  A request sent meanwhile is carried out by the new
 * thread, which first gives the process a new block where the call changed who
 * may use it (follow_owner); a controller that had the former one open then has to
 * open the process again. */
#define PAUSE_STEP_NS 10000000ll       /* a wake-up lost to a thread not yet asleep */
#define PAUSE_GIVE_UP_NS 5000000000ll  /* a thread stuck behind a lock the caller holds */

bool memprof_control_pause(void)
{
    if (getpid() != control_pid)
        return false;   /* a vfork child: the thread and this state are its parent's */
    pthread_mutex_lock(&credentials_lock);
    if (!control_running || pthread_equal(control_id, pthread_self())) {
        pthread_mutex_unlock(&credentials_lock);
        return false;
    }
    atomic_store(&control_quit, THREAD_QUIT_ASKED);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    for (long long waited = 0;; waited += PAUSE_STEP_NS) {
        int asked = THREAD_QUIT_ASKED;
        if (waited >= PAUSE_GIVE_UP_NS &&
            atomic_compare_exchange_strong(&control_quit, &asked, THREAD_RUN)) {
            pthread_mutex_unlock(&credentials_lock);
            return false;   /* left running: the call goes on as without this pause */
        }
        memprof_control_wake();
        until.tv_nsec += PAUSE_STEP_NS;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (pthread_clockjoin_np(control_id, NULL, CLOCK_MONOTONIC, &until) == 0)
            break;
    }
    control_running = false;
    return true;
}

/* A thread-less process follows the change itself. */
static void follow_owner_thread_less(void)
{
    if (!atomic_load(&memprof_control_thread_less) || block == NULL ||
        block->pid != (int32_t)getpid())
        return;
    pthread_mutex_lock(&credentials_lock);
    memprof_enter();
    if (atomic_load(&memprof_control_thread_less))
        follow_owner();
    memprof_leave();
    pthread_mutex_unlock(&credentials_lock);
}

void memprof_control_resume(bool paused)
{
    if (!paused) {
        follow_owner_thread_less();
        return;
    }
    memprof_enter();
    spawn_control_thread();
    memprof_leave();
    pthread_mutex_unlock(&credentials_lock);
}

/* A window opened in-process (log mode needs the timeline's ticks). */
void memprof_control_wake(void)
{
    if (block != NULL)
        futex(&block->command_seq, FUTEX_WAKE, 1, NULL);
}

void memprof_control_fini(void)
{
    if (block != NULL && block->pid == (int32_t)getpid()) {
        unlink(block_path);
        memprof_remove_stale_blocks();   /* those of children that _exit'ed after our last fork */
    }
}
