/* Each thread's sampling state (memprof_thread, defined in thread_state.c): its countdowns,
 * its busy flag, the stack mappings its walks met and its memos. */
#ifndef MEMPROF_THREAD_STATE_H
#define MEMPROF_THREAD_STATE_H

#include "base/common.h"
#include "base/defaults.h"

/* A stack mapping: its start, and the offset of its last word (its size - 8), so
 * that one subtraction and one comparison bound a read. */
struct memprof_stack_range {
    uintptr_t lo, last;
};

/* A thread's last chains, root first, with the nodes they interned to (in the
 * thread's memos; frame_tree.c): a new chain's frames shared from the root with one of them cost no
 * lookup. */
#define MEMPROF_CHAIN_ROOM 192
#define MEMPROF_CHAIN_MEMOS 4
struct memprof_chain_memo {
    uint32_t generation;          /* of the tree its nodes belong to */
    uint32_t len;
    uintptr_t frames[MEMPROF_CHAIN_ROOM];
    uint64_t paths[MEMPROF_CHAIN_ROOM];   /* the hash of the path down to each level */
    uint32_t nodes[MEMPROF_CHAIN_ROOM];
};
struct memprof_chain_memos {
    struct memprof_chain_memo chains[MEMPROF_CHAIN_MEMOS];
    uint32_t next;                /* the one the next chain replaces */
};

/* Per-thread memos of the sample path, in the thread's block (thread_block.c): small,
 * dense, direct-mapped copies of entries of the shared tables this thread used last,
 * so that a sample's lookups stay in this core's cache instead of missing into
 * tables of megabytes that the program's own work evicts between samples.  Each
 * entry is checked against its key (and a stack against its frames), never trusted. */
#define MEMPROF_RULE_MEMOS 512     /* unwind rules by code address (unwind.c) */
#define MEMPROF_STACK_MEMOS 2048   /* stack ids by their chains' paths (stack_table.c) */
#define MEMPROF_FRAME_MEMOS 512    /* frame ids by address (frame_tree.c) */
#define MEMPROF_NODE_MEMOS 2048    /* nodes by the hash of their path (frame_tree.c) */
#define MEMPROF_LINE_MEMO_BITS 6   /* line-table decodings by code object (python_frames.c) */
struct memprof_walk_step {
    uint64_t key, sp, rule;        /* a frame's rule key (unwind.c), its rsp, its rule */
};
/* Where a decoding of a Python line table stands (python_frames.c): at the entry `at`
 * bytes into the table, which starts at code unit `start` (3.9 and 3.10: at byte
 * `start`), on line `line`. */
struct memprof_line_cursor {
    int64_t at, start;
    int32_t line;
};
struct memprof_memos {
    struct { uint64_t key, rule; } rules[MEMPROF_RULE_MEMOS];
    /* The last two walks, frame by frame, each ended by a step of sp UINTPTR_MAX:
     * most of a stack is its caller's, at the same stack addresses, so its rules
     * are read in order from the last walk. */
    struct memprof_walk_step walks[2][MEMPROF_MAX_DEPTH + 1];
    uint32_t last_walk;
    /* The last native and Python chains (frame_tree.c), and stacks by the hashes of
     * their chains' whole paths. */
    struct memprof_chain_memos native, python;
    struct { uintptr_t frame; uint32_t id, generation; } frames[MEMPROF_FRAME_MEMOS];
    uint32_t nodes_generation;   /* of the tree the node memos are of */
    struct { uintptr_t frame; uint32_t parent, node; } nodes[MEMPROF_NODE_MEMOS];
    struct { uint64_t native, python; uint32_t generation, id; } stacks[MEMPROF_STACK_MEMOS];
    /* The last Python walk (python_frames.c), root first: each frame's code object and
     * code unit, the record they gave and the generations it was made under. */
    struct {
        uint32_t generation, n;
        uintptr_t codes[MEMPROF_MAX_PY_FRAMES];
        int64_t units[MEMPROF_MAX_PY_FRAMES];
        uint32_t records[MEMPROF_MAX_PY_FRAMES], code_generations[MEMPROF_MAX_PY_FRAMES];
    } python_walk;
    /* Where the decodings of line tables stopped, by code object (python_frames.c). */
    struct {
        uintptr_t code;
        uint32_t generation;
        struct memprof_line_cursor cursor;
    } line_cursors[1u << MEMPROF_LINE_MEMO_BITS];
};

struct memprof_thread {
    int64_t countdown;           /* bytes left until the next sample */
    uint32_t window;             /* window the countdown was drawn for */
    uint32_t busy;               /* inside the sampler: allocations pass through */
    uint32_t python_depth;       /* inside a wrapped Python allocator (hooks_python.c),
                                    which counts what reaches the malloc hooks under it */
    uint64_t rng;                /* xorshift64* state, 0 = not seeded */
    int64_t allocated_base;      /* minus countdown: the host bytes the thread allocated */
    uintptr_t last_sample;       /* its latest sampled host block, */
    int64_t last_sample_after;   /* and what it had allocated once that was made */
    struct memprof_stack_range stacks[2];   /* the stack mappings the walks met last (unwind.c) */
    bool no_maps;                /* /proc/self/maps could not be read: no walk */
    struct thread_block *block;  /* this thread's counters (thread_block.c) */
    struct memprof_memos *memos; /* and its memos, in the same block; NULL before it has one */
    uint32_t device_window;      /* window the device countdowns were drawn for */
    uint32_t device_depth;       /* inside a device API call (hooks_device.c) */
    bool in_trap;                /* in a probe's trap handler: the walk starts below it */
    int64_t device_countdown[HEAP_COUNT];
    uint32_t tid;                /* cached gettid(), for the event log */
    uint32_t nvtx_depth;         /* open nvtxRangePushA ranges (marks.c) */
    uint64_t nvtx_ranges[16];
    int64_t live_pending[HEAP_COUNT];   /* live bytes not yet added to the heap's (live_bytes.c) */
    uint32_t live_generation;    /* of the counts live_pending belongs to */
    struct {                     /* a failed device allocation a framework may raise its
                                    error for (framework_oom.c); window 0: none */
        uint32_t window;
        int32_t heap, error;
        uint64_t bytes;
    } pending_failure;
};
extern __thread struct memprof_thread memprof_thread HIDDEN TLS_IE;

/* Allocations the sampler makes through libc (libunwind, dlsym, setenv)
 * must not be sampled: bracket them with these. */
static inline void memprof_enter(void) { memprof_thread.busy++; }
static inline void memprof_leave(void) { memprof_thread.busy--; }

#endif
