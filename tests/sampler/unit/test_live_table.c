/* The live table (sampler/tables/live_table.c) alone: many samples in and out, checked
 * against a plain list; stripes that double at half full; the filter, which never
 * says "not a sample" of a live one; and threads that share stripes and cells.
 * The table keeps addresses as numbers, never reading at them. */
#include <string.h>

#include "tables/live_table.h"
#include "unit.h"

struct sample {
    uintptr_t ptr;
    uint32_t stack;
    uint64_t size;
    bool live;
};

#define MANY 100000
static struct sample samples[MANY];

/* 16-byte aligned addresses in 64 regions of 64 MiB, neighbours in a region as an
 * allocator hands them out: a filter cell counts at most 64 of them. */
static void make_samples(struct sample *s, uint32_t n, uint64_t seed)
{
    uint64_t rng = seed;
    for (uint32_t i = 0; i < n; i++) {
        uintptr_t region = 0x7f0000000000ull + ((uintptr_t)(i % 64) << 26);
        s[i] = (struct sample){region + 4096 + (uintptr_t)(i / 64) * 48 + 16 * (next_random(&rng) % 2),
                               (uint32_t)(next_random(&rng) % 100000),
                               1 + next_random(&rng) % 100000, false};
    }
}

/* A sample's birth follows from what it is, so each one taken out is checked to carry
 * its own. */
static uint64_t born_of(uint32_t stack, uint64_t size) { return (uint64_t)stack * 1000003u + size; }

static bool insert(uintptr_t ptr, uint32_t stack, uint64_t size)
{
    return memprof_live_insert(ptr, (struct memprof_live_sample){stack, size, born_of(stack, size)});
}

static bool take(uintptr_t ptr, uint32_t *stack, uint64_t *size)
{
    struct memprof_live_sample s;
    if (!memprof_live_remove(ptr, &s))
        return false;
    *stack = s.stack;
    *size = s.size;
    CHECK_EQ(s.born, born_of(s.stack, s.size < (1ull << 40) - 1 ? s.size : 1ull << 41));
    return true;
}

static void fresh_table(uint32_t capacity)
{
    memprof_live_table_reset();
    CHECK_EQ(memprof_live_table_init(capacity), 0);
}

struct tally {
    uint64_t count, sizes, mix;
};

static void add_to_tally(uintptr_t ptr, uint32_t stack, uint64_t size, void *arg)
{
    struct tally *t = arg;
    t->count++;
    t->sizes += size;
    t->mix += ((uint64_t)stack * 0x9e3779b97f4a7c15ull ^ size) + ptr * 0xff51afd7ed558ccdull;
}

static uint64_t copied[MANY + 1];

/* What memprof_live_foreach visits, and memprof_live_copy copies of the host heap (every
 * sample here is a host block's), is what the list says is live. */
static void check_contents(const struct sample *s, uint32_t n)
{
    struct tally want = {0, 0, 0}, seen = {0, 0, 0}, want_packed = {0, 0, 0}, packed = {0, 0, 0};
    for (uint32_t i = 0; i < n; i++)
        if (s[i].live) {
            add_to_tally(s[i].ptr, s[i].stack, s[i].size, &want);
            add_to_tally(0, s[i].stack, s[i].size, &want_packed);
        }
    memprof_live_foreach(add_to_tally, &seen);
    CHECK_EQ(seen.count, want.count);
    CHECK_EQ(seen.sizes, want.sizes);
    CHECK_EQ(seen.mix, want.mix);
    CHECK_EQ(memprof_live_count(), want.count);
    size_t copies = memprof_live_copy(HEAP_HOST, copied, MANY + 1);
    for (size_t i = 0; i < copies; i++)
        add_to_tally(0, memprof_live_packed_stack(copied[i]), memprof_live_packed_size(copied[i]),
                     &packed);
    CHECK_EQ(packed.count, want_packed.count);
    CHECK_EQ(packed.sizes, want_packed.sizes);
    CHECK_EQ(packed.mix, want_packed.mix);
    CHECK_EQ(memprof_live_copy(HEAP_CUDA, copied, MANY + 1), 0);
    if (want.count > 0)
        CHECK_EQ(memprof_live_copy(HEAP_HOST, copied, want.count - 1), want.count - 1);
    for (uint32_t i = 0; i < n; i++)
        if (s[i].live)
            CHECK(memprof_live_maybe(s[i].ptr));
}

