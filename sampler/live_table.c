/* Live samples: pointer -> (stack, requested size), for `inuse` figures and
 * for recognising the free of a sampled block.
 *
 * Most frees are of unsampled blocks, so a bitmap filter indexed by a hash of
 * the pointer answers them with one load; only a set bit leads into the table.
 * The table is split into stripes, each a small open-addressing array behind
 * its own spinlock (linear probing, backward-shift deletion: no tombstones),
 * so two threads rarely meet on a lock or a cache line.  Entries are 16 bytes:
 * the pointer, and the size and stack id packed into one word. */
#include <sched.h>
#include <sys/mman.h>

#include "memprof_internal.h"

#define STRIPES 256
#define FILTER_BITS (1u << 22)           /* 512 KiB */
#define SIZE_BITS 40                     /* sizes up to 1 TiB */
#define STACK_BITS (64 - SIZE_BITS)

struct live_slot {
    uintptr_t ptr;                       /* 0 = empty */
    uint64_t packed;                     /* size << STACK_BITS | stack */
};

struct stripe {
    _Atomic int lock;
    uint32_t count;
    struct live_slot *slots;
    char pad[64 - sizeof(int) - sizeof(uint32_t) - sizeof(void *)];
};

static struct stripe stripes[STRIPES];
static uint32_t stripe_mask;             /* slots per stripe - 1 */
static uint32_t stripe_limit;            /* max entries per stripe (load <= 3/4) */
static struct live_slot *slot_memory;
static size_t slot_memory_bytes;
static _Atomic uint64_t *filter;

static inline uint64_t mix(uintptr_t p)
{
    uint64_t h = (uint64_t)p * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 31);
}

int memprof_live_table_init(uint32_t capacity)
{
    uint32_t per = 64;
    while ((uint64_t)per * STRIPES * 3 / 4 < capacity)
        per <<= 1;
    slot_memory_bytes = sizeof(struct live_slot) * (size_t)per * STRIPES;
    slot_memory = memprof_map(slot_memory_bytes);
    filter = memprof_map(FILTER_BITS / 8);
    if (slot_memory == NULL || filter == NULL)
        return -1;
    madvise(slot_memory, slot_memory_bytes, MADV_HUGEPAGE);   /* fewer TLB misses */
    stripe_mask = per - 1;
    stripe_limit = per * 3 / 4;
    for (int i = 0; i < STRIPES; i++)
        stripes[i].slots = slot_memory + (size_t)i * per;
    return 0;
}

void memprof_live_table_reset(void)
{
    memprof_zero_pages(slot_memory, slot_memory_bytes);
    memprof_zero_pages((void *)filter, FILTER_BITS / 8);
    for (int i = 0; i < STRIPES; i++) {
        atomic_store(&stripes[i].lock, 0);
        stripes[i].count = 0;
    }
}

static void lock(struct stripe *s)
{
    for (int spins = 0;; spins++) {
        if (atomic_load_explicit(&s->lock, memory_order_relaxed) == 0 &&
            !atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
            return;
        if (spins > 64)
            sched_yield();
    }
}

static void unlock(struct stripe *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static inline struct stripe *stripe_of(uint64_t h)
{
    return &stripes[h >> 56];
}

static inline uint32_t home_of(uint64_t h)
{
    return (uint32_t)(h >> 24) & stripe_mask;
}

bool memprof_live_insert(uintptr_t ptr, uint32_t stack, uint64_t size)
{
    uint64_t h = mix(ptr);
    struct stripe *s = stripe_of(h);
    if (size >= (1ull << SIZE_BITS))
        size = (1ull << SIZE_BITS) - 1;
    uint64_t packed = size << STACK_BITS | stack;
    bool stored = true;

    lock(s);
    uint32_t i = home_of(h);
    while (s->slots[i].ptr != 0 && s->slots[i].ptr != ptr)
        i = (i + 1) & stripe_mask;
    if (s->slots[i].ptr == ptr) {
        s->slots[i].packed = packed;     /* a stale entry (free not seen) */
    } else if (s->count < stripe_limit) {
        s->slots[i].ptr = ptr;
        s->slots[i].packed = packed;
        s->count++;
    } else {
        stored = false;
    }
    unlock(s);
    if (stored)
        atomic_fetch_or_explicit(&filter[(h & (FILTER_BITS - 1)) / 64],
                                 1ull << (h & 63), memory_order_relaxed);
    return stored;
}

bool memprof_live_remove(uintptr_t ptr, uint32_t *stack, uint64_t *size)
{
    uint64_t h = mix(ptr);
    uint64_t bits = atomic_load_explicit(&filter[(h & (FILTER_BITS - 1)) / 64], memory_order_relaxed);
    if (LIKELY((bits & (1ull << (h & 63))) == 0))
        return false;

    struct stripe *s = stripe_of(h);
    bool found = false;
    lock(s);
    uint32_t i = home_of(h);
    while (s->slots[i].ptr != 0 && s->slots[i].ptr != ptr)
        i = (i + 1) & stripe_mask;
    if (s->slots[i].ptr == ptr) {
        found = true;
        *stack = (uint32_t)(s->slots[i].packed & ((1ull << STACK_BITS) - 1));
        *size = s->slots[i].packed >> STACK_BITS;
        /* Backward-shift deletion keeps every probe chain unbroken. */
        uint32_t hole = i;
        for (uint32_t j = (i + 1) & stripe_mask; s->slots[j].ptr != 0; j = (j + 1) & stripe_mask) {
            uint32_t home = home_of(mix(s->slots[j].ptr));
            if (((j - home) & stripe_mask) >= ((j - hole) & stripe_mask)) {
                s->slots[hole] = s->slots[j];
                hole = j;
            }
        }
        s->slots[hole].ptr = 0;
        s->count--;
    }
    unlock(s);
    return found;
}

void memprof_live_foreach(void (*fn)(uint32_t stack, uint64_t size, void *arg), void *arg)
{
    for (int k = 0; k < STRIPES; k++) {
        struct stripe *s = &stripes[k];
        lock(s);
        for (uint32_t i = 0; i <= stripe_mask; i++)
            if (s->slots[i].ptr != 0)
                fn((uint32_t)(s->slots[i].packed & ((1ull << STACK_BITS) - 1)),
                   s->slots[i].packed >> STACK_BITS, arg);
        unlock(s);
    }
}
