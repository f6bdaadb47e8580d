/* libcuda.so.1 stand-in: the CUDA driver API subset of ARCHITECTURE.md ("Device
 * and HAL allocators"), backed by host memory.  Built -Wl,-Bsymbolic as the real driver behaves: its own
 * references (the table cuGetProcAddress hands out) bind inside this library,
 * so a preloaded cuMemAlloc_v2 is never what a caller of cuGetProcAddress gets.
 *
 * - cuMemAlloc_v2 / cuMemAllocPitch_v2 / cuMemAllocAsync(_ptsz) /
 *   cuMemAllocFromPoolAsync(_ptsz) / cuMemAllocManaged, the arrays
 *   (cuArrayCreate_v2, cuArray3DCreate_v2, cuMipmappedArrayCreate: their
 *   requested bytes) and graph memory nodes (allocated when the node is added):
 *   anonymous mmap; pinned host memory (cuMemAllocHost_v2, cuMemHostAlloc) too.
 *   Pools (cuMemPoolCreate) are a device's or the host's.
 * - cuMemCreate: a memfd ("physical memory"), handle = a counter; cuMemMap maps
 *   it MAP_SHARED|MAP_FIXED into a range cuMemAddressReserve reserved
 *   (PROT_NONE); cuMemUnmap puts the PROT_NONE reservation back.
 * - Budget: STANDIN_DEVICE_MEMORY=<bytes> caps the live bytes of every
 *   allocation but pinned host memory and host pools' blocks; beyond it they fail with CUDA_ERROR_OUT_OF_MEMORY.  Reservations and mappings
 *   cost nothing.
 * - Allocation before cuInit fails with CUDA_ERROR_NOT_INITIALIZED.
 * - Memory of others: cuMemHostRegister(_v2) pins host memory the caller has,
 *   cuMemHostUnregister lets it go; cuIpcGetMemHandle exports a cuMemAlloc
 *   block, which cuIpcOpenMemHandle(_v2) maps in another process (counted
 *   opens, as the driver's) until cuIpcCloseMemHandle; cuMemGetAddressRange_v2
 *   answers for both allocations and opened handles.  None of it is charged.
 * - cuGetProcAddress(_v2) answer by base name, version and flags as the real
 *   driver does: the newest variant not newer than the version asked for, the
 *   _ptsz one for CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM.
 * - cuDriverGetVersion: STANDIN_DRIVER_VERSION (default 13000, so that every
 *   runtime from 11.x to 13.0 accepts the driver).
 * - cuGetExportTable refuses every table (CUDA_ERROR_NOT_SUPPORTED): NVIDIA's
 *   private runtime-driver interface, and the integrity check behind it, are
 *   not reproduced, so NVIDIA's own runtime starts (loads the driver, fetches
 *   its entry points, calls cuInit) and stops there, failing its calls with 801.
 * - Copies and sets (cuMemcpy{HtoD,DtoH,DtoD}_v2, cuMemsetD32_v2, and their
 *   per-thread default stream's _ptds forms) move bytes between host
 *   memory and blocks, checked against the block's bounds; modules, functions
 *   and kernel launches are cuda_kernels.c's.
 * - STANDIN_TRACE=<file>: a line per lookup ("cuda cuGetProcAddress_v2 SYMBOL
 *   VERSION FLAGS -> VARIANT") and per call ("cuda NAME BYTES RC").
 * - STANDIN_REPORT=1: at exit, "standin libcuda: ..." totals on stderr. */
#define _GNU_SOURCE
#include "standin_util.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include "standin_cuda.h"

enum { KIND_ALLOC = 1, KIND_ASYNC, KIND_MANAGED, KIND_POOL, KIND_HOST, KIND_HOST_POOL, KIND_ARRAY,
       KIND_MIPMAPPED, KIND_GRAPH };
#define BIT(kind) (1u << (kind))
/* What cuMemFree(Async) frees; pinned host memory is not device memory. */
#define POINTER_KINDS (BIT(KIND_ALLOC) | BIT(KIND_ASYNC) | BIT(KIND_MANAGED) | BIT(KIND_POOL) \
                       | BIT(KIND_HOST_POOL) | BIT(KIND_GRAPH))
#define HOST_KINDS (BIT(KIND_HOST) | BIT(KIND_HOST_POOL))

static _Atomic int initialized;
static struct standin_table blocks = STANDIN_TABLE_INIT;     /* ptr -> size, kind */
static struct standin_table handles = STANDIN_TABLE_INIT;    /* handle -> size, memfd */
static struct standin_table reserves = STANDIN_TABLE_INIT;   /* va -> size */
static struct standin_table mappings = STANDIN_TABLE_INIT;   /* va -> size, handle */
static struct standin_table pools = STANDIN_TABLE_INIT;      /* pool -> 0, location type */
static struct standin_table graphs = STANDIN_TABLE_INIT;     /* graph -> 0, 0 */
static struct standin_table registered = STANDIN_TABLE_INIT; /* host ptr -> size */
static struct standin_table exported = STANDIN_TABLE_INIT;   /* block -> size, memfd */
static struct standin_budget budget;
static _Atomic unsigned long long next_handle = 0x1000;
static _Atomic unsigned long long n_alloc, n_free, n_failed, n_create, n_release, n_getproc;

