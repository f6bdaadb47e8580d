/* aarch64 trampolines (arch.h).
 *
 * dlsym: the interposed dlsym (hooks_dlsym.c).  RTLD_NEXT and RTLD_DEFAULT
 * depend on who calls (glibc reads the return address, x30), so those branch
 * straight to glibc's dlsym, x30 still the caller's; explicit handles go to
 * memprof_dlsym_handle.  memprof_dlsym_stub is the same code, bound locally.
 *
 * No memprof_call_via_ret: a ret returns to x30 itself, so the x86 way of
 * lending dlopen a return address inside its caller does not carry over, and
 * injection, the one user of it, is x86-64 only. */
    .text
    .globl dlsym
    .type dlsym, %function
    .globl memprof_dlsym_stub
    .hidden memprof_dlsym_stub
dlsym:
memprof_dlsym_stub:
    cmn x0, #1                      /* RTLD_NEXT */
    b.eq 1f
    cbz x0, 1f                      /* RTLD_DEFAULT */
    adrp x16, memprof_real_dlsym
    ldr x16, [x16, :lo12:memprof_real_dlsym]
    cbz x16, 2f
    b memprof_dlsym_handle
1:  adrp x16, memprof_real_dlsym
    ldr x16, [x16, :lo12:memprof_real_dlsym]
    cbz x16, 2f
    br x16
2:  stp x29, x30, [sp, #-32]!       /* not resolved yet */
    mov x29, sp
    stp x0, x1, [sp, #16]
    bl memprof_resolve_dlsym
    mov x16, x0
    ldp x0, x1, [sp, #16]
    ldp x29, x30, [sp], #32
    cbnz x16, memprof_dlsym_stub
    mov x0, #0                      /* no dlsym in libc: NULL */
    ret
    .size dlsym, .-dlsym

    .section .note.GNU-stack,"",%progbits
