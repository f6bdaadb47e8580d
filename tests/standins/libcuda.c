/* libcuda.so.1 stand-in: the CUDA driver API subset of DESIGN.md §6, backed by
 * host memory.  Built -Wl,-Bsymbolic as the real driver behaves: its own
 * references (the table cuGetProcAddress hands out) bind inside this library,
 * so a preloaded cuMemAlloc_v2 is never what a caller of cuGetProcAddress gets.
 *
 * - cuMemAlloc_v2 / cuMemAllocAsync / cuMemAllocManaged: anonymous mmap.
 * - cuMemCreate: a memfd ("physical memory"), handle = a counter; cuMemMap maps
 *   it MAP_SHARED|MAP_FIXED into a range cuMemAddressReserve reserved
 *   (PROT_NONE); cuMemUnmap puts the PROT_NONE reservation back.
 * - Budget: STANDIN_DEVICE_MEMORY=<bytes> caps the live bytes of cuMemAlloc*,
 *   cuMemAllocManaged and cuMemCreate; beyond it they fail with
 *   CUDA_ERROR_OUT_OF_MEMORY.  Reservations and mappings cost nothing.
 * - Allocation before cuInit fails with CUDA_ERROR_NOT_INITIALIZED.
 * - STANDIN_TRACE=<file>: a line per lookup and per allocation call ("cuda ...").
 * - STANDIN_REPORT=1: at exit, "standin libcuda: ..." totals on stderr. */
#define _GNU_SOURCE
#include "standin_util.h"

#include <sys/mman.h>

#include "standin_cuda.h"

enum { KIND_ALLOC = 1, KIND_ASYNC = 2, KIND_MANAGED = 3 };

static _Atomic int initialized;
static struct standin_table blocks = STANDIN_TABLE_INIT;     /* ptr -> size, kind */
static struct standin_table handles = STANDIN_TABLE_INIT;    /* handle -> size, memfd */
static struct standin_table reserves = STANDIN_TABLE_INIT;   /* va -> size */
static struct standin_table mappings = STANDIN_TABLE_INIT;   /* va -> size, handle */
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

static CUresult alloc_common(const char *name, CUdeviceptr *dptr, size_t size, int kind)
{
    CUresult rc = CUDA_SUCCESS;
    void *p = NULL;
    standin_latency();
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!dptr || size == 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    else if (!standin_charge(&budget, size))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    else if (!(p = standin_map(size)) || !standin_put(&blocks, (uintptr_t)p, size, (uint64_t)kind)) {
        if (p)
            munmap(p, size);
        standin_uncharge(&budget, size);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (dptr)
        *dptr = rc == CUDA_SUCCESS ? (CUdeviceptr)(uintptr_t)p : 0;
    atomic_fetch_add(rc == CUDA_SUCCESS ? &n_alloc : &n_failed, 1);
    standin_trace("cuda %s %zu %d", name, size, rc);
    return rc;
}

static CUresult free_common(const char *name, CUdeviceptr dptr)
{
    struct standin_block b;
    standin_latency();
    CUresult rc = CUDA_SUCCESS;
    if (!atomic_load(&initialized))
        rc = CUDA_ERROR_NOT_INITIALIZED;
    else if (!standin_find(&blocks, (uintptr_t)dptr, 1, &b))
        rc = CUDA_ERROR_INVALID_VALUE;        /* unknown pointer, double free, 0 */
    else {
        munmap((void *)(uintptr_t)dptr, b.size);
        standin_uncharge(&budget, b.size);
        atomic_fetch_add(&n_free, 1);
    }
    standin_trace("cuda %s %zu %d", name, rc == CUDA_SUCCESS ? b.size : 0, rc);
    return rc;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    return alloc_common("cuMemAlloc_v2", dptr, bytesize, KIND_ALLOC);
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    return free_common("cuMemFree_v2", dptr);
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    (void)hStream;
    return alloc_common("cuMemAllocAsync", dptr, bytesize, KIND_ASYNC);
}

EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    (void)hStream;
    return free_common("cuMemFreeAsync", dptr);
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    if (flags != 1u /* CU_MEM_ATTACH_GLOBAL */ && flags != 2u /* CU_MEM_ATTACH_HOST */) {
        standin_trace("cuda cuMemAllocManaged %zu %d", bytesize, CUDA_ERROR_INVALID_VALUE);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return alloc_common("cuMemAllocManaged", dptr, bytesize, KIND_MANAGED);
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

/* ---- entry points ----------------------------------------------------------- */
/* cuGetProcAddress_v2 and cuGetProcAddress are defined below; declared for the table. */
struct entry {
    const char *name;      /* the base name a caller asks for */
    int min_version;       /* the CUDA version that introduced it */
    void *fn;
    const char *fn_name;   /* what the caller gets, for the trace */
};

static const struct entry entries[] = {
    { "cuInit", 2000, (void *)cuInit, "cuInit" },
    { "cuGetProcAddress", 12000, (void *)cuGetProcAddress_v2, "cuGetProcAddress_v2" },
    { "cuGetProcAddress", 11030, (void *)cuGetProcAddress, "cuGetProcAddress" },
    { "cuMemAlloc", 3020, (void *)cuMemAlloc_v2, "cuMemAlloc_v2" },
    { "cuMemFree", 3020, (void *)cuMemFree_v2, "cuMemFree_v2" },
    { "cuMemAllocAsync", 11020, (void *)cuMemAllocAsync, "cuMemAllocAsync" },
    { "cuMemFreeAsync", 11020, (void *)cuMemFreeAsync, "cuMemFreeAsync" },
    { "cuMemAllocManaged", 6000, (void *)cuMemAllocManaged, "cuMemAllocManaged" },
    { "cuMemCreate", 10020, (void *)cuMemCreate, "cuMemCreate" },
    { "cuMemRelease", 10020, (void *)cuMemRelease, "cuMemRelease" },
    { "cuMemAddressReserve", 10020, (void *)cuMemAddressReserve, "cuMemAddressReserve" },
    { "cuMemAddressFree", 10020, (void *)cuMemAddressFree, "cuMemAddressFree" },
    { "cuMemMap", 10020, (void *)cuMemMap, "cuMemMap" },
    { "cuMemUnmap", 10020, (void *)cuMemUnmap, "cuMemUnmap" },
};

static CUresult get_proc(const char *via, const char *symbol, void **pfn, int cudaVersion,
                         int *status)
{
    int st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    const struct entry *hit = NULL;
    atomic_fetch_add(&n_getproc, 1);
    if (!symbol || !pfn) {
        standin_trace("cuda %s (null) %d -> invalid", via, cudaVersion);
        return CUDA_ERROR_INVALID_VALUE;
    }
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        if (strcmp(entries[i].name, symbol) != 0)
            continue;
        if (cudaVersion >= entries[i].min_version) {   /* the newest version that fits */
            hit = &entries[i];
            st = CU_GET_PROC_ADDRESS_SUCCESS;
            break;
        }
        st = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
    }
    *pfn = hit ? hit->fn : NULL;
    if (status)
        *status = st;
    standin_trace("cuda %s %s %d -> %s", via, symbol, cudaVersion, hit ? hit->fn_name : "-");
    return hit ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                    cuuint64_t flags, int *symbolStatus)
{
    (void)flags;
    return get_proc("cuGetProcAddress_v2", symbol, pfn, cudaVersion, symbolStatus);
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                 cuuint64_t flags)
{
    (void)flags;
    return get_proc("cuGetProcAddress", symbol, pfn, cudaVersion, NULL);
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
