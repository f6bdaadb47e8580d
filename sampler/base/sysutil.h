/* System helpers (sysutil.c): memory straight from mmap, clocks, files, messages. */
#ifndef MEMPROF_SYSUTIL_H
#define MEMPROF_SYSUTIL_H

#include <signal.h>
#include <sys/types.h>

#include "base/common.h"

void *memprof_map(size_t bytes) HIDDEN;            /* zeroed, never via malloc */
void memprof_unmap(void *p, size_t bytes) HIDDEN;
void memprof_zero_pages(void *p, size_t bytes) HIDDEN;  /* back to zero pages */
uint64_t memprof_now_ns(void) HIDDEN;             /* CLOCK_REALTIME */
/* A number from the environment, the fallback when unset or in secure-execution mode
 * (AT_SECURE: a setuid program's environment is its caller's, not its own). */
uint64_t memprof_getenv_u64(const char *name, uint64_t fallback) HIDDEN;
/* SIGXFSZ held back from the calling thread while it writes a file of the sampler's,
 * so that passing RLIMIT_FSIZE fails with EFBIG instead of ending the process; the
 * release takes back a SIGXFSZ the hold raised before restoring the mask. */
struct memprof_fsize_guard {
    sigset_t old;
    bool was_pending;
};
void memprof_fsize_hold(struct memprof_fsize_guard *g) HIDDEN;
void memprof_fsize_release(const struct memprof_fsize_guard *g) HIDDEN;
/* write() until done, SIGXFSZ held; -1 with errno (ENOSPC for a write of nothing) on
 * failure. */
int memprof_write_all(int fd, const void *data, size_t len) HIDDEN;
void memprof_random_name(char name[9]) HIDDEN;   /* 8 letters or digits, unpredictable */
/* Creates <final>.<random>.locked.tmp for reading and writing with O_CREAT|O_EXCL|O_NOFOLLOW, so that
 * nothing planted in the folder (a link, a file of another user) can redirect
 * or truncate what we write, with `mode` (less the umask) from its first instant,
 * and locks it (flock) until it is closed: renamed into place or removed first;
 * tmp receives its name.  A file descriptor, or -1. */
int memprof_create_temp(const char *final, char *tmp, size_t tmp_len, mode_t mode) HIDDEN;
/* Records the folder of `prefix` (absolute) for the window's files: from then on the
 * functions here make, rename, remove and list the files in it only while its path
 * leads to that same folder (ESTALE otherwise), through a descriptor checked to be it. */
void memprof_pin_folder(const char *prefix) HIDDEN;
int memprof_unlink(const char *path) HIDDEN;   /* unlink, in the pinned folder if there */
int memprof_rename(const char *from, const char *to) HIDDEN;   /* rename, likewise */
/* Removes `name` in `dir` if it is a temporary of the sampler's (a .heap's, a
 * .memlog's, a control block's) that is ours and that no writer holds locked: its
 * writer was killed.  Never a link, nor another user's file. */
void memprof_remove_dead_temp(int dir, const char *name) HIDDEN;
/* visit(its descriptor, name) for the entries of `folder` (the first few thousand:
 * sysutil.c), without allocating. */
void memprof_each_entry(const char *folder, void (*visit)(int dir, const char *name)) HIDDEN;
/* memprof_remove_dead_temp on every entry of the folder `final` is to go in. */
void memprof_remove_dead_temps_beside(const char *final) HIDDEN;
/* fsync, rename tmp into place and close; on failure tmp is removed, errno says why. */
int memprof_publish(int fd, const char *tmp, const char *final) HIDDEN;
/* The calling thread's own /proc entry `name` (PROC_THREAD_SELF), or the process's
 * where only those describe the program: qemu-user emulates /proc/self/{maps,exe,
 * cmdline} for the program it runs, and leaves /proc/thread-self/ the emulator's. */
#define MEMPROF_PROC_PATH 64
const char *memprof_proc_file(const char *name, char out[MEMPROF_PROC_PATH]) HIDDEN;
/* The bounds of the mapping holding addr and whether it is readable (readable may be
 * NULL), read from /proc with plain system calls into a small stack buffer: for a
 * signal handler's sigaltstack, and with no lock (pthread_getattr_np's fopen takes
 * the thread's lock and calls malloc).  false, errno ESRCH: none holds it. */
bool memprof_mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi, bool *readable) HIDDEN;
/* Reads up to cap - 1 bytes of a (/proc) file, NUL-terminated; returns the length. */
size_t memprof_read_small_file(const char *path, char *buf, size_t cap) HIDDEN;
bool memprof_has_argument(const char *arg) HIDDEN;   /* one of the process's arguments is arg */
void memprof_log(const char *fmt, ...) HIDDEN __attribute__((format(printf, 1, 2)));

#endif
