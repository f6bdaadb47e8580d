/* x86-64 trampolines (arch.h).
 *
 * dlsym: the interposed dlsym (hooks_dlsym.c).  RTLD_NEXT and RTLD_DEFAULT
 * depend on who calls (glibc reads the return address), so those jump
 * straight to glibc's dlsym, keeping the caller's; explicit handles go to
 * memprof_dlsym_handle.  memprof_dlsym_stub is the same code, bound locally.
 *
 * memprof_call_via_ret(fn, ret, file, mode): fn(file, mode) with `ret`, a ret
 * instruction inside the caller's own code, as its return address; that ret
 * comes back here (got_hooks.c, dlopen through a redirected slot). */
    .text
    .globl dlsym
    .type dlsym, @function
    .globl memprof_dlsym_stub
    .hidden memprof_dlsym_stub
dlsym:
memprof_dlsym_stub:
    cmpq $-1, %rdi                  /* RTLD_NEXT */
    je 1f
    testq %rdi, %rdi                /* RTLD_DEFAULT */
    jz 1f
    movq memprof_real_dlsym(%rip), %rax
    testq %rax, %rax
    jz 2f
    jmp memprof_dlsym_handle
1:  movq memprof_real_dlsym(%rip), %rax
    testq %rax, %rax
    jz 2f
    jmp *%rax
2:  pushq %rdi                      /* not resolved yet */
    pushq %rsi
    subq $8, %rsp
    call memprof_resolve_dlsym
    addq $8, %rsp
    popq %rsi
    popq %rdi
    testq %rax, %rax
    jnz memprof_dlsym_stub
    ret                             /* no dlsym in libc: NULL */
    .size dlsym, .-dlsym

    .globl memprof_call_via_ret
    .hidden memprof_call_via_ret
    .type memprof_call_via_ret, @function
memprof_call_via_ret:
    .cfi_startproc
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    andq $-16, %rsp
    subq $8, %rsp                   /* two pushes below: fn is entered with rsp = 8 mod 16 */
    leaq 1f(%rip), %rax
    pushq %rax                      /* where the ret returns to */
    pushq %rsi                      /* fn's return address: the ret */
    movq %rdi, %rax
    movq %rdx, %rdi
    movl %ecx, %esi
    jmp *%rax
1:  movq %rbp, %rsp
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_endproc
    .size memprof_call_via_ret, .-memprof_call_via_ret

    .section .note.GNU-stack,"",@progbits
