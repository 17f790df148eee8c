/* Path rules for the working clone, work-tree file writes, hostile-tree checks
 * and the per-clone flock. The clone is machine-owned, so a symlink or a file
 * where a directory must go is never followed, only refused or replaced. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PATH_MAX_LEN 4096

static int bad_component(const char *c, size_t n)
{
    if (n == 0)
        return 1;
    if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
        return 1;
    /* ".git" in any case: case-insensitive file systems would map it to the real one. */
    if (n == 4 && strncasecmp(c, ".git", 4) == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (c[i] == '\\' || (unsigned char)c[i] < 0x20)
            return 1;
    return 0;
}

int vmdr_git_check_path(const char *path, vmdr_err *e)
{
    size_t len = strlen(path);
    if (len == 0)
        return vmdr_err_set(e, "invalid", 0, "empty path");
    if (len > PATH_MAX_LEN)
        return vmdr_err_set(e, "invalid", 0, "path longer than %d bytes", PATH_MAX_LEN);
    if (path[0] == '/')
        return vmdr_err_set(e, "invalid", 0, "absolute path '%s' (paths are relative to the "
                            "repository root)", path);
    const char *p = path;
    while (1) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (bad_component(p, n))
            return vmdr_err_set(e, "invalid", 0,
                                "path '%s' is outside the repository or inside .git (no empty, "
                                "'.', '..' or '.git' component)", path);
        if (!slash)
            break;
        p = slash + 1;
    }
    return 0;
}

int vmdr_git__write_file(const char *workdir, const char *path, const char *data, size_t len,
                         vmdr_git_dircache *dc, vmdr_err *e)
{
    char full[PATH_MAX_LEN * 2];
    struct stat st;
    int n = snprintf(full, sizeof full, "%s%s", workdir, path);
    if (n < 0 || (size_t)n >= sizeof full)
        return vmdr_err_set(e, "invalid", 0, "path too long");
    size_t root = strlen(workdir);
    const char *last = strrchr(path, '/');
    size_t dirlen = last ? (size_t)(last - path) : 0;
    /* Every parent inside the clone must be a real directory, never a symlink. Consecutive
     * writes into one directory check it once (the cache is dropped on reset and remove). */
    if (!(dc->valid && dc->len == dirlen && memcmp(dc->dir, path, dirlen) == 0)) {
        dc->valid = 0;
        for (char *s = full + root; (s = strchr(s, '/')) != NULL; s++) {
            *s = '\0';
            if (lstat(full, &st) == 0) {
                if (S_ISLNK(st.st_mode)) {
                    vmdr_err_set(e, "invalid", 0,
                                 "refusing to write '%s' through the symlink '%s'", path,
                                 full + root);
                    *s = '/';
                    return -1;
                }
                if (!S_ISDIR(st.st_mode) && unlink(full) != 0) {
                    vmdr_err_set(e, "io", errno, "cannot replace '%s': %s", full + root,
                                 strerror(errno));
                    *s = '/';
                    return -1;
                }
            }
            if (lstat(full, &st) != 0 && mkdir(full, 0755) != 0) {
                int err = errno;
                vmdr_err_set(e, "io", err, "cannot create '%s': %s%s", full + root,
                             strerror(err), err == ENOSPC ? NOSPACE_HINT : "");
                *s = '/';
                return -1;
            }
            *s = '/';
        }
        if (dirlen < sizeof dc->dir) {
            memcpy(dc->dir, path, dirlen);
            dc->len = dirlen;
            dc->valid = 1;
        }
    }
    /* Written in place, not through a rename: the clone is machine-owned and a reset
     * repairs a file a killed run left half-written. O_NOFOLLOW: never through a link. */
    int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ELOOP && unlink(full) == 0)
        fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EISDIR)
        return vmdr_err_set(e, "invalid", 0, "'%s' is a directory", path);
    if (fd < 0) {
        int err = errno;
        return vmdr_err_set(e, "io", err, "cannot write '%s': %s%s", path, strerror(err),
                            err == ENOSPC ? NOSPACE_HINT : "");
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int err = errno;
            close(fd);
            return vmdr_err_set(e, "io", err, "cannot write '%s': %s%s", path, strerror(err),
                                err == ENOSPC ? NOSPACE_HINT : "");
        }
        off += (size_t)w;
    }
    if (close(fd) != 0) {
        int err = errno;
        return vmdr_err_set(e, "io", err, "cannot write '%s': %s%s", path, strerror(err),
                            err == ENOSPC ? NOSPACE_HINT : "");
    }
    return 0;
}

