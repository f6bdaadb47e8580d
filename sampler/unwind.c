/* Stack capture for a sampled allocation.  libunwind's unw_backtrace is the
 * default: it follows DWARF CFI, so allocations made inside libc (strdup) or
 * libstdc++ (operator new), built without frame pointers, keep their callers.
 * A frame-pointer walk (MEMPROF_UNWIND=fp) is the opt-in fast mode; it is
 * bounded by the thread's stack and stops at the first frame without one.
 * Frames inside libmemprof.so (and libunwind, which runs below them) are cut
 * off, so a stack starts at the code that called the allocator. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <link.h>
#include <pthread.h>

#include "memprof_internal.h"

static uintptr_t self_lo, self_hi;   /* libmemprof.so's mapped range */

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    uintptr_t probe = (uintptr_t)arg;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (start < lo)
            lo = start;
        if (start + ph->p_memsz > hi)
            hi = start + ph->p_memsz;
    }
    if (probe >= lo && probe < hi) {
        self_lo = lo;
        self_hi = hi;
        return 1;
    }
    return 0;
}

void memprof_unwind_init(void)
{
    memprof_enter();
    dl_iterate_phdr(find_self, (void *)(uintptr_t)&memprof_unwind_init);
    memprof_leave();
}

const char *memprof_unwinder_name(void)
{
    return memprof_cfg.unwinder == UNWIND_FRAME_POINTER ? "frame-pointer" : "libunwind";
}

static inline bool in_self(uintptr_t pc)
{
    return pc >= self_lo && pc < self_hi;
}

static void thread_stack_bounds(struct memprof_thread *t)
{
    pthread_attr_t attr;
    void *base;
    size_t size;
    t->stack_lo = 1;   /* marks "looked up", also on failure */
    t->stack_hi = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return;
    if (pthread_attr_getstack(&attr, &base, &size) == 0) {
        t->stack_lo = (uintptr_t)base;
        t->stack_hi = (uintptr_t)base + size;
    }
    pthread_attr_destroy(&attr);
}

static int frame_pointer_walk(uintptr_t *out, int max)
{
    struct memprof_thread *t = &memprof_thread;
    if (t->stack_lo == 0)
        thread_stack_bounds(t);
    const uintptr_t *fp = __builtin_frame_address(0);
    int n = 0;
    while (n < max) {
        uintptr_t p = (uintptr_t)fp;
        if (p < t->stack_lo || p + 2 * sizeof(uintptr_t) > t->stack_hi || (p & 7) != 0)
            break;
        uintptr_t ret = fp[1];
        const uintptr_t *next = (const uintptr_t *)fp[0];
        if (ret == 0)
            break;
        out[n++] = ret;
        if ((uintptr_t)next <= p)
            break;
        fp = next;
    }
    return n;
}

int memprof_unwind(uintptr_t *frames, int max_depth)
{
    /* Room for the sampler's own frames, which are dropped below. */
    enum { SLACK = 8 };
    uintptr_t raw[MEMPROF_MAX_DEPTH + SLACK];
    int want = max_depth + SLACK;
    int n = memprof_cfg.unwinder == UNWIND_FRAME_POINTER
                ? frame_pointer_walk(raw, want)
                : unw_backtrace((void **)raw, want);

    /* Skip everything up to the last frame inside libmemprof.so. */
    int first = 0;
    for (int i = 0; i < n && i < SLACK; i++)
        if (in_self(raw[i]))
            first = i + 1;
    int depth = n - first;
    if (depth > max_depth)
        depth = max_depth;
    for (int i = 0; i < depth; i++)
        frames[i] = raw[first + i];
    if (depth > 0)
        frames[0] -= 1;   /* leaf: a PC inside the call instruction */
    return depth;
}
