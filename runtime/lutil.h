/* Shared binding helpers: error tables, option-table readers, secrets, interrupts.
 * Functions that may raise are named check_* / push_* or say so. */
#ifndef VMDR_LUTIL_H
#define VMDR_LUTIL_H

#include <lauxlib.h>
#include <lua.h>

#include "err.h"

#define VMDR_ERR_META "vmdr.err"

/* Registers a handle type: metatable `name` with the metamethods `meta` and an
 * __index table of `methods` (its __name is `name`, as argument errors show). */
void vmdr_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/* Pushes the DESIGN error table {code=, message=, status=} with its __tostring. */
void vmdr_push_errtable(lua_State *L, const char *code, const char *message, int status);
/* Pushes nil, err and returns 2: the "expected failure" return of every binding. */
int vmdr_push_err(lua_State *L, const vmdr_err *e);
int vmdr_push_fail(lua_State *L, const char *code, int status, const char *fmt, ...);
/* Raises the error table (used where nil would silently end a loop, e.g. watch). */
int vmdr_raise_err(lua_State *L, const vmdr_err *e);

/* Option-table readers: a missing or nil field gives the default, a wrong type raises. */
const char *vmdr_opt_string(lua_State *L, int tbl, const char *key, const char *def);
const char *vmdr_opt_lstring(lua_State *L, int tbl, const char *key, size_t *len);
lua_Integer vmdr_opt_integer(lua_State *L, int tbl, const char *key, lua_Integer def);
lua_Number vmdr_opt_number(lua_State *L, int tbl, const char *key, lua_Number def);
int vmdr_opt_boolean(lua_State *L, int tbl, const char *key, int def);

/* Secrets: values registered here are replaced by "***" wherever vmdr prints. */
void vmdr_secret_add(lua_State *L, const char *s, size_t len);
/* Pushes a copy of s with every registered secret replaced. */
void vmdr_push_redacted(lua_State *L, const char *s, size_t len);
/* 1 when s holds a registered secret (children do not inherit such variables). */
int vmdr_secret_in(lua_State *L, const char *s, size_t len);

/* The Lua state's pool allocator (alloc.h), or NULL when the state runs on another one
 * (VMDR_LUA_ALLOC=malloc, sanitizer builds). */
struct vmdr_pool *vmdr_lua_pool(lua_State *L);

/* The process-wide interrupt flag (SIGINT/SIGTERM), the only mutable global (host.c). */
int vmdr_interrupted(void);
int vmdr_interrupt_signal(void);
/* A signal arrived, held or not. */
int vmdr_interrupt_pending(void);
/* delta +1 holds, -1 releases (nested); returns the depth. While held, vmdr_interrupted()
 * is 0 and the count hook does not raise. */
int vmdr_interrupt_hold(int delta);

#endif
