/* vmdr-sim object store: one sorted collection per resource, one global resourceVersion
 * counter (as etcd's revision), a bounded history of events for watches, persistence. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

const sim_res sim_resources[SIM_NRES] = {
    [SIM_RES_NAMESPACES] = {"",
                            "v1",
                            "namespaces",
                            "namespace",
                            "Namespace",
                            "NamespaceList",
                            0,
                            0,
                            1,
                            {"ns", NULL, NULL},
                            {NULL, NULL}},
    [SIM_RES_PVCS] = {"",
                      "v1",
                      "persistentvolumeclaims",
                      "persistentvolumeclaim",
                      "PersistentVolumeClaim",
                      "PersistentVolumeClaimList",
                      1,
                      0,
                      1,
                      {"pvc", NULL, NULL},
                      {NULL, NULL}},
    [SIM_RES_PVS] = {"",
                     "v1",
                     "persistentvolumes",
                     "persistentvolume",
                     "PersistentVolume",
                     "PersistentVolumeList",
                     0,
                     0,
                     1,
                     {"pv", NULL, NULL},
                     {NULL, NULL}},
    [SIM_RES_VMS] = {"kubevirt.io",
                     "v1",
                     "virtualmachines",
                     "virtualmachine",
                     "VirtualMachine",
                     "VirtualMachineList",
                     1,
                     1,
                     1,
                     {"vm", "vms", NULL},
                     {"all", NULL}},
    [SIM_RES_LEASES] = {"coordination.k8s.io",
                        "v1",
                        "leases",
                        "lease",
                        "Lease",
                        "LeaseList",
                        1,
                        0,
                        0,
                        {NULL, NULL, NULL},
                        {NULL, NULL}},
};

int sim_res_find(const char *group, const char *version, const char *plural)
{
    for (int i = 0; i < SIM_NRES; i++) {
        const sim_res *r = &sim_resources[i];
        if (!strcmp(r->group, group) && !strcmp(r->version, version) && !strcmp(r->plural, plural))
            return i;
    }
    return -1;
}

int sim_res_by_kind(const char *api_version, const char *kind)
{
    if (!api_version || !kind)
        return -1;
    const char *slash = strchr(api_version, '/');
    size_t gl = slash ? (size_t)(slash - api_version) : 0;
    for (int i = 0; i < SIM_NRES; i++) {
        const sim_res *r = &sim_resources[i];
        if (strcmp(r->kind, kind) || strlen(r->group) != gl || strncmp(r->group, api_version, gl))
            continue;
        /* kubevirt.io/v1alpha3 objects (older fixtures) are served as v1, as KubeVirt's
         * conversion does; the core group has v1 only. */
        if (!slash && strcmp(api_version, "v1"))
            continue;
        return i;
    }
    return -1;
}

void sim_res_qualified(int res, char out[96])
{
    const sim_res *r = &sim_resources[res];
    if (*r->group)
        snprintf(out, 96, "%s.%s", r->plural, r->group);
    else
        snprintf(out, 96, "%s", r->plural);
}

void sim_res_api_version(int res, char out[64])
{
    const sim_res *r = &sim_resources[res];
    if (*r->group)
        snprintf(out, 64, "%s/%s", r->group, r->version);
    else
        snprintf(out, 64, "%s", r->version);
}

void sim_store_init(sim_store *st, size_t history)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->ev_cap = history ? history : 1;
    st->ev = calloc(st->ev_cap, sizeof *st->ev);
    if (!st->ev)
        abort();
}

