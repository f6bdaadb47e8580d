/* Noted events of the open window, per heap, each with its time and stack: what
 * a dump lists beside a heap's figures, never counted in them.
 *
 * - NOTES_FAILED: failed device allocations (size, error code).  "Why did my
 *   program run out of device memory?" is the question users bring; the next
 *   dump answers it.  Every failure is counted, the first MEMPROF_MAX_NOTES kept.
 * - NOTES_FOREIGN: memory the process uses but did not allocate (host memory
 *   registered with CUDA, device memory opened through IPC).  An unregister or
 *   close takes its note away, so that a dump shows what is registered or open
 *   at that moment, as its in-use figures do: kept as pairs, a program that
 *   registers a staging buffer per batch would fill the table with ranges long
 *   gone.  A note that finds the table full is counted.
 *
 * Each heap has its own lists, so that one heap's storm leaves another's alone.
 * Rare, so small fixed arrays behind a mutex (the callers' busy flag keeps a
 * signal handler on this thread out of it). */
#include <pthread.h>
#include <string.h>

#include "base/sysutil.h"
#include "tables/notes.h"

struct note_list {
    struct memprof_note kept[MEMPROF_MAX_NOTES];   /* in the order they came */
    uint32_t nkept;
    uint32_t missed;   /* notes that found the list full */
};

static struct note_list lists[NOTE_LISTS][HEAP_COUNT];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void memprof_note_add(enum memprof_note_list list, enum memprof_heap heap,
                      struct memprof_note note)
{
    note.time_ns = memprof_now_ns();
    pthread_mutex_lock(&lock);
    struct note_list *l = &lists[list][heap];
    if (l->nkept < MEMPROF_MAX_NOTES)
        l->kept[l->nkept++] = note;
    else if (l->missed < UINT32_MAX)
        l->missed++;
    pthread_mutex_unlock(&lock);
}

/* The latest note of the address goes: opened twice, an IPC handle is closed
 * twice (the driver counts its opens). */
void memprof_note_remove(enum memprof_note_list list, enum memprof_heap heap, uint64_t address)
{
    pthread_mutex_lock(&lock);
    struct note_list *l = &lists[list][heap];
    for (uint32_t i = l->nkept; i-- > 0;) {
        if (l->kept[i].address == address) {
            memmove(&l->kept[i], &l->kept[i + 1], (l->nkept - i - 1) * sizeof l->kept[0]);
            l->nkept--;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

void memprof_notes_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(lists, 0, sizeof lists);
    pthread_mutex_unlock(&lock);
}

/* In a forked child the lock may be held by a thread that no longer exists. */
void memprof_notes_after_fork(void)
{
    pthread_mutex_init(&lock, NULL);
    memset(lists, 0, sizeof lists);
}

uint32_t memprof_notes_of(enum memprof_note_list list, enum memprof_heap heap,
                          struct memprof_note out[MEMPROF_MAX_NOTES], uint32_t *missed)
{
    pthread_mutex_lock(&lock);
    const struct note_list *l = &lists[list][heap];
    uint32_t n = l->nkept;
    memcpy(out, l->kept, n * sizeof out[0]);
    *missed = l->missed;
    pthread_mutex_unlock(&lock);
    return n;
}
