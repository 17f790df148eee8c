/* Label selectors with the apimachinery syntax: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
 * `k notin (a,b)`, `k` (exists), `!k` (does not exist), `k>N`, `k<N`, joined by commas (AND);
 * and field selectors on metadata.name / metadata.namespace. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

enum { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOTEXISTS, OP_GT, OP_LT };

typedef struct req {
    char *key;
    int op;
    char **vals;
    int nvals;
} req;

struct sim_selector {
    req *r;
    int n;
};

void sim_selector_free(sim_selector *sel)
{
    if (!sel)
        return;
    for (int i = 0; i < sel->n; i++) {
        free(sel->r[i].key);
        for (int j = 0; j < sel->r[i].nvals; j++)
            free(sel->r[i].vals[j]);
        free(sel->r[i].vals);
    }
    free(sel->r);
    free(sel);
}

int sim_selector_empty(const sim_selector *sel)
{
    return !sel || sel->n == 0;
}

static int is_special(char c)
{
    return c == ',' || c == '(' || c == ')' || c == '!' || c == '=' || c == '<' || c == '>' ||
           isspace((unsigned char)c);
}

static void skip_ws(const char **p)
{
    while (isspace((unsigned char)**p))
        (*p)++;
}

/* An identifier: a run of non-special characters. */
static char *ident(const char **p)
{
    const char *s = *p;
    while (**p && !is_special(**p))
        (*p)++;
    size_t n = (size_t)(*p - s);
    if (!n)
        return NULL;
    char *out = sim_xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

static int valid_value(const char *v)
{
    size_t n = strlen(v);
    if (n > 63)
        return 0;
    if (!n)
        return 1;
    if (!isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("-_.", v[i]))
            return 0;
    return 1;
}

static int valid_key(const char *k)
{
    const char *slash = strchr(k, '/');
    const char *name = slash ? slash + 1 : k;
    if (slash && (slash == k || slash - k > 253))
        return 0;
    return *name && valid_value(name);
}

static void add_val(req *r, char *v)
{
    r->vals = sim_xrealloc(r->vals, (size_t)(r->nvals + 1) * sizeof *r->vals);
    r->vals[r->nvals++] = v;
}

sim_selector *sim_selector_parse(const char *s, vmdr_err *err)
{
    sim_selector *sel = calloc(1, sizeof *sel);
    if (!sel)
        abort();
    const char *p = s ? s : "";
    skip_ws(&p);
    if (!*p)
        return sel;
    for (;;) {
        sel->r = sim_xrealloc(sel->r, (size_t)(sel->n + 1) * sizeof *sel->r);
        req *r = &sel->r[sel->n];
        memset(r, 0, sizeof *r);
        skip_ws(&p);
        int neg = 0;
        if (*p == '!') {
            neg = 1;
            p++;
            skip_ws(&p);
        }
        r->key = ident(&p);
        sel->n++;
        if (!r->key) {
            vmdr_err_set(err, "invalid", 400,
                         "unable to parse requirement: found '%s', expected: identifier",
                         *p ? p : "");
            goto fail;
        }
        if (!valid_key(r->key)) {
            vmdr_err_set(err, "invalid", 400,
                         "unable to parse requirement: invalid label key \"%s\": name part "
                         "must consist of alphanumeric characters, '-', '_' or '.'",
                         r->key);
            goto fail;
        }
        skip_ws(&p);
        if (neg) {
            r->op = OP_NOTEXISTS;
        } else if (!*p || *p == ',') {
            r->op = OP_EXISTS;
        } else if (!strncmp(p, "==", 2) || !strncmp(p, "!=", 2) || *p == '=' || *p == '>' ||
                   *p == '<') {
            if (!strncmp(p, "==", 2)) {
                r->op = OP_EQ;
                p += 2;
            } else if (!strncmp(p, "!=", 2)) {
                r->op = OP_NE;
                p += 2;
            } else {
                r->op = *p == '=' ? OP_EQ : *p == '>' ? OP_GT : OP_LT;
                p++;
            }
            skip_ws(&p);
            char *v = ident(&p);
            add_val(r, v ? v : sim_xstrdup(""));
            if ((r->op == OP_GT || r->op == OP_LT)) {
                char *end;
                strtol(r->vals[0], &end, 10);
                if (!*r->vals[0] || *end) {
                    vmdr_err_set(err, "invalid", 400,
                                 "unable to parse requirement: for 'Gt', 'Lt' operators, the "
                                 "value must be an integer");
                    goto fail;
                }
            }
        } else {
            char *word = ident(&p);
            if (word && !strcmp(word, "in"))
                r->op = OP_IN;
            else if (word && !strcmp(word, "notin"))
                r->op = OP_NOTIN;
            else {
                vmdr_err_set(err, "invalid", 400,
                             "unable to parse requirement: found '%s', expected: in, notin, "
                             "=, ==, !=, gt, lt",
                             word ? word : p);
                free(word);
                goto fail;
            }
            free(word);
            skip_ws(&p);
            if (*p != '(') {
                vmdr_err_set(err, "invalid", 400,
                             "unable to parse requirement: found '%s', expected: '('", p);
                goto fail;
            }
            p++;
            for (;;) {
                skip_ws(&p);
                if (*p == ')' && r->nvals == 0)
                    break;
                char *v = ident(&p);
                add_val(r, v ? v : sim_xstrdup(""));
                skip_ws(&p);
                if (*p == ',') {
                    p++;
                    continue;
                }
                break;
            }
            if (*p != ')') {
                vmdr_err_set(err, "invalid", 400,
                             "unable to parse requirement: found '%s', expected: ',', ')'", p);
                goto fail;
            }
            p++;
            if (r->nvals == 0) {
                vmdr_err_set(err, "invalid", 400,
                             "unable to parse requirement: for 'in', 'notin' operators, values "
                             "set can't be empty");
                goto fail;
            }
        }
        for (int i = 0; i < r->nvals; i++) {
            if (!valid_value(r->vals[i])) {
                vmdr_err_set(err, "invalid", 400,
                             "unable to parse requirement: invalid label value: \"%s\": a "
                             "valid label must be an empty string or consist of alphanumeric "
                             "characters, '-', '_' or '.', and must start and end with an "
                             "alphanumeric character",
                             r->vals[i]);
                goto fail;
            }
        }
        skip_ws(&p);
        if (!*p)
            return sel;
        if (*p != ',') {
            vmdr_err_set(err, "invalid", 400,
                         "unable to parse requirement: found '%s', expected: ','", p);
            goto fail;
        }
        p++;
    }
fail:
    sim_selector_free(sel);
    return NULL;
}

int sim_selector_matches(const sim_selector *sel, const cJSON *labels)
{
    if (!sel)
        return 1;
    for (int i = 0; i < sel->n; i++) {
        const req *r = &sel->r[i];
        const cJSON *v = labels ? cJSON_GetObjectItemCaseSensitive(labels, r->key) : NULL;
        const char *val = cJSON_IsString(v) ? v->valuestring : NULL;
        int ok = 0;
        switch (r->op) {
        case OP_EXISTS:
            ok = val != NULL;
            break;
        case OP_NOTEXISTS:
            ok = val == NULL;
            break;
        case OP_EQ:
            ok = val && !strcmp(val, r->vals[0]);
            break;
        case OP_NE:
            ok = !val || strcmp(val, r->vals[0]);
            break;
        case OP_IN:
        case OP_NOTIN: {
            int in = 0;
            for (int j = 0; val && j < r->nvals; j++)
                in |= !strcmp(val, r->vals[j]);
            ok = r->op == OP_IN ? in : !in;
            break;
        }
        case OP_GT:
        case OP_LT: {
            char *end;
            long a;
            if (!val)
                break;
            a = strtol(val, &end, 10);
            if (*end || !*val)
                break;
            long b = strtol(r->vals[0], NULL, 10);
            ok = r->op == OP_GT ? a > b : a < b;
            break;
        }
        }
        if (!ok)
            return 0;
    }
    return 1;
}

int sim_fieldsel_parse(sim_fieldsel *fs, const char *s, vmdr_err *err)
{
    memset(fs, 0, sizeof *fs);
    if (!s || !*s)
        return 0;
    char *copy = sim_xstrdup(s);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *op = strstr(tok, "!=");
        int neg = op != NULL;
        size_t oplen = 2;
        if (!op) {
            op = strstr(tok, "==");
            if (!op) {
                op = strchr(tok, '=');
                oplen = 1;
            }
        }
        if (!op) {
            vmdr_err_set(err, "invalid", 400, "invalid selector: '%s'; can't understand '%s'", s,
                         tok);
            goto fail;
        }
        char *field = tok;
        *op = '\0';
        char *end = op - 1;
        while (end >= field && isspace((unsigned char)*end))
            *end-- = '\0';
        char *value = op + oplen;
        int f;
        if (!strcmp(field, "metadata.name"))
            f = 0;
        else if (!strcmp(field, "metadata.namespace"))
            f = 1;
        else {
            vmdr_err_set(err, "invalid", 400, "field label not supported: %s", field);
            goto fail;
        }
        if (fs->n == (int)(sizeof fs->req / sizeof fs->req[0])) {
            vmdr_err_set(err, "invalid", 400, "too many field selector terms");
            goto fail;
        }
        fs->req[fs->n].field = f;
        fs->req[fs->n].neg = neg;
        fs->req[fs->n].value = sim_xstrdup(value);
        fs->n++;
    }
    free(copy);
    return 0;
fail:
    free(copy);
    sim_fieldsel_free(fs);
    return -1;
}

int sim_fieldsel_matches(const sim_fieldsel *fs, const char *ns, const char *name)
{
    for (int i = 0; i < fs->n; i++) {
        const char *v = fs->req[i].field == 0 ? name : ns;
        int eq = !strcmp(v ? v : "", fs->req[i].value);
        if (eq == fs->req[i].neg)
            return 0;
    }
    return 1;
}

void sim_fieldsel_free(sim_fieldsel *fs)
{
    for (int i = 0; i < fs->n; i++)
        free(fs->req[i].value);
    fs->n = 0;
}
