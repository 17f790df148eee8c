/* vmdr-sim list and get: selectors, limit/continue, streamed list bodies. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>
#include <zlib.h>

#include "http_int.h"

/* ---- continue tokens: base64 of {"v":"meta.k8s.io/v1","rv":N,"start":"key\u0000"} ------ */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_enc(sim_buf *out, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        char q[4] = {B64[v >> 18 & 63], B64[v >> 12 & 63], i + 1 < n ? B64[v >> 6 & 63] : '=',
                     i + 2 < n ? B64[v & 63] : '='};
        sim_buf_add(out, q, 4);
    }
}

static int b64_dec(sim_buf *out, const char *s)
{
    unsigned v = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(B64, *s);
        if (!p || !*s)
            return -1;
        v = v << 6 | (unsigned)(p - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char c = (char)(v >> bits & 0xff);
            sim_buf_add(out, &c, 1);
        }
    }
    return 0;
}

static char *continue_token(uint64_t rv, const char *key)
{
    sim_buf j = {0}, out = {0};
    sim_buf_printf(&j, "{\"v\":\"meta.k8s.io/v1\",\"rv\":%llu,\"start\":", (unsigned long long)rv);
    sim_buf k = {0};
    sim_buf_adds(&k, key);
    sim_buf_json_str(&j, k.p);
    sim_buf_free(&k);
    /* "start" is the last key returned plus a NUL: the next page begins after it. */
    j.n -= 1;
    sim_buf_adds(&j, "\\u0000\"}");
    b64_enc(&out, (const unsigned char *)j.p, j.n);
    sim_buf_free(&j);
    return sim_buf_take(&out, NULL);
}

static int parse_continue(const char *tok, uint64_t *rv, char **start)
{
    sim_buf d = {0};
    if (b64_dec(&d, tok) || !d.p) {
        sim_buf_free(&d);
        return -1;
    }
    cJSON *j = cJSON_ParseWithLength(d.p, d.n);
    sim_buf_free(&d);
    const cJSON *r = j ? cJSON_GetObjectItem(j, "rv") : NULL;
    const char *s = j ? sim_j_str(j, "start") : NULL;
    if (!cJSON_IsNumber(r) || !s) {
        cJSON_Delete(j);
        return -1;
    }
    *rv = (uint64_t)r->valuedouble;
    *start = sim_xstrdup(s); /* the NUL ends the C string: exactly the last key */
    cJSON_Delete(j);
    return 0;
}

/* ---- object access ----------------------------------------------------------------------- */

/* A list response as segments pointing into shared object texts: built under the store
 * lock (pointers only), sent after it is released. */
typedef struct lseg {
    const char *p;
    size_t n;
} lseg;

typedef struct listbody {
    lseg *v;
    size_t n, cap, i, off;
    sim_text **refs;
    size_t nrefs;
    sim_buf head, tail;
    int gz, gz_done; /* gzip the stream (chunked: the size is not known ahead) */
    z_stream z;
} listbody;

static void lb_add(listbody *lb, const char *p, size_t n)
{
    if (lb->n == lb->cap) {
        lb->cap = lb->cap ? lb->cap * 2 : 256;
        lb->v = sim_xrealloc(lb->v, lb->cap * sizeof *lb->v);
    }
    lb->v[lb->n].p = p;
    lb->v[lb->n].n = n;
    lb->n++;
}

/* Core lists carry items without apiVersion/kind (a CR list keeps them). */
static void lb_item(listbody *lb, int res, sim_text *t, int first)
{
    lb->refs[lb->nrefs++] = sim_text_ref(t);
    if (!first)
        lb_add(lb, ",", 1);
    if (!sim_resources[res].custom && t->bare) {
        lb_add(lb, "{", 1);
        lb_add(lb, t->s + t->bare, t->len - t->bare);
    } else {
        lb_add(lb, t->s, t->len);
    }
}

