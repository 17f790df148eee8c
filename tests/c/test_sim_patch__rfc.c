/* vmdr-sim JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the reduced strategic merge
 * patch for core types, as data tables. */
#include <stdio.h>
#include <string.h>

#include "../../runtime/sim/patch.c"
#include "../../runtime/sim/util.c"

static const struct {
    const char *target, *patch, *want;
} MERGE[] = {
    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
};

static const struct {
    const char *doc, *ops, *want; /* want NULL: the patch must fail */
} JP[] = {
    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz\",\"value\":\"qux\"}]",
     "{\"foo\":\"bar\",\"baz\":\"qux\"}"},
    {"{\"foo\":[\"bar\",\"baz\"]}", "[{\"op\":\"add\",\"path\":\"/foo/1\",\"value\":\"qux\"}]",
     "{\"foo\":[\"bar\",\"qux\",\"baz\"]}"},
    {"{\"foo\":[\"bar\"]}", "[{\"op\":\"add\",\"path\":\"/foo/-\",\"value\":\"x\"}]",
     "{\"foo\":[\"bar\",\"x\"]}"},
    {"{\"baz\":\"qux\",\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/baz\"}]",
     "{\"foo\":\"bar\"}"},
    {"{\"foo\":[\"bar\",\"qux\",\"baz\"]}", "[{\"op\":\"remove\",\"path\":\"/foo/1\"}]",
     "{\"foo\":[\"bar\",\"baz\"]}"},
    {"{\"baz\":\"qux\"}", "[{\"op\":\"replace\",\"path\":\"/baz\",\"value\":\"boo\"}]",
     "{\"baz\":\"boo\"}"},
    {"{\"foo\":{\"bar\":\"baz\",\"waldo\":\"fred\"},\"qux\":{\"corge\":\"grault\"}}",
     "[{\"op\":\"move\",\"from\":\"/foo/waldo\",\"path\":\"/qux/thud\"}]",
     "{\"foo\":{\"bar\":\"baz\"},\"qux\":{\"corge\":\"grault\",\"thud\":\"fred\"}}"},
    {"{\"a\":{\"b\":1}}", "[{\"op\":\"copy\",\"from\":\"/a\",\"path\":\"/c\"}]",
     "{\"a\":{\"b\":1},\"c\":{\"b\":1}}"},
    {"{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"qux\"}]",
     "{\"baz\":\"qux\"}"},
    {"{\"baz\":\"qux\"}", "[{\"op\":\"test\",\"path\":\"/baz\",\"value\":\"bar\"}]", NULL},
    {"{\"foo\":\"bar\"}", "[{\"op\":\"add\",\"path\":\"/baz/bat\",\"value\":\"qux\"}]", NULL},
    {"{\"foo\":\"bar\"}", "[{\"op\":\"remove\",\"path\":\"/nope\"}]", NULL},
    {"{\"foo\":\"bar\"}", "[{\"op\":\"replace\",\"path\":\"/nope\",\"value\":1}]", NULL},
    {"{\"foo\":[1]}", "[{\"op\":\"add\",\"path\":\"/foo/5\",\"value\":1}]", NULL},
    {"{\"foo\":[1]}", "[{\"op\":\"add\",\"path\":\"/foo/01\",\"value\":1}]", NULL},
    {"{\"/\":1,\"~\":2}", "[{\"op\":\"remove\",\"path\":\"/~1\"},{\"op\":\"remove\",\"path\":\"/~0\"}]",
     "{}"},
    {"{\"a\":1}", "[{\"op\":\"frobnicate\",\"path\":\"/a\"}]", NULL},
    {"{\"a\":1}", "{\"op\":\"add\"}", NULL},
    /* the Kubernetes case: add a label to an object that has labels */
    {"{\"metadata\":{\"labels\":{\"a\":\"b\"}}}",
     "[{\"op\":\"add\",\"path\":\"/metadata/labels/dr.demojam.com~1enabled\",\"value\":\"true\"}]",
     "{\"metadata\":{\"labels\":{\"a\":\"b\",\"dr.demojam.com/enabled\":\"true\"}}}"},
};

