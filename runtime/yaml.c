/* vmdr.yaml: YAML decode/encode on libyaml's event API, and clean() (yaml_clean.c).
 *
 * Decoding: plain scalars are resolved as Kubernetes reads YAML (go-yaml v2 via
 * sigs.k8s.io/yaml, a YAML 1.1 reader), so a manifest means here what it means
 * to the API server:
 *   null   "", ~, null, Null, NULL
 *   bool   true/True/TRUE, false/False/FALSE, and the YAML 1.1 words
 *          yes/Yes/YES, no/No/NO, on/On/ON, off/Off/OFF, y/Y, n/N
 *   int    [-+]? decimal, 0x hex, 0o or leading-0 octal, 0b binary, '_' ignored
 *          (beyond int64: a decimal becomes a float, others stay strings)
 *   float  [-+]?(.d+|d+(.d*)?)([eE][-+]?d+)? with '_' ignored; [-+]?.inf, .nan
 *   else   a string (timestamps stay strings, as in JSON)
 * Quoted and block scalars are strings. Tags !!str !!int !!float !!bool !!null
 * are honoured (a value that does not fit its tag is an error); other tags are
 * ignored. Mapping keys are always strings (the scalar's text); a duplicate key
 * is an error (one of the values would be lost). Merge keys (<<: *base, or a
 * list of them) fill in the keys the mapping does not set itself. An alias is
 * a deep copy of its anchor's value (so clean() in place cannot change two
 * places at once); copies are bounded by VMDR_YAML_MAX_ALIAS_NODES per document,
 * so a billion-laughs document is an error, not an OOM.
 *
 * Encoding: block style as kubectl prints (sequences not indented under their
 * key, empty ones as [] and {}), keys in kubectl's order (yaml/keysort.c), no line folding,
 * multi-line strings as literal blocks. A string that a YAML 1.1 or 1.2 reader (PyYAML, Psych,
 * go-yaml, libyaml-based readers) could take for a null, bool, number, timestamp or merge key is
 * double-quoted; libyaml picks quotes for any other string that cannot be plain. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "codec.h"
#include "yaml/yaml.h"
#include "json.h"
#include "lutil.h"

#define VMDR_YAML_MAX_ALIAS_NODES 1000000
#define PARSER_META "vmdr.yaml.Parser"
#define EMITTER_META "vmdr.yaml.Emitter"

/* ---- decoder ------------------------------------------------------------------------ */

typedef struct ybox {
    yaml_parser_t parser;
    yaml_event_t ev;
    int parser_live, ev_live;
} ybox;

static int ybox_gc(lua_State *L)
{
    ybox *b = luaL_checkudata(L, 1, PARSER_META);
    if (b->ev_live)
        yaml_event_delete(&b->ev);
    if (b->parser_live)
        yaml_parser_delete(&b->parser);
    b->ev_live = b->parser_live = 0;
    return 0;
}

typedef struct ydec {
    lua_State *L;
    ybox *b;
    const char *src;
    size_t srclen;
    int mt;      /* stack index: the array metatable */
    int anchors; /* stack index: anchor name -> value, for the current document */
    int depth;
    long alias_nodes; /* nodes copied for aliases in this document */
    vmdr_err *err;
} ydec;

static int dec_fail_at(ydec *d, yaml_mark_t m, const char *what)
{
    return vmdr_err_set(d->err, "invalid", 0, "invalid YAML at line %lu column %lu: %s",
                        (unsigned long)m.line + 1, (unsigned long)m.column + 1, what);
}

static int dec_parser_fail(ydec *d)
{
    yaml_parser_t *p = &d->b->parser;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->error == YAML_READER_ERROR) {
        /* reader errors (bad UTF-8, control characters) carry a byte offset only */
        unsigned long line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && i < d->srclen; i++) {
            if (d->src[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (p->problem_value != -1)
            return vmdr_err_set(d->err, "invalid", 0,
                                "invalid YAML at line %lu column %lu: %s (byte 0x%02X)", line, col,
                                problem, (unsigned)p->problem_value & 0xFF);
        return vmdr_err_set(d->err, "invalid", 0, "invalid YAML at line %lu column %lu: %s", line,
                            col, problem);
    }
    if (p->error == YAML_MEMORY_ERROR)
        return vmdr_err_set(d->err, "invalid", ENOMEM, "out of memory parsing YAML");
    if (p->context)
        return vmdr_err_set(d->err, "invalid", 0,
                            "invalid YAML at line %lu column %lu: %s (%s at line %lu column %lu)",
                            (unsigned long)p->problem_mark.line + 1,
                            (unsigned long)p->problem_mark.column + 1, problem, p->context,
                            (unsigned long)p->context_mark.line + 1,
                            (unsigned long)p->context_mark.column + 1);
    return dec_fail_at(d, p->problem_mark, problem);
}

static int next_event(ydec *d)
{
    if (d->b->ev_live) {
        yaml_event_delete(&d->b->ev);
        d->b->ev_live = 0;
    }
    if (!yaml_parser_parse(&d->b->parser, &d->b->ev))
        return dec_parser_fail(d);
    d->b->ev_live = 1;
    return 0;
}

static int is_tag(const yaml_char_t *tag, const char *name)
{
    return tag && strcmp((const char *)tag, name) == 0;
}

/* Pushes the value of the scalar event in d->b->ev. */
static int dec_scalar(ydec *d)
{
    lua_State *L = d->L;
    yaml_event_t *ev = &d->b->ev;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const yaml_char_t *tag = ev->data.scalar.tag;
    vmdr_yaml_scalar r;
    int typed = is_tag(tag, YAML_NULL_TAG) || is_tag(tag, YAML_BOOL_TAG) ||
                is_tag(tag, YAML_INT_TAG) || is_tag(tag, YAML_FLOAT_TAG);
    /* "!", !!str and !!binary keep the text; an application tag (!Ref) is ignored */
    int keep_text = tag && (is_tag(tag, "!") || is_tag(tag, YAML_STR_TAG) ||
                            is_tag(tag, "tag:yaml.org,2002:binary"));
    if (typed) {
        vmdr_yaml_resolve(&r, s, n);
        int ok =
            (is_tag(tag, YAML_NULL_TAG) && r.kind == VMDR_YAML_NULL) ||
            (is_tag(tag, YAML_BOOL_TAG) &&
             (r.kind == VMDR_YAML_TRUE || r.kind == VMDR_YAML_FALSE)) ||
            (is_tag(tag, YAML_INT_TAG) && r.kind == VMDR_YAML_INT) ||
            (is_tag(tag, YAML_FLOAT_TAG) && (r.kind == VMDR_YAML_FLOAT || r.kind == VMDR_YAML_INT));
        if (!ok) {
            char what[96];
            snprintf(what, sizeof what, "the value does not fit its tag %s", (const char *)tag);
            return dec_fail_at(d, ev->start_mark, what);
        }
        if (is_tag(tag, YAML_FLOAT_TAG) && r.kind == VMDR_YAML_INT) {
            r.kind = VMDR_YAML_FLOAT;
            r.f = (double)r.i;
        }
    } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !keep_text) {
        vmdr_yaml_resolve(&r, s, n);
    } else {
        r.kind = VMDR_YAML_STR;
    }
    switch (r.kind) {
    case VMDR_YAML_NULL:
        vmdr_push_null(L);
        break;
    case VMDR_YAML_TRUE:
        lua_pushboolean(L, 1);
        break;
    case VMDR_YAML_FALSE:
        lua_pushboolean(L, 0);
        break;
    case VMDR_YAML_INT:
        lua_pushinteger(L, (lua_Integer)r.i);
        break;
    case VMDR_YAML_FLOAT:
        lua_pushnumber(L, r.f);
        break;
    default:
        lua_pushlstring(L, s, n);
        break;
    }
    return 0;
}

