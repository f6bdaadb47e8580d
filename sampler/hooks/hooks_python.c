/* CPython's own allocators, wrapped (ARCHITECTURE.md, "Python's allocators").
 *
 * pymalloc serves most of a Python heap from arenas it maps itself, which the
 * malloc hooks never see.  While a window is open, the MEM and OBJ domains'
 * allocators are wrapped as tracemalloc wraps them, so every request is sampled
 * like malloc's.  Changing them needs the GIL: the wrap and the unwrap run as a
 * pending call, which the interpreter runs in its main thread with the GIL. */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/thread_state.h"
#include "control/control.h"
#include "control/window.h"
#include "hooks/hooks_python.h"
#include "sample/sample.h"

/* PyMemAllocatorEx and PyMemAllocatorDomain, the same from 3.5 to 3.13. */
struct py_allocator {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr);
};
enum { PY_DOMAIN_MEM = 1, PY_DOMAIN_OBJ = 2 };

/* PyMethodDef, the same from 3.0 to 3.13; METH_NOARGS. */
struct py_method {
    const char *name;
    void *(*function)(void *self, void *unused);
    int flags;
    const char *doc;
};
#define PY_METH_NOARGS 0x0004

struct python_api {
    int (*is_initialized)(void);
    const char *(*allocator_name)(void);   /* NULL if the interpreter has none */
    int (*add_pending_call)(int (*fn)(void *), void *arg);
    void (*get_allocator)(int domain, struct py_allocator *out);
    void (*set_allocator)(int domain, struct py_allocator *in);
    /* for the hook at the program's end (NULL: none is registered) */
    void *(*import_module)(const char *name);
    void *(*new_function)(struct py_method *method, void *self, void *module);
    void *(*call_method)(void *object, const char *name, const char *format, ...);
    void (*incref)(void *object), (*decref)(void *object);
    void (*clear_error)(void);
    void *none;
    ssize_t (*collect)(void);   /* PyGC_Collect */
};

/* ---- the wrappers ----------------------------------------------------------------
 * Forwarding to `under`, the allocator that was current when we wrapped, means
 * a block keeps its allocator whichever way it is freed: one allocated under
 * us and freed after our removal goes straight to `under`, which made it, and
 * one allocated before the wrap and freed through us is forwarded to it. */
struct wrapped_domain {
    int domain;
    struct py_allocator under;
    bool in_chain;   /* our wrapper is installed: current, or under another wrapper */
    bool pymalloc;   /* `under` is pymalloc itself (not malloc, nor a debug or custom hook) */
};
static struct wrapped_domain domains[] = {{.domain = PY_DOMAIN_MEM}, {.domain = PY_DOMAIN_OBJ}};

/* What pymalloc passes on to malloc (requests over 512 bytes, its own
 * bookkeeping) happens inside `under`: the malloc hooks leave it to us. */
static inline void enter_python(void) { memprof_thread.python_depth++; }
static inline void leave_python(void) { memprof_thread.python_depth--; }

/* The wrappers' fast paths are tail calls, which need no frame of their own (the
 * rest of the sampler keeps frame pointers, so that a walk can leave it); a compiler
 * without GCC's per-function options builds them with one. */
#if defined(__GNUC__) && !defined(__clang__)
#define FRAMELESS __attribute__((optimize("omit-frame-pointer")))
#else
#define FRAMELESS
#endif

/* pymalloc serves requests of 1 to 512 bytes from its own pools; only larger ones
 * (and 0, and any once its arenas cannot grow) go on to malloc. */
#define PYMALLOC_SMALL 512

static __attribute__((noinline)) void *counted_malloc(struct wrapped_domain *d, size_t size)
{
    enter_python();
    void *p = d->under.malloc(d->under.ctx, size);
    leave_python();
    memprof_on_alloc(p, size);
    return p;
}

/* Most requests are small and not sampled: they go straight on (nothing of such a
 * request reaches the malloc hooks). */
FRAMELESS static void *wrap_malloc(void *ctx, size_t size)
{
    struct wrapped_domain *d = ctx;
    if (LIKELY(d->pymalloc && size - 1 < PYMALLOC_SMALL) && memprof_alloc_unsampled(size))
        return d->under.malloc(d->under.ctx, size);
    return counted_malloc(d, size);
}

static void *wrap_calloc(void *ctx, size_t n, size_t size)
{
    struct wrapped_domain *d = ctx;
    enter_python();
    void *p = d->under.calloc(d->under.ctx, n, size);
    leave_python();
    memprof_on_alloc(p, n * size);   /* a product that overflows gets NULL, never counted */
    return p;
}

