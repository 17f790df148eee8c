/* The working clone: open/clone, pending writes, tree building, commit, reset.
 *
 * Writes never go through the index: each write stores its blob in an in-memory
 * object database (mempack) and the file in the work tree; commit builds only the
 * trees on the changed paths with treebuilders over the previous tree, and writes
 * the new objects as ONE pack (10,000 loose objects is what makes git slow here).
 * git_mempack_dump is not used: it packs the commit's whole tree (trap 8). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>

#include "internal.h"

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

static void clear_stale_locks(const char *path, const vmdr_git_opts *o);

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

int vmdr_git__set_error(vmdr_err *e, int rc, const char *what)
{
    /* Read first: the operations that write clear errno on entry, so ENOSPC here is from a
     * write of this operation, even when libgit2 1.5 reports it as "unknown error" (a pack
     * index) or as a missing reference (a reflog append). */
    int os_err = errno;
    /* Copied now: the next libgit2 call would overwrite it (STYLE: no stale last-error). */
    const git_error *ge = git_error_last();
    const char *msg = ge && ge->message ? ge->message : "unknown error";
    int klass = ge ? ge->klass : 0;
    const char *code = "git";
    switch (rc) {
    case GIT_ENOTFOUND: code = "not_found"; break;
    case GIT_EAUTH:
    case GIT_ECERTIFICATE: code = "tls"; break; /* as vmdr.k8s: not a credential problem */
    case GIT_ENONFASTFORWARD: code = "rejected"; break;
    case GIT_ELOCKED:
    case GIT_EMODIFIED:
    case GIT_EEXISTS: code = "conflict"; break;
    case GIT_EINVALIDSPEC:
    case GIT_EINVALID: code = "invalid"; break;
    default:
        /* libgit2 1.5 reports most transport failures as a bare -1: classify by text. */
        if (strstr(msg, "404") || strstr(msg, "does not appear to be a git repository") ||
            strstr(msg, "could not find repository") || strstr(msg, "not found"))
            code = "not_found";
        else if (strstr(msg, "401") || strstr(msg, "403") || strstr(msg, "uthentication"))
            code = "auth";
        else if (klass == GIT_ERROR_NET || strstr(msg, "failed to connect") ||
                 strstr(msg, "Failed connecting") || strstr(msg, "onnection refused") ||
                 strstr(msg, "failed to resolve") || strstr(msg, "Unable to exchange") ||
                 strstr(msg, "Failed getting banner") || strstr(msg, "timed out"))
            code = "unreachable";
        break;
    }
    /* A full disk is the operator's to fix, not a Git problem: say so by name. */
    int nospace = os_err == ENOSPC || strstr(msg, "No space left on device") != NULL;
    if (nospace)
        code = "io";
    if (!ge && nospace)
        msg = strerror(ENOSPC);
    vmdr_err_set(e, code, rc, "%s: %s%s", what, msg, nospace ? NOSPACE_HINT : "");
    size_t l = strlen(e->message);
    while (l > 0 && (e->message[l - 1] == '\n' || e->message[l - 1] == ' '))
        e->message[--l] = '\0';
    git_error_clear();
    return -1;
}

/* ---- pending changes: one entry per path, found through a small hash ------------------------ */

static size_t hash_path(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static git_change *pending_find(vmdr_git_repo *r, const char *path)
{
    if (r->nslots == 0)
        return NULL;
    for (size_t i = hash_path(path) & (r->nslots - 1);; i = (i + 1) & (r->nslots - 1)) {
        size_t s = r->slots[i];
        if (s == 0)
            return NULL;
        if (strcmp(r->changes[s - 1].path, path) == 0)
            return &r->changes[s - 1];
    }
}

static int pending_rehash(vmdr_git_repo *r, size_t nslots)
{
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t c = 0; c < r->nchanges; c++) {
        size_t i = hash_path(r->changes[c].path) & (nslots - 1);
        while (slots[i])
            i = (i + 1) & (nslots - 1);
        slots[i] = c + 1;
    }
    free(r->slots);
    r->slots = slots;
    r->nslots = nslots;
    return 0;
}

static int pending_put(vmdr_git_repo *r, const char *path, const git_oid *oid, int removed,
                       vmdr_err *e)
{
    r->built_valid = 0;
    git_change *c = pending_find(r, path);
    if (c) {
        if (oid)
            c->oid = *oid;
        c->removed = removed;
        return 0;
    }
    if (r->nchanges == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        git_change *n = realloc(r->changes, cap * sizeof *n);
        if (!n)
            return vmdr_err_set(e, "nomem", 0, "out of memory");
        r->changes = n;
        r->cap = cap;
    }
    c = &r->changes[r->nchanges];
    if (!(c->path = strdup(path)))
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    if (oid)
        c->oid = *oid;
    c->removed = removed;
    r->nchanges++;
    if (r->nchanges * 2 > r->nslots) {
        /* Keep the load under one half; the rehash places the new entry too. */
        if (pending_rehash(r, r->nslots ? r->nslots * 2 : 128) < 0)
            return vmdr_err_set(e, "nomem", 0, "out of memory");
        return 0;
    }
    size_t i = hash_path(path) & (r->nslots - 1);
    while (r->slots[i])
        i = (i + 1) & (r->nslots - 1);
    r->slots[i] = r->nchanges;
    return 0;
}

void vmdr_git__drop_pending(vmdr_git_repo *r)
{
    for (size_t i = 0; i < r->nchanges; i++)
        free(r->changes[i].path);
    r->nchanges = 0;
    if (r->slots)
        memset(r->slots, 0, r->nslots * sizeof *r->slots);
    r->built_valid = 0;
    r->ntrees = 0;
    if (r->mempack)
        git_mempack_reset(r->mempack);
    git_tree_free(r->head_cache);
    r->head_cache = NULL;
    r->head_cached = 0;
}

/* A mempack on repo's object database at the highest priority, so every write lands in
 * memory until commit packs it. */
