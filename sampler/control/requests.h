/* The requests a controller sends through the control block (requests.c). */
#ifndef MEMPROF_REQUESTS_H
#define MEMPROF_REQUESTS_H

#include "base/common.h"
#include "memprof_control.h"

/* The block's reply fields filled from the capture's state. */
void memprof_control_publish(struct memprof_control *block) HIDDEN;
/* Carries out the block's request `command`; on failure, errno and, where errno alone
 * would not say it, *why in words. */
int memprof_control_carry_out(struct memprof_control *block, uint32_t command,
                              const char **why) HIDDEN;
/* Closes the open window, the process's own mode of capture put back. */
int memprof_control_stop_window(void) HIDDEN;

#endif