EXPORT CUresult cuInit(unsigned int flags)
{
    standin_trace("cuda cuInit %u", flags);
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    atomic_store(&initialized, 1);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *driverVersion)
{
    const char *v = getenv("STANDIN_DRIVER_VERSION");
    if (!driverVersion)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = v && *v ? atoi(v) : 13000;
    standin_trace("cuda cuDriverGetVersion %d %d", *driverVersion, CUDA_SUCCESS);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)
{
    const unsigned char *id = pExportTableId ? (const unsigned char *)pExportTableId->bytes : NULL;
    if (ppExportTable)
        *ppExportTable = NULL;
    standin_trace("cuda cuGetExportTable %02x%02x%02x%02x %d", id ? id[0] : 0, id ? id[1] : 0,
                  id ? id[2] : 0, id ? id[3] : 0, CUDA_ERROR_NOT_SUPPORTED);
    return CUDA_ERROR_NOT_SUPPORTED;
}

/* size bytes of kind, charged to the device budget unless they are the host's. */
static CUresult alloc_common(const char *name, void **out, size_t size, int kind)
{
    CUresult rc = CUDA_SUCCESS;
    void *p = NULL;
    int charged = !(BIT(kind) & HOST_KINDS);
    standin_latency();
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!out || size == 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (charged && !standin_charge(&budget, size))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    else if (!(p = standin_map(size)) || !standin_put(&blocks, (uintptr_t)p, size, (uint64_t)kind)) {
        if (p)
            munmap(p, size);
        if (charged)
            standin_uncharge(&budget, size);
        p = NULL;
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (out)
        *out = p;
    atomic_fetch_add(rc == CUDA_SUCCESS ? &n_alloc : &n_failed, 1);
    standin_trace("cuda %s %zu %d", name, size, rc);
    return rc;
}

static CUresult alloc_device(const char *name, CUdeviceptr *dptr, size_t size, int kind)
{
    void *p = NULL;
    CUresult rc = alloc_common(name, dptr ? &p : NULL, size, kind);
    if (dptr)
        *dptr = (CUdeviceptr)(uintptr_t)p;
    return rc;
}

/* Frees a block of one of `kinds` (bits). */
static CUresult free_common(const char *name, uintptr_t key, unsigned kinds)
{
    struct standin_block b;
    standin_latency();
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!standin_find(&blocks, key, 0, &b) || !(BIT((int)b.aux) & kinds))
        rc = CUDA_ERROR_INVALID_VALUE;        /* unknown pointer, double free, 0, another kind */
    else {
        struct standin_block e;
        standin_find(&blocks, key, 1, NULL);
        munmap((void *)key, b.size);
        if (standin_find(&exported, key, 1, &e))
            close((int)e.aux);
        if (!(BIT((int)b.aux) & HOST_KINDS))
            standin_uncharge(&budget, b.size);
        atomic_fetch_add(&n_free, 1);
    }
    standin_trace("cuda %s %zu %d", name, rc == CUDA_SUCCESS ? b.size : 0, rc);
    return rc;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    return alloc_device("cuMemAlloc_v2", dptr, bytesize, KIND_ALLOC);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    return free_common("cuMemFree_v2", (uintptr_t)dptr, POINTER_KINDS);
}

/* The pitch: the row rounded up to 512 bytes; rows of 4, 8 or 16-byte elements. */
EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
                                   size_t Height, unsigned int ElementSizeBytes)
{
    size_t pitch = (WidthInBytes + 511) & ~(size_t)511;
    if (!pPitch || WidthInBytes == 0 || Height == 0
        || (ElementSizeBytes != 4 && ElementSizeBytes != 8 && ElementSizeBytes != 16)) {
        standin_trace("cuda cuMemAllocPitch_v2 %zu %d", WidthInBytes * Height,
                      CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult rc = alloc_device("cuMemAllocPitch_v2", dptr, pitch * Height, KIND_ALLOC);
    *pPitch = rc == CUDA_SUCCESS ? pitch : 0;
    return rc;
}

/* The stream does not matter here: the per-thread default stream's variants
 * (_ptsz) do the same. */
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    (void)hStream;
    return alloc_device("cuMemAllocAsync", dptr, bytesize, KIND_ASYNC);
}

EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    (void)hStream;
    return alloc_device("cuMemAllocAsync_ptsz", dptr, bytesize, KIND_ASYNC);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    (void)hStream;
    return free_common("cuMemFreeAsync", (uintptr_t)dptr, POINTER_KINDS);
}

EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    (void)hStream;
    return free_common("cuMemFreeAsync_ptsz", (uintptr_t)dptr, POINTER_KINDS);
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    if (flags != 1u /* CU_MEM_ATTACH_GLOBAL */ && flags != 2u /* CU_MEM_ATTACH_HOST */) {
        standin_trace("cuda cuMemAllocManaged %zu %d", bytesize, CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return alloc_device("cuMemAllocManaged", dptr, bytesize, KIND_MANAGED);
}

/* ---- pools: a device's or the host's ------------------------------------------- */
EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    CUresult rc = CUDA_SUCCESS;
    unsigned long long h = 0;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!pool || !poolProps || poolProps->allocType != CU_MEM_ALLOCATION_TYPE_PINNED
             || (poolProps->location.type != CU_MEM_LOCATION_TYPE_DEVICE
                 && poolProps->location.type != CU_MEM_LOCATION_TYPE_HOST))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (!standin_put(&pools, (uintptr_t)(h = atomic_fetch_add(&next_handle, 1)), 0,
                          (uint64_t)poolProps->location.type))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (pool)
        *pool = rc == CUDA_SUCCESS ? (CUmemoryPool)(uintptr_t)h : NULL;
    standin_trace("cuda cuMemPoolCreate %d %d", poolProps ? poolProps->location.type : 0, rc);
    return rc;
}

EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    CUresult rc = standin_find(&pools, (uintptr_t)pool, 1, NULL) ? CUDA_SUCCESS
                                                                 : CUDA_ERROR_INVALID_VALUE;
    standin_trace("cuda cuMemPoolDestroy %d", rc);
    return rc;
}

static CUresult alloc_from_pool(const char *name, CUdeviceptr *dptr, size_t bytesize,
                                CUmemoryPool pool)
{
    struct standin_block b;
    if (!standin_find(&pools, (uintptr_t)pool, 0, &b)) {
        standin_trace("cuda %s %zu %d", name, bytesize, CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return alloc_device(name, dptr, bytesize,
                        b.aux == CU_MEM_LOCATION_TYPE_HOST ? KIND_HOST_POOL : KIND_POOL);
}

EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                        CUstream hStream)
{
    (void)hStream;
    return alloc_from_pool("cuMemAllocFromPoolAsync", dptr, bytesize, pool);
}

EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize,
                                             CUmemoryPool pool, CUstream hStream)
{
    (void)hStream;
    return alloc_from_pool("cuMemAllocFromPoolAsync_ptsz", dptr, bytesize, pool);
}

/* ---- pinned host memory ----------------------------------------------------------- */
EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
    return alloc_common("cuMemAllocHost_v2", pp, bytesize, KIND_HOST);
}

EXPORT CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    if (Flags > 7u) {   /* PORTABLE | DEVICEMAP | WRITECOMBINED */
        standin_trace("cuda cuMemHostAlloc %zu %d", bytesize, CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return alloc_common("cuMemHostAlloc", pp, bytesize, KIND_HOST);
}

EXPORT CUresult cuMemFreeHost(void *p)
{
    return free_common("cuMemFreeHost", (uintptr_t)p, BIT(KIND_HOST));
}

/* ---- arrays: their requested bytes -------------------------------------------------- */
static size_t element_bytes(int format, unsigned channels)
{
    if (channels != 1 && channels != 2 && channels != 4)
        return 0;
    switch (format) {
    case 0x01: case 0x08: return channels;                       /* 8-bit */
    case 0x02: case 0x09: case CU_AD_FORMAT_HALF: return 2u * channels;
    case 0x03: case 0x0a: case CU_AD_FORMAT_FLOAT: return 4u * channels;
    default: return 0;
    }
}

/* Elements of every mipmap level (a zero height or depth is 1) times their size. */
static size_t array_size(const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned levels)
{
    size_t element = d ? element_bytes(d->Format, d->NumChannels) : 0, sum = 0;
    for (unsigned l = 0; element && d->Width && l < levels && l < 64; l++) {
        size_t w = d->Width >> l, h = d->Height >> l, z = d->Depth >> l;
        sum += (w ? w : 1) * (h ? h : 1) * (z ? z : 1);
    }
    return sum * element;
}

static CUresult create_array(const char *name, void **handle, const CUDA_ARRAY3D_DESCRIPTOR *d,
                             unsigned levels, int kind)
{
    size_t size = array_size(d, levels);
    if (size == 0) {
        standin_trace("cuda %s 0 %d", name, CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return alloc_common(name, handle, size, kind);
}

EXPORT CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *pAllocateArray)
{
    const CUDA_ARRAY_DESCRIPTOR *a = pAllocateArray;
    CUDA_ARRAY3D_DESCRIPTOR d = { a ? a->Width : 0, a ? a->Height : 0, 0, a ? a->Format : 0,
                                  a ? a->NumChannels : 0, 0 };
    return create_array("cuArrayCreate_v2", (void **)pHandle, &d, 1, KIND_ARRAY);
}

EXPORT CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray)
{
    return create_array("cuArray3DCreate_v2", (void **)pHandle, pAllocateArray, 1, KIND_ARRAY);
}

EXPORT CUresult cuArrayDestroy(CUarray hArray)
{
    return free_common("cuArrayDestroy", (uintptr_t)hArray, BIT(KIND_ARRAY));
}

EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle,
                                       const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,
                                       unsigned int numMipmapLevels)
{
    return create_array("cuMipmappedArrayCreate", (void **)pHandle, pMipmappedArrayDesc,
                        numMipmapLevels, KIND_MIPMAPPED);
}

EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    return free_common("cuMipmappedArrayDestroy", (uintptr_t)hMipmappedArray,
                       BIT(KIND_MIPMAPPED));
}

/* ---- graphs: only their memory nodes, allocated when added ---------------------------- */
EXPORT CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
    unsigned long long h = atomic_fetch_add(&next_handle, 1);
    if (!phGraph || flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (!standin_put(&graphs, (uintptr_t)h, 0, 0))
        return CUDA_ERROR_OUT_OF_MEMORY;
    *phGraph = (CUgraph)(uintptr_t)h;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGraphDestroy(CUgraph hGraph)
{
    return standin_find(&graphs, (uintptr_t)hGraph, 1, NULL) ? CUDA_SUCCESS
                                                             : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph,
                                       const CUgraphNode *dependencies, size_t numDependencies,
                                       CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
    (void)dependencies;
    (void)numDependencies;
    if (!phGraphNode || !nodeParams || !standin_find(&graphs, (uintptr_t)hGraph, 0, NULL)
        || nodeParams->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
        standin_trace("cuda cuGraphAddMemAllocNode %zu %d", nodeParams ? nodeParams->bytesize : 0,
                      CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    CUresult rc = alloc_device("cuGraphAddMemAllocNode", &nodeParams->dptr, nodeParams->bytesize,
                               KIND_GRAPH);
    *phGraphNode = (CUgraphNode)(uintptr_t)atomic_fetch_add(&next_handle, 1);
    return rc;
}

EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode *phGraphNode, CUgraph hGraph,
                                      const CUgraphNode *dependencies, size_t numDependencies,
                                      CUdeviceptr dptr)
{
    (void)dependencies;
    (void)numDependencies;
    if (!phGraphNode || !standin_find(&graphs, (uintptr_t)hGraph, 0, NULL))
        return CUDA_ERROR_INVALID_VALUE;
    *phGraphNode = (CUgraphNode)(uintptr_t)atomic_fetch_add(&next_handle, 1);
    return free_common("cuGraphAddMemFreeNode", (uintptr_t)dptr, BIT(KIND_GRAPH));
}

/* ---- virtual memory management --------------------------------------------- */
EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                            const CUmemAllocationProp *prop, unsigned long long flags)
{
    CUresult rc = CUDA_SUCCESS;
    int fd = -1;
    unsigned long long h = 0;
    standin_latency();
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!handle || !prop || flags != 0 || size == 0 || size % STANDIN_CU_GRANULARITY)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (!standin_charge(&budget, size))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    else {
        fd = memfd_create("standin-cuMemCreate", MFD_CLOEXEC);
        h = atomic_fetch_add(&next_handle, 1);
        if (fd < 0 || ftruncate(fd, (off_t)size) != 0
            || !standin_put(&handles, (uintptr_t)h, size, (uint64_t)fd)) {
            if (fd >= 0)
                close(fd);
            standin_uncharge(&budget, size);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (handle)
        *handle = rc == CUDA_SUCCESS ? h : 0;
    atomic_fetch_add(rc == CUDA_SUCCESS ? &n_create : &n_failed, 1);
    standin_trace("cuda cuMemCreate %zu %d", size, rc);
    return rc;
}

EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    struct standin_block b;
    CUresult rc = CUDA_SUCCESS;
    standin_latency();
    if (!standin_find(&handles, (uintptr_t)handle, 1, &b))
        rc = CUDA_ERROR_INVALID_VALUE;
    else {
        close((int)b.aux);          /* pages still mapped stay until cuMemUnmap */
        standin_uncharge(&budget, b.size);
        atomic_fetch_add(&n_release, 1);
    }
    standin_trace("cuda cuMemRelease %zu %d", rc == CUDA_SUCCESS ? b.size : 0, rc);
    return rc;
}

EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                    CUdeviceptr addr, unsigned long long flags)
{
    CUresult rc = CUDA_SUCCESS;
    void *p = MAP_FAILED;
    (void)alignment;   /* page alignment is all the stand-in gives */
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!ptr || flags != 0 || size == 0 || size % STANDIN_CU_GRANULARITY)
        rc = CUDA_ERROR_INVALID_VALUE;
    else {
        p = mmap((void *)(uintptr_t)addr, size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        else if (!standin_put(&reserves, (uintptr_t)p, size, 0)) {
            munmap(p, size);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (ptr)
        *ptr = rc == CUDA_SUCCESS ? (CUdeviceptr)(uintptr_t)p : 0;
    standin_trace("cuda cuMemAddressReserve %zu %d", size, rc);
    return rc;
}

EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    struct standin_block b;
    CUresult rc = CUDA_SUCCESS;
    if (!standin_find(&reserves, (uintptr_t)ptr, 0, &b) || b.size != size)
        rc = CUDA_ERROR_INVALID_VALUE;
    else {
        standin_find(&reserves, (uintptr_t)ptr, 1, NULL);
        munmap((void *)(uintptr_t)ptr, size);
    }
    standin_trace("cuda cuMemAddressFree %zu %d", size, rc);
    return rc;
}

EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                         CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    struct standin_block h;
    CUresult rc = CUDA_SUCCESS;
    if (flags != 0 || size == 0 || size % STANDIN_CU_GRANULARITY
        || !standin_find(&handles, (uintptr_t)handle, 0, &h) || offset + size > h.size
        || !standin_find_range(&reserves, (uintptr_t)ptr, size, NULL))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (mmap((void *)(uintptr_t)ptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                  (int)h.aux, (off_t)offset) == MAP_FAILED)
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    else
        standin_put(&mappings, (uintptr_t)ptr, size, handle);
    standin_trace("cuda cuMemMap %zu %d", size, rc);
    return rc;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    struct standin_block m;
    CUresult rc = CUDA_SUCCESS;
    if (!standin_find(&mappings, (uintptr_t)ptr, 0, &m) || m.size != size)
        rc = CUDA_ERROR_INVALID_VALUE;
    else {
        standin_find(&mappings, (uintptr_t)ptr, 1, NULL);
        mmap((void *)(uintptr_t)ptr, size, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    }
    standin_trace("cuda cuMemUnmap %zu %d", size, rc);
    return rc;
}

/* ---- memory of others: registered host memory -------------------------------------
 * The range must be mapped (else CUDA_ERROR_INVALID_VALUE here) and share no byte
 * with a registered one; unregistering takes the address registered. */
static CUresult host_register(const char *name, void *p, size_t bytesize, unsigned int Flags)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = (uintptr_t)p & ~(page - 1);
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!p || bytesize == 0 || Flags > 0xfu   /* PORTABLE | DEVICEMAP | IOMEMORY | READ_ONLY */
             || msync((void *)start, (uintptr_t)p + bytesize - start, MS_ASYNC) != 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (standin_overlaps(&registered, (uintptr_t)p, bytesize))
        rc = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    else if (!standin_put(&registered, (uintptr_t)p, bytesize, 0))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    standin_trace("cuda %s %zu %d", name, bytesize, rc);
    return rc;
}

