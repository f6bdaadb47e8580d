/* Declarations shared between the sampler's modules; nothing here is exported. */
#ifndef MEMPROF_INTERNAL_H
#define MEMPROF_INTERNAL_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TLS_IE __attribute__((tls_model("initial-exec")))

/* The defaults of a process started without mem_profiler; the command lines and the
 * Python API take theirs from bindings/defaults.py, which a test keeps equal to these. */
#define MEMPROF_MAX_DEPTH 128
#define MEMPROF_DEFAULT_DEPTH 64
#define MEMPROF_DEFAULT_RATE 1024
#define MEMPROF_DEFAULT_PREFIX "./custom_profiler_"
#define MEMPROF_PATH_MAX 4096
#define STACK_NONE UINT32_MAX
/* The calling thread's own /proc entries: /proc/self/{maps,exe,cmdline,statm}
 * read as empty once the main thread has ended with pthread_exit, as they
 * follow the thread group leader's memory. */
#define PROC_THREAD_SELF "/proc/thread-self/"

enum memprof_unwinder { UNWIND_HYBRID = 0, UNWIND_LIBUNWIND = 1, UNWIND_FRAME_POINTER = 2 };

/* Each allocator family is a heap of its own, written as its own .heap file. */
enum memprof_heap {
    HEAP_HOST = 0,       /* the malloc family */
    HEAP_CUDA,           /* cudaMalloc*, cuMemAlloc*, cuMemCreate (device and managed) */
    HEAP_CUDA_HOST,      /* pinned host memory: cudaMallocHost, cudaHostAlloc */
    HEAP_ACL,            /* aclrtMalloc */
    HEAP_ACL_HOST,       /* aclrtMallocHost */
    HEAP_HAL,            /* halMemAlloc */
    HEAP_COUNT
};
extern const char *const memprof_heap_names[HEAP_COUNT] HIDDEN;

/* ---- configuration (options.c) ------------------------------------------- */
struct memprof_config {
    uint64_t rate;               /* mean bytes between samples; 1 = exact */
    uint64_t device_rate;        /* the same for the device and HAL heaps */
    int max_depth;
    enum memprof_unwinder unwinder;
    uint32_t max_stacks;         /* stack table capacity */
    uint32_t max_live;           /* live-sample table capacity */
    bool track_live;             /* keep live bytes and their peak (live_bytes.c) */
    bool log_mode;               /* write the event log (event_log.c) */
    bool follow_fork;            /* a forked child carries on the window (window.c) */
    bool python;                 /* wrap CPython's allocators in a window (hooks_python.c) */
    uint64_t log_cap;            /* bytes per log file */
    uint32_t log_files;          /* log files kept */
    bool verbose;                /* say on stderr where each dump went */
    bool control;                /* a control block: capturable from outside (control.c) */
    bool capture_at_load;        /* open a window at load */
    int report_fd;               /* MEMPROF_REPORT_FD (failure_pipe.c), or -1 */
    char prefix[MEMPROF_PATH_MAX];
};
extern struct memprof_config memprof_cfg HIDDEN;
/* Reads the environment into memprof_cfg (once, at load). */
void memprof_options_from_environment(void) HIDDEN;
/* The output prefix, made absolute; -1 when it is too long or the folder unknown. */
int memprof_set_prefix(const char *prefix) HIDDEN;

/* Non-zero while a window is open (window.c): the id of that window.  The only global
 * the malloc/free fast path reads. */
extern _Atomic uint32_t memprof_active_window HIDDEN;

/* ---- per-thread sampling state (sample.c) ------------------------------- */
/* A stack mapping: its start, and the offset of its last word (its size - 8), so
 * that one subtraction and one comparison bound a read. */
struct memprof_stack_range {
    uintptr_t lo, last;
};

/* Per-thread memos of the sample path, in the thread's block (thread_block.c): small,
 * dense, direct-mapped copies of entries of the shared tables this thread used last,
 * so that a sample's lookups stay in this core's cache instead of missing into
 * tables of megabytes that the program's own work evicts between samples.  Each
 * entry is checked against its key (and a stack against its frames), never trusted. */