/* Pushes a deep copy of the value at idx, counting nodes against the alias budget. */
static int copy_value(ydec *d, int idx, int depth, yaml_mark_t at)
{
    lua_State *L = d->L;
    if (++d->alias_nodes > VMDR_YAML_MAX_ALIAS_NODES) {
        char what[96];
        snprintf(what, sizeof what, "aliases expand to more than %d nodes",
                 VMDR_YAML_MAX_ALIAS_NODES);
        return dec_fail_at(d, at, what);
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return 0;
    }
    if (depth > VMDR_CODEC_MAX_DEPTH)
        return dec_fail_at(d, at, "an alias nests deeper than the limit");
    luaL_checkstack(L, 4, "copying a YAML alias");
    idx = lua_absindex(L, idx);
    lua_createtable(L, (int)lua_rawlen(L, idx), 0); /* stack: copy */
    if (lua_getmetatable(L, idx))
        lua_setmetatable(L, -2);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* stack: copy key value */
        if (copy_value(d, -1, depth + 1, at) < 0)
            return -1;
        /* stack: copy key value valuecopy */
        lua_remove(L, -2);
        lua_pushvalue(L, -2); /* stack: copy key valuecopy key */
        lua_insert(L, -2);
        lua_rawset(L, -4); /* stack: copy key */
    }
    return 0;
}

static int dec_node(ydec *d);

/* Registers the anchor (if the start event had one) for the value on top. */
static void set_anchor(ydec *d, int anchor_idx)
{
    if (anchor_idx == 0)
        return;
    lua_pushvalue(d->L, anchor_idx);
    lua_pushvalue(d->L, -2);
    lua_rawset(d->L, d->anchors);
}

/* Pushes the anchor name of a start event (or nothing); returns its stack index or 0. */
static int push_anchor(ydec *d, const yaml_char_t *anchor)
{
    if (anchor == NULL)
        return 0;
    lua_pushstring(d->L, (const char *)anchor);
    return lua_gettop(d->L);
}

