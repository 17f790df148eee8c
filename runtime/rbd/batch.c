/* vmdr rbd batch: one mirroring operation on many images, in parallel, no Lua.
 *
 * Two engines, measured against each other in bench/rbd:
 * - threads: N worker threads take the next item from a shared index and run the
 *   synchronous librbd calls (open, get_info, op, close); every op is available.
 * - aio: the calling thread keeps N images in flight with librbd's async API
 *   (rbd_aio_open, rbd_aio_mirror_image_get_info/promote/demote, rbd_aio_close); the
 *   completions are queued back to it. Only promote and demote have async variants.
 * Both stop starting items once the interrupt callback says so; the started ones end
 * within the librados timeouts. */
#include "rbd.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_pool(const vmdr_rbd_spec *a, const vmdr_rbd_spec *b)
{
    return strcmp(a->pool, b->pool) == 0 && strcmp(a->ns, b->ns) == 0;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* One item, synchronously. *io caches an ioctx for io_spec's pool/namespace across items. */
void vmdr_rbd_item_run(vmdr_rbd_batch *b, vmdr_rbd_item *it, rados_ioctx_t *io,
                       vmdr_rbd_spec *io_spec)
{
    vmdr_rbd_image im;
    int already = 0, rc;
    double t0 = vmdr_rbd_now();
    vmdr_err_clear(&it->err);
    it->outcome = VMDR_RBD_DONE_FAILED;
    it->attempts = 0;
    it->nudges = 0;

    if (*io && !same_pool(io_spec, &it->spec)) {
        rados_ioctx_destroy(*io);
        *io = NULL;
    }
    if (!*io) {
        if (vmdr_rbd_ioctx(io, b->cluster, &it->spec, &it->err) < 0)
            goto done;
        *io_spec = it->spec;
    }
    memset(&im, 0, sizeof im);
    im.cluster = b->cluster;
    im.spec = it->spec;
    im.io = *io;
    rc = rbd_open(*io, it->spec.name, &im.img, NULL);
    if (rc < 0) {
        if (rc == -ENOENT) {
            char buf[3 * VMDR_RBD_NAME_MAX + 4];
            vmdr_rbd_spec_format(&it->spec, buf, sizeof buf);
            vmdr_err_set(&it->err, "not_found", ENOENT, "image %s does not exist", buf);
        } else {
            vmdr_rbd__fail(&it->err, rc, "open image", &it->spec);
        }
        goto done;
    }
    switch (b->op) {
    case VMDR_RBD_OP_PROMOTE: {
        double deadline = t0 + b->retry;
        for (;;) {
            it->attempts++;
            vmdr_err_clear(&it->err);
            rc = vmdr_rbd_promote(&im, b->force, b->nudge, &it->nudges, &already, &it->err);
            /* a graceful promote right after the peer's demotion is refused until the
             * demotion snapshot synced (EBUSY), then briefly while rbd-mirror still holds the
             * lock (EROFS): NOTES-ceph "orderly failback is racy". A forced promote can meet
             * the same EROFS (seen 1 in 100 under load); EBUSY is final for it. */
            int again = strcmp(it->err.code, "read_only") == 0 ||
                        (!b->force && strcmp(it->err.code, "busy") == 0);
            if (rc == 0 || !again || vmdr_rbd_now() >= deadline ||
                (b->interrupted && b->interrupted()))
                break;
            sleep_s(0.1);
        }
        break;
    }
    case VMDR_RBD_OP_DEMOTE:
        rc = vmdr_rbd_demote(&im, &already, &it->snap_id, &it->err);
        break;
    case VMDR_RBD_OP_ENABLE:
        rc = 0;
        if (b->flatten) {
            vmdr_rbd_image_info info;
            rc = vmdr_rbd_get_image_info(&info, &im, &it->err);
            if (rc == 0 && info.has_parent) {
                int frc = rbd_flatten(im.img);
                rc = frc < 0 ? vmdr_rbd__fail(&it->err, frc, "flatten", &it->spec) : 0;
                it->flattened = rc == 0;
            }
        }
        if (rc == 0)
            rc = vmdr_rbd_mirror_enable(&im, b->mode, &already, &it->err);
        break;
    case VMDR_RBD_OP_DISABLE:
        rc = vmdr_rbd_mirror_disable(&im, b->force, &already, &it->err);
        break;
    case VMDR_RBD_OP_RESYNC:
        rc = vmdr_rbd_resync(&im, &it->err);
        break;
    case VMDR_RBD_OP_SNAPSHOT:
        rc = vmdr_rbd_mirror_snapshot(&im, &it->snap_id, &it->err);
        break;
    case VMDR_RBD_OP_STATUS:
        it->status = calloc(1, sizeof *it->status);
        rc = it->status ? vmdr_rbd_get_mirror_status(it->status, &im, &it->err)
                        : vmdr_err_set(&it->err, "nomem", ENOMEM, "out of memory");
        break;
    default:
        rc = vmdr_err_set(&it->err, "invalid", EINVAL, "BUG: unknown batch op");
    }
    rbd_close(im.img);
    if (rc == 0)
        it->outcome = already ? VMDR_RBD_DONE_ALREADY : VMDR_RBD_DONE_OK;
done:
    it->seconds = vmdr_rbd_now() - t0;
}

/* ---- threads engine ------------------------------------------------------------------ */
typedef struct pool_state {
    vmdr_rbd_batch *b;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t next;
    size_t done;
    int cancel;
} pool_state;

static void *worker(void *arg)
{
    pool_state *ps = arg;
    rados_ioctx_t io = NULL;
    vmdr_rbd_spec io_spec;
    memset(&io_spec, 0, sizeof io_spec);
    for (;;) {
        pthread_mutex_lock(&ps->mu);
        size_t i = ps->next;
        /* checked here too: an item may end on the interrupt before the waiter sees it */
        if (!ps->cancel && ps->b->interrupted && ps->b->interrupted())
            ps->cancel = 1;
        int stop = ps->cancel || i >= ps->b->n;
        if (!stop)
            ps->next++;
        pthread_mutex_unlock(&ps->mu);
        if (stop)
            break;
        vmdr_rbd_item_run(ps->b, &ps->b->items[i], &io, &io_spec);
        pthread_mutex_lock(&ps->mu);
        ps->done++;
        pthread_cond_signal(&ps->cv);
        pthread_mutex_unlock(&ps->mu);
    }
    if (io)
        rados_ioctx_destroy(io);
    return NULL;
}

static void mark_interrupted(vmdr_rbd_batch *b, size_t from)
{
    for (size_t i = from; i < b->n; i++) {
        b->items[i].outcome = VMDR_RBD_DONE_FAILED;
        vmdr_err_set(&b->items[i].err, "interrupted", EINTR,
                     "not started: the batch was interrupted");
    }
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ms * 1000000L;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

static int run_threads(vmdr_rbd_batch *b, vmdr_err *e)
{
    pool_state ps;
    int n = b->parallel < 1 ? 1 : b->parallel;
    if ((size_t)n > b->n)
        n = (int)b->n;
    pthread_t *th = calloc((size_t)(n ? n : 1), sizeof *th);
    if (!th)
        return vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
    memset(&ps, 0, sizeof ps);
    ps.b = b;
    pthread_mutex_init(&ps.mu, NULL);
    pthread_cond_init(&ps.cv, NULL);
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, worker, &ps) != 0)
            break;
    if (started == 0 && n > 0) {
        free(th);
        pthread_mutex_destroy(&ps.mu);
        pthread_cond_destroy(&ps.cv);
        return vmdr_err_set(e, "error", EAGAIN, "cannot start batch worker threads");
    }
    /* wait here, not in join, so an interrupt stops new items within 100 ms */
    pthread_mutex_lock(&ps.mu);
    while (ps.done < ps.next || ps.next < b->n) {
        if (!ps.cancel && b->interrupted && b->interrupted())
            ps.cancel = 1;
        if (ps.cancel && ps.done == ps.next)
            break;
        struct timespec ts;
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&ps.cv, &ps.mu, &ts);
    }
    size_t next = ps.next;
    pthread_mutex_unlock(&ps.mu);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    if (next < b->n)
        mark_interrupted(b, next);
    free(th);
    pthread_mutex_destroy(&ps.mu);
    pthread_cond_destroy(&ps.cv);
    return 0;
}

