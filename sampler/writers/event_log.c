/* The event log of --mode log (format in memprof_log.h): sampled allocations
 * and frees, timeline records every interval, the program's marks and the
 * device operations its device hooks see.
 *
 * A thread's events go first into a chunk of its own, so the sampling path
 * takes no lock another thread wants; a full chunk, the control thread's tick
 * and the window's end move chunks into the file's buffer, behind a mutex,
 * each event after the stack record the file still lacks.  Events are thus in
 * time order within a thread's run of them, not across threads: readers order
 * them by time.  The tick also writes the buffer out, so what a killed process
 * leaves on disk is at most one interval behind.  Files rotate at a size cap
 * and the oldest beyond the maximum count is deleted. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "base/upcalls.h"
#include "memprof_log.h"
#include "tables/frame_tree.h"
#include "tables/live_bytes.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"
#include "writers/event_log.h"

#define BUF_BYTES (1u << 20)
#define CHUNK_EVENTS 256

struct memprof_log_chunk {
    _Atomic int busy;            /* its thread appending, or a drain */
    bool held_by_tick;           /* busy for a tick's record (memprof_log_tick) */
    uint32_t n;
    struct memprof_log_event events[CHUNK_EVENTS];
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t tick_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool active;
static int fd = -1;
static char base[MEMPROF_PATH_MAX];      /* <prefix><pid>.<seq> */
static unsigned file_index, oldest_index, max_files;
static uint64_t cap_bytes, file_bytes;
static unsigned char *buf;
static size_t buf_len;
static uint64_t *emitted;                /* stack ids, then node ids, already in the file */
static size_t emitted_bytes;
static struct memprof_log_header header;
static int log_error;                    /* errno of the write that stopped the log */

bool memprof_log_active(void)
{
    return atomic_load_explicit(&active, memory_order_relaxed);
}

/* After a failed write (a full disk) the log stops where it is: the files
 * written stay as they are, none is deleted for a new one that could not be
 * written, and the .heap file says why the log ends early. */
static void stop_locked(int error)
{
    log_error = error;
    atomic_store(&active, false);
    if (fd >= 0)
        close(fd);
    fd = -1;
    buf_len = 0;
}

static void flush_locked(void)
{
    if (fd >= 0 && buf_len > 0 && memprof_write_all(fd, buf, buf_len) != 0)
        stop_locked(errno);
    buf_len = 0;
}

static void file_name(char *path, size_t len, unsigned index)
{
    snprintf(path, len, "%s.%u.memlog", base, index);
}

/* A new file, made under a temporary name that nothing planted can redirect
 * and renamed into place once its header is on disk; only then is the oldest
 * file beyond the count deleted. */
static int open_file_locked(void)
{
    char path[MEMPROF_PATH_MAX + 32], tmp[MEMPROF_PATH_MAX + 48];
    file_name(path, sizeof path, file_index);
    int f = memprof_create_temp(path, tmp, sizeof tmp, 0644);
    if (f < 0)
        return -1;
    header.file_index = file_index;
    if (memprof_write_all(f, &header, sizeof header) != 0 || memprof_rename(tmp, path) != 0) {
        int saved = errno;
        close(f);
        memprof_unlink(tmp);
        errno = saved;
        return -1;
    }
    fd = f;
    buf_len = 0;
    file_bytes = sizeof header;
    memprof_zero_pages(emitted, emitted_bytes);
    while (file_index - oldest_index + 1 > max_files) {
        file_name(path, sizeof path, oldest_index++);
        memprof_unlink(path);
    }
    return 0;
}

static void rotate_if_needed_locked(size_t incoming)
{
    if (file_bytes + incoming <= cap_bytes || file_bytes == sizeof header)
        return;
    flush_locked();
    if (fd < 0)
        return;
    close(fd);
    fd = -1;
    file_index++;
    if (open_file_locked() != 0)
        stop_locked(errno);
}

static void append_locked(const void *record, size_t len)
{
    if (buf_len + len > BUF_BYTES)
        flush_locked();
    memcpy(buf + buf_len, record, len);
    buf_len += len;
    file_bytes += len;
}


