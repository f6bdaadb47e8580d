/* Hooks by GOT redirection, for a sampler injected into a running process
 * (mem_profiler -p PID --attach) rather than preloaded.
 *
 * Loaded by dlopen(RTLD_LOCAL) after the fact, our malloc & co. interpose
 * nothing: every object's calls already resolve to libc (or to the process's
 * own allocator).  So while a window is open the sampler rewrites, in every
 * loaded object except itself, the dynamic loader and the vDSO, the GOT slots
 * (JUMP_SLOT and GLOB_DAT relocations) of the functions it hooks, and those of
 * dlopen, so that a library loaded later is redirected too.  When the window
 * closes every slot still holding a hook gets its original value back: the
 * process runs as it did before, and the next window re-arms without a second
 * injection.
 *
 * A slot is one aligned 8-byte store: a thread calling through it sees either
 * the old or the new target.  Slots in a RELRO segment are made writable for
 * the store and read-only again after it. */
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch.h"
#include "hooks/got_hooks.h"
#include "hooks/hooks_dlsym.h"
#include "unwind/object_symbols.h"

/* ---- which library this is ----------------------------------------------------- */
static bool injected;

/* Preloaded (or linked), the sampler is in the process's global scope, where
 * the handle of the main program finds its symbols; dlopen'ed RTLD_LOCAL by
 * the injection, it is not. */
bool memprof_detect_injection(void)
{
    void *global = dlopen(NULL, RTLD_LAZY | RTLD_NOLOAD);
    injected = global != NULL && dlsym(global, "memprof_start") == NULL;
    return injected;
}

bool memprof_is_injected(void)
{
    return injected;
}

/* ---- the slots we changed: open addressing on the slot's address ------------- */
#define RECORD_CAPACITY (1u << 16)

struct slot_record {
    uintptr_t *slot;             /* NULL: an empty entry */
    uintptr_t original;
};

static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot_record *records;   /* mmap'ed at the first arm */
static uint32_t redirected;           /* slots holding a hook now */
static bool armed;
static unsigned long long scanned_adds;   /* dlpi_adds at the last full scan */

static struct slot_record *record_of(uintptr_t *slot, bool insert)
{
    uint32_t i = (uint32_t)(((uintptr_t)slot >> 3) * 0x9E3779B1u) & (RECORD_CAPACITY - 1);
    for (uint32_t probes = 0; probes < RECORD_CAPACITY; probes++) {
        struct slot_record *r = &records[i];
        if (r->slot == slot || (r->slot == NULL && insert))
            return r;
        if (r->slot == NULL)
            return NULL;
        i = (i + 1) & (RECORD_CAPACITY - 1);
    }
    return NULL;
}

/* ---- the hook of each relocated name ----------------------------------------------
 * The table of every interposer (interposers.c), given by process.c; dlopen and dlsym,
 * the loader's, are among them by way of memprof_loader_hook_for. */
static memprof_hook_lookup *hook_for;

void memprof_got_hooks_from(memprof_hook_lookup *lookup)
{
    hook_for = lookup;
}

static void *dlopen_hook(const char *file, int mode);
extern char memprof_dlsym_stub[] HIDDEN;

void *memprof_loader_hook_for(const char *name)
{
    if (strcmp(name, "dlopen") == 0)
        return (void *)dlopen_hook;
    if (strcmp(name, "dlsym") == 0)
        return memprof_dlsym_stub;
    return NULL;
}

/* ---- walking an object's relocations -------------------------------------------- */
struct object_view {
    uintptr_t base;
    struct memprof_dynamic dyn;
    uintptr_t relro_start, relro_end;   /* the pages made read-only after relocation */
};

typedef void slot_visitor(const struct object_view *o, uintptr_t *slot, uintptr_t hook);

static uintptr_t page_of(uintptr_t address)
{
    return address & ~(uintptr_t)(getpagesize() - 1);
}

static bool store_slot(const struct object_view *o, uintptr_t *slot, uintptr_t value)
{
    bool relro = (uintptr_t)slot >= o->relro_start && (uintptr_t)slot < o->relro_end;
    void *page = (void *)page_of((uintptr_t)slot);
    if (relro && mprotect(page, (size_t)getpagesize(), PROT_READ | PROT_WRITE) != 0)
        return false;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    if (relro)
        mprotect(page, (size_t)getpagesize(), PROT_READ);
    return true;
}

static void visit_relocations(const struct object_view *o, const ElfW(Rela) *rel, size_t bytes,
                              slot_visitor *visit)
{
    for (size_t i = 0; rel != NULL && i < bytes / sizeof *rel; i++) {
        unsigned type = ELF64_R_TYPE(rel[i].r_info);
        if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
            continue;
        const char *name = o->dyn.strtab + o->dyn.symtab[ELF64_R_SYM(rel[i].r_info)].st_name;
        void *hook = hook_for(name);
        if (hook != NULL)
            visit(o, (uintptr_t *)(o->base + rel[i].r_offset), (uintptr_t)hook);
    }
}

static bool excluded(const struct dl_phdr_info *info)
{
    static uintptr_t self;
    if (self == 0) {
        Dl_info me;
        self = dladdr((void *)memprof_got_hooks_from, &me) ? (uintptr_t)me.dli_fbase : 1;
    }
    return info->dlpi_addr == self ||
           info->dlpi_addr == getauxval(AT_BASE) ||            /* the dynamic loader */
           info->dlpi_addr == getauxval(AT_SYSINFO_EHDR);      /* the vDSO */
}

