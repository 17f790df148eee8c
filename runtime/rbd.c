/* vmdr.rbd: RBD mirroring primitives over librados + librbd (contract in DESIGN.md).
 *
 *   local rbd = require "vmdr.rbd"
 *   local c <close> = assert(rbd.connect{ conf=, keyring=, user=, cluster=, timeout= })
 *   local img <close> = assert(c:image("rbd", "vm-disk", { namespace = "ns1" }))
 *   img:mirror_enable("snapshot"); local id = img:mirror_snapshot()
 *   peer_img:wait_synced(id, 30)      -- called on the PEER site's handle of the image
 *   c:batch("promote", { "rbd/a", "rbd/ns1/b" }, { parallel = 16, force = true })
 *
 * The core (runtime/rbd/) never sees the Lua state; the batch runs in C threads and its
 * results are pushed after they are joined. Expected failures return nil, err with the
 * codes of vmdr_rbd_errcode (not_found, busy, invalid, permission, timeout, unreachable,
 * read_only, not_mirrored, auth, config, unavailable, interrupted). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lutil.h"
#include "rbd/rbd.h"

#define CLUSTER_META "vmdr.rbd.Cluster"
#define IMAGE_META "vmdr.rbd.Image"
#define BATCH_META "vmdr.rbd.Batch"

typedef struct lcluster {
    vmdr_rbd_cluster *c; /* NULL once closed */
    char desc[128];
} lcluster;

typedef struct limage {
    vmdr_rbd_image im;
    int open;
} limage;

/* ---- helpers ----------------------------------------------------------------------- */

static lcluster *check_cluster(lua_State *L, int idx)
{
    lcluster *lc = luaL_checkudata(L, idx, CLUSTER_META);
    if (!lc->c)
        luaL_error(L, "attempt to use a closed " CLUSTER_META);
    return lc;
}

static limage *check_image(lua_State *L, int idx)
{
    limage *li = luaL_checkudata(L, idx, IMAGE_META);
    if (!li->open)
        luaL_error(L, "attempt to use a closed " IMAGE_META);
    return li;
}

/* Builds a spec from (pool, name, opts.namespace); raises on misuse, returns -1 with e set
 * for values librbd could never accept. */
static int check_spec(lua_State *L, vmdr_rbd_spec *out, int pool_idx, int name_idx, int opts_idx,
                      vmdr_err *e)
{
    const char *pool = luaL_checkstring(L, pool_idx);
    const char *name = name_idx ? luaL_checkstring(L, name_idx) : NULL;
    const char *ns = vmdr_opt_string(L, opts_idx, "namespace", NULL);
    return vmdr_rbd_set_spec(out, pool, ns, name, e);
}

static void push_time(lua_State *L, time_t t)
{
    if (t > 0)
        lua_pushinteger(L, (lua_Integer)t);
    else
        lua_pushnil(L);
}

static void push_mirror_info(lua_State *L, const vmdr_rbd_mirror_info *mi)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, mi->state);
    lua_setfield(L, -2, "state");
    if (mi->mode[0]) {
        lua_pushstring(L, mi->mode);
        lua_setfield(L, -2, "mode");
    }
    lua_pushboolean(L, mi->primary);
    lua_setfield(L, -2, "primary");
    lua_pushstring(L, mi->global_id);
    lua_setfield(L, -2, "global_id");
}

static void push_site(lua_State *L, const vmdr_rbd_site_status *s)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, s->mirror_uuid);
    lua_setfield(L, -2, "mirror_uuid");
    lua_pushstring(L, s->state);
    lua_setfield(L, -2, "state");
    lua_pushfstring(L, "%s+%s", s->up ? "up" : "down", s->state);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, s->description);
    lua_setfield(L, -2, "description");
    lua_pushboolean(L, s->up);
    lua_setfield(L, -2, "up");
    push_time(L, s->last_update);
    lua_setfield(L, -2, "last_update");
}

/* { state=, mode=, primary=, global_id=, split_brain=, local={...}|nil, peers={...} } */
static void push_mirror_status(lua_State *L, const vmdr_rbd_mirror_status *st)
{
    luaL_checkstack(L, 6, NULL);
    push_mirror_info(L, &st->info); /* stack: t */
    lua_pushboolean(L, st->split_brain);
    lua_setfield(L, -2, "split_brain");
    lua_newtable(L); /* stack: t peers */
    int np = 0;
    for (int i = 0; i < st->nsites; i++) {
        push_site(L, &st->sites[i]);
        if (st->sites[i].mirror_uuid[0] == '\0') {
            lua_setfield(L, -3, "local");
        } else {
            lua_rawseti(L, -2, ++np);
        }
    }
    lua_setfield(L, -2, "peers");
}