int vmdr_git__remove_file(const char *workdir, const char *path, vmdr_err *e)
{
    char full[PATH_MAX_LEN * 2];
    struct stat st;
    snprintf(full, sizeof full, "%s%s", workdir, path);
    if (lstat(full, &st) != 0)
        return 0;
    if (S_ISDIR(st.st_mode))
        return vmdr_err_set(e, "invalid", 0, "'%s' is a directory: remove its files", path);
    if (unlink(full) != 0)
        return vmdr_err_set(e, "io", errno, "cannot remove '%s': %s", path, strerror(errno));
    /* Git has no empty directories: prune the ones this removal emptied. */
    size_t root = strlen(workdir);
    char *s;
    while ((s = strrchr(full + root, '/')) != NULL) {
        *s = '\0';
        if (rmdir(full) != 0)
            break;
    }
    return 0;
}

typedef struct walk_ctx {
    git_repository *repo;
    vmdr_err *e;
} walk_ctx;

/* Does a symlink at dir/<name> with this target stay inside the root? */
static int link_stays_inside(const char *dir, const char *target, size_t tlen)
{
    if (tlen == 0 || target[0] == '/')
        return 0;
    int depth = 0;
    for (const char *p = dir; *p; p++)
        if (*p == '/')
            depth++;
    const char *p = target, *end = target + tlen;
    while (p < end) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        size_t n = s ? (size_t)(s - p) : (size_t)(end - p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return 0;
        } else if (n == 4 && strncasecmp(p, ".git", 4) == 0) {
            return 0;
        } else if (n > 0 && !(n == 1 && p[0] == '.')) {
            depth++;
        }
        p = s ? s + 1 : end;
    }
    return 1;
}

static int walk_cb(const char *root, const git_tree_entry *entry, void *payload)
{
    walk_ctx *w = payload;
    const char *name = git_tree_entry_name(entry);
    git_filemode_t mode = git_tree_entry_filemode(entry);
    if (strchr(name, '/') || bad_component(name, strlen(name))) {
        vmdr_err_set(w->e, "invalid", 0,
                     "hostile tree from the remote: entry '%s%s' (refused, nothing written)",
                     root, name);
        return -1;
    }
    if (mode == GIT_FILEMODE_COMMIT) {
        vmdr_err_set(w->e, "invalid", 0, "submodule '%s%s' in the remote tree is not supported",
                     root, name);
        return -1;
    }
    if (mode == GIT_FILEMODE_LINK) {
        git_blob *blob = NULL;
        if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(entry)) != 0) {
            vmdr_err_set(w->e, "git", 0, "cannot read symlink '%s%s'", root, name);
            return -1;
        }
        int ok = link_stays_inside(root, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
        git_blob_free(blob);
        if (!ok) {
            vmdr_err_set(w->e, "invalid", 0,
                         "hostile tree from the remote: symlink '%s%s' points outside the "
                         "repository (refused, nothing written)", root, name);
            return -1;
        }
    }
    return 0;
}

int vmdr_git__validate_tree(git_repository *repo, const git_tree *tree, vmdr_err *e)
{
    walk_ctx w = {repo, e};
    vmdr_err_clear(e);
    int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, walk_cb, &w);
    if (vmdr_err_is_set(e))
        return -1;
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot read the remote tree");
    return 0;
}

static int mkdir_parents(char *path)
{
    for (char *s = path + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        int rc = mkdir(path, 0755);
        *s = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

int vmdr_git_lock(int *fd, const char *path, double timeout, vmdr_err *e)
{
    char buf[PATH_MAX_LEN];
    snprintf(buf, sizeof buf, "%s", path);
    if (mkdir_parents(buf) != 0)
        return vmdr_err_set(e, "io", errno, "cannot create the directory of '%s': %s", path,
                            strerror(errno));
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return vmdr_err_set(e, "io", errno, "cannot open lock file '%s': %s", path,
                            strerror(errno));
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (flock(f, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int err = errno;
            close(f);
            return vmdr_err_set(e, "io", err, "cannot lock '%s': %s", path, strerror(err));
        }
        if (vmdr_interrupted()) {
            close(f);
            return vmdr_err_set(e, "interrupted", 0, "interrupted waiting for '%s'", path);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - start.tv_sec) +
                        (double)(now.tv_nsec - start.tv_nsec) / 1e9;
        if (waited >= timeout) {
            close(f);
            return vmdr_err_set(e, "timeout", 0,
                                "another vmdr process holds '%s' (waited %.1f s)", path, waited);
        }
        /* Polling keeps the wait interruptible; 10 ms is invisible next to a push. */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *fd = f;
    return 0;
}