sim_text *sim_text_ref(sim_text *t)
{
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

void sim_text_unref(sim_text *t)
{
    if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(t);
}

static sim_text *text_new(const cJSON *obj)
{
    size_t len;
    char *s = sim_j_print(obj, &len);
    sim_text *t = sim_xmalloc(sizeof *t + len + 1);
    t->refs = 1;
    t->len = len;
    memcpy(t->s, s, len + 1);
    free(s);
    t->bare = 0;
    /* {"apiVersion":"v1","kind":"X",REST -> offset of REST */
    if (!strncmp(t->s, "{\"apiVersion\":\"", 15)) {
        const char *k = strstr(t->s + 15, "\",\"kind\":\"");
        const char *e = k ? strchr(k + 10, '"') : NULL;
        if (e && e[1] == ',')
            t->bare = (size_t)(e + 2 - t->s);
    }
    return t;
}

static void obj_free(sim_obj *o)
{
    if (!o)
        return;
    free(o->key);
    free(o->ns);
    free(o->name);
    cJSON_Delete(o->json);
    sim_text_unref(o->ref);
    free(o);
}

static void event_clear(sim_event *e)
{
    free(e->ns);
    free(e->name);
    free(e->text);
    free(e->prev_text);
    cJSON_Delete(e->labels);
    cJSON_Delete(e->prev_labels);
    sim_text_unref(e->before);
    memset(e, 0, sizeof *e);
}

void sim_store_free(sim_store *st)
{
    for (int r = 0; r < SIM_NRES; r++) {
        for (size_t i = 0; i < st->coll[r].n; i++)
            obj_free(st->coll[r].v[i]);
        free(st->coll[r].v);
    }
    for (size_t i = 0; i < st->ev_cap; i++)
        event_clear(&st->ev[i]);
    free(st->ev);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
}

static char *make_key(const char *ns, const char *name)
{
    size_t a = strlen(ns), b = strlen(name);
    char *k = sim_xmalloc(a + b + 2);
    if (a) {
        memcpy(k, ns, a);
        k[a] = '/';
        memcpy(k + a + 1, name, b + 1);
    } else {
        memcpy(k, name, b + 1);
    }
    return k;
}

size_t sim_store_lower_bound(const sim_coll *c, const char *key)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(c->v[mid]->key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

sim_obj *sim_store_get(sim_store *st, int res, const char *ns, const char *name)
{
    char *key = make_key(sim_resources[res].namespaced ? ns : "", name);
    sim_coll *c = &st->coll[res];
    size_t i = sim_store_lower_bound(c, key);
    sim_obj *o = i < c->n && !strcmp(c->v[i]->key, key) ? c->v[i] : NULL;
    free(key);
    return o;
}

static cJSON *labels_copy(const cJSON *obj)
{
    const cJSON *l = sim_j_path(obj, "metadata.labels");
    return cJSON_IsObject(l) ? cJSON_Duplicate(l, 1) : NULL;
}

static void set_rv(cJSON *obj, uint64_t rv)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)rv);
    sim_j_set_str(sim_j_ensure_obj(obj, "metadata"), "resourceVersion", s);
}

static void record(sim_store *st, int res, int type, const char *ns, const char *name,
                   const cJSON *obj, const cJSON *prev, sim_text *before)
{
    if (st->ev_n == st->ev_cap) {
        /* The oldest event falls out of the history: watches from before it get 410. */
        sim_event *old = &st->ev[st->ev_head];
        st->floor = old->rv;
        event_clear(old);
        st->ev_head = (st->ev_head + 1) % st->ev_cap;
        st->ev_n--;
    }
    sim_event *e = &st->ev[(st->ev_head + st->ev_n) % st->ev_cap];
    st->ev_n++;
    e->rv = st->rv;
    e->res = res;
    e->type = type;
    e->ns = sim_xstrdup(ns);
    e->name = sim_xstrdup(name);
    e->text = sim_j_print(obj, &e->len);
    e->labels = labels_copy(obj);
    e->before = before; /* the reference is the event's now */
    if (prev) {
        cJSON *p = cJSON_Duplicate(prev, 1);
        set_rv(p, st->rv);
        e->prev_text = sim_j_print(p, &e->prev_len);
        e->prev_labels = labels_copy(p);
        cJSON_Delete(p);
    }
    pthread_cond_broadcast(&st->cv);
}

void sim_store_stamp_new(int res, cJSON *obj)
{
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    if (!sim_j_str(md, "uid")) {
        char u[37];
        sim_uuid(u);
        sim_j_set_str(md, "uid", u);
    }
    if (!sim_j_str(md, "creationTimestamp")) {
        char ts[32];
        sim_rfc3339(ts, sim_now());
        sim_j_set_str(md, "creationTimestamp", ts);
    }
    if (sim_resources[res].custom && !cJSON_IsNumber(cJSON_GetObjectItem(md, "generation")))
        sim_j_set(md, "generation", cJSON_CreateNumber(1));
    char av[64];
    sim_res_api_version(res, av);
    sim_j_set_str(obj, "apiVersion", av);
    sim_j_set_str(obj, "kind", sim_resources[res].kind);
}

