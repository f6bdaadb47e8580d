/* The device memory pools of frameworks, seen through their USDT probes.
 *
 * PyTorch's CUDA caching allocator (libc10_cuda.so, PyTorch 2.1 on) takes large
 * segments from CUDA and carves tensors out of them; it fires the probe
 * pytorch:malloc(ptr, device, size, stream) as it hands a block out and
 * pytorch:free(ptr) as it takes one back, each site a `nop` behind a semaphore
 * that its code tests first (docs/devices.md says which versions).
 *
 * While a window is open each such site's `nop` is a trap (arch.h: int3 on x86-64,
 * brk on aarch64) and its semaphore is raised, as a kernel uprobe would do it; the trap's handler (SIGTRAP) reads the
 * arguments from the registers it saved and records the block in the cuda heap
 * (sampled by bytes, its stack unwound through the signal frame), and takes a block
 * out at its free.  The allocations the process makes from CUDA's runtime and
 * driver meanwhile go to cuda_segments: the pool's segments (torch's
 * memory_reserved) and what other libraries take themselves.  The window's end puts
 * every byte and semaphore back.
 *
 * Objects are looked at when a window opens and, for those loaded since (import
 * torch), at the next allocation from CUDA, which the pool's first block needs:
 * its segment.  The cudaMallocAsync backend (PYTORCH_CUDA_ALLOC_CONF) fires no
 * probe: its blocks are cudaMallocAsync calls, in the cuda heap as they are.
 *
 * The handler takes no lock; arming does (pools_lock, never held by a trap), and a
 * site once found stays in the table, so a trap taken as the window closes still
 * finds it.  Other traps go to the program's own action (signals.c). */
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch.h"
#include "base/signals.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "control/window.h"
#include "hooks/framework_pools.h"
#include "hooks/hooks_device.h"
#include "sample/sample.h"
#include "unwind/usdt.h"

/* ---- the state, and what is said where a pool's blocks are not tracked ------------ */
static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned long long seen_adds;   /* the loader's count of objects, last look */

/* Why a pool's blocks are not tracked, for the cuda heap's files; published by `noted`. */
static char note[MEMPROF_PATH_MAX + 128];
static _Atomic bool noted;

static bool is_pool_library(const char *path)
{
    const char *base = strrchr(path, '/');
    return strncmp(base ? base + 1 : path, "libc10_cuda.so", 14) == 0;
}

/* Said once, on stderr and in the cuda heap's files (pools_lock held). */
static void say_untracked(const char *object, const char *why)
{
    if (atomic_load(&noted))
        return;
    snprintf(note, sizeof note, "%s %s: the cuda heap holds its segments, not its tensors",
             object, why);
    atomic_store(&noted, true);
    memprof_log("%s", note);
}

const char *memprof_pools_note(void)
{
    return atomic_load(&noted) ? note : "";
}

static int loader_adds(struct dl_phdr_info *info, size_t size, void *out)
{
    (void)size;
    *(unsigned long long *)out = info->dlpi_adds;
    return 1;
}

/* ---- the sites ------------------------------------------------------------------- */
static const uint8_t nop_code[ARCH_PROBE_BYTES] = ARCH_PROBE_NOP;
static const uint8_t trap_code[ARCH_PROBE_BYTES] = ARCH_PROBE_TRAP;
#define MAX_SITES 64
#define MAX_OBJECTS 1024

enum site_kind { SITE_MALLOC, SITE_FREE };

struct site {
    uintptr_t pc, object;           /* the object: its load bias, to know it is still there */
    _Atomic uint16_t *semaphore;    /* NULL: none */
    uint8_t kind;
    bool armed;
    struct usdt_arg ptr, size;
};

static struct site sites[MAX_SITES];
static _Atomic int site_count;      /* published after the site is filled */
static _Atomic bool tracking;       /* a malloc site is armed */
static uintptr_t looked_at[MAX_OBJECTS];       /* load biases of the objects read */
static int looked_count;