int vmdr_git__add_mempack(git_repository *repo, git_odb_backend **out)
{
    git_odb_backend *mp = NULL;
    git_odb *odb = NULL;
    int rc = git_mempack_new(&mp);
    if (rc == 0 && (rc = git_repository_odb(&odb, repo)) == 0)
        rc = git_odb_add_backend(odb, mp, 1000);
    git_odb_free(odb);
    if (rc < 0) {
        if (mp)
            mp->free(mp);
        return rc;
    }
    *out = mp;
    return 0;
}

/* ---- open / clone --------------------------------------------------------------------------- */

void vmdr_git_free(vmdr_git_repo *r)
{
    if (!r)
        return;
    vmdr_git__drop_pending(r);
    git_buf_dispose(&r->last_pack);
    free(r->changes);
    free(r->slots);
    free(r->trees);
    if (r->repo)
        git_repository_free(r->repo); /* frees the odb and with it the mempack */
    free(r->workdir);
    free(r->branch);
    free(r->local_ref);
    free(r->remote_ref);
    free(r->url);
    free(r->user);
    if (r->token) {
        /* Do not leave the secret in freed heap memory. */
        memset(r->token, 0, strlen(r->token));
        free(r->token);
    }
    if (r->ssh_passphrase) {
        memset(r->ssh_passphrase, 0, strlen(r->ssh_passphrase));
        free(r->ssh_passphrase);
    }
    free(r->ssh_key);
    free(r->ssh_pubkey);
    free(r->known_hosts);
    free(r->ca_bundle);
    free(r);
    git_libgit2_shutdown();
}

static int url_has_password(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return 0;
    p += 3;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (!at || (slash && slash < at))
        return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    return colon != NULL;
}

static int copy_file(FILE *out, const char *path)
{
    FILE *in = fopen(path, "rb");
    char buf[8192];
    size_t n;
    if (!in)
        return -1;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fputc('\n', out);
    fclose(in);
    return 0;
}

/* mbedTLS takes one CA location that REPLACES the system store (trap 6): give it a
 * bundle of the system CAs plus the configured one, kept inside .git. */
static int make_ca_bundle(vmdr_git_repo *r, const char *ca_file, vmdr_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%svmdr-ca-bundle.pem", git_repository_path(r->repo));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return vmdr_err_set(e, "io", errno, "cannot write '%s': %s", tmp, strerror(errno));
    copy_file(f, SYSTEM_CA_BUNDLE);
    int rc = copy_file(f, ca_file);
    int err = errno;
    if (fclose(f) != 0 || rc != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return vmdr_err_set(e, "invalid", err, "cannot read the CA file '%s': %s", ca_file,
                            strerror(err));
    }
    r->ca_bundle = strdup(path);
    return 0;
}

static int setup(vmdr_git_repo *r, const vmdr_git_opts *o, vmdr_err *e)
{
    int rc;
    git_config *cfg = NULL;
    const char *branch = o->branch && *o->branch ? o->branch : "main";
    char buf[1024];

    r->branch = strdup(branch);
    snprintf(buf, sizeof buf, "refs/heads/%s", branch);
    r->local_ref = strdup(buf);
    snprintf(buf, sizeof buf, "refs/remotes/origin/%s", branch);
    r->remote_ref = strdup(buf);
    if (!git_reference_is_valid_name(r->local_ref))
        return vmdr_err_set(e, "invalid", 0, "invalid branch name '%s'", branch);
    const char *wd = git_repository_workdir(r->repo);
    r->workdir = wd ? strdup(wd) : NULL;
    r->user = strdup(o->user && *o->user ? o->user : "git");
    r->token = dupstr(o->token);
    r->ssh_key = dupstr(o->ssh_key);
    r->ssh_passphrase = dupstr(o->ssh_passphrase);
    r->known_hosts = dupstr(o->known_hosts);
    r->accept_unknown_host = o->accept_unknown_host;
    if (o->ssh_pubkey) {
        r->ssh_pubkey = strdup(o->ssh_pubkey);
    } else if (o->ssh_key) {
        snprintf(buf, sizeof buf, "%s.pub", o->ssh_key);
        if (access(buf, R_OK) == 0)
            r->ssh_pubkey = strdup(buf);
    }

    if ((rc = vmdr_git__add_mempack(r->repo, &r->mempack)) < 0)
        return vmdr_git__set_error(e, rc, "cannot set up the object database");

    /* libgit2 runs no hooks; this keeps a person's `git` in the clone from running
     * hooks a hostile remote could never plant anyway (.git is refused in trees). */
    if ((rc = git_repository_config(&cfg, r->repo)) < 0)
        return vmdr_git__set_error(e, rc, "cannot open the clone's config");
    rc = git_config_set_string(cfg, "core.hooksPath", "/dev/null");
    if (rc == 0)
        rc = git_config_set_int32(cfg, "gc.auto", 0);
    if (rc < 0) {
        git_config_free(cfg);
        return vmdr_git__set_error(e, rc, "cannot write the clone's config");
    }

    /* The url with a plain config read, not git_remote_lookup: the lookup matches regular
     * expressions against the config, and libgit2 1.5 leaks the PCRE2 match data (with
     * PCRE2 >= 10.41 its ~20 KiB of frames) on every non-match (fixed in libgit2 1.6). A
     * monitor opens the clone for every batch: it grew ~450 KiB a commit. */
    /* The remote is written as plain config entries for the same reason (creating it with
     * git_remote_create_* runs the insteadOf expressions). */
    git_buf url = {0};
    rc = git_config_get_string_buf(&url, cfg, "remote.origin.url");
    if (rc == GIT_ENOTFOUND) {
        git_error_clear();
        if (!o->url) {
            git_config_free(cfg);
            return vmdr_err_set(e, "invalid", 0, "the clone has no remote 'origin' and no url");
        }
        snprintf(buf, sizeof buf, "+%s:%s", r->local_ref, r->remote_ref);
        rc = git_config_set_string(cfg, "remote.origin.url", o->url);
        if (rc == 0)
            rc = git_config_set_string(cfg, "remote.origin.fetch", buf);
        r->url = strdup(o->url);
    } else if (rc == 0 && o->url && strcmp(url.ptr, o->url) != 0) {
        rc = git_config_set_string(cfg, "remote.origin.url", o->url);
        r->url = strdup(o->url);
    } else if (rc == 0) {
        r->url = strdup(url.ptr);
    }
    git_buf_dispose(&url);
    git_config_free(cfg);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot set the remote");

    if ((rc = git_repository_set_head(r->repo, r->local_ref)) < 0)
        return vmdr_git__set_error(e, rc, "cannot point HEAD at the branch");
    if (o->ca_file && make_ca_bundle(r, o->ca_file, e) < 0)
        return -1;
    return 0;
}

