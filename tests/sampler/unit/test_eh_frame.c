/* The .eh_frame rule parser (sampler/unwind/eh_frame.c) alone: hand-made CIEs and FDEs give
 * the rules their CFA programs describe; the test program's own .eh_frame gives the
 * rules of a function built with a frame pointer; and every truncation and many
 * corruptions of the hand-made tables are refused, never read beyond (each lookup
 * reads a copy of exactly the bytes it is given, so AddressSanitizer sees an
 * overrun).  Each hand-made lookup is made twice, in place and through a view of a
 * file holding the same bytes (sampler/unwind/object_file.c), which must agree; so must
 * libc's rules read both ways, at addresses all over its code. */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "unit.h"
#include "unwind/eh_frame.h"
#include "unwind/object_file.h"

/* ---- hand-made tables ---------------------------------------------------------
 * .eh_frame_hdr (its binary-search table) then .eh_frame, position-independent: the
 * FDEs' code addresses are pc-relative, so code at offset `code` from the header is
 * at hdr + code wherever the bytes are copied. */
#define MAX_BYTES 4096
#define MAX_ENTRIES 16

struct cie_spec {
    const char *augmentation;          /* "zR", "zRS" */
    const uint8_t *insns;
    size_t len;
};

struct fde_spec {
    int cie;
    uint32_t code, range;
    const uint8_t *insns;
    size_t len;
};

struct image {
    uint8_t bytes[MAX_BYTES];
    size_t len;
};

static void put(struct image *im, const void *p, size_t n)
{
    CHECK(im->len + n <= MAX_BYTES);
    memcpy(im->bytes + im->len, p, n);
    im->len += n;
}

static void put_u8(struct image *im, uint8_t v) { put(im, &v, 1); }
static void put_u32(struct image *im, uint32_t v) { put(im, &v, 4); }
static void put_i32_at(struct image *im, size_t at, int32_t v) { memcpy(im->bytes + at, &v, 4); }

static void put_uleb(struct image *im, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        put_u8(im, (uint8_t)(b | (v ? 0x80 : 0)));
    } while (v);
}

/* Ends an entry begun at `start` (its length field) with padding to 4 bytes. */
static void end_entry(struct image *im, size_t start)
{
    while ((im->len - start) % 4 != 0)
        put_u8(im, 0);   /* DW_CFA_nop */
    uint32_t len = (uint32_t)(im->len - start - 4);
    memcpy(im->bytes + start, &len, 4);
}

static void build(struct image *im, const struct cie_spec *cies, int ncies,
                  const struct fde_spec *fdes, int nfdes)
{
    CHECK(nfdes <= MAX_ENTRIES);
    im->len = 0;
    put_u8(im, 1);      /* version */
    put_u8(im, 0x1b);   /* .eh_frame's address: pcrel sdata4 */
    put_u8(im, 0x03);   /* the count: udata4 */
    put_u8(im, 0x3b);   /* the table: datarel sdata4 */
    size_t eh_frame_ptr = im->len;
    put_u32(im, 0);
    put_u32(im, (uint32_t)nfdes);
    size_t table = im->len;
    for (int i = 0; i < 2 * nfdes; i++)
        put_u32(im, 0);
    put_i32_at(im, eh_frame_ptr, (int32_t)(im->len - eh_frame_ptr));

    size_t cie_at[MAX_ENTRIES];
    for (int c = 0; c < ncies; c++) {
        cie_at[c] = im->len;
        put_u32(im, 0);    /* length */
        put_u32(im, 0);    /* CIE id */
        put_u8(im, 1);     /* version */
        put(im, cies[c].augmentation, strlen(cies[c].augmentation) + 1);
        put_uleb(im, 1);   /* code alignment */
        put_u8(im, 0x78);  /* data alignment: sleb -8 */
        put_u8(im, 16);    /* return address column: rip */
        put_uleb(im, 1);   /* augmentation data: */
        put_u8(im, 0x1b);  /*   R: FDE addresses pcrel sdata4 */
        put(im, cies[c].insns, cies[c].len);
        end_entry(im, cie_at[c]);
    }
    for (int f = 0; f < nfdes; f++) {   /* in code order, as the table wants them */
        CHECK(f == 0 || fdes[f].code > fdes[f - 1].code);
        size_t at = im->len;
        put_u32(im, 0);
        put_u32(im, (uint32_t)(im->len - cie_at[fdes[f].cie]));   /* back to its CIE */
        put_u32(im, (uint32_t)((int64_t)fdes[f].code - (int64_t)im->len));
        put_u32(im, fdes[f].range);
        put_uleb(im, 0);   /* augmentation data */
        put(im, fdes[f].insns, fdes[f].len);
        end_entry(im, at);
        put_i32_at(im, table + 8 * (size_t)f, (int32_t)fdes[f].code);
        put_i32_at(im, table + 8 * (size_t)f + 4, (int32_t)at);
    }
}

