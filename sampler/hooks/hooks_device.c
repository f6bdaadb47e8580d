/* Interposition of the device and HAL allocators: the CUDA runtime and driver,
 * Ascend ACL and HAL.  Each family is a heap of its own (enum memprof_heap).
 *
 * - A hook never calls through NULL (real_function.c finds the real one, also
 *   in a library loaded RTLD_LOCAL; the HAL's exported functions may fall back
 *   to their *Inner twins).  With nothing found the hook fails the call.
 * - The runtime reaches the driver only through cuGetProcAddress (11.x) or
 *   cuGetProcAddress_v2 (12 and 13: it asks the first for "cuGetProcAddress"
 *   at version 12000 and makes its other requests through what it got), and
 *   frameworks through cudaGetDriverEntryPoint[ByVersion][_ptsz].  Those hand
 *   back our wrapper of a driver function only when the driver's answer is the
 *   very function the wrapper forwards to, the driver's export of that name:
 *   which variant a request gets (cuMemAlloc -> cuMemAlloc_v2, the
 *   per-thread-stream cuMemAllocAsync_ptsz, cuGetProcAddress at 11030 or 12000)
 *   is the driver's choice, and a wrapper never calls a function of another
 *   signature.  So does dlsym on a library's handle (hooks_dlsym.c).
 * - Only the outermost device call is recorded: cudaMalloc reaching
 *   cuMemAlloc, or aclrtMalloc reaching halMemAlloc, is one allocation.
 * - Memory goes to the heap of where it lives: pinned host memory, host-located
 *   pools (CUDA 12.6) and physical memory created on the host to cuda_host,
 *   the rest (device, managed) to cuda.  A CUDA free looks in both heaps.
 * - Physical memory of the virtual memory API is counted at cuMemCreate (by
 *   handle) and released at cuMemRelease; cuMemMap/cuMemUnmap map memory
 *   already counted and are forwarded only.  Arrays are counted by handle at
 *   their requested size; a graph's memory node when it is added, until a free
 *   node (or a free) for its address.
 * - In log mode, kernel launches, copies and sets are recorded with the values
 *   they were passed that can point into a block (device_uses.c): when each
 *   block was used.  In table mode these hooks only forward.
 * - Memory the process did not allocate, host memory registered with CUDA
 *   (cuda_host) and device memory opened through IPC (cuda), is never counted:
 *   each range is noted with its stack while registered or open (notes.c). */
#include <string.h>

#include "base/real_function.h"
#include "base/thread_state.h"
#include "control/window.h"
#include "hooks/device_uses.h"
#include "hooks/framework_oom.h"
#include "hooks/framework_pools.h"
#include "hooks/got_hooks.h"
#include "hooks/hooks_device.h"
#include "sample/sample.h"
#include "tables/notes.h"
#include "writers/event_log.h"

#define CUDA_NOT_INITIALIZED 3    /* cudaErrorInitializationError, CUDA_ERROR_NOT_INITIALIZED */
#define ACL_NOT_INITIALIZED 100001
#define HAL_NOT_INITIALIZED 3
/* Each family's word for out of memory. */
#define CUDA_OUT_OF_MEMORY 2            /* cudaErrorMemoryAllocation, CUDA_ERROR_OUT_OF_MEMORY */
#define ACL_OUT_OF_MEMORY 207001        /* ACL_ERROR_RT_MEMORY_ALLOCATION */
#define ACL_BAD_ALLOC 200000            /* ACL_ERROR_BAD_ALLOC */
#define HAL_OUT_OF_MEMORY 6             /* DRV_ERROR_OUT_OF_MEMORY */

typedef unsigned long long devptr_t;   /* CUdeviceptr, CUmemGenericAllocationHandle */
typedef void *handle_t;                /* CUarray, CUmipmappedArray, CUmemoryPool, CUgraph... */
struct ipc_handle { char reserved[64]; };   /* cudaIpcMemHandle_t, CUipcMemHandle: by value */

/* The parts of NVIDIA's structures the hooks read (cuda.h, driver_types.h). */
struct cuda_extent { size_t width, height, depth; };
struct cuda_pitched_ptr { void *ptr; size_t pitch, xsize, ysize; };
struct cuda_channel_desc { int x, y, z, w, kind; };   /* bits per channel */
struct dim3 { unsigned x, y, z; };
struct cu_array_desc { size_t width, height; int format; unsigned channels; };
struct cu_array3d_desc { size_t width, height, depth; int format; unsigned channels, flags; };
/* CUmemAllocationProp and CUmemPoolProps (and cudaMemPoolProps) begin alike. */
struct cu_mem_props_head { int alloc_type, handle_types, location_type, location_id; };
struct cu_mem_alloc_node_params {   /* CUDA_MEM_ALLOC_NODE_PARAMS, v1 and v2 */
    struct cu_mem_props_head pool_props;
    unsigned char pool_props_rest[88 - sizeof(struct cu_mem_props_head)];
    const void *access_descs;
    size_t access_desc_count, bytesize;
    devptr_t dptr;
};
_Static_assert(sizeof(struct cu_mem_alloc_node_params) == 120, "CUDA_MEM_ALLOC_NODE_PARAMS");

static _Atomic uint32_t heaps_used;

uint32_t memprof_device_heaps_used(void)
{
    return atomic_load_explicit(&heaps_used, memory_order_relaxed);
}

void memprof_device_use_heap(enum memprof_heap heap)
{
    if (!(atomic_load_explicit(&heaps_used, memory_order_relaxed) & (1u << heap)))
        atomic_fetch_or(&heaps_used, 1u << heap);
}

/* ---- recording -------------------------------------------------------------- */
/* True for the outermost device call of this thread; pair with leave_api. */
static inline bool enter_api(enum memprof_heap heap)
{
    memprof_device_use_heap(heap);
    return memprof_thread.device_depth++ == 0;
}

static inline void leave_api(void) { memprof_thread.device_depth--; }

/* A failure that says the device is out of memory.  Others (no driver or device, a bad
 * argument) are noted all the same, but what was live then answers nothing. */
