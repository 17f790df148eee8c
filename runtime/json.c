/* vmdr.json: a JSON codec that parses straight into Lua values and encodes Lua
 * values with sorted keys.
 *
 * Decoding does not build a cJSON tree first: a tree and then a conversion walk
 * costs twice the allocations of parsing into tables directly, and this parser
 * also reports line and column on error, checks UTF-8 and bounds nesting.
 *
 * Fidelity (shared with vmdr.yaml, STYLE rule 7: per value, no module switches):
 *   null      <-> the light userdata NULL (json.null)
 *   []        <-> a table with the shared array_mt (json.array_mt)
 *   {}        <-> a table without it
 *   integers  <-> Lua integers (the full int64 range; larger ones become floats)
 *   1.5, 1e3  <-> Lua floats (written back so strtod gives the same double)
 * The helpers both codecs share (codec.h) are defined here too. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "json.h"
#include "lutil.h"

static const char ARRAY_MT_KEY = 'a'; /* registry key of the shared array metatable */
#define SCRATCH_META "vmdr.codec.Scratch"

/* ---- shared helpers (codec.h) ---------------------------------------------------- */

void vmdr_push_array_mt(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    /* __name makes tostring() and argument errors say what the table is */
    lua_pushliteral(L, "vmdr.array");
    lua_setfield(L, -2, "__name");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
}

void vmdr_codec_scratch_free(vmdr_codec_scratch *s)
{
    free(s->out);
    free(s->keys);
    s->out = NULL;
    s->keys = NULL;
    s->len = s->cap = s->nkeys = s->capkeys = 0;
}

static int scratch_gc(lua_State *L)
{
    vmdr_codec_scratch_free(luaL_checkudata(L, 1, SCRATCH_META));
    return 0;
}

vmdr_codec_scratch *vmdr_codec_scratch_push(lua_State *L)
{
    vmdr_codec_scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, offsetof(vmdr_codec_scratch, path));
    s->depth = 0;
    s->key_cmp = NULL;
    if (luaL_newmetatable(L, SCRATCH_META)) {
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, scratch_gc);
        lua_setfield(L, -2, "__close");
    }
    lua_setmetatable(L, -2);
    return s;
}

int vmdr_codec_reserve(vmdr_codec_scratch *s, size_t n, vmdr_err *err)
{
    if (s->cap - s->len >= n)
        return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap - s->len < n) {
        if (cap > SIZE_MAX / 2)
            return vmdr_err_set(err, "invalid", 0, "output too large");
        cap *= 2;
    }
    char *p = realloc(s->out, cap);
    if (p == NULL)
        return vmdr_err_set(err, "invalid", ENOMEM, "out of memory (%zu bytes of output)", cap);
    s->out = p;
    s->cap = cap;
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const vmdr_codec_key *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* A stable merge sort. Run after the bytewise qsort, it makes the result a function
 * of the key set alone even for an order that is not transitive on every set
 * (kubectl's YAML key order is not: "0755" < "0x1F" < "1e3" < "0755"), so the
 * output stays deterministic. Without memory for the merge it falls back to
 * insertion sort, also stable. */
static void stable_sort(vmdr_codec_key *k, size_t n, int (*cmp)(const void *, const void *))
{
    vmdr_codec_key *tmp = n > 16 ? malloc(n * sizeof *tmp) : NULL;
    if (tmp == NULL) {
        for (size_t i = 1; i < n; i++) {
            vmdr_codec_key x = k[i];
            size_t j = i;
            for (; j > 0 && cmp(&x, &k[j - 1]) < 0; j--)
                k[j] = k[j - 1];
            k[j] = x;
        }
        return;
    }
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, o = lo;
            while (a < mid && b < hi)
                tmp[o++] = cmp(&k[b], &k[a]) < 0 ? k[b++] : k[a++];
            while (a < mid)
                tmp[o++] = k[a++];
            while (b < hi)
                tmp[o++] = k[b++];
        }
        memcpy(k, tmp, n * sizeof *k);
    }
    free(tmp);
}

