/* Interposition of the malloc family.  Each hook calls the real allocator
 * and then tells the sampler (memprof_on_alloc / memprof_on_free); the fast
 * path is one load of memprof_active_window and a branch.
 *
 * The first call into the hooks sets the sampler up (see first_call), so that a
 * library initialized before ours is seen from its first allocation.  Until the
 * real functions are resolved (and while dlsym itself allocates: a failed
 * dlsym(RTLD_NEXT) calls malloc twice on glibc 2.36) requests are served from a
 * small static bootstrap arena whose pointers free/realloc recognise and never
 * hand to libc. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/sysutil.h"
#include "hooks/got_hooks.h"
#include "hooks/hooks_malloc.h"
#include "hooks/process.h"
#include "sample/sample.h"

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);

/* ---- bootstrap arena ----------------------------------------------------- */
#define BOOT_ARENA_SIZE (256 * 1024)
static _Alignas(64) unsigned char boot_arena[BOOT_ARENA_SIZE];
static _Atomic size_t boot_used;

static void *boot_alloc(size_t size, size_t align)
{
    if (align < 16)
        align = 16;
    size_t need = size + align + sizeof(size_t);
    size_t start = atomic_fetch_add(&boot_used, need);
    if (start + need > BOOT_ARENA_SIZE)
        return NULL;
    uintptr_t p = ((uintptr_t)boot_arena + start + sizeof(size_t) + align - 1) & ~(uintptr_t)(align - 1);
    ((size_t *)p)[-1] = size;   /* for realloc out of the arena */
    return (void *)p;           /* static memory: already zero */
}

static inline bool boot_owns(const void *p)
{
    return (const unsigned char *)p >= boot_arena &&
           (const unsigned char *)p < boot_arena + BOOT_ARENA_SIZE;
}

/* ---- resolution of the real functions ------------------------------------ */
static __thread int resolving TLS_IE;

/* Preloaded, the allocator is the next definition after ours; injected (not
 * in the global scope), it is whichever one the process uses: libc's, or a
 * jemalloc the process was linked or preloaded with. */
static void *lookup_handle = RTLD_NEXT;

/* A program built without PIE that takes the address of an allocator function
 * (Debian's python3.11 takes malloc's and free's) exports it as an undefined
 * symbol valued at its PLT entry, so that the address is one everywhere, and
 * dlsym(RTLD_DEFAULT) answers with that entry.  It jumps through the program's
 * GOT slot, which an injected sampler redirects to the hook: the hook would
 * call itself.  So an answer counts only as the start of a defined symbol of
 * the object holding it; else the first library in load order defining the
 * name is asked. */
static bool is_definition_in(void *fn, const char *object)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    return dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym != NULL &&
           sym->st_shndx != SHN_UNDEF && info.dli_saddr == fn &&
           (object == NULL || strcmp(info.dli_fname, object) == 0);
}

struct loaded_libraries {
    const char *names[64];
    int count;
};

static int list_library(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct loaded_libraries *l = arg;
    if (info->dlpi_name[0] != '\0' && l->count < 64)   /* "": the program itself */
        l->names[l->count++] = info->dlpi_name;
    return 0;
}

static void *first_definition(const char *name)
{
    struct loaded_libraries l = {.count = 0};
    dl_iterate_phdr(list_library, &l);   /* opened outside its callback */
    for (int i = 0; i < l.count; i++) {
        void *handle = dlopen(l.names[i], RTLD_NOLOAD | RTLD_LAZY);
        void *fn = handle ? dlsym(handle, name) : NULL;
        bool defined_here = fn != NULL && is_definition_in(fn, l.names[i]);
        if (handle != NULL)
            dlclose(handle);
        if (defined_here)
            return fn;
    }
    return NULL;
}

static void *next_symbol(const char *name)
{
    void *fn = dlsym(lookup_handle, name);
    bool plt_entry = fn != NULL && lookup_handle == RTLD_DEFAULT && !is_definition_in(fn, NULL);
    return plt_entry ? first_definition(name) : fn;
}

static void resolve_real(void)
{
    resolving = 1;
    real_calloc = next_symbol("calloc");
    real_realloc = next_symbol("realloc");
    real_free = next_symbol("free");
    real_posix_memalign = next_symbol("posix_memalign");
    real_aligned_alloc = next_symbol("aligned_alloc");
    real_memalign = next_symbol("memalign");
    real_valloc = next_symbol("valloc");
    real_pvalloc = next_symbol("pvalloc");
    void *m = next_symbol("malloc");
    atomic_store_explicit((_Atomic(void *) *)&real_malloc, m, memory_order_release);
    resolving = 0;
}

/* Called while the real functions are not resolved.  The first call made once the C
 * library has set up the environment (by a library initialized before ours, in its
 * constructor) sets the sampler up, window included, before its allocation is made;
 * the constructor sets up a process whose hooks no one called before it.  A thread
 * calling in while another sets up finds the real functions for itself, its
 * allocations unsampled as before any window; allocations under dlsym go to the arena. */
__attribute__((noinline, cold)) static bool first_call(void)
{
    if (resolving)
        return false;
    if (environ != NULL)
        memprof_process_set_up();   /* at once where another thread has it in hand */
    if (atomic_load_explicit((_Atomic(void *) *)&real_malloc, memory_order_acquire) == NULL)
        resolve_real();
    return real_malloc != NULL;
}

