/* A loaded object's dynamic section (sampler/unwind/object_symbols.c) alone: whether an
 * object defines a symbol, looked up in its GNU hash table, checked against a plain walk
 * of its symbol table for every dynamic symbol of libc (thousands, defined or imported)
 * and for names it lacks; and the relocations the dynamic section lists, which name the
 * function the test calls. */
#include <elf.h>
#include <link.h>
#include <string.h>

#include "unit.h"
#include "unwind/object_symbols.h"

struct found {
    const char *name_part;   /* of the object's path */
    struct dl_phdr_info info;
    bool seen;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct found *f = arg;
    bool main_program = f->name_part[0] == '\0';
    if (main_program ? info->dlpi_name[0] != '\0' : strstr(info->dlpi_name, f->name_part) == NULL)
        return 0;
    f->info = *info;
    f->seen = true;
    return 1;
}

static struct dl_phdr_info object(const char *name_part)
{
    struct found f = {name_part, {0}, false};
    dl_iterate_phdr(find_object, &f);
    CHECK(f.seen);
    return f.info;
}

/* Every name in libc's dynamic symbols: found by its hash exactly where the table defines
 * it (an imported one, such as ld.so's functions, is not). */
static void libc_symbols_agree_with_its_table(void)
{
    struct dl_phdr_info libc = object("libc.so");
    struct memprof_dynamic d;
    CHECK(memprof_object_dynamic(&libc, &d));
    CHECK(d.gnu_hash != NULL);
    /* the symbols: from 1 to the end of the hash table's last chain */
    uint32_t nbuckets = d.gnu_hash[0], symoffset = d.gnu_hash[1], bloom = d.gnu_hash[2];
    const uint32_t *buckets = (const uint32_t *)((const ElfW(Addr) *)&d.gnu_hash[4] + bloom);
    uint32_t last = 0;
    for (uint32_t b = 0; b < nbuckets; b++)
        last = buckets[b] > last ? buckets[b] : last;
    const uint32_t *chain = buckets + nbuckets;
    while (!(chain[last - symoffset] & 1))
        last++;
    int defined = 0, imported = 0;
    for (uint32_t i = 1; i <= last; i++) {
        const char *name = d.strtab + d.symtab[i].st_name;
        bool here = d.symtab[i].st_shndx != SHN_UNDEF;
        CHECK_EQ(memprof_object_defines(&libc, name), here);
        defined += here;
        imported += !here;
    }
    CHECK(defined > 1000 && imported > 0);
    CHECK(!memprof_object_defines(&libc, "_ZTIN3c1016OutOfMemoryErrorE"));
    CHECK(!memprof_object_defines(&libc, "mallocx"));
}

/* The test program calls malloc through its PLT: the name is among its relocations,
 * and it defines no malloc of its own. */
static void the_program_imports_what_it_calls(void)
{
    struct dl_phdr_info self = object("");
    struct memprof_dynamic d;
    CHECK(memprof_object_dynamic(&self, &d));
    bool imports_malloc = false;
    const ElfW(Rela) *tables[] = {d.jmprel, d.rela};
    size_t sizes[] = {d.jmprel_size, d.rela_size};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; tables[t] != NULL && i < sizes[t] / sizeof(ElfW(Rela)); i++) {
            const ElfW(Sym) *sym = &d.symtab[ELF64_R_SYM(tables[t][i].r_info)];
            imports_malloc |= strcmp(d.strtab + sym->st_name, "malloc") == 0;
        }
    CHECK(imports_malloc);
    CHECK(!memprof_object_defines(&self, "malloc"));
}

int main(void)
{
    void *volatile kept = malloc(1);   /* a call through the PLT */
    free(kept);
    RUN(libc_symbols_agree_with_its_table);
    RUN(the_program_imports_what_it_calls);
    return 0;
}
