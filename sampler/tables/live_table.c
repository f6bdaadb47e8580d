/* Live samples: pointer -> (stack, requested size, birth), for `inuse` figures,
 * for recognising the free of a sampled block and for how long it lived.
 *
 * Most frees are of unsampled blocks, so a filter answers them with one load
 * (inline in the free hook, see live_table.h); only a cell that may
 * hold the pointer leads into the table.  The table is split into stripes, each a small
 * open-addressing array behind its own spinlock (linear probing, load <= 3/4,
 * backward-shift deletion: no tombstones) that grows by doubling, so the table
 * stays as compact as the live set.  Stripes follow the pointer's 64 MiB region
 * (glibc gives each thread's arena its own 64 MiB heaps), then its granule (below), so a
 * thread's locks and slots stay in its core's cache instead of bouncing between
 * cores.  A filter cell changes under the lock of the stripe whose entry it
 * counts, and stripes share cells: it changes by compare-and-swap.
 * Entries are 24 bytes: the pointer, size and stack id in one word, and the time
 * it was made. */
#include <string.h>

#include "base/spin_lock.h"
#include "base/sysutil.h"
#include "tables/live_table.h"

#define LIVE_STRIPES 256
#define MIN_SLOTS 256                    /* one page */

struct live_slot {
    uintptr_t ptr;                       /* 0 = empty */
    uint64_t packed;                     /* its stack and size: memprof_live_pack */
    uint64_t born;
};

struct stripe {
    _Atomic int lock;
    uint32_t count;
    uint32_t mask;                       /* slots - 1; 0 = no array yet */
    struct live_slot *slots;
} __attribute__((aligned(64)));

static struct stripe stripes[LIVE_STRIPES];
/* Saturating counts.  Page-aligned in .bss, which the loader maps anonymous, so
 * that a reset hands its pages back (zero again, and out of the resident set). */
_Atomic uint16_t memprof_live_filter[1u << LIVE_FILTER_BITS] __attribute__((aligned(4096)));
static uint64_t max_slots;               /* all stripes together: 2 x capacity */
static _Atomic uint64_t used_slots;

/* An entry's place follows its pointer's granule, the bytes that hold about four
 * samples at the window's rate (a 4 KiB page at rate 1024 and above, 64 bytes at
 * rate 1): the granule's hash picks the stripe (after the region) and a group of
 * four slots, a cache line and a half, and the pointer's quarter of the granule its home in
 * the group.  Samples are about `rate` bytes apart, and a program allocates and frees
 * neighbours together, so the samples of a granule share a line instead of missing
 * the cache one by one; a granule of a page at every rate would pile every block of
 * a page of small ones (pymalloc's, at rate 1) on one line's probe chain. */
static _Atomic uint32_t granule_shift = 12;

void memprof_live_table_set_rate(uint64_t rate)
{
    uint32_t shift = 6;
    while (shift < 12 && (1ull << shift) < 4 * rate)
        shift++;
    atomic_store_explicit(&granule_shift, shift, memory_order_relaxed);
}

static inline uint32_t shift_now(void)
{
    return atomic_load_explicit(&granule_shift, memory_order_relaxed);
}

static inline uint64_t granule_hash(uintptr_t p)
{
    uint64_t h = (uint64_t)(p >> shift_now()) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 31);
}

static inline uint32_t home_of(uintptr_t p, uint64_t h, uint32_t mask)
{
    return ((uint32_t)(h >> 8) << 2 | (uint32_t)(p >> (shift_now() - 2) & 3)) & mask;
}

static inline struct stripe *stripe_of(uintptr_t p, uint64_t h)
{
    return &stripes[(memprof_live_heap_hash(p) >> 60) << 4 | h >> 60];
}

/* A cell's change by one sample of p's; a saturated count stays set (and its
 * tags mean nothing any more: the table is asked). */
