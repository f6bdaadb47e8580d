/* USDT probes: the notes SystemTap's sys/sdt.h (and folly's and PyTorch's copies of
 * it) write for each probe site, one ELF note (owner "stapsdt", type 3) each:
 *
 *   pc, base, semaphore (8 bytes each), then provider, name and the argument
 *   specs as NUL-terminated strings, e.g. "-8@%rax -1@%dl -8@%r14 -8@-56(%rbp)".
 *
 * `base` is the link-time address of the `.stapsdt.base` section, which prelink may
 * move; the pc and semaphore are adjusted by how far it moved.  The section is not
 * loaded (no SHF_ALLOC), so the notes are read from the object's file, mapped read
 * only, and nothing here allocates.  An argument is a register, a memory operand or a
 * constant, as the machine's assembler writes them: on x86-64 `%rax`, `-56(%rbp)`,
 * `$42`; on aarch64 `x19`, `w1`, `[x29, -8]`, `[sp]`, `42`. */
#include <elf.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "unwind/usdt.h"

#define NT_STAPSDT 3

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }
static int parse_leading(const char *spec, struct usdt_arg *out, int max, bool *whole);

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
        bool whole;   /* a probe's use reads only its first few arguments */
        p.nargs = parse_leading(spec, p.args, USDT_MAX_ARGS, &whole);
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

/* ---- arguments (arch.h names each machine's registers) ---------------------------- */
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

/* A register's name (after ARCH_USDT_REGISTER_MARK) ending at one of `ends`. */
static bool take_register(const char **p, const char *ends, struct usdt_arg *a)
{
    const char *mark = ARCH_USDT_REGISTER_MARK;
    if (strncmp(*p, mark, strlen(mark)) != 0)
        return false;
    const char *name = *p + strlen(mark);
    size_t len = strcspn(name, ends);
    if (!arch_usdt_register(name, len, &a->reg, &a->shift))
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
    const char *at = s, *constant = ARCH_USDT_CONSTANT_MARK;
    if (strncmp(s, constant, strlen(constant)) == 0) {   /* a constant */
        s += strlen(constant);
        a->kind = USDT_ARG_CONSTANT;
        if (take_number(&s, &a->value) && s == end)
            return true;
    }
    s = at;
    if (take_register(&s, " ", a) && s == end) {
        a->kind = USDT_ARG_REGISTER;
        return true;
    }
    s = at;
    a->kind = USDT_ARG_MEMORY;   /* an index register is not read */
    if (ARCH_USDT_BRACKETED_MEMORY) {   /* [reg] or [reg, offset] */
        if (*s++ != '[' || !take_register(&s, ",]", a))
            return false;
        if (*s == ',') {
            s++;
            while (*s == ' ')
                s++;
            if (!take_number(&s, &a->value))
                return false;
        }
        return *s++ == ']' && s == end;
    }
    /* offset(%reg) */
    if (*s != '(' && !take_number(&s, &a->value))
        return false;
    if (*s++ != '(' || !take_register(&s, ")", a) || a->shift != 0)
        return false;
    return *s++ == ')' && s == end;
}

/* The end of the argument at s: the next blank outside brackets (aarch64's
 * `[reg, offset]` holds one). */
static const char *arg_end(const char *s)
{
    int depth = 0;
    for (; *s != '\0' && (*s != ' ' || depth > 0); s++)
        depth += (*s == '[') - (*s == ']');
    return s;
}

/* The arguments of a spec read from the first up to one this decoder cannot read (or
 * the max-th); *whole: whether that was every one. */
static int parse_leading(const char *spec, struct usdt_arg *out, int max, bool *whole)
{
    int n = 0;
    *whole = false;
    for (const char *s = spec; *s != '\0';) {
        if (*s == ' ') {
            s++;
            continue;
        }
        const char *end = arg_end(s);
        if (n == max || !parse_arg(s, end, &out[n]))
            return n;
        n++;
        s = end;
    }
    *whole = true;
    return n;
}

int memprof_usdt_parse_args(const char *spec, struct usdt_arg *out, int max)
{
    bool whole;
    int n = parse_leading(spec, out, max, &whole);
    return whole ? n : -1;
}

uint64_t memprof_usdt_arg_value(const struct usdt_arg *arg, const ucontext_t *uc)
{
    uint64_t v = 0;
    if (arg->kind == USDT_ARG_CONSTANT) {
        v = (uint64_t)arg->value;
    } else {
        v = arch_usdt_register_value(uc, arg->reg, arg->shift);
        if (arg->kind == USDT_ARG_MEMORY) {
            uint64_t word = 0;
            memcpy(&word, (const void *)(uintptr_t)(v + (uint64_t)arg->value),
                   (size_t)(arg->size < 0 ? -arg->size : arg->size));
            v = word;
        }
    }
    int bytes = arg->size < 0 ? -arg->size : arg->size;
    if (bytes < 8) {
        uint64_t mask = (1ull << (8 * bytes)) - 1, sign = 1ull << (8 * bytes - 1);
        v &= mask;
        if (arg->size < 0 && (v & sign))
            v |= ~mask;
    }
    return v;
}