/* A file of n bytes at p, open for reading. */
static int file_of(const void *p, size_t n)
{
    int fd = memfd_create("tables", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, p, n), n);
    return fd;
}

/* The first `len` bytes of an image as a lookup reads them: a copy of exactly those
 * bytes, and a view of a file of them (NULL where none can be made, as the sampler then
 * reads in place); made once for all the addresses asked about. */
struct tables {
    void *copy;
    struct eh_tables in_place, from_file;
};

static void tables_open(struct tables *t, const struct image *im, size_t len)
{
    /* 16-aligned, as code is: the PLT's rule depends on rip & 15 */
    CHECK_EQ(posix_memalign(&t->copy, 16, len ? len : 1), 0);
    memcpy(t->copy, im->bytes, len);
    uintptr_t hdr = (uintptr_t)t->copy;
    t->in_place = (struct eh_tables){hdr, hdr, hdr + len, NULL};
    t->from_file = t->in_place;
    t->from_file.file = memprof_eh_file_open(file_of(t->copy, len), hdr, 0, &t->in_place);
}

static void tables_close(struct tables *t)
{
    if (t->from_file.file != NULL)
        memprof_eh_file_forget(t->from_file.file);
    free(t->copy);
}

/* The rule at code offset `code`, in place; in *from_file, the rule read from the file
 * (the same where there is no view of one). */
static struct unwind_rule rule_in(const struct tables *t, uint32_t code, bool is_return,
                                  struct unwind_rule *from_file)
{
    uintptr_t pc = t->in_place.hdr + code;
    struct unwind_rule r = memprof_eh_frame_rule(&t->in_place, pc, is_return);
    *from_file = t->from_file.file != NULL
                     ? memprof_eh_frame_rule(&t->from_file, pc, is_return)
                     : r;
    return r;
}

