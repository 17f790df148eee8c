/* vmdr rbd core: connection, image handles and the mirroring calls (no Lua). */
#include "rbd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

double vmdr_rbd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *vmdr_rbd_errcode(int err)
{
    if (err < 0)
        err = -err;
    switch (err) {
    case ENOENT:
        return "not_found";
    case EBUSY:
        return "busy";
    case EINVAL:
        return "invalid";
    case EPERM:
    case EACCES:
        return "permission";
    case ETIMEDOUT:
        return "timeout";
    case ENOTCONN:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ESHUTDOWN:
    case ECONNRESET:
        return "unreachable";
    case EROFS:
        return "read_only";
    case EEXIST:
        return "exists";
    case EINTR:
        return "interrupted";
    case EOPNOTSUPP:
        return "unsupported";
    case ENOSPC:
    case EDQUOT:
        return "no_space";
    default:
        return "error";
    }
}

void vmdr_rbd_spec_format(const vmdr_rbd_spec *s, char *buf, size_t n)
{
    if (s->ns[0] && s->name[0])
        snprintf(buf, n, "%s/%s/%s", s->pool, s->ns, s->name);
    else if (s->ns[0])
        snprintf(buf, n, "%s/%s", s->pool, s->ns);
    else if (s->name[0])
        snprintf(buf, n, "%s/%s", s->pool, s->name);
    else
        snprintf(buf, n, "%s", s->pool);
}

int vmdr_rbd__fail(vmdr_err *e, int rc, const char *what, const vmdr_rbd_spec *spec)
{
    char where[3 * VMDR_RBD_NAME_MAX + 4] = "";
    if (spec)
        vmdr_rbd_spec_format(spec, where, sizeof where);
    return vmdr_err_set(e, vmdr_rbd_errcode(rc), rc < 0 ? -rc : rc, "%s%s%s: %s", what,
                        where[0] ? " " : "", where, strerror(rc < 0 ? -rc : rc));
}

static int copy_name(char *dst, const char *src, const char *what, vmdr_err *e)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= VMDR_RBD_NAME_MAX)
        return vmdr_err_set(e, "invalid", EINVAL, "%s name is too long (%zu bytes)", what, n);
    if (src && strchr(src, '/'))
        return vmdr_err_set(e, "invalid", EINVAL, "%s name '%s' contains '/'", what, src);
    memcpy(dst, src ? src : "", n + 1);
    return 0;
}

int vmdr_rbd_set_spec(vmdr_rbd_spec *out, const char *pool, const char *ns, const char *name,
                      vmdr_err *e)
{
    memset(out, 0, sizeof *out);
    if (!pool || !pool[0])
        return vmdr_err_set(e, "invalid", EINVAL, "empty pool name");
    if (name && !name[0])
        return vmdr_err_set(e, "invalid", EINVAL, "empty image name in pool %s", pool);
    if (copy_name(out->pool, pool, "pool", e) || copy_name(out->ns, ns, "namespace", e) ||
        copy_name(out->name, name, "image", e))
        return -1;
    return 0;
}

int vmdr_rbd_parse_spec(vmdr_rbd_spec *out, const char *s, vmdr_err *e)
{
    char buf[3 * VMDR_RBD_NAME_MAX + 4];
    if (strlen(s) >= sizeof buf)
        return vmdr_err_set(e, "invalid", EINVAL, "image spec is too long");
    strcpy(buf, s);
    char *a = buf, *b = strchr(a, '/'), *c = NULL;
    if (!b)
        return vmdr_err_set(e, "invalid", EINVAL,
                            "image spec '%s' is not pool/image or pool/namespace/image", s);
    *b++ = '\0';
    c = strchr(b, '/');
    if (c) {
        *c++ = '\0';
        if (!*b)
            return vmdr_err_set(e, "invalid", EINVAL, "image spec '%s' has an empty namespace", s);
        return vmdr_rbd_set_spec(out, a, b, c, e);
    }
    return vmdr_rbd_set_spec(out, a, NULL, b, e);
}

static int conf_set(rados_t r, const char *k, const char *v, vmdr_err *e)
{
    int rc = rados_conf_set(r, k, v);
    if (rc < 0)
        return vmdr_err_set(e, "invalid", -rc, "cannot set %s=%s: %s", k, v, strerror(-rc));
    return 0;
}

/* rados_connect blocks up to client_mount_timeout and cannot be cancelled. It runs in a
 * thread of its own so the caller can give up on an interrupt: the abandoned thread then
 * shuts its handle down itself when librados returns. */
typedef struct connect_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rados_t r;
    int rc, done, abandoned;
} connect_job;

