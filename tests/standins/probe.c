/* libstandin_probe.so: a test-only LD_PRELOAD (not the sampler) that shows what
 * a naive preload hook sees with the stand-ins loaded the real way.  It
 * exports cudaMalloc, cuMemAlloc_v2, halMemAlloc and halMemAllocInner; each
 * counts its calls and forwards to the real function, found with
 * dlsym(RTLD_NEXT) or else dlopen(lib, RTLD_NOLOAD) + dlsym (never calling
 * through NULL).  At exit it prints on stderr:
 *   probe NAME calls=N resolved=next|noload|none
 * Expected (tests/standins/test_standins.py): cudaMalloc is called in every mode but
 * resolves only through RTLD_NOLOAD when the framework was loaded RTLD_LOCAL;
 * cuMemAlloc_v2 is never called (the runtime and the fixture use pointers from
 * cuGetProcAddress, and -Bsymbolic keeps the driver's own table its own);
 * halMemAllocInner is never called (halMemAlloc reaches it without the PLT). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "standin_acl.h"
#include "standin_cuda.h"

#define EXPORT __attribute__((visibility("default")))

struct probe {
    const char *name, *lib;
    _Atomic unsigned long calls;
    void *_Atomic fn;
    const char *resolved;
};

static struct probe p_cudaMalloc = { "cudaMalloc", "libcudart.so.12", 0, NULL, "none" };
static struct probe p_cuMemAlloc = { "cuMemAlloc_v2", "libcuda.so.1", 0, NULL, "none" };
static struct probe p_halMemAlloc = { "halMemAlloc", "libascend_hal.so", 0, NULL, "none" };
static struct probe p_halInner = { "halMemAllocInner", "libascend_hal.so", 0, NULL, "none" };

static void *resolve(struct probe *p)
{
    atomic_fetch_add(&p->calls, 1);
    void *fn = atomic_load(&p->fn);
    if (fn)
        return fn;
    fn = dlsym(RTLD_NEXT, p->name);
    if (fn)
        p->resolved = "next";
    else {
        void *h = dlopen(p->lib, RTLD_NOW | RTLD_NOLOAD);
        fn = h ? dlsym(h, p->name) : NULL;
        if (fn)
            p->resolved = "noload";
    }
    atomic_store(&p->fn, fn);
    return fn;
}

EXPORT cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    cudaError_t (*real)(void **, size_t) = (cudaError_t (*)(void **, size_t))resolve(&p_cudaMalloc);
    return real ? real(devPtr, size) : cudaErrorInitializationError;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    CUresult (*real)(CUdeviceptr *, size_t) = (CUresult (*)(CUdeviceptr *, size_t))resolve(&p_cuMemAlloc);
    return real ? real(dptr, bytesize) : CUDA_ERROR_NOT_INITIALIZED;
}

EXPORT drvError_t halMemAlloc(void **pp, unsigned long long size, unsigned long long flag)
{
    drvError_t (*real)(void **, unsigned long long, unsigned long long) =
        (drvError_t (*)(void **, unsigned long long, unsigned long long))resolve(&p_halMemAlloc);
    return real ? real(pp, size, flag) : DRV_ERROR_INVALID_VALUE;
}

EXPORT drvError_t halMemAllocInner(void **pp, unsigned long long size, unsigned long long flag)
{
    drvError_t (*real)(void **, unsigned long long, unsigned long long) =
        (drvError_t (*)(void **, unsigned long long, unsigned long long))resolve(&p_halInner);
    return real ? real(pp, size, flag) : DRV_ERROR_INVALID_VALUE;
}

__attribute__((destructor)) static void report(void)
{
    struct probe *all[] = { &p_cudaMalloc, &p_cuMemAlloc, &p_halMemAlloc, &p_halInner };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        char line[160];
        int n = snprintf(line, sizeof line, "probe %s calls=%lu resolved=%s\n", all[i]->name,
                         atomic_load(&all[i]->calls), all[i]->resolved);
        ssize_t unused = write(2, line, (size_t)n);
        (void)unused;
    }
}
