/* vmdr.k8s core: the list scanner hands over every item and keeps the envelope, whatever
 * the chunking of the body (one byte at a time, or all at once), including strings that
 * hold braces, brackets, escaped quotes and a nested "items" key; a list cut inside its
 * items is an error, never a shorter list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

typedef struct seen {
    char all[4096];
    int n;
} seen;

static int on_item(void *payload, const char *p, size_t n, vmdr_err *err)
{
    seen *s = payload;
    (void)err;
    strncat(s->all, p, n);
    strcat(s->all, "|");
    s->n++;
    return 0;
}

static const char *DOC =
    "{\"kind\":\"VirtualMachineList\",\"apiVersion\":\"kubevirt.io/v1\","
    "\"metadata\":{\"resourceVersion\":\"42\",\"continue\":\"abc\",\"items\":[1]},"
    "\"items\": [ {\"a\":\"x}]\\\"{\",\"items\":[{\"b\":1}]},\n{\"c\":[1,{\"d\":\"]\"}]} ,{}],"
    "\"extra\":\"items\"}";
static const char *ITEMS =
    "{\"a\":\"x}]\\\"{\",\"items\":[{\"b\":1}]}|{\"c\":[1,{\"d\":\"]\"}]}|{}|";
static const char *ENV = "{\"kind\":\"VirtualMachineList\",\"apiVersion\":\"kubevirt.io/v1\","
                         "\"metadata\":{\"resourceVersion\":\"42\",\"continue\":\"abc\","
                         "\"items\":[1]},\"items\": [],"
                         "\"extra\":\"items\"}";

/* Feeds doc in chunks of size step, keeping unconsumed bytes as the core does. */
static int run(const char *doc, size_t step, seen *out, vmdr_k8s_listscan *s, vmdr_err *err)
{
    size_t total = strlen(doc), have = 0, kept = 0;
    char *buf = malloc(total + 1);
    memset(out, 0, sizeof *out);
    vmdr_k8s_listscan_init(s);
    while (have < total) {
        size_t add = step < total - have ? step : total - have;
        memcpy(buf + kept, doc + have, add);
        have += add;
        kept += add;
        long used = vmdr_k8s_listscan_feed(s, buf, kept, have == total, on_item, out, err);
        if (used < 0) {
            free(buf);
            return -1;
        }
        memmove(buf, buf + used, kept - (size_t)used);
        kept -= (size_t)used;
    }
    free(buf);
    return 0;
}

int main(void)
{
    int failures = 0;
    size_t steps[] = {1, 2, 3, 7, 64, 100000};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        seen out;
        vmdr_k8s_listscan s;
        vmdr_err err;
        vmdr_err_clear(&err);
        if (run(DOC, steps[k], &out, &s, &err) != 0) {
            fprintf(stderr, "step %zu: %s\n", steps[k], err.message);
            failures++;
        } else if (strcmp(out.all, ITEMS) != 0 || out.n != 3 || !s.found ||
                   strcmp(s.env, ENV) != 0) {
            fprintf(stderr, "step %zu:\n items %s\n  want %s\n env %s\n want %s\n", steps[k],
                    out.all, ITEMS, s.env, ENV);
            failures++;
        }
        vmdr_k8s_listscan_free(&s);
    }
    {
        /* a document without items is kept whole in the envelope */
        seen out;
        vmdr_k8s_listscan s;
        vmdr_err err;
        const char *status = "{\"kind\":\"Status\",\"code\":404,\"details\":{\"items\":\"x\"}}";
        if (run(status, 5, &out, &s, &err) != 0 || out.n != 0 || s.found ||
            strcmp(s.env, status) != 0) {
            fprintf(stderr, "status document: env %s\n", s.env ? s.env : "(null)");
            failures++;
        }
        vmdr_k8s_listscan_free(&s);
    }
    {
        /* cut inside the items: an error naming how far it got */
        seen out;
        vmdr_k8s_listscan s;
        vmdr_err err;
        vmdr_err_clear(&err);
        const char *cut = "{\"items\":[{\"a\":1},{\"b\":";
        if (run(cut, 4, &out, &s, &err) == 0 || strcmp(err.code, "bad_response") != 0 ||
            strstr(err.message, "after 1 complete items") == NULL) {
            fprintf(stderr, "cut list: %s\n", err.message);
            failures++;
        }
        vmdr_k8s_listscan_free(&s);
    }
    return failures ? 1 : 0;
}
