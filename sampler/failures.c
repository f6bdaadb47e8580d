/* Failed device allocations of the open window: the time, the requested size,
 * the error code and the stack.  "Why did my program run out of device
 * memory?" is the question users bring; the next dump answers it.  Rare, so a
 * small fixed array behind a mutex. */
#include <pthread.h>

#include "memprof_internal.h"

#define MAX_FAILURES 64

static struct {
    struct memprof_failure failure;
    enum memprof_heap heap;
} failures[MAX_FAILURES];
static uint32_t nfailures;            /* may exceed MAX_FAILURES: the count of all */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void memprof_failure_record(enum memprof_heap heap, uint64_t size, int error, uint32_t stack)
{
    pthread_mutex_lock(&lock);
    if (nfailures < MAX_FAILURES) {
        failures[nfailures].failure = (struct memprof_failure){memprof_now_ns(), size, error, stack};
        failures[nfailures].heap = heap;
    }
    nfailures++;
    pthread_mutex_unlock(&lock);
}

void memprof_failures_reset(void)
{
    pthread_mutex_lock(&lock);
    nfailures = 0;
    pthread_mutex_unlock(&lock);
}

/* In a forked child the lock may be held by a thread that no longer exists. */
void memprof_failures_after_fork(void)
{
    pthread_mutex_init(&lock, NULL);
    nfailures = 0;
}

uint32_t memprof_failures_of(enum memprof_heap heap, struct memprof_failure *out, uint32_t max)
{
    uint32_t all = 0, copied = 0;
    pthread_mutex_lock(&lock);
    for (uint32_t i = 0; i < nfailures && i < MAX_FAILURES; i++) {
        if (failures[i].heap != heap)
            continue;
        if (copied < max)
            out[copied++] = failures[i].failure;
        all++;
    }
    pthread_mutex_unlock(&lock);
    return all;
}
