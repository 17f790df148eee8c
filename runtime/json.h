/* The JSON codec's C entry points, for other bindings (vmdr.k8s decodes API
 * responses without a round trip through Lua). Implemented in runtime/json.c.
 *
 * Fidelity markers are shared by vmdr.json and vmdr.yaml:
 *   null  -> the light userdata NULL (json.null == yaml.null)
 *   array -> a table whose metatable is the shared array_mt (json.array_mt ==
 *            yaml.array_mt), so [] and {} survive a round trip. */
#ifndef VMDR_JSON_H
#define VMDR_JSON_H

#include <lua.h>

#include "err.h"

/* Decodes the JSON text s[0..n) and pushes one value. Returns 0, or -1 with err
 * filled (code "invalid", the message giving line and column) and nothing pushed. */
int vmdr_json_decode_push(lua_State *L, const char *s, size_t n, vmdr_err *err);

/* The same with a scratch the caller owns (vmdr_codec_scratch_push, codec.h) and keeps
 * on the stack across calls: decoding many small documents (the items of a list) then
 * leaves no garbage per call, which matters while the collector is paused. */
struct vmdr_codec_scratch;
int vmdr_json_decode_push_with(lua_State *L, const char *s, size_t n,
                               struct vmdr_codec_scratch *scratch, vmdr_err *err);
/* Decodes the one JSON value that starts s[0..n) (leading whitespace allowed) and pushes
 * it; *used is the bytes up to the value's end, whatever follows. An object or array cut
 * off by the end of s is an error, so a success is a whole one (a list item as it
 * streams in); a bare number could be cut short, so callers decode containers only. */
int vmdr_json_decode_prefix_with(lua_State *L, const char *s, size_t n,
                                 struct vmdr_codec_scratch *scratch, size_t *used,
                                 vmdr_err *err);

/* Encodes the value at idx and pushes the JSON string. Returns 0, or -1 with err
 * (code "invalid": a cycle, a function, NaN/inf, a table mixing keys) and nothing pushed. */
int vmdr_json_encode_push(lua_State *L, int idx, vmdr_err *err);

/* Pushes the shared array metatable (creating it once per state). */
void vmdr_push_array_mt(lua_State *L);

#endif
