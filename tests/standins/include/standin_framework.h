/* libframework.so (tests/standins/framework.c): what a program gets with dlsym. */
#ifndef STANDIN_FRAMEWORK_H
#define STANDIN_FRAMEWORK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *fw_alloc_segment(size_t size);                 /* cudaMalloc */
int fw_free_segment(void *p);                        /* cudaFree */
void *fw_alloc_async(size_t size, void *stream);     /* cudaMallocAsync */
int fw_free_async(void *p, void *stream);            /* cudaFreeAsync */
void *fw_alloc_managed(size_t size);                 /* cudaMallocManaged */
void *fw_alloc_pitch(size_t width, size_t height, size_t *pitch);   /* cudaMallocPitch */
void *fw_malloc_host(size_t size);                   /* cudaMallocHost */
void *fw_pinned(size_t size);                        /* cudaHostAlloc */
int fw_free_pinned(void *p);                         /* cudaFreeHost */
void *fw_expandable(size_t size);                    /* cuMemAddressReserve + cuMemCreate + cuMemMap */
int fw_expandable_free(void *va);                    /* cuMemUnmap + cuMemRelease + cuMemAddressFree */
int fw_last_error(void);                             /* cudaGetLastError */

#ifdef __cplusplus
}
#endif
#endif