static bool out_of_memory(enum memprof_heap heap, int rc)
{
    switch (heap) {
    case HEAP_ACL:
    case HEAP_ACL_HOST:
        return rc == ACL_OUT_OF_MEMORY || rc == ACL_BAD_ALLOC;
    case HEAP_HAL:
        return rc == HAL_OUT_OF_MEMORY;
    default:
        return rc == CUDA_OUT_OF_MEMORY;
    }
}

/* caller: the code that called the hook, whose library may report a failure itself. */
static void allocated(bool outer, enum memprof_heap heap, int rc, uintptr_t key, uint64_t size,
                      uint64_t label, uintptr_t caller)
{
    if (!outer)
        return;
    heap = memprof_pools_heap_of(heap);
    memprof_device_use_heap(heap);
    if (rc == 0) {
        memprof_device_alloc(heap, key, size, label);
        memprof_framework_retried();
    } else {
        memprof_device_note(NOTES_FAILED, heap, (struct memprof_note){.size = size, .error = rc});
        if (out_of_memory(heap, rc) && !memprof_framework_defers(caller, heap, size, rc))
            memprof_capture_at_failure(heap, size, rc, NULL);   /* what was live then */
    }
}

/* Recorded before the real free: the address may be handed out again at once. */
static void freed(enum memprof_heap heap, uintptr_t key)
{
    if (key == 0)
        return;
    /* A pool's segment, else a block allocated before the pool was tracked. */
    if (heap == HEAP_CUDA && memprof_device_free(HEAP_CUDA_SEGMENTS, key))
        return;
    memprof_device_free(heap, key);
    if (heap == HEAP_CUDA)   /* a host pool's block, or host physical memory */
        memprof_device_free(HEAP_CUDA_HOST, key);
}

/* ---- where memory lives ------------------------------------------------------ */
#define CU_MEM_LOCATION_TYPE_HOST 2   /* HOST_NUMA 3, HOST_NUMA_CURRENT 4 */
#define CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT 4

static enum memprof_heap location_heap(const struct cu_mem_props_head *props)
{
    bool host = props != NULL && props->location_type >= CU_MEM_LOCATION_TYPE_HOST &&
                props->location_type <= CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT;
    return host ? HEAP_CUDA_HOST : HEAP_CUDA;
}

/* The host-located pools alive now (any other pool is a device's or managed);
 * few, so a small array of handles claimed and released by compare-and-swap. */
#define HOST_POOLS 64
static _Atomic uintptr_t host_pools[HOST_POOLS];

static void pool_created(int rc, handle_t *pool, const struct cu_mem_props_head *props)
{
    if (rc != 0 || pool == NULL || location_heap(props) != HEAP_CUDA_HOST)
        return;
    for (int i = 0; i < HOST_POOLS; i++) {
        uintptr_t empty = 0;
        if (atomic_compare_exchange_strong(&host_pools[i], &empty, (uintptr_t)*pool))
            return;
    }
}

/* Forgotten before the real destroy, whose handle may be reused at once. */
static handle_t pool_destroyed(handle_t pool)
{
    for (int i = 0; i < HOST_POOLS; i++) {
        uintptr_t p = (uintptr_t)pool;
        if (p != 0 && atomic_compare_exchange_strong(&host_pools[i], &p, 0))
            break;
    }
    return pool;
}

static enum memprof_heap pool_heap(handle_t pool)
{
    for (int i = 0; pool != NULL && i < HOST_POOLS; i++)
        if (atomic_load_explicit(&host_pools[i], memory_order_relaxed) == (uintptr_t)pool)
            return HEAP_CUDA_HOST;
    return HEAP_CUDA;
}

/* ---- the requested size of arrays ------------------------------------------------
 * An array's layout is the driver's; its size is counted as requested: elements
 * (a zero height or depth is one) times bytes per element, summed over the
 * mipmap levels, each half the one before (at least 1). */
static uint64_t array_bytes(uint64_t element, size_t width, size_t height, size_t depth,
                            unsigned levels)
{
    uint64_t sum = 0;
    for (unsigned l = 0; l < levels && l < 64; l++) {
        uint64_t w = width >> l, h = height >> l, d = depth >> l;
        sum += (w ? w : 1) * (h ? h : 1) * (d ? d : 1);
    }
    return sum * element;
}

/* Bytes per channel of a CUarray_format: the 8-, 16- and 32-bit kinds and the
 * normalized ones; planar video and block-compressed formats count 1. */
static uint64_t format_bytes(int format, unsigned channels)
{
    switch (format) {
    case 0x02: case 0x09: case 0x10:                        /* 16-bit, half */
    case 0xc3: case 0xc4: case 0xc5: case 0xc9: case 0xca: case 0xcb:
        return 2ull * channels;
    case 0x03: case 0x0a: case 0x20:                        /* 32-bit, float */
        return 4ull * channels;
    default:
        return channels;
    }
}

/* The descriptors may be NULL: the driver refuses them, the hook must not crash. */
static uint64_t cu_array_bytes(const struct cu_array_desc *d)
{
    return d ? array_bytes(format_bytes(d->format, d->channels), d->width, d->height, 1, 1) : 0;
}

static uint64_t cu_array3d_bytes(const struct cu_array3d_desc *d, unsigned levels)
{
    return d ? array_bytes(format_bytes(d->format, d->channels), d->width, d->height, d->depth,
                           levels)
             : 0;
}

static uint64_t runtime_array_bytes(const struct cuda_channel_desc *d, struct cuda_extent e,
                                    unsigned levels)
{
    uint64_t bits = d ? (uint64_t)d->x + (uint64_t)d->y + (uint64_t)d->z + (uint64_t)d->w : 0;
    return array_bytes((bits + 7) / 8, e.width, e.height, e.depth, levels);
}

static enum memprof_heap node_heap(const struct cu_mem_alloc_node_params *params)
{
    return params ? location_heap(&params->pool_props) : HEAP_CUDA;
}

