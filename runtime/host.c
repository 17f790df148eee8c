#include "host.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lualib.h>

#include "alloc.h"
#include "lutil.h"

#ifndef VMDR_SOURCE_LUA_DIR
#define VMDR_SOURCE_LUA_DIR ""
#endif
#ifndef VMDR_VERSION
#define VMDR_VERSION "0.0.0"
#endif
#ifndef VMDR_NATIVE_RELDIR
#define VMDR_NATIVE_RELDIR "../lib/vmdr"
#endif

/* The single allowed mutable global: which signal asked us to stop (0: none). */
static volatile sig_atomic_t interrupt_sig = 0;

/* Not a second flag but a mask over it, changed only from the Lua thread (never from a
 * handler): while held, a signal is recorded but not reported, so a critical section
 * (the monitor's batch in flight, its Lease hand-over) can finish its API calls. */
static int interrupt_holds = 0;

int vmdr_interrupted(void)
{
    return interrupt_sig != 0 && interrupt_holds == 0;
}

int vmdr_interrupt_pending(void)
{
    return interrupt_sig != 0;
}

int vmdr_interrupt_hold(int delta)
{
    interrupt_holds += delta;
    if (interrupt_holds < 0)
        interrupt_holds = 0;
    return interrupt_holds;
}

int vmdr_interrupt_signal(void)
{
    return (int)interrupt_sig;
}

/* When the first signal came: CLOCK_MONOTONIC in ms, modulo 2^30 (a sig_atomic_t is an
 * int), written by the handler only. */
#define MS_MASK 0x3fffffffL
static volatile sig_atomic_t interrupt_at_ms = 0;

/* A repeat of the same signal within this window is the same request delivered twice,
 * not an operator insisting: timeout(1) signals its child and then the child's process
 * group, and a terminal's Ctrl-C reaches every process of the foreground group. */
#define REPEAT_WINDOW_MS 300

static long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe (POSIX.1-2008) */
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    int saved = errno;
    long now = monotonic_ms();
    if (interrupt_sig) {
        if (sig == interrupt_sig && ((now - (long)interrupt_at_ms) & MS_MASK) < REPEAT_WINDOW_MS) {
            errno = saved;
            return;
        }
        /* Second signal: the operator insists; die the default way. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    interrupt_at_ms = (sig_atomic_t)(now & MS_MASK);
    interrupt_sig = sig;
    errno = saved;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR and see the flag */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Count hook: pure-Lua loops notice the interrupt flag (lua.c laction/lstop).
 * It removes itself once it has raised, so to-be-closed handlers run in peace;
 * native calls keep returning code="interrupted" from then on. */
static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (!interrupt_sig || interrupt_holds > 0)
        return;
    lua_sethook(L, NULL, 0, 0);
    vmdr_push_errtable(L, "interrupted", "interrupted by signal", interrupt_sig);
    lua_error(L);
}

/* The message handler: keeps error tables (adding .traceback), tracebacks strings. */
static int msghandler(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE) {
        luaL_traceback(L, L, NULL, 1);
        lua_setfield(L, 1, "traceback");
        lua_settop(L, 1);
        return 1;
    }
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* The directory of the running executable (no trailing slash); 0 on success. */
static int exe_dir(char *out, size_t outsz)
{
    ssize_t n = readlink("/proc/self/exe", out, outsz - 1);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL)
        return -1;
    *slash = '\0';
    return 0;
}

/* The preload stub of a lazy module (generated preload_run.c): loads
 * <exe dir>/VMDR_NATIVE_RELDIR/<mod>.so and runs its luaopen_vmdr_<mod>. The library
 * stays loaded for the life of the process: its functions may be anywhere in Lua. */
int vmdr_host_load_native(lua_State *L, const char *mod)
{
    char dir[PATH_MAX], path[PATH_MAX + 128], sym[128];
    if (exe_dir(dir, sizeof dir) != 0)
        return luaL_error(L, "cannot load vmdr.%s: cannot find the vmdr-run executable", mod);
    snprintf(path, sizeof path, "%s/" VMDR_NATIVE_RELDIR "/%s.so", dir, mod);
    snprintf(sym, sizeof sym, "luaopen_vmdr_%s", mod);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL)
        return luaL_error(L, "cannot load vmdr.%s: %s", mod, dlerror());
    lua_CFunction open = (lua_CFunction)(uintptr_t)dlsym(h, sym);
    if (open == NULL)
        return luaL_error(L, "cannot load vmdr.%s: %s has no %s", mod, path, sym);
    return open(L);
}