static int check_url(const char *url, vmdr_err *e)
{
    if (url && url_has_password(url))
        return vmdr_err_set(e, "invalid", 0,
                            "the git URL holds a password: give the token through "
                            "git.token_env or git.token_file, never in the URL");
    return 0;
}

int vmdr_git_open(vmdr_git_repo **out, const char *path, const vmdr_git_opts *o, vmdr_err *e)
{
    errno = 0; /* see vmdr_git__set_error */
    *out = NULL;
    if (check_url(o->url, e) < 0)
        return -1;
    git_libgit2_init();
    vmdr_git_repo *r = calloc(1, sizeof *r);
    if (!r) {
        git_libgit2_shutdown();
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    }
    clear_stale_locks(path, o);
    int rc = git_repository_open_ext(&r->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "cannot open the clone");
        if (rc == GIT_ENOTFOUND)
            vmdr_err_set(e, "not_found", 0, "no git clone at '%s'", path);
        vmdr_git_free(r);
        return -1;
    }
    if (setup(r, o, e) < 0) {
        vmdr_git_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

/* libgit2's probe for symlink support during init (git_fs_path_supports_symlinks): it makes
 * <dir>/_git2_<16 hex digits>, replaces it with a link to "testing" and removes it. A kill
 * in between leaves that empty file or that link, and nothing else can look like it. */
static int init_probe(const char *dir, const char *name)
{
    static const char prefix[] = "_git2_";
    const size_t pl = sizeof prefix - 1;
    char p[4096], target[16];
    struct stat st;
    if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 16 ||
        strspn(name + pl, "0123456789abcdef") != 16 ||
        snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p || lstat(p, &st) != 0)
        return 0;
    if (S_ISREG(st.st_mode))
        return st.st_size == 0;
    if (!S_ISLNK(st.st_mode))
        return 0;
    ssize_t n = readlink(p, target, sizeof target);
    return n == 7 && memcmp(target, "testing", 7) == 0;
}

/* A directory a killed `clone` left before its repository was complete: only git's own
 * names in it (with a work tree, a .git and possibly files of a killed checkout can only
 * come after a complete init, so .git alone is what marks it), and perhaps init's probe,
 * which is then removed (it would show in the work tree as an untracked file). */
static int partial_init(const char *path, int bare)
{
    static const char *const gitnames[] = {"HEAD", "config", "description", "objects", "refs",
                                           "hooks", "info", "branches", NULL};
    DIR *d = opendir(path);
    struct dirent *de;
    int ok = 1, seen_git = 0;
    char probe[64] = "";
    if (!d)
        return 0;
    while (ok && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (!probe[0] && init_probe(path, n)) {
            snprintf(probe, sizeof probe, "%s", n);
            continue;
        }
        if (!bare) {
            if (strcmp(n, ".git") == 0)
                seen_git = 1;
            else
                ok = 0;
            continue;
        }
        int known = 0;
        for (int i = 0; gitnames[i]; i++)
            known |= strcmp(n, gitnames[i]) == 0;
        ok = known;
        seen_git |= known;
    }
    closedir(d);
    if (ok && seen_git && probe[0]) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, probe);
        unlink(p);
    }
    return ok && seen_git;
}

int vmdr_git_clone(vmdr_git_repo **out, const char *path, const vmdr_git_opts *o, vmdr_err *e)
{
    errno = 0; /* see vmdr_git__set_error */
    *out = NULL;
    if (!o->url)
        return vmdr_err_set(e, "invalid", 0, "clone needs a url");
    if (check_url(o->url, e) < 0)
        return -1;
    git_libgit2_init();
    vmdr_git_repo *r = calloc(1, sizeof *r);
    if (!r) {
        git_libgit2_shutdown();
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    }
    /* An existing clone (a killed clone, or a second call) is completed, not refused. */
    clear_stale_locks(path, o);
    int rc = git_repository_open_ext(&r->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
    if (rc == GIT_ENOTFOUND) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && rmdir(path) != 0 &&
            errno == ENOTEMPTY && !partial_init(path, o->no_worktree)) {
            vmdr_git_free(r);
            return vmdr_err_set(e, "invalid", 0,
                                "'%s' exists, is not empty and is not a git clone", path);
        }
        git_error_clear();
        git_repository_init_options io;
        git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
        /* Re-initialising completes what a killed init left (see partial_init). */
        io.flags = GIT_REPOSITORY_INIT_MKPATH | (o->no_worktree ? GIT_REPOSITORY_INIT_BARE : 0);
        io.initial_head = o->branch && *o->branch ? o->branch : "main";
        rc = git_repository_init_ext(&r->repo, path, &io);
    }
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "cannot create the clone");
        vmdr_git_free(r);
        return -1;
    }
    if (setup(r, o, e) < 0 || vmdr_git_fetch(r, e) < 0 || vmdr_git_reset_to_remote(r, e) < 0) {
        vmdr_git_free(r);
        return -1;
    }
    *out = r;
    return 0;
}

const char *vmdr_git_workdir(const vmdr_git_repo *r)
{
    return r->workdir ? r->workdir : git_repository_path(r->repo);
}

/* ---- reading -------------------------------------------------------------------------------- */

