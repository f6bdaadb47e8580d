/* Declarations of the Ascend ACL and HAL subset the stand-ins export
 * (tests/standins/libascendcl.c, libascend_hal.c), with the real names,
 * signatures and error numbers.  No NPU: device memory is host mmap. */
#ifndef STANDIN_ACL_H
#define STANDIN_ACL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- HAL (libascend_hal.so) ---------------------------------------------- */
typedef int drvError_t;
enum {
    DRV_ERROR_NONE = 0,
    DRV_ERROR_INVALID_DEVICE = 2,
    DRV_ERROR_INVALID_VALUE = 3,
    DRV_ERROR_INVALID_MALLOC_TYPE = 5,
    DRV_ERROR_OUT_OF_MEMORY = 6,
};

/* flag: bits 0-9 device id, 10-13 memory type, 56-63 module id. */
enum { MEM_SVM_TYPE = 0, MEM_DEV_TYPE = 1, MEM_HOST_TYPE = 2, MEM_DVPP_TYPE = 3 };
#define HAL_FLAG_DEVICE_SHIFT 0
#define HAL_FLAG_MEMTYPE_SHIFT 10
#define HAL_FLAG_MODULE_SHIFT 56
#define HAL_FLAG(device, memtype, module) \
    (((unsigned long long)(device) & 0x3ffull) \
     | (((unsigned long long)(memtype) & 0xfull) << HAL_FLAG_MEMTYPE_SHIFT) \
     | (((unsigned long long)(module) & 0xffull) << HAL_FLAG_MODULE_SHIFT))
#define HAL_FLAG_DEVICE(flag) ((unsigned)((flag) & 0x3ffull))
#define HAL_FLAG_MEMTYPE(flag) ((unsigned)(((flag) >> HAL_FLAG_MEMTYPE_SHIFT) & 0xfull))
#define HAL_FLAG_MODULE(flag) ((unsigned)(((flag) >> HAL_FLAG_MODULE_SHIFT) & 0xffull))
#define STANDIN_HAL_MAX_DEVICES 16

drvError_t halMemAlloc(void **pp, unsigned long long size, unsigned long long flag);
drvError_t halMemFree(void *pp);
drvError_t halMemAllocInner(void **pp, unsigned long long size, unsigned long long flag);
drvError_t halMemFreeInner(void *pp);

/* ---- ACL (libascendcl.so) ------------------------------------------------ */
typedef int aclError;
#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_RT_MEMORY_ALLOCATION 207001
#define ACL_ERROR_RT_MEMORY_FREE 207002
typedef enum aclrtMemMallocPolicy {
    ACL_MEM_MALLOC_HUGE_FIRST = 0,
    ACL_MEM_MALLOC_HUGE_ONLY = 1,
    ACL_MEM_MALLOC_NORMAL_ONLY = 2,
} aclrtMemMallocPolicy;

/* The module id the ACL stand-in puts in the flag of its own halMemAlloc calls
 * (device 0; MEM_DEV_TYPE for aclrtMalloc, MEM_HOST_TYPE for aclrtMallocHost). */
#define STANDIN_ACL_MODULE_ID 3

aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy);
aclError aclrtFree(void *devPtr);
aclError aclrtMallocHost(void **hostPtr, size_t size);
aclError aclrtFreeHost(void *hostPtr);
aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, int kind);
aclError aclrtMemset(void *devPtr, size_t maxCount, int value, size_t count);
aclError aclrtLaunchKernel(void *funcHandle, unsigned blockDim, const void *argsData,
                           size_t argsSize, void *stream);

#ifdef __cplusplus
}
#endif
#endif