#define MEMPROF_RULE_MEMOS 512     /* unwind rules by code address (unwind.c) */
#define MEMPROF_STACK_MEMOS 256    /* stack ids by the stack's hash (stack_table.c) */
struct memprof_walk_step {
    uint64_t key, sp, rule;        /* a frame's rule key (unwind.c), its rsp, its rule */
};
struct memprof_memos {
    struct { uint64_t key, rule; } rules[MEMPROF_RULE_MEMOS];
    /* The last two walks, frame by frame, each ended by a step of sp UINTPTR_MAX:
     * most of a stack is its caller's, at the same stack addresses, so its rules
     * are read in order from the last walk. */
    struct memprof_walk_step walks[2][MEMPROF_MAX_DEPTH + 1];
    uint32_t last_walk;
    struct { uint64_t hash; uint32_t id; } stacks[MEMPROF_STACK_MEMOS];
};

struct memprof_thread {
    int64_t countdown;           /* bytes left until the next sample */
    uint32_t window;             /* window the countdown was drawn for */
    uint32_t busy;               /* inside the sampler: allocations pass through */
    uint32_t python_depth;       /* inside a wrapped Python allocator (hooks_python.c),
                                    which counts what reaches the malloc hooks under it */
    uint64_t rng;                /* xorshift64* state, 0 = not seeded */
    struct memprof_stack_range stacks[2];   /* the stack mappings the walks met last (unwind.c) */
    bool no_maps;                /* /proc/self/maps could not be read: no walk */
    struct thread_block *block;  /* this thread's counters (thread_block.c) */
    struct memprof_memos *memos; /* and its memos, in the same block; NULL before it has one */
    uint32_t device_window;      /* window the device countdowns were drawn for */
    uint32_t device_depth;       /* inside a device API call (hooks_device.c) */
    int64_t device_countdown[HEAP_COUNT];
    uint32_t tid;                /* cached gettid(), for the event log */
    uint32_t nvtx_depth;         /* open nvtxRangePushA ranges (marks.c) */
    uint64_t nvtx_ranges[16];
};
extern __thread struct memprof_thread memprof_thread HIDDEN TLS_IE;

void memprof_sample_slow(void *ptr, size_t size, uint32_t window) HIDDEN;
void memprof_free_slow(void *ptr) HIDDEN;
/* Removes ptr from the live samples if it is one (for realloc, which may
 * have to put it back); false if it was not sampled.  Callers ask the live
 * filter first (memprof_live_maybe). */
bool memprof_take_sample(void *ptr, uint32_t *stack, uint64_t *size) HIDDEN;
void memprof_restore_sample(void *ptr, uint32_t stack, uint64_t size) HIDDEN;

/* Device and HAL heaps (hooks_device.c calls these; key: pointer or handle). */
void memprof_device_alloc(enum memprof_heap heap, uintptr_t key, uint64_t size, uint64_t label) HIDDEN;
void memprof_device_free(enum memprof_heap heap, uintptr_t key) HIDDEN;
uint32_t memprof_device_heaps_used(void) HIDDEN;   /* bit mask of heaps whose hooks ran */
/* Our wrapper for a driver entry point a getter or dlsym found, else `found`. */
void *memprof_device_entry_point(const char *name, void *found) HIDDEN;

/* ---- the event log of log mode (event_log.c; format in memprof_log.h) ------ */
#define MEMPROF_LOG_INTERVAL_MS 100
enum memprof_log_type;
enum memprof_mark_kind;
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
void memprof_log_tick(void) HIDDEN;   /* timeline records, flush: every interval */

/* ---- real functions of other libraries' hooks (real_function.c) ----------- */
struct memprof_real_fn {
    const char *symbol;
    const char *library;      /* basename prefix of the library defining it */
    const char *fallback;     /* a twin with the same signature, or NULL */
    _Atomic(void *) fn;
};
void *memprof_real_function(struct memprof_real_fn *r) HIDDEN;