static void connect_job_free(connect_job *j)
{
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void *connect_thread(void *arg)
{
    connect_job *j = arg;
    int rc = rados_connect(j->r);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->done = 1;
    int abandoned = j->abandoned;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (abandoned) {
        rados_shutdown(j->r);
        connect_job_free(j);
    }
    return NULL;
}

/* Returns rados_connect's result, or -EINTR once interrupted() says so (r is then owned by
 * the connecting thread, which shuts it down). */
static int connect_interruptible(rados_t r, int (*interrupted)(void))
{
    if (!interrupted)
        return rados_connect(r);
    connect_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->r = r;
    pthread_t th;
    if (pthread_create(&th, NULL, connect_thread, j) != 0) {
        connect_job_free(j);
        return rados_connect(r);
    }
    pthread_detach(th);
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        if (interrupted()) {
            j->abandoned = 1;
            pthread_mutex_unlock(&j->mu);
            return -EINTR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    int rc = j->rc;
    pthread_mutex_unlock(&j->mu);
    connect_job_free(j);
    return rc;
}

int vmdr_rbd_connect(vmdr_rbd_cluster **out, const vmdr_rbd_connect_opts *o, vmdr_err *e)
{
    rados_t r = NULL;
    int rc = -1;
    char name[300], tmo[32];
    const char *user = o->user && o->user[0] ? o->user : "admin";
    *out = NULL;

    if (strncmp(user, "client.", 7) == 0)
        snprintf(name, sizeof name, "%s", user);
    else
        snprintf(name, sizeof name, "client.%s", user);
    /* librados reads a missing file as "no such cluster" much later: say it now */
    if (o->conf && access(o->conf, R_OK) != 0)
        return vmdr_err_set(e, "config", errno, "cannot read ceph conf '%s': %s", o->conf,
                            strerror(errno));
    if (o->keyring && access(o->keyring, R_OK) != 0)
        return vmdr_err_set(e, "config", errno, "cannot read keyring '%s': %s", o->keyring,
                            strerror(errno));
    rc = rados_create2(&r, o->cluster && o->cluster[0] ? o->cluster : "ceph", name, 0);
    if (rc < 0)
        return vmdr_err_set(e, "invalid", -rc, "rados_create2(%s): %s", name, strerror(-rc));
    rc = rados_conf_read_file(r, o->conf);
    if (rc < 0) {
        vmdr_err_set(e, "config", -rc, "cannot read ceph conf '%s': %s",
                     o->conf ? o->conf : "(default search)", strerror(-rc));
        goto done;
    }
    /* librados would print to our stderr, keyring parse errors with the key's text among
     * them: vmdr reports through its own errors and log instead */
    if ((rc = conf_set(r, "log_to_stderr", "false", e)) < 0 ||
        (rc = conf_set(r, "err_to_stderr", "false", e)) < 0)
        goto done;
    if (o->keyring && (rc = conf_set(r, "keyring", o->keyring, e)) < 0)
        goto done;
    /* Every blocking call must end: the mount (300 s by default), mon commands and OSD ops
     * (both unbounded by default) all get the caller's bound. */
    snprintf(tmo, sizeof tmo, "%g", o->timeout);
    if ((rc = conf_set(r, "client_mount_timeout", tmo, e)) < 0 ||
        (rc = conf_set(r, "rados_mon_op_timeout", tmo, e)) < 0 ||
        (rc = conf_set(r, "rados_osd_op_timeout", tmo, e)) < 0)
        goto done;
    rc = connect_interruptible(r, o->interrupted);
    if (rc == -EINTR) {
        r = NULL; /* the connecting thread owns it now */
        vmdr_err_set(e, "interrupted", EINTR, "interrupted while connecting");
        goto done;
    }
    if (rc < 0) {
        if (rc == -ETIMEDOUT)
            vmdr_err_set(e, "unreachable", ETIMEDOUT,
                         "no monitor of cluster '%s' answered within %g s", o->conf ? o->conf :
                         "(default)", o->timeout);
        else if (rc == -EACCES || rc == -EPERM || rc == -EIO)
            vmdr_err_set(e, "auth", -rc, "cluster '%s' refused %s: %s (wrong or unreadable key?)",
                         o->conf ? o->conf : "(default)", name, strerror(-rc));
        else
            vmdr_err_set(e, vmdr_rbd_errcode(rc), -rc, "connect to '%s' as %s: %s",
                         o->conf ? o->conf : "(default)", name, strerror(-rc));
        goto done;
    }
    *out = calloc(1, sizeof **out);
    if (!*out) {
        rc = vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
        goto done;
    }
    (*out)->rados = r;
    (*out)->timeout = o->timeout;
    (*out)->refs = 1;
    r = NULL;
    rc = 0;
done:
    if (r)
        rados_shutdown(r);
    return rc < 0 ? -1 : 0;
}

void vmdr_rbd_cluster_unref(vmdr_rbd_cluster *c)
{
    if (c && --c->refs == 0) {
        rados_shutdown(c->rados);
        free(c);
    }
}

int vmdr_rbd_ioctx(rados_ioctx_t *out, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, vmdr_err *e)
{
    int rc = rados_ioctx_create(c->rados, s->pool, out);
    if (rc < 0) {
        *out = NULL;
        if (rc == -ENOENT)
            return vmdr_err_set(e, "not_found", ENOENT, "pool '%s' does not exist", s->pool);
        return vmdr_rbd__fail(e, rc, "open pool", s);
    }
    rados_ioctx_set_namespace(*out, s->ns[0] ? s->ns : NULL);
    return 0;
}

int vmdr_rbd_image_open(vmdr_rbd_image *out, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s,
                        vmdr_err *e)
{
    memset(out, 0, sizeof *out);
    out->cluster = c;
    out->spec = *s;
    if (vmdr_rbd_ioctx(&out->io, c, s, e) < 0)
        return -1;
    int rc = rbd_open(out->io, s->name, &out->img, NULL);
    if (rc < 0) {
        rados_ioctx_destroy(out->io);
        out->io = NULL;
        if (rc == -ENOENT) {
            char buf[3 * VMDR_RBD_NAME_MAX + 4];
            vmdr_rbd_spec_format(s, buf, sizeof buf);
            return vmdr_err_set(e, "not_found", ENOENT, "image %s does not exist", buf);
        }
        return vmdr_rbd__fail(e, rc, "open image", s);
    }
    return 0;
}

void vmdr_rbd_image_close(vmdr_rbd_image *im)
{
    if (im->img)
        rbd_close(im->img);
    if (im->io)
        rados_ioctx_destroy(im->io);
    im->img = NULL;
    im->io = NULL;
}

static const char *image_state_name(rbd_mirror_image_state_t s)
{
    switch (s) {
    case RBD_MIRROR_IMAGE_ENABLED:
        return "enabled";
    case RBD_MIRROR_IMAGE_DISABLING:
        return "disabling";
    default:
        return "disabled";
    }
}

static const char *status_state_name(rbd_mirror_image_status_state_t s)
{
    switch (s) {
    case MIRROR_IMAGE_STATUS_STATE_ERROR:
        return "error";
    case MIRROR_IMAGE_STATUS_STATE_SYNCING:
        return "syncing";
    case MIRROR_IMAGE_STATUS_STATE_STARTING_REPLAY:
        return "starting_replay";
    case MIRROR_IMAGE_STATUS_STATE_REPLAYING:
        return "replaying";
    case MIRROR_IMAGE_STATUS_STATE_STOPPING_REPLAY:
        return "stopping_replay";
    case MIRROR_IMAGE_STATUS_STATE_STOPPED:
        return "stopped";
    default:
        return "unknown";
    }
}

static void fill_info(vmdr_rbd_mirror_info *out, const rbd_mirror_image_info_t *mi)
{
    snprintf(out->state, sizeof out->state, "%s", image_state_name(mi->state));
    out->primary = mi->primary;
    snprintf(out->global_id, sizeof out->global_id, "%s", mi->global_id ? mi->global_id : "");
}

int vmdr_rbd_get_mirror_info(vmdr_rbd_mirror_info *out, vmdr_rbd_image *im, vmdr_err *e)
{
    rbd_mirror_image_info_t mi;
    memset(out, 0, sizeof *out);
    int rc = rbd_mirror_image_get_info(im->img, &mi, sizeof mi);
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "mirror info of", &im->spec);
    fill_info(out, &mi);
    rbd_mirror_image_get_info_cleanup(&mi);
    if (strcmp(out->state, "disabled") != 0) {
        rbd_mirror_image_mode_t mode;
        if (rbd_mirror_image_get_mode(im->img, &mode) == 0)
            snprintf(out->mode, sizeof out->mode, "%s",
                     mode == RBD_MIRROR_IMAGE_MODE_SNAPSHOT ? "snapshot" : "journal");
    }
    return 0;
}

int vmdr_rbd_get_mirror_status(vmdr_rbd_mirror_status *out, vmdr_rbd_image *im, vmdr_err *e)
{
    rbd_mirror_image_global_status_t gs;
    memset(out, 0, sizeof *out);
    if (vmdr_rbd_get_mirror_info(&out->info, im, e) < 0)
        return -1;
    int rc = rbd_mirror_image_get_global_status(im->img, &gs, sizeof gs);
    if (rc == -ENOENT && strcmp(out->info.state, "disabled") == 0)
        return 0; /* not mirrored: no status, which is an answer */
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "mirror status of", &im->spec);
    for (uint32_t i = 0; i < gs.site_statuses_count && out->nsites < VMDR_RBD_MAX_SITES; i++) {
        const rbd_mirror_image_site_status_t *s = &gs.site_statuses[i];
        vmdr_rbd_site_status *d = &out->sites[out->nsites++];
        snprintf(d->mirror_uuid, sizeof d->mirror_uuid, "%s", s->mirror_uuid);
        snprintf(d->state, sizeof d->state, "%s", status_state_name(s->state));
        snprintf(d->description, sizeof d->description, "%s",
                 s->description ? s->description : "");
        d->up = s->up;
        d->last_update = s->last_update;
        if (strstr(d->description, "split-brain"))
            out->split_brain = 1;
    }
    rbd_mirror_image_global_status_cleanup(&gs);
    return 0;
}