int vmdr_git__head_tree(vmdr_git_repo *r, git_tree **out, vmdr_err *e)
{
    git_oid id;
    git_commit *c = NULL;
    *out = NULL;
    int rc = git_reference_name_to_id(&id, r->repo, r->local_ref);
    if (rc == GIT_ENOTFOUND) {
        git_error_clear();
        return 0;
    }
    if (rc < 0 || (rc = git_commit_lookup(&c, r->repo, &id)) < 0 ||
        (rc = git_commit_tree(out, c)) < 0) {
        git_commit_free(c);
        return vmdr_git__set_error(e, rc, "cannot read HEAD");
    }
    git_commit_free(c);
    return 0;
}

/* HEAD's tree through the per-round cache (NULL on an unborn branch); not to be freed.
 * Reading the ref and the commit again for each of 30,000 files was most of an idle
 * reconcile. */
static int head_tree_cached(vmdr_git_repo *r, const git_tree **out, vmdr_err *e)
{
    if (!r->head_cached) {
        if (vmdr_git__head_tree(r, &r->head_cache, e) < 0)
            return -1;
        r->head_cached = 1;
    }
    *out = r->head_cache;
    return 0;
}

static int copy_blob(vmdr_git_repo *r, const git_oid *id, char **out, size_t *len, vmdr_err *e)
{
    git_blob *b = NULL;
    int rc = git_blob_lookup(&b, r->repo, id);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot read blob");
    *len = (size_t)git_blob_rawsize(b);
    *out = malloc(*len + 1);
    if (!*out) {
        git_blob_free(b);
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    }
    memcpy(*out, git_blob_rawcontent(b), *len);
    (*out)[*len] = '\0';
    git_blob_free(b);
    return 0;
}

static int read_at(vmdr_git_repo *r, const char *path, int head_only, char **out, size_t *len,
                   vmdr_err *e)
{
    *out = NULL;
    if (vmdr_git_check_path(path, e) < 0)
        return -1;
    git_change *c = head_only ? NULL : pending_find(r, path);
    if (c) {
        if (c->removed)
            return vmdr_err_set(e, "not_found", 0, "'%s' does not exist", path);
        return copy_blob(r, &c->oid, out, len, e);
    }
    const git_tree *tree = NULL;
    git_tree_entry *te = NULL;
    if (head_tree_cached(r, &tree, e) < 0)
        return -1;
    int rc = tree ? git_tree_entry_bypath(&te, tree, path) : GIT_ENOTFOUND;
    if (rc == GIT_ENOTFOUND) {
        git_error_clear();
        return vmdr_err_set(e, "not_found", 0, "'%s' does not exist", path);
    }
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot read");
    if (git_tree_entry_type(te) != GIT_OBJECT_BLOB) {
        git_tree_entry_free(te);
        return vmdr_err_set(e, "invalid", 0, "'%s' is a directory", path);
    }
    rc = copy_blob(r, git_tree_entry_id(te), out, len, e);
    git_tree_entry_free(te);
    return rc;
}

int vmdr_git_read(vmdr_git_repo *r, const char *path, char **out, size_t *len, vmdr_err *e)
{
    return read_at(r, path, 0, out, len, e);
}

int vmdr_git_read_head(vmdr_git_repo *r, const char *path, char **out, size_t *len, vmdr_err *e)
{
    return read_at(r, path, 1, out, len, e);
}

int vmdr_git_blob_id(vmdr_git_repo *r, const char *path, char out_hex[41], int *found,
                     vmdr_err *e)
{
    *found = 0;
    out_hex[0] = '\0';
    if (vmdr_git_check_path(path, e) < 0)
        return -1;
    const git_oid *id = NULL;
    git_tree_entry *te = NULL;
    git_change *c = pending_find(r, path);
    if (c) {
        /* a pending write is always a regular file */
        if (!c->removed)
            id = &c->oid;
    } else {
        const git_tree *tree = NULL;
        if (head_tree_cached(r, &tree, e) < 0)
            return -1;
        if (tree && git_tree_entry_bypath(&te, tree, path) == 0) {
            /* Only what write would leave alone counts: an executable bit or a symlink
             * is a difference a write repairs, so it must not look like the same blob. */
            if (git_tree_entry_type(te) == GIT_OBJECT_BLOB &&
                git_tree_entry_filemode(te) == GIT_FILEMODE_BLOB)
                id = git_tree_entry_id(te);
        } else {
            git_error_clear();
        }
    }
    if (id) {
        git_oid_tostr(out_hex, 41, id);
        *found = 1;
    }
    git_tree_entry_free(te);
    return 0;
}

/* ---- building the tree the pending changes give --------------------------------------------- */

static int cmp_change(const void *a, const void *b)
{
    return strcmp((*(git_change *const *)a)->path, (*(git_change *const *)b)->path);
}

static int note_tree(vmdr_git_repo *r, const git_oid *id, vmdr_err *e)
{
    if (r->ntrees == r->tcap) {
        size_t cap = r->tcap ? r->tcap * 2 : 64;
        git_oid *n = realloc(r->trees, cap * sizeof *n);
        if (!n)
            return vmdr_err_set(e, "nomem", 0, "out of memory");
        r->trees = n;
        r->tcap = cap;
    }
    r->trees[r->ntrees++] = *id;
    return 0;
}

/* Changes v[lo..hi) all lie under the directory whose path prefix is off bytes long;
 * base is that directory's current tree (or NULL). Only touched trees are written. */
