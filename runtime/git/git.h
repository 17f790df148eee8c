/* vmdr git core: a machine-owned working clone of one branch, written through
 * libgit2 without the index (a treebuilder over the previous tree, objects kept in
 * an in-memory odb and written as one pack per commit). No lua.h here. */
#ifndef VMDR_GIT_H
#define VMDR_GIT_H

#include <stddef.h>

#include "err.h"

typedef struct vmdr_git_opts {
    const char *url;            /* remote URL; never holds a secret */
    const char *branch;         /* default "main" */
    const char *user;           /* HTTPS user and SSH user when the URL names none; "git" */
    const char *token;          /* HTTPS basic-auth password */
    const char *ssh_key;        /* private key file */
    const char *ssh_pubkey;     /* default ssh_key + ".pub" when that exists */
    const char *ssh_passphrase;
    const char *known_hosts;    /* checked for every SSH host key */
    int accept_unknown_host;    /* an unknown (never a changed) host key is accepted */
    const char *ca_file;        /* extra CA for HTTPS, added to the system bundle */
    int no_worktree;            /* clone: objects and refs only, files never checked out */
    int clear_locks;            /* remove git lock files first: the caller holds git.lock */
} vmdr_git_opts;

typedef struct vmdr_git_repo vmdr_git_repo;

/* Opens an existing clone (no search upwards). A missing one is "not_found". */
int vmdr_git_open(vmdr_git_repo **out, const char *path, const vmdr_git_opts *o, vmdr_err *e);
/* Creates the clone (or completes one a killed run left behind): init, remote, fetch,
 * validated checkout. libgit2 1.5 has no shallow fetch, so the history is fetched. */
int vmdr_git_clone(vmdr_git_repo **out, const char *path, const vmdr_git_opts *o, vmdr_err *e);
void vmdr_git_free(vmdr_git_repo *r);

int vmdr_git_fetch(vmdr_git_repo *r, vmdr_err *e);
/* Work tree, index and branch become the remote branch; pending writes are dropped.
 * The remote tree is validated first: a hostile one changes nothing. */
int vmdr_git_reset_to_remote(vmdr_git_repo *r, vmdr_err *e);
/* Removes lock files a killed process left; only while holding the clone's flock. */
int vmdr_git_clear_locks(vmdr_git_repo *r, vmdr_err *e);

/* *out is malloc'd; returns 0, or -1 with e ("not_found" when absent). */
int vmdr_git_read(vmdr_git_repo *r, const char *path, char **out, size_t *len, vmdr_err *e);
/* The same as HEAD has it, whatever is pending (the bytes a write replaced). */
int vmdr_git_read_head(vmdr_git_repo *r, const char *path, char **out, size_t *len, vmdr_err *e);
/* The blob id a regular file at path has (pending, else HEAD), as write compares it:
 * *found = 0 when the path is absent, a directory, a symlink or an executable. */
int vmdr_git_blob_id(vmdr_git_repo *r, const char *path, char out_hex[41], int *found,
                     vmdr_err *e);
/* Names in dir (directories end in "/"), sorted; *out and each name malloc'd. */
int vmdr_git_list(vmdr_git_repo *r, const char *dir, char ***out, size_t *n, vmdr_err *e);
/* Stages bytes at path; *changed = 0 when the file already holds exactly these bytes
 * (then nothing is written), 1 when it held others, 2 when it is new. */
int vmdr_git_write(vmdr_git_repo *r, const char *path, const char *data, size_t len,
                   int *changed, vmdr_err *e);
/* *removed is 1 when the file existed. */
int vmdr_git_remove(vmdr_git_repo *r, const char *path, int *removed, vmdr_err *e);
/* out_hex gets the new commit id; *changed is 0 when the tree did not change. */
int vmdr_git_commit(vmdr_git_repo *r, const char *msg, const char *name, const char *email,
                    char out_hex[41], int *changed, vmdr_err *e);
/* Non-fast-forward and server refusals are "rejected" with the server's reason. */
int vmdr_git_push(vmdr_git_repo *r, vmdr_err *e);
/* *born is 0 on an empty branch. */
int vmdr_git_head(vmdr_git_repo *r, char out_hex[41], int *born, vmdr_err *e);
/* Unified diff of what commit would record; *out malloc'd. */
int vmdr_git_diff(vmdr_git_repo *r, char **out, size_t *len, vmdr_err *e);
/* The work tree ("/"-terminated), or the git directory of a clone without one. */
const char *vmdr_git_workdir(const vmdr_git_repo *r);

typedef struct vmdr_git_maint_opts {
    size_t max_packs; /* merge when the clone holds more packs than this; 0 = 10 */
} vmdr_git_maint_opts;

typedef struct vmdr_git_maint_stats {
    size_t packs_before, packs_after; /* visible packs (an .idx) in objects/pack */
    size_t packs_merged;              /* deleted after their objects were merged */
    size_t objects_merged;            /* objects in the merged pack */
    double seconds;
} vmdr_git_maint_stats;

/* Visible packs in the clone's objects/pack: one directory read. */
int vmdr_git_pack_count(vmdr_git_repo *r, size_t *count, vmdr_err *e);
/* Over max_packs, merges the smallest packs into one as `git repack --geometric=2 -d`
 * picks them (more when needed to get down to max_packs), deletes them once the new
 * pack is checked to hold their objects, and reopens the repository so libgit2 lets go
 * of them. No pending changes allowed; the caller holds the clone's lock. A kill at any
 * step leaves a clone git fsck accepts (runtime/git/maint.c). */
int vmdr_git_maintain(vmdr_git_repo *r, const vmdr_git_maint_opts *o, vmdr_git_maint_stats *st,
                      vmdr_err *e);

/* Checks a repository-relative path: no "..", no absolute path, nothing in .git. */
int vmdr_git_check_path(const char *path, vmdr_err *e);

/* flock(LOCK_EX) on path (created, parents too), waiting at most timeout seconds. */
int vmdr_git_lock(int *fd, const char *path, double timeout, vmdr_err *e);

/* Set by the host's signal handler (host.c). */
int vmdr_interrupted(void);

#endif