int vmdr_rbd_mirror_enable(vmdr_rbd_image *im, const char *mode, int *already, vmdr_err *e)
{
    vmdr_rbd_mirror_info mi;
    *already = 0;
    if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0)
        return -1;
    if (strcmp(mi.state, "enabled") == 0) {
        if (strcmp(mi.mode, mode) != 0)
            return vmdr_err_set(e, "invalid", EINVAL, "mirroring is already enabled in %s mode",
                                mi.mode);
        *already = 1;
        return 0;
    }
    rbd_mirror_image_mode_t m = strcmp(mode, "journal") == 0 ? RBD_MIRROR_IMAGE_MODE_JOURNAL
                                                             : RBD_MIRROR_IMAGE_MODE_SNAPSHOT;
    int rc = rbd_mirror_image_enable2(im->img, m);
    if (rc == -EINVAL) {
        /* the usual reason; say it, rather than a bare "Invalid argument" */
        char pm[16] = "";
        vmdr_err pe;
        vmdr_err_clear(&pe);
        vmdr_rbd_pool_mirror_mode(pm, sizeof pm, im->cluster, &im->spec, &pe);
        if (strcmp(pm, "image") != 0) {
            char buf[2 * VMDR_RBD_NAME_MAX + 2];
            vmdr_rbd_spec tmp = im->spec;
            tmp.name[0] = '\0';
            vmdr_rbd_spec_format(&tmp, buf, sizeof buf);
            return vmdr_err_set(e, "invalid", EINVAL,
                                "cannot enable mirroring: pool %s mirror mode is '%s', not 'image'",
                                buf, pm[0] ? pm : "unknown");
        }
    }
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "enable mirroring on", &im->spec);
    return 0;
}

