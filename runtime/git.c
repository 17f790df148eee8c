/* vmdr.git: the Lua binding of the git core (runtime/git/). Argument checks raise;
 * every expected failure is nil, err with the message redacted of secrets. */
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <git2.h>

#include "git/git.h"
#include "lutil.h"

#define REPO_META "vmdr.git.Repo"
#define LOCK_META "vmdr.git.Lock"

typedef struct repo_box {
    vmdr_git_repo *r;
} repo_box;

typedef struct lock_box {
    int fd;
} lock_box;

static int push_git_err(lua_State *L, const vmdr_err *e)
{
    lua_pushnil(L);
    vmdr_push_redacted(L, e->message, strlen(e->message)); /* stack: nil msg */
    vmdr_push_errtable(L, e->code[0] ? e->code : "error", lua_tostring(L, -1), e->status);
    lua_remove(L, -2);
    return 2;
}

/* Does s hold a registered secret? (a write or message carrying the token is refused) */
static int has_secret(lua_State *L, const char *s, size_t n)
{
    vmdr_push_redacted(L, s, n);
    size_t rn;
    const char *r = lua_tolstring(L, -1, &rn);
    int differs = rn != n || memcmp(r, s, n) != 0;
    lua_pop(L, 1);
    return differs;
}

static vmdr_git_repo *check_repo(lua_State *L)
{
    repo_box *b = luaL_checkudata(L, 1, REPO_META);
    if (!b->r)
        luaL_error(L, "attempt to use a closed " REPO_META);
    return b->r;
}

/* Reads the options table at idx; string pointers stay valid while it is on the stack. */
static void check_opts(lua_State *L, int idx, vmdr_git_opts *o)
{
    memset(o, 0, sizeof *o);
    if (!lua_isnoneornil(L, idx))
        luaL_checktype(L, idx, LUA_TTABLE);
    o->url = vmdr_opt_string(L, idx, "url", NULL);
    o->branch = vmdr_opt_string(L, idx, "branch", NULL);
    o->user = vmdr_opt_string(L, idx, "user", NULL);
    size_t tl = 0;
    o->token = vmdr_opt_lstring(L, idx, "token", &tl);
    if (o->token && tl == 0)
        o->token = NULL;
    if (o->token)
        vmdr_secret_add(L, o->token, tl);
    o->ssh_key = vmdr_opt_string(L, idx, "ssh_key", NULL);
    o->ssh_pubkey = vmdr_opt_string(L, idx, "ssh_pubkey", NULL);
    o->ssh_passphrase = vmdr_opt_string(L, idx, "ssh_passphrase", NULL);
    if (o->ssh_passphrase)
        vmdr_secret_add(L, o->ssh_passphrase, strlen(o->ssh_passphrase));
    o->known_hosts = vmdr_opt_string(L, idx, "known_hosts", NULL);
    o->accept_unknown_host = vmdr_opt_boolean(L, idx, "accept_unknown_host_key", 0);
    o->ca_file = vmdr_opt_string(L, idx, "ca_file", NULL);
    o->no_worktree = !vmdr_opt_boolean(L, idx, "worktree", 1);
    o->clear_locks = vmdr_opt_boolean(L, idx, "clear_locks", 0);
}

static repo_box *new_repo_box(lua_State *L)
{
    /* Created closed before the clone is opened, so a raise cannot leak it. */
    repo_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->r = NULL;
    luaL_setmetatable(L, REPO_META);
    return b;
}

/* git.open(path [, opts]) -> Repo | nil, err */
static int gitmod_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    vmdr_git_opts o;
    vmdr_err e;
    check_opts(L, 2, &o);
    repo_box *b = new_repo_box(L);
    vmdr_err_clear(&e);
    if (vmdr_git_open(&b->r, path, &o, &e) < 0)
        return push_git_err(L, &e);
    return 1;
}

/* git.clone(url, path [, opts]) -> Repo | nil, err */
static int gitmod_clone(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);
    vmdr_git_opts o;
    vmdr_err e;
    check_opts(L, 3, &o);
    o.url = url;
    repo_box *b = new_repo_box(L);
    vmdr_err_clear(&e);
    if (vmdr_git_clone(&b->r, path, &o, &e) < 0)
        return push_git_err(L, &e);
    return 1;
}

/* git.check_path(path) -> true | nil, err */
static int gitmod_check_path(lua_State *L)
{
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_check_path(luaL_checkstring(L, 1), &e) < 0)
        return push_git_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* git.features() -> {version=, https=, ssh=, threads=} */
