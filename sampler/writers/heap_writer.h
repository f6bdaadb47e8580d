/* The .heap files (heap_writer.c). */
#ifndef MEMPROF_HEAP_WRITER_H
#define MEMPROF_HEAP_WRITER_H

#include "base/common.h"
#include "tables/estimate.h"
#include "writers/reachable.h"

/* The heaps' names, as their files and the API give them. */
extern const char *const memprof_heap_names[HEAP_COUNT] HIDDEN;

struct memprof_window_info {
    uint32_t id;
    struct memprof_rates rates;
    int max_depth;
    uint64_t start_ns, end_ns;
    int32_t forked_from;         /* a forked child's parent, whose window it carries on */
    struct memprof_drop_counts drops;   /* as of end_ns: every file of a dump says the same */
    bool closed;                 /* the window has closed: its counts no longer change */
    bool python_exit;            /* closed as the Python interpreter began to finalize */
    struct {                     /* taken as a device allocation failed (heap -1: not) */
        int heap, error;
        uint64_t bytes;
        const char *raised;      /* the framework's error raised then, or NULL */
    } failure;
    /* at the program's end, the host heap's live samples nothing points to; NULL: not
     * looked for */
    const struct memprof_unreachable *unreachable;
};
/* Writes <prefix><pid>.<seq>.heap and, for each device heap whose hooks ran,
 * <prefix><pid>.<seq>.<heap>.heap, each atomically; path_out receives the host
 * file's name. */
int memprof_write_dump(const struct memprof_window_info *w, const char *prefix, unsigned seq,
                       char *path_out, size_t path_len) HIDDEN;

#endif
