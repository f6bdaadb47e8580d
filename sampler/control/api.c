/* The exported API of memprof.h that drives windows and live bytes (the marks are
 * marks.c's): what a program, or mem_profiler's in-process API through cffi, calls. */
#include <string.h>

#include "base/common.h"
#include "base/options.h"
#include "control/window.h"
#include "memprof.h"
#include "tables/live_bytes.h"
#include "writers/heap_writer.h"

EXPORT int memprof_start(uint64_t rate, int max_depth, const char *prefix)
{
    return memprof_capture_start(rate, memprof_cfg.rates.device, max_depth, prefix, 0, false);
}

EXPORT int memprof_stop(char *path_out, size_t path_len)
{
    return memprof_capture_stop(path_out, path_len);
}

EXPORT int memprof_dump(char *path_out, size_t path_len)
{
    return memprof_capture_dump(path_out, path_len);
}

EXPORT int memprof_is_capturing(void)
{
    return memprof_window_id() != 0;
}

/* Live bytes are kept in every window now: this stays for programs built against
 * the versions where they were kept only when asked for. */
EXPORT void memprof_track_live(int on)
{
    (void)on;
}

EXPORT int memprof_heap_bytes(const char *heap, uint64_t *live, uint64_t *peak)
{
    for (int h = 0; heap != NULL && h < HEAP_COUNT; h++) {
        if (strcmp(heap, memprof_heap_names[h]) != 0)
            continue;
        struct memprof_live_bytes lb = memprof_live_bytes_of((enum memprof_heap)h);
        *live = lb.now > 0 ? (uint64_t)lb.now : 0;
        *peak = lb.peak > 0 ? (uint64_t)lb.peak : 0;
        return 0;
    }
    return -1;
}
