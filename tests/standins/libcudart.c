/* libcudart.so.12 stand-in: the CUDA runtime API subset of ARCHITECTURE.md
 * ("Device and HAL allocators").
 *
 * Loaded the way the real runtime loads the driver: nothing from libcuda at
 * link time; on first use dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL), one
 * dlsym for "cuGetProcAddress_v2", through it "cuGetProcAddress" at version
 * 12000, and every other driver function through what that gave, by base name
 * at the version NVIDIA's runtime asks for (init_driver).  So cudaMalloc
 * reaches the driver's cuMemAlloc_v2 through a pointer: a preloaded
 * cuMemAlloc_v2 is never called from here.
 *
 * - cudaMalloc / cudaMallocPitch -> cuMemAlloc_v2, cudaFree -> cuMemFree_v2,
 *   cudaMallocAsync / cudaFreeAsync -> cuMemAllocAsync / cuMemFreeAsync,
 *   cudaMallocManaged -> cuMemAllocManaged.  cudaMalloc(0) gives NULL and
 *   success without calling the driver; cudaFree(NULL) is a no-op (as the real
 *   runtime).
 * - cudaMallocPitch: pitch = width rounded up to 512, bytes = pitch * height.
 * - cudaMallocHost / cudaHostAlloc / cudaFreeHost: pinned host memory is an
 *   anonymous mmap made here (not through the driver, not the host heap).
 * - cudaHostRegister / cudaHostUnregister -> cuMemHostRegister_v2 /
 *   cuMemHostUnregister, cudaIpcOpenMemHandle / cudaIpcCloseMemHandle ->
 *   cuIpcOpenMemHandle_v2 / cuIpcCloseMemHandle.
 * - cudaGetDriverEntryPoint[ByVersion][_ptsz]: forward to the driver's
 *   cuGetProcAddress_v2 (the former with this runtime's version), flags and all.
 * - STANDIN_TRACE=<file>: "cudart ..." lines (the dlopen, the dlsym, each call). */
#define _GNU_SOURCE
#include "standin_util.h"

#include <dlfcn.h>

#include "standin_cuda.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static cudaError_t init_error = cudaErrorInitializationError;
static __thread cudaError_t last_error;
static struct standin_table pinned = STANDIN_TABLE_INIT;   /* ptr -> size */

static PFN_cuGetProcAddress_v2 p_getproc;
static PFN_cuDriverGetVersion p_version;
static PFN_cuInit p_cuInit;
static PFN_cuMemAlloc_v2 p_alloc;
static PFN_cuMemFree_v2 p_free;
static PFN_cuMemAllocAsync p_alloc_async;
static PFN_cuMemFreeAsync p_free_async;
static PFN_cuMemAllocManaged p_alloc_managed;
static PFN_cuMemHostRegister p_host_register;
static PFN_cuMemHostUnregister p_host_unregister;
static PFN_cuIpcOpenMemHandle p_ipc_open;
static PFN_cuIpcCloseMemHandle p_ipc_close;

static int fetch_with(PFN_cuGetProcAddress_v2 getproc, const char *name, int version,
                      cuuint64_t flags, void **slot)
{
    int status = -1;
    CUresult rc = getproc(name, slot, version, flags, &status);
    return rc == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SUCCESS && *slot != NULL;
}

/* The driver functions this runtime uses, asked for as NVIDIA's runtime asks
 * (12.4 to 13.0, seen through the stand-in driver's trace): each by its base
 * name at the version of the variant it was built for, in this order. */
static const struct {
    const char *name;
    int version;
    void **slot;
} driver_fns[] = {
    {"cuDriverGetVersion", 2020, (void **)&p_version},
    {"cuMemAllocManaged", 6000, (void **)&p_alloc_managed},
    {"cuMemAlloc", 3020, (void **)&p_alloc},
    {"cuMemFree", 3020, (void **)&p_free},
    {"cuMemHostRegister", 6050, (void **)&p_host_register},
    {"cuMemHostUnregister", 4000, (void **)&p_host_unregister},
    {"cuMemAllocAsync", 11020, (void **)&p_alloc_async},
    {"cuMemFreeAsync", 11020, (void **)&p_free_async},
    {"cuIpcOpenMemHandle", 11000, (void **)&p_ipc_open},
    {"cuIpcCloseMemHandle", 4010, (void **)&p_ipc_close},
};

/* As NVIDIA's runtime: dlsym finds cuGetProcAddress_v2 alone; through it a
 * probe with an empty name, cuInit, and "cuGetProcAddress" at 11030 and at
 * 12000; every other function through what the latter gave (the _v2). */
