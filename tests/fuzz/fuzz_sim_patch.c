/* Fuzzes vmdr-sim's JSON patch and merge patch on a VM-shaped document (request bodies). */
#include <stdint.h>
#include <stdlib.h>

#include "../../runtime/sim/patch.c"
#include "../../runtime/sim/util.c"

static const char DOC[] = "{\"apiVersion\":\"kubevirt.io/v1\",\"kind\":\"VirtualMachine\","
                          "\"metadata\":{\"name\":\"a\",\"labels\":{\"x\":\"y\"}},\"spec\":{"
                          "\"runStrategy\":\"Always\",\"template\":{\"spec\":{\"volumes\":["
                          "{\"name\":\"r\"},{\"name\":\"d\"}]}}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *p = cJSON_ParseWithLength((const char *)data, size);
    if (!p)
        return 0;
    cJSON *doc = cJSON_Parse(DOC);
    vmdr_err e = {0};
    sim_json_patch(&doc, p, &e);
    cJSON_Delete(doc);
    doc = sim_merge_patch(cJSON_Parse(DOC), p);
    cJSON_Delete(doc);
    cJSON_Delete(p);
    return 0;
}
