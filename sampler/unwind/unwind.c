/* Stack capture for a sampled allocation.
 *
 * hybrid (default): every frame is unwound by its DWARF call frame
 *   information (.eh_frame, which objects built without frame pointers still
 *   carry), as Perfetto's unwinder, bytehound and framehop do it: the rule of
 *   a code address (CFA = sp or the frame pointer + N, where the return
 *   address and the frame pointer were saved; eh_frame.c) is worked out once
 *   and kept in a lock-free table, so a later frame through the same address
 *   costs a hash lookup and two or three loads.  A signal frame is recognised by glibc's sigreturn
 *   trampoline and continued from its ucontext; the walk ends at an undefined
 *   return address (_start, clone3) and at code with no unwind information
 *   (JIT code), except Go's, which has none but always keeps frame pointers:
 *   those are followed, from runtime.asmcgocall onto the goroutine's stack.
 *   A rule the table cannot hold (a CFA kept in rbx, as in the loader's
 *   lazy-binding trampoline) hands the whole stack to libunwind, where the
 *   sampler is built with it (MEMPROF_LIBUNWIND), else ends the walk there.
 * libunwind: unw_backtrace for the whole stack (the hybrid walk in a build
 *   without libunwind).
 * fp: frame pointers alone; fastest, but it stops at the first frame without
 *   one and loses what is above it.
 *
 * Frames inside libmemprof.so are left out, so a stack starts at the code
 * that called the allocator.  What differs between x86-64 and aarch64
 * (register numbers, signal frames, the link register) is arch.h's.  Every
 * stack read is bounded by the stack mapping it falls in; every .eh_frame
 * read by its object's segment.
 *
 * The walk takes no lock and allocates nothing.  A rule missing from the
 * table is worked out inside dl_iterate_phdr, whose lock keeps the object
 * mapped while its tables are read and which lists objects dlopen'ed since;
 * no lock of ours is held then (ARCHITECTURE.md: what the sample path may
 * call). */
#ifdef MEMPROF_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#define MEMPROF_HAS_LIBUNWIND 1
#else
#define MEMPROF_HAS_LIBUNWIND 0
#endif
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stddef.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include "arch.h"
#include "base/defaults.h"
#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "unwind/eh_frame.h"
#include "unwind/object_file.h"
#include "unwind/unwind.h"

static uintptr_t self_lo, self_hi;   /* libmemprof.so's mapped range */

static inline bool in_self(uintptr_t pc)
{
    return pc >= self_lo && pc < self_hi;
}

/* ---- the rule table --------------------------------------------------------
 * Open addressing over a preallocated array of (key, rule) words.  A writer
 * claims a slot by a CAS of its key to KEY_BUSY, stores the rule and then the
 * key; a reader accepts a rule only if the key reads the same before and
 * after it.  Keys hold the address, whether it is a return address (rules
 * are looked up at pc - 1 for those) and the epoch, which moves when the
 * loader unloads objects so that their rules are never used again.  A
 * RULE_NONE holds the count of loaded objects it was found at and is stale
 * once the loader has loaded more (code may have appeared there). */
#define RULE_TABLE_BITS 16
#define RULE_TABLE_MASK ((1u << RULE_TABLE_BITS) - 1)
#define RULE_PROBES 8
#define KEY_BUSY UINT64_MAX
#define CODE_ADDRESS_END ARCH_CODE_ADDRESS_END
#define CODE_ADDRESS_MIN 0x4000         /* below: not a return address (as libunwind) */

struct rule_slot {
    _Atomic uint64_t key, rule;
};

static struct rule_slot *rule_table;
static _Atomic uint32_t rule_epoch = 1;
static _Atomic uint32_t loader_adds;             /* objects loaded, as last seen */
static _Atomic unsigned long long loader_subs;   /* objects unloaded, as last seen */

static inline uint64_t rule_key(uintptr_t pc, bool is_return, uint32_t epoch)
{
    return (uint64_t)(pc >> ARCH_PC_ALIGN_BITS) << 17 | (uint64_t)is_return << 16 |
           (epoch & 0xffff);
}