static void push_snaps(lua_State *L, const vmdr_rbd_mirror_snap *s, int n)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 6);
        lua_pushinteger(L, (lua_Integer)s[i].id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, s[i].state);
        lua_setfield(L, -2, "state");
        lua_pushboolean(L, s[i].complete);
        lua_setfield(L, -2, "complete");
        lua_pushstring(L, s[i].primary_mirror_uuid);
        lua_setfield(L, -2, "primary_mirror_uuid");
        lua_pushinteger(L, (lua_Integer)s[i].primary_snap_id);
        lua_setfield(L, -2, "primary_snap_id");
        push_time(L, s[i].time);
        lua_setfield(L, -2, "time");
        lua_rawseti(L, -2, i + 1);
    }
}

static int push_outcome(lua_State *L, int already)
{
    lua_pushstring(L, already ? "already" : "ok");
    return 1;
}

/* ---- module functions ------------------------------------------------------------------ */

/* rbd.connect{ conf=, keyring=, user=, cluster=, timeout=30 } -> Cluster | nil, err */
static int rbd_connect(lua_State *L)
{
    vmdr_rbd_connect_opts o;
    vmdr_err e;
    luaL_checktype(L, 1, LUA_TTABLE);
    memset(&o, 0, sizeof o);
    o.conf = vmdr_opt_string(L, 1, "conf", NULL);
    o.keyring = vmdr_opt_string(L, 1, "keyring", NULL);
    o.user = vmdr_opt_string(L, 1, "user", NULL);
    o.cluster = vmdr_opt_string(L, 1, "cluster", NULL);
    o.timeout = vmdr_opt_number(L, 1, "timeout", 30);
    luaL_argcheck(L, o.timeout > 0, 1, "timeout must be positive");
    o.interrupted = vmdr_interrupted;
    vmdr_err_clear(&e);
    if (vmdr_interrupted())
        return vmdr_push_fail(L, "interrupted", EINTR, "interrupted before connecting");
    /* closed state first, then the resource (STYLE: newprefile) */
    lcluster *lc = lua_newuserdatauv(L, sizeof *lc, 0);
    memset(lc, 0, sizeof *lc);
    luaL_setmetatable(L, CLUSTER_META);
    snprintf(lc->desc, sizeof lc->desc, "%s as %s", o.conf ? o.conf : "(default conf)",
             o.user ? o.user : "admin");
    if (vmdr_rbd_connect(&lc->c, &o, &e) < 0)
        return vmdr_push_err(L, &e);
    return 1;
}

/* ---- Cluster ----------------------------------------------------------------------------- */

/* cluster:image(pool, name [, { namespace = }]) -> Image | nil, err */
static int cluster_image(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    vmdr_rbd_spec s;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (check_spec(L, &s, 2, 3, 4, &e) < 0)
        return vmdr_push_err(L, &e);
    limage *li = lua_newuserdatauv(L, sizeof *li, 1);
    memset(li, 0, sizeof *li);
    luaL_setmetatable(L, IMAGE_META);
    lua_pushvalue(L, 1); /* the image keeps its cluster's userdata alive */
    lua_setiuservalue(L, -2, 1);
    if (vmdr_rbd_image_open(&li->im, lc->c, &s, &e) < 0)
        return vmdr_push_err(L, &e);
    li->open = 1;
    lc->c->refs++;
    return 1;
}

