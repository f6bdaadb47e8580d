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

#endif
