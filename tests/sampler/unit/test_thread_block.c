/* The per-thread counters (sampler/tables/thread_block.c) as a dump reads them: in place
 * when one thread's block holds a closed window, copied at one moment while the window
 * is open, summed over the blocks when several hold it, and none from a block of
 * another window; a stack's samples of one size as one word, of several sizes in a
 * record of their own, with the same sums either way; its sampled frees by lifetime
 * alike, each in its bin, and none left of a window before. */
#include "base/thread_state.h"
#include "tables/lifetimes.h"
#include "tables/thread_block.h"
#include "unit.h"

__thread struct memprof_thread memprof_thread;   /* sample.c's, which holds the block */

uint32_t memprof_stack_heap(uint32_t id)   /* stack_table.c's: every stack of the host heap */
{
    (void)id;
    return HEAP_HOST;
}

void memprof_live_bytes_flush(void) {}   /* live_bytes.c's, at a thread's end */

#define RATE 64
static const struct memprof_rates rates = {RATE, 1};

/* A sample as record_sample counts it. */
static bool count(uint32_t stack, uint64_t size, uint32_t window)
{
    return memprof_stack_count(stack, size, RATE, memprof_weight_at(RATE, size), window);
}

static void check_totals(struct memprof_stack_totals t, uint64_t objs, uint64_t bytes,
                         double est_objs, double est_bytes)
{
    CHECK_EQ(t.objs, objs);
    CHECK_EQ(t.bytes, bytes);
    CHECK(fabs(t.est_objs - est_objs) <= 1e-12 * est_objs);
    CHECK(fabs(t.est_bytes - est_bytes) <= 1e-12 * est_bytes);
}

/* n samples of `size` bytes, as the sampler weighs them */
static void check_one_size(struct memprof_stack_totals t, uint64_t n, uint64_t size)
{
    double weight = memprof_weight_at(RATE, size);
    check_totals(t, n, n * size, (double)n * weight, (double)n * weight * (double)size);
}

static void test_an_open_windows_counts_are_read_at_one_moment(void)
{
    CHECK(count(3, 100, 1));
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, false, rates));
    CHECK(wc.sum != NULL);
    CHECK(count(3, 100, 1));   /* after the read: not in it */
    check_one_size(memprof_window_counts_of(&wc, 3), 1, 100);
    memprof_window_counts_release(&wc);
}

static void test_one_threads_counts_are_read_in_place_once_closed(void)
{
    CHECK(count(5, 10, 1));   /* stack 3: the test before's two */
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, true, rates));
    CHECK(wc.only != NULL);
    CHECK(wc.sum == NULL);
    check_one_size(memprof_window_counts_of(&wc, 3), 2, 100);
    check_one_size(memprof_window_counts_of(&wc, 5), 1, 10);
    check_totals(memprof_window_counts_of(&wc, 4), 0, 0, 0.0, 0.0);
    CHECK(count(3, 100, 1));   /* read where they are: no copy */
    check_one_size(memprof_window_counts_of(&wc, 3), 3, 100);
    memprof_window_counts_release(&wc);
}

static void test_samples_of_several_sizes_keep_each_ones_weight(void)
{
    /* stack 6: one size, then another, then a size no 32 bits hold; stack 7: such a
     * size first */
    uint64_t sizes[] = {24, 24, 4096, 24, 5ull << 32}, big = 6ull << 32;
    double objs = 0, bytes = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        CHECK(count(6, sizes[i], 1));
        objs += memprof_weight_at(RATE, sizes[i]);
        bytes += memprof_weight_at(RATE, sizes[i]) * (double)sizes[i];
        total += sizes[i];
    }
    CHECK(count(7, big, 1));
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, true, rates));
    check_totals(memprof_window_counts_of(&wc, 6), 5, total, objs, bytes);
    check_one_size(memprof_window_counts_of(&wc, 7), 1, big);
    check_one_size(memprof_window_counts_of(&wc, 3), 3, 100);   /* its word is unmoved */
    memprof_window_counts_release(&wc);
}

static void count_in_window_2(uint32_t index)
{
    for (uint32_t i = 0; i <= index; i++)
        CHECK(count(7, i == 0 ? 8 : 16, 2));
}

