/* Each thread's sampling state (thread_state.h), defined at the bottom of the layers:
 * every layer of the sample path reads it. */
#include "base/thread_state.h"

__thread struct memprof_thread memprof_thread TLS_IE;
