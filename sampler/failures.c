/* Failed device allocations of the open window: the time, the requested size,
 * the error code and the stack.  "Why did my program run out of device
 * memory?" is the question users bring; the next dump answers it.  Each heap
 * counts every failure and keeps the first MEMPROF_MAX_FAILURES of them, so
 * that one heap's storm of failures leaves another heap's alone.  Rare, so
 * small fixed arrays behind a mutex (the busy flag keeps a signal handler on
 * this thread out of it). */
#include <pthread.h>
#include <string.h>

#include "memprof_internal.h"

static struct memprof_failure failures[HEAP_COUNT][MEMPROF_MAX_FAILURES];
static uint32_t nfailures[HEAP_COUNT];   /* may exceed MEMPROF_MAX_FAILURES: the count of all */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void memprof_failure_record(enum memprof_heap heap, uint64_t size, int error, uint32_t stack)
{
    pthread_mutex_lock(&lock);
    uint32_t n = nfailures[heap];
    if (n < MEMPROF_MAX_FAILURES)
        failures[heap][n] = (struct memprof_failure){memprof_now_ns(), size, error, stack};
    if (n < UINT32_MAX)
        nfailures[heap] = n + 1;
    pthread_mutex_unlock(&lock);
}

void memprof_failures_reset(void)
{
    pthread_mutex_lock(&lock);
    memset(nfailures, 0, sizeof nfailures);
    pthread_mutex_unlock(&lock);
}

/* In a forked child the lock may be held by a thread that no longer exists. */
void memprof_failures_after_fork(void)
{
    pthread_mutex_init(&lock, NULL);
    memset(nfailures, 0, sizeof nfailures);
}

uint32_t memprof_failures_of(enum memprof_heap heap, struct memprof_failure *out, uint32_t max)
{
    pthread_mutex_lock(&lock);
    uint32_t all = nfailures[heap];
    for (uint32_t i = 0; i < all && i < max && i < MEMPROF_MAX_FAILURES; i++)
        out[i] = failures[heap][i];
    pthread_mutex_unlock(&lock);
    return all;
}
