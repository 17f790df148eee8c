/* vmdr.log: levelled logging to stderr, text for people, JSON lines for machines.
 * Every line passes through the secret redactor before it is written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lutil.h"

enum { LV_DEBUG, LV_INFO, LV_WARN, LV_ERROR, LV_OFF };
static const char *const level_names[] = {"debug", "info", "warn", "error", "off", NULL};

typedef struct log_ctx {
    int level;
    int json;
    int color;
} log_ctx;

static const char LOG_KEY = 'l'; /* registry: the per-state log_ctx userdata */

static log_ctx *get_ctx(lua_State *L)
{
    log_ctx *c;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOG_KEY) == LUA_TUSERDATA) {
        c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c;
    }
    lua_pop(L, 1);
    c = lua_newuserdatauv(L, sizeof *c, 0);
    c->level = LV_INFO;
    c->json = 0;
    c->color = isatty(STDERR_FILENO) && getenv("NO_COLOR") == NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOG_KEY);
    return c;
}

/* Field names whose values are secrets by name, whatever their value. */
static int secret_name(const char *k)
{
    static const char *const names[] = {"token", "password", "passwd", "secret", "passphrase",
                                        "private_key", "key_data", "client-key", "authorization",
                                        "credential", NULL};
    for (int i = 0; names[i]; i++)
        if (strcasestr(k, names[i]))
            return 1;
    return 0;
}

static void add_json_string(luaL_Buffer *b, const char *s, size_t n)
{
    luaL_addchar(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': luaL_addstring(b, "\\\""); break;
        case '\\': luaL_addstring(b, "\\\\"); break;
        case '\n': luaL_addstring(b, "\\n"); break;
        case '\r': luaL_addstring(b, "\\r"); break;
        case '\t': luaL_addstring(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char esc[8];
                snprintf(esc, sizeof esc, "\\u%04x", c);
                luaL_addstring(b, esc);
            } else {
                luaL_addchar(b, (char)c);
            }
        }
    }
    luaL_addchar(b, '"');
}

/* Whether s holds a control character (C0 or DEL) other than those in allowed. */
static int has_control(const char *s, size_t n, const char *allowed)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 || c == 0x7f) && (c == 0 || strchr(allowed, c) == NULL))
            return 1;
    }
    return 0;
}

/* Text values with spaces, quotes or control characters are quoted and escaped, logfmt
 * style: a value from the API (a VM name, a server's message) can then neither move the
 * cursor with a terminal escape nor start a forged line with \r. */
static void add_text_value(luaL_Buffer *b, const char *s, size_t n)
{
    if (n > 0 && strcspn(s, " \t\n\"=") == n && !has_control(s, n, "")) {
        luaL_addlstring(b, s, n);
        return;
    }
    add_json_string(b, s, n);
}

/* A text-format message: line breaks and tabs stay (multi-line server messages read
 * better), every other control character is escaped as \u00XX. */
static void add_text_message(luaL_Buffer *b, const char *s, size_t n)
{
    if (!has_control(s, n, "\n\t")) {
        luaL_addlstring(b, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 || c == 0x7f) && c != '\n' && c != '\t') {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            luaL_addstring(b, esc);
        } else {
            luaL_addchar(b, (char)c);
        }
    }
}

/* Pushes the string form of value at idx (a field value). */
static const char *field_string(lua_State *L, int idx, size_t *n, int *is_json_literal)
{
    *is_json_literal = 0;
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
    case LUA_TNIL:
        *is_json_literal = 1;
        break;
    default:
        break;
    }
    return luaL_tolstring(L, idx, n);
}