int vmdr_rbd_mirror_disable(vmdr_rbd_image *im, int force, int *already, vmdr_err *e)
{
    vmdr_rbd_mirror_info mi;
    *already = 0;
    if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0)
        return -1;
    if (strcmp(mi.state, "disabled") == 0) {
        *already = 1;
        return 0;
    }
    int rc = rbd_mirror_image_disable(im->img, force != 0);
    if (rc == -EINVAL && !mi.primary && !force)
        return vmdr_err_set(e, "invalid", EINVAL,
                            "cannot disable mirroring on non-primary image: force needed");
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "disable mirroring on", &im->spec);
    return 0;
}

static int need_enabled(const vmdr_rbd_mirror_info *mi, const char *what, vmdr_rbd_image *im,
                        vmdr_err *e)
{
    if (strcmp(mi->state, "enabled") != 0) {
        char buf[3 * VMDR_RBD_NAME_MAX + 4];
        vmdr_rbd_spec_format(&im->spec, buf, sizeof buf);
        return vmdr_err_set(e, "not_mirrored", EINVAL, "cannot %s %s: mirroring is %s", what, buf,
                            mi->state);
    }
    return 0;
}

/* A forced promote of an image the local rbd-mirror still replays (librbd 16.2,
 * mirror/snapshot/PromoteRequest) writes an orphan snapshot, then lists the image's
 * watchers until rbd-mirror has let go. While it is still there, librbd waits for a header
 * update notification, checked on a 1-second timer, or for 5 ticks without one. rbd-mirror
 * letting go sends no notification, so a promote that finds it still there after its first
 * wait sits out the full 5 s (one or two such images set a batch's wall time:
 * docs/bench/rbd.md). The nudger sends an empty notification on the image's header (read
 * as a header update) once the promote has run `after` seconds, then every `every` seconds
 * until it ends; the wait then ends at librbd's next tick. */