static uint32_t thread_id(void)
{
    if (memprof_thread.tid == 0)
        memprof_thread.tid = (uint32_t)syscall(SYS_gettid);
    return memprof_thread.tid;
}

static bool take_bit(uint64_t i)   /* whether bit i was clear; set now */
{
    bool clear = !(emitted[i / 64] & (1ull << (i % 64)));
    emitted[i / 64] |= 1ull << (i % 64);
    return clear;
}

/* A node's id as the files name it: a chain's head is not written, its children
 * hang from the root. */
static uint32_t written_id(uint32_t node)
{
    return node != 0 && memprof_tree_node(node).parent != 0 ? node : 0;
}

/* The nodes of a chain the file lacks, from the root end. */
static void emit_chain_locked(uint32_t leaf, uint8_t heap)
{
    uint32_t chain[MEMPROF_CHAIN_ROOM];
    int n = 0;
    for (uint32_t id = written_id(leaf); id != 0 && n < MEMPROF_CHAIN_ROOM;
         id = written_id(memprof_tree_node(id).parent)) {
        if (!take_bit((uint64_t)memprof_cfg.max_stacks + id))
            break;
        chain[n++] = id;
    }
    while (n > 0) {
        uint32_t id = chain[--n];
        struct memprof_node node = memprof_tree_node(id);
        struct memprof_log_node r = {{LOG_NODE, heap, sizeof r}, id, written_id(node.parent),
                                     memprof_tree_frame(node.frame)};
        append_locked(&r, sizeof r);
    }
}

static void emit_stack_locked(uint32_t stack)
{
    if (stack == STACK_NONE || emitted[stack / 64] & (1ull << (stack % 64)))
        return;
    /* room for the stack and its nodes in one file (a new file has none of them) */
    rotate_if_needed_locked(2 * MEMPROF_CHAIN_ROOM * sizeof(struct memprof_log_node) +
                            sizeof(struct memprof_log_tree_stack) + sizeof(struct memprof_log_event));
    take_bit(stack);
    struct memprof_stack k = memprof_stack_get(stack);
    uint8_t heap = (uint8_t)k.heap;
    emit_chain_locked(k.native, heap);
    emit_chain_locked(k.python, heap);
    struct memprof_log_tree_stack s = {{LOG_TREE_STACK, heap, sizeof s}, stack,
                                       written_id(k.native), written_id(k.python), k.label};
    append_locked(&s, sizeof s);
}

static void chunk_lock(struct memprof_log_chunk *c)
{
    while (atomic_exchange_explicit(&c->busy, 1, memory_order_acquire))
        sched_yield();   /* held by a drain of the tick: a few microseconds */
}

static void chunk_unlock(struct memprof_log_chunk *c)
{
    atomic_store_explicit(&c->busy, 0, memory_order_release);
}

static void append_event_locked(const struct memprof_log_event *e)
{
    if (!atomic_load(&active))
        return;
    rotate_if_needed_locked(sizeof *e);
    emit_stack_locked(e->stack);
    append_locked(e, sizeof *e);
}

/* Moves a chunk's events into the file's buffer (the chunk's lock held). */
static void drain(struct memprof_log_chunk *c)
{
    pthread_mutex_lock(&log_lock);
    for (uint32_t i = 0; i < c->n; i++)
        append_event_locked(&c->events[i]);
    c->n = 0;
    pthread_mutex_unlock(&log_lock);
}

static void drain_chunk(struct memprof_log_chunk *c)
{
    chunk_lock(c);
    drain(c);
    chunk_unlock(c);
}

static void hold_chunk(struct memprof_log_chunk *c)
{
    chunk_lock(c);
    drain(c);
    c->held_by_tick = true;
}

/* Only the chunks the tick holds: a thread's chunk made since is its thread's. */
static void release_chunk(struct memprof_log_chunk *c)
{
    if (c->held_by_tick) {
        c->held_by_tick = false;
        chunk_unlock(c);
    }
}

static void empty_chunk(struct memprof_log_chunk *c)
{
    chunk_lock(c);
    c->n = 0;
    chunk_unlock(c);
}

