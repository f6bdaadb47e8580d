/* The device operations of log mode, as LOG_USE records: the values a kernel
 * launch, a copy or a set was passed that can be addresses.  Which block each
 * points into, and so when a block was used, is the parser's to find
 * (parser/device_uses.py): the sampler keeps no table of device blocks.
 *
 * A kernel's parameters are read as the driver declares them
 * (cuFuncGetParamInfo, CUDA 12.4 and later): each parameter's own bytes, in
 * 8-byte words, never beyond its declared size.  A launch through `extra`
 * passes one buffer with its size.  Where neither tells the sizes (an older
 * driver, a runtime without cudaGetFuncBySymbol) the launch is recorded with
 * USE_PARAMS_UNKNOWN: it counts as an operation, its uses cannot be told.
 * So does every ACL launch (aclrtLaunchKernel), whose arguments are in device
 * memory. */
#include <string.h>

#include "base/real_function.h"
#include "hooks/device_uses.h"
#include "writers/event_log.h"

/* Values below this are sizes, counts and flags, never addresses. */
#define LOWEST_ADDRESS 0x10000
/* Beyond any kernel's parameter space (32 KiB of 4-byte parameters). */
#define MAX_PARAMS 8192

#define CUDA_ERROR_INVALID_VALUE 1   /* cuFuncGetParamInfo's answer past the last parameter */
#define LAUNCH_PARAM_END ((void *)0)
#define LAUNCH_PARAM_BUFFER_POINTER ((void *)1)
#define LAUNCH_PARAM_BUFFER_SIZE ((void *)2)

typedef int (*param_info_fn)(void *function, size_t index, size_t *offset, size_t *size);
typedef int (*func_by_symbol_fn)(void **function, const void *symbol);

static struct memprof_real_fn real_param_info = {"cuFuncGetParamInfo", "libcuda.so", NULL, NULL};
static struct memprof_real_fn real_func_by_symbol = {"cudaGetFuncBySymbol", "libcudart.so", NULL,
                                                     NULL};

struct values {
    uint64_t v[MEMPROF_USE_VALUES];
    unsigned n, flags;
};

/* The 8-byte words of `size` bytes at `p` that can be addresses. */
static void add_words(struct values *out, const void *p, size_t size)
{
    for (size_t at = 0; at + 8 <= size; at += 8) {
        uint64_t w;
        memcpy(&w, (const char *)p + at, sizeof w);
        if (w < LOWEST_ADDRESS)
            continue;
        if (out->n == MEMPROF_USE_VALUES) {
            out->flags |= USE_TRUNCATED;
            return;
        }
        out->v[out->n++] = w;
    }
}

static void add_params(struct values *out, void *function, void *const *params)
{
    param_info_fn info = (param_info_fn)memprof_real_function(&real_param_info);
    if (info == NULL || function == NULL) {
        out->flags |= USE_PARAMS_UNKNOWN;
        return;
    }
    for (size_t i = 0; i < MAX_PARAMS; i++) {
        size_t offset, size;
        int rc = info(function, i, &offset, &size);
        if (rc != 0) {   /* past the last parameter, or a driver that cannot tell */
            if (rc != CUDA_ERROR_INVALID_VALUE)
                out->flags |= USE_PARAMS_UNKNOWN;
            return;
        }
        if (params[i] != NULL)
            add_words(out, params[i], size);
    }
}

/* `extra`: key, value pairs up to LAUNCH_PARAM_END; the buffer and its size. */
static void add_extra(struct values *out, void *const *extra)
{
    const void *buffer = NULL;
    const size_t *size = NULL;
    for (size_t i = 0; i < 2 * MAX_PARAMS && extra[i] != LAUNCH_PARAM_END; i += 2) {
        if (extra[i] == LAUNCH_PARAM_BUFFER_POINTER)
            buffer = extra[i + 1];
        else if (extra[i] == LAUNCH_PARAM_BUFFER_SIZE)
            size = extra[i + 1];
    }
    if (buffer != NULL && size != NULL)
        add_words(out, buffer, *size);
    else
        out->flags |= USE_PARAMS_UNKNOWN;
}

void memprof_use_cuda_launch(void *function, void *const *params, void *const *extra)
{
    struct values out = {.n = 0};
    if (params != NULL)
        add_params(&out, function, params);
    else if (extra != NULL)
        add_extra(&out, extra);
    memprof_log_use(HEAP_CUDA, USE_LAUNCH, out.flags, out.v, out.n);
}

void memprof_use_runtime_launch(const void *function, void *const *params)
{
    func_by_symbol_fn by_symbol = (func_by_symbol_fn)memprof_real_function(&real_func_by_symbol);
    void *driver_function = NULL;
    if (by_symbol == NULL || by_symbol(&driver_function, function) != 0)
        driver_function = NULL;
    struct values out = {.n = 0};
    if (params != NULL)
        add_params(&out, driver_function, params);
    memprof_log_use(HEAP_CUDA, USE_LAUNCH, out.flags, out.v, out.n);
}

void memprof_use_acl_launch(uintptr_t args)
{
    uint64_t v = args;
    memprof_log_use(HEAP_ACL, USE_LAUNCH, USE_PARAMS_UNKNOWN, &v, args >= LOWEST_ADDRESS);
}

void memprof_use_memory(enum memprof_heap heap, enum memprof_use_op op, uintptr_t destination,
                        uintptr_t source)
{
    uint64_t v[2];
    unsigned n = 0;
    if (destination >= LOWEST_ADDRESS)
        v[n++] = destination;
    if (source >= LOWEST_ADDRESS)
        v[n++] = source;
    memprof_log_use(heap, op, 0, v, n);
}
