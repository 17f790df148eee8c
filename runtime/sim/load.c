/* Fixtures (YAML and JSON files, multi-document, `kind: List`) and synthetic sites. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "sim.h"

/* ---- YAML -> cJSON (YAML 1.1 plain-scalar resolution, as sigs.k8s.io/yaml does) ---------- */

static int is_int(const char *s, double *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (!*p)
        return 0;
    char *end;
    long long v;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        v = strtoll(p + 2, &end, 16);
    else if (p[0] == '0' && p[1] == 'o')
        v = strtoll(p + 2, &end, 8);
    else if (p[0] == '0' && p[1])
        v = strtoll(p, &end, 8); /* YAML 1.1: 0755 is octal */
    else {
        for (const char *c = p; *c; c++)
            if ((*c < '0' || *c > '9') && *c != '_')
                return 0;
        v = strtoll(p, &end, 10);
    }
    if (*end)
        return 0;
    *out = neg ? -(double)v : (double)v;
    return 1;
}

static int is_float(const char *s, double *out)
{
    if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") || !strcmp(s, ".nan") ||
        !strcmp(s, ".NaN"))
        return 0; /* JSON cannot carry them: keep the string */
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0, dot = 0;
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.' && !dot)
            dot = 1;
        else if ((*p == 'e' || *p == 'E') && digits)
            break;
        else
            return 0;
    }
    if (!digits || (!dot && !*p))
        return 0;
    if (*p) {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!*p)
            return 0;
        for (; *p; p++)
            if (*p < '0' || *p > '9')
                return 0;
    }
    *out = strtod(s, NULL);
    return 1;
}

static cJSON *scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    const char *tag = (const char *)n->tag;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        (tag && strcmp(tag, YAML_DEFAULT_SCALAR_TAG)))
        return cJSON_CreateString(s);
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                        "on",   "On",   "ON",   "y",   "Y",   NULL};
    static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO",
                                         "off",   "Off",   "OFF",   "n",  "N",  NULL};
    for (int i = 0; nulls[i]; i++)
        if (!strcmp(s, nulls[i]))
            return cJSON_CreateNull();
    for (int i = 0; trues[i]; i++)
        if (!strcmp(s, trues[i]))
            return cJSON_CreateTrue();
    for (int i = 0; falses[i]; i++)
        if (!strcmp(s, falses[i]))
            return cJSON_CreateFalse();
    double d;
    if (is_int(s, &d) || is_float(s, &d))
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(s);
}

static cJSON *node_to_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > 200)
        return cJSON_CreateNull();
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return scalar(n);
    case YAML_SEQUENCE_NODE: {
        cJSON *a = cJSON_CreateArray();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++)
            cJSON_AddItemToArray(a, node_to_json(doc, yaml_document_get_node(doc, *it), depth + 1));
        return a;
    }
    case YAML_MAPPING_NODE: {
        cJSON *o = cJSON_CreateObject();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE)
                continue;
            sim_j_set(o, (const char *)k->data.scalar.value,
                      node_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1));
        }
        return o;
    }
    default:
        return cJSON_CreateNull();
    }
}

cJSON *sim_yaml_parse_all(const char *text, size_t len, vmdr_err *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        vmdr_err_set(err, "nomem", 0, "cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    cJSON *docs = cJSON_CreateArray();
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            vmdr_err_set(err, "invalid", 0, "YAML error at line %lu column %lu: %s",
                         (unsigned long)parser.problem_mark.line + 1,
                         (unsigned long)parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "unknown");
            cJSON_Delete(docs);
            docs = NULL;
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            break;
        }
        cJSON_AddItemToArray(docs, node_to_json(&doc, root, 0));
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return docs;
}

/* ---- fixtures --------------------------------------------------------------------------- */

typedef struct loadctx {
    sim_store *st;
    int loaded, skipped;
} loadctx;

