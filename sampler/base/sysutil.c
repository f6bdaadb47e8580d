/* System helpers for the sampler: memory straight from mmap (never through the
 * allocator we hook), clocks, environment numbers, messages on stderr. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/sysutil.h"

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

/* The bounds of the mapping holding addr, from /proc/thread-self/maps read
 * with plain system calls into a small stack buffer (the walk may run on a
 * signal handler's small sigaltstack).  pthread_getattr_np cannot
 * serve here: it holds the thread's lock while its fopen calls malloc, so a
 * sample taken inside it would wait on that lock forever (Rust's runtime and
 * the JVM call it at every thread start). */
bool memprof_mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi, bool *readable)
{
    char proc[MEMPROF_PROC_PATH];
    int fd = open(memprof_proc_file("maps", proc), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    /* Each line starts "start-end ": a small state machine, so lines may
     * straddle reads. */
    enum { START, END, PERMS, REST } field = START;
    uintptr_t start = 0, end = 0;
    bool found = false;
    char buf[1024];
    ssize_t n;
    while (!found && ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))) {
        for (ssize_t i = 0; i < n && !found; i++) {
            char c = buf[i];
            int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (field == START) {
                if (digit >= 0)
                    start = start << 4 | (uintptr_t)digit;
                else
                    field = c == '-' ? END : REST;
            } else if (field == END) {
                if (digit >= 0)
                    end = end << 4 | (uintptr_t)digit;
                else
                    field = PERMS;
            } else if (field == PERMS) {   /* its first letter: r or - */
                field = REST;
                if (addr >= start && addr < end) {
                    *lo = start;
                    *hi = end;
                    if (readable != NULL)
                        *readable = c == 'r';
                    found = true;
                }
            } else if (c == '\n') {
                field = START;
                start = end = 0;
            }
        }
    }
    close(fd);
    if (!found)
        errno = ESRCH;
    return found;
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

/* 0: not looked at yet; else 1 (thread-self) or 2 (self).  Looked at once, by
 * whichever thread first asks: the answers agree. */
static _Atomic int proc_dir;

static int find_proc_dir(void)
{
    char self[256], thread[256];
    ssize_t a = readlink("/proc/self/exe", self, sizeof self);
    ssize_t b = readlink(PROC_THREAD_SELF "exe", thread, sizeof thread);
    int dir = a > 0 && b > 0 && (a != b || memcmp(self, thread, (size_t)a) != 0) ? 2 : 1;
    atomic_store_explicit(&proc_dir, dir, memory_order_relaxed);
    return dir;
}

const char *memprof_proc_file(const char *name, char out[MEMPROF_PROC_PATH])
{
    int dir = atomic_load_explicit(&proc_dir, memory_order_relaxed);
    const char *prefix = (dir ? dir : find_proc_dir()) == 2 ? "/proc/self/" : PROC_THREAD_SELF;
    size_t p = strlen(prefix), n = strnlen(name, MEMPROF_PROC_PATH - 1 - p);
    memcpy(out, prefix, p);
    memcpy(out + p, name, n);
    out[p + n] = '\0';
    return out;
}

bool memprof_has_argument(const char *arg)
{
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = strlen(arg), matched = 0;   /* of the argument read so far; SIZE_MAX: none */
    bool found = false;
    char buf[512];
    ssize_t n;
    while (!found && (n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n && !found; i++) {
            if (buf[i] == '\0') {
                found = matched == len;
                matched = 0;
            } else if (matched != SIZE_MAX) {
                matched = matched < len && buf[i] == arg[matched] ? matched + 1 : SIZE_MAX;
            }
        }
    }
    close(fd);
    return found;
}

void memprof_fsize_hold(struct memprof_fsize_guard *g)
{
    sigset_t xfsz, pending;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &g->old);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGXFSZ);
}

void memprof_fsize_release(const struct memprof_fsize_guard *g)
{
    int saved = errno;
    sigset_t xfsz, pending;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGXFSZ)) {
        const struct timespec now = {0, 0};
        sigtimedwait(&xfsz, NULL, &now);   /* ours: taken back before it is let through */
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

int memprof_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    struct memprof_fsize_guard guard;
    memprof_fsize_hold(&guard);
    int rc = 0;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENOSPC;
            rc = -1;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    memprof_fsize_release(&guard);
    return rc;
}

void memprof_random_name(char name[9])
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static _Atomic uint64_t calls;
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (memprof_now_ns() ^ (uint64_t)getpid() << 32) * 0x9e3779b97f4a7c15ull +
            atomic_fetch_add(&calls, 1);
    for (int i = 0; i < 8; i++, r /= 62)
        name[i] = letters[r % 62];
    name[8] = '\0';
}

