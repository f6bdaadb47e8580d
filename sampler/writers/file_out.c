/* A file the writers make (file_out.h): the buffer, its compression, the numbers and
 * text put into it, and the pieces of text the .heap file and the window's snapshot
 * share.  Written through raw system calls from an mmap'd buffer, to a new temporary
 * name in the target folder (memprof_create_temp), then renamed into place: a reader
 * never sees half a file, and nothing planted there can redirect the write. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_createCCtx_advanced: our own memory */
#include <zstd.h>

#include "base/sysutil.h"
#include "unwind/object_file.h"
#include "unwind/python_frames.h"
#include "unwind/unwind.h"
#include "writers/file_out.h"

static void write_out(struct memprof_out *o, const void *data, size_t len)
{
    if (!o->failed && memprof_write_all(o->fd, data, len) != 0) {
        o->failed = true;
        o->error = errno;
    }
}

/* The buffer through zstd (ZSTD_e_end at the end), its output written as it fills. */
static void compress_out(struct memprof_out *o, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {o->buf, o->len, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {o->zbuf, MEMPROF_OUT_CAP, 0};
        left = ZSTD_compressStream2(o->z, &out, &in, mode);
        write_out(o, o->zbuf, out.pos);
    } while (!ZSTD_isError(left) && (mode == ZSTD_e_end ? left != 0 : in.pos < in.size));
    if (ZSTD_isError(left) && !o->failed) {
        o->failed = true;
        o->error = ENOMEM;
    }
}

void memprof_out_flush(struct memprof_out *o)
{
    if (o->z != NULL)
        compress_out(o, ZSTD_e_continue);
    else
        write_out(o, o->buf, o->len);
    o->len = 0;
}

/* zstd's memory, from the sampler's own mappings: the writer may run where malloc
 * is not safe to call (a fork handler, an exiting process's destructors). */
static void *z_alloc(void *opaque, size_t size)
{
    (void)opaque;
    size_t bytes = size + 16;
    size_t *p = memprof_map(bytes);
    if (p == NULL)
        return NULL;
    p[0] = bytes;
    return p + 2;
}

static void z_free(void *opaque, void *address)
{
    (void)opaque;
    if (address == NULL)
        return;
    size_t *p = (size_t *)address - 2;
    memprof_unmap(p, p[0]);
}

/* From here on what is put is compressed: level 1, which keeps a dump of hundreds of
 * thousands of stacks quick (mem_profiler top asks for one every refresh). */
static bool start_compress(struct memprof_out *o)
{
    memprof_out_flush(o);
    o->zbuf = memprof_map(MEMPROF_OUT_CAP);
    o->z = o->zbuf == NULL ? NULL
                           : ZSTD_createCCtx_advanced((ZSTD_customMem){z_alloc, z_free, NULL});
    if (o->z != NULL && !ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_compressionLevel, 1)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_checksumFlag, 1)))
        return true;
    /* none of it half made: a stream without its output buffer is never fed */
    ZSTD_freeCCtx(o->z);   /* NULL: nothing */
    o->z = NULL;
    if (o->zbuf != NULL)
        memprof_unmap(o->zbuf, MEMPROF_OUT_CAP);
    o->zbuf = NULL;
    return false;
}

static void end_compress(struct memprof_out *o)
{
    if (o->z == NULL)
        return;
    compress_out(o, ZSTD_e_end);
    o->len = 0;
    ZSTD_freeCCtx(o->z);
    o->z = NULL;
    memprof_unmap(o->zbuf, MEMPROF_OUT_CAP);
    o->zbuf = NULL;
}

void memprof_put(struct memprof_out *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == MEMPROF_OUT_CAP)
            memprof_out_flush(o);
        size_t room = MEMPROF_OUT_CAP - o->len;
        size_t k = n < room ? n : room;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

void memprof_puts(struct memprof_out *o, const char *s) { memprof_put(o, s, strlen(s)); }

/* Text in a `#` line, so that a name with a newline cannot end the line and
 * forge the next: backslash, newline, carriage return and tab as \\ \n \r \t,
 * other control bytes as \xHH.  The reader (parser/heapfile.py) undoes it. */
void memprof_put_escaped(struct memprof_out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4] = {'\\', 0, 0, 0};
        size_t len = 2;
        if (c == '\\' || c == '\n' || c == '\r' || c == '\t')
            esc[1] = c == '\\' ? '\\' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        else if (c < 0x20 || c == 0x7f) {
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            len = 4;
        } else {
            esc[0] = (char)c;
            len = 1;
        }
        memprof_put(o, esc, len);
    }
}

/* Numbers are formatted by hand, as printf's %llu and 0x%llx would: a profile of
 * 100,000 stacks has millions of addresses, and snprintf per address made writing
 * it (mem_profiler top's snapshot, each refresh) several times slower. */
void memprof_put_u64(struct memprof_out *o, uint64_t v)
{
    char tmp[20], *p = tmp + sizeof tmp;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memprof_put(o, p, (size_t)(tmp + sizeof tmp - p));
}

