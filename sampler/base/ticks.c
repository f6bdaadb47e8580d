/* The ticks' rate, measured against CLOCK_MONOTONIC over 200 us: within a few parts in
 * 10,000, where the lifetimes' bins are ten times apart. */
#include <time.h>

#include "base/ticks.h"

bool memprof_ticks_by_arch;
static double ns_per_tick = 1.0;
static bool calibrated;

uint64_t memprof_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void memprof_ticks_calibrate(void)
{
    if (calibrated || !arch_ticks_steady())
        return;
    calibrated = true;
    uint64_t ns0 = memprof_monotonic_ns(), ticks0 = arch_ticks(), ns1, ticks1;
    do {   /* bounded by the clock: a counter that does not move is not taken */
        ns1 = memprof_monotonic_ns();
        ticks1 = arch_ticks();
    } while (ns1 - ns0 < 200000);
    if (ticks1 <= ticks0)
        return;
    ns_per_tick = (double)(ns1 - ns0) / (double)(ticks1 - ticks0);
    memprof_ticks_by_arch = true;
}

uint64_t memprof_ticks_ns(uint64_t ticks)
{
    return memprof_ticks_by_arch ? (uint64_t)((double)ticks * ns_per_tick) : ticks;
}
