/* The calls a lower layer makes into a higher one (ARCHITECTURE.md, "The sampler's
 * layers"): each a function pointer that memprof_process_set_up (process.c, at the top)
 * sets once, first of all it does, before any window can open or the control block be
 * made.  The hooks give control, the window and the writers what those ask of them, and
 * control gives the sample path its look at a waiting request.  None is on the path of
 * an allocation: a window's start and end, a dump, the control thread, and a sample's
 * slow path only in a process still without its control thread. */
#ifndef MEMPROF_UPCALLS_H
#define MEMPROF_UPCALLS_H

#include "base/common.h"

struct memprof_upcalls {
    /* hooks_malloc.c: why the program's allocations may miss the hooks ("" if not) */
    const char *(*own_malloc)(void);
    /* got_hooks.c: the sampler injected; the slots redirected; a window's start and end */
    bool (*is_injected)(void);
    uint32_t (*got_redirected)(void);
    int (*got_arm)(void);
    void (*got_disarm)(void);
    /* framework_pools.c: a pool's probes armed while a window is open */
    void (*pools_arm)(void);
    void (*pools_disarm)(void);
    const char *(*pools_note)(void);   /* why its blocks are not tracked, or "" */
    /* hooks_python.c: Python's allocators found, wrapped and unwrapped, looked for */
    void (*pymem_find)(void);
    void (*pymem_sync)(void);
    uint64_t (*pymem_poll)(void);
    /* hooks_device.c: the device heaps whose hooks ran */
    uint32_t (*device_heaps_used)(void);
    /* control.c: from a sample's slow path while memprof_control_thread_less */
    void (*control_look)(void);
};
extern struct memprof_upcalls memprof_upcalls HIDDEN;

#endif
