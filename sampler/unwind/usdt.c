/* USDT probes: the notes SystemTap's sys/sdt.h (and folly's and PyTorch's copies of
 * it) write for each probe site, one ELF note (owner "stapsdt", type 3) each:
 *
 *   pc, base, semaphore (8 bytes each), then provider, name and the argument
 *   specs as NUL-terminated strings, e.g. "-8@%rax -1@%dl -8@%r14 -8@-56(%rbp)".
 *
 * `base` is the link-time address of the `.stapsdt.base` section, which prelink may
 * move; the pc and semaphore are adjusted by how far it moved.  The section is not
 * loaded (no SHF_ALLOC), so the notes are read from the object's file, mapped read
 * only, and nothing here allocates.  An argument is a register, a memory operand
 * `offset(%reg)` or a constant `$N`; x86-64 only (elsewhere no spec decodes, and no
 * probe is armed). */
#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unwind/usdt.h"

#define NT_STAPSDT 3

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Copies the NUL-terminated string at *p (below end) into out; false when it does
 * not end before `end` or does not fit. */
static bool take_string(const char **p, const char *end, char *out, size_t cap)
{
    size_t n = strnlen(*p, (size_t)(end - *p));
    if (*p + n >= end || n >= cap)
        return false;
    memcpy(out, *p, n + 1);
    *p += n + 1;
    return true;
}

int memprof_usdt_notes(const uint8_t *section, size_t len, uint64_t base,
                       void (*visit)(const struct usdt_probe *, void *), void *ctx)
{
    int count = 0;
    size_t at = 0;
    while (at <= len && len - at >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr h;
        memcpy(&h, section + at, sizeof h);
        size_t name_at = at + sizeof h, desc_at = name_at + align4(h.n_namesz);
        if (h.n_namesz > len || h.n_descsz > len || desc_at > len ||
            h.n_descsz > len - desc_at)
            return -1;
        at = desc_at + align4(h.n_descsz);
        if (h.n_type != NT_STAPSDT || h.n_namesz != 8 ||
            memcmp(section + name_at, "stapsdt", 8) != 0)
            continue;
        if (h.n_descsz < 3 * 8)
            return -1;
        struct usdt_probe p;
        uint64_t note_base;
        memcpy(&p.pc, section + desc_at, 8);
        memcpy(&note_base, section + desc_at + 8, 8);
        memcpy(&p.semaphore, section + desc_at + 16, 8);
        const char *s = (const char *)section + desc_at + 24, *end = s + h.n_descsz - 24;
        char spec[512];
        if (!take_string(&s, end, p.provider, sizeof p.provider) ||
            !take_string(&s, end, p.name, sizeof p.name))
            return -1;
        if (!take_string(&s, end, spec, sizeof spec))
            spec[0] = '\0';   /* a probe of no arguments may leave the string out */
        if (base != 0) {      /* prelink moved the section: the sites moved with it */
            p.pc += base - note_base;
            if (p.semaphore != 0)
                p.semaphore += base - note_base;
        }
        p.nargs = memprof_usdt_parse_args(spec, p.args, USDT_MAX_ARGS);
        visit(&p, ctx);
        count++;
    }
    return count;
}

/* ---- the file --------------------------------------------------------------------- */
static bool within(size_t size, uint64_t offset, uint64_t len)
{
    return offset <= size && len <= size - offset;
}

int memprof_usdt_file(const char *path, void (*visit)(const struct usdt_probe *, void *),
                      void *ctx)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *file = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (file == MAP_FAILED)
        return -1;
    int rc = -1;
    Elf64_Ehdr eh;
    memcpy(&eh, file, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shstrndx >= eh.e_shnum ||
        !within(size, eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr)))
        goto out;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(file + eh.e_shoff);
    const Elf64_Shdr *names = &sh[eh.e_shstrndx];
    if (!within(size, names->sh_offset, names->sh_size))
        goto out;
    const char *strtab = (const char *)file + names->sh_offset;
    const Elf64_Shdr *notes = NULL;
    uint64_t base = 0;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        if (sh[i].sh_name >= names->sh_size)
            continue;
        const char *name = strtab + sh[i].sh_name;
        size_t room = names->sh_size - sh[i].sh_name;
        if (sh[i].sh_type == SHT_NOTE && strncmp(name, ".note.stapsdt", room) == 0)
            notes = &sh[i];
        else if (strncmp(name, ".stapsdt.base", room) == 0)
            base = sh[i].sh_addr;
    }
    if (notes == NULL)
        rc = 0;
    else if (within(size, notes->sh_offset, notes->sh_size))
        rc = memprof_usdt_notes(file + notes->sh_offset, notes->sh_size, base, visit, ctx);
out:
    munmap((void *)file, size);
    return rc;
}

