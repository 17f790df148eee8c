/* vmdr-sim Tables (meta.k8s.io/v1): kubectl get asks the server for its columns. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "http_int.h"

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
static const col COLS_PV[] = {
    {"Name", "string", "name", "metadata.name", 0},
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
    case SIM_RES_VMS:
        return COLS_VM;
    case SIM_RES_PVCS:
        return COLS_PVC;
    case SIM_RES_PVS:
        return COLS_PV;
    case SIM_RES_NAMESPACES:
        return COLS_NS;
    default:
        return COLS_LEASE;
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
                      !strcmp(c->name, "Name")  ? "Name must be unique within a namespace."
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

cJSON *sim__table_row(ctx *x, int res, const cJSON *obj)
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

cJSON *sim__table_new(int res, uint64_t rv, const char *cont)
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
