/* vmdr.signal: the interrupt flag seen from Lua, and critical sections.
 *
 *   signal.pending()          -> signal number | false   (SIGINT/SIGTERM received)
 *   signal.hold(fn, ...)      -> fn's results; fn runs with interrupts held: a signal
 *                                arriving meanwhile is recorded, not reported, so the
 *                                API calls and the push inside fn finish. An error in fn
 *                                is re-raised after the hold is released.
 *   signal.handled()          -> true: the caller has acted on the signal (finished its
 *                                work and cleaned up); for the rest of the run the
 *                                signal is no longer reported, so the shutdown path and
 *                                the host's epilogue finish and the exit code is the
 *                                workflow's own. A second signal still kills (host.c),
 *                                unless it repeats the first within 300 ms.
 *
 * A long-running loop (the monitor) uses this to finish the batch in flight and hand its
 * Lease over on SIGTERM instead of leaving both half done. Keep fn bounded: a second
 * signal still kills the process (host.c). */
#include <signal.h>

#include "lutil.h"

/* signal.pending() -> signal number | false */
static int signal_pending(lua_State *L)
{
    if (vmdr_interrupt_pending())
        lua_pushinteger(L, vmdr_interrupt_signal());
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* signal.hold(fn, ...) -> fn(...)'s results (errors re-raised after release) */
static int signal_hold(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    vmdr_interrupt_hold(1);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
    vmdr_interrupt_hold(-1);
    if (rc != LUA_OK)
        return lua_error(L); /* the error object is on top */
    return lua_gettop(L);
}

/* signal.handled() -> true. A hold that is never released: without it the count hook
 * raised "interrupted" at a random point of a clean shutdown (after the monitor had
 * released its Lease) and the exit code was 130 instead of 0. */
static const char HANDLED_KEY = 'h'; /* registry key: set once the hold is taken */

static int signal_handled(lua_State *L)
{
    int taken = lua_rawgetp(L, LUA_REGISTRYINDEX, &HANDLED_KEY) != LUA_TNIL;
    lua_pop(L, 1);
    if (!taken) {
        vmdr_interrupt_hold(1);
        lua_pushboolean(L, 1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &HANDLED_KEY);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg signal_funcs[] = {
    {"pending", signal_pending},
    {"hold", signal_hold},
    {"handled", signal_handled},
    {NULL, NULL},
};

int luaopen_vmdr_signal(lua_State *L)
{
    luaL_newlib(L, signal_funcs);
    return 1;
}
