/* Fetch and push: credentials, host-key and certificate checks, refusal detection.
 *
 * libgit2 1.5 traps handled here (../shared/NOTES-git.md):
 *  1. a refused push returns 0: the push_update_reference status is what tells;
 *  2. non-fast-forward is a client-side -11: mapped to "rejected";
 *  3. the credential callback is asked again and again on a wrong secret: each kind
 *     of secret is offered once, then the callback gives up with an "auth" error;
 *  4. file:// and path pushes skip receive-pack and force the ref: local pushes are
 *     done here instead, with a compare-and-swap on the remote ref;
 *  6. the CA location replaces the system store: repo.c builds a combined bundle. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>

#include "internal.h"

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

typedef struct net_ctx {
    vmdr_git_repo *r;
    int key_tries, pass_tries, user_tries;
    vmdr_err err; /* set by a callback: wins over libgit2's own message */
    int rejected;
    char reason[512];
    char remote_msg[1024];
    size_t remote_len;
} net_ctx;

int vmdr_git__is_local_url(const char *url)
{
    return strncmp(url, "file://", 7) == 0 || url[0] == '/' || url[0] == '.';
}

static const char *local_path(const char *url)
{
    return strncmp(url, "file://", 7) == 0 ? url + 7 : url;
}

static int cb_fail(net_ctx *n, const char *code, const char *fmt, const char *a, const char *b)
{
    vmdr_err_set(&n->err, code, 0, fmt, a, b);
    return GIT_EUSER;
}

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
                   unsigned int allowed, void *payload)
{
    net_ctx *n = payload;
    vmdr_git_repo *r = n->r;
    const char *user = user_from_url && *user_from_url ? user_from_url : r->user;
    (void)url;
    if (vmdr_interrupted())
        return cb_fail(n, "interrupted", "interrupted%s%s", "", "");
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && r->ssh_key) {
        if (n->key_tries++ > 0)
            return cb_fail(n, "auth", "the server refused the SSH key '%s' for user '%s'",
                           r->ssh_key, user);
        return git_credential_ssh_key_new(out, user, r->ssh_pubkey, r->ssh_key,
                                          r->ssh_passphrase);
    }
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && r->token) {
        if (n->pass_tries++ > 0)
            return cb_fail(n, "auth", "the server refused the token for user '%s'%s", user,
                           " (check git.token_env / git.token_file)");
        return git_credential_userpass_plaintext_new(out, user, r->token);
    }
    if (allowed & GIT_CREDENTIAL_USERNAME) {
        if (n->user_tries++ > 0)
            return cb_fail(n, "auth", "the server refused user '%s'%s", user, "");
        return git_credential_username_new(out, user);
    }
    if (allowed & GIT_CREDENTIAL_SSH_KEY)
        return cb_fail(n, "auth", "the server wants an SSH key and none is configured%s%s "
                       "(git.ssh_key)", "", "");
    return cb_fail(n, "auth", "the server wants credentials and none are configured%s%s "
                   "(git.token_env, git.token_file or git.ssh_key)", "", "");
}

/* ---- SSH host keys against a known_hosts file ----------------------------------------------- */

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static size_t b64decode(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; *s && *s != '=' && !isspace((unsigned char)*s); s++) {
        int v = b64val((unsigned char)*s);
        if (v < 0)
            return 0;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return 0;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

/* The port in ssh://user@host:port/path; scp-style user@host:path is port 22. */
static int url_port(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return 22;
    p += 3;
    const char *at = strchr(p, '@'), *slash = strchr(p, '/');
    if (at && (!slash || at < slash))
        p = at + 1;
    if (*p == '[') {
        p = strchr(p, ']');
        if (!p)
            return 22;
    }
    const char *colon = strchr(p, ':');
    if (colon && (!slash || colon < slash))
        return atoi(colon + 1);
    return 22;
}

static int host_matches(const char *patterns, const char *host, int port)
{
    char want[300];
    if (port == 22)
        snprintf(want, sizeof want, "%s", host);
    else
        snprintf(want, sizeof want, "[%s]:%d", host, port);
    /* Hashed (|1|…) and wildcard entries are not matched: write plain entries. */
    const char *p = patterns;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == strlen(want) && strncmp(p, want, len) == 0)
            return 1;
        if (!c)
            break;
        p = c + 1;
    }
    return 0;
}