static bool same_rule(struct unwind_rule a, struct unwind_rule b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* The rule of well-formed tables: the same from the file. */
static struct unwind_rule rule_of(const struct tables *t, uint32_t code, bool is_return)
{
    struct unwind_rule from_file, r = rule_in(t, code, is_return, &from_file);
    CHECK(same_rule(r, from_file));
    return r;
}

static struct unwind_rule rule_at(const struct image *im, uint32_t code, bool is_return)
{
    struct tables t;
    tables_open(&t, im, im->len);
    struct unwind_rule r = rule_of(&t, code, is_return);
    tables_close(&t);
    return r;
}

#define CFA(offset, flags, ra, rbp) ((struct unwind_rule){offset, RULE_CFA, flags, ra, rbp})
#define KIND(kind) ((struct unwind_rule){0, kind, 0, 0, 0})
#define CHECK_RULE(got, want)                                                           \
    do {                                                                                \
        struct unwind_rule g_ = (got), w_ = (want);                                     \
        if (!same_rule(g_, w_)) {                                                       \
            fprintf(stderr, "got kind %d cfa %d flags %#x ra %d rbp %d\n", g_.kind,     \
                    g_.cfa_offset, g_.flags, g_.ra_slot, g_.fp_slot);                  \
            check_failed(__FILE__, __LINE__, #got " is " #want, g_.kind, w_.kind);      \
        }                                                                               \
    } while (0)

/* The CIE of ordinary code: at entry CFA = rsp + 8, the return address at CFA - 8. */
static const uint8_t entry_state[] = {0x0c, 7, 8, 0x80 | 16, 1};

/* push rbp; mov rbp, rsp; ...; leave (pop rbp) at 0x30; ret. */
static const uint8_t frame_pointer_function[] = {
    0x41,               /* advance_loc 1 */
    0x0e, 16,           /* def_cfa_offset 16 */
    0x80 | 6, 2,        /* offset rbp: CFA - 16 */
    0x43,               /* advance_loc 3 */
    0x0d, 6,            /* def_cfa_register rbp */
    0x02, 0x2c,         /* advance_loc1 44 */
    0x0c, 7, 8,         /* def_cfa rsp 8 */
    0xc0 | 6,           /* restore rbp */
};
static const uint8_t outermost[] = {0x07, 16};           /* undefined rip */
static const uint8_t cfa_in_r10[] = {0x0c, 10, 8};       /* def_cfa r10 8 */
/* A PLT entry: CFA = rsp + 8 + ((rip & 15) >= 11) * 8, from 16 bytes in. */
static const uint8_t plt[] = {
    0x50,                                  /* advance_loc 16 */
    0x0f, 11,                              /* def_cfa_expression, 11 bytes: */
    0x77, 8, 0x80, 0, 0x3f, 0x1a,          /*   breg7 8; breg16 0; lit15; and; */
    0x3b, 0x2a, 0x33, 0x24, 0x22,          /*   lit11; ge; lit3; shl; plus */
};
/* A realigned stack: CFA = *(rbp - 8), rbp saved at rbp + 0. */
static const uint8_t realigned[] = {
    0x0f, 3, 0x76, 0x78, 0x06,             /* def_cfa_expression: breg6 -8; deref */
    0x10, 6, 2, 0x76, 0,                   /* expression rbp: breg6 0 */
};
static const uint8_t remembered[] = {
    0x41, 0x0e, 16,                        /* advance 1; def_cfa_offset 16 */
    0x0a,                                  /* remember_state */
    0x41, 0x0e, 32,                        /* advance 1; def_cfa_offset 32 */
    0x41, 0x0b,                            /* advance 1; restore_state */
};
static const uint8_t unknown_op[] = {0x3e};
static const uint8_t restore_with_nothing_kept[] = {0x0b};

static const struct cie_spec cies[] = {
    {"zR", entry_state, sizeof entry_state},
    {"zRS", entry_state, sizeof entry_state},   /* a signal frame's */
};

#define FDE(cie, code, range, insns) {cie, code, range, insns, sizeof insns}
static const struct fde_spec fdes[] = {
    FDE(0, 0x1000, 0x40, frame_pointer_function),
    FDE(0, 0x2000, 0x10, outermost),
    FDE(1, 0x3000, 0x10, entry_state),
    FDE(0, 0x4000, 0x10, cfa_in_r10),
    FDE(0, 0x5000, 0x20, plt),
    FDE(0, 0x6000, 0x10, realigned),
    FDE(0, 0x7000, 0x10, remembered),
    FDE(0, 0x8000, 0x10, unknown_op),
    FDE(0, 0x9000, 0x10, restore_with_nothing_kept),
};
#define NFDES ((int)(sizeof fdes / sizeof fdes[0]))

static struct image image;

static void test_rules_of_hand_made_tables(void)
{
    build(&image, cies, 2, fdes, NFDES);
    CHECK_RULE(rule_at(&image, 0x1000, false), CFA(8, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x1001, false), CFA(16, RULE_FP_CFA, -1, -2));
    CHECK_RULE(rule_at(&image, 0x1004, false), CFA(16, RULE_CFA_FP | RULE_FP_CFA, -1, -2));
    CHECK_RULE(rule_at(&image, 0x1004, true), CFA(16, RULE_FP_CFA, -1, -2));   /* at 0x1003 */
    CHECK_RULE(rule_at(&image, 0x102f, false), CFA(16, RULE_CFA_FP | RULE_FP_CFA, -1, -2));
    CHECK_RULE(rule_at(&image, 0x1030, false), CFA(8, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x103f, false), CFA(8, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x1040, false), KIND(RULE_NONE));   /* past the range */
    CHECK_RULE(rule_at(&image, 0x0fff, false), KIND(RULE_NONE));   /* before every FDE */
    CHECK_RULE(rule_at(&image, 0x2008, false), KIND(RULE_OUTERMOST));
    CHECK_RULE(rule_at(&image, 0x3004, false), KIND(RULE_LIBUNWIND));
    CHECK_RULE(rule_at(&image, 0x4004, false), KIND(RULE_LIBUNWIND));
    CHECK_RULE(rule_at(&image, 0x5008, false), CFA(8, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x5010, false), CFA(8, 0, -1, 0));    /* rip & 15 = 0 */
    CHECK_RULE(rule_at(&image, 0x501a, false), CFA(8, 0, -1, 0));    /* 10 */
    CHECK_RULE(rule_at(&image, 0x501b, false), CFA(16, 0, -1, 0));   /* 11 */
    CHECK_RULE(rule_at(&image, 0x6004, false),
               CFA(-8, RULE_CFA_FP | RULE_CFA_DEREF | RULE_FP_FP, -1, 0));
    CHECK_RULE(rule_at(&image, 0x7001, false), CFA(16, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x7002, false), CFA(32, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x7003, false), CFA(16, 0, -1, 0));
    CHECK_RULE(rule_at(&image, 0x8000, false), KIND(RULE_LIBUNWIND));
    CHECK_RULE(rule_at(&image, 0x9000, false), KIND(RULE_LIBUNWIND));
}

static void test_an_unreadable_header_is_refused(void)
{
    build(&image, cies, 1, fdes, 1);
    struct image other = image;
    other.bytes[0] = 2;   /* a version this reader does not know */
    CHECK_RULE(rule_at(&other, 0x1000, false), KIND(RULE_LIBUNWIND));
    other = image;
    other.bytes[3] = 0x1b;   /* a table of another encoding */
    CHECK_RULE(rule_at(&other, 0x1000, false), KIND(RULE_LIBUNWIND));
    other = image;
    memset(other.bytes + 8, 0, 4);   /* no FDE */
    CHECK_RULE(rule_at(&other, 0x1000, false), KIND(RULE_NONE));
    other = image;
    memset(other.bytes + 8, 0xff, 4);   /* more FDEs than bytes */
    CHECK_RULE(rule_at(&other, 0x1000, false), KIND(RULE_LIBUNWIND));
}

/* Factored offsets that overflow 64 bits once scaled: rbp at CFA + 2^62 * -8, the CFA at
 * rsp + -2^62 * -8, and rsp + 8 + (2^63 - 1), which no rule can hold.  UBSan stops the
 * test at a signed overflow. */
static const uint8_t huge_rbp_offset[] = {
    0x80 | 6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,   /* offset rbp 2^62 */
};
static const uint8_t huge_cfa_offset[] = {
    0x12, 7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,   /* def_cfa_sf rsp -2^62 */
};
static const uint8_t huge_sum[] = {
    0x0f, 12, 0x77, 8,                                     /* def_cfa_expression: breg7 8; */
    0x23, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,   /* plus_uconst 2^63 - 1 */
};

static void test_huge_offsets_wrap(void)
{
    const struct fde_spec huge[] = {
        FDE(0, 0x1000, 0x10, huge_rbp_offset),
        FDE(0, 0x2000, 0x10, huge_cfa_offset),
        FDE(0, 0x3000, 0x10, huge_sum),
    };
    build(&image, cies, 1, huge, 3);
    CHECK(rule_at(&image, 0x1004, false).kind <= RULE_LIBUNWIND);
    CHECK(rule_at(&image, 0x2004, false).kind <= RULE_LIBUNWIND);
    CHECK_RULE(rule_at(&image, 0x3004, false), KIND(RULE_LIBUNWIND));
}

/* The code addresses asked about: each FDE's start, middle and end, and beyond. */
static void each_address(const struct tables *t,
                         void (*fn)(const struct tables *t, uint32_t code, bool is_return))
{
    for (int f = 0; f < NFDES; f++)
        for (uint32_t at = 0; at <= fdes[f].range; at += fdes[f].range / 4)
            for (int is_return = 0; is_return < 2; is_return++)
                fn(t, fdes[f].code + at, is_return);
}

static struct tables whole;   /* the tables uncut */

/* A rule from fewer bytes is the whole tables' rule, or a refusal. */
static void check_cut(const struct tables *t, uint32_t code, bool is_return)
{
    struct unwind_rule parts[2], w = rule_of(&whole, code, is_return);
    parts[0] = rule_in(t, code, is_return, &parts[1]);
    for (int i = 0; i < 2; i++)
        CHECK(same_rule(parts[i], w) || parts[i].kind == RULE_NONE ||
              parts[i].kind == RULE_LIBUNWIND);
}

static void test_truncated_tables_are_refused(void)
{
    build(&image, cies, 2, fdes, NFDES);
    tables_open(&whole, &image, image.len);
    for (size_t cut = 0; cut < image.len; cut++) {
        struct tables t;
        tables_open(&t, &image, cut);
        each_address(&t, check_cut);
        tables_close(&t);
    }
    tables_close(&whole);
}

/* Either way; a table out of order may send the two searches to different entries. */
static void check_any(const struct tables *t, uint32_t code, bool is_return)
{
    struct unwind_rule from_file, r = rule_in(t, code, is_return, &from_file);
    CHECK(r.kind <= RULE_LIBUNWIND && from_file.kind <= RULE_LIBUNWIND);
}

static void each_address_of(const struct image *im)
{
    struct tables t;
    tables_open(&t, im, im->len);
    each_address(&t, check_any);
    tables_close(&t);
}

/* Bytes changed one at a time to values that mean something in these formats, then
 * several at a time at random: whatever the tables say, the reader stays inside them. */
static void test_corrupt_tables_are_read_within_bounds(void)
{
    static const uint8_t values[] = {0x00, 0x01, 0x0f, 0x40, 0x7f, 0x80, 0xc0, 0xff};
    struct image good;
    build(&good, cies, 2, fdes, NFDES);
    for (size_t at = 0; at < good.len; at++)
        for (size_t v = 0; v < sizeof values; v++) {
            image = good;
            image.bytes[at] = values[v];
            each_address_of(&image);
        }
    uint64_t rng = 4;
    for (int round = 0; round < 3000; round++) {
        image = good;
        for (int k = 0; k < 6; k++)
            image.bytes[next_random(&rng) % good.len] = (uint8_t)next_random(&rng);
        each_address_of(&image);
    }
}

/* ---- the test program's own .eh_frame ---------------------------------------- */
__attribute__((noinline)) static uintptr_t return_address(void)
{
    return (uintptr_t)__builtin_return_address(0);
}

/* Built with a frame pointer (-fno-omit-frame-pointer): after its prologue the CFA is
 * rbp + 16, the return address at CFA - 8 and the caller's rbp at CFA - 16. */
__attribute__((noinline)) static uintptr_t framed(void)
{
    uintptr_t ra = return_address();
    __asm__ volatile("" ::: "memory");   /* not a tail call */
    return ra;
}

/* The rule at pc from the .eh_frame_hdr of the object that holds it, read within the
 * object's mapping. */
static struct unwind_rule own_rule(uintptr_t pc, bool is_return)
{
    struct dl_find_object object;
    CHECK_EQ(_dl_find_object((void *)pc, &object), 0);
    CHECK(object.dlfo_eh_frame != NULL);
    struct eh_tables t = {(uintptr_t)object.dlfo_eh_frame, (uintptr_t)object.dlfo_map_start,
                          (uintptr_t)object.dlfo_map_end, NULL};
    return memprof_eh_frame_rule(&t, pc, is_return);
}

static void test_rules_of_a_compiled_function(void)
{
    CHECK_RULE(own_rule((uintptr_t)framed, false), CFA(8, 0, -1, 0));
    CHECK_RULE(own_rule(framed(), true), CFA(16, RULE_CFA_FP | RULE_FP_CFA, -1, -2));
}

/* ---- libc's tables, in place and from its file ---------------------------------- */
struct found_libc {
    struct eh_tables tables;
    const char *path;
    uint64_t file_offset;
    uintptr_t code_lo, code_hi;
};

static int find_libc(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct found_libc *l = arg;
    if (strstr(info->dlpi_name, "/libc.so") == NULL)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t at = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            l->code_lo = at;
            l->code_hi = at + ph->p_memsz;
        }
        if (ph->p_type == PT_GNU_EH_FRAME) {
            const ElfW(Phdr) *seg = memprof_object_segment(info, at);
            CHECK(seg != NULL);
            uintptr_t lo = info->dlpi_addr + seg->p_vaddr;
            l->tables = (struct eh_tables){at, lo, lo + seg->p_filesz, NULL};
            l->file_offset = seg->p_offset;
        }
    }
    l->path = info->dlpi_name;
    return 1;
}

