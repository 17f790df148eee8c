/* vmdr-sim HTTP layer: the Kubernetes REST API over libmicrohttpd (one thread per
 * connection, so a watch stream may block in its content callback). This file: replies,
 * routing, authentication, the request loop and the daemon. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <zlib.h>

#include "http_int.h"

#define MAX_BODY (3 * 1024 * 1024) /* the API server's request size limit */

typedef struct req {
    sim_buf body;
    int too_large;
} req;

/* ---- replies -------------------------------------------------------------------------- */

enum MHD_Result sim__reply_raw(ctx *x, int status, const char *ctype, char *body, size_t len,
                               const char *retry_after)
{
    if (x->garble) {
        if (!strcmp(x->garble_mode, "truncate")) {
            len = len / 2;
        } else if (!strcmp(x->garble_mode, "html")) {
            free(body);
            body = sim_xstrdup("<html><head><title>502 Bad Gateway</title></head><body>"
                               "<h1>Bad Gateway</h1><p>upstream sent an invalid response"
                               "</p></body></html>\n");
            len = strlen(body);
            status = 200;
            ctype = "text/html; charset=utf-8";
        } else {
            ctype = "text/plain; charset=utf-8";
        }
    }
    int gz = 0;
    if (x->gzip && len >= SIM_GZIP_MIN) {
        size_t zl;
        char *z = sim__gzip(body, len, &zl);
        if (z) {
            free(body);
            body = z;
            len = zl;
            gz = 1;
        }
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    if (gz)
        MHD_add_response_header(r, "Content-Encoding", "gzip");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result rc = sim__queue(x, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

enum MHD_Result sim__queue(ctx *x, unsigned status, struct MHD_Response *r)
{
    if (x->srv->verbose) {
        /* the path only: query values may carry anything a client put there */
        fprintf(stderr, "vmdr-sim: %s %s%s%s -> %u\n", x->method, x->url,
                sim__arg(x, "labelSelector") ? " (selected)" : "",
                sim__arg_true(x, "watch") ? " (watch)" : "", status);
    }
    return MHD_queue_response(x->c, status, r);
}

char *sim__gzip(const char *in, size_t n, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)n);
    char *out = sim_xmalloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

enum MHD_Result sim__reply_json(ctx *x, int status, char *body, size_t len)
{
    return sim__reply_raw(x, status, "application/json", body, len, NULL);
}

enum MHD_Result sim__reply_cjson(ctx *x, int status, cJSON *j)
{
    size_t len;
    char *s = sim_j_print(j, &len);
    cJSON_Delete(j);
    return sim__reply_json(x, status, s, len);
}

const char *sim__reason_for(int code)
{
    switch (code) {
    case 400:
        return "BadRequest";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "NotFound";
    case 405:
        return "MethodNotAllowed";
    case 406:
        return "NotAcceptable";
    case 409:
        return "Conflict";
    case 410:
        return "Expired";
    case 413:
        return "RequestEntityTooLarge";
    case 415:
        return "UnsupportedMediaType";
    case 422:
        return "Invalid";
    case 429:
        return "TooManyRequests";
    case 500:
        return "InternalError";
    case 503:
        return "ServiceUnavailable";
    case 504:
        return "Timeout";
    default:
        return "";
    }
}

/* A metav1.Status as the API server writes it; details carry name/group/kind when given. */
cJSON *sim__status_obj(int code, const char *reason, const char *message, const char *name,
                       const char *group, const char *kind)
{
    cJSON *s = cJSON_CreateObject();
    sim_j_set_str(s, "kind", "Status");
    sim_j_set_str(s, "apiVersion", "v1");
    sim_j_set(s, "metadata", cJSON_CreateObject());
    sim_j_set_str(s, "status", code < 400 ? "Success" : "Failure");
    if (message)
        sim_j_set_str(s, "message", message);
    if (reason && *reason)
        sim_j_set_str(s, "reason", reason);
    cJSON *d = cJSON_CreateObject();
    if (name)
        sim_j_set_str(d, "name", name);
    if (group && *group)
        sim_j_set_str(d, "group", group);
    if (kind)
        sim_j_set_str(d, "kind", kind);
    if (name || kind || code == 404)
        sim_j_set(s, "details", d);
    else
        cJSON_Delete(d);
    sim_j_set(s, "code", cJSON_CreateNumber(code));
    return s;
}

enum MHD_Result sim__reply_status(ctx *x, int code, const char *reason, const char *name, int res,
                                  const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *group = res >= 0 ? sim_resources[res].group : NULL;
    const char *kind = res >= 0 ? sim_resources[res].plural : NULL;
    return sim__reply_cjson(
        x, code,
        sim__status_obj(code, reason ? reason : sim__reason_for(code), msg, name, group, kind));
}

enum MHD_Result sim__reply_not_found(ctx *x, int res, const char *name)
{
    char q[96];
    sim_res_qualified(res, q);
    return sim__reply_status(x, 404, "NotFound", name, res, "%s \"%s\" not found", q, name);
}

enum MHD_Result sim__reply_no_route(ctx *x)
{
    cJSON *s = sim__status_obj(404, "NotFound", "the server could not find the requested resource",
                               NULL, NULL, NULL);
    return sim__reply_cjson(x, 404, s);
}

enum MHD_Result sim__reply_method(ctx *x)
{
    return sim__reply_status(x, 405, "MethodNotAllowed", NULL, -1,
                             "the server does not allow this method on the requested resource");
}

/* 422 with one cause, as field validation reports it. */
enum MHD_Result sim__reply_invalid(ctx *x, int res, const char *name, const char *field,
                                   const char *detail)
{
    const sim_res *r = &sim_resources[res];
    char gk[128], msg[1024], cause[768];
    snprintf(gk, sizeof gk, "%s%s%s", r->kind, *r->group ? "." : "", r->group);
    snprintf(cause, sizeof cause, "%s", detail);
    snprintf(msg, sizeof msg, "%s \"%s\" is invalid: %s: %s", gk, name ? name : "", field, cause);
    cJSON *s = sim__status_obj(422, "Invalid", msg, name ? name : "", r->group, r->kind);
    cJSON *causes = cJSON_CreateArray();
    cJSON *c = cJSON_CreateObject();
    sim_j_set_str(c, "reason", "FieldValueInvalid");
    sim_j_set_str(c, "message", cause);
    sim_j_set_str(c, "field", field);
    cJSON_AddItemToArray(causes, c);
    sim_j_set(sim_j_obj(s, "details"), "causes", causes);
    return sim__reply_cjson(x, 422, s);
}

enum MHD_Result sim__reply_obj_text(ctx *x, int status, int res, const char *text, size_t len)
{
    if (x->table) {
        cJSON *obj = cJSON_ParseWithLength(text, len);
        const char *rv = sim_j_str(sim_j_obj(obj, "metadata"), "resourceVersion");
        cJSON *t = sim__table_new(res, rv ? strtoull(rv, NULL, 10) : 0, NULL);
        cJSON_AddItemToArray(cJSON_GetObjectItem(t, "rows"), sim__table_row(x, res, obj));
        cJSON_Delete(obj);
        return sim__reply_cjson(x, status, t);
    }
    char *copy = sim_xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    return sim__reply_json(x, status, copy, len);
}

const char *sim__arg(ctx *x, const char *k)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, k);
}

