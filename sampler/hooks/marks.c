/* The program's marks, ranges and steps, into the event log: our own API
 * (memprof.h), and the markers programs already carry: mstx (Ascend) and NVTX
 * (libnvToolsExt; NVTX v3's header-only calls bypass exported symbols and are
 * not seen).  The hooks forward to the real library when one is loaded. */
#include <stdint.h>

#include "base/common.h"
#include "base/real_function.h"
#include "base/thread_state.h"
#include "memprof.h"
#include "memprof_log.h"
#include "writers/event_log.h"

static _Atomic uint64_t next_range = 1;
static _Atomic uint64_t steps;

EXPORT void memprof_mark(const char *text)
{
    memprof_log_mark(MARK_POINT, 0, text);
}

EXPORT uint64_t memprof_range_start(const char *text)
{
    uint64_t id = atomic_fetch_add(&next_range, 1);
    memprof_log_mark(MARK_RANGE_START, id, text);
    return id;
}

EXPORT void memprof_range_end(uint64_t id)
{
    memprof_log_mark(MARK_RANGE_END, id, "");
}

EXPORT uint64_t memprof_step(void)
{
    uint64_t step = atomic_fetch_add(&steps, 1) + 1;
    memprof_log_mark(MARK_STEP, step, "");
    return step;
}

/* ---- mstx -------------------------------------------------------------------- */
#define LIBMSTX "libmstx"
static struct memprof_real_fn real_mstxMarkA = {"mstxMarkA", LIBMSTX, NULL, NULL};
static struct memprof_real_fn real_mstxRangeStartA = {"mstxRangeStartA", LIBMSTX, NULL, NULL};
static struct memprof_real_fn real_mstxRangeEnd = {"mstxRangeEnd", LIBMSTX, NULL, NULL};

EXPORT void mstxMarkA(const char *message, void *stream)
{
    void (*fn)(const char *, void *) = memprof_real_function(&real_mstxMarkA);
    memprof_mark(message);
    if (fn != NULL)
        fn(message, stream);
}

/* The range id is the real library's when there is one, so ours match its. */
EXPORT uint64_t mstxRangeStartA(const char *message, void *stream)
{
    uint64_t (*fn)(const char *, void *) = memprof_real_function(&real_mstxRangeStartA);
    uint64_t id = fn != NULL ? fn(message, stream) : atomic_fetch_add(&next_range, 1);
    memprof_log_mark(MARK_RANGE_START, id, message);
    return id;
}

EXPORT void mstxRangeEnd(uint64_t id)
{
    void (*fn)(uint64_t) = memprof_real_function(&real_mstxRangeEnd);
    memprof_range_end(id);
    if (fn != NULL)
        fn(id);
}

/* ---- NVTX ------------------------------------------------------------------------ */
#define LIBNVTX "libnvToolsExt"
static struct memprof_real_fn real_nvtxMarkA = {"nvtxMarkA", LIBNVTX, NULL, NULL};
static struct memprof_real_fn real_nvtxRangePushA = {"nvtxRangePushA", LIBNVTX, NULL, NULL};
static struct memprof_real_fn real_nvtxRangePop = {"nvtxRangePop", LIBNVTX, NULL, NULL};

EXPORT void nvtxMarkA(const char *message)
{
    void (*fn)(const char *) = memprof_real_function(&real_nvtxMarkA);
    memprof_mark(message);
    if (fn != NULL)
        fn(message);
}

/* NVTX ranges nest per thread: push opens one, pop closes the innermost. */
EXPORT int nvtxRangePushA(const char *message)
{
    int (*fn)(const char *) = memprof_real_function(&real_nvtxRangePushA);
    struct memprof_thread *t = &memprof_thread;
    uint64_t id = memprof_range_start(message);
    if (t->nvtx_depth < sizeof t->nvtx_ranges / sizeof t->nvtx_ranges[0])
        t->nvtx_ranges[t->nvtx_depth] = id;
    int depth = (int)t->nvtx_depth++;
    return fn != NULL ? fn(message) : depth;
}

EXPORT int nvtxRangePop(void)
{
    int (*fn)(void) = memprof_real_function(&real_nvtxRangePop);
    struct memprof_thread *t = &memprof_thread;
    if (t->nvtx_depth > 0 && --t->nvtx_depth < sizeof t->nvtx_ranges / sizeof t->nvtx_ranges[0])
        memprof_range_end(t->nvtx_ranges[t->nvtx_depth]);
    return fn != NULL ? fn() : (int)t->nvtx_depth;
}
