/* The .heap writer: the header's `#` lines, the calling-context tree and the
 * counters per stack, zstd-compressed (ARCHITECTURE.md, "The .heap file";
 * docs/file-formats.md), into a file of file_out.c's. */
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/upcalls.h"
#include "memprof.h"
#include "tables/frame_tree.h"
#include "tables/lifetimes.h"
#include "tables/live_bytes.h"
#include "tables/live_table.h"
#include "tables/notes.h"
#include "tables/stack_table.h"
#include "unwind/python_frames.h"
#include "writers/event_log.h"
#include "writers/file_out.h"
#include "writers/heap_writer.h"

const char *const memprof_heap_names[HEAP_COUNT] = {
    [HEAP_HOST] = "host", [HEAP_CUDA] = "cuda", [HEAP_CUDA_HOST] = "cuda_host",
    [HEAP_ACL] = "acl", [HEAP_ACL_HOST] = "acl_host", [HEAP_HAL] = "hal",
    [HEAP_CUDA_SEGMENTS] = "cuda_segments",
};

/* "<line>time_ns=T bytes=N": how a noted event's line begins. */
static void put_note_start(struct memprof_out *o, const char *line, const struct memprof_note *note)
{
    memprof_puts(o, line);
    memprof_puts(o, "time_ns=");
    memprof_put_u64(o, note->time_ns);
    memprof_puts(o, " bytes=");
    memprof_put_u64(o, note->size);
}

/* " stack=<id>\n": how it ends, with its stack (-1 when the stack table was full). */
static void put_note_stack(struct memprof_out *o, uint32_t stack)
{
    memprof_puts(o, " stack=");
    if (stack == STACK_NONE)
        memprof_puts(o, "-1");
    else
        memprof_put_u64(o, stack);
    memprof_puts(o, "\n");
}

/* The heap's noted events (notes.c): `# failed_allocs: N` (all of them) and a
 * `# failed_alloc:` line for each kept; a `# foreign:` line for each range
 * registered or opened now, and `# foreign_unrecorded: N` when some found no
 * room.  jeprof skips `#` lines. */