static int gitmod_features(lua_State *L)
{
    int maj, min, rev;
    git_libgit2_version(&maj, &min, &rev);
    int f = git_libgit2_features();
    lua_createtable(L, 0, 4);
    lua_pushfstring(L, "%d.%d.%d", maj, min, rev);
    lua_setfield(L, -2, "version");
    lua_pushboolean(L, f & GIT_FEATURE_HTTPS);
    lua_setfield(L, -2, "https");
    lua_pushboolean(L, f & GIT_FEATURE_SSH);
    lua_setfield(L, -2, "ssh");
    lua_pushboolean(L, f & GIT_FEATURE_THREADS);
    lua_setfield(L, -2, "threads");
    return 1;
}

/* git.map_limits{ window = bytes, mapped = bytes } -> true
 * How libgit2 maps pack files, for the whole process: windows of `window` bytes, and at most
 * `mapped` bytes mapped at once (the least recently used idle windows are unmapped). The
 * defaults (1 GiB windows, 8 GiB) map a whole pack and keep it mapped: a long-running
 * process's RSS then follows the size of the packs it has read, not what it uses. Applies to
 * windows opened afterwards. */
static int gitmod_map_limits(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer window = vmdr_opt_integer(L, 1, "window", 0);
    lua_Integer mapped = vmdr_opt_integer(L, 1, "mapped", 0);
    long page = sysconf(_SC_PAGESIZE);
    luaL_argcheck(L, window >= 0 && mapped >= 0, 1, "sizes must not be negative");
    luaL_argcheck(L, window == 0 || window >= 16 * page, 1, "window: at least 16 pages");
    luaL_argcheck(L, mapped == 0 || mapped >= (window ? window : 16 * page), 1,
                  "mapped: at least one window");
    if ((window > 0 && git_libgit2_opts(GIT_OPT_SET_MWINDOW_SIZE, (size_t)window) < 0) ||
        (mapped > 0 && git_libgit2_opts(GIT_OPT_SET_MWINDOW_MAPPED_LIMIT, (size_t)mapped) < 0))
        return luaL_error(L, "git.map_limits: libgit2 refused the setting");
    lua_pushboolean(L, 1);
    return 1;
}

/* git.lock(path [, timeout=60]) -> Lock | nil, err   (flock: released on close or death) */
static int gitmod_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    double timeout = luaL_optnumber(L, 2, 60.0);
    vmdr_err e;
    lock_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->fd = -1;
    luaL_setmetatable(L, LOCK_META);
    vmdr_err_clear(&e);
    if (vmdr_git_lock(&b->fd, path, timeout, &e) < 0)
        return push_git_err(L, &e);
    return 1;
}