/* Makes a fixture object look as the API server would serve it, then stores it. */
static void add_object(loadctx *lc, const cJSON *o, const char *path)
{
    if (!cJSON_IsObject(o))
        return;
    const char *kind = sim_j_str(o, "kind");
    const cJSON *items = cJSON_GetObjectItem(o, "items");
    if (kind && strlen(kind) >= 4 && !strcmp(kind + strlen(kind) - 4, "List") &&
        cJSON_IsArray(items)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, items) add_object(lc, it, path);
        return;
    }
    int res = sim_res_by_kind(sim_j_str(o, "apiVersion"), kind);
    const char *name = sim_j_str(sim_j_obj(o, "metadata"), "name");
    if (res < 0 || !name || !*name) {
        lc->skipped++;
        return;
    }
    cJSON *obj = cJSON_Duplicate(o, 1);
    cJSON *md = sim_j_ensure_obj(obj, "metadata");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "selfLink"); /* gone since Kubernetes 1.20 */
    const char *ns = sim_j_str(md, "namespace");
    if (sim_resources[res].namespaced && (!ns || !*ns))
        sim_j_set_str(md, "namespace", "default");
    ns = sim_resources[res].namespaced ? sim_j_str(md, "namespace") : "";
    if (sim_store_get(lc->st, res, ns, name)) {
        fprintf(stderr, "vmdr-sim: %s: %s %s%s%s already loaded from another file: skipped\n", path,
                sim_resources[res].kind, ns, *ns ? "/" : "", name);
        cJSON_Delete(obj);
        lc->skipped++;
        return;
    }
    sim_store_stamp_new(res, obj);
    if (sim_resources[res].namespaced)
        sim_store_ensure_ns(lc->st, ns);
    sim_store_put(lc->st, res, obj, 0);
    lc->loaded++;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_file(loadctx *lc, const char *path, vmdr_err *err)
{
    char *text;
    size_t len;
    if (sim_read_file(path, &text, &len))
        return vmdr_err_set(err, "io", errno, "cannot read %s: %s", path, strerror(errno));
    cJSON *docs;
    if (has_suffix(path, ".json")) {
        const char *end = NULL;
        cJSON *one = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        if (!one) {
            vmdr_err_set(err, "invalid", 0, "%s: invalid JSON near byte %ld", path,
                         end ? (long)(end - text) : 0L);
            free(text);
            return -1;
        }
        docs = cJSON_CreateArray();
        cJSON_AddItemToArray(docs, one);
    } else {
        vmdr_err e2 = {0};
        docs = sim_yaml_parse_all(text, len, &e2);
        if (!docs) {
            vmdr_err_set(err, e2.code, 0, "%s: %s", path, e2.message);
            free(text);
            return -1;
        }
    }
    free(text);
    const cJSON *d;
    cJSON_ArrayForEach(d, docs) add_object(lc, d, path);
    cJSON_Delete(docs);
    return 0;
}

static int walk(loadctx *lc, const char *dir, vmdr_err *err)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return vmdr_err_set(err, "io", errno, "cannot open fixtures directory %s: %s", dir,
                            strerror(errno));
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (de->d_name[0] == '.')
            continue;
        names = sim_xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = sim_xstrdup(de->d_name);
    }
    closedir(dh);
    /* Sorted, so which of two same-named fixtures wins does not depend on the filesystem. */
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl = strlen(dir) + strlen(names[i]) + 2;
        char *path = sim_xmalloc(pl);
        snprintf(path, pl, "%s/%s", dir, names[i]);
        struct stat sb;
        if (rc == 0 && stat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                rc = walk(lc, path, err);
            else if (has_suffix(path, ".yaml") || has_suffix(path, ".yml") ||
                     has_suffix(path, ".json"))
                rc = load_file(lc, path, err);
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return rc;
}

int sim_load_fixtures(sim_store *st, const char *dir, int *loaded, int *skipped, vmdr_err *err)
{
    loadctx lc = {st, 0, 0};
    struct stat sb;
    int rc;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        rc = load_file(&lc, dir, err);
    else
        rc = walk(&lc, dir, err);
    *loaded = lc.loaded;
    *skipped = lc.skipped;
    return rc;
}

/* ---- --generate N ------------------------------------------------------------------------ */

/* Deterministic ids, so two runs with the same N serve the same site. */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void det_uuid(char out[37], uint64_t *seed)
{
    uint64_t a = splitmix(seed), b = splitmix(seed);
    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)((b >> 48) & 0x3fff) | 0x8000, (unsigned long long)(b & 0xffffffffffffULL));
}

static cJSON *parse_or_die(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    if (!j) {
        fprintf(stderr, "vmdr-sim: BUG: generator template is not JSON\n");
        abort();
    }
    return j;
}

#define GEN_POOL "ocs-storagecluster-cephblockpool"
#define GEN_SC "ocs-storagecluster-ceph-rbd-virtualization"
#define GEN_DRIVER "openshift-storage.rbd.csi.ceph.com"
#define GEN_CLUSTER "openshift-storage"

