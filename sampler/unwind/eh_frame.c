/* Unwind rules from DWARF call frame information (.eh_frame), which every
 * x86-64 and aarch64 object carries for C++ exceptions whether or not it keeps
 * frame pointers.  For one code address: find its FDE in the object's
 * .eh_frame_hdr binary-search table, run the CIE's and the FDE's CFA programs
 * up to the address, and reduce that row to a struct unwind_rule.  unwind.c
 * caches the rule per address, so this runs once per address, not per sample.
 *
 * Only the columns a stack walk needs are kept: the CFA, the return address
 * and the frame pointer (rbp, x29; arch.h names the registers).  CFA
 * expressions are evaluated symbolically, the pc being known here: an x86
 * PLT entry's (rsp + 8 or 16, depending on rip) and a realigned stack's (the
 * CFA stored at rbp - 8) become rules; a CFA based on another register, or a
 * rule a struct unwind_rule cannot hold, gives RULE_LIBUNWIND.  On aarch64 a
 * return address still in x30 (a frame a signal interrupted) is RULE_RA_LR,
 * and DW_CFA_AARCH64_negate_ra_state only says it is signed: unwind.c strips
 * the signature of every return address it reads.
 *
 * Every byte read is bounds-checked against the segment that holds the
 * tables: corrupt data gives RULE_NONE or RULE_LIBUNWIND, never a fault.  The
 * bytes come from the mapping, or from the object's file where object_file.c
 * gives a view of it. */
#include <string.h>

#include "arch.h"
#include "unwind/eh_frame.h"
#include "unwind/object_file.h"

#define DW_EH_PE_omit 0xff
#define DW_EH_PE_indirect 0x80
#define TABLE_DATAREL_SDATA4 0x3b   /* the only .eh_frame_hdr table encoding in use */
#define MAX_REMEMBERED 8
#define MAX_EVAL_STACK 16

/* ---- bounded reading -------------------------------------------------------- */
struct reader {
    uintptr_t p, lo, end;   /* reads stay in [lo, end) */
    bool bad;
    struct memprof_eh_file *file;   /* NULL: read the mapping */
};

/* n (1, 2, 4 or 8) bytes, little-endian, zero-extended; 0 once out of bounds. */
static uint64_t read_u(struct reader *r, size_t n)
{
    uint64_t v = 0;
    if (r->bad || r->p < r->lo || r->p > r->end || r->end - r->p < n) {
        r->bad = true;
        return 0;
    }
    if (r->file == NULL)
        memcpy(&v, (const void *)r->p, n);
    else if (!memprof_eh_file_read(r->file, r->p, &v, n)) {
        r->bad = true;
        return 0;
    }
    r->p += n;
    return v;
}

static uint8_t u8(struct reader *r) { return (uint8_t)read_u(r, 1); }

