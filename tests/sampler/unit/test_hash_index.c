/* The hash index (sampler/tables/hash_index.c) alone: entries found again, growth by
 * doubling at three quarters full, its capacity, a reset, concurrent interning, and a
 * release while threads intern. */
#include <string.h>

#include "tables/hash_index.h"
#include "unit.h"

/* The interning table under test: entry id holds keys[id], made under the index's lock. */
#define MAX_KEYS (1u << 17)
static uint64_t keys[MAX_KEYS];
static _Atomic uint32_t used_keys;
static uint32_t table_capacity;
static _Atomic uint32_t makes;   /* calls of make_key that made an entry */

static bool same_key(uint32_t id, const void *key)
{
    return keys[id] == *(const uint64_t *)key;
}

static uint32_t make_key(const void *key)
{
    uint32_t id = atomic_load_explicit(&used_keys, memory_order_relaxed);
    if (id >= table_capacity)
        return MEMPROF_INDEX_NONE;
    keys[id] = *(const uint64_t *)key;
    atomic_store_explicit(&used_keys, id + 1, memory_order_release);
    atomic_fetch_add(&makes, 1);
    return id;
}

static uint64_t good_hash(uint64_t key)
{
    uint64_t h = (key + 1) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* 256 homes and tags in all: long probe chains, and entries that only same_key tells
 * apart. */
static uint64_t crowded_hash(uint64_t key)
{
    return (uint64_t)(uint32_t)((key % 256) * 0x9e3779b9u) << 32 | (uint32_t)key;
}

static uint64_t (*hash_of)(uint64_t key) = good_hash;

static uint64_t entry_hash(const struct memprof_index *x, uint32_t id)
{
    (void)x;
    return hash_of(keys[id]);
}

static uint32_t intern(struct memprof_index *x, uint64_t key)
{
    struct memprof_index_key k = {&key, same_key};
    return memprof_index_intern(x, hash_of(key), &k, make_key);
}

/* A fresh index and table: the index for `index_capacity` entries, the table for
 * `capacity`. */
static void start(struct memprof_index *x, uint32_t index_capacity, uint32_t capacity)
{
    memset(x, 0, sizeof *x);
    CHECK_EQ(memprof_index_init(x, index_capacity, entry_hash), 0);
    atomic_store(&used_keys, 0);
    atomic_store(&makes, 0);
    table_capacity = capacity;
}

static void test_entries_are_found_again(void)
{
    for (int crowded = 0; crowded < 2; crowded++) {
        hash_of = crowded ? crowded_hash : good_hash;
        uint32_t n = crowded ? 10000 : 60000;
        struct memprof_index x;
        start(&x, MAX_KEYS, MAX_KEYS);
        for (uint32_t i = 0; i < n; i++)
            CHECK_EQ(intern(&x, 7 * (uint64_t)i + 3), i);   /* new keys: the next ids */
        CHECK_EQ(atomic_load(&makes), n);
        for (uint32_t i = n; i-- > 0;)
            CHECK_EQ(intern(&x, 7 * (uint64_t)i + 3), i);   /* found, nothing made */
        CHECK_EQ(atomic_load(&makes), n);
        CHECK_EQ(x.count, n);
    }
    hash_of = good_hash;
}

/* Two keys of one hash are two entries. */
static void test_a_shared_hash_is_not_a_match(void)
{
    struct memprof_index x;
    start(&x, 1024, 1024);
    uint64_t a = 1, b = 2;
    struct memprof_index_key ka = {&a, same_key}, kb = {&b, same_key};
    CHECK_EQ(memprof_index_intern(&x, 42ull << 32, &ka, make_key), 0);
    CHECK_EQ(memprof_index_intern(&x, 42ull << 32, &kb, make_key), 1);
    CHECK_EQ(memprof_index_intern(&x, 42ull << 32, &ka, make_key), 0);
    CHECK_EQ(memprof_index_intern(&x, 42ull << 32, &kb, make_key), 1);
}

/* The array starts at 1,024 slots and doubles when an entry would fill more than
 * three quarters of it (ARCHITECTURE.md, *Interning*): it is replaced exactly as the
 * count goes past 768, 1,536, 3,072, ..., and every entry is found in the new one. */
static void test_growth_doubles_at_three_quarters_full(void)
{
    struct memprof_index x;
    start(&x, MAX_KEYS, MAX_KEYS);
    struct memprof_index_array *array = atomic_load(&x.array);
    uint32_t next_growth = 768, growths = 0;
    for (uint32_t i = 0; i < 20000; i++) {
        CHECK_EQ(intern(&x, i), i);
        struct memprof_index_array *now = atomic_load(&x.array);
        if (x.count == next_growth + 1) {
            CHECK(now != array);
            growths++;
            next_growth *= 2;
        } else {
            CHECK(now == array);
        }
        array = now;
    }
    CHECK_EQ(growths, 5);   /* past 768, 1,536, ..., 12,288 */
    for (uint32_t i = 0; i < 20000; i++)
        CHECK_EQ(intern(&x, i), i);
    CHECK_EQ(atomic_load(&makes), 20000);
}

/* An index for 1,000 entries has at most 2,048 slots, so it holds 1,536 entries; a
 * full table refuses in its turn; either way what is in stays found. */
static void test_a_full_index_or_table_refuses(void)
{
    struct memprof_index x;
    start(&x, 1000, MAX_KEYS);
    for (uint32_t i = 0; i < 1536; i++)
        CHECK_EQ(intern(&x, i), i);
    CHECK_EQ(intern(&x, 1536), MEMPROF_INDEX_NONE);
    CHECK_EQ(intern(&x, 5000), MEMPROF_INDEX_NONE);
    for (uint32_t i = 0; i < 1536; i++)
        CHECK_EQ(intern(&x, i), i);

    start(&x, MAX_KEYS, 100);
    for (uint32_t i = 0; i < 100; i++)
        CHECK_EQ(intern(&x, i), i);
    CHECK_EQ(intern(&x, 100), MEMPROF_INDEX_NONE);
    CHECK_EQ(x.count, 100);
    for (uint32_t i = 0; i < 100; i++)
        CHECK_EQ(intern(&x, i), i);
}

static void test_a_reset_index_is_empty(void)
{
    struct memprof_index x;
    start(&x, MAX_KEYS, MAX_KEYS);
    for (uint32_t i = 0; i < 3000; i++)
        CHECK_EQ(intern(&x, i), i);
    memprof_index_reset(&x);
    atomic_store(&used_keys, 0);
    CHECK_EQ(x.count, 0);
    CHECK_EQ(intern(&x, 2999), 0);   /* made again, not found */
    CHECK_EQ(intern(&x, 0), 1);
    CHECK_EQ(atomic_load(&makes), 3002);
}

/* Threads intern the same keys, each in its own order, while the index grows under
 * them: each key gets one id, the same in every thread, and is made once. */
#define THREADS 6
#define SHARED_KEYS 40000
static uint32_t ids_seen[THREADS][SHARED_KEYS];
static struct memprof_index shared;

static void intern_all(uint32_t t)
{
    uint64_t rng = 0x1234567ull + t;
    uint32_t order[SHARED_KEYS];
    for (uint32_t i = 0; i < SHARED_KEYS; i++)
        order[i] = i;
    for (uint32_t i = SHARED_KEYS - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_random(&rng) % (i + 1)), k = order[i];
        order[i] = order[j];
        order[j] = k;
    }
    for (uint32_t i = 0; i < SHARED_KEYS; i++)
        ids_seen[t][order[i]] = intern(&shared, order[i] * 11ull);
}

