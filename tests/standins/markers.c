/* Marker stand-ins, built twice: -DSTANDIN_MSTX gives libmstx.so, -DSTANDIN_NVTX
 * gives libnvToolsExt.so.1.  Nothing observable but the return values:
 *   mstxRangeStartA: a new non-zero id (1, 2, ...); mstxMarkA, mstxRangeEnd: nothing.
 *   nvtxRangePushA: the 0-based level of the range it opens (per thread);
 *   nvtxRangePop: the level of the range it closes, -1 when none is open;
 *   nvtxMarkA: nothing (void, as in nvToolsExt.h). */
#include <stdatomic.h>
#include <stdint.h>

#include "standin_markers.h"

#define EXPORT __attribute__((visibility("default")))

#ifdef STANDIN_MSTX
static _Atomic uint64_t next_id = 1;

EXPORT void mstxMarkA(const char *message, void *stream)
{
    (void)message;
    (void)stream;
}

EXPORT uint64_t mstxRangeStartA(const char *message, void *stream)
{
    (void)message;
    (void)stream;
    return atomic_fetch_add(&next_id, 1);
}

EXPORT void mstxRangeEnd(uint64_t id)
{
    (void)id;
}
#endif

#ifdef STANDIN_NVTX
static __thread int depth;

EXPORT void nvtxMarkA(const char *message)
{
    (void)message;
}

EXPORT int nvtxRangePushA(const char *message)
{
    (void)message;
    return depth++;
}

EXPORT int nvtxRangePop(void)
{
    return depth > 0 ? --depth : -1;
}
#endif
