/* A live window's snapshot for a reader that follows it (docs/file-formats.md, "The
 * window's snapshot").  The tree, the stacks and the Python frame records only grow and
 * never change, so a reader that kept the last snapshot needs only those made since; of
 * the counts, only the stacks whose counts moved: a digest of each stack's counts as
 * last written tells them.  The digest covers bytes as well as objects: the live table is
 * read a stripe at a time while the program runs, so a read can see a block freed and miss
 * one of another size allocated on the same stack, its counts of objects right and its
 * bytes not, until a later read.  What was written is kept here, for one reader (a
 * window's readers take it in turn: the view's lock); a reader that names another
 * snapshot than the last gets them all again. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/upcalls.h"
#include "memprof.h"
#include "tables/frame_tree.h"
#include "tables/live_bytes.h"
#include "tables/stack_table.h"
#include "unwind/python_frames.h"
#include "writers/event_log.h"
#include "writers/file_out.h"
#include "writers/heap_writer.h"
#include "writers/window_snapshot.h"

/* What the last snapshot held (the window's lock held). */
static struct {
    uint64_t token;          /* 0: none */
    uint32_t window, generation;
    uint32_t frames, nodes, stacks, records;   /* ids below these were written */
    uint64_t maps_hash;      /* of the code mappings written */
    uint64_t *seen;          /* per stack id: the digest of its counts, as written */
    size_t seen_cap;         /* entries mapped */
    uint32_t serial;
    char prefix[MEMPROF_PATH_MAX];   /* where the reader takes them */
} last;

void memprof_snapshot_release(void)
{
    memprof_unmap(last.seen, sizeof(uint64_t) * last.seen_cap);
    uint32_t serial = last.serial;
    memset(&last, 0, sizeof last);
    last.serial = serial;
}

int memprof_write_last_snapshot(const struct memprof_window_info *w)
{
    if (last.token == 0 || last.window != w->id)
        return 0;   /* no reader follows this window */
    char prefix[MEMPROF_PATH_MAX], path[MEMPROF_PATH_MAX];
    uint64_t token;
    strcpy(prefix, last.prefix);
    return memprof_write_snapshot(w, prefix, last.token, &token, path, sizeof path);
}

/* Room in `seen` for `stacks` entries, the ones there kept; false: no memory. */
static bool seen_room(uint32_t stacks)
{
    if (stacks <= last.seen_cap)
        return true;
    size_t cap = last.seen_cap ? last.seen_cap : 4096;
    while (cap < stacks)
        cap *= 2;
    uint64_t *grown = memprof_map(sizeof(uint64_t) * cap);
    if (grown == NULL)
        return false;
    if (last.seen != NULL) {
        memcpy(grown, last.seen, sizeof(uint64_t) * last.seen_cap);
        memprof_unmap(last.seen, sizeof(uint64_t) * last.seen_cap);
    }
    last.seen = grown;
    last.seen_cap = cap;
    return true;
}

static uint64_t seen_key(const struct memprof_counts *c, uint32_t id)
{
    struct memprof_stack_totals acc = memprof_acc_of(c, id);
    return memprof_totals_digest(memprof_totals_digest(0, &acc), memprof_live_of(c, id));
}

/* The map's lines of code backed by a file (those a reader names frames with), kept
 * in place at the start of t->maps; the FNV-1a hash of what is kept.  The rest (the
 * heap, anonymous mappings) comes and goes with every allocation of a large block. */
static uint64_t keep_code_mappings(struct memprof_proc_text *t)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    size_t kept = 0;
    for (size_t at = 0; at < t->maps_len;) {
        const char *line = t->maps + at;
        const char *end = memchr(line, '\n', t->maps_len - at);
        size_t len = end != NULL ? (size_t)(end - line) + 1 : t->maps_len - at;
        at += len;
        const char *perms = memchr(line, ' ', len);
        const char *path = line;   /* after the fifth field */
        for (int field = 0; field < 5 && path != NULL; field++) {
            path = memchr(path, ' ', len - (size_t)(path - line));
            while (path != NULL && path < line + len && *path == ' ')
                path++;
        }
        if (perms == NULL || perms + 3 >= line + len || perms[3] != 'x' || path == NULL ||
            path >= line + len || *path == '\n')
            continue;
        memmove(t->maps + kept, line, len);
        for (size_t i = 0; i < len; i++)
            hash = (hash ^ (uint8_t)t->maps[kept + i]) * 0x100000001b3ull;
        kept += len;
    }
    t->maps_len = kept;
    return hash;
}