static bool filter_is_empty(void)
{
    for (uint32_t i = 0; i < 1u << LIVE_FILTER_BITS; i++)
        if (atomic_load(&memprof_live_filter[i]) != 0)
            return false;
    return true;
}

static void test_many_samples_in_and_out(void)
{
    fresh_table(1u << 20);
    make_samples(samples, MANY, 1);
    for (uint32_t i = 0; i < MANY; i++) {
        memprof_live_prefetch(samples[i].ptr);
        CHECK(insert(samples[i].ptr, samples[i].stack, samples[i].size));
        samples[i].live = true;
    }
    check_contents(samples, MANY);

    uint64_t rng = 2;
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < MANY; i++) {
            if (next_random(&rng) % 3 != 0)
                continue;
            struct sample *s = &samples[i];
            uint32_t stack = UINT32_MAX;
            uint64_t size = 0;
            CHECK_EQ(take(s->ptr, &stack, &size), s->live);
            if (s->live) {
                CHECK_EQ(stack, s->stack);
                CHECK_EQ(size, s->size);
            } else {
                CHECK(insert(s->ptr, s->stack, s->size));
            }
            s->live = !s->live;
        }
        check_contents(samples, MANY);
    }

    uint32_t stack;
    uint64_t size;
    for (uint32_t i = 0; i < MANY; i++)   /* addresses never sampled */
        CHECK(!take(samples[i].ptr + 8, &stack, &size));
    for (uint32_t i = 0; i < MANY; i++)
        if (samples[i].live) {
            CHECK(take(samples[i].ptr, &stack, &size));
            CHECK_EQ(stack, samples[i].stack);
            samples[i].live = false;
        }
    check_contents(samples, MANY);
    CHECK(filter_is_empty());
}

/* 512 samples 8 bytes apart in one page all go to one stripe, which starts at 256
 * slots and doubles when an entry would fill more than three quarters: it holds 192
 * in 256 slots, 384 in 512, 768 in 1,024.  The table's capacity is half the slots of
 * all stripes together, so a capacity of 511 stops that stripe at 512 slots. */
static void test_a_stripe_doubles_at_three_quarters_full(void)
{
    for (uint32_t capacity = 511; capacity <= 512; capacity++) {
        fresh_table(capacity);
        uint32_t stored = 0;
        for (uint32_t i = 0; i < 512; i++)
            stored += insert(0x5500000000ull + 8 * i, i, 100 + i);
        CHECK_EQ(stored, (capacity == 512 ? 512 : 384));
        for (uint32_t i = 0; i < stored; i++) {
            uint32_t stack;
            uint64_t size;
            CHECK(memprof_live_maybe(0x5500000000ull + 8 * i));
            CHECK(take(0x5500000000ull + 8 * i, &stack, &size));
            CHECK_EQ(stack, i);
            CHECK_EQ(size, 100 + i);
        }
        CHECK(filter_is_empty());
    }
}

/* Samples at random addresses, some in one cell: the filter answers "maybe" for every
 * live one, whatever else shares its cell. */
static void test_the_filter_has_no_false_negative(void)
{
    fresh_table(1u << 20);
    uint64_t rng = 3;
    for (uint32_t i = 0; i < MANY; i++) {
        uintptr_t p = (next_random(&rng) & 0x7ffffffffff0ull) | 0x10;
        if (i % 4 == 1)
            p = samples[i - 1].ptr ^ 0x10;   /* the other half of the same 32 bytes */
        if (i % 4 == 2)
            p = samples[i - 2].ptr + (1ull << 24);   /* the same cell 16 MiB on */
        samples[i] = (struct sample){p, i, 1, false};
        samples[i].live = insert(p, i, 1);
        CHECK(samples[i].live || memprof_live_maybe(p));   /* a repeat of an address */
    }
    for (uint32_t i = 0; i < MANY; i++)
        if (samples[i].live)
            CHECK(memprof_live_maybe(samples[i].ptr));
    for (uint32_t i = 0; i < MANY; i += 2) {
        uint32_t stack;
        uint64_t size;
        samples[i].live = samples[i].live && !take(samples[i].ptr, &stack, &size);
    }
    for (uint32_t i = 0; i < MANY; i++)
        if (samples[i].live)
            CHECK(memprof_live_maybe(samples[i].ptr));
}