/* Orders members as the API server prints them: apiVersion, kind, metadata, the rest, status
 * (add_item relies on apiVersion and kind coming first). */
cJSON *sim_normalise(int res, cJSON *obj)
{
    cJSON *out = cJSON_CreateObject();
    char av[64];
    sim_res_api_version(res, av);
    sim_j_set_str(out, "apiVersion", av);
    sim_j_set_str(out, "kind", sim_resources[res].kind);
    cJSON *md = cJSON_DetachItemFromObjectCaseSensitive(obj, "metadata");
    cJSON *status = cJSON_DetachItemFromObjectCaseSensitive(obj, "status");
    if (md)
        cJSON_AddItemToObject(out, "metadata", md);
    cJSON *it = obj->child;
    while (it) {
        cJSON *next = it->next;
        if (strcmp(it->string, "apiVersion") && strcmp(it->string, "kind")) {
            cJSON_DetachItemViaPointer(obj, it);
            cJSON_AddItemToObject(out, it->string, it);
        }
        it = next;
    }
    if (status)
        cJSON_AddItemToObject(out, "status", status);
    cJSON_Delete(obj);
    return out;
}

sim_obj *sim_store_put(sim_store *st, int res, cJSON *obj, int rec)
{
    obj = sim_normalise(res, obj);
    const cJSON *md = sim_j_obj(obj, "metadata");
    const char *name = sim_j_str(md, "name");
    const char *ns = sim_resources[res].namespaced ? sim_j_str(md, "namespace") : "";
    if (!name || !ns) {
        cJSON_Delete(obj);
        return NULL;
    }
    if (!sim_resources[res].namespaced)
        cJSON_DeleteItemFromObjectCaseSensitive(sim_j_obj(obj, "metadata"), "namespace");
    st->rv++;
    set_rv(obj, st->rv);
    char *key = make_key(ns, name);
    sim_coll *c = &st->coll[res];
    size_t i = sim_store_lower_bound(c, key);
    sim_obj *o;
    cJSON *prev = NULL;
    sim_text *before = NULL;
    int existed = i < c->n && !strcmp(c->v[i]->key, key);
    if (existed) {
        o = c->v[i];
        free(key);
        prev = o->json;
        before = o->ref; /* kept by the event: a continued list may need the old state */
    } else {
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->v = sim_xrealloc(c->v, c->cap * sizeof *c->v);
        }
        memmove(c->v + i + 1, c->v + i, (c->n - i) * sizeof *c->v);
        o = calloc(1, sizeof *o);
        if (!o)
            abort();
        o->key = key;
        o->ns = sim_xstrdup(ns);
        o->name = sim_xstrdup(name);
        c->v[i] = o;
        c->n++;
    }
    o->json = obj;
    o->ref = text_new(obj);
    o->text = o->ref->s;
    o->len = o->ref->len;
    if (rec)
        record(st, res, existed ? SIM_EV_MODIFIED : SIM_EV_ADDED, ns, name, obj, prev, before);
    else
        sim_text_unref(before);
    cJSON_Delete(prev);
    st->changes++;
    return o;
}

int sim_store_delete(sim_store *st, int res, const char *ns, const char *name, char **out_text,
                     size_t *out_len)
{
    char *key = make_key(sim_resources[res].namespaced ? ns : "", name);
    sim_coll *c = &st->coll[res];
    size_t i = sim_store_lower_bound(c, key);
    int found = i < c->n && !strcmp(c->v[i]->key, key);
    free(key);
    if (!found)
        return -1;
    sim_obj *o = c->v[i];
    memmove(c->v + i, c->v + i + 1, (c->n - i - 1) * sizeof *c->v);
    c->n--;
    /* The deleted object is reported at the deletion's resourceVersion, as etcd does. */
    st->rv++;
    sim_text *before = sim_text_ref(o->ref);
    set_rv(o->json, st->rv);
    record(st, res, SIM_EV_DELETED, o->ns, o->name, o->json, NULL, before);
    if (out_text)
        *out_text = sim_j_print(o->json, out_len);
    obj_free(o);
    st->changes++;
    return 0;
}

