/* vmdr.proc: run a program from an argv vector, never through a shell.
 *
 *   proc.run(argv [, opts]) -> {status=, signal=, stdout=, stderr=} | nil, err
 *
 *   argv      { "git", "-C", dir, "status" }: argv[1] is looked up in PATH (the
 *             child's PATH when opts.env sets one) unless it contains a '/'
 *   opts.stdin      bytes for the child's stdin (default: /dev/null)
 *   opts.env        { NAME = "value" | false }: added to or overriding our environment;
 *                   false removes NAME
 *   opts.env_clear  true: the child gets only opts.env
 *   opts.cwd        working directory of the child
 *   opts.timeout    seconds (default 300): then SIGTERM, SIGKILL after opts.grace
 *   opts.grace      seconds between SIGTERM and SIGKILL (default 2)
 *
 * A non-zero exit is a result, not an error: status is the exit status (128 + signal
 * when a signal ended it, as shells report it) and signal the signal number or 0.
 * err codes: not_found (program or cwd), permission, timeout, interrupted, invalid,
 * io; timeout and interrupted errors carry what was captured in err.stdout/err.stderr. */
#include <stdio.h>
#include <string.h>

#include "lutil.h"
#include "proc/proc.h"

#define RESULT_META "vmdr.proc.result" /* box: frees captured output after a raise */

extern char **environ;

static int result_gc(lua_State *L)
{
    vmdr_proc_result *r = luaL_checkudata(L, 1, RESULT_META);
    vmdr_proc_result_free(r);
    return 0;
}

/* A string without NUL bytes, from t[key] (for error messages: what). */
static const char *check_cstring(lua_State *L, int idx, const char *what)
{
    size_t n;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s must be a string, got %s", what, luaL_typename(L, idx));
    const char *s = lua_tolstring(L, idx, &n);
    if (strlen(s) != n)
        luaL_error(L, "%s contains a NUL byte", what);
    return s;
}

/* Builds a NULL-terminated char* array of argv (arg 1) in a userdata left on the stack. */
static const char **check_argv(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    luaL_argcheck(L, n > 0, 1, "argv must be a non-empty list");
    const char **v = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        char what[32];
        snprintf(what, sizeof what, "argv[%d]", (int)i);
        /* The string stays alive: argv (arg 1) holds it for the whole call. */
        v[i - 1] = check_cstring(L, -1, what);
        lua_pop(L, 1);
    }
    v[n] = NULL;
    luaL_argcheck(L, v[0][0] != '\0', 1, "argv[1] is empty");
    return v;
}

/* Builds the child's environment from opts (index o) in a table + array left on the
 * stack. Inherited variables whose value holds a registered secret (the Git token named
 * by git.token_env, say) are left out: a site's command has no use for them, and a
 * child's environment is readable in /proc by its user and lands in its core dumps.
 * opts.env can still pass one on purpose. */
static const char **check_env(lua_State *L, int o)
{
    int clear = vmdr_opt_boolean(L, o, "env_clear", 0);
    int t = lua_isnoneornil(L, o) ? LUA_TNIL : lua_getfield(L, o, "env");
    if (t != LUA_TNIL && t != LUA_TTABLE)
        luaL_error(L, "option 'env' must be a table, got %s", luaL_typename(L, -1));
    if (t == LUA_TNIL) {
        if (!lua_isnoneornil(L, o))
            lua_pop(L, 1);
        lua_newtable(L);
    }
    int env = lua_gettop(L);
    lua_newtable(L); /* stack: env merged, merged: NAME -> "NAME=value" */
    int merged = lua_gettop(L);
    if (!clear) {
        for (char **p = environ; *p; p++) {
            const char *eq = strchr(*p, '=');
            if (eq == NULL || vmdr_secret_in(L, eq + 1, strlen(eq + 1)))
                continue;
            lua_pushlstring(L, *p, (size_t)(eq - *p));
            lua_pushstring(L, *p);
            lua_rawset(L, merged);
        }
    }
    lua_pushnil(L);
    while (lua_next(L, env) != 0) { /* stack: ... key value */
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "env names must be strings");
        const char *k = check_cstring(L, -2, "an env name");
        luaL_argcheck(L, *k && strchr(k, '=') == NULL, 2,
                      "env names must not be empty or hold '='");
        lua_pushvalue(L, -2); /* stack: ... key value key */
        if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
            lua_pushnil(L);
        } else {
            char what[64];
            snprintf(what, sizeof what, "env value of %.40s", k);
            const char *v = check_cstring(L, -2, what);
            lua_pushfstring(L, "%s=%s", k, v);
        }
        lua_rawset(L, merged); /* stack: ... key value */
        lua_pop(L, 1);
    }
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, merged) != 0) {
        n++;
        lua_pop(L, 1);
    }
    const char **v = lua_newuserdatauv(L, sizeof(char *) * (n + 1), 0);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, merged) != 0) {
        v[i++] = lua_tostring(L, -1); /* held by `merged`, which stays on the stack */
        lua_pop(L, 1);
    }
    v[i] = NULL;
    return v;
}

static void push_output(lua_State *L, const vmdr_proc_result *r)
{
    lua_pushlstring(L, r->out, r->out_len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, r->err, r->err_len);
    lua_setfield(L, -2, "stderr");
}

/* proc.run(argv [, opts]) -> {status=, signal=, stdout=, stderr=} | nil, err */
static int proc_run(lua_State *L)
{
    vmdr_proc_opts o;
    memset(&o, 0, sizeof o);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    o.argv = check_argv(L);
    o.input = vmdr_opt_lstring(L, 2, "stdin", &o.input_len);
    o.cwd = vmdr_opt_string(L, 2, "cwd", NULL);
    o.timeout = vmdr_opt_number(L, 2, "timeout", 300);
    luaL_argcheck(L, o.timeout > 0 && o.timeout < 1e9, 2, "timeout must be > 0 seconds");
    o.grace = vmdr_opt_number(L, 2, "grace", 2);
    luaL_argcheck(L, o.grace >= 0 && o.grace < 1e6, 2, "grace must be >= 0 seconds");
    o.envp = check_env(L, 2);
    o.stop = vmdr_interrupted;

    vmdr_proc_result *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    if (luaL_newmetatable(L, RESULT_META)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2); /* stack: ... box */

    vmdr_err e;
    if (vmdr_proc_run(r, &o, &e) != 0) {
        vmdr_push_err(L, &e); /* stack: ... box nil err */
        if (r->out)
            push_output(L, r);
        vmdr_proc_result_free(r);
        return 2;
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, r->signal ? 128 + r->signal : r->status);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, r->signal);
    lua_setfield(L, -2, "signal");
    push_output(L, r);
    vmdr_proc_result_free(r);
    return 1;
}

static const luaL_Reg proc_funcs[] = {{"run", proc_run}, {NULL, NULL}};

int luaopen_vmdr_proc(lua_State *L)
{
    luaL_newlib(L, proc_funcs);
    return 1;
}