static inline uint32_t home_slot(uint64_t key)
{
    return (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> (64 - RULE_TABLE_BITS));
}

static inline bool rule_lookup(const struct rule_slot *table, uint64_t key, struct unwind_rule *out)
{
    uint32_t i = home_slot(key);
    for (int probe = 0; probe < RULE_PROBES; probe++, i = (i + 1) & RULE_TABLE_MASK) {
        uint64_t k = atomic_load_explicit(&table[i].key, memory_order_acquire);
        if (k == 0)
            return false;
        if (k != key)
            continue;
        uint64_t rule = atomic_load_explicit(&table[i].rule, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);   /* the rule is read before the key again */
        if (atomic_load_explicit(&table[i].key, memory_order_relaxed) != key)
            return false;
        memcpy(out, &rule, sizeof rule);
        return true;
    }
    return false;
}

static inline uint64_t rule_word(struct unwind_rule rule)
{
    uint64_t word;
    memcpy(&word, &rule, sizeof word);
    return word;
}

/* Into the key's own slot, an empty one or one of an old epoch; when the
 * probes find none, the home slot's rule makes way. */
static void rule_store(uint64_t key, struct unwind_rule rule)
{
    uint64_t value = rule_word(rule);
    uint32_t home = home_slot(key), i = home;
    for (int probe = 0; probe <= RULE_PROBES; probe++, i = (i + 1) & RULE_TABLE_MASK) {
        if (probe == RULE_PROBES)
            i = home;
        uint64_t k = atomic_load_explicit(&rule_table[i].key, memory_order_relaxed);
        bool usable = k == key || k == 0 || (k != KEY_BUSY && (k & 0xffff) != (key & 0xffff));
        if (!usable && probe < RULE_PROBES)
            continue;
        if (k == KEY_BUSY || !atomic_compare_exchange_strong(&rule_table[i].key, &k, KEY_BUSY))
            return;   /* another thread is writing here: the rule is cached next time */
        atomic_store_explicit(&rule_table[i].rule, value, memory_order_relaxed);
        atomic_store_explicit(&rule_table[i].key, key, memory_order_release);
        return;
    }
}

/* ---- working a rule out ------------------------------------------------------ */
struct rule_search {
    uintptr_t pc;
    bool is_return;
    struct unwind_rule rule;
    unsigned long long adds, subs;
};

static const uint8_t sigreturn_code[] = ARCH_SIGRETURN_CODE;

/* Whether the object was linked by the Go toolchain: its build-id note. */
static bool is_go_object(const struct dl_phdr_info *info)
{
    size_t len;
    const ElfW(Phdr) *note;
    return memprof_object_note(info, 4 /* Go build-id */, "Go\0", 4, &len, &note) != NULL;
}

static int find_rule(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct rule_search *s = arg;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        s->adds = info->dlpi_adds;
        s->subs = info->dlpi_subs;
    }
    const ElfW(Phdr) *code = memprof_object_segment(info, s->pc - s->is_return);
    if (code == NULL)
        return 0;
    uintptr_t code_end = info->dlpi_addr + code->p_vaddr + code->p_memsz;
    if (code_end - s->pc >= sizeof sigreturn_code &&
        memcmp((const void *)s->pc, sigreturn_code, sizeof sigreturn_code) == 0) {
        s->rule.kind = RULE_SIGRETURN;
        return 1;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_GNU_EH_FRAME)
            continue;
        uintptr_t hdr = info->dlpi_addr + ph->p_vaddr;
        const ElfW(Phdr) *seg = memprof_object_segment(info, hdr);
        if (seg != NULL) {
            uintptr_t lo = info->dlpi_addr + seg->p_vaddr;
            struct eh_tables tables = {hdr, lo, lo + seg->p_filesz,
                                       memprof_eh_file_of(info, s->subs, seg, hdr)};
            s->rule = memprof_eh_frame_rule(&tables, s->pc, s->is_return);
        }
    }
    uintptr_t code_lo = info->dlpi_addr + code->p_vaddr;
    if (s->rule.kind == RULE_NONE && !s->is_return && arch_in_plt_stub(s->pc, code_lo, code_end))
        s->rule = (struct unwind_rule){0, RULE_CFA, RULE_RA_LR, 0, 0};
    if (s->rule.kind == RULE_NONE && is_go_object(info))
        s->rule.kind = RULE_FRAME_POINTER;
    return 1;
}