/* Resolves the Lua tree: <exe dir>/../share/vmdr/lua when installed, else the source tree. */
static void find_lua_dir(char *out, size_t outsz)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char probe[PATH_MAX + 64];
            snprintf(probe, sizeof probe, "%s/../share/vmdr/lua/lib/vmdr/boot.lua", exe);
            if (access(probe, R_OK) == 0) {
                char *real = realpath(probe, NULL);
                if (real) {
                    /* strip "/lib/vmdr/boot.lua" */
                    char *cut = strstr(real, "/lib/vmdr/boot.lua");
                    if (cut)
                        *cut = '\0';
                    snprintf(out, outsz, "%s", real);
                    free(real);
                    return;
                }
            }
        }
    }
    snprintf(out, outsz, "%s", VMDR_SOURCE_LUA_DIR);
}

void vmdr_host_prepare(lua_State *L, const char *lua_dir, const char *extra_path)
{
    luaL_openlibs(L);

    /* package.preload: every native module, by the name `require` uses */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    luaL_setfuncs(L, vmdr_preload, 0);
    lua_pop(L, 1);

    /* package.path: the install tree only (boot prepends a site lib/); no cpath */
    lua_getglobal(L, "package"); /* stack: package */
    if (extra_path)
        lua_pushfstring(L, "%s/lib/?.lua;%s/lib/?/init.lua;%s", lua_dir, lua_dir, extra_path);
    else
        lua_pushfstring(L, "%s/lib/?.lua;%s/lib/?/init.lua", lua_dir, lua_dir);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

struct pmain_args {
    const vmdr_host_opts *opts;
    const char *argv0;
    char lua_dir[PATH_MAX];
};

static void push_strings(lua_State *L, const char **v, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* pmain(args) -> exit code: everything runs in here, protected. */
static int pmain(lua_State *L)
{
    struct pmain_args *a = lua_touserdata(L, 1);
    const vmdr_host_opts *o = a->opts;

    lua_sethook(L, interrupt_hook, LUA_MASKCOUNT, 1000);
    if (o->lua_env) {
        const char *p = getenv("LUA_PATH_5_4") ? getenv("LUA_PATH_5_4") : getenv("LUA_PATH");
        const char *c = getenv("LUA_CPATH_5_4") ? getenv("LUA_CPATH_5_4") : getenv("LUA_CPATH");
        vmdr_host_prepare(L, a->lua_dir, p ? p : "");
        lua_getglobal(L, "package");
        lua_pushstring(L, c ? c : "");
        lua_setfield(L, -2, "cpath");
        lua_pop(L, 1);
    } else {
        vmdr_host_prepare(L, a->lua_dir, NULL);
    }

    lua_getglobal(L, "require");
    lua_pushliteral(L, "vmdr.boot");
    lua_call(L, 1, 1); /* stack: boot */
    lua_getfield(L, -1, "main");

    /* boot.main{...} */
    lua_createtable(L, 0, 12);
    lua_pushstring(L, o->script);
    lua_setfield(L, -2, "script");
    push_strings(L, o->vars, o->nvars);
    lua_setfield(L, -2, "vars");
    push_strings(L, o->args, o->nargs);
    lua_setfield(L, -2, "args");
    if (o->config) {
        lua_pushstring(L, o->config);
        lua_setfield(L, -2, "config");
    }
    lua_pushboolean(L, o->dry_run);
    lua_setfield(L, -2, "dry_run");
    lua_pushinteger(L, o->verbosity);
    lua_setfield(L, -2, "verbosity");
    if (o->log_format) {
        lua_pushstring(L, o->log_format);
        lua_setfield(L, -2, "log_format");
    }
    lua_pushstring(L, a->lua_dir);
    lua_setfield(L, -2, "lua_dir");
    lua_pushstring(L, VMDR_VERSION);
    lua_setfield(L, -2, "version");
    lua_call(L, 1, 1);
    return 1;
}

/* error_text(err [, with_traceback]) -> "vmdr-run: <message>[\n<traceback>]", redacted.
 * Runs protected: a __tostring that raises must not take the process down unreported. */
static int error_text(lua_State *L)
{
    int with_tb = lua_toboolean(L, 2);
    lua_settop(L, 1);
    int text_type = LUA_TNIL;
    if (lua_type(L, 1) == LUA_TTABLE && luaL_getmetafield(L, 1, "__tostring") == LUA_TNIL) {
        /* A plain {code=, message=} table raised by a script: print it as ours print. */
        text_type = lua_getfield(L, 1, "message"); /* stack: err message */
        if (text_type == LUA_TSTRING && lua_getfield(L, 1, "code") == LUA_TSTRING) {
            lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), lua_tostring(L, -2));
            lua_replace(L, 2);
        }
        lua_settop(L, text_type == LUA_TSTRING ? 2 : 1);
    } else {
        lua_settop(L, 1); /* drop the __tostring luaL_getmetafield may have pushed */
    }
    if (text_type != LUA_TSTRING)
        luaL_tolstring(L, 1, NULL); /* stack: err text */

    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "vmdr-run: ");
    lua_pushvalue(L, 2);
    luaL_addvalue(&b);
    if (with_tb && lua_type(L, 1) == LUA_TTABLE) {
        if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
            luaL_addstring(&b, "\n");
            luaL_addvalue(&b);
        } else {
            lua_pop(L, 1);
        }
    }
    luaL_pushresult(&b);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    vmdr_push_redacted(L, s, n);
    return 1;
}