/* ---- dlsym (hooks_dlsym.c) ------------------------------------------------- */
extern void *(*memprof_real_dlsym)(void *, const char *) HIDDEN;
void *memprof_resolve_dlsym(void) HIDDEN;

/* ---- hooks by GOT redirection in an injected sampler (got_hooks.c) -------- */
bool memprof_detect_injection(void) HIDDEN;   /* once, from a constructor */
bool memprof_is_injected(void) HIDDEN;
int memprof_got_arm(void) HIDDEN;              /* when a window opens; no-op if preloaded */
void memprof_got_disarm(void) HIDDEN;          /* when it closes: every slot back */
void memprof_got_after_fork(void) HIDDEN;
uint32_t memprof_got_redirected(void) HIDDEN;  /* slots holding a hook now */
/* Our own hook of a relocated name, or NULL (hooks_malloc.c, hooks_device.c).
 * Taken by name, an exported hook resolves to the library's own function in an
 * injected sampler; hook_<name>, a hidden alias, is always ours. */
#define MEMPROF_LOCAL_ALIAS(name, ...) \
    extern __typeof__(name) hook_##name __attribute__((alias(#name), copy(name))) HIDDEN;
void *memprof_malloc_hook_for(const char *name) HIDDEN;
void *memprof_device_hook_for(const char *name) HIDDEN;

/* ---- CPython's allocators, wrapped while a window is open (hooks_python.c) ---- */
void memprof_pymem_find(void) HIDDEN;         /* a window is about to open */
void memprof_pymem_sync(void) HIDDEN;         /* a window opened or closed */
/* For the control thread: 0, or the time (memprof_now_ns) to call it again, while an
 * interpreter found at a window's start is not initialized yet. */
uint64_t memprof_pymem_poll(void) HIDDEN;
void memprof_pymem_after_fork(void) HIDDEN;

/* ---- estimated live bytes and their peak (live_bytes.c) ------------------- */
struct memprof_live_bytes {
    int64_t now, peak;
    uint64_t peak_time_ns;
};
void memprof_live_bytes_reset(void) HIDDEN;
void memprof_live_bytes_add(enum memprof_heap heap, uint64_t size) HIDDEN;
void memprof_live_bytes_sub(enum memprof_heap heap, uint64_t size) HIDDEN;
struct memprof_live_bytes memprof_live_bytes_of(enum memprof_heap heap) HIDDEN;
/* The peak since the last call (the timeline's 100 ms interval). */
int64_t memprof_live_bytes_interval_peak(enum memprof_heap heap) HIDDEN;

/* ---- noted events of the window, per heap (notes.c) ------------------------ */
enum memprof_note_list {
    NOTES_FAILED,     /* failed device allocations: size, error */
    NOTES_FOREIGN,    /* memory registered or opened, not allocated: address, size, kind */
    NOTE_LISTS
};
enum memprof_foreign_kind { FOREIGN_HOST_REGISTER, FOREIGN_IPC_OPEN };
#define MEMPROF_MAX_NOTES 64   /* kept per heap and list */
struct memprof_note {
    uint64_t time_ns, size, address;
    int32_t error;    /* NOTES_FAILED */
    uint16_t kind;    /* NOTES_FOREIGN: enum memprof_foreign_kind */
    uint32_t stack;
};
void memprof_note_add(enum memprof_note_list list, enum memprof_heap heap,
                      struct memprof_note note) HIDDEN;
void memprof_note_remove(enum memprof_note_list list, enum memprof_heap heap,
                         uint64_t address) HIDDEN;
void memprof_notes_reset(void) HIDDEN;
void memprof_notes_after_fork(void) HIDDEN;
/* Copies the heap's kept notes of list into out; returns how many, with in *missed
 * those that found the list full. */
uint32_t memprof_notes_of(enum memprof_note_list list, enum memprof_heap heap,
                          struct memprof_note out[MEMPROF_MAX_NOTES], uint32_t *missed) HIDDEN;