/* Byte k of the result is nibble k of x. */
static inline uint64_t nibbles(uint32_t x)
{
    uint64_t y = x;
    y = (y | y << 16) & 0x0000ffff0000ffffull;
    y = (y | y << 8) & 0x00ff00ff00ff00ffull;
    return (y | y << 4) & 0x0f0f0f0f0f0f0f0full;
}

/* Eight nibbles (one per byte, as nibbles() gives them) as lower-case hex digits, the
 * most significant first in memory: eight at once rather than a table look-up each. */
static inline uint64_t hex_digits(uint64_t y)
{
    uint64_t letters = ((y + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return __builtin_bswap64(y + 0x3030303030303030ull + letters * ('a' - '0' - 10));
}

/* "<before>0x<hex>" straight into the buffer, as printf's "%c0x%llx": the 16 digits in
 * one 128-bit value, shifted past the leading zeros, stored whole (what follows
 * overwrites the bytes beyond the last digit).  Digits stored apart and read back from
 * an offset would stall each address on store forwarding. */
void memprof_put_hex(struct memprof_out *o, char before, uint64_t v)
{
    unsigned __int128 text = (unsigned __int128)hex_digits(nibbles((uint32_t)v)) << 64 |
                             hex_digits(nibbles((uint32_t)(v >> 32)));
    size_t digits = v == 0 ? 1 : (size_t)(67 - __builtin_clzll(v)) / 4;
    text >>= 8 * (16 - digits);
    if (MEMPROF_OUT_CAP - o->len < 3 + 16)
        memprof_out_flush(o);
    char *p = o->buf + o->len;
    p[0] = before;
    memcpy(p + 1, "0x", 2);
    memcpy(p + 3, &text, 16);
    o->len += 3 + digits;
}

static void read_cmdline(struct memprof_proc_text *t)
{
    char proc[MEMPROF_PROC_PATH];
    size_t n = memprof_read_small_file(memprof_proc_file("cmdline", proc), t->cmdline,
                                       sizeof t->cmdline);
    while (n > 0 && t->cmdline[n - 1] == '\0')
        n--;
    for (size_t i = 0; i < n; i++)
        if (t->cmdline[i] == '\0')
            t->cmdline[i] = ' ';
    t->cmdline_len = n;
}

/* The whole map, into a mapping of ours that doubles as it fills. */
static bool read_maps(struct memprof_proc_text *t)
{
    char proc[MEMPROF_PROC_PATH];
    int fd = open(memprof_proc_file("maps", proc), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    t->maps_cap = 1u << 16;
    t->maps = memprof_map(t->maps_cap);
    bool ok = t->maps != NULL;
    while (ok) {
        if (t->maps_len == t->maps_cap) {
            void *grown = mremap(t->maps, t->maps_cap, 2 * t->maps_cap, MREMAP_MAYMOVE);
            if (grown == MAP_FAILED) {
                ok = false;
                break;
            }
            t->maps = grown;
            t->maps_cap *= 2;
        }
        ssize_t n = read(fd, t->maps + t->maps_len, t->maps_cap - t->maps_len);
        if (n == 0)
            break;
        if (n > 0)
            t->maps_len += (size_t)n;
        else if (errno != EINTR)
            ok = false;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return ok;
}

void memprof_proc_text_release(struct memprof_proc_text *t)
{
    memprof_unmap(t->maps, t->maps_cap);
}

/* ---- build ids of the loaded ELF objects --------------------------------- */
struct build_id_ctx {
    struct memprof_out *o;
    const char *exe;
};

static int put_build_id(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct build_id_ctx *ctx = arg;
    const char *path = info->dlpi_name && info->dlpi_name[0] ? info->dlpi_name : ctx->exe;
    size_t len;
    const ElfW(Phdr) *note;
    const unsigned char *id = memprof_object_build_id(info, &len, &note);
    if (id == NULL || path[0] != '/')
        return 0;   /* the vDSO and objects without a build id */
    static const char hex[] = "0123456789abcdef";
    char text[2 * 64 + 1];
    size_t n = len < 64 ? len : 64;
    for (size_t i = 0; i < n; i++) {
        text[2 * i] = hex[id[i] >> 4];
        text[2 * i + 1] = hex[id[i] & 15];
    }
    memprof_puts(ctx->o, "# build_id: ");
    memprof_put_escaped(ctx->o, path, strlen(path));
    memprof_puts(ctx->o, " ");
    memprof_put(ctx->o, text, 2 * n);
    memprof_puts(ctx->o, "\n");
    return 0;
}

/* Name and file escaped, so the tab between them is the only one. */
bool memprof_put_python_record(struct memprof_out *o, uint32_t id)
{
    struct memprof_python_frame f;
    if (!memprof_python_record(id, &f))
        return false;
    memprof_puts(o, "# python_frame:");
    memprof_put_hex(o, ' ', MEMPROF_PY_FRAME_BASE + id);
    memprof_puts(o, " ");
    if (f.line < 0)
        memprof_puts(o, "-1");
    else
        memprof_put_u64(o, (uint64_t)f.line);
    memprof_puts(o, " ");
    memprof_put_u64(o, f.first_line > 0 ? (uint64_t)f.first_line : 0);
    memprof_puts(o, " ");
    memprof_put_escaped(o, f.name, f.name_len);
    memprof_puts(o, "\t");
    memprof_put_escaped(o, f.file, f.file_len);
    memprof_puts(o, "\n");
    return true;
}

/* `bytes` bytes of `width`-byte values, byte-shuffled: the lowest byte of every value,
 * then the next, and so on, which zstd packs far better than the values whole. */
void memprof_put_planes(struct memprof_out *o, const uint8_t *values, size_t bytes, unsigned width)
{
    for (unsigned byte = 0; byte < width; byte++)
        for (size_t i = byte; i < bytes;) {   /* a buffer's worth of the plane at a time */
            if (o->len == MEMPROF_OUT_CAP)
                memprof_out_flush(o);
            size_t n = 0, room = MEMPROF_OUT_CAP - o->len;
            for (char *to = o->buf + o->len; n < room && i < bytes; n++, i += width)
                to[n] = (char)values[i];
            o->len += n;
        }
}

void *memprof_out_scratch(struct memprof_out *o, size_t bytes)
{
    void *scratch = bytes > 0 ? memprof_map(bytes) : NULL;
    if (bytes > 0 && scratch == NULL) {
        o->failed = true;
        o->error = ENOMEM;
    }
    return scratch;
}

void memprof_out_fail(struct memprof_out *o, int error)
{
    if (!o->failed) {
        o->failed = true;
        o->error = error;
    }
}

int memprof_out_begin(struct memprof_out *o, const char *path, const char *first_line)
{
    *o = (struct memprof_out){.fd = -1};
    o->fd = memprof_create_temp(path, o->tmp, sizeof o->tmp, 0644);
    if (o->fd < 0)
        return -1;
    o->buf = memprof_map(MEMPROF_OUT_CAP);
    if (o->buf == NULL) {
        close(o->fd);
        memprof_unlink(o->tmp);
        errno = ENOMEM;
        return -1;
    }
    memprof_puts(o, first_line);
    if (!start_compress(o))
        memprof_out_fail(o, ENOMEM);
    return 0;
}

int memprof_out_end(struct memprof_out *o, const char *path)
{
    memprof_out_flush(o);
    end_compress(o);
    memprof_unmap(o->buf, MEMPROF_OUT_CAP);
    if (o->failed) {
        close(o->fd);
        memprof_unlink(o->tmp);
        errno = o->error;
        return -1;
    }
    return memprof_publish(o->fd, o->tmp, path);
}

bool memprof_proc_text_read(struct memprof_proc_text *t)
{
    char proc[MEMPROF_PROC_PATH];
    ssize_t n = readlink(memprof_proc_file("exe", proc), t->exe, sizeof t->exe - 1);
    t->exe[n > 0 ? n : 0] = '\0';
    t->cmdline_len = 0;
    t->maps = NULL;
    t->maps_len = t->maps_cap = 0;
    read_cmdline(t);
    return read_maps(t);
}

void memprof_put_build_ids(struct memprof_out *o, const char *exe)
{
    struct build_id_ctx ctx = {o, exe};
    dl_iterate_phdr(put_build_id, &ctx);
}

bool memprof_put_python_header(struct memprof_out *o)
{
    const char *version = memprof_python_version();
    if (version == NULL)
        return false;
    memprof_puts(o, "# python: ");
    memprof_puts(o, version);
    memprof_put_hex(o, ' ', memprof_python_eval_lo);
    memprof_put_hex(o, ' ', memprof_python_eval_hi());
    memprof_puts(o, "\n");
    uint64_t left_out = memprof_python_frames_left_out();
    if (left_out > 0) {
        memprof_puts(o, "# python_frames_left_out: ");
        memprof_put_u64(o, left_out);
        memprof_puts(o, "\n");
    }
    return true;
}

void memprof_put_window_lines(struct memprof_out *o, const struct memprof_window_info *w,
                              const struct memprof_proc_text *text)
{
    memprof_puts(o, "# cmdline: ");
    memprof_put_escaped(o, text->cmdline, text->cmdline_len);
    memprof_puts(o, "\n# exe: ");
    memprof_put_escaped(o, text->exe, strlen(text->exe));
    memprof_puts(o, "\n# window_start_ns: ");
    memprof_put_u64(o, w->start_ns);
    memprof_puts(o, "\n# window_end_ns: ");
    memprof_put_u64(o, w->end_ns);
    memprof_puts(o, "\n# unwinder: ");
    memprof_puts(o, memprof_unwinder_name());
    memprof_puts(o, "\n# max_depth: ");
    memprof_put_u64(o, (uint64_t)w->max_depth);
    memprof_puts(o, "\n# dropped: stack_table=");
    memprof_put_u64(o, w->drops.stack_table);
    memprof_puts(o, " live_table=");
    memprof_put_u64(o, w->drops.live_table);
    memprof_puts(o, " memory=");
    memprof_put_u64(o, w->drops.memory);
    memprof_puts(o, " bytes=");
    memprof_put_u64(o, w->drops.bytes);
    memprof_puts(o, "\n");
}
