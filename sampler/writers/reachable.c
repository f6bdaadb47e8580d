/* Which live samples of the host heap the program can still reach at its end, decided
 * as LeakSanitizer decides it: a block is reachable when an aligned word of a root (an
 * object's writable data, its thread-local storage, the calling thread's stack) or of
 * a reachable block points into it, at its start or inside; the others are leaks.
 * What the C library keeps until exit (stdio's buffers, the locale) is reached from
 * its own data, so it is no leak.
 *
 * It runs once the window has closed, at the program's end: the live table no longer
 * changes.  The sampler's own data is no root (its tables name every block); nor are
 * the stacks of other threads, which it cannot stop: a block that only another
 * thread's stack points to at exit is counted a leak.  All memory comes from mmap. */
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/sysutil.h"
#include "tables/live_table.h"
#include "tables/stack_table.h"
#include "writers/reachable.h"

struct block {
    uintptr_t start;
    uint64_t size;
    uint32_t stack;
    uint32_t reached;
};

struct scan {
    struct block *blocks;
    uint32_t n, cap;
    uint32_t *todo;   /* blocks reached, not yet read */
    uint32_t ntodo;
    uintptr_t lo, hi; /* the blocks' span */
};

static void count_block(uintptr_t key, uint32_t stack, uint64_t size, void *arg)
{
    (void)stack, (void)size;
    if (memprof_live_key_heap(key) == HEAP_HOST)
        (*(uint32_t *)arg)++;
}

static void take_block(uintptr_t key, uint32_t stack, uint64_t size, void *arg)
{
    struct scan *s = arg;
    if (memprof_live_key_heap(key) == HEAP_HOST && s->n < s->cap)
        s->blocks[s->n++] = (struct block){key, size, stack, 0};
}

static bool before(const struct block *a, const struct block *b) { return a->start < b->start; }

static void sift_down(struct block *b, uint32_t at, uint32_t n)
{
    for (uint32_t child; (child = 2 * at + 1) < n; at = child) {
        if (child + 1 < n && before(&b[child], &b[child + 1]))
            child++;
        if (!before(&b[at], &b[child]))
            return;
        struct block t = b[at];
        b[at] = b[child];
        b[child] = t;
    }
}

/* By address; heapsort: qsort may allocate. */
static void sort_blocks(struct block *b, uint32_t n)
{
    for (uint32_t i = n / 2; i-- > 0;)
        sift_down(b, i, n);
    for (uint32_t end = n; end-- > 1;) {
        struct block t = b[0];
        b[0] = b[end];
        b[end] = t;
        sift_down(b, 0, end);
    }
}

/* The block holding address p, or NULL. */
static struct block *block_at(const struct scan *s, uintptr_t p)
{
    if (p < s->lo || p >= s->hi)
        return NULL;
    uint32_t lo = 0, hi = s->n;   /* the last block starting at or below p is below hi */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->blocks[mid].start <= p)
            lo = mid;
        else
            hi = mid;
    }
    struct block *b = &s->blocks[lo];
    return p >= b->start && p - b->start < (b->size ? b->size : 1) ? b : NULL;
}

static void scan_words(struct scan *s, const uintptr_t *words, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct block *b = block_at(s, words[i]);
        if (b != NULL && !b->reached) {
            b->reached = 1;
            s->todo[s->ntodo++] = (uint32_t)(b - s->blocks);
        }
    }
}

/* The ranges to read next, read in one system call: process_vm_readv on ourselves,
 * which answers EFAULT for memory another thread has just unmapped (a large block it
 * freed as the program ends) where a load would crash the program. */
#define BATCH_RANGES 1024
#define BATCH_BYTES (64u << 10)
struct batch {
    struct iovec ranges[BATCH_RANGES];
    size_t n, bytes;
    uintptr_t buf[BATCH_BYTES / sizeof(uintptr_t)];
};

static bool read_batch(struct scan *s, struct batch *b)
{
    size_t done = 0;
    while (done < b->n) {
        struct iovec local = {b->buf, BATCH_BYTES};
        ssize_t got = process_vm_readv(getpid(), &local, 1, b->ranges + done, b->n - done, 0);
        if (got < 0 && errno != EFAULT)
            return false;   /* not allowed here (a sandbox): no scan */
        size_t at = 0, left = got > 0 ? (size_t)got : 0;
        for (; done < b->n && left >= b->ranges[done].iov_len; done++) {
            size_t len = b->ranges[done].iov_len;
            scan_words(s, b->buf + at / sizeof(uintptr_t), len / sizeof(uintptr_t));
            at += len;
            left -= len;
        }
        done++;   /* the range that could not be read, if any */
    }
    b->n = b->bytes = 0;
    return true;
}