EXPORT CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
    return host_register("cuMemHostRegister_v2", p, bytesize, Flags);
}

EXPORT CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags)
{
    return host_register("cuMemHostRegister", p, bytesize, Flags);
}

EXPORT CUresult cuMemHostUnregister(void *p)
{
    struct standin_block b = {0, 0, 0};
    CUresult rc = !atomic_load(&initialized) ? CUDA_ERROR_NOT_INITIALIZED
                  : standin_find(&registered, (uintptr_t)p, 1, &b)
                      ? CUDA_SUCCESS : CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
    standin_trace("cuda cuMemHostUnregister %zu %d", b.size, rc);
    return rc;
}

/* ---- memory of others: IPC ------------------------------------------------------------
 * Exporting moves a cuMemAlloc block, its address and contents kept, into a memfd
 * that the handle names by the exporter's pid and descriptor; another process maps
 * it through /proc/<pid>/fd.  A handle opened again in a process gives the same
 * address and one more count; each close drops one, the last unmaps. */
struct ipc_handle {   /* what the 64 bytes of a CUipcMemHandle hold here */
    char magic[8];
    int pid, fd;
    CUdeviceptr base;   /* the block in the exporter: which allocation */
    size_t size;
};
_Static_assert(sizeof(struct ipc_handle) <= CU_IPC_HANDLE_SIZE, "CUipcMemHandle");
static const char ipc_magic[8] = "standin";

#define IPC_OPENS 64
static struct ipc_open {
    CUdeviceptr ptr;   /* 0: a free slot */
    size_t size;
    int pid;
    CUdeviceptr base;
    unsigned refs;
} ipc_opens[IPC_OPENS];
static pthread_mutex_t ipc_lock = PTHREAD_MUTEX_INITIALIZER;