/* A noted event of a device heap, its stack taken here and kept apart from the
 * heap's own stacks (sample.c); the removal of the latest note of an address. */
#define MEMPROF_NOTED_HEAP(heap) ((uint32_t)(heap) | 0x100u)
void memprof_device_note(enum memprof_note_list list, enum memprof_heap heap,
                         struct memprof_note note) HIDDEN;
void memprof_device_unnote(enum memprof_note_list list, enum memprof_heap heap,
                           uint64_t address) HIDDEN;

/* Called by every allocation hook after the real allocator returned. */
static inline void memprof_on_alloc(void *ptr, size_t size)
{
    uint32_t window = atomic_load_explicit(&memprof_active_window, memory_order_relaxed);
    if (LIKELY(window == 0) || UNLIKELY(ptr == NULL))
        return;
    struct memprof_thread *t = &memprof_thread;
    if (UNLIKELY(t->python_depth != 0))
        return;   /* one allocation, counted once: by the Python wrapper around this call */
    if (LIKELY(t->window == window) && (t->countdown -= (int64_t)size) > 0)
        return;
    memprof_sample_slow(ptr, size, window);
}

/* For a hook that passes a request on by a tail call: true when the allocation of
 * `size` bytes about to be made is not sampled (no window, or the thread's countdown
 * stays above zero, and is taken down here); false: make it, then call
 * memprof_on_alloc, which decides as always. */
static inline bool memprof_alloc_unsampled(size_t size)
{
    uint32_t window = atomic_load_explicit(&memprof_active_window, memory_order_relaxed);
    if (LIKELY(window == 0))
        return true;
    struct memprof_thread *t = &memprof_thread;
    if (LIKELY(t->window == window) && t->countdown > (int64_t)size) {
        t->countdown -= (int64_t)size;
        return true;
    }
    return false;
}

/* ---- the live table's filter (live_table.c) --------------------------------
 * Consulted on every free while capturing, so its lookup is inline here.  Half a
 * million 16-bit cells, each a count of the live samples it covers and the XOR of
 * their 8-bit tags: a free whose cell counts none is not a live sample, nor is one
 * whose cell counts one sample of another tag, so only about one free in a hundred
 * that is not a sample goes on into the table, even with tens of thousands of live
 * samples in one region (which the table's stripes, picked by region, would crowd
 * into a few).  A cell covers 32 bytes of address modulo 16 MiB, not a hash of
 * the pointer: blocks allocated together, and freed together, share a cache line
 * of cells.  The tag tells apart the two 16-byte halves and the 16 MiB regions. */
#define LIVE_FILTER_BITS 19
extern _Atomic uint16_t memprof_live_filter[1u << LIVE_FILTER_BITS] HIDDEN;

static inline _Atomic uint16_t *memprof_live_cell(uintptr_t p)
{
    return &memprof_live_filter[(p >> 5) & ((1u << LIVE_FILTER_BITS) - 1)];
}

static inline uint8_t memprof_live_tag(uintptr_t p)
{
    return (uint8_t)((p >> 4 & 1) | ((uint64_t)(p >> 24) * 0x9e3779b97f4a7c15ull) >> 57 << 1);
}

/* Whether p may be a live sample: a cell word is count | tags << 8. */
static inline bool memprof_live_maybe(uintptr_t p)
{
    uint16_t cell = atomic_load_explicit(memprof_live_cell(p), memory_order_relaxed);
    return cell != 0 && ((cell & 0xff) != 1 || cell >> 8 == memprof_live_tag(p));
}

/* Whether the free of ptr has to go to memprof_free_slow: a window is open and
 * ptr may be a live sample. */
static inline bool memprof_free_may_be_sampled(void *ptr)
{
    return UNLIKELY(atomic_load_explicit(&memprof_active_window, memory_order_relaxed) != 0) &&
           memprof_live_maybe((uintptr_t)ptr);
}