/* True when the hooks may call into libc; false means: use the arena. */
static inline bool ready(void)
{
    if (LIKELY(real_malloc != NULL))
        return true;
    return first_call();
}

/* ---- the hooks ------------------------------------------------------------ */
EXPORT void *malloc(size_t size)
{
    if (UNLIKELY(!ready()))
        return boot_alloc(size, 16);
    void *p = real_malloc(size);
    memprof_on_alloc(p, size);
    return p;
}

EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        total = SIZE_MAX;
    if (UNLIKELY(!ready()))
        return total == SIZE_MAX ? NULL : boot_alloc(total, 16);
    void *p = real_calloc(n, size);
    memprof_on_alloc(p, total);
    return p;
}

EXPORT void free(void *p)
{
    if (UNLIKELY(p == NULL || boot_owns(p)))
        return;
    memprof_on_free(p);
    real_free(p);
}

static void *realloc_from_arena(void *old, size_t size)
{
    void *p = malloc(size);
    if (p != NULL) {
        size_t old_size = ((size_t *)old)[-1];
        memcpy(p, old, old_size < size ? old_size : size);
    }
    return p;
}

EXPORT void *realloc(void *old, size_t size)
{
    if (UNLIKELY(boot_owns(old)))
        return realloc_from_arena(old, size);
    if (UNLIKELY(!ready()))
        return boot_alloc(size, 16);

    struct memprof_moved moved = memprof_on_realloc(old);
    void *p = real_realloc(old, size);
    memprof_on_realloc_done(moved, old, p == NULL && size != 0);   /* realloc(p, 0) frees p */
    memprof_on_alloc(p, size);
    return p;
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    if (UNLIKELY(!ready())) {
        *out = boot_alloc(size, align);
        return *out ? 0 : ENOMEM;
    }
    int rc = real_posix_memalign(out, align, size);
    if (rc == 0)
        memprof_on_alloc(*out, size);
    return rc;
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
    if (UNLIKELY(!ready()))
        return boot_alloc(size, align);
    void *p = real_aligned_alloc(align, size);
    memprof_on_alloc(p, size);
    return p;
}

EXPORT void *memalign(size_t align, size_t size)
{
    if (UNLIKELY(!ready()))
        return boot_alloc(size, align);
    void *p = real_memalign(align, size);
    memprof_on_alloc(p, size);
    return p;
}

EXPORT void *valloc(size_t size)
{
    if (UNLIKELY(!ready()))
        return boot_alloc(size, 4096);
    void *p = real_valloc(size);
    memprof_on_alloc(p, size);
    return p;
}

EXPORT void *pvalloc(size_t size)
{
    if (UNLIKELY(!ready()))
        return boot_alloc(size, 4096);
    void *p = real_pvalloc(size);
    memprof_on_alloc(p, size);
    return p;
}

#define MALLOC_FAMILY(X) X(malloc) X(calloc) X(realloc) X(free) X(posix_memalign) \
    X(aligned_alloc) X(memalign) X(valloc) X(pvalloc)
MALLOC_FAMILY(MEMPROF_LOCAL_ALIAS)

void *memprof_malloc_hook_for(const char *name)
{
#define MATCH(fn) if (strcmp(name, #fn) == 0) return (void *)hook_##fn;
    MALLOC_FAMILY(MATCH)
#undef MATCH
    return NULL;
}

/* ---- what the hooks cannot see ------------------------------------------------ */
/* The program's malloc, when it is not one whose callers reach the hooks: in the
 * global scope before ours (defined by the program itself, as Chromium's
 * PartitionAlloc or a statically linked jemalloc is, or preloaded before us), or,
 * injected, in the program, whose own calls to it never pass through a GOT slot.
 * Found once, with the real functions; the sentence saying so, or "". */
static char own_malloc[MEMPROF_PATH_MAX + 256];

static void find_own_malloc(void)
{
    void *fn = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    struct link_map *object = NULL;
    if (fn == NULL || fn == (void *)hook_malloc || !is_definition_in(fn, NULL) ||
        !dladdr1(fn, &info, (void **)&object, RTLD_DL_LINKMAP) || object == NULL)
        return;
    char exe[MEMPROF_PATH_MAX] = "", proc[MEMPROF_PROC_PATH];
    ssize_t n = readlink(memprof_proc_file("exe", proc), exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    bool in_program = object->l_name[0] == '\0';   /* the main program's link map */
    if (memprof_is_injected() && !in_program)
        return;   /* a library's: every caller's GOT slot is redirected */
    const char *program = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
    snprintf(own_malloc, sizeof own_malloc,
             "%s has a malloc of its own (in %s), which the sampler's hooks do not see: its "
             "profiles miss what it allocates; profile a build of it that uses the C "
             "library's malloc, or use that allocator's own heap profiler",
             program, in_program ? exe : object->l_name);
}

const char *memprof_own_malloc(void)
{
    return own_malloc;
}

void memprof_malloc_resolve(void)
{
    resolve_real();
    if (memprof_detect_injection()) {   /* no hook is reached before the GOT is redirected */
        lookup_handle = RTLD_DEFAULT;
        resolve_real();
    }
    find_own_malloc();
}
