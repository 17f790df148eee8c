/* Shared by the files of runtime/git/ only. */
#ifndef VMDR_GIT_INTERNAL_H
#define VMDR_GIT_INTERNAL_H

#include <git2.h>

#include "git.h"

/* Appended to an error caused by ENOSPC, so the log names the cause an operator fixes. */
/* maint.c stages a merged pack here, in the git directory (repo.c clears it when locked) */
#define VMDR_GIT_REPACK_STAGE "vmdr-repack"
/* Removes the regular files of dir whose names start with prefix ("": all of them). */
void vmdr_git__remove_files(const char *dir, const char *prefix);
#define NOSPACE_HINT " (ENOSPC: the disk holding the clone is full)"

typedef struct git_change {
    char *path;
    git_oid oid;
    int removed;
} git_change;

typedef struct vmdr_git_dircache {
    int valid;
    size_t len;
    char dir[4096]; /* the last directory checked to be a real one */
} vmdr_git_dircache;

struct vmdr_git_repo {
    git_repository *repo;
    git_odb_backend *mempack; /* owned by the odb once added */
    char *workdir;            /* ends in "/"; NULL for a clone without a work tree */
    vmdr_git_dircache dircache;
    char *branch;
    char *local_ref;          /* refs/heads/<branch> */
    char *remote_ref;         /* refs/remotes/origin/<branch> */
    char *url;
    char *user, *token, *ssh_key, *ssh_pubkey, *ssh_passphrase, *known_hosts, *ca_bundle;
    int accept_unknown_host;

    /* Pending writes and removals since the last reset/commit, one per path. */
    git_change *changes;
    size_t nchanges, cap;
    size_t *slots; /* open addressing: index+1 into changes, 0 = empty */
    size_t nslots;

    /* HEAD's tree, looked up once per transaction round: the ref cannot move while
     * changes are pending (commit and reset drop them, and the cache with them). */
    git_tree *head_cache;
    int head_cached;

    /* The tree the pending changes give, and the trees written to build it. */
    int built_valid;
    git_oid built;
    int built_empty;
    git_oid *trees;
    size_t ntrees, tcap;

    /* The pack of the last commit, kept so a local push indexes it instead of packing
     * the same objects again (valid while the branch is that commit on that parent). */
    git_buf last_pack;
    char last_pack_name[GIT_OID_HEXSZ + 1]; /* pack-<name>.pack in our objects/pack */
    size_t last_objects;                    /* objects in it */
    git_oid last_commit, last_parent;
    int last_has_parent, last_valid;
};

/* The delta search of a pack runs in as many threads as CPUs from this many objects up,
 * in the calling thread below it. Each libgit2 worker thread gets a malloc arena of its
 * own: a monitor committing a few files every few seconds kept ~25 MB of anonymous memory
 * more in those arenas (monitor soak), for no speed on packs this small. */
#define VMDR_GIT_THREADED_PACK 1000

/* repo.c */
int vmdr_git__set_error(vmdr_err *e, int rc, const char *what);
int vmdr_git__head_tree(vmdr_git_repo *r, git_tree **out, vmdr_err *e);
void vmdr_git__drop_pending(vmdr_git_repo *r);
int vmdr_git__add_mempack(git_repository *repo, git_odb_backend **out);
/* Indexes a whole pack into dir; name_out (GIT_OID_HEXSZ + 1 bytes, may be NULL) gets its
 * name. repo NULL: no odb, for a pack that is not thin (libgit2 writes no thin packs). */
int vmdr_git__index_pack(git_repository *repo, const char *dir, const char *data, size_t len,
                         char *name_out);

/* path.c */
int vmdr_git__write_file(const char *workdir, const char *path, const char *data, size_t len,
                         vmdr_git_dircache *dc, vmdr_err *e);
int vmdr_git__remove_file(const char *workdir, const char *path, vmdr_err *e);
/* Refuses a tree with "..", ".git", absolute or slash-bearing names, or a symlink
 * whose target leaves the root. */
int vmdr_git__validate_tree(git_repository *repo, const git_tree *tree, vmdr_err *e);

/* net.c */
int vmdr_git__is_local_url(const char *url);

#endif
