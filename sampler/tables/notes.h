/* Noted events of the window, per heap (notes.c): failed device allocations, and
 * memory registered or opened that the process did not allocate. */
#ifndef MEMPROF_NOTES_H
#define MEMPROF_NOTES_H

#include "base/common.h"

enum memprof_note_list {
    NOTES_FAILED,     /* failed device allocations: size, error */
    NOTES_FOREIGN,    /* memory registered or opened, not allocated: address, size, kind */
    NOTE_LISTS
};
enum memprof_foreign_kind { FOREIGN_HOST_REGISTER, FOREIGN_IPC_OPEN };
#define MEMPROF_MAX_NOTES 64   /* kept per heap and list */
struct memprof_note {
    uint64_t time_ns, size, address;
    int32_t error;    /* NOTES_FAILED */
    uint16_t kind;    /* NOTES_FOREIGN: enum memprof_foreign_kind */
    uint32_t stack;
};
void memprof_note_add(enum memprof_note_list list, enum memprof_heap heap,
                      struct memprof_note note) HIDDEN;
void memprof_note_remove(enum memprof_note_list list, enum memprof_heap heap,
                         uint64_t address) HIDDEN;
void memprof_notes_reset(void) HIDDEN;
void memprof_notes_after_fork(void) HIDDEN;
/* Copies the heap's kept notes of list into out; returns how many, with in *missed
 * those that found the list full. */
uint32_t memprof_notes_of(enum memprof_note_list list, enum memprof_heap heap,
                          struct memprof_note out[MEMPROF_MAX_NOTES], uint32_t *missed) HIDDEN;

#endif