static int dec_sequence(ydec *d)
{
    lua_State *L = d->L;
    if (++d->depth > VMDR_CODEC_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nesting deeper than %d", VMDR_CODEC_MAX_DEPTH);
        return dec_fail_at(d, d->b->ev.start_mark, what);
    }
    luaL_checkstack(L, 6, "decoding YAML");
    int anchor = push_anchor(d, d->b->ev.data.sequence_start.anchor);
    lua_createtable(L, 0, 0); /* stack: [anchor] seq */
    lua_pushvalue(L, d->mt);
    lua_setmetatable(L, -2);
    lua_Integer i = 0;
    for (;;) {
        if (next_event(d) < 0)
            return -1;
        if (d->b->ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (dec_node(d) < 0)
            return -1;
        lua_rawseti(L, -2, ++i);
    }
    set_anchor(d, anchor);
    if (anchor)
        lua_remove(L, anchor);
    d->depth--;
    return 0;
}

/* Applies the merge sources (a list at idx) to the mapping below it: keys the
 * mapping does not have come from the sources, earlier sources first. */
static int apply_merges(ydec *d, int map, int merges, yaml_mark_t at)
{
    lua_State *L = d->L;
    lua_Integer n = (lua_Integer)lua_rawlen(L, merges);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, merges, i); /* stack: src */
        if (lua_type(L, -1) != LUA_TTABLE || lua_getmetatable(L, -1)) {
            if (lua_type(L, -1) == LUA_TTABLE)
                lua_pop(L, 1);
            return dec_fail_at(d, at, "a merge key (<<) needs a mapping or a list of mappings");
        }
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) { /* stack: src k v */
            lua_pushvalue(L, -2);
            if (lua_rawget(L, map) == LUA_TNIL) { /* stack: src k v cur */
                lua_pop(L, 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2); /* stack: src k k v */
                lua_rawset(L, map);
            } else {
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int dec_mapping(ydec *d)
{
    lua_State *L = d->L;
    if (++d->depth > VMDR_CODEC_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nesting deeper than %d", VMDR_CODEC_MAX_DEPTH);
        return dec_fail_at(d, d->b->ev.start_mark, what);
    }
    luaL_checkstack(L, 8, "decoding YAML");
    yaml_mark_t start = d->b->ev.start_mark;
    int anchor = push_anchor(d, d->b->ev.data.mapping_start.anchor);
    lua_createtable(L, 0, 0); /* stack: [anchor] map */
    int map = lua_gettop(L);
    int merges = 0;
    for (;;) {
        if (next_event(d) < 0)
            return -1;
        yaml_event_t *ev = &d->b->ev;
        if (ev->type == YAML_MAPPING_END_EVENT)
            break;
        yaml_mark_t keymark = ev->start_mark;
        int is_merge = 0;
        /* the key: a scalar's text, or an alias of a string */
        if (ev->type == YAML_SCALAR_EVENT) {
            is_merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                       ev->data.scalar.tag == NULL && ev->data.scalar.length == 2 &&
                       memcmp(ev->data.scalar.value, "<<", 2) == 0;
            lua_pushlstring(L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
            if (ev->data.scalar.anchor) {
                lua_pushstring(L, (const char *)ev->data.scalar.anchor);
                lua_pushvalue(L, -2);
                lua_rawset(L, d->anchors);
            }
        } else if (ev->type == YAML_ALIAS_EVENT) {
            lua_pushstring(L, (const char *)ev->data.alias.anchor);
            lua_rawget(L, d->anchors);
            if (lua_type(L, -1) != LUA_TSTRING)
                return dec_fail_at(d, keymark, "a mapping key alias must name a string");
        } else {
            return dec_fail_at(d, keymark, "a mapping key must be a scalar");
        }
        /* stack: ... map key */
        if (next_event(d) < 0)
            return -1;
        if (dec_node(d) < 0) /* stack: map key value */
            return -1;
        if (is_merge) {
            if (merges == 0) {
                lua_newtable(L);
                lua_replace(L, -3); /* stack: map merges value */
                merges = map + 1;
            } else {
                lua_remove(L, -2);
            }
            /* a list of mappings merges each; a mapping merges itself */
            if (lua_type(L, -1) == LUA_TTABLE && lua_getmetatable(L, -1)) {
                lua_pop(L, 1);
                lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
                for (lua_Integer i = 1; i <= n; i++) {
                    lua_rawgeti(L, -1, i);
                    lua_rawseti(L, merges, (lua_Integer)lua_rawlen(L, merges) + 1);
                }
                lua_pop(L, 1);
            } else {
                lua_rawseti(L, merges, (lua_Integer)lua_rawlen(L, merges) + 1);
            }
            continue;
        }
        lua_pushvalue(L, -2);
        if (lua_rawget(L, map) != LUA_TNIL) {
            char what[160];
            snprintf(what, sizeof what, "duplicate key '%.100s'", lua_tostring(L, -3));
            return dec_fail_at(d, keymark, what);
        }
        lua_pop(L, 1);
        lua_rawset(L, map);
    }
    if (merges) {
        if (apply_merges(d, map, merges, start) < 0)
            return -1;
        lua_settop(L, map);
    }
    set_anchor(d, anchor);
    if (anchor)
        lua_remove(L, anchor);
    d->depth--;
    return 0;
}

/* Pushes the node starting at the current event. */
static int dec_node(ydec *d)
{
    yaml_event_t *ev = &d->b->ev;
    switch (ev->type) {
    case YAML_SCALAR_EVENT: {
        if (dec_scalar(d) < 0)
            return -1;
        if (ev->data.scalar.anchor) {
            int anchor = push_anchor(d, ev->data.scalar.anchor);
            lua_pushvalue(d->L, -2);
            lua_rawset(d->L, d->anchors);
            (void)anchor;
        }
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
        return dec_sequence(d);
    case YAML_MAPPING_START_EVENT:
        return dec_mapping(d);
    case YAML_ALIAS_EVENT: {
        lua_State *L = d->L;
        yaml_mark_t at = ev->start_mark;
        lua_pushstring(L, (const char *)ev->data.alias.anchor);
        if (lua_rawget(L, d->anchors) == LUA_TNIL) {
            char what[160];
            snprintf(what, sizeof what, "undefined alias '%.100s'",
                     (const char *)ev->data.alias.anchor);
            return dec_fail_at(d, at, what);
        }
        if (lua_type(L, -1) == LUA_TTABLE) {
            if (copy_value(d, -1, d->depth, at) < 0)
                return -1;
            lua_remove(L, -2);
        } else if (++d->alias_nodes > VMDR_YAML_MAX_ALIAS_NODES) {
            return copy_value(d, -1, d->depth, at); /* reports the limit */
        }
        return 0;
    }
    default:
        return dec_fail_at(d, ev->start_mark, "unexpected event");
    }
}

/* Decodes documents from s; pushes the first (all = 0) or a list of all (all = 1). */
static int yaml_decode_push(lua_State *L, const char *s, size_t n, int all, vmdr_err *err)
{
    int top = lua_gettop(L);
    luaL_checkstack(L, 10, "decoding YAML");
    ybox *b = lua_newuserdatauv(L, sizeof *b, 0); /* stack: box */
    b->parser_live = b->ev_live = 0;
    if (luaL_newmetatable(L, PARSER_META)) {
        lua_pushcfunction(L, ybox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (!yaml_parser_initialize(&b->parser)) {
        lua_settop(L, top);
        return vmdr_err_set(err, "invalid", ENOMEM, "out of memory (YAML parser)");
    }
    b->parser_live = 1;
    yaml_parser_set_input_string(&b->parser, (const unsigned char *)s, n);
    yaml_parser_set_encoding(&b->parser, YAML_UTF8_ENCODING);

    ydec d = {L, b, s, n, 0, 0, 0, 0, err};
    vmdr_push_array_mt(L); /* stack: box mt */
    d.mt = lua_gettop(L);
    lua_newtable(L); /* stack: box mt anchors */
    d.anchors = lua_gettop(L);
    if (all) {
        lua_newtable(L); /* stack: box mt anchors list */
        lua_pushvalue(L, d.mt);
        lua_setmetatable(L, -2);
    }
    int ndocs = 0, rc = -1;
    for (;;) {
        if (next_event(&d) < 0)
            goto done;
        yaml_event_type_t t = b->ev.type;
        if (t == YAML_STREAM_END_EVENT)
            break;
        if (t != YAML_DOCUMENT_START_EVENT)
            continue; /* STREAM_START */
        if (next_event(&d) < 0 || dec_node(&d) < 0)
            goto done;
        if (next_event(&d) < 0) /* DOCUMENT_END */
            goto done;
        ndocs++;
        if (!all)
            break;
        lua_rawseti(L, -2, ndocs);
        /* anchors are per document */
        lua_newtable(L);
        lua_replace(L, d.anchors);
        d.alias_nodes = 0;
    }
    if (!all && ndocs == 0)
        vmdr_push_null(L); /* an empty stream: no document, read as null */
    rc = 0;
done:
    if (b->ev_live)
        yaml_event_delete(&b->ev);
    yaml_parser_delete(&b->parser);
    b->ev_live = b->parser_live = 0;
    if (rc < 0) {
        lua_settop(L, top);
        return -1;
    }
    lua_replace(L, top + 1); /* the value where the box was */
    lua_settop(L, top + 1);
    return 0;
}

/* ---- encoder ------------------------------------------------------------------------ */

typedef struct ebox {
    yaml_emitter_t em;
    int live;
} ebox;

static int ebox_gc(lua_State *L)
{
    ebox *b = luaL_checkudata(L, 1, EMITTER_META);
    if (b->live)
        yaml_emitter_delete(&b->em);
    b->live = 0;
    return 0;
}

typedef struct yenc {
    lua_State *L;
    yaml_emitter_t *em;
    vmdr_codec_scratch *s;
    vmdr_err *err;
    int failed_write;
} yenc;

static int write_handler(void *data, unsigned char *buffer, size_t size)
{
    yenc *e = data;
    if (vmdr_codec_reserve(e->s, size, e->err) < 0) {
        e->failed_write = 1;
        return 0;
    }
    memcpy(e->s->out + e->s->len, buffer, size);
    e->s->len += size;
    return 1;
}

static int emit(yenc *e, yaml_event_t *ev)
{
    if (yaml_emitter_emit(e->em, ev))
        return 0;
    if (e->failed_write)
        return -1;
    return vmdr_err_set(e->err, "invalid", 0, "cannot write YAML: %s",
                        e->em->problem ? e->em->problem : "emitter error");
}

static int emit_scalar(yenc *e, const char *s, size_t n, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style))
        return vmdr_err_set(e->err, "invalid", ENOMEM, "out of memory (YAML scalar)");
    return emit(e, &ev);
}

static int emit_string(yenc *e, const char *s, size_t n)
{
    size_t bad = vmdr_utf8_check(s, n);
    if (bad != n)
        return vmdr_err_set(e->err, "invalid", 0, "a string is not valid UTF-8 (byte %zu)",
                            bad + 1);
    if (n > INT32_MAX)
        return vmdr_err_set(e->err, "invalid", 0, "a string is longer than 2 GB");
    yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
    /* CR, NEL, LS and PS are line breaks to a YAML reader, which normalises them
     * to LF in every style but double-quoted, where libyaml escapes them. */
    if (vmdr_yaml_needs_quotes(s, n) || memchr(s, '\r', n) || memmem(s, n, "\xC2\x85", 2) ||
        memmem(s, n, "\xE2\x80\xA8", 3) || memmem(s, n, "\xE2\x80\xA9", 3))
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    else if (memchr(s, '\n', n))
        style = YAML_LITERAL_SCALAR_STYLE;
    return emit_scalar(e, s, n, style);
}

static int enc_node(yenc *e, int idx);

static int kubectl_key_cmp(const void *a, const void *b)
{
    const vmdr_codec_key *x = a, *y = b;
    return vmdr_yaml_key_cmp(x->s, x->n, y->s, y->n);
}

static int enc_table(yenc *e, int idx)
{
    lua_State *L = e->L;
    size_t base, n;
    int kind = vmdr_codec_enter(L, idx, e->s, &base, &n, e->err);
    if (kind < 0)
        return -1;
    int rc = -1;
    yaml_event_t ev;
    if (kind == VMDR_CODEC_ARRAY) {
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (emit(e, &ev) < 0)
            goto done;
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            int r = enc_node(e, lua_gettop(L));
            lua_pop(L, 1);
            if (r < 0)
                goto done;
        }
        yaml_sequence_end_event_initialize(&ev);
    } else {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (emit(e, &ev) < 0)
            goto done;
        for (size_t i = 0; i < n; i++) {
            vmdr_codec_key k = e->s->keys[base + i];
            if (emit_string(e, k.s, k.n) < 0)
                goto done;
            lua_pushlstring(L, k.s, k.n);
            lua_rawget(L, idx);
            int r = enc_node(e, lua_gettop(L));
            lua_pop(L, 1);
            if (r < 0)
                goto done;
        }
        yaml_mapping_end_event_initialize(&ev);
    }
    rc = emit(e, &ev);
done:
    e->s->nkeys = base;
    vmdr_codec_leave(e->s);
    return rc;
}

static int enc_node(yenc *e, int idx)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return emit_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? emit_scalar(e, "true", 4, YAML_PLAIN_SCALAR_STYLE)
                                     : emit_scalar(e, "false", 5, YAML_PLAIN_SCALAR_STYLE);
    case LUA_TNUMBER: {
        char buf[48];
        size_t n;
        if (lua_isinteger(L, idx)) {
            n = (size_t)snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double v = (double)lua_tonumber(L, idx);
            if (isnan(v)) {
                n = (size_t)snprintf(buf, sizeof buf, ".nan");
            } else if (isinf(v)) {
                n = (size_t)snprintf(buf, sizeof buf, v < 0 ? "-.inf" : ".inf");
            } else {
                n = vmdr_codec_format_float(buf, v);
                /* YAML 1.1 readers want a '.' in a float with an exponent: 1e+20 -> 1.0e+20 */
                char *x = strpbrk(buf, "eE");
                if (x && memchr(buf, '.', (size_t)(x - buf)) == NULL) {
                    memmove(x + 2, x, n - (size_t)(x - buf) + 1);
                    x[0] = '.';
                    x[1] = '0';
                    n += 2;
                }
            }
        }
        return emit_scalar(e, buf, n, YAML_PLAIN_SCALAR_STYLE);
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return emit_string(e, s, n);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return emit_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
        return vmdr_err_set(e->err, "invalid", 0, "cannot encode a light userdata other than null");
    case LUA_TTABLE:
        return enc_table(e, idx);
    default:
        return vmdr_err_set(e->err, "invalid", 0, "cannot encode a %s", luaL_typename(L, idx));
    }
}

/* Encodes the value at idx (all = 0) or each element of the list at idx as its
 * own document (all = 1); pushes the YAML text. */
static int yaml_encode_push(lua_State *L, int idx, int all, vmdr_err *err)
{
    idx = lua_absindex(L, idx);
    int top = lua_gettop(L);
    luaL_checkstack(L, 8, "encoding YAML");
    vmdr_codec_scratch *s = vmdr_codec_scratch_push(L); /* stack: scratch */
    s->key_cmp = kubectl_key_cmp;
    ebox *b = lua_newuserdatauv(L, sizeof *b, 0); /* stack: scratch ebox */
    b->live = 0;
    if (luaL_newmetatable(L, EMITTER_META)) {
        lua_pushcfunction(L, ebox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (!yaml_emitter_initialize(&b->em)) {
        lua_settop(L, top);
        return vmdr_err_set(err, "invalid", ENOMEM, "out of memory (YAML emitter)");
    }
    b->live = 1;
    yenc e = {L, &b->em, s, err, 0};
    yaml_emitter_set_output(&b->em, write_handler, &e);
    yaml_emitter_set_unicode(&b->em, 1);
    yaml_emitter_set_width(&b->em, -1); /* never fold long lines, as kubectl prints */
    yaml_emitter_set_indent(&b->em, 2);

    int rc = -1;
    yaml_event_t ev;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (emit(&e, &ev) < 0)
        goto done;
    lua_Integer ndocs = 1;
    if (all) {
        if (lua_type(L, idx) != LUA_TTABLE) {
            vmdr_err_set(err, "invalid", 0, "encode_all needs a list of documents");
            goto done;
        }
        ndocs = (lua_Integer)lua_rawlen(L, idx);
    }
    for (lua_Integer i = 1; i <= ndocs; i++) {
        /* documents after the first start with "---", as kubectl separates them */
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, i == 1);
        if (emit(&e, &ev) < 0)
            goto done;
        int r;
        if (all) {
            lua_rawgeti(L, idx, i);
            r = enc_node(&e, lua_gettop(L));
            lua_pop(L, 1);
        } else {
            r = enc_node(&e, idx);
        }
        if (r < 0)
            goto done;
        yaml_document_end_event_initialize(&ev, 1);
        if (emit(&e, &ev) < 0)
            goto done;
    }
    yaml_stream_end_event_initialize(&ev);
    if (emit(&e, &ev) < 0 || !yaml_emitter_flush(&b->em))
        goto done;
    rc = 0;
done:
    yaml_emitter_delete(&b->em);
    b->live = 0;
    if (rc == 0)
        lua_pushlstring(L, s->out, s->len);
    vmdr_codec_scratch_free(s);
    if (rc == 0) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
    } else {
        lua_settop(L, top);
    }
    return rc;
}

/* ---- clean(obj, rules) ------------------------------------------------------------------
 * Rules are data (a site adds its own): a list of tables, applied in order, in
 * place. Each rule has exactly one action; the full format is in docs/yaml-clean.md.
 *   { remove = PATH }                        remove what PATH matches
 *   { remove_keys = PATH, prefix = P, names = {...} }
 *                                            remove the keys of the map(s) at PATH
 *                                            that start with P (a string or a list)
 *                                            or are named in names (either or both)
 *   { set = PATH, value = V }                set PATH to a copy of V, creating
 *                                            missing maps on the way (never list
 *                                            elements); if_present = true only
 *                                            replaces a value that is already there
 * Options:
 *   when = { [PATH] = VALUE, ... }           apply only if each PATH (no wildcards)
 *                                            exists in obj and equals VALUE (a
 *                                            string, number, boolean or null)
 *   prune_empty = true                       (remove, remove_keys) a map or list the
 *                                            rule emptied is removed from its parent
 * PATH: dotted keys, [*] or * for every element/value, [N] from 0, ["a.b/c"] for
 * keys with dots (runtime/yaml/path.c). A path that matches nothing is no error:
 * cleaning is idempotent. An invalid rule raises "rule N: ...". */

enum { ACT_REMOVE = 1, ACT_REMOVE_KEYS, ACT_SET };
#define CLEAN_MAX_PREFIXES 32

typedef struct crule {
    int index;
    int action;
    vmdr_yaml_path path;
    const char *prefix[CLEAN_MAX_PREFIXES];
    size_t prefixlen[CLEAN_MAX_PREFIXES];
    int nprefix;
    int names; /* stack index of a set {name = true}, or 0 */
    int value; /* stack index of the value to set, or 0 */
    int if_present, prune_empty;
} crule;

static int rule_error(lua_State *L, int index, const char *fmt, const char *detail)
{
    return luaL_error(L, "rule %d: %s%s", index, fmt, detail ? detail : "");
}

static int is_array(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    vmdr_push_array_mt(L);
    int r = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return r;
}

static int table_empty(lua_State *L, int idx)
{
    lua_pushnil(L);
    if (lua_next(L, idx) == 0)
        return 1;
    lua_pop(L, 2);
    return 0;
}

/* Pushes a deep copy of the value at idx (tables keep their metatable). Raises on a
 * value nested deeper than the codec limit (a cycle included). */
static void clean_copy(lua_State *L, int idx, int depth, int rule)
{
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    if (depth > VMDR_CODEC_MAX_DEPTH)
        rule_error(L, rule, "value nests too deep (or contains itself)", NULL);
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 4, "clean");
    lua_createtable(L, 0, 0);
    if (lua_getmetatable(L, idx))
        lua_setmetatable(L, -2);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) { /* stack: copy k v */
        clean_copy(L, -1, depth + 1, rule);
        lua_remove(L, -2);
        lua_pushvalue(L, -2);
        lua_insert(L, -2); /* stack: copy k k vcopy */
        lua_rawset(L, -4);
    }
}