static int build_level(vmdr_git_repo *r, const git_tree *base, git_change **v, size_t lo,
                       size_t hi, size_t off, git_oid *out, int *empty, vmdr_err *e)
{
    git_treebuilder *bld = NULL;
    int rc = git_treebuilder_new(&bld, r->repo, base);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot build tree");
    size_t i = lo;
    while (i < hi) {
        const char *rest = v[i]->path + off;
        const char *slash = strchr(rest, '/');
        if (!slash) {
            if (v[i]->removed) {
                /* libgit2 reports a missing entry as a plain -1: look first. */
                if (git_treebuilder_get(bld, rest))
                    rc = git_treebuilder_remove(bld, rest);
            } else {
                rc = git_treebuilder_insert(NULL, bld, rest, &v[i]->oid, GIT_FILEMODE_BLOB);
            }
            if (rc < 0)
                goto fail;
            i++;
            continue;
        }
        size_t n = (size_t)(slash - rest);
        char name[1024];
        if (n >= sizeof name) {
            git_treebuilder_free(bld);
            return vmdr_err_set(e, "invalid", 0, "path component too long");
        }
        memcpy(name, rest, n);
        name[n] = '\0';
        size_t j = i + 1;
        while (j < hi && strncmp(v[j]->path + off, rest, n + 1) == 0)
            j++;
        git_tree *sub = NULL;
        const git_tree_entry *te = git_treebuilder_get(bld, name);
        if (te && git_tree_entry_type(te) == GIT_OBJECT_TREE &&
            (rc = git_tree_lookup(&sub, r->repo, git_tree_entry_id(te))) < 0)
            goto fail;
        git_oid subid;
        int subempty = 0;
        rc = build_level(r, sub, v, i, j, off + n + 1, &subid, &subempty, e);
        git_tree_free(sub);
        if (rc < 0) {
            git_treebuilder_free(bld);
            return -1;
        }
        if (subempty) {
            if (git_treebuilder_get(bld, name))
                rc = git_treebuilder_remove(bld, name);
        } else {
            rc = git_treebuilder_insert(NULL, bld, name, &subid, GIT_FILEMODE_TREE);
        }
        if (rc < 0)
            goto fail;
        i = j;
    }
    *empty = git_treebuilder_entrycount(bld) == 0;
    if (!*empty || off == 0) {
        /* The root is written even when empty: a commit needs a tree. */
        if ((rc = git_treebuilder_write(out, bld)) < 0)
            goto fail;
        if (note_tree(r, out, e) < 0) {
            git_treebuilder_free(bld);
            return -1;
        }
    }
    git_treebuilder_free(bld);
    return 0;
fail:
    git_treebuilder_free(bld);
    return vmdr_git__set_error(e, rc, "cannot build tree");
}

static int ensure_built(vmdr_git_repo *r, vmdr_err *e)
{
    if (r->built_valid)
        return 0;
    git_tree *head = NULL;
    if (vmdr_git__head_tree(r, &head, e) < 0)
        return -1;
    r->ntrees = 0;
    git_change **v = malloc((r->nchanges ? r->nchanges : 1) * sizeof *v);
    if (!v) {
        git_tree_free(head);
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    }
    for (size_t i = 0; i < r->nchanges; i++)
        v[i] = &r->changes[i];
    qsort(v, r->nchanges, sizeof *v, cmp_change);
    int rc = build_level(r, head, v, 0, r->nchanges, 0, &r->built, &r->built_empty, e);
    free(v);
    git_tree_free(head);
    if (rc < 0)
        return -1;
    r->built_valid = 1;
    return 0;
}

