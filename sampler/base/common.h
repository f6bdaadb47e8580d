/* What every module of the sampler shares: symbol visibility and branch hints, the
 * limit on paths, and the heaps.  Each module's header declares its interface to the
 * others; nothing in them is exported. */
#ifndef MEMPROF_COMMON_H
#define MEMPROF_COMMON_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TLS_IE __attribute__((tls_model("initial-exec")))

#define MEMPROF_PATH_MAX 4096
/* The most Python frames a stack holds (python_frames.c; a thread's memos). */
#define MEMPROF_MAX_PY_FRAMES 64
/* The calling thread's own /proc entries: /proc/self/{maps,exe,cmdline,statm}
 * read as empty once the main thread has ended with pthread_exit, as they
 * follow the thread group leader's memory. */
#define PROC_THREAD_SELF "/proc/thread-self/"   /* by memprof_proc_file (sysutil.h) */

/* A module's own hook of a relocated name (memprof_*_hook_for, got_hooks.c) is taken
 * through this alias: taken by name, an exported hook resolves to the library's own
 * function in an injected sampler; hook_<name>, a hidden alias, is always ours. */
#define MEMPROF_LOCAL_ALIAS(name, ...) \
    extern __typeof__(name) hook_##name __attribute__((alias(#name), copy(name))) HIDDEN;

/* Each allocator family is a heap of its own, written as its own .heap file. */
enum memprof_heap {
    HEAP_HOST = 0,       /* the malloc family */
    HEAP_CUDA,           /* cudaMalloc*, cuMemAlloc*, cuMemCreate (device and managed) */
    HEAP_CUDA_HOST,      /* pinned host memory: cudaMallocHost, cudaHostAlloc */
    HEAP_ACL,            /* aclrtMalloc */
    HEAP_ACL_HOST,       /* aclrtMallocHost */
    HEAP_HAL,            /* halMemAlloc */
    HEAP_CUDA_SEGMENTS,  /* CUDA's allocations while a framework's pool is tracked
                            (framework_pools.c): its segments; cuda holds its blocks */
    HEAP_COUNT
};

#endif
