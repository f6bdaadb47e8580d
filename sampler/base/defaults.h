/* The defaults of a process started without mem_profiler, and the largest depth; the
 * command lines and the Python API take theirs from bindings/control/defaults.py, which a test
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
/* The memory the stack table and the calling-context tree may take, in MiB: they
 * hold up to MiB * 2^14 stacks and twice as many nodes (ARCHITECTURE.md,
 * "Interning").  Reserved, not committed: their pages, and their hash indexes', are
 * touched as stacks arrive; a PyTorch training script's 370,000 stacks take tens of
 * MiB. */
#define MEMPROF_DEFAULT_STACK_MEMORY 512
#define MEMPROF_STACK_MEMORY_LIMIT (1u << 14)   /* the most it may ask for */
/* The most stacks, whatever the memory: a live sample keeps its stack's id in 24 bits
 * (live_table.h), which 1 GiB of stack memory already fills. */
#define MEMPROF_MAX_STACK_IDS (1u << 24)
#define MEMPROF_DEFAULT_MAX_LIVE (1u << 24)     /* live samples the live table can hold */

#endif