/* Removes key (at kidx) from the container at t: a map key, or a list element
 * (the elements after it move down, as table.remove does). */
static void remove_child(lua_State *L, int t, int kidx)
{
    if (lua_type(L, kidx) == LUA_TNUMBER && is_array(L, t)) {
        lua_Integer i = lua_tointeger(L, kidx), n = (lua_Integer)lua_rawlen(L, t);
        for (; i < n; i++) {
            lua_rawgeti(L, t, i + 1);
            lua_rawseti(L, t, i);
        }
        lua_pushnil(L);
        lua_rawseti(L, t, n);
        return;
    }
    lua_pushvalue(L, kidx);
    lua_pushnil(L);
    lua_rawset(L, t);
}

static int prefix_match(const crule *r, const char *k, size_t n)
{
    for (int i = 0; i < r->nprefix; i++)
        if (n >= r->prefixlen[i] && memcmp(k, r->prefix[i], r->prefixlen[i]) == 0)
            return 1;
    return 0;
}

/* The action at the end of the path: t is the container of the last segment
 * (remove, set) or the map itself (remove_keys). Returns 1 if it removed something. */
static int clean_act(lua_State *L, const crule *r, int t)
{
    int removed = 0;
    if (r->action == ACT_REMOVE_KEYS) {
        if (is_array(L, t))
            return 0;
        lua_pushnil(L);
        while (lua_next(L, t) != 0) { /* stack: k v */
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                continue;
            size_t n;
            const char *k = lua_tolstring(L, -1, &n);
            int hit = prefix_match(r, k, n);
            if (!hit && r->names) {
                lua_pushvalue(L, -1);
                hit = lua_rawget(L, r->names) != LUA_TNIL;
                lua_pop(L, 1);
            }
            if (hit) {
                /* clearing an existing field during lua_next is allowed */
                lua_pushvalue(L, -1);
                lua_pushnil(L);
                lua_rawset(L, t);
                removed = 1;
            }
        }
        return removed;
    }
    const vmdr_yaml_seg *g = &r->path.seg[r->path.n - 1];
    int arr = is_array(L, t);
    if (g->kind == VMDR_YAML_SEG_KEY) {
        if (arr)
            return 0;
        lua_pushlstring(L, g->s, g->n); /* stack: key */
        int present = lua_rawget(L, t) != LUA_TNIL;
        lua_pop(L, 1);
        if (r->action == ACT_REMOVE) {
            if (present) {
                lua_pushlstring(L, g->s, g->n);
                lua_pushnil(L);
                lua_rawset(L, t);
                removed = 1;
            }
        } else if (present || !r->if_present) {
            lua_pushlstring(L, g->s, g->n);
            clean_copy(L, r->value, 0, r->index);
            lua_rawset(L, t);
        }
    } else if (g->kind == VMDR_YAML_SEG_INDEX) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, t);
        if (!arr || g->index >= n)
            return 0;
        if (r->action == ACT_REMOVE) {
            lua_pushinteger(L, (lua_Integer)g->index + 1);
            remove_child(L, t, lua_gettop(L));
            lua_pop(L, 1);
            removed = 1;
        } else {
            clean_copy(L, r->value, 0, r->index);
            lua_rawseti(L, t, (lua_Integer)g->index + 1);
        }
    } else { /* ANY: every element or value */
        lua_pushnil(L);
        while (lua_next(L, t) != 0) { /* stack: k v */
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            if (r->action == ACT_REMOVE) {
                lua_pushnil(L);
                removed = 1;
            } else {
                clean_copy(L, r->value, 0, r->index);
            }
            lua_rawset(L, t);
        }
    }
    return removed;
}