static void test_concurrent_interning_gives_one_id_per_key(void)
{
    for (int crowded = 0; crowded < 2; crowded++) {
        hash_of = crowded ? crowded_hash : good_hash;
        start(&shared, MAX_KEYS, MAX_KEYS);
        run_threads(THREADS, intern_all);

        static bool taken[SHARED_KEYS];
        memset(taken, 0, sizeof taken);
        for (uint32_t key = 0; key < SHARED_KEYS; key++) {
            uint32_t id = ids_seen[0][key];
            CHECK(id < SHARED_KEYS);
            CHECK(!taken[id]);
            taken[id] = true;
            CHECK_EQ(keys[id], key * 11ull);
            for (int t = 1; t < THREADS; t++)
                CHECK_EQ(ids_seen[t][key], id);
        }
        CHECK_EQ(atomic_load(&makes), SHARED_KEYS);
        CHECK_EQ(shared.count, SHARED_KEYS);
    }
    hash_of = good_hash;
}

static void test_a_released_index_reads_empty_and_fills_again(void)
{
    struct memprof_index x;
    start(&x, MAX_KEYS, MAX_KEYS);
    for (uint32_t i = 0; i < 3000; i++)
        CHECK_EQ(intern(&x, i), i);
    struct memprof_index_array *array = atomic_load(&x.array);
    memprof_index_release(&x);
    CHECK_EQ(x.count, 0);
    CHECK(atomic_load(&x.array) == array);   /* the same array, its size kept */
    for (uint32_t i = 0; i < 3000; i++) {
        uint64_t key = i;
        struct memprof_index_key k = {&key, same_key};
        CHECK_EQ(memprof_index_find(&x, hash_of(key), &k), MEMPROF_INDEX_NONE);
    }
    CHECK_EQ(intern(&x, 2999), 3000);   /* the table keeps its entries: made anew */
    CHECK_EQ(intern(&x, 2999), 3000);
}

/* Threads intern while another releases the index again and again: nothing hangs, and
 * every id a lookup gives holds its key. */
#define RELEASE_KEYS 8000
static uint32_t ids_after_release[THREADS][RELEASE_KEYS];

static void intern_or_release(uint32_t t)
{
    for (int round = 0; round < 5; round++) {
        if (t == 0) {
            memprof_index_release(&shared);
            continue;
        }
        for (uint32_t key = 0; key < RELEASE_KEYS; key++)
            ids_after_release[t][key] = intern(&shared, key * 7ull);
    }
}

static void test_interning_goes_on_while_the_index_is_released(void)
{
    start(&shared, MAX_KEYS, MAX_KEYS);
    run_threads(THREADS, intern_or_release);
    for (int t = 1; t < THREADS; t++)
        for (uint32_t key = 0; key < RELEASE_KEYS; key++) {
            uint32_t id = ids_after_release[t][key];
            CHECK(id < atomic_load(&used_keys));
            CHECK_EQ(keys[id], key * 7ull);
        }
}

int main(void)
{
    RUN(test_entries_are_found_again);
    RUN(test_a_shared_hash_is_not_a_match);
    RUN(test_growth_doubles_at_three_quarters_full);
    RUN(test_a_full_index_or_table_refuses);
    RUN(test_a_reset_index_is_empty);
    RUN(test_concurrent_interning_gives_one_id_per_key);
    RUN(test_a_released_index_reads_empty_and_fills_again);
    RUN(test_interning_goes_on_while_the_index_is_released);
    return 0;
}
