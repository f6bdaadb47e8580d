/* The signals the sampler takes for itself, and the program's own actions for them:
 * SIGTRAP for a framework pool's probes (framework_pools.c), and the signals whose
 * default action ends the process while a window is open (control.c writes its files
 * first).  The program's actions stay in charge: while ours is installed, sigaction and
 * signal set and read the program's action as if it were installed, and ours passes on
 * to it every signal that is not for us.  For a signal ours takes only while the
 * program's action is the default, an action of the program's other than the default
 * is installed as it is, and ours comes back when the program sets the default again.
 *
 * The masks: the kernel ends a process whose thread reaches an int3 with SIGTRAP
 * blocked, so once a pool's sites are known the masks a thread sets leave SIGTRAP open
 * (a trap is raised by the instruction that needs it, not sent).  Threads that blocked
 * it before (an attach; the CUDA driver's own, which never run the pool's code) keep
 * their masks. */
#include <errno.h>
#include <string.h>

#include "base/real_function.h"
#include "base/signals.h"

#define SIGNALS 65   /* 1 to 64 */

struct taken {
    memprof_signal_fn handler;   /* NULL: not ours */
    bool always;
    bool installed;              /* ours is the kernel's action now */
    struct sigaction program;    /* the program's action */
};

static struct taken taken[SIGNALS];
static _Atomic bool trap_open;

static struct memprof_real_fn real_sigaction = {"sigaction", "libc.so", NULL, NULL};

static int real_action(int sig, const struct sigaction *act, struct sigaction *old)
{
    int (*real)(int, const struct sigaction *, struct sigaction *) =
        (int (*)(int, const struct sigaction *, struct sigaction *))memprof_real_function(
            &real_sigaction);
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return real(sig, act, old);
}

static bool is_default(const struct sigaction *a)
{
    return !(a->sa_flags & SA_SIGINFO) && a->sa_handler == SIG_DFL;
}

static bool install(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = taken[sig].handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    taken[sig].installed = real_action(sig, &sa, NULL) == 0;
    return taken[sig].installed;
}

bool memprof_signal_take(int sig, memprof_signal_fn handler, bool always)
{
    if (sig <= 0 || sig >= SIGNALS)
        return false;
    struct taken *t = &taken[sig];
    struct sigaction now;
    if (real_action(sig, NULL, &now) != 0)
        return false;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == handler && t->installed)
        return true;   /* ours already */
    t->program = now;   /* the program's, set through a call no hook saw (an attach) */
    t->handler = handler;
    t->always = always;
    return (always || is_default(&now)) && install(sig);
}

void memprof_signal_pass_on(int sig, siginfo_t *info, void *context)
{
    const struct sigaction *p = &taken[sig].program;
    if (p->sa_flags & SA_SIGINFO) {
        if (p->sa_sigaction != NULL)
            p->sa_sigaction(sig, info, context);
    } else if (p->sa_handler == SIG_DFL) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        real_action(sig, &dfl, NULL);   /* as without us */
        taken[sig].installed = false;
        raise(sig);   /* not blocked in our handler (SA_NODEFER): its default action now */
    } else if (p->sa_handler != SIG_IGN) {
        p->sa_handler(sig);
    }
}

void memprof_signal_keep_trap_open(void)
{
    atomic_store(&trap_open, true);
}

/* ---- the program's calls (their hooks: hooks_signals.c) ------------------------ */
bool memprof_signal_taken(int sig)
{
    return sig > 0 && sig < SIGNALS && taken[sig].handler != NULL;
}

int memprof_signal_program_action(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (!memprof_signal_taken(sig))
        return real_action(sig, act, old);
    struct taken *t = &taken[sig];
    struct sigaction was = t->program;
    if (act != NULL) {
        if (!t->always && !is_default(act)) {   /* the program's own, installed as it is */
            int rc = real_action(sig, act, NULL);
            if (rc != 0)
                return rc;
            t->installed = false;
        } else if (!t->installed && !install(sig)) {
            return -1;
        }
        t->program = *act;
    }
    if (old != NULL)
        *old = was;
    return 0;
}

const sigset_t *memprof_signal_mask_given(int how, const sigset_t *set, sigset_t *copy)
{
    if (set == NULL || how == SIG_UNBLOCK || !atomic_load_explicit(&trap_open, memory_order_relaxed))
        return set;
    *copy = *set;
    sigdelset(copy, SIGTRAP);
    return copy;
}