int sim__arg_true(ctx *x, const char *k)
{
    const char *v = sim__arg(x, k);
    return v && (!strcmp(v, "true") || !strcmp(v, "1"));
}

/* ---- routing -------------------------------------------------------------------------------- */

int sim__is_method(ctx *x, const char *m)
{
    return !strcmp(x->method, m);
}

static enum MHD_Result resource(ctx *x, char **seg, int nseg, int *handled)
{
    const char *group, *version;
    char **rest;
    int nrest;
    *handled = 1;
    if (nseg >= 3 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1")) {
        group = "";
        version = "v1";
        rest = seg + 2;
        nrest = nseg - 2;
    } else if (nseg >= 4 && !strcmp(seg[0], "apis")) {
        group = seg[1];
        version = seg[2];
        rest = seg + 3;
        nrest = nseg - 3;
    } else {
        *handled = 0;
        return MHD_YES;
    }
    const char *ns = NULL, *name = NULL, *sub = NULL;
    int res = -1;
    if (nrest >= 3 && !strcmp(rest[0], "namespaces") &&
        (res = sim_res_find(group, version, rest[2])) >= 0 && sim_resources[res].namespaced) {
        ns = rest[1];
        name = nrest >= 4 ? rest[3] : NULL;
        sub = nrest >= 5 ? rest[4] : NULL;
        if (nrest > 5)
            return sim__reply_no_route(x);
    } else {
        res = sim_res_find(group, version, rest[0]);
        if (res < 0 || nrest > 3)
            return sim__reply_no_route(x);
        name = nrest >= 2 ? rest[1] : NULL;
        sub = nrest >= 3 ? rest[2] : NULL;
        if (sim_resources[res].namespaced && name)
            return sim__reply_no_route(x); /* /api/v1/persistentvolumeclaims/NAME does not exist */
    }
    if (sub && (strcmp(sub, "status") || !sim_resources[res].has_status))
        return sim__reply_no_route(x);
    if (!name) {
        if (sim__is_method(x, "GET"))
            return sim__arg_true(x, "watch") ? sim__do_watch(x, res, ns) : sim__do_list(x, res, ns);
        if (sim__is_method(x, "POST")) {
            if (sim_resources[res].namespaced && !ns)
                return sim__reply_method(x);
            return sim__do_create(x, res, ns);
        }
        return sim__reply_method(x);
    }
    if (sim__is_method(x, "GET"))
        return sim__do_get(x, res, ns, name);
    if (sim__is_method(x, "PUT"))
        return sim__do_update(x, res, ns, name, sub);
    if (sim__is_method(x, "PATCH"))
        return sim__do_patch(x, res, ns, name, sub);
    if (sim__is_method(x, "DELETE") && !sub)
        return sim__do_delete(x, res, ns, name);
    return sim__reply_method(x);
}

