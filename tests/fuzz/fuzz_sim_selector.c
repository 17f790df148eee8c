/* Fuzzes vmdr-sim's label and field selector parsers (query strings any client can send). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/sim/select.c"
#include "../../runtime/sim/util.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    vmdr_err e = {0};
    sim_selector *sel = sim_selector_parse(s, &e);
    if (sel) {
        cJSON *labels = cJSON_Parse("{\"a\":\"b\",\"n\":\"3\",\"x/y\":\"\"}");
        sim_selector_matches(sel, labels);
        sim_selector_matches(sel, NULL);
        cJSON_Delete(labels);
        sim_selector_free(sel);
    }
    sim_fieldsel fs;
    if (sim_fieldsel_parse(&fs, s, &e) == 0) {
        sim_fieldsel_matches(&fs, "ns", "name");
        sim_fieldsel_free(&fs);
    }
    free(s);
    return 0;
}