void sim_store_compact(sim_store *st)
{
    while (st->ev_n) {
        event_clear(&st->ev[st->ev_head]);
        st->ev_head = (st->ev_head + 1) % st->ev_cap;
        st->ev_n--;
    }
    st->floor = st->rv;
    pthread_cond_broadcast(&st->cv);
}

void sim_store_ensure_ns(sim_store *st, const char *ns)
{
    if (!ns || !*ns || sim_store_get(st, SIM_RES_NAMESPACES, "", ns))
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON *md = sim_j_ensure_obj(o, "metadata");
    sim_j_set_str(md, "name", ns);
    cJSON *labels = sim_j_ensure_obj(md, "labels");
    sim_j_set_str(labels, "kubernetes.io/metadata.name", ns);
    cJSON *spec = sim_j_ensure_obj(o, "spec");
    cJSON *fin = cJSON_CreateArray();
    cJSON_AddItemToArray(fin, cJSON_CreateString("kubernetes"));
    sim_j_set(spec, "finalizers", fin);
    sim_j_set_str(sim_j_ensure_obj(o, "status"), "phase", "Active");
    sim_store_stamp_new(SIM_RES_NAMESPACES, o);
    sim_store_put(st, SIM_RES_NAMESPACES, o, 1);
}

/* State file: {"resourceVersion": N, "objects": [...]} — the objects as served. Serialised
 * under the lock, written (and fsynced) after it is released so requests do not wait on the
 * disk. */
int sim_store_save(sim_store *st, const char *path, uint64_t *changes, vmdr_err *err)
{
    sim_buf b = {0};
    pthread_mutex_lock(&st->mu);
    if (changes)
        *changes = st->changes;
    sim_buf_printf(&b, "{\"resourceVersion\":%llu,\"objects\":[", (unsigned long long)st->rv);
    int first = 1;
    for (int r = 0; r < SIM_NRES; r++) {
        for (size_t i = 0; i < st->coll[r].n; i++) {
            if (!first)
                sim_buf_add(&b, ",\n", 2);
            first = 0;
            sim_buf_add(&b, st->coll[r].v[i]->text, st->coll[r].v[i]->len);
        }
    }
    sim_buf_adds(&b, "]}\n");
    pthread_mutex_unlock(&st->mu);
    int rc = sim_write_file_atomic(path, b.p, b.n, 0600);
    sim_buf_free(&b);
    if (rc)
        return vmdr_err_set(err, "io", errno, "cannot write state file %s: %s", path,
                            strerror(errno));
    return 0;
}

int sim_store_load_state(sim_store *st, const char *path, vmdr_err *err)
{
    char *text;
    size_t len;
    if (sim_read_file(path, &text, &len))
        return vmdr_err_set(err, "io", errno, "cannot read state file %s: %s", path,
                            strerror(errno));
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *objs = doc ? cJSON_GetObjectItem(doc, "objects") : NULL;
    const cJSON *rv = doc ? cJSON_GetObjectItem(doc, "resourceVersion") : NULL;
    if (!cJSON_IsArray(objs) || !cJSON_IsNumber(rv)) {
        cJSON_Delete(doc);
        return vmdr_err_set(err, "invalid", 0,
                            "state file %s is not a vmdr-sim state (resourceVersion, objects)",
                            path);
    }
    /* Objects get fresh resourceVersions after the saved counter: a client resuming from
     * an RV it saw before the restart gets 410 and re-lists, as after an etcd restore. */
    if ((uint64_t)rv->valuedouble > st->rv)
        st->rv = (uint64_t)rv->valuedouble;
    const cJSON *o;
    cJSON_ArrayForEach(o, objs)
    {
        int res = sim_res_by_kind(sim_j_str(o, "apiVersion"), sim_j_str(o, "kind"));
        if (res < 0)
            continue;
        sim_store_put(st, res, cJSON_Duplicate(o, 1), 0);
    }
    st->floor = st->rv;
    cJSON_Delete(doc);
    return 0;
}
