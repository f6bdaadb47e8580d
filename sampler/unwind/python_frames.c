/* Python frames in sampled stacks (ARCHITECTURE.md, "Python programs").
 *
 * When the process runs CPython 3.9 to 3.13, a sample reads the allocating
 * thread's own chain of Python frames from its thread state: no GIL, no call
 * into Python beyond two lock-free reads (Py_IsInitialized and
 * PyGILState_GetThisThreadState, a thread-specific value), no allocation.  The
 * chain cannot change under the walk: only its own thread changes it, and that
 * thread is the one sampling.  Each frame's function (qualified name from 3.11,
 * the code's name before), file, first line and current line are copied at
 * once, since a code object may be freed and its address reused, and interned
 * in two bounded, preallocated tables claimed slot by slot with a CAS (strings,
 * then frame records of two string ids and two lines): a record's id is the
 * frame's address in the stack, MEMPROF_PY_FRAME_BASE + id, which no mapping
 * can hold.
 *
 * The frames go into the native stack where the interpreter ran them: each
 * native call of _PyEval_EvalFrameDefault runs one Python frame up to 3.10,
 * and from 3.11 the frames above an entry marker (3.11: is_entry on the first
 * frame the call ran; 3.12 and 3.13: a shim frame owned by the C stack), so a
 * group of Python frames is put just leafward of its native evaluation frame.
 * Groups the native walk did not reach (its depth limit) go at the root end.
 *
 * Layouts: 3.13's come from _Py_DebugOffsets at the start of _PyRuntime;
 * those before, which have none, are the x86-64 release builds' (offsetof in
 * each version's headers). */
#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "tables/hash_index.h"
#include "unwind/python_frames.h"

/* Offsets into the interpreter's structures, and how its frames are chained. */
struct py_layout {
    unsigned minor;              /* 3.<minor> */
    uint32_t tstate_frame;       /* 3.9/3.10 frame, 3.11/3.12 cframe, 3.13 current_frame */
    int32_t cframe_current;      /* 3.11/3.12: _PyCFrame.current_frame; else -1 */
    uint32_t frame_previous, frame_code, frame_instr;
    int32_t frame_owner;         /* 3.12+: the owner byte; else -1 */
    int32_t frame_is_entry;      /* 3.11: the is_entry byte; else -1 */
    uint32_t code_name, code_filename, code_linetable, code_firstlineno, code_adaptive;
    uint32_t ascii_size;         /* sizeof(PyASCIIObject): a compact ASCII string's text */
    uint32_t compact_utf8_length, compact_utf8, compact_size;
};

#define FRAME_OWNED_BY_CSTACK 3
#define OB_TYPE 8                /* PyObject.ob_type */
#define VAR_SIZE 16              /* PyVarObject.ob_size */
#define BYTES_DATA 32            /* PyBytesObject.ob_sval */
#define UNICODE_LENGTH 16
#define UNICODE_STATE 32
#define STATE_KIND(s) (((s) >> 2) & 7)
#define STATE_COMPACT 0x20
#define STATE_ASCII 0x40
#define NAME_MAX_BYTES 1024      /* longer names and paths are cut */

static const struct py_layout layouts[] = {
    {9, 24, -1, 24, 32, 104, -1, -1, 112, 104, 120, 40, 0, 48, 48, 56, 72},
    {10, 24, -1, 24, 32, 96, -1, -1, 112, 104, 120, 40, 0, 48, 48, 56, 72},
    {11, 56, 8, 48, 32, 56, -1, 68, 128, 112, 136, 72, 184, 48, 48, 56, 72},
    {12, 56, 0, 8, 0, 56, 70, -1, 128, 112, 136, 68, 192, 40, 40, 48, 56},
};

/* 3.13's _Py_DebugOffsets: where its fields lie in that struct. */
#define DEBUG_COOKIE "xdebugpy"
enum {
    DBG_VERSION = 8,
    DBG_THREAD_CURRENT_FRAME = 184,
    DBG_FRAME_PREVIOUS = 232, DBG_FRAME_EXECUTABLE = 240, DBG_FRAME_INSTR_PTR = 248,
    DBG_FRAME_OWNER = 264,
    DBG_CODE_FILENAME = 280, DBG_CODE_QUALNAME = 296, DBG_CODE_LINETABLE = 304,
    DBG_CODE_FIRSTLINENO = 312, DBG_CODE_ADAPTIVE = 344,
    DBG_UNICODE_ASCII_SIZE = 560,
};

