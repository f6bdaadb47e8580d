/* The .heap files (heap_writer.c). */
#ifndef MEMPROF_HEAP_WRITER_H
#define MEMPROF_HEAP_WRITER_H

#include "base/common.h"
#include "writers/window_counts.h"

/* The heaps' names, as their files and the API give them. */
extern const char *const memprof_heap_names[HEAP_COUNT] HIDDEN;

/* Writes <prefix><pid>.<seq>.heap and, for each device heap whose hooks ran,
 * <prefix><pid>.<seq>.<heap>.heap, each atomically; path_out receives the host
 * file's name. */
int memprof_write_dump(const struct memprof_window_info *w, const char *prefix, unsigned seq,
                       char *path_out, size_t path_len) HIDDEN;

#endif