/* lock:close() -> true (idempotent; also __gc and __close) */
static int lock_close(lua_State *L)
{
    lock_box *b = luaL_checkudata(L, 1, LOCK_META);
    if (b->fd >= 0) {
        flock(b->fd, LOCK_UN);
        close(b->fd);
        b->fd = -1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int lock_tostring(lua_State *L)
{
    lock_box *b = luaL_checkudata(L, 1, LOCK_META);
    if (b->fd < 0)
        lua_pushstring(L, LOCK_META " (closed)");
    else
        lua_pushfstring(L, LOCK_META " (fd %d)", b->fd);
    return 1;
}

/* repo:close() -> true (idempotent; also __gc and __close) */
static int repo_close(lua_State *L)
{
    repo_box *b = luaL_checkudata(L, 1, REPO_META);
    vmdr_git_free(b->r);
    b->r = NULL;
    lua_pushboolean(L, 1);
    return 1;
}

static int repo_tostring(lua_State *L)
{
    repo_box *b = luaL_checkudata(L, 1, REPO_META);
    if (!b->r)
        lua_pushstring(L, REPO_META " (closed)");
    else
        lua_pushfstring(L, REPO_META " (%s)", vmdr_git_workdir(b->r));
    return 1;
}

static int ok_or_err(lua_State *L, int rc, const vmdr_err *e)
{
    if (rc < 0)
        return push_git_err(L, e);
    lua_pushboolean(L, 1);
    return 1;
}

/* repo:fetch() -> true | nil, err */
static int repo_fetch(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    vmdr_err e;
    vmdr_err_clear(&e);
    return ok_or_err(L, vmdr_git_fetch(r, &e), &e);
}

/* repo:reset_to_remote() -> true | nil, err   (hard: the clone is machine-owned) */
static int repo_reset_to_remote(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    vmdr_err e;
    vmdr_err_clear(&e);
    return ok_or_err(L, vmdr_git_reset_to_remote(r, &e), &e);
}

/* repo:clear_locks() -> true   (only while holding the clone's git.lock) */
static int repo_clear_locks(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    vmdr_err e;
    vmdr_err_clear(&e);
    return ok_or_err(L, vmdr_git_clear_locks(r, &e), &e);
}

/* repo:read(path [, {head=}]) -> bytes | nil, err ("not_found" when absent) */
static int repo_read(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    const char *path = luaL_checkstring(L, 2);
    /* {head = true}: the content HEAD has, ignoring what is pending */
    int head = vmdr_opt_boolean(L, 3, "head", 0);
    char *data;
    size_t len;
    vmdr_err e;
    vmdr_err_clear(&e);
    if ((head ? vmdr_git_read_head : vmdr_git_read)(r, path, &data, &len, &e) < 0)
        return push_git_err(L, &e);
    lua_pushlstring(L, data, len); /* may raise on memory: free after */
    free(data);
    return 1;
}

/* repo:blob_id(path) -> hex id | false (absent, or not a regular file) | nil, err
 * The id write compares with: a caller that knows the id its bytes would get can tell
 * the file is current without producing the bytes (reconcile's render cache). */
static int repo_blob_id(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    const char *path = luaL_checkstring(L, 2);
    char hex[41];
    int found;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_blob_id(r, path, hex, &found, &e) < 0)
        return push_git_err(L, &e);
    if (found)
        lua_pushstring(L, hex);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* repo:list([dir]) -> {names...} sorted, directories end in "/"; a missing dir is {} */
static int repo_list(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    const char *dir = luaL_optstring(L, 2, "");
    char **names;
    size_t n;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_list(r, dir, &names, &n, &e) < 0)
        return push_git_err(L, &e);
    /* Copy to Lua first, then free: a memory error while pushing must not leak. */
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        free(names[i]);
        names[i] = NULL;
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(names);
    return 1;
}

/* repo:write(path, bytes) -> true, created | false (the file already holds these bytes)
 *                             | nil, err    (created: the file did not exist before) */
static int repo_write(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    const char *path = luaL_checkstring(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    vmdr_err e;
    vmdr_err_clear(&e);
    if (has_secret(L, data, len))
        return vmdr_push_fail(L, "invalid", 0, "refusing to write a secret into '%s'", path);
    int changed;
    if (vmdr_git_write(r, path, data, len, &changed, &e) < 0)
        return push_git_err(L, &e);
    lua_pushboolean(L, changed != 0);
    if (!changed)
        return 1;
    lua_pushboolean(L, changed == 2);
    return 2;
}

/* repo:remove(path) -> true (removed) | false (was not there) | nil, err */
static int repo_remove(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    const char *path = luaL_checkstring(L, 2);
    int removed;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_remove(r, path, &removed, &e) < 0)
        return push_git_err(L, &e);
    lua_pushboolean(L, removed);
    return 1;
}

/* repo:commit(msg [, {author={name=, email=}}]) -> id | false (nothing changed) | nil, err */
static int repo_commit(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    size_t ml;
    const char *msg = luaL_checklstring(L, 2, &ml);
    const char *name = "vmdr", *email = "vmdr@localhost";
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        if (lua_getfield(L, 3, "author") != LUA_TNIL) { /* stack: repo msg opts author */
            luaL_argexpected(L, lua_istable(L, -1), 3, "author as {name=, email=}");
            name = vmdr_opt_string(L, -1, "name", name);
            email = vmdr_opt_string(L, -1, "email", email);
        }
    }
    if (has_secret(L, msg, ml))
        return vmdr_push_fail(L, "invalid", 0, "refusing to put a secret in a commit message");
    char hex[41];
    int changed;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_commit(r, msg, name, email, hex, &changed, &e) < 0)
        return push_git_err(L, &e);
    if (changed)
        lua_pushstring(L, hex);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* repo:push() -> true | nil, err ("rejected" with the server's reason) */
static int repo_push(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    vmdr_err e;
    vmdr_err_clear(&e);
    return ok_or_err(L, vmdr_git_push(r, &e), &e);
}

/* repo:head() -> id | false (empty branch) | nil, err */
static int repo_head(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    char hex[41];
    int born;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_head(r, hex, &born, &e) < 0)
        return push_git_err(L, &e);
    if (born)
        lua_pushstring(L, hex);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* repo:diff() -> unified diff of the pending changes ("" when none) | nil, err */
static int repo_diff(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    char *out;
    size_t len;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_diff(r, &out, &len, &e) < 0)
        return push_git_err(L, &e);
    lua_pushlstring(L, out, len);
    free(out);
    return 1;
}