static int push_key(vmdr_codec_scratch *s, const char *k, size_t n, vmdr_err *err)
{
    if (s->nkeys == s->capkeys) {
        size_t cap = s->capkeys ? s->capkeys * 2 : 64;
        vmdr_codec_key *p = realloc(s->keys, cap * sizeof *p);
        if (p == NULL)
            return vmdr_err_set(err, "invalid", ENOMEM, "out of memory (object keys)");
        s->keys = p;
        s->capkeys = cap;
    }
    s->keys[s->nkeys].s = k;
    s->keys[s->nkeys].n = n;
    s->nkeys++;
    return 0;
}

int vmdr_codec_enter(lua_State *L, int idx, vmdr_codec_scratch *s, size_t *out_base, size_t *out_n,
                     vmdr_err *err)
{
    idx = lua_absindex(L, idx);
    const void *me = lua_topointer(L, idx);
    if (s->depth >= VMDR_CODEC_MAX_DEPTH)
        return vmdr_err_set(err, "invalid", 0, "nesting deeper than %d", VMDR_CODEC_MAX_DEPTH);
    for (int i = 0; i < s->depth; i++)
        if (s->path[i] == me)
            return vmdr_err_set(err, "invalid", 0, "a table contains itself (a cycle)");

    int is_array = 0;
    if (lua_getmetatable(L, idx)) { /* stack: mt */
        vmdr_push_array_mt(L);
        is_array = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }

    luaL_checkstack(L, 3, "encoding a table");
    size_t base = s->nkeys, count = 0, nstr = 0;
    lua_Integer maxint = 0;
    int other = 0; /* a key that is neither a string nor a positive integer */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* stack: key value */
        count++;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            size_t n;
            const char *k = lua_tolstring(L, -2, &n);
            nstr++;
            if (!is_array && push_key(s, k, n, err) < 0) {
                lua_pop(L, 2);
                s->nkeys = base;
                return -1;
            }
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2) && lua_tointeger(L, -2) > 0) {
            lua_Integer i = lua_tointeger(L, -2);
            if (i > maxint)
                maxint = i;
        } else {
            other = 1;
        }
        lua_pop(L, 1);
    }

    int kind;
    if (is_array) {
        if (nstr > 0 || other || (size_t)maxint != count) {
            return vmdr_err_set(err, "invalid", 0,
                                "a table with array_mt has keys other than 1..n");
        }
        kind = VMDR_CODEC_ARRAY;
    } else if (count == 0 || nstr == count) {
        kind = VMDR_CODEC_OBJECT;
        if (count > 1) { /* s->keys is still NULL before the first key: no NULL + 0 */
            qsort(s->keys + base, count, sizeof *s->keys, key_cmp);
            if (s->key_cmp)
                stable_sort(s->keys + base, count, s->key_cmp);
        }
    } else {
        s->nkeys = base;
        if (nstr > 0)
            return vmdr_err_set(err, "invalid", 0, "a table mixes string and other keys");
        if (other)
            return vmdr_err_set(err, "invalid", 0,
                                "a table key is neither a string nor a positive integer");
        if ((size_t)maxint != count)
            return vmdr_err_set(err, "invalid", 0,
                                "a sparse array (%zu values, highest index %lld)", count,
                                (long long)maxint);
        kind = VMDR_CODEC_ARRAY;
    }
    *out_base = base;
    *out_n = count;
    s->path[s->depth++] = me;
    return kind;
}

void vmdr_codec_leave(vmdr_codec_scratch *s)
{
    s->depth--;
}

/* Length of the valid UTF-8 sequence of a non-ASCII lead byte at p, or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF) {
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && p[1] >= 0xA0) /* UTF-16 surrogates */
            return 0;
        return 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && p[1] >= 0x90) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

size_t vmdr_utf8_check(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str, *p = s, *end = s + n;
    while (p < end) {
        /* ASCII runs, eight bytes at a time where aligned reads allow it */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & 0x8080808080808080ULL)
                break;
            p += 8;
        }
        if (p >= end)
            break;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t l = utf8_seq(p, end);
        if (l == 0)
            return (size_t)(p - s);
        p += l;
    }
    return n;
}