typedef struct nudger {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    rados_ioctx_t io;
    char oid[VMDR_RBD_HEADER_OID_MAX];
    double after, every;
    int sent;
} nudger;

int vmdr_rbd_header_oid(rbd_image_t img, char out[VMDR_RBD_HEADER_OID_MAX])
{
    char id[64];
    if (rbd_get_id(img, id, sizeof id) < 0)
        return -1;
    snprintf(out, VMDR_RBD_HEADER_OID_MAX, "rbd_header.%s", id);
    return 0;
}

/* at: seconds on vmdr_rbd_now's clock (CLOCK_MONOTONIC), as the nudger's condvar uses */
static void abs_time(struct timespec *ts, double at)
{
    ts->tv_sec = (time_t)at;
    ts->tv_nsec = (long)((at - (double)ts->tv_sec) * 1e9);
}

static void *nudge_main(void *arg)
{
    nudger *n = arg;
    rados_completion_t pending = NULL;
    char *reply = NULL;
    size_t reply_len = 0;
    double due = vmdr_rbd_now() + n->after;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        if (vmdr_rbd_now() < due) {
            struct timespec ts;
            abs_time(&ts, due);
            pthread_cond_timedwait(&n->cv, &n->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&n->mu);
        if (pending && rados_aio_is_complete(pending)) {
            rados_aio_release(pending);
            pending = NULL;
            rados_buffer_free(reply);
            reply = NULL;
        }
        /* at most one in flight: a watcher that does not answer holds it to its timeout */
        if (!pending && rados_aio_create_completion2(NULL, NULL, &pending) == 0) {
            if (rados_aio_notify(n->io, n->oid, pending, "", 0, VMDR_RBD_NUDGE_TIMEOUT_MS, &reply,
                                 &reply_len) < 0) {
                rados_aio_release(pending);
                pending = NULL;
            } else {
                n->sent++;
            }
        }
        pthread_mutex_lock(&n->mu);
        due = vmdr_rbd_now() + n->every;
    }
    pthread_mutex_unlock(&n->mu);
    if (pending) {
        rados_aio_wait_for_complete(pending);
        rados_aio_release(pending);
        rados_buffer_free(reply);
    }
    return NULL;
}

/* Starts a nudger for im (0), or returns -1 (no nudging: the promote runs as it would). */
static int nudge_start(nudger *n, pthread_t *th, vmdr_rbd_image *im, double after)
{
    memset(n, 0, sizeof *n);
    if (vmdr_rbd_header_oid(im->img, n->oid) < 0)
        return -1;
    n->io = im->io;
    n->after = after;
    n->every = VMDR_RBD_NUDGE_EVERY;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(th, NULL, nudge_main, n) != 0) {
        pthread_mutex_destroy(&n->mu);
        pthread_cond_destroy(&n->cv);
        return -1;
    }
    return 0;
}

/* Stops the nudger; returns how many notifications it sent. */
static int nudge_stop(nudger *n, pthread_t th)
{
    pthread_mutex_lock(&n->mu);
    n->stop = 1;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    return n->sent;
}

int vmdr_rbd_promote(vmdr_rbd_image *im, int force, double nudge_after, int *nudges,
                     int *already, vmdr_err *e)
{
    vmdr_rbd_mirror_info mi;
    *already = 0;
    if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0 || need_enabled(&mi, "promote", im, e) < 0)
        return -1;
    if (mi.primary) {
        *already = 1;
        return 0;
    }
    nudger n;
    pthread_t th;
    int nudging = force && nudge_after > 0 && nudge_start(&n, &th, im, nudge_after) == 0;
    int rc = rbd_mirror_image_promote(im->img, force != 0);
    if (nudging) {
        int sent = nudge_stop(&n, th);
        if (nudges)
            *nudges += sent;
    }
    if (rc == -EBUSY && !force)
        return vmdr_err_set(e, "busy", EBUSY,
                            "graceful promote refused: the peer is still primary or its demotion "
                            "has not synced yet (retry, or force)");
    if (rc == -EINVAL && force)
        return vmdr_err_set(e, "invalid", EINVAL,
                            "forced promote failed: the image may never have completed its first "
                            "sync (not fail-over-able)");
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "promote", &im->spec);
    return 0;
}

