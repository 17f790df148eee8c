/* libFuzzer target: the k8s list scanner (runtime/k8s/listscan.c) on any bytes. The
 * first byte picks a chunk size; feeding in chunks and all at once must agree exactly
 * (same items, same envelope, same verdict), and items + envelope must account for
 * every byte of a well-formed list. A third run sets try_item (the in-place decode
 * vmdr.k8s uses) to an independent item delimiter that also declines some items at
 * random: taking items that way or falling back to the scanner must not change a thing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

typedef struct acc {
    char *p;
    size_t n, cap;
    unsigned salt; /* try_ref declines some items, picked by this */
} acc;

static int add(void *payload, const char *p, size_t n, vmdr_err *err)
{
    acc *a = payload;
    (void)err;
    if (a->n + n + 1 > a->cap) {
        a->cap = (a->n + n + 1) * 2;
        a->p = realloc(a->p, a->cap);
    }
    memcpy(a->p + a->n, p, n);
    a->n += n;
    a->p[a->n++] = '\n';
    return 0;
}

/* An item as JSON delimits it: from '{' to its matching bracket, strings with escapes
 * skipped. Returns its length, or 0 when it is not complete in p[0..n) or is declined. */
static long try_ref(void *payload, const char *p, size_t n, vmdr_err *err)
{
    acc *a = payload;
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            if ((i * 31 + a->salt) % 3 == 0)
                return 0;
            return add(payload, p, i + 1, err) == 0 ? (long)(i + 1) : -1;
        }
    }
    return 0;
}

static int run(const char *doc, size_t total, size_t step, acc *items, vmdr_k8s_listscan *s,
               int with_try)
{
    char *buf = malloc(total + 1);
    size_t have = 0, kept = 0;
    vmdr_err err;
    int rc = 0;
    vmdr_k8s_listscan_init(s);
    if (with_try)
        s->try_item = try_ref;
    if (total == 0 && vmdr_k8s_listscan_feed(s, buf, 0, 1, add, items, &err) < 0)
        rc = -1;
    while (have < total) {
        size_t n = step < total - have ? step : total - have;
        memcpy(buf + kept, doc + have, n);
        have += n;
        kept += n;
        long used = vmdr_k8s_listscan_feed(s, buf, kept, have == total, add, items, &err);
        if (used < 0) {
            rc = -1;
            break;
        }
        if ((size_t)used > kept)
            abort(); /* consumed more than it was given */
        memmove(buf, buf + used, kept - (size_t)used);
        kept -= (size_t)used;
    }
    free(buf);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    const char *doc = (const char *)data + 1;
    size_t n = size - 1;
    acc a = {0}, b = {0}, t = {0};
    t.salt = data[0];
    vmdr_k8s_listscan s1, s2, s3;
    int r1 = run(doc, n, step, &a, &s1, 0);
    int r2 = run(doc, n, n ? n : 1, &b, &s2, 0);
    int r3 = run(doc, n, step * 997, &t, &s3, 1); /* big chunks: room for try_item */
    if (r1 != r2 || a.n != b.n || (a.n && memcmp(a.p, b.p, a.n) != 0) || s1.count != s2.count)
        abort();
    if (r1 == 0 && (s1.env_len != s2.env_len ||
                    (s1.env_len && memcmp(s1.env, s2.env, s1.env_len) != 0)))
        abort();
    if (r3 != r1 || t.n != a.n || (a.n && memcmp(a.p, t.p, a.n) != 0) || s3.count != s1.count)
        abort();
    if (r1 == 0 && (s3.env_len != s1.env_len ||
                    (s1.env_len && memcmp(s1.env, s3.env, s1.env_len) != 0)))
        abort();
    vmdr_k8s_listscan_free(&s1);
    vmdr_k8s_listscan_free(&s2);
    vmdr_k8s_listscan_free(&s3);
    free(a.p);
    free(b.p);
    free(t.p);
    return 0;
}
