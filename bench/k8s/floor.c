/* bench/k8s/floor.c: how much of decoding a list is Lua building its tables and strings.
 *
 * A C module for vmdr-run (it links against the executable's Lua, so the state is the
 * host's, with its pool allocator). floor.tape(value) walks a decoded value once and
 * records it flat: every container with its exact size, every string's bytes (copied
 * out of Lua), every number. floor.build(tape) then makes the same tables again with the
 * calls the JSON decoder makes (lua_createtable at the final size, lua_pushlstring,
 * lua_rawset / lua_rawseti, the arrays' metatable), without parsing anything: what is
 * left of a decode when the parse is free. bench/k8s/floor runs it.
 *
 *   cc -O2 -shared -fPIC $(pkg-config --cflags lua5.4) floor.c -o floor.so */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { T_OBJ, T_ARR, T_STR, T_INT, T_NUM, T_TRUE, T_FALSE, T_NULL };

typedef struct {
    uint8_t type;
    uint32_t n;      /* members, elements, or string length */
    union {
        size_t off;  /* string: offset in the arena */
        lua_Integer i;
        lua_Number d;
    } v;
} ent;

typedef struct {
    ent *e;
    size_t ne, cap;
    char *arena;
    size_t alen, acap;
    int mt_ref; /* the arrays' metatable, as the decoder set it */
} tape;

static void *grow(void *p, size_t *cap, size_t need, size_t unit)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * unit);
    if (!q)
        abort();
    *cap = c;
    return q;
}

static size_t put(tape *t, uint8_t type, uint32_t n)
{
    t->e = grow(t->e, &t->cap, t->ne + 1, sizeof *t->e);
    t->e[t->ne].type = type;
    t->e[t->ne].n = n;
    return t->ne++;
}

static void put_str(tape *t, const char *s, size_t n)
{
    size_t k = put(t, T_STR, (uint32_t)n);
    t->arena = grow(t->arena, &t->acap, t->alen + n, 1);
    memcpy(t->arena + t->alen, s, n);
    t->e[k].v.off = t->alen;
    t->alen += n;
}

static void walk(lua_State *L, tape *t, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TTABLE: {
        luaL_checkstack(L, 4, "floor.tape"); /* recursion: a few slots per level */
        int is_arr = 0;
        if (lua_getmetatable(L, idx)) {
            is_arr = 1;
            if (t->mt_ref == LUA_NOREF)
                t->mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            else
                lua_pop(L, 1);
        }
        if (is_arr) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
            put(t, T_ARR, (uint32_t)n);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                walk(L, t, -1);
                lua_pop(L, 1);
            }
        } else {
            uint32_t n = 0;
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                n++;
                lua_pop(L, 1);
            }
            put(t, T_OBJ, n);
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                size_t kl;
                const char *k = lua_tolstring(L, -2, &kl); /* keys are strings */
                put_str(t, k, kl);
                walk(L, t, -1);
                lua_pop(L, 1);
            }
        }
        break;
    }
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put_str(t, s, n);
        break;
    }
    case LUA_TNUMBER: {
        /* put() may move t->e: take the slot's index first */
        size_t k = put(t, lua_isinteger(L, idx) ? T_INT : T_NUM, 0);
        if (t->e[k].type == T_INT)
            t->e[k].v.i = lua_tointeger(L, idx);
        else
            t->e[k].v.d = lua_tonumber(L, idx);
        break;
    }
    case LUA_TBOOLEAN:
        put(t, lua_toboolean(L, idx) ? T_TRUE : T_FALSE, 0);
        break;
    default: /* null is a light userdata */
        put(t, T_NULL, 0);
    }
}

static int tape_gc(lua_State *L)
{
    tape *t = luaL_checkudata(L, 1, "vmdr.bench.tape");
    free(t->e);
    free(t->arena);
    t->e = NULL;
    t->arena = NULL;
    return 0;
}

static int l_tape(lua_State *L)
{
    luaL_checkany(L, 1);
    tape *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->mt_ref = LUA_NOREF;
    luaL_setmetatable(L, "vmdr.bench.tape");
    walk(L, t, 1);
    lua_pushinteger(L, (lua_Integer)t->ne);
    lua_pushinteger(L, (lua_Integer)t->alen);
    return 3;
}

static size_t build(lua_State *L, const tape *t, size_t pos)
{
    const ent *e = &t->e[pos++];
    switch (e->type) {
    case T_OBJ:
        /* recursion: a table, a key and a value per level (containers only: the decoder
         * checks its stack per container too) */
        luaL_checkstack(L, 4, "floor.build");
        lua_createtable(L, 0, (int)e->n);
        for (uint32_t i = 0; i < e->n; i++) {
            const ent *k = &t->e[pos++];
            lua_pushlstring(L, t->arena + k->v.off, k->n);
            pos = build(L, t, pos);
            lua_rawset(L, -3);
        }
        break;
    case T_ARR:
        luaL_checkstack(L, 4, "floor.build");
        lua_createtable(L, (int)e->n, 0);
        for (uint32_t i = 0; i < e->n; i++) {
            pos = build(L, t, pos);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->mt_ref);
        lua_setmetatable(L, -2);
        break;
    case T_STR:
        lua_pushlstring(L, t->arena + e->v.off, e->n);
        break;
    case T_INT:
        lua_pushinteger(L, e->v.i);
        break;
    case T_NUM:
        lua_pushnumber(L, e->v.d);
        break;
    case T_TRUE:
    case T_FALSE:
        lua_pushboolean(L, e->type == T_TRUE);
        break;
    default:
        lua_pushlightuserdata(L, NULL);
    }
    return pos;
}

static int l_build(lua_State *L)
{
    tape *t = luaL_checkudata(L, 1, "vmdr.bench.tape");
    build(L, t, 0);
    return 1;
}

int luaopen_floor(lua_State *L)
{
    luaL_newmetatable(L, "vmdr.bench.tape");
    lua_pushcfunction(L, tape_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    static const luaL_Reg f[] = {{"tape", l_tape}, {"build", l_build}, {NULL, NULL}};
    luaL_newlib(L, f);
    return 1;
}
