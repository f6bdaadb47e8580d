/* The USDT notes reader (sampler/unwind/usdt.c) alone: the notes of libc10_cuda.so of two
 * torch releases (tests/data/usdt/, cut from the wheels by tools/torch_probe_notes.sh)
 * read as `readelf -n` prints them, their argument specs decoded and evaluated on saved
 * registers, specs it cannot read refused, a prelinked base applied, and a section cut
 * short refused without a read past its end.  The specs are the machine's own: x86-64's
 * here, aarch64's where tests/arm64 builds it for aarch64 and runs it under qemu. */
#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"
#include "unwind/usdt.h"

#define DATA "tests/data/usdt/"

struct found {
    int n;
    struct usdt_probe probes[8];
};

static void collect(const struct usdt_probe *p, void *ctx)
{
    struct found *f = ctx;
    CHECK(f->n < 8);
    f->probes[f->n++] = *p;
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* One probe as readelf -n shows it. */
struct expected {
    const char *name;
    uint64_t pc, semaphore;
    const char *args;
};

static void check_notes(const char *file, const struct expected *want, int count)
{
    uint8_t section[4096];
    size_t len = read_file(file, section, sizeof section);
    struct found f = {0};
    CHECK_EQ(memprof_usdt_notes(section, len, 0, collect, &f), count);
    CHECK_EQ(f.n, count);
    for (int i = 0; i < count; i++) {
        const struct usdt_probe *p = &f.probes[i];
        CHECK(strcmp(p->provider, "pytorch") == 0);
        CHECK(strcmp(p->name, want[i].name) == 0);
        CHECK_EQ(p->pc, want[i].pc);
        CHECK_EQ(p->semaphore, want[i].semaphore);
#if defined(__x86_64__)   /* the wheels' notes are x86-64's */
        struct usdt_arg args[USDT_MAX_ARGS];
        int n = memprof_usdt_parse_args(want[i].args, args, USDT_MAX_ARGS);
        CHECK_EQ(p->nargs, strcmp(want[i].name, "malloc") == 0 ? 4 : 1);
        CHECK_EQ(n, p->nargs);
        CHECK(memcmp(args, p->args, sizeof args[0] * (size_t)n) == 0);
#endif
    }
}

static void notes_of_torch_2_11(void)
{
    static const struct expected want[] = {
        {"free", 0x131d0, 0x6d750, "-8@%rdi"},
        {"free", 0x1e335, 0x6d750, "-8@%rdi"},
        {"malloc", 0x44c4f, 0x6d752, "-8@%rax -1@%dl -8@%r14 -8@-56(%rbp)"},
    };
    check_notes(DATA "torch-2.11.0.note", want, 3);
}

static void notes_of_torch_2_14(void)
{
    static const struct expected want[] = {
        {"free", 0x13645, 0x7e768, "-8@%rdi"},
        {"free", 0x1e037, 0x7e768, "-8@%rdi"},
        {"malloc", 0x43083, 0x7e76a, "-8@%rbp -1@%al -8@%r12 -8@56(%rsp)"},
        {"malloc", 0x4792d, 0x7e76a, "-8@%rax -1@%dl -8@%r14 -8@-56(%rbp)"},
    };
    check_notes(DATA "torch-2.14.1.note", want, 4);
}

#if defined(__x86_64__)
/* The malloc probe of torch 2.11 at a trap: ptr in rax, the device in dl (-1 is a
 * signed byte), the size in r14, the stream at rbp - 56. */
static void arguments_evaluated(void)
{
    struct usdt_arg a[USDT_MAX_ARGS];
    CHECK_EQ(memprof_usdt_parse_args("-8@%rax -1@%dl -8@%r14 -8@-56(%rbp)", a, USDT_MAX_ARGS), 4);
    uint64_t frame[16] = {0};
    frame[1] = 0x7f00deadbeef;   /* rbp - 56 with rbp at frame + 8 words */
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RAX] = 0x7f1234500000;
    uc.uc_mcontext.gregs[REG_RDX] = 0x12345601;   /* dl = 1: device 1 */
    uc.uc_mcontext.gregs[REG_R14] = 3 << 20;
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)(uintptr_t)&frame[8];
    CHECK_EQ(memprof_usdt_arg_value(&a[0], &uc), 0x7f1234500000);
    CHECK_EQ(memprof_usdt_arg_value(&a[1], &uc), 1);
    CHECK_EQ(memprof_usdt_arg_value(&a[2], &uc), 3 << 20);
    CHECK_EQ(memprof_usdt_arg_value(&a[3], &uc), 0x7f00deadbeef);
    uc.uc_mcontext.gregs[REG_RDX] = 0xff;   /* a signed byte of -1 */
    CHECK_EQ(memprof_usdt_arg_value(&a[1], &uc), (uint64_t)-1);

    CHECK_EQ(memprof_usdt_parse_args("1@%ah 4@$-3 -4@$-3 8@(%rsp) 2@%r9w", a, USDT_MAX_ARGS), 5);
    uc.uc_mcontext.gregs[REG_RAX] = 0xabcd;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)&frame[1];
    uc.uc_mcontext.gregs[REG_R9] = 0x123456789;
    CHECK_EQ(memprof_usdt_arg_value(&a[0], &uc), 0xab);
    CHECK_EQ(memprof_usdt_arg_value(&a[1], &uc), 0xfffffffd);
    CHECK_EQ(memprof_usdt_arg_value(&a[2], &uc), (uint64_t)-3);
    CHECK_EQ(memprof_usdt_arg_value(&a[3], &uc), 0x7f00deadbeef);
    CHECK_EQ(memprof_usdt_arg_value(&a[4], &uc), 0x6789);
    CHECK_EQ(memprof_usdt_parse_args("", a, USDT_MAX_ARGS), 0);
}