size_t vmdr_codec_format_float(char *buf, double d)
{
    int n = 0;
    /* The shortest of %.15g..%.17g that reads back exactly (Lua uses %.14g and loses bits). */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (strpbrk(buf, ".eEn") == NULL) {
        buf[n++] = '.';
        buf[n++] = '0';
        buf[n] = '\0';
    }
    return (size_t)n;
}

/* ---- decoder ------------------------------------------------------------------------ */

typedef struct jdec {
    lua_State *L;
    const char *start, *p, *end;
    int depth;
    int mt;                      /* stack index of the array metatable */
    vmdr_codec_scratch *scratch; /* unescaped strings */
    vmdr_err *err;
} jdec;

static int dec_fail(jdec *d, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int dec_fail(jdec *d, const char *at, const char *fmt, ...)
{
    /* Line and column (1-based, in bytes) are computed only on failure. */
    long line = 1;
    const char *bol = d->start;
    for (const char *q = d->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            bol = q + 1;
        }
    }
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return vmdr_err_set(d->err, "invalid", 0, "invalid JSON at line %ld column %ld: %s", line,
                        (long)(at - bol) + 1, what);
}

static inline void skip_ws(jdec *d)
{
    const char *p = d->p;
    while (p < d->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    d->p = p;
}

static int dec_unexpected(jdec *d, const char *expected)
{
    if (d->p >= d->end)
        return dec_fail(d, d->p, "unexpected end of input, expected %s", expected);
    unsigned char c = (unsigned char)*d->p;
    if (c >= 0x20 && c < 0x7F)
        return dec_fail(d, d->p, "unexpected '%c', expected %s", c, expected);
    return dec_fail(d, d->p, "unexpected byte 0x%02X, expected %s", c, expected);
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_encode(char *buf, unsigned cp)
{
    if (cp < 0x80) {
        buf[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    } else if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    buf[0] = (char)(0xF0 | (cp >> 18));
    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends n bytes to the decoder's scratch buffer. */
static int scratch_add(jdec *d, const char *p, size_t n)
{
    if (n == 0) /* the buffer may still be NULL: no memcpy(NULL, ..., 0) */
        return 0;
    if (vmdr_codec_reserve(d->scratch, n, d->err) < 0)
        return -1;
    memcpy(d->scratch->out + d->scratch->len, p, n);
    d->scratch->len += n;
    return 0;
}

/* The slow path of a string: escapes or non-ASCII bytes. q is where the fast
 * scan stopped. The unescaped bytes go to a malloc'ed scratch buffer owned by a
 * userdata (not a luaL_Buffer: its box is a to-be-closed slot, and an error return
 * from deep in the parse would have to unwind it in order). */
static int dec_string_slow(jdec *d, const char *q)
{
    const char *end = d->end;
    d->scratch->len = 0;
    if (scratch_add(d, d->p, (size_t)(q - d->p)) < 0)
        return -1;
    const char *run = q; /* start of bytes not yet added */
    for (;;) {
        if (q >= end)
            return dec_fail(d, q, "unterminated string");
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            if (scratch_add(d, run, (size_t)(q - run)) < 0)
                return -1;
            break;
        } else if (c == '\\') {
            if (scratch_add(d, run, (size_t)(q - run)) < 0)
                return -1;
            if (q + 1 >= end)
                return dec_fail(d, q, "unterminated string");
            char e = q[1], u[4];
            size_t ul = 1;
            q += 2;
            switch (e) {
            case '"':
                u[0] = '"';
                break;
            case '\\':
                u[0] = '\\';
                break;
            case '/':
                u[0] = '/';
                break;
            case 'b':
                u[0] = '\b';
                break;
            case 'f':
                u[0] = '\f';
                break;
            case 'n':
                u[0] = '\n';
                break;
            case 'r':
                u[0] = '\r';
                break;
            case 't':
                u[0] = '\t';
                break;
            case 'u': {
                unsigned cp, lo;
                if (end - q < 4 || hex4(q, &cp) < 0)
                    return dec_fail(d, q - 2, "invalid \\u escape");
                q += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) < 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return dec_fail(d, q - 6, "a \\u escape is a lone UTF-16 surrogate");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return dec_fail(d, q - 6, "a \\u escape is a lone UTF-16 surrogate");
                }
                ul = utf8_encode(u, cp);
                break;
            }
            default:
                return dec_fail(d, q - 2, "invalid escape '\\%c'", e >= 0x20 ? e : '?');
            }
            if (scratch_add(d, u, ul) < 0)
                return -1;
            run = q;
        } else if (c < 0x20) {
            return dec_fail(d, q, "a control character (0x%02X) in a string", c);
        } else if (c >= 0x80) {
            size_t l = utf8_seq((const unsigned char *)q, (const unsigned char *)end);
            if (l == 0)
                return dec_fail(d, q, "invalid UTF-8 in a string");
            q += l;
        } else {
            q++;
        }
    }
    lua_pushlstring(d->L, d->scratch->len ? d->scratch->out : "", d->scratch->len);
    d->p = q + 1;
    return 0;
}

/* d->p is just after the opening quote; pushes the string. */
static inline int dec_string(jdec *d)
{
    const char *q = d->p, *end = d->end;
    while (q < end) {
        unsigned char c = (unsigned char)*q;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            break;
        q++;
    }
    if (q < end && *q == '"') {
        lua_pushlstring(d->L, d->p, (size_t)(q - d->p));
        d->p = q + 1;
        return 0;
    }
    return dec_string_slow(d, q);
}

static int dec_number(jdec *d)
{
    const char *p = d->p, *end = d->end, *start = p;
    int neg = 0, isfloat = 0;
    uint64_t u = 0;
    int ndig = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return dec_fail(d, p, "invalid number: a digit must follow '-'");
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return dec_fail(d, start, "invalid number: leading zero");
        ndig = 1;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (ndig < 19)
                u = u * 10 + (uint64_t)(*p - '0');
            ndig++;
            p++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return dec_fail(d, p, "invalid number: a digit must follow '.'");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        isfloat = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return dec_fail(d, p, "invalid number: a digit must follow the exponent");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        isfloat = 1;
    }
    d->p = p;
    if (!isfloat && ndig <= 19) {
        /* 19 digits fit in uint64; int64 holds up to 2^63-1, and -2^63 when negative */
        if (!neg && u <= (uint64_t)INT64_MAX) {
            lua_pushinteger(d->L, (lua_Integer)u);
            return 0;
        }
        if (neg && u <= (uint64_t)INT64_MAX + 1) {
            lua_pushinteger(d->L, (lua_Integer)(0 - u));
            return 0;
        }
    }
    /* A float, or an integer beyond int64 (read as the nearest double, as Lua does). */
    char buf[128];
    size_t n = (size_t)(p - start);
    double v;
    if (n < sizeof buf) {
        memcpy(buf, start, n);
        buf[n] = '\0';
        v = strtod(buf, NULL);
    } else {
        lua_pushlstring(d->L, start, n); /* NUL-terminated copy */
        v = strtod(lua_tostring(d->L, -1), NULL);
        lua_pop(d->L, 1);
    }
    if (isinf(v))
        return dec_fail(d, start, "number out of range: %.*s", (int)(n > 40 ? 40 : n), start);
    lua_pushnumber(d->L, v);
    return 0;
}