/* ---- auth, faults, admin ------------------------------------------------------------------- */

static int token_ok(ctx *x)
{
    const char *h = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7))
        return 0;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    /* the admin endpoint may rotate the token while other threads compare it */
    pthread_mutex_lock(&x->srv->fmu);
    const char *want = x->srv->token;
    int ok = 0;
    if (want) {
        size_t a = strlen(t), b = strlen(want);
        /* constant-time compare: the sim may listen beyond loopback for a demo */
        unsigned diff = (unsigned)(a ^ b);
        for (size_t i = 0; i < a && i < b; i++)
            diff |= (unsigned)(t[i] ^ want[i]);
        ok = diff == 0;
    }
    pthread_mutex_unlock(&x->srv->fmu);
    return ok;
}

static int cert_ok(ctx *x)
{
    if (!x->srv->client_ca)
        return 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return 0;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned n = 0;
    if (!gnutls_certificate_get_peers(s, &n) || n == 0)
        return 0;
    unsigned status = 0;
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS)
        return 0;
    return status == 0;
}

int sim__authenticated(ctx *x)
{
    pthread_mutex_lock(&x->srv->fmu);
    int open = !x->srv->token && !x->srv->client_ca;
    pthread_mutex_unlock(&x->srv->fmu);
    if (open)
        return 1;
    return token_ok(x) || cert_ok(x);
}

