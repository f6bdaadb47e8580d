/* Stack capture for a sampled allocation.
 *
 * hybrid (default): walk the frame-pointer chain, bounded by the thread's
 *   stack, while return addresses fall in objects built with frame pointers;
 *   at the first frame of an object built without them (Debian's libc and
 *   libstdc++: strdup, operator new, qsort callbacks, start_thread) hand over
 *   to libunwind, which follows DWARF CFI from that frame.  The stacks are
 *   libunwind's, at close to the cost of the walk.  What libunwind found above
 *   such a frame is memoized per thread, keyed by the frame's return address
 *   and stack pointer and checked against the stack slots it was read from, so
 *   the outermost frames of every thread (__libc_start_main, start_thread)
 *   cost a few loads after the first time.
 * libunwind: unw_backtrace for the whole stack.
 * fp: the walk alone; fastest, but it stops at the first frame without a
 *   frame pointer and loses what is above it.
 *
 * Frames inside libmemprof.so (and libunwind, which runs below them) are cut
 * off, so a stack starts at the code that called the allocator. */
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "memprof_internal.h"

static uintptr_t self_lo, self_hi;   /* libmemprof.so's mapped range */

/* ---- which code has frame pointers ---------------------------------------
 * The executable segments of the loaded objects, each marked with whether its
 * functions set up a frame pointer (judged from their prologues, found through
 * .eh_frame_hdr).  Rebuilt when an address falls outside every range and the
 * loader's count of added objects has changed (a dlopen); readers use a
 * sequence number and, when it moves under them, take the safe answer: no
 * frame pointer, so libunwind. */
#define MAX_RANGES 512
#define PROLOGUES_SAMPLED 256

struct code_range {
    uintptr_t lo, hi;
    bool frame_pointers;
};

static struct code_range ranges[MAX_RANGES];
static _Atomic uint32_t nranges;
static _Atomic uint32_t ranges_seq;           /* odd while being rebuilt */
static unsigned long long ranges_adds;        /* dlpi_adds they were built from */
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;

/* Reads a DW_EH_PE_{s,u}data4/8 value; 0 for other encodings. */
static size_t eh_value_size(uint8_t encoding)
{
    switch (encoding & 0x0f) {
    case 0x03: case 0x0b: return 4;
    case 0x04: case 0x0c: return 8;
    default: return 0;
    }
}

static bool has_frame_pointer_prologue(const uint8_t *code)
{
    static const uint8_t endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};
    static const uint8_t push_mov[4] = {0x55, 0x48, 0x89, 0xe5};   /* push %rbp; mov %rsp,%rbp */
    if (memcmp(code, endbr64, 4) == 0)
        code += 4;
    return memcmp(code, push_mov, 4) == 0;
}

/* Most functions of an object built with frame pointers start with
 * push %rbp; mov %rsp,%rbp: look at up to PROLOGUES_SAMPLED of them. */
static bool object_has_frame_pointers(const struct dl_phdr_info *info)
{
    const uint8_t *hdr = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME)
            hdr = (const uint8_t *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    /* version 1, a 4-byte count, a table of (start, fde) as datarel sdata4 */
    if (hdr == NULL || hdr[0] != 1 || hdr[2] != 0x03 || hdr[3] != 0x3b || !eh_value_size(hdr[1]))
        return false;
    uint32_t count;
    memcpy(&count, hdr + 4 + eh_value_size(hdr[1]), sizeof count);
    const uint8_t *table = hdr + 8 + eh_value_size(hdr[1]);
    uint32_t step = count > PROLOGUES_SAMPLED ? count / PROLOGUES_SAMPLED : 1;
    uint32_t seen = 0, with_fp = 0;
    for (uint32_t i = 0; i < count; i += step, seen++) {
        int32_t start;
        memcpy(&start, table + 8 * (size_t)i, sizeof start);
        with_fp += has_frame_pointer_prologue(hdr + start);
    }
    return seen > 0 && 2 * with_fp > seen;
}

struct range_build {
    uint32_t n;
    unsigned long long adds;
};

static int add_ranges(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct range_build *b = arg;
    b->adds = info->dlpi_adds;
    bool fp = object_has_frame_pointers(info);
    for (int i = 0; i < info->dlpi_phnum && b->n < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            ranges[b->n++] = (struct code_range){info->dlpi_addr + ph->p_vaddr,
                                                 info->dlpi_addr + ph->p_vaddr + ph->p_memsz, fp};
    }
    return 0;
}

static int read_adds(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(unsigned long long *)arg = info->dlpi_adds;
    return 1;
}

