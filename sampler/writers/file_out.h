/* A file the writers make (file_out.c): written through raw system calls from a
 * buffer of our own mappings, past its first line through zstd, to a new temporary
 * name beside its own and renamed into place once whole; and the pieces of text the
 * .heap file and the live window's snapshot both hold. */
#ifndef MEMPROF_FILE_OUT_H
#define MEMPROF_FILE_OUT_H

#include "base/common.h"
#include "writers/window_counts.h"

#define MEMPROF_OUT_CAP (1u << 18)   /* flushed when full: 256 KiB, whatever the file's size */

struct ZSTD_CCtx_s;
struct memprof_out {
    int fd;
    char *buf;
    size_t len;
    bool failed;
    int error;                  /* errno of the failed write */
    struct ZSTD_CCtx_s *z;      /* non-NULL: what is put goes through it into zbuf */
    unsigned char *zbuf;
    char tmp[MEMPROF_PATH_MAX + 32];
};

/* A new temporary file for `path`, its first line `first_line` (uncompressed), what
 * follows compressed; -1 with errno. */
int memprof_out_begin(struct memprof_out *o, const char *path, const char *first_line) HIDDEN;
/* The file whole, renamed to `path`; or, if anything failed, removed: -1 with errno. */
int memprof_out_end(struct memprof_out *o, const char *path) HIDDEN;
/* Marks the file failed with `error` (it will be removed). */
void memprof_out_fail(struct memprof_out *o, int error) HIDDEN;
void memprof_out_flush(struct memprof_out *o) HIDDEN;

void memprof_put(struct memprof_out *o, const char *s, size_t n) HIDDEN;
void memprof_puts(struct memprof_out *o, const char *s) HIDDEN;
/* Text in a `#` line: backslash, newline, carriage return and tab as \\ \n \r \t, other
 * control bytes as \xHH (a name cannot end the line and forge the next). */
void memprof_put_escaped(struct memprof_out *o, const char *s, size_t n) HIDDEN;
void memprof_put_u64(struct memprof_out *o, uint64_t v) HIDDEN;
/* "<before>0x<hex>", as printf's "%c0x%llx" */
void memprof_put_hex(struct memprof_out *o, char before, uint64_t v) HIDDEN;
/* `bytes` bytes of `width`-byte values, byte-shuffled (the lowest byte of every value,
 * then the next...), which zstd packs far better than the values whole. */
void memprof_put_planes(struct memprof_out *o, const uint8_t *values, size_t bytes,
                        unsigned width) HIDDEN;
/* Mapped scratch memory of `bytes` (NULL for 0), or NULL with the file failed. */
void *memprof_out_scratch(struct memprof_out *o, size_t bytes) HIDDEN;

static inline void memprof_put_byte(struct memprof_out *o, uint8_t byte)
{
    if (o->len == MEMPROF_OUT_CAP)
        memprof_out_flush(o);
    o->buf[o->len++] = (char)byte;
}

/* The process's program, command line and memory map, read before a file is made: a process
 * at its descriptor limit may have only one to spare, for them and then the file. */
struct memprof_proc_text {
    char exe[MEMPROF_PATH_MAX];   /* /proc/self/exe's target, or "" */
    char cmdline[4096];   /* arguments joined by spaces (the first 4 KiB) */
    size_t cmdline_len;
    char *maps;
    size_t maps_len, maps_cap;
};
/* false (errno) when the map cannot be read: without it no address could be named */
bool memprof_proc_text_read(struct memprof_proc_text *t) HIDDEN;
void memprof_proc_text_release(struct memprof_proc_text *t) HIDDEN;

/* The `#` lines of who ran and of the window: its command line, program, start, end,
 * unwinder, depth and the samples dropped by cause. */
void memprof_put_window_lines(struct memprof_out *o, const struct memprof_window_info *w,
                              const struct memprof_proc_text *text) HIDDEN;
/* A `# build_id: <path> <hex>` line for each loaded ELF object with one (`exe`: the
 * program's path, which the loader names ""). */
void memprof_put_build_ids(struct memprof_out *o, const char *exe) HIDDEN;
/* `# python: <version> 0x<start> 0x<end of _PyEval_EvalFrameDefault>` and the frames left
 * out, in a Python program; false (nothing written) in another. */
bool memprof_put_python_header(struct memprof_out *o) HIDDEN;
/* The `# python_frame: 0x<address> <line> <first line> <name>\t<file>` line of frame
 * record `id`; false (nothing written) for one being interned now, which no stack names
 * yet. */
bool memprof_put_python_record(struct memprof_out *o, uint32_t id) HIDDEN;

#endif