static int check_host_key(net_ctx *n, const git_cert_hostkey *hk, const char *host)
{
    vmdr_git_repo *r = n->r;
    int port = url_port(r->url);
    char where[300];
    snprintf(where, sizeof where, "%s:%d", host, port);
    if (!(hk->type & GIT_CERT_SSH_RAW))
        return cb_fail(n, "auth", "no raw host key from %s%s", where, "");
    if (!r->known_hosts) {
        if (r->accept_unknown_host)
            return 0;
        return cb_fail(n, "auth", "host key of %s cannot be checked: no known_hosts file "
                       "configured (git.known_hosts)%s", where, "");
    }
    FILE *f = fopen(r->known_hosts, "r");
    if (!f)
        return cb_fail(n, "auth", "cannot read known_hosts '%s' to check %s", r->known_hosts,
                       where);
    char line[16384];
    unsigned char blob[8192];
    int listed = 0, match = 0;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL;
        char *f1 = strtok_r(line, " \t\r\n", &save);
        if (!f1 || f1[0] == '#')
            continue;
        if (strcmp(f1, "@revoked") == 0 || strcmp(f1, "@cert-authority") == 0) {
            char *h = strtok_r(NULL, " \t\r\n", &save);
            strtok_r(NULL, " \t\r\n", &save);
            char *k = strtok_r(NULL, " \t\r\n", &save);
            if (f1[1] == 'r' && h && k && host_matches(h, host, port)) {
                size_t bl = b64decode(k, blob, sizeof blob);
                if (bl == hk->hostkey_len && memcmp(blob, hk->hostkey, bl) == 0) {
                    fclose(f);
                    return cb_fail(n, "auth", "host key of %s is REVOKED in %s", where,
                                   r->known_hosts);
                }
            }
            continue;
        }
        char *ktype = strtok_r(NULL, " \t\r\n", &save);
        char *key = strtok_r(NULL, " \t\r\n", &save);
        if (!ktype || !key || !host_matches(f1, host, port))
            continue;
        size_t bl = b64decode(key, blob, sizeof blob);
        /* The key blob starts with its own type name: compare keys of the same type. */
        if (bl < 4 || hk->hostkey_len < 4)
            continue;
        size_t tl = ((size_t)blob[0] << 24) | ((size_t)blob[1] << 16) | ((size_t)blob[2] << 8) |
                    blob[3];
        if (tl + 4 > bl || tl + 4 > hk->hostkey_len ||
            memcmp(blob, hk->hostkey, tl + 4) != 0)
            continue;
        listed = 1;
        if (bl == hk->hostkey_len && memcmp(blob, hk->hostkey, bl) == 0)
            match = 1;
    }
    fclose(f);
    if (match)
        return 0;
    if (listed)
        return cb_fail(n, "auth", "host key of %s does NOT match known_hosts %s (changed "
                       "key: refusing to connect)", where, r->known_hosts);
    if (r->accept_unknown_host)
        return 0;
    return cb_fail(n, "auth", "host key of %s is unknown: not in %s (add it, or set "
                   "git.accept_unknown_host_key)", where, r->known_hosts);
}

static int cert_cb(git_cert *cert, int valid, const char *host, void *payload)
{
    net_ctx *n = payload;
    if (cert->cert_type == GIT_CERT_HOSTKEY_LIBSSH2)
        return check_host_key(n, (const git_cert_hostkey *)cert, host);
    if (valid)
        return 0;
    return cb_fail(n, "tls", "TLS certificate of %s is not trusted%s (give its CA as "
                   "git.ca_file)", host, "");
}

static int sideband_cb(const char *str, int len, void *payload)
{
    net_ctx *n = payload;
    size_t room = sizeof n->remote_msg - 1 - n->remote_len;
    size_t l = len > 0 ? (size_t)len : 0;
    if (l > room)
        l = room;
    memcpy(n->remote_msg + n->remote_len, str, l);
    n->remote_len += l;
    n->remote_msg[n->remote_len] = '\0';
    if (vmdr_interrupted())
        return cb_fail(n, "interrupted", "interrupted%s%s", "", "");
    return 0;
}

static int transfer_cb(const git_indexer_progress *stats, void *payload)
{
    (void)stats;
    if (vmdr_interrupted())
        return cb_fail(payload, "interrupted", "interrupted%s%s", "", "");
    return 0;
}

