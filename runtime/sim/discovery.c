/* vmdr-sim discovery: /version, /api, /apis, group-version resource lists, aggregated
 * discovery (apidiscovery.k8s.io/v2) and the OpenAPI v3 documents kubectl reads. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "http_int.h"

/* ---- discovery ------------------------------------------------------------------------ */

static const char *const VERBS[] = {"create", "delete", "get",   "list",
                                    "patch",  "update", "watch", NULL};

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
    return sim__reply_raw(x, 200,
                          "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", s,
                          len, NULL);
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
        return sim__reply_cjson(x, 200, idx);
    }
    if (nseg == 4 && !strcmp(seg[2], "api") && !strcmp(seg[3], "v1"))
        return sim__reply_cjson(x, 200, openapi_gv("", "v1"));
    if (nseg == 5 && !strcmp(seg[2], "apis")) {
        for (int i = 0; GROUPS[i]; i++)
            if (!strcmp(seg[3], GROUPS[i]) && !strcmp(seg[4], "v1"))
                return sim__reply_cjson(x, 200, openapi_gv(GROUPS[i], "v1"));
    }
    return sim__reply_no_route(x);
}

enum MHD_Result sim__discovery(ctx *x, char **seg, int nseg, int *handled)
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
        return sim__reply_cjson(x, 200, v);
    }
    if (nseg == 1 &&
        (!strcmp(seg[0], "healthz") || !strcmp(seg[0], "readyz") || !strcmp(seg[0], "livez")))
        return sim__reply_raw(x, 200, "text/plain; charset=utf-8", sim_xstrdup("ok"), 2, NULL);
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
        return sim__reply_cjson(x, 200, v);
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
        return sim__reply_cjson(x, 200, l);
    }
    if (nseg == 2 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1"))
        return sim__reply_cjson(x, 200, resource_list("", "v1"));
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
                return sim__reply_json(x, 200, s, strlen(s));
            }
        }
        return sim__reply_no_route(x);
    }
    if (nseg == 3 && !strcmp(seg[0], "apis") && !strcmp(seg[2], "v1")) {
        for (int i = 0; GROUPS[i]; i++)
            if (!strcmp(seg[1], GROUPS[i]))
                return sim__reply_cjson(x, 200, resource_list(GROUPS[i], "v1"));
        return sim__reply_no_route(x);
    }
    *handled = 0;
    return MHD_YES;
}