/* The ids a snapshot holds: [from, to) of each table, and the stacks whose counts moved. */
struct span {
    uint64_t since;          /* the token of the snapshot this one follows; 0: none */
    uint32_t frames[2], nodes[2], stacks[2], records[2];
    uint32_t *changed, nchanged, estimated;
    bool maps;
};

static void put_header(struct memprof_out *o, const struct memprof_window_info *w,
                       const struct memprof_proc_text *text, const struct span *s,
                       uint64_t token)
{
    memprof_puts(o, "# mem_profiler " MEMPROF_VERSION "\n# pid: ");
    memprof_put_u64(o, (uint64_t)getpid());
    if (w->closed)   /* its last: the window ended, at the process's end */
        memprof_puts(o, "\n# ended: 1");
    memprof_puts(o, "\n");
    memprof_put_window_lines(o, w, text);
    memprof_puts(o, "# rates: host=");
    memprof_put_u64(o, w->rates.host);
    memprof_puts(o, " device=");
    memprof_put_u64(o, w->rates.device);
    memprof_puts(o, "\n");
    uint32_t used = memprof_upcalls.device_heaps_used() | 1u << HEAP_HOST;
    for (int heap = 0; heap < HEAP_COUNT; heap++) {
        if (!(used & 1u << heap))
            continue;
        struct memprof_live_bytes lb = memprof_live_bytes_of((enum memprof_heap)heap);
        memprof_puts(o, "# heap_figures: ");
        memprof_put_u64(o, (uint64_t)heap);
        memprof_puts(o, " ");
        memprof_puts(o, memprof_heap_names[heap]);
        memprof_puts(o, " live_bytes=");
        memprof_put_u64(o, lb.now > 0 ? (uint64_t)lb.now : 0);
        memprof_puts(o, " peak_live_bytes=");
        memprof_put_u64(o, lb.peak > 0 ? (uint64_t)lb.peak : 0);
        memprof_puts(o, " peak_time_ns=");
        memprof_put_u64(o, lb.peak_time_ns);
        memprof_puts(o, "\n");
    }
    const char *own_malloc = memprof_upcalls.own_malloc();
    if (own_malloc[0] != '\0') {
        memprof_puts(o, "# warning: ");
        memprof_put_escaped(o, own_malloc, strlen(own_malloc));
        memprof_puts(o, "\n");
    }
    memprof_put_python_header(o);
    for (uint32_t id = s->records[0]; id < s->records[1]; id++)
        memprof_put_python_record(o, id);
    if (s->maps)
        memprof_put_build_ids(o, text->exe);
    static const char *const names[] = {" frames=", " nodes=", " stacks=", " records="};
    const uint32_t *spans[] = {s->frames, s->nodes, s->stacks, s->records};
    memprof_puts(o, "# snapshot: token=");
    memprof_put_u64(o, token);
    memprof_puts(o, " since=");
    memprof_put_u64(o, s->since);
    for (int k = 0; k < 4; k++) {
        memprof_puts(o, names[k]);
        memprof_put_u64(o, spans[k][0]);
        memprof_puts(o, "-");
        memprof_put_u64(o, spans[k][1]);
    }
    memprof_puts(o, " changed=");
    memprof_put_u64(o, s->nchanged);
    memprof_puts(o, " estimates=");
    memprof_put_u64(o, s->estimated);
    memprof_puts(o, s->maps ? " maps=1\n" : " maps=0\n");
}

/* One array of `n` values of `width` bytes, value(k) each, byte-shuffled. */
static void put_array(struct memprof_out *o, uint32_t n, unsigned width,
                      uint64_t (*value)(uint32_t k, const void *arg), const void *arg)
{
    uint8_t *scratch = memprof_out_scratch(o, (size_t)n * width);
    if (scratch == NULL)
        return;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t v = value(k, arg);
        for (unsigned byte = 0; byte < width; byte++)
            scratch[(size_t)k * width + byte] = (uint8_t)(v >> (8 * byte));
    }
    memprof_put_planes(o, scratch, (size_t)n * width, width);
    memprof_unmap(scratch, (size_t)n * width);
}