/* The block's contents into a new memfd, then the memfd mapped over the block. */
static int export_block(CUdeviceptr dptr, size_t size)
{
    int fd = memfd_create("standin-ipc", MFD_CLOEXEC);
    size_t done = 0;
    while (fd >= 0 && done < size) {
        ssize_t n = write(fd, (const char *)(uintptr_t)dptr + done, size - done);
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    if (fd >= 0 && (done < size
                    || mmap((void *)(uintptr_t)dptr, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED
                    || !standin_put(&exported, (uintptr_t)dptr, size, (uint64_t)fd))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
    struct standin_block b, e;
    CUresult rc = CUDA_SUCCESS;
    int fd = -1;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!pHandle || !standin_find(&blocks, (uintptr_t)dptr, 0, &b) || b.aux != KIND_ALLOC)
        rc = CUDA_ERROR_INVALID_VALUE;   /* not the base of a cuMemAlloc block */
    else if (standin_find(&exported, (uintptr_t)dptr, 0, &e))
        fd = (int)e.aux;   /* exported already: the same handle */
    else if ((fd = export_block(dptr, b.size)) < 0)
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        struct ipc_handle h = {{0}, (int)getpid(), fd, dptr, b.size};
        memcpy(h.magic, ipc_magic, sizeof h.magic);
        memset(pHandle, 0, sizeof *pHandle);
        memcpy(pHandle->reserved, &h, sizeof h);
    }
    standin_trace("cuda cuIpcGetMemHandle %zu %d", rc == CUDA_SUCCESS ? b.size : 0, rc);
    return rc;
}

/* A new mapping of the exporter's memfd. */
static CUresult map_exported(const struct ipc_handle *h, CUdeviceptr *ptr)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d/fd/%d", h->pid, h->fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || (size_t)st.st_size < h->size) {
        if (fd >= 0)
            close(fd);
        return CUDA_ERROR_INVALID_HANDLE;   /* the exporter, or its allocation, is gone */
    }
    void *p = mmap(NULL, h->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return CUDA_ERROR_MAP_FAILED;
    *ptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

static CUresult ipc_open(const char *name, CUdeviceptr *pdptr, CUipcMemHandle handle,
                         unsigned int Flags)
{
    struct ipc_handle h;
    memcpy(&h, handle.reserved, sizeof h);
    CUdeviceptr ptr = 0, mapped;
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!pdptr || (Flags & ~CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS))
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (memcmp(h.magic, ipc_magic, sizeof h.magic) != 0)
        rc = CUDA_ERROR_INVALID_HANDLE;
    else {
        pthread_mutex_lock(&ipc_lock);
        struct ipc_open *o = NULL, *free_slot = NULL;
        for (int i = 0; i < IPC_OPENS; i++) {
            struct ipc_open *s = &ipc_opens[i];
            if (s->ptr && s->pid == h.pid && s->base == h.base)
                o = s;
            else if (!s->ptr && !free_slot)
                free_slot = s;
        }
        if (o)
            o->refs++;
        else if (!free_slot)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        else if ((rc = map_exported(&h, &mapped)) == CUDA_SUCCESS) {
            o = free_slot;
            *o = (struct ipc_open){mapped, h.size, h.pid, h.base, 1};
        }
        ptr = o ? o->ptr : 0;
        pthread_mutex_unlock(&ipc_lock);
    }
    if (pdptr)
        *pdptr = ptr;
    standin_trace("cuda %s %zu %d", name, rc == CUDA_SUCCESS ? h.size : 0, rc);
    return rc;
}

EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle,
                                      unsigned int Flags)
{
    return ipc_open("cuIpcOpenMemHandle_v2", pdptr, handle, Flags);
}

EXPORT CUresult cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    return ipc_open("cuIpcOpenMemHandle", pdptr, handle, Flags);
}

EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    CUresult rc = CUDA_ERROR_INVALID_VALUE;
    size_t size = 0;
    pthread_mutex_lock(&ipc_lock);
    for (int i = 0; i < IPC_OPENS && rc != CUDA_SUCCESS; i++) {
        struct ipc_open *o = &ipc_opens[i];
        if (dptr == 0 || o->ptr != dptr)
            continue;
        rc = CUDA_SUCCESS;
        size = o->size;
        if (--o->refs == 0) {
            munmap((void *)(uintptr_t)o->ptr, o->size);
            o->ptr = 0;
        }
    }
    pthread_mutex_unlock(&ipc_lock);
    standin_trace("cuda cuIpcCloseMemHandle %zu %d", size, rc);
    return rc;
}

/* The allocation holding dptr: a device block, or an opened handle's mapping. */
EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    struct standin_block b = {0, 0, 0};
    CUresult rc = CUDA_ERROR_NOT_FOUND;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (standin_find_range(&blocks, (uintptr_t)dptr, 1, &b) && (BIT((int)b.aux) & POINTER_KINDS))
        rc = CUDA_SUCCESS;
    else {
        pthread_mutex_lock(&ipc_lock);
        for (int i = 0; i < IPC_OPENS && rc != CUDA_SUCCESS; i++) {
            const struct ipc_open *o = &ipc_opens[i];
            if (o->ptr && dptr >= o->ptr && dptr < o->ptr + o->size) {
                b = (struct standin_block){(uintptr_t)o->ptr, o->size, 0};
                rc = CUDA_SUCCESS;
            }
        }
        pthread_mutex_unlock(&ipc_lock);
    }
    if (rc == CUDA_SUCCESS && pbase)
        *pbase = (CUdeviceptr)b.key;
    if (rc == CUDA_SUCCESS && psize)
        *psize = b.size;
    standin_trace("cuda cuMemGetAddressRange_v2 %zu %d", rc == CUDA_SUCCESS ? b.size : 0, rc);
    return rc;
}

/* ---- copies and sets ------------------------------------------------------------ */
/* Whether [p, p + n) lies in one device block (any allocation but arrays). */
static int in_block(uintptr_t p, size_t n)
{
    struct standin_block b;
    return standin_find_range(&blocks, p, n, &b) && !(BIT((int)b.aux) & HOST_KINDS);
}