/* ---- the trap -------------------------------------------------------------------- */
static const struct site *site_at(uintptr_t pc)
{
    int n = atomic_load_explicit(&site_count, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (sites[i].pc == pc)
            return &sites[i];
    return NULL;
}

static void on_trap(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    const struct site *s = info->si_code > 0 ? site_at(arch_probe_trapped_at(uc)) : NULL;
    if (s == NULL) {
        memprof_signal_pass_on(sig, info, context);
        return;
    }
    arch_probe_step_over(uc);
    int saved = errno;
    memprof_thread.in_trap = true;
    uintptr_t ptr = (uintptr_t)memprof_usdt_arg_value(&s->ptr, uc);
    if (s->kind == SITE_MALLOC) {   /* a program that makes no CUDA call of its own */
        memprof_device_use_heap(HEAP_CUDA);
        memprof_device_alloc(HEAP_CUDA, ptr, memprof_usdt_arg_value(&s->size, uc), 0);
    } else
        memprof_device_free(HEAP_CUDA, ptr);
    memprof_thread.in_trap = false;
    errno = saved;
}

/* ---- arming (pools_lock held) ----------------------------------------------------- */
/* A site's code: through /proc/self/mem, which leaves the page's protection as it is,
 * where the machine allows (arch.h), else in one store with the page writable for it;
 * then the instruction cache told. */
static bool write_code(uintptr_t at, const uint8_t code[ARCH_PROBE_BYTES])
{
    int fd = ARCH_PROBE_WRITE_BY_PROC_MEM ? open("/proc/self/mem", O_RDWR | O_CLOEXEC) : -1;
    if (fd >= 0) {
        ssize_t n = pwrite(fd, code, ARCH_PROBE_BYTES, (off_t)at);
        close(fd);
        if (n == ARCH_PROBE_BYTES)
            return true;
    }
    uintptr_t page = at & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
    size_t len = at + ARCH_PROBE_BYTES - page;
    if (mprotect((void *)page, len, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return false;
    if (ARCH_PROBE_BYTES == 4) {   /* an aligned instruction, stored whole */
        uint32_t word;
        memcpy(&word, code, sizeof word);
        __atomic_store_n((uint32_t *)at, word, __ATOMIC_RELAXED);
    } else {
        *(volatile uint8_t *)at = code[0];
    }
    __builtin___clear_cache((char *)at, (char *)at + ARCH_PROBE_BYTES);
    mprotect((void *)page, len, PROT_READ | PROT_EXEC);
    return true;
}

static void arm(struct site *s)
{
    if (s->armed || memcmp((const void *)s->pc, nop_code, ARCH_PROBE_BYTES) != 0 ||
        !write_code(s->pc, trap_code))
        return;
    if (s->semaphore != NULL)
        atomic_fetch_add_explicit(s->semaphore, 1, memory_order_relaxed);
    s->armed = true;
    if (s->kind == SITE_MALLOC)
        atomic_store(&tracking, true);
}

static void disarm(struct site *s)
{
    if (!s->armed)
        return;
    if (s->semaphore != NULL)
        atomic_fetch_sub_explicit(s->semaphore, 1, memory_order_relaxed);
    write_code(s->pc, nop_code);
    s->armed = false;
}

/* ---- finding the probes ------------------------------------------------------------ */
static bool async_backend(void)
{
    static const char *const vars[] = {"PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *conf = getenv(vars[i]);
        if (conf != NULL && strstr(conf, "backend:cudaMallocAsync") != NULL)
            return true;
    }
    return false;
}

struct object_probes {
    uintptr_t bias;
    int found, unreadable;
};

static void add_site(const struct usdt_probe *p, void *ctx)
{
    struct object_probes *o = ctx;
    bool is_malloc = strcmp(p->name, "malloc") == 0, is_free = strcmp(p->name, "free") == 0;
    if (strcmp(p->provider, "pytorch") != 0 || !(is_malloc || is_free))
        return;
    /* malloc(ptr, device, size, stream), free(ptr) */
    if (p->nargs < (is_malloc ? 3 : 1)) {
        o->unreadable++;
        return;
    }
    int n = atomic_load_explicit(&site_count, memory_order_relaxed);
    uintptr_t pc = o->bias + p->pc;
    if (site_at(pc) != NULL)
        return;
    if (n == MAX_SITES)
        return;
    sites[n] = (struct site){
        .pc = pc,
        .object = o->bias,
        .semaphore = p->semaphore ? (_Atomic uint16_t *)(o->bias + p->semaphore) : NULL,
        .kind = is_malloc ? SITE_MALLOC : SITE_FREE,
        .ptr = p->args[0],
        .size = is_malloc ? p->args[2] : p->args[0],
    };
    atomic_store_explicit(&site_count, n + 1, memory_order_release);
    o->found++;
}

static bool looked_at_before(uintptr_t bias)
{
    for (int i = 0; i < looked_count; i++)
        if (looked_at[i] == bias)
            return true;
    if (looked_count < MAX_OBJECTS)
        looked_at[looked_count++] = bias;
    return false;
}

static int find_in_object(struct dl_phdr_info *info, size_t size, void *unused)
{
    (void)size, (void)unused;
    atomic_store_explicit(&seen_adds, info->dlpi_adds, memory_order_relaxed);
    const char *path = info->dlpi_name;
    if (path == NULL || path[0] == '\0' || strstr(path, "linux-vdso") != NULL ||
        looked_at_before(info->dlpi_addr))
        return 0;   /* the main program: its probes are its own, not a pool's */
    struct object_probes o = {info->dlpi_addr, 0, 0};
    memprof_usdt_file(path, add_site, &o);
    if (o.unreadable > 0)
        say_untracked(path, "has pytorch probes whose arguments this sampler cannot read");
    else if (o.found == 0 && is_pool_library(path))
        say_untracked(path, "has no pytorch:malloc probe (PyTorch before 2.1, and its aarch64 "
                            "builds to 2.14 at least)");
    return 0;
}

struct object_list {
    uintptr_t biases[MAX_OBJECTS];
    int n;
};

static int list_object(struct dl_phdr_info *info, size_t size, void *ctx)
{
    (void)size;
    struct object_list *l = ctx;
    if (l->n < MAX_OBJECTS)
        l->biases[l->n++] = info->dlpi_addr;
    return 0;
}

static bool still_loaded(const struct object_list *l, uintptr_t bias)
{
    for (int i = 0; i < l->n; i++)
        if (l->biases[i] == bias)
            return true;
    return false;
}

/* Reads the objects not read yet and arms every site found (pools_lock held). */
static void look_and_arm(void)
{
    if (async_backend())
        return;
    dl_iterate_phdr(find_in_object, NULL);
    int n = atomic_load_explicit(&site_count, memory_order_relaxed);
    if (n == 0 || !memprof_signal_take(SIGTRAP, on_trap, true))
        return;
    struct object_list *live = memprof_map(sizeof *live);
    if (live == NULL)
        return;
    dl_iterate_phdr(list_object, live);
    for (int i = 0; i < n; i++)
        if (still_loaded(live, sites[i].object))
            arm(&sites[i]);
    memprof_unmap(live, sizeof *live);
}

void memprof_pools_arm(void)
{
    memprof_signal_keep_trap_open();   /* before the pool's library loads, in any thread */
    pthread_mutex_lock(&pools_lock);
    look_and_arm();
    pthread_mutex_unlock(&pools_lock);
}

void memprof_pools_disarm(void)
{
    pthread_mutex_lock(&pools_lock);
    atomic_store(&tracking, false);
    int n = atomic_load_explicit(&site_count, memory_order_relaxed);
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= sites[i].armed;
    struct object_list *live = any ? memprof_map(sizeof *live) : NULL;
    if (live != NULL) {
        dl_iterate_phdr(list_object, live);
        for (int i = 0; i < n; i++) {
            if (still_loaded(live, sites[i].object))
                disarm(&sites[i]);
            sites[i].armed = false;
        }
        memprof_unmap(live, sizeof *live);
    }
    pthread_mutex_unlock(&pools_lock);
}

enum memprof_heap memprof_pools_heap_of(enum memprof_heap heap)
{
    if (heap != HEAP_CUDA || memprof_window_id() == 0)
        return heap;
    unsigned long long adds = 0;
    dl_iterate_phdr(loader_adds, &adds);
    if (adds != atomic_load_explicit(&seen_adds, memory_order_relaxed) &&
        pthread_mutex_trylock(&pools_lock) == 0) {
        memprof_enter();
        look_and_arm();
        memprof_leave();
        pthread_mutex_unlock(&pools_lock);
    }
    return atomic_load_explicit(&tracking, memory_order_relaxed) ? HEAP_CUDA_SEGMENTS : heap;
}