static struct memprof_log_chunk *this_thread_chunk(void)
{
    struct memprof_log_chunk **slot = memprof_log_chunk_slot();
    if (slot == NULL)
        return NULL;
    if (UNLIKELY(*slot == NULL))
        __atomic_store_n(slot, memprof_map(sizeof **slot), __ATOMIC_RELEASE);
    return *slot;
}

int memprof_log_open(const char *prefix, unsigned seq, uint64_t cap, unsigned files)
{
    memprof_log_chunks_each(empty_chunk);   /* late events of an earlier window, or a parent's */
    memprof_remove_dead_temps_beside(prefix);
    pthread_mutex_lock(&log_lock);
    int rc = -1;
    if (buf == NULL)
        buf = memprof_map(BUF_BYTES);
    emitted_bytes = ((size_t)memprof_cfg.max_stacks + memprof_cfg.max_nodes + 64) / 64 * 8;
    if (emitted == NULL)
        emitted = memprof_map(emitted_bytes);
    if (buf != NULL && emitted != NULL) {
        snprintf(base, sizeof base, "%s%d.%04u", prefix, (int)getpid(), seq);
        cap_bytes = cap > 4096 ? cap : 4096;
        max_files = files ? files : 1;
        file_index = oldest_index = 1;
        memcpy(header.magic, MEMPROF_LOG_MAGIC, sizeof header.magic);
        header.version = MEMPROF_LOG_VERSION;
        header.pid = (int32_t)getpid();
        header.rate = memprof_cfg.rates.host;
        header.device_rate = memprof_cfg.rates.device;
        header.start_ns = memprof_now_ns();
        header.interval_ms = MEMPROF_LOG_INTERVAL_MS;
        log_error = 0;
        rc = open_file_locked();
        if (rc != 0)
            log_error = errno;
    }
    atomic_store(&active, rc == 0);
    pthread_mutex_unlock(&log_lock);
    return rc;
}

const char *memprof_log_base(void)
{
    return base[0] != '\0' && header.pid == (int32_t)getpid() ? base : NULL;
}

int memprof_log_error(void)
{
    return log_error;
}

void memprof_log_forget(void)
{
    pthread_mutex_lock(&log_lock);
    base[0] = '\0';
    log_error = 0;
    pthread_mutex_unlock(&log_lock);
}

void memprof_log_close(void)
{
    memprof_log_chunks_each(drain_chunk);
    pthread_mutex_lock(&log_lock);
    if (atomic_exchange(&active, false)) {
        flush_locked();
        close(fd);
        fd = -1;
    }
    pthread_mutex_unlock(&log_lock);
}

/* A chunk whose thread is not in a forked child: its lock may have been held at
 * the fork, and its events are the parent's. */
static void forget_chunk(struct memprof_log_chunk *c)
{
    c->n = 0;
    c->held_by_tick = false;
    atomic_store(&c->busy, 0);
}

/* In a forked child the parent's log is not ours to continue. */
void memprof_log_after_fork(void)
{
    pthread_mutex_init(&log_lock, NULL);
    pthread_mutex_init(&tick_lock, NULL);
    if (fd >= 0)
        close(fd);
    fd = -1;
    buf_len = 0;
    atomic_store(&active, false);
    memprof_log_chunks_each(forget_chunk);
}

/* The live bytes counted and the event stamped under one lock, the chunk's (or the
 * file's), which a tick holds while it takes its record: both are on one side of it. */
static void count_and_stamp(struct memprof_log_event *e)
{
    enum memprof_heap heap = (enum memprof_heap)e->r.heap;
    double weight = memprof_sample_weight(memprof_cfg.rates, heap, e->size);
    if (e->r.type == LOG_ALLOC)
        memprof_live_bytes_add(heap, e->size, weight, false);
    else
        memprof_live_bytes_sub(heap, e->stack, e->size, weight, false);
    e->time_ns = memprof_now_ns();
}