static int dec_value(jdec *d);

/* Members of an object (key, value pairs) or elements of an array are left on the Lua
 * stack until the container ends, then the table is created with its exact size and
 * filled: growing a table one key at a time rehashes it at every power of two, which
 * cost a third of the time of decoding a Kubernetes list. At most PENDING_MAX members
 * wait on the stack per container (so a huge array cannot exhaust the stack); beyond
 * that they are flushed into the table, which then grows as usual. */
#define PENDING_MAX 256

/* Moves the n members pending above the slot tbl into the table there (created on
 * the first flush, sized for them). Object members are set in input order, so a
 * duplicate key keeps its last value. pairs: 2 stack slots per member, else 1. */
static void dec_flush(lua_State *L, int tbl, int n, int pairs, lua_Integer *len)
{
    if (lua_isnil(L, tbl)) {
        lua_createtable(L, pairs ? 0 : n, pairs ? n : 0);
        lua_replace(L, tbl);
    }
    if (pairs) {
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, tbl + 1 + 2 * i);
            lua_pushvalue(L, tbl + 2 + 2 * i);
            lua_rawset(L, tbl);
        }
    } else {
        for (int i = 0; i < n; i++) {
            lua_pushvalue(L, tbl + 1 + i);
            lua_rawseti(L, tbl, ++*len);
        }
    }
    lua_settop(L, tbl);
}

