/* Python frames (python_frames.c; ARCHITECTURE.md, "Python programs"). */
#ifndef MEMPROF_PYTHON_FRAMES_H
#define MEMPROF_PYTHON_FRAMES_H

#include "common.h"

#define MEMPROF_MAX_PY_FRAMES 64
/* A Python frame's address in a stack: the base plus its record's id.  Not a
 * canonical x86-64 address, so no mapping holds it. */
#define MEMPROF_PY_FRAME_BASE 0x5079000000000000ull
/* _PyEval_EvalFrameDefault's address once the interpreter was found (else 0): the
 * one thing a sample of a program without Python reads. */
extern uintptr_t memprof_python_eval_lo HIDDEN;
void memprof_python_init(void) HIDDEN;   /* when a window opens; looks once it is found */
void memprof_python_after_fork(void) HIDDEN;
/* Puts the calling thread's Python frames into the native stack frames[0..depth)
 * (leaf first), each group before its _PyEval_EvalFrameDefault; the new depth, at
 * most cap. */
int memprof_python_merge(uintptr_t *frames, int depth, int cap) HIDDEN;
const char *memprof_python_version(void) HIDDEN;   /* "3.11.7", or NULL */
struct memprof_python_frame {
    const char *name, *file;     /* UTF-8, not NUL-terminated */
    uint32_t name_len, file_len;
    int32_t line, first_line;    /* line -1: the instruction has none */
};
uint32_t memprof_python_records(void) HIDDEN;   /* ids in use are < this */
bool memprof_python_record(uint32_t id, struct memprof_python_frame *out) HIDDEN;

#endif