static void test_several_threads_counts_are_summed(void)
{
    run_threads(3, count_in_window_2);   /* 1 + 2 + 3 samples, each thread in a block */
    CHECK(count(7, 8, 2));   /* this thread's block starts window 2 */
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 2, true, rates));
    CHECK(wc.sum != NULL);
    double w8 = memprof_weight_at(RATE, 8), w16 = memprof_weight_at(RATE, 16);
    check_totals(memprof_window_counts_of(&wc, 7), 7, 4 * 8 + 3 * 16, 4 * w8 + 3 * w16,
                 4 * 8 * w8 + 3 * 16 * w16);
    check_totals(memprof_window_counts_of(&wc, 3), 0, 0, 0.0, 0.0);   /* window 1's */
    check_totals(memprof_window_counts_of(&wc, 6), 0, 0, 0.0, 0.0);   /* spilled in window 1 */
    memprof_window_counts_release(&wc);
    CHECK(wc.sum == NULL);
}

static void test_no_block_of_the_window_reads_as_none(void)
{
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, true, rates));   /* every block is in window 2 */
    CHECK(wc.only == NULL);
    CHECK(wc.sum == NULL);
    check_totals(memprof_window_counts_of(&wc, 3), 0, 0, 0.0, 0.0);
    memprof_window_counts_release(&wc);
}

static void test_frees_are_counted_in_their_lifetimes_bin(void)
{
    uint64_t lived[] = {0, 999, 1000, 54321, 999999999, 1000000000, UINT64_MAX};
    unsigned bins[] = {0, 0, 1, 2, 6, 7, 7};
    for (size_t i = 0; i < sizeof lived / sizeof *lived; i++)
        memprof_stack_freed(2, lived[i], i == 1, 300, 3);
    memprof_stack_freed(4, 10, true, 5ull << 32, 3);   /* bytes no word holds */
    for (uint32_t i = 0; i < 70000; i++)   /* more frees than a word counts */
        memprof_stack_freed(5, 10, i % 2, 1, 3);
    CHECK(count(2, 300, 3));
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 3, true, rates));
    CHECK(wc.only != NULL);
    struct memprof_stack_lifetimes l;
    CHECK(memprof_window_lifetimes_of(&wc, 2, &l));
    uint32_t want[MEMPROF_LIFETIME_BINS] = {0};
    for (size_t i = 0; i < sizeof bins / sizeof *bins; i++)
        want[bins[i]]++;
    for (int bin = 0; bin < MEMPROF_LIFETIME_BINS; bin++)
        CHECK_EQ(l.freed[bin], want[bin]);
    CHECK_EQ(l.temporary, 1);
    CHECK_EQ(l.temporary_bytes, 300);
    CHECK(memprof_window_lifetimes_of(&wc, 4, &l));
    CHECK_EQ(l.temporary_bytes, 5ull << 32);
    CHECK(memprof_window_lifetimes_of(&wc, 5, &l));
    CHECK_EQ(l.freed[0], 70000);
    CHECK_EQ(l.temporary, 35000);
    CHECK_EQ(l.temporary_bytes, 35000);
    CHECK(!memprof_window_lifetimes_of(&wc, 7, &l));   /* counted, never freed */
    memprof_window_counts_release(&wc);
}

static void free_in_window_4(uint32_t index)
{
    for (uint32_t i = 0; i <= index; i++)
        memprof_stack_freed(2, 2000, true, 8, 4);
}

static void test_several_threads_frees_are_summed_and_a_window_starts_afresh(void)
{
    run_threads(3, free_in_window_4);   /* 1 + 2 + 3 frees, each thread in a block */
    free_in_window_4(0);   /* this thread's block, of window 3, starts window 4 */
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 4, true, rates));
    CHECK(wc.sum != NULL);
    struct memprof_stack_lifetimes l;
    CHECK(memprof_window_lifetimes_of(&wc, 2, &l));
    CHECK_EQ(l.freed[1], 7);
    CHECK_EQ(l.freed[0] + l.freed[2], 0);   /* window 3's, cleared from this thread's block */
    CHECK_EQ(l.temporary_bytes, 7 * 8);
    CHECK(!memprof_window_lifetimes_of(&wc, 4, &l));
    memprof_window_counts_release(&wc);
}

int main(void)
{
    CHECK_EQ(memprof_stack_counts_init(64), 0);
    RUN(test_an_open_windows_counts_are_read_at_one_moment);
    RUN(test_one_threads_counts_are_read_in_place_once_closed);
    RUN(test_samples_of_several_sizes_keep_each_ones_weight);
    RUN(test_several_threads_counts_are_summed);
    RUN(test_no_block_of_the_window_reads_as_none);
    RUN(test_frees_are_counted_in_their_lifetimes_bin);
    RUN(test_several_threads_frees_are_summed_and_a_window_starts_afresh);
    return 0;
}
