/* The defaults of a process started without mem_profiler; the command lines and the
 * Python API take theirs from bindings/defaults.py, which a test keeps equal to these. */
#ifndef MEMPROF_DEFAULTS_H
#define MEMPROF_DEFAULTS_H

#define MEMPROF_MAX_DEPTH 128
#define MEMPROF_DEFAULT_DEPTH 64
#define MEMPROF_DEFAULT_RATE 1024
#define MEMPROF_DEFAULT_PREFIX "./custom_profiler_"

#endif
