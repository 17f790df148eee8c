/* vmdr-sim HTTP layer: the Kubernetes REST API over libmicrohttpd (one thread per
 * connection, so a watch stream may block in its content callback), plus /_sim admin. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "sim.h"

#define MAX_BODY (3 * 1024 * 1024) /* the API server's request size limit */

typedef struct req {
    sim_buf body;
    int too_large;
} req;

/* Per-request context handed through the handlers. */
typedef struct ctx {
    sim_server *srv;
    struct MHD_Connection *c;
    const char *url;
    const char *method;
    const char *body;
    size_t body_len;
    int table;          /* the client accepts a meta.k8s.io Table */
    int aggregated;     /* the client accepts aggregated discovery v2 */
    int include;        /* Table rows: 0 none, 1 metadata, 2 object */
    int garble;         /* malformed-reply fault applies to this response */
    char garble_mode[16];
} ctx;

/* ---- replies -------------------------------------------------------------------------- */

static enum MHD_Result reply_raw(ctx *x, int status, const char *ctype, char *body, size_t len,
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
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result rc = MHD_queue_response(x->c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_json(ctx *x, int status, char *body, size_t len)
{
    return reply_raw(x, status, "application/json", body, len, NULL);
}

static enum MHD_Result reply_cjson(ctx *x, int status, cJSON *j)
{
    size_t len;
    char *s = sim_j_print(j, &len);
    cJSON_Delete(j);
    return reply_json(x, status, s, len);
}

static const char *reason_for(int code)
{
    switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 406: return "NotAcceptable";
    case 409: return "Conflict";
    case 410: return "Expired";
    case 413: return "RequestEntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 500: return "InternalError";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    default: return "";
    }
}

/* A metav1.Status as the API server writes it; details carry name/group/kind when given. */
static cJSON *status_obj(int code, const char *reason, const char *message, const char *name,
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

static enum MHD_Result reply_status(ctx *x, int code, const char *reason, const char *name,
                                    int res, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum MHD_Result reply_status(ctx *x, int code, const char *reason, const char *name,
                                    int res, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *group = res >= 0 ? sim_resources[res].group : NULL;
    const char *kind = res >= 0 ? sim_resources[res].plural : NULL;
    return reply_cjson(x, code, status_obj(code, reason ? reason : reason_for(code), msg, name,
                                           group, kind));
}

static enum MHD_Result reply_not_found(ctx *x, int res, const char *name)
{
    char q[96];
    sim_res_qualified(res, q);
    return reply_status(x, 404, "NotFound", name, res, "%s \"%s\" not found", q, name);
}

static enum MHD_Result reply_no_route(ctx *x)
{
    cJSON *s = status_obj(404, "NotFound", "the server could not find the requested resource",
                          NULL, NULL, NULL);
    return reply_cjson(x, 404, s);
}

static enum MHD_Result reply_method(ctx *x)
{
    return reply_status(x, 405, "MethodNotAllowed", NULL, -1,
                        "the server does not allow this method on the requested resource");
}

/* 422 with one cause, as field validation reports it. */
static enum MHD_Result reply_invalid(ctx *x, int res, const char *name, const char *field,
                                     const char *detail)
{
    const sim_res *r = &sim_resources[res];
    char gk[128], msg[1024], cause[768];
    snprintf(gk, sizeof gk, "%s%s%s", r->kind, *r->group ? "." : "", r->group);
    snprintf(cause, sizeof cause, "%s", detail);
    snprintf(msg, sizeof msg, "%s \"%s\" is invalid: %s: %s", gk, name ? name : "", field, cause);
    cJSON *s = status_obj(422, "Invalid", msg, name ? name : "", r->group, r->kind);
    cJSON *causes = cJSON_CreateArray();
    cJSON *c = cJSON_CreateObject();
    sim_j_set_str(c, "reason", "FieldValueInvalid");
    sim_j_set_str(c, "message", cause);
    sim_j_set_str(c, "field", field);
    cJSON_AddItemToArray(causes, c);
    sim_j_set(sim_j_obj(s, "details"), "causes", causes);
    return reply_cjson(x, 422, s);
}

/* ---- discovery ------------------------------------------------------------------------ */

static const char *const VERBS[] = {"create", "delete", "get", "list", "patch", "update",
                                    "watch", NULL};

static cJSON *str_array(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; v[i]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

static cJSON *resource_list(const char *group, const char *version)
{
    cJSON *l = cJSON_CreateObject();
    char gv[96];
    snprintf(gv, sizeof gv, "%s%s%s", group, *group ? "/" : "", version);
    sim_j_set_str(l, "kind", "APIResourceList");
    sim_j_set_str(l, "apiVersion", "v1");
    sim_j_set_str(l, "groupVersion", gv);
    cJSON *rs = cJSON_CreateArray();
    for (int i = 0; i < SIM_NRES; i++) {
        const sim_res *r = &sim_resources[i];
        if (strcmp(r->group, group) || strcmp(r->version, version))
            continue;
        cJSON *o = cJSON_CreateObject();
        sim_j_set_str(o, "name", r->plural);
        sim_j_set_str(o, "singularName", r->singular);
        sim_j_set(o, "namespaced", cJSON_CreateBool(r->namespaced));
        sim_j_set_str(o, "kind", r->kind);
        sim_j_set(o, "verbs", str_array(VERBS));
        if (r->short_names[0])
            sim_j_set(o, "shortNames", str_array(r->short_names));
        if (r->categories[0])
            sim_j_set(o, "categories", str_array(r->categories));
        cJSON_AddItemToArray(rs, o);
        if (r->has_status) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s/status", r->plural);
            cJSON *s = cJSON_CreateObject();
            sim_j_set_str(s, "name", sub);
            sim_j_set_str(s, "singularName", "");
            sim_j_set(s, "namespaced", cJSON_CreateBool(r->namespaced));
            sim_j_set_str(s, "kind", r->kind);
            static const char *const sv[] = {"get", "patch", "update", NULL};
            sim_j_set(s, "verbs", str_array(sv));
            cJSON_AddItemToArray(rs, s);
        }
    }
    sim_j_set(l, "resources", rs);
    return l;
}

static const char *const GROUPS[] = {"kubevirt.io", "coordination.k8s.io", NULL};

static cJSON *group_obj(const char *g)
{
    char gv[96];
    snprintf(gv, sizeof gv, "%s/v1", g);
    cJSON *o = cJSON_CreateObject();
    sim_j_set_str(o, "name", g);
    cJSON *vs = cJSON_CreateArray();
    cJSON *v = cJSON_CreateObject();
    sim_j_set_str(v, "groupVersion", gv);
    sim_j_set_str(v, "version", "v1");
    cJSON_AddItemToArray(vs, v);
    sim_j_set(o, "versions", vs);
    sim_j_set(o, "preferredVersion", cJSON_Duplicate(v, 1));
    return o;
}

/* Aggregated discovery (apidiscovery.k8s.io/v2): every resource of every group in one
 * document, so kubectl needs two requests instead of one per group-version. */
static cJSON *aggregated(int core)
{
    cJSON *l = cJSON_CreateObject();
    sim_j_set_str(l, "kind", "APIGroupDiscoveryList");
    sim_j_set_str(l, "apiVersion", "apidiscovery.k8s.io/v2");
    sim_j_set(l, "metadata", cJSON_CreateObject());
    cJSON *items = cJSON_CreateArray();
    const char *core_groups[] = {"", NULL};
    const char *const *groups = core ? core_groups : GROUPS;
    for (int g = 0; groups[g]; g++) {
        cJSON *it = cJSON_CreateObject();
        cJSON *md = cJSON_CreateObject();
        if (*groups[g])
            sim_j_set_str(md, "name", groups[g]);
        sim_j_set(it, "metadata", md);
        cJSON *vs = cJSON_CreateArray();
        cJSON *v = cJSON_CreateObject();
        sim_j_set_str(v, "version", "v1");
        cJSON *rs = cJSON_CreateArray();
        for (int i = 0; i < SIM_NRES; i++) {
            const sim_res *r = &sim_resources[i];
            if (strcmp(r->group, groups[g]))
                continue;
            cJSON *o = cJSON_CreateObject();
            sim_j_set_str(o, "resource", r->plural);
            cJSON *rk = cJSON_CreateObject();
            sim_j_set_str(rk, "group", r->group);
            sim_j_set_str(rk, "version", r->version);
            sim_j_set_str(rk, "kind", r->kind);
            sim_j_set(o, "responseKind", rk);
            sim_j_set_str(o, "scope", r->namespaced ? "Namespaced" : "Cluster");
            sim_j_set_str(o, "singularResource", r->singular);
            sim_j_set(o, "verbs", str_array(VERBS));
            if (r->short_names[0])
                sim_j_set(o, "shortNames", str_array(r->short_names));
            if (r->categories[0])
                sim_j_set(o, "categories", str_array(r->categories));
            if (r->has_status) {
                cJSON *subs = cJSON_CreateArray();
                cJSON *s = cJSON_CreateObject();
                sim_j_set_str(s, "subresource", "status");
                sim_j_set(s, "responseKind", cJSON_Duplicate(rk, 1));
                static const char *const sv[] = {"get", "patch", "update", NULL};
                sim_j_set(s, "verbs", str_array(sv));
                cJSON_AddItemToArray(subs, s);
                sim_j_set(o, "subresources", subs);
            }
            cJSON_AddItemToArray(rs, o);
        }
        sim_j_set(v, "resources", rs);
        sim_j_set_str(v, "freshness", "Current");
        cJSON_AddItemToArray(vs, v);
        sim_j_set(it, "versions", vs);
        cJSON_AddItemToArray(items, it);
    }
    sim_j_set(l, "items", items);
    return l;
}

static enum MHD_Result reply_aggregated(ctx *x, int core)
{
    size_t len;
    cJSON *j = aggregated(core);
    char *s = sim_j_print(j, &len);
    cJSON_Delete(j);
    return reply_raw(x, 200, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                     s, len, NULL);
}

/* OpenAPI v3, just enough for kubectl: the index, and per group-version the paths with their
 * GVK and the fieldValidation parameter, so kubectl apply/create leave validation to the server
 * (it then skips client-side schema validation, which would need full schemas). No component
 * schemas: kubectl would build strategic merge patches from them, which CRDs refuse. */
static cJSON *openapi_gv(const char *group, const char *version)
{
    cJSON *doc = cJSON_CreateObject();
    sim_j_set_str(doc, "openapi", "3.0.0");
    cJSON *info = cJSON_CreateObject();
    sim_j_set_str(info, "title", "Kubernetes");
    sim_j_set_str(info, "version", "v1.31.0-vmdr-sim");
    sim_j_set(doc, "info", info);
    cJSON *paths = cJSON_CreateObject();
    for (int i = 0; i < SIM_NRES; i++) {
        const sim_res *r = &sim_resources[i];
        if (strcmp(r->group, group) || strcmp(r->version, version))
            continue;
        char base[256], coll[300], item[320];
        if (*r->group)
            snprintf(base, sizeof base, "/apis/%s/%s", r->group, r->version);
        else
            snprintf(base, sizeof base, "/api/%s", r->version);
        snprintf(coll, sizeof coll, "%s%s/%s", base, r->namespaced ? "/namespaces/{namespace}" : "",
                 r->plural);
        snprintf(item, sizeof item, "%s/{name}", coll);
        static const char *const coll_ops[] = {"get", "post", NULL};
        static const char *const item_ops[] = {"get", "put", "patch", "delete", NULL};
        for (int k = 0; k < 2; k++) {
            cJSON *pi = cJSON_CreateObject();
            const char *const *ops = k ? item_ops : coll_ops;
            for (int o = 0; ops[o]; o++) {
                cJSON *op = cJSON_CreateObject();
                cJSON *gvk = cJSON_CreateObject();
                sim_j_set_str(gvk, "group", r->group);
                sim_j_set_str(gvk, "version", r->version);
                sim_j_set_str(gvk, "kind", r->kind);
                sim_j_set(op, "x-kubernetes-group-version-kind", gvk);
                cJSON *params = cJSON_CreateArray();
                if (strcmp(ops[o], "get") && strcmp(ops[o], "delete")) {
                    cJSON *fv = cJSON_CreateObject();
                    sim_j_set_str(fv, "name", "fieldValidation");
                    sim_j_set_str(fv, "in", "query");
                    cJSON *sch = cJSON_CreateObject();
                    sim_j_set_str(sch, "type", "string");
                    sim_j_set(fv, "schema", sch);
                    cJSON_AddItemToArray(params, fv);
                }
                sim_j_set(op, "parameters", params);
                sim_j_set(pi, ops[o], op);
            }
            sim_j_set(paths, k ? item : coll, pi);
        }
    }
    sim_j_set(doc, "paths", paths);
    sim_j_set(doc, "components", cJSON_CreateObject());
    return doc;
}

static enum MHD_Result openapi(ctx *x, char **seg, int nseg)
{
    if (nseg == 2) {
        cJSON *idx = cJSON_CreateObject();
        cJSON *paths = cJSON_CreateObject();
        static const char *const gvs[] = {"api/v1", "apis/kubevirt.io/v1",
                                          "apis/coordination.k8s.io/v1", NULL};
        for (int i = 0; gvs[i]; i++) {
            cJSON *e = cJSON_CreateObject();
            char u[128];
            snprintf(u, sizeof u, "/openapi/v3/%s?hash=%s", gvs[i], VMDR_VERSION);
            sim_j_set_str(e, "serverRelativeURL", u);
            sim_j_set(paths, gvs[i], e);
        }
        sim_j_set(idx, "paths", paths);
        return reply_cjson(x, 200, idx);
    }
    if (nseg == 4 && !strcmp(seg[2], "api") && !strcmp(seg[3], "v1"))
        return reply_cjson(x, 200, openapi_gv("", "v1"));
    if (nseg == 5 && !strcmp(seg[2], "apis")) {
        for (int i = 0; GROUPS[i]; i++)
            if (!strcmp(seg[3], GROUPS[i]) && !strcmp(seg[4], "v1"))
                return reply_cjson(x, 200, openapi_gv(GROUPS[i], "v1"));
    }
    return reply_no_route(x);
}

static enum MHD_Result discovery(ctx *x, char **seg, int nseg, int *handled)
{
    *handled = 1;
    if (nseg >= 2 && !strcmp(seg[0], "openapi") && !strcmp(seg[1], "v3"))
        return openapi(x, seg, nseg);
    if (nseg == 1 && !strcmp(seg[0], "version")) {
        cJSON *v = cJSON_Parse("{\"major\":\"1\",\"minor\":\"31\",\"gitVersion\":"
                               "\"v1.31.0-vmdr-sim\",\"gitCommit\":\"0000000000000000000000000"
                               "000000000000000\",\"gitTreeState\":\"clean\",\"buildDate\":"
                               "\"2026-01-01T00:00:00Z\",\"goVersion\":\"go1.22.0\","
                               "\"compiler\":\"gc\",\"platform\":\"linux/amd64\"}");
        return reply_cjson(x, 200, v);
    }
    if (nseg == 1 && (!strcmp(seg[0], "healthz") || !strcmp(seg[0], "readyz") ||
                      !strcmp(seg[0], "livez")))
        return reply_raw(x, 200, "text/plain; charset=utf-8", sim_xstrdup("ok"), 2, NULL);
    if (nseg == 1 && !strcmp(seg[0], "api")) {
        if (x->aggregated)
            return reply_aggregated(x, 1);
        cJSON *v = cJSON_CreateObject();
        sim_j_set_str(v, "kind", "APIVersions");
        static const char *const vs[] = {"v1", NULL};
        sim_j_set(v, "versions", str_array(vs));
        cJSON *a = cJSON_CreateArray();
        cJSON *e = cJSON_CreateObject();
        char addr[96];
        snprintf(addr, sizeof addr, "%s:%d", x->srv->host, x->srv->port);
        sim_j_set_str(e, "clientCIDR", "0.0.0.0/0");
        sim_j_set_str(e, "serverAddress", addr);
        cJSON_AddItemToArray(a, e);
        sim_j_set(v, "serverAddressByClientCIDRs", a);
        return reply_cjson(x, 200, v);
    }
    if (nseg == 1 && !strcmp(seg[0], "apis")) {
        if (x->aggregated)
            return reply_aggregated(x, 0);
        cJSON *l = cJSON_CreateObject();
        sim_j_set_str(l, "kind", "APIGroupList");
        sim_j_set_str(l, "apiVersion", "v1");
        cJSON *gs = cJSON_CreateArray();
        for (int i = 0; GROUPS[i]; i++)
            cJSON_AddItemToArray(gs, group_obj(GROUPS[i]));
        sim_j_set(l, "groups", gs);
        return reply_cjson(x, 200, l);
    }
    if (nseg == 2 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1"))
        return reply_cjson(x, 200, resource_list("", "v1"));
    if (nseg == 2 && !strcmp(seg[0], "apis")) {
        for (int i = 0; GROUPS[i]; i++) {
            if (!strcmp(seg[1], GROUPS[i])) {
                cJSON *g = group_obj(GROUPS[i]);
                cJSON *out = cJSON_CreateObject();
                sim_j_set_str(out, "kind", "APIGroup");
                sim_j_set_str(out, "apiVersion", "v1");
                cJSON *it;
                cJSON_ArrayForEach(it, g) cJSON_AddItemReferenceToObject(out, it->string, it);
                char *s = sim_j_print(out, NULL);
                cJSON_Delete(out);
                cJSON_Delete(g);
                return reply_json(x, 200, s, strlen(s));
            }
        }
        return reply_no_route(x);
    }
    if (nseg == 3 && !strcmp(seg[0], "apis") && !strcmp(seg[2], "v1")) {
        for (int i = 0; GROUPS[i]; i++)
            if (!strcmp(seg[1], GROUPS[i]))
                return reply_cjson(x, 200, resource_list(GROUPS[i], "v1"));
        return reply_no_route(x);
    }
    *handled = 0;
    return MHD_YES;
}

/* ---- Tables (kubectl get asks for them: the server decides the columns) ---------------- */

typedef struct col {
    const char *name, *type, *format, *path;
    int priority;
} col;

static const col COLS_VM[] = {{"Name", "string", "name", "metadata.name", 0},
                              {"Age", "date", "", "metadata.creationTimestamp", 0},
                              {"Status", "string", "", "status.printableStatus", 0},
                              {"Ready", "string", "", "@ready", 0},
                              {NULL, NULL, NULL, NULL, 0}};
static const col COLS_PVC[] = {{"Name", "string", "name", "metadata.name", 0},
                               {"Status", "string", "", "status.phase", 0},
                               {"Volume", "string", "", "spec.volumeName", 0},
                               {"Capacity", "string", "", "status.capacity.storage", 0},
                               {"Access Modes", "string", "", "@modes:status.accessModes", 0},
                               {"StorageClass", "string", "", "spec.storageClassName", 0},
                               {"VolumeAttributesClass", "string", "", "@unset", 0},
                               {"Age", "string", "", "metadata.creationTimestamp", 0},
                               {"VolumeMode", "string", "", "spec.volumeMode", 1},
                               {NULL, NULL, NULL, NULL, 0}};
static const col COLS_PV[] = {{"Name", "string", "name", "metadata.name", 0},
                              {"Capacity", "string", "", "spec.capacity.storage", 0},
                              {"Access Modes", "string", "", "@modes:spec.accessModes", 0},
                              {"Reclaim Policy", "string", "", "spec.persistentVolumeReclaimPolicy", 0},
                              {"Status", "string", "", "status.phase", 0},
                              {"Claim", "string", "", "@claim", 0},
                              {"StorageClass", "string", "", "spec.storageClassName", 0},
                              {"VolumeAttributesClass", "string", "", "@unset", 0},
                              {"Reason", "string", "", "status.reason", 0},
                              {"Age", "string", "", "metadata.creationTimestamp", 0},
                              {"VolumeMode", "string", "", "spec.volumeMode", 1},
                              {NULL, NULL, NULL, NULL, 0}};
static const col COLS_NS[] = {{"Name", "string", "name", "metadata.name", 0},
                              {"Status", "string", "", "status.phase", 0},
                              {"Age", "string", "", "metadata.creationTimestamp", 0},
                              {NULL, NULL, NULL, NULL, 0}};
static const col COLS_LEASE[] = {{"Name", "string", "name", "metadata.name", 0},
                                 {"Holder", "string", "", "spec.holderIdentity", 0},
                                 {"Age", "string", "", "metadata.creationTimestamp", 0},
                                 {NULL, NULL, NULL, NULL, 0}};

static const col *columns(int res)
{
    switch (res) {
    case SIM_RES_VMS: return COLS_VM;
    case SIM_RES_PVCS: return COLS_PVC;
    case SIM_RES_PVS: return COLS_PV;
    case SIM_RES_NAMESPACES: return COLS_NS;
    default: return COLS_LEASE;
    }
}

static cJSON *column_defs(int res)
{
    cJSON *a = cJSON_CreateArray();
    for (const col *c = columns(res); c->name; c++) {
        cJSON *o = cJSON_CreateObject();
        sim_j_set_str(o, "name", c->name);
        sim_j_set_str(o, "type", c->type);
        sim_j_set_str(o, "format", c->format);
        sim_j_set_str(o, "description",
                      !strcmp(c->name, "Name") ? "Name must be unique within a namespace."
                      : !strcmp(c->name, "Age") ? "CreationTimestamp is a timestamp "
                                                   "representing the server time when this "
                                                   "object was created."
                                                 : c->name);
        sim_j_set(o, "priority", cJSON_CreateNumber(c->priority));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *cell(const col *c, const cJSON *obj)
{
    if (!strcmp(c->path, "metadata.creationTimestamp")) {
        double t;
        char out[32];
        if (sim_parse_rfc3339(sim_j_str(sim_j_obj(obj, "metadata"), "creationTimestamp"), &t))
            return cJSON_CreateString("<unknown>");
        sim_human_duration(out, sim_now() - t);
        return cJSON_CreateString(out);
    }
    if (!strcmp(c->path, "@unset"))
        return cJSON_CreateString("<unset>");
    if (!strcmp(c->path, "@ready")) {
        const cJSON *conds = sim_j_path(obj, "status.conditions"), *it;
        cJSON_ArrayForEach(it, conds)
        {
            const char *t = sim_j_str(it, "type");
            if (t && !strcmp(t, "Ready") && sim_j_str(it, "status"))
                return cJSON_CreateString(sim_j_str(it, "status"));
        }
        return cJSON_CreateNull();
    }
    if (!strcmp(c->path, "@claim")) {
        const cJSON *cr = sim_j_path(obj, "spec.claimRef");
        const char *ns = sim_j_str(cr, "namespace"), *n = sim_j_str(cr, "name");
        char buf[512];
        snprintf(buf, sizeof buf, "%s%s%s", ns ? ns : "", ns ? "/" : "", n ? n : "");
        return cJSON_CreateString(buf);
    }
    if (!strncmp(c->path, "@modes:", 7)) {
        const cJSON *m = sim_j_path(obj, c->path + 7), *it;
        sim_buf b = {0};
        sim_buf_add(&b, "", 0);
        cJSON_ArrayForEach(it, m)
        {
            const char *s = cJSON_IsString(it) ? it->valuestring : "";
            const char *abbr = !strcmp(s, "ReadWriteOnce")      ? "RWO"
                               : !strcmp(s, "ReadOnlyMany")     ? "ROX"
                               : !strcmp(s, "ReadWriteMany")    ? "RWX"
                               : !strcmp(s, "ReadWriteOncePod") ? "RWOP"
                                                                : s;
            if (b.n)
                sim_buf_add(&b, ",", 1);
            sim_buf_adds(&b, abbr);
        }
        cJSON *r = cJSON_CreateString(b.p);
        sim_buf_free(&b);
        return r;
    }
    const cJSON *v = sim_j_path(obj, c->path);
    if (cJSON_IsString(v))
        return cJSON_CreateString(v->valuestring);
    if (cJSON_IsNumber(v) || cJSON_IsBool(v))
        return cJSON_Duplicate(v, 1);
    return cJSON_CreateString("");
}

static cJSON *table_row(ctx *x, int res, const cJSON *obj)
{
    cJSON *row = cJSON_CreateObject();
    cJSON *cells = cJSON_CreateArray();
    for (const col *c = columns(res); c->name; c++)
        cJSON_AddItemToArray(cells, cell(c, obj));
    sim_j_set(row, "cells", cells);
    if (x->include == 2) {
        sim_j_set(row, "object", cJSON_Duplicate(obj, 1));
    } else if (x->include == 1) {
        cJSON *p = cJSON_CreateObject();
        sim_j_set_str(p, "kind", "PartialObjectMetadata");
        sim_j_set_str(p, "apiVersion", "meta.k8s.io/v1");
        const cJSON *md = sim_j_obj(obj, "metadata");
        sim_j_set(p, "metadata", md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject());
        sim_j_set(row, "object", p);
    }
    return row;
}

static cJSON *table_new(int res, uint64_t rv, const char *cont)
{
    cJSON *t = cJSON_CreateObject();
    sim_j_set_str(t, "kind", "Table");
    sim_j_set_str(t, "apiVersion", "meta.k8s.io/v1");
    cJSON *md = cJSON_CreateObject();
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)rv);
    sim_j_set_str(md, "resourceVersion", s);
    if (cont && *cont)
        sim_j_set_str(md, "continue", cont);
    sim_j_set(t, "metadata", md);
    sim_j_set(t, "columnDefinitions", column_defs(res));
    sim_j_set(t, "rows", cJSON_CreateArray());
    return t;
}

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
static void lb_item(listbody *lb, int res, const sim_obj *o, int first)
{
    lb->refs[lb->nrefs++] = sim_text_ref(o->ref);
    if (!first)
        lb_add(lb, ",", 1);
    if (!sim_resources[res].custom && o->ref->bare) {
        lb_add(lb, "{", 1);
        lb_add(lb, o->ref->s + o->ref->bare, o->ref->len - o->ref->bare);
    } else {
        lb_add(lb, o->ref->s, o->ref->len);
    }
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
    free(lb);
}

static ssize_t lb_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    listbody *lb = cls;
    size_t w = 0;
    (void)pos;
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

static const char *arg(ctx *x, const char *k)
{
    return MHD_lookup_connection_value(x->c, MHD_GET_ARGUMENT_KIND, k);
}

static int arg_true(ctx *x, const char *k)
{
    const char *v = arg(x, k);
    return v && (!strcmp(v, "true") || !strcmp(v, "1"));
}

static enum MHD_Result do_list(ctx *x, int res, const char *ns)
{
    sim_store *st = &x->srv->store;
    vmdr_err e = {0};
    sim_selector *ls = sim_selector_parse(arg(x, "labelSelector"), &e);
    if (!ls)
        return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    sim_fieldsel fs;
    if (sim_fieldsel_parse(&fs, arg(x, "fieldSelector"), &e)) {
        sim_selector_free(ls);
        return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    }
    long limit = 0;
    const char *ls_ = arg(x, "limit");
    if (ls_ && *ls_) {
        char *end;
        limit = strtol(ls_, &end, 10);
        if (*end || limit < 0)
            limit = 0;
    }
    char *start = NULL;
    uint64_t tok_rv = 0;
    const char *cont = arg(x, "continue");
    if (cont && *cont && parse_continue(cont, &tok_rv, &start)) {
        sim_selector_free(ls);
        sim_fieldsel_free(&fs);
        return reply_status(x, 400, "BadRequest", NULL, -1,
                            "continue key is not valid: incorrect encoded start resourceVersion "
                            "(version meta.k8s.io/v1)");
    }
    pthread_mutex_lock(&st->mu);
    if (start && tok_rv < st->floor) {
        pthread_mutex_unlock(&st->mu);
        free(start);
        sim_selector_free(ls);
        sim_fieldsel_free(&fs);
        return reply_status(x, 410, "Expired", NULL, -1,
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
    size_t i = start ? sim_store_lower_bound(c, start) : prefix ? sim_store_lower_bound(c, prefix)
                                                                : 0;
    if (start && i < c->n && !strcmp(c->v[i]->key, start))
        i++;
    cJSON *table = NULL;
    listbody *lb = NULL;
    char av[64];
    sim_res_api_version(res, av);
    if (x->table) {
        table = table_new(res, rv, NULL);
    } else {
        lb = calloc(1, sizeof *lb);
        if (!lb)
            abort();
        lb->refs = sim_xmalloc((c->n - (i < c->n ? i : c->n) + 1) * sizeof *lb->refs);
        sim_buf_printf(&lb->head,
                       "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":{\"resourceVersion\":"
                       "\"%llu\"",
                       sim_resources[res].list_kind, av, (unsigned long long)rv);
        lb_add(lb, NULL, 0); /* the head, filled in once continue is known */
    }
    int any_label = !sim_selector_empty(ls), any_field = fs.n > 0;
    long n = 0, remaining = 0;
    const char *last_key = NULL;
    for (; i < c->n; i++) {
        sim_obj *o = c->v[i];
        if (prefix && strncmp(o->key, prefix, plen))
            break;
        if ((any_field && !sim_fieldsel_matches(&fs, o->ns, o->name)) ||
            (any_label && !sim_selector_matches(ls, sim_j_path(o->json, "metadata.labels"))))
            continue;
        if (limit && n == limit) {
            remaining++;
            continue;
        }
        if (table)
            cJSON_AddItemToArray(cJSON_GetObjectItem(table, "rows"), table_row(x, res, o->json));
        else
            lb_item(lb, res, o, n == 0);
        last_key = o->key;
        n++;
    }
    char *next = remaining ? continue_token(rv, last_key) : NULL;
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
        return reply_cjson(x, 200, table);
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
        return reply_json(x, 200, body, len);
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(total, 256 * 1024, lb_read, lb, lb_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    enum MHD_Result rc = MHD_queue_response(x->c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- watch streams ------------------------------------------------------------------------ */

typedef struct watch {
    sim_server *srv;
    int res;
    char *ns;               /* NULL: every namespace */
    sim_selector *ls;
    sim_fieldsel fs;
    ctx x;                  /* copy for table rendering (table, include) */
    uint64_t last_rv;
    int bookmarks;
    double deadline, next_bookmark;
    long sent, drop_after;
    sim_buf out;
    size_t off;
    int state;              /* 0 streaming, 1 end after flush, 2 abort after flush */
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
        cJSON *t = table_new(w->res, rv ? strtoull(rv, NULL, 10) : 0, NULL);
        cJSON_AddItemToArray(cJSON_GetObjectItem(t, "rows"), table_row(&w->x, w->res, obj));
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

static enum MHD_Result do_watch(ctx *x, int res, const char *ns)
{
    sim_store *st = &x->srv->store;
    vmdr_err e = {0};
    sim_selector *ls = sim_selector_parse(arg(x, "labelSelector"), &e);
    if (!ls)
        return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    watch *w = calloc(1, sizeof *w);
    if (!w)
        abort();
    w->ls = ls;
    if (sim_fieldsel_parse(&w->fs, arg(x, "fieldSelector"), &e)) {
        watch_free(w);
        return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
    }
    uint64_t rv = 0;
    const char *rvs = arg(x, "resourceVersion");
    int unset = parse_rv(rvs, &rv);
    if (unset < 0) {
        watch_free(w);
        return reply_status(x, 400, "BadRequest", NULL, -1,
                            "resourceVersion: Invalid value: \"%s\": must be a number", rvs);
    }
    w->srv = x->srv;
    w->res = res;
    w->ns = ns && sim_resources[res].namespaced ? sim_xstrdup(ns) : NULL;
    w->x = *x;
    w->x.garble = 0;
    w->bookmarks = arg_true(x, "allowWatchBookmarks");
    double timeout = 1800;
    const char *ts = arg(x, "timeoutSeconds");
    if (ts && *ts)
        timeout = strtod(ts, NULL);
    w->deadline = sim_mono() + timeout;
    pthread_mutex_lock(&x->srv->fmu);
    w->drop_after = x->srv->faults.drop_watch_after;
    w->next_bookmark = sim_mono() + x->srv->faults.bookmark_interval;
    pthread_mutex_unlock(&x->srv->fmu);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(x->c, MHD_CONNECTION_INFO_CONNECTION_FD);
    w->fd = ci ? ci->connect_fd : -1;
    int initial = arg_true(x, "sendInitialEvents");
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
        }
        w->last_rv = st->rv;
        if (initial && w->bookmarks)
            emit_bookmark(w, st->rv, 1);
    } else {
        w->last_rv = rv;
    }
    pthread_mutex_unlock(&st->mu);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, watch_read, w, watch_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    enum MHD_Result rc = MHD_queue_response(x->c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* ---- writes -------------------------------------------------------------------------------- */

static int valid_dns(const char *s, int label)
{
    size_t n = strlen(s);
    if (!n || n > (label ? 63u : 253u))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (alnum)
            continue;
        if (ch == '-' && i > 0 && i + 1 < n)
            continue;
        if (ch == '.' && !label && i > 0 && i + 1 < n)
            continue;
        return 0;
    }
    return 1;
}

static void field_manager(ctx *x, char out[128])
{
    const char *fm = arg(x, "fieldManager");
    if (fm && *fm) {
        snprintf(out, 128, "%s", fm);
        return;
    }
    const char *ua = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "User-Agent");
    /* The API server names the manager after the User-Agent's program name. */
    snprintf(out, 128, "%s", ua && *ua ? ua : "unknown");
    char *slash = strchr(out, '/');
    if (slash)
        *slash = '\0';
}

static int skip_field(const char *path)
{
    static const char *const skip[] = {
        "metadata.resourceVersion", "metadata.uid", "metadata.creationTimestamp",
        "metadata.generation", "metadata.managedFields", "metadata.name", "metadata.namespace",
        "metadata.deletionTimestamp", NULL};
    for (int i = 0; skip[i]; i++)
        if (!strcmp(path, skip[i]))
            return 1;
    return 0;
}

/* The fields new sets that old did not have equal: the FieldsV1 set a manager owns after
 * this write (an approximation of structured-merge-diff: lists are atomic, except lists of
 * objects keyed by "name"). */
static cJSON *fields_diff(const cJSON *old, const cJSON *new, const char *path, int sub)
{
    if (!cJSON_IsObject(new)) {
        if (old && cJSON_Compare(old, new, 1))
            return NULL;
        return cJSON_CreateObject();
    }
    cJSON *f = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, new)
    {
        char p[512];
        snprintf(p, sizeof p, "%s%s%s", path, *path ? "." : "", it->string);
        if (skip_field(p) || (!*path && !strcmp(it->string, "status") && !sub) ||
            (!*path && (!strcmp(it->string, "apiVersion") || !strcmp(it->string, "kind"))))
            continue;
        const cJSON *o = cJSON_IsObject(old) ? cJSON_GetObjectItemCaseSensitive(old, it->string)
                                             : NULL;
        cJSON *d = NULL;
        if (cJSON_IsArray(it)) {
            if (o && cJSON_Compare(o, it, 1))
                continue;
            d = cJSON_CreateObject();
            const cJSON *el;
            cJSON_ArrayForEach(el, it)
            {
                const char *nm = sim_j_str(el, "name");
                if (!nm)
                    continue;
                char k[300];
                snprintf(k, sizeof k, "k:{\"name\":\"%s\"}", nm);
                cJSON *sub_fields = fields_diff(NULL, el, "-", 1);
                cJSON *entry = sub_fields ? sub_fields : cJSON_CreateObject();
                sim_j_set(entry, ".", cJSON_CreateObject());
                sim_j_set(d, k, entry);
            }
        } else {
            d = fields_diff(o, it, p, sub);
        }
        if (!d)
            continue;
        if (!f)
            f = cJSON_CreateObject();
        char k[300];
        snprintf(k, sizeof k, "f:%s", it->string);
        sim_j_set(f, k, d);
    }
    if (!f && !old)
        f = cJSON_CreateObject();
    return f;
}

static void set_managed(ctx *x, cJSON *obj, const cJSON *old, int res, const char *subresource)
{
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    cJSON *fields = fields_diff(old, obj, "", subresource != NULL);
    const cJSON *oldmf = old ? sim_j_path(old, "metadata.managedFields") : NULL;
    cJSON *mf = cJSON_IsArray(oldmf) ? cJSON_Duplicate(oldmf, 1) : cJSON_CreateArray();
    if (!fields) {
        sim_j_set(md, "managedFields", mf);
        return;
    }
    char mgr[128], ts[32], av[64];
    field_manager(x, mgr);
    sim_rfc3339(ts, sim_now());
    sim_res_api_version(res, av);
    cJSON *entry = NULL, *it;
    cJSON_ArrayForEach(it, mf)
    {
        const char *m = sim_j_str(it, "manager"), *op = sim_j_str(it, "operation");
        const char *sr = sim_j_str(it, "subresource");
        if (m && !strcmp(m, mgr) && op && !strcmp(op, "Update") &&
            ((!sr && !subresource) || (sr && subresource && !strcmp(sr, subresource))))
            entry = it;
    }
    if (!entry) {
        entry = cJSON_CreateObject();
        cJSON_AddItemToArray(mf, entry);
        sim_j_set_str(entry, "manager", mgr);
        sim_j_set_str(entry, "operation", "Update");
        sim_j_set_str(entry, "apiVersion", av);
        sim_j_set_str(entry, "fieldsType", "FieldsV1");
        sim_j_set(entry, "fieldsV1", fields);
        if (subresource)
            sim_j_set_str(entry, "subresource", subresource);
    } else {
        cJSON *cur = cJSON_DetachItemFromObject(entry, "fieldsV1");
        cur = sim_merge_patch(cur, fields);
        cJSON_Delete(fields);
        sim_j_set(entry, "fieldsV1", cur);
    }
    sim_j_set_str(entry, "time", ts);
    sim_j_set(md, "managedFields", mf);
}

static cJSON *parse_body(ctx *x, int res, enum MHD_Result *rc)
{
    cJSON *j = x->body_len ? cJSON_ParseWithLength(x->body, x->body_len) : NULL;
    if (!j && x->body_len && x->body[0] != '{' && x->body[0] != '[') {
        /* kubectl sends JSON; YAML bodies are accepted too, as the API server does */
        vmdr_err e = {0};
        cJSON *docs = sim_yaml_parse_all(x->body, x->body_len, &e);
        if (docs && cJSON_GetArraySize(docs) == 1)
            j = cJSON_DetachItemFromArray(docs, 0);
        cJSON_Delete(docs);
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *rc = reply_status(x, 400, "BadRequest", NULL, -1,
                           "the object provided is unrecognized (must be of type %s): couldn't "
                           "get version/kind; json parse error: invalid character in the request "
                           "body",
                           res >= 0 ? sim_resources[res].kind : "Object");
        return NULL;
    }
    return j;
}

/* Checks apiVersion/kind and the name/namespace against the URL (400 as the API server). */
static int check_identity(ctx *x, int res, cJSON *obj, const char *ns, const char *name,
                          enum MHD_Result *rc)
{
    const char *av = sim_j_str(obj, "apiVersion"), *kind = sim_j_str(obj, "kind");
    char want[64];
    sim_res_api_version(res, want);
    if (av && strcmp(av, want) && sim_res_by_kind(av, kind ? kind : sim_resources[res].kind) != res) {
        *rc = reply_status(x, 400, "BadRequest", NULL, -1,
                           "the API version in the data (%s) does not match the expected API "
                           "version (%s)",
                           av, want);
        return -1;
    }
    if (kind && strcmp(kind, sim_resources[res].kind)) {
        *rc = reply_status(x, 400, "BadRequest", NULL, -1,
                           "the kind in the data (%s) does not match the expected kind (%s)",
                           kind, sim_resources[res].kind);
        return -1;
    }
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    const char *ons = sim_j_str(md, "namespace");
    if (sim_resources[res].namespaced && ns) {
        if (ons && *ons && strcmp(ons, ns)) {
            *rc = reply_status(x, 400, "BadRequest", NULL, -1,
                               "the namespace of the provided object does not match the "
                               "namespace sent on the request");
            return -1;
        }
        sim_j_set_str(md, "namespace", ns);
    }
    const char *oname = sim_j_str(md, "name");
    if (name && (!oname || strcmp(oname, name))) {
        *rc = reply_status(x, 400, "BadRequest", NULL, -1,
                           "the name of the object (%s) does not match the name on the URL (%s)",
                           oname ? oname : "", name);
        return -1;
    }
    return 0;
}

static int dry_run(ctx *x)
{
    const char *d = arg(x, "dryRun");
    return d && !strcmp(d, "All");
}

static enum MHD_Result reply_obj_text(ctx *x, int status, int res, const char *text, size_t len)
{
    if (x->table) {
        cJSON *obj = cJSON_ParseWithLength(text, len);
        const char *rv = sim_j_str(sim_j_obj(obj, "metadata"), "resourceVersion");
        cJSON *t = table_new(res, rv ? strtoull(rv, NULL, 10) : 0, NULL);
        cJSON_AddItemToArray(cJSON_GetObjectItem(t, "rows"), table_row(x, res, obj));
        cJSON_Delete(obj);
        return reply_cjson(x, status, t);
    }
    char *copy = sim_xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    return reply_json(x, status, copy, len);
}

/* What the API server resets on create: server-owned metadata, and status for types
 * with a status subresource. */
static void prepare_create(int res, cJSON *obj)
{
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    static const char *const drop[] = {"uid", "resourceVersion", "creationTimestamp",
                                       "generation", "deletionTimestamp", "managedFields",
                                       "selfLink", NULL};
    for (int i = 0; drop[i]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(md, drop[i]);
    if (res == SIM_RES_VMS) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    } else if (res == SIM_RES_PVCS || res == SIM_RES_PVS) {
        cJSON *s = cJSON_CreateObject();
        sim_j_set_str(s, "phase", "Pending");
        sim_j_set(obj, "status", s);
    } else if (res == SIM_RES_NAMESPACES) {
        cJSON *s = cJSON_CreateObject();
        sim_j_set_str(s, "phase", "Active");
        sim_j_set(obj, "status", s);
        cJSON *spec = sim_j_ensure_obj(obj, "spec");
        cJSON *fin = cJSON_CreateArray();
        cJSON_AddItemToArray(fin, cJSON_CreateString("kubernetes"));
        sim_j_set(spec, "finalizers", fin);
        const char *name = sim_j_str(md, "name");
        if (name)
            sim_j_set_str(sim_j_ensure_obj(md, "labels"), "kubernetes.io/metadata.name", name);
    }
}

static enum MHD_Result do_create(ctx *x, int res, const char *ns)
{
    enum MHD_Result rc;
    cJSON *obj = parse_body(x, res, &rc);
    if (!obj)
        return rc;
    if (check_identity(x, res, obj, ns, NULL, &rc)) {
        cJSON_Delete(obj);
        return rc;
    }
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    const char *name = sim_j_str(md, "name");
    const char *gen = sim_j_str(md, "generateName");
    if ((!name || !*name) && gen && *gen) {
        static const char alpha[] = "bcdfghjklmnpqrstvwxz2456789";
        char nm[300];
        char suf[6];
        unsigned char r[5];
        char u[37];
        sim_uuid(u);
        for (int i = 0; i < 5; i++) {
            r[i] = (unsigned char)u[i * 3];
            suf[i] = alpha[(r[i] + i * 7) % (sizeof alpha - 1)];
        }
        suf[5] = '\0';
        snprintf(nm, sizeof nm, "%s%s", gen, suf);
        sim_j_set_str(md, "name", nm);
        name = sim_j_str(md, "name");
    }
    if (!name || !*name) {
        cJSON_Delete(obj);
        return reply_invalid(x, res, "", "metadata.name",
                             "Required value: name or generateName is required");
    }
    if (!valid_dns(name, res == SIM_RES_NAMESPACES)) {
        char detail[600];
        snprintf(detail, sizeof detail,
                 "Invalid value: \"%s\": a lowercase RFC 1123 %s must consist of lower case "
                 "alphanumeric characters, '-'%s, and must start and end with an alphanumeric "
                 "character",
                 name, res == SIM_RES_NAMESPACES ? "label" : "subdomain",
                 res == SIM_RES_NAMESPACES ? "" : " or '.'");
        char nm[300];
        snprintf(nm, sizeof nm, "%s", name);
        cJSON_Delete(obj);
        return reply_invalid(x, res, nm, "metadata.name", detail);
    }
    prepare_create(res, obj);
    obj = sim_normalise(res, obj);
    sim_store_stamp_new(res, obj);
    md = sim_j_obj(obj, "metadata");
    name = sim_j_str(md, "name");
    set_managed(x, obj, NULL, res, NULL);
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    if (sim_resources[res].namespaced && !sim_store_get(st, SIM_RES_NAMESPACES, "", ns)) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_status(x, 404, "NotFound", ns, SIM_RES_NAMESPACES,
                            "namespaces \"%s\" not found", ns);
    }
    if (sim_store_get(st, res, ns ? ns : "", name)) {
        pthread_mutex_unlock(&st->mu);
        char q[96], nm[300];
        sim_res_qualified(res, q);
        snprintf(nm, sizeof nm, "%s", name);
        cJSON_Delete(obj);
        return reply_status(x, 409, "AlreadyExists", nm, res, "%s \"%s\" already exists", q, nm);
    }
    if (dry_run(x)) {
        pthread_mutex_unlock(&st->mu);
        size_t len;
        char *s = sim_j_print(obj, &len);
        cJSON_Delete(obj);
        enum MHD_Result r = reply_obj_text(x, 201, res, s, len);
        free(s);
        return r;
    }
    sim_obj *o = sim_store_put(st, res, obj, 1);
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    rc = reply_obj_text(x, 201, res, text, len);
    free(text);
    return rc;
}

/* Everything but metadata and status: what bumps a custom resource's generation. */
static int spec_changed(const cJSON *a, const cJSON *b)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, b)
    {
        if (!strcmp(it->string, "metadata") || !strcmp(it->string, "status"))
            continue;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(a, it->string);
        if (!o || !cJSON_Compare(o, it, 1))
            return 1;
    }
    cJSON_ArrayForEach(it, a)
    {
        if (!strcmp(it->string, "metadata") || !strcmp(it->string, "status"))
            continue;
        if (!cJSON_GetObjectItemCaseSensitive(b, it->string))
            return 1;
    }
    return 0;
}

/* Equal but for resourceVersion and managedFields: a no-op write, which the API server
 * answers without a new resourceVersion or event. */
static int same_object(const cJSON *a, const cJSON *b)
{
    cJSON *x = cJSON_Duplicate(a, 1), *y = cJSON_Duplicate(b, 1);
    static const char *const drop[] = {"resourceVersion", "managedFields", NULL};
    for (int i = 0; drop[i]; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(sim_j_obj(x, "metadata"), drop[i]);
        cJSON_DeleteItemFromObjectCaseSensitive(sim_j_obj(y, "metadata"), drop[i]);
    }
    int eq = cJSON_Compare(x, y, 1);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

/* Common tail of update and patch: obj is the proposed new state of the existing object.
 * Caller holds the store lock; this releases it. */
static enum MHD_Result commit_update(ctx *x, int res, sim_obj *cur, cJSON *obj, const char *sub)
{
    sim_store *st = &x->srv->store;
    const cJSON *old = cur->json;
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    const cJSON *omd = sim_j_obj(old, "metadata");
    /* server-owned metadata survives any write */
    static const char *const keep[] = {"uid", "creationTimestamp", "generation",
                                       "deletionTimestamp", NULL};
    for (int i = 0; keep[i]; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, keep[i]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(omd, keep[i]);
        if (v)
            cJSON_AddItemToObject(md, keep[i], cJSON_Duplicate(v, 1));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
    const cJSON *omf = cJSON_GetObjectItemCaseSensitive(omd, "managedFields");
    if (omf)
        cJSON_AddItemToObject(md, "managedFields", cJSON_Duplicate(omf, 1));
    if (sub) {
        /* the status subresource changes status only */
        cJSON *ns = cJSON_DetachItemFromObjectCaseSensitive(obj, "status");
        cJSON_Delete(obj);
        obj = cJSON_Duplicate(old, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
        if (ns)
            cJSON_AddItemToObject(obj, "status", ns);
    } else if (sim_resources[res].has_status) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
        const cJSON *os = cJSON_GetObjectItemCaseSensitive(old, "status");
        if (os)
            cJSON_AddItemToObject(obj, "status", cJSON_Duplicate(os, 1));
    }
    obj = sim_normalise(res, obj);
    md = sim_j_obj(obj, "metadata");
    if (sim_resources[res].custom && spec_changed(old, obj)) {
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(md, "generation");
        double gen = cJSON_IsNumber(g) ? g->valuedouble : 0;
        sim_j_set(md, "generation", cJSON_CreateNumber(gen + 1));
    }
    if (same_object(old, obj)) {
        char *text = sim_xmalloc(cur->len + 1);
        memcpy(text, cur->text, cur->len + 1);
        size_t len = cur->len;
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        enum MHD_Result rc = reply_obj_text(x, 200, res, text, len);
        free(text);
        return rc;
    }
    set_managed(x, obj, old, res, sub);
    if (dry_run(x)) {
        pthread_mutex_unlock(&st->mu);
        size_t len;
        char *s = sim_j_print(obj, &len);
        cJSON_Delete(obj);
        enum MHD_Result rc = reply_obj_text(x, 200, res, s, len);
        free(s);
        return rc;
    }
    sim_obj *o = sim_store_put(st, res, obj, 1);
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    enum MHD_Result rc = reply_obj_text(x, 200, res, text, len);
    free(text);
    return rc;
}

static enum MHD_Result reply_conflict(ctx *x, int res, const char *name)
{
    char q[96];
    sim_res_qualified(res, q);
    return reply_status(x, 409, "Conflict", name, res,
                        "Operation cannot be fulfilled on %s \"%s\": the object has been "
                        "modified; please apply your changes to the latest version and try again",
                        q, name);
}

static enum MHD_Result do_update(ctx *x, int res, const char *ns, const char *name,
                                 const char *sub)
{
    enum MHD_Result rc;
    cJSON *obj = parse_body(x, res, &rc);
    if (!obj)
        return rc;
    if (check_identity(x, res, obj, ns, name, &rc)) {
        cJSON_Delete(obj);
        return rc;
    }
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    sim_obj *cur = sim_store_get(st, res, ns ? ns : "", name);
    if (!cur) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_not_found(x, res, name);
    }
    const char *rv = sim_j_str(sim_j_obj(obj, "metadata"), "resourceVersion");
    const char *crv = sim_j_str(sim_j_obj(cur->json, "metadata"), "resourceVersion");
    if (rv && *rv && (!crv || strcmp(rv, crv))) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_conflict(x, res, name);
    }
    if ((!rv || !*rv) && sim_resources[res].custom) {
        /* CRDs do not allow unconditional updates */
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_invalid(x, res, name, "metadata.resourceVersion",
                             "Invalid value: 0x0: must be specified for an update");
    }
    return commit_update(x, res, cur, obj, sub);
}

static enum MHD_Result do_patch(ctx *x, int res, const char *ns, const char *name,
                                const char *sub)
{
    const char *ct = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Content-Type");
    int kind = -1; /* 0 merge, 1 json patch */
    if (ct && !strncmp(ct, "application/merge-patch+json", 28))
        kind = 0;
    else if (ct && !strncmp(ct, "application/json-patch+json", 27))
        kind = 1;
    else if (ct && !strncmp(ct, "application/strategic-merge-patch+json", 38) &&
             !sim_resources[res].custom)
        kind = 0; /* core types: strategic merge, served as a merge patch (documented) */
    if (kind < 0)
        return reply_status(x, 415, "UnsupportedMediaType", NULL, -1,
                            "the body of the request was in an unknown format - accepted media "
                            "types include: application/json-patch+json, "
                            "application/merge-patch+json%s",
                            sim_resources[res].custom ? ""
                                                      : ", application/strategic-merge-patch+json");
    cJSON *patch = x->body_len ? cJSON_ParseWithLength(x->body, x->body_len) : NULL;
    if (!patch || (kind == 0 && !cJSON_IsObject(patch)) || (kind == 1 && !cJSON_IsArray(patch))) {
        cJSON_Delete(patch);
        return reply_status(x, 400, "BadRequest", NULL, -1,
                            "error decoding patch: invalid JSON in the request body");
    }
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    sim_obj *cur = sim_store_get(st, res, ns ? ns : "", name);
    if (!cur) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(patch);
        return reply_not_found(x, res, name);
    }
    cJSON *obj = cJSON_Duplicate(cur->json, 1);
    if (kind == 0) {
        obj = sim_merge_patch(obj, patch);
    } else {
        vmdr_err e = {0};
        if (sim_json_patch(&obj, patch, &e)) {
            pthread_mutex_unlock(&st->mu);
            cJSON_Delete(patch);
            cJSON_Delete(obj);
            if (e.status == 422)
                return reply_status(x, 422, "Invalid", name, res, "%s", e.message);
            return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
        }
    }
    cJSON_Delete(patch);
    const cJSON *md = sim_j_obj(obj, "metadata");
    const char *nn = sim_j_str(md, "name"), *nns = sim_j_str(md, "namespace");
    if (!cJSON_IsObject(obj) || !nn || strcmp(nn, name) ||
        (sim_resources[res].namespaced && (!nns || strcmp(nns, ns)))) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_invalid(x, res, name, "metadata.name", "Invalid value: field is immutable");
    }
    const char *rv = sim_j_str(md, "resourceVersion");
    const char *crv = sim_j_str(sim_j_obj(cur->json, "metadata"), "resourceVersion");
    if (rv && crv && strcmp(rv, crv)) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return reply_conflict(x, res, name);
    }
    return commit_update(x, res, cur, obj, sub);
}

static enum MHD_Result do_delete(ctx *x, int res, const char *ns, const char *name)
{
    sim_store *st = &x->srv->store;
    cJSON *opts = x->body_len ? cJSON_ParseWithLength(x->body, x->body_len) : NULL;
    if (x->body_len && !opts)
        return reply_status(x, 400, "BadRequest", NULL, -1,
                            "the body of the request is not valid DeleteOptions JSON");
    const cJSON *pre = sim_j_obj(opts, "preconditions");
    pthread_mutex_lock(&st->mu);
    sim_obj *cur = sim_store_get(st, res, ns ? ns : "", name);
    if (!cur) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(opts);
        return reply_not_found(x, res, name);
    }
    const cJSON *cmd = sim_j_obj(cur->json, "metadata");
    const char *prv = sim_j_str(pre, "resourceVersion"), *puid = sim_j_str(pre, "uid");
    if ((prv && strcmp(prv, sim_j_str(cmd, "resourceVersion") ? sim_j_str(cmd, "resourceVersion") : "")) ||
        (puid && strcmp(puid, sim_j_str(cmd, "uid") ? sim_j_str(cmd, "uid") : ""))) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(opts);
        char q[96];
        sim_res_qualified(res, q);
        return reply_status(x, 409, "Conflict", name, res,
                            "Operation cannot be fulfilled on %s \"%s\": Precondition failed: "
                            "%s in precondition does not match the object",
                            q, name, prv ? "ResourceVersion" : "UID");
    }
    cJSON_Delete(opts);
    char uid[64];
    snprintf(uid, sizeof uid, "%s", sim_j_str(cmd, "uid") ? sim_j_str(cmd, "uid") : "");
    if (dry_run(x)) {
        char *text = sim_xmalloc(cur->len + 1);
        memcpy(text, cur->text, cur->len + 1);
        size_t len = cur->len;
        pthread_mutex_unlock(&st->mu);
        enum MHD_Result rc = reply_obj_text(x, 200, res, text, len);
        free(text);
        return rc;
    }
    if (res == SIM_RES_NAMESPACES) {
        /* The namespace controller's work, done at once: everything in it goes first. */
        for (int r = 0; r < SIM_NRES; r++) {
            if (!sim_resources[r].namespaced)
                continue;
            sim_coll *c = &st->coll[r];
            size_t pl = strlen(name) + 1;
            char *prefix = sim_xmalloc(pl + 1);
            snprintf(prefix, pl + 1, "%s/", name);
            for (;;) {
                size_t i = sim_store_lower_bound(c, prefix);
                if (i >= c->n || strncmp(c->v[i]->key, prefix, pl))
                    break;
                char *nm = sim_xstrdup(c->v[i]->name);
                sim_store_delete(st, r, name, nm, NULL, NULL);
                free(nm);
            }
            free(prefix);
        }
    }
    char *text = NULL;
    size_t len = 0;
    sim_store_delete(st, res, ns ? ns : "", name, &text, &len);
    pthread_mutex_unlock(&st->mu);
    enum MHD_Result rc;
    if (sim_resources[res].custom || res == SIM_RES_NAMESPACES) {
        /* CRDs return the deleted object; a namespace returns itself, terminating */
        if (res == SIM_RES_NAMESPACES) {
            cJSON *o = cJSON_ParseWithLength(text, len);
            char ts[32];
            sim_rfc3339(ts, sim_now());
            sim_j_set_str(sim_j_ensure_obj(o, "metadata"), "deletionTimestamp", ts);
            sim_j_set_str(sim_j_ensure_obj(o, "status"), "phase", "Terminating");
            free(text);
            text = sim_j_print(o, &len);
            cJSON_Delete(o);
        }
        rc = reply_obj_text(x, 200, res, text, len);
    } else {
        cJSON *s = status_obj(200, NULL, NULL, name, sim_resources[res].group,
                              sim_resources[res].plural);
        sim_j_set_str(sim_j_obj(s, "details"), "uid", uid);
        rc = reply_cjson(x, 200, s);
    }
    free(text);
    return rc;
}

