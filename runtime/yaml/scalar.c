/* Plain-scalar resolution (what the decoder makes of an untagged plain scalar)
 * and the encoder's quoting decision. No Lua here: C tests call it directly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "yaml.h"

static int word_in(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(*words, s, n) == 0)
            return 1;
    return 0;
}

static const char *const NULL_WORDS[] = {"~", "null", "Null", "NULL", NULL};
static const char *const TRUE_WORDS[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                         "on",   "On",   "ON",   "y",   "Y",   NULL};
static const char *const FALSE_WORDS[] = {"false", "False", "FALSE", "no", "No", "NO",
                                          "off",   "Off",   "OFF",   "n",  "N",  NULL};

static int digit_in_base(char c, int base)
{
    int v;
    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (c >= 'a' && c <= 'f')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
        v = c - 'A' + 10;
    else
        return -1;
    return v < base ? v : -1;
}

/* Resolves an integer or float; buf holds s without '_' (n < sizeof buf). */
static int resolve_number(const char *buf, size_t n, vmdr_yaml_scalar *out)
{
    const char *p = buf, *end = buf + n;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p >= end)
        return 0;
    /* integers with a base prefix, or YAML 1.1 octal */
    int base = 10;
    const char *digits = p;
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        digits = p + 2;
    } else if (end - p > 2 && p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) {
        base = 8;
        digits = p + 2;
    } else if (end - p > 2 && p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) {
        base = 2;
        digits = p + 2;
    } else if (end - p > 1 && p[0] == '0') {
        base = 8;
        digits = p + 1;
    }
    const char *q = digits;
    uint64_t u = 0;
    int overflow = 0;
    for (; q < end; q++) {
        int dv = digit_in_base(*q, base);
        if (dv < 0)
            break;
        if (u > (UINT64_MAX - (uint64_t)dv) / (uint64_t)base)
            overflow = 1;
        u = u * (uint64_t)base + (uint64_t)dv;
    }
    if (q == end && q > digits && !overflow) {
        if (!neg && u <= (uint64_t)INT64_MAX) {
            out->kind = VMDR_YAML_INT;
            out->i = (int64_t)u;
            return 1;
        }
        if (neg && u <= (uint64_t)INT64_MAX + 1) {
            out->kind = VMDR_YAML_INT;
            out->i = (int64_t)(0 - u);
            return 1;
        }
    }
    if (base != 10 && base != 8)
        return 0;
    /* a float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (leading-0 "octals"
     * that are not octal, like 09, read as decimal here, as go-yaml does) */
    q = p;
    const char *d0 = q;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    int intdigits = (int)(q - d0);
    int isfloat = 0;
    if (q < end && *q == '.') {
        q++;
        const char *f0 = q;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
        if (intdigits == 0 && q == f0)
            return 0;
        isfloat = 1;
    } else if (intdigits == 0) {
        return 0;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        const char *e0 = q;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
        if (q == e0)
            return 0;
        isfloat = 1;
    }
    if (q != end)
        return 0;
    (void)isfloat; /* a decimal beyond int64 also lands here and reads as a float */
    out->kind = VMDR_YAML_FLOAT;
    out->f = strtod(buf, NULL);
    return 1;
}

/* Resolves a plain scalar the way the decoder does (see yaml.c's top comment). */
void vmdr_yaml_resolve(vmdr_yaml_scalar *out, const char *s, size_t n)
{
    out->kind = VMDR_YAML_STR;
    if (n == 0) {
        out->kind = VMDR_YAML_NULL;
        return;
    }
    char c = s[0];
    if (c == '~' || c == 'n' || c == 'N') {
        if (word_in(s, n, NULL_WORDS)) {
            out->kind = VMDR_YAML_NULL;
            return;
        }
    }
    if (n <= 5 && (c == 't' || c == 'T' || c == 'y' || c == 'Y' || c == 'o' || c == 'O') &&
        word_in(s, n, TRUE_WORDS)) {
        out->kind = VMDR_YAML_TRUE;
        return;
    }
    if (n <= 5 && (c == 'f' || c == 'F' || c == 'n' || c == 'N' || c == 'o' || c == 'O') &&
        word_in(s, n, FALSE_WORDS)) {
        out->kind = VMDR_YAML_FALSE;
        return;
    }
    if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.'))
        return;
    /* .inf .nan with case variants, as go-yaml and YAML 1.2 write them */
    {
        const char *p = s;
        size_t m = n;
        int neg = 0;
        if (*p == '-' || *p == '+') {
            neg = *p == '-';
            p++;
            m--;
        }
        static const char *const INF[] = {".inf", ".Inf", ".INF", NULL};
        static const char *const NAN_[] = {".nan", ".NaN", ".NAN", NULL};
        if (word_in(p, m, INF)) {
            out->kind = VMDR_YAML_FLOAT;
            out->f = neg ? -HUGE_VAL : HUGE_VAL;
            return;
        }
        if (p == s && word_in(p, m, NAN_)) {
            out->kind = VMDR_YAML_FLOAT;
            out->f = NAN;
            return;
        }
    }
    char buf[128];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_')
            continue;
        if (k + 1 >= sizeof buf)
            return; /* longer than any number worth reading: a string */
        buf[k++] = s[i];
    }
    buf[k] = '\0';
    resolve_number(buf, k, out);
}

static int ieq(const char *s, size_t n, const char *w)
{
    if (strlen(w) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != w[i])
            return 0;
    }
    return 1;
}

/* True when a reader of YAML 1.1 or 1.2 might take the plain scalar s for something
 * other than a string. Deliberately wider than our own resolver: quoting a string
 * needlessly costs two characters, not quoting one changes its type elsewhere. */
int vmdr_yaml_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return 1;
    vmdr_yaml_scalar r;
    vmdr_yaml_resolve(&r, s, n);
    if (r.kind != VMDR_YAML_STR)
        return 1;
    static const char *const WORDS[] = {"~",   "null", "true", "false", "yes", "no", "on",
                                        "off", "y",    "n",    "<<",    "=",   NULL};
    for (const char *const *w = WORDS; *w; w++)
        if (ieq(s, n, *w))
            return 1;
    /* Psych reads ":word" as a Ruby symbol */
    if (s[0] == ':' && n > 1)
        return 1;
    const char *p = s, *end = s + n;
    if (*p == '-' || *p == '+')
        p++;
    if (p < end && *p == '.') {
        if (ieq(p, (size_t)(end - p), ".inf") || ieq(p, (size_t)(end - p), ".nan"))
            return 1;
    }
    /* number-like: starts with a digit (or sign/dot then digit or dot), and holds only
     * characters that appear in YAML 1.1/1.2 ints, floats and sexagesimals (and
     * Psych's "1,000") */
    if (p < end && ((*p >= '0' && *p <= '9') || (*p == '.' && p + 1 < end))) {
        const char *q = p;
        for (; q < end; q++) {
            if (!strchr("0123456789abcdefABCDEFxXoO_.:,+-", *q))
                break;
        }
        if (q == end)
            return 1;
        /* YAML 1.1 timestamps: yyyy-m-d..., read as dates by PyYAML and Psych */
        if (end - s >= 8 && s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9' &&
            s[2] >= '0' && s[2] <= '9' && s[3] >= '0' && s[3] <= '9' && s[4] == '-')
            return 1;
    }
    return 0;
}