static void gen_disk(sim_store *st, const char *ns, const char *claim, const char *size,
                     const char *ts, uint64_t *seed)
{
    char pvc_uid[37], obj_uuid[37], buf[4096];
    det_uuid(pvc_uid, seed);
    det_uuid(obj_uuid, seed);
    snprintf(buf, sizeof buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"metadata\":{"
             "\"annotations\":{\"pv.kubernetes.io/bind-completed\":\"yes\","
             "\"pv.kubernetes.io/bound-by-controller\":\"yes\","
             "\"volume.beta.kubernetes.io/storage-provisioner\":\"" GEN_DRIVER "\","
             "\"volume.kubernetes.io/storage-provisioner\":\"" GEN_DRIVER "\"},"
             "\"creationTimestamp\":\"%s\",\"finalizers\":[\"kubernetes.io/pvc-protection\"],"
             "\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"%s\"},"
             "\"spec\":{\"accessModes\":[\"ReadWriteMany\"],\"resources\":{\"requests\":"
             "{\"storage\":\"%s\"}},\"storageClassName\":\"" GEN_SC "\","
             "\"volumeMode\":\"Block\",\"volumeName\":\"pvc-%s\"},"
             "\"status\":{\"accessModes\":[\"ReadWriteMany\"],\"capacity\":{\"storage\":\"%s\"},"
             "\"phase\":\"Bound\"}}",
             ts, claim, ns, pvc_uid, size, pvc_uid, size);
    sim_store_put(st, SIM_RES_PVCS, parse_or_die(buf), 0);
    char pv_uid[37];
    det_uuid(pv_uid, seed);
    snprintf(buf, sizeof buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolume\",\"metadata\":{"
             "\"annotations\":{\"pv.kubernetes.io/provisioned-by\":\"" GEN_DRIVER "\","
             "\"volume.kubernetes.io/provisioner-deletion-secret-name\":"
             "\"rook-csi-rbd-provisioner\","
             "\"volume.kubernetes.io/provisioner-deletion-secret-namespace\":\"" GEN_CLUSTER "\"},"
             "\"creationTimestamp\":\"%s\",\"finalizers\":[\"kubernetes.io/pv-protection\"],"
             "\"name\":\"pvc-%s\",\"uid\":\"%s\"},"
             "\"spec\":{\"accessModes\":[\"ReadWriteMany\"],\"capacity\":{\"storage\":\"%s\"},"
             "\"claimRef\":{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\","
             "\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"%s\"},"
             "\"csi\":{\"controllerExpandSecretRef\":{\"name\":\"rook-csi-rbd-provisioner\","
             "\"namespace\":\"" GEN_CLUSTER "\"},\"driver\":\"" GEN_DRIVER "\","
             "\"nodeStageSecretRef\":{\"name\":\"rook-csi-rbd-node\",\"namespace\":\"" GEN_CLUSTER
             "\"},\"volumeAttributes\":{\"clusterID\":\"" GEN_CLUSTER "\","
             "\"imageFeatures\":\"layering,deep-flatten,exclusive-lock,object-map,fast-diff\","
             "\"imageFormat\":\"2\",\"imageName\":\"csi-vol-%s\",\"journalPool\":\"" GEN_POOL
             "\",\"pool\":\"" GEN_POOL "\","
             "\"storage.kubernetes.io/csiProvisionerIdentity\":"
             "\"1700000000000-8081-" GEN_DRIVER "\"},"
             "\"volumeHandle\":\"0001-0011-" GEN_CLUSTER "-0000000000000001-%s\"},"
             "\"persistentVolumeReclaimPolicy\":\"Delete\",\"storageClassName\":\"" GEN_SC "\","
             "\"volumeMode\":\"Block\"},\"status\":{\"phase\":\"Bound\"}}",
             ts, pvc_uid, pv_uid, size, claim, ns, pvc_uid, obj_uuid, obj_uuid);
    sim_store_put(st, SIM_RES_PVS, parse_or_die(buf), 0);
}