static enum MHD_Result do_get(ctx *x, int res, const char *ns, const char *name)
{
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    sim_obj *o = sim_store_get(st, res, ns ? ns : "", name);
    if (!o) {
        pthread_mutex_unlock(&st->mu);
        return reply_not_found(x, res, name);
    }
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    enum MHD_Result rc = reply_obj_text(x, 200, res, text, len);
    free(text);
    return rc;
}

/* ---- routing -------------------------------------------------------------------------------- */

static int is_method(ctx *x, const char *m)
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
            return reply_no_route(x);
    } else {
        res = sim_res_find(group, version, rest[0]);
        if (res < 0 || nrest > 3)
            return reply_no_route(x);
        name = nrest >= 2 ? rest[1] : NULL;
        sub = nrest >= 3 ? rest[2] : NULL;
        if (sim_resources[res].namespaced && name)
            return reply_no_route(x); /* /api/v1/persistentvolumeclaims/NAME does not exist */
    }
    if (sub && (strcmp(sub, "status") || !sim_resources[res].has_status))
        return reply_no_route(x);
    if (!name) {
        if (is_method(x, "GET"))
            return arg_true(x, "watch") ? do_watch(x, res, ns) : do_list(x, res, ns);
        if (is_method(x, "POST")) {
            if (sim_resources[res].namespaced && !ns)
                return reply_method(x);
            return do_create(x, res, ns);
        }
        return reply_method(x);
    }
    if (is_method(x, "GET"))
        return do_get(x, res, ns, name);
    if (is_method(x, "PUT"))
        return do_update(x, res, ns, name, sub);
    if (is_method(x, "PATCH"))
        return do_patch(x, res, ns, name, sub);
    if (is_method(x, "DELETE") && !sub)
        return do_delete(x, res, ns, name);
    return reply_method(x);
}