/* Walks segment i of the rule's path from the table at t (whose parent is at
 * parent, under the key at pkey; 0 for the root). */
static void clean_walk(lua_State *L, const crule *r, int t, int parent, int pkey, int i)
{
    luaL_checkstack(L, 6, "clean");
    int last = r->action == ACT_REMOVE_KEYS ? r->path.n : r->path.n - 1;
    if (i == last) {
        int removed = clean_act(L, r, t);
        if (removed && r->prune_empty && parent && table_empty(L, t))
            remove_child(L, parent, pkey);
        return;
    }
    const vmdr_yaml_seg *g = &r->path.seg[i];
    int top = lua_gettop(L);
    int arr = is_array(L, t);
    if (g->kind == VMDR_YAML_SEG_KEY) {
        if (arr)
            return;
        lua_pushlstring(L, g->s, g->n); /* stack: key */
        lua_pushvalue(L, -1);
        int ty = lua_rawget(L, t); /* stack: key child */
        if (ty == LUA_TNIL && r->action == ACT_SET && !r->if_present) {
            lua_pop(L, 1);
            lua_newtable(L); /* stack: key child */
            lua_pushvalue(L, -2);
            lua_pushvalue(L, -2);
            lua_rawset(L, t);
            ty = LUA_TTABLE;
        }
        if (ty == LUA_TTABLE)
            clean_walk(L, r, top + 2, t, top + 1, i + 1);
    } else if (g->kind == VMDR_YAML_SEG_INDEX) {
        if (arr && g->index < (int64_t)lua_rawlen(L, t)) {
            lua_pushinteger(L, (lua_Integer)g->index + 1); /* stack: key */
            if (lua_rawgeti(L, t, (lua_Integer)g->index + 1) == LUA_TTABLE)
                clean_walk(L, r, top + 2, t, top + 1, i + 1);
        }
    } else if (arr) {
        /* backwards, so pruning an element does not move ones not yet visited */
        for (lua_Integer k = (lua_Integer)lua_rawlen(L, t); k >= 1; k--) {
            lua_pushinteger(L, k);
            if (lua_rawgeti(L, t, k) == LUA_TTABLE)
                clean_walk(L, r, top + 2, t, top + 1, i + 1);
            lua_settop(L, top);
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, t) != 0) { /* stack: k v */
            if (lua_type(L, -1) == LUA_TTABLE)
                clean_walk(L, r, top + 2, t, top + 1, i + 1);
            lua_settop(L, top + 1);
        }
    }
    lua_settop(L, top);
}

