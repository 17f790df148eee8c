/* vmdr_yaml_key_cmp (runtime/yaml/keysort.c): the order below is what
 * `kubectl create configmap --dry-run=client -o yaml` (v1.32) printed for these keys.
 * go-yaml's order is not transitive on every set (v10 < v1alpha2 < v1beta1 < v2 < v10),
 * and kubectl's output for such a set changes from run to run; this set has no cycle
 * (checked below), so its order is kubectl's on every run. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "yaml/yaml.h"

static const char *const kubectl_order[] = {
    "_x",  "0",   "9",   "10",   "A",     "B_",   "Z",     "a-b",      "a.b",
    "a_b", "a0",  "a00", "a1",   "a01",   "a001", "a2",    "a2b",      "a02",
    "a10", "aB",  "b",   "b_",   "bb9",   "bb10", "bb10a", "v1alpha2", "v1beta1",
    "v2",  "x-1", "x.1", "x1y2", "x1y10", "x01",  "z9a",   "z9z",      "z09z",
};

static int cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return vmdr_yaml_key_cmp(x, strlen(x), y, strlen(y));
}

int main(void)
{
    const size_t n = sizeof kubectl_order / sizeof kubectl_order[0];
    for (size_t i = 0; i + 1 < n; i++) {
        const char *a = kubectl_order[i], *b = kubectl_order[i + 1];
        CHECK(vmdr_yaml_key_cmp(a, strlen(a), b, strlen(b)) < 0, "%s < %s", a, b);
        CHECK(vmdr_yaml_key_cmp(b, strlen(b), a, strlen(a)) > 0, "%s > %s", b, a);
    }
    for (size_t i = 0; i < n; i++)
        CHECK(cmp(&kubectl_order[i], &kubectl_order[i]) == 0, "%s == itself", kubectl_order[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            CHECK((cmp(&kubectl_order[i], &kubectl_order[j]) < 0) == (i < j), "%s vs %s",
                  kubectl_order[i], kubectl_order[j]);

    /* a cycle in go-yaml's order, which kubectl prints in varying orders */
    static const char *const cycle[] = {"v10", "v1alpha2", "v1beta1", "v2"};
    for (int i = 0; i < 4; i++)
        CHECK(cmp(&cycle[i], &cycle[(i + 1) % 4]) < 0, "%s < %s", cycle[i], cycle[(i + 1) % 4]);

    /* sorting the reversed list gives kubectl's order back */
    const char *v[sizeof kubectl_order / sizeof kubectl_order[0]];
    for (size_t i = 0; i < n; i++)
        v[i] = kubectl_order[n - 1 - i];
    qsort(v, n, sizeof v[0], cmp);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(v[i], kubectl_order[i]) == 0, "position %zu: %s, want %s", i, v[i],
              kubectl_order[i]);

    /* non-ASCII letters sort after ASCII ones; a prefix sorts first */
    CHECK(vmdr_yaml_key_cmp("z", 1, "\xC3\xA9", 2) < 0, "z < e-acute");
    CHECK(vmdr_yaml_key_cmp("ab", 2, "abc", 3) < 0, "ab < abc");
    CHECK(vmdr_yaml_key_cmp("", 0, "a", 1) < 0, "empty first");
    return check_result();
}