#define CUDART "libcudart.so"
#define LIBCUDA "libcuda.so"
#define LIBACL "libascendcl.so"
#define LIBHAL "libascend_hal.so"
/* Every hooked function: its name, the library defining it, a fallback twin. */
#define DEVICE_FUNCTIONS(X)                                                       \
    X(cudaMalloc, CUDART, NULL)                                                   \
    X(cudaMallocPitch, CUDART, NULL)                                              \
    X(cudaMalloc3D, CUDART, NULL)                                                 \
    X(cudaMallocArray, CUDART, NULL)                                              \
    X(cudaMalloc3DArray, CUDART, NULL)                                            \
    X(cudaMallocMipmappedArray, CUDART, NULL)                                     \
    X(cudaMallocManaged, CUDART, NULL)                                            \
    X(cudaMallocAsync, CUDART, NULL)                                              \
    X(cudaMallocAsync_ptsz, CUDART, NULL)                                         \
    X(cudaMallocFromPoolAsync, CUDART, NULL)                                      \
    X(cudaMallocFromPoolAsync_ptsz, CUDART, NULL)                                 \
    X(cudaMallocHost, CUDART, NULL)                                               \
    X(cudaHostAlloc, CUDART, NULL)                                                \
    X(cudaFree, CUDART, NULL)                                                     \
    X(cudaFreeAsync, CUDART, NULL)                                                \
    X(cudaFreeAsync_ptsz, CUDART, NULL)                                           \
    X(cudaFreeArray, CUDART, NULL)                                                \
    X(cudaFreeMipmappedArray, CUDART, NULL)                                       \
    X(cudaFreeHost, CUDART, NULL)                                                 \
    X(cudaMemPoolCreate, CUDART, NULL)                                            \
    X(cudaMemPoolDestroy, CUDART, NULL)                                           \
    X(cudaHostRegister, CUDART, NULL)                                             \
    X(cudaHostUnregister, CUDART, NULL)                                           \
    X(cudaIpcOpenMemHandle, CUDART, NULL)                                         \
    X(cudaIpcCloseMemHandle, CUDART, NULL)                                        \
    X(cudaGetDriverEntryPoint, CUDART, NULL)                                      \
    X(cudaGetDriverEntryPoint_ptsz, CUDART, NULL)                                 \
    X(cudaGetDriverEntryPointByVersion, CUDART, NULL)                             \
    X(cudaGetDriverEntryPointByVersion_ptsz, CUDART, NULL)                        \
    X(cuMemAlloc_v2, LIBCUDA, NULL)                                               \
    X(cuMemAllocPitch_v2, LIBCUDA, NULL)                                          \
    X(cuMemAllocManaged, LIBCUDA, NULL)                                           \
    X(cuMemAllocAsync, LIBCUDA, NULL)                                             \
    X(cuMemAllocAsync_ptsz, LIBCUDA, NULL)                                        \
    X(cuMemAllocFromPoolAsync, LIBCUDA, NULL)                                     \
    X(cuMemAllocFromPoolAsync_ptsz, LIBCUDA, NULL)                                \
    X(cuMemAllocHost_v2, LIBCUDA, NULL)                                           \
    X(cuMemHostAlloc, LIBCUDA, NULL)                                              \
    X(cuArrayCreate_v2, LIBCUDA, NULL)                                            \
    X(cuArray3DCreate_v2, LIBCUDA, NULL)                                          \
    X(cuMipmappedArrayCreate, LIBCUDA, NULL)                                      \
    X(cuMemCreate, LIBCUDA, NULL)                                                 \
    X(cuGraphAddMemAllocNode, LIBCUDA, NULL)                                      \
    X(cuMemFree_v2, LIBCUDA, NULL)                                                \
    X(cuMemFreeAsync, LIBCUDA, NULL)                                              \
    X(cuMemFreeAsync_ptsz, LIBCUDA, NULL)                                         \
    X(cuMemFreeHost, LIBCUDA, NULL)                                               \
    X(cuArrayDestroy, LIBCUDA, NULL)                                              \
    X(cuMipmappedArrayDestroy, LIBCUDA, NULL)                                     \
    X(cuMemRelease, LIBCUDA, NULL)                                                \
    X(cuGraphAddMemFreeNode, LIBCUDA, NULL)                                       \
    X(cuMemMap, LIBCUDA, NULL)                                                    \
    X(cuMemUnmap, LIBCUDA, NULL)                                                  \
    X(cuMemPoolCreate, LIBCUDA, NULL)                                             \
    X(cuMemPoolDestroy, LIBCUDA, NULL)                                            \
    X(cuMemHostRegister_v2, LIBCUDA, NULL)                                        \
    X(cuMemHostRegister, LIBCUDA, NULL)                                           \
    X(cuMemHostUnregister, LIBCUDA, NULL)                                         \
    X(cuIpcOpenMemHandle_v2, LIBCUDA, NULL)                                       \
    X(cuIpcOpenMemHandle, LIBCUDA, NULL)                                          \
    X(cuIpcCloseMemHandle, LIBCUDA, NULL)                                         \
    X(cuGetProcAddress_v2, LIBCUDA, NULL)                                         \
    X(cuGetProcAddress, LIBCUDA, NULL)                                            \
    X(cudaLaunchKernel, CUDART, NULL)                                             \
    X(cudaLaunchKernel_ptsz, CUDART, NULL)                                        \
    X(cudaLaunchKernelExC, CUDART, NULL)                                          \
    X(cudaLaunchKernelExC_ptsz, CUDART, NULL)                                     \
    X(cudaLaunchCooperativeKernel, CUDART, NULL)                                  \
    X(cudaLaunchCooperativeKernel_ptsz, CUDART, NULL)                             \
    X(cudaMemcpy, CUDART, NULL)                                                   \
    X(cudaMemcpy_ptds, CUDART, NULL)                                              \
    X(cudaMemcpyAsync, CUDART, NULL)                                              \
    X(cudaMemcpyAsync_ptsz, CUDART, NULL)                                         \
    X(cudaMemset, CUDART, NULL)                                                   \
    X(cudaMemset_ptds, CUDART, NULL)                                              \
    X(cudaMemsetAsync, CUDART, NULL)                                              \
    X(cudaMemsetAsync_ptsz, CUDART, NULL)                                         \
    X(cuLaunchKernel, LIBCUDA, NULL)                                              \
    X(cuLaunchKernel_ptsz, LIBCUDA, NULL)                                         \
    X(cuLaunchKernelEx, LIBCUDA, NULL)                                            \
    X(cuLaunchKernelEx_ptsz, LIBCUDA, NULL)                                       \
    X(cuLaunchCooperativeKernel, LIBCUDA, NULL)                                   \
    X(cuLaunchCooperativeKernel_ptsz, LIBCUDA, NULL)                              \
    X(cuMemcpy, LIBCUDA, NULL)                                                    \
    X(cuMemcpy_ptds, LIBCUDA, NULL)                                               \
    X(cuMemcpyAsync, LIBCUDA, NULL)                                               \
    X(cuMemcpyAsync_ptsz, LIBCUDA, NULL)                                          \
    X(cuMemcpyHtoD_v2, LIBCUDA, NULL)                                             \
    X(cuMemcpyHtoD_v2_ptds, LIBCUDA, NULL)                                        \
    X(cuMemcpyDtoH_v2, LIBCUDA, NULL)                                             \
    X(cuMemcpyDtoH_v2_ptds, LIBCUDA, NULL)                                        \
    X(cuMemcpyDtoD_v2, LIBCUDA, NULL)                                             \
    X(cuMemcpyDtoD_v2_ptds, LIBCUDA, NULL)                                        \
    X(cuMemcpyHtoDAsync_v2, LIBCUDA, NULL)                                        \
    X(cuMemcpyHtoDAsync_v2_ptsz, LIBCUDA, NULL)                                   \
    X(cuMemcpyDtoHAsync_v2, LIBCUDA, NULL)                                        \
    X(cuMemcpyDtoHAsync_v2_ptsz, LIBCUDA, NULL)                                   \
    X(cuMemcpyDtoDAsync_v2, LIBCUDA, NULL)                                        \
    X(cuMemcpyDtoDAsync_v2_ptsz, LIBCUDA, NULL)                                   \
    X(cuMemsetD8_v2, LIBCUDA, NULL)                                               \
    X(cuMemsetD8_v2_ptds, LIBCUDA, NULL)                                          \
    X(cuMemsetD16_v2, LIBCUDA, NULL)                                              \
    X(cuMemsetD16_v2_ptds, LIBCUDA, NULL)                                         \
    X(cuMemsetD32_v2, LIBCUDA, NULL)                                              \
    X(cuMemsetD32_v2_ptds, LIBCUDA, NULL)                                         \
    X(cuMemsetD8Async, LIBCUDA, NULL)                                             \
    X(cuMemsetD8Async_ptsz, LIBCUDA, NULL)                                        \
    X(cuMemsetD16Async, LIBCUDA, NULL)                                            \
    X(cuMemsetD16Async_ptsz, LIBCUDA, NULL)                                       \
    X(cuMemsetD32Async, LIBCUDA, NULL)                                            \
    X(cuMemsetD32Async_ptsz, LIBCUDA, NULL)                                       \
    X(aclrtMalloc, LIBACL, NULL)                                                  \
    X(aclrtMallocHost, LIBACL, NULL)                                              \
    X(aclrtFree, LIBACL, NULL)                                                    \
    X(aclrtFreeHost, LIBACL, NULL)                                                \
    X(aclrtMemcpy, LIBACL, NULL)                                                  \
    X(aclrtMemcpyAsync, LIBACL, NULL)                                             \
    X(aclrtMemset, LIBACL, NULL)                                                  \
    X(aclrtMemsetAsync, LIBACL, NULL)                                             \
    X(aclrtLaunchKernel, LIBACL, NULL)                                            \
    X(halMemAlloc, LIBHAL, "halMemAllocInner")                                    \
    X(halMemFree, LIBHAL, "halMemFreeInner")

