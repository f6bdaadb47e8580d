/* The hash -> id index of the interning tables (hash_index.c). */
#ifndef MEMPROF_HASH_INDEX_H
#define MEMPROF_HASH_INDEX_H

#include "base/common.h"

#define MEMPROF_INDEX_NONE UINT32_MAX
struct memprof_index_array;
struct memprof_index {
    _Atomic(struct memprof_index_array *) array;
    _Atomic int lock;
    uint32_t count, max_slots;
    uint64_t (*hash_of)(const struct memprof_index *x, uint32_t id);
};
/* What is looked up: the key, and whether entry `id` holds it. */
struct memprof_index_key {
    const void *key;
    bool (*same)(uint32_t id, const void *key);
};
/* For a table of `capacity` entries, whose ids run from 0 (or 1) up, each found by
 * the hash hash_of(x, id) gives again from its entry (as the index grows, slots are
 * placed anew by it). */
int memprof_index_init(struct memprof_index *x, uint32_t capacity,
                       uint64_t (*hash_of)(const struct memprof_index *x, uint32_t id)) HIDDEN;
void memprof_index_reset(struct memprof_index *x) HIDDEN;
/* Its entries given back, at any time (for a process at its end): it reads as empty. */
void memprof_index_release(struct memprof_index *x) HIDDEN;
/* The id of the key's entry, found without a lock; if there is none yet, the entry
 * made by make (which returns its id, or MEMPROF_INDEX_NONE when its table is full)
 * under the index's lock.  MEMPROF_INDEX_NONE when full. */
uint32_t memprof_index_intern(struct memprof_index *x, uint64_t hash,
                              const struct memprof_index_key *k,
                              uint32_t (*make)(const void *key)) HIDDEN;
/* The id of the key's entry, found without a lock; MEMPROF_INDEX_NONE if there is none. */
uint32_t memprof_index_find(const struct memprof_index *x, uint64_t hash,
                            const struct memprof_index_key *k) HIDDEN;

/* For a lookup to come: the key's home slot is read into the cache, and the id of
 * the first entry whose hash looks like it (unverified; MEMPROF_INDEX_NONE if none)
 * told, so that its record can be fetched too.  Neither takes a lock. */
void memprof_index_prefetch(const struct memprof_index *x, uint64_t hash) HIDDEN;
uint32_t memprof_index_candidate(const struct memprof_index *x, uint64_t hash) HIDDEN;

#endif
