/* Fuzzes vmdr-sim's fixture reader (libyaml documents to cJSON, YAML 1.1 scalars). */
#include <stdint.h>

#include "../../runtime/sim/load.c"
#include "../../runtime/sim/store.c"
#include "../../runtime/sim/util.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vmdr_err e = {0};
    cJSON *docs = sim_yaml_parse_all((const char *)data, size, &e);
    cJSON_Delete(docs);
    return 0;
}
