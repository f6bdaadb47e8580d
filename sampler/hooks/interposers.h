/* Every function of the program's that the sampler interposes, by family
 * (interposers.c): preloaded, each is an exported definition in its family's file;
 * injected, the GOT slots of these names are redirected to them (got_hooks.c). */
#ifndef MEMPROF_INTERPOSERS_H
#define MEMPROF_INTERPOSERS_H

#include <stddef.h>
#include <string.h>

#include "base/common.h"

/* Our hook of a relocated name, or NULL: a function the sampler lets be. */
void *memprof_hook_for(const char *name) HIDDEN;

/* A family's hooks by name, and the one named `name` among them (NULL: none); inline,
 * so that a family's file calls nothing of this one, which calls it. */
struct memprof_named_hook {
    const char *name;
    void *hook;
};

static inline void *memprof_hook_named(const struct memprof_named_hook *hooks, size_t count,
                                       const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(name, hooks[i].name) == 0)
            return hooks[i].hook;
    return NULL;
}

#endif