/* ---- aio engine ---------------------------------------------------------------------- */
enum { ST_OPEN, ST_INFO, ST_OP, ST_CLOSE };

typedef struct aio_slot {
    struct aio_state *as;
    size_t item;
    int step;
    int rc_op; /* the op's result, kept across the close */
    int already;
    rbd_image_t img;
    rbd_mirror_image_info_t mi;
    int have_mi;
    rbd_completion_t comp;
    double t0;
    int queued_next; /* index in the done queue list */
    int waiting;     /* a refused promote, to be issued again at retry_at */
    double retry_at;
    double nudge_at; /* a forced promote in flight: notify its header then (0: never) */
    char oid[VMDR_RBD_HEADER_OID_MAX]; /* its header object, "" until known */
} aio_slot;

/* Header notifications of the aio engine's nudges (core.c "nudger"), kept until they end. */
typedef struct aio_notify {
    rados_completion_t comp;
    char *reply;
    size_t reply_len;
} aio_notify;

typedef struct aio_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int *doneq; /* slot indices whose completion fired */
    int ndone;
} aio_state;

typedef struct aio_pool {
    vmdr_rbd_spec spec;
    rados_ioctx_t io;
} aio_pool;

static void aio_cb(rbd_completion_t c, void *arg)
{
    aio_slot *s = arg;
    aio_state *as = s->as;
    (void)c;
    /* librbd's callback thread: only queue, never call back into librbd from here */
    pthread_mutex_lock(&as->mu);
    as->doneq[as->ndone++] = s->queued_next;
    pthread_cond_signal(&as->cv);
    pthread_mutex_unlock(&as->mu);
}