static void unreadable_specs_refused(void)
{
    struct usdt_arg a[2];
    static const char *const bad[] = {
        "8@(%rax,%rbx,8)", "8@%xmm0", "3@%rax", "8@", "-8@%rax junk", "8%rax", "8@-(%rbp)",
        "8@$", "8@%ah(%rbx)", "1@%al 1@%al 1@%al",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(memprof_usdt_parse_args(bad[i], a, 2), -1);
}
#else
/* As GCC writes them for aarch64 (the stand-in pool's malloc probe: 8@x21 -1@x20 8@x24
 * 8@x19), with the memory and constant forms: registers x and w, sp, [reg] and
 * [reg, offset], a bare number. */
static void arguments_evaluated(void)
{
    struct usdt_arg a[USDT_MAX_ARGS];
    CHECK_EQ(memprof_usdt_parse_args("8@x21 -1@x20 -4@w3 8@[sp, 16] -8@[x29, -8] 8@[x1] "
                                     "4@42 -4@-3 8@sp",
                                     a, USDT_MAX_ARGS),
             9);
    uint64_t frame[8] = {0};
    frame[2] = 0x7f00deadbeef;   /* sp + 16 with sp at frame */
    frame[3] = (uint64_t)-5;     /* x29 - 8 with x29 at frame + 4 words */
    frame[6] = 0x1234;           /* [x1] */
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.regs[21] = 0x7f1234500000;
    uc.uc_mcontext.regs[20] = 0xff;   /* a signed byte of -1 */
    uc.uc_mcontext.regs[3] = 0xffffffff00000007;
    uc.uc_mcontext.sp = (uint64_t)(uintptr_t)&frame[0];
    uc.uc_mcontext.regs[29] = (uint64_t)(uintptr_t)&frame[4];
    uc.uc_mcontext.regs[1] = (uint64_t)(uintptr_t)&frame[6];
    CHECK_EQ(memprof_usdt_arg_value(&a[0], &uc), 0x7f1234500000);
    CHECK_EQ(memprof_usdt_arg_value(&a[1], &uc), (uint64_t)-1);
    CHECK_EQ(memprof_usdt_arg_value(&a[2], &uc), 7);
    CHECK_EQ(memprof_usdt_arg_value(&a[3], &uc), 0x7f00deadbeef);
    CHECK_EQ(memprof_usdt_arg_value(&a[4], &uc), (uint64_t)-5);
    CHECK_EQ(memprof_usdt_arg_value(&a[5], &uc), 0x1234);
    CHECK_EQ(memprof_usdt_arg_value(&a[6], &uc), 42);
    CHECK_EQ(memprof_usdt_arg_value(&a[7], &uc), (uint64_t)-3);
    CHECK_EQ(memprof_usdt_arg_value(&a[8], &uc), (uint64_t)(uintptr_t)&frame[0]);
    CHECK_EQ(memprof_usdt_parse_args("", a, USDT_MAX_ARGS), 0);
}

static void unreadable_specs_refused(void)
{
    struct usdt_arg a[2];
    static const char *const bad[] = {
        "8@x31", "8@q0", "8@[x1, x2]", "8@%rax", "8@[x1", "8@[x1, 8", "8@$4", "3@x0", "8@",
        "8@x0 junk", "8@-(x1)", "1@x0 1@x0 1@x0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(memprof_usdt_parse_args(bad[i], a, 2), -1);
}
#endif

/* A note of our own making: pc 0x1000, base 0x2000, semaphore 0x3000. */
#if defined(__x86_64__)
#define FREE_ARG "-8@%rdi"
/* malloc(ptr, device, size, stream): the stream, which the sampler does not read, in a
 * form this decoder does not know */
#define MALLOC_ARGS "-8@%rax -1@%dl -8@%r14"
#define STREAM_ARG "8@stream(%rip)"
#else
#define FREE_ARG "-8@[x0]"   /* as long as the x86-64 one: the same padding */
#define MALLOC_ARGS "8@x21 -1@x20 8@x24"
#define STREAM_ARG "8@[x1, x2]"
#endif
static const char free_note[] = "pytorch\0free\0" FREE_ARG;
static const char malloc_note[] = "pytorch\0malloc\0" MALLOC_ARGS " " STREAM_ARG;

static size_t make_note(uint8_t *out, uint64_t base, const char *strings, size_t size)
{
    Elf64_Nhdr h = {8, (Elf64_Word)(24 + size), 3};
    uint64_t words[3] = {0x1000, base, 0x3000};
    size_t at = 0;
    memcpy(out + at, &h, sizeof h), at += sizeof h;
    memcpy(out + at, "stapsdt", 8), at += 8;
    memcpy(out + at, words, sizeof words), at += sizeof words;
    memcpy(out + at, strings, size), at += size;
    while (at % 4)
        out[at++] = 0;
    return at;
}

static void prelinked_base_moves_the_sites(void)
{
    uint8_t note[128];
    size_t len = make_note(note, 0x2000, free_note, sizeof free_note);
    struct found f = {0};
    CHECK_EQ(memprof_usdt_notes(note, len, 0x2000, collect, &f), 1);
    CHECK_EQ(f.probes[0].pc, 0x1000);
    f.n = 0;
    CHECK_EQ(memprof_usdt_notes(note, len, 0x6000, collect, &f), 1);   /* moved 0x4000 up */
    CHECK_EQ(f.probes[0].pc, 0x5000);
    CHECK_EQ(f.probes[0].semaphore, 0x7000);
    CHECK_EQ(f.probes[0].nargs, 1);
}

/* An argument this decoder cannot read leaves the probe the ones before it: a malloc
 * probe whose stream it does not know is still a site. */
static void arguments_before_an_unreadable_one_are_kept(void)
{
    uint8_t note[128];
    size_t len = make_note(note, 0, malloc_note, sizeof malloc_note);
    struct found f = {0};
    CHECK_EQ(memprof_usdt_notes(note, len, 0, collect, &f), 1);
    struct usdt_arg want[USDT_MAX_ARGS];
    CHECK_EQ(memprof_usdt_parse_args(MALLOC_ARGS, want, USDT_MAX_ARGS), 3);
    CHECK_EQ(f.probes[0].nargs, 3);
    CHECK(memcmp(want, f.probes[0].args, sizeof want[0] * 3) == 0);
    CHECK_EQ(memprof_usdt_parse_args(MALLOC_ARGS " " STREAM_ARG, want, USDT_MAX_ARGS), -1);
}

/* Every cut of a note: refused, or read whole when only its padding is cut; never read
 * past the end (ASan). */
static void cut_sections_refused(void)
{
    uint8_t note[128];
    size_t len = make_note(note, 0x2000, free_note, sizeof free_note);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, note, cut);
        struct found f = {0};
        int n = memprof_usdt_notes(copy, cut, 0, collect, &f);
        bool whole = cut >= len - 3;   /* all but the padding after the last string */
        CHECK_EQ(n, whole ? 1 : n <= 0 ? n : 99);
        CHECK_EQ(f.n, whole ? 1 : 0);
        free(copy);
    }
}

int main(void)
{
    RUN(notes_of_torch_2_11);
    RUN(notes_of_torch_2_14);
    RUN(arguments_evaluated);
    RUN(unreadable_specs_refused);
    RUN(prelinked_base_moves_the_sites);
    RUN(arguments_before_an_unreadable_one_are_kept);
    RUN(cut_sections_refused);
    return 0;
}