#define DECLARE_REAL(name, library, fallback) \
    static struct memprof_real_fn real_##name = {#name, library, fallback, NULL};
DEVICE_FUNCTIONS(DECLARE_REAL)

/* Declares fn, the real function of the hook `name` (same signature as ours). */
#define REAL(name) __typeof__(&name) fn = (__typeof__(&name))memprof_real_function(&real_##name)

/* ---- memory of others: registered, or opened through IPC ----------------------- */
static void foreign(enum memprof_heap heap, enum memprof_foreign_kind kind, uintptr_t address,
                    uint64_t size)
{
    memprof_device_note(NOTES_FOREIGN, heap,
                        (struct memprof_note){.size = size, .address = address, .kind = kind});
}

/* An IPC open passes no size: the driver's cuMemGetAddressRange gives the
 * opened allocation's (0 where the driver has none to give).  Asked only for a
 * note: after the outermost open succeeded, with a window open. */
static struct memprof_real_fn real_address_range = {"cuMemGetAddressRange_v2", LIBCUDA,
                                                    NULL, NULL};

static uint64_t opened_bytes(devptr_t p)
{
    if (memprof_window_id() == 0)
        return 0;
    int (*range)(devptr_t *, size_t *, devptr_t) =
        (int (*)(devptr_t *, size_t *, devptr_t))memprof_real_function(&real_address_range);
    size_t size = 0;
    return range != NULL && range(NULL, &size, p) == 0 ? size : 0;
}

/* ---- the hooks ------------------------------------------------------------------
 * Seven shapes, one line each below:
 *   AFTER_HOOK    forwards, then does `after` with its result rc and `outer`
 *                 (true in the outermost device call of the thread);
 *   BEFORE_HOOK   does `before` in the outermost device call, then forwards;
 *   ALLOC_HOOK    forwards, then records the allocation of `key` (read only on
 *                 success) of `bytes` bytes in `heap`, or its failure;
 *   FREE_HOOK     records the free of `key`, then forwards;
 *   FOREIGN_HOOK  forwards, then notes the range at `address` of `bytes` bytes,
 *                 registered or opened (`kind`), on success;
 *   UNFOREIGN_HOOK  takes the note of `address` away, then forwards;
 *   FORWARD_HOOK  forwards only, inside the device call (no nested recording);
 *   USE_HOOK      forwards, then in log mode records the operation `use`
 *                 after an outermost call that succeeded;
 *   GETTER_HOOK   forwards, then swaps the function *pfn for our wrapper. */
#define AFTER_HOOK(heap, not_ready, name, params, args, after)                   \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return not_ready;                                                     \
        bool outer = enter_api(heap);                                             \
        int rc = fn args;                                                         \
        leave_api();                                                              \
        (void)outer;                                                              \
        after;                                                                    \
        return rc;                                                                \
    }