static CUresult copy(const char *name, void *dst, const void *src, size_t n, int device_dst,
                     int device_src)
{
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if ((device_dst && !in_block((uintptr_t)dst, n)) ||
             (device_src && !in_block((uintptr_t)src, n)) || !dst || !src)
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        memmove(dst, src, n);
    standin_trace("cuda %s %zu %d", name, n, rc);
    return rc;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    return copy("cuMemcpyHtoD_v2", (void *)(uintptr_t)dst, src, n, 1, 0);
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    return copy("cuMemcpyDtoH_v2", dst, (const void *)(uintptr_t)src, n, 0, 1);
}

EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return copy("cuMemcpyDtoD_v2", (void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n, 1, 1);
}

static CUresult set_d32(const char *name, CUdeviceptr dst, unsigned int value, size_t n)
{
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (n > SIZE_MAX / 4 || !in_block((uintptr_t)dst, 4 * n))
        rc = CUDA_ERROR_INVALID_VALUE;
    else
        for (size_t i = 0; i < n; i++)
            ((unsigned int *)(uintptr_t)dst)[i] = value;
    standin_trace("cuda %s %zu %d", name, 4 * n, rc);
    return rc;
}

EXPORT CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int value, size_t n)
{
    return set_d32("cuMemsetD32_v2", dst, value, n);
}

/* The per-thread default stream's forms: the same here, where nothing is a stream. */
EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void *src, size_t n)
{
    return copy("cuMemcpyHtoD_v2_ptds", (void *)(uintptr_t)dst, src, n, 1, 0);
}

EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dst, CUdeviceptr src, size_t n)
{
    return copy("cuMemcpyDtoH_v2_ptds", dst, (const void *)(uintptr_t)src, n, 0, 1);
}

EXPORT CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return copy("cuMemcpyDtoD_v2_ptds", (void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n,
                1, 1);
}

EXPORT CUresult cuMemsetD32_v2_ptds(CUdeviceptr dst, unsigned int value, size_t n)
{
    return set_d32("cuMemsetD32_v2_ptds", dst, value, n);
}

/* ---- entry points ----------------------------------------------------------- */
/* cuGetProcAddress_v2 and cuGetProcAddress are defined below; declared for the table. */
struct entry {
    const char *name;      /* the base name a caller asks for */
    int min_version;       /* the CUDA version that introduced it */
    int per_thread;        /* the variant for CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM */
    void *fn;
    const char *fn_name;   /* what the caller gets, for the trace */
};

