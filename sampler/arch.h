/* What differs between the architectures the sampler runs on, one header each
 * (arch/x86_64.h, arch/aarch64.h) with the same names, and one assembly file
 * each for the trampolines (arch/x86_64.S, arch/aarch64.S):
 *
 *   DW_REG_FP, DW_REG_SP, DW_REG_PC   DWARF register numbers (DW_REG_PC: -1 where
 *                                     no expression reads the pc)
 *   ARCH_CODE_ADDRESS_END             the end of user space
 *   ARCH_PC_ALIGN_BITS                low bits every code address has clear
 *   ARCH_SIGRETURN_CODE               the signal return trampoline's bytes
 *   ARCH_SIGNAL_UCONTEXT              the ucontext's offset from the stack pointer
 *                                     there; ARCH_MCONTEXT_PC/SP/FP/LR in it
 *   ARCH_SIGRETURN_OUTSIDE_OBJECTS    1 where the trampoline may be in no object
 *                                     the loader lists (qemu-user's page)
 *   ARCH_LINK_REGISTER                1 where calls leave the return address in a
 *                                     register (it is then in the frame's lr)
 *   ARCH_NEGATE_RA_STATE              1 where DW_CFA 0x2d toggles pointer
 *                                     authentication of the return address
 *   arch_return_address(ra)           a saved return address without its signature
 *   arch_in_plt_stub(pc, lo, hi)      whether an interrupted pc with no unwind
 *                                     information is in a PLT stub that saves nothing
 *   ARCH_SELF_BY_FRAME_POINTER        1: the sampler's own frames are left by their
 *                                     frame records alone (the next frame's stack
 *                                     pointer is the record's end)
 *   arch_here()                       (where 0) the registers at the point of call
 *   ARCH_GLIBC_BASE                   glibc's first symbol version there
 *   ARCH_CALL_VIA_RET                 1 where memprof_call_via_ret exists
 *   ARCH_PROBE_NOP, ARCH_PROBE_TRAP   a USDT probe site's `nop` (sys/sdt.h's) and the
 *                                     trap written over it, ARCH_PROBE_BYTES long
 *   arch_probe_trapped_at(uc)         the site a trap there stopped at, and
 *   arch_probe_step_over(uc)          the ucontext made to resume after it
 *   ARCH_PROBE_WRITE_BY_PROC_MEM      1: a site is written through /proc/self/mem
 *   arch_usdt_register(name, len, reg, shift)   a USDT argument's register by its
 *                                     name (after ARCH_USDT_REGISTER_MARK), and
 *   arch_usdt_register_value(uc, reg, shift)    its value at a trap
 *   ARCH_USDT_CONSTANT_MARK           before a constant argument
 *   ARCH_USDT_BRACKETED_MEMORY        1: a memory argument is [reg, offset], else
 *                                     offset(%reg)
 *   arch_ticks()                      a counter of time read in a few cycles (the
 *                                     TSC, the virtual count register), and
 *   arch_ticks_steady()               whether it runs at one rate on every core */
#ifndef MEMPROF_ARCH_H
#define MEMPROF_ARCH_H

#if defined(__x86_64__)
#include "arch/x86_64.h"
#elif defined(__aarch64__)
#include "arch/aarch64.h"
#else
#error "the sampler is built for x86-64 and aarch64 only"
#endif

#endif
