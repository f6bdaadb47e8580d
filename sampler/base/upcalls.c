/* The calls upward (upcalls.h), set once by memprof_process_set_up. */
#include "base/upcalls.h"

struct memprof_upcalls memprof_upcalls;