/* The loader's counts: an unloaded object makes every cached rule suspect. */
static void note_loader(unsigned long long adds, unsigned long long subs)
{
    if (atomic_exchange(&loader_subs, subs) != subs)
        atomic_fetch_add(&rule_epoch, 1);
    atomic_store(&loader_adds, (uint32_t)adds);
}


/* A signal return trampoline in no object: qemu-user's page of it, where a
 * kernel would have its vDSO (the loader lists that). */
static bool sigreturn_outside_objects(uintptr_t pc)
{
    uintptr_t lo, hi;
    bool readable = false;
    return ARCH_SIGRETURN_OUTSIDE_OBJECTS && memprof_mapping_of(pc, &lo, &hi, &readable) &&
           readable && hi - pc >= sizeof sigreturn_code &&
           memcmp((const void *)pc, sigreturn_code, sizeof sigreturn_code) == 0;
}

/* A rule missing from the table (or stale): worked out and kept. */
static __attribute__((noinline)) struct unwind_rule work_rule_out(uintptr_t pc, bool is_return)
{
    struct rule_search s = {pc, is_return, {0, RULE_NONE, 0, 0, 0}, 0, 0};
    if (pc >= CODE_ADDRESS_END)
        return s.rule;
    dl_iterate_phdr(find_rule, &s);
    note_loader(s.adds, s.subs);
    if (s.rule.kind == RULE_NONE && sigreturn_outside_objects(pc))
        s.rule.kind = RULE_SIGRETURN;
    if (s.rule.kind == RULE_NONE)
        s.rule.cfa_offset = (int32_t)(uint32_t)s.adds;
    if (rule_table != NULL)
        rule_store(rule_key(pc, is_return, atomic_load(&rule_epoch)), s.rule);
    return s.rule;
}

/* Whether a thread may keep a rule to use again without asking the table: not a
 * RULE_NONE, which has to be checked against the loader (code may appear there). */
static inline bool memoisable(struct unwind_rule rule)
{
    return rule.kind != RULE_NONE;
}

/* The rule of a code address: from the thread's memo, else the shared table, else
 * worked out.  The walk passes the table, the epoch and the memos it read once. */
static inline struct unwind_rule rule_at(const struct rule_slot *table, uint32_t epoch,
                                         struct memprof_memos *memos, uintptr_t pc,
                                         bool is_return)
{
    uint64_t key = rule_key(pc, is_return, epoch);
    struct unwind_rule rule;
    __typeof__(memos->rules[0]) *memo = NULL;
    if (LIKELY(memos != NULL)) {
        memo = &memos->rules[(key * 0x9e3779b97f4a7c15ull) >> 55 & (MEMPROF_RULE_MEMOS - 1)];
        if (LIKELY(memo->key == key)) {
            memcpy(&rule, &memo->rule, sizeof rule);
            return rule;
        }
    }
    if (LIKELY(table != NULL && pc < CODE_ADDRESS_END) && rule_lookup(table, key, &rule) &&
        (rule.kind != RULE_NONE ||
         (uint32_t)rule.cfa_offset == atomic_load_explicit(&loader_adds, memory_order_relaxed)))
        ;
    else
        rule = work_rule_out(pc, is_return);
    if (memo != NULL && memoisable(rule)) {
        memo->key = key;
        memo->rule = rule_word(rule);
    }
    return rule;
}

/* ---- stack mappings ----------------------------------------------------------- */

/* The stack mapping holding sp: one of the two this thread's walks met last
 * (its own stack and a sigaltstack), else looked up once in the maps. */
static inline bool in_stack(uintptr_t sp, const struct memprof_stack_range *s)
{
    return sp - s->lo <= s->last + (sizeof(uintptr_t) - 1);
}