/* Queues the aligned words of [from, to) for reading, in pieces that fit a batch. */
static bool scan_range(struct scan *s, struct batch *b, uintptr_t from, uintptr_t to)
{
    from = (from + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
    to &= ~(uintptr_t)(sizeof(uintptr_t) - 1);
    while (from < to) {
        size_t len = to - from < BATCH_BYTES ? to - from : BATCH_BYTES;
        if ((b->n == BATCH_RANGES || b->bytes + len > BATCH_BYTES) && !read_batch(s, b))
            return false;
        b->ranges[b->n++] = (struct iovec){(void *)from, len};
        b->bytes += len;
        from += len;
    }
    return true;
}

/* Whether the object holds this function: the sampler's own, whose data is no root. */
static bool holds_self(const struct dl_phdr_info *info)
{
    uintptr_t self = (uintptr_t)&holds_self;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && self >= start && self - start < ph->p_memsz)
            return true;
    }
    return false;
}

struct roots {
    struct scan *s;
    struct batch *b;
    bool ok;
};

static int scan_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct roots *r = arg;
    if (holds_self(info))
        return 0;
    for (int i = 0; i < info->dlpi_phnum && r->ok; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = ph->p_type == PT_TLS ? (uintptr_t)info->dlpi_tls_data
                                               : info->dlpi_addr + ph->p_vaddr;
        bool data = ph->p_type == PT_LOAD && (ph->p_flags & PF_W);
        if (data || (ph->p_type == PT_TLS && start != 0))
            r->ok = scan_range(r->s, r->b, start, start + ph->p_memsz);
    }
    return r->ok ? 0 : 1;
}

/* Everything reached from the roots, block after block. */
static bool scan_all(struct scan *s, struct batch *b)
{
    struct roots r = {s, b, true};
    dl_iterate_phdr(scan_object, &r);
    uintptr_t here = (uintptr_t)__builtin_frame_address(0), lo, hi;
    bool readable = false;
    if (r.ok && memprof_mapping_of(here, &lo, &hi, &readable) && readable)
        r.ok = scan_range(s, b, here, hi);
    while (r.ok && (s->ntodo > 0 || b->n > 0)) {
        if (s->ntodo == 0) {
            r.ok = read_batch(s, b);
            continue;
        }
        const struct block *block = &s->blocks[s->todo[--s->ntodo]];
        r.ok = scan_range(s, b, block->start, block->start + block->size);
    }
    return r.ok;
}

bool memprof_unreachable_scan(struct memprof_unreachable *u, uint32_t nstacks)
{
    *u = (struct memprof_unreachable){NULL, NULL, nstacks};
    struct scan s = {0};
    memprof_live_foreach(count_block, &s.cap);
    s.blocks = memprof_map(sizeof(*s.blocks) * ((size_t)s.cap + 1));
    s.todo = memprof_map(sizeof(*s.todo) * ((size_t)s.cap + 1));
    struct batch *b = memprof_map(sizeof(*b));
    u->samples = memprof_map(sizeof(*u->samples) * ((size_t)nstacks + 1));
    u->bytes = memprof_map(sizeof(*u->bytes) * ((size_t)nstacks + 1));
    bool ok = s.blocks != NULL && s.todo != NULL && b != NULL && u->samples != NULL &&
              u->bytes != NULL;
    if (ok) {
        memprof_live_foreach(take_block, &s);
        sort_blocks(s.blocks, s.n);
        if (s.n > 0) {
            s.lo = s.blocks[0].start;
            s.hi = s.blocks[s.n - 1].start + s.blocks[s.n - 1].size + 1;
        }
        ok = scan_all(&s, b);
    }
    if (ok) {
        for (uint32_t i = 0; i < s.n; i++)
            if (!s.blocks[i].reached && s.blocks[i].stack < nstacks) {
                u->samples[s.blocks[i].stack]++;
                u->bytes[s.blocks[i].stack] += s.blocks[i].size;
            }
    }
    memprof_unmap(s.blocks, sizeof(*s.blocks) * ((size_t)s.cap + 1));
    memprof_unmap(s.todo, sizeof(*s.todo) * ((size_t)s.cap + 1));
    memprof_unmap(b, sizeof(*b));
    if (!ok)
        memprof_unreachable_release(u);
    return ok;
}

void memprof_unreachable_release(struct memprof_unreachable *u)
{
    memprof_unmap(u->samples, sizeof(*u->samples) * ((size_t)u->nstacks + 1));
    memprof_unmap(u->bytes, sizeof(*u->bytes) * ((size_t)u->nstacks + 1));
    *u = (struct memprof_unreachable){NULL, NULL, 0};
}
