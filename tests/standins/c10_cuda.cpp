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
 * torch.cuda.memory_reserved() and of the bytes requested by the blocks handed out. */
#define _GNU_SOURCE
#define _SDT_HAS_SEMAPHORES 1
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/sdt.h>

#include "standin_cuda.h"

#define EXPORT __attribute__((visibility("default")))
#define MiB ((size_t)1 << 20)
#define SEGMENTS 256
#define BLOCKS 8192

__extension__ unsigned short pytorch_malloc_semaphore __attribute__((section(".probes")));
__extension__ unsigned short pytorch_free_semaphore __attribute__((section(".probes")));

struct segment { char *base; size_t size, used; int handed_out; };
struct block { char *ptr; size_t size, requested; int segment; bool in_use; };

static struct segment segments[SEGMENTS];
static struct block blocks[BLOCKS];
static int nsegments, nblocks;
static size_t reserved, allocated;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct block *cached_block(size_t size)
{
    for (int i = 0; i < nblocks; i++)
        if (!blocks[i].in_use && blocks[i].ptr && blocks[i].size == size)
            return &blocks[i];
    return NULL;
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
        void *base = NULL;
        if (cudaMalloc(&base, bytes) != cudaSuccess)
            return NULL;
        segments[nsegments++] = (struct segment){base, bytes, 0, 0};
        reserved += bytes;
    }
    if (nblocks == BLOCKS)
        return NULL;
    struct block *b = &blocks[nblocks++];
    *b = (struct block){segments[s].base + segments[s].used, size, 0, s, false};
    segments[s].used += size;
    return b;
}

EXPORT void *c10_malloc(size_t size, int8_t device, void *stream)
{
    size_t rounded = (size + 511) & ~(size_t)511;
    pthread_mutex_lock(&lock);
    struct block *b = cached_block(rounded);
    if (!b)
        b = carve(rounded);
    void *ptr = NULL;
    if (b) {
        b->in_use = true;
        b->requested = size;
        segments[b->segment].handed_out++;
        allocated += size;
        ptr = b->ptr;
    }
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
    for (int s = 0; s < nsegments; s++) {
        if (!segments[s].base || segments[s].handed_out > 0)
            continue;
        cudaFree(segments[s].base);
        reserved -= segments[s].size;
        segments[s].base = NULL;
        for (int i = 0; i < nblocks; i++)
            if (blocks[i].segment == s)
                blocks[i].ptr = NULL;
    }
    pthread_mutex_unlock(&lock);
}

EXPORT size_t c10_reserved(void) { return reserved; }
EXPORT size_t c10_allocated(void) { return allocated; }
/* Raised while a tracer (the sampler's window) has the probes armed. */
EXPORT int c10_semaphores(void) { return pytorch_malloc_semaphore + pytorch_free_semaphore; }
