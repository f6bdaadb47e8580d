/* mstx (libmstx.so) and NVTX (libnvToolsExt.so.1) marker stand-ins. */
#ifndef STANDIN_MARKERS_H
#define STANDIN_MARKERS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void mstxMarkA(const char *message, void *stream);
uint64_t mstxRangeStartA(const char *message, void *stream);   /* a non-zero id */
void mstxRangeEnd(uint64_t id);

/* As in nvToolsExt.h: nvtxMarkA returns nothing; push returns the 0-based level
 * of the range it opened, pop the level of the range it closed (-1: none open). */
void nvtxMarkA(const char *message);
int nvtxRangePushA(const char *message);
int nvtxRangePop(void);

#ifdef __cplusplus
}
#endif
#endif
