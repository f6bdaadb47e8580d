/* The word the hooks read first (defined in sample.c, the lowest layer that reads it;
 * window.c maps and unmaps the page that holds it). */
#ifndef MEMPROF_WINDOW_PAGE_H
#define MEMPROF_WINDOW_PAGE_H

#include "base/common.h"
#include "memprof_control.h"

/* Non-zero while a window is open: the id of that window.  The only global the
 * malloc/free fast path reads.  It has a page of its own, which a process whose control
 * thread is made on request (control.c, "a thread on request") shares with its control
 * block while it has no thread and no window: a controller wakes it by storing
 * MEMPROF_WINDOW_WAKE there, and the next allocation's slow path makes the thread. */
#ifndef MEMPROF_WINDOW_PAGE
/* the largest page of Linux on the architectures we build for.  The build valgrind reads
 * (Makefile, build/callgrind) has 4 KiB: with 64 KiB the page is a load segment of its
 * own, and valgrind then reads none of the library's symbols. */
#define MEMPROF_WINDOW_PAGE 65536
#endif
#define MEMPROF_WINDOW_WAKE MEMPROF_CONTROL_WAKE   /* what a controller stores to wake */
union memprof_window_page {
    _Atomic uint32_t id;
    unsigned char page[MEMPROF_WINDOW_PAGE];
};
extern union memprof_window_page memprof_window_page HIDDEN;
#define memprof_active_window (memprof_window_page.id)

/* The open window's id, 0 while none is open (a wake is no window). */
static inline uint32_t memprof_window_id(void)
{
    uint32_t id = atomic_load(&memprof_active_window);
    return id == MEMPROF_WINDOW_WAKE ? 0 : id;
}

#endif
