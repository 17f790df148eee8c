/* The path syntax of vmdr.yaml.clean() rules:
 *   path    := segment ( "." name | "[" bracket "]" )*
 *   segment := name | "[" bracket "]"
 *   name    := "*" | one or more bytes other than "." "[" "]"
 *   bracket := "*" | digits | '"' bytes other than '"' '"' | "'" bytes other than "'" "'"
 * "*" and [*] match every value of a map or element of a list; [N] counts from 0
 * (kubectl's JSONPath does); quoted brackets carry keys with dots, such as
 * metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]. */
#include <string.h>

#include "yaml.h"

static int fail(vmdr_err *err, const char *s, size_t n, size_t at, const char *what)
{
    return vmdr_err_set(err, "invalid", 0, "path '%.*s' at column %zu: %s",
                        (int)(n > 200 ? 200 : n), s, at + 1, what);
}

int vmdr_yaml_path_parse(vmdr_yaml_path *out, const char *s, size_t n, vmdr_err *err)
{
    size_t i = 0;
    out->n = 0;
    if (n == 0)
        return fail(err, s, n, 0, "empty path");
    for (;;) {
        if (out->n == VMDR_YAML_PATH_MAX)
            return fail(err, s, n, i, "more than 32 segments");
        vmdr_yaml_seg *g = &out->seg[out->n];
        if (s[i] == '[') {
            i++;
            if (i < n && s[i] == '*') {
                g->kind = VMDR_YAML_SEG_ANY;
                i++;
            } else if (i < n && (s[i] == '"' || s[i] == '\'')) {
                char q = s[i++];
                size_t start = i;
                while (i < n && s[i] != q)
                    i++;
                if (i >= n)
                    return fail(err, s, n, start - 1, "unterminated quoted key");
                g->kind = VMDR_YAML_SEG_KEY;
                g->s = s + start;
                g->n = i - start;
                i++;
            } else if (i < n && s[i] >= '0' && s[i] <= '9') {
                int64_t v = 0;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    if (v > (INT64_MAX - 9) / 10)
                        return fail(err, s, n, i, "index too large");
                    v = v * 10 + (s[i] - '0');
                    i++;
                }
                g->kind = VMDR_YAML_SEG_INDEX;
                g->index = v;
            } else {
                return fail(err, s, n, i, "expected *, an index or a quoted key after '['");
            }
            if (i >= n || s[i] != ']')
                return fail(err, s, n, i, "expected ']'");
            i++;
        } else {
            size_t start = i;
            while (i < n && s[i] != '.' && s[i] != '[' && s[i] != ']')
                i++;
            if (i == start)
                return fail(err, s, n, i, "empty segment");
            if (i - start == 1 && s[start] == '*') {
                g->kind = VMDR_YAML_SEG_ANY;
            } else {
                g->kind = VMDR_YAML_SEG_KEY;
                g->s = s + start;
                g->n = i - start;
            }
        }
        out->n++;
        if (i == n)
            return 0;
        if (s[i] == '.') {
            i++;
            if (i == n)
                return fail(err, s, n, i, "empty segment at the end");
            if (s[i] == '[')
                return fail(err, s, n, i, "'[' cannot follow '.'");
        } else if (s[i] != '[') {
            return fail(err, s, n, i, "unexpected ']'");
        }
    }
}
