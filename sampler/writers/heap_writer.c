/* The .heap writer: the header's `#` lines, the calling-context tree and the
 * counters per stack, zstd-compressed (ARCHITECTURE.md, "The .heap file";
 * docs/file-formats.md).  Written through raw system calls from an mmap'd buffer,
 * to a new temporary name in the target folder (memprof_create_temp), then renamed
 * into place: a reader never sees half a file, and nothing planted there can
 * redirect the write. */
#include <elf.h>
#include <math.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_createCCtx_advanced: our own memory */
#include <zstd.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/upcalls.h"
#include "memprof.h"
#include "tables/estimate.h"
#include "tables/frame_tree.h"
#include "tables/live_bytes.h"
#include "tables/notes.h"
#include "tables/stack_table.h"
#include "tables/thread_block.h"
#include "unwind/object_file.h"
#include "unwind/python_frames.h"
#include "unwind/unwind.h"
#include "writers/event_log.h"
#include "writers/heap_writer.h"

const char *const memprof_heap_names[HEAP_COUNT] = {
    [HEAP_HOST] = "host", [HEAP_CUDA] = "cuda", [HEAP_CUDA_HOST] = "cuda_host",
    [HEAP_ACL] = "acl", [HEAP_ACL_HOST] = "acl_host", [HEAP_HAL] = "hal",
    [HEAP_CUDA_SEGMENTS] = "cuda_segments",
};

#define BUF_CAP (1u << 18)   /* flushed when full: 256 KiB of pages, whatever the file's size */

struct out {
    int fd;
    char *buf;
    size_t len;
    bool failed;
    int error;      /* errno of the failed write */
    ZSTD_CCtx *z;   /* non-NULL: what is put goes through it into zbuf */
    unsigned char *zbuf;
};

static void write_out(struct out *o, const void *data, size_t len)
{
    if (!o->failed && memprof_write_all(o->fd, data, len) != 0) {
        o->failed = true;
        o->error = errno;
    }
}

/* The buffer through zstd (ZSTD_e_end at the end), its output written as it fills. */
static void compress_out(struct out *o, ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {o->buf, o->len, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {o->zbuf, BUF_CAP, 0};
        left = ZSTD_compressStream2(o->z, &out, &in, mode);
        write_out(o, o->zbuf, out.pos);
    } while (!ZSTD_isError(left) && (mode == ZSTD_e_end ? left != 0 : in.pos < in.size));
    if (ZSTD_isError(left) && !o->failed) {
        o->failed = true;
        o->error = ENOMEM;
    }
}

static void flush(struct out *o)
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
static bool start_compress(struct out *o)
{
    flush(o);
    o->zbuf = memprof_map(BUF_CAP);
    o->z = o->zbuf == NULL ? NULL
                           : ZSTD_createCCtx_advanced((ZSTD_customMem){z_alloc, z_free, NULL});
    if (o->z != NULL && !ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_compressionLevel, 1)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(o->z, ZSTD_c_checksumFlag, 1)))
        return true;
    /* none of it half made: a stream without its output buffer is never fed */
    ZSTD_freeCCtx(o->z);   /* NULL: nothing */
    o->z = NULL;
    if (o->zbuf != NULL)
        memprof_unmap(o->zbuf, BUF_CAP);
    o->zbuf = NULL;
    return false;
}

static void end_compress(struct out *o)
{
    if (o->z == NULL)
        return;
    compress_out(o, ZSTD_e_end);
    o->len = 0;
    ZSTD_freeCCtx(o->z);
    o->z = NULL;
    memprof_unmap(o->zbuf, BUF_CAP);
    o->zbuf = NULL;
}

static void put(struct out *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == BUF_CAP)
            flush(o);
        size_t room = BUF_CAP - o->len;
        size_t k = n < room ? n : room;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Text in a `#` line, so that a name with a newline cannot end the line and
 * forge the next: backslash, newline, carriage return and tab as \\ \n \r \t,
 * other control bytes as \xHH.  The reader (parser/heapfile.py) undoes it. */
static void put_escaped(struct out *o, const char *s, size_t n)
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
        put(o, esc, len);
    }
}

/* Numbers are formatted by hand, as printf's %llu and 0x%llx would: a profile of
 * 100,000 stacks has millions of addresses, and snprintf per address made writing
 * it (mem_profiler top's snapshot, each refresh) several times slower. */
