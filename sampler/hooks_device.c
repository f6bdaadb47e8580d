/* Interposition of the device and HAL allocators (facts in DESIGN.md §6):
 * the CUDA runtime and driver, Ascend ACL and HAL.  Each family is a heap of
 * its own (enum memprof_heap).
 *
 * - A hook never calls through NULL (real_function.c finds the real one, also
 *   in a library loaded RTLD_LOCAL; the HAL's exported functions may fall back
 *   to their *Inner twins).  With nothing found the hook fails the call.
 * - The runtime reaches the driver only through cuGetProcAddress(_v2), and
 *   frameworks through cudaGetDriverEntryPoint[ByVersion]: those hand back our
 *   wrappers for the driver's allocation functions (so does dlsym on the
 *   driver's handle, hooks_dlsym.c).
 * - Only the outermost device call is recorded: cudaMalloc reaching
 *   cuMemAlloc, or aclrtMalloc reaching halMemAlloc, is one allocation.
 * - Physical memory of the virtual memory API is counted at cuMemCreate (by
 *   handle) and released at cuMemRelease; cuMemMap/cuMemUnmap map memory
 *   already counted and are forwarded only. */
#include <string.h>

#include "memprof_internal.h"

#define CUDA_NOT_INITIALIZED 3    /* cudaErrorInitializationError, CUDA_ERROR_NOT_INITIALIZED */
#define ACL_NOT_INITIALIZED 100001
#define HAL_NOT_INITIALIZED 3

typedef unsigned long long devptr_t;   /* CUdeviceptr, CUmemGenericAllocationHandle */

static _Atomic uint32_t heaps_used;

uint32_t memprof_device_heaps_used(void)
{
    return atomic_load_explicit(&heaps_used, memory_order_relaxed);
}

/* ---- recording -------------------------------------------------------------- */
/* True for the outermost device call of this thread; pair with leave_api. */
static inline bool enter_api(enum memprof_heap heap)
{
    if (!(atomic_load_explicit(&heaps_used, memory_order_relaxed) & (1u << heap)))
        atomic_fetch_or(&heaps_used, 1u << heap);
    return memprof_thread.device_depth++ == 0;
}

static inline void leave_api(void) { memprof_thread.device_depth--; }

static void allocated(bool outer, enum memprof_heap heap, int rc, uintptr_t key, uint64_t size,
                      uint64_t label)
{
    if (!outer)
        return;
    if (rc == 0)
        memprof_device_alloc(heap, key, size, label);
    else
        memprof_device_failed(heap, size, rc);
}

/* A free is recorded before the real one: the address may be handed out again at once. */
static inline bool freeing(enum memprof_heap heap, uintptr_t key)
{
    bool outer = enter_api(heap);
    if (outer && key != 0)
        memprof_device_free(heap, key);
    return outer;
}

#define CUDART "libcudart.so"
#define LIBCUDA "libcuda.so"
#define LIBACL "libascendcl.so"
#define LIBHAL "libascend_hal.so"
/* Every hooked function: its name, the library defining it, a fallback twin. */
#define DEVICE_FUNCTIONS(X)                                                       \
    X(cudaMalloc, CUDART, NULL)                                                   \
    X(cudaMallocAsync, CUDART, NULL)                                              \
    X(cudaMallocManaged, CUDART, NULL)                                            \
    X(cudaMallocPitch, CUDART, NULL)                                              \
    X(cudaMallocHost, CUDART, NULL)                                               \
    X(cudaHostAlloc, CUDART, NULL)                                                \
    X(cudaFree, CUDART, NULL)                                                     \
    X(cudaFreeAsync, CUDART, NULL)                                                \
    X(cudaFreeHost, CUDART, NULL)                                                 \
    X(cudaGetDriverEntryPoint, CUDART, NULL)                                      \
    X(cudaGetDriverEntryPointByVersion, CUDART, NULL)                             \
    X(cuMemAlloc_v2, LIBCUDA, NULL)                                               \
    X(cuMemFree_v2, LIBCUDA, NULL)                                                \
    X(cuMemAllocAsync, LIBCUDA, NULL)                                             \
    X(cuMemFreeAsync, LIBCUDA, NULL)                                              \
    X(cuMemAllocManaged, LIBCUDA, NULL)                                           \
    X(cuMemCreate, LIBCUDA, NULL)                                                 \
    X(cuMemRelease, LIBCUDA, NULL)                                                \
    X(cuMemMap, LIBCUDA, NULL)                                                    \
    X(cuMemUnmap, LIBCUDA, NULL)                                                  \
    X(cuGetProcAddress_v2, LIBCUDA, NULL)                                         \
    X(cuGetProcAddress, LIBCUDA, NULL)                                            \
    X(aclrtMalloc, LIBACL, NULL)                                                  \
    X(aclrtMallocHost, LIBACL, NULL)                                              \
    X(aclrtFree, LIBACL, NULL)                                                    \
    X(aclrtFreeHost, LIBACL, NULL)                                                \
    X(halMemAlloc, LIBHAL, "halMemAllocInner")                                    \
    X(halMemFree, LIBHAL, "halMemFreeInner")