/* Called with the sampler's busy flag set (dl_iterate_phdr may allocate). */
static void rebuild_ranges(bool only_if_loader_changed)
{
    pthread_mutex_lock(&ranges_lock);
    unsigned long long adds = 0;
    dl_iterate_phdr(read_adds, &adds);
    if (!only_if_loader_changed || adds != ranges_adds) {
        atomic_fetch_add_explicit(&ranges_seq, 1, memory_order_acq_rel);
        struct range_build b = {0, 0};
        dl_iterate_phdr(add_ranges, &b);
        atomic_store_explicit(&nranges, b.n, memory_order_relaxed);
        ranges_adds = b.adds;
        atomic_fetch_add_explicit(&ranges_seq, 1, memory_order_acq_rel);
    }
    pthread_mutex_unlock(&ranges_lock);
}

enum code_kind { CODE_FP, CODE_NO_FP, CODE_UNKNOWN };

static enum code_kind code_kind(uintptr_t pc)
{
    uint32_t seq = atomic_load_explicit(&ranges_seq, memory_order_acquire);
    if (seq & 1)
        return CODE_NO_FP;
    enum code_kind kind = CODE_UNKNOWN;
    uint32_t n = atomic_load_explicit(&nranges, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        if (pc - ranges[i].lo < ranges[i].hi - ranges[i].lo) {
            kind = ranges[i].frame_pointers ? CODE_FP : CODE_NO_FP;
            break;
        }
    if (atomic_load_explicit(&ranges_seq, memory_order_acquire) != seq)
        return CODE_NO_FP;
    return kind;
}

static bool has_frame_pointer(uintptr_t pc)
{
    enum code_kind kind = code_kind(pc);
    if (UNLIKELY(kind == CODE_UNKNOWN)) {   /* a new dlopen, or code of no object */
        rebuild_ranges(true);
        kind = code_kind(pc);
    }
    return kind == CODE_FP;
}

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
    rebuild_ranges(false);
    memprof_leave();
}

const char *memprof_unwinder_name(void)
{
    switch (memprof_cfg.unwinder) {
    case UNWIND_FRAME_POINTER: return "frame-pointer";
    case UNWIND_LIBUNWIND: return "libunwind";
    default: return "hybrid";
    }
}

static inline bool in_self(uintptr_t pc)
{
    return pc >= self_lo && pc < self_hi;
}

/* The bounds of the mapping holding addr, from /proc/self/maps read with
 * plain system calls into a stack buffer.  pthread_getattr_np cannot serve
 * here: it holds the thread's lock while its fopen calls malloc, so a sample
 * taken inside it would wait on that lock forever (Rust's runtime and the JVM
 * call it at every thread start). */
