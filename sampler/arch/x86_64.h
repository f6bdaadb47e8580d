/* x86-64 (arch.h says what each name means). */
#ifndef MEMPROF_ARCH_X86_64_H
#define MEMPROF_ARCH_X86_64_H

#include <cpuid.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
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

/* USDT probes: a site's `nop`, and int3 over it, which leaves the pc after its one byte. */
#define ARCH_PROBE_BYTES 1
#define ARCH_PROBE_NOP {0x90}
#define ARCH_PROBE_TRAP {0xcc}
#define ARCH_PROBE_WRITE_BY_PROC_MEM 1
static inline uintptr_t arch_probe_trapped_at(const ucontext_t *uc)
{
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP] - 1;
}
static inline void arch_probe_step_over(ucontext_t *uc) { (void)uc; }

/* Each general register by its names at 8, 4, 2 and 1 bytes (and the high byte). */
#define ARCH_USDT_REGISTER_MARK "%"
#define ARCH_USDT_CONSTANT_MARK "$"
#define ARCH_USDT_BRACKETED_MEMORY 0
static inline bool arch_usdt_register(const char *name, size_t len, uint8_t *reg,
                                      uint8_t *shift)
{
    static const struct {
        uint8_t reg;
        const char *names[5];
    } registers[] = {
        {REG_RAX, {"rax", "eax", "ax", "al", "ah"}}, {REG_RBX, {"rbx", "ebx", "bx", "bl", "bh"}},
        {REG_RCX, {"rcx", "ecx", "cx", "cl", "ch"}}, {REG_RDX, {"rdx", "edx", "dx", "dl", "dh"}},
        {REG_RSI, {"rsi", "esi", "si", "sil", NULL}}, {REG_RDI, {"rdi", "edi", "di", "dil", NULL}},
        {REG_RBP, {"rbp", "ebp", "bp", "bpl", NULL}}, {REG_RSP, {"rsp", "esp", "sp", "spl", NULL}},
        {REG_R8, {"r8", "r8d", "r8w", "r8b", NULL}},  {REG_R9, {"r9", "r9d", "r9w", "r9b", NULL}},
        {REG_R10, {"r10", "r10d", "r10w", "r10b", NULL}},
        {REG_R11, {"r11", "r11d", "r11w", "r11b", NULL}},
        {REG_R12, {"r12", "r12d", "r12w", "r12b", NULL}},
        {REG_R13, {"r13", "r13d", "r13w", "r13b", NULL}},
        {REG_R14, {"r14", "r14d", "r14w", "r14b", NULL}},
        {REG_R15, {"r15", "r15d", "r15w", "r15b", NULL}},
        {REG_RIP, {"rip", "eip", NULL, NULL, NULL}},
    };
    for (size_t r = 0; r < sizeof registers / sizeof registers[0]; r++)
        for (int form = 0; form < 5; form++) {
            const char *n = registers[r].names[form];
            if (n != NULL && strlen(n) == len && memcmp(n, name, len) == 0) {
                *reg = registers[r].reg;
                *shift = form == 4 ? 8 : 0;
                return true;
            }
        }
    return false;
}
static inline uint64_t arch_usdt_register_value(const ucontext_t *uc, uint8_t reg, uint8_t shift)
{
    return (uint64_t)uc->uc_mcontext.gregs[reg] >> shift;
}

static inline uint64_t arch_ticks(void) { return __builtin_ia32_rdtsc(); }

/* An invariant TSC (CPUID 0x80000007, EDX bit 8): one rate whatever the core's clock. */
static inline bool arch_ticks_steady(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & 1u << 8);
}

#endif