#define DECLARE_REAL(name, library, fallback) \
    static struct memprof_real_fn real_##name = {#name, library, fallback, NULL};
DEVICE_FUNCTIONS(DECLARE_REAL)

/* Declares fn, the real function of the hook `name` (same signature as ours). */
#define REAL(name) __typeof__(&name) fn = (__typeof__(&name))memprof_real_function(&real_##name)

/* ---- the hooks ------------------------------------------------------------------
 * Four shapes, one line each below:
 *   ALLOC_HOOK    forwards, then records the allocation (or its failure) of the
 *                 pointer or handle *out of `bytes` bytes;
 *   FREE_HOOK     records the free of `key`, then forwards;
 *   FORWARD_HOOK  forwards only, inside the device call (no nested recording);
 *   GETTER_HOOK   forwards, then swaps the function *pfn for our wrapper. */
#define ALLOC_HOOK(heap, not_ready, name, params, args, out, bytes, label)       \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return not_ready;                                                     \
        bool outer = enter_api(heap);                                             \
        int rc = fn args;                                                         \
        leave_api();                                                              \
        allocated(outer, heap, rc, rc == 0 ? (uintptr_t)*(out) : 0, bytes, label); \
        return rc;                                                                \
    }

#define FREE_HOOK(heap, not_ready, name, params, args, key)                      \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return not_ready;                                                     \
        freeing(heap, (uintptr_t)(key));                                          \
        int rc = fn args;                                                         \
        leave_api();                                                              \
        return rc;                                                                \
    }

#define FORWARD_HOOK(heap, not_ready, name, params, args)                        \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return not_ready;                                                     \
        enter_api(heap);                                                          \
        int rc = fn args;                                                         \
        leave_api();                                                              \
        return rc;                                                                \
    }

#define GETTER_HOOK(name, params, args, symbol, pfn)                             \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return CUDA_NOT_INITIALIZED;                                          \
        int rc = fn args;                                                         \
        if (rc == 0 && (pfn) != NULL && *(pfn) != NULL && (symbol) != NULL)       \
            *(pfn) = memprof_device_entry_point(symbol, *(pfn));                  \
        return rc;                                                                \
    }

/* CUDA runtime */
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMalloc, (void **p, size_t n), (p, n), p, n, 0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMallocAsync, (void **p, size_t n, void *stream),
           (p, n, stream), p, n, 0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMallocManaged, (void **p, size_t n, unsigned f),
           (p, n, f), p, n, 0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMallocPitch,
           (void **p, size_t *pitch, size_t width, size_t height), (p, pitch, width, height), p,
           rc == 0 ? (uint64_t)*pitch * height : (uint64_t)width * height, 0)
ALLOC_HOOK(HEAP_CUDA_HOST, CUDA_NOT_INITIALIZED, cudaMallocHost, (void **p, size_t n), (p, n), p,
           n, 0)
ALLOC_HOOK(HEAP_CUDA_HOST, CUDA_NOT_INITIALIZED, cudaHostAlloc, (void **p, size_t n, unsigned f),
           (p, n, f), p, n, 0)
FREE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaFree, (void *p), (p), p)
FREE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaFreeAsync, (void *p, void *stream), (p, stream), p)
FREE_HOOK(HEAP_CUDA_HOST, CUDA_NOT_INITIALIZED, cudaFreeHost, (void *p), (p), p)
/* The runtime's way for frameworks to reach the driver (PyTorch's expandable segments). */
GETTER_HOOK(cudaGetDriverEntryPoint,
            (const char *symbol, void **pfn, unsigned long long flags, void *status),
            (symbol, pfn, flags, status), symbol, pfn)
GETTER_HOOK(cudaGetDriverEntryPointByVersion,
            (const char *symbol, void **pfn, unsigned version, unsigned long long flags,
             void *status), (symbol, pfn, version, flags, status), symbol, pfn)