static int dec_object(jdec *d)
{
    lua_State *L = d->L;
    if (++d->depth > VMDR_CODEC_MAX_DEPTH)
        return dec_fail(d, d->p - 1, "nesting deeper than %d", VMDR_CODEC_MAX_DEPTH);
    luaL_checkstack(L, 2 * PENDING_MAX + 8, "decoding JSON");
    lua_pushnil(L); /* stack: slot (the table, once created) */
    int tbl = lua_gettop(L), n = 0;
    skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
        d->depth--;
        dec_flush(L, tbl, 0, 1, NULL);
        return 0;
    }
    for (;;) {
        if (d->p >= d->end || *d->p != '"')
            return dec_unexpected(d, "a string (an object key)");
        d->p++;
        if (dec_string(d) < 0) /* stack: slot ... key */
            return -1;
        skip_ws(d);
        if (d->p >= d->end || *d->p != ':')
            return dec_unexpected(d, "':'");
        d->p++;
        skip_ws(d);
        if (dec_value(d) < 0) /* stack: slot ... key value */
            return -1;
        if (++n == PENDING_MAX) {
            dec_flush(L, tbl, n, 1, NULL);
            n = 0;
        }
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            skip_ws(d);
            continue;
        }
        if (d->p < d->end && *d->p == '}') {
            d->p++;
            break;
        }
        return dec_unexpected(d, "',' or '}'");
    }
    dec_flush(L, tbl, n, 1, NULL);
    d->depth--;
    return 0;
}

static int dec_array(jdec *d)
{
    lua_State *L = d->L;
    if (++d->depth > VMDR_CODEC_MAX_DEPTH)
        return dec_fail(d, d->p - 1, "nesting deeper than %d", VMDR_CODEC_MAX_DEPTH);
    luaL_checkstack(L, PENDING_MAX + 8, "decoding JSON");
    lua_pushnil(L); /* stack: slot (the array, once created) */
    int tbl = lua_gettop(L), n = 0;
    lua_Integer len = 0;
    skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        for (;;) {
            if (dec_value(d) < 0) /* stack: slot ... value */
                return -1;
            if (++n == PENDING_MAX) {
                dec_flush(L, tbl, n, 0, &len);
                n = 0;
            }
            skip_ws(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                skip_ws(d);
                continue;
            }
            if (d->p < d->end && *d->p == ']') {
                d->p++;
                break;
            }
            return dec_unexpected(d, "',' or ']'");
        }
    }
    dec_flush(L, tbl, n, 0, &len);
    lua_pushvalue(L, d->mt);
    lua_setmetatable(L, tbl);
    d->depth--;
    return 0;
}

static int dec_literal(jdec *d, const char *word, size_t n)
{
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return dec_unexpected(d, "a JSON value");
    d->p += n;
    return 0;
}

/* Parses one value at d->p (whitespace already skipped) and pushes it. */
static int dec_value(jdec *d)
{
    if (d->p >= d->end)
        return dec_unexpected(d, "a JSON value");
    switch (*d->p) {
    case '{':
        d->p++;
        return dec_object(d);
    case '[':
        d->p++;
        return dec_array(d);
    case '"':
        d->p++;
        return dec_string(d);
    case 't':
        if (dec_literal(d, "true", 4) < 0)
            return -1;
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5) < 0)
            return -1;
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4) < 0)
            return -1;
        vmdr_push_null(d->L);
        return 0;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return dec_number(d);
    default:
        return dec_unexpected(d, "a JSON value");
    }
}

