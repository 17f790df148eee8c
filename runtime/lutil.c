#include "lutil.h"

#include "alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char SECRETS_KEY = 's'; /* registry key: a sequence of secret strings */

/* err:__tostring() -> "code: message" (redacted) */
static int err_tostring(lua_State *L)
{
    luaL_Buffer b;
    /* absolute indices: luaL_buffinit may push a placeholder, shifting -1/-2 */
    lua_getfield(L, 1, "code");
    int code = lua_gettop(L);
    lua_getfield(L, 1, "message");
    int msg = lua_gettop(L);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, lua_isstring(L, code) ? lua_tostring(L, code) : "error");
    if (lua_isstring(L, msg)) {
        size_t n;
        const char *m = lua_tolstring(L, msg, &n);
        luaL_addstring(&b, ": ");
        luaL_addlstring(&b, m, n);
    }
    luaL_pushresult(&b);
    {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        vmdr_push_redacted(L, s, n);
    }
    return 1;
}

void vmdr_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name); /* stack: mt */
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L); /* stack: mt methods */
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

void vmdr_push_errtable(lua_State *L, const char *code, const char *message, int status)
{
    luaL_checkstack(L, 4, NULL);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message ? message : "");
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    if (luaL_newmetatable(L, VMDR_ERR_META)) {
        lua_pushcfunction(L, err_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
}

int vmdr_push_err(lua_State *L, const vmdr_err *e)
{
    lua_pushnil(L);
    vmdr_push_errtable(L, e->code[0] ? e->code : "error", e->message, e->status);
    return 2;
}

int vmdr_push_fail(lua_State *L, const char *code, int status, const char *fmt, ...)
{
    vmdr_err e;
    va_list ap;
    snprintf(e.code, sizeof e.code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    e.status = status;
    return vmdr_push_err(L, &e);
}

int vmdr_raise_err(lua_State *L, const vmdr_err *e)
{
    vmdr_push_errtable(L, e->code[0] ? e->code : "error", e->message, e->status);
    return lua_error(L);
}

static int opt_field(lua_State *L, int tbl, const char *key)
{
    if (lua_isnoneornil(L, tbl))
        return LUA_TNIL;
    luaL_checktype(L, tbl, LUA_TTABLE);
    return lua_getfield(L, tbl, key);
}

static void opt_type_error(lua_State *L, const char *key, const char *want)
{
    luaL_error(L, "option '%s' must be %s, got %s", key, want, luaL_typename(L, -1));
}

const char *vmdr_opt_lstring(lua_State *L, int tbl, const char *key, size_t *len)
{
    const char *s = NULL;
    tbl = lua_absindex(L, tbl);
    int t = opt_field(L, tbl, key);
    if (t == LUA_TSTRING) {
        s = lua_tolstring(L, -1, len);
    } else if (t != LUA_TNIL) {
        opt_type_error(L, key, "a string");
    }
    /* The string stays valid while the table holds it. */
    if (!lua_isnoneornil(L, tbl))
        lua_pop(L, 1);
    return s;
}

const char *vmdr_opt_string(lua_State *L, int tbl, const char *key, const char *def)
{
    const char *s = vmdr_opt_lstring(L, tbl, key, NULL);
    return s ? s : def;
}

lua_Integer vmdr_opt_integer(lua_State *L, int tbl, const char *key, lua_Integer def)
{
    lua_Integer v = def;
    tbl = lua_absindex(L, tbl);
    int t = opt_field(L, tbl, key);
    if (t == LUA_TNUMBER) {
        int ok;
        v = lua_tointegerx(L, -1, &ok);
        if (!ok)
            opt_type_error(L, key, "an integer");
    } else if (t != LUA_TNIL) {
        opt_type_error(L, key, "an integer");
    }
    if (!lua_isnoneornil(L, tbl))
        lua_pop(L, 1);
    return v;
}

lua_Number vmdr_opt_number(lua_State *L, int tbl, const char *key, lua_Number def)
{
    lua_Number v = def;
    tbl = lua_absindex(L, tbl);
    int t = opt_field(L, tbl, key);
    if (t == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (t != LUA_TNIL)
        opt_type_error(L, key, "a number");
    if (!lua_isnoneornil(L, tbl))
        lua_pop(L, 1);
    return v;
}

int vmdr_opt_boolean(lua_State *L, int tbl, const char *key, int def)
{
    int v = def;
    tbl = lua_absindex(L, tbl);
    int t = opt_field(L, tbl, key);
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        opt_type_error(L, key, "a boolean");
    if (!lua_isnoneornil(L, tbl))
        lua_pop(L, 1);
    return v;
}

static void push_secrets(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SECRETS_KEY) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &SECRETS_KEY);
    }
}

void vmdr_secret_add(lua_State *L, const char *s, size_t len)
{
    /* Very short values would redact ordinary words; real secrets are longer. */
    if (s == NULL || len < 4)
        return;
    push_secrets(L); /* stack: secrets */
    lua_pushlstring(L, s, len);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

int vmdr_secret_in(lua_State *L, const char *s, size_t len)
{
    int found = 0;
    push_secrets(L); /* stack: secrets */
    lua_pushnil(L);
    while (!found && lua_next(L, -2) != 0) { /* stack: secrets secret true */
        size_t sl;
        const char *sec = lua_tolstring(L, -2, &sl);
        found = sl > 0 && sl <= len && memmem(s, len, sec, sl) != NULL;
        lua_pop(L, 1);
    }
    lua_settop(L, lua_gettop(L) - (found ? 2 : 1)); /* a break leaves the key too */
    return found;
}

void vmdr_push_redacted(lua_State *L, const char *s, size_t len)
{
    push_secrets(L); /* stack: secrets */
    lua_pushlstring(L, s, len); /* stack: secrets cur */
    lua_pushnil(L);
    while (lua_next(L, -3) != 0) { /* stack: secrets cur secret true */
        size_t sl, cl;
        const char *sec = lua_tolstring(L, -2, &sl);
        const char *cur = lua_tolstring(L, -3, &cl);
        lua_pop(L, 1); /* stack: secrets cur secret */
        if (sl == 0 || sl > cl || memmem(cur, cl, sec, sl) == NULL)
            continue;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        const char *p = cur, *end = cur + cl, *hit;
        while ((hit = memmem(p, (size_t)(end - p), sec, sl)) != NULL) {
            luaL_addlstring(&b, p, (size_t)(hit - p));
            luaL_addstring(&b, "***");
            p = hit + sl;
        }
        luaL_addlstring(&b, p, (size_t)(end - p));
        luaL_pushresult(&b); /* stack: secrets cur secret new */
        lua_replace(L, -3);  /* stack: secrets new secret */
    }
    lua_remove(L, -2); /* stack: redacted */
}

struct vmdr_pool *vmdr_lua_pool(lua_State *L)
{
    void *ud;
    return lua_getallocf(L, &ud) == vmdr_pool_lalloc ? ud : NULL;
}
