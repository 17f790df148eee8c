/* The json.h entry points as another binding (vmdr.k8s) uses them: a bare lua_State,
 * no vmdr.json module loaded. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "json.h"

int main(void)
{
    lua_State *L = luaL_newstate();
    vmdr_err err;
    const char *doc = "{\"kind\":\"List\",\"items\":[{\"n\":1},{\"n\":2.5}],\"e\":[],\"m\":{},"
                      "\"z\":null,\"big\":9223372036854775807}";

    /* success pushes exactly one value */
    vmdr_err_clear(&err);
    int top = lua_gettop(L);
    CHECK(vmdr_json_decode_push(L, doc, strlen(doc), &err) == 0, "decode: %s", err.message);
    CHECK(lua_gettop(L) == top + 1, "stack grew by %d", lua_gettop(L) - top);
    CHECK(lua_istable(L, -1), "not a table");
    lua_getfield(L, -1, "items");
    CHECK(lua_rawlen(L, -1) == 2, "items has %d", (int)lua_rawlen(L, -1));
    vmdr_push_array_mt(L);
    CHECK(lua_getmetatable(L, -2) && lua_rawequal(L, -1, -2), "items lacks array_mt");
    lua_pop(L, 3);
    lua_getfield(L, -1, "m");
    CHECK(lua_getmetatable(L, -1) == 0, "{} has a metatable");
    lua_pop(L, 1);
    lua_getfield(L, -1, "z");
    CHECK(lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL, "null is not NULL");
    lua_pop(L, 1);
    lua_getfield(L, -1, "big");
    CHECK(lua_isinteger(L, -1) && lua_tointeger(L, -1) == LUA_MAXINTEGER, "int64 max lost");
    lua_pop(L, 1);

    /* and encodes back to the same text with keys sorted */
    CHECK(vmdr_json_encode_push(L, -1, &err) == 0, "encode: %s", err.message);
    const char *want = "{\"big\":9223372036854775807,\"e\":[],\"items\":[{\"n\":1},{\"n\":2.5}],"
                       "\"kind\":\"List\",\"m\":{},\"z\":null}";
    CHECK(strcmp(lua_tostring(L, -1), want) == 0, "encoded %s", lua_tostring(L, -1));
    lua_settop(L, top);

    /* failure pushes nothing and says where */
    const char *bad = "{\n  \"a\": [1,\n  2,,]\n}";
    vmdr_err_clear(&err);
    CHECK(vmdr_json_decode_push(L, bad, strlen(bad), &err) == -1, "accepted bad input");
    CHECK(lua_gettop(L) == top, "failure left %d values", lua_gettop(L) - top);
    CHECK(strcmp(err.code, "invalid") == 0, "code %s", err.code);
    CHECK(strstr(err.message, "line 3 column 5") != NULL, "message %s", err.message);

    /* a failed encode pushes nothing either */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "self");
    top = lua_gettop(L);
    CHECK(vmdr_json_encode_push(L, -1, &err) == -1, "encoded a cycle");
    CHECK(lua_gettop(L) == top, "failure left %d values", lua_gettop(L) - top);
    CHECK(strstr(err.message, "cycle") != NULL, "message %s", err.message);

    /* input need not be NUL-terminated: only n bytes are read */
    const char trunc[] = "[1,2]garbage";
    CHECK(vmdr_json_decode_push(L, trunc, 5, &err) == 0, "prefix: %s", err.message);
    lua_close(L);
    return check_result();
}