/* repo:maintain([{max_packs = 10}]) -> {packs_before=, packs_after=, packs_merged=,
 * objects_merged=, seconds=} | nil, err   (see vmdr_git_maintain) */
static int repo_maintain(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    vmdr_git_maint_opts o = {0};
    vmdr_git_maint_stats st;
    vmdr_err e;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_Integer n = vmdr_opt_integer(L, 2, "max_packs", 10);
        luaL_argcheck(L, n >= 1, 2, "max_packs must be at least 1");
        o.max_packs = (size_t)n;
    }
    vmdr_err_clear(&e);
    if (vmdr_git_maintain(r, &o, &st, &e) < 0)
        return push_git_err(L, &e);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)st.packs_before);
    lua_setfield(L, -2, "packs_before");
    lua_pushinteger(L, (lua_Integer)st.packs_after);
    lua_setfield(L, -2, "packs_after");
    lua_pushinteger(L, (lua_Integer)st.packs_merged);
    lua_setfield(L, -2, "packs_merged");
    lua_pushinteger(L, (lua_Integer)st.objects_merged);
    lua_setfield(L, -2, "objects_merged");
    lua_pushnumber(L, st.seconds);
    lua_setfield(L, -2, "seconds");
    return 1;
}

/* repo:pack_count() -> number of packs in the clone | nil, err (one directory read) */
static int repo_pack_count(lua_State *L)
{
    vmdr_git_repo *r = check_repo(L);
    size_t n;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_git_pack_count(r, &n, &e) < 0)
        return push_git_err(L, &e);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* repo:workdir() -> path of the work tree, ending in "/" */
static int repo_workdir(lua_State *L)
{
    lua_pushstring(L, vmdr_git_workdir(check_repo(L)));
    return 1;
}

static const luaL_Reg repo_methods[] = {
    {"fetch", repo_fetch}, {"reset_to_remote", repo_reset_to_remote},
    {"clear_locks", repo_clear_locks}, {"read", repo_read}, {"blob_id", repo_blob_id},
    {"list", repo_list},
    {"write", repo_write}, {"remove", repo_remove}, {"commit", repo_commit},
    {"push", repo_push}, {"head", repo_head}, {"diff", repo_diff},
    {"maintain", repo_maintain}, {"pack_count", repo_pack_count},
    {"workdir", repo_workdir}, {"close", repo_close}, {NULL, NULL}};

static const luaL_Reg repo_meta[] = {
    {"__gc", repo_close}, {"__close", repo_close}, {"__tostring", repo_tostring},
    {"__index", NULL}, {NULL, NULL}};

static const luaL_Reg lock_methods[] = {{"close", lock_close}, {NULL, NULL}};

static const luaL_Reg lock_meta[] = {
    {"__gc", lock_close}, {"__close", lock_close}, {"__tostring", lock_tostring},
    {"__index", NULL}, {NULL, NULL}};

static const luaL_Reg gitmod_funcs[] = {
    {"open", gitmod_open}, {"clone", gitmod_clone}, {"lock", gitmod_lock},
    {"check_path", gitmod_check_path}, {"features", gitmod_features},
    {"map_limits", gitmod_map_limits}, {NULL, NULL}};

/* The module's own libgit2 reference, given back when the Lua state closes: libgit2
 * then frees the thread's state (its last error and message buffers), which would
 * otherwise outlive the process's last use of Git. */
static int gitmod_release(lua_State *L)
{
    (void)L;
    git_libgit2_shutdown();
    return 0;
}

int luaopen_vmdr_git(lua_State *L)
{
    git_libgit2_init(); /* the core's opens take their own references too */
    lua_newuserdatauv(L, 1, 0);
    lua_newtable(L);
    lua_pushcfunction(L, gitmod_release);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "vmdr.git.library");
    /* libgit2 caches no tree larger than 4 KiB by default: the tree listing the
     * namespaces of a large repository (500 entries, ~20 KiB) was read and inflated
     * again for every path looked up under it. */
    git_libgit2_opts(GIT_OPT_SET_CACHE_OBJECT_LIMIT, (int)GIT_OBJECT_TREE, (size_t)4 << 20);
    vmdr_new_class(L, REPO_META, repo_meta, repo_methods);
    vmdr_new_class(L, LOCK_META, lock_meta, lock_methods);
    luaL_newlib(L, gitmod_funcs);
    return 1;
}