static int newest_snap_in_state(vmdr_rbd_image *im, const char *state, uint64_t *out,
                                vmdr_err *e)
{
    vmdr_rbd_mirror_snap *s = NULL;
    int n = 0;
    *out = 0;
    if (vmdr_rbd_mirror_snaps(&s, &n, im, e) < 0)
        return -1;
    for (int i = n - 1; i >= 0; i--) {
        if (strcmp(s[i].state, state) == 0) {
            *out = s[i].id;
            break;
        }
    }
    free(s);
    return 0;
}

int vmdr_rbd_demote(vmdr_rbd_image *im, int *already, uint64_t *snap_id, vmdr_err *e)
{
    vmdr_rbd_mirror_info mi;
    *already = 0;
    *snap_id = 0;
    if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0 || need_enabled(&mi, "demote", im, e) < 0)
        return -1;
    if (!mi.primary) {
        *already = 1;
    } else {
        int rc = rbd_mirror_image_demote(im->img);
        if (rc < 0)
            return vmdr_rbd__fail(e, rc, "demote", &im->spec);
    }
    /* the demotion snapshot is what the peer must copy before a graceful promote there */
    if (strcmp(mi.mode, "snapshot") == 0)
        return newest_snap_in_state(im, "primary_demoted", snap_id, e);
    return 0;
}

int vmdr_rbd_resync(vmdr_rbd_image *im, vmdr_err *e)
{
    vmdr_rbd_mirror_info mi;
    if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0 || need_enabled(&mi, "resync", im, e) < 0)
        return -1;
    if (mi.primary)
        return vmdr_err_set(e, "invalid", EINVAL,
                            "cannot resync a primary image: demote it first");
    int rc = rbd_mirror_image_resync(im->img);
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "resync", &im->spec);
    return 0;
}

int vmdr_rbd_mirror_snapshot(vmdr_rbd_image *im, uint64_t *snap_id, vmdr_err *e)
{
    int rc = rbd_mirror_image_create_snapshot(im->img, snap_id);
    if (rc == -EINVAL) {
        vmdr_rbd_mirror_info mi;
        if (vmdr_rbd_get_mirror_info(&mi, im, e) < 0 || need_enabled(&mi, "snapshot", im, e) < 0)
            return -1;
        if (!mi.primary)
            return vmdr_err_set(e, "invalid", EINVAL,
                                "mirror snapshots are taken on the primary; this copy is not");
    }
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "mirror snapshot of", &im->spec);
    return 0;
}

static const char *snap_state_name(rbd_snap_mirror_state_t s)
{
    switch (s) {
    case RBD_SNAP_MIRROR_STATE_PRIMARY:
        return "primary";
    case RBD_SNAP_MIRROR_STATE_PRIMARY_DEMOTED:
        return "primary_demoted";
    case RBD_SNAP_MIRROR_STATE_NON_PRIMARY:
        return "non_primary";
    default:
        return "non_primary_demoted";
    }
}

int vmdr_rbd_mirror_snaps(vmdr_rbd_mirror_snap **out, int *n, vmdr_rbd_image *im, vmdr_err *e)
{
    int max = 16, rc;
    rbd_snap_info_t *snaps = NULL;
    *out = NULL;
    *n = 0;
    for (;;) {
        snaps = calloc((size_t)max, sizeof *snaps);
        if (!snaps)
            return vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
        rc = rbd_snap_list(im->img, snaps, &max);
        if (rc != -ERANGE)
            break;
        free(snaps); /* max now holds the size needed */
    }
    if (rc < 0) {
        free(snaps);
        return vmdr_rbd__fail(e, rc, "list snapshots of", &im->spec);
    }
    int count = rc;
    vmdr_rbd_mirror_snap *res = calloc((size_t)(count ? count : 1), sizeof *res);
    if (!res) {
        rbd_snap_list_end(snaps);
        free(snaps);
        return vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
    }
    for (int i = 0; i < count; i++) {
        rbd_snap_namespace_type_t t;
        if (rbd_snap_get_namespace_type(im->img, snaps[i].id, &t) < 0 ||
            t != RBD_SNAP_NAMESPACE_TYPE_MIRROR)
            continue;
        rbd_snap_mirror_namespace_t ms;
        if (rbd_snap_get_mirror_namespace(im->img, snaps[i].id, &ms, sizeof ms) < 0)
            continue; /* deleted under us (rbd-mirror prunes old ones) */
        vmdr_rbd_mirror_snap *d = &res[(*n)++];
        d->id = snaps[i].id;
        snprintf(d->state, sizeof d->state, "%s", snap_state_name(ms.state));
        d->complete = ms.complete;
        snprintf(d->primary_mirror_uuid, sizeof d->primary_mirror_uuid, "%s",
                 ms.primary_mirror_uuid ? ms.primary_mirror_uuid : "");
        d->primary_snap_id = ms.primary_snap_id;
        struct timespec ts = {0, 0};
        if (rbd_snap_get_timestamp(im->img, snaps[i].id, &ts) == 0)
            d->time = ts.tv_sec;
        rbd_snap_mirror_namespace_cleanup(&ms, sizeof ms);
    }
    rbd_snap_list_end(snaps);
    free(snaps);
    /* rbd_snap_list returns them by id, which is creation order */
    for (int i = 1; i < *n; i++) {
        vmdr_rbd_mirror_snap k = res[i];
        int j = i - 1;
        while (j >= 0 && res[j].id > k.id) {
            res[j + 1] = res[j];
            j--;
        }
        res[j + 1] = k;
    }
    *out = res;
    return 0;
}

