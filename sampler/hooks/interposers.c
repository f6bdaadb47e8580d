/* The table of the families of functions the sampler interposes: each family's file
 * defines its hooks (exported, for a preloaded sampler) and says which is the hook of
 * a name.  A new family is a hooks file and an entry here. */
#include <stddef.h>

#include "hooks/framework_oom.h"
#include "hooks/got_hooks.h"
#include "hooks/hooks_device.h"
#include "hooks/hooks_libc.h"
#include "hooks/hooks_malloc.h"
#include "hooks/hooks_signals.h"
#include "hooks/interposers.h"

typedef void *hook_for_fn(const char *name);

static hook_for_fn *const families[] = {
    memprof_loader_hook_for,      /* dlopen, dlsym (got_hooks.c, hooks_dlsym.c) */
    memprof_malloc_hook_for,      /* malloc & co. (hooks_malloc.c) */
    memprof_libc_hook_for,        /* pthread_exit, _exit, _Exit, set*id (hooks_libc.c) */
    memprof_signals_hook_for,     /* sigaction, signal, the masks (hooks_signals.c) */
    memprof_framework_hook_for,   /* __cxa_throw (framework_oom.c) */
    memprof_device_hook_for,      /* CUDA, ACL, HAL (hooks_device.c) */
};

void *memprof_hook_for(const char *name)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        void *hook = families[i](name);
        if (hook != NULL)
            return hook;
    }
    return NULL;
}
