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
 * events (which an adopting thread takes over).
 *
 * A stack's counters are one word while its samples in the window are all of one
 * size, as they are for most stacks (met once, or from one call site): their count
 * and that size, from which the estimates follow (that size's weight at the
 * window's rate).  A sample of another size moves them to a full record of the
 * block's spill area, taken in order, and the word then names that record: a
 * program with many stacks pays 8 bytes per stack and thread where it would pay 32.
 *
 * Its sampled frees by lifetime (lifetimes.c) follow, per thread like the counts, so
 * that threads freeing the same stacks write no shared line. */
#include <pthread.h>

#include "base/sysutil.h"
#include "base/thread_state.h"
#include "tables/estimate.h"
#include "tables/lifetimes.h"
#include "tables/live_bytes.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"

struct thread_block {
    struct thread_block *next;
    _Atomic int in_use;
    _Atomic uint32_t window;        /* the window these counts belong to */
    uint32_t spills;                /* records taken in the spill area (owner only) */
    struct memprof_lifetimes_area lifetimes;   /* its frees (owner only) */
    struct memprof_log_chunk *log_chunk;
    struct memprof_memos memos;     /* owner only; an adopting thread inherits them, as
                                       each entry is checked before it is used */
};
/* The counts start on their own page, for madvise. */
#define HEADER_BYTES ((sizeof(struct thread_block) + 4095) & ~(size_t)4095)

static _Atomic(struct thread_block *) blocks;
static size_t words_bytes, spill_bytes;
static uint32_t stacks_max;
static pthread_key_t release_key;

/* A stack's word: its count << 32 | the one size, or SPILLED << 32 | its record's index. */
#define SPILLED 0xffffffffu

/* A spilled stack's record, written by the owner only, read by a dump: relaxed
 * atomics, no read-modify-write. */
struct stack_counts {
    _Atomic uint64_t objs, bytes;
    _Atomic double est_objs, est_bytes;
};

static inline _Atomic uint64_t *words_of(const struct thread_block *b)
{
    return (_Atomic uint64_t *)((char *)b + HEADER_BYTES);
}

static inline struct stack_counts *spill_of(const struct thread_block *b)
{
    return (struct stack_counts *)((char *)b + HEADER_BYTES + words_bytes);
}


/* The counters of `objs` samples of `size` bytes, each of `weight`. */
static struct memprof_stack_totals one_size(uint32_t objs, uint32_t size, double weight)
{
    return (struct memprof_stack_totals){objs, (uint64_t)objs * size, objs * weight,
                                         objs * weight * size};
}

/* One stack's counters of a block, as another thread than its owner reads them; a
 * one-size word's estimates at `rates`, the window's. */
static struct memprof_stack_totals read_counts(const struct thread_block *b, uint32_t stack,
                                               struct memprof_rates rates)
{
    uint64_t word = atomic_load_explicit(&words_of(b)[stack], memory_order_acquire);
    uint32_t objs = (uint32_t)(word >> 32), size = (uint32_t)word;
    if (objs == 0)
        return (struct memprof_stack_totals){0, 0, 0, 0};
    if (objs != SPILLED)
        return one_size(objs, size, memprof_sample_weight(rates, memprof_stack_heap(stack), size));
    const struct stack_counts *c = &spill_of(b)[size];
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
    memprof_live_bytes_flush();   /* the thread ends: what it held back goes in */
    if (memprof_thread.block == b) {
        memprof_thread.block = NULL;
        memprof_thread.memos = NULL;
    }
    atomic_store_explicit(&b->in_use, 0, memory_order_release);
}

int memprof_stack_counts_init(uint32_t max_stacks)
{
    /* reserved, not committed: a block's pages are touched as its stacks count */
    words_bytes = (sizeof(uint64_t) * (size_t)max_stacks + 4095) & ~(size_t)4095;
    /* each area starts on a page, for madvise */
    spill_bytes = (sizeof(struct stack_counts) * (size_t)max_stacks + 4095) & ~(size_t)4095;
    stacks_max = max_stacks;
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
    struct thread_block *b = memprof_map(HEADER_BYTES + words_bytes + spill_bytes +
                                         memprof_lifetimes_area_bytes(stacks_max));
    if (b == NULL)
        return NULL;
    b->lifetimes = memprof_lifetimes_area_at((char *)b + HEADER_BYTES + words_bytes + spill_bytes,
                                             stacks_max);
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

/* The stack's word `w` moved to a record of the spill area, its samples weighted at
 * `rate`; that record.  A stack spills once in a window, so the area, a record per
 * stack, has room. */
static struct stack_counts *spill(struct thread_block *b, _Atomic uint64_t *word, uint64_t w,
                                  uint64_t rate)
{
    uint32_t objs = (uint32_t)(w >> 32), size = (uint32_t)w;
    struct memprof_stack_totals t = one_size(objs, size, memprof_weight_at(rate, size));
    struct stack_counts *c = &spill_of(b)[b->spills];
    atomic_store_explicit(&c->objs, t.objs, memory_order_relaxed);
    atomic_store_explicit(&c->bytes, t.bytes, memory_order_relaxed);
    atomic_store_explicit(&c->est_objs, t.est_objs, memory_order_relaxed);
    atomic_store_explicit(&c->est_bytes, t.est_bytes, memory_order_relaxed);
    atomic_store_explicit(word, (uint64_t)SPILLED << 32 | b->spills++, memory_order_release);
    return c;
}

#define ADD_RELAXED(field, v) \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (v), \
                          memory_order_relaxed)

/* The thread's block, its counts of `window` (those of an older window cleared);
 * NULL: no block. */
static struct thread_block *block_of_window(uint32_t window)
{
    struct thread_block *b = this_thread_block();
    if (UNLIKELY(b != NULL && atomic_load_explicit(&b->window, memory_order_relaxed) != window)) {
        memprof_zero_pages(words_of(b), words_bytes);
        memprof_zero_pages(spill_of(b), sizeof(struct stack_counts) * b->spills);
        memprof_lifetimes_clear(&b->lifetimes);
        b->spills = 0;
        atomic_store_explicit(&b->window, window, memory_order_release);
    }
    return b;
}

bool memprof_stack_count(uint32_t stack, uint64_t size, uint64_t rate, double weight,
                         uint32_t window)
{
    struct thread_block *b = block_of_window(window);
    if (UNLIKELY(b == NULL))
        return false;
    _Atomic uint64_t *word = &words_of(b)[stack];
    uint64_t w = atomic_load_explicit(word, memory_order_relaxed);
    uint32_t objs = (uint32_t)(w >> 32);
    if (objs == 0 && size <= UINT32_MAX) {
        atomic_store_explicit(word, 1ull << 32 | size, memory_order_release);
        return true;
    }
    if (objs != SPILLED && (uint32_t)w == size && objs + 1 < SPILLED) {
        atomic_store_explicit(word, w + (1ull << 32), memory_order_release);
        return true;
    }
    struct stack_counts *c = objs == SPILLED ? &spill_of(b)[(uint32_t)w] : spill(b, word, w, rate);
    ADD_RELAXED(c->objs, 1);
    ADD_RELAXED(c->bytes, size);
    ADD_RELAXED(c->est_objs, weight);
    ADD_RELAXED(c->est_bytes, weight * (double)size);
    return true;
}

void memprof_stack_freed(uint32_t stack, uint64_t lived_ns, bool temporary, uint64_t size,
                         uint32_t window)
{
    struct thread_block *b = block_of_window(window);
    if (LIKELY(b != NULL))
        memprof_lifetimes_add(&b->lifetimes, stack, lived_ns, temporary, size);
}

static void sum_counts(struct memprof_window_counts *wc, uint32_t nstacks, uint32_t window)
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next) {
        if (atomic_load_explicit(&b->window, memory_order_acquire) != window)
            continue;
        for (uint32_t i = 0; i < nstacks; i++) {
            struct memprof_stack_totals t = read_counts(b, i, wc->rates);
            struct memprof_stack_totals *out = &wc->sum[i];
            out->objs += t.objs;
            out->bytes += t.bytes;
            out->est_objs += t.est_objs;
            out->est_bytes += t.est_bytes;
            if (wc->lifetimes_sum != NULL)
                memprof_lifetimes_read(&b->lifetimes, i, &wc->lifetimes_sum[i]);
        }
    }
}