static void accept_flags(ctx *x)
{
    const char *inc = sim__arg(x, "includeObject");
    x->include = !inc || !strcmp(inc, "Metadata") ? 1 : !strcmp(inc, "Object") ? 2 : 0;
    const char *ae = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Accept-Encoding");
    pthread_mutex_lock(&x->srv->fmu);
    x->gzip = x->srv->faults.gzip && ae && strstr(ae, "gzip");
    pthread_mutex_unlock(&x->srv->fmu);
    const char *a = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Accept");
    if (!a)
        return;
    /* Clients list what they accept in preference order; the first we can serve wins. */
    char *copy = sim_xstrdup(a), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strstr(tok, "as=Table") && strstr(tok, "g=meta.k8s.io") &&
            (strstr(tok, "v=v1") || strstr(tok, "v=v1beta1")) && !strstr(tok, "protobuf")) {
            x->table = 1;
            break;
        }
        if (strstr(tok, "as=APIGroupDiscoveryList") && strstr(tok, "v=v2") &&
            !strstr(tok, "v=v2beta1") && !strstr(tok, "protobuf")) {
            x->aggregated = 1;
            break;
        }
        if (strstr(tok, "application/json") && !strstr(tok, "as="))
            break;
    }
    free(copy);
}

static enum MHD_Result handle(ctx *x)
{
    char *path = sim_xstrdup(x->url);
    char *seg[16];
    int nseg = 0;
    char *save = NULL;
    for (char *t = strtok_r(path, "/", &save); t && nseg < 16; t = strtok_r(NULL, "/", &save))
        seg[nseg++] = t;
    enum MHD_Result rc;
    int handled = 0;
    if (nseg >= 1 && !strcmp(seg[0], "_sim")) {
        rc = sim__admin(x, seg, nseg);
        goto done;
    }
    __atomic_add_fetch(&x->srv->requests, 1, __ATOMIC_RELAXED);
    if (sim__faults_before(x, &rc))
        goto done;
    if (!sim__authenticated(x)) {
        rc = sim__reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
        goto done;
    }
    accept_flags(x);
    rc = sim__discovery(x, seg, nseg, &handled);
    if (handled)
        goto done;
    rc = resource(x, seg, nseg, &handled);
    if (handled)
        goto done;
    rc = sim__reply_no_route(x);
done:
    free(path);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.n + *upload_size > MAX_BODY)
            r->too_large = 1;
        else
            sim_buf_add(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    ctx x = {0};
    x.srv = cls;
    x.c = c;
    x.url = url;
    x.method = method;
    x.body = r->body.p;
    x.body_len = r->body.n;
    if (r->too_large)
        return sim__reply_status(&x, 413, "RequestEntityTooLarge", NULL, -1,
                                 "Request entity too large: limit is %d", MAX_BODY);
    return handle(&x);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    req *r = *con_cls;
    if (r) {
        sim_buf_free(&r->body);
        free(r);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    sim_server *srv = cls;
    if (srv->quiet)
        return;
    fputs("vmdr-sim: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *sim_http_start(sim_server *srv, const char *cert_pem, const char *key_pem,
                                  vmdr_err *err)
{
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (srv->tls)
        flags |= MHD_USE_TLS;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)srv->port);
    if (inet_pton(AF_INET, srv->host, &sa.sin_addr) != 1) {
        vmdr_err_set(err, "invalid", 0, "--listen: '%s' is not an IPv4 address", srv->host);
        return NULL;
    }
    struct MHD_OptionItem opts[8];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &sa};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 300, NULL};
    if (srv->tls) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert_pem};
        if (srv->ca_pem)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, srv->ca_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)srv->port, NULL, NULL, on_request, srv,
                                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        vmdr_err_set(err, "unreachable", errno, "cannot listen on %s:%d: %s", srv->host, srv->port,
                     errno ? strerror(errno) : "libmicrohttpd refused the options");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port)
        srv->port = info->port;
    return d;
}