void memprof_log_event(enum memprof_log_type type, enum memprof_heap heap, uint32_t stack,
                       uint64_t size, uintptr_t address)
{
    struct memprof_log_event e = {
        .r = {(uint8_t)type, (uint8_t)heap, sizeof e},
        .tid = thread_id(), .size = size, .address = address, .stack = stack,
    };
    struct memprof_log_chunk *c = this_thread_chunk();
    if (c == NULL) {   /* no memory for a chunk: straight to the file's buffer */
        pthread_mutex_lock(&log_lock);
        count_and_stamp(&e);
        append_event_locked(&e);
        pthread_mutex_unlock(&log_lock);
        return;
    }
    chunk_lock(c);
    if (c->n == CHUNK_EVENTS)
        drain(c);
    count_and_stamp(&e);
    c->events[c->n++] = e;
    chunk_unlock(c);
}

void memprof_log_mark(enum memprof_mark_kind kind, uint64_t id, const char *text)
{
    size_t len = text ? strnlen(text, 1024) : 0;
    struct memprof_log_mark m = {
        .r = {LOG_MARK, 0, (uint16_t)(sizeof m + len)},
        .tid = thread_id(), .kind = (uint8_t)kind, .time_ns = memprof_now_ns(), .id = id,
    };
    pthread_mutex_lock(&log_lock);
    if (atomic_load(&active)) {
        rotate_if_needed_locked(m.r.size);
        append_locked(&m, sizeof m);
        append_locked(text ? text : "", len);
    }
    pthread_mutex_unlock(&log_lock);
}

/* Like marks, straight to the file's buffer: a device call is never made from
 * inside the allocator, so its thread cannot hold the lock already. */
void memprof_log_use(enum memprof_heap heap, enum memprof_use_op op, unsigned flags,
                     const uint64_t *values, unsigned n)
{
    if (n > MEMPROF_USE_VALUES)
        n = MEMPROF_USE_VALUES;
    struct memprof_log_use u = {
        .r = {LOG_USE, (uint8_t)heap, (uint16_t)(sizeof u + 8 * n)},
        .tid = thread_id(), .op = (uint8_t)op, .flags = (uint8_t)flags, .values = (uint16_t)n,
        .time_ns = memprof_now_ns(),
    };
    pthread_mutex_lock(&log_lock);
    if (atomic_load(&active)) {
        rotate_if_needed_locked(u.r.size);
        append_locked(&u, sizeof u);
        append_locked(values, 8 * (size_t)n);
    }
    pthread_mutex_unlock(&log_lock);
}

static uint64_t resident_bytes(void)
{
    char statm[128], proc[MEMPROF_PROC_PATH];
    memprof_read_small_file(memprof_proc_file("statm", proc), statm, sizeof statm);
    unsigned long long size = 0, resident = 0;
    sscanf(statm, "%llu %llu", &size, &resident);
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* One timeline record per heap in use, then everything to disk. */
void memprof_log_tick(void)
{
    if (!memprof_log_active())
        return;
    uint64_t rss = resident_bytes();
    uint32_t heaps = memprof_upcalls.device_heaps_used() | 1u << HEAP_HOST;
    /* Every thread's chunk held while the record is taken and written: an event is
     * before the record, in time and in the files, exactly when the live bytes it
     * gives count it.  One tick at a time, each releasing only what it holds. */
    pthread_mutex_lock(&tick_lock);
    memprof_log_chunks_each(hold_chunk);
    pthread_mutex_lock(&log_lock);
    uint64_t now = memprof_now_ns();
    for (int h = 0; atomic_load(&active) && h < HEAP_COUNT; h++) {
        if (!(heaps & (1u << h)))
            continue;
        struct memprof_log_timeline t = {
            .r = {LOG_TIMELINE, (uint8_t)h, sizeof t}, .time_ns = now,
            .peak_bytes = memprof_live_bytes_interval_peak((enum memprof_heap)h),
            .end_bytes = memprof_live_bytes_of((enum memprof_heap)h).now, .rss_bytes = rss,
        };
        rotate_if_needed_locked(sizeof t);
        append_locked(&t, sizeof t);
    }
    pthread_mutex_unlock(&log_lock);
    memprof_log_chunks_each(release_chunk);
    pthread_mutex_unlock(&tick_lock);
    pthread_mutex_lock(&log_lock);
    flush_locked();
    pthread_mutex_unlock(&log_lock);
}
