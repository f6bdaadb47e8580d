/* A growable index from a 64-bit hash to a dense id, for the tables that intern
 * what samples meet (stacks; Python's strings and frame records).
 *
 * Lookups take no lock: an array of 32-bit slots, 0 empty, each id + 1 in the low
 * bits the index's ids need and above them a tag, the top bits of the hash's high
 * half, which tells most other entries apart without a look at their records; placed
 * by the hash's high half with linear probing.  Inserts take the
 * index's spin lock (held only inside the sampler, so no allocating thread can
 * already hold it); the owner makes the entry (copies its data, takes the next id)
 * before the slot that names it is published.  The array starts at a few pages
 * and doubles at three quarters full (linear probing still finds most keys in
 * the cache line of their home), each entry placed again by its hash, which its
 * table computes anew from the entry (a slot does not hold the whole hash); so the
 * pages touched follow the entries: a preallocated
 * array of the index's full capacity would take one page fault per entry, as the
 * hash spreads them over all its pages.  A reader may still be probing an array
 * that was replaced: it stays mapped, its pages given back (they read as zero, so
 * that reader finds nothing and goes on to the insert, which looks again under the
 * lock in the current array). */
#include <sys/mman.h>
#include <unistd.h>

#include "base/spin_lock.h"
#include "base/sysutil.h"
#include "tables/hash_index.h"

#define FIRST_SLOTS 1024

struct memprof_index_array {
    uint32_t mask;
    uint32_t id_mask;    /* the slots' bits of id + 1; the tag is above them */
    _Atomic uint32_t slots[];
};

static size_t array_bytes(uint32_t nslots)
{
    return sizeof(struct memprof_index_array) + sizeof(uint32_t) * (size_t)nslots;
}

static inline uint32_t home(uint64_t hash) { return (uint32_t)(hash >> 32); }

static inline uint32_t tag(const struct memprof_index_array *a, uint64_t hash)
{
    return (uint32_t)(hash >> 32) & ~a->id_mask;
}

static inline uint32_t slot_id(const struct memprof_index_array *a, uint32_t slot)
{
    return (slot & a->id_mask) - 1;
}

static struct memprof_index_array *new_array(uint32_t nslots, uint32_t id_mask)
{
    struct memprof_index_array *a = memprof_map(array_bytes(nslots));
    if (a != NULL) {
        a->mask = nslots - 1;
        a->id_mask = id_mask;
    }
    return a;
}

int memprof_index_init(struct memprof_index *x, uint32_t capacity,
                       uint64_t (*hash_of)(const struct memprof_index *x, uint32_t id))
{
    x->max_slots = FIRST_SLOTS;
    while (x->max_slots < 2 * capacity)
        x->max_slots <<= 1;
    x->hash_of = hash_of;
    /* a table's ids are dense: below its capacity (a tree's root, id 0, beside it) and
     * below the entries an index of max_slots can hold */
    uint32_t most = capacity + 1 > x->max_slots - 1 ? capacity + 1 : x->max_slots - 1, id_mask;
    for (id_mask = 1; id_mask < most;)
        id_mask = id_mask << 1 | 1;
    struct memprof_index_array *a = new_array(FIRST_SLOTS, id_mask);
    if (a == NULL)
        return -1;
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
    uint32_t t = tag(a, hash);
    for (uint32_t i = home(hash) & a->mask;; i = (i + 1) & a->mask) {
        uint32_t slot = atomic_load_explicit(&a->slots[i], memory_order_acquire);
        if (slot == 0)
            return MEMPROF_INDEX_NONE;
        if ((slot & ~a->id_mask) == t && k->same(slot_id(a, slot), k->key))
            return slot_id(a, slot);
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
    uint32_t t = tag(a, hash);
    for (uint32_t i = home(hash) & a->mask;; i = (i + 1) & a->mask) {
        uint32_t slot = atomic_load_explicit(&a->slots[i], memory_order_relaxed);
        if (slot == 0)
            return MEMPROF_INDEX_NONE;
        if ((slot & ~a->id_mask) == t)
            return slot_id(a, slot);
    }
}

static void place(struct memprof_index_array *a, uint64_t hash, uint32_t id)
{
    uint32_t slot = tag(a, hash) | (id + 1), i = home(hash) & a->mask;
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
    struct memprof_index_array *a = new_array(nslots, old->id_mask);
    if (a == NULL)
        return false;
    for (uint32_t i = 0; i <= old->mask; i++) {
        uint32_t slot = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        if (slot != 0)
            place(a, x->hash_of(x, slot_id(old, slot)), slot_id(old, slot));
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
    place(atomic_load_explicit(&x->array, memory_order_relaxed), hash, id);
    x->count++;
out:
    memprof_spin_unlock(&x->lock);
    return id;
}
