/* vmdr_host: owns the lua_State, the script search path, the preload table,
 * the message handler, the -e variables and the interrupt flag. */
#ifndef VMDR_HOST_H
#define VMDR_HOST_H

#include <lauxlib.h>
#include <lua.h>

#define VMDR_EXIT_OK 0
#define VMDR_EXIT_FAILED 1
#define VMDR_EXIT_USAGE 2
#define VMDR_EXIT_LUA 3
#define VMDR_EXIT_INTERRUPTED 130

typedef struct vmdr_host_opts {
    const char *script;     /* path or workflow name */
    const char **vars;      /* "-e" values in order: "k=v" or "@file" */
    int nvars;
    const char *config;     /* -c */
    int dry_run;
    int verbosity;          /* 0 normal, >0 -v count, <0 -q */
    const char *log_format; /* "text" | "json" | NULL */
    const char **args;      /* after "--" */
    int nargs;
    int lua_env;            /* --lua-env: honour LUA_PATH/LUA_CPATH (test runner) */
} vmdr_host_opts;

/* Runs the whole program inside one protected call; returns the exit code. */
int vmdr_host_run(const vmdr_host_opts *opts, const char *argv0);

/* Makes L the state vmdr-run's scripts see: the standard libraries, every native module
 * in package.preload, package.path at lua_dir/lib (then extra_path, if not NULL), no
 * cpath. pmain uses it, and so do the fuzz harnesses (tests/fuzz/fuzz_lua.h). Raises only
 * on memory errors. */
void vmdr_host_prepare(lua_State *L, const char *lua_dir, const char *extra_path);

extern const luaL_Reg vmdr_preload[]; /* generated: preload.c */

#endif