static int aio_issue(aio_slot *s, vmdr_rbd_batch *b, rados_ioctx_t io)
{
    int rc = rbd_aio_create_completion(s, aio_cb, &s->comp);
    if (rc < 0)
        return rc;
    vmdr_rbd_item *it = &b->items[s->item];
    switch (s->step) {
    case ST_OPEN:
        rc = rbd_aio_open(io, it->spec.name, &s->img, NULL, s->comp);
        break;
    case ST_INFO:
        rc = rbd_aio_mirror_image_get_info(s->img, &s->mi, sizeof s->mi, s->comp);
        break;
    case ST_OP:
        it->attempts++;
        s->nudge_at = b->op == VMDR_RBD_OP_PROMOTE && b->force && b->nudge > 0
                          ? vmdr_rbd_now() + b->nudge
                          : 0;
        rc = b->op == VMDR_RBD_OP_PROMOTE
                 ? rbd_aio_mirror_image_promote(s->img, b->force != 0, s->comp)
                 : rbd_aio_mirror_image_demote(s->img, s->comp);
        break;
    default:
        rc = rbd_aio_close(s->img, s->comp);
    }
    if (rc < 0) {
        rbd_aio_release(s->comp);
        s->comp = NULL;
    }
    return rc;
}

static rados_ioctx_t aio_ioctx(aio_pool **pools, int *npools, vmdr_rbd_batch *b,
                               vmdr_rbd_item *it)
{
    for (int i = 0; i < *npools; i++)
        if (same_pool(&(*pools)[i].spec, &it->spec))
            return (*pools)[i].io;
    aio_pool *np = realloc(*pools, (size_t)(*npools + 1) * sizeof **pools);
    if (!np) {
        vmdr_err_set(&it->err, "nomem", ENOMEM, "out of memory");
        return NULL;
    }
    *pools = np;
    rados_ioctx_t io;
    if (vmdr_rbd_ioctx(&io, b->cluster, &it->spec, &it->err) < 0)
        return NULL;
    np[*npools].spec = it->spec;
    np[*npools].io = io;
    (*npools)++;
    return io;
}

/* As the threads engine: a promote refused with EROFS (rbd-mirror still holds the lock),
 * or a graceful one refused with EBUSY, is tried again every 0.1 s for b->retry seconds. */