static void put_notes(struct memprof_out *o, enum memprof_heap heap)
{
    static const char *const kinds[] = {[FOREIGN_HOST_REGISTER] = "host_register",
                                        [FOREIGN_IPC_OPEN] = "ipc_open"};
    struct memprof_note notes[MEMPROF_MAX_NOTES];
    uint32_t missed, n = memprof_notes_of(NOTES_FAILED, heap, notes, &missed);
    if (n + (uint64_t)missed > 0) {
        memprof_puts(o, "# failed_allocs: ");
        memprof_put_u64(o, n + (uint64_t)missed);
        memprof_puts(o, "\n");
    }
    for (uint32_t i = 0; i < n; i++) {
        put_note_start(o, "# failed_alloc: ", &notes[i]);
        memprof_puts(o, " error=");
        memprof_put_u64(o, (uint64_t)(int64_t)notes[i].error);
        put_note_stack(o, notes[i].stack);
    }
    n = memprof_notes_of(NOTES_FOREIGN, heap, notes, &missed);
    if (missed > 0) {
        memprof_puts(o, "# foreign_unrecorded: ");
        memprof_put_u64(o, missed);
        memprof_puts(o, "\n");
    }
    for (uint32_t i = 0; i < n; i++) {
        put_note_start(o, "# foreign: ", &notes[i]);
        memprof_puts(o, " kind=");
        memprof_puts(o, kinds[notes[i].kind]);
        memprof_puts(o, " address");
        memprof_put_hex(o, '=', notes[i].address);
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

static bool has_counts(const struct memprof_counts *c, uint32_t id)
{
    return memprof_acc_of(c, id).objs != 0 || memprof_live_of(c, id)->objs != 0;
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

static bool select_for_heap(struct selection *sel, const struct memprof_counts *c, enum memprof_heap heap)
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


/* The records the heap's selected frames name: a device heap's few stacks do not carry
 * the host's thousands.  With an event log, every record: the log's stacks, of every
 * heap, are named from the host heap's file. */
static void put_python_frames(struct memprof_out *o, const struct selection *sel)
{
    if (!memprof_put_python_header(o))
        return;
    uint32_t n = memprof_python_records();
    if (memprof_log_base() != NULL) {
        for (uint32_t id = 0; id < n; id++)
            memprof_put_python_record(o, id);
        return;
    }
    for (uint32_t frame = 0; frame < sel->nframes; frame++) {
        uintptr_t address = sel->frame_row[frame] != 0 ? memprof_tree_frame(frame) : 0;
        if (address >= MEMPROF_PY_FRAME_BASE && address - MEMPROF_PY_FRAME_BASE < n)
            memprof_put_python_record(o, (uint32_t)(address - MEMPROF_PY_FRAME_BASE));
    }
}

/* What the tree's arrays are made of: for each id below `end`, whether it has a row
 * in the file and then its value. */
struct column {
    const struct selection *sel;
    const struct memprof_counts *c;
    uint32_t end;
    bool (*value)(const struct column *col, uint32_t id, uint64_t *v);
    int field;   /* which of a stack's values */
};


/* An array of `rows` `width`-byte values, byte-shuffled.  The values are read once,
 * into a scratch copy of the column, not once per byte. */
static void put_column(struct memprof_out *o, struct column col, unsigned width, uint32_t rows)
{
    size_t bytes = (size_t)rows * width;
    uint8_t *scratch = memprof_out_scratch(o, bytes);
    if (bytes > 0 && scratch == NULL)
        return;
    size_t at = 0;
    for (uint32_t id = 0; id < col.end && at < bytes; id++) {
        uint64_t v;
        if (col.value(&col, id, &v))
            for (unsigned byte = 0; byte < width; byte++)
                scratch[at++] = (uint8_t)(v >> (8 * byte));
    }
    memprof_put_planes(o, scratch, at, width);
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
    const struct memprof_stack_totals *cur = memprof_live_of(col->c, id);
    switch (col->field) {
    case 0: *v = id; break;
    case 1: *v = col->sel->node_row[memprof_stack_get(id).native]; break;
    case 2: *v = col->sel->node_row[memprof_stack_get(id).python]; break;
    case 3: *v = cur->objs; break;
    case 4: *v = cur->bytes; break;
    case 5: *v = memprof_acc_of(col->c, id).objs; break;
    case 6: *v = memprof_acc_of(col->c, id).bytes; break;
    default: *v = memprof_stack_get(id).label; break;
    }
    return true;
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

static bool start_figures(struct memprof_out *o, const struct selection *sel, struct stack_figures *f)
{
    *f = (struct stack_figures){.cap = (size_t)sel->stacks + 1};
    f->row = memprof_out_scratch(o, sizeof(*f->row) * f->cap);
    f->samples = memprof_out_scratch(o, sizeof(*f->samples) * f->cap);
    f->bytes = memprof_out_scratch(o, sizeof(*f->bytes) * f->cap);
    f->est = memprof_out_scratch(o, sizeof(*f->est) * 2 * f->cap);
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
static bool gather_peak(struct memprof_out *o, const struct selection *sel, const struct memprof_counts *c,
                        enum memprof_heap heap, struct stack_figures *f, int64_t *at)
{
    if (!start_figures(o, sel, f))
        return false;
    struct memprof_stack_live *rows = memprof_out_scratch(o, sizeof(*rows) * f->cap);
    if (o->failed) {
        release_figures(f);
        return false;
    }
    int64_t n = memprof_live_peak_rows(heap, rows, f->cap, at);
    struct memprof_live_bytes figure = memprof_live_bytes_of(heap);
    if (n < 0)
        *at = figure.now;
    if (n < 0 && memprof_log_base() != NULL && figure.now < figure.peak)
        n = 0;
    for (int64_t i = 0; i < n; i++)
        add_figures(f, sel, rows[i].stack,
                    (struct memprof_stack_totals){rows[i].samples, rows[i].bytes,
                                                  rows[i].est_objs, rows[i].est_bytes});
    for (uint32_t id = 0; n < 0 && id < sel->nstacks; id++)
        add_figures(f, sel, id, *memprof_live_of(c, id));
    memprof_unmap(rows, sizeof(*rows) * f->cap);
    return true;
}

/* At the program's end, where it is looked for (at rate 1: each sample stands for
 * itself), the stacks' samples nothing points to. */
static bool gather_unreachable(struct memprof_out *o, const struct selection *sel,
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

static void put_figures(struct memprof_out *o, const struct stack_figures *f)
{
    memprof_put_planes(o, (const uint8_t *)f->row, sizeof(*f->row) * f->n, sizeof(*f->row));
    memprof_put_planes(o, (const uint8_t *)f->samples, sizeof(*f->samples) * f->n, sizeof(*f->samples));
    memprof_put_planes(o, (const uint8_t *)f->bytes, sizeof(*f->bytes) * f->n, sizeof(*f->bytes));
    memprof_put(o, (const char *)f->est, sizeof(*f->est) * 2 * f->n);
}

/* The stacks' sampled frees by lifetime (lifetimes.c), where any was: their rows, then
 * each bin's counts, the temporary frees and their bytes, an array at a time (so the
 * scratch is one array's), each byte-shuffled.  The stacks are picked once, `ids`:
 * the counts of an open window may change between two arrays, its rows not. */
static void put_lifetimes(struct memprof_out *o, const struct selection *sel,
                          const struct memprof_counts *c, const uint32_t *ids, uint32_t n)
{
    for (int field = 0; field < MEMPROF_LIFETIME_BINS + 3; field++) {
        unsigned width = field == MEMPROF_LIFETIME_BINS + 2 ? 8 : 4;
        uint8_t *scratch = memprof_out_scratch(o, (size_t)width * n);
        if (o->failed)
            return;
        for (uint32_t i = 0; i < n; i++) {
            struct memprof_stack_lifetimes l;
            memprof_window_lifetimes_of(&c->acc, ids[i], &l);
            uint64_t v = field == 0                           ? sel->stack_row[ids[i]] - 1
                         : field <= MEMPROF_LIFETIME_BINS     ? l.freed[field - 1]
                         : field == MEMPROF_LIFETIME_BINS + 1 ? l.temporary
                                                              : l.temporary_bytes;
            memcpy(scratch + (size_t)width * i, &v, width);   /* little-endian */
        }
        memprof_put_planes(o, scratch, (size_t)width * n, width);
        memprof_unmap(scratch, (size_t)width * n);
    }
}

/* A device heap's live samples, each with its address (the live table's key without its
 * heap) and size, for the torch snapshot of a window without an event log: a first pass
 * counts them (row NULL), a second fills at most that many. */
struct live_blocks {
    const struct selection *sel;
    enum memprof_heap heap;
    uint32_t n, cap;
    uint32_t *row;
    uint64_t *address, *size;
};

static void take_block(uintptr_t key, uint32_t stack, uint64_t size, void *arg)
{
    struct live_blocks *lb = arg;
    if (memprof_live_key_heap(key) != lb->heap || stack >= lb->sel->nstacks ||
        lb->sel->stack_row[stack] == 0 || (lb->row != NULL && lb->n >= lb->cap))
        return;
    if (lb->row != NULL) {
        lb->row[lb->n] = lb->sel->stack_row[stack] - 1;
        lb->address[lb->n] = memprof_live_key_address(key);
        lb->size[lb->n] = size;
    }
    lb->n++;
}

static void release_blocks(struct live_blocks *lb)
{
    memprof_unmap(lb->row, sizeof(*lb->row) * ((size_t)lb->cap + 1));
    memprof_unmap(lb->address, sizeof(*lb->address) * ((size_t)lb->cap + 1));
    memprof_unmap(lb->size, sizeof(*lb->size) * ((size_t)lb->cap + 1));
}

/* A device heap's live blocks in a window without an event log (whose events hold
 * them); false: none to write (lb->n 0) or no memory. */
static bool gather_blocks(struct memprof_out *o, const struct selection *sel,
                          enum memprof_heap heap, struct live_blocks *lb)
{
    *lb = (struct live_blocks){.sel = sel, .heap = heap};
    if (heap == HEAP_HOST || memprof_log_base() != NULL)
        return false;
    memprof_live_foreach(take_block, lb);
    lb->cap = lb->n;
    lb->n = 0;
    lb->row = memprof_out_scratch(o, sizeof(*lb->row) * ((size_t)lb->cap + 1));
    lb->address = memprof_out_scratch(o, sizeof(*lb->address) * ((size_t)lb->cap + 1));
    lb->size = memprof_out_scratch(o, sizeof(*lb->size) * ((size_t)lb->cap + 1));
    if (o->failed)
        return false;
    memprof_live_foreach(take_block, lb);
    return true;
}

/* The selected stacks with sampled frees, into ids (room for sel->stacks), and how
 * many; -1 in a window with an event log, whose events time every free themselves. */
static int64_t pick_lifetimes(const struct selection *sel, const struct memprof_counts *c,
                              uint32_t *ids)
{
    if (memprof_log_base() != NULL || ids == NULL)
        return -1;
    struct memprof_stack_lifetimes l;
    uint32_t n = 0;
    for (uint32_t id = 0; id < sel->nstacks && n < sel->stacks; id++)
        if (sel->stack_row[id] != 0 && memprof_window_lifetimes_of(&c->acc, id, &l))
            ids[n++] = id;
    return n;
}

static void put_tree(struct memprof_out *o, const struct selection *sel, const struct memprof_counts *c,
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
        if (sel->stack_row[id] != 0 && !memprof_estimates_implied(c, id, rate))
            estimated[estimates++] = id;
    struct stack_figures peak, leaks;
    int64_t peak_at = 0;
    const struct memprof_unreachable *scanned = heap == HEAP_HOST ? w->unreachable : NULL;
    if (!gather_peak(o, sel, c, heap, &peak, &peak_at)) {
        memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
        return;
    }
    if (!gather_unreachable(o, sel, scanned, &leaks)) {
        release_figures(&peak);
        memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
        return;
    }
    if (peak.n > 0 && peak_at > 0) {   /* the moment the peak's stacks are of */
        memprof_puts(o, "# peak_stacks_bytes: ");
        memprof_put_u64(o, (uint64_t)peak_at);
        memprof_puts(o, "\n");
    }
    memprof_puts(o, "# tree: frames=");
    memprof_put_u64(o, sel->frames);
    memprof_puts(o, " nodes=");
    memprof_put_u64(o, sel->nodes);
    memprof_puts(o, " stacks=");
    memprof_put_u64(o, sel->stacks);
    memprof_puts(o, " estimates=");
    memprof_put_u64(o, estimates);
    memprof_puts(o, heap == HEAP_HAL ? " labels=1" : " labels=0");
    memprof_puts(o, " peaks=");
    memprof_put_u64(o, peak.n);
    if (scanned != NULL) {
        memprof_puts(o, " unreachable=");
        memprof_put_u64(o, leaks.n);
    }
    struct live_blocks blocks;
    bool has_blocks = gather_blocks(o, sel, heap, &blocks);
    size_t ids_bytes = sizeof(uint32_t) * ((size_t)sel->stacks + 1);
    uint32_t *lifetime_ids = memprof_out_scratch(o, ids_bytes);
    int64_t lifetimes = pick_lifetimes(sel, c, lifetime_ids);
    if (lifetimes >= 0) {
        memprof_puts(o, " lifetimes=");
        memprof_put_u64(o, (uint64_t)lifetimes);
    }
    if (has_blocks) {
        memprof_puts(o, " blocks=");
        memprof_put_u64(o, blocks.n);
    }
    memprof_puts(o, "\n");

    put_column(o, (struct column){sel, c, sel->nframes, frame_value, 0}, 8, sel->frames);
    put_column(o, (struct column){sel, c, sel->nnodes, node_up, 0}, 4, sel->nodes);
    put_column(o, (struct column){sel, c, sel->nnodes, node_frame, 0}, 4, sel->nodes);
    for (int field = 0; field < 7; field++)
        put_column(o, (struct column){sel, c, sel->nstacks, stack_value, field}, field < 3 ? 4 : 8,
                   sel->stacks);
    for (int byte = 0; byte < 4; byte++)
        for (uint32_t i = 0; i < estimates; i++)
            memprof_put_byte(o, (uint8_t)((sel->stack_row[estimated[i]] - 1) >> (8 * byte)));
    for (uint32_t i = 0; i < estimates; i++) {
        uint32_t id = estimated[i];
        const struct memprof_stack_totals *cur = memprof_live_of(c, id);
        struct memprof_stack_totals acc = memprof_acc_of(c, id);
        double est[4] = {cur->est_objs, cur->est_bytes, acc.est_objs, acc.est_bytes};
        memprof_put(o, (const char *)est, sizeof est);
    }
    memprof_unmap(estimated, sizeof(uint32_t) * ((size_t)sel->nstacks + 1));
    if (heap == HEAP_HAL)
        put_column(o, (struct column){sel, c, sel->nstacks, stack_value, 7}, 8, sel->stacks);
    put_figures(o, &peak);
    put_figures(o, &leaks);
    if (lifetimes > 0)
        put_lifetimes(o, sel, c, lifetime_ids, (uint32_t)lifetimes);
    memprof_unmap(lifetime_ids, ids_bytes);
    if (has_blocks) {
        memprof_put_planes(o, (const uint8_t *)blocks.row, sizeof(*blocks.row) * blocks.n,
                           sizeof(*blocks.row));
        memprof_put_planes(o, (const uint8_t *)blocks.address,
                           sizeof(*blocks.address) * blocks.n, sizeof(*blocks.address));
        memprof_put_planes(o, (const uint8_t *)blocks.size, sizeof(*blocks.size) * blocks.n,
                           sizeof(*blocks.size));
    }
    release_blocks(&blocks);
    release_figures(&peak);
    release_figures(&leaks);
}

static void put_profile(struct memprof_out *o, const struct memprof_window_info *w, enum memprof_heap heap,
                        const struct memprof_counts *c, const struct selection *sel, const char *exe,
                        const struct memprof_proc_text *text)
{
    uint64_t rate = memprof_heap_rate(w->rates, heap);
    memprof_puts(o, "heap_tree/");
    memprof_put_u64(o, rate);
    memprof_puts(o, "\n# mem_profiler " MEMPROF_VERSION "\n# pid: ");
    memprof_put_u64(o, (uint64_t)getpid());
    if (w->forked_from != 0) {
        memprof_puts(o, "\n# forked_from: ");
        memprof_put_u64(o, (uint64_t)w->forked_from);
    }
    if (w->python_exit)
        memprof_puts(o, "\n# ended_at: python_finalizing");
    if (w->failure.heap >= 0) {
        memprof_puts(o, "\n# taken_at: device_allocation_failure heap=");
        memprof_puts(o, memprof_heap_names[w->failure.heap]);
        memprof_puts(o, " bytes=");
        memprof_put_u64(o, w->failure.bytes);
        memprof_puts(o, " error=");
        memprof_put_u64(o, (uint64_t)(unsigned)w->failure.error);
        if (w->failure.raised != NULL) {
            memprof_puts(o, " raised=");
            memprof_puts(o, w->failure.raised);
        }
    }
    memprof_puts(o, "\n# heap: ");
    memprof_puts(o, memprof_heap_names[heap]);
    memprof_puts(o, "\n# dropped_samples: ");
    memprof_put_u64(o, memprof_dropped_samples(&w->drops));
    memprof_puts(o, "\n");
    memprof_put_window_lines(o, w, text);
    const char *own_malloc = memprof_upcalls.own_malloc();
    if (heap == HEAP_HOST && own_malloc[0] != '\0') {
        memprof_puts(o, "# warning: ");
        memprof_put_escaped(o, own_malloc, strlen(own_malloc));
        memprof_puts(o, "\n");
    }
    const char *pool_note = memprof_upcalls.pools_note();
    if (heap == HEAP_CUDA && pool_note[0] != '\0') {
        memprof_puts(o, "# pool_note: ");
        memprof_put_escaped(o, pool_note, strlen(pool_note));
        memprof_puts(o, "\n");
    }
    const char *log = memprof_log_base();
    if (log != NULL) {
        memprof_puts(o, "# log: ");
        memprof_put_escaped(o, log, strlen(log));
        memprof_puts(o, "\n");
    }
    if (log != NULL && memprof_log_error() != 0) {
        memprof_puts(o, "# log_stopped: ");
        memprof_puts(o, strerror(memprof_log_error()));
        memprof_puts(o, "\n");
    }
    {
        struct memprof_live_bytes lb = memprof_live_bytes_of(heap);
        memprof_puts(o, "# live_bytes: ");
        memprof_put_u64(o, lb.now > 0 ? (uint64_t)lb.now : 0);
        memprof_puts(o, "\n# peak_live_bytes: ");
        memprof_put_u64(o, lb.peak > 0 ? (uint64_t)lb.peak : 0);
        memprof_puts(o, "\n# peak_time_ns: ");
        memprof_put_u64(o, lb.peak_time_ns);
        memprof_puts(o, "\n");
    }
    memprof_put_build_ids(o, exe);
    put_python_frames(o, sel);
    put_notes(o, heap);
    put_tree(o, sel, c, w, heap, rate);

    memprof_puts(o, "\nMAPPED_LIBRARIES:\n");
    memprof_put(o, text->maps, text->maps_len);
}

/* One heap's file: <prefix><pid>.<seq>[.<heap>].heap, written to a new
 * temporary name beside it and renamed into place once complete. */
static int write_heap_file(const struct memprof_window_info *w, enum memprof_heap heap,
                           const struct memprof_counts *c, const struct memprof_proc_text *text,
                           const char *prefix, unsigned seq, char *path, size_t path_len)
{
    bool host = heap == HEAP_HOST;
    int n = snprintf(path, path_len, "%s%d.%04u%s%s.heap", prefix, (int)getpid(), seq,
                     host ? "" : ".", host ? "" : memprof_heap_names[heap]);
    if (n < 0 || (size_t)n >= path_len) {
        errno = ENAMETOOLONG;
        return -1;
    }
    struct memprof_out o;
    if (memprof_out_begin(&o, path, "memprof_tree/2\n") != 0)
        return -1;
    struct selection sel;
    if (!select_for_heap(&sel, c, heap))
        memprof_out_fail(&o, ENOMEM);
    else if (!o.failed)
        put_profile(&o, w, heap, c, &sel, text->exe, text);
    release_selection(&sel);
    return memprof_out_end(&o, path);
}

int memprof_write_dump(const struct memprof_window_info *w, const char *prefix, unsigned seq,
                       char *path_out, size_t path_len)
{
    uint32_t heaps = memprof_upcalls.device_heaps_used();
    struct memprof_counts c;
    struct memprof_proc_text text;
    int rc = -1;
    memprof_remove_dead_temps_beside(prefix);
    if (!memprof_proc_text_read(&text)) {
        /* errno says why: without the map no address could be named */
    } else if (memprof_counts_gather(&c, w)) {
        char path[MEMPROF_PATH_MAX];
        rc = write_heap_file(w, HEAP_HOST, &c, &text, prefix, seq, path_out, path_len);
        for (int heap = HEAP_HOST + 1; rc == 0 && heap < HEAP_COUNT; heap++)
            if (heaps & (1u << heap))
                rc = write_heap_file(w, (enum memprof_heap)heap, &c, &text, prefix, seq, path,
                                     sizeof path);
        memprof_counts_release(&c);
    } else {
        memprof_counts_release(&c);
        errno = ENOMEM;
    }
    memprof_proc_text_release(&text);
    return rc;
}