/* A sample at an address already held (its free was missed) replaces the old one. */
static void test_an_address_sampled_again_is_replaced(void)
{
    fresh_table(1024);
    uintptr_t p = 0x123456780ull;
    uint32_t stack;
    uint64_t size;
    CHECK(insert(p, 1, 10));
    CHECK(insert(p, 2, 20));
    CHECK(take(p, &stack, &size));
    CHECK_EQ(stack, 2);
    CHECK_EQ(size, 20);
    CHECK(!take(p, &stack, &size));
    CHECK(!memprof_live_maybe(p));
    CHECK(insert(p, 3, 1ull << 41));   /* sizes are kept up to 1 TiB */
    CHECK(take(p, &stack, &size));
    CHECK_EQ(size, (1ull << 40) - 1);
    CHECK(filter_is_empty());
}

/* Threads insert and remove samples of their own, interleaved in the same pages, so
 * that they share stripes and filter cells. */
#define THREADS 4
#define PER_THREAD 25000
static struct sample shared[THREADS][PER_THREAD];

static void churn(uint32_t t)
{
    struct sample *mine = shared[t];
    for (uint32_t i = 0; i < PER_THREAD; i++) {
        CHECK(insert(mine[i].ptr, mine[i].stack, mine[i].size));
        mine[i].live = true;
        if (i % 3 == 2) {   /* a sample freed soon after */
            uint32_t stack;
            uint64_t size;
            CHECK(take(mine[i - 1].ptr, &stack, &size));
            CHECK_EQ(stack, mine[i - 1].stack);
            mine[i - 1].live = false;
        }
    }
}

static void test_threads_share_stripes_and_cells(void)
{
    fresh_table(1u << 20);
    for (uint32_t t = 0; t < THREADS; t++)
        for (uint32_t i = 0; i < PER_THREAD; i++)
            shared[t][i] = (struct sample){0x600000000000ull + 16 * ((uintptr_t)i * THREADS + t),
                                           t * PER_THREAD + i, i + 1, false};
    run_threads(THREADS, churn);
    check_contents(&shared[0][0], THREADS * PER_THREAD);
    for (uint32_t t = 0; t < THREADS; t++)
        for (uint32_t i = 0; i < PER_THREAD; i++) {
            uint32_t stack;
            uint64_t size;
            CHECK_EQ(take(shared[t][i].ptr, &stack, &size), shared[t][i].live);
        }
    CHECK(filter_is_empty());
}

/* glibc's thread arenas are heaps aligned to 64 MiB, often next to each other: the
 * cells of the first 2 MiB of one heap share no line with those of a heap up to four
 * heaps away, so threads sampling at the same offsets in their own heaps do not
 * update one line from two cores. */
static void test_neighbouring_heaps_keep_apart_lines(void)
{
    const uint32_t cells = 1u << LIVE_FILTER_BITS, span = (2u << 20) >> 5;
    const uintptr_t heap_bytes = 64ull << 20;
    uint64_t rng = 5;
    for (int round = 0; round < 1000; round++) {
        uintptr_t heap = (uintptr_t)0x7f0000000000ull + (next_random(&rng) % 0x10000) * heap_bytes;
        for (uintptr_t k = 1; k <= 4; k++) {
            uint32_t a = (uint32_t)(memprof_live_cell(heap) - memprof_live_filter);
            uint32_t b = (uint32_t)(memprof_live_cell(heap + k * heap_bytes) - memprof_live_filter);
            uint32_t apart = (b - a) & (cells - 1);
            CHECK(apart >= span && cells - apart >= span);
        }
    }
}

int main(void)
{
    RUN(test_many_samples_in_and_out);
    RUN(test_a_stripe_doubles_at_three_quarters_full);
    RUN(test_the_filter_has_no_false_negative);
    RUN(test_an_address_sampled_again_is_replaced);
    RUN(test_threads_share_stripes_and_cells);
    RUN(test_neighbouring_heaps_keep_apart_lines);
    return 0;
}
