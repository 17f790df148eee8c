/* vmdr.fs: files and directories for workflows (binding; the core is runtime/fs/).
 *
 *   fs.read(path)                      -> bytes | nil, err
 *   fs.write(path, bytes [, {mode=}])  -> true | nil, err   atomic replace
 *   fs.clear_tmp(path)                 -> n | nil, err   a killed write's temp files
 *   fs.list(dir)                       -> { name, ... } sorted | nil, err
 *   fs.walk(dir)                       -> { {path=, type=}, ... } sorted | nil, err
 *   fs.mkdir(path [, {mode=}])         -> true | nil, err   mkdir -p
 *   fs.remove(path [, {recursive=}])   -> true | nil, err
 *   fs.exists(path)                    -> boolean | nil, err
 *   fs.stat(path)                      -> {type=, size=, mode=, mtime=} | nil, err (lstat)
 *   fs.realpath(path)                  -> absolute path | nil, err
 *   fs.lock(path [, {timeout=}])       -> Lock | nil, err   (busy, timeout, interrupted)
 *
 * list() returns plain names (a string list is what callers sort, filter and join);
 * walk() returns entries because a recursive listing is useless without types.
 * Types are "file", "dir", "link", "other". err codes: see runtime/fs/fs.h. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "lutil.h"

#define LOCK_META "vmdr.fs.Lock"
#define ENTRIES_META "vmdr.fs.entries" /* box: frees a vmdr_fs_entries */
#define BYTES_META "vmdr.fs.bytes"     /* box: frees a read buffer */

/* A path argument: a string without NUL bytes (misuse raises). */
static const char *check_path(lua_State *L, int arg)
{
    size_t n;
    const char *p = luaL_checklstring(L, arg, &n);
    luaL_argcheck(L, n > 0, arg, "empty path");
    luaL_argcheck(L, strlen(p) == n, arg, "path contains a NUL byte");
    return p;
}

static void check_opts(lua_State *L, int arg)
{
    if (!lua_isnoneornil(L, arg))
        luaL_checktype(L, arg, LUA_TTABLE);
}

static int box_gc_entries(lua_State *L)
{
    vmdr_fs_entries *es = luaL_checkudata(L, 1, ENTRIES_META);
    vmdr_fs_entries_free(es);
    return 0;
}

static int box_gc_bytes(lua_State *L)
{
    char **p = luaL_checkudata(L, 1, BYTES_META);
    free(*p);
    *p = NULL;
    return 0;
}

/* Pushes a box that frees its contents when collected, even after a raise. */
static void *push_box(lua_State *L, size_t sz, const char *meta, lua_CFunction gc)
{
    void *p = lua_newuserdatauv(L, sz, 0);
    memset(p, 0, sz);
    if (luaL_newmetatable(L, meta)) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return p;
}

/* fs.read(path) -> bytes | nil, err */
static int fs_read(lua_State *L)
{
    const char *path = check_path(L, 1);
    vmdr_err e;
    size_t n;
    char **buf = push_box(L, sizeof(char *), BYTES_META, box_gc_bytes); /* stack: box */
    if (vmdr_fs_read(buf, &n, path, &e) != 0)
        return vmdr_push_err(L, &e);
    lua_pushlstring(L, *buf, n);
    free(*buf);
    *buf = NULL;
    return 1;
}

