/* vmdr.k8s binding: the transport primitives of runtime/k8s/ as Lua handles.
 *
 * Thin C, thick Lua (STYLE rule 6): this file gives Lua a connection (one curl multi,
 * keep-alive pool, TLS, interruptible waits, JSON decoded straight into tables) and a
 * stream of JSON lines for watches. Kubeconfig, auth, discovery, retries, pagination and
 * the watch state machine are lua/lib/vmdr/k8s/client.lua, which luaopen_vmdr_k8s loads
 * with these primitives: `require "vmdr.k8s"` returns that module. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "codec.h"
#include "json.h"
#include "k8s/k8s.h"
#include "lutil.h"

#define CONN_META "vmdr.k8s.Conn"
#define STREAM_META "vmdr.k8s.Stream"

typedef struct conn_box {
    vmdr_k8s_conn *c;
    char server[256];
} conn_box;

typedef struct stream_box {
    vmdr_k8s_xfer *x;
} stream_box;

static conn_box *check_conn(lua_State *L, int idx)
{
    conn_box *b = luaL_checkudata(L, idx, CONN_META);
    if (b->c == NULL)
        luaL_error(L, "attempt to use a closed " CONN_META);
    return b;
}

static stream_box *check_stream(lua_State *L, int idx)
{
    stream_box *b = luaL_checkudata(L, idx, STREAM_META);
    if (b->x == NULL)
        luaL_error(L, "attempt to use a closed " STREAM_META);
    return b;
}

static long check_ms(lua_State *L, int tbl, const char *key, lua_Number def)
{
    lua_Number s = vmdr_opt_number(L, tbl, key, def);
    if (s < 0)
        luaL_error(L, "option '%s' must not be negative", key);
    return (long)(s * 1000.0 + 0.5);
}

/* k8s.connect{ server=, ca_file=, ca_data=, cert_file=, cert_data=, key_file=, key_data=,
 *              insecure=, tls_server_name=, proxy=, connect_timeout= } -> Conn | nil, err
 * *_data are PEM bytes (already decoded from kubeconfig base64). */
