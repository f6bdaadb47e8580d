/* The C library's calls the sampler must see besides the allocator's: a thread's end
 * (pthread_exit: the main thread's is watched for), the process's end by _exit or
 * _Exit, which skip the destructor that writes the open window's files, and the
 * set*id calls, around which the control thread is ended and made again
 * (control.c, "a change of credentials"). */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/real_function.h"
#include "control/control.h"
#include "hooks/hooks_libc.h"
#include "hooks/interposers.h"

static struct memprof_real_fn real_pthread_exit = {"pthread_exit", "libc.so", NULL, NULL};
static struct memprof_real_fn real__exit = {"_exit", "libc.so", NULL, NULL};

EXPORT void pthread_exit(void *retval)
{
    memprof_control_thread_exits();
    ((void (*)(void *))memprof_real_function(&real_pthread_exit))(retval);
    __builtin_unreachable();
}
MEMPROF_LOCAL_ALIAS(pthread_exit)

EXPORT void _exit(int status)
{
    memprof_control_process_exits();
    ((void (*)(int))memprof_real_function(&real__exit))(status);
    __builtin_unreachable();
}
MEMPROF_LOCAL_ALIAS(_exit)

EXPORT void _Exit(int status)
{
    hook__exit(status);
}
MEMPROF_LOCAL_ALIAS(_Exit)

#define CREDENTIAL_CALLS(X)                                  \
    X(setuid, (uid_t uid), (uid))                            \
    X(setgid, (gid_t gid), (gid))                            \
    X(seteuid, (uid_t uid), (uid))                           \
    X(setegid, (gid_t gid), (gid))                           \
    X(setreuid, (uid_t r, uid_t e), (r, e))                  \
    X(setregid, (gid_t r, gid_t e), (r, e))                  \
    X(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))     \
    X(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))     \
    X(setgroups, (size_t n, const gid_t *groups), (n, groups))

#define CREDENTIAL_HOOK(name, params, args)                                      \
    static struct memprof_real_fn real_##name = {#name, "libc.so", NULL, NULL};  \
    EXPORT int name params                                                       \
    {                                                                            \
        int (*real) params = (int (*) params)memprof_real_function(&real_##name); \
        if (real == NULL) {                                                      \
            errno = ENOSYS;                                                      \
            return -1;                                                           \
        }                                                                        \
        bool paused = memprof_control_pause();                                   \
        int rc = real args;                                                      \
        int saved = errno;                                                       \
        memprof_control_resume(paused);                                          \
        errno = saved;                                                           \
        return rc;                                                               \
    }                                                                            \
    MEMPROF_LOCAL_ALIAS(name)
CREDENTIAL_CALLS(CREDENTIAL_HOOK)

void memprof_libc_resolve(void)
{
#define CREDENTIAL_RESOLVE(fn, params, args) memprof_real_function(&real_##fn);
    CREDENTIAL_CALLS(CREDENTIAL_RESOLVE)
#undef CREDENTIAL_RESOLVE
}

void *memprof_libc_hook_for(const char *name)
{
    static const struct memprof_named_hook hooks[] = {
        {"pthread_exit", (void *)hook_pthread_exit},
        {"_exit", (void *)hook__exit},
        {"_Exit", (void *)hook__Exit},
#define CREDENTIAL_NAME(fn, params, args) {#fn, (void *)hook_##fn},
        CREDENTIAL_CALLS(CREDENTIAL_NAME)
#undef CREDENTIAL_NAME
    };
    return memprof_hook_named(hooks, sizeof hooks / sizeof hooks[0], name);
}