/* A dump holds the window's lock, so no window opens while it reads: the blocks of the
 * window keep its counts.  Those of a closed window change no more (but for a sample
 * that was under way as it closed), so its one block is read in place. */
bool memprof_window_counts_read(struct memprof_window_counts *wc, uint32_t nstacks, uint32_t window,
                                bool closed, struct memprof_rates rates)
{
    *wc = (struct memprof_window_counts){.rates = rates};
    uint32_t holding = 0;
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next)
        if (atomic_load_explicit(&b->window, memory_order_acquire) == window) {
            wc->only = b;
            if (holding < MEMPROF_LIFETIME_HOLDERS)
                wc->holders[holding] = b;
            holding++;
        }
    wc->nholders = holding;
    if (holding == 0 || (holding == 1 && closed))
        return true;
    wc->only = NULL;
    wc->sum_bytes = sizeof(struct memprof_stack_totals) * ((size_t)nstacks + 1);
    wc->sum = memprof_map(wc->sum_bytes);
    if (holding > MEMPROF_LIFETIME_HOLDERS) {   /* too many to read a stack's from each */
        wc->lifetimes_bytes = sizeof(struct memprof_stack_lifetimes) * ((size_t)nstacks + 1);
        wc->lifetimes_sum = memprof_map(wc->lifetimes_bytes);
        if (wc->lifetimes_sum == NULL)
            return false;
    }
    if (wc->sum == NULL)
        return false;
    sum_counts(wc, nstacks, window);
    return true;
}

struct memprof_stack_totals memprof_window_counts_of(const struct memprof_window_counts *wc,
                                                     uint32_t stack)
{
    if (wc->sum != NULL)
        return wc->sum[stack];
    if (wc->only == NULL)
        return (struct memprof_stack_totals){0, 0, 0, 0};
    return read_counts(wc->only, stack, wc->rates);
}

bool memprof_window_lifetimes_of(const struct memprof_window_counts *wc, uint32_t stack,
                                 struct memprof_stack_lifetimes *out)
{
    *out = (struct memprof_stack_lifetimes){0};
    if (wc->lifetimes_sum != NULL)
        *out = wc->lifetimes_sum[stack];
    for (uint32_t h = 0; wc->lifetimes_sum == NULL && h < wc->nholders; h++)
        memprof_lifetimes_read(&wc->holders[h]->lifetimes, stack, out);
    return memprof_lifetimes_any(out);
}

void memprof_window_counts_release(struct memprof_window_counts *wc)
{
    memprof_unmap(wc->sum, wc->sum_bytes);
    memprof_unmap(wc->lifetimes_sum, wc->lifetimes_bytes);
    *wc = (struct memprof_window_counts){.rates = wc->rates};
}

/* In a forked child only the forking thread is left: the others' blocks are free. */
void memprof_stack_counts_after_fork(void)
{
    for (struct thread_block *b = atomic_load(&blocks); b != NULL; b = b->next)
        if (b != memprof_thread.block)
            atomic_store(&b->in_use, 0);
}
