/* x86-64 (arch.h says what each name means). */
#ifndef MEMPROF_ARCH_X86_64_H
#define MEMPROF_ARCH_X86_64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#define ARCH_NAME "x86-64"
enum { DW_REG_FP = 6, DW_REG_SP = 7, DW_REG_PC = 16 };   /* rbp, rsp, rip */
#define ARCH_CODE_ADDRESS_END (1ull << 47)
#define ARCH_PC_ALIGN_BITS 0
/* glibc's __restore_rt: mov $__NR_rt_sigreturn, %rax; syscall */
#define ARCH_SIGRETURN_CODE {0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05}
#define ARCH_SIGNAL_UCONTEXT 0   /* rsp points at the ucontext */
#define ARCH_MCONTEXT_PC offsetof(ucontext_t, uc_mcontext.gregs[REG_RIP])
#define ARCH_MCONTEXT_SP offsetof(ucontext_t, uc_mcontext.gregs[REG_RSP])
#define ARCH_MCONTEXT_FP offsetof(ucontext_t, uc_mcontext.gregs[REG_RBP])
#define ARCH_MCONTEXT_LR ARCH_MCONTEXT_PC   /* no link register: unused */
#define ARCH_SIGRETURN_OUTSIDE_OBJECTS 0
#define ARCH_LINK_REGISTER 0
#define ARCH_NEGATE_RA_STATE 0
#define ARCH_SELF_BY_FRAME_POINTER 1
#define ARCH_GLIBC_BASE "GLIBC_2.2.5"   /* the first symbol version */
#define ARCH_CALL_VIA_RET 1

static inline uintptr_t arch_return_address(uintptr_t ra)
{
    return ra;
}

/* The linker describes x86-64 PLT entries in .eh_frame: no stub needs guessing. */
static inline bool arch_in_plt_stub(uintptr_t pc, uintptr_t lo, uintptr_t hi)
{
    (void)pc, (void)lo, (void)hi;
    return false;
}

#endif
