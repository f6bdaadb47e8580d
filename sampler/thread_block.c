/* Per-thread memory of the sampler, mmap'd, that outlives its thread: at
 * thread exit a block is marked free and the next new thread adopts it.
 *
 * It holds the per-stack allocation counters of the open window, kept per
 * thread so the sampling path does no shared read-modify-write: each thread
 * adds into its own block (indexed by dense stack id) with plain stores, and a
 * dump sums the blocks.  Only the owner writes a block: when it first counts
 * in a new window it zeroes the counters itself, and a dump sums only blocks
 * of the window being dumped.  An adopted block keeps its counts, so the sum
 * stays right.  The block's first page also holds the thread's buffer of log
 * events (which an adopting thread takes over). */
#include <pthread.h>

#include "estimate.h"
#include "sysutil.h"
#include "thread_block.h"
#include "thread_state.h"

struct thread_block {
    struct thread_block *next;
    _Atomic int in_use;
    _Atomic uint32_t window;        /* the window these counts belong to */
    struct memprof_log_chunk *log_chunk;
    struct memprof_memos memos;     /* owner only; an adopting thread inherits them, as
                                       each entry is checked before it is used */
};
/* The counts start on their own page, for madvise. */
#define HEADER_BYTES ((sizeof(struct thread_block) + 4095) & ~(size_t)4095)

static _Atomic(struct thread_block *) blocks;
static size_t counts_bytes;
static pthread_key_t release_key;

/* Written by the owner only, read by a dump: relaxed atomics, no read-modify-write. */
struct stack_counts {
    _Atomic uint64_t objs, bytes;
    _Atomic double est_objs, est_bytes;
};

static inline struct stack_counts *counts_of(const struct thread_block *b)
{
    return (struct stack_counts *)((char *)b + HEADER_BYTES);
}

/* One stack's counters of a block, as another thread than its owner reads them. */
static struct memprof_stack_totals read_counts(const struct stack_counts *c)
{
    return (struct memprof_stack_totals){
        atomic_load_explicit(&c->objs, memory_order_relaxed),
        atomic_load_explicit(&c->bytes, memory_order_relaxed),
        atomic_load_explicit(&c->est_objs, memory_order_relaxed),
        atomic_load_explicit(&c->est_bytes, memory_order_relaxed),
    };
}

static void release_block(void *block)
{
    struct thread_block *b = block;
    if (memprof_thread.block == b) {
        memprof_thread.block = NULL;
        memprof_thread.memos = NULL;
    }
    atomic_store_explicit(&b->in_use, 0, memory_order_release);
}

int memprof_stack_counts_init(uint32_t max_stacks)
{
    counts_bytes = sizeof(struct stack_counts) * (size_t)max_stacks;
    return pthread_key_create(&release_key, release_block) == 0 ? 0 : -1;
}

static struct thread_block *adopt_block(void)
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next) {
        int unused = 0;
        if (atomic_load_explicit(&b->in_use, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong(&b->in_use, &unused, 1))
            return b;
    }
    struct thread_block *b = memprof_map(HEADER_BYTES + counts_bytes);
    if (b == NULL)
        return NULL;
    b->in_use = 1;
    for (int w = 0; w < 2; w++)   /* no walk yet: each list of steps is just its end */
        b->memos.walks[w][0].sp = UINTPTR_MAX;
    b->next = atomic_load(&blocks);
    while (!atomic_compare_exchange_weak(&blocks, &b->next, b))
        ;
    return b;
}

static struct thread_block *this_thread_block(void)
{
    struct thread_block *b = memprof_thread.block;
    if (UNLIKELY(b == NULL)) {
        b = adopt_block();
        if (b == NULL)
            return NULL;
        memprof_thread.block = b;
        memprof_thread.memos = &b->memos;
        pthread_setspecific(release_key, b);
    }
    return b;
}

struct memprof_log_chunk **memprof_log_chunk_slot(void)
{
    struct thread_block *b = this_thread_block();
    return b ? &b->log_chunk : NULL;
}

void memprof_log_chunks_each(void (*fn)(struct memprof_log_chunk *))
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next) {
        struct memprof_log_chunk *c = __atomic_load_n(&b->log_chunk, __ATOMIC_ACQUIRE);
        if (c != NULL)
            fn(c);
    }
}

#define ADD_RELAXED(field, v) \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (v), \
                          memory_order_relaxed)

bool memprof_stack_count(uint32_t stack, uint64_t size, double weight, uint32_t window)
{
    struct thread_block *b = this_thread_block();
    if (UNLIKELY(b == NULL))
        return false;
    if (UNLIKELY(atomic_load_explicit(&b->window, memory_order_relaxed) != window)) {
        memprof_zero_pages(counts_of(b), counts_bytes);
        atomic_store_explicit(&b->window, window, memory_order_release);
    }
    struct stack_counts *c = counts_of(b) + stack;
    ADD_RELAXED(c->objs, 1);
    ADD_RELAXED(c->bytes, size);
    ADD_RELAXED(c->est_objs, weight);
    ADD_RELAXED(c->est_bytes, weight * (double)size);
    return true;
}

static void sum_counts(struct memprof_stack_totals *out, uint32_t nstacks, uint32_t window)
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next) {
        if (atomic_load_explicit(&b->window, memory_order_acquire) != window)
            continue;
        const struct stack_counts *c = counts_of(b);
        for (uint32_t i = 0; i < nstacks; i++) {
            struct memprof_stack_totals t = read_counts(&c[i]);
            out[i].objs += t.objs;
            out[i].bytes += t.bytes;
            out[i].est_objs += t.est_objs;
            out[i].est_bytes += t.est_bytes;
        }
    }
}

/* A dump holds the window's lock, so no window opens while it reads: the blocks of the
 * window keep its counts.  Those of a closed window change no more (but for a sample
 * that was under way as it closed), so its one block is read in place. */
bool memprof_window_counts_read(struct memprof_window_counts *wc, uint32_t nstacks, uint32_t window,
                                bool closed)
{
    *wc = (struct memprof_window_counts){NULL, NULL, 0};
    int holding = 0;
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next)
        if (atomic_load_explicit(&b->window, memory_order_acquire) == window) {
            wc->only = b;
            holding++;
        }
    if (holding == 0 || (holding == 1 && closed))
        return true;
    wc->only = NULL;
    wc->sum_bytes = sizeof(struct memprof_stack_totals) * ((size_t)nstacks + 1);
    wc->sum = memprof_map(wc->sum_bytes);
    if (wc->sum == NULL)
        return false;
    sum_counts(wc->sum, nstacks, window);
    return true;
}

struct memprof_stack_totals memprof_window_counts_of(const struct memprof_window_counts *wc,
                                                     uint32_t stack)
{
    if (wc->sum != NULL)
        return wc->sum[stack];
    if (wc->only == NULL)
        return (struct memprof_stack_totals){0, 0, 0, 0};
    return read_counts(counts_of(wc->only) + stack);
}

void memprof_window_counts_release(struct memprof_window_counts *wc)
{
    if (wc->sum != NULL)
        memprof_unmap(wc->sum, wc->sum_bytes);
    *wc = (struct memprof_window_counts){NULL, NULL, 0};
}

/* In a forked child only the forking thread is left: the others' blocks are free. */
void memprof_stack_counts_after_fork(void)
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next)
        if (b != memprof_thread.block)
            atomic_store(&b->in_use, 0);
}