static int aio_may_retry(const aio_slot *s, const vmdr_rbd_batch *b, int rc, int cancel)
{
    return !cancel && b->op == VMDR_RBD_OP_PROMOTE &&
           (rc == -EROFS || (rc == -EBUSY && !b->force)) && vmdr_rbd_now() < s->t0 + b->retry;
}

/* Records the outcome of a finished (or failed) step and decides the next step.
 * Returns 1 when the slot is free again, 0 while it waits for a completion or a retry. */
static int aio_advance(aio_slot *s, vmdr_rbd_batch *b, rados_ioctx_t io, int rc, int cancel)
{
    vmdr_rbd_item *it = &b->items[s->item];
    for (;;) {
        if (s->step == ST_OPEN) {
            if (rc < 0) {
                if (rc == -ENOENT) {
                    char buf[3 * VMDR_RBD_NAME_MAX + 4];
                    vmdr_rbd_spec_format(&it->spec, buf, sizeof buf);
                    vmdr_err_set(&it->err, "not_found", ENOENT, "image %s does not exist", buf);
                } else {
                    vmdr_rbd__fail(&it->err, rc, "open image", &it->spec);
                }
                goto finished;
            }
            s->step = ST_INFO;
        } else if (s->step == ST_INFO) {
            if (rc < 0) {
                vmdr_rbd__fail(&it->err, rc, "mirror info of", &it->spec);
                s->rc_op = rc;
                s->step = ST_CLOSE;
            } else {
                s->have_mi = 1;
                int primary = s->mi.primary, enabled = s->mi.state == RBD_MIRROR_IMAGE_ENABLED;
                if (!enabled) {
                    char buf[3 * VMDR_RBD_NAME_MAX + 4];
                    vmdr_rbd_spec_format(&it->spec, buf, sizeof buf);
                    vmdr_err_set(&it->err, "not_mirrored", EINVAL,
                                 "cannot %s %s: mirroring is not enabled",
                                 b->op == VMDR_RBD_OP_PROMOTE ? "promote" : "demote", buf);
                    s->rc_op = -EINVAL;
                    s->step = ST_CLOSE;
                } else if ((b->op == VMDR_RBD_OP_PROMOTE) == (primary != 0)) {
                    s->already = 1;
                    s->rc_op = 0;
                    s->step = ST_CLOSE;
                } else {
                    s->step = ST_OP;
                }
            }
        } else if (s->step == ST_OP) {
            s->rc_op = rc;
            s->nudge_at = 0;
            if (rc < 0 && aio_may_retry(s, b, rc, cancel)) {
                s->waiting = 1;
                s->retry_at = vmdr_rbd_now() + 0.1;
                return 0;
            }
            if (rc < 0) {
                if (rc == -EBUSY && !b->force)
                    vmdr_err_set(&it->err, "busy", EBUSY,
                                 "graceful promote refused: the peer is still primary or its "
                                 "demotion has not synced yet (retry, or force)");
                else
                    vmdr_rbd__fail(&it->err, rc,
                                   b->op == VMDR_RBD_OP_PROMOTE ? "promote" : "demote",
                                   &it->spec);
            }
            s->step = ST_CLOSE;
        } else {
            if (s->rc_op == 0)
                it->outcome = s->already ? VMDR_RBD_DONE_ALREADY : VMDR_RBD_DONE_OK;
            goto finished;
        }
        rc = aio_issue(s, b, io);
        if (rc == 0)
            return 0; /* wait for the completion */
        if (s->step == ST_CLOSE) { /* cannot even close asynchronously: close now */
            rbd_close(s->img);
            rc = 0;
        }
    }
finished:
    if (s->have_mi)
        rbd_mirror_image_get_info_cleanup(&s->mi);
    s->have_mi = 0;
    it->seconds = vmdr_rbd_now() - s->t0;
    return 1;
}

