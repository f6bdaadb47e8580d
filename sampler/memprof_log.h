/* The event log of --mode log: a versioned binary format, read by
 * parser/eventlog.py and documented in docs/file-formats.md.  Files are named
 * <prefix><pid>.<seq>.<k>.memlog (k = 1, 2, ... as they rotate); each starts
 * with a header and holds the stacks its events use, so a file stands alone
 * once older ones are deleted.  Integers are little-endian.
 *
 * Every record starts with a memprof_log_record header whose `size` is the
 * whole record's length: a reader skips record types it does not know, and
 * stops at a record cut short (a process killed while writing). */
#ifndef MEMPROF_LOG_H
#define MEMPROF_LOG_H

#include <stdint.h>

#define MEMPROF_LOG_MAGIC "MPLOG\0\r\n"   /* 8 bytes */
#define MEMPROF_LOG_VERSION 2

struct memprof_log_header {
    char magic[8];
    uint32_t version;
    int32_t pid;
    uint64_t rate, device_rate;
    uint64_t start_ns;             /* CLOCK_REALTIME of the window's start */
    uint32_t file_index;           /* k */
    uint32_t interval_ms;          /* between timeline records */
} __attribute__((packed));

enum memprof_log_type {
    LOG_ALLOC = 1,      /* a sampled allocation */
    LOG_FREE = 2,       /* the free of a sampled allocation */
    LOG_STACK = 3,      /* version 1: a stack's frames (no longer written) */
    LOG_TIMELINE = 4,   /* one heap's live bytes over the last interval */
    LOG_MARK = 5,       /* a mark, range or step from the program */
    LOG_NODE = 6,       /* a node of the calling-context tree used by later records */
    LOG_TREE_STACK = 7, /* a stack: its chains' leaf nodes, for an id used by later records */
    LOG_USE = 8,        /* a device operation and the pointer-sized values it was passed */
};

enum memprof_use_op { USE_LAUNCH = 0, USE_COPY = 1, USE_SET = 2 };
enum memprof_use_flags {
    USE_PARAMS_UNKNOWN = 1,         /* a launch whose parameters could not be read */
    USE_TRUNCATED = 2,              /* more values than a record holds: the rest left out */
};

enum memprof_mark_kind { MARK_POINT = 0, MARK_RANGE_START = 1, MARK_RANGE_END = 2, MARK_STEP = 3 };

struct memprof_log_record {
    uint8_t type;
    uint8_t heap;
    uint16_t size;
} __attribute__((packed));

struct memprof_log_event {          /* LOG_ALLOC, LOG_FREE */
    struct memprof_log_record r;
    uint32_t tid;
    uint64_t time_ns, size, address;
    uint32_t stack;
} __attribute__((packed));

struct memprof_log_node {           /* LOG_NODE */
    struct memprof_log_record r;
    uint32_t node;
    uint32_t parent;                /* 0: the root; below node */
    uint64_t frame;
} __attribute__((packed));

struct memprof_log_tree_stack {     /* LOG_TREE_STACK */
    struct memprof_log_record r;
    uint32_t stack;
    uint32_t native, python;        /* leaf nodes (0: none) */
    uint64_t label;
} __attribute__((packed));

struct memprof_log_timeline {       /* LOG_TIMELINE */
    struct memprof_log_record r;
    uint64_t time_ns;
    int64_t peak_bytes;             /* the interval's peak of estimated live bytes */
    int64_t end_bytes;              /* at its end */
    uint64_t rss_bytes;             /* the process's resident set */
} __attribute__((packed));

struct memprof_log_mark {           /* LOG_MARK, followed by the text (no NUL) */
    struct memprof_log_record r;
    uint32_t tid;
    uint8_t kind;                   /* enum memprof_mark_kind */
    uint64_t time_ns;
    uint64_t id;                    /* range id, or step number */
} __attribute__((packed));

/* LOG_USE, followed by `values` uint64: a launch's parameters' 8-byte words, a copy's
 * destination and source, a set's destination; only those that can be addresses. */
struct memprof_log_use {
    struct memprof_log_record r;    /* heap: the API's (cuda for CUDA, acl for ACL) */
    uint32_t tid;
    uint8_t op;                     /* enum memprof_use_op */
    uint8_t flags;                  /* enum memprof_use_flags */
    uint16_t values;
    uint64_t time_ns;
} __attribute__((packed));

#endif
