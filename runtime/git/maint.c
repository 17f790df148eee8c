/* Keeps the clone's pack count bounded: every commit writes one pack (repo.c), and
 * libgit2 maps and searches every pack's index, so a monitor committing every few seconds
 * slowed down and grew with the hour (docs/bench/soak.md). Over the limit, the smallest
 * packs are merged into one, as `git repack --geometric=2 -d` chooses them: after it the
 * packs' object counts at least double from one to the next, so N objects need at most
 * about log2(N) packs, and a pack is rewritten only about log2(N) times in its life.
 *
 * Kill -9 at any point leaves a clone git and vmdr accept: the new pack is indexed in a
 * directory of its own, linked into objects/pack (.pack, then the .idx that makes it
 * visible), checked to hold every object of the packs it replaces, and only then are
 * those deleted (.idx first, which hides each pack; a .pack left without one is removed
 * by the next run). The caller holds the clone's lock (git.lock), as for clear_locks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>

#include "internal.h"

#define OID_RAW 20

typedef struct pack_info {
    char name[GIT_OID_HEXSZ + 1]; /* pack-<name>.idx */
    unsigned long count;          /* objects, from the index's fanout */
} pack_info;

/* VMDR_GIT_FAILPOINT=<name>: the process dies here as kill -9 would (tests only). */
static void failpoint(const char *name)
{
    const char *fp = getenv("VMDR_GIT_FAILPOINT");
    if (fp && strcmp(fp, name) == 0)
        _exit(9);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "pack-<40 hex><ext>" -> the 40 hex digits in name; 0 when d_name is not one. */
static int pack_name(const char *d_name, const char *ext, char name[GIT_OID_HEXSZ + 1])
{
    size_t el = strlen(ext);
    if (strncmp(d_name, "pack-", 5) != 0 || strlen(d_name) != 5 + GIT_OID_HEXSZ + el ||
        strcmp(d_name + 5 + GIT_OID_HEXSZ, ext) != 0)
        return 0;
    for (int i = 0; i < GIT_OID_HEXSZ; i++) {
        char c = d_name[5 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    memcpy(name, d_name + 5, GIT_OID_HEXSZ);
    name[GIT_OID_HEXSZ] = '\0';
    return 1;
}

static int exists(const char *dir, const char *name, const char *ext)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/pack-%s%s", dir, name, ext);
    return access(p, F_OK) == 0;
}

static void remove_pack_file(const char *dir, const char *name, const char *ext)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/pack-%s%s", dir, name, ext);
    unlink(p);
}

/* Reads a version-2 pack index: object count, and with oids != NULL its object ids
 * (sorted, OID_RAW bytes each, malloc'd). -1 with errno on a short or foreign file. */
static int read_idx(const char *path, unsigned long *count, unsigned char **oids)
{
    unsigned char head[8 + 256 * 4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = pread(fd, head, sizeof head, 0);
    if (n != (ssize_t)sizeof head || memcmp(head, "\377tOc\0\0\0\2", 8) != 0) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    const unsigned char *f = head + 8 + 255 * 4;
    *count = (unsigned long)f[0] << 24 | (unsigned long)f[1] << 16 | (unsigned long)f[2] << 8 |
             (unsigned long)f[3];
    if (oids) {
        size_t len = (size_t)*count * OID_RAW;
        *oids = malloc(len ? len : 1);
        if (!*oids) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
        size_t got = 0;
        while (got < len) {
            n = pread(fd, *oids + got, len - got, (off_t)(sizeof head + got));
            if (n <= 0) {
                free(*oids);
                *oids = NULL;
                close(fd);
                errno = n == 0 ? EINVAL : errno;
                return -1;
            }
            got += (size_t)n;
        }
    }
    close(fd);
    return 0;
}

static int cmp_pack(const void *a, const void *b)
{
    const pack_info *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_oid(const void *a, const void *b)
{
    return memcmp(a, b, OID_RAW);
}

/* The packs of dir that may be merged (an index, its pack, no .keep), and the number of
 * visible packs. With clean, also removes what a killed run left: packs without an index
 * and the files of our own staging directory. *out malloc'd. */
static int list_packs(const char *dir, pack_info **out, size_t *n, size_t *visible, int clean,
                      vmdr_err *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t cap = 0;
    if (out)
        *out = NULL;
    *n = 0;
    *visible = 0;
    if (!d)
        return vmdr_err_set(e, "io", errno, "cannot read '%s': %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        char name[GIT_OID_HEXSZ + 1];
        if (clean && pack_name(de->d_name, ".pack", name) && !exists(dir, name, ".idx")) {
            /* Hidden (its index went first): a killed maintenance deleted the rest. */
            remove_pack_file(dir, name, ".pack");
            continue;
        }
        if (!pack_name(de->d_name, ".idx", name))
            continue;
        (*visible)++;
        if (!out || exists(dir, name, ".keep") || !exists(dir, name, ".pack"))
            continue;
        if (*n == cap) {
            size_t c = cap ? cap * 2 : 64;
            pack_info *p = realloc(*out, c * sizeof *p);
            if (!p) {
                closedir(d);
                return vmdr_err_set(e, "nomem", 0, "out of memory");
            }
            *out = p;
            cap = c;
        }
        memcpy((*out)[*n].name, name, sizeof name);
        (*out)[*n].count = 0;
        (*n)++;
    }
    closedir(d);
    return 0;
}

/* Which of the sorted packs to merge: the prefix `git repack --geometric=2` takes (the
 * packs below the last break in the doubling, then as many more as the merged pack's size
 * swallows), widened when needed so that at most max_packs remain. */
static size_t geometric_split(const pack_info *p, size_t n, size_t max_packs)
{
    size_t split = 0;
    if (n < 2)
        return 0;
    size_t i;
    for (i = n - 1; i > 0; i--)
        if (p[i].count < 2 * p[i - 1].count)
            break;
    split = i ? i + 1 : 0;
    unsigned long long total = 0;
    for (i = 0; i < split; i++)
        total += p[i].count;
    for (; split < n && p[split].count < 2 * total; split++)
        total += p[split].count;
    /* Merging k packs leaves n - k + 1. */
    if (n > max_packs && n - split + 1 > max_packs)
        split = n - max_packs + 1;
    return split < 2 ? 0 : split;
}

/* Links stage/pack-<name>.{pack,idx} into dir, the index last. EEXIST is fine: a pack of
 * that name holds the same objects (the name is a hash of them). */
static int link_in(const char *stage, const char *dir, const char *name, vmdr_err *e)
{
    static const char *const ext[] = {".pack", ".idx"};
    char from[4200], to[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/pack-%s%s", stage, name, ext[i]);
        snprintf(to, sizeof to, "%s/pack-%s%s", dir, name, ext[i]);
        if (link(from, to) != 0 && errno != EEXIST)
            return vmdr_err_set(e, "io", errno, "cannot link '%s' to '%s': %s%s", from, to,
                                strerror(errno), errno == ENOSPC ? NOSPACE_HINT : "");
    }
    return 0;
}

/* Every id of the sorted, duplicate-free `want` is in the index at path. */
static int idx_holds(const char *path, const unsigned char *want, size_t nwant, vmdr_err *e)
{
    unsigned long count = 0;
    unsigned char *have = NULL;
    if (read_idx(path, &count, &have) < 0)
        return vmdr_err_set(e, "io", errno, "cannot read the new index '%s': %s", path,
                            strerror(errno));
    size_t j = 0;
    for (size_t i = 0; i < nwant; i++) {
        while (j < count && memcmp(have + j * OID_RAW, want + i * OID_RAW, OID_RAW) < 0)
            j++;
        if (j == count || memcmp(have + j * OID_RAW, want + i * OID_RAW, OID_RAW) != 0) {
            free(have);
            return vmdr_err_set(e, "git", 0, "the merged pack lacks objects of the packs it "
                                "replaces: nothing deleted");
        }
    }
    free(have);
    return 0;
}

/* A fresh git_repository (and mempack) on the same clone: libgit2 1.5's pack backend only
 * ever adds packs on refresh, so the deleted ones would stay open and mapped. */
static int reopen(vmdr_git_repo *r, vmdr_err *e)
{
    git_repository *repo = NULL;
    git_odb_backend *mempack = NULL;
    const char *path = r->workdir ? r->workdir : git_repository_path(r->repo);
    int rc = git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
    if (rc == 0)
        rc = vmdr_git__add_mempack(repo, &mempack);
    if (rc < 0) {
        git_repository_free(repo);
        return vmdr_git__set_error(e, rc, "cannot reopen the clone after merging packs");
    }
    vmdr_git__drop_pending(r); /* the head cache belongs to the old repository */
    git_repository_free(r->repo);
    r->repo = repo;
    r->mempack = mempack;
    return 0;
}

int vmdr_git_pack_count(vmdr_git_repo *r, size_t *count, vmdr_err *e)
{
    char dir[4096];
    size_t n;
    snprintf(dir, sizeof dir, "%sobjects/pack", git_repository_path(r->repo));
    return list_packs(dir, NULL, &n, count, 0, e);
}

int vmdr_git_maintain(vmdr_git_repo *r, const vmdr_git_maint_opts *o, vmdr_git_maint_stats *st,
                      vmdr_err *e)
{
    char dir[4096], stage[4096], path[4200], name[GIT_OID_HEXSZ + 1];
    pack_info *packs = NULL;
    unsigned char *oids = NULL;
    size_t npacks = 0, visible = 0, noids = 0, max_packs = o && o->max_packs ? o->max_packs : 10;
    git_packbuilder *pb = NULL;
    git_buf buf = {0};
    int rc, ret = -1;
    double t0 = now();

    errno = 0; /* see vmdr_git__set_error */
    memset(st, 0, sizeof *st);
    if (r->nchanges > 0)
        return vmdr_err_set(e, "invalid", 0, "maintain: commit or reset the pending changes "
                            "first");
    snprintf(dir, sizeof dir, "%sobjects/pack", git_repository_path(r->repo));
    snprintf(stage, sizeof stage, "%s" VMDR_GIT_REPACK_STAGE, git_repository_path(r->repo));
    /* The cheap part first: one directory read; what a killed run left goes with it. */
    if (list_packs(dir, &packs, &npacks, &visible, 1, e) < 0)
        goto done;
    vmdr_git__remove_files(stage, "");
    rmdir(stage);
    st->packs_before = st->packs_after = visible;
    if (visible <= max_packs) {
        ret = 0;
        goto done;
    }

    for (size_t i = 0; i < npacks; i++) {
        snprintf(path, sizeof path, "%s/pack-%s.idx", dir, packs[i].name);
        if (read_idx(path, &packs[i].count, NULL) < 0) {
            /* Not a version-2 index, or unreadable: it is never merged. */
            packs[i--] = packs[--npacks];
        }
    }
    qsort(packs, npacks, sizeof *packs, cmp_pack);
    /* Packs that cannot be merged (kept, foreign) still count against the limit. */
    size_t fixed = visible - npacks;
    size_t split = geometric_split(packs, npacks, max_packs > fixed ? max_packs - fixed : 1);
    if (split == 0) {
        ret = 0;
        goto done;
    }

    /* Every object id of the packs to merge, sorted and without duplicates. */
    for (size_t i = 0; i < split; i++) {
        unsigned long count;
        unsigned char *ids = NULL;
        snprintf(path, sizeof path, "%s/pack-%s.idx", dir, packs[i].name);
        if (read_idx(path, &count, &ids) < 0) {
            vmdr_err_set(e, "io", errno, "cannot read '%s': %s", path, strerror(errno));
            goto done;
        }
        unsigned char *grown = realloc(oids, (noids + count) * OID_RAW + 1);
        if (!grown) {
            free(ids);
            vmdr_err_set(e, "nomem", 0, "out of memory");
            goto done;
        }
        oids = grown;
        memcpy(oids + noids * OID_RAW, ids, (size_t)count * OID_RAW);
        noids += count;
        free(ids);
    }
    qsort(oids, noids, OID_RAW, cmp_oid);
    size_t u = 0;
    for (size_t i = 0; i < noids; i++)
        if (u == 0 || memcmp(oids + (u - 1) * OID_RAW, oids + i * OID_RAW, OID_RAW) != 0)
            memmove(oids + u++ * OID_RAW, oids + i * OID_RAW, OID_RAW);
    noids = u;

    if ((rc = git_packbuilder_new(&pb, r->repo)) < 0) {
        vmdr_git__set_error(e, rc, "cannot merge packs");
        goto done;
    }
    /* One thread: each packbuilder thread allocates from a malloc arena of its own, and
     * what a merge freed there stayed with the monitor (monitor soak, 60 s -> 240 s: RSS
     * +14 % with threads, +1.6 % with one and repo.transaction's trim after a merge).
     * The merge runs after the push, off the transaction's path. */
    git_packbuilder_set_threads(pb, 1);
    for (size_t i = 0; i < noids && rc == 0; i++) {
        git_oid id;
        git_oid_fromraw(&id, oids + i * OID_RAW);
        rc = git_packbuilder_insert(pb, &id, NULL);
    }
    if (rc == 0)
        rc = git_packbuilder_write_buf(&buf, pb);
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "cannot merge packs");
        goto done;
    }
    failpoint("maint-before-index");

    /* Indexed apart, then linked in: objects/pack never holds a half-written pack. */
    if (mkdir(stage, 0755) != 0 && errno != EEXIST) {
        vmdr_err_set(e, "io", errno, "cannot create '%s': %s%s", stage, strerror(errno),
                     errno == ENOSPC ? NOSPACE_HINT : "");
        goto done;
    }
    /* Something else by that name is in the way: said here, not left to libgit2's indexer
     * (whose failed git_indexer_new also leaks what it had allocated, libgit2 1.5). */
    struct stat sst;
    if (lstat(stage, &sst) != 0 || !S_ISDIR(sst.st_mode)) {
        vmdr_err_set(e, "io", ENOTDIR, "cannot stage the merged pack: '%s' is not a directory",
                     stage);
        goto done;
    }
    errno = 0;
    if ((rc = vmdr_git__index_pack(r->repo, stage, buf.ptr, buf.size, name)) < 0) {
        vmdr_git__set_error(e, rc, "cannot index the merged pack");
        goto done;
    }
    failpoint("maint-after-index");
    if (link_in(stage, dir, name, e) < 0)
        goto done;
    vmdr_git__remove_files(stage, "");
    rmdir(stage);
    failpoint("maint-after-link");
    snprintf(path, sizeof path, "%s/pack-%s.idx", dir, name);
    if (idx_holds(path, oids, noids, e) < 0)
        goto done;

    for (size_t i = 0; i < split; i++) {
        if (strcmp(packs[i].name, name) == 0)
            continue; /* the same objects: it is the merged pack */
        remove_pack_file(dir, packs[i].name, ".idx");
        failpoint("maint-after-idx");
        remove_pack_file(dir, packs[i].name, ".pack");
        remove_pack_file(dir, packs[i].name, ".rev");
        remove_pack_file(dir, packs[i].name, ".bitmap");
        failpoint("maint-after-pack");
        st->packs_merged++;
        if (strcmp(packs[i].name, r->last_pack_name) == 0)
            r->last_pack_name[0] = '\0'; /* a push now indexes its buffer again */
    }
    st->objects_merged = noids;
    if (reopen(r, e) < 0)
        goto done;
    if (list_packs(dir, NULL, &npacks, &visible, 0, e) < 0)
        goto done;
    st->packs_after = visible;
    ret = 0;
done:
    st->seconds = now() - t0;
    git_buf_dispose(&buf);
    git_packbuilder_free(pb);
    free(oids);
    free(packs);
    return ret;
}