/* fs.write(path, bytes [, {mode=}]) -> true | nil, err */
static int fs_write(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t n;
    const char *bytes = luaL_checklstring(L, 2, &n);
    check_opts(L, 3);
    lua_Integer mode = vmdr_opt_integer(L, 3, "mode", -1);
    luaL_argcheck(L, mode >= -1 && mode <= 07777, 3, "mode must be 0 .. 0o7777");
    vmdr_err e;
    if (vmdr_fs_write(path, bytes, n, (int)mode, &e) != 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.clear_tmp(path) -> n removed | nil, err */
static int fs_clear_tmp(lua_State *L)
{
    const char *path = check_path(L, 1);
    int removed;
    vmdr_err e;
    if (vmdr_fs_clear_tmp(path, &removed, &e) != 0)
        return vmdr_push_err(L, &e);
    lua_pushinteger(L, removed);
    return 1;
}

static int push_entries(lua_State *L, int (*fn)(vmdr_fs_entries *, const char *, vmdr_err *),
                        int names_only)
{
    const char *dir = check_path(L, 1);
    vmdr_err e;
    vmdr_fs_entries *es = push_box(L, sizeof *es, ENTRIES_META, box_gc_entries);
    if (fn(es, dir, &e) != 0)
        return vmdr_push_err(L, &e);
    luaL_checkstack(L, 4, NULL);
    lua_createtable(L, (int)es->n, 0); /* stack: box list */
    for (size_t i = 0; i < es->n; i++) {
        if (names_only) {
            lua_pushstring(L, es->v[i].path);
        } else {
            lua_createtable(L, 0, 2);
            lua_pushstring(L, es->v[i].path);
            lua_setfield(L, -2, "path");
            lua_pushstring(L, vmdr_fs_type_name(es->v[i].type));
            lua_setfield(L, -2, "type");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    vmdr_fs_entries_free(es);
    return 1;
}

/* fs.list(dir) -> { name, ... } (sorted, no "." or "..") | nil, err */
static int fs_list(lua_State *L)
{
    return push_entries(L, vmdr_fs_list, 1);
}

/* fs.walk(dir) -> { {path="a/b.yaml", type="file"}, ... } sorted by path | nil, err */
static int fs_walk(lua_State *L)
{
    return push_entries(L, vmdr_fs_walk, 0);
}

/* fs.mkdir(path [, {mode=}]) -> true | nil, err  (parents too; existing dir is fine) */
static int fs_mkdir(lua_State *L)
{
    const char *path = check_path(L, 1);
    check_opts(L, 2);
    lua_Integer mode = vmdr_opt_integer(L, 2, "mode", 0755);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode must be 0 .. 0o7777");
    vmdr_err e;
    if (vmdr_fs_mkdir_p(path, (int)mode, &e) != 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.remove(path [, {recursive=}]) -> true | nil, err */
static int fs_remove(lua_State *L)
{
    const char *path = check_path(L, 1);
    check_opts(L, 2);
    int recursive = vmdr_opt_boolean(L, 2, "recursive", 0);
    vmdr_err e;
    if (vmdr_fs_remove(path, recursive, &e) != 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* fs.exists(path) -> boolean | nil, err  (lstat: a dangling symlink exists) */
static int fs_exists(lua_State *L)
{
    const char *path = check_path(L, 1);
    struct stat st;
    if (lstat(path, &st) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (errno == ENOENT || errno == ENOTDIR) {
        lua_pushboolean(L, 0);
        return 1;
    }
    vmdr_err e;
    vmdr_fs_errno(&e, errno, "exists", path);
    return vmdr_push_err(L, &e);
}

/* fs.stat(path) -> {type=, size=, mode=, mtime=} | nil, err  (a symlink is a "link") */
static int fs_stat(lua_State *L)
{
    const char *path = check_path(L, 1);
    struct stat st;
    if (lstat(path, &st) != 0) {
        vmdr_err e;
        vmdr_fs_errno(&e, errno, "stat", path);
        return vmdr_push_err(L, &e);
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, vmdr_fs_type_name(vmdr_fs_type_of(st.st_mode)));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* fs.realpath(path) -> absolute path without symlinks, "." or ".." | nil, err */
static int fs_realpath(lua_State *L)
{
    const char *path = check_path(L, 1);
    char *r = realpath(path, NULL);
    if (r == NULL) {
        vmdr_err e;
        vmdr_fs_errno(&e, errno, "realpath", path);
        return vmdr_push_err(L, &e);
    }
    lua_pushstring(L, r);
    free(r);
    return 1;
}

/* ---- Lock ------------------------------------------------------------------------ */

typedef struct lock_ud {
    int fd; /* -1 when closed */
} lock_ud;

static lock_ud *check_lock(lua_State *L)
{
    lock_ud *u = luaL_checkudata(L, 1, LOCK_META);
    if (u->fd < 0)
        luaL_error(L, "attempt to use a closed " LOCK_META);
    return u;
}

/* lock:close() -> true; also __gc and __close (idempotent) */
static int lock_close(lua_State *L)
{
    lock_ud *u = luaL_checkudata(L, 1, LOCK_META);
    if (u->fd >= 0) {
        /* Closing the last descriptor releases the flock; the file stays, because
         * unlinking a lock file races with a waiter that already opened it. */
        close(u->fd);
        u->fd = -1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* lock:path() -> the lock file's path */
static int lock_path(lua_State *L)
{
    check_lock(L);
    lua_getiuservalue(L, 1, 1);
    return 1;
}

static int lock_tostring(lua_State *L)
{
    lock_ud *u = luaL_checkudata(L, 1, LOCK_META);
    if (u->fd < 0) {
        lua_pushliteral(L, LOCK_META " (closed)");
    } else {
        lua_getiuservalue(L, 1, 1);
        lua_pushfstring(L, LOCK_META " (%s)", lua_tostring(L, -1));
    }
    return 1;
}

static const luaL_Reg lock_methods[] = {{"close", lock_close}, {"path", lock_path}, {NULL, NULL}};
static const luaL_Reg lock_meta[] = {{"__gc", lock_close}, {"__close", lock_close},
                                     {"__tostring", lock_tostring}, {NULL, NULL}};

/* fs.lock(path [, {timeout=seconds}]) -> Lock | nil, err
 * timeout 0 (the default) tries once: "busy"; otherwise waits up to timeout: "timeout".
 * A signal ends the wait with "interrupted". */
static int fs_lock(lua_State *L)
{
    const char *path = check_path(L, 1);
    check_opts(L, 2);
    lua_Number timeout = vmdr_opt_number(L, 2, "timeout", 0);
    luaL_argcheck(L, timeout >= 0 && timeout < 1e9, 2, "timeout must be >= 0 seconds");
    /* The handle exists (closed) before the resource, so a raise cannot leak it. */
    lock_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->fd = -1;
    luaL_setmetatable(L, LOCK_META);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    vmdr_err e;
    int fd;
    if (vmdr_fs_lock(&fd, path, (double)timeout, vmdr_interrupted, &e) != 0)
        return vmdr_push_err(L, &e);
    u->fd = fd;
    return 1;
}

static const luaL_Reg fs_funcs[] = {
    {"read", fs_read},     {"write", fs_write},   {"list", fs_list},
    {"walk", fs_walk},     {"mkdir", fs_mkdir},   {"remove", fs_remove},
    {"exists", fs_exists}, {"stat", fs_stat},     {"realpath", fs_realpath},
    {"lock", fs_lock},     {"clear_tmp", fs_clear_tmp}, {NULL, NULL}};

int luaopen_vmdr_fs(lua_State *L)
{
    if (luaL_newmetatable(L, LOCK_META)) {
        luaL_setfuncs(L, lock_meta, 0);
        luaL_newlib(L, lock_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fs_funcs);
    return 1;
}