static struct {
    struct py_layout layout;
    int (*is_initialized)(void);
    void *(*this_thread_state)(void);
    uintptr_t code_type, unicode_type, bytes_type;
    char version[40];
    uintptr_t eval_lo, eval_hi;   /* _PyEval_EvalFrameDefault's code */
} py;

uintptr_t memprof_python_eval_lo;

/* ---- interning ------------------------------------------------------------
 * Bytes to dense ids: the bytes in a pool, their place by id, a hash index
 * (hash_index.c) to find them again. */
struct intern_entry {
    uint64_t at;                 /* into the pool */
    uint32_t len;
};

struct intern_table {
    struct memprof_index index;
    uint32_t capacity;
    struct intern_entry *entries;
    _Atomic uint32_t used;
    char *pool;
    uint64_t pool_len, pool_used;   /* used: under the index's lock */
    _Atomic bool full;              /* it refused an entry for want of room */
};

static struct intern_table strings, records;
static _Atomic uint32_t records_generation = 1;   /* moves when the records are emptied */
/* Frames left out of stacks while a table was full (`# python_frames_left_out`). */
static _Atomic uint64_t frames_left_out;

/* A frame record: what a Python frame was when it was sampled. */
struct py_record {
    uint32_t name, file;         /* string ids */
    int32_t line, first_line;
};

static uint64_t hash_bytes(const void *data, size_t len);

static uint64_t entry_hash(const struct memprof_index *x, uint32_t id)
{
    const struct intern_table *t =
        (const void *)((const char *)x - offsetof(struct intern_table, index));
    return hash_bytes(t->pool + t->entries[id].at, t->entries[id].len);
}

static bool intern_init(struct intern_table *t, uint32_t capacity, uint64_t pool_len)
{
    t->capacity = capacity;
    t->pool_len = pool_len;
    t->entries = memprof_map(sizeof(*t->entries) * capacity);
    t->pool = memprof_map(pool_len);
    return t->entries != NULL && t->pool != NULL &&
           memprof_index_init(&t->index, capacity, entry_hash) == 0;
}

static void intern_reset(struct intern_table *t)
{
    memprof_index_reset(&t->index);
    memprof_zero_pages(t->entries, sizeof(*t->entries) * t->capacity);
    memprof_zero_pages(t->pool, t->pool_len);
    atomic_store(&t->used, 0);
    t->pool_used = 0;
    atomic_store(&t->full, false);
}

static uint64_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x84222325cbf29ce4ull ^ len;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    for (; len > 0; p++, len--)
        h = (h ^ *p) * 0x100000001b3ull;
    return h ^ h >> 32;
}

struct bytes_key {
    struct intern_table *table;
    const void *data;
    uint32_t len;
};

static bool same_bytes(uint32_t id, const void *key)
{
    const struct bytes_key *k = key;
    const struct intern_entry *e = &k->table->entries[id];
    return e->len == k->len && memcmp(k->table->pool + e->at, k->data, k->len) == 0;
}

/* Under the index's lock: the bytes copied into the pool, the entry made. */
static uint32_t make_bytes(const void *key)
{
    const struct bytes_key *k = key;
    struct intern_table *t = k->table;
    uint32_t id = atomic_load_explicit(&t->used, memory_order_relaxed);
    if (id >= t->capacity || t->pool_used + k->len > t->pool_len) {
        atomic_store_explicit(&t->full, true, memory_order_relaxed);
        return MEMPROF_INDEX_NONE;
    }
    memcpy(t->pool + t->pool_used, k->data, k->len);
    t->entries[id] = (struct intern_entry){t->pool_used, k->len};
    t->pool_used += k->len;
    atomic_store_explicit(&t->used, id + 1, memory_order_release);
    return id;
}

/* The id of a byte string, interned on first sight; UINT32_MAX when full. */
static uint32_t intern(struct intern_table *t, const void *data, uint32_t len)
{
    uint64_t h = hash_bytes(data, len);
    struct bytes_key bytes = {t, data, len};
    struct memprof_index_key key = {&bytes, same_bytes};
    return memprof_index_intern(&t->index, h, &key, make_bytes);
}

