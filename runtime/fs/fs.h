/* The vmdr.fs core: file operations that never see a lua_State.
 * Every function returns 0 or -1 with `e` filled in; error codes come from errno:
 * not_found, permission, exists, not_dir, is_dir, not_empty, busy, timeout,
 * interrupted, invalid, io. */
#ifndef VMDR_FS_H
#define VMDR_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

/* Temp files of an atomic write are named ".<name>" VMDR_FS_TMP_TAG "XXXXXX" in the
 * target's directory, so a run killed by SIGKILL leaves something recognisable. */
#define VMDR_FS_TMP_TAG ".vmdr-tmp-"

/* Fills e from errno `err` for operation `op` on `path`; returns -1. */
int vmdr_fs_errno(vmdr_err *e, int err, const char *op, const char *path);

/* Reads a whole file into *out (malloc'd, NUL-terminated, caller frees). */
int vmdr_fs_read(char **out, size_t *outlen, const char *path, vmdr_err *e);

/* Atomic replace: temp file in the same directory, write, fsync, rename over path,
 * fsync the directory. mode < 0 keeps an existing file's permission bits (0644 for a
 * new file). SIGINT/SIGTERM are held back for the short critical section, so a signal
 * (even a second, fatal one) never leaves the temp file behind. */
int vmdr_fs_write(const char *path, const void *buf, size_t len, int mode, vmdr_err *e);

/* Removes the temp files that atomic writes to path left behind when their writer was
 * killed (SIGKILL, power loss): those no live writer holds. Safe beside running writers,
 * of this process or another. *removed: how many went. A missing directory is not an
 * error. */
int vmdr_fs_clear_tmp(const char *path, int *removed, vmdr_err *e);

/* mkdir -p; an existing directory is success, an existing non-directory is not_dir. */
int vmdr_fs_mkdir_p(const char *path, int mode, vmdr_err *e);

/* Removes a file, a symlink (never its target) or an empty directory; with recursive,
 * a whole tree (symlinks inside are removed, not followed). */
int vmdr_fs_remove(const char *path, int recursive, vmdr_err *e);

typedef enum vmdr_fs_type {
    VMDR_FS_FILE,
    VMDR_FS_DIR,
    VMDR_FS_LINK,
    VMDR_FS_OTHER
} vmdr_fs_type;

const char *vmdr_fs_type_name(vmdr_fs_type t);
vmdr_fs_type vmdr_fs_type_of(mode_t m);

typedef struct vmdr_fs_entry {
    char *path; /* relative to the walked (or listed) directory */
    vmdr_fs_type type;
} vmdr_fs_entry;

typedef struct vmdr_fs_entries {
    vmdr_fs_entry *v;
    size_t n, cap;
} vmdr_fs_entries;

/* The names in dir (no "." / ".."), sorted bytewise. */
int vmdr_fs_list(vmdr_fs_entries *out, const char *dir, vmdr_err *e);
/* Every entry under dir, recursively, as paths relative to dir, sorted bytewise by
 * path. Symlinks are reported as links and never followed. */
int vmdr_fs_walk(vmdr_fs_entries *out, const char *dir, vmdr_err *e);
void vmdr_fs_entries_free(vmdr_fs_entries *es);

/* flock(LOCK_EX) on path (created if missing). Waits at most timeout seconds, polling,
 * and gives up early when stop() says so. Codes: busy (timeout 0), timeout,
 * interrupted. The lock dies with its holder: a killed holder's lock is free. */
int vmdr_fs_lock(int *out_fd, const char *path, double timeout, int (*stop)(void),
                 vmdr_err *e);

#endif