int vmdr_git_list(vmdr_git_repo *r, const char *dir, char ***out, size_t *n, vmdr_err *e)
{
    char d[4096];
    *out = NULL;
    *n = 0;
    snprintf(d, sizeof d, "%s", dir);
    size_t dl = strlen(d);
    while (dl > 0 && d[dl - 1] == '/')
        d[--dl] = '\0';
    int root = dl == 0 || strcmp(d, ".") == 0;
    if (!root && vmdr_git_check_path(d, e) < 0)
        return -1;
    if (ensure_built(r, e) < 0)
        return -1;
    git_tree *tree = NULL, *sub = NULL;
    git_tree_entry *te = NULL;
    int rc = git_tree_lookup(&tree, r->repo, &r->built);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot read tree");
    if (!root) {
        rc = git_tree_entry_bypath(&te, tree, d);
        if (rc == GIT_ENOTFOUND) {
            /* A missing directory lists as empty: git has no empty directories. */
            git_error_clear();
            git_tree_free(tree);
            *out = calloc(1, sizeof **out);
            return *out ? 0 : vmdr_err_set(e, "nomem", 0, "out of memory");
        }
        if (rc == 0 && git_tree_entry_type(te) != GIT_OBJECT_TREE) {
            git_tree_entry_free(te);
            git_tree_free(tree);
            return vmdr_err_set(e, "invalid", 0, "'%s' is not a directory", d);
        }
        if (rc == 0)
            rc = git_tree_lookup(&sub, r->repo, git_tree_entry_id(te));
        git_tree_entry_free(te);
        git_tree_free(tree);
        if (rc < 0)
            return vmdr_git__set_error(e, rc, "cannot read tree");
        tree = sub;
    }
    size_t count = git_tree_entrycount(tree);
    char **names = calloc(count + 1, sizeof *names);
    if (!names) {
        git_tree_free(tree);
        return vmdr_err_set(e, "nomem", 0, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        const git_tree_entry *en = git_tree_entry_byindex(tree, i);
        const char *nm = git_tree_entry_name(en);
        int isdir = git_tree_entry_type(en) == GIT_OBJECT_TREE;
        size_t l = strlen(nm);
        names[i] = malloc(l + 2);
        if (!names[i]) {
            for (size_t k = 0; k < i; k++)
                free(names[k]);
            free(names);
            git_tree_free(tree);
            return vmdr_err_set(e, "nomem", 0, "out of memory");
        }
        memcpy(names[i], nm, l);
        if (isdir)
            names[i][l++] = '/';
        names[i][l] = '\0';
    }
    git_tree_free(tree);
    *out = names;
    *n = count;
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

int vmdr_git_write(vmdr_git_repo *r, const char *path, const char *data, size_t len,
                   int *changed, vmdr_err *e)
{
    git_oid id;
    *changed = 0;
    if (vmdr_git_check_path(path, e) < 0)
        return -1;
    int rc = git_odb_hash(&id, data, len, GIT_OBJECT_BLOB);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot hash blob");
    /* The same bytes as the file already has (pending, else HEAD): nothing to do. Comparing
     * object ids spares reading and inflating the old blob, and the work-tree write. */
    int existed = 0;
    git_change *c = pending_find(r, path);
    if (c) {
        if (!c->removed && git_oid_equal(&c->oid, &id))
            return 0;
        existed = !c->removed;
    } else {
        const git_tree *tree = NULL;
        git_tree_entry *te = NULL;
        if (head_tree_cached(r, &tree, e) < 0)
            return -1;
        if (tree && git_tree_entry_bypath(&te, tree, path) == 0) {
            int same = git_tree_entry_type(te) == GIT_OBJECT_BLOB &&
                       git_tree_entry_filemode(te) == GIT_FILEMODE_BLOB &&
                       git_oid_equal(git_tree_entry_id(te), &id);
            git_tree_entry_free(te);
            if (same)
                return 0;
            existed = 1;
        } else {
            git_error_clear();
        }
    }
    *changed = existed ? 1 : 2;
    /* Straight into the mempack: git_blob_create_from_buffer first "freshens" on disk,
     * and every miss there re-reads the pack directory (most of the time for 10,000
     * writes). An object that was already on disk is packed again: harmless. */
    rc = r->mempack->write(r->mempack, &id, data, len, GIT_OBJECT_BLOB);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot store blob");
    if (r->workdir && vmdr_git__write_file(r->workdir, path, data, len, &r->dircache, e) < 0)
        return -1;
    return pending_put(r, path, &id, 0, e);
}

int vmdr_git_remove(vmdr_git_repo *r, const char *path, int *removed, vmdr_err *e)
{
    *removed = 0;
    if (vmdr_git_check_path(path, e) < 0)
        return -1;
    git_change *c = pending_find(r, path);
    if (c) {
        *removed = !c->removed;
    } else {
        const git_tree *tree = NULL;
        git_tree_entry *te = NULL;
        if (head_tree_cached(r, &tree, e) < 0)
            return -1;
        int rc = tree ? git_tree_entry_bypath(&te, tree, path) : GIT_ENOTFOUND;
        if (rc == 0) {
            int isdir = git_tree_entry_type(te) == GIT_OBJECT_TREE;
            git_tree_entry_free(te);
            if (isdir)
                return vmdr_err_set(e, "invalid", 0, "'%s' is a directory: remove its files",
                                    path);
            *removed = 1;
        } else {
            git_error_clear();
        }
    }
    if (!*removed)
        return 0;
    r->dircache.valid = 0;
    if (r->workdir && vmdr_git__remove_file(r->workdir, path, e) < 0)
        return -1;
    return pending_put(r, path, NULL, 1, e);
}

/* The pack goes to the indexer in one append: git_packbuilder_write feeds it object by
 * object, and libgit2 1.5's indexer maps and unmaps the pack file for every append
 * (40,000 mmap/munmap pairs for 10,000 files). */
int vmdr_git__index_pack(git_repository *repo, const char *dir, const char *data, size_t len,
                         char *name_out)
{
    git_indexer *idx = NULL;
    git_indexer_progress stats;
    git_odb *odb = NULL;
    /* The odb only completes a thin pack, and libgit2 writes none: without a repo the
     * indexer loads nobody's pack list (a remote's can hold thousands). */
    int rc = repo ? git_repository_odb(&odb, repo) : 0;
    if (rc == 0)
        rc = git_indexer_new(&idx, dir, 0, odb, NULL);
    if (rc == 0)
        rc = git_indexer_append(idx, data, len, &stats);
    if (rc == 0)
        rc = git_indexer_commit(idx, &stats);
    if (rc == 0 && name_out) {
        const char *name = git_indexer_name(idx);
        snprintf(name_out, GIT_OID_HEXSZ + 1, "%s", name ? name : "");
    }
    git_indexer_free(idx);
    git_odb_free(odb);
    return rc;
}

/* ---- commit --------------------------------------------------------------------------------- */

static int pack_new_objects(vmdr_git_repo *r, const git_oid *commit, vmdr_err *e)
{
    git_packbuilder *pb = NULL;
    char dir[4096];
    int rc = git_packbuilder_new(&pb, r->repo);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot pack");
    /* Only what is still in memory: an identical blob that already existed was only
     * "freshened" by libgit2, never written to the mempack. */
    for (size_t i = 0; i < r->nchanges && rc == 0; i++)
        if (!r->changes[i].removed && r->mempack->exists(r->mempack, &r->changes[i].oid))
            rc = git_packbuilder_insert(pb, &r->changes[i].oid, NULL);
    for (size_t i = 0; i < r->ntrees && rc == 0; i++)
        if (r->mempack->exists(r->mempack, &r->trees[i]))
            rc = git_packbuilder_insert(pb, &r->trees[i], NULL);
    if (rc == 0)
        rc = git_packbuilder_insert(pb, commit, NULL);
    r->last_objects = git_packbuilder_object_count(pb);
    git_packbuilder_set_threads(pb, r->last_objects >= VMDR_GIT_THREADED_PACK ? 0 : 1);
    snprintf(dir, sizeof dir, "%sobjects/pack", git_repository_path(r->repo));
    r->last_valid = 0;
    r->last_pack_name[0] = '\0';
    git_buf_dispose(&r->last_pack);
    if (rc == 0)
        rc = git_packbuilder_write_buf(&r->last_pack, pb);
    git_packbuilder_free(pb);
    if (rc == 0)
        rc = vmdr_git__index_pack(r->repo, dir, r->last_pack.ptr, r->last_pack.size,
                                  r->last_pack_name);
    if (rc < 0) {
        git_buf_dispose(&r->last_pack);
        return vmdr_git__set_error(e, rc, "cannot write the pack");
    }
    return 0;
}

static int index_update(vmdr_git_repo *r, git_index *idx)
{
    char full[8192];
    struct stat st;
    if (git_index_read(idx, 0) < 0)
        return -1;
    for (size_t i = 0; i < r->nchanges; i++) {
        git_change *c = &r->changes[i];
        if (c->removed) {
            if (git_index_remove_bypath(idx, c->path) < 0)
                return -1;
            continue;
        }
        snprintf(full, sizeof full, "%s%s", r->workdir, c->path);
        if (lstat(full, &st) != 0)
            return -1;
        git_index_entry en;
        memset(&en, 0, sizeof en);
        en.ctime.seconds = (int32_t)st.st_ctim.tv_sec;
        en.ctime.nanoseconds = (uint32_t)st.st_ctim.tv_nsec;
        en.mtime.seconds = (int32_t)st.st_mtim.tv_sec;
        en.mtime.nanoseconds = (uint32_t)st.st_mtim.tv_nsec;
        en.dev = (uint32_t)st.st_dev;
        en.ino = (uint32_t)st.st_ino;
        en.uid = (uint32_t)st.st_uid;
        en.gid = (uint32_t)st.st_gid;
        en.file_size = (uint32_t)st.st_size;
        en.mode = GIT_FILEMODE_BLOB;
        en.id = c->oid;
        en.path = c->path;
        if (git_index_add(idx, &en) < 0)
            return -1;
    }
    return 0;
}

int vmdr_git_commit(vmdr_git_repo *r, const char *msg, const char *name, const char *email,
                    char out_hex[41], int *changed, vmdr_err *e)
{
    int rc;
    git_tree *head = NULL, *tree = NULL;
    git_commit *parent = NULL;
    git_signature *sig = NULL;
    git_reference *ref = NULL;
    git_index *idx = NULL;
    git_oid pid, cid;
    int born = 0, ret = -1;

    errno = 0; /* see vmdr_git__set_error */
    *changed = 0;
    out_hex[0] = '\0';
    if (ensure_built(r, e) < 0 || vmdr_git__head_tree(r, &head, e) < 0)
        return -1;
    if ((head && git_oid_equal(&r->built, git_tree_id(head))) || (!head && r->built_empty)) {
        /* Nothing changed (identical bytes give identical objects): no commit. */
        git_tree_free(head);
        vmdr_git__drop_pending(r);
        return 0;
    }
    rc = git_reference_name_to_id(&pid, r->repo, r->local_ref);
    if (rc == 0) {
        born = 1;
        if ((rc = git_commit_lookup(&parent, r->repo, &pid)) < 0)
            goto gitfail;
    } else {
        git_error_clear();
    }
    if ((rc = git_tree_lookup(&tree, r->repo, &r->built)) < 0 ||
        (rc = git_signature_now(&sig, name, email)) < 0)
        goto gitfail;
    const git_commit *parents[1] = {parent};
    if ((rc = git_commit_create(&cid, r->repo, NULL, sig, sig, NULL, msg, tree, born ? 1 : 0,
                                parents)) < 0)
        goto gitfail;
    /* Objects are on disk before any ref names them: a kill here leaves an unused pack. */
    if (pack_new_objects(r, &cid, e) < 0)
        goto done;
    if ((rc = git_reference_create_matching(&ref, r->repo, r->local_ref, &cid, 1,
                                            born ? &pid : NULL, "vmdr: commit")) < 0)
        goto gitfail;
    git_oid_tostr(out_hex, 41, &cid);
    *changed = 1;
    r->last_commit = cid;
    r->last_has_parent = born;
    if (born)
        r->last_parent = pid;
    r->last_valid = 1;
    if (r->workdir && (rc = git_repository_index(&idx, r->repo)) == 0) {
        /* The index follows the new tree: entry by entry for what changed (with the stat
         * data of the file just written, so `git status` does not rehash it), else a full
         * re-read of the tree. */
        if (index_update(r, idx) < 0 && (rc = git_index_read_tree(idx, tree)) < 0)
            goto gitfail;
        rc = git_index_write(idx);
    }
    if (rc < 0)
        goto gitfail;
    ret = 0;
    goto done;
gitfail:
    vmdr_git__set_error(e, rc, "cannot commit");
done:
    if (ret == 0 || *changed)
        vmdr_git__drop_pending(r);
    git_index_free(idx);
    git_reference_free(ref);
    git_signature_free(sig);
    git_tree_free(tree);
    git_tree_free(head);
    git_commit_free(parent);
    return ret;
}

int vmdr_git_head(vmdr_git_repo *r, char out_hex[41], int *born, vmdr_err *e)
{
    git_oid id;
    int rc = git_reference_name_to_id(&id, r->repo, r->local_ref);
    *born = 0;
    out_hex[0] = '\0';
    if (rc == GIT_ENOTFOUND) {
        git_error_clear();
        return 0;
    }
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot read HEAD");
    git_oid_tostr(out_hex, 41, &id);
    *born = 1;
    return 0;
}

int vmdr_git_diff(vmdr_git_repo *r, char **out, size_t *len, vmdr_err *e)
{
    git_tree *head = NULL, *tree = NULL;
    git_diff *diff = NULL;
    git_buf buf = {0};
    int rc;
    *out = NULL;
    if (ensure_built(r, e) < 0 || vmdr_git__head_tree(r, &head, e) < 0)
        return -1;
    if ((rc = git_tree_lookup(&tree, r->repo, &r->built)) == 0 &&
        (rc = git_diff_tree_to_tree(&diff, r->repo, head, tree, NULL)) == 0)
        rc = git_diff_to_buf(&buf, diff, GIT_DIFF_FORMAT_PATCH);
    git_diff_free(diff);
    git_tree_free(tree);
    git_tree_free(head);
    if (rc < 0) {
        git_buf_dispose(&buf);
        return vmdr_git__set_error(e, rc, "cannot diff");
    }
    *len = buf.size;
    *out = malloc(buf.size + 1);
    if (*out) {
        memcpy(*out, buf.ptr ? buf.ptr : "", buf.size);
        (*out)[buf.size] = '\0';
    }
    git_buf_dispose(&buf);
    return *out ? 0 : vmdr_err_set(e, "nomem", 0, "out of memory");
}

/* ---- reset ---------------------------------------------------------------------------------- */

int vmdr_git_reset_to_remote(vmdr_git_repo *r, vmdr_err *e)
{
    errno = 0; /* see vmdr_git__set_error */
    git_oid target;
    git_object *commit = NULL;
    git_tree *tree = NULL, *head = NULL;
    git_index *idx = NULL;
    int rc, ret = -1;
    git_checkout_options co;
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    /* Machine-owned: everything not in the remote tree goes, and no filter runs
     * (a hostile .gitattributes must not change what is written). */
    co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED |
                           GIT_CHECKOUT_REMOVE_IGNORED;
    co.disable_filters = 1;

    vmdr_git__drop_pending(r);
    r->dircache.valid = 0;
    r->last_valid = 0;
    git_buf_dispose(&r->last_pack);
    rc = git_reference_name_to_id(&target, r->repo, r->remote_ref);
    if (rc == GIT_ENOTFOUND) {
        /* The remote branch does not exist yet: an empty work tree, an unborn branch. */
        git_error_clear();
        git_reference *ref = NULL;
        git_treebuilder *bld = NULL;
        git_oid empty;
        if (git_reference_lookup(&ref, r->repo, r->local_ref) == 0) {
            rc = git_reference_delete(ref);
            git_reference_free(ref);
            if (rc < 0)
                return vmdr_git__set_error(e, rc, "cannot reset");
        }
        git_error_clear();
        if (!r->workdir) {
            rc = git_repository_set_head(r->repo, r->local_ref);
            if (rc < 0)
                vmdr_git__set_error(e, rc, "cannot reset to the empty remote");
            ret = rc < 0 ? -1 : 0;
            goto done;
        }
        if ((rc = git_repository_set_head(r->repo, r->local_ref)) < 0 ||
            (rc = git_treebuilder_new(&bld, r->repo, NULL)) < 0 ||
            (rc = git_treebuilder_write(&empty, bld)) < 0 ||
            (rc = git_tree_lookup(&tree, r->repo, &empty)) < 0 ||
            (rc = git_checkout_tree(r->repo, (git_object *)tree, &co)) < 0 ||
            (rc = git_repository_index(&idx, r->repo)) < 0 || (rc = git_index_clear(idx)) < 0 ||
            (rc = git_index_write(idx)) < 0) {
            vmdr_git__set_error(e, rc, "cannot reset to the empty remote");
        } else {
            ret = 0;
        }
        git_treebuilder_free(bld);
        goto done;
    }
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "cannot read the remote branch");
        goto done;
    }
    if ((rc = git_object_lookup(&commit, r->repo, &target, GIT_OBJECT_COMMIT)) < 0 ||
        (rc = git_commit_tree(&tree, (git_commit *)commit)) < 0) {
        vmdr_git__set_error(e, rc, "cannot read the remote commit");
        goto done;
    }
    if (vmdr_git__head_tree(r, &head, e) < 0)
        goto done;
    /* A tree we already checked out was validated then. */
    if ((!head || !git_oid_equal(git_tree_id(head), git_tree_id(tree))) &&
        vmdr_git__validate_tree(r->repo, tree, e) < 0)
        goto done;
    /* Not git_reset(HARD): it replaces the checkout strategy with a plain FORCE, which
     * keeps untracked files (what a killed run wrote must go). Checkout also writes the
     * index; the branch moves after the files are in place. */
    git_reference *ref = NULL;
    if ((r->workdir && (rc = git_checkout_tree(r->repo, commit, &co)) < 0) ||
        (rc = git_reference_create(&ref, r->repo, r->local_ref, &target, 1, "vmdr: reset")) < 0 ||
        (rc = git_repository_set_head(r->repo, r->local_ref)) < 0) {
        git_reference_free(ref);
        vmdr_git__set_error(e, rc, "cannot reset to the remote branch");
        goto done;
    }
    git_reference_free(ref);
    ret = 0;
done:
    vmdr_git__drop_pending(r);
    git_index_free(idx);
    git_tree_free(head);
    git_tree_free(tree);
    git_object_free(commit);
    return ret;
}

