/* libframework.so: a framework stand-in in the role of PyTorch's libc10_cuda.
 * Linked against libcudart.so.12 (DT_NEEDED, RUNPATH $ORIGIN); programs dlopen
 * it RTLD_LOCAL or RTLD_GLOBAL and call it through dlsym.  Each fw_* function
 * is one runtime path:
 *   fw_alloc_segment / fw_free_segment   cudaMalloc / cudaFree (caching-allocator segments)
 *   fw_alloc_async / fw_free_async       cudaMallocAsync / cudaFreeAsync
 *   fw_alloc_managed                     cudaMallocManaged (freed with fw_free_segment)
 *   fw_alloc_pitch                       cudaMallocPitch   (freed with fw_free_segment)
 *   fw_malloc_host                       cudaMallocHost    (freed with fw_free_pinned)
 *   fw_pinned / fw_free_pinned           cudaHostAlloc / cudaFreeHost
 *   fw_expandable / fw_expandable_free   the driver's virtual memory API, as PyTorch
 *       expandable segments use it: cuMemCreate and cuMemRelease fetched with
 *       cudaGetDriverEntryPoint; cuMemAddressReserve, cuMemAddressFree, cuMemMap,
 *       cuMemUnmap with cudaGetDriverEntryPointByVersion(..., 12000, ...).
 *       A segment of N x 2 MiB: one reservation, N cuMemCreate handles of 2 MiB,
 *       each mapped; freeing unmaps each chunk, releases each handle, frees the
 *       reservation (handles are kept until the segment is freed, as PyTorch does). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "standin_cuda.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *fw_alloc_segment(size_t size)
{
    void *p = NULL;
    return cudaMalloc(&p, size) == cudaSuccess ? p : NULL;
}

EXPORT int fw_free_segment(void *p)
{
    return cudaFree(p);
}

EXPORT void *fw_alloc_async(size_t size, void *stream)
{
    void *p = NULL;
    return cudaMallocAsync(&p, size, stream) == cudaSuccess ? p : NULL;
}

EXPORT int fw_free_async(void *p, void *stream)
{
    return cudaFreeAsync(p, stream);
}

EXPORT void *fw_alloc_managed(size_t size)
{
    void *p = NULL;
    return cudaMallocManaged(&p, size, cudaMemAttachGlobal) == cudaSuccess ? p : NULL;
}

EXPORT void *fw_alloc_pitch(size_t width, size_t height, size_t *pitch)
{
    void *p = NULL;
    return cudaMallocPitch(&p, pitch, width, height) == cudaSuccess ? p : NULL;
}

EXPORT void *fw_malloc_host(size_t size)
{
    void *p = NULL;
    return cudaMallocHost(&p, size) == cudaSuccess ? p : NULL;
}

EXPORT void *fw_pinned(size_t size)
{
    void *p = NULL;
    return cudaHostAlloc(&p, size, cudaHostAllocDefault) == cudaSuccess ? p : NULL;
}

EXPORT int fw_free_pinned(void *p)
{
    return cudaFreeHost(p);
}

/* The last runtime error (and clears it), for callers that got NULL. */
EXPORT int fw_last_error(void)
{
    return cudaGetLastError();
}

/* ---- expandable segments ------------------------------------------------------ */
#define MAX_SEGMENTS 16
#define MAX_CHUNKS 64

struct segment {
    CUdeviceptr va;
    size_t size;
    unsigned n;
    CUmemGenericAllocationHandle handle[MAX_CHUNKS];
};

static pthread_mutex_t seg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct segment segments[MAX_SEGMENTS];

static pthread_once_t vmm_once = PTHREAD_ONCE_INIT;
static int vmm_ok;
static PFN_cuMemCreate p_create;
static PFN_cuMemRelease p_release;
static PFN_cuMemAddressReserve p_reserve;
static PFN_cuMemAddressFree p_address_free;
static PFN_cuMemMap p_map;
static PFN_cuMemUnmap p_unmap;

static int entry(const char *name, void **slot, int by_version)
{
    int status = -1;
    cudaError_t err = by_version
        ? cudaGetDriverEntryPointByVersion(name, slot, 12000, cudaEnableDefault, &status)
        : cudaGetDriverEntryPoint(name, slot, cudaEnableDefault, &status);
    return err == cudaSuccess && status == cudaDriverEntryPointSuccess && *slot;
}

static void vmm_init(void)
{
    vmm_ok = entry("cuMemCreate", (void **)&p_create, 0)
          && entry("cuMemRelease", (void **)&p_release, 0)
          && entry("cuMemAddressReserve", (void **)&p_reserve, 1)
          && entry("cuMemAddressFree", (void **)&p_address_free, 1)
          && entry("cuMemMap", (void **)&p_map, 1)
          && entry("cuMemUnmap", (void **)&p_unmap, 1);
}

static void unmap_segment(struct segment *s, unsigned mapped)
{
    for (unsigned i = 0; i < s->n; i++) {
        if (i < mapped)
            p_unmap(s->va + i * STANDIN_CU_GRANULARITY, STANDIN_CU_GRANULARITY);
        p_release(s->handle[i]);
    }
    p_address_free(s->va, s->size);
}

/* size: a multiple of 2 MiB.  NULL when out of memory (or a bad size). */
EXPORT void *fw_expandable(size_t size)
{
    pthread_once(&vmm_once, vmm_init);
    if (!vmm_ok || size == 0 || size % STANDIN_CU_GRANULARITY
        || size / STANDIN_CU_GRANULARITY > MAX_CHUNKS)
        return NULL;
    pthread_mutex_lock(&seg_lock);
    struct segment *s = NULL;
    for (unsigned i = 0; i < MAX_SEGMENTS && !s; i++)
        if (segments[i].va == 0)
            s = &segments[i];
    void *result = NULL;
    if (s && p_reserve(&s->va, size, 0, 0, 0) == CUDA_SUCCESS) {
        CUmemAllocationProp prop;
        memset(&prop, 0, sizeof prop);
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id = 0;
        s->size = size;
        s->n = 0;
        unsigned want = (unsigned)(size / STANDIN_CU_GRANULARITY), mapped = 0;
        for (; s->n < want; s->n++)
            if (p_create(&s->handle[s->n], STANDIN_CU_GRANULARITY, &prop, 0) != CUDA_SUCCESS)
                break;
        if (s->n == want)
            for (; mapped < want; mapped++)
                if (p_map(s->va + mapped * STANDIN_CU_GRANULARITY, STANDIN_CU_GRANULARITY, 0,
                          s->handle[mapped], 0) != CUDA_SUCCESS)
                    break;
        if (mapped == want)
            result = (void *)(uintptr_t)s->va;
        else {
            unmap_segment(s, mapped);
            s->va = 0;
        }
    }
    pthread_mutex_unlock(&seg_lock);
    return result;
}

EXPORT int fw_expandable_free(void *va)
{
    int rc = cudaErrorInvalidValue;
    pthread_mutex_lock(&seg_lock);
    for (unsigned i = 0; i < MAX_SEGMENTS; i++) {
        if (va && segments[i].va == (CUdeviceptr)(uintptr_t)va) {
            unmap_segment(&segments[i], segments[i].n);
            segments[i].va = 0;
            rc = cudaSuccess;
            break;
        }
    }
    pthread_mutex_unlock(&seg_lock);
    return rc;
}