static void init_driver(void)
{
    void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    standin_trace("cudart dlopen libcuda.so.1 %s", driver ? "ok" : "failed");
    if (!driver) {
        init_error = cudaErrorInsufficientDriver;
        return;
    }
    PFN_cuGetProcAddress_v2 first = (PFN_cuGetProcAddress_v2)dlsym(driver, "cuGetProcAddress_v2");
    standin_trace("cudart dlsym cuGetProcAddress_v2 %s", first ? "ok" : "missing");
    void *v1 = NULL, *probe = NULL;
    init_error = cudaErrorInsufficientDriver;
    if (!first)
        return;
    fetch_with(first, "", 0, CU_GET_PROC_ADDRESS_DEFAULT, &probe);
    if (!fetch_with(first, "cuInit", 2000, CU_GET_PROC_ADDRESS_DEFAULT, (void **)&p_cuInit)
        || !fetch_with(first, "cuGetProcAddress", 11030, CU_GET_PROC_ADDRESS_DEFAULT, &v1)
        || !fetch_with(first, "cuGetProcAddress", 12000, CU_GET_PROC_ADDRESS_DEFAULT,
                       (void **)&p_getproc))
        return;
    for (size_t i = 0; i < sizeof driver_fns / sizeof driver_fns[0]; i++)
        if (!fetch_with(p_getproc, driver_fns[i].name, driver_fns[i].version,
                        CU_GET_PROC_ADDRESS_DEFAULT, driver_fns[i].slot))
            return;
    int version = 0;
    if (p_version(&version) != CUDA_SUCCESS || version < STANDIN_CUDART_VERSION)
        return;
    init_error = p_cuInit(0) == CUDA_SUCCESS ? cudaSuccess : cudaErrorInitializationError;
}

static cudaError_t ready(void)
{
    pthread_once(&once, init_driver);
    return init_error;
}

/* Driver results to runtime errors (the numbers agree for the ones used). */
static cudaError_t to_runtime(CUresult rc)
{
    switch (rc) {
    case CUDA_SUCCESS: return cudaSuccess;
    case CUDA_ERROR_INVALID_VALUE: return cudaErrorInvalidValue;
    case CUDA_ERROR_OUT_OF_MEMORY: return cudaErrorMemoryAllocation;
    case CUDA_ERROR_MAP_FAILED: return cudaErrorMapBufferObjectFailed;
    case CUDA_ERROR_INVALID_HANDLE: return cudaErrorInvalidResourceHandle;
    case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: return cudaErrorHostMemoryAlreadyRegistered;
    case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED: return cudaErrorHostMemoryNotRegistered;
    default: return cudaErrorInitializationError;
    }
}

static cudaError_t result(cudaError_t err)
{
    if (err != cudaSuccess)
        last_error = err;
    return err;
}

EXPORT cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    cudaError_t err = ready();
    CUdeviceptr d = 0;
    if (err == cudaSuccess && !devPtr)
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess && size > 0)
        err = to_runtime(p_alloc(&d, size));
    if (devPtr)
        *devPtr = (void *)(uintptr_t)d;
    standin_trace("cudart cudaMalloc %zu %d", size, err);
    return result(err);
}

EXPORT cudaError_t cudaFree(void *devPtr)
{
    cudaError_t err = ready();
    if (err == cudaSuccess && devPtr)
        err = to_runtime(p_free((CUdeviceptr)(uintptr_t)devPtr));
    standin_trace("cudart cudaFree %d", err);
    return result(err);
}

EXPORT cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t stream)
{
    cudaError_t err = ready();
    CUdeviceptr d = 0;
    if (err == cudaSuccess && (!devPtr || size == 0))
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess)
        err = to_runtime(p_alloc_async(&d, size, stream));
    if (devPtr)
        *devPtr = (void *)(uintptr_t)d;
    standin_trace("cudart cudaMallocAsync %zu %d", size, err);
    return result(err);
}

EXPORT cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t stream)
{
    cudaError_t err = ready();
    if (err == cudaSuccess)
        err = to_runtime(p_free_async((CUdeviceptr)(uintptr_t)devPtr, stream));
    standin_trace("cudart cudaFreeAsync %d", err);
    return result(err);
}

EXPORT cudaError_t cudaMallocManaged(void **devPtr, size_t size, unsigned int flags)
{
    cudaError_t err = ready();
    CUdeviceptr d = 0;
    if (err == cudaSuccess && (!devPtr || size == 0))
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess)
        err = to_runtime(p_alloc_managed(&d, size, flags));
    if (devPtr)
        *devPtr = (void *)(uintptr_t)d;
    standin_trace("cudart cudaMallocManaged %zu %d", size, err);
    return result(err);
}

EXPORT cudaError_t cudaMallocPitch(void **devPtr, size_t *pitch, size_t width, size_t height)
{
    cudaError_t err = ready();
    CUdeviceptr d = 0;
    size_t p = (width + 511) & ~(size_t)511;
    if (err == cudaSuccess && (!devPtr || !pitch || width == 0 || height == 0))
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess)
        err = to_runtime(p_alloc(&d, p * height));
    if (devPtr)
        *devPtr = (void *)(uintptr_t)d;
    if (pitch)
        *pitch = err == cudaSuccess ? p : 0;
    standin_trace("cudart cudaMallocPitch %zu %d", p * height, err);
    return result(err);
}