/* ---- arguments -------------------------------------------------------------------- */
#if defined(__x86_64__)
/* Each general register by its names at 8, 4, 2 and 1 bytes (and the high byte). */
static const struct {
    uint8_t reg;
    const char *names[5];
} registers[] = {
    {REG_RAX, {"rax", "eax", "ax", "al", "ah"}}, {REG_RBX, {"rbx", "ebx", "bx", "bl", "bh"}},
    {REG_RCX, {"rcx", "ecx", "cx", "cl", "ch"}}, {REG_RDX, {"rdx", "edx", "dx", "dl", "dh"}},
    {REG_RSI, {"rsi", "esi", "si", "sil", NULL}}, {REG_RDI, {"rdi", "edi", "di", "dil", NULL}},
    {REG_RBP, {"rbp", "ebp", "bp", "bpl", NULL}}, {REG_RSP, {"rsp", "esp", "sp", "spl", NULL}},
    {REG_R8, {"r8", "r8d", "r8w", "r8b", NULL}},  {REG_R9, {"r9", "r9d", "r9w", "r9b", NULL}},
    {REG_R10, {"r10", "r10d", "r10w", "r10b", NULL}},
    {REG_R11, {"r11", "r11d", "r11w", "r11b", NULL}},
    {REG_R12, {"r12", "r12d", "r12w", "r12b", NULL}},
    {REG_R13, {"r13", "r13d", "r13w", "r13b", NULL}},
    {REG_R14, {"r14", "r14d", "r14w", "r14b", NULL}},
    {REG_R15, {"r15", "r15d", "r15w", "r15b", NULL}},
    {REG_RIP, {"rip", "eip", NULL, NULL, NULL}},
};

/* The register named by the `len` bytes at name. */
static bool register_named(const char *name, size_t len, uint8_t *reg, uint8_t *shift)
{
    for (size_t r = 0; r < sizeof registers / sizeof registers[0]; r++)
        for (int form = 0; form < 5; form++) {
            const char *n = registers[r].names[form];
            if (n != NULL && strlen(n) == len && memcmp(n, name, len) == 0) {
                *reg = registers[r].reg;
                *shift = form == 4 ? 8 : 0;
                return true;
            }
        }
    return false;
}
#else
static bool register_named(const char *name, size_t len, uint8_t *reg, uint8_t *shift)
{
    (void)name, (void)len, (void)reg, (void)shift;
    return false;
}
#endif

/* A decimal number at *p, signed; false when there is none. */
static bool take_number(const char **p, int64_t *out)
{
    const char *s = *p;
    bool negative = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9' && v < (1ull << 59))
        v = v * 10 + (uint64_t)(*s++ - '0');
    *out = negative ? -(int64_t)v : (int64_t)v;
    *p = s;
    return true;
}

/* `%name` ending at one of `ends`. */
static bool take_register(const char **p, const char *ends, struct usdt_arg *a)
{
    if (**p != '%')
        return false;
    const char *name = *p + 1;
    size_t len = strcspn(name, ends);
    if (!register_named(name, len, &a->reg, &a->shift))
        return false;
    *p = name + len;
    return true;
}

static bool parse_arg(const char *s, const char *end, struct usdt_arg *a)
{
    int64_t size;
    *a = (struct usdt_arg){0};
    if (!take_number(&s, &size) || *s++ != '@' ||
        !(size == 1 || size == 2 || size == 4 || size == 8 || size == -1 || size == -2 ||
          size == -4 || size == -8))
        return false;
    a->size = (int8_t)size;
    if (*s == '$') {   /* a constant */
        s++;
        a->kind = USDT_ARG_CONSTANT;
        return take_number(&s, &a->value) && s == end;
    }
    if (*s == '%') {
        a->kind = USDT_ARG_REGISTER;
        return take_register(&s, " ", a) && s == end;
    }
    a->kind = USDT_ARG_MEMORY;   /* offset(%reg); an index register is not read */
    if (*s != '(' && !take_number(&s, &a->value))
        return false;
    if (*s++ != '(' || !take_register(&s, ")", a) || a->shift != 0)
        return false;
    return *s++ == ')' && s == end;
}

int memprof_usdt_parse_args(const char *spec, struct usdt_arg *out, int max)
{
    int n = 0;
    for (const char *s = spec; *s != '\0';) {
        if (*s == ' ') {
            s++;
            continue;
        }
        const char *end = s + strcspn(s, " ");
        if (n == max || !parse_arg(s, end, &out[n]))
            return -1;
        n++;
        s = end;
    }
    return n;
}

uint64_t memprof_usdt_arg_value(const struct usdt_arg *arg, const ucontext_t *uc)
{
    uint64_t v = 0;
#if defined(__x86_64__)
    if (arg->kind == USDT_ARG_CONSTANT) {
        v = (uint64_t)arg->value;
    } else {
        v = (uint64_t)uc->uc_mcontext.gregs[arg->reg] >> arg->shift;
        if (arg->kind == USDT_ARG_MEMORY) {
            uint64_t word = 0;
            memcpy(&word, (const void *)(uintptr_t)(v + (uint64_t)arg->value),
                   (size_t)(arg->size < 0 ? -arg->size : arg->size));
            v = word;
        }
    }
#else
    (void)uc;
#endif
    int bytes = arg->size < 0 ? -arg->size : arg->size;
    if (bytes < 8) {
        uint64_t mask = (1ull << (8 * bytes)) - 1, sign = 1ull << (8 * bytes - 1);
        v &= mask;
        if (arg->size < 0 && (v & sign))
            v |= ~mask;
    }
    return v;
}