int vmdr_rbd_synced(int *out, vmdr_rbd_image *im, uint64_t snap_id, vmdr_err *e)
{
    vmdr_rbd_mirror_snap *s = NULL;
    int n = 0;
    *out = 0;
    if (vmdr_rbd_mirror_snaps(&s, &n, im, e) < 0)
        return -1;
    /* A complete copy of that primary snapshot, or of a later one (older copies get pruned),
     * means the data of snap_id is here. */
    for (int i = n - 1; i >= 0; i--) {
        if ((strcmp(s[i].state, "non_primary") == 0 ||
             strcmp(s[i].state, "non_primary_demoted") == 0) &&
            s[i].complete && s[i].primary_snap_id >= snap_id) {
            *out = 1;
            break;
        }
    }
    free(s);
    return 0;
}

int vmdr_rbd_get_image_info(vmdr_rbd_image_info *out, vmdr_rbd_image *im, vmdr_err *e)
{
    rbd_image_info_t st;
    memset(out, 0, sizeof *out);
    int rc = rbd_stat(im->img, &st, sizeof st);
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "stat", &im->spec);
    out->size = st.size;
    out->obj_size = st.obj_size;
    if ((rc = rbd_get_features(im->img, &out->features)) < 0)
        return vmdr_rbd__fail(e, rc, "features of", &im->spec);
    size_t fl = sizeof out->features_str;
    if (rbd_features_to_string(out->features, out->features_str, &fl) < 0)
        out->features_str[0] = '\0';
    rbd_get_id(im->img, out->id, sizeof out->id);
    rbd_linked_image_spec_t pi;
    rbd_snap_spec_t ps;
    rc = rbd_get_parent(im->img, &pi, &ps);
    if (rc == 0) {
        out->has_parent = 1;
        snprintf(out->parent_pool, sizeof out->parent_pool, "%s", pi.pool_name);
        snprintf(out->parent_ns, sizeof out->parent_ns, "%s", pi.pool_namespace);
        snprintf(out->parent_image, sizeof out->parent_image, "%s", pi.image_name);
        snprintf(out->parent_snap, sizeof out->parent_snap, "%s", ps.name ? ps.name : "");
        rbd_linked_image_spec_cleanup(&pi);
        rbd_snap_spec_cleanup(&ps);
    } else if (rc != -ENOENT) {
        return vmdr_rbd__fail(e, rc, "parent of", &im->spec);
    }
    return 0;
}

int vmdr_rbd_pool_mirror_mode(char *out, size_t n, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s,
                              vmdr_err *e)
{
    rados_ioctx_t io;
    rbd_mirror_mode_t m;
    if (vmdr_rbd_ioctx(&io, c, s, e) < 0)
        return -1;
    int rc = rbd_mirror_mode_get(io, &m);
    rados_ioctx_destroy(io);
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "mirror mode of pool", s);
    snprintf(out, n, "%s",
             m == RBD_MIRROR_MODE_IMAGE  ? "image"
             : m == RBD_MIRROR_MODE_POOL ? "pool"
                                         : "disabled");
    return 0;
}

int vmdr_rbd_create(vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, uint64_t size,
                    const char *features, int order, vmdr_err *e)
{
    rados_ioctx_t io;
    rbd_image_options_t opts;
    int rc;
    if (vmdr_rbd_ioctx(&io, c, s, e) < 0)
        return -1;
    rbd_image_options_create(&opts);
    if (features) {
        uint64_t f;
        if (rbd_features_from_string(features, &f) < 0) {
            rc = vmdr_err_set(e, "invalid", EINVAL, "unknown image features '%s'", features);
            goto done;
        }
        rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, f);
    }
    if (order > 0)
        rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_ORDER, (uint64_t)order);
    rc = rbd_create4(io, s->name, size, opts);
    if (rc < 0)
        rc = vmdr_rbd__fail(e, rc, "create image", s);
