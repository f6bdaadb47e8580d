"""What a capture takes when it is not told otherwise: the one home of these values on the
Python side (the command lines, the API, launching, the gate). The sampler's own defaults,
for a program started without mem_profiler, are the same values in C
(sampler/base/defaults.h); a test compares them."""

RATE = 1024  # mean bytes between samples of the host heap
DEVICE_RATE = 1  # of the device and HAL heaps: every allocation
DEPTH = 64  # frames kept per stack
MAX_DEPTH = 128  # the sampler's largest stack
PREFIX = "./custom_profiler_"
LOG_FILE_BYTES = 100 << 20  # log mode: bytes per event log file
LOG_FILES = 10  # log mode: event log files kept
STACK_MEMORY = 512  # MiB for the stacks and their tree (--stack-memory, MEMPROF_STACK_MEMORY)
STACK_MEMORY_LIMIT = 1 << 14  # MiB: the most it may be
MAX_STACK_IDS = 1 << 24  # the most stacks at any stack memory (1 GiB reaches it)
MAX_LIVE = 1 << 24  # the live table's, in samples (MEMPROF_MAX_LIVE; nor this)
