/* The vmdr.fs core (see fs.h). All descriptors are O_CLOEXEC so vmdr.proc children
 * never inherit a lock or a half-written file. */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int vmdr_fs_errno(vmdr_err *e, int err, const char *op, const char *path)
{
    const char *code;
    switch (err) {
    case ENOENT: code = "not_found"; break;
    case EACCES:
    case EPERM:
    case EROFS: code = "permission"; break;
    case EEXIST: code = "exists"; break;
    case ENOTDIR: code = "not_dir"; break;
    case EISDIR: code = "is_dir"; break;
    case ENOTEMPTY: code = "not_empty"; break;
    case ENAMETOOLONG:
    case EINVAL: code = "invalid"; break;
    default: code = "io"; break;
    }
    return vmdr_err_set(e, code, err, "%s '%s': %s", op, path, strerror(err));
}

const char *vmdr_fs_type_name(vmdr_fs_type t)
{
    switch (t) {
    case VMDR_FS_FILE: return "file";
    case VMDR_FS_DIR: return "dir";
    case VMDR_FS_LINK: return "link";
    default: return "other";
    }
}

vmdr_fs_type vmdr_fs_type_of(mode_t m)
{
    if (S_ISREG(m))
        return VMDR_FS_FILE;
    if (S_ISDIR(m))
        return VMDR_FS_DIR;
    if (S_ISLNK(m))
        return VMDR_FS_LINK;
    return VMDR_FS_OTHER;
}

int vmdr_fs_read(char **out, size_t *outlen, const char *path, vmdr_err *e)
{
    int rc = -1;
    char *buf = NULL;
    size_t len = 0, cap;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vmdr_fs_errno(e, errno, "read", path);
    if (fstat(fd, &st) != 0) {
        vmdr_fs_errno(e, errno, "read", path);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        vmdr_fs_errno(e, EISDIR, "read", path);
        goto done;
    }
    /* st_size is a hint (0 for /proc files, pipes): grow as needed. */
    cap = (S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size : 4096) + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        vmdr_err_set(e, "io", ENOMEM, "read '%s': out of memory", path);
        goto done;
    }
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (nb == NULL) {
                vmdr_err_set(e, "io", ENOMEM, "read '%s': out of memory", path);
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            vmdr_fs_errno(e, errno, "read", path);
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
    rc = 0;
done:
    free(buf);
    close(fd);
    return rc;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Splits path into its directory ("." when none) and base name, in caller buffers. */
static int split_path(const char *path, char *dir, size_t dsz, const char **base)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, dsz, ".");
        *base = path;
    } else if (slash == path) {
        snprintf(dir, dsz, "/");
        *base = slash + 1;
    } else {
        if ((size_t)(slash - path) >= dsz)
            return -1;
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        *base = slash + 1;
    }
    return **base == '\0' ? -1 : 0;
}

/* flock(fd, LOCK_EX), again after a signal: 0 or -1 with errno. */
static int flock_ex(int fd)
{
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    return rc;
}

/* Gives the temp name's last 6 characters (its "XXXXXX") random letters and digits. */
static void tmp_fill(char *tmp)
{
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[6];
    char *x = tmp + strlen(tmp) - 6;
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)tmp;
        for (size_t i = 0; i < sizeof r; i++, v >>= 8)
            r[i] = (unsigned char)v;
    }
    for (size_t i = 0; i < sizeof r; i++)
        x[i] = set[r[i] % (sizeof set - 1)];
}

/* The temp file, written, synced and flocked, under the name tmp: made with O_TMPFILE
 * and locked before it has any name, then given one with linkat, so no clear_tmp can
 * ever take it, and a SIGKILL before the link leaves nothing at all. Returns its
 * descriptor, or -1 when this file system (or a missing /proc) does not allow it, or
 * anything failed: the caller then starts over with mkostemp, which reports the error. */
