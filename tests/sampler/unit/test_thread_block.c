/* The per-thread counters (sampler/thread_block.c) as a dump reads them: in place
 * when one thread's block holds a closed window, copied at one moment while the window
 * is open, summed over the blocks when several hold it, and none from a block of
 * another window. */
#include "thread_block.h"
#include "thread_state.h"
#include "unit.h"

__thread struct memprof_thread memprof_thread;   /* sample.c's, which holds the block */

static void check_totals(struct memprof_stack_totals t, uint64_t objs, uint64_t bytes,
                         double est_objs, double est_bytes)
{
    CHECK_EQ(t.objs, objs);
    CHECK_EQ(t.bytes, bytes);
    CHECK(t.est_objs == est_objs);
    CHECK(t.est_bytes == est_bytes);
}

static void test_an_open_windows_counts_are_read_at_one_moment(void)
{
    CHECK(memprof_stack_count(3, 100, 2.0, 1));
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, false));
    CHECK(wc.sum != NULL);
    CHECK(memprof_stack_count(3, 100, 2.0, 1));   /* after the read: not in it */
    check_totals(memprof_window_counts_of(&wc, 3), 1, 100, 2.0, 200.0);
    memprof_window_counts_release(&wc);
}

static void test_one_threads_counts_are_read_in_place_once_closed(void)
{
    CHECK(memprof_stack_count(5, 10, 1.5, 1));   /* stack 3: the test before's two */
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, true));
    CHECK(wc.only != NULL);
    CHECK(wc.sum == NULL);
    check_totals(memprof_window_counts_of(&wc, 3), 2, 200, 4.0, 400.0);
    check_totals(memprof_window_counts_of(&wc, 5), 1, 10, 1.5, 15.0);
    check_totals(memprof_window_counts_of(&wc, 4), 0, 0, 0.0, 0.0);
    CHECK(memprof_stack_count(3, 100, 2.0, 1));   /* read where they are: no copy */
    check_totals(memprof_window_counts_of(&wc, 3), 3, 300, 6.0, 600.0);
    memprof_window_counts_release(&wc);
}

static void count_in_window_2(uint32_t index)
{
    for (uint32_t i = 0; i <= index; i++)
        CHECK(memprof_stack_count(7, 8, 1.0, 2));
}

static void test_several_threads_counts_are_summed(void)
{
    run_threads(3, count_in_window_2);   /* 1 + 2 + 3 samples, each thread in a block */
    CHECK(memprof_stack_count(7, 8, 1.0, 2));   /* this thread's block starts window 2 */
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 2, true));
    CHECK(wc.sum != NULL);
    check_totals(memprof_window_counts_of(&wc, 7), 7, 56, 7.0, 56.0);
    check_totals(memprof_window_counts_of(&wc, 3), 0, 0, 0.0, 0.0);   /* window 1's */
    memprof_window_counts_release(&wc);
    CHECK(wc.sum == NULL);
}

static void test_no_block_of_the_window_reads_as_none(void)
{
    struct memprof_window_counts wc;
    CHECK(memprof_window_counts_read(&wc, 8, 1, true));   /* every block is in window 2 */
    CHECK(wc.only == NULL);
    CHECK(wc.sum == NULL);
    check_totals(memprof_window_counts_of(&wc, 3), 0, 0, 0.0, 0.0);
    memprof_window_counts_release(&wc);
}

int main(void)
{
    CHECK_EQ(memprof_stack_counts_init(64), 0);
    RUN(test_an_open_windows_counts_are_read_at_one_moment);
    RUN(test_one_threads_counts_are_read_in_place_once_closed);
    RUN(test_several_threads_counts_are_summed);
    RUN(test_no_block_of_the_window_reads_as_none);
    return 0;
}