/* An object as it was at a continue token's resourceVersion, when it has changed since:
 * the state before the first event after that RV (t NULL: it did not exist then). */
typedef struct past {
    char *key;
    const char *ns, *name; /* the event's, valid under the store lock */
    sim_text *t;
    cJSON *json;
    uint64_t rv;
} past;

static int past_cmp(const void *a, const void *b)
{
    const past *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : x->rv < y->rv ? -1 : x->rv > y->rv;
}

/* Collects, sorted by key, the objects of res (after start, under prefix) that changed after
 * rv, with their state at rv. Caller holds the store lock. */
static past *past_states(sim_store *st, int res, uint64_t rv, const char *start, const char *prefix,
                         size_t *out_n)
{
    past *v = NULL;
    size_t n = 0;
    for (size_t k = 0; k < st->ev_n; k++) {
        const sim_event *e = &st->ev[(st->ev_head + k) % st->ev_cap];
        if (e->rv <= rv || e->res != res)
            continue;
        size_t kl = strlen(e->ns) + strlen(e->name) + 2;
        char *key = sim_xmalloc(kl);
        snprintf(key, kl, "%s%s%s", e->ns, *e->ns ? "/" : "", e->name);
        if ((start && strcmp(key, start) <= 0) ||
            (prefix && strncmp(key, prefix, strlen(prefix)))) {
            free(key);
            continue;
        }
        v = sim_xrealloc(v, (n + 1) * sizeof *v);
        v[n] = (past){key, e->ns, e->name, e->type == SIM_EV_ADDED ? NULL : e->before, NULL, e->rv};
        n++;
    }
    if (n)
        qsort(v, n, sizeof *v, past_cmp);
    /* keep the first event of each key: the state before it is the state at rv */
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (m && !strcmp(v[m - 1].key, v[k].key)) {
            free(v[k].key);
            continue;
        }
        v[m++] = v[k];
    }
    for (size_t k = 0; k < m; k++)
        if (v[k].t)
            v[k].json = cJSON_ParseWithLength(v[k].t->s, v[k].t->len);
    *out_n = m;
    return v;
}

static void past_free(past *v, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        free(v[k].key);
        cJSON_Delete(v[k].json);
    }
    free(v);
}

static void lb_free(void *cls)
{
    listbody *lb = cls;
    for (size_t i = 0; i < lb->nrefs; i++)
        sim_text_unref(lb->refs[i]);
    free(lb->refs);
    free(lb->v);
    sim_buf_free(&lb->head);
    sim_buf_free(&lb->tail);
    if (lb->gz)
        deflateEnd(&lb->z);
    free(lb);
}

/* The gzip variant: deflate the segments straight into MHD's buffer. */
static ssize_t lb_read_gz(listbody *lb, char *buf, size_t max)
{
    z_stream *z = &lb->z;
    z->next_out = (Bytef *)buf;
    z->avail_out = (uInt)max;
    while (z->avail_out > 0 && !lb->gz_done) {
        if (z->avail_in == 0 && lb->i < lb->n) {
            z->next_in = (Bytef *)lb->v[lb->i].p;
            z->avail_in = (uInt)lb->v[lb->i].n;
            lb->i++;
            continue;
        }
        int finish = lb->i == lb->n && z->avail_in == 0;
        int rc = deflate(z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_END)
            lb->gz_done = 1;
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        else if (rc == Z_BUF_ERROR && finish)
            break;
    }
    size_t w = max - z->avail_out;
    if (w == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)w;
}

static ssize_t lb_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    listbody *lb = cls;
    size_t w = 0;
    (void)pos;
    if (lb->gz)
        return lb_read_gz(lb, buf, max);
    while (w < max && lb->i < lb->n) {
        lseg *sg = &lb->v[lb->i];
        size_t k = sg->n - lb->off < max - w ? sg->n - lb->off : max - w;
        memcpy(buf + w, sg->p + lb->off, k);
        w += k;
        lb->off += k;
        if (lb->off == sg->n) {
            lb->i++;
            lb->off = 0;
        }
    }
    if (w == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)w;
}

