/* Python frames (python_frames.c; ARCHITECTURE.md, "Python programs"). */
#ifndef MEMPROF_PYTHON_FRAMES_H
#define MEMPROF_PYTHON_FRAMES_H

#include "base/common.h"

/* A Python frame's address in a stack: the base plus its record's id.  Not a
 * canonical x86-64 address, so no mapping holds it. */
#define MEMPROF_PY_FRAME_BASE 0x5079000000000000ull
/* _PyEval_EvalFrameDefault's address once the interpreter was found (else 0): the
 * one thing a sample of a program without Python reads. */
extern uintptr_t memprof_python_eval_lo HIDDEN;
void memprof_python_init(void) HIDDEN;   /* when a window opens; looks once it is found */
void memprof_python_after_fork(void) HIDDEN;
/* Ends each group of Python frames in a stack's Python chain: the frames one native
 * _PyEval_EvalFrameDefault call runs (a reader puts group g, 0 the innermost, just
 * leafward of the g-th such native frame; ARCHITECTURE.md, "Python programs"). */
#define MEMPROF_PY_GROUP_END (MEMPROF_PY_FRAME_BASE + 0xffffffffull)
/* Room for a Python chain: its frames and the end of each group. */
#define MEMPROF_PY_CHAIN_ROOM (2 * MEMPROF_MAX_PY_FRAMES + 1)
/* The calling thread's Python frames into chain[0..cap), innermost first, each group
 * ended by MEMPROF_PY_GROUP_END; how many (0: none, or no interpreter). */
int memprof_python_chain(uintptr_t *chain, int cap) HIDDEN;
uintptr_t memprof_python_eval_hi(void) HIDDEN;   /* _PyEval_EvalFrameDefault's end */
const char *memprof_python_version(void) HIDDEN;   /* "3.11.7", or NULL */
struct memprof_python_frame {
    const char *name, *file;     /* UTF-8, not NUL-terminated */
    uint32_t name_len, file_len;
    int32_t line, first_line;    /* line -1: the instruction has none */
};
uint32_t memprof_python_records(void) HIDDEN;   /* ids in use are < this */
/* Frames left out of stacks since the tables of names and lines filled: their room is
 * in proportion to MEMPROF_STACK_MEMORY. */
uint64_t memprof_python_frames_left_out(void) HIDDEN;
bool memprof_python_record(uint32_t id, struct memprof_python_frame *out) HIDDEN;

#endif
