/* vmdr-sim admin endpoint (/_sim/state, /_sim/faults) and fault injection. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <unistd.h>
#include <microhttpd.h>

#include "http_int.h"

cJSON *sim__faults_json(sim_server *srv)
{
    sim_faults *f = &srv->faults;
    cJSON *j = cJSON_CreateObject();
    cJSON *fail = cJSON_CreateObject();
    sim_j_set(fail, "count", cJSON_CreateNumber(f->fail.count));
    sim_j_set(fail, "after", cJSON_CreateNumber(f->fail.after));
    sim_j_set(fail, "status", cJSON_CreateNumber(f->fail.status));
    sim_j_set(fail, "retry_after", cJSON_CreateNumber(f->fail.retry_after));
    sim_j_set_str(fail, "verb", f->fail.verb);
    sim_j_set_str(fail, "path_prefix", f->fail.prefix);
    sim_j_set(j, "fail", fail);
    sim_j_set(j, "drop_watch_after", cJSON_CreateNumber(f->drop_watch_after));
    sim_j_set(j, "delay_ms", cJSON_CreateNumber(f->delay_ms));
    sim_j_set(j, "reject_auth", cJSON_CreateBool(f->reject_auth));
    cJSON *g = cJSON_CreateObject();
    sim_j_set_str(g, "mode", f->garble);
    sim_j_set(g, "count", cJSON_CreateNumber(f->garble_count));
    sim_j_set_str(g, "path_prefix", f->garble_prefix);
    sim_j_set(j, "garble", g);
    sim_j_set(j, "bookmark_interval", cJSON_CreateNumber(f->bookmark_interval));
    sim_j_set(j, "gzip", cJSON_CreateBool(f->gzip));
    return j;
}

static int copy_str(char *dst, size_t n, const cJSON *v, const char *what, vmdr_err *err)
{
    if (!v)
        return 0;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n)
        return vmdr_err_set(err, "invalid", 400, "faults: %s must be a string shorter than %zu",
                            what, n);
    snprintf(dst, n, "%s", v->valuestring);
    return 0;
}

static int num(const cJSON *o, const char *k, double lo, double hi, double *out, vmdr_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v)
        return 1;
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi)
        return vmdr_err_set(err, "invalid", 400, "faults: %s must be a number in [%g, %g]", k, lo,
                            hi);
    *out = v->valuedouble;
    return 0;
}

int sim_faults_apply(sim_server *srv, const char *json, vmdr_err *err)
{
    cJSON *j = cJSON_Parse(json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return vmdr_err_set(err, "invalid", 400, "faults: the body must be a JSON object");
    }
    static const char *const known[] = {
        "fail",   "drop_watch_after",  "delay_ms", "reject_auth", "compact", "restart",
        "garble", "bookmark_interval", "clear",    "gzip",        "token",   NULL};
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            ok |= !strcmp(it->string, known[i]);
        if (!ok) {
            vmdr_err_set(err, "invalid", 400, "faults: unknown key \"%s\"", it->string);
            cJSON_Delete(j);
            return -1;
        }
    }
    /* Validate everything into a copy first: a bad document changes nothing. */
    pthread_mutex_lock(&srv->fmu);
    sim_faults f = srv->faults;
    pthread_mutex_unlock(&srv->fmu);
    double d;
    int rc = 0;
    if (cJSON_IsTrue(cJSON_GetObjectItem(j, "clear"))) {
        /* settings survive a clear; faults do not */
        double bi = f.bookmark_interval;
        int gz = f.gzip;
        memset(&f, 0, sizeof f);
        f.bookmark_interval = bi;
        f.gzip = gz;
    }
    const cJSON *fail = cJSON_GetObjectItem(j, "fail");
    if (fail) {
        if (!cJSON_IsObject(fail)) {
            rc = vmdr_err_set(err, "invalid", 400, "faults: fail must be an object");
            goto done;
        }
        memset(&f.fail, 0, sizeof f.fail);
        f.fail.status = 500;
        if ((rc = num(fail, "count", 0, 1e9, &d, err)) < 0)
            goto done;
        f.fail.count = rc == 0 ? (int)d : 1;
        if ((rc = num(fail, "status", 100, 599, &d, err)) < 0)
            goto done;
        if (rc == 0)
            f.fail.status = (int)d;
        if ((rc = num(fail, "retry_after", 0, 3600, &d, err)) < 0)
            goto done;
        if (rc == 0)
            f.fail.retry_after = (int)d;
        if ((rc = num(fail, "after", 0, 1e9, &d, err)) < 0)
            goto done;
        if (rc == 0)
            f.fail.after = (int)d;
        if ((rc = copy_str(f.fail.verb, sizeof f.fail.verb, cJSON_GetObjectItem(fail, "verb"),
                           "fail.verb", err)) ||
            (rc = copy_str(f.fail.prefix, sizeof f.fail.prefix,
                           cJSON_GetObjectItem(fail, "path_prefix"), "fail.path_prefix", err)))
            goto done;
    }
    if ((rc = num(j, "drop_watch_after", 0, 1e9, &d, err)) < 0)
        goto done;
    if (rc == 0)
        f.drop_watch_after = (int)d;
    if ((rc = num(j, "delay_ms", 0, 600000, &d, err)) < 0)
        goto done;
    if (rc == 0)
        f.delay_ms = (int)d;
    if ((rc = num(j, "bookmark_interval", 0.05, 3600, &d, err)) < 0)
        goto done;
    if (rc == 0)
        f.bookmark_interval = d;
    const cJSON *gz = cJSON_GetObjectItem(j, "gzip");
    if (gz) {
        if (!cJSON_IsBool(gz)) {
            rc = vmdr_err_set(err, "invalid", 400, "faults: gzip must be a boolean");
            goto done;
        }
        f.gzip = cJSON_IsTrue(gz);
    }
    const cJSON *ra = cJSON_GetObjectItem(j, "reject_auth");
    if (ra) {
        if (!cJSON_IsBool(ra)) {
            rc = vmdr_err_set(err, "invalid", 400, "faults: reject_auth must be a boolean");
            goto done;
        }
        f.reject_auth = cJSON_IsTrue(ra);
    }
    const cJSON *g = cJSON_GetObjectItem(j, "garble");
    if (g) {
        const char *mode = sim_j_str(g, "mode");
        if (!cJSON_IsObject(g) || !mode ||
            (strcmp(mode, "truncate") && strcmp(mode, "html") && strcmp(mode, "content-type"))) {
            rc = vmdr_err_set(err, "invalid", 400,
                              "faults: garble must be {mode = truncate|html|content-type, "
                              "count = N, path_prefix = P}");
            goto done;
        }
        snprintf(f.garble, sizeof f.garble, "%s", mode);
        if ((rc = num(g, "count", 0, 1e9, &d, err)) < 0)
            goto done;
        f.garble_count = rc == 0 ? (int)d : 1;
        f.garble_prefix[0] = '\0';
        if ((rc = copy_str(f.garble_prefix, sizeof f.garble_prefix,
                           cJSON_GetObjectItem(g, "path_prefix"), "garble.path_prefix", err)))
            goto done;
    }
    const cJSON *tok = cJSON_GetObjectItem(j, "token");
    if (tok && (!cJSON_IsString(tok) || !*tok->valuestring || strlen(tok->valuestring) > 4096 ||
                strpbrk(tok->valuestring, " \t\r\n"))) {
        rc = vmdr_err_set(err, "invalid", 400,
                          "faults: token must be a non-empty string without white space");
        goto done;
    }
    double restart = 0;
    if ((rc = num(j, "restart", 0, 3600, &restart, err)) < 0)
        goto done;
    const cJSON *compact = cJSON_GetObjectItem(j, "compact");
    rc = 0;
    pthread_mutex_lock(&srv->fmu);
    srv->faults = f;
    if (tok) {
        /* a token rotation: from now on only the new token is accepted (a setting, not a
         * fault: clear keeps it) */
        free(srv->token);
        srv->token = sim_xstrdup(tok->valuestring);
    }
    if (restart > 0)
        srv->restart_seconds = (int)(restart + 0.999);
    pthread_mutex_unlock(&srv->fmu);
    if (cJSON_IsTrue(compact)) {
        pthread_mutex_lock(&srv->store.mu);
        sim_store_compact(&srv->store);
        pthread_mutex_unlock(&srv->store.mu);
    }