void sim_generate(sim_store *st, int n)
{
    static const char *const tiers[] = {"web", "app", "database"};
    static const char *const os[] = {"rhel9", "fedora", "centos-stream9", "windows2k22"};
    uint64_t seed = 0x766d6472; /* "vmdr" */
    char ts[32];
    sim_rfc3339(ts, sim_now() - 86400 * 3);
    for (int i = 0; i < n; i++) {
        char ns[64], name[64], root[80], data[80], vm_uid[37];
        /* 50 VMs a namespace: a 10,000-VM site has 200 namespaces. */
        snprintf(ns, sizeof ns, "dr-app-%03d", i / 50);
        snprintf(name, sizeof name, "vm-%05d", i);
        snprintf(root, sizeof root, "%s-rootdisk", name);
        snprintf(data, sizeof data, "%s-data", name);
        int has_data = i % 4 == 0;
        sim_store_ensure_ns(st, ns);
        det_uuid(vm_uid, &seed);
        sim_buf b = {0};
        sim_buf_printf(
            &b,
            "{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\",\"metadata\":{"
            "\"annotations\":{\"kubevirt.io/latest-observed-api-version\":\"v1\","
            "\"kubevirt.io/storage-observed-api-version\":\"v1\","
            "\"vm.kubevirt.io/validations\":\"[]\"},"
            "\"creationTimestamp\":\"%s\",\"finalizers\":[\"kubevirt.io/"
            "virtualMachineControllerFinalize\"],"
            "\"generation\":1,\"labels\":{\"app\":\"%s\",\"app-tier\":\"%s\","
            "\"dr.demojam.com/enabled\":\"true\",\"vm.kubevirt.io/template\":\"%s-server-small\","
            "\"vm.kubevirt.io/template.namespace\":\"openshift\"},"
            "\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":\"%s\"},"
            "\"spec\":{\"runStrategy\":\"%s\",\"template\":{\"metadata\":{"
            "\"annotations\":{\"vm.kubevirt.io/flavor\":\"small\",\"vm.kubevirt.io/os\":\"%s\","
            "\"vm.kubevirt.io/workload\":\"server\"},\"creationTimestamp\":null,"
            "\"labels\":{\"kubevirt.io/domain\":\"%s\",\"kubevirt.io/size\":\"small\"}},"
            "\"spec\":{\"architecture\":\"amd64\",\"domain\":{\"cpu\":{\"cores\":1,\"sockets\":2,"
            "\"threads\":1},\"devices\":{\"disks\":[{\"disk\":{\"bus\":\"virtio\"},"
            "\"name\":\"rootdisk\"}%s,{\"disk\":{\"bus\":\"virtio\"},\"name\":\"cloudinitdisk\"}],"
            "\"interfaces\":[{\"macAddress\":\"02:%02x:%02x:%02x:00:01\",\"masquerade\":{},"
            "\"model\":\"virtio\",\"name\":\"default\"}],\"networkInterfaceMultiqueue\":true,"
            "\"rng\":{}},\"features\":{\"acpi\":{},\"smm\":{\"enabled\":true}},"
            "\"firmware\":{\"bootloader\":{\"efi\":{}},\"uuid\":\"%s\"},"
            "\"machine\":{\"type\":\"pc-q35-rhel9.4.0\"},\"memory\":{\"guest\":\"4Gi\"},"
            "\"resources\":{}},\"evictionStrategy\":\"LiveMigrate\",\"networks\":[{\"name\":"
            "\"default\",\"pod\":{}}],\"terminationGracePeriodSeconds\":180,\"volumes\":["
            "{\"name\":\"rootdisk\",\"persistentVolumeClaim\":{\"claimName\":\"%s\"}}",
            ts, name, tiers[i % 3], os[i % 4], name, ns, vm_uid, i % 5 == 4 ? "Halted" : "Always",
            os[i % 4], name,
            has_data ? ",{\"disk\":{\"bus\":\"virtio\"},\"name\":\"datadisk\"}" : "",
            (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff, vm_uid, root);
        if (has_data)
            sim_buf_printf(&b,
                           ",{\"name\":\"datadisk\",\"persistentVolumeClaim\":{\"claimName\":"
                           "\"%s\"}}",
                           data);
        sim_buf_printf(
            &b,
            ",{\"cloudInitNoCloud\":{\"userData\":\"#cloud-config\\nuser: cloud-user\\n"
            "password: changeme\\nchpasswd: { expire: False }\\n\"},\"name\":\"cloudinitdisk\"}"
            "]}}},\"status\":{\"conditions\":[{\"lastProbeTime\":null,\"lastTransitionTime\":"
            "\"%s\",\"status\":\"%s\",\"type\":\"Ready\"}],\"created\":true,"
            "\"desiredGeneration\":1,\"observedGeneration\":1,\"printableStatus\":\"%s\","
            "\"ready\":%s,\"runStrategy\":\"%s\",\"volumeSnapshotStatuses\":["
            "{\"enabled\":true,\"name\":\"rootdisk\"}]}}",
            ts, i % 5 == 4 ? "False" : "True", i % 5 == 4 ? "Stopped" : "Running",
            i % 5 == 4 ? "false" : "true", i % 5 == 4 ? "Halted" : "Always");
        cJSON *vm = parse_or_die(b.p);
        sim_buf_free(&b);
        sim_store_put(st, SIM_RES_VMS, vm, 0);
        gen_disk(st, ns, root, "30Gi", ts, &seed);
        if (has_data)
            gen_disk(st, ns, data, "100Gi", ts, &seed);
    }
}
