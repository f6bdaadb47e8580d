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

/* ---- CUDA runtime --------------------------------------------------------------- */

EXPORT int cudaMalloc(void **ptr, size_t size)
{
    REAL(cudaMalloc);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cudaMallocAsync(void **ptr, size_t size, void *stream)
{
    REAL(cudaMallocAsync);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size, stream);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cudaMallocManaged(void **ptr, size_t size, unsigned flags)
{
    REAL(cudaMallocManaged);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size, flags);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cudaMallocPitch(void **ptr, size_t *pitch, size_t width, size_t height)
{
    REAL(cudaMallocPitch);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, pitch, width, height);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0,
              rc == 0 ? (uint64_t)*pitch * height : (uint64_t)width * height, 0);
    return rc;
}

EXPORT int cudaMallocHost(void **ptr, size_t size)
{
    REAL(cudaMallocHost);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA_HOST);
    int rc = fn(ptr, size);
    leave_api();
    allocated(outer, HEAP_CUDA_HOST, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cudaHostAlloc(void **ptr, size_t size, unsigned flags)
{
    REAL(cudaHostAlloc);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA_HOST);
    int rc = fn(ptr, size, flags);
    leave_api();
    allocated(outer, HEAP_CUDA_HOST, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cudaFree(void *ptr)
{
    REAL(cudaFree);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

EXPORT int cudaFreeAsync(void *ptr, void *stream)
{
    REAL(cudaFreeAsync);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA, (uintptr_t)ptr);
    int rc = fn(ptr, stream);
    leave_api();
    return rc;
}

EXPORT int cudaFreeHost(void *ptr)
{
    REAL(cudaFreeHost);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA_HOST, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

/* ---- CUDA driver ------------------------------------------------------------------
 * Each wrapper is both exported (for programs linked against libcuda) and handed
 * out by the entry-point getters; its real function comes from whichever of the
 * two paths saw it first. */

EXPORT int cuMemAlloc_v2(devptr_t *ptr, size_t size)
{
    REAL(cuMemAlloc_v2);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cuMemAllocAsync(devptr_t *ptr, size_t size, void *stream)
{
    REAL(cuMemAllocAsync);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size, stream);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cuMemAllocManaged(devptr_t *ptr, size_t size, unsigned flags)
{
    REAL(cuMemAllocManaged);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(ptr, size, flags);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int cuMemCreate(devptr_t *handle, size_t size, const void *prop, unsigned long long flags)
{
    REAL(cuMemCreate);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_CUDA);
    int rc = fn(handle, size, prop, flags);
    leave_api();
    allocated(outer, HEAP_CUDA, rc, rc == 0 ? (uintptr_t)*handle : 0, size, 0);
    return rc;
}

EXPORT int cuMemFree_v2(devptr_t ptr)
{
    REAL(cuMemFree_v2);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

EXPORT int cuMemFreeAsync(devptr_t ptr, void *stream)
{
    REAL(cuMemFreeAsync);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA, (uintptr_t)ptr);
    int rc = fn(ptr, stream);
    leave_api();
    return rc;
}

EXPORT int cuMemRelease(devptr_t handle)
{
    REAL(cuMemRelease);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    freeing(HEAP_CUDA, (uintptr_t)handle);
    int rc = fn(handle);
    leave_api();
    return rc;
}

EXPORT int cuMemMap(devptr_t ptr, size_t size, size_t offset, devptr_t handle,
                    unsigned long long flags)
{
    REAL(cuMemMap);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    enter_api(HEAP_CUDA);
    int rc = fn(ptr, size, offset, handle, flags);
    leave_api();
    return rc;
}

EXPORT int cuMemUnmap(devptr_t ptr, size_t size)
{
    REAL(cuMemUnmap);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    enter_api(HEAP_CUDA);
    int rc = fn(ptr, size);
    leave_api();
    return rc;
}

static void *wrapper_for(const char *name, void *found);

void *memprof_device_entry_point(const char *name, void *found)
{
    if (strncmp(name, "cu", 2) != 0 && strncmp(name, "acl", 3) != 0 &&
        strncmp(name, "hal", 3) != 0)
        return found;   /* a quick no for everything that is not ours */
    return wrapper_for(name, found);
}

EXPORT int cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                               unsigned long long flags, void *status)
{
    REAL(cuGetProcAddress_v2);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    int rc = fn(symbol, pfn, version, flags, status);
    if (rc == 0 && pfn != NULL && *pfn != NULL && symbol != NULL)
        *pfn = memprof_device_entry_point(symbol, *pfn);
    return rc;
}

EXPORT int cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags)
{
    REAL(cuGetProcAddress);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    int rc = fn(symbol, pfn, version, flags);
    if (rc == 0 && pfn != NULL && *pfn != NULL && symbol != NULL)
        *pfn = memprof_device_entry_point(symbol, *pfn);
    return rc;
}

/* The runtime's way for frameworks to reach the driver (PyTorch's expandable
 * segments): the same substitution. */
EXPORT int cudaGetDriverEntryPoint(const char *symbol, void **pfn, unsigned long long flags,
                                   void *status)
{
    REAL(cudaGetDriverEntryPoint);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    int rc = fn(symbol, pfn, flags, status);
    if (rc == 0 && pfn != NULL && *pfn != NULL && symbol != NULL)
        *pfn = memprof_device_entry_point(symbol, *pfn);
    return rc;
}

EXPORT int cudaGetDriverEntryPointByVersion(const char *symbol, void **pfn, unsigned version,
                                            unsigned long long flags, void *status)
{
    REAL(cudaGetDriverEntryPointByVersion);
    if (fn == NULL)
        return CUDA_NOT_INITIALIZED;
    int rc = fn(symbol, pfn, version, flags, status);
    if (rc == 0 && pfn != NULL && *pfn != NULL && symbol != NULL)
        *pfn = memprof_device_entry_point(symbol, *pfn);
    return rc;
}

/* ---- Ascend ACL ---------------------------------------------------------------------- */
EXPORT int aclrtMalloc(void **ptr, size_t size, int policy)
{
    REAL(aclrtMalloc);
    if (fn == NULL)
        return ACL_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_ACL);
    int rc = fn(ptr, size, policy);
    leave_api();
    allocated(outer, HEAP_ACL, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int aclrtMallocHost(void **ptr, size_t size)
{
    REAL(aclrtMallocHost);
    if (fn == NULL)
        return ACL_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_ACL_HOST);
    int rc = fn(ptr, size);
    leave_api();
    allocated(outer, HEAP_ACL_HOST, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, 0);
    return rc;
}

EXPORT int aclrtFree(void *ptr)
{
    REAL(aclrtFree);
    if (fn == NULL)
        return ACL_NOT_INITIALIZED;
    freeing(HEAP_ACL, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

EXPORT int aclrtFreeHost(void *ptr)
{
    REAL(aclrtFreeHost);
    if (fn == NULL)
        return ACL_NOT_INITIALIZED;
    freeing(HEAP_ACL_HOST, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

/* ---- Ascend HAL ---------------------------------------------------------------------- */
EXPORT int halMemAlloc(void **ptr, unsigned long long size, unsigned long long flag)
{
    REAL(halMemAlloc);
    if (fn == NULL)
        return HAL_NOT_INITIALIZED;
    bool outer = enter_api(HEAP_HAL);
    int rc = fn(ptr, size, flag);
    leave_api();
    allocated(outer, HEAP_HAL, rc, rc == 0 ? (uintptr_t)*ptr : 0, size, flag);
    return rc;
}

EXPORT int halMemFree(void *ptr)
{
    REAL(halMemFree);
    if (fn == NULL)
        return HAL_NOT_INITIALIZED;
    freeing(HEAP_HAL, (uintptr_t)ptr);
    int rc = fn(ptr);
    leave_api();
    return rc;
}

/* ---- handing out our wrappers -------------------------------------------------------
 * For the names the entry-point getters and dlsym on a library's handle are
 * asked for: every hooked function, and the driver's base names. */
static const struct entry_point {
    const char *name;
    struct memprof_real_fn *real;
    void *wrapper;
} entry_points[] = {
#define ENTRY_POINT(name, library, fallback) {#name, &real_##name, (void *)name},
    DEVICE_FUNCTIONS(ENTRY_POINT)
    {"cuMemAlloc", &real_cuMemAlloc_v2, (void *)cuMemAlloc_v2},
    {"cuMemFree", &real_cuMemFree_v2, (void *)cuMemFree_v2},
};

static void *wrapper_for(const char *name, void *found)
{
    for (size_t i = 0; i < sizeof entry_points / sizeof entry_points[0]; i++) {
        const struct entry_point *e = &entry_points[i];
        if (strcmp(name, e->name) != 0)
            continue;
        if (found == e->wrapper)
            return found;
        void *expected = NULL;
        /* Another variant under the same name (a per-thread-stream one, say)
         * keeps its own function: ours would call the wrong one. */
        if (!atomic_compare_exchange_strong(&e->real->fn, &expected, found) && expected != found)
            return found;
        return e->wrapper;
    }
    return found;
}