/* Ends the notifications that are done (all of them, waiting, when wait is set). */
static void aio_notifies_reap(aio_notify *nl, int *nn, int wait)
{
    int k = 0;
    for (int i = 0; i < *nn; i++) {
        if (!wait && !rados_aio_is_complete(nl[i].comp)) {
            nl[k++] = nl[i];
            continue;
        }
        rados_aio_wait_for_complete(nl[i].comp);
        rados_aio_release(nl[i].comp);
        rados_buffer_free(nl[i].reply);
    }
    *nn = k;
}

/* Sends the nudges that are due (nl has room for two per slot: a slot sends one every
 * VMDR_RBD_NUDGE_EVERY, and a notification ends within VMDR_RBD_NUDGE_TIMEOUT_MS; when
 * full, it waits for them all). */
static void aio_nudge(aio_slot *slots, int n, vmdr_rbd_batch *b, aio_notify *nl, int *nn,
                      aio_pool **pools, int *npools)
{
    double now = vmdr_rbd_now();
    for (int i = 0; i < n; i++) {
        aio_slot *s = &slots[i];
        if (s->step != ST_OP || s->waiting || s->nudge_at <= 0 || now < s->nudge_at)
            continue;
        s->nudge_at = now + VMDR_RBD_NUDGE_EVERY;
        vmdr_rbd_item *it = &b->items[s->item];
        if (!s->oid[0])
            vmdr_rbd_header_oid(s->img, s->oid); /* stays "" when the id is unknown */
        rados_ioctx_t io = aio_ioctx(pools, npools, b, it);
        if (!s->oid[0] || !io)
            continue;
        aio_notifies_reap(nl, nn, *nn >= 2 * n);
        aio_notify *no = &nl[*nn];
        memset(no, 0, sizeof *no);
        if (rados_aio_create_completion2(NULL, NULL, &no->comp) < 0)
            continue;
        if (rados_aio_notify(io, s->oid, no->comp, "", 0, VMDR_RBD_NUDGE_TIMEOUT_MS, &no->reply,
                             &no->reply_len) < 0) {
            rados_aio_release(no->comp);
            continue;
        }
        (*nn)++;
        it->nudges++;
    }
}

