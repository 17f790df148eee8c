/* vmdr-sim label and field selectors: the apimachinery syntax, as data tables.
 * The sim's sources are compiled into this test (the sim is not part of vmdr_core). */
#include <stdio.h>
#include <string.h>

#include "../../runtime/sim/select.c"
#include "../../runtime/sim/util.c"

static const char *const LABELS =
    "{\"app\":\"web\",\"tier\":\"front\",\"dr.demojam.com/enabled\":\"true\",\"n\":\"5\",\"e\":\"\"}";

static const struct {
    const char *sel;
    int match;
} CASES[] = {
    {"", 1},
    {"app=web", 1},
    {"app==web", 1},
    {"app=db", 0},
    {"app!=db", 1},
    {"app!=web", 0},
    {"missing!=x", 1}, /* != matches objects without the key */
    {"app in (web,db)", 1},
    {"app in (db)", 0},
    {"app notin (db, cache)", 1},
    {"app notin (web)", 0},
    {"missing notin (web)", 1},
    {"app", 1},
    {"missing", 0},
    {"!missing", 1},
    {"!app", 0},
    {"dr.demojam.com/enabled=true", 1},
    {"dr.demojam.com/enabled=true,app=web", 1},
    {"dr.demojam.com/enabled=true,app=db", 0},
    {" app = web , tier in ( front ) ", 1},
    {"n>4", 1},
    {"n>5", 0},
    {"n<6", 1},
    {"e=", 1},
    {"e in (x,)", 1}, /* an empty value in a set */
};

static const char *const BAD[] = {
    "app in (web", "app in web", "app=(x)", "=web", "app=web,", "app in ()", "n>x", "app=we b",
    "Bad Key=x", "app=-x-",
};

int main(void)
{
    int fails = 0;
    cJSON *labels = cJSON_Parse(LABELS);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        vmdr_err e = {0};
        sim_selector *s = sim_selector_parse(CASES[i].sel, &e);
        if (!s) {
            printf("FAIL parse '%s': %s\n", CASES[i].sel, e.message);
            fails++;
            continue;
        }
        int m = sim_selector_matches(s, labels);
        if (m != CASES[i].match) {
            printf("FAIL '%s' matched %d, want %d\n", CASES[i].sel, m, CASES[i].match);
            fails++;
        }
        sim_selector_free(s);
    }
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        vmdr_err e = {0};
        sim_selector *s = sim_selector_parse(BAD[i], &e);
        if (s || strncmp(e.message, "unable to parse requirement", 27)) {
            printf("FAIL '%s' should be rejected (got %s)\n", BAD[i], s ? "a selector" : e.message);
            fails++;
        }
        sim_selector_free(s);
    }
    /* no labels at all: only negative requirements hold */
    vmdr_err e = {0};
    sim_selector *s = sim_selector_parse("!app,x!=y,z notin (a)", &e);
    if (!s || !sim_selector_matches(s, NULL)) {
        printf("FAIL negative requirements on an unlabelled object\n");
        fails++;
    }
    sim_selector_free(s);

    sim_fieldsel fs;
    if (sim_fieldsel_parse(&fs, "metadata.name=a,metadata.namespace!=kube-system", &e) ||
        !sim_fieldsel_matches(&fs, "default", "a") || sim_fieldsel_matches(&fs, "default", "b") ||
        sim_fieldsel_matches(&fs, "kube-system", "a")) {
        printf("FAIL field selector\n");
        fails++;
    }
    sim_fieldsel_free(&fs);
    if (sim_fieldsel_parse(&fs, "spec.running=true", &e) == 0 ||
        strcmp(e.message, "field label not supported: spec.running")) {
        printf("FAIL unsupported field: %s\n", e.message);
        fails++;
    }
    cJSON_Delete(labels);
    printf("%d failures\n", fails);
    return fails != 0;
}