#define LOCKED_TEMP ".locked.tmp"

/* The writer holds an flock on its temporary from its creation to its rename, so
 * that the next writer can tell one whose writer was killed (see
 * memprof_remove_dead_temp).  A temporary removed as dead before the lock was
 * taken has no link left, and another name is tried. */
/* The folder of the window's files, as it was when the prefix was set: its path and its
 * identity.  Each file of the prefix is made, renamed and removed in a descriptor of
 * that folder opened for the act and checked to be that folder, so that a folder on the
 * way swapped for a link mid-window redirects nothing: the act fails instead.  No
 * descriptor is held between acts: a program at its descriptor limit still writes its
 * profile, and a profiled program does not keep its folder's file system busy. */
static bool pinned;
static dev_t pinned_dev;
static ino_t pinned_ino;
static char pinned_path[MEMPROF_PATH_MAX];

void memprof_pin_folder(const char *prefix)
{
    const char *slash = strrchr(prefix, '/');
    size_t n = slash == NULL ? 0 : (size_t)(slash - prefix);
    pinned = false;
    if (slash == NULL || n >= sizeof pinned_path)
        return;
    memcpy(pinned_path, prefix, n);
    pinned_path[n] = '\0';
    struct stat st;
    if (stat(n == 0 ? "/" : pinned_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        pinned = true;
        pinned_dev = st.st_dev;
        pinned_ino = st.st_ino;
    }
}

static bool is_pinned(const struct stat *st)
{
    return S_ISDIR(st->st_mode) && st->st_dev == pinned_dev && st->st_ino == pinned_ino;
}

/* Whether the pinned folder's path still leads to it, checked by the path alone: for a
 * program without a descriptor to spare. */
static bool pinned_by_path(void)
{
    struct stat st;
    return stat(pinned_path[0] ? pinned_path : "/", &st) == 0 && is_pinned(&st);
}

/* For `path`: the folder to act in (a descriptor the caller closes, or AT_FDCWD for a
 * path outside the pinned folder) and the name in it; -1 with errno ESTALE when the
 * folder is no longer the one pinned.  Without a descriptor to spare (EMFILE), the
 * folder is checked by its path, and the act goes by path. */
static int open_folder_of(const char *path, const char **name)
{
    size_t n = strlen(pinned_path);
    *name = path;
    if (!pinned || strncmp(path, pinned_path, n) != 0 || path[n] != '/' ||
        strchr(path + n + 1, '/') != NULL)
        return AT_FDCWD;
    int dir = open(n == 0 ? "/" : pinned_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (dir < 0 && (errno == EMFILE || errno == ENFILE)) {
        if (pinned_by_path())
            return AT_FDCWD;
    } else if (dir >= 0 && fstat(dir, &st) == 0 && is_pinned(&st)) {
        *name = path + n + 1;
        return dir;
    }
    if (dir >= 0)
        close(dir);
    errno = ESTALE;
    return -1;
}

static void close_folder(int dir)
{
    if (dir >= 0)
        close(dir);
}

int memprof_unlink(const char *path)
{
    const char *name;
    int dir = open_folder_of(path, &name);
    if (dir == -1)
        return -1;
    int rc = unlinkat(dir, name, 0);
    close_folder(dir);
    return rc;
}

int memprof_rename(const char *from, const char *to)
{
    const char *from_name, *to_name;
    int from_dir = open_folder_of(from, &from_name);
    if (from_dir == -1)
        return -1;
    int to_dir = open_folder_of(to, &to_name);
    int rc = to_dir == -1 ? -1 : renameat(from_dir, from_name, to_dir, to_name);
    int saved = errno;
    close_folder(from_dir);
    close_folder(to_dir);
    errno = saved;
    return rc;
}

static int create_in_folder(const char *tmp, mode_t mode)
{
    const int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    const char *name;
    int dir = open_folder_of(tmp, &name);
    if (dir == -1)
        return -1;
    if (dir == AT_FDCWD)
        return open(tmp, flags, mode);
    int fd = openat(dir, name, flags, mode);
    int saved = errno;
    close(dir);
    if (fd < 0 && (saved == EMFILE || saved == ENFILE)) {   /* the folder's took the last */
        if (pinned_by_path())
            return open(tmp, flags, mode);
        saved = ESTALE;
    }
    errno = saved;
    return fd;
}

int memprof_create_temp(const char *final, char *tmp, size_t tmp_len, mode_t mode)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        char name[9];
        memprof_random_name(name);
        int n = snprintf(tmp, tmp_len, "%s.%s" LOCKED_TEMP, final, name);
        if (n < 0 || (size_t)n >= tmp_len) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = create_in_folder(tmp, mode);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return -1;
        struct stat st;
        while (flock(fd, LOCK_EX) != 0 && errno == EINTR) {
        }
        if (fstat(fd, &st) == 0 && st.st_nlink > 0)
            return fd;
        close(fd);
    }
    errno = EEXIST;
    return -1;
}

