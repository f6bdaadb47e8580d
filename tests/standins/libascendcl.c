/* libascendcl.so stand-in: ACL's memory calls.  As the real ACL does, it gets
 * device memory from the HAL: libascend_hal.so is DT_NEEDED (RUNPATH $ORIGIN)
 * and halMemAlloc / halMemFree are ordinary imported calls through the PLT, so
 * a preloaded halMemAlloc sees them.
 *   aclrtMalloc(p, size, policy)  -> halMemAlloc(p, size, HAL_FLAG(0, MEM_DEV_TYPE, 3))
 *   aclrtMallocHost(p, size)      -> halMemAlloc(p, size, HAL_FLAG(0, MEM_HOST_TYPE, 3))
 *   aclrtFree / aclrtFreeHost     -> halMemFree
 * (device 0, module id STANDIN_ACL_MODULE_ID = 3).
 *   aclrtMemcpy / aclrtMemset     within destMax, a device end inside one block
 *   aclrtLaunchKernel             its arguments in a device block of argsSize
 *                                 bytes (as the real one's), read by nobody  A HAL out-of-memory comes
 * back as ACL_ERROR_RT_MEMORY_ALLOCATION; size 0, a NULL out-pointer or an
 * unknown policy as ACL_ERROR_INVALID_PARAM; freeing an unknown pointer as
 * ACL_ERROR_RT_MEMORY_FREE.  Each function checks the pointer belongs to its
 * own kind (device or host).
 * STANDIN_TRACE=<file>: "acl <function> <size> <rc>". */
#define _GNU_SOURCE
#include "standin_util.h"

#include "standin_acl.h"

static struct standin_table blocks = STANDIN_TABLE_INIT;   /* ptr -> size, host? */

static aclError acl_alloc(const char *name, void **p, size_t size, int host)
{
    aclError rc = ACL_SUCCESS;
    void *q = NULL;
    if (!p || size == 0)
        rc = ACL_ERROR_INVALID_PARAM;
    else {
        unsigned long long flag = HAL_FLAG(0, host ? MEM_HOST_TYPE : MEM_DEV_TYPE,
                                           STANDIN_ACL_MODULE_ID);
        drvError_t drc = halMemAlloc(&q, size, flag);
        if (drc != DRV_ERROR_NONE) {
            q = NULL;
            rc = drc == DRV_ERROR_OUT_OF_MEMORY ? ACL_ERROR_RT_MEMORY_ALLOCATION
                                                : ACL_ERROR_INVALID_PARAM;
        } else if (!standin_put(&blocks, (uintptr_t)q, size, (uint64_t)host)) {
            halMemFree(q);
            q = NULL;
            rc = ACL_ERROR_RT_MEMORY_ALLOCATION;
        }
    }
    if (p)
        *p = q;
    standin_trace("acl %s %zu %d", name, size, rc);
    return rc;
}

static aclError acl_free(const char *name, void *p, int host)
{
    struct standin_block b;
    aclError rc = ACL_SUCCESS;
    if (!p)
        rc = ACL_ERROR_INVALID_PARAM;
    else if (!standin_find(&blocks, (uintptr_t)p, 0, &b) || (int)b.aux != host)
        rc = ACL_ERROR_RT_MEMORY_FREE;
    else {
        standin_find(&blocks, (uintptr_t)p, 1, NULL);
        if (halMemFree(p) != DRV_ERROR_NONE)
            rc = ACL_ERROR_RT_MEMORY_FREE;
    }
    standin_trace("acl %s %zu %d", name, rc == ACL_SUCCESS ? b.size : 0, rc);
    return rc;
}

EXPORT aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy)
{
    if ((unsigned)policy > ACL_MEM_MALLOC_NORMAL_ONLY) {
        standin_trace("acl aclrtMalloc %zu %d", size, ACL_ERROR_INVALID_PARAM);
        return ACL_ERROR_INVALID_PARAM;
    }
    return acl_alloc("aclrtMalloc", devPtr, size, 0);
}

EXPORT aclError aclrtFree(void *devPtr)
{
    return acl_free("aclrtFree", devPtr, 0);
}

EXPORT aclError aclrtMallocHost(void **hostPtr, size_t size)
{
    return acl_alloc("aclrtMallocHost", hostPtr, size, 1);
}

EXPORT aclError aclrtFreeHost(void *hostPtr)
{
    return acl_free("aclrtFreeHost", hostPtr, 1);
}

/* Whether [p, p + n) is inside one block of ACL's. */
static int in_block(const void *p, size_t n)
{
    return p && standin_find_range(&blocks, (uintptr_t)p, n, NULL);
}

EXPORT aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, int kind)
{
    aclError rc = ACL_SUCCESS;
    if (!dst || !src || count > destMax || (!in_block(dst, count) && !in_block(src, count)))
        rc = ACL_ERROR_INVALID_PARAM;
    else
        memmove(dst, src, count);
    standin_trace("acl aclrtMemcpy %zu %d %d", count, kind, rc);
    return rc;
}

EXPORT aclError aclrtMemset(void *devPtr, size_t maxCount, int value, size_t count)
{
    aclError rc = ACL_SUCCESS;
    if (count > maxCount || !in_block(devPtr, count))
        rc = ACL_ERROR_INVALID_PARAM;
    else
        memset(devPtr, value, count);
    standin_trace("acl aclrtMemset %zu %d", count, rc);
    return rc;
}

EXPORT aclError aclrtLaunchKernel(void *funcHandle, unsigned blockDim, const void *argsData,
                                  size_t argsSize, void *stream)
{
    (void)blockDim, (void)stream;
    aclError rc = funcHandle && in_block(argsData, argsSize) ? ACL_SUCCESS
                                                             : ACL_ERROR_INVALID_PARAM;
    standin_trace("acl aclrtLaunchKernel %zu %d", argsSize, rc);
    return rc;
}