enum MHD_Result sim__do_list(ctx *x, int res, const char *ns)
{
    sim_store *st = &x->srv->store;
    vmdr_err e = {0};
    sim_selector *ls = sim_selector_parse(sim__arg(x, "labelSelector"), &e);
    if (!ls)
        return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    sim_fieldsel fs;
    if (sim_fieldsel_parse(&fs, sim__arg(x, "fieldSelector"), &e)) {
        sim_selector_free(ls);
        return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    }
    long limit = 0;
    const char *ls_ = sim__arg(x, "limit");
    if (ls_ && *ls_) {
        char *end;
        limit = strtol(ls_, &end, 10);
        if (*end || limit < 0)
            limit = 0;
    }
    char *start = NULL;
    uint64_t tok_rv = 0;
    const char *cont = sim__arg(x, "continue");
    if (cont && *cont && parse_continue(cont, &tok_rv, &start)) {
        sim_selector_free(ls);
        sim_fieldsel_free(&fs);
        return sim__reply_status(
            x, 400, "BadRequest", NULL, -1,
            "continue key is not valid: incorrect encoded start resourceVersion "
            "(version meta.k8s.io/v1)");
    }
    pthread_mutex_lock(&st->mu);
    if (start && tok_rv < st->floor) {
        pthread_mutex_unlock(&st->mu);
        free(start);
        sim_selector_free(ls);
        sim_fieldsel_free(&fs);
        return sim__reply_status(
            x, 410, "Expired", NULL, -1,
            "The provided continue parameter is too old to display a consistent "
            "list result. You can start a new list without the continue "
            "parameter, or use the continue token in this response to retrieve "
            "the remainder of the results. Continuing with the provided token "
            "results in an inconsistent list - objects that were created, "
            "modified, or deleted between the time the first chunk was returned "
            "and now may show up in the list.");
    }
    uint64_t rv = start ? tok_rv : st->rv;
    sim_coll *c = &st->coll[res];
    char *prefix = NULL;
    size_t plen = 0;
    if (ns && sim_resources[res].namespaced) {
        plen = strlen(ns) + 1;
        prefix = sim_xmalloc(plen + 1);
        snprintf(prefix, plen + 1, "%s/", ns);
    }
    size_t i = start    ? sim_store_lower_bound(c, start)
               : prefix ? sim_store_lower_bound(c, prefix)
                        : 0;
    if (start && i < c->n && !strcmp(c->v[i]->key, start))
        i++;
    /* A continued list serves its first page's snapshot: objects changed since then are
     * shown as they were (from the history), objects created since are left out. */
    size_t np = 0, j = 0;
    past *pv = start && tok_rv < st->rv ? past_states(st, res, tok_rv, start, prefix, &np) : NULL;
    cJSON *table = NULL;
    listbody *lb = NULL;
    char av[64];
    sim_res_api_version(res, av);
    if (x->table) {
        table = sim__table_new(res, rv, NULL);
    } else {
        lb = calloc(1, sizeof *lb);
        if (!lb)
            abort();
        lb->refs = sim_xmalloc((c->n - (i < c->n ? i : c->n) + np + 1) * sizeof *lb->refs);
        sim_buf_printf(&lb->head,
                       "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":{\"resourceVersion\":"
                       "\"%llu\"",
                       sim_resources[res].list_kind, av, (unsigned long long)rv);
        lb_add(lb, NULL, 0); /* the head, filled in once continue is known */
    }
    int any_label = !sim_selector_empty(ls), any_field = fs.n > 0;
    long n = 0, remaining = 0;
    const char *last_key = NULL;
    for (;;) {
        sim_obj *o = i < c->n ? c->v[i] : NULL;
        if (o && prefix && strncmp(o->key, prefix, plen))
            o = NULL; /* past the namespace */
        past *p = j < np ? &pv[j] : NULL;
        if (!o && !p)
            break;
        int cmp = !o ? 1 : !p ? -1 : strcmp(o->key, p->key);
        const char *key, *ons, *oname;
        sim_text *t;
        const cJSON *json;
        if (cmp < 0) {
            i++;
            key = o->key, ons = o->ns, oname = o->name, t = o->ref, json = o->json;
        } else {
            if (cmp == 0)
                i++; /* the current state is newer than the snapshot */
            j++;
            if (!p->t)
                continue; /* created after the snapshot */
            key = p->key, ons = p->ns, oname = p->name, t = p->t, json = p->json;
        }
        if ((any_field && !sim_fieldsel_matches(&fs, ons, oname)) ||
            (any_label && !sim_selector_matches(ls, sim_j_path(json, "metadata.labels"))))
            continue;
        if (limit && n == limit) {
            remaining++;
            continue;
        }
        if (table)
            cJSON_AddItemToArray(cJSON_GetObjectItem(table, "rows"), sim__table_row(x, res, json));
        else
            lb_item(lb, res, t, n == 0);
        last_key = key;
        n++;
    }
    char *next = remaining ? continue_token(rv, last_key) : NULL;
    past_free(pv, np);
    pthread_mutex_unlock(&st->mu);
    free(prefix);
    free(start);
    sim_selector_free(ls);
    sim_fieldsel_free(&fs);
    if (table) {
        if (next) {
            cJSON *md = sim_j_obj(table, "metadata");
            sim_j_set_str(md, "continue", next);
            sim_j_set(md, "remainingItemCount", cJSON_CreateNumber((double)remaining));
        }
        free(next);
        return sim__reply_cjson(x, 200, table);
    }
    if (next)
        sim_buf_printf(&lb->head, ",\"continue\":\"%s\",\"remainingItemCount\":%ld", next,
                       remaining);
    free(next);
    sim_buf_adds(&lb->head, "},\"items\":[");
    lb->v[0].p = lb->head.p;
    lb->v[0].n = lb->head.n;
    sim_buf_adds(&lb->tail, "]}");
    lb_add(lb, lb->tail.p, lb->tail.n);
    size_t total = 0;
    for (size_t k = 0; k < lb->n; k++)
        total += lb->v[k].n;
    if (x->garble) {
        /* a malformed-reply fault rewrites the body: materialise it */
        sim_buf b = {0};
        for (size_t k = 0; k < lb->n; k++)
            sim_buf_add(&b, lb->v[k].p, lb->v[k].n);
        lb_free(lb);
        size_t len;
        char *body = sim_buf_take(&b, &len);
        return sim__reply_json(x, 200, body, len);
    }
    if (x->gzip && total >= SIM_GZIP_MIN) {
        lb->gz = 1;
        if (deflateInit2(&lb->z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            lb->gz = 0;
            lb_free(lb);
            return sim__reply_status(x, 500, "InternalError", NULL, -1, "deflateInit2 failed");
        }
    }
    struct MHD_Response *r = MHD_create_response_from_callback(lb->gz ? MHD_SIZE_UNKNOWN : total,
                                                               256 * 1024, lb_read, lb, lb_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (lb->gz)
        MHD_add_response_header(r, "Content-Encoding", "gzip");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    enum MHD_Result rc = sim__queue(x, 200, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result sim__do_get(ctx *x, int res, const char *ns, const char *name)
{
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    sim_obj *o = sim_store_get(st, res, ns ? ns : "", name);
    if (!o) {
        pthread_mutex_unlock(&st->mu);
        return sim__reply_not_found(x, res, name);
    }
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    enum MHD_Result rc = sim__reply_obj_text(x, 200, res, text, len);
    free(text);
    return rc;
}