static __attribute__((noinline)) bool find_stack(uintptr_t sp, struct memprof_stack_range *out)
{
    struct memprof_thread *t = &memprof_thread;
    if (in_stack(sp, &t->stacks[1])) {
        *out = t->stacks[1];
        return true;
    }
    if (t->no_maps)
        return false;
    uintptr_t lo, hi;
    if (!memprof_mapping_of(sp, &lo, &hi, NULL)) {
        /* No /proc (or sp in no mapping): no walk from now on.  Out of descriptors
         * (another thread of ours holds the last one for a moment): this walk only. */
        t->no_maps = errno != EMFILE && errno != ENFILE && errno != ENOMEM;
        return false;
    }
    struct memprof_stack_range found = {lo, hi - lo - sizeof(uintptr_t)};
    t->stacks[1] = t->stacks[0];
    t->stacks[0] = found;
    *out = found;
    return true;
}

static inline bool stack_of(uintptr_t sp, struct memprof_stack_range *out)
{
    const struct memprof_stack_range *recent = &memprof_thread.stacks[0];
    if (LIKELY(in_stack(sp, recent))) {
        *out = *recent;
        return true;
    }
    return find_stack(sp, out);
}

static inline bool read_stack(const struct memprof_stack_range *s, uintptr_t at, uintptr_t *out)
{
    if (at - s->lo > s->last)   /* below lo wraps around: above too */
        return false;
    *out = *(const uintptr_t *)at;
    return true;
}

/* ---- the walks ------------------------------------------------------------------ */
/* A frame's registers (bp: its frame pointer; lr: its link register where
 * known, the interrupted frame below a signal frame, else 0); is_return: pc is
 * a return address, not an interrupted instruction. */
struct frame {
    uintptr_t pc, sp, bp, lr;
    bool is_return;
};

#if ARCH_SELF_BY_FRAME_POINTER
/* The sampler's own frames keep frame pointers (the Makefile builds it so):
 * follow them to the first frame outside libmemprof.so.  Inlined, so that it
 * starts from the frame of memprof_unwind. */
static inline __attribute__((always_inline)) bool first_foreign_frame(
    struct memprof_stack_range *stack, struct frame *f)
{
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    if (!stack_of(fp, stack))
        return false;
    for (;;) {
        uintptr_t ret, next;
        if (!read_stack(stack, fp + sizeof(uintptr_t), &ret) || !read_stack(stack, fp, &next))
            return false;
        if (!in_self(ret)) {
            *f = (struct frame){ret, fp + 2 * sizeof(uintptr_t), next, 0, true};
            return true;
        }
        if (next <= fp)
            return false;
        fp = next;
    }
}
#endif

static bool step_by_rule(const struct unwind_rule *r, const struct memprof_stack_range *s,
                         struct frame *f)
{
    uintptr_t cfa = (r->flags & RULE_CFA_FP ? f->bp : f->sp) + (intptr_t)r->cfa_offset;
    if ((r->flags & RULE_CFA_DEREF) && !read_stack(s, cfa, &cfa))
        return false;
    uintptr_t ra = f->lr, bp = f->bp;
    /* A caller's frame lies above its callee's; only a frame whose return address
     * is still in the link register (which is then used up) may have none. */
    bool in_lr = ARCH_LINK_REGISTER && (r->flags & RULE_RA_LR);
    if (cfa < f->sp || (cfa == f->sp && !in_lr) || (in_lr && ra == 0) ||
        (!in_lr && !read_stack(s, cfa + 8 * (intptr_t)r->ra_slot, &ra)))
        return false;
    intptr_t slot = 8 * (intptr_t)r->fp_slot;
    switch (r->flags & RULE_FP_MASK) {
    case RULE_FP_CFA: if (!read_stack(s, cfa + slot, &bp)) return false; break;
    case RULE_FP_SP: if (!read_stack(s, f->sp + slot, &bp)) return false; break;
    case RULE_FP_FP: if (!read_stack(s, f->bp + slot, &bp)) return false; break;
    }
    *f = (struct frame){arch_return_address(ra), cfa, bp, 0, true};
    return true;
}

/* At the signal return trampoline the stack pointer leads to the ucontext the
 * kernel saved: the interrupted registers, maybe on another stack (a sigaltstack). */
