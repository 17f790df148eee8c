/* vmdr-sim writes: create, update, patch, delete; generation and managedFields. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "http_int.h"

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
    const char *fm = sim__arg(x, "fieldManager");
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
    static const char *const skip[] = {"metadata.resourceVersion",
                                       "metadata.uid",
                                       "metadata.creationTimestamp",
                                       "metadata.generation",
                                       "metadata.managedFields",
                                       "metadata.name",
                                       "metadata.namespace",
                                       "metadata.deletionTimestamp",
                                       NULL};
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
        const cJSON *o =
            cJSON_IsObject(old) ? cJSON_GetObjectItemCaseSensitive(old, it->string) : NULL;
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
        *rc = sim__reply_status(
            x, 400, "BadRequest", NULL, -1,
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
    if (av && strcmp(av, want) &&
        sim_res_by_kind(av, kind ? kind : sim_resources[res].kind) != res) {
        *rc = sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                "the API version in the data (%s) does not match the expected API "
                                "version (%s)",
                                av, want);
        return -1;
    }
    if (kind && strcmp(kind, sim_resources[res].kind)) {
        *rc = sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                "the kind in the data (%s) does not match the expected kind (%s)",
                                kind, sim_resources[res].kind);
        return -1;
    }
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    const char *ons = sim_j_str(md, "namespace");
    if (sim_resources[res].namespaced && ns) {
        if (ons && *ons && strcmp(ons, ns)) {
            *rc = sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                    "the namespace of the provided object does not match the "
                                    "namespace sent on the request");
            return -1;
        }
        sim_j_set_str(md, "namespace", ns);
    }
    const char *oname = sim_j_str(md, "name");
    if (name && (!oname || strcmp(oname, name))) {
        *rc =
            sim__reply_status(x, 400, "BadRequest", NULL, -1,
                              "the name of the object (%s) does not match the name on the URL (%s)",
                              oname ? oname : "", name);
        return -1;
    }
    return 0;
}

static int dry_run(ctx *x)
{
    const char *d = sim__arg(x, "dryRun");
    return d && !strcmp(d, "All");
}

/* What the API server resets on create: server-owned metadata, and status for types
 * with a status subresource. */