static bool intern_get(struct intern_table *t, uint32_t id, const char **data, uint32_t *len)
{
    if (id >= atomic_load_explicit(&t->used, memory_order_acquire))
        return false;
    *data = t->pool + t->entries[id].at;
    *len = t->entries[id].len;
    return true;
}

/* ---- reading the interpreter's objects -------------------------------------- */
static inline uintptr_t load_ptr(uintptr_t at) { return *(const uintptr_t *)at; }
static inline int32_t load_i32(uintptr_t at) { return *(const int32_t *)at; }

/* Whether obj can be an object's address at all: not NULL, nor in the first page, nor
 * misaligned. */
static inline bool may_be_object(uintptr_t obj) { return obj >= 4096 && (obj & 7) == 0; }

/* An object of exactly this type. */
static inline bool is_object_of(uintptr_t obj, uintptr_t type)
{
    return may_be_object(obj) && load_ptr(obj + OB_TYPE) == type;
}

static size_t put_utf8(char *out, uint32_t c)
{
    if (c < 0x80) { out[0] = (char)c; return 1; }
    if (c < 0x800) { out[0] = (char)(0xc0 | c >> 6); out[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 63));
        out[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    out[0] = (char)(0xf0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 63));
    out[2] = (char)(0x80 | (c >> 6 & 63));
    out[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* A compact str's text as UTF-8 without encoding it: a compact ASCII string's
 * bytes, else its cached UTF-8 (cut at NAME_MAX_BYTES); false when it has neither. */
static bool str_text(uintptr_t obj, uint32_t state, int64_t length, const void **data,
                     uint32_t *len)
{
    const struct py_layout *L = &py.layout;
    if (state & STATE_ASCII) {
        *data = (const void *)(obj + L->ascii_size);
    } else {
        uintptr_t utf8 = load_ptr(obj + L->compact_utf8);
        length = *(const int64_t *)(obj + L->compact_utf8_length);
        if (utf8 == 0 || length < 0)
            return false;
        *data = (const void *)utf8;
    }
    *len = (uint32_t)(length < NAME_MAX_BYTES ? length : NAME_MAX_BYTES);
    return true;
}

/* The string id of a str object's text (UTF-8): str_text's, else its characters
 * encoded here; UINT32_MAX if it is not a compact str. */
static uint32_t intern_str(uintptr_t obj)
{
    const struct py_layout *L = &py.layout;
    if (!is_object_of(obj, py.unicode_type))
        return UINT32_MAX;
    uint32_t state = (uint32_t)load_i32(obj + UNICODE_STATE);
    int64_t length = *(const int64_t *)(obj + UNICODE_LENGTH);
    if (!(state & STATE_COMPACT) || length < 0)
        return UINT32_MAX;
    const void *data;
    uint32_t len;
    if (str_text(obj, state, length, &data, &len))
        return intern(&strings, data, len);
    char text[256];
    size_t n = 0;
    unsigned kind = STATE_KIND(state);
    const unsigned char *chars = (const unsigned char *)(obj + L->compact_size);
    for (int64_t i = 0; i < length && n + 4 <= sizeof text; i++) {
        uint32_t c = kind == 1 ? chars[i] : kind == 2 ? ((const uint16_t *)chars)[i]
                                                      : ((const uint32_t *)chars)[i];
        n += put_utf8(text + n, c);
    }
    return intern(&strings, text, (uint32_t)n);
}

/* The line of the instruction at code unit `unit` (3.11's location table),
 * or at byte `unit * 2`: 3.10's co_linetable; 3.9's co_lnotab.  An instruction the
 * table gives no line (the compiler's own: exception cleanup, the implicit return)
 * is on the last line before it, as a reader of the source would place it, and
 * before any line on the function's first: a report never shows line -1.
 * The decoding starts at *c, which it leaves at the entry that held the unit: a
 * later unit of the same code goes on from there (a module's body runs top to
 * bottom, and a long one's table is long). */
static int32_t line_of(const unsigned char *table, int64_t len, int64_t unit,
                       struct memprof_line_cursor *c)
{
    const unsigned char *p = table + c->at, *end = table + len;
    int32_t line = c->line;
    if (unit < 0)
        return line;
    if (py.layout.minor == 9) {   /* (byte increment, signed line increment) pairs */
        int64_t addr = c->start;
        for (; p + 1 < end && addr + p[0] <= 2 * unit; p += 2) {
            addr += p[0];
            line += (signed char)p[1];
        }
        *c = (struct memprof_line_cursor){p - table, addr, line};
        return line;
    }
    if (py.layout.minor == 10) {   /* (bytes covered, signed line delta or -128: none) */
        int64_t start = c->start;
        for (; p + 1 < end; p += 2) {
            int64_t stop = start + p[0];
            int32_t before = line;
            if ((signed char)p[1] != -128)
                line += (signed char)p[1];
            if (2 * unit >= start && 2 * unit < stop) {
                *c = (struct memprof_line_cursor){p - table, start, before};
                return line;
            }
            start = stop;
        }
        return line;
    }
    /* 3.11+: entries start with a byte of bit 7 set: code in bits 3-6, code units - 1
     * in bits 0-2; the line delta is a signed varint after codes 13 and 14, code - 10
     * for 10-12, nothing else; code 15 has no line. */
    int64_t start = c->start;
    while (p < end && (*p & 0x80)) {
        unsigned code = (*p >> 3) & 15;
        int64_t stop = start + (*p & 7) + 1;
        int32_t before = line;
        const unsigned char *q = p + 1;
        if (code == 13 || code == 14) {
            uint32_t read = *q++, value = read & 63, shift = 0;
            while ((read & 64) && q < end && shift < 24) {
                read = *q++;
                shift += 6;
                value |= (read & 63) << shift;
            }
            line += value & 1 ? -(int32_t)(value >> 1) : (int32_t)(value >> 1);
        } else if (code >= 10 && code <= 12) {
            line += (int32_t)code - 10;
        }
        if (unit < stop) {
            *c = (struct memprof_line_cursor){p - table, start, before};
            return line;
        }
        start = stop;
        for (p = q; p < end && !(*p & 0x80); p++)
            ;
    }
    return line;
}

/* A decoding to go on from: the thread's last one of this code object, if the unit
 * is at or after where it stopped, else the table's start. */
static struct memprof_line_cursor *line_cursor_for(uintptr_t code, uint32_t generation,
                                                   int64_t unit, int32_t first_line,
                                                   struct memprof_line_cursor *fresh)
{
    *fresh = (struct memprof_line_cursor){0, 0, first_line};
    struct memprof_memos *memos = memprof_thread.memos;
    if (memos == NULL)
        return fresh;
    __typeof__(memos->line_cursors[0]) *m =
        &memos->line_cursors[(code >> 4) * 0x9e3779b97f4a7c15ull >> (64 - MEMPROF_LINE_MEMO_BITS)];
    int64_t at_unit = py.layout.minor <= 10 ? 2 * unit : unit;   /* where `start` counts bytes */
    if (m->code != code || m->generation != generation || m->cursor.start > at_unit) {
        m->code = code;
        m->generation = generation;
        m->cursor = *fresh;
    }
    return &m->cursor;
}

/* What a code object holds that its frames' records are made of. */
struct code_fields {
    uintptr_t name, file, table;   /* table: the line table, a bytes object */
    int32_t first_line;
};

static inline struct code_fields code_fields_of(uintptr_t code)
{
    const struct py_layout *L = &py.layout;
    return (struct code_fields){load_ptr(code + L->code_name), load_ptr(code + L->code_filename),
                                load_ptr(code + L->code_linetable),
                                load_i32(code + L->code_firstlineno)};
}

/* ---- the frame cache -----------------------------------------------------------
 * A frame's record by (code object, code unit), so that a frame seen before costs a
 * probe instead of hashing its strings and decoding its line table.  A code object is
 * immutable while it lives, but its address is reused once it is freed, so every
 * code object's deallocation moves a generation counter of its address (the code
 * type's tp_dealloc is wrapped: code_freed), and an entry holds only while that
 * generation is the one it was made under.  A frame that is running keeps its code
 * object alive, so no generation can move under the sample that reads it.
 * Direct-mapped; each entry under a sequence number: a writer makes it odd, fills
 * the entry in and makes it even again, a reader takes what it read only if it saw
 * the same even number before and after, and a writer that finds an entry being
 * written leaves it be. */
#define FRAME_CACHE_BITS 14
#define CODE_GENERATION_BITS 12
#define TP_DEALLOC 48                /* PyTypeObject.tp_dealloc, 3.9 to 3.13 */

struct frame_cache_entry {
    _Atomic uint64_t seq;
    _Atomic uint64_t code, unit;      /* the key */
    _Atomic uint64_t record;          /* the record's id, the generation << 32 */
};

static struct frame_cache_entry *frame_cache;
static _Atomic uint32_t code_generations[1u << CODE_GENERATION_BITS];
static void (*code_dealloc)(uintptr_t code);   /* the interpreter's own */

static inline _Atomic uint32_t *generation_of(uintptr_t code)
{
    return &code_generations[(code >> 4) * 0x9e3779b97f4a7c15ull >> (64 - CODE_GENERATION_BITS)];
}

/* Runs in the thread that frees the code object, before its memory is freed. */
static void code_freed(uintptr_t code)
{
    atomic_fetch_add_explicit(generation_of(code), 1, memory_order_release);
    code_dealloc(code);
}

/* Once per process: the hook stays for its life (forks inherit it), so generations
 * are counted between windows too. */
static void watch_code_frees(void)
{
    _Atomic(void (*)(uintptr_t)) *slot = (void *)(py.code_type + TP_DEALLOC);
    void (*current)(uintptr_t) = atomic_load(slot);
    if (current == code_freed)
        return;
    code_dealloc = current;
    atomic_store(slot, code_freed);
}

static inline struct frame_cache_entry *cache_entry(uintptr_t code, uint64_t unit)
{
    uint64_t h = (code ^ unit * 0x9e3779b97f4a7c15ull) * 0xff51afd7ed558ccdull;
    return &frame_cache[h >> (64 - FRAME_CACHE_BITS)];
}

/* The cached record of a frame, or UINT32_MAX. */
static uint32_t cache_lookup(uintptr_t code, uint64_t unit, uint32_t generation)
{
    struct frame_cache_entry *e = cache_entry(code, unit);
    uint64_t seq = atomic_load_explicit(&e->seq, memory_order_acquire);
    if ((seq & 1) || atomic_load_explicit(&e->code, memory_order_relaxed) != code ||
        atomic_load_explicit(&e->unit, memory_order_relaxed) != unit)
        return UINT32_MAX;
    uint64_t record = atomic_load_explicit(&e->record, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);   /* the fields are read before seq again */
    if (atomic_load_explicit(&e->seq, memory_order_relaxed) != seq ||
        (uint32_t)(record >> 32) != generation)
        return UINT32_MAX;
    return (uint32_t)record;
}

static void cache_store(uintptr_t code, uint64_t unit, uint32_t generation, uint32_t record)
{
    struct frame_cache_entry *e = cache_entry(code, unit);
    uint64_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if ((seq & 1) || !atomic_compare_exchange_strong(&e->seq, &seq, seq + 1))
        return;   /* another thread is writing it */
    atomic_thread_fence(memory_order_release);   /* seq is odd before any field changes */
    atomic_store_explicit(&e->code, code, memory_order_relaxed);
    atomic_store_explicit(&e->unit, unit, memory_order_relaxed);
    atomic_store_explicit(&e->record, record | (uint64_t)generation << 32, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
}

/* The record id of a frame running `code` at code unit `unit`, whose generation is
 * `generation`; UINT32_MAX when it cannot be read or the tables are full. */
static uint32_t frame_record(uintptr_t code, int64_t unit, uint32_t generation)
{
    /* A hit needs no look at the code object: an entry is stored only for a code
     * object, and its generation changes when that object is freed.  An address that
     * cannot be one is refused first, as an empty entry holds code 0. */
    if (!may_be_object(code))
        return UINT32_MAX;
    uint32_t id = cache_lookup(code, (uint64_t)unit, generation);
    if (id != UINT32_MAX)
        return id;
    if (!is_object_of(code, py.code_type))
        return UINT32_MAX;
    struct code_fields c = code_fields_of(code);
    struct py_record r = {intern_str(c.name), intern_str(c.file), -1, c.first_line};
    if (r.name == UINT32_MAX || r.file == UINT32_MAX || r.first_line <= 0)
        return UINT32_MAX;   /* 0: the interpreter's own shims (3.13's __init__ cleanup) */
    if (is_object_of(c.table, py.bytes_type)) {
        struct memprof_line_cursor fresh;
        r.line = line_of((const unsigned char *)(c.table + BYTES_DATA),
                         *(const int64_t *)(c.table + VAR_SIZE), unit,
                         line_cursor_for(code, generation, unit, r.first_line, &fresh));
    }
    id = intern(&records, &r, sizeof r);
    if (id != UINT32_MAX)
        cache_store(code, (uint64_t)unit, generation, id);
    return id;
}

/* frame_record's, counting a frame it could not give while a table was full. */
static uint32_t frame_record_or_left_out(uintptr_t code, int64_t unit, uint32_t generation)
{
    uint32_t id = frame_record(code, unit, generation);
    if (id == UINT32_MAX && (atomic_load_explicit(&strings.full, memory_order_relaxed) ||
                             atomic_load_explicit(&records.full, memory_order_relaxed)))
        atomic_fetch_add_explicit(&frames_left_out, 1, memory_order_relaxed);
    return id;
}

/* ---- the walk -----------------------------------------------------------------
 * The frames are read first, then their records looked up: the cache entries and
 * code objects of all of them are fetched at once instead of one miss after the other. */
struct py_stack {
    uintptr_t codes[MEMPROF_MAX_PY_FRAMES];       /* innermost first */
    int64_t units[MEMPROF_MAX_PY_FRAMES];
    uint8_t group_end[MEMPROF_MAX_PY_FRAMES + 1];  /* one group per native evaluation call */
    int n, groups;
};

static void end_group(struct py_stack *s)
{
    if (s->groups < MEMPROF_MAX_PY_FRAMES + 1)
        s->group_end[s->groups++] = (uint8_t)s->n;
}

static void add_frame(struct py_stack *s, uintptr_t code, int64_t unit)
{
    if (s->n < MEMPROF_MAX_PY_FRAMES) {
        s->codes[s->n] = code;
        s->units[s->n++] = unit;
    }
}

static void walk(uintptr_t tstate, struct py_stack *s)
{
    const struct py_layout *L = &py.layout;
    uintptr_t f = load_ptr(tstate + L->tstate_frame);
    if (L->cframe_current >= 0)
        f = f == 0 ? 0 : load_ptr(f + (uint32_t)L->cframe_current);
    /* bounded: a chain is finite, but a deep recursion need not be walked to its end */
    for (int seen = 0; f != 0 && (f & 7) == 0 && seen < 4 * MEMPROF_MAX_PY_FRAMES &&
                       s->n < MEMPROF_MAX_PY_FRAMES; seen++) {
        uintptr_t code = load_ptr(f + L->frame_code);
        if (L->minor <= 10) {   /* f_lasti: bytes up to 3.9, code units in 3.10 */
            int32_t lasti = load_i32(f + L->frame_instr);
            add_frame(s, code, L->minor == 9 && lasti >= 0 ? lasti / 2 : lasti);
            end_group(s);
        } else if (L->frame_owner >= 0 &&
                   *(const uint8_t *)(f + (uint32_t)L->frame_owner) == FRAME_OWNED_BY_CSTACK) {
            end_group(s);
        } else {
            uintptr_t instr = load_ptr(f + L->frame_instr);
            add_frame(s, code, ((intptr_t)instr - (intptr_t)(code + L->code_adaptive)) / 2);
            if (L->frame_is_entry >= 0 && *(const uint8_t *)(f + (uint32_t)L->frame_is_entry))
                end_group(s);
        }
        f = load_ptr(f + L->frame_previous);
    }
    if (s->groups == 0 || s->group_end[s->groups - 1] != s->n)
        end_group(s);
}

/* The thread's last walk, root first, gives the records of the frames from the root
 * that are as they were (most of them: a program's outer frames wait in their calls
 * while it samples in the inner ones), with no look into the shared frame cache.  A
 * record is a function of the code object and the code unit alone, so an entry holds
 * while neither generation moved, whichever thread made it. */
typedef __typeof__(((struct memprof_memos *)0)->python_walk) python_walk_memo;

/* How many frames from the root the last walk had at the same depths. */
static int shared_with(const python_walk_memo *last, const struct py_stack *s, uint32_t records_gen)
{
    int shared = 0;
    if (last == NULL || last->generation != records_gen)
        return 0;
    int limit = s->n < (int)last->n ? s->n : (int)last->n;
    while (shared < limit && last->codes[shared] == s->codes[s->n - 1 - shared] &&
           last->units[shared] == s->units[s->n - 1 - shared])
        shared++;
    return shared;
}

/* Frame k's record: from the last walk where it is one of the shared frames, else
 * from the frame cache; written into the memo at its depth from the root. */
static uint32_t record_of(python_walk_memo *last, const struct py_stack *s, int k, int shared)
{
    uintptr_t code = s->codes[k];
    int root_at = s->n - 1 - k;
    uint32_t generation = atomic_load_explicit(generation_of(code), memory_order_acquire);
    if (root_at < shared && last->code_generations[root_at] == generation)
        return last->records[root_at];
    uint32_t id = frame_record_or_left_out(code, s->units[k], generation);
    if (last != NULL) {
        last->codes[root_at] = code;
        last->units[root_at] = s->units[k];
        last->records[root_at] = id;
        last->code_generations[root_at] = generation;
    }
    return id;
}

int memprof_python_chain(uintptr_t *chain, int cap)
{
    if (!py.is_initialized())
        return 0;
    uintptr_t tstate = (uintptr_t)py.this_thread_state();
    if (tstate == 0 || (tstate & 7) != 0)
        return 0;
    struct py_stack s;
    s.n = s.groups = 0;
    walk(tstate, &s);
    python_walk_memo *last = memprof_thread.memos ? &memprof_thread.memos->python_walk : NULL;
    uint32_t records_gen = atomic_load_explicit(&records_generation, memory_order_relaxed);
    int shared = shared_with(last, &s, records_gen);
    for (int k = 0; k < s.n - shared; k++) {   /* never faults: a prefetch of a bad address is dropped */
        __builtin_prefetch(generation_of(s.codes[k]));
        __builtin_prefetch(cache_entry(s.codes[k], (uint64_t)s.units[k]));
    }
    int n = 0, frames = 0, k = 0;
    for (int g = 0; g < s.groups && n < cap; g++) {
        for (; k < s.group_end[g] && n < cap; k++) {
            uint32_t id = record_of(last, &s, k, shared);
            if (id != UINT32_MAX) {
                chain[n++] = MEMPROF_PY_FRAME_BASE + id;
                frames++;
            }
        }
        if (n < cap)
            chain[n++] = MEMPROF_PY_GROUP_END;
    }
    if (last != NULL) {   /* a walk cut short left the memo's outer frames unwritten */
        last->n = k == s.n ? (uint32_t)s.n : 0;
        last->generation = records_gen;
    }
    return frames > 0 ? n : 0;
}

uintptr_t memprof_python_eval_hi(void) { return py.eval_hi; }

/* ---- set-up --------------------------------------------------------------------- */
static bool layout_from_debug_offsets(uintptr_t runtime)
{
    if (runtime == 0 || memcmp((const void *)runtime, DEBUG_COOKIE, 8) != 0)
        return false;
    uint64_t version = *(const uint64_t *)(runtime + DBG_VERSION);
    if ((version >> 16) != 0x030d)   /* the struct itself changes with the minor version */
        return false;
#define DBG(field) ((uint32_t)*(const uint64_t *)(runtime + (field)))
    py.layout = (struct py_layout){
        13, DBG(DBG_THREAD_CURRENT_FRAME), -1, DBG(DBG_FRAME_PREVIOUS),
        DBG(DBG_FRAME_EXECUTABLE), DBG(DBG_FRAME_INSTR_PTR), (int32_t)DBG(DBG_FRAME_OWNER), -1,
        DBG(DBG_CODE_QUALNAME), DBG(DBG_CODE_FILENAME), DBG(DBG_CODE_LINETABLE),
        DBG(DBG_CODE_FIRSTLINENO), DBG(DBG_CODE_ADAPTIVE), DBG(DBG_UNICODE_ASCII_SIZE),
        /* PyCompactUnicodeObject after PyASCIIObject: utf8_length, utf8 */
        DBG(DBG_UNICODE_ASCII_SIZE), DBG(DBG_UNICODE_ASCII_SIZE) + 8,
        DBG(DBG_UNICODE_ASCII_SIZE) + 16};
#undef DBG
    snprintf(py.version, sizeof py.version, "3.13.%u", (unsigned)(version >> 8 & 0xff));
    return true;
}

/* "3.<minor>.<micro>" from Py_Version (3.11+) or Py_GetVersion's text. */
static unsigned find_minor(void)
{
    const unsigned long *hex = dlsym(RTLD_DEFAULT, "Py_Version");
    if (hex != NULL) {
        snprintf(py.version, sizeof py.version, "%lu.%lu.%lu", *hex >> 24 & 0xff, *hex >> 16 & 0xff,
                 *hex >> 8 & 0xff);
        return *hex >> 24 == 3 ? (unsigned)(*hex >> 16 & 0xff) : 0;
    }
    const char *(*get_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
    unsigned major = 0, minor = 0, micro = 0;
    if (get_version == NULL || sscanf(get_version(), "%u.%u.%u", &major, &minor, &micro) < 2)
        return 0;
    snprintf(py.version, sizeof py.version, "%u.%u.%u", major, minor, micro);
    return major == 3 ? minor : 0;
}

void memprof_python_init(void)
{
    if (memprof_python_eval_lo != 0)
        return;
    void *eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (eval == NULL || dladdr1(eval, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL)
        return;
    py.is_initialized = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    py.this_thread_state = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    py.code_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyCode_Type");
    py.unicode_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyUnicode_Type");
    py.bytes_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyBytes_Type");
    if (!py.is_initialized || !py.this_thread_state || !py.code_type || !py.unicode_type ||
        !py.bytes_type)
        return;
    unsigned minor = find_minor();
    bool known = false;
    if (minor == 13)
        known = layout_from_debug_offsets((uintptr_t)dlsym(RTLD_DEFAULT, "_PyRuntime"));
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].minor == minor) {
            py.layout = layouts[i];
            known = true;
        }
    if (!known)
        return;   /* another version: native frames only */
    /* Room in proportion to the stacks' (MEMPROF_STACK_MEMORY): 512 MiB's 2^23 stacks
     * give 2^20 lines and 2^18 names and files; touched only as they fill. */
    uint32_t n_records = memprof_cfg.max_stacks >> 3, n_strings = memprof_cfg.max_stacks >> 5;
    n_records = n_records > 1u << 16 ? n_records : 1u << 16;
    n_strings = n_strings > 1u << 14 ? n_strings : 1u << 14;
    if (frame_cache == NULL &&   /* mapped last: all or none of the tables are there */
        (!intern_init(&strings, n_strings, (uint64_t)n_strings << 7) ||
         !intern_init(&records, n_records, (uint64_t)sizeof(struct py_record) * n_records) ||
         (frame_cache = memprof_map(sizeof(*frame_cache) << FRAME_CACHE_BITS)) == NULL))
        return;
    watch_code_frees();
    py.eval_lo = (uintptr_t)eval;
    py.eval_hi = py.eval_lo + sym->st_size;
    __atomic_store_n(&memprof_python_eval_lo, py.eval_lo, __ATOMIC_RELEASE);
}

void memprof_python_after_fork(void)
{
    if (strings.pool == NULL)
        return;
    intern_reset(&strings);
    intern_reset(&records);
    atomic_store(&frames_left_out, 0);
    atomic_fetch_add(&records_generation, 1);
    memprof_zero_pages(frame_cache, sizeof(*frame_cache) << FRAME_CACHE_BITS);
}

const char *memprof_python_version(void)
{
    return memprof_python_eval_lo != 0 ? py.version : NULL;
}

uint64_t memprof_python_frames_left_out(void)
{
    return atomic_load_explicit(&frames_left_out, memory_order_relaxed);
}

uint32_t memprof_python_records(void)
{
    return atomic_load_explicit(&records.used, memory_order_acquire);
}

bool memprof_python_record(uint32_t id, struct memprof_python_frame *out)
{
    const char *data;
    uint32_t len;
    struct py_record r;
    if (!intern_get(&records, id, &data, &len) || len != sizeof r)
        return false;
    memcpy(&r, data, sizeof r);
    out->line = r.line;
    out->first_line = r.first_line;
    return intern_get(&strings, r.name, &out->name, &out->name_len) &&
           intern_get(&strings, r.file, &out->file, &out->file_len);
}
