/* Interposition of dlsym.  The CUDA runtime dlopens the driver and fetches
 * only cuGetProcAddress_v2 from it with dlsym(handle, ...), then asks that for
 * every driver function: a preloaded cuMemAlloc_v2 is never reached.  So dlsym
 * on an explicit handle hands back our wrappers for the driver's entry points
 * (hooks_device.c decides which).
 *
 * dlsym(RTLD_NEXT) and dlsym(RTLD_DEFAULT) depend on who calls them (glibc
 * looks at the return address), so those go straight to glibc's dlsym by a tail
 * jump that keeps the caller's return address; only explicit handles, which
 * mean the same from any caller, pass through C. */
#include <dlfcn.h>

#include "hooks_device.h"
#include "hooks_dlsym.h"

void *(*memprof_real_dlsym)(void *, const char *);

/* Called from the stub below (registers saved) the first time it is needed. */
void *memprof_resolve_dlsym(void)
{
    void *fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (fn == NULL)
        fn = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    __atomic_store_n(&memprof_real_dlsym, fn, __ATOMIC_RELEASE);
    return fn;
}

void *memprof_dlsym_handle(void *handle, const char *name)
{
    void *found = memprof_real_dlsym(handle, name);
    return found != NULL && name != NULL ? memprof_device_entry_point(name, found) : found;
}

__asm__(
    "    .text\n"
    "    .globl dlsym\n"
    "    .type dlsym, @function\n"
    "    .globl memprof_dlsym_stub\n"              /* the same code, bound locally */
    "    .hidden memprof_dlsym_stub\n"
    "dlsym:\n"
    "memprof_dlsym_stub:\n"
    "    cmpq $-1, %rdi\n"                          /* RTLD_NEXT */
    "    je 1f\n"
    "    testq %rdi, %rdi\n"                        /* RTLD_DEFAULT */
    "    jz 1f\n"
    "    movq memprof_real_dlsym(%rip), %rax\n"
    "    testq %rax, %rax\n"
    "    jz 2f\n"
    "    jmp memprof_dlsym_handle\n"
    "1:  movq memprof_real_dlsym(%rip), %rax\n"
    "    testq %rax, %rax\n"
    "    jz 2f\n"
    "    jmp *%rax\n"
    "2:  pushq %rdi\n"                              /* not resolved yet */
    "    pushq %rsi\n"
    "    subq $8, %rsp\n"
    "    call memprof_resolve_dlsym\n"
    "    addq $8, %rsp\n"
    "    popq %rsi\n"
    "    popq %rdi\n"
    "    testq %rax, %rax\n"
    "    jnz memprof_dlsym_stub\n"
    "    ret\n"                                     /* no dlsym in libc: NULL */
    "    .size dlsym, .-dlsym\n");