static void emit(lua_State *L, log_ctx *c, int level, int msg_idx, int fields_idx)
{
    luaL_Buffer b;
    char ts[40];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);

    size_t ml;
    const char *msg = luaL_tolstring(L, msg_idx, &ml);
    int msgv = lua_gettop(L);
    luaL_buffinit(L, &b);
    if (c->json) {
        luaL_addstring(&b, "{\"time\":\"");
        luaL_addstring(&b, ts);
        luaL_addstring(&b, "\",\"level\":\"");
        luaL_addstring(&b, level_names[level]);
        luaL_addstring(&b, "\",\"msg\":");
        add_json_string(&b, msg, ml);
    } else {
        static const char *const colors[] = {"\033[2m", "\033[32m", "\033[33m", "\033[31m"};
        static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
        luaL_addstring(&b, ts + 11); /* HH:MM:SS.mmmZ: people read times, not dates */
        luaL_addchar(&b, ' ');
        if (c->color)
            luaL_addstring(&b, colors[level]);
        luaL_addstring(&b, tags[level]);
        if (c->color)
            luaL_addstring(&b, "\033[0m");
        luaL_addchar(&b, ' ');
        add_text_message(&b, msg, ml);
    }
    (void)msgv;
    if (fields_idx && lua_istable(L, fields_idx)) {
        /* sorted keys make lines stable for people and tests */
        lua_newtable(L);
        int keys = lua_gettop(L);
        int nk = 0;
        lua_pushnil(L);
        while (lua_next(L, fields_idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING) {
                lua_pushvalue(L, -1);
                lua_rawseti(L, keys, ++nk);
            }
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, keys);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        for (int i = 1; i <= nk; i++) {
            lua_rawgeti(L, keys, i);
            const char *k = lua_tostring(L, -1);
            lua_gettable(L, fields_idx);
            size_t vl;
            int lit;
            const char *v = field_string(L, -1, &vl, &lit);
            if (secret_name(k)) {
                v = "***";
                vl = 3;
                lit = 0;
            }
            if (c->json) {
                luaL_addchar(&b, ',');
                add_json_string(&b, k, strlen(k));
                luaL_addchar(&b, ':');
                if (lit)
                    luaL_addlstring(&b, v, vl);
                else
                    add_json_string(&b, v, vl);
            } else {
                luaL_addchar(&b, ' ');
                luaL_addstring(&b, k);
                luaL_addchar(&b, '=');
                add_text_value(&b, v, vl);
            }
            lua_pop(L, 2);
        }
        lua_pop(L, 1); /* keys */
    }
    luaL_addstring(&b, c->json ? "}\n" : "\n");
    luaL_pushresult(&b);
    size_t n;
    const char *line = lua_tolstring(L, -1, &n);
    vmdr_push_redacted(L, line, n);
    line = lua_tolstring(L, -1, &n);
    fwrite(line, 1, n, stderr);
    fflush(stderr);
    lua_pop(L, 3); /* redacted, line, msg */
}

static int log_at(lua_State *L, int level)
{
    log_ctx *c = get_ctx(L);
    if (level < c->level)
        return 0;
    luaL_checkany(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    emit(L, c, level, 1, lua_isnoneornil(L, 2) ? 0 : 2);
    return 0;
}

/* log.debug(msg [, fields]) ... log.error(msg [, fields]) */
static int log_debug(lua_State *L) { return log_at(L, LV_DEBUG); }
static int log_info(lua_State *L) { return log_at(L, LV_INFO); }
static int log_warn(lua_State *L) { return log_at(L, LV_WARN); }
static int log_error(lua_State *L) { return log_at(L, LV_ERROR); }

/* log.configure{ level = "debug"|"info"|"warn"|"error"|"off", format = "text"|"json", color = bool } */
static int log_configure(lua_State *L)
{
    static const char *const formats[] = {"text", "json", NULL};
    log_ctx *c = get_ctx(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "level") != LUA_TNIL)
        c->level = luaL_checkoption(L, -1, NULL, level_names);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "format") != LUA_TNIL)
        c->json = luaL_checkoption(L, -1, NULL, formats);
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "color") != LUA_TNIL)
        c->color = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return 0;
}

/* log.level() -> current level name */
static int log_level(lua_State *L)
{
    lua_pushstring(L, level_names[get_ctx(L)->level]);
    return 1;
}

/* log.progress(label, done, total): a one-line progress bar on stderr, redrawn in
 * place, only when stderr is a terminal and the format is text (machines get the
 * summary instead). done == total ends the line. */
static int log_progress(lua_State *L)
{
    const char *label = luaL_checkstring(L, 1);
    lua_Integer done = luaL_checkinteger(L, 2), total = luaL_checkinteger(L, 3);
    log_ctx *c = get_ctx(L);
    if (c->json || !isatty(STDERR_FILENO) || total <= 0)
        return 0;
    if (done > total)
        done = total;
    int width = 30, fill = (int)(done * width / total);
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s [%s] %lld/%lld", label, bar, (long long)done, (long long)total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

/* log.format() -> "text" | "json" */
static int log_format(lua_State *L)
{
    lua_pushstring(L, get_ctx(L)->json ? "json" : "text");
    return 1;
}

/* log.enabled(level) -> boolean */
static int log_enabled(lua_State *L)
{
    int lv = luaL_checkoption(L, 1, NULL, level_names);
    lua_pushboolean(L, lv >= get_ctx(L)->level);
    return 1;
}

/* log.secret(value): never print value again, anywhere in this process */
static int log_secret(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    vmdr_secret_add(L, s, n);
    return 0;
}

/* log.redact(s) -> s with every registered secret replaced by "***" */
static int log_redact(lua_State *L)
{
    size_t n;
    const char *s = luaL_tolstring(L, 1, &n);
    vmdr_push_redacted(L, s, n);
    return 1;
}

static const luaL_Reg log_funcs[] = {
    {"debug", log_debug},     {"info", log_info},       {"warn", log_warn},
    {"error", log_error},     {"configure", log_configure}, {"level", log_level},
    {"enabled", log_enabled}, {"format", log_format}, {"progress", log_progress}, {"secret", log_secret},   {"redact", log_redact},
    {NULL, NULL}};

int luaopen_vmdr_log(lua_State *L)
{
    luaL_newlib(L, log_funcs);
    return 1;
}
