/* The requests a controller sends through the control block, carried out by the
 * control thread (control.c): a window opened with the controller's mode and put back
 * to the process's own when it closes, a dump, a snapshot, a deadline, a detach; and
 * the reply fields filled from the capture's state. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "base/options.h"
#include "base/sysutil.h"
#include "base/upcalls.h"
#include "control/requests.h"
#include "control/window.h"

static void copy_string(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static uint32_t controller_window;   /* the window a controller opened last (its id) */

void memprof_control_publish(struct memprof_control *block)
{
    struct memprof_status s;
    memprof_capture_status(&s);
    block->state = s.capturing ? MEMPROF_STATE_CAPTURING : MEMPROF_STATE_IDLE;
    block->dumps = s.dumps;
    block->injected = memprof_upcalls.is_injected();
    block->redirected_slots = memprof_upcalls.got_redirected();
    block->window_start_ns = s.window_start_ns;
    block->window_deadline_ns = s.deadline_ns;
    block->live_samples = s.live_samples;
    block->dropped_samples = s.dropped_samples;
    for (int h = 0; h < HEAP_COUNT; h++) {
        block->heap_live_bytes[h] = s.heap_live_bytes[h];
        block->heap_peak_bytes[h] = s.heap_peak_bytes[h];
    }
    copy_string(block->last_dump, sizeof block->last_dump, s.last_dump);
    block->failed_dumps = s.failed_dumps;
    block->window_by_controller =
        s.capturing && memprof_window_id() == controller_window;
    copy_string(block->dump_failure, sizeof block->dump_failure, s.dump_failure);
}

/* A controller's window brings its own mode (the log); the
 * process's own (its environment's, or set through the API) comes back when that
 * window closes, or at once when the window could not be opened (one was open). */
struct window_mode {
    bool log_mode;
    uint64_t log_cap;
    uint32_t log_files;
};
static struct window_mode process_mode;
static bool controller_mode;   /* process_mode holds what to restore */

static struct window_mode current_mode(void)
{
    return (struct window_mode){memprof_cfg.log_mode,
                                memprof_cfg.log_cap, memprof_cfg.log_files};
}

static void apply_mode(struct window_mode m)
{
    memprof_cfg.log_mode = m.log_mode;
    memprof_cfg.log_cap = m.log_cap;
    memprof_cfg.log_files = m.log_files;
}

static void restore_process_mode(void)
{
    if (controller_mode)
        apply_mode(process_mode);
    controller_mode = false;
}

static int start_controller_window(const struct memprof_control *block, const char *prefix)
{
    struct window_mode before = current_mode(), asked = before;
    asked.log_mode = (block->flags & MEMPROF_START_LOG) != 0;
    if (block->log_cap != 0)
        asked.log_cap = block->log_cap;
    if (block->log_files != 0)
        asked.log_files = block->log_files;
    apply_mode(asked);
    int rc = memprof_capture_start(block->rate, block->device_rate, block->max_depth, prefix,
                                   block->deadline_ns, (block->flags & MEMPROF_START_VIEW) != 0);
    int saved = errno;
    if (rc != 0) {
        apply_mode(before);   /* the window open already keeps its mode */
    } else {
        controller_window = memprof_window_id();
        if (!controller_mode) {
            process_mode = before;
            controller_mode = true;
        }
    }
    errno = saved;
    return rc;
}

int memprof_control_stop_window(void)
{
    int rc = memprof_capture_stop(NULL, 0);
    int saved = errno;
    restore_process_mode();
    errno = saved;
    return rc;
}

/* Whether this thread opens paths as the process's main thread does.  unshare and
 * setns give a mount namespace to the calling thread alone, with a root and working
 * folder of its own that its chroot then moves: this thread, made before, would write
 * a window's files outside the process's jail.  Where /proc cannot tell, it is taken
 * as the same. */
static bool opens_paths_as_process(void)
{
    static const char *const views[][2] = {
        {PROC_THREAD_SELF "ns/mnt", "/proc/self/ns/mnt"},
        {PROC_THREAD_SELF "root/", "/proc/self/root/"},
    };
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
        struct stat here, there;
        if (stat(views[i][0], &here) == 0 && stat(views[i][1], &there) == 0 &&
            (here.st_dev != there.st_dev || here.st_ino != there.st_ino))
            return false;
    }
    return true;
}

#define OTHER_ROOT                                                                      \
    "it changed its root or mount namespace since the sampler started (chroot, unshare): " \
    "its files would be written outside them"

/* Carries out one request; on failure, errno and, where errno alone would not say it,
 * *why in words.  A request that opens a window or writes a file is refused while the
 * process sees other files than this thread; a window opened before writes its files
 * where it was opened. */
int memprof_control_carry_out(struct memprof_control *block, uint32_t command, const char **why)
{
    char prefix[MEMPROF_CONTROL_PATH_MAX];
    if ((command == MEMPROF_CMD_START || command == MEMPROF_CMD_DUMP ||
         command == MEMPROF_CMD_SNAPSHOT) &&
        !opens_paths_as_process()) {
        *why = OTHER_ROOT;
        errno = EXDEV;
        return -1;
    }
    switch (command) {
    case MEMPROF_CMD_START:
        copy_string(prefix, sizeof prefix, block->prefix);
        return start_controller_window(block, prefix);
    case MEMPROF_CMD_STOP:
        return memprof_control_stop_window();
    case MEMPROF_CMD_STATUS:
        return 0;
    case MEMPROF_CMD_DUMP:
        return memprof_capture_dump(NULL, 0);
    case MEMPROF_CMD_SNAPSHOT: {
        copy_string(prefix, sizeof prefix, block->prefix);
        uint64_t token = 0;
        int rc = memprof_capture_snapshot(prefix, block->snapshot_since, &token);
        block->snapshot_token = token;
        return rc;
    }
    case MEMPROF_CMD_DEADLINE:   /* the loop sleeps until the new deadline from now on */
        return memprof_capture_set_deadline(block->deadline_ns);
    case MEMPROF_CMD_DETACH:   /* a closed window has put the slots back already */
        return memprof_window_id() != 0 ? memprof_control_stop_window() : 0;
    default:
        errno = EINVAL;
        return -1;
    }
}