static void put_u64(struct out *o, uint64_t v)
{
    char tmp[20], *p = tmp + sizeof tmp;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, p, (size_t)(tmp + sizeof tmp - p));
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
static void put_hex(struct out *o, char before, uint64_t v)
{
    unsigned __int128 text = (unsigned __int128)hex_digits(nibbles((uint32_t)v)) << 64 |
                             hex_digits(nibbles((uint32_t)(v >> 32)));
    size_t digits = v == 0 ? 1 : (size_t)(67 - __builtin_clzll(v)) / 4;
    text >>= 8 * (16 - digits);
    if (BUF_CAP - o->len < 3 + 16)
        flush(o);
    char *p = o->buf + o->len;
    p[0] = before;
    memcpy(p + 1, "0x", 2);
    memcpy(p + 3, &text, 16);
    o->len += 3 + digits;
}

/* The process's command line and memory map, read before a file is made: a process
 * at its descriptor limit may have only one to spare, for them and then the file. */
struct proc_text {
    char cmdline[4096];   /* arguments joined by spaces (the first 4 KiB) */
    size_t cmdline_len;
    char *maps;
    size_t maps_len, maps_cap;
};

static void read_cmdline(struct proc_text *t)
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
static bool read_maps(struct proc_text *t)
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

static void release_proc_text(struct proc_text *t)
{
    memprof_unmap(t->maps, t->maps_cap);
}

/* ---- build ids of the loaded ELF objects --------------------------------- */
struct build_id_ctx {
    struct out *o;
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
    puts_(ctx->o, "# build_id: ");
    put_escaped(ctx->o, path, strlen(path));
    puts_(ctx->o, " ");
    put(ctx->o, text, 2 * n);
    puts_(ctx->o, "\n");
    return 0;
}

/* ---- the profile ---------------------------------------------------------- */
/* The window's counts per stack id, gathered once for all the heaps' files.  Those
 * in use are kept only for the stacks that have live samples, which at a dump are
 * few beside those that allocated: their array is reserved for every stack and
 * filled from its start, and a stack finds its entry through live_at. */
struct counts {
    struct memprof_window_counts acc;    /* allocated in the window, by stack id */
    struct memprof_stack_totals *live;   /* live now, in the order first met */
    uint32_t *live_at;                   /* by stack id: its index in live + 1, or 0 */
    uint32_t nstacks, nlive;
    size_t bytes;
};

static const struct memprof_stack_totals no_totals;

static const struct memprof_stack_totals *live_of(const struct counts *c, uint32_t id)
{
    return c->live_at[id] == 0 ? &no_totals : &c->live[c->live_at[id] - 1];
}

static struct memprof_stack_totals acc_of(const struct counts *c, uint32_t id)
{
    return memprof_window_counts_of(&c->acc, id);
}

static struct memprof_stack_totals *live_entry(uint32_t stack, void *arg)
{
    struct counts *c = arg;
    if (stack >= c->nstacks)
        return NULL;   /* made after the count of stacks was read */
    if (c->live_at[stack] == 0)
        c->live_at[stack] = ++c->nlive;
    return &c->live[c->live_at[stack] - 1];
}

static bool gather_counts(struct counts *c, const struct memprof_window_info *w)
{
    c->nstacks = memprof_stack_ids();
    c->nlive = 0;
    c->acc = (struct memprof_window_counts){NULL, NULL, 0, w->rates};
    c->bytes = sizeof(struct memprof_stack_totals) * ((size_t)c->nstacks + 1);
    c->live = memprof_map(c->bytes);
    c->live_at = memprof_map(sizeof(uint32_t) * ((size_t)c->nstacks + 1));
    if (c->live == NULL || c->live_at == NULL)
        return false;
    /* The live table before the counters: a sample counts before it goes live
     * (record_sample), so one taken between the two reads is allocated and not yet
     * in use, never the other way round: no stack is more in use than allocated. */
    struct memprof_live_totals live = {.of_stack = live_entry, .arg = c};
    memprof_live_totals(w->rates, &live);
    return memprof_window_counts_read(&c->acc, c->nstacks, w->id, w->closed, w->rates);
}

static void release_counts(struct counts *c)
{
    memprof_window_counts_release(&c->acc);
    memprof_unmap(c->live, c->bytes);
    memprof_unmap(c->live_at, sizeof(uint32_t) * ((size_t)c->nstacks + 1));
}

/* "<line>time_ns=T bytes=N": how a noted event's line begins. */
static void put_note_start(struct out *o, const char *line, const struct memprof_note *note)
{
    puts_(o, line);
    puts_(o, "time_ns=");
    put_u64(o, note->time_ns);
    puts_(o, " bytes=");
    put_u64(o, note->size);
}

