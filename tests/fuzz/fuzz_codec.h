/* Shared body of the codec fuzz targets: decode the input; if that succeeds, encode
 * (which must succeed: every decoded value is encodable), decode the encoding, and
 * require the same value and the same bytes on a second encode. */
#ifndef VMDR_FUZZ_CODEC_H
#define VMDR_FUZZ_CODEC_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

/* Same value: equal types, integer/float subtypes, metatables (array_mt), contents. */
static int fuzz_same(lua_State *L, int a, int b, int depth)
{
    a = lua_absindex(L, a);
    b = lua_absindex(L, b);
    if (lua_type(L, a) != lua_type(L, b) || depth > 600)
        return 0;
    /* each level holds a key and two values while it recurses */
    luaL_checkstack(L, 8, "fuzz_same");
    switch (lua_type(L, a)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b))
            return 0;
        if (lua_isinteger(L, a))
            return lua_tointeger(L, a) == lua_tointeger(L, b);
        {
            double x = lua_tonumber(L, a), y = lua_tonumber(L, b);
            return x == y || (isnan(x) && isnan(y));
        }
    case LUA_TTABLE: {
        int ma = lua_getmetatable(L, a), mb = lua_getmetatable(L, b);
        int same_mt = ma == mb && (!ma || lua_rawequal(L, -1, -2));
        lua_pop(L, ma + mb);
        if (!same_mt)
            return 0;
        size_t na = 0, nb = 0;
        lua_pushnil(L);
        while (lua_next(L, a) != 0) {
            na++;
            lua_pushvalue(L, -2);
            lua_rawget(L, b); /* stack: k va vb */
            int ok = !lua_isnil(L, -1) && fuzz_same(L, -2, -1, depth + 1);
            lua_pop(L, 2);
            if (!ok) {
                lua_pop(L, 1);
                return 0;
            }
        }
        lua_pushnil(L);
        while (lua_next(L, b) != 0) {
            nb++;
            lua_pop(L, 1);
        }
        return na == nb;
    }
    default:
        return lua_rawequal(L, a, b);
    }
}

static void fuzz_fail(lua_State *L, const char *what)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    abort();
}

/* Calls mod.fn(arg at idx) and leaves its first result and error (2 values). */
static void fuzz_call(lua_State *L, int mod, const char *fn, int idx)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, mod, fn);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK)
        fuzz_fail(L, "a codec function raised");
}

static int fuzz_roundtrip(const uint8_t *data, size_t size, lua_CFunction open)
{
    lua_State *L = luaL_newstate();
    luaL_requiref(L, "codec", open, 0); /* stack: mod */
    int mod = lua_gettop(L);
    lua_pushlstring(L, (const char *)data, size);
    fuzz_call(L, mod, "decode", -1); /* stack: mod in v1 err */
    if (lua_isnil(L, -1)) {          /* decoded: no error */
        int v1 = lua_gettop(L) - 1;
        fuzz_call(L, mod, "encode", v1); /* stack: ... s1 err */
        if (!lua_isstring(L, -2)) {
            lua_getfield(L, -1, "message");
            fuzz_fail(L, "a decoded value did not encode");
        }
        int s1 = lua_gettop(L) - 1;
        fuzz_call(L, mod, "decode", s1); /* stack: ... v2 err */
        if (!lua_isnil(L, -1)) {
            lua_getfield(L, -1, "message");
            fuzz_fail(L, "an encoding did not decode");
        }
        int v2 = lua_gettop(L) - 1;
        if (!fuzz_same(L, v1, v2, 0)) {
            lua_pushvalue(L, s1);
            fuzz_fail(L, "decode(encode(v)) differs from v; encoding");
        }
        fuzz_call(L, mod, "encode", v2);
        if (!lua_isstring(L, -2) || !lua_rawequal(L, -2, s1)) {
            lua_pushvalue(L, s1);
            fuzz_fail(L, "encode is not a fixed point; first encoding");
        }
    }
    lua_close(L);
    return 0;
}

#endif
