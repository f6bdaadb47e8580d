/* libascend_hal.so stand-in: the Ascend HAL's device-memory calls, backed by
 * host mmap.
 *
 * The exported wrappers halMemAlloc / halMemFree forward to halMemAllocInner /
 * halMemFreeInner, as the real driver's do.  Decision: that internal call does
 * NOT go through the PLT.  It goes through a hidden alias of the Inner function
 * (a direct call bound at link time), so
 *   - a preloaded halMemAllocInner never sees calls made through halMemAlloc;
 *   - a halMemAlloc hook that forwards to halMemAllocInner (dlsym'd, the last
 *     fallback ARCHITECTURE.md names) runs the real allocation exactly once.
 * Both exported pairs work on the same table, so memory from either one may be
 * freed with either free.
 *
 * flag: bits 0-9 device id (< STANDIN_HAL_MAX_DEVICES), 10-13 memory type
 * (0 SVM, 1 DEV, 2 HOST, 3 DVPP; others DRV_ERROR_INVALID_MALLOC_TYPE), 56-63
 * module id (any).  STANDIN_DEVICE_MEMORY=<bytes> caps the live bytes of all
 * devices together (DRV_ERROR_OUT_OF_MEMORY beyond it).
 * STANDIN_TRACE=<file>: "hal <function> <size> <device> <type> <module> <rc>". */
#define _GNU_SOURCE
#include "standin_util.h"

#include "standin_acl.h"

static struct standin_table blocks = STANDIN_TABLE_INIT;   /* ptr -> size, flag */
static struct standin_budget budget;

static drvError_t inner_alloc(const char *name, void **pp, unsigned long long size,
                              unsigned long long flag)
{
    drvError_t rc = DRV_ERROR_NONE;
    void *p = NULL;
    standin_latency();
    if (!pp || size == 0)
        rc = DRV_ERROR_INVALID_VALUE;
    else if (HAL_FLAG_DEVICE(flag) >= STANDIN_HAL_MAX_DEVICES)
        rc = DRV_ERROR_INVALID_DEVICE;
    else if (HAL_FLAG_MEMTYPE(flag) > MEM_DVPP_TYPE)
        rc = DRV_ERROR_INVALID_MALLOC_TYPE;
    else if (!standin_charge(&budget, size))
        rc = DRV_ERROR_OUT_OF_MEMORY;
    else if (!(p = standin_map((size_t)size)) || !standin_put(&blocks, (uintptr_t)p, size, flag)) {
        if (p)
            munmap(p, (size_t)size);
        p = NULL;
        standin_uncharge(&budget, size);
        rc = DRV_ERROR_OUT_OF_MEMORY;
    }
    if (pp)
        *pp = p;
    standin_trace("hal %s %llu %u %u %u %d", name, size, HAL_FLAG_DEVICE(flag),
                  HAL_FLAG_MEMTYPE(flag), HAL_FLAG_MODULE(flag), rc);
    return rc;
}

static drvError_t inner_free(const char *name, void *pp)
{
    struct standin_block b;
    drvError_t rc = DRV_ERROR_NONE;
    standin_latency();
    if (!standin_find(&blocks, (uintptr_t)pp, 1, &b))
        rc = DRV_ERROR_INVALID_VALUE;
    else {
        munmap(pp, b.size);
        standin_uncharge(&budget, b.size);
    }
    standin_trace("hal %s %zu %d", name, rc == DRV_ERROR_NONE ? b.size : 0, rc);
    return rc;
}

EXPORT drvError_t halMemAllocInner(void **pp, unsigned long long size, unsigned long long flag)
{
    return inner_alloc("halMemAllocInner", pp, size, flag);
}

EXPORT drvError_t halMemFreeInner(void *pp)
{
    return inner_free("halMemFreeInner", pp);
}

/* Hidden aliases: calls through them bind inside this library, never via the PLT. */
extern drvError_t hal_alloc_inner_local(void **, unsigned long long, unsigned long long)
    __attribute__((alias("halMemAllocInner"), visibility("hidden")));
extern drvError_t hal_free_inner_local(void *)
    __attribute__((alias("halMemFreeInner"), visibility("hidden")));

EXPORT drvError_t halMemAlloc(void **pp, unsigned long long size, unsigned long long flag)
{
    standin_trace("hal halMemAlloc -> halMemAllocInner");
    return hal_alloc_inner_local(pp, size, flag);
}

EXPORT drvError_t halMemFree(void *pp)
{
    standin_trace("hal halMemFree -> halMemFreeInner");
    return hal_free_inner_local(pp);
}