static void *wrap_realloc(void *ctx, void *old, size_t size)
{
    struct wrapped_domain *d = ctx;
    struct memprof_moved moved = memprof_on_realloc(old);
    enter_python();
    void *p = d->under.realloc(d->under.ctx, old, size);
    leave_python();
    memprof_on_realloc_done(moved, old, p == NULL);   /* PyMem_Realloc(p, 0) frees nothing */
    memprof_on_alloc(p, size);
    return p;
}

static __attribute__((noinline)) void counted_free(struct wrapped_domain *d, void *ptr)
{
    memprof_free_slow(ptr);
    d->under.free(d->under.ctx, ptr);
}

/* As wrap_malloc: almost every free goes straight on. */
FRAMELESS static void wrap_free(void *ctx, void *ptr)
{
    struct wrapped_domain *d = ctx;
    if (LIKELY(ptr == NULL || !memprof_free_may_be_sampled(ptr)))
        return d->under.free(d->under.ctx, ptr);
    counted_free(d, ptr);
}

static bool is_ours(const struct py_allocator *a, const struct wrapped_domain *d)
{
    return a->malloc == wrap_malloc && a->ctx == d;
}

/* ---- installing and removing, with the GIL -------------------------------------- */
static _Atomic(const struct python_api *) python;
static _Atomic bool sync_queued;   /* a pending call of sync_allocators has not run yet */

static void wrap(const struct python_api *py, struct wrapped_domain *d, bool pymalloc)
{
    if (d->in_chain)
        return;   /* still there: under a wrapper of the program's that kept us */
    py->get_allocator(d->domain, &d->under);
    d->pymalloc = pymalloc;
    struct py_allocator ours = {d, wrap_malloc, wrap_calloc, wrap_realloc, wrap_free};
    py->set_allocator(d->domain, &ours);
    d->in_chain = true;
}

/* Only while ours is current: a wrapper the program installed over ours
 * (tracemalloc.start()) keeps calling ours, which keeps forwarding. */
static void unwrap(const struct python_api *py, struct wrapped_domain *d)
{
    struct py_allocator now;
    py->get_allocator(d->domain, &now);
    if (!d->in_chain || !is_ours(&now, d))
        return;
    py->set_allocator(d->domain, &d->under);
    d->in_chain = false;
}

/* ---- the program's end ------------------------------------------------------------
 * The exit's files are written as the interpreter begins to finalize, while the
 * program's modules and what they keep still exist, after a collection of the cycles
 * nothing refers to any more (finalization collects them first too): by a function
 * registered with atexit at the first window's wrap, before the program's own handlers
 * run (most are registered as it imports its modules, after the interpreter's start),
 * which run before it, last registered first. */
static void *python_exiting(void *self, void *unused)
{
    (void)self, (void)unused;
    const struct python_api *py = atomic_load(&python);
    if (memprof_window_id() != 0) {
        if (py->collect != NULL)
            py->collect();   /* cycles nothing refers to: garbage, not what it kept */
        memprof_capture_stop_at_python_exit();
    }
    py->incref(py->none);
    return py->none;
}

static struct py_method exit_method = {
    "mem_profiler_exit", python_exiting, PY_METH_NOARGS,
    "Writes the files of mem_profiler's open window as the program ends."};

/* With the GIL.  A failure leaves the exit's files to the process's end, as before. */
static void register_exit(const struct python_api *py)
{
    static bool registered;
    if (registered || py->import_module == NULL || py->new_function == NULL ||
        py->call_method == NULL || py->incref == NULL || py->decref == NULL ||
        py->clear_error == NULL || py->none == NULL)
        return;
    registered = true;
    memprof_enter();
    void *atexit = py->import_module("atexit");
    void *function = atexit ? py->new_function(&exit_method, NULL, NULL) : NULL;
    void *done = function ? py->call_method(atexit, "register", "O", function) : NULL;
    if (done == NULL)
        py->clear_error();
    void *references[] = {done, function, atexit};
    for (size_t i = 0; i < sizeof references / sizeof *references; i++)
        if (references[i] != NULL)
            py->decref(references[i]);
    memprof_leave();
}

/* The pending call: in the main thread with the GIL, which every caller of
 * these domains holds, so no call is inside a wrapper while it changes.  It
 * reads the window's state after clearing sync_queued, so a window opened or
 * closed since it was queued is either seen here or queues another call. */
static int sync_allocators(void *arg)
{
    (void)arg;
    const struct python_api *py = atomic_load(&python);
    atomic_store(&sync_queued, false);
    bool capturing = memprof_window_id() != 0;
    /* Asked before either domain is wrapped: a wrapper makes the allocators custom. */
    const char *name = py->allocator_name ? py->allocator_name() : NULL;
    bool pymalloc = name != NULL && strcmp(name, "pymalloc") == 0;
    for (size_t i = 0; i < sizeof domains / sizeof *domains; i++)
        capturing ? wrap(py, &domains[i], pymalloc) : unwrap(py, &domains[i]);
    if (capturing)
        register_exit(py);
    return 0;
}