/* cluster:mirror_mode(pool [, { namespace = }]) -> "disabled"|"image"|"pool" | nil, err */
static int cluster_mirror_mode(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    vmdr_rbd_spec s;
    vmdr_err e;
    char mode[16];
    vmdr_err_clear(&e);
    if (check_spec(L, &s, 2, 0, 3, &e) < 0 ||
        vmdr_rbd_pool_mirror_mode(mode, sizeof mode, lc->c, &s, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_pushstring(L, mode);
    return 1;
}

/* cluster:mirror_snapshot_schedule(pool, interval [, { namespace = }]) -> true | nil, err
 * interval like "1m", "1h", "1d" (ceph-mgr rbd_support); "unavailable" without a mgr. */
static int cluster_schedule(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    vmdr_rbd_spec s;
    vmdr_err e;
    vmdr_err_clear(&e);
    const char *interval = luaL_checkstring(L, 3);
    size_t n = strlen(interval);
    luaL_argcheck(L, n >= 2 && strchr("mhd", interval[n - 1]) && strspn(interval, "0123456789") ==
                  n - 1, 3, "interval must be like 5m, 1h or 1d");
    if (check_spec(L, &s, 2, 0, 4, &e) < 0 ||
        vmdr_rbd_schedule_add(lc->c, s.pool, s.ns, interval, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* cluster:create_image(pool, name, size [, { namespace=, features="layering,...", order= }])
 *   -> true | nil, err   (for tests and the demo) */
static int cluster_create_image(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    vmdr_rbd_spec s;
    vmdr_err e;
    vmdr_err_clear(&e);
    lua_Integer size = luaL_checkinteger(L, 4);
    luaL_argcheck(L, size >= 0, 4, "size must not be negative");
    const char *features = vmdr_opt_string(L, 5, "features", NULL);
    lua_Integer order = vmdr_opt_integer(L, 5, "order", 0);
    if (check_spec(L, &s, 2, 3, 5, &e) < 0 ||
        vmdr_rbd_create(lc->c, &s, (uint64_t)size, features, (int)order, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* cluster:remove_image(pool, name [, { namespace= }]) -> true | nil, err */
static int cluster_remove_image(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    vmdr_rbd_spec s;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (check_spec(L, &s, 2, 3, 4, &e) < 0 || vmdr_rbd_remove(lc->c, &s, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_pushboolean(L, 1);
    return 1;
}

static int batch_gc(lua_State *L)
{
    vmdr_rbd_batch *b = luaL_checkudata(L, 1, BATCH_META);
    vmdr_rbd_batch_free(b);
    return 0;
}

static const char *const batch_ops[] = {"promote", "demote",   "enable", "disable",
                                        "resync",  "status",   "snapshot", NULL};

/* Reads one entry of the images list: "pool/name", "pool/ns/name" or
 * { pool=, namespace=, name= }. Raises on misuse; bad names become item errors. */
static void check_item(lua_State *L, int idx, vmdr_rbd_item *it)
{
    vmdr_err e;
    vmdr_err_clear(&e);
    int t = lua_type(L, idx);
    int rc;
    if (t == LUA_TSTRING) {
        rc = vmdr_rbd_parse_spec(&it->spec, lua_tostring(L, idx), &e);
    } else if (t == LUA_TTABLE) {
        const char *pool = vmdr_opt_string(L, idx, "pool", NULL);
        const char *name = vmdr_opt_string(L, idx, "name", NULL);
        const char *ns = vmdr_opt_string(L, idx, "namespace", NULL);
        if (!pool || !name)
            luaL_error(L, "batch image entries need pool and name");
        rc = vmdr_rbd_set_spec(&it->spec, pool, ns, name, &e);
    } else {
        luaL_error(L, "batch image entries are 'pool/name' strings or {pool=, name=} tables, "
                      "got %s", luaL_typename(L, idx));
        return;
    }
    if (rc < 0) {
        it->outcome = VMDR_RBD_DONE_FAILED;
        it->err = e;
        it->spec.name[0] = '\0'; /* marks "do not run" */
    }
}

/* cluster:batch(op, images [, { parallel=8, force=false, mode="snapshot", retry=0,
 *                               flatten=false, engine="threads"|"aio", nudge=2 }])
 *   -> results, summary
 * op: promote | demote | enable | disable | resync | status | snapshot.
 * results[i] (same order as images): { image="pool/name", result="ok"|"already"|"failed",
 *   err={code,message,status}|nil, seconds=, snap_id= (snapshot, demote), attempts= (promote),
 *   nudges= (forced promote: header notifications sent, when any),
 *   flattened=true (enable with flatten=true on a clone),
 *   status={...} (status op) }; summary = { ok=, already=, failed=, seconds= }.
 * Worker threads never touch the Lua state: items are marshalled first and pushed after the
 * join. An interrupt stops new items (their err.code is "interrupted"). */
static int cluster_batch(lua_State *L)
{
    lcluster *lc = check_cluster(L, 1);
    lua_settop(L, 4); /* the box goes at 5 even without opts */
    int op = luaL_checkoption(L, 2, NULL, batch_ops);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    lua_Integer parallel = vmdr_opt_integer(L, 4, "parallel", 8);
    luaL_argcheck(L, parallel >= 1 && parallel <= 256, 4, "parallel must be 1..256");
    const char *mode = vmdr_opt_string(L, 4, "mode", "snapshot");
    luaL_argcheck(L, strcmp(mode, "snapshot") == 0 || strcmp(mode, "journal") == 0, 4,
                  "mode must be 'snapshot' or 'journal'");
    const char *engine = vmdr_opt_string(L, 4, "engine", "threads");
    luaL_argcheck(L, strcmp(engine, "threads") == 0 || strcmp(engine, "aio") == 0, 4,
                  "engine must be 'threads' or 'aio'");
    lua_Number retry = vmdr_opt_number(L, 4, "retry", 0);
    /* nudge: seconds into a forced promote before its header is notified (core.c "nudger");
     * false or 0: never */
    lua_Number nudge = VMDR_RBD_NUDGE_AFTER;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "nudge");
        if (lua_isboolean(L, -1))
            nudge = lua_toboolean(L, -1) ? VMDR_RBD_NUDGE_AFTER : 0;
        else if (lua_type(L, -1) == LUA_TNUMBER)
            nudge = lua_tonumber(L, -1);
        else if (!lua_isnil(L, -1))
            nudge = -1; /* refused just below */
        lua_pop(L, 1);
    }
    luaL_argcheck(L, nudge >= 0 && nudge <= 3600, 4, "nudge must be false or 0..3600 seconds");

    lua_Integer n = luaL_len(L, 3);
    vmdr_rbd_batch *b = lua_newuserdatauv(L, sizeof *b, 0); /* stack: ... box */
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BATCH_META);
    b->cluster = lc->c;
    b->op = (vmdr_rbd_op)op;
    b->parallel = (int)parallel;
    b->force = vmdr_opt_boolean(L, 4, "force", 0);
    b->use_aio = strcmp(engine, "aio") == 0;
    b->retry = retry;
    b->nudge = nudge;
    b->flatten = vmdr_opt_boolean(L, 4, "flatten", 0);
    b->interrupted = vmdr_interrupted;
    snprintf(b->mode, sizeof b->mode, "%s", mode);
    b->items = calloc(n > 0 ? (size_t)n : 1, sizeof *b->items);
    if (!b->items)
        return luaL_error(L, "out of memory");
    b->n = (size_t)n;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, 3, i);
        check_item(L, -1, &b->items[i - 1]);
        lua_pop(L, 1);
    }
    /* Items whose spec was refused above must not run: move them out of the way by
     * running the batch over a compacted index. */
    size_t *map = calloc(n > 0 ? (size_t)n : 1, sizeof *map);
    vmdr_rbd_item *run = calloc(n > 0 ? (size_t)n : 1, sizeof *run);
    if (!map || !run) {
        free(map);
        free(run);
        return luaL_error(L, "out of memory");
    }
    size_t nr = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->items[i].spec.name[0]) {
            map[nr] = i;
            run[nr++] = b->items[i];
        }
    vmdr_rbd_batch rb = *b;
    rb.items = run;
    rb.n = nr;
    vmdr_err e;
    vmdr_err_clear(&e);
    double t0 = vmdr_rbd_now();
    int rc = vmdr_rbd_batch_run(&rb, &e);
    double elapsed = vmdr_rbd_now() - t0;
    for (size_t k = 0; k < nr; k++)
        b->items[map[k]] = run[k]; /* ownership of status moves back to the box */
    free(run);
    free(map);
    if (rc < 0)
        return vmdr_push_err(L, &e);

    int nok = 0, nal = 0, nfail = 0;
    lua_createtable(L, (int)n, 0); /* stack: ... box results */
    for (size_t i = 0; i < b->n; i++) {
        vmdr_rbd_item *it = &b->items[i];
        char buf[3 * VMDR_RBD_NAME_MAX + 4];
        luaL_checkstack(L, 6, NULL);
        lua_createtable(L, 0, 6);
        if (it->spec.name[0]) {
            vmdr_rbd_spec_format(&it->spec, buf, sizeof buf);
            lua_pushstring(L, buf);
        } else {
            lua_geti(L, 3, (lua_Integer)i + 1); /* the entry as given */
        }
        lua_setfield(L, -2, "image");
        const char *res = it->outcome == VMDR_RBD_DONE_OK        ? "ok"
                          : it->outcome == VMDR_RBD_DONE_ALREADY ? "already"
                                                                 : "failed";
        nok += it->outcome == VMDR_RBD_DONE_OK;
        nal += it->outcome == VMDR_RBD_DONE_ALREADY;
        nfail += it->outcome == VMDR_RBD_DONE_FAILED;
        lua_pushstring(L, res);
        lua_setfield(L, -2, "result");
        if (it->outcome == VMDR_RBD_DONE_FAILED) {
            vmdr_push_errtable(L, it->err.code[0] ? it->err.code : "error", it->err.message,
                               it->err.status);
            lua_setfield(L, -2, "err");
        }
        lua_pushnumber(L, it->seconds);
        lua_setfield(L, -2, "seconds");
        if (it->snap_id) {
            lua_pushinteger(L, (lua_Integer)it->snap_id);
            lua_setfield(L, -2, "snap_id");
        }
        if (it->flattened) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "flattened");
        }
        if (op == VMDR_RBD_OP_PROMOTE && it->attempts) {
            lua_pushinteger(L, it->attempts);
            lua_setfield(L, -2, "attempts");
        }
        if (it->nudges) {
            lua_pushinteger(L, it->nudges);
            lua_setfield(L, -2, "nudges");
        }
        if (it->status && it->outcome != VMDR_RBD_DONE_FAILED) {
            push_mirror_status(L, it->status);
            lua_setfield(L, -2, "status");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, nok);
    lua_setfield(L, -2, "ok");
    lua_pushinteger(L, nal);
    lua_setfield(L, -2, "already");
    lua_pushinteger(L, nfail);
    lua_setfield(L, -2, "failed");
    lua_pushnumber(L, elapsed);
    lua_setfield(L, -2, "seconds");
    vmdr_rbd_batch_free(b);
    return 2;
}

/* cluster:close() -> true. Images opened from it keep librados up until they close. */
static int cluster_close(lua_State *L)
{
    lcluster *lc = luaL_checkudata(L, 1, CLUSTER_META);
    if (lc->c) {
        vmdr_rbd_cluster_unref(lc->c);
        lc->c = NULL;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int cluster_gc(lua_State *L)
{
    cluster_close(L);
    return 0;
}

static int cluster_tostring(lua_State *L)
{
    lcluster *lc = luaL_checkudata(L, 1, CLUSTER_META);
    if (lc->c)
        lua_pushfstring(L, CLUSTER_META " (%s)", lc->desc);
    else
        lua_pushliteral(L, CLUSTER_META " (closed)");
    return 1;
}

/* ---- Image --------------------------------------------------------------------------- */

/* img:mirror_info() -> { state=, mode=, primary=, global_id= } | nil, err */
static int image_mirror_info(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_rbd_mirror_info mi;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_get_mirror_info(&mi, &li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    push_mirror_info(L, &mi);
    return 1;
}

/* img:mirror_status() -> { state=, mode=, primary=, global_id=, split_brain=,
 *   local = { state=, status="up+replaying", description=, up=, last_update= } | nil,
 *   peers = { {mirror_uuid=, ...}, ... } } | nil, err
 * rbd-mirror rewrites these every 30 s: do not poll it to learn whether data arrived. */
static int image_mirror_status(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_rbd_mirror_status st;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_get_mirror_status(&st, &li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    push_mirror_status(L, &st);
    return 1;
}

static const char *const mirror_modes[] = {"snapshot", "journal", NULL};

/* img:mirror_enable([mode="snapshot"]) -> "ok" | "already" | nil, err */
static int image_mirror_enable(lua_State *L)
{
    limage *li = check_image(L, 1);
    int m = luaL_checkoption(L, 2, "snapshot", mirror_modes);
    int already;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_mirror_enable(&li->im, mirror_modes[m], &already, &e) < 0)
        return vmdr_push_err(L, &e);
    return push_outcome(L, already);
}

/* img:mirror_disable([force=false]) -> "ok" | "already" | nil, err */
static int image_mirror_disable(lua_State *L)
{
    limage *li = check_image(L, 1);
    int force = lua_toboolean(L, 2), already;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_mirror_disable(&li->im, force, &already, &e) < 0)
        return vmdr_push_err(L, &e);
    return push_outcome(L, already);
}

/* img:promote([force=false]) -> "ok" | "already" | nil, err ("busy" while the peer is primary
 * or its demotion has not synced; "read_only" for ~0.2 s after that) */
static int image_promote(lua_State *L)
{
    limage *li = check_image(L, 1);
    int force = lua_toboolean(L, 2), already;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_promote(&li->im, force, VMDR_RBD_NUDGE_AFTER, NULL, &already, &e) < 0)
        return vmdr_push_err(L, &e);
    return push_outcome(L, already);
}

/* img:demote() -> "ok" | "already", demote_snap_id | nil, err
 * The demotion snapshot's id is what the peer's wait_synced waits for before a graceful
 * promote there. */
static int image_demote(lua_State *L)
{
    limage *li = check_image(L, 1);
    int already;
    uint64_t snap = 0;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_demote(&li->im, &already, &snap, &e) < 0)
        return vmdr_push_err(L, &e);
    push_outcome(L, already);
    if (snap)
        lua_pushinteger(L, (lua_Integer)snap);
    else
        lua_pushnil(L);
    return 2;
}

/* img:resync() -> "ok" | nil, err. Only flags the image: the local rbd-mirror deletes and
 * recreates it from the peer, so reopen handles afterwards (img:reopen()). */
static int image_resync(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_resync(&li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    return push_outcome(L, 0);
}

/* img:mirror_snapshot() -> snap_id | nil, err (on the primary) */
static int image_mirror_snapshot(lua_State *L)
{
    limage *li = check_image(L, 1);
    uint64_t id = 0;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_mirror_snapshot(&li->im, &id, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* img:mirror_snapshots() -> { {id=, state=, complete=, primary_mirror_uuid=,
 *   primary_snap_id=, time=}, ... } oldest first | nil, err */
static int image_mirror_snapshots(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_rbd_mirror_snap *s = NULL;
    int n = 0;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_mirror_snaps(&s, &n, &li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    push_snaps(L, s, n);
    free(s);
    return 1;
}

static int sleep_interruptible(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
    return vmdr_interrupted();
}

/* img:wait_synced(snap_id, timeout) -> true | nil, err ("timeout", "interrupted", ...)
 * Call it on the PEER (non-primary) site's handle, with the id mirror_snapshot() or demote()
 * returned on the primary. It is judged from the peer's newest mirror snapshots (a complete
 * copy of that snapshot or of a later one), which is immediate, not from the mirror status,
 * which lags up to 30 s. Each poll opens the image afresh, so it also sees an image that
 * rbd-mirror recreated (resync). */
static int image_wait_synced(lua_State *L)
{
    limage *li = check_image(L, 1);
    lua_Integer snap = luaL_checkinteger(L, 2);
    lua_Number timeout = luaL_checknumber(L, 3);
    luaL_argcheck(L, timeout >= 0, 3, "timeout must not be negative");
    double deadline = vmdr_rbd_now() + timeout;
    vmdr_err e;
    vmdr_err_clear(&e);
    for (;;) {
        vmdr_rbd_image fresh;
        int synced = 0, rc;
        vmdr_err pe;
        vmdr_err_clear(&pe);
        rc = vmdr_rbd_image_open(&fresh, li->im.cluster, &li->im.spec, &pe);
        if (rc == 0) {
            rc = vmdr_rbd_synced(&synced, &fresh, (uint64_t)snap, &pe);
            vmdr_rbd_image_close(&fresh);
        }
        if (rc == 0 && synced) {
            lua_pushboolean(L, 1);
            return 1;
        }
        /* not_found is expected while rbd-mirror recreates a resynced image */
        if (rc < 0 && strcmp(pe.code, "not_found") != 0 && strcmp(pe.code, "timeout") != 0)
            return vmdr_push_err(L, &pe);
        if (vmdr_rbd_now() >= deadline) {
            char buf[3 * VMDR_RBD_NAME_MAX + 4];
            vmdr_rbd_spec_format(&li->im.spec, buf, sizeof buf);
            return vmdr_push_fail(L, "timeout", ETIMEDOUT,
                                  "%s has no complete copy of mirror snapshot %lld after %g s%s%s",
                                  buf, (long long)snap, (double)timeout,
                                  rc < 0 ? ": " : "", rc < 0 ? pe.message : "");
        }
        if (sleep_interruptible(0.05))
            return vmdr_push_fail(L, "interrupted", EINTR, "wait_synced interrupted");
    }
}

/* img:reopen() -> true | nil, err: the handle now refers to the image of that name as it is
 * now (after a resync recreated it). */
static int image_reopen(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_rbd_image fresh;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_image_open(&fresh, li->im.cluster, &li->im.spec, &e) < 0)
        return vmdr_push_err(L, &e);
    vmdr_rbd_image_close(&li->im);
    li->im = fresh;
    lua_pushboolean(L, 1);
    return 1;
}

/* img:info() -> { size=, object_size=, features={...}, features_mask=, id=,
 *   parent = { pool=, namespace=, image=, snap= } | nil } | nil, err */
static int image_info(lua_State *L)
{
    limage *li = check_image(L, 1);
    vmdr_rbd_image_info in;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_get_image_info(&in, &li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)in.size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)in.obj_size);
    lua_setfield(L, -2, "object_size");
    lua_pushinteger(L, (lua_Integer)in.features);
    lua_setfield(L, -2, "features_mask");
    lua_newtable(L);
    int k = 0;
    for (char *p = in.features_str, *tok; (tok = strtok_r(p, ",", &p)) != NULL;) {
        lua_pushstring(L, tok);
        lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "features");
    lua_pushstring(L, in.id);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, li->im.spec.name);
    lua_setfield(L, -2, "name");
    if (in.has_parent) {
        lua_createtable(L, 0, 4);
        lua_pushstring(L, in.parent_pool);
        lua_setfield(L, -2, "pool");
        lua_pushstring(L, in.parent_ns);
        lua_setfield(L, -2, "namespace");
        lua_pushstring(L, in.parent_image);
        lua_setfield(L, -2, "image");
        lua_pushstring(L, in.parent_snap);
        lua_setfield(L, -2, "snap");
        lua_setfield(L, -2, "parent");
    }
    return 1;
}

typedef struct flatten_job {
    rbd_image_t img;
    pthread_mutex_t mu;
    uint64_t done, total;
    int finished, rc, cancel;
} flatten_job;

static int flatten_progress(uint64_t offset, uint64_t total, void *arg)
{
    flatten_job *j = arg;
    /* librbd's thread: record only; Lua is called from the waiting thread */
    pthread_mutex_lock(&j->mu);
    j->done = offset;
    j->total = total;
    int cancel = j->cancel;
    pthread_mutex_unlock(&j->mu);
    return cancel ? -ECANCELED : 0;
}

static void *flatten_thread(void *arg)
{
    flatten_job *j = arg;
    int rc = rbd_flatten_with_progress(j->img, flatten_progress, j);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->finished = 1;
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* img:flatten([progress]) -> "ok" | "already" | nil, err
 * progress(done, total) is called from this thread every 100 ms while librbd copies the
 * parent's data; an error it raises is re-raised once librbd has finished. */
static int image_flatten(lua_State *L)
{
    limage *li = check_image(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    vmdr_rbd_image_info in;
    vmdr_err e;
    vmdr_err_clear(&e);
    if (vmdr_rbd_get_image_info(&in, &li->im, &e) < 0)
        return vmdr_push_err(L, &e);
    if (!in.has_parent)
        return push_outcome(L, 1);
    flatten_job j;
    memset(&j, 0, sizeof j);
    j.img = li->im.img;
    pthread_mutex_init(&j.mu, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, flatten_thread, &j) != 0) {
        pthread_mutex_destroy(&j.mu);
        return vmdr_push_fail(L, "error", EAGAIN, "cannot start the flatten thread");
    }
    int cb_failed = 0, finished = 0;
    uint64_t last = (uint64_t)-1;
    lua_pushnil(L); /* stack: ... cb_error */
    int erridx = lua_gettop(L);
    while (!finished) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&j.mu);
        finished = j.finished;
        uint64_t done = j.done, total = j.total;
        if (vmdr_interrupted() || cb_failed)
            j.cancel = 1;
        pthread_mutex_unlock(&j.mu);
        if (!cb_failed && !lua_isnoneornil(L, 2) && done != last && total > 0) {
            last = done;
            lua_pushvalue(L, 2);
            lua_pushinteger(L, (lua_Integer)done);
            lua_pushinteger(L, (lua_Integer)total);
            if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
                cb_failed = 1;
                lua_replace(L, erridx);
            }
        }
    }
    pthread_join(th, NULL);
    pthread_mutex_destroy(&j.mu);
    if (cb_failed)
        return lua_error(L); /* the callback's error, now that librbd has unwound */
    if (j.rc < 0) {
        if (vmdr_interrupted())
            return vmdr_push_fail(L, "interrupted", EINTR, "flatten interrupted");
        vmdr_rbd__fail(&e, j.rc, "flatten", &li->im.spec);
        return vmdr_push_err(L, &e);
    }
    return push_outcome(L, 0);
}

/* img:write(offset, data) -> true | nil, err   (test and demo data) */
static int image_write(lua_State *L)
{
    limage *li = check_image(L, 1);
    lua_Integer off = luaL_checkinteger(L, 2);
    size_t n;
    const char *d = luaL_checklstring(L, 3, &n);
    luaL_argcheck(L, off >= 0, 2, "offset must not be negative");
    size_t done = 0;
    while (done < n) {
        ssize_t w = rbd_write(li->im.img, (uint64_t)off + done, n - done, d + done);
        if (w < 0) {
            vmdr_err e;
            vmdr_rbd__fail(&e, (int)w, "write to", &li->im.spec);
            return vmdr_push_err(L, &e);
        }
        done += (size_t)w;
    }
    int rc = rbd_flush(li->im.img);
    if (rc < 0) {
        vmdr_err e;
        vmdr_rbd__fail(&e, rc, "flush", &li->im.spec);
        return vmdr_push_err(L, &e);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* img:read(offset, length) -> string | nil, err */
static int image_read(lua_State *L)
{
    limage *li = check_image(L, 1);
    lua_Integer off = luaL_checkinteger(L, 2);
    lua_Integer len = luaL_checkinteger(L, 3);
    luaL_argcheck(L, off >= 0, 2, "offset must not be negative");
    luaL_argcheck(L, len >= 0 && len <= (1 << 30), 3, "length must be 0..1 GiB");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)len);
    ssize_t r = rbd_read(li->im.img, (uint64_t)off, (size_t)len, p);
    if (r < 0) {
        vmdr_err e;
        vmdr_rbd__fail(&e, (int)r, "read from", &li->im.spec);
        return vmdr_push_err(L, &e);
    }
    luaL_pushresultsize(&b, (size_t)r);
    return 1;
}

/* img:spec() -> "pool/name" or "pool/namespace/name" */
static int image_spec(lua_State *L)
{
    limage *li = luaL_checkudata(L, 1, IMAGE_META);
    char buf[3 * VMDR_RBD_NAME_MAX + 4];
    vmdr_rbd_spec_format(&li->im.spec, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

/* img:close() -> true (idempotent) */
static int image_close(lua_State *L)
{
    limage *li = luaL_checkudata(L, 1, IMAGE_META);
    if (li->open) {
        vmdr_rbd_image_close(&li->im);
        vmdr_rbd_cluster_unref(li->im.cluster);
        li->im.cluster = NULL;
        li->open = 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int image_gc(lua_State *L)
{
    image_close(L);
    return 0;
}

static int image_tostring(lua_State *L)
{
    limage *li = luaL_checkudata(L, 1, IMAGE_META);
    if (!li->open) {
        lua_pushliteral(L, IMAGE_META " (closed)");
    } else {
        char buf[3 * VMDR_RBD_NAME_MAX + 4];
        vmdr_rbd_spec_format(&li->im.spec, buf, sizeof buf);
        lua_pushfstring(L, IMAGE_META " (%s)", buf);
    }
    return 1;
}

static const luaL_Reg rbd_funcs[] = {{"connect", rbd_connect}, {NULL, NULL}};

static const luaL_Reg cluster_methods[] = {{"image", cluster_image},
                                           {"mirror_mode", cluster_mirror_mode},
                                           {"mirror_snapshot_schedule", cluster_schedule},
                                           {"create_image", cluster_create_image},
                                           {"remove_image", cluster_remove_image},
                                           {"batch", cluster_batch},
                                           {"close", cluster_close},
                                           {NULL, NULL}};

static const luaL_Reg cluster_meta[] = {{"__gc", cluster_gc},
                                        {"__close", cluster_gc},
                                        {"__tostring", cluster_tostring},
                                        {"__index", NULL},
                                        {NULL, NULL}};

static const luaL_Reg image_methods[] = {{"mirror_info", image_mirror_info},
                                         {"mirror_status", image_mirror_status},
                                         {"mirror_enable", image_mirror_enable},
                                         {"mirror_disable", image_mirror_disable},
                                         {"promote", image_promote},
                                         {"demote", image_demote},
                                         {"resync", image_resync},
                                         {"mirror_snapshot", image_mirror_snapshot},
                                         {"mirror_snapshots", image_mirror_snapshots},
                                         {"wait_synced", image_wait_synced},
                                         {"reopen", image_reopen},
                                         {"info", image_info},
                                         {"flatten", image_flatten},
                                         {"write", image_write},
                                         {"read", image_read},
                                         {"spec", image_spec},
                                         {"close", image_close},
                                         {NULL, NULL}};

static const luaL_Reg image_meta[] = {{"__gc", image_gc},
                                      {"__close", image_gc},
                                      {"__tostring", image_tostring},
                                      {"__index", NULL},
                                      {NULL, NULL}};

int luaopen_vmdr_rbd(lua_State *L)
{
    vmdr_new_class(L, CLUSTER_META, cluster_meta, cluster_methods);
    vmdr_new_class(L, IMAGE_META, image_meta, image_methods);
    luaL_newmetatable(L, BATCH_META);
    lua_pushcfunction(L, batch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlib(L, rbd_funcs);
    return 1;
}
