/* Finding the real function behind a hook of a library other than libc:
 * dlsym(RTLD_NEXT) first; when the library was loaded RTLD_LOCAL that finds
 * nothing (while our hook is still called), so the loaded library is looked up
 * by name and asked directly (dlopen RTLD_NOLOAD + dlsym on its handle); then
 * the same for a fallback twin with the same signature.  NULL if the library
 * is not loaded at all: the hook must then not call through. */
#include <dlfcn.h>
#include <link.h>
#include <string.h>

#include "arch.h"
#include "base/real_function.h"
#include "base/thread_state.h"

void *(*memprof_real_dlsym)(void *, const char *);

/* Called from the dlsym stub (arch/<arch>.S) (registers saved) the first time it is needed. */
void *memprof_resolve_dlsym(void)
{
    void *fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (fn == NULL)
        fn = dlvsym(RTLD_NEXT, "dlsym", ARCH_GLIBC_BASE);
    __atomic_store_n(&memprof_real_dlsym, fn, __ATOMIC_RELEASE);
    return fn;
}

struct library_search {
    const char *prefix;
    char path[MEMPROF_PATH_MAX];
};

static int match_library(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct library_search *s = arg;
    const char *base = strrchr(info->dlpi_name, '/');
    base = base ? base + 1 : info->dlpi_name;
    if (strncmp(base, s->prefix, strlen(s->prefix)) != 0)
        return 0;
    strncpy(s->path, info->dlpi_name, sizeof s->path - 1);
    return 1;
}

static void *find_in_library(const char *library, const char *symbol)
{
    struct library_search s = {library, ""};
    if (!dl_iterate_phdr(match_library, &s))
        return NULL;
    void *handle = dlopen(s.path, RTLD_NOLOAD | RTLD_LAZY);
    if (handle == NULL)
        return NULL;
    void *fn = memprof_real_dlsym(handle, symbol);
    dlclose(handle);
    return fn;
}

static void *find_symbol(const char *library, const char *symbol)
{
    void *fn = memprof_real_dlsym(RTLD_NEXT, symbol);
    return fn ? fn : find_in_library(library, symbol);
}

void *memprof_real_function(struct memprof_real_fn *r)
{
    void *fn = atomic_load_explicit(&r->fn, memory_order_acquire);
    if (LIKELY(fn != NULL))
        return fn;
    memprof_enter();
    if (memprof_real_dlsym == NULL)
        memprof_resolve_dlsym();
    fn = find_symbol(r->library, r->symbol);
    if (fn == NULL && r->fallback != NULL)
        fn = find_symbol(r->library, r->fallback);
    memprof_leave();
    if (fn != NULL)
        atomic_store_explicit(&r->fn, fn, memory_order_release);
    return fn;
}