#define BEFORE_HOOK(heap, not_ready, name, params, args, before)                 \
    EXPORT int name params                                                        \
    {                                                                             \
        REAL(name);                                                               \
        if (fn == NULL)                                                           \
            return not_ready;                                                     \
        if (enter_api(heap))                                                      \
            before;                                                               \
        int rc = fn args;                                                         \
        leave_api();                                                              \
        return rc;                                                                \
    }

#define ALLOC_HOOK(heap, not_ready, name, params, args, key, bytes, label)       \
    AFTER_HOOK(heap, not_ready, name, params, args,                               \
               allocated(outer, heap, rc, rc == 0 ? (uintptr_t)(key) : 0, bytes, label, \
                         (uintptr_t)__builtin_return_address(0)))

#define FREE_HOOK(heap, not_ready, name, params, args, key)                      \
    BEFORE_HOOK(heap, not_ready, name, params, args, freed(heap, (uintptr_t)(key)))

/* Registered host memory and IPC exist only with CUDA. */
#define FOREIGN_HOOK(heap, name, params, args, kind, address, bytes)             \
    AFTER_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args,                    \
               if (outer && rc == 0) foreign(heap, kind, (uintptr_t)(address), bytes))

#define UNFOREIGN_HOOK(heap, name, params, args, address)                        \
    BEFORE_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args,                   \
                memprof_device_unnote(NOTES_FOREIGN, heap, (uintptr_t)(address)))

#define FORWARD_HOOK(heap, not_ready, name, params, args)                        \
    AFTER_HOOK(heap, not_ready, name, params, args, (void)rc)

#define USE_HOOK(heap, not_ready, name, params, args, use)                       \
    AFTER_HOOK(heap, not_ready, name, params, args,                               \
               if (outer && rc == 0 && memprof_log_active()) use)

#define GETTER_HOOK(name, params, args)                                          \
    AFTER_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, name, params, args,              \
               if (rc == 0 && pfn != NULL && *pfn != NULL && symbol != NULL)      \
                   *pfn = memprof_device_entry_point(symbol, *pfn))

/* CUDA runtime */
#define CUDART_ALLOC(heap, name, params, args, key, bytes) \
    ALLOC_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args, key, bytes, 0)
#define CUDART_FREE(heap, name, params, args, key) \
    FREE_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args, key)
CUDART_ALLOC(HEAP_CUDA, cudaMalloc, (void **p, size_t n), (p, n), *p, n)
CUDART_ALLOC(HEAP_CUDA, cudaMallocPitch, (void **p, size_t *pitch, size_t width, size_t height),
             (p, pitch, width, height), *p,
             rc == 0 ? (uint64_t)*pitch * height : (uint64_t)width * height)
CUDART_ALLOC(HEAP_CUDA, cudaMalloc3D, (struct cuda_pitched_ptr *p, struct cuda_extent e), (p, e),
             p->ptr, (rc == 0 ? p->pitch : e.width) * e.height * e.depth)
CUDART_ALLOC(HEAP_CUDA, cudaMallocArray,
             (handle_t *a, const struct cuda_channel_desc *d, size_t w, size_t h, unsigned f),
             (a, d, w, h, f), *a, runtime_array_bytes(d, (struct cuda_extent){w, h, 1}, 1))
CUDART_ALLOC(HEAP_CUDA, cudaMalloc3DArray,
             (handle_t *a, const struct cuda_channel_desc *d, struct cuda_extent e, unsigned f),
             (a, d, e, f), *a, runtime_array_bytes(d, e, 1))
CUDART_ALLOC(HEAP_CUDA, cudaMallocMipmappedArray,
             (handle_t *a, const struct cuda_channel_desc *d, struct cuda_extent e,
              unsigned levels, unsigned f),
             (a, d, e, levels, f), *a, runtime_array_bytes(d, e, levels))
CUDART_ALLOC(HEAP_CUDA, cudaMallocManaged, (void **p, size_t n, unsigned f), (p, n, f), *p, n)
CUDART_ALLOC(HEAP_CUDA, cudaMallocAsync, (void **p, size_t n, void *stream), (p, n, stream), *p,
             n)
CUDART_ALLOC(HEAP_CUDA, cudaMallocAsync_ptsz, (void **p, size_t n, void *stream),
             (p, n, stream), *p, n)
CUDART_ALLOC(pool_heap(pool), cudaMallocFromPoolAsync,
             (void **p, size_t n, handle_t pool, void *stream), (p, n, pool, stream), *p, n)
CUDART_ALLOC(pool_heap(pool), cudaMallocFromPoolAsync_ptsz,
             (void **p, size_t n, handle_t pool, void *stream), (p, n, pool, stream), *p, n)
CUDART_ALLOC(HEAP_CUDA_HOST, cudaMallocHost, (void **p, size_t n), (p, n), *p, n)
CUDART_ALLOC(HEAP_CUDA_HOST, cudaHostAlloc, (void **p, size_t n, unsigned f), (p, n, f), *p, n)
CUDART_FREE(HEAP_CUDA, cudaFree, (void *p), (p), p)
CUDART_FREE(HEAP_CUDA, cudaFreeAsync, (void *p, void *stream), (p, stream), p)
CUDART_FREE(HEAP_CUDA, cudaFreeAsync_ptsz, (void *p, void *stream), (p, stream), p)
CUDART_FREE(HEAP_CUDA, cudaFreeArray, (handle_t a), (a), a)
CUDART_FREE(HEAP_CUDA, cudaFreeMipmappedArray, (handle_t a), (a), a)
CUDART_FREE(HEAP_CUDA_HOST, cudaFreeHost, (void *p), (p), p)
AFTER_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMemPoolCreate,
           (handle_t *pool, const struct cu_mem_props_head *props), (pool, props),
           pool_created(rc, pool, props))
AFTER_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cudaMemPoolDestroy, (handle_t pool),
           (pool_destroyed(pool)), (void)rc)
FOREIGN_HOOK(HEAP_CUDA_HOST, cudaHostRegister, (void *p, size_t n, unsigned f), (p, n, f),
             FOREIGN_HOST_REGISTER, p, n)