/* Called by every free hook before the real free. */
static inline void memprof_on_free(void *ptr)
{
    if (UNLIKELY(memprof_free_may_be_sampled(ptr)))
        memprof_free_slow(ptr);
}

/* A realloc's old block is a free, recorded before the allocator may hand its
 * address to another thread; when the realloc fails the block stays live and
 * its sample is put back.  Then the new block is an allocation (memprof_on_alloc). */
struct memprof_moved {
    bool sampled;
    uint32_t stack;
    uint64_t size;
};

static inline struct memprof_moved memprof_on_realloc(void *old)
{
    struct memprof_moved m = {false, STACK_NONE, 0};
    if (UNLIKELY(atomic_load_explicit(&memprof_active_window, memory_order_relaxed) != 0) &&
        old != NULL && memprof_live_maybe((uintptr_t)old))
        m.sampled = memprof_take_sample(old, &m.stack, &m.size);
    return m;
}

static inline void memprof_on_realloc_done(struct memprof_moved m, void *old, bool failed)
{
    if (UNLIKELY(m.sampled) && failed)
        memprof_restore_sample(old, m.stack, m.size);
}

/* Allocations the sampler makes through libc (libunwind, dlsym, setenv)
 * must not be sampled: bracket them with these. */
static inline void memprof_enter(void) { memprof_thread.busy++; }
static inline void memprof_leave(void) { memprof_thread.busy--; }

/* ---- stack capture (unwind.c) -------------------------------------------- */
void memprof_unwind_init(void) HIDDEN;
/* Fills frames[] leaf first (the leaf is a call-site PC, the rest return
 * addresses) without the sampler's own frames; returns the depth. */
int memprof_unwind(uintptr_t *frames, int max_depth) HIDDEN;
const char *memprof_unwinder_name(void) HIDDEN;

/* ---- Python frames (python_frames.c; ARCHITECTURE.md, "Python programs") ---- */
#define MEMPROF_MAX_PY_FRAMES 64
/* A Python frame's address in a stack: the base plus its record's id.  Not a
 * canonical x86-64 address, so no mapping holds it. */
#define MEMPROF_PY_FRAME_BASE 0x5079000000000000ull
/* _PyEval_EvalFrameDefault's address once the interpreter was found (else 0): the
 * one thing a sample of a program without Python reads. */
extern uintptr_t memprof_python_eval_lo HIDDEN;
void memprof_python_init(void) HIDDEN;   /* when a window opens; looks once it is found */
void memprof_python_after_fork(void) HIDDEN;
/* Puts the calling thread's Python frames into the native stack frames[0..depth)
 * (leaf first), each group before its _PyEval_EvalFrameDefault; the new depth, at
 * most cap. */
int memprof_python_merge(uintptr_t *frames, int depth, int cap) HIDDEN;
const char *memprof_python_version(void) HIDDEN;   /* "3.11.7", or NULL */
struct memprof_python_frame {
    const char *name, *file;     /* UTF-8, not NUL-terminated */
    uint32_t name_len, file_len;
    int32_t line, first_line;    /* line -1: the instruction has none */
};
uint32_t memprof_python_records(void) HIDDEN;   /* ids in use are < this */
bool memprof_python_record(uint32_t id, struct memprof_python_frame *out) HIDDEN;

/* ---- a spin lock of the sampler's own ------------------------------------------
 * Held only inside the sampler, for a few hundred instructions, by a thread whose
 * busy flag keeps its signal handlers out: never one an allocating thread can
 * already hold. */
static inline void memprof_spin_lock(_Atomic int *lock)
{
    for (int spins = 0;; spins++) {
        if (atomic_load_explicit(lock, memory_order_relaxed) == 0 &&
            !atomic_exchange_explicit(lock, 1, memory_order_acquire))
            return;
        if (spins > 64)
            sched_yield();
    }
}

static inline void memprof_spin_unlock(_Atomic int *lock)
{
    atomic_store_explicit(lock, 0, memory_order_release);
}

