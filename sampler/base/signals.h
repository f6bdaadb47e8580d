/* The signals the sampler takes for itself, and the program's own actions for them
 * (signals.c). */
#ifndef MEMPROF_SIGNALS_H
#define MEMPROF_SIGNALS_H

#include <signal.h>

#include "base/common.h"

typedef void (*memprof_signal_fn)(int sig, siginfo_t *info, void *context);

/* Makes `handler` the action of `sig`, the program's action kept to pass on to.
 * `always`: it stays while the program sets actions of its own (SIGTRAP, whose traps
 * of ours only the sampler can take); else it is there only while the program's
 * action is the default, and a handler or SIG_IGN of the program's is installed as it
 * is.  false: it could not be installed. */
bool memprof_signal_take(int sig, memprof_signal_fn handler, bool always) HIDDEN;
/* A signal ours is not for, to the program's action; its default action taken as it
 * would have been (the process ends, with a core where the signal makes one). */
void memprof_signal_pass_on(int sig, siginfo_t *info, void *context) HIDDEN;
/* The masks threads set leave SIGTRAP open from now on (a thread that reached an
 * int3 with it blocked would be ended by the kernel). */
void memprof_signal_keep_trap_open(void) HIDDEN;
/* The program's calls, as their hooks (hooks_signals.c) make them.  Whether `sig` is
 * one the sampler takes; sigaction's, the program's action set and read as if it
 * were installed; the mask a thread sets, SIGTRAP left open where it must be (in
 * `copy`, or `set` itself). */
bool memprof_signal_taken(int sig) HIDDEN;
int memprof_signal_program_action(int sig, const struct sigaction *act,
                                  struct sigaction *old) HIDDEN;
const sigset_t *memprof_signal_mask_given(int how, const sigset_t *set, sigset_t *copy) HIDDEN;

#endif
