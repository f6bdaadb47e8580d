/* libc10_cuda.so: a stand-in for PyTorch's CUDA caching allocator and its USDT probes.
 * pytorch:malloc(ptr, device, size, stream) fires as a block is handed out and
 * pytorch:free(ptr) as one comes back, each behind its semaphore in `.probes`: the
 * provider, names, argument order and types (the device an int8_t) and semaphores of
 * libc10_cuda.so in torch 2.11 and 2.14 (tests/data/usdt/ holds their notes).
 *
 * Blocks are carved from segments taken with cudaMalloc (20 MiB, or the block's size
 * rounded up to 2 MiB); a block is the request rounded up to 512 bytes, and a freed one
 * is kept for the next request of its size; c10_empty_cache gives back the segments
 * with no block handed out.  c10_reserved and c10_allocated are the figures of
 * torch.cuda.memory_reserved() and of the bytes requested by the blocks handed out.
 *
 * Out of memory as PyTorch's allocator is (CUDACachingAllocator.cpp, malloc and
 * alloc_block): a segment past the limit c10_set_memory_limit set (as
 * torch.cuda.set_per_process_memory_fraction does) is refused without asking CUDA; a
 * refusal or a failed cudaMalloc gives the cached segments back and asks again, and
 * a second failure throws c10::OutOfMemoryError, a class declared as PyTorch declares
 * it (exported, no key function: this library carries its type_info).  c10_malloc,
 * the caller PyTorch's Python binding stands for here, catches it: NULL, and
 * c10_last_error() says what it said.  Built as C (where no C++ compiler for the
 * machine is at hand: tests/standins/build.py), the failure is a NULL only.
 *
 * Built with STANDIN_NO_PROBES (libc10_cuda.so.2.0): the library of a PyTorch before
 * 2.1, without the probes. */
#define _GNU_SOURCE
#define _SDT_HAS_SEMAPHORES 1
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#ifdef STANDIN_NO_PROBES
#define STAP_PROBE1(provider, name, a)
#define STAP_PROBE4(provider, name, a, b, c, d)
#else
#include <sys/sdt.h>
#endif
#ifdef __cplusplus
#include <stdexcept>
#define EXPORT extern "C" __attribute__((visibility("default")))
#else
#define EXPORT __attribute__((visibility("default")))
#endif

#include "standin_cuda.h"

#define MiB ((size_t)1 << 20)
#define SEGMENTS 256
#define BLOCKS 8192

#ifdef __cplusplus
namespace c10 {
class __attribute__((visibility("default"))) OutOfMemoryError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};
}   // namespace c10

extern "C" {
#endif
__extension__ unsigned short pytorch_malloc_semaphore __attribute__((section(".probes")));
__extension__ unsigned short pytorch_free_semaphore __attribute__((section(".probes")));
#ifdef __cplusplus
}
#endif

struct segment { char *base; size_t size, used; int handed_out; };
struct block { char *ptr; size_t size, requested; int segment; bool in_use; };

static struct segment segments[SEGMENTS];
static struct block blocks[BLOCKS];
static int nsegments, nblocks;
static size_t reserved, allocated, limit;
static char last_error[128];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct block *cached_block(size_t size)
{
    for (int i = 0; i < nblocks; i++)
        if (!blocks[i].in_use && blocks[i].ptr && blocks[i].size == size)
            return &blocks[i];
    return NULL;
}

/* The segments with no block handed out, back to CUDA (lock held). */
static bool release_cached(void)
{
    bool released = false;
    for (int s = 0; s < nsegments; s++) {
        if (!segments[s].base || segments[s].handed_out > 0)
            continue;
        cudaFree(segments[s].base);
        reserved -= segments[s].size;
        segments[s].base = NULL;
        released = true;
        for (int i = 0; i < nblocks; i++)
            if (blocks[i].segment == s)
                blocks[i].ptr = NULL;
    }
    return released;
}

static void *new_segment(size_t bytes)
{
    void *base = NULL;
    if (limit != 0 && reserved + bytes > limit)
        return NULL;   /* the allocator's own limit: CUDA is not asked */
    return cudaMalloc(&base, bytes) == cudaSuccess ? base : NULL;
}

static struct block *carve(size_t size)
{
    int s = 0;
    while (s < nsegments && (!segments[s].base || segments[s].size - segments[s].used < size))
        s++;
    if (s == nsegments) {
        if (nsegments == SEGMENTS)
            return NULL;
        size_t bytes = size <= 20 * MiB ? 20 * MiB : (size + 2 * MiB - 1) & ~(2 * MiB - 1);
        void *base = new_segment(bytes);
        if (base == NULL && release_cached())
            base = new_segment(bytes);
        if (base == NULL) {
            snprintf(last_error, sizeof last_error,
                     "CUDA out of memory. Tried to allocate %zu MiB", bytes >> 20);
#ifdef __cplusplus
            throw c10::OutOfMemoryError(last_error);
#endif
            return NULL;
        }
        segments[nsegments++] = (struct segment){(char *)base, bytes, 0, 0};
        reserved += bytes;
    }
    if (nblocks == BLOCKS)
        return NULL;
    struct block *b = &blocks[nblocks++];
    *b = (struct block){segments[s].base + segments[s].used, size, 0, s, false};
    segments[s].used += size;
    return b;
}

static void *allocate(size_t size)
{
    size_t rounded = (size + 511) & ~(size_t)511;
    struct block *b = cached_block(rounded);
    if (!b)
        b = carve(rounded);
    if (!b)
        return NULL;
    b->in_use = true;
    b->requested = size;
    segments[b->segment].handed_out++;
    allocated += size;
    return b->ptr;
}

EXPORT void *c10_malloc(size_t size, int8_t device, void *stream)
{
    void *ptr = NULL;
    pthread_mutex_lock(&lock);
#ifdef __cplusplus
    try {
        ptr = allocate(size);
    } catch (const c10::OutOfMemoryError &) {   /* its message is last_error */
    }
#else
    ptr = allocate(size);
#endif
    pthread_mutex_unlock(&lock);
    if (ptr && pytorch_malloc_semaphore)
        STAP_PROBE4(pytorch, malloc, ptr, device, size, stream);
    return ptr;
}

EXPORT void c10_free(void *ptr)
{
    if (pytorch_free_semaphore)
        STAP_PROBE1(pytorch, free, ptr);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nblocks; i++)
        if (blocks[i].in_use && blocks[i].ptr == ptr) {
            blocks[i].in_use = false;
            segments[blocks[i].segment].handed_out--;
            allocated -= blocks[i].requested;
            break;
        }
    pthread_mutex_unlock(&lock);
}

EXPORT void c10_empty_cache(void)
{
    pthread_mutex_lock(&lock);
    release_cached();
    pthread_mutex_unlock(&lock);
}

EXPORT void c10_set_memory_limit(size_t bytes) { limit = bytes; }   /* 0: none */
EXPORT const char *c10_last_error(void) { return last_error; }
EXPORT size_t c10_reserved(void) { return reserved; }
EXPORT size_t c10_allocated(void) { return allocated; }
/* Raised while a tracer (the sampler's window) has the probes armed. */
EXPORT int c10_semaphores(void) { return pytorch_malloc_semaphore + pytorch_free_semaphore; }
