/* The settings from the environment (sampler/base/options.c) alone: the stack memory a
 * process asks for, up to the most the option allows, never gives more stack ids than a
 * live sample can name (24 bits, live_table.h). */
#include <stdlib.h>

#include "base/defaults.h"
#include "base/options.h"
#include "unit.h"

/* The environment's stack memory, in MiB, and the capacities it gives. */
static void with_stack_memory(const char *mib)
{
    CHECK_EQ(setenv("MEMPROF_STACK_MEMORY", mib, 1), 0);
    memprof_options_from_environment();
}

static void test_stack_ids_stay_below_the_live_tables_reach(void)
{
    with_stack_memory("512");
    CHECK_EQ(memprof_cfg.max_stacks, 512u << 14);
    CHECK_EQ(memprof_cfg.max_nodes, 512u << 15);
    with_stack_memory("1024");
    CHECK_EQ(memprof_cfg.max_stacks, 1u << 24);
    char most[16];
    snprintf(most, sizeof most, "%u", MEMPROF_STACK_MEMORY_LIMIT);
    with_stack_memory(most);
    CHECK_EQ(memprof_cfg.max_stacks, 1u << 24);   /* not 2^28: ids past 2^24 would wrap */
    CHECK_EQ(memprof_cfg.max_nodes, MEMPROF_STACK_MEMORY_LIMIT << 15);
}

int main(void)
{
    RUN(test_stack_ids_stay_below_the_live_tables_reach);
    return 0;
}
