/* A live window's snapshot (window_snapshot.c): what a reader that follows the window
 * (mem_profiler top, the pushes) needs to bring its copy up to date, in one file. */
#ifndef MEMPROF_WINDOW_SNAPSHOT_H
#define MEMPROF_WINDOW_SNAPSHOT_H

#include "base/common.h"
#include "writers/window_counts.h"

/* Writes <prefix><pid>.0000.snapshot atomically: the window's figures now.  Where
 * `since` is the token of the last snapshot this process wrote of this window, only
 * what changed since: the frames, nodes, stacks and Python frame records made since,
 * the stacks whose counts moved, the code mappings if they changed; else all of them.
 * *token receives this snapshot's; path receives the file's name.  The caller holds
 * the window's lock. */
int memprof_write_snapshot(const struct memprof_window_info *w, const char *prefix,
                           uint64_t since, uint64_t *token, char *path, size_t path_len) HIDDEN;
/* The window's last snapshot, as it closes at the process's end (`w` closed), for the
 * reader that follows it, where it took its last: what changed since that one, marked
 * `# ended:`.  0 where no reader follows the window. */
int memprof_write_last_snapshot(const struct memprof_window_info *w) HIDDEN;
/* The window closed (or a forked child's went): what the snapshots kept of it is let go. */
void memprof_snapshot_release(void) HIDDEN;

#endif