static int k8s_connect(lua_State *L)
{
    vmdr_k8s_conn_opts o;
    vmdr_err err;
    luaL_checktype(L, 1, LUA_TTABLE);
    memset(&o, 0, sizeof o);
    vmdr_err_clear(&err);
    o.server = vmdr_opt_string(L, 1, "server", NULL);
    luaL_argcheck(L, o.server != NULL, 1, "option 'server' is required");
    o.ca_file = vmdr_opt_string(L, 1, "ca_file", NULL);
    o.ca_data = vmdr_opt_lstring(L, 1, "ca_data", &o.ca_len);
    o.cert_file = vmdr_opt_string(L, 1, "cert_file", NULL);
    o.cert_data = vmdr_opt_lstring(L, 1, "cert_data", &o.cert_len);
    o.key_file = vmdr_opt_string(L, 1, "key_file", NULL);
    o.key_data = vmdr_opt_lstring(L, 1, "key_data", &o.key_len);
    o.insecure = vmdr_opt_boolean(L, 1, "insecure", 0);
    o.server_name = vmdr_opt_string(L, 1, "tls_server_name", NULL);
    o.proxy = vmdr_opt_string(L, 1, "proxy", NULL);
    o.connect_timeout_ms = check_ms(L, 1, "connect_timeout", 10);
    o.interrupted = vmdr_interrupted;
    if (o.key_data)
        vmdr_secret_add(L, o.key_data, o.key_len);

    /* The handle exists (closed) before the resource (STYLE rule 4). */
    conn_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->c = NULL;
    snprintf(b->server, sizeof b->server, "%s", o.server);
    luaL_setmetatable(L, CONN_META);
    if (vmdr_k8s_conn_new(&b->c, &o, &err) != 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* Decodes with the collector paused: every table the decoder makes stays reachable
 * until it returns, so collection steps during a large list (tens of thousands of
 * tables) only re-traverse a growing heap; measured at 3x the decode time. */
static int decode_push(lua_State *L, const char *s, size_t n, vmdr_err *err)
{
    int was_running = lua_gc(L, LUA_GCISRUNNING);
    if (was_running)
        lua_gc(L, LUA_GCSTOP);
    int rc = vmdr_json_decode_push(L, s, n, err);
    if (was_running)
        lua_gc(L, LUA_GCRESTART);
    return rc;
}

/* Pushes the decoded body, or nil and records why in info (at index info). */
static void push_body(lua_State *L, const char *body, size_t len, const char *ctype, int info,
                      int want_raw)
{
    vmdr_err err;
    vmdr_err_clear(&err);
    int json = ctype && strstr(ctype, "json") != NULL;
    if (json && len > 0 && decode_push(L, body, len, &err) == 0) {
        if (want_raw) {
            lua_pushlstring(L, body, len);
            lua_setfield(L, info, "raw");
        }
        return;
    }
    if (json && len > 0) {
        vmdr_push_errtable(L, "bad_response", err.message, 0);
        lua_setfield(L, info, "decode_error");
    }
    lua_pushlstring(L, body, len);
    lua_setfield(L, info, "raw");
    lua_pushnil(L);
}

/* Decoding a list while it downloads (opts.stream_list): the hook of the core request
 * feeds the list scanner, which hands over each complete item; the item is decoded
 * straight from the receive buffer into the items table. The decoder's scratch is made
 * once per list and reused, so an item leaves no garbage behind while the collector is
 * paused (a scratch per call was tens of megabytes of garbage for a big list). */
typedef struct list_stream {
    lua_State *L;
    int items;   /* stack index of the items table */
    int passive; /* not a JSON 200: the body is left whole for the usual path */
    int decided;
    vmdr_k8s_listscan scan;
    vmdr_codec_scratch *scratch; /* anchored on the stack next to the items table */
    vmdr_pool *pool;             /* asked to prefault for this list (alloc.h) */
} list_stream;

/* decode_item(ls, ptr, len, items) -> (): appends the decoded item to items */
static int decode_item(lua_State *L)
{
    list_stream *ls = lua_touserdata(L, 1);
    const char *p = lua_touserdata(L, 2);
    size_t n = (size_t)lua_tointeger(L, 3);
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_json_decode_push_with(L, p, n, ls->scratch, &err) != 0)
        return luaL_error(L, "%s", err.message);
    lua_rawseti(L, 4, (lua_Integer)ls->scan.count + 1); /* count is bumped after the call */
    return 0;
}

/* decode_prefix(ls, ptr, len, items) -> bytes: decodes the item that starts at ptr */
static int decode_prefix(lua_State *L)
{
    list_stream *ls = lua_touserdata(L, 1);
    const char *p = lua_touserdata(L, 2);
    size_t n = (size_t)lua_tointeger(L, 3), used = 0;
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_json_decode_prefix_with(L, p, n, ls->scratch, &used, &err) != 0)
        return luaL_error(L, "%s", err.message);
    lua_rawseti(L, 4, (lua_Integer)ls->scan.count + 1); /* count is bumped after the call */
    lua_pushinteger(L, (lua_Integer)used);
    return 1;
}

/* The scanner's try_item: decodes in place; 0 on any failure (the scanner then delimits
 * the item itself and list_item reports what is wrong with it). */
static long list_try_item(void *payload, const char *p, size_t n, vmdr_err *err)
{
    list_stream *ls = payload;
    lua_State *L = ls->L;
    lua_pushcfunction(L, decode_prefix);
    lua_pushlightuserdata(L, ls);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushvalue(L, ls->items);
    if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return 0;
    }
    long used = (long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return used;
}