/* Removes the regular files of dir whose names start with prefix ("" for all of them);
 * never a link or a directory. */
void vmdr_git__remove_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct stat st;
    char p[8192];
    size_t pl = strlen(prefix);
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, pl) != 0 ||
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode))
            unlink(p);
    }
    closedir(d);
}

/* Lock files and temporary files: a run killed while fetching or committing leaves
 * objects/pack/pack_git2_<random> (libgit2's indexer: a pack being received or written),
 * objects/tmp_object_git2_<random> (a loose object) or files in the repack stage. None
 * is ever read back; with the clone's lock held, none is a live writer's. */
static void remove_lock_files(const char *gitdir, const char *branch)
{
    static const char *const fixed[] = {"index.lock",     "HEAD.lock",       "config.lock",
                                        "packed-refs.lock", "ORIG_HEAD.lock", "FETCH_HEAD.lock",
                                        NULL};
    char p[8192];
    for (int i = 0; fixed[i]; i++) {
        snprintf(p, sizeof p, "%s%s", gitdir, fixed[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%srefs/heads/%s.lock", gitdir, branch);
    unlink(p);
    snprintf(p, sizeof p, "%srefs/remotes/origin/%s.lock", gitdir, branch);
    unlink(p);
    snprintf(p, sizeof p, "%sobjects/pack", gitdir);
    vmdr_git__remove_files(p, "pack_git2_");
    snprintf(p, sizeof p, "%sobjects", gitdir);
    vmdr_git__remove_files(p, "tmp_object_git2_");
    /* maint.c's staging directory: what a merge killed half-way left (maintain clears it
     * too, but only a run that commits gets that far) */
    snprintf(p, sizeof p, "%s" VMDR_GIT_REPACK_STAGE, gitdir);
    vmdr_git__remove_files(p, "");
    rmdir(p);
}

/* Before opening: a clone or init killed half-way leaves e.g. config.lock behind. */
static void clear_stale_locks(const char *path, const vmdr_git_opts *o)
{
    char gd[4096];
    const char *branch = o->branch && *o->branch ? o->branch : "main";
    if (!o->clear_locks)
        return;
    snprintf(gd, sizeof gd, "%s/.git/", path);
    remove_lock_files(gd, branch);
    snprintf(gd, sizeof gd, "%s/", path);
    remove_lock_files(gd, branch);
}

int vmdr_git_clear_locks(vmdr_git_repo *r, vmdr_err *e)
{
    remove_lock_files(git_repository_path(r->repo), r->branch);
    (void)e;
    return 0;
}