static void prepare_create(int res, cJSON *obj)
{
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    static const char *const drop[] = {"uid",
                                       "resourceVersion",
                                       "creationTimestamp",
                                       "generation",
                                       "deletionTimestamp",
                                       "managedFields",
                                       "selfLink",
                                       NULL};
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

enum MHD_Result sim__do_create(ctx *x, int res, const char *ns)
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
        return sim__reply_invalid(x, res, "", "metadata.name",
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
        return sim__reply_invalid(x, res, nm, "metadata.name", detail);
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
        return sim__reply_status(x, 404, "NotFound", ns, SIM_RES_NAMESPACES,
                                 "namespaces \"%s\" not found", ns);
    }
    if (sim_store_get(st, res, ns ? ns : "", name)) {
        pthread_mutex_unlock(&st->mu);
        char q[96], nm[300];
        sim_res_qualified(res, q);
        snprintf(nm, sizeof nm, "%s", name);
        cJSON_Delete(obj);
        return sim__reply_status(x, 409, "AlreadyExists", nm, res, "%s \"%s\" already exists", q,
                                 nm);
    }
    if (dry_run(x)) {
        pthread_mutex_unlock(&st->mu);
        size_t len;
        char *s = sim_j_print(obj, &len);
        cJSON_Delete(obj);
        enum MHD_Result r = sim__reply_obj_text(x, 201, res, s, len);
        free(s);
        return r;
    }
    sim_obj *o = sim_store_put(st, res, obj, 1);
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    rc = sim__reply_obj_text(x, 201, res, text, len);
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

/* What KubeVirt's virt-controller does with a VM's run strategy, reduced to what DR
 * workflows look at: a VM asked to stop (runStrategy Halted, or running: false) is
 * Stopped, one asked to run is Running. The sim has no VirtualMachineInstances, so
 * the transition is immediate. */
static void vm_controller(cJSON *obj)
{
    cJSON *spec = sim_j_obj(obj, "spec");
    if (!spec)
        return;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(spec, "runStrategy");
    const cJSON *running = cJSON_GetObjectItemCaseSensitive(spec, "running");
    int up;
    if (cJSON_IsString(rs))
        up = strcmp(rs->valuestring, "Halted") != 0 && strcmp(rs->valuestring, "Manual") != 0;
    else if (cJSON_IsBool(running))
        up = cJSON_IsTrue(running);
    else
        return;
    cJSON *st = sim_j_ensure_obj(obj, "status");
    sim_j_set(st, "printableStatus", cJSON_CreateString(up ? "Running" : "Stopped"));
    sim_j_set(st, "ready", cJSON_CreateBool(up));
    if (cJSON_IsString(rs))
        sim_j_set(st, "runStrategy", cJSON_CreateString(rs->valuestring));
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
        if (res == SIM_RES_VMS && !sub)
            vm_controller(obj);
    }
    if (same_object(old, obj)) {
        char *text = sim_xmalloc(cur->len + 1);
        memcpy(text, cur->text, cur->len + 1);
        size_t len = cur->len;
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        enum MHD_Result rc = sim__reply_obj_text(x, 200, res, text, len);
        free(text);
        return rc;
    }
    set_managed(x, obj, old, res, sub);
    if (dry_run(x)) {
        pthread_mutex_unlock(&st->mu);
        size_t len;
        char *s = sim_j_print(obj, &len);
        cJSON_Delete(obj);
        enum MHD_Result rc = sim__reply_obj_text(x, 200, res, s, len);
        free(s);
        return rc;
    }
    sim_obj *o = sim_store_put(st, res, obj, 1);
    char *text = sim_xmalloc(o->len + 1);
    memcpy(text, o->text, o->len + 1);
    size_t len = o->len;
    pthread_mutex_unlock(&st->mu);
    enum MHD_Result rc = sim__reply_obj_text(x, 200, res, text, len);
    free(text);
    return rc;
}

static enum MHD_Result reply_conflict(ctx *x, int res, const char *name)
{
    char q[96];
    sim_res_qualified(res, q);
    return sim__reply_status(
        x, 409, "Conflict", name, res,
        "Operation cannot be fulfilled on %s \"%s\": the object has been "
        "modified; please apply your changes to the latest version and try again",
        q, name);
}

enum MHD_Result sim__do_update(ctx *x, int res, const char *ns, const char *name, const char *sub)
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
        return sim__reply_not_found(x, res, name);
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
        return sim__reply_invalid(x, res, name, "metadata.resourceVersion",
                                  "Invalid value: 0x0: must be specified for an update");
    }
    return commit_update(x, res, cur, obj, sub);
}