static int visit_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    slot_visitor *visit = (slot_visitor *)arg;
    if (excluded(info))
        return 0;
    struct object_view o = {.base = info->dlpi_addr};
    if (!memprof_object_dynamic(info, &o.dyn))
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {   /* ld.so protects whole pages only: the
                                               last partial one stays writable */
            o.relro_start = page_of(o.base + ph->p_vaddr);
            o.relro_end = page_of(o.base + ph->p_vaddr + ph->p_memsz);
        }
    }
    visit_relocations(&o, o.dyn.jmprel, o.dyn.jmprel_size, visit);
    visit_relocations(&o, o.dyn.rela, o.dyn.rela_size, visit);
    return 0;
}

static void redirect_slot(const struct object_view *o, uintptr_t *slot, uintptr_t hook)
{
    uintptr_t now = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (now == hook)
        return;
    struct slot_record *r = record_of(slot, true);
    if (r == NULL || !store_slot(o, slot, hook))
        return;   /* the record is full, or the page cannot be written: as it is */
    r->slot = slot;
    r->original = now;
    __atomic_fetch_add(&redirected, 1, __ATOMIC_RELAXED);
}

/* Only slots that still hold our hook: one that the program or the loader has
 * changed since keeps its new value. */
static void restore_slot(const struct object_view *o, uintptr_t *slot, uintptr_t hook)
{
    struct slot_record *r = record_of(slot, false);
    if (r != NULL && __atomic_load_n(slot, __ATOMIC_ACQUIRE) == hook)
        store_slot(o, slot, r->original);
}

static int count_adds(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(unsigned long long *)arg = info->dlpi_adds;
    return 1;
}

/* Redirects the slots of the objects loaded since the last scan (all at the first). */
static void redirect_new_objects(void)
{
    unsigned long long adds = 0;
    dl_iterate_phdr(count_adds, &adds);
    if (adds == scanned_adds)
        return;
    scanned_adds = adds;
    dl_iterate_phdr(visit_object, (void *)redirect_slot);
}

int memprof_got_arm(void)
{
    if (!injected)
        return 0;
    pthread_mutex_lock(&patch_lock);
    if (records == NULL) {
        void *m = mmap(NULL, RECORD_CAPACITY * sizeof *records, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        records = m == MAP_FAILED ? NULL : m;
    }
    if (records != NULL && !armed) {
        armed = true;
        scanned_adds = 0;
        redirect_new_objects();
    }
    pthread_mutex_unlock(&patch_lock);
    return records != NULL ? 0 : -1;
}

void memprof_got_disarm(void)
{
    if (!injected)
        return;
    pthread_mutex_lock(&patch_lock);
    if (armed) {
        armed = false;
        dl_iterate_phdr(visit_object, (void *)restore_slot);
        madvise(records, RECORD_CAPACITY * sizeof *records, MADV_DONTNEED);   /* zeroes it */
        __atomic_store_n(&redirected, 0, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&patch_lock);
}

/* A fork while another thread armed or disarmed leaves the child the lock held;
 * the slots and their records are the child's as much as the parent's. */
void memprof_got_after_fork(void)
{
    pthread_mutex_init(&patch_lock, NULL);
}

uint32_t memprof_got_redirected(void)
{
    return __atomic_load_n(&redirected, __ATOMIC_RELAXED);
}

/* ---- dlopen through a redirected slot ------------------------------------------------
 * glibc's dlopen takes the calling object (its RUNPATH, its namespace) from its
 * return address, so it must not see ours: memprof_call_via_ret (arch/x86_64.S)
 * calls it with the address of a `ret` byte inside the caller's own code as its
 * return address, and that ret comes back to us.  (A process with a CET shadow
 * stack would refuse it; Debian does not enable one.)  Where there is no such
 * trampoline (arch.h) dlopen is called as it is: injection is x86-64 only. */
#if ARCH_CALL_VIA_RET
void *memprof_call_via_ret(void *(*fn)(const char *, int), const void *ret, const char *file,
                           int mode) HIDDEN;

struct code_search {
    uintptr_t address;
    const unsigned char *ret;
};

static int find_ret_near(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct code_search *s = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || s->address < start ||
            s->address >= end)
            continue;
        const unsigned char *p = memchr((const void *)s->address, 0xc3, end - s->address);
        s->ret = p ? p : memchr((const void *)start, 0xc3, s->address - start);
        return 1;
    }
    return 0;
}

static void *dlopen_as(uintptr_t caller, const char *file, int mode)
{
    struct code_search s = {caller, NULL};
    dl_iterate_phdr(find_ret_near, &s);
    return s.ret != NULL ? memprof_call_via_ret(dlopen, s.ret, file, mode) : dlopen(file, mode);
}
#else
static void *dlopen_as(uintptr_t caller, const char *file, int mode)
{
    (void)caller;
    return dlopen(file, mode);
}
#endif

static void *dlopen_hook(const char *file, int mode)
{
    void *handle = dlopen_as((uintptr_t)__builtin_return_address(0), file, mode);
    if (handle != NULL) {
        pthread_mutex_lock(&patch_lock);
        if (armed)
            redirect_new_objects();
        pthread_mutex_unlock(&patch_lock);
    }
    return handle;
}
