/* The program's calls that set or read a signal's action and a thread's mask, while
 * the sampler takes signals for itself: the action the program sets is kept as its
 * own, and the masks leave SIGTRAP open once a pool's probes need it (base/signals.c
 * says why and how). */
#include <errno.h>
#include <signal.h>

#include "base/real_function.h"
#include "base/signals.h"
#include "hooks/hooks_signals.h"
#include "hooks/interposers.h"

static struct memprof_real_fn real_signal = {"signal", "libc.so", NULL, NULL};
static struct memprof_real_fn real_pthread_sigmask = {"pthread_sigmask", "libc.so", NULL, NULL};
static struct memprof_real_fn real_sigprocmask = {"sigprocmask", "libc.so", NULL, NULL};

typedef int mask_fn(int how, const sigset_t *set, sigset_t *old);

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    return memprof_signal_program_action(sig, act, old);
}
MEMPROF_LOCAL_ALIAS(sigaction)

EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
    if (!memprof_signal_taken(sig)) {
        sighandler_t (*real)(int, sighandler_t) =
            (sighandler_t(*)(int, sighandler_t))memprof_real_function(&real_signal);
        return real != NULL ? real(sig, handler) : SIG_ERR;
    }
    struct sigaction act = {.sa_handler = handler, .sa_flags = SA_RESTART}, old;
    sigemptyset(&act.sa_mask);
    return memprof_signal_program_action(sig, &act, &old) == 0 ? old.sa_handler : SIG_ERR;
}
MEMPROF_LOCAL_ALIAS(signal)

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    mask_fn *real = (mask_fn *)memprof_real_function(&real_pthread_sigmask);
    sigset_t copy;
    return real != NULL ? real(how, memprof_signal_mask_given(how, set, &copy), old) : ENOSYS;
}
MEMPROF_LOCAL_ALIAS(pthread_sigmask)

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    mask_fn *real = (mask_fn *)memprof_real_function(&real_sigprocmask);
    sigset_t copy;
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return real(how, memprof_signal_mask_given(how, set, &copy), old);
}
MEMPROF_LOCAL_ALIAS(sigprocmask)

void *memprof_signals_hook_for(const char *name)
{
    static const struct memprof_named_hook hooks[] = {
        {"pthread_sigmask", (void *)hook_pthread_sigmask},
        {"sigprocmask", (void *)hook_sigprocmask},
        {"sigaction", (void *)hook_sigaction},
        {"signal", (void *)hook_signal},
    };
    return memprof_hook_named(hooks, sizeof hooks / sizeof hooks[0], name);
}