/* ---- finding the interpreter and queueing the call ---------------------------- */
#define POLL_FAST_NS 2000000ull         /* the first second: startup is quick */
#define POLL_SLOW_NS 100000000ull       /* then: an interpreter that is never started */
#define POLL_FAST_FOR_NS 1000000000ull

static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static struct python_api api;
static uint64_t waiting_since;   /* a window waits for the interpreter's start (0: none) */

/* The interpreter's API in the process's global scope (the python executable
 * or its libpython), looked for at each window's start until found: a program
 * may load libpython late.  Before the window opens, as a failed dlsym
 * allocates its message. */
void memprof_pymem_find(void)
{
    if (atomic_load(&python) != NULL || !memprof_cfg.python)
        return;
    pthread_mutex_lock(&sync_lock);
    memprof_enter();
    api.is_initialized = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    if (api.is_initialized != NULL) {
        api.add_pending_call = (int (*)(int (*)(void *), void *))dlsym(RTLD_DEFAULT,
                                                                       "Py_AddPendingCall");
        api.get_allocator = (void (*)(int, struct py_allocator *))dlsym(RTLD_DEFAULT,
                                                                        "PyMem_GetAllocator");
        api.set_allocator = (void (*)(int, struct py_allocator *))dlsym(RTLD_DEFAULT,
                                                                        "PyMem_SetAllocator");
        api.allocator_name = (const char *(*)(void))dlsym(RTLD_DEFAULT,
                                                          "_PyMem_GetCurrentAllocatorName");
        *(void **)&api.import_module = dlsym(RTLD_DEFAULT, "PyImport_ImportModule");
        *(void **)&api.new_function = dlsym(RTLD_DEFAULT, "PyCFunction_NewEx");
        *(void **)&api.call_method = dlsym(RTLD_DEFAULT, "PyObject_CallMethod");
        *(void **)&api.incref = dlsym(RTLD_DEFAULT, "Py_IncRef");
        *(void **)&api.decref = dlsym(RTLD_DEFAULT, "Py_DecRef");
        *(void **)&api.clear_error = dlsym(RTLD_DEFAULT, "PyErr_Clear");
        api.none = dlsym(RTLD_DEFAULT, "_Py_NoneStruct");
        *(void **)&api.collect = dlsym(RTLD_DEFAULT, "PyGC_Collect");
    }
    memprof_leave();
    if (api.is_initialized != NULL && api.add_pending_call != NULL &&
        api.get_allocator != NULL && api.set_allocator != NULL)
        atomic_store(&python, &api);
    pthread_mutex_unlock(&sync_lock);
}

/* sync_lock held.  Py_IsInitialized guards Py_AddPendingCall, whose queue
 * exists only between the interpreter's start and its finalization. */
static void request_sync(void)
{
    bool capturing = memprof_window_id() != 0;
    const struct python_api *py = atomic_load(&python);
    bool wait = false;
    if (py != NULL && !py->is_initialized())
        wait = capturing;   /* not started yet, or finalized: nothing of ours to remove */
    else if (py != NULL && !atomic_exchange(&sync_queued, true) &&
             py->add_pending_call(sync_allocators, NULL) != 0) {
        atomic_store(&sync_queued, false);   /* its queue is full: again at the next look */
        wait = true;
    }
    if (!wait)
        waiting_since = 0;
    else if (waiting_since == 0) {
        waiting_since = memprof_now_ns();
        memprof_control_wake();   /* to look again on time */
    }
}

void memprof_pymem_sync(void)
{
    pthread_mutex_lock(&sync_lock);
    request_sync();
    pthread_mutex_unlock(&sync_lock);
}

uint64_t memprof_pymem_poll(void)
{
    /* Not waited for: a thread-less process polls from a sample (control.c). */
    if (pthread_mutex_trylock(&sync_lock) != 0)
        return memprof_now_ns() + POLL_FAST_NS;
    uint64_t next = 0;
    if (waiting_since != 0)
        request_sync();
    if (waiting_since != 0) {
        uint64_t now = memprof_now_ns();
        next = now + (now - waiting_since < POLL_FAST_FOR_NS ? POLL_FAST_NS : POLL_SLOW_NS);
    }
    pthread_mutex_unlock(&sync_lock);
    return next;
}

/* A fork while another thread held the lock leaves the child the lock held. */
void memprof_pymem_after_fork(void)
{
    pthread_mutex_init(&sync_lock, NULL);
}
