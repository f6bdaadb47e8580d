/* The defaults of a process started without mem_profiler, and the largest depth; the
 * command lines and the Python API take theirs from bindings/defaults.py, which a test
 * keeps equal to these, name by name (MEMPROF_DEFAULT_RATE is defaults.RATE). */
#ifndef MEMPROF_DEFAULTS_H
#define MEMPROF_DEFAULTS_H

#define MEMPROF_DEFAULT_RATE 1024               /* mean bytes between samples of the host heap */
#define MEMPROF_DEFAULT_DEVICE_RATE 1           /* of the device and HAL heaps: every allocation */
#define MEMPROF_DEFAULT_DEPTH 64                /* frames kept per stack */
#define MEMPROF_MAX_DEPTH 128
#define MEMPROF_DEFAULT_PREFIX "./custom_profiler_"
#define MEMPROF_DEFAULT_LOG_FILE_BYTES (100u << 20)   /* log mode: bytes per event log file */
#define MEMPROF_DEFAULT_LOG_FILES 10            /* log mode: event log files kept */
/* Stacks the table can hold.  A Python program sampled at -c 1 makes stacks by the
 * hundred thousand (its lines multiply them): the fixture that imports numpy makes
 * 122,000.  The table is reserved, not committed: its pages, and its hash index's
 * (hash_index.c), are touched as stacks arrive. */
#define MEMPROF_DEFAULT_MAX_STACKS (1u << 19)
#define MEMPROF_DEFAULT_MAX_LIVE (1u << 24)     /* live samples the live table can hold */

#endif
