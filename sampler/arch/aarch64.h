/* aarch64 (arch.h says what each name means). */
#ifndef MEMPROF_ARCH_AARCH64_H
#define MEMPROF_ARCH_AARCH64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <ucontext.h>

#define ARCH_NAME "aarch64"
enum { DW_REG_FP = 29, DW_REG_SP = 31, DW_REG_PC = -1 };   /* x29, sp; no pc register */
#define ARCH_CODE_ADDRESS_END (1ull << 48)
#define ARCH_PC_ALIGN_BITS 2
/* The kernel's __kernel_rt_sigreturn (the vDSO; qemu-user's trampoline alike):
 * mov x8, #__NR_rt_sigreturn; svc #0 */
#define ARCH_SIGRETURN_CODE {0x68, 0x11, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4}
/* The kernel's struct rt_sigframe: a siginfo, then the ucontext. */
#define ARCH_SIGNAL_UCONTEXT sizeof(siginfo_t)
#define ARCH_MCONTEXT_PC offsetof(ucontext_t, uc_mcontext.pc)
#define ARCH_MCONTEXT_SP offsetof(ucontext_t, uc_mcontext.sp)
#define ARCH_MCONTEXT_FP offsetof(ucontext_t, uc_mcontext.regs[29])
#define ARCH_MCONTEXT_LR offsetof(ucontext_t, uc_mcontext.regs[30])
#define ARCH_SIGRETURN_OUTSIDE_OBJECTS 1
#define ARCH_LINK_REGISTER 1
#define ARCH_NEGATE_RA_STATE 1
#define ARCH_SELF_BY_FRAME_POINTER 0
#define ARCH_GLIBC_BASE "GLIBC_2.17"   /* the first symbol version */
#define ARCH_CALL_VIA_RET 0

/* A return address signed by pointer authentication carries its signature in
 * the bits above the 48 of a user address. */
static inline uintptr_t arch_return_address(uintptr_t ra)
{
    return ra & (ARCH_CODE_ADDRESS_END - 1);
}

/* Whether the interrupted pc is in a PLT stub (adrp x16; ldr x17, [x16, ...];
 * add x16, x16, ...; br x17), for which the linker writes no unwind
 * information: nothing is saved there, the return address is in x30.  The
 * stub's words lie in [lo, hi), its code segment. */
static inline bool arch_in_plt_stub(uintptr_t pc, uintptr_t lo, uintptr_t hi)
{
    uintptr_t stub = pc & ~(uintptr_t)15;
    if (stub < lo || hi - stub < 16)
        return false;
    const uint32_t *w = (const uint32_t *)stub;
    return (w[0] & 0x9f00001fu) == 0x90000010u && (w[1] & 0xffc003ffu) == 0xf9400211u &&
           (w[2] & 0xffc003ffu) == 0x91000210u && w[3] == 0xd61f0220u;
}

/* The pc, sp and x29 of the code it is inlined into. */
#define arch_here(pc, sp, fp)                                   \
    do {                                                        \
        __asm__ volatile("adr %0, ." : "=r"(pc));               \
        __asm__ volatile("mov %0, sp" : "=r"(sp));              \
        (fp) = (uintptr_t)__builtin_frame_address(0);           \
    } while (0)

/* USDT probes: a site's `nop`, and brk #0 over it, which stops at it: the handler steps
 * over its four bytes.  A site is written by a store (qemu-user's /proc/self/mem is its
 * own, and its translations would not see the write). */
#define ARCH_PROBE_BYTES 4
#define ARCH_PROBE_NOP {0x1f, 0x20, 0x03, 0xd5}
#define ARCH_PROBE_TRAP {0x00, 0x00, 0x20, 0xd4}
#define ARCH_PROBE_WRITE_BY_PROC_MEM 0
static inline uintptr_t arch_probe_trapped_at(const ucontext_t *uc)
{
    return (uintptr_t)uc->uc_mcontext.pc;
}
static inline void arch_probe_step_over(ucontext_t *uc) { uc->uc_mcontext.pc += 4; }

/* xN, and wN its low half (read at the argument's size), x0-x30; sp as 31. */
#define ARCH_USDT_REGISTER_MARK ""
#define ARCH_USDT_CONSTANT_MARK ""
#define ARCH_USDT_BRACKETED_MEMORY 1
static inline bool arch_usdt_register(const char *name, size_t len, uint8_t *reg,
                                      uint8_t *shift)
{
    *shift = 0;
    if (len == 2 && name[0] == 's' && name[1] == 'p') {
        *reg = 31;
        return true;
    }
    if (len < 2 || len > 3 || (name[0] != 'x' && name[0] != 'w'))
        return false;
    unsigned n = 0;
    for (size_t i = 1; i < len; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        n = n * 10 + (unsigned)(name[i] - '0');
    }
    *reg = (uint8_t)n;
    return n < 31;
}
static inline uint64_t arch_usdt_register_value(const ucontext_t *uc, uint8_t reg, uint8_t shift)
{
    (void)shift;
    return reg == 31 ? uc->uc_mcontext.sp : uc->uc_mcontext.regs[reg];
}

static inline uint64_t arch_ticks(void)
{
    uint64_t ticks;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(ticks));
    return ticks;
}

/* The generic timer's count is the system's, the same on every core. */
static inline bool arch_ticks_steady(void) { return true; }

#endif
