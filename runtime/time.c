/* vmdr.time: clocks, interruptible sleep, RFC 3339 formatting and parsing. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lutil.h"

/* time.now() -> seconds since the epoch (float, wall clock) */
static int time_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* time.monotonic() -> seconds (float) of a clock that never jumps */
static int time_monotonic(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* time.sleep(seconds) -> true | nil, err(code="interrupted") */
static int time_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    luaL_argcheck(L, s >= 0, 1, "must not be negative");
    struct timespec req, rem;
    req.tv_sec = (time_t)s;
    req.tv_nsec = (long)((s - (lua_Number)req.tv_sec) * 1e9);
    while (!vmdr_interrupted()) {
        /* slice the wait so a signal arriving between checks is seen within 100 ms */
        struct timespec slice = req;
        if (slice.tv_sec > 0 || slice.tv_nsec > 100000000L) {
            slice.tv_sec = 0;
            slice.tv_nsec = 100000000L;
        }
        if (nanosleep(&slice, &rem) != 0 && errno == EINTR)
            continue;
        /* subtract the slice */
        req.tv_sec -= slice.tv_sec;
        req.tv_nsec -= slice.tv_nsec;
        if (req.tv_nsec < 0) {
            req.tv_nsec += 1000000000L;
            req.tv_sec -= 1;
        }
        if (req.tv_sec < 0 || (req.tv_sec == 0 && req.tv_nsec == 0)) {
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    return vmdr_push_fail(L, "interrupted", vmdr_interrupt_signal(), "sleep interrupted by signal");
}

/* time.format(t) -> "2026-11-26T13:00:00Z" (UTC, RFC 3339; fractions when t has them) */
static int time_format(lua_State *L)
{
    lua_Number t = luaL_optnumber(L, 1, (lua_Number)time(NULL));
    time_t sec = (time_t)t;
    struct tm tm;
    char buf[64];
    if (gmtime_r(&sec, &tm) == NULL)
        return luaL_argerror(L, 1, "time out of range");
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    lua_Number frac = t - (lua_Number)sec;
    if (frac > 0.0005)
        snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(frac * 1000));
    else
        snprintf(buf + n, sizeof buf - n, "Z");
    lua_pushstring(L, buf);
    return 1;
}

/* time.parse(s) -> seconds since the epoch | nil, err(code="invalid")
 * Accepts RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). */
static int time_parse(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (p == NULL)
        return vmdr_push_fail(L, "invalid", 0, "not an RFC 3339 time: '%s'", s);
    double frac = 0;
    if (*p == '.') {
        double scale = 0.1;
        p++;
        while (*p >= '0' && *p <= '9') {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return vmdr_push_fail(L, "invalid", 0, "bad zone offset in '%s'", s);
        off = (hh * 3600L + mm * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return vmdr_push_fail(L, "invalid", 0, "time '%s' has no zone", s);
    }
    if (*p != '\0')
        return vmdr_push_fail(L, "invalid", 0, "trailing characters in time '%s'", s);
    time_t t = timegm(&tm);
    lua_pushnumber(L, (lua_Number)(t - off) + frac);
    return 1;
}

static const luaL_Reg time_funcs[] = {{"now", time_now},       {"monotonic", time_monotonic},
                                      {"sleep", time_sleep},   {"format", time_format},
                                      {"parse", time_parse},   {NULL, NULL}};

int luaopen_vmdr_time(lua_State *L)
{
    luaL_newlib(L, time_funcs);
    return 1;
}
