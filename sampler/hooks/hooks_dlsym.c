/* Interposition of dlsym.  The CUDA runtime dlopens the driver and fetches
 * only cuGetProcAddress_v2 from it with dlsym(handle, ...), then asks that for
 * every driver function: a preloaded cuMemAlloc_v2 is never reached.  So dlsym
 * on an explicit handle hands back our wrappers for the driver's entry points
 * (hooks_device.c decides which).
 *
 * dlsym(RTLD_NEXT) and dlsym(RTLD_DEFAULT) depend on who calls them (glibc
 * looks at the return address), so those go straight to glibc's dlsym by a tail
 * jump that keeps the caller's return address (the stub, arch/<arch>.S);
 * only explicit handles, which mean the same from any caller, pass through C. */
#include <dlfcn.h>

#include "base/real_function.h"
#include "hooks/hooks_device.h"
#include "hooks/hooks_dlsym.h"

void *memprof_dlsym_handle(void *handle, const char *name)
{
    void *found = memprof_real_dlsym(handle, name);
    return found != NULL && name != NULL ? memprof_device_entry_point(name, found) : found;
}