/* CUDA driver.  Each is both exported (for programs linked against libcuda) and
 * handed out by the getters; its real function comes from whichever path saw it
 * first. */
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemAlloc_v2, (devptr_t *p, size_t n), (p, n), p, n,
           0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemAllocAsync, (devptr_t *p, size_t n, void *stream),
           (p, n, stream), p, n, 0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemAllocManaged, (devptr_t *p, size_t n, unsigned f),
           (p, n, f), p, n, 0)
ALLOC_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemCreate,
           (devptr_t *handle, size_t n, const void *prop, unsigned long long flags),
           (handle, n, prop, flags), handle, n, 0)
FREE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemFree_v2, (devptr_t p), (p), p)
FREE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemFreeAsync, (devptr_t p, void *stream), (p, stream),
          p)
FREE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemRelease, (devptr_t handle), (handle), handle)
FORWARD_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemMap,
             (devptr_t p, size_t n, size_t offset, devptr_t handle, unsigned long long flags),
             (p, n, offset, handle, flags))
FORWARD_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemUnmap, (devptr_t p, size_t n), (p, n))
GETTER_HOOK(cuGetProcAddress_v2,
            (const char *symbol, void **pfn, int version, unsigned long long flags, void *status),
            (symbol, pfn, version, flags, status), symbol, pfn)
GETTER_HOOK(cuGetProcAddress, (const char *symbol, void **pfn, int version,
                               unsigned long long flags), (symbol, pfn, version, flags), symbol, pfn)

/* Ascend ACL */
ALLOC_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMalloc, (void **p, size_t n, int policy),
           (p, n, policy), p, n, 0)
ALLOC_HOOK(HEAP_ACL_HOST, ACL_NOT_INITIALIZED, aclrtMallocHost, (void **p, size_t n), (p, n), p, n,
           0)
FREE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtFree, (void *p), (p), p)
FREE_HOOK(HEAP_ACL_HOST, ACL_NOT_INITIALIZED, aclrtFreeHost, (void *p), (p), p)

/* Ascend HAL: the flag (device, memory type, module) labels the stack. */
ALLOC_HOOK(HEAP_HAL, HAL_NOT_INITIALIZED, halMemAlloc,
           (void **p, unsigned long long n, unsigned long long flag), (p, n, flag), p, n, flag)
FREE_HOOK(HEAP_HAL, HAL_NOT_INITIALIZED, halMemFree, (void *p), (p), p)

/* ---- handing out our wrappers -------------------------------------------------------
 * For the names the entry-point getters and dlsym on a library's handle are
 * asked for, and the GOT slots an injected sampler redirects (got_hooks.c):
 * every hooked function, and the driver's base names. */
DEVICE_FUNCTIONS(MEMPROF_LOCAL_ALIAS)

static const struct entry_point {
    const char *name;
    struct memprof_real_fn *real;
    void *wrapper;
} entry_points[] = {
#define ENTRY_POINT(name, library, fallback) {#name, &real_##name, (void *)hook_##name},
    DEVICE_FUNCTIONS(ENTRY_POINT)
    {"cuMemAlloc", &real_cuMemAlloc_v2, (void *)hook_cuMemAlloc_v2},
    {"cuMemFree", &real_cuMemFree_v2, (void *)hook_cuMemFree_v2},
};

static const struct entry_point *entry_point_named(const char *name)
{
    if (strncmp(name, "cu", 2) != 0 && strncmp(name, "acl", 3) != 0 &&
        strncmp(name, "hal", 3) != 0)
        return NULL;   /* a quick no for everything that is not ours */
    for (size_t i = 0; i < sizeof entry_points / sizeof entry_points[0]; i++)
        if (strcmp(name, entry_points[i].name) == 0)
            return &entry_points[i];
    return NULL;
}

void *memprof_device_entry_point(const char *name, void *found)
{
    const struct entry_point *e = entry_point_named(name);
    if (e == NULL || found == e->wrapper)
        return found;
    void *expected = NULL;
    /* Another variant under the same name (a per-thread-stream one, say)
     * keeps its own function: ours would call the wrong one. */
    if (!atomic_compare_exchange_strong(&e->real->fn, &expected, found) && expected != found)
        return found;
    return e->wrapper;
}

void *memprof_device_hook_for(const char *name)
{
    const struct entry_point *e = entry_point_named(name);
    return e ? e->wrapper : NULL;
}