static bool step_signal(struct memprof_stack_range *s, struct frame *f)
{
    uintptr_t uc = f->sp + ARCH_SIGNAL_UCONTEXT;
    uintptr_t pc, sp, bp, lr = 0;
    if (!read_stack(s, uc + ARCH_MCONTEXT_PC, &pc) || !read_stack(s, uc + ARCH_MCONTEXT_SP, &sp) ||
        !read_stack(s, uc + ARCH_MCONTEXT_FP, &bp) ||
        (ARCH_LINK_REGISTER && !read_stack(s, uc + ARCH_MCONTEXT_LR, &lr)))
        return false;
    struct memprof_stack_range other;
    if (!in_stack(sp, s)) {
        if (!stack_of(sp, &other))
            return false;
        *s = other;
    }
    *f = (struct frame){pc, sp, bp, arch_return_address(lr), false};
    return true;
}

/* Go code: the caller's rbp and return address are at rbp.  Below the C code it
 * called (runtime.asmcgocall) rbp is that of the goroutine's stack. */
static bool step_frame_pointer(struct memprof_stack_range *s, struct frame *f)
{
    struct memprof_stack_range other;
    if (!in_stack(f->bp, s)) {
        if (!stack_of(f->bp, &other))
            return false;
        *s = other;
    } else if (f->bp < f->sp) {
        return false;   /* a caller's frame lies above its callee's */
    }
    uintptr_t ra, bp;
    if (!read_stack(s, f->bp + sizeof(uintptr_t), &ra) || !read_stack(s, f->bp, &bp))
        return false;
    *f = (struct frame){arch_return_address(ra), f->bp + 2 * sizeof(uintptr_t), bp, 0, true};
    return true;
}

#if !ARCH_SELF_BY_FRAME_POINTER
/* A frame record (fp, return address) does not say where its frame's stack
 * pointer was, which the next rule may need: the sampler's own frames are
 * stepped over by their rules, from the registers here.  Inlined, so that it
 * starts from the frame of memprof_unwind. */
static inline __attribute__((always_inline)) bool first_foreign_frame(
    struct memprof_stack_range *stack, struct frame *f)
{
    uintptr_t pc, sp, fp;
    arch_here(pc, sp, fp);
    if (!stack_of(sp, stack))
        return false;
    struct frame here = {pc, sp, fp, 0, false};
    uint32_t epoch = atomic_load_explicit(&rule_epoch, memory_order_relaxed);
    for (int i = 0; i < 64 && in_self(here.pc); i++) {
        struct unwind_rule rule = rule_at(rule_table, epoch, memprof_thread.memos, here.pc,
                                          here.is_return);
        if (rule.kind != RULE_CFA || !step_by_rule(&rule, stack, &here))
            return false;
    }
    *f = here;
    return !in_self(here.pc);
}
#endif

/* The depth, or -1 when a frame needs libunwind. */
static int rule_walk(uintptr_t *out, int max)
{
    struct memprof_stack_range first_stack;
    struct frame first;
    if (!first_foreign_frame(&first_stack, &first))
        return 0;
    /* Copies whose address never leaves this function: kept in registers. */
    struct memprof_stack_range stack = first_stack;
    struct frame f = first;
    const struct rule_slot *table = rule_table;
    uint32_t epoch = atomic_load_explicit(&rule_epoch, memory_order_relaxed);
    struct memprof_memos *memos = memprof_thread.memos;
    /* The last walk's frames are met in order of their stack address, as this
     * walk's are: a frame at the same address running the same code has its rule. */
    static const struct memprof_walk_step no_walk = {0, UINTPTR_MAX, 0};
    const struct memprof_walk_step *last = &no_walk;
    struct memprof_walk_step *now = NULL;
    if (memos != NULL) {
        last = memos->walks[memos->last_walk];
        now = memos->walks[memos->last_walk ^ 1];
    }
    int n = 0;
    while (n < max) {
        uint64_t key = rule_key(f.pc, f.is_return, epoch);
        while (last->sp < f.sp)
            last++;
        struct unwind_rule rule;
        if (last->sp == f.sp && last->key == key)
            memcpy(&rule, &(last++)->rule, sizeof rule);
        else
            rule = rule_at(table, epoch, memos, f.pc, f.is_return);
        if (now != NULL)   /* key 0 matches no frame */
            now[n] = (struct memprof_walk_step){memoisable(rule) ? key : 0, f.sp, rule_word(rule)};
        out[n++] = f.pc;
        if (LIKELY(rule.kind == RULE_CFA)) {
            if (!step_by_rule(&rule, &stack, &f))
                break;
        } else if (rule.kind == RULE_SIGRETURN) {
            if (!step_signal(&stack, &f))
                break;
            if (memprof_thread.in_trap)
                n = 0;   /* a probe's trap: the stack starts at the probe's site */
        } else if (rule.kind == RULE_FRAME_POINTER) {
            if (!step_frame_pointer(&stack, &f))
                break;
        } else if (rule.kind == RULE_LIBUNWIND) {
            if (MEMPROF_HAS_LIBUNWIND)
                return -1;
            break;
        } else {
            break;   /* no unwind information, or the outermost frame */
        }
        if (f.pc < CODE_ADDRESS_MIN)
            break;
    }
    if (now != NULL) {
        now[n] = no_walk;
        memos->last_walk ^= 1;
    }
    return n;
}

