/* Lifetimes by stack, per thread.  Most stacks are freed a few times in a window, every
 * free in one bin (a program's import makes hundreds of thousands of stacks sampled once),
 * so a stack's frees are one word while they fit in it: their bin, how many, how many
 * were temporary and their bytes.  A free in another bin, or counts past the word's
 * fields, move them to a full record, and the word then names it: 8 bytes a stack and
 * thread where a record would take 48. */
#include "base/sysutil.h"
#include "tables/lifetimes.h"

/* A word: 0 (no frees), SPILLED | its record's index, or bin << 60 | temporary << 48 |
 * freed << 32 | temporary bytes. */
#define SPILLED (1ull << 63)
#define FREED_MAX 0xffffu
#define TEMPORARY_MAX 0xfffu
#define BYTES_MAX 0xffffffffu
/* A record's count stops short of wrapping (a stack freed four billion times in one
 * window at -c 1). */
#define COUNT_CEILING (UINT32_MAX - 1)

static size_t words_bytes(uint32_t max_stacks)
{
    return (sizeof(uint64_t) * (size_t)max_stacks + 4095) & ~(size_t)4095;
}

size_t memprof_lifetimes_area_bytes(uint32_t max_stacks)
{
    size_t records = sizeof(struct memprof_stack_lifetimes) * (size_t)max_stacks;
    return words_bytes(max_stacks) + ((records + 4095) & ~(size_t)4095);
}

struct memprof_lifetimes_area memprof_lifetimes_area_at(void *memory, uint32_t max_stacks)
{
    return (struct memprof_lifetimes_area){
        memory, (struct memprof_stack_lifetimes *)((char *)memory + words_bytes(max_stacks)), 0,
        0};
}

void memprof_lifetimes_clear(struct memprof_lifetimes_area *a)
{
    memprof_zero_pages(a->words, sizeof(uint64_t) * a->end);
    memprof_zero_pages(a->records, sizeof(*a->records) * a->records_used);
    a->records_used = a->end = 0;
}

static unsigned bin_of(uint64_t lived_ns)
{
    unsigned bin = 0;
    for (uint64_t end = 1000; bin < MEMPROF_LIFETIME_BINS - 1 && lived_ns >= end; end *= 10)
        bin++;
    return bin;
}

static void unpack(uint64_t w, struct memprof_stack_lifetimes *l)
{
    *l = (struct memprof_stack_lifetimes){0};
    l->freed[w >> 60 & 7] = (uint32_t)(w >> 32 & FREED_MAX);
    l->temporary = (uint32_t)(w >> 48 & TEMPORARY_MAX);
    l->temporary_bytes = (uint32_t)w;
}

#define SET_RELAXED(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

static void add_up(uint32_t *count)
{
    if (*count < COUNT_CEILING)
        SET_RELAXED(*count, *count + 1);
}

void memprof_lifetimes_add(struct memprof_lifetimes_area *a, uint32_t stack, uint64_t lived_ns,
                           bool temporary, uint64_t size)
{
    _Atomic uint64_t *word = &a->words[stack];
    uint64_t w = atomic_load_explicit(word, memory_order_relaxed);
    unsigned bin = bin_of(lived_ns);
    if (stack >= a->end)
        a->end = stack + 1;
    if (!(w & SPILLED)) {
        uint64_t freed = (w >> 32 & FREED_MAX) + 1, temps = (w >> 48 & TEMPORARY_MAX) + temporary,
                 bytes = (uint32_t)w + (temporary ? size : 0);
        if ((freed == 1 || (w >> 60 & 7) == bin) && freed <= FREED_MAX &&
            temps <= TEMPORARY_MAX && bytes <= BYTES_MAX) {
            atomic_store_explicit(word, (uint64_t)bin << 60 | temps << 48 | freed << 32 | bytes,
                                  memory_order_release);
            return;
        }
        /* the word's frees, written whole before the word names their record */
        struct memprof_stack_lifetimes *r = &a->records[a->records_used];
        struct memprof_stack_lifetimes was;
        unpack(w, &was);
        for (int b = 0; b < MEMPROF_LIFETIME_BINS; b++)
            SET_RELAXED(r->freed[b], was.freed[b]);
        SET_RELAXED(r->temporary, was.temporary);
        SET_RELAXED(r->temporary_bytes, was.temporary_bytes);
        w = SPILLED | a->records_used++;
        atomic_store_explicit(word, w, memory_order_release);
    }
    struct memprof_stack_lifetimes *r = &a->records[(uint32_t)w];
    add_up(&r->freed[bin]);
    if (temporary) {
        add_up(&r->temporary);
        SET_RELAXED(r->temporary_bytes, r->temporary_bytes + size);
    }
}

void memprof_lifetimes_read(const struct memprof_lifetimes_area *a, uint32_t stack,
                            struct memprof_stack_lifetimes *sum)
{
    uint64_t w = atomic_load_explicit(&a->words[stack], memory_order_acquire);
    struct memprof_stack_lifetimes l;
    if (w & SPILLED) {
        const struct memprof_stack_lifetimes *r = &a->records[(uint32_t)w];
        for (int b = 0; b < MEMPROF_LIFETIME_BINS; b++)
            l.freed[b] = __atomic_load_n(&r->freed[b], __ATOMIC_RELAXED);
        l.temporary = __atomic_load_n(&r->temporary, __ATOMIC_RELAXED);
        l.temporary_bytes = __atomic_load_n(&r->temporary_bytes, __ATOMIC_RELAXED);
    } else {
        unpack(w, &l);
    }
    for (int b = 0; b < MEMPROF_LIFETIME_BINS; b++)
        sum->freed[b] += l.freed[b];
    sum->temporary += l.temporary;
    sum->temporary_bytes += l.temporary_bytes;
}

bool memprof_lifetimes_any(const struct memprof_stack_lifetimes *l)
{
    for (int b = 0; b < MEMPROF_LIFETIME_BINS; b++)
        if (l->freed[b] != 0)
            return true;
    return false;
}
