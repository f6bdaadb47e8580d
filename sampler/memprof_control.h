/* The control block shared between a target process and the controller
 * (mem_profiler -p PID): /dev/shm/mem_profiler.<pid>, mode 0600.  This layout
 * is an ABI: bindings/control/control_block.py declares the same struct for cffi, and
 * a test compares the two field by field.  Bump MEMPROF_CONTROL_ABI on change.
 *
 * Protocol: the controller writes a request (command and parameters), then
 * increments command_seq and wakes the futex on it.  The target's control
 * thread, asleep on that futex, carries the request out, writes the reply,
 * sets ack_seq = command_seq and wakes the futex on ack_seq.  Controllers send their
 * requests one at a time, each holding an open file description lock (F_OFD_SETLK) on
 * the block's first byte; a window's controller also holds an flock on the block for
 * the window's life.  A process without its control thread (thread_less) is woken
 * through the block file's wake page as well. */
#ifndef MEMPROF_CONTROL_H
#define MEMPROF_CONTROL_H

#include <stdint.h>

#define MEMPROF_CONTROL_MAGIC 0x31464f52504d454dull   /* "MEMPROF1" */
#define MEMPROF_CONTROL_ABI 9
#define MEMPROF_CONTROL_HEAPS 8
#define MEMPROF_CONTROL_PATH_MAX 4096
/* The block's file: the struct; for a process without its control thread (thread_less),
 * also a wake page at MEMPROF_CONTROL_WAKE_OFFSET (the file is then
 * MEMPROF_CONTROL_FILE_SIZE long): a controller stores MEMPROF_CONTROL_WAKE in its first
 * word after its request, and the process makes its thread at its next allocation. */
#define MEMPROF_CONTROL_WAKE_OFFSET 65536
#define MEMPROF_CONTROL_FILE_SIZE (2 * 65536)
#define MEMPROF_CONTROL_WAKE 0xffffffffu

enum memprof_command {
    MEMPROF_CMD_NONE = 0,
    MEMPROF_CMD_START = 1,    /* open a window: rate, max_depth, deadline_ns, prefix */
    MEMPROF_CMD_STOP = 2,     /* close the window and write its .heap file */
    MEMPROF_CMD_STATUS = 3,   /* refresh the status fields */
    MEMPROF_CMD_DETACH = 4,   /* close the window if one is open; put every GOT slot back */
    MEMPROF_CMD_DUMP = 5,     /* write the open window's files and keep it open (prof.dump) */
    MEMPROF_CMD_SNAPSHOT = 6, /* the open window's figures so far for a reader that
                                 follows it (top, the pushes), to
                                 <prefix><pid>.0000.snapshot: since the snapshot named by
                                 snapshot_since where that was the last, whose token comes
                                 back in snapshot_token; no sequence number is taken, and the
                                 window goes on as it was */
    MEMPROF_CMD_DEADLINE = 7, /* move the open window's deadline to deadline_ns; a window
                                 without one keeps none */
};

/* 1u was live tracking, which every window now has: left unused */
#define MEMPROF_START_LOG 2u          /* log mode: the event log, log_cap, log_files */
#define MEMPROF_START_VIEW 4u         /* a live view's (mem_profiler top): its figures leave by
                                         snapshots, and its end writes no file */

enum memprof_state {
    MEMPROF_STATE_IDLE = 0,
    MEMPROF_STATE_CAPTURING = 1,
};

struct memprof_control {
    /* identity, written once by the target */
    uint64_t magic;
    uint32_t abi;
    int32_t pid;
    uint32_t uid;                   /* the owner of its file: who may use it (control.c) */
    uint32_t pid_ns;                /* inode of /proc/self/ns/pid: pid means a process only in
                                       that PID namespace (0 in blocks before ABI 7) */
    uint64_t start_time;            /* /proc/<pid>/stat field 22, to detect a reused pid */
    char exe[256];                  /* /proc/<pid>/exe when the block was made */
    /* request, written by the controller */
    uint32_t command_seq;           /* futex word */
    uint32_t command;               /* enum memprof_command */
    uint64_t rate;
    uint64_t device_rate;
    int32_t max_depth;
    uint32_t flags;                 /* MEMPROF_START_* */
    uint64_t deadline_ns;           /* CLOCK_REALTIME; the window closes itself then */
    uint64_t log_cap;               /* bytes per log file */
    uint32_t log_files;             /* log files kept */
    uint32_t working;               /* 1 while the control thread carries out a request or
                                       closes a window: a controller waits on while it lives */
    char prefix[MEMPROF_CONTROL_PATH_MAX];
    /* reply and status, written by the target */
    uint32_t ack_seq;               /* futex word */
    int32_t result;                 /* 0, or the errno of the failed request */
    uint32_t state;                 /* enum memprof_state */
    uint32_t dumps;                 /* .heap files this process has written */
    uint32_t injected;              /* 1: loaded by mem_profiler --attach, hooks by GOT */
    uint32_t redirected_slots;      /* GOT slots holding a hook now */
    uint64_t window_start_ns;
    uint64_t window_deadline_ns;
    uint64_t live_samples;          /* in the open window, at the last status */
    uint64_t dropped_samples;
    uint64_t heap_live_bytes[MEMPROF_CONTROL_HEAPS];   /* unsampled; host, cuda, cuda_host,
                                                          acl, acl_host, hal */
    uint64_t heap_peak_bytes[MEMPROF_CONTROL_HEAPS];
    char last_dump[MEMPROF_CONTROL_PATH_MAX];
    char message[256];              /* the last error, in words */
    uint32_t failed_dumps;          /* dumps that could not be written */
    uint32_t window_by_controller;  /* 1: the open window was opened by a controller */
    uint32_t thread_less;           /* 1: no control thread yet: wake it (see the file's
                                       layout above); it answers at its next allocation */
    char dump_failure[512];         /* why the last of them failed, in words */
    /* written once by the target: that the program's malloc is its own, which the
       hooks do not see (the host profile's "# warning:"), in words; or empty */
    char own_malloc[MEMPROF_CONTROL_PATH_MAX + 256];
    /* MEMPROF_CMD_SNAPSHOT's: the token of the reader's last snapshot (request, 0: none)
       and of the one written (reply) */
    uint64_t snapshot_since;
    uint64_t snapshot_token;
};

#endif
