/* A loaded object's notes, and its unwind tables read from its file (object_file.c).
 * Shared by unwind.c and eh_frame.c. */
#ifndef MEMPROF_OBJECT_FILE_H
#define MEMPROF_OBJECT_FILE_H

#include <link.h>

#include "base/common.h"

struct eh_tables;
struct memprof_eh_file;

/* The loaded segment of the object that holds addr, or NULL. */
const ElfW(Phdr) *memprof_object_segment(const struct dl_phdr_info *info, uintptr_t addr) HIDDEN;

/* The descriptor of the object's note of `type` whose owner is the `namesz` bytes at
 * `owner` (its NUL included), in a loaded segment; its size in *len and the PT_NOTE
 * header that holds it in *note.  NULL if it has none. */
const uint8_t *memprof_object_note(const struct dl_phdr_info *info, uint32_t type,
                                   const char *owner, uint32_t namesz, size_t *len,
                                   const ElfW(Phdr) **note) HIDDEN;

/* Its GNU build-id (memprof_object_note's), or NULL. */
const uint8_t *memprof_object_build_id(const struct dl_phdr_info *info, size_t *len,
                                       const ElfW(Phdr) **note) HIDDEN;

/* The view, read from the object's file, of the tables at hdr in the segment `seg` of
 * the object `info` describes, whose loader's count of unloaded objects is `subs`:
 * made at the first call for tables large enough to be worth it, of a file that is
 * the object's (the same build-id).  NULL: the tables are read in place.  Called
 * inside dl_iterate_phdr's callback, whose lock serializes the threads (a thread's
 * own sample inside a signal handler is refused by its busy flag). */
struct memprof_eh_file *memprof_eh_file_of(const struct dl_phdr_info *info,
                                           unsigned long long subs, const ElfW(Phdr) *seg,
                                           uintptr_t hdr) HIDDEN;

/* A view of the tables `t` as the file `fd` holds them, the byte at address lo at
 * file_offset; it owns fd from then on.  NULL when no view can be made. */
struct memprof_eh_file *memprof_eh_file_open(int fd, uintptr_t lo, uint64_t file_offset,
                                             const struct eh_tables *t) HIDDEN;
void memprof_eh_file_forget(struct memprof_eh_file *f) HIDDEN;   /* closes its fd */

/* n bytes at address addr of the tables, from the file; false if it has fewer. */
bool memprof_eh_file_read(struct memprof_eh_file *f, uintptr_t addr, void *out, size_t n) HIDDEN;

/* Narrows [*below, *above), the entries of .eh_frame_hdr's table (at `table`) that may
 * hold the last one starting at or below target (relative to hdr), to one step of
 * the view's index, and reads those entries in one go. */
void memprof_eh_file_narrow(struct memprof_eh_file *f, uintptr_t table, int64_t target,
                            uint64_t *below, uint64_t *above) HIDDEN;

#endif
