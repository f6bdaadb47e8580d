/* A framework's own out-of-memory error: the moment its caching allocator gives up.
 *
 * PyTorch's caching allocator (libc10_cuda.so; torch_npu's libtorch_npu.so from 2.9) meets
 * a failed device allocation by giving its cached segments back and asking again; it
 * raises c10::OutOfMemoryError only when that fails too, or at once, without asking
 * the device, at a limit of its own (torch.cuda.set_per_process_memory_fraction).  So
 * a failed allocation made by a library that raises the error is kept as the thread's
 * pending failure, and what was live is written as the error is thrown (__cxa_throw):
 * an allocation its retry satisfies writes nothing, and a refusal at the framework's
 * own limit is seen.  Any other failed device allocation is written at once
 * (hooks_device.c).
 *
 * A library raises the error if it defines the error's type_info: the class has no key
 * function, so each library that throws it carries a weak copy among its dynamic
 * symbols (libc10_cuda.so from PyTorch 1.13 on; CUDAOutOfMemoryError before). */
#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "base/real_function.h"
#include "control/window.h"
#include "hooks/framework_oom.h"
#include "hooks/hooks_device.h"
#include "sample/window_page.h"
#include "unwind/object_file.h"
#include "unwind/object_symbols.h"

/* The errors, by their type_info's name (Itanium C++ ABI mangling), and as shown. */
static const struct { const char *type_info, *name, *shown; } errors[] = {
    {"_ZTIN3c1016OutOfMemoryErrorE", "N3c1016OutOfMemoryErrorE", "c10::OutOfMemoryError"},
    {"_ZTIN3c1020CUDAOutOfMemoryErrorE", "N3c1020CUDAOutOfMemoryErrorE",
     "c10::CUDAOutOfMemoryError"},
};
#define ERRORS (sizeof errors / sizeof errors[0])

struct object_search {
    uintptr_t address;
    bool raises;
};

static int look_at_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct object_search *s = arg;
    if (memprof_object_segment(info, s->address) == NULL)
        return 0;
    for (size_t e = 0; e < ERRORS && !s->raises; e++)
        s->raises = memprof_object_defines(info, errors[e].type_info);
    return 1;
}

bool memprof_framework_defers(uintptr_t caller, enum memprof_heap heap, uint64_t bytes, int error)
{
    uint32_t window = memprof_window_id();
    struct object_search s = {caller, false};
    if (window == 0 || caller == 0)
        return false;
    dl_iterate_phdr(look_at_object, &s);
    if (s.raises)
        memprof_thread.pending_failure = (__typeof__(memprof_thread.pending_failure)){
            .window = window, .heap = (int32_t)heap, .error = error, .bytes = bytes};
    return s.raises;
}

/* The error thrown, as shown, or NULL for any other type. */
static const char *framework_error(const void *type)
{
    const char *name = ((const char *const *)type)[1];   /* std::type_info: vptr, name */
    if (name != NULL && name[0] == '*')                  /* a type local to its object */
        name++;
    for (size_t e = 0; name != NULL && e < ERRORS; e++)
        if (strcmp(name, errors[e].name) == 0)
            return errors[e].shown;
    return NULL;
}

static void raised(const char *error)
{
    uint32_t used = memprof_device_heaps_used();
    if (!(used & ((1u << HEAP_CUDA) | (1u << HEAP_CUDA_SEGMENTS) | (1u << HEAP_ACL))))
        return;   /* not the device's memory: a process that never allocated any */
    if (memprof_thread.pending_failure.window == memprof_window_id()) {
        memprof_capture_at_failure((enum memprof_heap)memprof_thread.pending_failure.heap,
                                   memprof_thread.pending_failure.bytes,
                                   memprof_thread.pending_failure.error, error);
        memprof_thread.pending_failure.window = 0;
    } else {   /* refused at the framework's own limit */
        enum memprof_heap heap = used & (1u << HEAP_ACL) && !(used & (1u << HEAP_CUDA))
                                     ? HEAP_ACL : HEAP_CUDA;
        memprof_capture_at_failure(heap, 0, 0, error);
    }
}

typedef void cxa_throw_fn(void *, void *, void (*)(void *));
static struct memprof_real_fn real_cxa_throw = {"__cxa_throw", "libstdc++", NULL, NULL};

EXPORT __attribute__((noreturn)) void __cxa_throw(void *object, void *type, void (*destroy)(void *))
{
    cxa_throw_fn *fn = (cxa_throw_fn *)memprof_real_function(&real_cxa_throw);
    if (fn == NULL || fn == __cxa_throw)   /* injected, in a program of libc++abi */
        fn = (cxa_throw_fn *)memprof_real_dlsym(RTLD_DEFAULT, "__cxa_throw");
    if (fn == NULL || fn == __cxa_throw)
        abort();
    const char *error;
    if (memprof_window_id() != 0 && type != NULL && (error = framework_error(type)) != NULL)
        raised(error);
    fn(object, type, destroy);
    __builtin_unreachable();
}

void *memprof_framework_hook_for(const char *name)
{
    return strcmp(name, "__cxa_throw") == 0 ? (void *)__cxa_throw : NULL;
}