/* Pushes the value at a wildcard-free path from the table at t, or nil. */
static void path_get(lua_State *L, int t, const vmdr_yaml_path *p)
{
    lua_pushvalue(L, t);
    for (int i = 0; i < p->n; i++) {
        const vmdr_yaml_seg *g = &p->seg[i];
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_pushnil(L);
            return;
        }
        if (g->kind == VMDR_YAML_SEG_KEY)
            lua_pushlstring(L, g->s, g->n);
        else
            lua_pushinteger(L, (lua_Integer)g->index + 1);
        lua_rawget(L, -2);
        lua_remove(L, -2);
    }
}

/* Checks the rule's `when` table (at w) against obj; raises on a malformed one. */
static int clean_when(lua_State *L, int obj, int w, int index)
{
    int ok = 1;
    lua_pushnil(L);
    while (lua_next(L, w) != 0) { /* stack: path want */
        if (lua_type(L, -2) != LUA_TSTRING)
            rule_error(L, index, "'when' keys must be path strings", NULL);
        int wt = lua_type(L, -1);
        if (wt == LUA_TTABLE || wt == LUA_TFUNCTION || wt == LUA_TTHREAD || wt == LUA_TUSERDATA)
            rule_error(L, index, "'when' values must be strings, numbers, booleans or null", NULL);
        size_t n;
        const char *ps = lua_tolstring(L, -2, &n);
        vmdr_yaml_path p;
        vmdr_err err;
        if (vmdr_yaml_path_parse(&p, ps, n, &err) < 0)
            rule_error(L, index, "when: ", err.message);
        for (int i = 0; i < p.n; i++)
            if (p.seg[i].kind == VMDR_YAML_SEG_ANY)
                rule_error(L, index, "'when' paths cannot hold wildcards", NULL);
        if (ok) {
            path_get(L, obj, &p); /* stack: path want have */
            ok = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return ok;
}

static const char *const RULE_FIELDS[] = {"remove",      "remove_keys", "set",  "value",
                                          "prefix",      "names",       "when", "if_present",
                                          "prune_empty", NULL};

/* Reads rule number index (the table at ri) into r; raises "rule N: ..." on misuse.
 * Pushes helper values (names set) that must stay until the rule is applied. */
static void clean_parse(lua_State *L, int ri, int index, crule *r)
{
    memset(r, 0, sizeof *r);
    r->index = index;
    /* unknown fields are typos that would silently disable a rule */
    lua_pushnil(L);
    while (lua_next(L, ri) != 0) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *f = RULE_FIELDS; *f && !known; f++)
                known = strcmp(*f, lua_tostring(L, -1)) == 0;
        if (!known) {
            lua_pushvalue(L, -1);
            const char *k = luaL_tolstring(L, -1, NULL);
            rule_error(L, index, "unknown field ", k);
        }
    }
    static const char *const ACTIONS[] = {"remove", "remove_keys", "set"};
    const char *pathstr = NULL;
    size_t pathlen = 0;
    for (int a = 0; a < 3; a++) {
        int t = lua_getfield(L, ri, ACTIONS[a]);
        if (t != LUA_TNIL) {
            if (r->action)
                rule_error(L, index, "more than one action (remove, remove_keys, set)", NULL);
            if (t != LUA_TSTRING)
                rule_error(L, index, ACTIONS[a], " must be a path string");
            r->action = a + 1;
            pathstr = lua_tolstring(L, -1, &pathlen); /* the rule table keeps it alive */
        }
        lua_pop(L, 1);
    }
    if (!r->action)
        rule_error(L, index, "no action: needs remove, remove_keys or set", NULL);
    vmdr_err err;
    if (vmdr_yaml_path_parse(&r->path, pathstr, pathlen, &err) < 0)
        rule_error(L, index, "", err.message);

    int t = lua_getfield(L, ri, "prefix");
    if (t != LUA_TNIL && r->action != ACT_REMOVE_KEYS)
        rule_error(L, index, "'prefix' goes with remove_keys", NULL);
    if (t == LUA_TSTRING) {
        r->prefix[0] = lua_tolstring(L, -1, &r->prefixlen[0]);
        r->nprefix = 1;
    } else if (t == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        if (n > CLEAN_MAX_PREFIXES)
            rule_error(L, index, "more than 32 prefixes", NULL);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
                rule_error(L, index, "'prefix' must be a string or a list of strings", NULL);
            r->prefix[r->nprefix] = lua_tolstring(L, -1, &r->prefixlen[r->nprefix]);
            r->nprefix++;
            lua_pop(L, 1);
        }
    } else if (t != LUA_TNIL) {
        rule_error(L, index, "'prefix' must be a string or a list of strings", NULL);
    }
    lua_pop(L, 1);

    t = lua_getfield(L, ri, "names");
    if (t != LUA_TNIL && r->action != ACT_REMOVE_KEYS)
        rule_error(L, index, "'names' goes with remove_keys", NULL);
    if (t == LUA_TTABLE) {
        lua_newtable(L); /* stack: names set */
        lua_Integer n = (lua_Integer)lua_rawlen(L, -2);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, -2, i) != LUA_TSTRING)
                rule_error(L, index, "'names' must be a list of strings", NULL);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3);
        }
        lua_remove(L, -2); /* stack: set (stays until the rule is applied) */
        r->names = lua_gettop(L);
    } else if (t != LUA_TNIL) {
        rule_error(L, index, "'names' must be a list of strings", NULL);
    } else {
        lua_pop(L, 1);
    }
    if (r->action == ACT_REMOVE_KEYS && !r->nprefix && !r->names)
        rule_error(L, index, "remove_keys needs 'prefix' or 'names'", NULL);

    t = lua_getfield(L, ri, "value");
    if (r->action == ACT_SET) {
        if (t == LUA_TNIL)
            rule_error(L, index, "set needs a 'value' (use yaml.null for null)", NULL);
        if (t == LUA_TFUNCTION || t == LUA_TTHREAD || t == LUA_TUSERDATA)
            rule_error(L, index, "'value' must be data", NULL);
        r->value = lua_gettop(L); /* stays until the rule is applied */
    } else {
        if (t != LUA_TNIL)
            rule_error(L, index, "'value' goes with set", NULL);
        lua_pop(L, 1);
    }

    t = lua_getfield(L, ri, "if_present");
    if (t != LUA_TNIL && (t != LUA_TBOOLEAN || r->action != ACT_SET))
        rule_error(L, index, "'if_present' is a boolean that goes with set", NULL);
    r->if_present = lua_toboolean(L, -1);
    lua_pop(L, 1);
    t = lua_getfield(L, ri, "prune_empty");
    if (t != LUA_TNIL && (t != LUA_TBOOLEAN || r->action == ACT_SET))
        rule_error(L, index, "'prune_empty' is a boolean that goes with remove or remove_keys",
                   NULL);
    r->prune_empty = lua_toboolean(L, -1);
    lua_pop(L, 1);
    t = lua_getfield(L, ri, "when");
    if (t != LUA_TNIL && t != LUA_TTABLE)
        rule_error(L, index, "'when' must be a table of path = value", NULL);
    lua_pop(L, 1);
}

