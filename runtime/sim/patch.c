/* JSON merge patch (RFC 7386) and JSON patch (RFC 6902) on cJSON documents. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

cJSON *sim_merge_patch(cJSON *target, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        cJSON_Delete(target);
        return cJSON_Duplicate(patch, 1);
    }
    if (!cJSON_IsObject(target)) {
        cJSON_Delete(target);
        target = cJSON_CreateObject();
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, patch)
    {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
            continue;
        }
        cJSON *cur = cJSON_DetachItemFromObjectCaseSensitive(target, p->string);
        cJSON *merged = sim_merge_patch(cur, p);
        cJSON_AddItemToObject(target, p->string, merged);
    }
    return target;
}

/* Strategic merge patch, reduced to what PVC, PV and Namespace patches from kubectl carry:
 * a merge patch whose directives are honoured instead of stored as keys. "$patch": "delete" /
 * "replace" on a map, "$deleteFromPrimitiveList/<list>", "$setElementOrder/<list>" and
 * "$retainKeys" (ordering and pruning hints, ignored); metadata.finalizers and other
 * primitive lists named "finalizers" merge as sets, as their patchStrategy says; every other
 * list is replaced. Returns NULL when the patch deletes the target. */
cJSON *sim_strategic_patch(cJSON *target, const cJSON *patch)
{
    if (!cJSON_IsObject(patch)) {
        cJSON_Delete(target);
        return cJSON_Duplicate(patch, 1);
    }
    const char *directive = NULL;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(patch, "$patch");
    if (cJSON_IsString(d))
        directive = d->valuestring;
    if (directive && !strcmp(directive, "delete")) {
        cJSON_Delete(target);
        return NULL;
    }
    if (directive && !strcmp(directive, "replace")) {
        cJSON_Delete(target);
        target = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(target)) {
        cJSON_Delete(target);
        target = cJSON_CreateObject();
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, patch)
    {
        const char *k = p->string;
        if (!strcmp(k, "$patch") || !strncmp(k, "$setElementOrder/", 17) ||
            !strcmp(k, "$retainKeys"))
            continue;
        if (!strncmp(k, "$deleteFromPrimitiveList/", 25)) {
            cJSON *list = cJSON_GetObjectItemCaseSensitive(target, k + 25);
            const cJSON *v;
            cJSON_ArrayForEach(v, p)
            {
                for (int i = cJSON_GetArraySize(list) - 1; cJSON_IsArray(list) && i >= 0; i--)
                    if (cJSON_Compare(cJSON_GetArrayItem(list, i), v, 1))
                        cJSON_DeleteItemFromArray(list, i);
            }
            continue;
        }
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, k);
            continue;
        }
        cJSON *cur = cJSON_DetachItemFromObjectCaseSensitive(target, k);
        if (cJSON_IsArray(p) && cJSON_IsArray(cur) && !strcmp(k, "finalizers")) {
            const cJSON *v;
            cJSON_ArrayForEach(v, p)
            {
                int have = 0;
                const cJSON *c;
                cJSON_ArrayForEach(c, cur) have |= cJSON_Compare(c, v, 1);
                if (!have)
                    cJSON_AddItemToArray(cur, cJSON_Duplicate(v, 1));
            }
            cJSON_AddItemToObject(target, k, cur);
            continue;
        }
        cJSON *merged = sim_strategic_patch(cur, p);
        if (merged)
            cJSON_AddItemToObject(target, k, merged);
    }
    return target;
}

