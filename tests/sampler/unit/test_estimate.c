/* What the samples stand for (sampler/tables/estimate.c) alone: one sample's weight, checked
 * against 1 / -expm1(-size/rate) from the size of a byte to a terabyte, and the
 * in-use totals of a set of live samples, by heap and by stack.  The live table and
 * the stack table are stand-ins here: a list of samples, and a stack's heap that its
 * id says. */
#include <math.h>

#include "tables/estimate.h"
#include "tables/live_table.h"
#include "tables/stack_table.h"
#include "unit.h"

static double exact_weight(uint64_t rate, uint64_t size)
{
    return rate > 1 && size > 0 ? 1.0 / -expm1(-(double)size / (double)rate) : 1.0;
}

static void check_close(double got, double want, double tolerance)
{
    if (!(fabs(got - want) <= tolerance * want)) {
        fprintf(stderr, "got %.17g, want %.17g\n", got, want);
        CHECK(0);
    }
}

static void weights_match_expm1(void)
{
    static const uint64_t rates[] = {2, 3, 1024, 4099, 65536, 524288, 1ull << 30};
    for (unsigned r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        struct memprof_rates rates_of = {rates[r], 1};
        for (uint64_t size = 1; size < 20000; size++)
            check_close(memprof_sample_weight(rates_of, HEAP_HOST, size),
                        exact_weight(rates[r], size), 1e-12);
        for (uint64_t size = 20000; size < (1ull << 42); size += size / 7)
            check_close(memprof_sample_weight(rates_of, HEAP_HOST, size),
                        exact_weight(rates[r], size), 1e-12);
    }
}

static void every_allocation_weighs_one(void)
{
    struct memprof_rates rates = {1, 1};
    CHECK(memprof_sample_weight(rates, HEAP_HOST, 12345) == 1.0);
    CHECK(memprof_sample_weight(rates, HEAP_CUDA, 1u << 20) == 1.0);
    rates.host = 4096;
    CHECK(memprof_sample_weight(rates, HEAP_HOST, 0) == 1.0);
    CHECK(memprof_sample_weight(rates, HEAP_CUDA, 1u << 20) == 1.0);
}

/* The stand-ins: stack s is of heap s % 2 (host or CUDA), and its samples' keys say so
 * as the live table's do. */
struct live {
    uint32_t stack;
    uint64_t size;
};
static const struct live lives[] = {{0, 16}, {0, 4096}, {1, 1u << 20}, {2, 1}, {2, 100000},
                                    {3, 3}, {4, 700}, {4, 700}, {4, 1ull << 33}};
#define STACKS 5

uint32_t memprof_stack_heap(uint32_t id) { return id % 2 ? HEAP_CUDA : HEAP_HOST; }

void memprof_live_foreach(void (*fn)(uintptr_t key, uint32_t stack, uint64_t size, void *arg),
                          void *arg)
{
    for (unsigned i = 0; i < sizeof lives / sizeof lives[0]; i++)
        fn(memprof_live_key(memprof_stack_heap(lives[i].stack), 0x1000 * (i + 1)),
           lives[i].stack, lives[i].size, arg);
}

static struct memprof_stack_totals per_stack[STACKS];

static struct memprof_stack_totals *of_stack(uint32_t stack, void *arg)
{
    (void)arg;
    return stack == 2 ? NULL : &per_stack[stack];   /* stack 2's are not kept */
}

static void live_totals_by_heap_and_stack(void)
{
    struct memprof_rates rates = {1024, 4};
    struct memprof_live_totals t = {of_stack, NULL, {{0}}};
    memprof_live_totals(rates, &t);
    struct memprof_stack_totals want[HEAP_COUNT] = {{0}}, want_stack[STACKS] = {{0}};
    for (unsigned i = 0; i < sizeof lives / sizeof lives[0]; i++) {
        uint32_t heap = memprof_stack_heap(lives[i].stack);
        double w = exact_weight(heap == HEAP_HOST ? 1024 : 4, lives[i].size);
        struct memprof_stack_totals *into[] = {&want[heap], &want_stack[lives[i].stack]};
        for (int k = 0; k < 2; k++) {
            into[k]->objs += 1;
            into[k]->bytes += lives[i].size;
            into[k]->est_objs += w;
            into[k]->est_bytes += w * (double)lives[i].size;
        }
    }
    want_stack[2] = (struct memprof_stack_totals){0};
    for (int h = 0; h < HEAP_COUNT; h++) {
        CHECK_EQ(t.by_heap[h].objs, want[h].objs);
        CHECK_EQ(t.by_heap[h].bytes, want[h].bytes);
        if (want[h].objs) {
            check_close(t.by_heap[h].est_objs, want[h].est_objs, 1e-12);
            check_close(t.by_heap[h].est_bytes, want[h].est_bytes, 1e-12);
        }
    }
    for (int s = 0; s < STACKS; s++) {
        CHECK_EQ(per_stack[s].objs, want_stack[s].objs);
        CHECK_EQ(per_stack[s].bytes, want_stack[s].bytes);
        if (want_stack[s].objs)
            check_close(per_stack[s].est_bytes, want_stack[s].est_bytes, 1e-12);
    }
}

/* A snapshot leaves out the stacks whose digest is the one last written: a read torn
 * by a free and an allocation of another size has the objects right, the bytes not. */
static void digests_tell_every_count(void)
{
    struct memprof_stack_totals none = {0}, t = {3, 300, 3.0, 300.0};
    CHECK_EQ(memprof_totals_digest(memprof_totals_digest(0, &none), &none), 0);
    uint64_t d = memprof_totals_digest(0, &t);
    struct memprof_stack_totals moved[] = {
        {4, 300, 3.0, 300.0}, {3, 301, 3.0, 300.0}, {3, 300, 3.5, 300.0}, {3, 300, 3.0, 301.0},
    };
    for (unsigned i = 0; i < sizeof moved / sizeof moved[0]; i++)
        CHECK(memprof_totals_digest(0, &moved[i]) != d);
    /* allocated and live in turn: the same counts on the other side differ */
    CHECK(memprof_totals_digest(memprof_totals_digest(0, &t), &none) !=
          memprof_totals_digest(memprof_totals_digest(0, &none), &t));
}

int main(void)
{
    RUN(weights_match_expm1);
    RUN(every_allocation_weighs_one);
    RUN(live_totals_by_heap_and_stack);
    RUN(digests_tell_every_count);
    return 0;
}