static int push_transfer_cb(unsigned int current, unsigned int total, size_t bytes,
                            void *payload)
{
    (void)current, (void)total, (void)bytes;
    if (vmdr_interrupted())
        return cb_fail(payload, "interrupted", "interrupted%s%s", "", "");
    return 0;
}

static int update_ref_cb(const char *refname, const char *status, void *payload)
{
    net_ctx *n = payload;
    if (status) {
        n->rejected = 1;
        snprintf(n->reason, sizeof n->reason, "%s: %s", refname, status);
    }
    return 0;
}

static void init_callbacks(git_remote_callbacks *cb, net_ctx *n)
{
    cb->credentials = cred_cb;
    cb->certificate_check = cert_cb;
    cb->sideband_progress = sideband_cb;
    cb->transfer_progress = transfer_cb;
    cb->push_transfer_progress = push_transfer_cb;
    cb->push_update_reference = update_ref_cb;
    cb->payload = n;
}

/* The TLS trust store is process-wide in libgit2: set it for this repository. */
static void set_trust(vmdr_git_repo *r)
{
    struct stat st;
    if (strncmp(r->url, "https://", 8) != 0)
        return;
    if (r->ca_bundle)
        git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, r->ca_bundle, NULL);
    else if (stat(SYSTEM_CA_BUNDLE, &st) == 0)
        git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, SYSTEM_CA_BUNDLE, NULL);
}

static int net_error(net_ctx *n, vmdr_err *e, int rc, const char *what)
{
    if (vmdr_err_is_set(&n->err)) {
        *e = n->err;
        git_error_clear();
        return -1;
    }
    return vmdr_git__set_error(e, rc, what);
}

/* An in-memory remote for r->url, not git_remote_lookup("origin"): the lookup runs
 * regular expressions over the config, which leak in libgit2 1.5 (see setup in repo.c).
 * The refspecs are always explicit, and the url is used as configured (no insteadOf). */