#define ENTRY(name, version, fn) { name, version, 0, (void *)fn, #fn }
#define PER_THREAD(name, version, fn) { name, version, 1, (void *)fn, #fn }
static const struct entry entries[] = {   /* of each name, the newest first */
    ENTRY("cuInit", 2000, cuInit),
    ENTRY("cuDriverGetVersion", 2020, cuDriverGetVersion),
    ENTRY("cuGetExportTable", 3000, cuGetExportTable),
    ENTRY("cuGetProcAddress", 12000, cuGetProcAddress_v2),
    ENTRY("cuGetProcAddress", 11030, cuGetProcAddress),
    ENTRY("cuMemAlloc", 3020, cuMemAlloc_v2),
    ENTRY("cuMemAllocPitch", 3020, cuMemAllocPitch_v2),
    ENTRY("cuMemFree", 3020, cuMemFree_v2),
    PER_THREAD("cuMemAllocAsync", 11020, cuMemAllocAsync_ptsz),
    ENTRY("cuMemAllocAsync", 11020, cuMemAllocAsync),
    PER_THREAD("cuMemFreeAsync", 11020, cuMemFreeAsync_ptsz),
    ENTRY("cuMemFreeAsync", 11020, cuMemFreeAsync),
    PER_THREAD("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync_ptsz),
    ENTRY("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync),
    ENTRY("cuMemPoolCreate", 11020, cuMemPoolCreate),
    ENTRY("cuMemPoolDestroy", 11020, cuMemPoolDestroy),
    ENTRY("cuMemAllocManaged", 6000, cuMemAllocManaged),
    ENTRY("cuMemAllocHost", 3020, cuMemAllocHost_v2),
    ENTRY("cuMemHostAlloc", 2020, cuMemHostAlloc),
    ENTRY("cuMemFreeHost", 2000, cuMemFreeHost),
    ENTRY("cuArrayCreate", 3020, cuArrayCreate_v2),
    ENTRY("cuArray3DCreate", 3020, cuArray3DCreate_v2),
    ENTRY("cuArrayDestroy", 2000, cuArrayDestroy),
    ENTRY("cuMipmappedArrayCreate", 5000, cuMipmappedArrayCreate),
    ENTRY("cuMipmappedArrayDestroy", 5000, cuMipmappedArrayDestroy),
    ENTRY("cuGraphCreate", 10000, cuGraphCreate),
    ENTRY("cuGraphDestroy", 10000, cuGraphDestroy),
    ENTRY("cuGraphAddMemAllocNode", 11040, cuGraphAddMemAllocNode),
    ENTRY("cuGraphAddMemFreeNode", 11040, cuGraphAddMemFreeNode),
    ENTRY("cuMemCreate", 10020, cuMemCreate),
    ENTRY("cuMemRelease", 10020, cuMemRelease),
    ENTRY("cuMemAddressReserve", 10020, cuMemAddressReserve),
    ENTRY("cuMemAddressFree", 10020, cuMemAddressFree),
    ENTRY("cuMemMap", 10020, cuMemMap),
    ENTRY("cuMemUnmap", 10020, cuMemUnmap),
    ENTRY("cuMemHostRegister", 6050, cuMemHostRegister_v2),
    ENTRY("cuMemHostRegister", 4000, cuMemHostRegister),
    ENTRY("cuMemHostUnregister", 4000, cuMemHostUnregister),
    ENTRY("cuIpcGetMemHandle", 4010, cuIpcGetMemHandle),
    ENTRY("cuIpcOpenMemHandle", 11000, cuIpcOpenMemHandle_v2),
    ENTRY("cuIpcOpenMemHandle", 4010, cuIpcOpenMemHandle),
    ENTRY("cuIpcCloseMemHandle", 4010, cuIpcCloseMemHandle),
    ENTRY("cuMemGetAddressRange", 3020, cuMemGetAddressRange_v2),
    PER_THREAD("cuMemcpyHtoD", 7000, cuMemcpyHtoD_v2_ptds),
    ENTRY("cuMemcpyHtoD", 3020, cuMemcpyHtoD_v2),
    PER_THREAD("cuMemcpyDtoH", 7000, cuMemcpyDtoH_v2_ptds),
    ENTRY("cuMemcpyDtoH", 3020, cuMemcpyDtoH_v2),
    PER_THREAD("cuMemcpyDtoD", 7000, cuMemcpyDtoD_v2_ptds),
    ENTRY("cuMemcpyDtoD", 3020, cuMemcpyDtoD_v2),
    PER_THREAD("cuMemsetD32", 7000, cuMemsetD32_v2_ptds),
    ENTRY("cuMemsetD32", 3020, cuMemsetD32_v2),
    ENTRY("cuModuleLoadData", 2000, cuModuleLoadData),
    ENTRY("cuModuleUnload", 2000, cuModuleUnload),
    ENTRY("cuModuleGetFunction", 2000, cuModuleGetFunction),
    ENTRY("cuFuncGetParamInfo", 12040, cuFuncGetParamInfo),
    PER_THREAD("cuLaunchKernel", 7000, cuLaunchKernel_ptsz),
    ENTRY("cuLaunchKernel", 4000, cuLaunchKernel),
};

/* The newest variant of `symbol` not newer than cudaVersion; for the per-thread
 * default stream its _ptsz variant where it has one, else the same. */
static CUresult get_proc(const char *via, const char *symbol, void **pfn, int cudaVersion,
                         cuuint64_t flags, int *status)
{
    int st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    const struct entry *hit = NULL;
    int per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    atomic_fetch_add(&n_getproc, 1);
    if (!symbol || !pfn) {
        standin_trace("cuda %s (null) %d %llu -> invalid", via, cudaVersion, flags);
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (size_t i = 0; i < sizeof entries / sizeof entries[0] && !hit; i++) {
        if (strcmp(entries[i].name, symbol) != 0 || (entries[i].per_thread && !per_thread))
            continue;
        if (cudaVersion >= entries[i].min_version) {
            hit = &entries[i];
            st = CU_GET_PROC_ADDRESS_SUCCESS;
        } else
            st = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
    }
    *pfn = hit ? hit->fn : NULL;
    if (status)
        *status = st;
    standin_trace("cuda %s %s %d %llu -> %s", via, symbol, cudaVersion, flags,
                  hit ? hit->fn_name : "-");
    return hit ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                    cuuint64_t flags, int *symbolStatus)
{
    return get_proc("cuGetProcAddress_v2", symbol, pfn, cudaVersion, flags, symbolStatus);
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                 cuuint64_t flags)
{
    return get_proc("cuGetProcAddress", symbol, pfn, cudaVersion, flags, NULL);
}

__attribute__((destructor))
static void report(void)
{
    const char *r = getenv("STANDIN_REPORT");
    if (!r || !*r || *r == '0')
        return;
    char line[256];
    int n = snprintf(line, sizeof line,
                     "standin libcuda: live=%llu peak=%llu allocs=%llu frees=%llu creates=%llu "
                     "releases=%llu failed=%llu getproc=%llu\n",
                     atomic_load(&budget.live), atomic_load(&budget.peak),
                     atomic_load(&n_alloc), atomic_load(&n_free), atomic_load(&n_create),
                     atomic_load(&n_release), atomic_load(&n_failed), atomic_load(&n_getproc));
    ssize_t unused = write(2, line, (size_t)n);
    (void)unused;
}