static bool mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi)
{
    int fd = open(PROC_THREAD_SELF "maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* Each line starts "start-end ": a small state machine, so lines may
     * straddle reads. */
    enum { START, END, REST } field = START;
    uintptr_t start = 0, end = 0;
    bool found = false;
    char buf[4096];
    ssize_t n;
    while (!found && ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {
        for (ssize_t i = 0; i < n && !found; i++) {
            char c = buf[i];
            int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (field == START) {
                if (digit >= 0)
                    start = start << 4 | (uintptr_t)digit;
                else
                    field = c == '-' ? END : REST;
            } else if (field == END) {
                if (digit >= 0) {
                    end = end << 4 | (uintptr_t)digit;
                } else {
                    field = REST;
                    if (addr >= start && addr < end) {
                        *lo = start;
                        *hi = end;
                        found = true;
                    }
                }
            } else if (c == '\n') {
                field = START;
                start = end = 0;
            }
        }
    }
    close(fd);
    return found;
}

/* This thread's stack mapping, looked up at its first sample and again only
 * when the walk starts outside it (a signal on an alternate stack, a
 * coroutine's stack, the main thread's stack grown below what was seen). */
static bool find_stack(struct memprof_thread *t, uintptr_t sp)
{
    if (t->no_maps)
        return false;
    t->no_maps = !mapping_of(sp, &t->stack_lo, &t->stack_hi);   /* no /proc: no walk */
    return !t->no_maps;
}

/* ---- handing a frame over to libunwind ----------------------------------- */
/* The memo may come from a thread that has ended (blocks are adopted), so its
 * slots are read only if they lie in this thread's stack above sp. */
static bool memo_holds(const struct unwind_memo *m, uintptr_t ret, uintptr_t sp)
{
    if (m->ret != ret || m->sp != sp || m->n == 0)
        return false;
    for (uint32_t i = 0; i < m->n; i++)
        if (m->slot[i] < sp || m->slot[i] + sizeof(uintptr_t) > memprof_thread.stack_hi ||
            *(const uintptr_t *)m->slot[i] != m->ip[i])
            return false;
    return true;
}

/* The frames above the frame (ret, sp, rbp) of a function without a frame
 * pointer, from libunwind or the memo; returns how many went into out. */
static int hand_over(uintptr_t *out, int max, uintptr_t ret, uintptr_t sp, uintptr_t rbp)
{
    struct unwind_memo *memo = memprof_unwind_memo();
    struct unwind_memo *slot = NULL;
    for (int i = 0; memo != NULL && i < UNWIND_MEMO_ENTRIES; i++) {
        if (memo_holds(&memo[i], ret, sp)) {
            int n = (int)memo[i].n < max ? (int)memo[i].n : max;
            memcpy(out, memo[i].ip, sizeof(uintptr_t) * (size_t)n);
            return n;
        }
        if (memo[i].ret == ret || slot == NULL)
            slot = &memo[i];
    }

    unw_context_t context;
    unw_cursor_t cursor;
    unw_getcontext(&context);
    context.uc_mcontext.gregs[REG_RIP] = (greg_t)ret;
    context.uc_mcontext.gregs[REG_RSP] = (greg_t)sp;
    context.uc_mcontext.gregs[REG_RBP] = (greg_t)rbp;
    if (unw_init_local(&cursor, &context) != 0)
        return 0;
    int n = 0;
    uintptr_t slots[UNWIND_MEMO_DEPTH];
    while (n < max && unw_step(&cursor) > 0) {
        unw_word_t ip, caller_sp;
        unw_get_reg(&cursor, UNW_REG_IP, &ip);
        unw_get_reg(&cursor, UNW_REG_SP, &caller_sp);
        if (ip == 0)
            break;
        if (n < UNWIND_MEMO_DEPTH)
            slots[n] = (uintptr_t)caller_sp - sizeof(uintptr_t);   /* where ip was read */
        out[n++] = (uintptr_t)ip;
    }
    if (slot != NULL && n > 0 && n <= UNWIND_MEMO_DEPTH && n < max) {
        /* A walk cut short by max is not the whole tail: not memoized. */
        slot->ret = ret;
        slot->sp = sp;
        slot->n = (uint32_t)n;
        memcpy(slot->ip, out, sizeof(uintptr_t) * (size_t)n);
        memcpy(slot->slot, slots, sizeof(uintptr_t) * (size_t)n);
    }
    return n;
}

/* ---- the frame-pointer walk ------------------------------------------------ */
static int frame_pointer_walk(uintptr_t *out, int max, bool hybrid)
{
    struct memprof_thread *t = &memprof_thread;
    const uintptr_t *fp = __builtin_frame_address(0);
    uintptr_t sp = (uintptr_t)fp;
    if (UNLIKELY(sp < t->stack_lo || sp >= t->stack_hi) && !find_stack(t, sp))
        return 0;
    int n = 0;
    while (n < max) {
        uintptr_t p = (uintptr_t)fp;
        if (p < sp || p + 2 * sizeof(uintptr_t) > t->stack_hi || (p & 7) != 0)
            break;
        uintptr_t ret = fp[1];
        uintptr_t next = fp[0];
        if (ret == 0)
            break;
        out[n++] = ret;
        if (hybrid && !in_self(ret) && !has_frame_pointer(ret)) {
            n += hand_over(out + n, max - n, ret, p + 2 * sizeof(uintptr_t), next);
            break;
        }
        if (next <= p)
            break;
        fp = (const uintptr_t *)next;
    }
    return n;
}

int memprof_unwind(uintptr_t *frames, int max_depth)
{
    /* Room for the sampler's own frames, which are dropped below. */
    enum { SLACK = 8 };
    uintptr_t raw[MEMPROF_MAX_DEPTH + SLACK];
    int want = max_depth + SLACK;
    int n = memprof_cfg.unwinder == UNWIND_LIBUNWIND
                ? unw_backtrace((void **)raw, want)
                : frame_pointer_walk(raw, want, memprof_cfg.unwinder == UNWIND_HYBRID);

    /* Skip everything up to the last frame inside libmemprof.so. */
    int first = 0;
    for (int i = 0; i < n && i < SLACK; i++)
        if (in_self(raw[i]))
            first = i + 1;
    int depth = n - first;
    if (depth <= 0) {   /* no frame could be read: one unknown frame keeps the sample */
        frames[0] = 0;
        return 1;
    }
    if (depth > max_depth)
        depth = max_depth;
    for (int i = 0; i < depth; i++)
        frames[i] = raw[first + i];
    if (depth > 0)
        frames[0] -= 1;   /* leaf: a PC inside the call instruction */
    return depth;
}