/* Decodes with the scratch s (owned by the caller); pushes the value or nothing. With
 * used != NULL the value may be followed by anything: *used is the bytes it took. */
static int decode_with(lua_State *L, const char *s, size_t n, vmdr_codec_scratch *scratch,
                       size_t *used, vmdr_err *err)
{
    int top = lua_gettop(L);
    jdec d;
    luaL_checkstack(L, 8, "decoding JSON");
    vmdr_push_array_mt(L); /* stack: mt */
    d.scratch = scratch;
    d.L = L;
    d.start = d.p = s;
    d.end = s + n;
    d.depth = 0;
    d.mt = lua_gettop(L);
    d.err = err;
    /* A UTF-8 byte order mark may start a document (RFC 8259 section 8.1). */
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        d.p += 3;
    skip_ws(&d);
    if (dec_value(&d) < 0) {
        lua_settop(L, top);
        return -1;
    }
    if (used) {
        *used = (size_t)(d.p - s);
        lua_replace(L, top + 1); /* stack: value */
        return 0;
    }
    skip_ws(&d);
    if (d.p != d.end) {
        dec_unexpected(&d, "the end of input after the JSON value");
        lua_settop(L, top);
        return -1;
    }
    lua_replace(L, top + 1); /* stack: value */
    return 0;
}

int vmdr_json_decode_push(lua_State *L, const char *s, size_t n, vmdr_err *err)
{
    luaL_checkstack(L, 1, "decoding JSON");
    vmdr_codec_scratch *scratch = vmdr_codec_scratch_push(L); /* stack: scratch */
    int rc = decode_with(L, s, n, scratch, NULL, err);         /* stack: scratch [value] */
    vmdr_codec_scratch_free(scratch);
    lua_remove(L, rc == 0 ? -2 : -1);
    return rc;
}

int vmdr_json_decode_push_with(lua_State *L, const char *s, size_t n,
                               vmdr_codec_scratch *scratch, vmdr_err *err)
{
    return decode_with(L, s, n, scratch, NULL, err);
}

int vmdr_json_decode_prefix_with(lua_State *L, const char *s, size_t n,
                                 vmdr_codec_scratch *scratch, size_t *used, vmdr_err *err)
{
    return decode_with(L, s, n, scratch, used, err);
}

/* ---- encoder ------------------------------------------------------------------------ */

static inline int put(vmdr_codec_scratch *s, const char *p, size_t n, vmdr_err *err)
{
    if (vmdr_codec_reserve(s, n, err) < 0)
        return -1;
    memcpy(s->out + s->len, p, n);
    s->len += n;
    return 0;
}

static inline int putc1(vmdr_codec_scratch *s, char c, vmdr_err *err)
{
    if (s->len == s->cap && vmdr_codec_reserve(s, 1, err) < 0)
        return -1;
    s->out[s->len++] = c;
    return 0;
}

static int enc_string(vmdr_codec_scratch *s, const char *str, size_t n, vmdr_err *err)
{
    size_t bad = vmdr_utf8_check(str, n);
    if (bad != n)
        return vmdr_err_set(err, "invalid", 0, "a string is not valid UTF-8 (byte %zu)", bad + 1);
    static const char hex[] = "0123456789abcdef";
    if (vmdr_codec_reserve(s, n + 2, err) < 0)
        return -1;
    s->out[s->len++] = '"';
    const unsigned char *p = (const unsigned char *)str, *end = p + n;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\')
            p++;
        if (put(s, (const char *)run, (size_t)(p - run), err) < 0)
            return -1;
        if (p == end)
            break;
        char e[6] = {'\\', 0};
        size_t el = 2;
        switch (*p) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[*p >> 4];
            e[5] = hex[*p & 15];
            el = 6;
        }
        if (put(s, e, el, err) < 0)
            return -1;
        p++;
    }
    return putc1(s, '"', err);
}

