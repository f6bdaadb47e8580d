/* The unwind rule of one code address, as eh_frame.c works it out from an
 * object's .eh_frame and unwind.c caches and applies it.  Shared by those two
 * files only. */
#ifndef MEMPROF_EH_FRAME_H
#define MEMPROF_EH_FRAME_H

#include "base/common.h"

enum unwind_rule_kind {
    RULE_NONE = 0,    /* no unwind information here (JIT code, a bad address): the walk stops */
    RULE_CFA,         /* an ordinary frame, described by the fields below */
    RULE_OUTERMOST,   /* the return address (or frame pointer) is undefined: _start, clone3 */
    RULE_SIGRETURN,   /* a signal return trampoline (glibc's __restore_rt, the aarch64
                         kernel's): the interrupted registers are in the ucontext */
    RULE_LIBUNWIND,   /* beyond what the fields can say: libunwind walks the stack */
    RULE_FRAME_POINTER, /* Go code, which has no unwind information but always keeps
                           frame pointers, maybe on another stack (a goroutine's) */
};

/* rule.flags; fp is the frame pointer (rbp, x29), sp the stack pointer */
#define RULE_CFA_FP 0x01      /* CFA = fp + cfa_offset (else sp + cfa_offset) */
#define RULE_CFA_DEREF 0x02   /* ... and the CFA is the word stored there (a realigned stack) */
#define RULE_FP_MASK 0x0c     /* where the caller's fp is: */
#define RULE_FP_SAME 0x00     /*   still in fp */
#define RULE_FP_CFA 0x04      /*   at CFA + 8 * fp_slot */
#define RULE_FP_SP 0x08       /*   at sp + 8 * fp_slot */
#define RULE_FP_FP 0x0c       /*   at fp + 8 * fp_slot */
#define RULE_RA_LR 0x10       /* the return address is still in the link register (aarch64) */

/* How to go from a frame's pc, sp and fp to its caller's: the caller's sp is
 * the CFA, its pc the return address at CFA + 8 * ra_slot.  Eight bytes, so
 * that a cache entry is two words. */
struct unwind_rule {
    int32_t cfa_offset;   /* RULE_NONE: the loader's count of loaded objects it was found at */
    uint8_t kind;         /* enum unwind_rule_kind */
    uint8_t flags;
    int8_t ra_slot;
    int8_t fp_slot;
};
_Static_assert(sizeof(struct unwind_rule) == 8, "a rule is one word");

/* An object's unwind tables: its .eh_frame_hdr at `hdr`, in [lo, hi), the mapped
 * segment that holds it and .eh_frame, which every byte read lies in.  They are read
 * in place, or from the object's file where `file` is set (object_file.h). */
struct eh_tables {
    uintptr_t hdr, lo, hi;
    struct memprof_eh_file *file;
};

/* The rule at `pc` of the object whose tables `t` are.  A return address
 * (is_return) is looked up at pc - 1, inside its call instruction; an interrupted pc
 * (below a signal frame) at pc itself. */
struct unwind_rule memprof_eh_frame_rule(const struct eh_tables *t, uintptr_t pc,
                                         bool is_return) HIDDEN;

/* Where .eh_frame_hdr's binary-search table starts and its count of entries (8 bytes
 * each: a code address and its FDE's, relative to hdr); false if it has none that
 * this reader takes or runs past hi. */
bool memprof_eh_frame_table(const struct eh_tables *t, uintptr_t *table, uint64_t *count) HIDDEN;

#endif
