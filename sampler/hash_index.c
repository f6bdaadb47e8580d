/* A growable index from a 64-bit hash to a dense id, for the tables that intern
 * what samples meet (stacks; Python's strings and frame records).
 *
 * Lookups take no lock: an array of one-word slots, (hash >> 32) << 32 | id + 1,
 * 0 empty, placed by the hash's high half with linear probing.  Inserts take the
 * index's spin lock (held only inside the sampler, so no allocating thread can
 * already hold it); the owner makes the entry (copies its data, takes the next id)
 * before the slot that names it is published.  The array starts at a few pages
 * and doubles at three quarters full (linear probing still finds most keys in
 * the cache line of their home), so the pages touched follow the entries: a preallocated
 * array of the index's full capacity would take one page fault per entry, as the
 * hash spreads them over all its pages.  A reader may still be probing an array
 * that was replaced: it stays mapped, its pages given back (they read as zero, so
 * that reader finds nothing and goes on to the insert, which looks again under the
 * lock in the current array). */
#include <sys/mman.h>
#include <unistd.h>

#include "hash_index.h"
#include "spin_lock.h"
#include "sysutil.h"

#define FIRST_SLOTS 1024

struct memprof_index_array {
    uint32_t mask;
    _Atomic uint64_t slots[];
};

static size_t array_bytes(uint32_t nslots)
{
    return sizeof(struct memprof_index_array) + sizeof(uint64_t) * (size_t)nslots;
}

static inline uint32_t home(uint64_t hash) { return (uint32_t)(hash >> 32); }

int memprof_index_init(struct memprof_index *x, uint32_t capacity)
{
    x->max_slots = FIRST_SLOTS;
    while (x->max_slots < 2 * capacity)
        x->max_slots <<= 1;
    struct memprof_index_array *a = memprof_map(array_bytes(FIRST_SLOTS));
    if (a == NULL)
        return -1;
    a->mask = FIRST_SLOTS - 1;
    atomic_store(&x->array, a);
    x->count = 0;
    return 0;
}

/* Single-threaded (a forked child): the lock, which a thread of the parent may have
 * held, freed, then the entries given back as for a process at its end. */
void memprof_index_reset(struct memprof_index *x)
{
    atomic_store(&x->lock, 0);
    memprof_index_release(x);
}

/* For a process at its end, whose tables are written without a lookup: the entries
 * given back under the lock, the array's size kept (it reads as empty, and fills again
 * from its start).  Its mask is never cleared: a reader may still be probing it. */
void memprof_index_release(struct memprof_index *x)
{
    memprof_spin_lock(&x->lock);
    struct memprof_index_array *a = atomic_load_explicit(&x->array, memory_order_relaxed);
    size_t page = (size_t)getpagesize(), bytes = array_bytes(a->mask + 1);
    size_t first = ((bytes < page ? bytes : page) - sizeof *a) / sizeof a->slots[0];
    for (size_t i = 0; i < first; i++)   /* the slots on the mask's page, one by one */
        atomic_store_explicit(&a->slots[i], 0, memory_order_relaxed);
    if (bytes > page)
        memprof_zero_pages((char *)a + page, bytes - page);
    x->count = 0;
    memprof_spin_unlock(&x->lock);
}

static uint32_t find(const struct memprof_index_array *a, uint64_t hash,
                     const struct memprof_index_key *k)
{
    uint64_t tag = hash >> 32 << 32;
    for (uint32_t i = home(hash) & a->mask;; i = (i + 1) & a->mask) {
        uint64_t slot = atomic_load_explicit(&a->slots[i], memory_order_acquire);
        if (slot == 0)
            return MEMPROF_INDEX_NONE;
        uint32_t id = (uint32_t)slot - 1;
        if ((slot & ~0xffffffffull) == tag && k->same(id, k->key))
            return id;
    }
}

uint32_t memprof_index_find(const struct memprof_index *x, uint64_t hash,
                            const struct memprof_index_key *k)
{
    return find(atomic_load_explicit(&x->array, memory_order_acquire), hash, k);
}

void memprof_index_prefetch(const struct memprof_index *x, uint64_t hash)
{
    const struct memprof_index_array *a = atomic_load_explicit(&x->array, memory_order_acquire);
    __builtin_prefetch(&a->slots[home(hash) & a->mask]);   /* never faults, even on an old array */
}

uint32_t memprof_index_candidate(const struct memprof_index *x, uint64_t hash)
{
    const struct memprof_index_array *a = atomic_load_explicit(&x->array, memory_order_acquire);
    uint64_t tag = hash >> 32 << 32;
    for (uint32_t i = home(hash) & a->mask;; i = (i + 1) & a->mask) {
        uint64_t slot = atomic_load_explicit(&a->slots[i], memory_order_relaxed);
        if (slot == 0)
            return MEMPROF_INDEX_NONE;
        if ((slot & ~0xffffffffull) == tag)
            return (uint32_t)slot - 1;
    }
}

static void place(struct memprof_index_array *a, uint64_t slot)
{
    uint32_t i = home(slot) & a->mask;
    while (atomic_load_explicit(&a->slots[i], memory_order_relaxed) != 0)
        i = (i + 1) & a->mask;
    atomic_store_explicit(&a->slots[i], slot, memory_order_release);
}

/* Called with the lock held: the array twice as large, published with every slot
 * in it; false when the index is at its capacity or memory is short. */
static bool grow(struct memprof_index *x)
{
    struct memprof_index_array *old = atomic_load_explicit(&x->array, memory_order_relaxed);
    uint32_t nslots = 2 * (old->mask + 1);
    if (nslots > x->max_slots)
        return false;
    struct memprof_index_array *a = memprof_map(array_bytes(nslots));
    if (a == NULL)
        return false;
    a->mask = nslots - 1;
    for (uint32_t i = 0; i <= old->mask; i++) {
        uint64_t slot = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        if (slot != 0)
            place(a, slot);
    }
    atomic_store_explicit(&x->array, a, memory_order_release);
    madvise(old, array_bytes(old->mask + 1), MADV_DONTNEED);
    return true;
}

uint32_t memprof_index_intern(struct memprof_index *x, uint64_t hash,
                              const struct memprof_index_key *k,
                              uint32_t (*make)(const void *key))
{
    uint32_t id = memprof_index_find(x, hash, k);
    if (id != MEMPROF_INDEX_NONE)
        return id;
    memprof_spin_lock(&x->lock);   /* looked for again: made meanwhile, or moved by a growth */
    struct memprof_index_array *a = atomic_load_explicit(&x->array, memory_order_relaxed);
    id = find(a, hash, k);
    if (id != MEMPROF_INDEX_NONE)
        goto out;
    if (4 * (x->count + 1) > 3 * (a->mask + 1) && !grow(x))
        goto out;
    id = make(k->key);
    if (id == MEMPROF_INDEX_NONE)
        goto out;
    place(atomic_load_explicit(&x->array, memory_order_relaxed), (hash >> 32 << 32) | ((uint64_t)id + 1));
    x->count++;
out:
    memprof_spin_unlock(&x->lock);
    return id;
}
