/* Where a process's control block lives: a file in /dev/shm of its own, made as the
 * user who may use it, placed under its name only once whole, retired when its user
 * changes, and the blocks of this user's processes that ended without a word removed.
 * What the block holds, and the thread that answers through it, are control.c's. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/sysutil.h"
#include "control/block_file.h"

/* The inode of this process's PID namespace, which is its for good (setns and
 * unshare move only its later children). */
uint32_t memprof_own_pid_namespace(void)
{
    struct stat st;
    return stat("/proc/self/ns/pid", &st) == 0 ? (uint32_t)st.st_ino : 0;
}

/* Whether the entry `name` in `dir` is a block made in another PID namespace than
 * ours: its pid is a number there, and says nothing of our process with that number
 * (a process in a container sharing /dev/shm sees the host's pids as gone). */
static bool block_of_other_namespace(int dir, const char *name)
{
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct memprof_control head;
    size_t len = offsetof(struct memprof_control, start_time);
    bool other = pread(fd, &head, len, 0) == (ssize_t)len && head.magic == MEMPROF_CONTROL_MAGIC &&
                 head.pid_ns != 0 && head.pid_ns != memprof_own_pid_namespace();
    close(fd);
    return other;
}

/* Blocks of this user's processes that ended without exit handlers (killed, or
 * _exit in a forked child), and the temporaries of blocks being made when their
 * process was killed: a program forking many short children would
 * otherwise fill /dev/shm with them.  A pid now used by another process is
 * left to the controller, which tells the two apart by start time; a block of
 * another PID namespace is left alone. */
static void remove_if_stale(int dir, const char *name)
{
    memprof_remove_dead_temp(dir, name);   /* .mem_profiler.<random>.locked.tmp */
    int pid, end = 0;
    struct stat st;
    /* mem_profiler.<pid>, or mem_profiler.<pid>.<random> */
    if (sscanf(name, "mem_profiler.%d%n", &pid, &end) != 1 ||
        (name[end] != '\0' && name[end] != '.') || pid == getpid() ||
        fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        st.st_uid != getuid())
        return;
    if (kill(pid, 0) != 0 && errno == ESRCH && !block_of_other_namespace(dir, name))
        unlinkat(dir, name, 0);
}

void memprof_remove_stale_blocks(void)
{
    memprof_each_entry("/dev/shm", remove_if_stale);
}

/* Who may use the block (its file's owner): the user the process runs as where that
 * user may ptrace it (its real, effective and saved uids agree and it is dumpable: a
 * worker that gave up root becomes so by prctl(PR_SET_DUMPABLE, 1)); root while any
 * of its uids is root, since it can become root again; otherwise `current`, the
 * block's owner so far (no process can give root's block away without root's
 * rights).  A controller trusts a block of the process's user or of root only. */
uid_t memprof_block_owner(uid_t current)
{
    uid_t r, e, s;
    if (getresuid(&r, &e, &s) != 0)
        return current;
    if (r == e && e == s && syscall(SYS_prctl, PR_GET_DUMPABLE) == 1)
        return e;
    return r == 0 || e == 0 || s == 0 ? 0 : current;
}

/* A temporary file for a block, mode 0600, made as `owner` (files are made as the
 * thread's fsuid, which setfsuid may set to any of the process's uids for the while). */
int memprof_block_file_create(uid_t owner, char *tmp, size_t tmp_len)
{
    uid_t fsuid = (uid_t)setfsuid((uid_t)-1);
    if (owner != fsuid)
        setfsuid(owner);
    /* 0600 from the start: another user who opened it before a chmod would read it,
     * and an flock of theirs would refuse its owner's controllers. */
    int fd = memprof_create_temp("/dev/shm/.mem_profiler", tmp, tmp_len, 0600);
    int saved = errno;
    if (owner != fsuid)
        setfsuid(fsuid);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_uid != owner)) {
        saved = EPERM;   /* root's block, in a process that may no longer make it */
        close(fd);
        unlink(tmp);
        fd = -1;
    }
    errno = saved;
    return fd;
}

/* A block its controllers no longer use: a controller that finds it skips it, and
 * root's controller removes it where this process no longer may (root's, after a
 * change of user). */
void memprof_block_file_retire(struct memprof_control *old, const char *path)
{
    old->magic = 0;
    unlink(path);
    munmap(old, sizeof *old);
}

/* Renames the made block to `path`, where it may replace an earlier block of ours
 * but never that of a process in another PID namespace with the same pid. */
bool memprof_block_file_place(const char *tmp, const char *path)
{
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return true;
    if (errno != EEXIST)
        return false;
    if (block_of_other_namespace(AT_FDCWD, path)) {
        errno = EEXIST;
        return false;
    }
    return rename(tmp, path) == 0;
}