static const struct {
    const char *target, *patch, *want;
} SMP[] = {
    /* directives are honoured, never stored */
    {"{\"metadata\":{\"finalizers\":[\"a\",\"b\"],\"labels\":{\"x\":\"1\"}}}",
     "{\"metadata\":{\"$setElementOrder/finalizers\":[\"b\",\"c\"],\"finalizers\":[\"c\"],"
     "\"$deleteFromPrimitiveList/finalizers\":[\"a\"]}}",
     "{\"metadata\":{\"finalizers\":[\"b\",\"c\"],\"labels\":{\"x\":\"1\"}}}"},
    {"{\"spec\":{\"a\":1,\"b\":2}}", "{\"spec\":{\"$patch\":\"replace\",\"c\":3}}",
     "{\"spec\":{\"c\":3}}"},
    {"{\"spec\":{\"a\":1},\"x\":1}", "{\"spec\":{\"$patch\":\"delete\"}}", "{\"x\":1}"},
    {"{\"spec\":{\"accessModes\":[\"ReadWriteOnce\"]}}",
     "{\"spec\":{\"accessModes\":[\"ReadWriteMany\"]},\"$retainKeys\":[\"spec\"]}",
     "{\"spec\":{\"accessModes\":[\"ReadWriteMany\"]}}"},
    {"{\"a\":{\"b\":1}}", "{\"a\":{\"b\":null,\"c\":2}}", "{\"a\":{\"c\":2}}"},
};

int main(void)
{
    int fails = 0;
    for (size_t i = 0; i < sizeof SMP / sizeof SMP[0]; i++) {
        cJSON *t = cJSON_Parse(SMP[i].target), *p = cJSON_Parse(SMP[i].patch);
        cJSON *want = cJSON_Parse(SMP[i].want);
        t = sim_strategic_patch(t, p);
        if (!t || !cJSON_Compare(t, want, 1)) {
            char *got = t ? cJSON_PrintUnformatted(t) : NULL;
            printf("FAIL strategic %zu: got %s want %s\n", i, got ? got : "NULL", SMP[i].want);
            free(got);
            fails++;
        }
        cJSON_Delete(t);
        cJSON_Delete(p);
        cJSON_Delete(want);
    }
    for (size_t i = 0; i < sizeof MERGE / sizeof MERGE[0]; i++) {
        cJSON *t = cJSON_Parse(MERGE[i].target), *p = cJSON_Parse(MERGE[i].patch);
        cJSON *want = cJSON_Parse(MERGE[i].want);
        t = sim_merge_patch(t, p);
        if (!cJSON_Compare(t, want, 1)) {
            char *got = cJSON_PrintUnformatted(t);
            printf("FAIL merge %zu: got %s want %s\n", i, got, MERGE[i].want);
            free(got);
            fails++;
        }
        cJSON_Delete(t);
        cJSON_Delete(p);
        cJSON_Delete(want);
    }
    for (size_t i = 0; i < sizeof JP / sizeof JP[0]; i++) {
        cJSON *d = cJSON_Parse(JP[i].doc), *ops = cJSON_Parse(JP[i].ops);
        vmdr_err e = {0};
        int rc = sim_json_patch(&d, ops, &e);
        if (!JP[i].want) {
            if (rc == 0 || !e.message[0]) {
                printf("FAIL json patch %zu should fail\n", i);
                fails++;
            }
        } else {
            cJSON *want = cJSON_Parse(JP[i].want);
            if (rc || !cJSON_Compare(d, want, 1)) {
                char *got = cJSON_PrintUnformatted(d);
                printf("FAIL json patch %zu: rc %d (%s) got %s want %s\n", i, rc, e.message, got,
                       JP[i].want);
                free(got);
                fails++;
            }
            cJSON_Delete(want);
        }
        cJSON_Delete(d);
        cJSON_Delete(ops);
    }
    printf("%d failures\n", fails);
    return fails != 0;
}