/* ---- hash -> id index of the interning tables (hash_index.c) ------------------ */
#define MEMPROF_INDEX_NONE UINT32_MAX
struct memprof_index_array;
struct memprof_index {
    _Atomic(struct memprof_index_array *) array;
    _Atomic int lock;
    uint32_t count, max_slots;
};
/* What is looked up: the key, and whether entry `id` holds it. */
struct memprof_index_key {
    const void *key;
    bool (*same)(uint32_t id, const void *key);
};
int memprof_index_init(struct memprof_index *x, uint32_t capacity) HIDDEN;
void memprof_index_reset(struct memprof_index *x) HIDDEN;
/* The id of the key's entry, found without a lock; if there is none yet, the entry
 * made by make (which returns its id, or MEMPROF_INDEX_NONE when its table is full)
 * under the index's lock.  MEMPROF_INDEX_NONE when full. */
uint32_t memprof_index_intern(struct memprof_index *x, uint64_t hash,
                              const struct memprof_index_key *k,
                              uint32_t (*make)(const void *key)) HIDDEN;

/* ---- stack table (stack_table.c) ---------------------------------------- */
struct memprof_stack_key {
    const uintptr_t *frames;
    int depth;
    uint32_t heap;       /* enum memprof_heap */
    uint64_t label;      /* HAL allocation flags; 0 for other heaps */
};
int memprof_stack_table_init(uint32_t capacity) HIDDEN;
void memprof_stack_table_reset(void) HIDDEN;
/* The dense id of a stack (interned on first sight), or STACK_NONE if full. */
uint32_t memprof_stack_intern(const struct memprof_stack_key *k) HIDDEN;
uint32_t memprof_stack_ids(void) HIDDEN;   /* ids in use are < this */
void memprof_stack_get(uint32_t id, struct memprof_stack_key *k) HIDDEN;

/* ---- per-thread blocks: stack counters (thread_block.c) --------------------- */
/* A stack's counts: samples and their bytes as jeprof reads them, and the sums
 * of their weights (memprof_sample_weight), the unbiased estimates. */
struct memprof_stack_totals {
    uint64_t objs, bytes;
    double est_objs, est_bytes;
};
int memprof_stack_counts_init(uint32_t max_stacks) HIDDEN;
bool memprof_stack_count(uint32_t stack, uint64_t size, double weight, uint32_t window) HIDDEN;
/* Adds the window's counts per stack id into out[id]. */
void memprof_stack_counts_sum(struct memprof_stack_totals *out, uint32_t nstacks,
                              uint32_t window) HIDDEN;
void memprof_stack_counts_after_fork(void) HIDDEN;
/* Each thread's buffer of log events (event_log.c fills and drains them). */
struct memprof_log_chunk;
struct memprof_log_chunk **memprof_log_chunk_slot(void) HIDDEN;   /* NULL: no block */
void memprof_log_chunks_each(void (*fn)(struct memprof_log_chunk *)) HIDDEN;

/* ---- live-sample table (live_table.c) ----------------------------------- */
int memprof_live_table_init(uint32_t capacity) HIDDEN;
void memprof_live_table_reset(void) HIDDEN;
void memprof_live_table_after_fork(void) HIDDEN;
/* Starts bringing in the cache line where ptr's entry would go: a sample calls it
 * before its walk, so that the insert after it does not wait on memory. */
void memprof_live_prefetch(uintptr_t ptr) HIDDEN;
bool memprof_live_insert(uintptr_t ptr, uint32_t stack, uint64_t size) HIDDEN;
/* Removes ptr if it is a live sample; reports what it was. */
bool memprof_live_remove(uintptr_t ptr, uint32_t *stack, uint64_t *size) HIDDEN;
/* Calls fn for every live sample (each stripe locked while it is visited). */
void memprof_live_foreach(void (*fn)(uint32_t stack, uint64_t size, void *arg), void *arg) HIDDEN;

