/* The stand-in driver's modules and kernel launches (part of libcuda.so.1).
 *
 * - cuModuleLoadData takes PTX text and reads each `.entry`'s parameter list:
 *   `.param [.align A] .TYPE NAME[[N]]`, laid out as the PTX ISA lays out the
 *   kernel parameter space (each at its alignment: A, else its element's
 *   size), which cuFuncGetParamInfo (CUDA 12.4) answers; with
 *   STANDIN_DRIVER_VERSION below 12040 it answers CUDA_ERROR_NOT_SUPPORTED, as
 *   an older driver has no such function.
 * - cuLaunchKernel(_ptsz) reads the parameters from kernelParams (each by its
 *   declared size) or from the `extra` buffer (whose size must be the
 *   layout's), and runs the kernels it knows by name on host memory:
 *     touch(.u64 p, .u32 v)                        *(u32 *)p = v
 *     touch_pair(.align 8 .b8 pair[16])            *(u32 *)pair[0..8) = 7, and pair[8..16)
 *   Any other kernel is launched as doing nothing.
 * - STANDIN_TRACE: "cuda cuLaunchKernel NAME PARAMS RC" per launch. */
#define _GNU_SOURCE
#include "standin_util.h"

#include "standin_cuda.h"

#define MAX_PARAMS 32
#define MAX_KERNELS 16

struct CUfunc_st {
    char name[64];
    size_t params, offset[MAX_PARAMS], size[MAX_PARAMS], total;
};

struct CUmod_st {
    size_t kernels;
    struct CUfunc_st kernel[MAX_KERNELS];
};

static int driver_version(void)
{
    const char *v = getenv("STANDIN_DRIVER_VERSION");
    return v && *v ? atoi(v) : 13000;
}

/* Bytes of a PTX scalar type (.u8 .s16 .b32 .f64 ...), 0 for none. */
static size_t type_bytes(const char *t)
{
    if (t[0] != '.' || !strchr("usbf", t[1]))
        return 0;
    int bits = atoi(t + 2);
    return bits == 8 || bits == 16 || bits == 32 || bits == 64 ? (size_t)bits / 8 : 0;
}

/* One `.param` declaration (text up to a comma or the closing parenthesis). */
static int add_param(struct CUfunc_st *f, const char *decl)
{
    char words[4][64] = {{0}};
    int n = sscanf(decl, " .param %63s %63s %63s %63s", words[0], words[1], words[2], words[3]);
    int w = 0;
    size_t align = 0;
    if (n >= 2 && strcmp(words[0], ".align") == 0) {
        align = strtoul(words[1], NULL, 10);
        w = 2;
    }
    if (n < w + 2 || f->params == MAX_PARAMS)
        return 0;
    size_t element = type_bytes(words[w]);
    const char *bracket = strchr(words[w + 1], '[');
    size_t count = bracket ? strtoul(bracket + 1, NULL, 10) : 1;
    if (element == 0 || count == 0)
        return 0;
    if (align < element)
        align = element;
    size_t at = (f->total + align - 1) / align * align;
    f->offset[f->params] = at;
    f->size[f->params++] = element * count;
    f->total = at + element * count;
    return 1;
}

static int read_entry(struct CUfunc_st *f, const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, " \t\n(");
    if (n == 0 || n >= sizeof f->name)
        return 0;
    memcpy(f->name, p, n);
    p = strchr(p + n, '(');
    const char *end = p ? strchr(p, ')') : NULL;
    if (!end)
        return 0;
    for (p++; p < end;) {
        size_t len = strcspn(p, ",)");
        char decl[256];
        if (len >= sizeof decl)
            return 0;
        memcpy(decl, p, len);
        decl[len] = '\0';
        if (strspn(decl, " \t\n") < len && !add_param(f, decl))
            return 0;
        p += len + 1;
    }
    return 1;
}

EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    if (!module || !image)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUmod_st *m = calloc(1, sizeof *m);
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    for (const char *p = strstr(image, ".entry"); p; p = strstr(p + 6, ".entry"))
        if (m->kernels == MAX_KERNELS || !read_entry(&m->kernel[m->kernels++], p + 6)) {
            free(m);
            return CUDA_ERROR_INVALID_IMAGE;
        }
    *module = m;
    standin_trace("cuda cuModuleLoadData %zu 0", m->kernels);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleUnload(CUmodule module)
{
    free(module);
    return module ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

EXPORT CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name)
{
    if (!function || !module || !name)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < module->kernels; i++)
        if (strcmp(module->kernel[i].name, name) == 0) {
            *function = &module->kernel[i];
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

EXPORT CUresult cuFuncGetParamInfo(CUfunction function, size_t index, size_t *offset, size_t *size)
{
    if (driver_version() < 12040)
        return CUDA_ERROR_NOT_SUPPORTED;
    if (!function || !offset || index >= function->params)
        return CUDA_ERROR_INVALID_VALUE;
    *offset = function->offset[index];
    if (size)
        *size = function->size[index];
    return CUDA_SUCCESS;
}

/* The parameter space of a launch, as the driver copies it. */
static CUresult gather(CUfunction f, void **params, void **extra, unsigned char *space)
{
    if (params) {
        for (size_t i = 0; i < f->params; i++) {
            if (!params[i])
                return CUDA_ERROR_INVALID_VALUE;
            memcpy(space + f->offset[i], params[i], f->size[i]);
        }
        return CUDA_SUCCESS;
    }
    const void *buffer = NULL;
    const size_t *size = NULL;
    for (size_t i = 0; extra && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
        if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
            buffer = extra[i + 1];
        else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
            size = extra[i + 1];
        else
            return CUDA_ERROR_INVALID_VALUE;
    }
    if (f->params == 0)
        return CUDA_SUCCESS;
    if (!buffer || !size || *size != f->total)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(space, buffer, f->total);
    return CUDA_SUCCESS;
}

static void run(CUfunction f, const unsigned char *space)
{
    uint64_t a, b;
    uint32_t v;
    if (strcmp(f->name, "touch") == 0) {
        memcpy(&a, space + f->offset[0], 8);
        memcpy(&v, space + f->offset[1], 4);
        *(volatile uint32_t *)(uintptr_t)a = v;
    } else if (strcmp(f->name, "touch_pair") == 0) {
        memcpy(&a, space, 8);
        memcpy(&b, space + 8, 8);
        *(volatile uint32_t *)(uintptr_t)a = 7;
        *(volatile uint32_t *)(uintptr_t)b = 7;
    }
}

static CUresult launch(const char *name, CUfunction f, void **params, void **extra)
{
    unsigned char space[MAX_PARAMS * 64];
    CUresult rc = !f ? CUDA_ERROR_INVALID_HANDLE
                  : params && extra ? CUDA_ERROR_INVALID_VALUE
                  : f->total > sizeof space ? CUDA_ERROR_INVALID_VALUE
                                            : gather(f, params, extra, space);
    if (rc == CUDA_SUCCESS)
        run(f, space);
    standin_trace("cuda %s %s %zu %d", name, f ? f->name : "-", f ? f->params : 0, rc);
    return rc;
}

EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shared, CUstream stream,
                               void **params, void **extra)
{
    (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)stream;
    return launch("cuLaunchKernel", f, params, extra);
}

EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                    unsigned bx, unsigned by, unsigned bz, unsigned shared,
                                    CUstream stream, void **params, void **extra)
{
    (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)stream;
    return launch("cuLaunchKernel_ptsz", f, params, extra);
}