/* What the span adds, one array at a time: entry k of `field`'s. */
enum added { FRAME, PARENT, NODE_FRAME, NATIVE, PYTHON, HEAP, LABEL };
struct added_array {
    const struct span *s;
    enum added field;
};

static uint64_t added_at(uint32_t k, const void *arg)
{
    const struct added_array *a = arg;
    const struct span *s = a->s;
    if (a->field == FRAME)
        return memprof_tree_frame(s->frames[0] + k);
    if (a->field == PARENT || a->field == NODE_FRAME) {
        struct memprof_node node = memprof_tree_node(s->nodes[0] + k);
        return a->field == PARENT ? node.parent : node.frame;
    }
    struct memprof_stack stack = memprof_stack_get(s->stacks[0] + k);
    return a->field == NATIVE ? stack.native
         : a->field == PYTHON ? stack.python
         : a->field == HEAP   ? stack.heap
                              : stack.label;
}

/* The counts of the changed stacks, one field at a time. */
struct changed_counts {
    const struct span *s;
    const struct memprof_counts *c;
    int field;
};

static uint64_t changed_at(uint32_t k, const void *arg)
{
    const struct changed_counts *cc = arg;
    uint32_t id = cc->s->changed[k];
    const struct memprof_stack_totals *cur = memprof_live_of(cc->c, id);
    struct memprof_stack_totals acc = memprof_acc_of(cc->c, id);
    switch (cc->field) {
    case 0: return id;
    case 1: return cur->objs;
    case 2: return cur->bytes;
    case 3: return acc.objs;
    default: return acc.bytes;
    }
}

static uint64_t rate_of(const struct memprof_window_info *w, uint32_t id)
{
    return memprof_heap_rate(w->rates, memprof_stack_heap(id));
}

static void put_arrays(struct memprof_out *o, const struct memprof_window_info *w,
                       const struct span *s, const struct memprof_counts *c)
{
    static const struct {
        enum added field;
        unsigned width;
    } added[] = {{FRAME, 8}, {PARENT, 4}, {NODE_FRAME, 4}, {NATIVE, 4},
                 {PYTHON, 4}, {HEAP, 4},   {LABEL, 8}};
    for (size_t k = 0; k < sizeof added / sizeof added[0]; k++) {
        enum added field = added[k].field;
        uint32_t n = field == FRAME                      ? s->frames[1] - s->frames[0]
                     : field == PARENT || field == NODE_FRAME ? s->nodes[1] - s->nodes[0]
                                                              : s->stacks[1] - s->stacks[0];
        put_array(o, n, added[k].width, added_at, &(struct added_array){s, field});
    }
    for (int field = 0; field < 5; field++)
        put_array(o, s->nchanged, field == 0 ? 4 : 8, changed_at,
                  &(struct changed_counts){s, c, field});
    for (int byte = 0; byte < 4; byte++)   /* the rows of the estimates written */
        for (uint32_t k = 0; k < s->nchanged; k++)
            if (!memprof_estimates_implied(c, s->changed[k], rate_of(w, s->changed[k])))
                memprof_put_byte(o, (uint8_t)(k >> (8 * byte)));
    for (uint32_t k = 0; k < s->nchanged; k++) {
        uint32_t id = s->changed[k];
        if (memprof_estimates_implied(c, id, rate_of(w, id)))
            continue;
        const struct memprof_stack_totals *cur = memprof_live_of(c, id);
        struct memprof_stack_totals acc = memprof_acc_of(c, id);
        double est[4] = {cur->est_objs, cur->est_bytes, acc.est_objs, acc.est_bytes};
        memprof_put(o, (const char *)est, sizeof est);
    }
}

/* The span of this snapshot: since the last one, where `since` names it, else from the
 * start; the stacks whose counts moved, into a mapping of changed's (NULL: no memory). */
