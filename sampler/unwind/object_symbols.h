/* A loaded object's dynamic section, read in place: its dynamic symbols, its
 * relocations, and whether it defines a symbol (object_symbols.c).  Shared by
 * got_hooks.c, which rewrites the slots the relocations name, and framework_oom.c. */
#ifndef MEMPROF_OBJECT_SYMBOLS_H
#define MEMPROF_OBJECT_SYMBOLS_H

#include <link.h>

#include "base/common.h"

struct memprof_dynamic {
    const ElfW(Sym) *symtab;
    const char *strtab;
    const uint32_t *gnu_hash;          /* DT_GNU_HASH, or NULL */
    const ElfW(Rela) *jmprel, *rela;   /* the PLT's relocations, and the others */
    size_t jmprel_size, rela_size;     /* in bytes */
};

/* The object's dynamic section; false for an object without one, or without symbols. */
bool memprof_object_dynamic(const struct dl_phdr_info *info, struct memprof_dynamic *out) HIDDEN;

/* Whether the object itself defines `name` among its dynamic symbols (looked up in its
 * GNU hash table; an object without one, which no current linker writes, defines none). */
bool memprof_object_defines(const struct dl_phdr_info *info, const char *name) HIDDEN;

#endif