/* ---- auth, faults, admin ------------------------------------------------------------------- */

static int token_ok(ctx *x)
{
    const char *h = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Authorization");
    if (!x->srv->token || !h || strncasecmp(h, "Bearer ", 7))
        return 0;
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t a = strlen(t), b = strlen(x->srv->token);
    /* constant-time compare: the sim may listen beyond loopback for a demo */
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++)
        diff |= (unsigned)(t[i] ^ x->srv->token[i]);
    return diff == 0;
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

static int authenticated(ctx *x)
{
    if (!x->srv->token && !x->srv->client_ca)
        return 1;
    return token_ok(x) || cert_ok(x);
}

static cJSON *faults_json(sim_server *srv)
{
    sim_faults *f = &srv->faults;
    cJSON *j = cJSON_CreateObject();
    cJSON *fail = cJSON_CreateObject();
    sim_j_set(fail, "count", cJSON_CreateNumber(f->fail.count));
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
        return vmdr_err_set(err, "invalid", 400, "faults: %s must be a number in [%g, %g]", k,
                            lo, hi);
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
    static const char *const known[] = {"fail", "drop_watch_after", "delay_ms", "reject_auth",
                                        "compact", "restart", "garble", "bookmark_interval",
                                        "clear", NULL};
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
        double bi = f.bookmark_interval;
        memset(&f, 0, sizeof f);
        f.bookmark_interval = bi;
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
    double restart = 0;
    if ((rc = num(j, "restart", 0, 3600, &restart, err)) < 0)
        goto done;
    const cJSON *compact = cJSON_GetObjectItem(j, "compact");
    rc = 0;
    pthread_mutex_lock(&srv->fmu);
    srv->faults = f;
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

static enum MHD_Result admin(ctx *x, char **seg, int nseg)
{
    if (!authenticated(x))
        return reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
    sim_server *srv = x->srv;
    if (nseg == 2 && !strcmp(seg[1], "faults")) {
        if (is_method(x, "POST") || is_method(x, "PUT")) {
            vmdr_err e = {0};
            char *body = sim_xmalloc(x->body_len + 1);
            memcpy(body, x->body ? x->body : "", x->body_len);
            body[x->body_len] = '\0';
            int rc = sim_faults_apply(srv, body, &e);
            free(body);
            if (rc)
                return reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
        } else if (!is_method(x, "GET")) {
            return reply_method(x);
        }
        pthread_mutex_lock(&srv->fmu);
        cJSON *j = faults_json(srv);
        pthread_mutex_unlock(&srv->fmu);
        return reply_cjson(x, 200, j);
    }
    if (nseg == 2 && !strcmp(seg[1], "state") && is_method(x, "GET")) {
        cJSON *j = cJSON_CreateObject();
        sim_store *st = &srv->store;
        pthread_mutex_lock(&st->mu);
        sim_j_set(j, "resourceVersion", cJSON_CreateNumber((double)st->rv));
        sim_j_set(j, "compactedResourceVersion", cJSON_CreateNumber((double)st->floor));
        sim_j_set(j, "events", cJSON_CreateNumber((double)st->ev_n));
        cJSON *counts = cJSON_CreateObject();
        for (int r = 0; r < SIM_NRES; r++)
            sim_j_set(counts, sim_resources[r].plural,
                      cJSON_CreateNumber((double)st->coll[r].n));
        sim_j_set(j, "objects", counts);
        pthread_mutex_unlock(&st->mu);
        sim_j_set(j, "requests", cJSON_CreateNumber(
                                     (double)__atomic_load_n(&srv->requests, __ATOMIC_RELAXED)));
        pthread_mutex_lock(&srv->fmu);
        sim_j_set(j, "faults", faults_json(srv));
        pthread_mutex_unlock(&srv->fmu);
        sim_j_set(j, "uptime", cJSON_CreateNumber(sim_mono() - srv->started));
        return reply_cjson(x, 200, j);
    }
    return reply_no_route(x);
}

/* Returns 1 (and queues the reply) when an injected fault answers this request. */
static int faults_before(ctx *x, enum MHD_Result *rc)
{
    sim_server *srv = x->srv;
    pthread_mutex_lock(&srv->fmu);
    sim_faults *f = &srv->faults;
    int delay = f->delay_ms;
    int reject = f->reject_auth;
    int fail = 0, status = 0, retry = 0;
    if (f->fail.count > 0 && (!*f->fail.verb || !strcasecmp(f->fail.verb, x->method)) &&
        (!*f->fail.prefix || !strncmp(x->url, f->fail.prefix, strlen(f->fail.prefix)))) {
        f->fail.count--;
        fail = 1;
        status = f->fail.status;
        retry = f->fail.retry_after;
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
        *rc = reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
        return 1;
    }
    if (fail) {
        char msg[128], ra[16];
        snprintf(msg, sizeof msg, "injected fault: %d %s", status, reason_for(status));
        snprintf(ra, sizeof ra, "%d", retry);
        cJSON *s = status_obj(status, reason_for(status), msg, NULL, NULL, NULL);
        if (retry) {
            cJSON *d = cJSON_CreateObject();
            sim_j_set(d, "retryAfterSeconds", cJSON_CreateNumber(retry));
            sim_j_set(s, "details", d);
        }
        size_t len;
        char *body = sim_j_print(s, &len);
        cJSON_Delete(s);
        *rc = reply_raw(x, status, "application/json", body, len, retry ? ra : NULL);
        return 1;
    }
    return 0;
}

static void accept_flags(ctx *x)
{
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
    const char *inc = arg(x, "includeObject");
    x->include = !inc || !strcmp(inc, "Metadata") ? 1 : !strcmp(inc, "Object") ? 2 : 0;
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
        rc = admin(x, seg, nseg);
        goto done;
    }
    __atomic_add_fetch(&x->srv->requests, 1, __ATOMIC_RELAXED);
    if (faults_before(x, &rc))
        goto done;
    if (!authenticated(x)) {
        rc = reply_status(x, 401, "Unauthorized", NULL, -1, "Unauthorized");
        goto done;
    }
    accept_flags(x);
    rc = discovery(x, seg, nseg, &handled);
    if (handled)
        goto done;
    rc = resource(x, seg, nseg, &handled);
    if (handled)
        goto done;
    rc = reply_no_route(x);
done:
    free(path);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
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
        return reply_status(&x, 413, "RequestEntityTooLarge", NULL, -1,
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
    struct MHD_Daemon *d = MHD_start_daemon(flags, (uint16_t)srv->port, NULL, NULL, on_request,
                                            srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!d) {
        vmdr_err_set(err, "unreachable", errno, "cannot listen on %s:%d: %s", srv->host,
                     srv->port, errno ? strerror(errno) : "libmicrohttpd refused the options");
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port)
        srv->port = info->port;
    return d;
}
