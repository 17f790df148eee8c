/* vmdr-sim fixtures: YAML 1.1 scalars as sigs.k8s.io/yaml reads them, multi-document files,
 * List kinds, and the shape of --generate. */
#include <stdio.h>
#include <string.h>

#include "../../runtime/sim/load.c"
#include "../../runtime/sim/store.c"
#include "../../runtime/sim/util.c"

static int fails;

static void expect_json(const char *yaml, const char *want)
{
    vmdr_err e = {0};
    cJSON *docs = sim_yaml_parse_all(yaml, strlen(yaml), &e);
    cJSON *w = cJSON_Parse(want);
    if (!docs || !cJSON_Compare(docs, w, 1)) {
        char *got = docs ? cJSON_PrintUnformatted(docs) : NULL;
        printf("FAIL yaml %s\n  got  %s\n  want %s\n", yaml, got ? got : e.message, want);
        free(got);
        fails++;
    }
    cJSON_Delete(docs);
    cJSON_Delete(w);
}

int main(void)
{
    expect_json("a: yes\nb: \"yes\"\nc: 0755\nd: 1e3\ne: ~\nf: \"1\"\ng: 1.5\nh: off\ni: 64M\n",
                "[{\"a\":true,\"b\":\"yes\",\"c\":493,\"d\":1000,\"e\":null,\"f\":\"1\","
                "\"g\":1.5,\"h\":false,\"i\":\"64M\"}]");
    expect_json("---\n# c\na: 1\n---\nb: [x, 'y']\n", "[{\"a\":1},{\"b\":[\"x\",\"y\"]}]");
    expect_json("annotations:\nlist: []\nmap: {}\n", "[{\"annotations\":null,\"list\":[],\"map\":{}}]");
    expect_json("a: &x {k: v}\nb: *x\n", "[{\"a\":{\"k\":\"v\"},\"b\":{\"k\":\"v\"}}]");
    vmdr_err e = {0};
    cJSON *bad = sim_yaml_parse_all("a: [1, 2\n", 9, &e);
    if (bad || !strstr(e.message, "line")) {
        printf("FAIL malformed YAML should fail naming the line: %s\n", e.message);
        fails++;
    }

    sim_store st;
    sim_store_init(&st, 16);
    sim_generate(&st, 8);
    /* 8 VMs, 8 root disks + 2 data disks (i % 4 == 0), one namespace */
    if (st.coll[SIM_RES_VMS].n != 8 || st.coll[SIM_RES_PVCS].n != 10 ||
        st.coll[SIM_RES_PVS].n != 10 || st.coll[SIM_RES_NAMESPACES].n != 1) {
        printf("FAIL generate counts: %zu vms %zu pvcs %zu pvs %zu ns\n", st.coll[SIM_RES_VMS].n,
               st.coll[SIM_RES_PVCS].n, st.coll[SIM_RES_PVS].n, st.coll[SIM_RES_NAMESPACES].n);
        fails++;
    }
    sim_obj *pvc = sim_store_get(&st, SIM_RES_PVCS, "dr-app-000", "vm-00004-data");
    const char *pvname = pvc ? sim_j_str(sim_j_obj(pvc->json, "spec"), "volumeName") : NULL;
    sim_obj *pv = pvname ? sim_store_get(&st, SIM_RES_PVS, "", pvname) : NULL;
    const cJSON *csi = pv ? sim_j_path(pv->json, "spec.csi") : NULL;
    const char *handle = sim_j_str(csi, "volumeHandle");
    const char *image = sim_j_str(sim_j_obj(csi, "volumeAttributes"), "imageName");
    if (!handle || !image || strncmp(image, "csi-vol-", 8) ||
        strcmp(handle + strlen(handle) - 36, image + 8) ||
        strncmp(handle, "0001-0011-openshift-storage-", 28)) {
        printf("FAIL PV volumeHandle/imageName: %s %s\n", handle ? handle : "-",
               image ? image : "-");
        fails++;
    }
    /* claimRef points back at the PVC, with its uid */
    const cJSON *cr = pv ? sim_j_path(pv->json, "spec.claimRef") : NULL;
    if (!cr || strcmp(sim_j_str(cr, "uid"), sim_j_str(sim_j_obj(pvc->json, "metadata"), "uid"))) {
        printf("FAIL claimRef uid\n");
        fails++;
    }
    /* stored texts start with apiVersion, kind: the bare-item offset is known */
    if (!pvc || !pvc->ref->bare || strncmp(pvc->ref->s + pvc->ref->bare, "\"metadata\"", 10)) {
        printf("FAIL bare offset\n");
        fails++;
    }
    /* deterministic: a second site of 8 has the same uids */
    sim_store st2;
    sim_store_init(&st2, 16);
    sim_generate(&st2, 8);
    sim_obj *a = sim_store_get(&st, SIM_RES_VMS, "dr-app-000", "vm-00003");
    sim_obj *b = sim_store_get(&st2, SIM_RES_VMS, "dr-app-000", "vm-00003");
    if (!a || !b ||
        strcmp(sim_j_str(sim_j_obj(a->json, "metadata"), "uid"),
               sim_j_str(sim_j_obj(b->json, "metadata"), "uid"))) {
        printf("FAIL generate is not deterministic\n");
        fails++;
    }
    sim_store_free(&st);
    sim_store_free(&st2);
    printf("%d failures\n", fails);
    return fails != 0;
}