static bool find_span(struct span *s, const struct memprof_window_info *w,
                      const struct memprof_counts *c, uint64_t since)
{
    bool delta = since != 0 && since == last.token && last.window == w->id &&
                 last.generation == memprof_tree_generation();
    if (!delta) {
        memprof_snapshot_release();
        last.generation = memprof_tree_generation();
    }
    *s = (struct span){
        .since = delta ? since : 0,
        /* read in this order, each after what names it (select_for_heap, heap_writer.c) */
        .stacks = {last.stacks, c->nstacks},
        .nodes = {delta ? last.nodes : 1, memprof_tree_nodes()},
        .frames = {last.frames, memprof_tree_frames()},
        .records = {last.records, memprof_python_records()},
    };
    struct memprof_python_frame f;
    for (uint32_t id = s->records[0]; id < s->records[1]; id++)
        if (!memprof_python_record(id, &f)) {   /* being made: the next snapshot's */
            s->records[1] = id;
            break;
        }
    if (!seen_room(c->nstacks))
        return false;
    s->changed = memprof_map(sizeof(uint32_t) * ((size_t)c->nstacks + 1));
    if (s->changed == NULL)
        return false;
    for (uint32_t id = 0; id < c->nstacks; id++)
        if (seen_key(c, id) != last.seen[id]) {
            s->changed[s->nchanged++] = id;
            if (!memprof_estimates_implied(c, id, rate_of(w, id)))
                s->estimated++;
        }
    return true;
}

/* What the file written holds is now the reader's. */
static void remember(const struct span *s, const struct memprof_window_info *w,
                     const struct memprof_counts *c, uint64_t maps_hash, uint64_t token)
{
    for (uint32_t k = 0; k < s->nchanged; k++)
        last.seen[s->changed[k]] = seen_key(c, s->changed[k]);
    last.token = token;
    last.window = w->id;
    last.frames = s->frames[1];
    last.nodes = s->nodes[1];
    last.stacks = s->stacks[1];
    last.records = s->records[1];
    last.maps_hash = maps_hash;
}

/* The reader's prefix, remembered for the window's last snapshot (window_lock held). */
static void remember_prefix(const char *prefix)
{
    if (strlen(prefix) < sizeof last.prefix)
        strcpy(last.prefix, prefix);
}

int memprof_write_snapshot(const struct memprof_window_info *w, const char *prefix,
                           uint64_t since, uint64_t *token, char *path, size_t path_len)
{
    int n = snprintf(path, path_len, "%s%d.0000.snapshot", prefix, (int)getpid());
    if (n < 0 || (size_t)n >= path_len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memprof_remove_dead_temps_beside(prefix);
    struct memprof_proc_text text;
    if (!memprof_proc_text_read(&text)) {
        int saved = errno;
        memprof_proc_text_release(&text);
        errno = saved;
        return -1;   /* errno says why: without the map no address could be named */
    }
    uint64_t maps_hash = keep_code_mappings(&text);
    struct memprof_counts c;
    struct span s = {.changed = NULL};
    int rc = -1;
    if (!memprof_counts_gather(&c, w) || !find_span(&s, w, &c, since)) {
        errno = ENOMEM;
    } else {
        s.maps = maps_hash != last.maps_hash || s.frames[0] == 0;
        uint64_t next = (uint64_t)w->id << 32 | ++last.serial;
        struct memprof_out o;
        if (memprof_out_begin(&o, path, "memprof_snapshot/1\n") == 0) {
            put_header(&o, w, &text, &s, next);
            put_arrays(&o, w, &s, &c);
            memprof_puts(&o, "\nMAPPED_LIBRARIES:\n");
            if (s.maps)
                memprof_put(&o, text.maps, text.maps_len);
            rc = memprof_out_end(&o, path);
        }
        if (rc == 0) {
            remember(&s, w, &c, maps_hash, next);
            remember_prefix(prefix);
            *token = next;
        }
    }
    int saved = errno;
    memprof_unmap(s.changed, sizeof(uint32_t) * ((size_t)c.nstacks + 1));
    memprof_counts_release(&c);
    memprof_proc_text_release(&text);
    errno = saved;
    return rc;
}