static int tmp_linked(const char *dir, char *tmp, int mode, const void *buf, size_t len)
{
#ifdef O_TMPFILE
    /* VMDR_FS_TMPFILE=0 turns it off: for a file system that mishandles O_TMPFILE, and
     * for the spec of the mkostemp path. */
    const char *knob = getenv("VMDR_FS_TMPFILE");
    if (knob != NULL && strcmp(knob, "0") == 0)
        return -1;
    char proc[64];
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (flock_ex(fd) != 0 || fchmod(fd, (mode_t)mode) != 0 || write_all(fd, buf, len) != 0 ||
        fsync(fd) != 0)
        goto fail;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    for (int attempt = 0; attempt < 16; attempt++) {
        tmp_fill(tmp);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0)
            return fd;
        if (errno != EEXIST)
            break;
    }
fail:
    close(fd);
#else
    (void)dir, (void)tmp, (void)mode, (void)buf, (void)len;
#endif
    return -1;
}

/* The same with mkostemp, where O_TMPFILE cannot be used. Here a clear_tmp can take the
 * file between mkostemp and flock; it then has no link left (st_nlink 0) and we start
 * again under a new name. Returns the descriptor, or -1 with e set. */
static int tmp_named(const char *path, char *tmp, int mode, const void *buf, size_t len,
                     vmdr_err *e)
{
    struct stat st;
    for (int attempt = 0;; attempt++) {
        memcpy(tmp + strlen(tmp) - 6, "XXXXXX", 6);
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
            return vmdr_fs_errno(e, errno, "write", path), -1;
        if (flock_ex(fd) != 0 || fstat(fd, &st) != 0)
            goto fail;
        if (st.st_nlink == 0) {
            close(fd);
            if (attempt == 63)
                return vmdr_err_set(e, "busy", EAGAIN,
                                    "write '%s': its temp file was removed 64 times", path), -1;
            continue;
        }
        if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0)
            goto fail;
        return fd;
    fail:;
        int err = errno;
        unlink(tmp);
        close(fd);
        return vmdr_fs_errno(e, err, "write", path), -1;
    }
}

int vmdr_fs_write(const char *path, const void *buf, size_t len, int mode, vmdr_err *e)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    const char *base;
    int rc = -1, fd = -1, dfd = -1;
    struct stat st;
    sigset_t hold, old;

    if (split_path(path, dir, sizeof dir, &base) != 0)
        return vmdr_err_set(e, "invalid", EINVAL, "write '%s': not a file path", path);
    if (snprintf(tmp, sizeof tmp, "%s/.%s" VMDR_FS_TMP_TAG "XXXXXX", dir, base) >=
        (int)sizeof tmp)
        return vmdr_fs_errno(e, ENAMETOOLONG, "write", path);
    if (mode < 0)
        mode = (stat(path, &st) == 0 && S_ISREG(st.st_mode)) ? (int)(st.st_mode & 07777) : 0644;

    /* From the temp file's creation to its rename or unlink, SIGINT/SIGTERM wait: the
     * host's first signal only sets a flag anyway, and a second one (default action,
     * process death) must not strand the temp file. The window is one write + fsync. */
    sigemptyset(&hold);
    sigaddset(&hold, SIGINT);
    sigaddset(&hold, SIGTERM);
    sigprocmask(SIG_BLOCK, &hold, &old);

    /* The temp file is flocked while it exists under its name: a clear_tmp (of another
     * process, or a next run) removes only temp files nobody holds, those of a writer
     * killed with SIGKILL. */
    fd = tmp_linked(dir, tmp, mode, buf, len);
    if (fd < 0 && (fd = tmp_named(path, tmp, mode, buf, len, e)) < 0)
        goto done;
    /* Renamed while still open and locked: closed first, it would be free for a clear_tmp
     * to take. (fsync has reported any write-back error; close has nothing left to.) */
    if (rename(tmp, path) != 0) {
        vmdr_fs_errno(e, errno, "write", path);
        unlink(tmp);
        goto done;
    }
    /* The rename is durable only once the directory entry is on disk. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        vmdr_fs_errno(e, errno, "fsync directory of", path);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ".<base>" VMDR_FS_TMP_TAG "XXXXXX": a temp file of an atomic write to <base>. */
static int is_tmp_of(const char *name, const char *base)
{
    size_t bl = strlen(base), tl = sizeof VMDR_FS_TMP_TAG - 1;
    return name[0] == '.' && strncmp(name + 1, base, bl) == 0 &&
           strncmp(name + 1 + bl, VMDR_FS_TMP_TAG, tl) == 0 && strlen(name + 1 + bl + tl) == 6;
}