/* The name of one of the sampler's temporaries (of a .heap, a .memlog, a control
 * block): <final>.<8 letters or digits>.locked.tmp.  No other file is ever removed, nor
 * an older sampler's <final>.<random>.tmp, which it wrote without a lock. */
static bool sampler_temp_name(const char *name)
{
    static const char *const finals[] = {".heap", ".memlog", "/.mem_profiler"};
    const size_t tail = 1 + 8 + strlen(LOCKED_TEMP);   /* .<random>.locked.tmp */
    size_t len = strlen(name);
    if (len <= tail || strcmp(name + len - strlen(LOCKED_TEMP), LOCKED_TEMP) != 0 ||
        name[len - tail] != '.')
        return false;
    size_t stem = len - tail;
    for (size_t i = stem + 1; i < stem + 9; i++)
        if (!isalnum((unsigned char)name[i]))
            return false;
    for (size_t f = 0; f < sizeof finals / sizeof finals[0]; f++) {
        /* "/.mem_profiler" is a whole name: its '/' stands for the start */
        const char *end = finals[f][0] == '/' ? finals[f] + 1 : finals[f];
        size_t n = strlen(end);
        if (finals[f][0] == '/' ? stem == n && memcmp(name, end, n) == 0
                                : stem > n && memcmp(name + stem - n, end, n) == 0)
            return true;
    }
    return false;
}

void memprof_remove_dead_temp(int dir, const char *name)
{
    struct stat named, held;
    if (!sampler_temp_name(name) || fstatat(dir, name, &named, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(named.st_mode) || named.st_uid != geteuid())
        return;
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    /* Unlocked: its writer is gone (killed).  Removed only if the name still holds it. */
    if (fstat(fd, &held) == 0 && S_ISREG(held.st_mode) && held.st_uid == geteuid() &&
        flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        fstatat(dir, name, &named, AT_SYMLINK_NOFOLLOW) == 0 && named.st_dev == held.st_dev &&
        named.st_ino == held.st_ino)
        unlinkat(dir, name, 0);
    close(fd);
}

/* Past this many entries of a folder the rest is left to a later look (and to
 * `mem_profiler list`): anyone can fill /dev/shm with names, and an output folder may
 * hold many files, which would otherwise cost every process its start and exit. */
#define ENTRIES_LOOKED_AT 8192

void memprof_each_entry(const char *folder, void (*visit)(int dir, const char *name))
{
    /* getdents64 into the stack: opendir would allocate through the program's malloc,
     * and a window may be open */
    int dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (dir < 0)
        return;
    if (pinned && strcmp(folder, pinned_path[0] ? pinned_path : "/") == 0 &&
        (fstat(dir, &st) != 0 || !is_pinned(&st))) {
        close(dir);   /* another folder now: nothing of ours to look at there */
        return;
    }
    char buf[4096] __attribute__((aligned(8)));
    ssize_t got;
    for (int seen = 0; seen < ENTRIES_LOOKED_AT && (got = getdents64(dir, buf, sizeof buf)) > 0;) {
        for (ssize_t at = 0; at < got; seen++) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + at);
            at += e->d_reclen;
            visit(dir, e->d_name);
        }
    }
    close(dir);
}

void memprof_remove_dead_temps_beside(const char *final)
{
    char folder[MEMPROF_PATH_MAX];
    const char *slash = strrchr(final, '/');
    size_t n = slash == NULL ? 0 : slash == final ? 1 : (size_t)(slash - final);
    if (n >= sizeof folder)
        return;
    memcpy(folder, slash == NULL ? "." : final, slash == NULL ? 1 : n);
    folder[slash == NULL ? 1 : n] = '\0';
    memprof_each_entry(folder, memprof_remove_dead_temp);
}

/* Renamed before it is closed: its lock says to the next writer that it is not dead.
 * After an fsync that succeeded, close has nothing left to report. */
int memprof_publish(int fd, const char *tmp, const char *final)
{
    int rc = fsync(fd);
    if (rc == 0)
        rc = memprof_rename(tmp, final);
    int saved = errno;
    if (rc != 0)
        memprof_unlink(tmp);
    close(fd);
    errno = saved;
    return rc;
}

uint64_t memprof_getenv_u64(const char *name, uint64_t fallback)
{
    const char *text = secure_getenv(name);
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
