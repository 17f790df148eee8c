/* Internals shared by the JSON and YAML codecs (runtime/json.c, runtime/yaml.c):
 * the output buffer, the table classifier that decides array or object and
 * sorts object keys, UTF-8 validation and number formatting. Not a module:
 * the definitions live in json.c, which both bindings link with. */
#ifndef VMDR_CODEC_H
#define VMDR_CODEC_H

#include <stddef.h>

#include <lua.h>

#include "err.h"

/* Nesting limit of decoders and encoders: deeper input is an error, never a
 * C-stack overflow. Kubernetes objects nest about 15 levels. */
#define VMDR_CODEC_MAX_DEPTH 512

/* One object key, borrowed from a Lua table that stays unmodified while encoding. */
typedef struct vmdr_codec_key {
    const char *s;
    size_t n;
} vmdr_codec_key;

/* Scratch of an encoder: the output bytes, a stack of sorted keys (one segment
 * per open object) and the path of open tables (for cycle detection). It lives
 * in a userdata whose __gc frees it, so a memory error raised by Lua leaks nothing. */
typedef struct vmdr_codec_scratch {
    char *out;
    size_t len, cap;
    vmdr_codec_key *keys;
    size_t nkeys, capkeys;
    const void *path[VMDR_CODEC_MAX_DEPTH];
    int depth;
    /* qsort comparator of vmdr_codec_key; NULL: bytewise (JSON, as kubectl -o json) */
    int (*key_cmp)(const void *, const void *);
} vmdr_codec_scratch;

enum { VMDR_CODEC_ARRAY = 1, VMDR_CODEC_OBJECT = 2 };

/* Pushes a new scratch userdata (freed by its __gc or by vmdr_codec_scratch_free). */
vmdr_codec_scratch *vmdr_codec_scratch_push(lua_State *L);
void vmdr_codec_scratch_free(vmdr_codec_scratch *s);
/* Makes room for n more output bytes; returns 0 or -1 (out of memory, err set). */
int vmdr_codec_reserve(vmdr_codec_scratch *s, size_t n, vmdr_err *err);

/* Classifies the table at idx: an array (the shared array_mt, or keys exactly
 * 1..n with n > 0; *out_n = n) or an object (every key a string; an empty table
 * without array_mt is an object). For an object, its keys are appended to
 * s->keys sorted (s->key_cmp), *out_n of them from index *out_base; the caller
 * drops them with s->nkeys = *out_base when done.
 * Also enters the table in s->path: the caller calls vmdr_codec_leave after.
 * Returns the kind, or -1 with err (a cycle, too deep, mixed or sparse keys). */
int vmdr_codec_enter(lua_State *L, int idx, vmdr_codec_scratch *s, size_t *out_base, size_t *out_n,
                     vmdr_err *err);
void vmdr_codec_leave(vmdr_codec_scratch *s);

/* Returns the offset of the first byte that is not part of valid UTF-8
 * (overlongs, surrogates and code points above U+10FFFF are invalid), or n. */
size_t vmdr_utf8_check(const char *s, size_t n);

/* Formats a float so that strtod gives the same double back, with ".0" added
 * when it would read as an integer (so the Lua subtype survives). buf >= 32 bytes.
 * Returns the length; NaN and infinities are the caller's business. */
size_t vmdr_codec_format_float(char *buf, double d);

/* Pushes the shared null marker (the light userdata NULL). */
#define vmdr_push_null(L) lua_pushlightuserdata((L), NULL)

#endif
