/* Helpers every stand-in library compiles in (each gets its own copy: all
 * static).  Nothing here calls malloc, so the stand-ins add nothing to the
 * host heap a profiler watches:
 *   - a trace (STANDIN_TRACE=<file>): one line per event, appended with write(2);
 *   - a fixed table of live blocks (key -> size, aux) in .bss;
 *   - a device-memory budget (STANDIN_DEVICE_MEMORY=<bytes>, default unlimited);
 *   - host-backed "device" memory: anonymous mmap, never the host heap. */
#ifndef STANDIN_UTIL_H
#define STANDIN_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- trace ------------------------------------------------------------------ */
static int standin_trace_fd = -2;   /* -2: not looked at yet, -1: off */

__attribute__((format(printf, 1, 2), unused))
static void standin_trace(const char *fmt, ...)
{
    if (standin_trace_fd == -2) {
        const char *path = getenv("STANDIN_TRACE");
        standin_trace_fd = (path && *path)
            ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    if (standin_trace_fd < 0)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t unused = write(standin_trace_fd, line, (size_t)n);
    (void)unused;
}

/* ---- a table of live blocks -------------------------------------------------- */
#define STANDIN_SLOTS 16384

struct standin_block {
    uintptr_t key;   /* 0: free slot */
    size_t size;
    uint64_t aux;
};

struct standin_table {
    pthread_mutex_t lock;
    unsigned high;   /* slots [0, high) have been used */
    struct standin_block slot[STANDIN_SLOTS];
};
#define STANDIN_TABLE_INIT { PTHREAD_MUTEX_INITIALIZER, 0, { { 0, 0, 0 } } }

__attribute__((unused))
static int standin_put(struct standin_table *t, uintptr_t key, size_t size, uint64_t aux)
{
    int ok = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i <= t->high && i < STANDIN_SLOTS; i++) {
        if (i == t->high || t->slot[i].key == 0) {
            t->slot[i] = (struct standin_block){ key, size, aux };
            if (i == t->high)
                t->high++;
            ok = 1;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

/* Finds key; with take, removes it.  Returns 1 and fills *out when found. */
__attribute__((unused))
static int standin_find(struct standin_table *t, uintptr_t key, int take, struct standin_block *out)
{
    int found = 0;
    if (key == 0)
        return 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < t->high; i++) {
        if (t->slot[i].key == key) {
            if (out)
                *out = t->slot[i];
            if (take) {
                t->slot[i].key = 0;
                while (t->high > 0 && t->slot[t->high - 1].key == 0)
                    t->high--;
            }
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

/* The block whose [key, key+size) holds addr (for reservations). */
__attribute__((unused))
static int standin_find_range(struct standin_table *t, uintptr_t addr, size_t len,
                              struct standin_block *out)
{
    int found = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < t->high; i++) {
        struct standin_block *b = &t->slot[i];
        if (b->key && addr >= b->key && addr + len <= b->key + b->size) {
            if (out)
                *out = *b;
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

/* Whether a block of the table shares a byte with [addr, addr+len). */
__attribute__((unused))
static int standin_overlaps(struct standin_table *t, uintptr_t addr, size_t len)
{
    int found = 0;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < t->high && !found; i++) {
        struct standin_block *b = &t->slot[i];
        found = b->key && addr < b->key + b->size && b->key < addr + len;
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

/* ---- the device-memory budget ------------------------------------------------ */
struct standin_budget {
    _Atomic unsigned long long live, peak, cap;   /* cap 0: unlimited */
    _Atomic int read;
};

__attribute__((unused))
static int standin_charge(struct standin_budget *b, unsigned long long size)
{
    if (!atomic_load(&b->read)) {
        const char *s = getenv("STANDIN_DEVICE_MEMORY");
        atomic_store(&b->cap, s && *s ? strtoull(s, NULL, 0) : 0ull);
        atomic_store(&b->read, 1);
    }
    unsigned long long cap = atomic_load(&b->cap);
    unsigned long long live = atomic_load(&b->live);
    do {
        if (cap && (size > cap || live > cap - size))
            return 0;
    } while (!atomic_compare_exchange_weak(&b->live, &live, live + size));
    unsigned long long peak = atomic_load(&b->peak);
    while (live + size > peak && !atomic_compare_exchange_weak(&b->peak, &peak, live + size))
        ;
    return 1;
}

__attribute__((unused))
static void standin_uncharge(struct standin_budget *b, unsigned long long size)
{
    atomic_fetch_sub(&b->live, size);
}

/* ---- host-backed device memory ----------------------------------------------- */
__attribute__((unused))
static void *standin_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* STANDIN_ALLOC_LATENCY_NS=<ns>: busy-wait this long in every allocation and free
 * (default 0), to model a real driver's cost in benchmarks when wanted. */
__attribute__((unused))
static void standin_latency(void)
{
    static long long ns = -1;
    if (ns < 0) {
        const char *s = getenv("STANDIN_ALLOC_LATENCY_NS");
        ns = s && *s ? strtoll(s, NULL, 0) : 0;
    }
    if (ns <= 0)
        return;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec) < ns);
}

#endif
