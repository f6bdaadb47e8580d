/* The live samples (live_table.c): pointer -> (stack, requested size, birth), and
 * the filter that every free asks first. */
#ifndef MEMPROF_LIVE_TABLE_H
#define MEMPROF_LIVE_TABLE_H

#include "base/common.h"
#include "base/defaults.h"

/* Its keys: host pointers as they are; device pointers and, for cuMemCreate, handles
 * with their heap in the top byte, so they never meet a host pointer.  A key's heap
 * is its stack's, so a walk over the table tells heaps apart without a stack's record. */
#define MEMPROF_LIVE_ADDRESS_MASK ((1ull << 56) - 1)

static inline uintptr_t memprof_live_key(enum memprof_heap heap, uintptr_t address)
{
    return (uintptr_t)heap << 56 | (address & MEMPROF_LIVE_ADDRESS_MASK);
}

static inline enum memprof_heap memprof_live_key_heap(uintptr_t key)
{
    return (enum memprof_heap)(key >> 56);
}

static inline uintptr_t memprof_live_key_address(uintptr_t key)
{
    return key & MEMPROF_LIVE_ADDRESS_MASK;
}

int memprof_live_table_init(uint32_t capacity) HIDDEN;
void memprof_live_table_reset(void) HIDDEN;
/* The rate of the window about to open, with the table empty: where entries go. */
void memprof_live_table_set_rate(uint64_t rate) HIDDEN;
void memprof_live_table_after_fork(void) HIDDEN;
/* Starts bringing in the cache line where ptr's entry would go: a sample calls it
 * before its walk, so that the insert after it does not wait on memory. */
void memprof_live_prefetch(uintptr_t ptr) HIDDEN;
/* A live sample as the table keeps it. */
struct memprof_live_sample {
    uint32_t stack;
    uint64_t size;
    uint64_t born;   /* when it was made, in ticks (base/ticks.h) */
};
bool memprof_live_insert(uintptr_t ptr, struct memprof_live_sample sample) HIDDEN;
/* A live sample's stack and size in one word, as the table keeps them (sizes up to
 * 1 TiB, stack ids below 2^24). */
#define MEMPROF_LIVE_STACK_BITS 24
_Static_assert(MEMPROF_MAX_STACK_IDS <= 1u << MEMPROF_LIVE_STACK_BITS, "every stack id fits");
static inline uint64_t memprof_live_pack(uint32_t stack, uint64_t size)
{
    uint64_t most = (1ull << (64 - MEMPROF_LIVE_STACK_BITS)) - 1;
    return (size < most ? size : most) << MEMPROF_LIVE_STACK_BITS | stack;
}

static inline uint32_t memprof_live_packed_stack(uint64_t packed)
{
    return (uint32_t)(packed & ((1u << MEMPROF_LIVE_STACK_BITS) - 1));
}

static inline uint64_t memprof_live_packed_size(uint64_t packed)
{
    return packed >> MEMPROF_LIVE_STACK_BITS;
}

/* The live samples of all heaps at one moment (an estimate while others change them). */
uint64_t memprof_live_count(void) HIDDEN;
/* The packed stack and size of each live sample of the heap, into out (at most cap; each
 * stripe locked while it is read): how many. */
size_t memprof_live_copy(enum memprof_heap heap, uint64_t *out, size_t cap) HIDDEN;
/* Removes ptr if it is a live sample; reports what it was. */
bool memprof_live_remove(uintptr_t ptr, struct memprof_live_sample *sample) HIDDEN;
/* Calls fn for every live sample, its key (a host block's address) among them (each
 * stripe locked while it is visited). */
void memprof_live_foreach(void (*fn)(uintptr_t key, uint32_t stack, uint64_t size, void *arg),
                          void *arg) HIDDEN;

/* The filter.  Consulted on every free while capturing, so its lookup is inline here.
 * Half a million 16-bit cells, each a count of the live samples it covers and the XOR
 * of their 8-bit tags: a free whose cell counts none is not a live sample, nor is one
 * whose cell counts one sample of another tag, so only about one free in a hundred
 * that is not a sample goes on into the table, even with tens of thousands of live
 * samples in one region (which the table's stripes, picked by region, would crowd
 * into a few).  A cell covers 32 bytes of address modulo 16 MiB, not a hash of
 * the pointer: blocks allocated together, and freed together, share a cache line
 * of cells.  glibc gives each thread's arena heaps aligned to 64 MiB, so two
 * threads' blocks at the same offsets in their heaps would update the same lines
 * from two cores: each 64 MiB heap's cells start at a line of their own, a
 * Fibonacci hash of the heap's number, which sets the lines of neighbouring heaps
 * far apart.  The tag tells apart the two 16-byte halves, the four 16 MiB quarters
 * of a heap, and heaps. */
#define LIVE_FILTER_BITS 19
extern _Atomic uint16_t memprof_live_filter[1u << LIVE_FILTER_BITS] HIDDEN;

static inline uint64_t memprof_live_heap_hash(uintptr_t p)
{
    return (uint64_t)(p >> 26) * 0x9e3779b97f4a7c15ull;
}

static inline _Atomic uint16_t *memprof_live_cell(uintptr_t p)
{
    uint64_t line = memprof_live_heap_hash(p) >> (64 - LIVE_FILTER_BITS + 5) << 5;
    return &memprof_live_filter[((p >> 5) + line) & ((1u << LIVE_FILTER_BITS) - 1)];
}

static inline uint8_t memprof_live_tag(uintptr_t p)
{
    return (uint8_t)((p >> 4 & 1) | (p >> 24 & 3) << 1 |
                     (memprof_live_heap_hash(p) >> 32 & 0x1f) << 3);
}

/* Whether p may be a live sample: a cell word is count | tags << 8. */
static inline bool memprof_live_maybe(uintptr_t p)
{
    uint16_t cell = atomic_load_explicit(memprof_live_cell(p), memory_order_relaxed);
    return cell != 0 && ((cell & 0xff) != 1 || cell >> 8 == memprof_live_tag(p));
}

#endif