static int enc_value(lua_State *L, int idx, vmdr_codec_scratch *s, vmdr_err *err);

static int enc_table(lua_State *L, int idx, vmdr_codec_scratch *s, vmdr_err *err)
{
    size_t base, n;
    int kind = vmdr_codec_enter(L, idx, s, &base, &n, err);
    if (kind < 0)
        return -1;
    int rc = -1;
    if (kind == VMDR_CODEC_ARRAY) {
        if (putc1(s, '[', err) < 0)
            goto done;
        for (size_t i = 1; i <= n; i++) {
            if (i > 1 && putc1(s, ',', err) < 0)
                goto done;
            lua_rawgeti(L, idx, (lua_Integer)i); /* stack: value */
            int r = enc_value(L, lua_gettop(L), s, err);
            lua_pop(L, 1);
            if (r < 0)
                goto done;
        }
        if (putc1(s, ']', err) < 0)
            goto done;
    } else {
        if (putc1(s, '{', err) < 0)
            goto done;
        for (size_t i = 0; i < n; i++) {
            /* s->keys may move as nested objects add theirs: index it afresh */
            vmdr_codec_key k = s->keys[base + i];
            if (i > 0 && putc1(s, ',', err) < 0)
                goto done;
            if (enc_string(s, k.s, k.n, err) < 0 || putc1(s, ':', err) < 0)
                goto done;
            lua_pushlstring(L, k.s, k.n);
            lua_rawget(L, idx); /* stack: value */
            int r = enc_value(L, lua_gettop(L), s, err);
            lua_pop(L, 1);
            if (r < 0)
                goto done;
        }
        if (putc1(s, '}', err) < 0)
            goto done;
    }
    rc = 0;
done:
    s->nkeys = base;
    vmdr_codec_leave(s);
    return rc;
}

static int enc_value(lua_State *L, int idx, vmdr_codec_scratch *s, vmdr_err *err)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return put(s, "null", 4, err);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(s, "true", 4, err) : put(s, "false", 5, err);
    case LUA_TNUMBER: {
        char buf[40];
        size_t n;
        if (lua_isinteger(L, idx)) {
            n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double v = (double)lua_tonumber(L, idx);
            if (isnan(v) || isinf(v))
                return vmdr_err_set(err, "invalid", 0, "JSON has no NaN or infinity");
            n = vmdr_codec_format_float(buf, v);
        }
        return put(s, buf, n, err);
    }
    case LUA_TSTRING: {
        size_t n;
        const char *str = lua_tolstring(L, idx, &n);
        return enc_string(s, str, n, err);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return put(s, "null", 4, err);
        return vmdr_err_set(err, "invalid", 0, "cannot encode a light userdata other than null");
    case LUA_TTABLE:
        return enc_table(L, idx, s, err);
    default:
        return vmdr_err_set(err, "invalid", 0, "cannot encode a %s", luaL_typename(L, idx));
    }
}

int vmdr_json_encode_push(lua_State *L, int idx, vmdr_err *err)
{
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "encoding JSON");
    vmdr_codec_scratch *s = vmdr_codec_scratch_push(L); /* stack: scratch */
    int rc = enc_value(L, idx, s, err);
    if (rc == 0)
        lua_pushlstring(L, s->out, s->len); /* stack: scratch json */
    vmdr_codec_scratch_free(s);
    lua_remove(L, rc == 0 ? -2 : -1);
    return rc;
}

/* ---- the module ---------------------------------------------------------------------- */

/* json.decode(s) -> value | nil, err(code="invalid") */
static int json_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_json_decode_push(L, s, n, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* json.encode(v) -> string | nil, err(code="invalid") */
static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_json_encode_push(L, 1, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

static const luaL_Reg json_funcs[] = {
    {"decode", json_decode},
    {"encode", json_encode},
    {NULL, NULL},
};

int luaopen_vmdr_json(lua_State *L)
{
    luaL_newlib(L, json_funcs);
    vmdr_push_null(L);
    lua_setfield(L, -2, "null");
    vmdr_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