static int list_item(void *payload, const char *p, size_t n, vmdr_err *err)
{
    list_stream *ls = payload;
    lua_State *L = ls->L;
    /* protected: a memory error must not longjmp across the core's wait loop */
    lua_pushcfunction(L, decode_item);
    lua_pushlightuserdata(L, ls);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushvalue(L, ls->items);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        vmdr_err_set(err, "bad_response", 0, "the response is not valid JSON: items[%ld]: %s",
                     ls->scan.count, lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* Lua objects per byte of a list's JSON, in the pool's small blocks: 10,000 generated VMs
 * (20.3 MiB) took 30 regions (60 MiB, 2.95x). A little less is asked for, so that what
 * is made ahead is used (the rest is mapped by the decoder as it goes). */
#define LIST_POOL_RATIO 2.75

static long list_hook(void *payload, long status, const char *ctype, size_t total,
                      const char *buf, size_t len, int done, vmdr_err *err)
{
    list_stream *ls = payload;
    if (!ls->decided) {
        ls->decided = 1;
        ls->passive = status != 200 || ctype == NULL || strstr(ctype, "json") == NULL;
        if (!ls->passive && total > 0 && (ls->pool = vmdr_lua_pool(ls->L)) != NULL)
            vmdr_pool_prefault(ls->pool, (size_t)((double)total * LIST_POOL_RATIO));
    }
    if (ls->passive)
        return 0;
    return vmdr_k8s_listscan_feed(&ls->scan, buf, len, done, list_item, ls, err);
}

/* __gc of the scanner box: frees the envelope buffer */
static int list_stream_gc(lua_State *L)
{
    list_stream *ls = lua_touserdata(L, 1);
    vmdr_k8s_listscan_free(&ls->scan);
    return 0;
}

/* Reads the request options at idx into r (strings stay anchored in the table). */
static void check_req(lua_State *L, int idx, vmdr_k8s_req *r)
{
    r->accept = vmdr_opt_string(L, idx, "accept", NULL);
    r->authorization = vmdr_opt_string(L, idx, "authorization", NULL);
    r->content_type = vmdr_opt_string(L, idx, "content_type", NULL);
    lua_Integer mx = vmdr_opt_integer(L, idx, "max_body", 0);
    luaL_argcheck(L, mx >= 0, idx, "option 'max_body' must not be negative");
    r->max_body = (size_t)mx;
}

/* conn:request(method, path [, opts]) -> status, body, info | nil, err
 * opts: body (string, or a table encoded as JSON), content_type, accept, authorization,
 * timeout (seconds, default 30), max_body, raw (also return the bytes in info.raw),
 * stream_list (decode a list's items while it downloads: the body is never held whole).
 * body is the decoded JSON (for a JSON content type), else nil; info = { content_type=,
 * retry_after=, raw=, decode_error=, seconds= (the transfer) }. Any HTTP status is a result, not an
 * error. */
static int conn_request(lua_State *L)
{
    conn_box *b = check_conn(L, 1);
    vmdr_k8s_req r;
    vmdr_k8s_resp resp;
    vmdr_err err;
    memset(&r, 0, sizeof r);
    vmdr_err_clear(&err);
    r.method = luaL_checkstring(L, 2);
    r.path = luaL_checkstring(L, 3);
    if (!lua_isnoneornil(L, 4))
        luaL_checktype(L, 4, LUA_TTABLE);
    lua_settop(L, 4); /* stack: conn method path opts */
    check_req(L, 4, &r);
    r.timeout_ms = check_ms(L, 4, "timeout", 30);
    int want_raw = vmdr_opt_boolean(L, 4, "raw", 0);
    int stream_list = vmdr_opt_boolean(L, 4, "stream_list", 0);
    int t = lua_isnil(L, 4) ? LUA_TNIL : lua_getfield(L, 4, "body");
    if (lua_isnil(L, 4))
        lua_pushnil(L); /* stack: conn method path opts body */
    if (t == LUA_TTABLE) {
        if (vmdr_json_encode_push(L, 5, &err) != 0)
            return luaL_error(L, "request body: %s", err.message);
        lua_replace(L, 5);
    } else if (t != LUA_TNIL && t != LUA_TSTRING) {
        return luaL_error(L, "option 'body' must be a string or a table, got %s",
                          luaL_typename(L, 5));
    }
    if (!lua_isnil(L, 5))
        r.body = lua_tolstring(L, 5, &r.body_len);
    list_stream *ls = NULL;
    if (stream_list) {
        /* stack: ... body box scratch items (the box frees the scanner, the scratch its
         * buffer, if anything raises) */
        ls = lua_newuserdatauv(L, sizeof *ls, 0);
        memset(ls, 0, sizeof *ls);
        vmdr_k8s_listscan_init(&ls->scan);
        ls->scan.try_item = list_try_item;
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, list_stream_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        ls->scratch = vmdr_codec_scratch_push(L);
        lua_newtable(L);
        vmdr_push_array_mt(L);
        lua_setmetatable(L, -2);
        ls->L = L;
        ls->items = lua_gettop(L);
        r.on_body = list_hook;
        r.payload = ls;
    }
    int gc_was_running = lua_gc(L, LUA_GCISRUNNING);
    if (ls && gc_was_running)
        lua_gc(L, LUA_GCSTOP); /* see decode_push */
    int rc = vmdr_k8s_request(b->c, &r, &resp, &err);
    if (ls && ls->pool)
        vmdr_pool_prefault(ls->pool, 0); /* what was made ahead and not used goes back */
    if (ls && gc_was_running)
        lua_gc(L, LUA_GCRESTART);
    if (rc != 0)
        return vmdr_push_err(L, &err);
    if (ls && !ls->passive && ls->scan.env_len > 0) {
        /* the envelope stands in for the body; the items go into its "items" */
        resp.body = ls->scan.env;
        resp.len = ls->scan.env_len;
    }
    lua_pushinteger(L, resp.status); /* stack: ... body status */
    lua_createtable(L, 0, 3);        /* stack: ... body status info */
    int info = lua_gettop(L);
    lua_pushstring(L, resp.content_type);
    lua_setfield(L, info, "content_type");
    lua_pushnumber(L, resp.seconds);
    lua_setfield(L, info, "seconds");
    if (resp.retry_after >= 0) {
        lua_pushnumber(L, resp.retry_after);
        lua_setfield(L, info, "retry_after");
    }
    push_body(L, resp.body, resp.len, resp.content_type, info, want_raw);
    if (ls && !ls->passive && ls->scan.found && lua_type(L, -1) == LUA_TTABLE) {
        lua_pushvalue(L, ls->items);
        lua_setfield(L, -2, "items");
    }
    lua_pushvalue(L, info);
    lua_remove(L, info); /* stack: ... status decoded info */
    return 3;
}

/* conn:set_client_cert(cert_pem, key_pem) -> true | nil, err */
static int conn_set_client_cert(lua_State *L)
{
    conn_box *b = check_conn(L, 1);
    size_t cl, kl;
    const char *cert = luaL_checklstring(L, 2, &cl);
    const char *key = luaL_checklstring(L, 3, &kl);
    vmdr_err err;
    vmdr_err_clear(&err);
    vmdr_secret_add(L, key, kl);
    if (vmdr_k8s_conn_set_client_cert(b->c, cert, cl, key, kl, &err) != 0)
        return vmdr_push_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:stream(path [, opts]) -> Stream | nil, err
 * Opens a GET whose body is read line by line (a watch) and waits for its headers.
 * opts: accept, authorization, timeout (seconds to wait for headers, default 30),
 * stall (seconds of silence after which the connection counts as dead, default 600). */
static int conn_stream(lua_State *L)
{
    conn_box *b = check_conn(L, 1);
    vmdr_k8s_req r;
    vmdr_err err;
    memset(&r, 0, sizeof r);
    vmdr_err_clear(&err);
    r.method = "GET";
    r.path = luaL_checkstring(L, 2);
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    check_req(L, 3, &r);
    long wait_ms = check_ms(L, 3, "timeout", 30);
    r.timeout_ms = check_ms(L, 3, "stall", 600);
    if (r.max_body == 0)
        r.max_body = (size_t)256 << 20; /* one watch event larger than this is not an event */
    stream_box *sb = lua_newuserdatauv(L, sizeof *sb, 1); /* stack: conn path opts stream */
    sb->x = NULL;
    luaL_setmetatable(L, STREAM_META);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the stream keeps its conn alive */
    if (vmdr_k8s_stream_open(&sb->x, b->c, &r, wait_ms, &err) != 0)
        return vmdr_push_err(L, &err);
    return 1;
}

/* conn:__gc() / conn:__close(): frees the connection pool; idempotent */
static int conn_gc(lua_State *L)
{
    conn_box *b = luaL_checkudata(L, 1, CONN_META);
    if (b->c) {
        vmdr_k8s_conn_free(b->c);
        b->c = NULL;
    }
    return 0;
}

/* conn:close() -> true */
static int conn_close(lua_State *L)
{
    conn_gc(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* tostring(conn) -> "vmdr.k8s.Conn (server)" | "vmdr.k8s.Conn (closed)" */
static int conn_tostring(lua_State *L)
{
    conn_box *b = luaL_checkudata(L, 1, CONN_META);
    if (b->c)
        lua_pushfstring(L, CONN_META " (%s)", b->server);
    else
        lua_pushliteral(L, CONN_META " (closed)");
    return 1;
}

/* stream:status() -> http status, content type */
static int stream_status(lua_State *L)
{
    stream_box *b = check_stream(L, 1);
    lua_pushinteger(L, vmdr_k8s_stream_status(b->x));
    lua_pushstring(L, vmdr_k8s_stream_content_type(b->x));
    return 2;
}

/* conn:buffered() -> bytes allocated for request bodies */
static int conn_buffered(lua_State *L)
{
    conn_box *b = check_conn(L, 1);
    lua_pushinteger(L, (lua_Integer)vmdr_k8s_conn_buffer(b->c));
    return 1;
}

/* stream:buffered() -> bytes allocated, bytes received and not yet consumed */
static int stream_buffered(lua_State *L)
{
    stream_box *b = check_stream(L, 1);
    size_t allocated, pending;
    vmdr_k8s_stream_buffer(b->x, &allocated, &pending);
    lua_pushinteger(L, (lua_Integer)allocated);
    lua_pushinteger(L, (lua_Integer)pending);
    return 2;
}

/* stream:next([timeout]) -> value | false (timeout seconds passed) | nil, err
 * No timeout (or 0): wait until a line comes, the stream ends or a signal arrives.
 * value is the next line decoded as JSON; err.code "eof" at the end of the stream,
 * "bad_response" for a line that is not JSON (the line is in err.line). */
static int stream_next(lua_State *L)
{
    stream_box *b = check_stream(L, 1);
    lua_Number t = luaL_optnumber(L, 2, 0);
    luaL_argcheck(L, t >= 0, 2, "must not be negative");
    const char *line;
    size_t len;
    vmdr_err err;
    vmdr_err_clear(&err);
    long ms = t > 0 ? (long)(t * 1000.0 + 0.5) : 0;
    if (t > 0 && ms == 0)
        ms = 1; /* a tiny wait is still a bounded one: 0 would mean "no deadline" */
    int r = vmdr_k8s_stream_next(b->x, ms, &line, &len, &err);
    if (r < 0)
        return vmdr_push_err(L, &err);
    if (r == 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (r == 2)
        return vmdr_push_fail(L, "eof", 0, "the server ended the stream");
    if (decode_push(L, line, len, &err) != 0) {
        lua_pushnil(L);
        vmdr_push_errtable(L, "bad_response", err.message, 0);
        lua_pushlstring(L, line, len > 4096 ? 4096 : len);
        lua_setfield(L, -2, "line");
        return 2;
    }
    return 1;
}

/* stream:rest([timeout]) -> string | nil, err: the rest of the body (an error Status) */
static int stream_rest(lua_State *L)
{
    stream_box *b = check_stream(L, 1);
    lua_Number t = luaL_optnumber(L, 2, 30);
    const char *body;
    size_t len;
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_k8s_stream_rest(b->x, (long)(t * 1000.0 + 0.5), &body, &len, &err) != 0)
        return vmdr_push_err(L, &err);
    lua_pushlstring(L, body, len);
    return 1;
}

/* stream:__gc() / stream:__close(): ends the transfer; idempotent */
static int stream_gc(lua_State *L)
{
    stream_box *b = luaL_checkudata(L, 1, STREAM_META);
    if (b->x) {
        vmdr_k8s_stream_free(b->x);
        b->x = NULL;
    }
    return 0;
}

/* stream:close() -> true */
static int stream_close(lua_State *L)
{
    stream_gc(L);
    lua_pushboolean(L, 1);
    return 1;
}

/* tostring(stream) -> "vmdr.k8s.Stream (0x...)" | "vmdr.k8s.Stream (closed)" */
static int stream_tostring(lua_State *L)
{
    stream_box *b = luaL_checkudata(L, 1, STREAM_META);
    if (b->x)
        lua_pushfstring(L, STREAM_META " (%p)", (void *)b->x);
    else
        lua_pushliteral(L, STREAM_META " (closed)");
    return 1;
}

/* k8s.base64_decode(s) -> string | nil, err(code="invalid") */
static int k8s_base64_decode(lua_State *L)
{
    size_t n, on;
    const char *s = luaL_checklstring(L, 1, &n);
    char *out;
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_k8s_base64_decode(&out, &on, s, n, &err) != 0)
        return vmdr_push_err(L, &err);
    lua_pushlstring(L, out, on);
    free(out);
    return 1;
}

/* k8s.base64_encode(s) -> string */
static int k8s_base64_encode(lua_State *L)
{
    size_t n, on;
    const char *s = luaL_checklstring(L, 1, &n);
    char *out = vmdr_k8s_base64_encode(s, n, &on);
    if (out == NULL)
        return luaL_error(L, "not enough memory");
    lua_pushlstring(L, out, on);
    free(out);
    return 1;
}

/* Frees a NULL-terminated string vector held by a box (a raise may come between). */
typedef struct strv_box {
    const char **v;
} strv_box;

/* __gc of a string vector box */
static int strv_gc(lua_State *L)
{
    strv_box *b = lua_touserdata(L, 1);
    free(b->v);
    b->v = NULL;
    return 0;
}

/* Pushes a box holding a vector of the strings of the list at idx (anchored there). */
static const char **check_strv(lua_State *L, int idx, const char *what)
{
    idx = lua_absindex(L, idx);
    lua_Integer n = luaL_len(L, idx);
    strv_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->v = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, strv_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    b->v = calloc((size_t)n + 1, sizeof *b->v);
    if (b->v == NULL)
        luaL_error(L, "not enough memory");
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            luaL_error(L, "%s[%d] must be a string", what, (int)i);
        b->v[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    return b->v;
}

extern char **environ;

/* add, plus a bare "K" (remove K) for each inherited variable whose value holds a
 * registered secret: a credential plugin needs the kubeconfig's env, not vmdr's Git
 * token (readable in /proc by the plugin's user, and in its core dumps). A variable
 * the kubeconfig sets itself is passed as set. The vector is anchored on the stack. */
static const char **drop_secret_env(lua_State *L, const char **add)
{
    size_t na = 0, ne = 0, o = 0;
    while (add[na])
        na++;
    while (environ && environ[ne])
        ne++;
    lua_createtable(L, (int)(na + ne), 0); /* stack: ... anchors */
    int anchors = lua_gettop(L);
    for (size_t i = 0; i < na; i++) {
        lua_pushstring(L, add[i]);
        lua_rawseti(L, anchors, (lua_Integer)++o);
    }
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        if (eq == NULL || !vmdr_secret_in(L, eq + 1, strlen(eq + 1)))
            continue;
        lua_pushlstring(L, environ[i], (size_t)(eq - environ[i]));
        lua_rawseti(L, anchors, (lua_Integer)++o);
    }
    return check_strv(L, anchors, "env");
}

/* k8s.exec(argv, env, timeout) -> { status=, stdout=, stderr= } | nil, err
 * argv: list of strings (no shell); env: list of "K=V" additions; timeout: seconds. */
static int k8s_exec(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Number t = luaL_optnumber(L, 3, 60);
    lua_settop(L, 3);
    const char **argv = check_strv(L, 1, "argv");
    const char **add = check_strv(L, 2, "env");
    luaL_argcheck(L, argv[0] != NULL, 1, "empty argv");
    const char **env = drop_secret_env(L, add);
    vmdr_k8s_exec_result res;
    vmdr_err err;
    vmdr_err_clear(&err);
    if (vmdr_k8s_exec(&res, argv, env, (long)(t * 1000.0), vmdr_interrupted, &err) != 0)
        return vmdr_push_err(L, &err);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, res.status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, res.out, res.out_len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, res.errout, res.err_len);
    lua_setfield(L, -2, "stderr");
    vmdr_k8s_exec_result_free(&res);
    return 1;
}

/* k8s.error(code, message [, status]) -> the DESIGN error table (for the Lua layer) */
static int k8s_error(lua_State *L)
{
    const char *code = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    lua_Integer status = luaL_optinteger(L, 3, 0);
    vmdr_push_errtable(L, code, msg, (int)status);
    return 1;
}

static const luaL_Reg conn_methods[] = {{"request", conn_request},
                                        {"stream", conn_stream},
                                        {"buffered", conn_buffered},
                                        {"set_client_cert", conn_set_client_cert},
                                        {"close", conn_close},
                                        {NULL, NULL}};
static const luaL_Reg conn_meta[] = {
    {"__gc", conn_gc}, {"__close", conn_gc}, {"__tostring", conn_tostring}, {NULL, NULL}};
static const luaL_Reg stream_methods[] = {{"status", stream_status},
                                          {"next", stream_next},
                                          {"buffered", stream_buffered},
                                          {"rest", stream_rest},
                                          {"close", stream_close},
                                          {NULL, NULL}};
static const luaL_Reg stream_meta[] = {
    {"__gc", stream_gc}, {"__close", stream_gc}, {"__tostring", stream_tostring}, {NULL, NULL}};
static const luaL_Reg k8s_funcs[] = {{"connect", k8s_connect},
                                     {"base64_decode", k8s_base64_decode},
                                     {"base64_encode", k8s_base64_encode},
                                     {"exec", k8s_exec},
                                     {"error", k8s_error},
                                     {NULL, NULL}};

int luaopen_vmdr_k8s(lua_State *L)
{
    vmdr_new_class(L, CONN_META, conn_meta, conn_methods);
    vmdr_new_class(L, STREAM_META, stream_meta, stream_methods);
    /* The public module is the Lua layer, built on these primitives. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "vmdr.k8s.client");
    lua_call(L, 1, 1); /* stack: client_module_factory */
    luaL_newlib(L, k8s_funcs);
    lua_call(L, 1, 1); /* stack: module */
    return 1;
}