done:
    cJSON_Delete(j);
    return rc < 0 ? -1 : 0;
}

enum MHD_Result sim__admin(ctx *x, char **seg, int nseg)
{
    if (!sim__authenticated(x))
        return sim__reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
    sim_server *srv = x->srv;
    if (nseg == 2 && !strcmp(seg[1], "faults")) {
        if (sim__is_method(x, "POST") || sim__is_method(x, "PUT")) {
            vmdr_err e = {0};
            char *body = sim_xmalloc(x->body_len + 1);
            memcpy(body, x->body ? x->body : "", x->body_len);
            body[x->body_len] = '\0';
            int rc = sim_faults_apply(srv, body, &e);
            free(body);
            if (rc)
                return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
        } else if (!sim__is_method(x, "GET")) {
            return sim__reply_method(x);
        }
        pthread_mutex_lock(&srv->fmu);
        cJSON *j = sim__faults_json(srv);
        pthread_mutex_unlock(&srv->fmu);
        return sim__reply_cjson(x, 200, j);
    }
    if (nseg == 2 && !strcmp(seg[1], "state") && sim__is_method(x, "GET")) {
        cJSON *j = cJSON_CreateObject();
        sim_store *st = &srv->store;
        pthread_mutex_lock(&st->mu);
        sim_j_set(j, "resourceVersion", cJSON_CreateNumber((double)st->rv));
        sim_j_set(j, "compactedResourceVersion", cJSON_CreateNumber((double)st->floor));
        sim_j_set(j, "events", cJSON_CreateNumber((double)st->ev_n));
        cJSON *counts = cJSON_CreateObject();
        for (int r = 0; r < SIM_NRES; r++)
            sim_j_set(counts, sim_resources[r].plural, cJSON_CreateNumber((double)st->coll[r].n));
        sim_j_set(j, "objects", counts);
        pthread_mutex_unlock(&st->mu);
        sim_j_set(j, "requests",
                  cJSON_CreateNumber((double)__atomic_load_n(&srv->requests, __ATOMIC_RELAXED)));
        pthread_mutex_lock(&srv->fmu);
        sim_j_set(j, "faults", sim__faults_json(srv));
        pthread_mutex_unlock(&srv->fmu);
        sim_j_set(j, "uptime", cJSON_CreateNumber(sim_mono() - srv->started));
        return sim__reply_cjson(x, 200, j);
    }
    return sim__reply_no_route(x);
}

