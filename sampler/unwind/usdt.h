/* USDT probes (SystemTap's SDT notes, which folly's and PyTorch's static tracepoints
 * write too): an object file's probes read from its `.note.stapsdt`, their argument
 * specs decoded, and an argument read from the registers a trap saved (usdt.c).
 * Knows nothing of which probes matter: framework_pools.c chooses them. */
#ifndef MEMPROF_USDT_H
#define MEMPROF_USDT_H

#include <ucontext.h>

#include "base/common.h"

#define USDT_MAX_ARGS 12
#define USDT_NAME_MAX 48

enum usdt_arg_kind { USDT_ARG_REGISTER = 1, USDT_ARG_MEMORY, USDT_ARG_CONSTANT };

/* One argument, as `-8@%rax`, `-1@%dl`, `8@-56(%rbp)` or `4@$42` say: its size in
 * bytes (negative: signed), a register (an index of the ucontext's gregs, with the
 * bit offset of a high-byte register), and the offset or the constant. */
struct usdt_arg {
    int8_t kind, size;
    uint8_t reg, shift;
    int64_t value;
};

struct usdt_probe {
    uint64_t pc, semaphore;   /* link-time addresses (semaphore 0: none) */
    char provider[USDT_NAME_MAX], name[USDT_NAME_MAX];
    int nargs;                /* those read, up to the first this decoder cannot read */
    struct usdt_arg args[USDT_MAX_ARGS];
};

/* visit(probe, ctx) for each probe in the bytes of a `.note.stapsdt` section; `base`:
 * the address of the file's `.stapsdt.base` section (where it has one, else 0), which
 * the notes' pc and semaphore are relative to.  Returns the count, -1 when the section
 * is malformed (what it held before that was visited). */
int memprof_usdt_notes(const uint8_t *section, size_t len, uint64_t base,
                       void (*visit)(const struct usdt_probe *, void *), void *ctx) HIDDEN;

/* The same for the ELF file at `path` (a 64-bit object of this machine), read
 * without allocating; -1 when it cannot be read, 0 when it has no probes. */
int memprof_usdt_file(const char *path, void (*visit)(const struct usdt_probe *, void *),
                      void *ctx) HIDDEN;

/* The arguments of a spec; -1 for one this decoder cannot read. */
int memprof_usdt_parse_args(const char *spec, struct usdt_arg *out, int max) HIDDEN;

/* An argument's value at a probe site, from the registers a trap there saved. */
uint64_t memprof_usdt_arg_value(const struct usdt_arg *arg, const ucontext_t *uc) HIDDEN;

#endif