/* ---- weights and drops (sample.c) ----------------------------------------- */
/* How many allocations one sample of `size` bytes stands for: 1 / (1 - exp(-size/rate)),
 * the inverse of its chance of being sampled (1 at rate 1).  Summed per stack it
 * gives unbiased object and byte counts, whatever the mix of sizes. */
double memprof_sample_weight(uint64_t size, uint64_t rate) HIDDEN;

/* Samples the tables had no room for in the open window, by cause, and the
 * allocations (unsampled) they stood for. */
struct memprof_drops {
    _Atomic uint64_t stack_table;   /* no stack id: missing from every figure */
    _Atomic uint64_t live_table;    /* counted as allocated, missing from in-use */
    _Atomic uint64_t memory;        /* no per-thread block: missing from every figure */
    _Atomic uint64_t bytes;         /* unsampled bytes of all of them */
};
extern struct memprof_drops memprof_drops HIDDEN;
void memprof_drops_reset(void) HIDDEN;
uint64_t memprof_dropped_samples(void) HIDDEN;

/* ---- dump (heap_writer.c) ------------------------------------------------ */
struct memprof_window_info {
    uint32_t id;
    uint64_t rate, device_rate;
    int max_depth;
    uint64_t start_ns, end_ns;
    int32_t forked_from;         /* a forked child's parent, whose window it carries on */
};
/* Writes <prefix><pid>.<seq>.heap and, for each device heap in the bit mask
 * `heaps`, <prefix><pid>.<seq>.<heap>.heap, each atomically; path_out
 * receives the host file's name. */
int memprof_write_dump(const struct memprof_window_info *w, const char *prefix, unsigned seq,
                       uint32_t heaps, char *path_out, size_t path_len) HIDDEN;

/* ---- capture windows (window.c) ------------------------------------------- */
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

/* ---- dumps that could not be written (failure_pipe.c) ---------------------- */
void memprof_failure_pipe_open(int fd) HIDDEN;   /* MEMPROF_REPORT_FD, if it is a pipe */
void memprof_report_failure(const char *message) HIDDEN;   /* to the pipe, else stderr */

/* ---- control block and thread (control.c) --------------------------------- */
void memprof_control_init(void) HIDDEN;
void memprof_control_after_fork(void) HIDDEN;
void memprof_control_fini(void) HIDDEN;
void memprof_control_wake(void) HIDDEN;
void *memprof_control_hook_for(const char *name) HIDDEN;   /* pthread_exit */

/* ---- system helpers (sysutil.c) ----------------------------------------- */
void *memprof_map(size_t bytes) HIDDEN;            /* zeroed, never via malloc */
void memprof_unmap(void *p, size_t bytes) HIDDEN;
void memprof_zero_pages(void *p, size_t bytes) HIDDEN;  /* back to zero pages */
uint64_t memprof_now_ns(void) HIDDEN;             /* CLOCK_REALTIME */
uint64_t memprof_getenv_u64(const char *name, uint64_t fallback) HIDDEN;
/* write() until done; -1 with errno (ENOSPC for a write of nothing) on failure. */
int memprof_write_all(int fd, const void *data, size_t len) HIDDEN;
void memprof_random_name(char name[9]) HIDDEN;   /* 8 letters or digits, unpredictable */
/* Creates <final>.<random>.tmp for reading and writing with O_CREAT|O_EXCL|O_NOFOLLOW, so that
 * nothing planted in the folder (a link, a file of another user) can redirect
 * or truncate what we write; tmp receives its name.  A file descriptor, or -1. */
int memprof_create_temp(const char *final, char *tmp, size_t tmp_len) HIDDEN;
/* fsync, close and rename tmp into place; on failure tmp is removed, errno says why. */
int memprof_publish(int fd, const char *tmp, const char *final) HIDDEN;
/* Reads up to cap - 1 bytes of a (/proc) file, NUL-terminated; returns the length. */
size_t memprof_read_small_file(const char *path, char *buf, size_t cap) HIDDEN;
void memprof_log(const char *fmt, ...) HIDDEN __attribute__((format(printf, 1, 2)));

#endif