static int origin(vmdr_git_repo *r, git_remote **out)
{
    git_remote_create_options co;
    git_remote_create_options_init(&co, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    co.repository = r->repo;
    co.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
    return git_remote_create_with_opts(out, r->url, &co);
}

int vmdr_git_fetch(vmdr_git_repo *r, vmdr_err *e)
{
    git_remote *remote = NULL;
    net_ctx n = {.r = r};
    char spec[1024];
    char *specs[1] = {spec};
    git_strarray refspecs = {specs, 1};
    git_fetch_options fo;
    errno = 0; /* see vmdr_git__set_error */

    git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
    vmdr_err_clear(&n.err);
    init_callbacks(&fo.callbacks, &n);
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.prune = GIT_FETCH_PRUNE;
    snprintf(spec, sizeof spec, "+%s:%s", r->local_ref, r->remote_ref);
    if (vmdr_git__is_local_url(r->url)) {
        /* libgit2 would happily "fetch" from a missing local path as from nothing. */
        struct stat st;
        if (stat(local_path(r->url), &st) != 0)
            return vmdr_err_set(e, "not_found", 0, "no repository at '%s'", r->url);
    }
    set_trust(r);
    int rc = origin(r, &remote);
    if (rc == 0)
        rc = git_remote_fetch(remote, &refspecs, &fo, "vmdr: fetch");
    git_remote_free(remote);
    if (rc < 0)
        return net_error(&n, e, rc, "fetch failed");
    return 0;
}

/* ---- push ----------------------------------------------------------------------------------- */

/* Hard-links our last commit's pack and index into the remote's objects/pack (the .pack
 * first: an index is what makes a pack visible). Packs are never written in place, and
 * either side may delete its name for the file without touching the other's. Returns 0,
 * or -1 when the caller must index the pack there instead: another file system, a remote
 * shared with a group (its files' modes are its own), our pack gone (a repack). Indexing
 * again costs a full inflate and hash of every object: 0.3 s for 10,000 VMs. */
static int link_pack(vmdr_git_repo *r, git_repository *dst, const char *dstpack)
{
    static const char *const ext[] = {".pack", ".idx"};
    char from[4096], to[4096];
    git_config *cfg = NULL;
    int shared = 0;
    if (!r->last_pack_name[0])
        return -1;
    if (git_repository_config_snapshot(&cfg, dst) == 0) {
        const char *v = NULL;
        if (git_config_get_string(&v, cfg, "core.sharedRepository") == 0 && v &&
            strcmp(v, "false") != 0 && strcmp(v, "umask") != 0 && strcmp(v, "0") != 0)
            shared = 1;
        git_config_free(cfg);
    }
    git_error_clear();
    if (shared)
        return -1;
    for (int i = 0; i < 2; i++) {
        int n1 = snprintf(from, sizeof from, "%sobjects/pack/pack-%s%s",
                          git_repository_path(r->repo), r->last_pack_name, ext[i]);
        int n2 = snprintf(to, sizeof to, "%.4000s/pack-%s%s", dstpack, r->last_pack_name, ext[i]);
        if (n1 < 0 || (size_t)n1 >= sizeof from || n2 < 0 || (size_t)n2 >= sizeof to)
            return -1;
        if (link(from, to) != 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* The remote's object database as the one pack just put there. Creating the ref checks
 * that its target exists, which loaded every pack of the remote's: one more per push on a
 * remote nothing repacks (a file:// remote), so each push cost more and libgit2's
 * process-wide pack map kept growing with them (a one-hour monitor soak). The check now
 * asks the pack that must hold the commit. */
static int only_pack(git_repository *dst, const char *dstpack, const char *name)
{
    char idx[4200];
    git_odb *odb = NULL;
    git_odb_backend *be = NULL;
    int n = snprintf(idx, sizeof idx, "%s/pack-%s.idx", dstpack, name);
    if (!name[0] || n < 0 || (size_t)n >= sizeof idx) {
        git_error_set_str(GIT_ERROR_INVALID, "no pack to check the pushed commit against");
        return -1;
    }
    int rc = git_odb_new(&odb);
    if (rc == 0 && (rc = git_odb_backend_one_pack(&be, idx)) == 0 &&
        (rc = git_odb_add_backend(odb, be, 1)) < 0)
        be->free(be);
    if (rc == 0)
        git_repository_set_odb(dst, odb);
    git_odb_free(odb);
    return rc;
}

/* A local push with a compare-and-swap on the remote ref: libgit2's own local push
 * force-updates it (trap 4), which would lose a concurrent writer's commit. */
static int push_local(vmdr_git_repo *r, const git_oid *head, vmdr_err *e)
{
    git_repository *dst = NULL;
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    git_reference *ref = NULL;
    git_buf packbuf = {0};
    char dstpack[4096];
    char packname[GIT_OID_HEXSZ + 1] = "";
    git_oid expected, current;
    int has_expected, has_current, rc, ret = -1;

    rc = git_repository_open_ext(&dst, local_path(r->url), GIT_REPOSITORY_OPEN_NO_SEARCH |
                                 GIT_REPOSITORY_OPEN_BARE, NULL);
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "cannot open the remote");
        if (rc == GIT_ENOTFOUND)
            vmdr_err_set(e, "not_found", 0, "no repository at '%s'", r->url);
        return -1;
    }
    snprintf(dstpack, sizeof dstpack, "%sobjects/pack", git_repository_path(dst));
    has_expected = git_reference_name_to_id(&expected, r->repo, r->remote_ref) == 0;
    has_current = git_reference_name_to_id(&current, dst, r->local_ref) == 0;
    git_error_clear();
    if (has_expected != has_current || (has_current && !git_oid_equal(&expected, &current))) {
        vmdr_err_set(e, "rejected", 0, "%s: non-fast-forward (the remote moved since the "
                     "last fetch)", r->local_ref);
        goto done;
    }
    if (has_expected && git_oid_equal(&expected, head)) {
        ret = 0; /* the remote is at our commit already */
        goto done;
    }
    if (r->last_valid && git_oid_equal(&r->last_commit, head) &&
        r->last_has_parent == has_expected &&
        (!has_expected || git_oid_equal(&r->last_parent, &expected))) {
        /* The remote is at our commit's parent: our commit's own pack is what it lacks.
         * Its files are linked in when they can be (same file system, a private remote),
         * else the pack is indexed there again. */
        if (link_pack(r, dst, dstpack) == 0) {
            snprintf(packname, sizeof packname, "%s", r->last_pack_name);
            rc = 0;
        } else {
            rc = vmdr_git__index_pack(NULL, dstpack, r->last_pack.ptr, r->last_pack.size,
                                      packname);
        }
        if (rc < 0) {
            vmdr_git__set_error(e, rc, "push failed");
            goto done;
        }
    } else if ((rc = git_packbuilder_new(&pb, r->repo)) < 0 ||
               (rc = git_revwalk_new(&walk, r->repo)) < 0 ||
        (rc = git_revwalk_push(walk, head)) < 0 ||
        (has_expected && (rc = git_revwalk_hide(walk, &expected)) < 0) ||
        (rc = git_packbuilder_insert_walk(pb, walk)) < 0 ||
        (rc = git_packbuilder_write_buf(&packbuf, pb)) < 0 ||
        (rc = vmdr_git__index_pack(NULL, dstpack, packbuf.ptr, packbuf.size, packname)) < 0) {
        vmdr_git__set_error(e, rc, "push failed");
        goto done;
    }
    if (only_pack(dst, dstpack, packname) < 0) {
        vmdr_git__set_error(e, -1, "push failed");
        goto done;
    }
    rc = git_reference_create_matching(&ref, dst, r->local_ref, head, has_expected,
                                       has_expected ? &expected : NULL, "vmdr: push");
    if (rc == GIT_EMODIFIED || rc == GIT_EEXISTS || rc == GIT_ELOCKED) {
        vmdr_err_set(e, "rejected", 0, "%s: non-fast-forward (another writer updated the "
                     "remote)", r->local_ref);
        git_error_clear();
        goto done;
    }
    if (rc < 0) {
        vmdr_git__set_error(e, rc, "push failed");
        goto done;
    }
    ret = 0;
done:
    git_reference_free(ref);
    git_buf_dispose(&packbuf);
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
    git_repository_free(dst);
    return ret;
}

int vmdr_git_push(vmdr_git_repo *r, vmdr_err *e)
{
    git_oid head;
    git_remote *remote = NULL;
    git_reference *ref = NULL;
    net_ctx n = {.r = r};
    char spec[1024];
    char *specs[1] = {spec};
    git_strarray refspecs = {specs, 1};
    git_push_options po;
    int rc;
    errno = 0; /* see vmdr_git__set_error */

    git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
    vmdr_err_clear(&n.err);
    if (git_reference_name_to_id(&head, r->repo, r->local_ref) != 0) {
        git_error_clear();
        return vmdr_err_set(e, "invalid", 0, "nothing to push: branch '%s' has no commit",
                            r->branch);
    }
    if (vmdr_git__is_local_url(r->url)) {
        rc = push_local(r, &head, e);
    } else {
        init_callbacks(&po.callbacks, &n);
        /* as many pack threads as CPUs for a large commit (the default is one) */
        po.pb_parallelism = r->last_valid && r->last_objects < VMDR_GIT_THREADED_PACK ? 1 : 0;
        snprintf(spec, sizeof spec, "%s:%s", r->local_ref, r->local_ref);
        set_trust(r);
        rc = origin(r, &remote);
        if (rc == 0)
            rc = git_remote_push(remote, &refspecs, &po);
        git_remote_free(remote);
        if (rc == GIT_ENONFASTFORWARD && !vmdr_err_is_set(&n.err)) {
            const git_error *ge = git_error_last();
            vmdr_err_set(e, "rejected", rc, "%s: non-fast-forward (%s)", r->local_ref,
                         ge && ge->message ? ge->message : "fetch first");
            git_error_clear();
            return -1;
        }
        if (rc < 0)
            return net_error(&n, e, rc, "push failed");
        if (n.rejected) {
            /* Trap 1: the push "succeeded" but the server refused the ref update. */
            size_t l = strlen(n.remote_msg);
            while (l > 0 && isspace((unsigned char)n.remote_msg[l - 1]))
                n.remote_msg[--l] = '\0';
            return vmdr_err_set(e, "rejected", 0, "the server refused %s%s%s", n.reason,
                                l ? "; remote said: " : "", n.remote_msg);
        }
    }
    if (rc < 0)
        return -1;
    /* The remote-tracking ref now names what the remote has. */
    rc = git_reference_create(&ref, r->repo, r->remote_ref, &head, 1, "vmdr: push");
    git_reference_free(ref);
    if (rc < 0)
        return vmdr_git__set_error(e, rc, "cannot update the remote-tracking branch");
    return 0;
}