/* " stack=<id>\n": how it ends, with its stack (-1 when the stack table was full). */
static void put_note_stack(struct out *o, uint32_t stack)
{
    puts_(o, " stack=");
    if (stack == STACK_NONE)
        puts_(o, "-1");
    else
        put_u64(o, stack);
    puts_(o, "\n");
}

/* The heap's noted events (notes.c): `# failed_allocs: N` (all of them) and a
 * `# failed_alloc:` line for each kept; a `# foreign:` line for each range
 * registered or opened now, and `# foreign_unrecorded: N` when some found no
 * room.  jeprof skips `#` lines. */
static void put_notes(struct out *o, enum memprof_heap heap)
{
    static const char *const kinds[] = {[FOREIGN_HOST_REGISTER] = "host_register",
                                        [FOREIGN_IPC_OPEN] = "ipc_open"};
    struct memprof_note notes[MEMPROF_MAX_NOTES];
    uint32_t missed, n = memprof_notes_of(NOTES_FAILED, heap, notes, &missed);
    if (n + (uint64_t)missed > 0) {
        puts_(o, "# failed_allocs: ");
        put_u64(o, n + (uint64_t)missed);
        puts_(o, "\n");
    }
    for (uint32_t i = 0; i < n; i++) {
        put_note_start(o, "# failed_alloc: ", &notes[i]);
        puts_(o, " error=");
        put_u64(o, (uint64_t)(int64_t)notes[i].error);
        put_note_stack(o, notes[i].stack);
    }
    n = memprof_notes_of(NOTES_FOREIGN, heap, notes, &missed);
    if (missed > 0) {
        puts_(o, "# foreign_unrecorded: ");
        put_u64(o, missed);
        puts_(o, "\n");
    }
    for (uint32_t i = 0; i < n; i++) {
        put_note_start(o, "# foreign: ", &notes[i]);
        puts_(o, " kind=");
        puts_(o, kinds[notes[i].kind]);
        puts_(o, " address");
        put_hex(o, '=', notes[i].address);
        put_note_stack(o, notes[i].stack);
    }
}

/* ---- the tree and the counters (docs/file-formats.md) ---------------------- */
/* What one heap's file holds of the tables: its stacks (those with counts, and the
 * noted events' its lines name) and the nodes and frames their chains reach, each
 * given its row in the file (row + 1; 0: not in it).  Node ids only grow and a
 * parent's is below its child's, so rows in id order keep parents first. */
struct selection {
    uint32_t nstacks, nnodes, nframes;
    uint32_t *stack_row, *node_row, *frame_row;
    uint32_t stacks, nodes, frames;
};

static bool has_counts(const struct counts *c, uint32_t id)
{
    return acc_of(c, id).objs != 0 || live_of(c, id)->objs != 0;
}

/* The chain's nodes up to its head (not written: its children hang from the root). */
static void select_chain(struct selection *sel, uint32_t leaf)
{
    for (uint32_t id = leaf; id != 0 && sel->node_row[id] == 0;) {
        struct memprof_node node = memprof_tree_node(id);
        if (node.parent == 0)
            break;
        sel->node_row[id] = 1;
        id = node.parent;
    }
}

static void select_stack(struct selection *sel, uint32_t id)
{
    if (id >= sel->nstacks || sel->stack_row[id] != 0)
        return;
    sel->stack_row[id] = 1;
    struct memprof_stack k = memprof_stack_get(id);
    select_chain(sel, k.native);
    select_chain(sel, k.python);
}

