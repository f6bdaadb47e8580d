/* A process's control block as a file in /dev/shm (block_file.c). */
#ifndef MEMPROF_BLOCK_FILE_H
#define MEMPROF_BLOCK_FILE_H

#include <sys/types.h>

#include "base/common.h"
#include "memprof_control.h"

/* Who may use the block: the process's user where that user may ptrace it, root
 * while any of its uids is root, else `current`, the owner so far. */
uid_t memprof_block_owner(uid_t current) HIDDEN;
/* A new temporary file for a block, mode 0600, made as `owner` and locked; its name
 * in `tmp`.  -1 and errno where it cannot be. */
int memprof_block_file_create(uid_t owner, char *tmp, size_t tmp_len) HIDDEN;
/* The made block renamed to `path`, replacing an earlier block of ours but never one
 * of a process of another PID namespace with our pid.  false and errno if not. */
bool memprof_block_file_place(const char *tmp, const char *path) HIDDEN;
/* A block its controllers no longer use: emptied of its magic, unlinked, unmapped. */
void memprof_block_file_retire(struct memprof_control *old, const char *path) HIDDEN;
/* The inode of this process's PID namespace, written in its block. */
uint32_t memprof_own_pid_namespace(void) HIDDEN;
/* The blocks of this user's processes that ended without exit handlers, and the
 * temporaries of blocks whose process was killed while making them. */
void memprof_remove_stale_blocks(void) HIDDEN;

#endif
