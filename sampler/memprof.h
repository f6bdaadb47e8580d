/* mem_profiler public API: the only interface other code uses to drive the
 * sampler (libmemprof.so) from inside a process it is loaded into. */
#ifndef MEMPROF_H
#define MEMPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMPROF_VERSION "0.2.0"

/* Start a capture window.  rate: mean bytes between samples (1 = every
 * allocation); max_depth: frames kept per stack (0 = default 64); prefix:
 * output path prefix (NULL = MEMPROF_PREFIX or "./custom_profiler_").
 * Returns 0, or -1 if a window is already open or the arguments are bad. */
int memprof_start(uint64_t rate, int max_depth, const char *prefix);

/* Close the window and write its .heap file; its path is copied into
 * path_out (if not NULL).  Returns 0, or -1 if no window was open or the
 * dump could not be written (errno tells why). */
int memprof_stop(char *path_out, size_t path_len);

/* Write a .heap file of the open window without closing it. */
int memprof_dump(char *path_out, size_t path_len);

/* 1 while a window is open. */
int memprof_is_capturing(void);

/* Kept for programs built against earlier versions: every window now keeps its
 * estimated live bytes per heap and their peak (exact at rate 1). */
void memprof_track_live(int on);

/* Live bytes and their peak in the open (or last) window for a heap ("host",
 * "cuda", "cuda_host", "acl", "acl_host", "hal", "cuda_segments"); 0, or -1 for
 * an unknown heap. */
int memprof_heap_bytes(const char *heap, uint64_t *live, uint64_t *peak);

/* Marks in the event log of a window in log mode (no-ops otherwise): a point
 * in time, a range (start returns its id), and a step of a training loop or a
 * request loop (returns its number, from 1). */
void memprof_mark(const char *text);
uint64_t memprof_range_start(const char *text);
void memprof_range_end(uint64_t id);
uint64_t memprof_step(void);

#ifdef __cplusplus
}
#endif
#endif