int vmdr_fs_clear_tmp(const char *path, int *removed, vmdr_err *e)
{
    char dir[PATH_MAX], p[PATH_MAX];
    const char *base;
    DIR *d;
    struct dirent *de;

    *removed = 0;
    if (split_path(path, dir, sizeof dir, &base) != 0)
        return vmdr_err_set(e, "invalid", EINVAL, "clear_tmp '%s': not a file path", path);
    d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : vmdr_fs_errno(e, errno, "clear_tmp", dir);
    while ((de = readdir(d)) != NULL) {
        struct stat fst, lst;
        if (!is_tmp_of(de->d_name, base) ||
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        /* Never follow a link, never block on a FIFO: only a regular file is ours. */
        int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        /* Held: a live writer's. Free: its writer died (or has just renamed it, and
         * then the name is gone or names another file: the inode check). */
        if (fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            lstat(p, &lst) == 0 && lst.st_dev == fst.st_dev && lst.st_ino == fst.st_ino &&
            unlink(p) == 0)
            (*removed)++;
        close(fd);
    }
    closedir(d);
    return 0;
}

int vmdr_fs_mkdir_p(const char *path, int mode, vmdr_err *e)
{
    char buf[PATH_MAX];
    struct stat st;
    size_t n = strlen(path);
    if (n == 0)
        return vmdr_err_set(e, "invalid", EINVAL, "mkdir: empty path");
    if (n >= sizeof buf)
        return vmdr_fs_errno(e, ENAMETOOLONG, "mkdir", path);
    memcpy(buf, path, n + 1);
    /* Each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, (mode_t)mode) != 0) {
            int err = errno;
            if (err != EEXIST)
                return vmdr_fs_errno(e, err, "mkdir", buf);
            if (stat(buf, &st) != 0)
                return vmdr_fs_errno(e, errno, "mkdir", buf);
            if (!S_ISDIR(st.st_mode))
                return vmdr_fs_errno(e, ENOTDIR, "mkdir", buf);
        }
        buf[i] = c;
    }
    return 0;
}

/* Removes everything inside the directory open as dfd (which it closes). */
static int remove_tree_at(int dfd, const char *shown, vmdr_err *e)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    int rc = 0;
    if (d == NULL) {
        close(dfd);
        return vmdr_fs_errno(e, errno, "remove", shown);
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        struct stat st;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (fstatat(dirfd(d), n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = vmdr_fs_errno(e, errno, "remove", n);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = vmdr_fs_errno(e, errno, "remove", n);
                break;
            }
            rc = remove_tree_at(sub, n, e);
            if (rc == 0 && unlinkat(dirfd(d), n, AT_REMOVEDIR) != 0)
                rc = vmdr_fs_errno(e, errno, "remove", n);
        } else if (unlinkat(dirfd(d), n, 0) != 0) {
            rc = vmdr_fs_errno(e, errno, "remove", n);
        }
    }
    if (rc == 0 && errno != 0)
        rc = vmdr_fs_errno(e, errno, "remove", shown);
    closedir(d);
    return rc;
}

int vmdr_fs_remove(const char *path, int recursive, vmdr_err *e)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return vmdr_fs_errno(e, errno, "remove", path);
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0)
            return vmdr_fs_errno(e, errno, "remove", path);
        return 0;
    }
    if (recursive) {
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            return vmdr_fs_errno(e, errno, "remove", path);
        if (remove_tree_at(dfd, path, e) != 0)
            return -1;
    }
    if (rmdir(path) != 0)
        return vmdr_fs_errno(e, errno, "remove", path);
    return 0;
}

static int entries_add(vmdr_fs_entries *es, const char *path, vmdr_fs_type t)
{
    if (es->n == es->cap) {
        size_t nc = es->cap ? es->cap * 2 : 32;
        vmdr_fs_entry *nv = realloc(es->v, nc * sizeof *nv);
        if (nv == NULL)
            return -1;
        es->v = nv;
        es->cap = nc;
    }
    es->v[es->n].path = strdup(path);
    if (es->v[es->n].path == NULL)
        return -1;
    es->v[es->n].type = t;
    es->n++;
    return 0;
}