static cudaError_t host_alloc(const char *name, void **ptr, size_t size)
{
    cudaError_t err = ready();
    void *p = NULL;
    standin_latency();
    if (err == cudaSuccess && !ptr)
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess && size > 0) {
        p = standin_map(size);
        if (!p || !standin_put(&pinned, (uintptr_t)p, size, 0)) {
            if (p)
                munmap(p, size);
            p = NULL;
            err = cudaErrorMemoryAllocation;
        }
    }
    if (ptr)
        *ptr = p;
    standin_trace("cudart %s %zu %d", name, size, err);
    return result(err);
}

EXPORT cudaError_t cudaMallocHost(void **ptr, size_t size)
{
    return host_alloc("cudaMallocHost", ptr, size);
}

EXPORT cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    if (flags > 0xf)
        return result(cudaErrorInvalidValue);
    return host_alloc("cudaHostAlloc", pHost, size);
}

EXPORT cudaError_t cudaFreeHost(void *ptr)
{
    struct standin_block b;
    cudaError_t err = ready();
    standin_latency();
    if (err == cudaSuccess && ptr) {
        if (standin_find(&pinned, (uintptr_t)ptr, 1, &b))
            munmap(ptr, b.size);
        else
            err = cudaErrorInvalidValue;
    }
    standin_trace("cudart cudaFreeHost %d", err);
    return result(err);
}

/* ---- memory of others: registered host memory, IPC ---------------------------------- */
EXPORT cudaError_t cudaHostRegister(void *ptr, size_t size, unsigned int flags)
{
    cudaError_t err = ready();
    if (err == cudaSuccess)
        err = to_runtime(p_host_register(ptr, size, flags));
    standin_trace("cudart cudaHostRegister %zu %d", size, err);
    return result(err);
}

EXPORT cudaError_t cudaHostUnregister(void *ptr)
{
    cudaError_t err = ready();
    if (err == cudaSuccess)
        err = to_runtime(p_host_unregister(ptr));
    standin_trace("cudart cudaHostUnregister %d", err);
    return result(err);
}

EXPORT cudaError_t cudaIpcOpenMemHandle(void **devPtr, cudaIpcMemHandle_t handle,
                                        unsigned int flags)
{
    cudaError_t err = ready();
    CUdeviceptr d = 0;
    CUipcMemHandle h;
    memcpy(h.reserved, handle.reserved, sizeof h.reserved);
    if (err == cudaSuccess && !devPtr)
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess)
        err = to_runtime(p_ipc_open(&d, h, flags));
    if (devPtr)
        *devPtr = (void *)(uintptr_t)d;
    standin_trace("cudart cudaIpcOpenMemHandle %d", err);
    return result(err);
}

EXPORT cudaError_t cudaIpcCloseMemHandle(void *devPtr)
{
    cudaError_t err = ready();
    if (err == cudaSuccess)
        err = to_runtime(p_ipc_close((CUdeviceptr)(uintptr_t)devPtr));
    standin_trace("cudart cudaIpcCloseMemHandle %d", err);
    return result(err);
}

static cudaError_t entry_point(const char *via, const char *symbol, void **funcPtr,
                               unsigned int cudaVersion, unsigned long long flags,
                               int *driverStatus)
{
    cudaError_t err = ready();
    int status = cudaDriverEntryPointSymbolNotFound;
    if (err == cudaSuccess && (!symbol || !funcPtr))
        err = cudaErrorInvalidValue;
    else if (err == cudaSuccess)
        p_getproc(symbol, funcPtr, (int)cudaVersion, flags, &status);   /* the 12000 one */
    if (driverStatus)
        *driverStatus = status;
    standin_trace("cudart %s %s %u %d", via, symbol ? symbol : "(null)", cudaVersion, status);
    return result(err);
}

/* The getters, and their twins (_ptsz) for programs built for the per-thread
 * default stream: the same here. */
#define ENTRY_POINT_GETTERS(name, by_version)                                             \
    EXPORT cudaError_t name(const char *symbol, void **funcPtr, unsigned long long flags,  \
                            int *driverStatus)                                            \
    {                                                                                     \
        return entry_point(#name, symbol, funcPtr, STANDIN_CUDART_VERSION, flags,         \
                           driverStatus);                                                 \
    }                                                                                     \
    EXPORT cudaError_t by_version(const char *symbol, void **funcPtr,                     \
                                  unsigned int cudaVersion, unsigned long long flags,     \
                                  int *driverStatus)                                      \
    {                                                                                     \
        return entry_point(#by_version, symbol, funcPtr, cudaVersion, flags, driverStatus); \
    }
ENTRY_POINT_GETTERS(cudaGetDriverEntryPoint, cudaGetDriverEntryPointByVersion)
ENTRY_POINT_GETTERS(cudaGetDriverEntryPoint_ptsz, cudaGetDriverEntryPointByVersion_ptsz)

EXPORT cudaError_t cudaGetLastError(void)
{
    cudaError_t err = last_error;
    last_error = cudaSuccess;
    return err;
}

EXPORT cudaError_t cudaDeviceSynchronize(void)
{
    return result(ready());
}
