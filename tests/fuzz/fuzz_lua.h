/* Shared body of the Lua-level fuzz targets: a state as vmdr-run's scripts see it
 * (vmdr_host_prepare: every native module, package.path at lua/lib), a driver
 * tests/fuzz/lua/<name>.lua that returns function(input, tmp), called under pcall with
 * each input. The driver calls the parser under test and checks its contract; any raised
 * error (a parser raising on bad input, or a broken invariant) aborts: a crash for
 * libFuzzer, with the message on stderr. tmp is a file path of this process (drivers
 * that need the input in a file write it there). */
#ifndef VMDR_FUZZ_LUA_H
#define VMDR_FUZZ_LUA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "host.h"

#ifndef VMDR_FUZZ_DIR
#error "VMDR_FUZZ_DIR (tests/fuzz) is set by CMake"
#endif

static char fuzz_tmp[256];

/* Lua-level coverage for libFuzzer. The interpreter (the system's liblua) is not
 * instrumented, so without this the fuzzer would see only the C modules and mutate the
 * Lua parsers blind. A line hook counts each (previous line, line) edge of the Lua code
 * into libFuzzer's extra counters; a source is hashed by its name (the state, so its
 * pointers, is new for every input). */
#define FUZZ_LUA_COUNTERS 65536
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t
    fuzz_lua_counters[FUZZ_LUA_COUNTERS];
static uint32_t fuzz_lua_prev;

static void fuzz_lua_hook(lua_State *L, lua_Debug *ar)
{
    if (!lua_getinfo(L, "S", ar) || ar->source == NULL)
        return;
    uint32_t h = 2166136261u;
    for (const char *p = ar->source; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    uint32_t cur = h ^ ((uint32_t)ar->currentline * 2654435761u);
    uint32_t edge = (cur ^ (fuzz_lua_prev >> 1)) % FUZZ_LUA_COUNTERS;
    if (fuzz_lua_counters[edge] < 255)
        fuzz_lua_counters[edge]++;
    fuzz_lua_prev = cur;
}

static void fuzz_lua_cleanup(void)
{
    if (fuzz_tmp[0])
        unlink(fuzz_tmp);
}

static int fuzz_lua_msgh(lua_State *L)
{
    luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
    return 1;
}

static int fuzz_lua_open(lua_State *L)
{
    const char *driver = lua_touserdata(L, 1);
    vmdr_host_prepare(L, VMDR_SOURCE_LUA_DIR, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/lua/%s.lua", VMDR_FUZZ_DIR, driver);
    if (luaL_loadfile(L, path) != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1); /* stack: fn */
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "%s does not return a function", path);
    lua_setfield(L, LUA_REGISTRYINDEX, "vmdr.fuzz.driver");
    return 0;
}

static void fuzz_lua_die(lua_State *L, const char *what)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

static int fuzz_lua_run(const char *driver, const uint8_t *data, size_t size)
{
    if (fuzz_tmp[0] == '\0') {
        const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_tmp, sizeof fuzz_tmp, "%s/vmdr-fuzz-%s-%ld", dir, driver, (long)getpid());
        atexit(fuzz_lua_cleanup);
    }
    /* A fresh state per input, closed after it: every allocation of a run is freed by
     * its end, so libFuzzer's leak check (run when mallocs and frees differ) stays
     * quiet unless C code really leaks, and no input sees another's caches or
     * log.secret registrations. A kept state costs a leak scan per input (measured:
     * ~6x slower). */
    lua_State *L = luaL_newstate();
    if (L == NULL)
        abort();
    lua_pushcfunction(L, fuzz_lua_msgh);
    lua_pushcfunction(L, fuzz_lua_open);
    lua_pushlightuserdata(L, (void *)driver);
    if (lua_pcall(L, 1, 0, 1) != LUA_OK)
        fuzz_lua_die(L, "the driver did not load");
    lua_settop(L, 0);
    fuzz_lua_prev = 0;
    lua_sethook(L, fuzz_lua_hook, LUA_MASKLINE, 0);
    lua_pushcfunction(L, fuzz_lua_msgh);
    lua_getfield(L, LUA_REGISTRYINDEX, "vmdr.fuzz.driver");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushstring(L, fuzz_tmp);
    if (lua_pcall(L, 2, 0, 1) != LUA_OK)
        fuzz_lua_die(L, driver);
    lua_close(L);
    return 0;
}

#endif