UNFOREIGN_HOOK(HEAP_CUDA_HOST, cudaHostUnregister, (void *p), (p), p)
FOREIGN_HOOK(HEAP_CUDA, cudaIpcOpenMemHandle, (void **p, struct ipc_handle h, unsigned f),
             (p, h, f), FOREIGN_IPC_OPEN, *p, opened_bytes((devptr_t)(uintptr_t)*p))
UNFOREIGN_HOOK(HEAP_CUDA, cudaIpcCloseMemHandle, (void *p), (p), p)
/* The runtime's way for frameworks to reach the driver (PyTorch's expandable
 * segments).  CUDA 11 declares cudaGetDriverEntryPoint without the status:
 * the argument passed on then is ignored. */
GETTER_HOOK(cudaGetDriverEntryPoint,
            (const char *symbol, void **pfn, unsigned long long flags, int *status),
            (symbol, pfn, flags, status))
GETTER_HOOK(cudaGetDriverEntryPoint_ptsz,
            (const char *symbol, void **pfn, unsigned long long flags, int *status),
            (symbol, pfn, flags, status))
GETTER_HOOK(cudaGetDriverEntryPointByVersion,
            (const char *symbol, void **pfn, unsigned version, unsigned long long flags,
             int *status), (symbol, pfn, version, flags, status))
GETTER_HOOK(cudaGetDriverEntryPointByVersion_ptsz,
            (const char *symbol, void **pfn, unsigned version, unsigned long long flags,
             int *status), (symbol, pfn, version, flags, status))

/* CUDA driver.  Each is both exported (for programs linked against libcuda) and
 * handed out by the getters and dlsym. */
#define CU_ALLOC(heap, name, params, args, key, bytes) \
    ALLOC_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args, key, bytes, 0)
#define CU_FREE(heap, name, params, args, key) \
    FREE_HOOK(heap, CUDA_NOT_INITIALIZED, name, params, args, key)
CU_ALLOC(HEAP_CUDA, cuMemAlloc_v2, (devptr_t *p, size_t n), (p, n), *p, n)
CU_ALLOC(HEAP_CUDA, cuMemAllocPitch_v2,
         (devptr_t *p, size_t *pitch, size_t width, size_t height, unsigned element),
         (p, pitch, width, height, element), *p,
         rc == 0 ? (uint64_t)*pitch * height : (uint64_t)width * height)
CU_ALLOC(HEAP_CUDA, cuMemAllocManaged, (devptr_t *p, size_t n, unsigned f), (p, n, f), *p, n)
CU_ALLOC(HEAP_CUDA, cuMemAllocAsync, (devptr_t *p, size_t n, void *stream), (p, n, stream), *p,
         n)
CU_ALLOC(HEAP_CUDA, cuMemAllocAsync_ptsz, (devptr_t *p, size_t n, void *stream), (p, n, stream),
         *p, n)
CU_ALLOC(pool_heap(pool), cuMemAllocFromPoolAsync,
         (devptr_t *p, size_t n, handle_t pool, void *stream), (p, n, pool, stream), *p, n)
CU_ALLOC(pool_heap(pool), cuMemAllocFromPoolAsync_ptsz,
         (devptr_t *p, size_t n, handle_t pool, void *stream), (p, n, pool, stream), *p, n)
CU_ALLOC(HEAP_CUDA_HOST, cuMemAllocHost_v2, (void **p, size_t n), (p, n), *p, n)
CU_ALLOC(HEAP_CUDA_HOST, cuMemHostAlloc, (void **p, size_t n, unsigned f), (p, n, f), *p, n)
CU_ALLOC(HEAP_CUDA, cuArrayCreate_v2, (handle_t *a, const struct cu_array_desc *d), (a, d), *a,
         cu_array_bytes(d))
CU_ALLOC(HEAP_CUDA, cuArray3DCreate_v2, (handle_t *a, const struct cu_array3d_desc *d), (a, d),
         *a, cu_array3d_bytes(d, 1))
CU_ALLOC(HEAP_CUDA, cuMipmappedArrayCreate,
         (handle_t *a, const struct cu_array3d_desc *d, unsigned levels), (a, d, levels), *a,
         cu_array3d_bytes(d, levels))
CU_ALLOC(location_heap(prop), cuMemCreate,
         (devptr_t *handle, size_t n, const struct cu_mem_props_head *prop,
          unsigned long long flags), (handle, n, prop, flags), *handle, n)
CU_ALLOC(node_heap(params), cuGraphAddMemAllocNode,
         (handle_t *node, handle_t graph, const handle_t *deps, size_t ndeps,
          struct cu_mem_alloc_node_params *params),
         (node, graph, deps, ndeps, params), params->dptr, params ? params->bytesize : 0)
CU_FREE(HEAP_CUDA, cuMemFree_v2, (devptr_t p), (p), p)
CU_FREE(HEAP_CUDA, cuMemFreeAsync, (devptr_t p, void *stream), (p, stream), p)
CU_FREE(HEAP_CUDA, cuMemFreeAsync_ptsz, (devptr_t p, void *stream), (p, stream), p)
CU_FREE(HEAP_CUDA_HOST, cuMemFreeHost, (void *p), (p), p)
CU_FREE(HEAP_CUDA, cuArrayDestroy, (handle_t a), (a), a)
CU_FREE(HEAP_CUDA, cuMipmappedArrayDestroy, (handle_t a), (a), a)
CU_FREE(HEAP_CUDA, cuMemRelease, (devptr_t handle), (handle), handle)
CU_FREE(HEAP_CUDA, cuGraphAddMemFreeNode,
        (handle_t *node, handle_t graph, const handle_t *deps, size_t ndeps, devptr_t p),
        (node, graph, deps, ndeps, p), p)
FORWARD_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemMap,
             (devptr_t p, size_t n, size_t offset, devptr_t handle, unsigned long long flags),
             (p, n, offset, handle, flags))
FORWARD_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemUnmap, (devptr_t p, size_t n), (p, n))
AFTER_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemPoolCreate,
           (handle_t *pool, const struct cu_mem_props_head *props), (pool, props),
           pool_created(rc, pool, props))
AFTER_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, cuMemPoolDestroy, (handle_t pool),
           (pool_destroyed(pool)), (void)rc)
/* cuMemHostRegister and cuIpcOpenMemHandle: the first versions (4.0, 4.1) and
 * the _v2 of 6.5 and 11.0 have the same signature. */