/* Returns 1 (and queues the reply) when an injected fault answers this request. */
int sim__faults_before(ctx *x, enum MHD_Result *rc)
{
    sim_server *srv = x->srv;
    pthread_mutex_lock(&srv->fmu);
    sim_faults *f = &srv->faults;
    int delay = f->delay_ms;
    int reject = f->reject_auth;
    int fail = 0, status = 0, retry = 0;
    if (f->fail.count > 0 && (!*f->fail.verb || !strcasecmp(f->fail.verb, x->method)) &&
        (!*f->fail.prefix || !strncmp(x->url, f->fail.prefix, strlen(f->fail.prefix)))) {
        if (f->fail.after > 0) {
            /* let this one through: "fail the second page" is after = 1 */
            f->fail.after--;
        } else {
            f->fail.count--;
            fail = 1;
            status = f->fail.status;
            retry = f->fail.retry_after;
        }
    }
    if (f->garble_count > 0 &&
        (!*f->garble_prefix || !strncmp(x->url, f->garble_prefix, strlen(f->garble_prefix)))) {
        f->garble_count--;
        x->garble = 1;
        snprintf(x->garble_mode, sizeof x->garble_mode, "%s", f->garble);
    }
    pthread_mutex_unlock(&srv->fmu);
    if (delay > 0)
        usleep((useconds_t)delay * 1000);
    if (reject) {
        *rc = sim__reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
        return 1;
    }
    if (fail) {
        char msg[128], ra[16];
        snprintf(msg, sizeof msg, "injected fault: %d %s", status, sim__reason_for(status));
        snprintf(ra, sizeof ra, "%d", retry);
        cJSON *s = sim__status_obj(status, sim__reason_for(status), msg, NULL, NULL, NULL);
        if (retry) {
            cJSON *d = cJSON_CreateObject();
            sim_j_set(d, "retryAfterSeconds", cJSON_CreateNumber(retry));
            sim_j_set(s, "details", d);
        }
        size_t len;
        char *body = sim_j_print(s, &len);
        cJSON_Delete(s);
        *rc = sim__reply_raw(x, status, "application/json", body, len, retry ? ra : NULL);
        return 1;
    }
    return 0;
}