static inline void count_change(uintptr_t p, int delta)
{
    _Atomic uint16_t *c = memprof_live_cell(p);
    uint16_t tag = (uint16_t)(memprof_live_tag(p) << 8);
    uint16_t cell = atomic_load_explicit(c, memory_order_relaxed);
    while ((cell & 0xff) < 255 &&
           !atomic_compare_exchange_weak_explicit(c, &cell, (uint16_t)((cell + delta) ^ tag),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

int memprof_live_table_init(uint32_t capacity)
{
    max_slots = 2 * (uint64_t)capacity;
    return 0;
}

static void lock(struct stripe *s) { memprof_spin_lock(&s->lock); }
static void unlock(struct stripe *s) { memprof_spin_unlock(&s->lock); }

/* A stripe's array and mask change under its lock, and are stored atomically
 * for memprof_live_prefetch, which reads them without it. */
static void set_array(struct stripe *s, struct live_slot *slots, uint32_t mask)
{
    __atomic_store_n(&s->slots, slots, __ATOMIC_RELAXED);
    __atomic_store_n(&s->mask, mask, __ATOMIC_RELAXED);
}

static size_t array_bytes(uint32_t nslots) { return sizeof(struct live_slot) * (size_t)nslots; }

static void drop_slots(struct stripe *s)
{
    if (s->mask)
        atomic_fetch_sub(&used_slots, (uint64_t)s->mask + 1);
    memprof_unmap(s->slots, array_bytes(s->mask + 1));
    set_array(s, NULL, 0);
    s->count = 0;
}

/* Every lock held while the filter is cleared: it counts entries of all stripes. */
void memprof_live_table_reset(void)
{
    for (int k = 0; k < LIVE_STRIPES; k++)
        lock(&stripes[k]);
    for (int k = 0; k < LIVE_STRIPES; k++)
        drop_slots(&stripes[k]);
    memprof_zero_pages((void *)memprof_live_filter, sizeof memprof_live_filter);
    for (int k = 0; k < LIVE_STRIPES; k++)
        unlock(&stripes[k]);
}

/* In a forked child a lock may be held by a thread that no longer exists. */
void memprof_live_table_after_fork(void)
{
    for (int k = 0; k < LIVE_STRIPES; k++)
        atomic_store(&stripes[k].lock, 0);
    memprof_live_table_reset();
}

static uint32_t find(const struct stripe *s, uintptr_t ptr, uint64_t h)
{
    uint32_t i = home_of(ptr, h, s->mask);
    while (s->slots[i].ptr != 0 && s->slots[i].ptr != ptr)
        i = (i + 1) & s->mask;
    return i;
}

/* Doubles a stripe's array (called with the lock held); false when the
 * table's capacity is used up or memory is short. */
static bool grow(struct stripe *s)
{
    uint32_t nslots = s->mask ? 2 * (s->mask + 1) : MIN_SLOTS;
    uint64_t added = nslots - (s->mask ? s->mask + 1 : 0);
    if (atomic_fetch_add(&used_slots, added) + added > max_slots) {
        atomic_fetch_sub(&used_slots, added);
        return false;
    }
    struct live_slot *bigger = memprof_map(array_bytes(nslots));
    if (bigger == NULL) {
        atomic_fetch_sub(&used_slots, added);
        return false;
    }
    struct live_slot *old = s->slots;
    uint32_t old_mask = s->mask;
    set_array(s, bigger, nslots - 1);
    for (uint32_t i = 0; old_mask && i <= old_mask; i++)
        if (old[i].ptr != 0)
            s->slots[find(s, old[i].ptr, granule_hash(old[i].ptr))] = old[i];
    if (old_mask)   /* memprof_live_prefetch may still touch it: a prefetch never faults */
        memprof_unmap(old, array_bytes(old_mask + 1));
    return true;
}

void memprof_live_prefetch(uintptr_t ptr)
{
    uint64_t h = granule_hash(ptr);
    struct stripe *s = stripe_of(ptr, h);
    struct live_slot *slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
    uint32_t mask = __atomic_load_n(&s->mask, __ATOMIC_RELAXED);
    __builtin_prefetch(&slots[home_of(ptr, h, mask)], 1);   /* never faults, even on an old array */
    __builtin_prefetch(memprof_live_cell(ptr), 1);
}

bool memprof_live_insert(uintptr_t ptr, struct memprof_live_sample sample)
{
    uint64_t h = granule_hash(ptr);
    struct stripe *s = stripe_of(ptr, h);
    uint64_t packed = memprof_live_pack(sample.stack, sample.size);
    bool stored = false;

    lock(s);
    if (s->mask == 0 && !grow(s))
        goto out;
    uint32_t i = find(s, ptr, h);
    if (s->slots[i].ptr == ptr) {         /* a stale entry whose free we missed */
        s->slots[i].packed = packed;
        s->slots[i].born = sample.born;
        stored = true;
        goto out;
    }
    if (4 * (s->count + 1) > 3 * (s->mask + 1)) {
        if (!grow(s))
            goto out;
        i = find(s, ptr, h);
    }
    s->slots[i] = (struct live_slot){ptr, packed, sample.born};
    s->count++;
    count_change(ptr, 1);
    stored = true;
out:
    unlock(s);
    return stored;
}

bool memprof_live_remove(uintptr_t ptr, struct memprof_live_sample *sample)
{
    uint64_t h = granule_hash(ptr);
    struct stripe *s = stripe_of(ptr, h);
    bool found = false;
    lock(s);
    uint32_t i = s->mask ? find(s, ptr, h) : 0;
    if (s->mask && s->slots[i].ptr == ptr) {
        found = true;
        *sample = (struct memprof_live_sample){memprof_live_packed_stack(s->slots[i].packed),
                                               memprof_live_packed_size(s->slots[i].packed),
                                               s->slots[i].born};
        /* Backward-shift deletion keeps every probe chain unbroken. */
        uint32_t hole = i;
        for (uint32_t j = (i + 1) & s->mask; s->slots[j].ptr != 0; j = (j + 1) & s->mask) {
            uint32_t home = home_of(s->slots[j].ptr, granule_hash(s->slots[j].ptr), s->mask);
            if (((j - home) & s->mask) >= ((j - hole) & s->mask)) {
                s->slots[hole] = s->slots[j];
                hole = j;
            }
        }
        s->slots[hole].ptr = 0;
        s->count--;
        count_change(ptr, -1);
    }
    unlock(s);
    return found;
}

void memprof_live_foreach(void (*fn)(uintptr_t key, uint32_t stack, uint64_t size, void *arg),
                          void *arg)
{
    for (int k = 0; k < LIVE_STRIPES; k++) {
        struct stripe *s = &stripes[k];
        lock(s);
        for (uint32_t i = 0; s->mask && i <= s->mask; i++)
            if (s->slots[i].ptr != 0)
                fn(s->slots[i].ptr, memprof_live_packed_stack(s->slots[i].packed),
                   memprof_live_packed_size(s->slots[i].packed), arg);
        unlock(s);
    }
}

uint64_t memprof_live_count(void)
{
    uint64_t n = 0;
    for (int k = 0; k < LIVE_STRIPES; k++)
        n += __atomic_load_n(&stripes[k].count, __ATOMIC_RELAXED);
    return n;
}

size_t memprof_live_copy(enum memprof_heap heap, uint64_t *out, size_t cap)
{
    size_t n = 0;
    for (int k = 0; k < LIVE_STRIPES && n < cap; k++) {
        struct stripe *s = &stripes[k];
        lock(s);
        for (uint32_t i = 0; s->mask && i <= s->mask && n < cap; i++)
            if (s->slots[i].ptr != 0 && memprof_live_key_heap(s->slots[i].ptr) == heap)
                out[n++] = s->slots[i].packed;
        unlock(s);
    }
    return n;
}