static void test_libcs_rules_from_its_file_are_its_rules_in_place(void)
{
    struct found_libc l = {0};
    CHECK(dl_iterate_phdr(find_libc, &l) == 1 && l.tables.hdr != 0 && l.code_hi > l.code_lo);
    int fd = open(l.path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    struct eh_tables from_file = l.tables;
    from_file.file = memprof_eh_file_open(fd, l.tables.lo, l.file_offset, &l.tables);
    CHECK(from_file.file != NULL);
    uint64_t seed = 1, found = 0;
    for (uintptr_t pc = l.code_lo; pc < l.code_hi; pc += 1 + next_random(&seed) % 193) {
        for (int is_return = 0; is_return < 2; is_return++) {
            struct unwind_rule a = memprof_eh_frame_rule(&l.tables, pc, is_return);
            struct unwind_rule b = memprof_eh_frame_rule(&from_file, pc, is_return);
            CHECK(memcmp(&a, &b, sizeof a) == 0);
            found += a.kind == RULE_CFA;
        }
    }
    CHECK(found > 10000);   /* most of libc's code is described */
    memprof_eh_file_forget(from_file.file);
}

int main(void)
{
    RUN(test_rules_of_hand_made_tables);
    RUN(test_an_unreadable_header_is_refused);
    RUN(test_huge_offsets_wrap);
    RUN(test_truncated_tables_are_refused);
    RUN(test_corrupt_tables_are_read_within_bounds);
    RUN(test_rules_of_a_compiled_function);
    RUN(test_libcs_rules_from_its_file_are_its_rules_in_place);
    return 0;
}
