/* System helpers for the sampler: memory straight from mmap (never through the
 * allocator we hook), clocks, environment numbers, messages on stderr. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "memprof_internal.h"

void *memprof_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void memprof_unmap(void *p, size_t bytes)
{
    if (p != NULL)
        munmap(p, bytes);
}

void memprof_zero_pages(void *p, size_t bytes)
{
    if (p != NULL)
        madvise(p, bytes, MADV_DONTNEED);   /* private anonymous: reads as zero */
}

uint64_t memprof_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t memprof_read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    n = n > 0 ? n : 0;
    buf[n] = '\0';
    return (size_t)n;
}

uint64_t memprof_getenv_u64(const char *name, uint64_t fallback)
{
    const char *text = getenv(name);
    if (text == NULL || *text == '\0')
        return fallback;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0') {
        memprof_log("ignoring %s=%s: not a number", name, text);
        return fallback;
    }
    return v;
}

void memprof_log(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "mem_profiler: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, (size_t)n);
    (void)unused;
}