/* yaml.clean(obj, rules) -> obj (changed in place); raises "rule N: ..." on a bad rule.
 * Every rule is checked before any is applied, so a bad list changes nothing. */
static int yaml_clean(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    crule r;
    for (int pass = 0; pass < 2; pass++) {
        for (lua_Integer i = 1; i <= n; i++) {
            int top = lua_gettop(L);
            luaL_checkstack(L, 10, "clean");
            if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
                rule_error(L, (int)i, "a rule must be a table", NULL);
            int ri = lua_gettop(L);
            clean_parse(L, ri, (int)i, &r);
            int applies = 1;
            if (lua_getfield(L, ri, "when") == LUA_TTABLE)
                applies = clean_when(L, 1, lua_gettop(L), (int)i);
            if (pass == 0 && r.value)
                clean_copy(L, r.value, 0, (int)i); /* a cyclic value raises before any change */
            if (pass == 1 && applies)
                clean_walk(L, &r, 1, 0, 0, 0);
            lua_settop(L, top);
        }
    }
    lua_settop(L, 1);
    return 1;
}

/* ---- the module ---------------------------------------------------------------------- */

/* yaml.decode(s) -> value of the first document (null for none) | nil, err */
static int yaml_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (yaml_decode_push(L, s, n, 0, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* yaml.decode_all(s) -> list of every document's value | nil, err */
static int yaml_decode_all(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (yaml_decode_push(L, s, n, 1, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* yaml.encode(v) -> string | nil, err(code="invalid") */
static int yaml_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (yaml_encode_push(L, 1, 0, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* yaml.encode_all(list) -> string of one document per element | nil, err */
static int yaml_encode_all(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (yaml_encode_push(L, 1, 1, &err) < 0)
        return vmdr_push_err(L, &err);
    return 1;
}

static const luaL_Reg yaml_funcs[] = {
    {"decode", yaml_decode},         {"decode_all", yaml_decode_all}, {"encode", yaml_encode},
    {"encode_all", yaml_encode_all}, {"clean", yaml_clean},           {NULL, NULL},
};

int luaopen_vmdr_yaml(lua_State *L)
{
    luaL_newlib(L, yaml_funcs);
    vmdr_push_null(L);
    lua_setfield(L, -2, "null");
    vmdr_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    return 1;
}
