/* vmdr-sim watch streams: history replay, BOOKMARKs, 410 Gone, selector enter/leave. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <poll.h>
#include <time.h>
#include <microhttpd.h>

#include "http_int.h"

/* ---- watch streams ------------------------------------------------------------------------ */

typedef struct watch {
    sim_server *srv;
    int res;
    char *ns; /* NULL: every namespace */
    sim_selector *ls;
    sim_fieldsel fs;
    ctx x; /* copy for table rendering (table, include) */
    uint64_t last_rv;
    int bookmarks;
    double deadline, next_bookmark;
    long sent, drop_after;
    sim_buf out;
    size_t off;
    int state; /* 0 streaming, 1 end after flush, 2 abort after flush */
    uint64_t epoch;
    int fd;
} watch;

static const char *const EV_NAMES[] = {"ADDED", "MODIFIED", "DELETED"};

static void emit(watch *w, const char *type, const char *text, size_t len)
{
    sim_buf_printf(&w->out, "{\"type\":\"%s\",\"object\":", type);
    if (w->x.table) {
        cJSON *obj = cJSON_ParseWithLength(text, len);
        const cJSON *md = sim_j_obj(obj, "metadata");
        const char *rv = sim_j_str(md, "resourceVersion");
        cJSON *t = sim__table_new(w->res, rv ? strtoull(rv, NULL, 10) : 0, NULL);
        cJSON_AddItemToArray(cJSON_GetObjectItem(t, "rows"), sim__table_row(&w->x, w->res, obj));
        size_t n;
        char *s = sim_j_print(t, &n);
        sim_buf_add(&w->out, s, n);
        free(s);
        cJSON_Delete(t);
        cJSON_Delete(obj);
    } else {
        sim_buf_add(&w->out, text, len);
    }
    sim_buf_add(&w->out, "}\n", 2);
}

static void emit_bookmark(watch *w, uint64_t rv, int initial_end)
{
    char av[64];
    sim_res_api_version(w->res, av);
    sim_buf_printf(&w->out,
                   "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"%s\",\"apiVersion\":\"%s\","
                   "\"metadata\":{\"resourceVersion\":\"%llu\"%s}}}\n",
                   w->x.table ? "Table" : sim_resources[w->res].kind,
                   w->x.table ? "meta.k8s.io/v1" : av, (unsigned long long)rv,
                   initial_end ? ",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}" : "");
}

static void emit_gone(watch *w, uint64_t floor)
{
    sim_buf_printf(&w->out,
                   "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                   "\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource "
                   "version: %llu (%llu)\",\"reason\":\"Expired\",\"code\":410}}\n",
                   (unsigned long long)w->last_rv, (unsigned long long)floor + 1);
}

static int ns_ok(const watch *w, const char *ns)
{
    return !w->ns || !strcmp(w->ns, ns);
}

/* Turns one stored event into what this watch reports. A selected watch sees an object
 * that starts matching as ADDED and one that stops matching as DELETED carrying its
 * previous state (the kube-apiserver cacher's rule). */
static void consider(watch *w, const sim_event *e)
{
    if (e->res != w->res || !ns_ok(w, e->ns) || !sim_fieldsel_matches(&w->fs, e->ns, e->name))
        return;
    int cur = sim_selector_matches(w->ls, e->labels);
    if (e->type != SIM_EV_MODIFIED) {
        if (cur) {
            emit(w, EV_NAMES[e->type], e->text, e->len);
            w->sent++;
        }
        return;
    }
    int old = sim_selector_matches(w->ls, e->prev_labels);
    if (cur && old)
        emit(w, "MODIFIED", e->text, e->len);
    else if (cur)
        emit(w, "ADDED", e->text, e->len);
    else if (old)
        emit(w, "DELETED", e->prev_text, e->prev_len);
    else
        return;
    w->sent++;
}

