/* A loaded object's dynamic section and its GNU hash table, read in place where the
 * loader mapped them (the lookup is the one of the GNU hash format as ld.so does it:
 * a Bloom filter, a bucket, then a chain of hashes ending with its low bit set). */
#include <elf.h>
#include <string.h>

#include "unwind/object_symbols.h"

/* d_ptr values: relocated in place by glibc on most targets, not on all. */
static uintptr_t dyn_address(uintptr_t base, ElfW(Addr) ptr)
{
    return ptr < base ? base + ptr : ptr;
}

bool memprof_object_dynamic(const struct dl_phdr_info *info, struct memprof_dynamic *out)
{
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    *out = (struct memprof_dynamic){0};
    if (dyn == NULL)
        return false;
    uintptr_t base = info->dlpi_addr;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t at = dyn_address(base, dyn->d_un.d_ptr);
        switch (dyn->d_tag) {
        case DT_SYMTAB: out->symtab = (const ElfW(Sym) *)at; break;
        case DT_STRTAB: out->strtab = (const char *)at; break;
        case DT_GNU_HASH: out->gnu_hash = (const uint32_t *)at; break;
        case DT_JMPREL: out->jmprel = (const ElfW(Rela) *)at; break;
        case DT_PLTRELSZ: out->jmprel_size = dyn->d_un.d_val; break;
        case DT_RELA: out->rela = (const ElfW(Rela) *)at; break;
        case DT_RELASZ: out->rela_size = dyn->d_un.d_val; break;
        }
    }
    return out->symtab != NULL && out->strtab != NULL;
}

static uint32_t gnu_hash(const char *name)
{
    uint32_t h = 5381;
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++)
        h = h * 33 + *c;
    return h;
}

bool memprof_object_defines(const struct dl_phdr_info *info, const char *name)
{
    struct memprof_dynamic d;
    if (!memprof_object_dynamic(info, &d) || d.gnu_hash == NULL)
        return false;
    uint32_t nbuckets = d.gnu_hash[0], symoffset = d.gnu_hash[1];
    uint32_t bloom_size = d.gnu_hash[2], bloom_shift = d.gnu_hash[3];
    if (nbuckets == 0 || bloom_size == 0)
        return false;
    const ElfW(Addr) *bloom = (const ElfW(Addr) *)&d.gnu_hash[4];
    const uint32_t *buckets = (const uint32_t *)&bloom[bloom_size];
    const uint32_t *chain = &buckets[nbuckets];
    const unsigned bits = sizeof(ElfW(Addr)) * 8;
    uint32_t h = gnu_hash(name);
    ElfW(Addr) word = bloom[(h / bits) % bloom_size];
    ElfW(Addr) mask = ((ElfW(Addr))1 << (h % bits)) | ((ElfW(Addr))1 << ((h >> bloom_shift) % bits));
    if ((word & mask) != mask)
        return false;
    uint32_t i = buckets[h % nbuckets];   /* 0: an empty bucket */
    if (i == 0 || i < symoffset)
        return false;
    for (;; i++) {
        uint32_t link = chain[i - symoffset];
        const ElfW(Sym) *sym = &d.symtab[i];
        if ((link | 1) == (h | 1) && sym->st_shndx != SHN_UNDEF &&
            strcmp(d.strtab + sym->st_name, name) == 0)
            return true;
        if (link & 1)
            break;
    }
    return false;
}