static bool select_for_heap(struct selection *sel, const struct counts *c, enum memprof_heap heap)
{
    /* read in this order, each after what it names: a stack's nodes and a node's
     * frame are made before the id that names them is published */
    sel->nstacks = c->nstacks;
    sel->nnodes = memprof_tree_nodes();
    sel->nframes = memprof_tree_frames();
    sel->stack_row = memprof_map(sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
    sel->node_row = memprof_map(sizeof(uint32_t) * ((size_t)sel->nnodes + 1));
    sel->frame_row = memprof_map(sizeof(uint32_t) * ((size_t)sel->nframes + 1));
    if (sel->stack_row == NULL || sel->node_row == NULL || sel->frame_row == NULL)
        return false;
    for (uint32_t id = 0; id < sel->nstacks; id++)
        if (has_counts(c, id) && memprof_stack_heap(id) == (uint32_t)heap)
            select_stack(sel, id);
    struct memprof_note notes[MEMPROF_MAX_NOTES];
    uint32_t missed;
    for (int list = 0; list < NOTE_LISTS; list++) {
        uint32_t n = memprof_notes_of((enum memprof_note_list)list, heap, notes, &missed);
        for (uint32_t i = 0; i < n; i++)
            if (notes[i].stack != STACK_NONE)
                select_stack(sel, notes[i].stack);
    }
    sel->stacks = sel->nodes = sel->frames = 0;
    for (uint32_t id = 0; id < sel->nstacks; id++)
        if (sel->stack_row[id] != 0)
            sel->stack_row[id] = ++sel->stacks;
    for (uint32_t id = 1; id < sel->nnodes; id++)
        if (sel->node_row[id] != 0) {
            sel->node_row[id] = ++sel->nodes;
            sel->frame_row[memprof_tree_node(id).frame] = 1;
        }
    for (uint32_t f = 0; f < sel->nframes; f++)
        if (sel->frame_row[f] != 0)
            sel->frame_row[f] = ++sel->frames;
    return true;
}

static void release_selection(struct selection *sel)
{
    memprof_unmap(sel->stack_row, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
    memprof_unmap(sel->node_row, sizeof(uint32_t) * ((size_t)sel->nnodes + 1));
    memprof_unmap(sel->frame_row, sizeof(uint32_t) * ((size_t)sel->nframes + 1));
}

/* ---- Python frames (ARCHITECTURE.md, "Python programs") ------------------- */
/* `# python: <version> 0x<start> 0x<end of _PyEval_EvalFrameDefault>`, then a
 * `# python_frame: 0x<address> <line> <first line> <name>\t<file>` line per frame
 * record (name and file escaped, so the tab between them is the only one). */
static void put_python_record(struct out *o, uint32_t id)
{
    struct memprof_python_frame f;
    if (!memprof_python_record(id, &f))
        return;   /* being interned now: no stack written names it */
    puts_(o, "# python_frame:");
    put_hex(o, ' ', MEMPROF_PY_FRAME_BASE + id);
    puts_(o, " ");
    if (f.line < 0)
        puts_(o, "-1");
    else
        put_u64(o, (uint64_t)f.line);
    puts_(o, " ");
    put_u64(o, f.first_line > 0 ? (uint64_t)f.first_line : 0);
    puts_(o, " ");
    put_escaped(o, f.name, f.name_len);
    puts_(o, "\t");
    put_escaped(o, f.file, f.file_len);
    puts_(o, "\n");
}

/* The records the heap's selected frames name: a device heap's few stacks do not carry
 * the host's thousands.  With an event log, every record: the log's stacks, of every
 * heap, are named from the host heap's file. */
static void put_python_frames(struct out *o, const struct selection *sel)
{
    const char *version = memprof_python_version();
    if (version == NULL)
        return;
    puts_(o, "# python: ");
    puts_(o, version);
    put_hex(o, ' ', memprof_python_eval_lo);
    put_hex(o, ' ', memprof_python_eval_hi());
    puts_(o, "\n");
    uint64_t left_out = memprof_python_frames_left_out();
    if (left_out > 0) {
        puts_(o, "# python_frames_left_out: ");
        put_u64(o, left_out);
        puts_(o, "\n");
    }
    uint32_t n = memprof_python_records();
    if (memprof_log_base() != NULL) {
        for (uint32_t id = 0; id < n; id++)
            put_python_record(o, id);
        return;
    }
    for (uint32_t frame = 0; frame < sel->nframes; frame++) {
        uintptr_t address = sel->frame_row[frame] != 0 ? memprof_tree_frame(frame) : 0;
        if (address >= MEMPROF_PY_FRAME_BASE && address - MEMPROF_PY_FRAME_BASE < n)
            put_python_record(o, (uint32_t)(address - MEMPROF_PY_FRAME_BASE));
    }
}

static inline void put_byte(struct out *o, uint8_t byte)
{
    if (o->len == BUF_CAP)
        flush(o);
    o->buf[o->len++] = (char)byte;
}

/* What the tree's arrays are made of: for each id below `end`, whether it has a row
 * in the file and then its value. */
struct column {
    const struct selection *sel;
    const struct counts *c;
    uint32_t end;
    bool (*value)(const struct column *col, uint32_t id, uint64_t *v);
    int field;   /* which of a stack's values */
};

/* `bytes` bytes of `width`-byte values, byte-shuffled: the lowest byte of every value,
 * then the next, and so on, which zstd packs far better than the values whole. */
static void put_planes(struct out *o, const uint8_t *values, size_t bytes, unsigned width)
{
    for (unsigned byte = 0; byte < width; byte++)
        for (size_t i = byte; i < bytes;) {   /* a buffer's worth of the plane at a time */
            if (o->len == BUF_CAP)
                flush(o);
            size_t n = 0, room = BUF_CAP - o->len;
            for (char *to = o->buf + o->len; n < room && i < bytes; n++, i += width)
                to[n] = (char)values[i];
            o->len += n;
        }
}

static void *scratch_or_fail(struct out *o, size_t bytes)
{
    void *scratch = bytes > 0 ? memprof_map(bytes) : NULL;
    if (bytes > 0 && scratch == NULL) {
        o->failed = true;
        o->error = ENOMEM;
    }
    return scratch;
}

/* An array of `rows` `width`-byte values, byte-shuffled.  The values are read once,
 * into a scratch copy of the column, not once per byte. */
static void put_column(struct out *o, struct column col, unsigned width, uint32_t rows)
{
    size_t bytes = (size_t)rows * width;
    uint8_t *scratch = scratch_or_fail(o, bytes);
    if (bytes > 0 && scratch == NULL)
        return;
    size_t at = 0;
    for (uint32_t id = 0; id < col.end && at < bytes; id++) {
        uint64_t v;
        if (col.value(&col, id, &v))
            for (unsigned byte = 0; byte < width; byte++)
                scratch[at++] = (uint8_t)(v >> (8 * byte));
    }
    put_planes(o, scratch, at, width);
    if (scratch != NULL)
        memprof_unmap(scratch, bytes);
}

static bool frame_value(const struct column *col, uint32_t f, uint64_t *v)
{
    *v = memprof_tree_frame(f);
    return col->sel->frame_row[f] != 0;
}

/* node k's distance to its parent, k - parent: mostly 1, along a chain */
static bool node_up(const struct column *col, uint32_t id, uint64_t *v)
{
    uint32_t row = col->sel->node_row[id];
    *v = row - col->sel->node_row[memprof_tree_node(id).parent];
    return id != 0 && row != 0;
}

static bool node_frame(const struct column *col, uint32_t id, uint64_t *v)
{
    *v = col->sel->frame_row[memprof_tree_node(id).frame] - 1;
    return id != 0 && col->sel->node_row[id] != 0;
}

static bool stack_value(const struct column *col, uint32_t id, uint64_t *v)
{
    if (col->sel->stack_row[id] == 0)
        return false;
    const struct memprof_stack_totals *cur = live_of(col->c, id);
    switch (col->field) {
    case 0: *v = id; break;
    case 1: *v = col->sel->node_row[memprof_stack_get(id).native]; break;
    case 2: *v = col->sel->node_row[memprof_stack_get(id).python]; break;
    case 3: *v = cur->objs; break;
    case 4: *v = cur->bytes; break;
    case 5: *v = acc_of(col->c, id).objs; break;
    case 6: *v = acc_of(col->c, id).bytes; break;
    default: *v = memprof_stack_get(id).label; break;
    }
    return true;
}

/* Whether the stack's estimates are what a reader computes from its counts, the
 * weight of their mean size times each count (so the file need not hold them):
 * so it is for a stack whose samples are of one size. */
static bool estimate_implied(const struct memprof_stack_totals *t, uint64_t rate)
{
    if (t->objs == 0)
        return t->est_objs == 0 && t->est_bytes == 0;
    double mean = (double)t->bytes / (double)t->objs;
    double scale = rate > 1 && mean > 0 ? memprof_weight(mean, rate) : 1.0;
    double objs = (double)t->objs * scale, bytes = (double)t->bytes * scale;
    return fabs(t->est_objs - objs) <= 1e-9 * objs && fabs(t->est_bytes - bytes) <= 1e-9 * bytes;
}

static bool estimates_implied(const struct counts *c, uint32_t id, uint64_t rate)
{
    struct memprof_stack_totals acc = acc_of(c, id);
    return estimate_implied(live_of(c, id), rate) && estimate_implied(&acc, rate);
}

/* Figures of some of the stacks, besides their counts, read once before they are
 * written: the stacks that held memory at the heap's peak, or at the program's end
 * those of its live samples that nothing points to.  Their rows, and what each held. */
struct stack_figures {
    uint32_t n;
    uint32_t *row;
    uint64_t *samples, *bytes;
    double *est;   /* objects and bytes of each */
    size_t cap;
};

static void release_figures(struct stack_figures *f)
{
    memprof_unmap(f->row, sizeof(*f->row) * f->cap);
    memprof_unmap(f->samples, sizeof(*f->samples) * f->cap);
    memprof_unmap(f->bytes, sizeof(*f->bytes) * f->cap);
    memprof_unmap(f->est, sizeof(*f->est) * 2 * f->cap);
}

static bool start_figures(struct out *o, const struct selection *sel, struct stack_figures *f)
{
    *f = (struct stack_figures){.cap = (size_t)sel->stacks + 1};
    f->row = scratch_or_fail(o, sizeof(*f->row) * f->cap);
    f->samples = scratch_or_fail(o, sizeof(*f->samples) * f->cap);
    f->bytes = scratch_or_fail(o, sizeof(*f->bytes) * f->cap);
    f->est = scratch_or_fail(o, sizeof(*f->est) * 2 * f->cap);
    if (o->failed)
        release_figures(f);
    return !o->failed;
}

/* Stack id's figures, where the selection writes it. */
static void add_figures(struct stack_figures *f, const struct selection *sel, uint32_t id,
                        struct memprof_stack_totals held)
{
    if (id >= sel->nstacks || sel->stack_row[id] == 0 || held.objs == 0 || f->n + 1 >= f->cap)
        return;
    f->row[f->n] = sel->stack_row[id] - 1;
    f->samples[f->n] = held.objs;
    f->bytes[f->n] = held.bytes;
    f->est[2 * f->n] = held.est_objs;
    f->est[2 * f->n + 1] = held.est_bytes;
    f->n++;
}

/* The stacks at the heap's peak: its record (live_bytes.c), or where the heap is at its
 * peak now, its live samples.  An event log's window makes no record (its events give
 * its peaks): there, unless the heap is at its peak now, none. */
static bool gather_peak(struct out *o, const struct selection *sel, const struct counts *c,
                        enum memprof_heap heap, struct stack_figures *f)
{
    if (!start_figures(o, sel, f))
        return false;
    struct memprof_stack_live *rows = scratch_or_fail(o, sizeof(*rows) * f->cap);
    if (o->failed) {
        release_figures(f);
        return false;
    }
    int64_t n = memprof_live_peak_rows(heap, rows, f->cap);
    struct memprof_live_bytes figure = memprof_live_bytes_of(heap);
    if (n < 0 && memprof_log_base() != NULL && figure.now < figure.peak)
        n = 0;
    for (int64_t i = 0; i < n; i++)
        add_figures(f, sel, rows[i].stack,
                    (struct memprof_stack_totals){rows[i].samples, rows[i].bytes,
                                                  rows[i].est_objs, rows[i].est_bytes});
    for (uint32_t id = 0; n < 0 && id < sel->nstacks; id++)
        add_figures(f, sel, id, *live_of(c, id));
    memprof_unmap(rows, sizeof(*rows) * f->cap);
    return true;
}

/* At the program's end, where it is looked for (at rate 1: each sample stands for
 * itself), the stacks' samples nothing points to. */
static bool gather_unreachable(struct out *o, const struct selection *sel,
                               const struct memprof_unreachable *u, struct stack_figures *f)
{
    if (!start_figures(o, sel, f))
        return false;
    for (uint32_t id = 0; u != NULL && id < sel->nstacks && id < u->nstacks; id++)
        add_figures(f, sel, id,
                    (struct memprof_stack_totals){u->samples[id], u->bytes[id],
                                                  (double)u->samples[id], (double)u->bytes[id]});
    return true;
}

static void put_figures(struct out *o, const struct stack_figures *f)
{
    put_planes(o, (const uint8_t *)f->row, sizeof(*f->row) * f->n, sizeof(*f->row));
    put_planes(o, (const uint8_t *)f->samples, sizeof(*f->samples) * f->n, sizeof(*f->samples));
    put_planes(o, (const uint8_t *)f->bytes, sizeof(*f->bytes) * f->n, sizeof(*f->bytes));
    put(o, (const char *)f->est, sizeof(*f->est) * 2 * f->n);
}

static void put_tree(struct out *o, const struct selection *sel, const struct counts *c,
                     const struct memprof_window_info *w, enum memprof_heap heap, uint64_t rate)
{
    /* the stacks whose estimates are written, found once: mapped for every stack,
     * touched only for those */
    uint32_t *estimated = memprof_map(sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
    if (estimated == NULL) {
        o->failed = true;
        o->error = ENOMEM;
        return;
    }
    uint32_t estimates = 0;
    for (uint32_t id = 0; id < sel->nstacks; id++)
        if (sel->stack_row[id] != 0 && !estimates_implied(c, id, rate))
            estimated[estimates++] = id;
    struct stack_figures peak, leaks;
    const struct memprof_unreachable *scanned = heap == HEAP_HOST ? w->unreachable : NULL;
    if (!gather_peak(o, sel, c, heap, &peak)) {
        memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
        return;
    }
    if (!gather_unreachable(o, sel, scanned, &leaks)) {
        release_figures(&peak);
        memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
        return;
    }
    puts_(o, "# tree: frames=");
    put_u64(o, sel->frames);
    puts_(o, " nodes=");
    put_u64(o, sel->nodes);
    puts_(o, " stacks=");
    put_u64(o, sel->stacks);
    puts_(o, " estimates=");
    put_u64(o, estimates);
    puts_(o, heap == HEAP_HAL ? " labels=1" : " labels=0");
    puts_(o, " peaks=");
    put_u64(o, peak.n);
    if (scanned != NULL) {
        puts_(o, " unreachable=");
        put_u64(o, leaks.n);
    }
    puts_(o, "\n");

    put_column(o, (struct column){sel, c, sel->nframes, frame_value, 0}, 8, sel->frames);
    put_column(o, (struct column){sel, c, sel->nnodes, node_up, 0}, 4, sel->nodes);
    put_column(o, (struct column){sel, c, sel->nnodes, node_frame, 0}, 4, sel->nodes);
    for (int field = 0; field < 7; field++)
        put_column(o, (struct column){sel, c, sel->nstacks, stack_value, field}, field < 3 ? 4 : 8,
                   sel->stacks);
    for (int byte = 0; byte < 4; byte++)
        for (uint32_t i = 0; i < estimates; i++)
            put_byte(o, (uint8_t)((sel->stack_row[estimated[i]] - 1) >> (8 * byte)));
    for (uint32_t i = 0; i < estimates; i++) {
        uint32_t id = estimated[i];
        const struct memprof_stack_totals *cur = live_of(c, id);
        struct memprof_stack_totals acc = acc_of(c, id);
        double est[4] = {cur->est_objs, cur->est_bytes, acc.est_objs, acc.est_bytes};
        put(o, (const char *)est, sizeof est);
    }
    memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
    if (heap == HEAP_HAL)
        put_column(o, (struct column){sel, c, sel->nstacks, stack_value, 7}, 8, sel->stacks);
    put_figures(o, &peak);
    put_figures(o, &leaks);
    release_figures(&peak);
    release_figures(&leaks);
}

static void put_profile(struct out *o, const struct memprof_window_info *w, enum memprof_heap heap,
                        const struct counts *c, const struct selection *sel, const char *exe,
                        const struct proc_text *text)
{
    uint64_t rate = memprof_heap_rate(w->rates, heap);
    puts_(o, "heap_tree/");
    put_u64(o, rate);
    puts_(o, "\n# mem_profiler " MEMPROF_VERSION "\n# pid: ");
    put_u64(o, (uint64_t)getpid());
    if (w->forked_from != 0) {
        puts_(o, "\n# forked_from: ");
        put_u64(o, (uint64_t)w->forked_from);
    }
    if (w->python_exit)
        puts_(o, "\n# ended_at: python_finalizing");
    if (w->failure.heap >= 0) {
        puts_(o, "\n# taken_at: device_allocation_failure heap=");
        puts_(o, memprof_heap_names[w->failure.heap]);
        puts_(o, " bytes=");
        put_u64(o, w->failure.bytes);
        puts_(o, " error=");
        put_u64(o, (uint64_t)(unsigned)w->failure.error);
        if (w->failure.raised != NULL) {
            puts_(o, " raised=");
            puts_(o, w->failure.raised);
        }
    }
    puts_(o, "\n# cmdline: ");
    put_escaped(o, text->cmdline, text->cmdline_len);
    puts_(o, "\n# exe: ");
    put_escaped(o, exe, strlen(exe));
    puts_(o, "\n# heap: ");
    puts_(o, memprof_heap_names[heap]);
    puts_(o, "\n# window_start_ns: ");
    put_u64(o, w->start_ns);
    puts_(o, "\n# window_end_ns: ");
    put_u64(o, w->end_ns);
    puts_(o, "\n# unwinder: ");
    puts_(o, memprof_unwinder_name());
    puts_(o, "\n# max_depth: ");
    put_u64(o, (uint64_t)w->max_depth);
    puts_(o, "\n# dropped_samples: ");
    put_u64(o, memprof_dropped_samples(&w->drops));
    puts_(o, "\n# dropped: stack_table=");
    put_u64(o, w->drops.stack_table);
    puts_(o, " live_table=");
    put_u64(o, w->drops.live_table);
    puts_(o, " memory=");
    put_u64(o, w->drops.memory);
    puts_(o, " bytes=");
    put_u64(o, w->drops.bytes);
    puts_(o, "\n");
    const char *own_malloc = memprof_upcalls.own_malloc();
    if (heap == HEAP_HOST && own_malloc[0] != '\0') {
        puts_(o, "# warning: ");
        put_escaped(o, own_malloc, strlen(own_malloc));
        puts_(o, "\n");
    }
    const char *pool_note = memprof_upcalls.pools_note();
    if (heap == HEAP_CUDA && pool_note[0] != '\0') {
        puts_(o, "# pool_note: ");
        put_escaped(o, pool_note, strlen(pool_note));
        puts_(o, "\n");
    }
    const char *log = memprof_log_base();
    if (log != NULL) {
        puts_(o, "# log: ");
        put_escaped(o, log, strlen(log));
        puts_(o, "\n");
    }
    if (log != NULL && memprof_log_error() != 0) {
        puts_(o, "# log_stopped: ");
        puts_(o, strerror(memprof_log_error()));
        puts_(o, "\n");
    }
    {
        struct memprof_live_bytes lb = memprof_live_bytes_of(heap);
        puts_(o, "# live_bytes: ");
        put_u64(o, lb.now > 0 ? (uint64_t)lb.now : 0);
        puts_(o, "\n# peak_live_bytes: ");
        put_u64(o, lb.peak > 0 ? (uint64_t)lb.peak : 0);
        puts_(o, "\n# peak_time_ns: ");
        put_u64(o, lb.peak_time_ns);
        puts_(o, "\n");
    }
    struct build_id_ctx ctx = {o, exe};
    dl_iterate_phdr(put_build_id, &ctx);
    put_python_frames(o, sel);
    put_notes(o, heap);
    put_tree(o, sel, c, w, heap, rate);

    puts_(o, "\nMAPPED_LIBRARIES:\n");
    put(o, text->maps, text->maps_len);
}

/* One heap's file: <prefix><pid>.<seq>[.<heap>].heap, written to a new
 * temporary name beside it and renamed into place once complete. */
static int write_heap_file(const struct memprof_window_info *w, enum memprof_heap heap,
                           const struct counts *c, const struct proc_text *text,
                           const char *prefix, unsigned seq, char *path, size_t path_len)
{
    char tmp[MEMPROF_PATH_MAX + 32], exe[MEMPROF_PATH_MAX];
    bool host = heap == HEAP_HOST;
    int n = snprintf(path, path_len, "%s%d.%04u%s%s.heap", prefix, (int)getpid(), seq,
                     host ? "" : ".", host ? "" : memprof_heap_names[heap]);
    if (n < 0 || (size_t)n >= path_len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char proc[MEMPROF_PROC_PATH];
    ssize_t elen = readlink(memprof_proc_file("exe", proc), exe, sizeof exe - 1);
    exe[elen > 0 ? elen : 0] = '\0';

    struct out o = {.fd = memprof_create_temp(path, tmp, sizeof tmp, 0644)};
    if (o.fd < 0)
        return -1;
    o.buf = memprof_map(BUF_CAP);
    if (o.buf == NULL) {
        close(o.fd);
        memprof_unlink(tmp);
        errno = ENOMEM;
        return -1;
    }
    struct selection sel;
    puts_(&o, "memprof_tree/2\n");
    if (!select_for_heap(&sel, c, heap) || !start_compress(&o)) {
        o.failed = true;
        o.error = ENOMEM;
    } else {
        put_profile(&o, w, heap, c, &sel, exe, text);
    }
    flush(&o);
    end_compress(&o);
    release_selection(&sel);
    memprof_unmap(o.buf, BUF_CAP);
    if (o.failed) {
        close(o.fd);
        memprof_unlink(tmp);
        errno = o.error;
        return -1;
    }
    return memprof_publish(o.fd, tmp, path);
}

int memprof_write_dump(const struct memprof_window_info *w, const char *prefix, unsigned seq,
                       char *path_out, size_t path_len)
{
    uint32_t heaps = memprof_upcalls.device_heaps_used();
    struct counts c;
    struct proc_text text = {.cmdline_len = 0};
    int rc = -1;
    memprof_remove_dead_temps_beside(prefix);
    read_cmdline(&text);
    if (!read_maps(&text)) {
        /* errno says why: without the map no address could be named */
    } else if (gather_counts(&c, w)) {
        char path[MEMPROF_PATH_MAX];
        rc = write_heap_file(w, HEAP_HOST, &c, &text, prefix, seq, path_out, path_len);
        for (int heap = HEAP_HOST + 1; rc == 0 && heap < HEAP_COUNT; heap++)
            if (heaps & (1u << heap))
                rc = write_heap_file(w, (enum memprof_heap)heap, &c, &text, prefix, seq, path,
                                     sizeof path);
        release_counts(&c);
    } else {
        release_counts(&c);
        errno = ENOMEM;
    }
    release_proc_text(&text);
    return rc;
}