static int client_gone(int fd)
{
    if (fd < 0)
        return 0;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static ssize_t watch_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    watch *w = cls;
    sim_store *st = &w->srv->store;
    (void)pos;
    for (;;) {
        if (w->off < w->out.n) {
            size_t n = w->out.n - w->off < max ? w->out.n - w->off : max;
            memcpy(buf, w->out.p + w->off, n);
            w->off += n;
            return (ssize_t)n;
        }
        w->out.n = 0;
        w->off = 0;
        if (w->state == 1)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (w->state == 2)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        pthread_mutex_lock(&st->mu);
        if (st->closing || st->epoch != w->epoch) {
            pthread_mutex_unlock(&st->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (w->last_rv < st->floor) {
            emit_gone(w, st->floor);
            w->state = 1;
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        /* binary search the ring for the first event after last_rv */
        size_t lo = 0, hi = st->ev_n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (st->ev[(st->ev_head + mid) % st->ev_cap].rv <= w->last_rv)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < st->ev_n; i++) {
            const sim_event *e = &st->ev[(st->ev_head + i) % st->ev_cap];
            consider(w, e);
            w->last_rv = e->rv;
            if (w->drop_after && w->sent >= w->drop_after) {
                w->state = 2;
                break;
            }
        }
        if (w->out.n || w->state) {
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        double now = sim_mono();
        if (now >= w->deadline) {
            /* A bookmark as the watch times out lets the client resume without a gap. */
            if (w->bookmarks)
                emit_bookmark(w, st->rv, 0);
            w->state = 1;
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        if (w->bookmarks && now >= w->next_bookmark) {
            w->last_rv = st->rv;
            emit_bookmark(w, st->rv, 0);
            pthread_mutex_lock(&w->srv->fmu);
            double iv = w->srv->faults.bookmark_interval;
            pthread_mutex_unlock(&w->srv->fmu);
            w->next_bookmark = now + iv;
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        double until = w->deadline;
        if (w->bookmarks && w->next_bookmark < until)
            until = w->next_bookmark;
        if (until > now + 0.25)
            until = now + 0.25; /* wake to notice a client that went away */
        double wall = sim_now() + (until - now);
        struct timespec ts = {(time_t)wall, (long)((wall - (double)(time_t)wall) * 1e9)};
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        pthread_mutex_unlock(&st->mu);
        if (client_gone(w->fd))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void watch_free(void *cls)
{
    watch *w = cls;
    sim_selector_free(w->ls);
    sim_fieldsel_free(&w->fs);
    sim_buf_free(&w->out);
    free(w->ns);
    free(w);
}

static int parse_rv(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return 1; /* unset */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return -1;
    *out = v;
    return 0;
}

enum MHD_Result sim__do_watch(ctx *x, int res, const char *ns)
{
    sim_store *st = &x->srv->store;
    vmdr_err e = {0};
    sim_selector *ls = sim_selector_parse(sim__arg(x, "labelSelector"), &e);
    if (!ls)
        return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    watch *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->ls = ls;
    if (sim_fieldsel_parse(&w->fs, sim__arg(x, "fieldSelector"), &e)) {
        watch_free(w);
        return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    }
    uint64_t rv = 0;
    const char *rvs = sim__arg(x, "resourceVersion");
    int unset = parse_rv(rvs, &rv);
    if (unset < 0) {
        watch_free(w);
        return sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                 "resourceVersion: Invalid value: \"%s\": must be a number", rvs);
    }
    w->srv = x->srv;
    w->res = res;
    w->ns = ns && sim_resources[res].namespaced ? sim_xstrdup(ns) : NULL;
    w->x = *x;
    w->x.garble = 0;
    w->bookmarks = sim__arg_true(x, "allowWatchBookmarks");
    double timeout = 1800;
    const char *ts = sim__arg(x, "timeoutSeconds");
    if (ts && *ts)
        timeout = strtod(ts, NULL);
    if (!(timeout > 0))
        timeout = 1800; /* 0 or junk: the server default, as kube-apiserver */
    w->deadline = sim_mono() + timeout;
    pthread_mutex_lock(&x->srv->fmu);
    w->drop_after = x->srv->faults.drop_watch_after;
    w->next_bookmark = sim_mono() + x->srv->faults.bookmark_interval;
    pthread_mutex_unlock(&x->srv->fmu);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    w->fd = ci ? ci->connect_fd : -1;
    int initial = sim__arg_true(x, "sendInitialEvents");
    pthread_mutex_lock(&st->mu);
    w->epoch = st->epoch;
    if (unset == 1 || rv == 0 || initial) {
        /* "Start at the most recent": the current objects arrive as synthetic ADDED events. */
        sim_coll *c = &st->coll[res];
        for (size_t i = 0; i < c->n; i++) {
            sim_obj *o = c->v[i];
            if (!ns_ok(w, o->ns) || !sim_fieldsel_matches(&w->fs, o->ns, o->name) ||
                !sim_selector_matches(w->ls, sim_j_path(o->json, "metadata.labels")))
                continue;
            emit(w, "ADDED", o->text, o->len);
            /* the drop fault counts synthetic events too */
            if (w->drop_after && ++w->sent >= w->drop_after) {
                w->state = 2;
                break;
            }
        }
        w->last_rv = st->rv;
        if (initial && w->bookmarks && !w->state)
            emit_bookmark(w, st->rv, 1);
    } else {
        w->last_rv = rv;
    }
    pthread_mutex_unlock(&st->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, watch_read, w, watch_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    enum MHD_Result rc = sim__queue(x, 200, r);
    MHD_destroy_response(r);
    return rc;
}