static uint64_t uleb(struct reader *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; !r->bad; shift += 7) {   /* ends at the first byte < 0x80 or at end */
        uint8_t b = u8(r);
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

static int64_t sleb(struct reader *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b = 0x80;
    while (!r->bad && (b & 0x80)) {
        b = u8(r);
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    }
    if (shift < 64 && (b & 0x40))
        v |= ~0ull << shift;
    return (int64_t)v;
}

static void skip(struct reader *r, uint64_t n)
{
    if (r->bad || n > r->end - r->p)
        r->bad = true;
    else
        r->p += n;
}

/* A DW_EH_PE_* encoded pointer; datarel is the base of DW_EH_PE_datarel.
 * DW_EH_PE_indirect is left to the caller. */
static uint64_t encoded(struct reader *r, uint8_t enc, uintptr_t datarel)
{
    uintptr_t at = r->p;
    uint64_t v;
    switch (enc & 0x0f) {
    case 0x00: case 0x04: case 0x0c: v = read_u(r, 8); break;
    case 0x01: v = uleb(r); break;
    case 0x02: v = read_u(r, 2); break;
    case 0x03: v = read_u(r, 4); break;
    case 0x09: v = (uint64_t)sleb(r); break;
    case 0x0a: v = (uint64_t)(int64_t)(int16_t)read_u(r, 2); break;
    case 0x0b: v = (uint64_t)(int64_t)(int32_t)read_u(r, 4); break;
    default: r->bad = true; return 0;
    }
    switch (enc & 0x70) {
    case 0x00: return v;
    case 0x10: return v + at;        /* pcrel */
    case 0x30: return v + datarel;   /* datarel */
    default: r->bad = true; return 0;
    }
}

/* ---- finding the FDE -------------------------------------------------------- */
enum lookup { FOUND, NO_FDE, UNREADABLE };

bool memprof_eh_frame_table(const struct eh_tables *t, uintptr_t *table, uint64_t *count)
{
    struct reader r = {t->hdr, t->lo, t->hi, false, t->file};
    uint8_t version = u8(&r);
    uint8_t ptr_enc = u8(&r);
    uint8_t count_enc = u8(&r);
    uint8_t table_enc = u8(&r);
    if (r.bad || version != 1 || count_enc == DW_EH_PE_omit || table_enc != TABLE_DATAREL_SDATA4)
        return false;
    encoded(&r, ptr_enc, t->hdr);   /* .eh_frame's address: not needed with the table */
    *count = encoded(&r, count_enc, t->hdr);
    *table = r.p;
    return !r.bad && *count <= (t->hi - r.p) / 8;
}

/* Entry i of the table: where its FDE's code starts and the FDE, relative to hdr. */
static bool table_entry(const struct eh_tables *t, uintptr_t table, uint64_t i, int32_t entry[2])
{
    struct reader r = {table + 8 * i, t->lo, t->hi, false, t->file};
    entry[0] = (int32_t)read_u(&r, 4);
    entry[1] = (int32_t)read_u(&r, 4);
    return !r.bad;
}

/* The FDE whose range may hold addr: the last table entry starting at or below it. */
static enum lookup find_fde(const struct eh_tables *t, uintptr_t addr, uintptr_t *fde)
{
    uintptr_t table;
    uint64_t count;
    if (!memprof_eh_frame_table(t, &table, &count))
        return UNREADABLE;
    if (count == 0)
        return NO_FDE;
    int64_t target = (int64_t)(addr - t->hdr);
    int32_t entry[2];
    uint64_t below = 0, above = count;   /* the answer is in [below, above) */
    if (t->file != NULL)
        memprof_eh_file_narrow(t->file, table, target, &below, &above);
    while (above - below > 1) {
        uint64_t mid = below + (above - below) / 2;
        if (!table_entry(t, table, mid, entry))
            return UNREADABLE;
        if (entry[0] <= target)
            below = mid;
        else
            above = mid;
    }
    if (!table_entry(t, table, below, entry))
        return UNREADABLE;
    if (entry[0] > target)
        return NO_FDE;
    *fde = t->hdr + (intptr_t)entry[1];
    return FOUND;
}

/* ---- CIE and FDE -------------------------------------------------------------- */
struct cie {
    uint64_t code_align;
    int64_t data_align;
    uint64_t ra_column;
    uint8_t fde_enc;
    bool augmented;           /* 'z': FDEs have augmentation data to skip */
    bool signal_frame;        /* 'S' */
    uintptr_t insns, end;     /* its initial instructions */
};

/* A CIE or FDE's length and id fields (the id is 4 bytes in .eh_frame even
 * after a 64-bit length); r->end becomes the entry's end.  Returns the id
 * and where it was read. */
static uint64_t entry_header(struct reader *r, uintptr_t *id_at)
{
    uint64_t len = read_u(r, 4);
    if (len == 0xffffffff)
        len = read_u(r, 8);
    if (r->bad || len == 0 || len > r->end - r->p) {
        r->bad = true;
        return 0;
    }
    r->end = r->p + len;
    *id_at = r->p;
    return read_u(r, 4);
}

static bool parse_cie(uintptr_t at, const struct eh_tables *t, struct cie *c)
{
    struct reader r = {at, t->lo, t->hi, false, t->file};
    uintptr_t id_at;
    if (entry_header(&r, &id_at) != 0 || r.bad)
        return false;
    uint8_t version = u8(&r);
    char aug[8];
    size_t n = 0;
    for (char ch = 1; ch != 0 && !r.bad; n++) {
        ch = (char)u8(&r);
        if (n == sizeof aug)
            return false;
        aug[n] = ch;
    }
    if (r.bad || (version != 1 && version != 3 && version != 4))
        return false;
    if (strstr(aug, "eh") != NULL)
        skip(&r, 8);
    if (version == 4)
        skip(&r, 2);   /* address and segment selector sizes */
    *c = (struct cie){.fde_enc = 0};
    c->code_align = uleb(&r);
    c->data_align = sleb(&r);
    c->ra_column = version == 1 ? u8(&r) : uleb(&r);
    c->augmented = aug[0] == 'z';
    if (c->augmented) {
        uint64_t len = uleb(&r);
        uintptr_t data_end = r.p + len;
        for (const char *a = aug + 1; *a != 0 && !r.bad; a++) {
            if (*a == 'R')
                c->fde_enc = u8(&r);
            else if (*a == 'L')
                u8(&r);
            else if (*a == 'P')
                encoded(&r, u8(&r) & ~DW_EH_PE_indirect, 0);
            else if (*a == 'S')
                c->signal_frame = true;
            else if (*a != 'B' && *a != 'G')
                break;   /* unknown: the length still lets us skip the data */
        }
        if (data_end < r.p || data_end > r.end)
            return false;
        r.p = data_end;
    }
    c->insns = r.p;
    c->end = r.end;
    return !r.bad;
}

/* ---- running the CFA programs ------------------------------------------------- */
enum how { HOW_SAME = 0, HOW_UNDEFINED, HOW_OFFSET, HOW_EXPRESSION, HOW_OTHER };

struct reg_rule {
    uint8_t how;
    int64_t offset;                /* HOW_OFFSET: saved at CFA + offset */
    uintptr_t expr, expr_end;      /* HOW_EXPRESSION: saved at the address it computes */
};

/* The columns kept: the return address's and the frame pointer's. */
enum { COL_RA, COL_FP, COLUMNS };

struct row {
    uint64_t cfa_reg;
    int64_t cfa_offset;
    uintptr_t cfa_expr, cfa_expr_end;   /* cfa_expr != 0: the CFA is this expression */
    struct reg_rule col[COLUMNS];
};

struct program {
    const struct cie *cie;
    uintptr_t target, loc;         /* rows starting above target are not reached */
    const struct row *initial;     /* after the CIE's instructions, for DW_CFA_restore */
    struct row saved[MAX_REMEMBERED];
    int nsaved;
};

static int column(const struct program *pg, uint64_t reg)
{
    return reg == pg->cie->ra_column ? COL_RA : reg == DW_REG_FP ? COL_FP : -1;
}

static void set_rule(struct row *row, const struct program *pg, uint64_t reg, struct reg_rule rule)
{
    int c = column(pg, reg);
    if (c >= 0)
        row->col[c] = rule;
}

static void restore_rule(struct row *row, const struct program *pg, uint64_t reg)
{
    int c = column(pg, reg);
    if (c >= 0)
        row->col[c] = pg->initial != NULL ? pg->initial->col[c] : (struct reg_rule){HOW_SAME, 0, 0, 0};
}

/* Moves the location on; false when the next row starts beyond the target. */
static bool advance(struct program *pg, uint64_t delta)
{
    uint64_t loc = pg->loc + delta * pg->cie->code_align;
    if (loc > pg->target || loc < pg->loc)
        return false;
    pg->loc = loc;
    return true;
}

static void take_block(struct reader *r, uintptr_t *start, uintptr_t *end)
{
    uint64_t len = uleb(r);
    *start = r->p;
    skip(r, len);
    *end = r->p;
}

/* A factored offset times the data alignment, wrapping as the machine does: a corrupt
 * one gives some offset, never signed overflow. */
static int64_t factored(uint64_t n, int64_t align)
{
    return (int64_t)(n * (uint64_t)align);
}

/* Runs instructions [insns, end) into row; false on malformed data. */
static bool run_program(struct program *pg, struct row *row, uintptr_t insns, uintptr_t end,
                        const struct eh_tables *t)
{
    struct reader r = {insns, t->lo, end, false, t->file};
    const int64_t daf = pg->cie->data_align;
    while (r.p < end && !r.bad) {
        uint8_t op = u8(&r);
        uint64_t reg;
        struct reg_rule rule = {HOW_OTHER, 0, 0, 0};
        switch (op & 0xc0) {
        case 0x40:   /* DW_CFA_advance_loc */
            if (!advance(pg, op & 0x3f))
                return true;
            continue;
        case 0x80:   /* DW_CFA_offset */
            set_rule(row, pg, op & 0x3f, (struct reg_rule){HOW_OFFSET, factored(uleb(&r), daf), 0, 0});
            continue;
        case 0xc0:   /* DW_CFA_restore */
            restore_rule(row, pg, op & 0x3f);
            continue;
        }
        switch (op) {
        case 0x00:   /* DW_CFA_nop */
            break;
        case 0x01: { /* DW_CFA_set_loc */
            uint64_t loc = encoded(&r, pg->cie->fde_enc & ~DW_EH_PE_indirect, 0);
            if (loc > pg->target)
                return true;
            pg->loc = loc;
            break;
        }
        case 0x02:   /* DW_CFA_advance_loc1, 2, 4 */
        case 0x03:
        case 0x04:
            if (!advance(pg, read_u(&r, op == 0x02 ? 1 : op == 0x03 ? 2 : 4)))
                return true;
            break;
        case 0x05:   /* DW_CFA_offset_extended */
            reg = uleb(&r);
            set_rule(row, pg, reg, (struct reg_rule){HOW_OFFSET, factored(uleb(&r), daf), 0, 0});
            break;
        case 0x11:   /* DW_CFA_offset_extended_sf */
            reg = uleb(&r);
            set_rule(row, pg, reg,
                     (struct reg_rule){HOW_OFFSET, factored((uint64_t)sleb(&r), daf), 0, 0});
            break;
        case 0x2d:   /* DW_CFA_AARCH64_negate_ra_state (aarch64 only) */
            if (!ARCH_NEGATE_RA_STATE)
                return false;
            break;
        case 0x2f:   /* DW_CFA_GNU_negative_offset_extended */
            reg = uleb(&r);
            set_rule(row, pg, reg, (struct reg_rule){HOW_OFFSET, factored(-uleb(&r), daf), 0, 0});
            break;
        case 0x06:   /* DW_CFA_restore_extended */
            restore_rule(row, pg, uleb(&r));
            break;
        case 0x07:   /* DW_CFA_undefined */
            set_rule(row, pg, uleb(&r), (struct reg_rule){HOW_UNDEFINED, 0, 0, 0});
            break;
        case 0x08:   /* DW_CFA_same_value */
            set_rule(row, pg, uleb(&r), (struct reg_rule){HOW_SAME, 0, 0, 0});
            break;
        case 0x09:   /* DW_CFA_register */
            reg = uleb(&r);
            uleb(&r);
            set_rule(row, pg, reg, rule);
            break;
        case 0x14:   /* DW_CFA_val_offset, _sf */
        case 0x15:
            reg = uleb(&r);
            uleb(&r);   /* as unsigned or signed, it is skipped alike */
            set_rule(row, pg, reg, rule);
            break;
        case 0x16:   /* DW_CFA_val_expression */
            reg = uleb(&r);
            take_block(&r, &rule.expr, &rule.expr_end);
            set_rule(row, pg, reg, rule);
            break;
        case 0x10:   /* DW_CFA_expression */
            reg = uleb(&r);
            rule.how = HOW_EXPRESSION;
            take_block(&r, &rule.expr, &rule.expr_end);
            set_rule(row, pg, reg, rule);
            break;
        case 0x0a:   /* DW_CFA_remember_state: the whole row, CFA included */
            if (pg->nsaved == MAX_REMEMBERED)
                return false;
            pg->saved[pg->nsaved++] = *row;
            break;
        case 0x0b:   /* DW_CFA_restore_state */
            if (pg->nsaved == 0)
                return false;
            *row = pg->saved[--pg->nsaved];
            break;
        case 0x0c:   /* DW_CFA_def_cfa */
            row->cfa_reg = uleb(&r);
            row->cfa_offset = (int64_t)uleb(&r);
            row->cfa_expr = 0;
            break;
        case 0x12:   /* DW_CFA_def_cfa_sf */
            row->cfa_reg = uleb(&r);
            row->cfa_offset = factored((uint64_t)sleb(&r), daf);
            row->cfa_expr = 0;
            break;
        case 0x0d:   /* DW_CFA_def_cfa_register */
            row->cfa_reg = uleb(&r);
            row->cfa_expr = 0;
            break;
        case 0x0e:   /* DW_CFA_def_cfa_offset */
            row->cfa_offset = (int64_t)uleb(&r);
            break;
        case 0x13:   /* DW_CFA_def_cfa_offset_sf */
            row->cfa_offset = factored((uint64_t)sleb(&r), daf);
            break;
        case 0x0f:   /* DW_CFA_def_cfa_expression */
            take_block(&r, &row->cfa_expr, &row->cfa_expr_end);
            break;
        case 0x2e:   /* DW_CFA_GNU_args_size */
            uleb(&r);
            break;
        default:
            return false;
        }
    }
    return !r.bad;
}

/* ---- DWARF expressions, evaluated symbolically -----------------------------------
 * A value is a constant or base + offset, base a register of the frame (or
 * the CFA), optionally loaded from: enough for the expressions compilers
 * and linkers emit for the CFA and for where the frame pointer was saved. */
enum base { BASE_CONST = 0, BASE_SP, BASE_FP, BASE_CFA };

struct sym {
    uint8_t base;
    bool deref;      /* the value is the word at base + offset */
    int64_t offset;  /* the constant itself for BASE_CONST */
};

static bool binary_op(uint8_t op, struct sym *a, struct sym *b)
{
    if (op == 0x22 && a->base == BASE_CONST) {   /* DW_OP_plus: put a register first */
        struct sym t = *a;
        *a = *b;
        *b = t;
    }
    if (op == 0x22 || op == 0x1c) {              /* plus, minus: register +- constant */
        if (b->base != BASE_CONST || a->deref)
            return false;
        a->offset = (int64_t)(op == 0x22 ? (uint64_t)a->offset + (uint64_t)b->offset
                                         : (uint64_t)a->offset - (uint64_t)b->offset);
        return true;
    }
    bool consts = a->base == BASE_CONST && b->base == BASE_CONST;
    uint64_t x = (uint64_t)a->offset, y = (uint64_t)b->offset;
    if (!consts)
        return false;
    switch (op) {
    case 0x1a: x &= y; break;                             /* and */
    case 0x21: x |= y; break;                             /* or */
    case 0x27: x ^= y; break;                             /* xor */
    case 0x1e: x *= y; break;                             /* mul */
    case 0x24: x = y < 64 ? x << y : 0; break;            /* shl */
    case 0x25: x = y < 64 ? x >> y : 0; break;            /* shr */
    case 0x26: x = (uint64_t)((int64_t)x >> (y < 63 ? y : 63)); break;   /* shra */
    case 0x29: x = x == y; break;                         /* eq */
    case 0x2e: x = x != y; break;                         /* ne */
    case 0x2a: x = (int64_t)x >= (int64_t)y; break;       /* ge */
    case 0x2b: x = (int64_t)x > (int64_t)y; break;        /* gt */
    case 0x2c: x = (int64_t)x <= (int64_t)y; break;       /* le */
    case 0x2d: x = (int64_t)x < (int64_t)y; break;        /* lt */
    default: return false;
    }
    a->offset = (int64_t)x;
    return true;
}

/* DW_REG_PC is -1 where no register holds the pc (aarch64). */
static bool is_pc_register(unsigned reg)
{
    return DW_REG_PC >= 0 && reg == (unsigned)DW_REG_PC;
}

/* Evaluates [expr, end) with the pc known; a register rule's expression starts
 * with the CFA on the stack (push_cfa). */
static bool evaluate(uintptr_t expr, uintptr_t end, const struct eh_tables *t, uintptr_t pc,
                     bool push_cfa, struct sym *out)
{
    struct sym st[MAX_EVAL_STACK];
    int n = 0;
    if (push_cfa)
        st[n++] = (struct sym){BASE_CFA, false, 0};
    struct reader r = {expr, t->lo, end, false, t->file};
    while (r.p < end && !r.bad) {
        uint8_t op = u8(&r);
        struct sym v = {BASE_CONST, false, 0};
        bool push = true;
        if (op >= 0x30 && op <= 0x4f) {          /* DW_OP_lit0..31 */
            v.offset = op - 0x30;
        } else if (op >= 0x70 && op <= 0x8f) {   /* DW_OP_breg0..31 */
            int64_t off = sleb(&r);
            uint8_t reg = op - 0x70;
            if (reg == DW_REG_SP || reg == DW_REG_FP)
                v = (struct sym){reg == DW_REG_SP ? BASE_SP : BASE_FP, false, off};
            else if (is_pc_register(reg))
                v.offset = (int64_t)(pc + (uint64_t)off);
            else
                return false;
        } else {
            switch (op) {
            case 0x08: v.offset = (int64_t)read_u(&r, 1); break;            /* const1u */
            case 0x09: v.offset = (int8_t)read_u(&r, 1); break;             /* const1s */
            case 0x0a: v.offset = (int64_t)read_u(&r, 2); break;            /* const2u */
            case 0x0b: v.offset = (int16_t)read_u(&r, 2); break;            /* const2s */
            case 0x0c: v.offset = (int64_t)read_u(&r, 4); break;            /* const4u */
            case 0x0d: v.offset = (int32_t)read_u(&r, 4); break;            /* const4s */
            case 0x0e: case 0x0f: v.offset = (int64_t)read_u(&r, 8); break; /* const8u, s */
            case 0x10: v.offset = (int64_t)uleb(&r); break;       /* constu */
            case 0x11: v.offset = sleb(&r); break;                /* consts */
            case 0x9c: v.base = BASE_CFA; break;                  /* call_frame_cfa */
            case 0x96: push = false; break;                       /* nop */
            case 0x12:                                            /* dup */
            case 0x14:                                            /* over */
                if (n < (op == 0x12 ? 1 : 2))
                    return false;
                v = st[n - (op == 0x12 ? 1 : 2)];
                break;
            case 0x13:                                            /* drop */
                if (n < 1)
                    return false;
                n--;
                push = false;
                break;
            case 0x16:                                            /* swap */
                if (n < 2)
                    return false;
                v = st[n - 1];
                st[n - 1] = st[n - 2];
                st[n - 2] = v;
                push = false;
                break;
            case 0x06:                                            /* deref */
                if (n < 1 || st[n - 1].base == BASE_CONST || st[n - 1].deref)
                    return false;
                st[n - 1].deref = true;
                push = false;
                break;
            case 0x23:                                            /* plus_uconst */
                if (n < 1 || st[n - 1].deref)
                    return false;
                st[n - 1].offset = (int64_t)((uint64_t)st[n - 1].offset + uleb(&r));
                push = false;
                break;
            default:
                if (n < 2 || !binary_op(op, &st[n - 2], &st[n - 1]))
                    return false;
                n--;
                push = false;
            }
        }
        if (push) {
            if (n == MAX_EVAL_STACK)
                return false;
            st[n++] = v;
        }
    }
    if (r.bad || n == 0)
        return false;
    *out = st[n - 1];
    return true;
}

/* ---- the row as a rule -------------------------------------------------------- */
static bool slot_of(int64_t offset, int8_t *slot)
{
    if (offset % 8 != 0 || offset / 8 < INT8_MIN || offset / 8 > INT8_MAX)
        return false;
    *slot = (int8_t)(offset / 8);
    return true;
}

static struct unwind_rule rule_of_row(const struct row *row, uintptr_t pc,
                                      const struct eh_tables *t)
{
    const struct unwind_rule complex = {0, RULE_LIBUNWIND, 0, 0, 0};
    struct unwind_rule rule = {0, RULE_CFA, 0, 0, 0};
    if (row->col[COL_RA].how == HOW_UNDEFINED || row->col[COL_FP].how == HOW_UNDEFINED)
        return (struct unwind_rule){0, RULE_OUTERMOST, 0, 0, 0};

    struct sym cfa = {BASE_CONST, false, row->cfa_offset};
    if (row->cfa_expr != 0) {
        if (!evaluate(row->cfa_expr, row->cfa_expr_end, t, pc, false, &cfa))
            return complex;
    } else if (row->cfa_reg == DW_REG_SP || row->cfa_reg == DW_REG_FP) {
        cfa.base = row->cfa_reg == DW_REG_SP ? BASE_SP : BASE_FP;
    }
    if ((cfa.base != BASE_SP && cfa.base != BASE_FP) || cfa.offset < INT32_MIN ||
        cfa.offset > INT32_MAX)
        return complex;
    rule.cfa_offset = (int32_t)cfa.offset;
    rule.flags = (cfa.base == BASE_FP ? RULE_CFA_FP : 0) | (cfa.deref ? RULE_CFA_DEREF : 0);

    if (ARCH_LINK_REGISTER && row->col[COL_RA].how == HOW_SAME)
        rule.flags |= RULE_RA_LR;
    else if (row->col[COL_RA].how != HOW_OFFSET ||
             !slot_of(row->col[COL_RA].offset, &rule.ra_slot))
        return complex;

    const struct reg_rule *fp = &row->col[COL_FP];
    struct sym at = {BASE_CFA, false, fp->offset};
    if (fp->how == HOW_SAME)
        return rule;
    if (fp->how == HOW_EXPRESSION && !evaluate(fp->expr, fp->expr_end, t, pc, true, &at))
        return complex;
    if ((fp->how != HOW_OFFSET && fp->how != HOW_EXPRESSION) || at.deref ||
        at.base == BASE_CONST || !slot_of(at.offset, &rule.fp_slot))
        return complex;
    rule.flags |= at.base == BASE_CFA ? RULE_FP_CFA : at.base == BASE_SP ? RULE_FP_SP
                                                                          : RULE_FP_FP;
    return rule;
}

struct unwind_rule memprof_eh_frame_rule(const struct eh_tables *t, uintptr_t pc, bool is_return)
{
    const struct unwind_rule none = {0, RULE_NONE, 0, 0, 0}, complex = {0, RULE_LIBUNWIND, 0, 0, 0};
    uintptr_t addr = pc - is_return, fde;
    enum lookup found = find_fde(t, addr, &fde);
    if (found != FOUND)
        return found == NO_FDE ? none : complex;

    struct reader r = {fde, t->lo, t->hi, false, t->file};
    uintptr_t id_at;
    uint64_t cie_pointer = entry_header(&r, &id_at);
    struct cie cie;
    if (r.bad || cie_pointer == 0 || cie_pointer > id_at ||
        !parse_cie(id_at - cie_pointer, t, &cie))
        return complex;
    if ((cie.fde_enc & DW_EH_PE_indirect) || cie.signal_frame)
        return complex;
    uint64_t start = encoded(&r, cie.fde_enc, 0);
    uint64_t range = encoded(&r, cie.fde_enc & 0x0f, 0);
    if (r.bad)
        return complex;
    if (addr < start || addr - start >= range)
        return none;
    if (cie.augmented)
        skip(&r, uleb(&r));
    if (r.bad)
        return complex;

    struct program pg = {.cie = &cie, .target = UINTPTR_MAX, .loc = 0};
    struct row row = {0}, initial;
    if (!run_program(&pg, &row, cie.insns, cie.end, t))
        return complex;
    initial = row;
    pg.initial = &initial;
    pg.nsaved = 0;
    pg.target = addr;
    pg.loc = start;
    if (!run_program(&pg, &row, r.p, r.end, t))
        return complex;
    return rule_of_row(&row, pc, t);
}