done:
    rbd_image_options_destroy(opts);
    rados_ioctx_destroy(io);
    return rc < 0 ? -1 : 0;
}

int vmdr_rbd_remove(vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, vmdr_err *e)
{
    rados_ioctx_t io;
    if (vmdr_rbd_ioctx(&io, c, s, e) < 0)
        return -1;
    int rc = rbd_remove(io, s->name);
    rados_ioctx_destroy(io);
    if (rc < 0)
        return vmdr_rbd__fail(e, rc, "remove image", s);
    return 0;
}

int vmdr_rbd_mon_command(vmdr_rbd_cluster *c, const char *cmd, char **outbuf, size_t *outlen,
                         vmdr_err *e)
{
    const char *cmds[1] = {cmd};
    char *outs = NULL;
    size_t outslen = 0;
    *outbuf = NULL;
    *outlen = 0;
    int rc = rados_mon_command(c->rados, cmds, 1, "", 0, outbuf, outlen, &outs, &outslen);
    if (rc < 0) {
        vmdr_err_set(e, vmdr_rbd_errcode(rc), -rc, "mon command failed: %s%s%.*s",
                     strerror(-rc), outslen ? ": " : "", (int)outslen, outs ? outs : "");
        if (outs)
            rados_buffer_free(outs);
        return -1;
    }
    if (outs)
        rados_buffer_free(outs);
    return 0;
}

int vmdr_rbd_schedule_add(vmdr_rbd_cluster *c, const char *pool, const char *ns,
                          const char *interval, vmdr_err *e)
{
    char *out = NULL, *outs = NULL;
    size_t outlen = 0, outslen = 0;
    int rc = -1;
    /* Without an active mgr, a mgr command waits for the whole mon-op timeout and then
     * fails; ask the mon first, which answers at once. A user the mon does not let run
     * `mgr stat` (mon 'profile rbd' does not) asks the mgr directly. */
    if (vmdr_rbd_mon_command(c, "{\"prefix\": \"mgr stat\", \"format\": \"json\"}", &out,
                             &outlen, e) < 0) {
        if (e->status != EACCES && e->status != EPERM)
            return -1;
        vmdr_err_clear(e);
    } else {
        cJSON *j = cJSON_ParseWithLength(out, outlen);
        rados_buffer_free(out);
        out = NULL;
        cJSON *av = j ? cJSON_GetObjectItemCaseSensitive(j, "available") : NULL;
        int available = cJSON_IsTrue(av);
        cJSON_Delete(j);
        if (!available)
            return vmdr_err_set(e, "unavailable", 0,
                                "no active ceph-mgr on this cluster: mirror snapshot schedules "
                                "are kept by the mgr's rbd_support module (take snapshots with "
                                "mirror_snapshot() instead, or run a ceph-mgr)");
    }
    /* rbd_support answers a missing pool with EINVAL; say not_found, as image() does */
    int64_t pid = rados_pool_lookup(c->rados, pool);
    if (pid == -ENOENT)
        return vmdr_err_set(e, "not_found", ENOENT, "pool '%s' does not exist", pool);
    cJSON *cmd = cJSON_CreateObject();
    /* rbd_support's level spec: "pool/" for a pool, "pool/ns/" for a namespace (a bare
     * "pool" does not parse: "Invalid level spec") */
    char level[2 * VMDR_RBD_NAME_MAX + 3];
    if (ns && ns[0])
        snprintf(level, sizeof level, "%s/%s/", pool, ns);
    else
        snprintf(level, sizeof level, "%s/", pool);
    cJSON_AddStringToObject(cmd, "prefix", "rbd mirror snapshot schedule add");
    cJSON_AddStringToObject(cmd, "level_spec", level);
    cJSON_AddStringToObject(cmd, "interval", interval);
    char *s = cJSON_PrintUnformatted(cmd);
    cJSON_Delete(cmd);
    if (!s)
        return vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
    const char *cmds[1] = {s};
    rc = rados_mgr_command(c->rados, cmds, 1, "", 0, &out, &outlen, &outs, &outslen);
    if (rc < 0)
        vmdr_err_set(e, vmdr_rbd_errcode(rc), -rc, "schedule add %s %s: %s%s%.*s", level,
                     interval, strerror(-rc), outslen ? ": " : "", (int)outslen,
                     outs ? outs : "");
    free(s);
    if (out)
        rados_buffer_free(out);
    if (outs)
        rados_buffer_free(outs);
    return rc < 0 ? -1 : 0;
}