static int frame_pointer_walk(uintptr_t *out, int max)
{
    struct memprof_stack_range stack;
    struct frame f;
    if (!first_foreign_frame(&stack, &f))
        return 0;
    int n = 0;
    for (;;) {
        out[n++] = f.pc;
        uintptr_t fp = f.bp, ret, next;
        if (n == max || fp < f.sp || !read_stack(&stack, fp + sizeof(uintptr_t), &ret) ||
            !read_stack(&stack, fp, &next) || ret == 0)
            return n;
        f = (struct frame){arch_return_address(ret), fp + 2 * sizeof(uintptr_t), next, 0, true};
    }
}

#if MEMPROF_HAS_LIBUNWIND
static int libunwind_walk(uintptr_t *out, int max)
{
    /* Room for the sampler's own frames, which are dropped. */
    enum { SLACK = 8 };
    uintptr_t raw[MEMPROF_MAX_DEPTH + SLACK];
    int n = unw_backtrace((void **)raw, max + SLACK);
    int first = 0;
    for (int i = 0; i < n && i < SLACK; i++)
        if (in_self(raw[i]))
            first = i + 1;
    int depth = n - first < max ? n - first : max;
    if (depth > 0)
        memcpy(out, raw + first, sizeof(uintptr_t) * (size_t)depth);
    return depth;
}
#else
#define libunwind_walk rule_walk   /* a build without libunwind: the hybrid walk */
#endif

int memprof_unwind(uintptr_t *frames, int max_depth)
{
    int n = memprof_cfg.unwinder == UNWIND_HYBRID         ? rule_walk(frames, max_depth)
            : memprof_cfg.unwinder == UNWIND_FRAME_POINTER ? frame_pointer_walk(frames, max_depth)
                                                           : -1;
    if (n < 0)
        n = libunwind_walk(frames, max_depth);
    if (n <= 0) {   /* no frame could be read: one unknown frame keeps the sample */
        frames[0] = 0;
        return 1;
    }
    frames[0] -= 1;   /* leaf: a PC inside the call instruction */
    return n;
}

/* ---- set-up ---------------------------------------------------------------------- */
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
    note_loader(info->dlpi_adds, info->dlpi_subs);
    if (probe >= lo && probe < hi) {
        self_lo = lo;
        self_hi = hi;
        return 1;
    }
    return 0;
}

void memprof_unwind_init(void)
{
    dl_iterate_phdr(find_self, (void *)(uintptr_t)&memprof_unwind_init);
    rule_table = memprof_map(sizeof(struct rule_slot) << RULE_TABLE_BITS);
}

const char *memprof_unwinder_name(void)
{
    switch (memprof_cfg.unwinder) {
    case UNWIND_FRAME_POINTER: return "frame-pointer";
    case UNWIND_LIBUNWIND: return MEMPROF_HAS_LIBUNWIND ? "libunwind" : "hybrid";
    default: return "hybrid";
    }
}