#define CU_HOST_REGISTER(name)                                                            \
    FOREIGN_HOOK(HEAP_CUDA_HOST, name, (void *p, size_t n, unsigned f), (p, n, f),        \
                 FOREIGN_HOST_REGISTER, p, n)
#define CU_IPC_OPEN(name)                                                                 \
    FOREIGN_HOOK(HEAP_CUDA, name, (devptr_t *p, struct ipc_handle h, unsigned f), (p, h, f), \
                 FOREIGN_IPC_OPEN, *p, opened_bytes(*p))
CU_HOST_REGISTER(cuMemHostRegister_v2)
CU_HOST_REGISTER(cuMemHostRegister)
UNFOREIGN_HOOK(HEAP_CUDA_HOST, cuMemHostUnregister, (void *p), (p), p)
CU_IPC_OPEN(cuIpcOpenMemHandle_v2)
CU_IPC_OPEN(cuIpcOpenMemHandle)
UNFOREIGN_HOOK(HEAP_CUDA, cuIpcCloseMemHandle, (devptr_t p), (p), p)
GETTER_HOOK(cuGetProcAddress_v2,
            (const char *symbol, void **pfn, int version, unsigned long long flags, int *status),
            (symbol, pfn, version, flags, status))
GETTER_HOOK(cuGetProcAddress,
            (const char *symbol, void **pfn, int version, unsigned long long flags),
            (symbol, pfn, version, flags))

/* Kernel launches, copies and sets: the operations that use device memory. */
#define CUDA_USE(name, params, args, use) \
    USE_HOOK(HEAP_CUDA, CUDA_NOT_INITIALIZED, name, params, args, use)
#define RUNTIME_LAUNCH(name) \
    CUDA_USE(name, (const void *f, struct dim3 grid, struct dim3 block, void **args, \
                    size_t shared, void *stream), (f, grid, block, args, shared, stream), \
             memprof_use_runtime_launch(f, args))
#define RUNTIME_LAUNCH_EX(name) \
    CUDA_USE(name, (const void *config, const void *f, void **args), (config, f, args), \
             memprof_use_runtime_launch(f, args))
#define CU_LAUNCH(name) \
    CUDA_USE(name, (void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, \
                    unsigned bz, unsigned shared, void *stream, void **args, void **extra), \
             (f, gx, gy, gz, bx, by, bz, shared, stream, args, extra), \
             memprof_use_cuda_launch(f, args, extra))
#define CU_LAUNCH_EX(name) \
    CUDA_USE(name, (const void *config, void *f, void **args, void **extra), \
             (config, f, args, extra), memprof_use_cuda_launch(f, args, extra))
#define CU_LAUNCH_COOPERATIVE(name) \
    CUDA_USE(name, (void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, \
                    unsigned bz, unsigned shared, void *stream, void **args), \
             (f, gx, gy, gz, bx, by, bz, shared, stream, args), \
             memprof_use_cuda_launch(f, args, NULL))
#define COPY(heap, dst, src) memprof_use_memory(heap, USE_COPY, (uintptr_t)(dst), (uintptr_t)(src))
#define SET(heap, dst) memprof_use_memory(heap, USE_SET, (uintptr_t)(dst), 0)
#define RUNTIME_COPY(name) \
    CUDA_USE(name, (void *dst, const void *src, size_t n, int kind), (dst, src, n, kind), \
             COPY(HEAP_CUDA, dst, src))
#define RUNTIME_COPY_ASYNC(name) \
    CUDA_USE(name, (void *dst, const void *src, size_t n, int kind, void *stream), \
             (dst, src, n, kind, stream), COPY(HEAP_CUDA, dst, src))
#define RUNTIME_SET(name) \
    CUDA_USE(name, (void *p, int value, size_t n), (p, value, n), SET(HEAP_CUDA, p))
#define RUNTIME_SET_ASYNC(name) \
    CUDA_USE(name, (void *p, int value, size_t n, void *stream), (p, value, n, stream), \
             SET(HEAP_CUDA, p))
#define CU_COPY(name, dst_t, src_t) \
    CUDA_USE(name, (dst_t dst, src_t src, size_t n), (dst, src, n), COPY(HEAP_CUDA, dst, src))
#define CU_COPY_ASYNC(name, dst_t, src_t) \
    CUDA_USE(name, (dst_t dst, src_t src, size_t n, void *stream), (dst, src, n, stream), \
             COPY(HEAP_CUDA, dst, src))
#define CU_SET(name, value_t) \
    CUDA_USE(name, (devptr_t p, value_t value, size_t n), (p, value, n), SET(HEAP_CUDA, p))
#define CU_SET_ASYNC(name, value_t) \
    CUDA_USE(name, (devptr_t p, value_t value, size_t n, void *stream), (p, value, n, stream), \
             SET(HEAP_CUDA, p))