enum MHD_Result sim__do_patch(ctx *x, int res, const char *ns, const char *name, const char *sub)
{
    const char *ct = MHD_lookup_connection_value(x->c, MHD_HEADER_KIND, "Content-Type");
    int kind = -1; /* 0 merge, 1 json patch, 2 strategic merge */
    if (ct && !strncmp(ct, "application/merge-patch+json", 28))
        kind = 0;
    else if (ct && !strncmp(ct, "application/json-patch+json", 27))
        kind = 1;
    else if (ct && !strncmp(ct, "application/strategic-merge-patch+json", 38) &&
             !sim_resources[res].custom)
        kind = 2; /* core types: a reduced strategic merge (documented) */
    if (kind < 0)
        return sim__reply_status(
            x, 415, "UnsupportedMediaType", NULL, -1,
            "the body of the request was in an unknown format - accepted media "
            "types include: application/json-patch+json, "
            "application/merge-patch+json%s",
            sim_resources[res].custom ? "" : ", application/strategic-merge-patch+json");
    cJSON *patch = x->body_len ? cJSON_ParseWithLength(x->body, x->body_len) : NULL;
    if (!patch || (kind != 1 && !cJSON_IsObject(patch)) || (kind == 1 && !cJSON_IsArray(patch))) {
        cJSON_Delete(patch);
        return sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                 "error decoding patch: invalid JSON in the request body");
    }
    sim_store *st = &x->srv->store;
    pthread_mutex_lock(&st->mu);
    sim_obj *cur = sim_store_get(st, res, ns ? ns : "", name);
    if (!cur) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(patch);
        return sim__reply_not_found(x, res, name);
    }
    cJSON *obj = cJSON_Duplicate(cur->json, 1);
    if (kind == 0) {
        obj = sim_merge_patch(obj, patch);
    } else if (kind == 2) {
        obj = sim_strategic_patch(obj, patch);
        if (!obj)
            obj = cJSON_CreateObject(); /* "$patch": "delete" of the root: fails validation */
    } else {
        vmdr_err e = {0};
        if (sim_json_patch(&obj, patch, &e)) {
            pthread_mutex_unlock(&st->mu);
            cJSON_Delete(patch);
            cJSON_Delete(obj);
            if (e.status == 422)
                return sim__reply_status(x, 422, "Invalid", name, res, "%s", e.message);
            return sim__reply_status(x, 400, "BadRequest", NULL, -1, "%s", e.message);
        }
    }
    cJSON_Delete(patch);
    const cJSON *md = sim_j_obj(obj, "metadata");
    const char *nn = sim_j_str(md, "name"), *nns = sim_j_str(md, "namespace");
    if (!cJSON_IsObject(obj) || !nn || strcmp(nn, name) ||
        (sim_resources[res].namespaced && (!nns || strcmp(nns, ns)))) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(obj);
        return sim__reply_invalid(x, res, name, "metadata.name",
                                  "Invalid value: field is immutable");
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

enum MHD_Result sim__do_delete(ctx *x, int res, const char *ns, const char *name)
{
    sim_store *st = &x->srv->store;
    cJSON *opts = x->body_len ? cJSON_ParseWithLength(x->body, x->body_len) : NULL;
    if (x->body_len && !opts)
        return sim__reply_status(x, 400, "BadRequest", NULL, -1,
                                 "the body of the request is not valid DeleteOptions JSON");
    const cJSON *pre = sim_j_obj(opts, "preconditions");
    pthread_mutex_lock(&st->mu);
    sim_obj *cur = sim_store_get(st, res, ns ? ns : "", name);
    if (!cur) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(opts);
        return sim__reply_not_found(x, res, name);
    }
    const cJSON *cmd = sim_j_obj(cur->json, "metadata");
    const char *prv = sim_j_str(pre, "resourceVersion"), *puid = sim_j_str(pre, "uid");
    if ((prv &&
         strcmp(prv, sim_j_str(cmd, "resourceVersion") ? sim_j_str(cmd, "resourceVersion") : "")) ||
        (puid && strcmp(puid, sim_j_str(cmd, "uid") ? sim_j_str(cmd, "uid") : ""))) {
        pthread_mutex_unlock(&st->mu);
        cJSON_Delete(opts);
        char q[96];
        sim_res_qualified(res, q);
        return sim__reply_status(x, 409, "Conflict", name, res,
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
        enum MHD_Result rc = sim__reply_obj_text(x, 200, res, text, len);
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
        rc = sim__reply_obj_text(x, 200, res, text, len);
    } else {
        cJSON *s = sim__status_obj(200, NULL, NULL, name, sim_resources[res].group,
                                   sim_resources[res].plural);
        sim_j_set_str(sim_j_obj(s, "details"), "uid", uid);
        rc = sim__reply_cjson(x, 200, s);
    }
    free(text);
    return rc;
}