/* Decodes one JSON pointer token (~1 -> /, ~0 -> ~). */
static char *pointer_token(const char **p)
{
    const char *s = *p;
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    char *out = sim_xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
            out[j++] = s[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    *p = e ? e + 1 : s + n;
    return out;
}

static int array_index(const char *tok, int size, int allow_end, int *out)
{
    if (allow_end && !strcmp(tok, "-")) {
        *out = size;
        return 0;
    }
    if (!*tok || (tok[0] == '0' && tok[1]))
        return -1;
    for (const char *c = tok; *c; c++)
        if (!isdigit((unsigned char)*c))
            return -1;
    long v = strtol(tok, NULL, 10);
    if (v > size || (v == size && !allow_end))
        return -1;
    *out = (int)v;
    return 0;
}

/* Resolves path to its parent container and last token. The root ("") has no parent. */
static int resolve(cJSON *doc, const char *path, cJSON **parent, char **last)
{
    *parent = NULL;
    *last = NULL;
    if (!*path)
        return 0;
    if (*path != '/')
        return -1;
    const char *p = path + 1;
    cJSON *cur = doc;
    for (;;) {
        int more = strchr(p, '/') != NULL;
        char *tok = pointer_token(&p);
        if (!more) {
            *parent = cur;
            *last = tok;
            return 0;
        }
        cJSON *next = NULL;
        if (cJSON_IsObject(cur)) {
            next = cJSON_GetObjectItemCaseSensitive(cur, tok);
        } else if (cJSON_IsArray(cur)) {
            int i;
            if (!array_index(tok, cJSON_GetArraySize(cur), 0, &i))
                next = cJSON_GetArrayItem(cur, i);
        }
        free(tok);
        if (!next)
            return -1;
        cur = next;
    }
}

static cJSON *get_at(cJSON *doc, const char *path)
{
    cJSON *parent;
    char *last;
    if (resolve(doc, path, &parent, &last))
        return NULL;
    if (!parent)
        return doc;
    cJSON *v = NULL;
    if (cJSON_IsObject(parent)) {
        v = cJSON_GetObjectItemCaseSensitive(parent, last);
    } else if (cJSON_IsArray(parent)) {
        int i;
        if (!array_index(last, cJSON_GetArraySize(parent), 0, &i))
            v = cJSON_GetArrayItem(parent, i);
    }
    free(last);
    return v;
}

static cJSON *remove_at(cJSON **doc, const char *path)
{
    cJSON *parent;
    char *last;
    if (resolve(*doc, path, &parent, &last) || !parent) {
        free(last);
        return NULL;
    }
    cJSON *v = NULL;
    if (cJSON_IsObject(parent)) {
        v = cJSON_DetachItemFromObjectCaseSensitive(parent, last);
    } else if (cJSON_IsArray(parent)) {
        int i;
        if (!array_index(last, cJSON_GetArraySize(parent), 0, &i))
            v = cJSON_DetachItemFromArray(parent, i);
    }
    free(last);
    return v;
}

/* Inserts v before index i. Not cJSON_InsertItemInArray: Debian 12's libcjson 1.7.15-1+deb12u4
 * returns false for any index past 0 (its CVE-2023-50471 backport), dropping the item. */
static void array_insert(cJSON *arr, int i, cJSON *v)
{
    cJSON *tail = cJSON_CreateArray();
    while (cJSON_GetArraySize(arr) > i)
        cJSON_AddItemToArray(tail, cJSON_DetachItemFromArray(arr, i));
    cJSON_AddItemToArray(arr, v);
    while (tail->child)
        cJSON_AddItemToArray(arr, cJSON_DetachItemFromArray(tail, 0));
    cJSON_Delete(tail);
}

static int add_at(cJSON **doc, const char *path, cJSON *value)
{
    cJSON *parent;
    char *last;
    if (resolve(*doc, path, &parent, &last))
        return -1;
    if (!parent) {
        cJSON_Delete(*doc);
        *doc = value;
        return 0;
    }
    int rc = -1;
    if (cJSON_IsObject(parent)) {
        sim_j_set(parent, last, value);
        rc = 0;
    } else if (cJSON_IsArray(parent)) {
        int i;
        if (!array_index(last, cJSON_GetArraySize(parent), 1, &i)) {
            array_insert(parent, i, value);
            rc = 0;
        }
    }
    free(last);
    return rc;
}

int sim_json_patch(cJSON **doc, const cJSON *ops, vmdr_err *err)
{
    if (!cJSON_IsArray(ops))
        return vmdr_err_set(err, "invalid", 400, "the JSON patch must be an array of operations");
    const cJSON *op;
    int n = 0;
    cJSON_ArrayForEach(op, ops)
    {
        const char *kind = sim_j_str(op, "op");
        const char *path = sim_j_str(op, "path");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
        const char *from = sim_j_str(op, "from");
        if (!kind || !path)
            return vmdr_err_set(err, "invalid", 400,
                                "operation %d of the JSON patch lacks \"op\" or \"path\"", n);
        if (!strcmp(kind, "add")) {
            if (!value)
                return vmdr_err_set(err, "invalid", 400, "add operation does not have a value");
            cJSON *v = cJSON_Duplicate(value, 1);
            if (add_at(doc, path, v)) {
                cJSON_Delete(v);
                return vmdr_err_set(err, "invalid", 422,
                                    "add operation does not apply: doc is missing path: \"%s\"",
                                    path);
            }
        } else if (!strcmp(kind, "remove")) {
            cJSON *v = remove_at(doc, path);
            if (!v)
                return vmdr_err_set(err, "invalid", 422,
                                    "remove operation does not apply: doc is missing path: "
                                    "\"%s\"",
                                    path);
            cJSON_Delete(v);
        } else if (!strcmp(kind, "replace")) {
            if (!value)
                return vmdr_err_set(err, "invalid", 400, "replace operation does not have a value");
            if (!get_at(*doc, path))
                return vmdr_err_set(err, "invalid", 422,
                                    "replace operation does not apply: doc is missing key: %s",
                                    path);
            if (*path) {
                cJSON_Delete(remove_at(doc, path));
                cJSON *v = cJSON_Duplicate(value, 1);
                if (add_at(doc, path, v)) {
                    cJSON_Delete(v);
                    return vmdr_err_set(err, "invalid", 422, "replace operation does not apply: %s",
                                        path);
                }
            } else {
                cJSON_Delete(*doc);
                *doc = cJSON_Duplicate(value, 1);
            }
        } else if (!strcmp(kind, "move") || !strcmp(kind, "copy")) {
            if (!from)
                return vmdr_err_set(err, "invalid", 400, "%s operation lacks \"from\"", kind);
            cJSON *v;
            if (!strcmp(kind, "move"))
                v = remove_at(doc, from);
            else {
                cJSON *src = get_at(*doc, from);
                v = src ? cJSON_Duplicate(src, 1) : NULL;
            }
            if (!v)
                return vmdr_err_set(err, "invalid", 422,
                                    "%s operation does not apply: doc is missing from path: %s",
                                    kind, from);
            if (add_at(doc, path, v)) {
                cJSON_Delete(v);
                return vmdr_err_set(err, "invalid", 422,
                                    "%s operation does not apply: doc is missing path: %s", kind,
                                    path);
            }
        } else if (!strcmp(kind, "test")) {
            cJSON *cur = get_at(*doc, path);
            if (!cur || !value || !cJSON_Compare(cur, value, 1))
                return vmdr_err_set(err, "invalid", 422, "testing value %s failed: test failed",
                                    path);
        } else {
            return vmdr_err_set(err, "invalid", 400, "Unexpected kind: %s", kind);
        }
        n++;
    }
    return 0;
}