RUNTIME_LAUNCH(cudaLaunchKernel)
RUNTIME_LAUNCH(cudaLaunchKernel_ptsz)
RUNTIME_LAUNCH_EX(cudaLaunchKernelExC)
RUNTIME_LAUNCH_EX(cudaLaunchKernelExC_ptsz)
RUNTIME_LAUNCH(cudaLaunchCooperativeKernel)
RUNTIME_LAUNCH(cudaLaunchCooperativeKernel_ptsz)
RUNTIME_COPY(cudaMemcpy)
RUNTIME_COPY(cudaMemcpy_ptds)
RUNTIME_COPY_ASYNC(cudaMemcpyAsync)
RUNTIME_COPY_ASYNC(cudaMemcpyAsync_ptsz)
RUNTIME_SET(cudaMemset)
RUNTIME_SET(cudaMemset_ptds)
RUNTIME_SET_ASYNC(cudaMemsetAsync)
RUNTIME_SET_ASYNC(cudaMemsetAsync_ptsz)
CU_LAUNCH(cuLaunchKernel)
CU_LAUNCH(cuLaunchKernel_ptsz)
CU_LAUNCH_EX(cuLaunchKernelEx)
CU_LAUNCH_EX(cuLaunchKernelEx_ptsz)
CU_LAUNCH_COOPERATIVE(cuLaunchCooperativeKernel)
CU_LAUNCH_COOPERATIVE(cuLaunchCooperativeKernel_ptsz)
/* Each with its per-thread default stream's form: suffix _ptds, _ptsz with a stream. */
#define WITH_PER_THREAD(HOOK, name, suffix, ...) \
    HOOK(name, __VA_ARGS__) HOOK(name##suffix, __VA_ARGS__)
WITH_PER_THREAD(CU_COPY, cuMemcpy, _ptds, devptr_t, devptr_t)
WITH_PER_THREAD(CU_COPY_ASYNC, cuMemcpyAsync, _ptsz, devptr_t, devptr_t)
WITH_PER_THREAD(CU_COPY, cuMemcpyHtoD_v2, _ptds, devptr_t, const void *)
WITH_PER_THREAD(CU_COPY, cuMemcpyDtoH_v2, _ptds, void *, devptr_t)
WITH_PER_THREAD(CU_COPY, cuMemcpyDtoD_v2, _ptds, devptr_t, devptr_t)
WITH_PER_THREAD(CU_COPY_ASYNC, cuMemcpyHtoDAsync_v2, _ptsz, devptr_t, const void *)
WITH_PER_THREAD(CU_COPY_ASYNC, cuMemcpyDtoHAsync_v2, _ptsz, void *, devptr_t)
WITH_PER_THREAD(CU_COPY_ASYNC, cuMemcpyDtoDAsync_v2, _ptsz, devptr_t, devptr_t)
WITH_PER_THREAD(CU_SET, cuMemsetD8_v2, _ptds, unsigned char)
WITH_PER_THREAD(CU_SET, cuMemsetD16_v2, _ptds, unsigned short)
WITH_PER_THREAD(CU_SET, cuMemsetD32_v2, _ptds, unsigned)
WITH_PER_THREAD(CU_SET_ASYNC, cuMemsetD8Async, _ptsz, unsigned char)
WITH_PER_THREAD(CU_SET_ASYNC, cuMemsetD16Async, _ptsz, unsigned short)
WITH_PER_THREAD(CU_SET_ASYNC, cuMemsetD32Async, _ptsz, unsigned)

/* Ascend ACL */
ALLOC_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMalloc, (void **p, size_t n, int policy),
           (p, n, policy), *p, n, 0)
ALLOC_HOOK(HEAP_ACL_HOST, ACL_NOT_INITIALIZED, aclrtMallocHost, (void **p, size_t n), (p, n), *p,
           n, 0)
FREE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtFree, (void *p), (p), p)
FREE_HOOK(HEAP_ACL_HOST, ACL_NOT_INITIALIZED, aclrtFreeHost, (void *p), (p), p)
USE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMemcpy,
         (void *dst, size_t room, const void *src, size_t n, int kind), (dst, room, src, n, kind),
         COPY(HEAP_ACL, dst, src))
USE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMemcpyAsync,
         (void *dst, size_t room, const void *src, size_t n, int kind, void *stream),
         (dst, room, src, n, kind, stream), COPY(HEAP_ACL, dst, src))
USE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMemset,
         (void *p, size_t room, int value, size_t n), (p, room, value, n), SET(HEAP_ACL, p))
USE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtMemsetAsync,
         (void *p, size_t room, int value, size_t n, void *stream), (p, room, value, n, stream),
         SET(HEAP_ACL, p))
USE_HOOK(HEAP_ACL, ACL_NOT_INITIALIZED, aclrtLaunchKernel,
         (void *f, unsigned blocks, const void *args, size_t size, void *stream),
         (f, blocks, args, size, stream), memprof_use_acl_launch((uintptr_t)args))

/* Ascend HAL: the flag (device, memory type, module) labels the stack. */
ALLOC_HOOK(HEAP_HAL, HAL_NOT_INITIALIZED, halMemAlloc,
           (void **p, unsigned long long n, unsigned long long flag), (p, n, flag), *p, n, flag)
FREE_HOOK(HEAP_HAL, HAL_NOT_INITIALIZED, halMemFree, (void *p), (p), p)

/* ---- handing out our wrappers -------------------------------------------------------
 * For the names the entry-point getters and dlsym on a library's handle are
 * asked for, and the GOT slots an injected sampler redirects (got_hooks.c). */
DEVICE_FUNCTIONS(MEMPROF_LOCAL_ALIAS)

static const struct entry_point {
    const char *name;
    struct memprof_real_fn *real;
    void *wrapper;
} entry_points[] = {
#define ENTRY_POINT(name, library, fallback) {#name, &real_##name, (void *)hook_##name},
    DEVICE_FUNCTIONS(ENTRY_POINT)
};
#define ENTRY_POINTS (sizeof entry_points / sizeof entry_points[0])

/* A quick no for everything that is not ours. */
static bool maybe_ours(const char *name)
{
    return strncmp(name, "cu", 2) == 0 || strncmp(name, "acl", 3) == 0 ||
           strncmp(name, "hal", 3) == 0;
}

/* Whether the function `variant` can be the answer to a request for `name`:
 * the same name, or it with a version suffix (_v2) and/or the per-thread
 * default stream's (_ptsz, _ptds), as the getters take base names. */
static bool variant_of(const char *variant, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(variant, name, n) != 0)
        return false;
    const char *rest = variant + n;
    if (rest[0] == '_' && rest[1] == 'v' && rest[2] >= '0' && rest[2] <= '9')
        for (rest += 2; *rest >= '0' && *rest <= '9'; rest++)
            ;
    return *rest == '\0' || strcmp(rest, "_ptsz") == 0 || strcmp(rest, "_ptds") == 0;
}

void *memprof_device_entry_point(const char *name, void *found)
{
    if (!maybe_ours(name))
        return found;
    for (size_t i = 0; i < ENTRY_POINTS; i++)
        if (variant_of(entry_points[i].name, name) &&
            memprof_real_function(entry_points[i].real) == found)
            return entry_points[i].wrapper;
    return found;   /* another function (an older variant, another library's): as it is */
}

void *memprof_device_hook_for(const char *name)
{
    for (size_t i = 0; maybe_ours(name) && i < ENTRY_POINTS; i++)
        if (strcmp(name, entry_points[i].name) == 0)
            return entry_points[i].wrapper;
    return NULL;
}