static int run_aio(vmdr_rbd_batch *b, vmdr_err *e)
{
    int n = b->parallel < 1 ? 1 : b->parallel;
    if ((size_t)n > b->n)
        n = (int)b->n;
    aio_state as;
    aio_slot *slots = calloc((size_t)(n ? n : 1), sizeof *slots);
    int *free_slots = calloc((size_t)(n ? n : 1), sizeof *free_slots);
    as.doneq = calloc((size_t)(n ? n : 1), sizeof *as.doneq);
    aio_notify *notifies = calloc((size_t)(2 * (n ? n : 1)), sizeof *notifies);
    aio_pool *pools = NULL;
    int npools = 0, nfree = n, inflight = 0, nnotifies = 0;
    size_t next = 0;
    if (!slots || !free_slots || !as.doneq || !notifies) {
        free(slots);
        free(free_slots);
        free(as.doneq);
        free(notifies);
        return vmdr_err_set(e, "nomem", ENOMEM, "out of memory");
    }
    as.ndone = 0;
    pthread_mutex_init(&as.mu, NULL);
    pthread_cond_init(&as.cv, NULL);
    for (int i = 0; i < n; i++) {
        slots[i].as = &as;
        slots[i].queued_next = i;
        free_slots[i] = i;
    }
    int cancel = 0;
    while (next < b->n || inflight > 0) {
        if (!cancel && b->interrupted && b->interrupted())
            cancel = 1;
        /* fill free slots */
        while (!cancel && nfree > 0 && next < b->n) {
            aio_slot *s = &slots[free_slots[--nfree]];
            vmdr_rbd_item *it = &b->items[next];
            s->item = next++;
            s->step = ST_OPEN;
            s->rc_op = 0;
            s->already = 0;
            s->have_mi = 0;
            s->waiting = 0;
            s->nudge_at = 0;
            s->oid[0] = '\0';
            s->t0 = vmdr_rbd_now();
            it->attempts = 0;
            it->nudges = 0;
            it->outcome = VMDR_RBD_DONE_FAILED;
            vmdr_err_clear(&it->err);
            rados_ioctx_t io = aio_ioctx(&pools, &npools, b, it);
            int rc = io ? aio_issue(s, b, io) : -1;
            if (rc == 0) {
                inflight++;
            } else {
                if (io)
                    aio_advance(s, b, io, rc, 1);
                it->seconds = vmdr_rbd_now() - s->t0;
                free_slots[nfree++] = s->queued_next;
            }
        }
        if (inflight == 0) {
            if (cancel || next >= b->n)
                break;
            continue;
        }
        /* wait for completions, or for the first retry or nudge that is due */
        pthread_mutex_lock(&as.mu);
        while (as.ndone == 0) {
            double due = 0, nudge = 0;
            for (int i = 0; i < n; i++) {
                if (slots[i].waiting && (due == 0 || slots[i].retry_at < due))
                    due = slots[i].retry_at;
                if (slots[i].step == ST_OP && !slots[i].waiting && slots[i].nudge_at > 0 &&
                    (nudge == 0 || slots[i].nudge_at < nudge))
                    nudge = slots[i].nudge_at;
            }
            double now = vmdr_rbd_now();
            if (due > 0 && (cancel || now >= due))
                break;
            if (nudge > 0 && now >= nudge)
                break;
            if (nudge > 0 && (due == 0 || nudge < due))
                due = nudge;
            long ms = due > 0 && due - now < 0.1 ? (long)((due - now) * 1000) + 1 : 100;
            struct timespec ts;
            deadline_in(&ts, ms);
            pthread_cond_timedwait(&as.cv, &as.mu, &ts);
            if (b->interrupted && b->interrupted())
                cancel = 1;
        }
        int done[as.ndone > 0 ? as.ndone : 1];
        int nd = as.ndone;
        memcpy(done, as.doneq, (size_t)nd * sizeof *done);
        as.ndone = 0;
        pthread_mutex_unlock(&as.mu);
        for (int k = 0; k < nd; k++) {
            aio_slot *s = &slots[done[k]];
            int rc = (int)rbd_aio_get_return_value(s->comp);
            rbd_aio_release(s->comp);
            s->comp = NULL;
            rados_ioctx_t io = aio_ioctx(&pools, &npools, b, &b->items[s->item]);
            if (aio_advance(s, b, io, rc, cancel)) {
                inflight--;
                free_slots[nfree++] = s->queued_next;
            }
        }
        aio_nudge(slots, n, b, notifies, &nnotifies, &pools, &npools);
        aio_notifies_reap(notifies, &nnotifies, 0);
        /* refused promotes: again when due; on an interrupt they end with their last error */
        for (int i = 0; i < n; i++) {
            aio_slot *s = &slots[i];
            if (!s->waiting || (!cancel && vmdr_rbd_now() < s->retry_at))
                continue;
            s->waiting = 0;
            rados_ioctx_t io = aio_ioctx(&pools, &npools, b, &b->items[s->item]);
            int rc = cancel ? s->rc_op : aio_issue(s, b, io);
            if (rc == 0)
                continue; /* issued: its completion comes through the queue */
            if (aio_advance(s, b, io, rc, 1)) {
                inflight--;
                free_slots[nfree++] = s->queued_next;
            }
        }
    }
    if (next < b->n)
        mark_interrupted(b, next);
    aio_notifies_reap(notifies, &nnotifies, 1);
    free(notifies);
    for (int i = 0; i < npools; i++)
        rados_ioctx_destroy(pools[i].io);
    free(pools);
    free(slots);
    free(free_slots);
    free(as.doneq);
    pthread_mutex_destroy(&as.mu);
    pthread_cond_destroy(&as.cv);
    return 0;
}

int vmdr_rbd_batch_run(vmdr_rbd_batch *b, vmdr_err *e)
{
    if (b->n == 0)
        return 0;
    if (b->use_aio && (b->op == VMDR_RBD_OP_PROMOTE || b->op == VMDR_RBD_OP_DEMOTE))
        return run_aio(b, e);
    return run_threads(b, e);
}

void vmdr_rbd_batch_free(vmdr_rbd_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].status);
        b->items[i].status = NULL;
    }
    free(b->items);
    b->items = NULL;
    b->n = 0;
}