void vmdr_fs_entries_free(vmdr_fs_entries *es)
{
    for (size_t i = 0; i < es->n; i++)
        free(es->v[i].path);
    free(es->v);
    es->v = NULL;
    es->n = es->cap = 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const vmdr_fs_entry *)a)->path, ((const vmdr_fs_entry *)b)->path);
}

/* Adds the entries of `abs` (shown to the caller as `rel`, "" at the top). */
static int scan(vmdr_fs_entries *out, const char *abs, const char *rel, int recurse,
                vmdr_err *e)
{
    DIR *d = opendir(abs);
    struct dirent *de;
    int rc = 0;
    if (d == NULL)
        return vmdr_fs_errno(e, errno, recurse ? "walk" : "list", abs);
    while ((errno = 0, de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        char sub_abs[PATH_MAX], sub_rel[PATH_MAX];
        struct stat st;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (snprintf(sub_abs, sizeof sub_abs, "%s/%s", abs, n) >= (int)sizeof sub_abs ||
            snprintf(sub_rel, sizeof sub_rel, "%s%s%s", rel, *rel ? "/" : "", n) >=
                (int)sizeof sub_rel) {
            rc = vmdr_fs_errno(e, ENAMETOOLONG, "walk", abs);
            break;
        }
        if (lstat(sub_abs, &st) != 0) {
            if (errno == ENOENT)
                continue; /* removed while we looked: it is simply not there */
            rc = vmdr_fs_errno(e, errno, "walk", sub_abs);
            break;
        }
        vmdr_fs_type t = vmdr_fs_type_of(st.st_mode);
        if (entries_add(out, sub_rel, t) != 0) {
            rc = vmdr_err_set(e, "io", ENOMEM, "walk '%s': out of memory", abs);
            break;
        }
        if (recurse && t == VMDR_FS_DIR && (rc = scan(out, sub_abs, sub_rel, 1, e)) != 0)
            break;
    }
    if (rc == 0 && errno != 0)
        rc = vmdr_fs_errno(e, errno, "walk", abs);
    closedir(d);
    return rc;
}

static int scan_top(vmdr_fs_entries *out, const char *dir, int recurse, vmdr_err *e)
{
    memset(out, 0, sizeof *out);
    if (scan(out, dir, "", recurse, e) != 0) {
        vmdr_fs_entries_free(out);
        return -1;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, entry_cmp);
    return 0;
}

int vmdr_fs_list(vmdr_fs_entries *out, const char *dir, vmdr_err *e)
{
    return scan_top(out, dir, 0, e);
}

int vmdr_fs_walk(vmdr_fs_entries *out, const char *dir, vmdr_err *e)
{
    return scan_top(out, dir, 1, e);
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int vmdr_fs_lock(int *out_fd, const char *path, double timeout, int (*stop)(void),
                 vmdr_err *e)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return vmdr_fs_errno(e, errno, "lock", path);
    double deadline = now_mono() + timeout;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        int err = errno;
        if (err != EWOULDBLOCK && err != EINTR) {
            close(fd);
            return vmdr_fs_errno(e, err, "lock", path);
        }
        if (stop && stop()) {
            close(fd);
            return vmdr_err_set(e, "interrupted", EINTR, "lock '%s': interrupted", path);
        }
        double left = deadline - now_mono();
        if (left <= 0) {
            close(fd);
            if (timeout <= 0)
                return vmdr_err_set(e, "busy", EWOULDBLOCK, "lock '%s': held by another "
                                    "process", path);
            return vmdr_err_set(e, "timeout", EWOULDBLOCK, "lock '%s': still held after %g s",
                                path, timeout);
        }
        /* flock has no timed wait: poll every 20 ms, which also bounds how late an
         * interrupt is seen. */
        struct timespec ts = {0, left < 0.02 ? (long)(left * 1e9) : 20000000L};
        nanosleep(&ts, NULL);
    }
    /* Record the holder for people looking at the file; the lock itself is the flock. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0)
        (void)!pwrite(fd, pid, (size_t)n, 0);
    *out_fd = fd;
    return 0;
}