/* Prints an uncaught error (redacted) and maps it to an exit code. */
static int report(lua_State *L)
{
    int code = VMDR_EXIT_LUA;
    int err = lua_absindex(L, -1);
    if (lua_type(L, err) == LUA_TTABLE) {
        /* rawget: unprotected here, so no metamethod may run */
        lua_pushliteral(L, "code");
        lua_rawget(L, err);
        const char *kind = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (kind && (strcmp(kind, "usage") == 0 || strcmp(kind, "config") == 0))
            code = VMDR_EXIT_USAGE;
        else if (kind && strcmp(kind, "interrupted") == 0)
            code = VMDR_EXIT_INTERRUPTED;
        lua_pop(L, 1);
    }
    if (code == VMDR_EXIT_LUA && interrupt_sig)
        code = VMDR_EXIT_INTERRUPTED;

    lua_pushcfunction(L, error_text);
    lua_pushvalue(L, err);
    lua_pushboolean(L, code == VMDR_EXIT_LUA);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK)
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
    else
        fprintf(stderr, "vmdr-run: (the error could not be printed: its __tostring failed)\n");
    fflush(stderr);
    lua_settop(L, err);
    return code;
}

/* What luaL_newstate installs, for a state made with our allocator: an error outside
 * any protected call is reported before Lua aborts, and warnings (an error in a __gc,
 * warn()) are off until "@on", as in lauxlib. */
static int host_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "vmdr-run: PANIC: unprotected error in call to Lua API (%s)\n",
            msg ? msg : "error object is not a string");
    fflush(stderr);
    return 0; /* Lua aborts */
}

/* lua_WarnFunction; ud points at the host's warning state: 0 off, 1 on, 2 continuing */
static void host_warn(void *ud, const char *msg, int tocont)
{
    int *state = ud;
    if (*state != 2 && !tocont && *msg == '@') { /* a control message */
        if (strcmp(msg, "@off") == 0)
            *state = 0;
        else if (strcmp(msg, "@on") == 0)
            *state = 1;
        return;
    }
    if (*state == 0)
        return;
    if (*state == 1)
        fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (tocont) {
        *state = 2;
    } else {
        fputs("\n", stderr);
        fflush(stderr);
        *state = 1;
    }
}

int vmdr_host_run(const vmdr_host_opts *opts, const char *argv0)
{
    struct pmain_args a;
    a.opts = opts;
    a.argv0 = argv0;
    find_lua_dir(a.lua_dir, sizeof a.lua_dir);

    /* The pool allocator (alloc.h): a large list decoded into tables costs a quarter
     * less CPU and a tenth less memory than with malloc per object. Not in sanitizer
     * builds, which must see every object as its own malloc block. */
    const char *which = getenv("VMDR_LUA_ALLOC"); /* "malloc": glibc per object, to compare */
    int use_pool = VMDR_POOL_FOR_LUA && !(which && strcmp(which, "malloc") == 0);
    vmdr_pool *pool = use_pool ? vmdr_pool_new() : NULL;
    int warn_state = 0;
    lua_State *L = pool ? lua_newstate(vmdr_pool_lalloc, pool) : luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "vmdr-run: cannot create Lua state: not enough memory\n");
        vmdr_pool_delete(pool);
        return VMDR_EXIT_LUA;
    }
    if (pool) {
        lua_atpanic(L, host_panic);
        lua_setwarnf(L, host_warn, &warn_state);
    }
    install_signals();

    int code;
    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &a);
    int status = lua_pcall(L, 1, 1, 1);
    if (status != LUA_OK) {
        code = report(L);
    } else if (lua_isinteger(L, -1)) {
        code = (int)lua_tointeger(L, -1);
        if (interrupt_sig && code != VMDR_EXIT_OK)
            code = VMDR_EXIT_INTERRUPTED;
    } else {
        code = VMDR_EXIT_OK;
    }
    /* Closing the state runs every __gc: handles release sockets, locks, temp files. */
    if (pool)
        vmdr_pool_closing(pool); /* every object is freed now: no chunk-by-chunk release */
    lua_close(L);
    vmdr_pool_delete(pool);
    return code;
}
