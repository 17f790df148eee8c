/* vmdr.mem: the process's memory, for long-running workflows (the monitor).
 *
 *   mem.rss()   -> resident set size in bytes | nil, err   (from /proc/self/statm)
 *   mem.long_running() -> true | false (not glibc, or a sanitizer's allocator)
 *               for a process that lives for weeks (the monitor):
 *               - fixed glibc malloc thresholds: blocks of 256 KiB and more are mapped on
 *                 their own and unmapped when freed, the heap's top is given back beyond
 *                 1 MiB free. glibc's default raises both thresholds to the largest block
 *                 freed so far, after which big buffers (a list's, a pack's) come from the
 *                 heap and their pages stay with the process.
 *               - no transparent huge pages (prctl PR_SET_THP_DISABLE): the Lua pool's
 *                 regions ask for them to make a big decode's page faults cheaper, but
 *                 khugepaged later folds a region whose chunks were given back into one
 *                 resident 2 MiB page again (it does so with a single page in use), so a
 *                 long-lived process's RSS creeps up by 2 MiB steps.
 *   mem.stats() -> { lua = bytes the Lua state holds (its own count),
 *                    pool = { regions, chunks_used, chunks_empty, blocks,
 *                             asked, pending, fast, prefaulted, ready (mem.prefault's
 *                             regions, runtime/alloc.h) } | nil (no pool),
 *                    malloc = { in_use, free, mapped } | nil (not glibc) }
 *               where the memory is, for a long-running process's logs and for soaks:
 *               RSS alone cannot tell live objects from kept free pages.
 *   mem.prefault(bytes) -> true | false (no pool: malloc or a sanitizer's allocator)
 *               about `bytes` of Lua objects are coming (a big decode): the pool's thread
 *               maps and faults in the memory they need on another CPU, ahead of use
 *               (runtime/alloc.h vmdr_pool_prefault); mem.prefault(0) when done gives
 *               back what was made and not used. vmdr.k8s does this for every list.
 *   mem.trim()  -> true   freed heap memory given back to the system (the Lua state's pool,
 *                         runtime/alloc.h, and glibc malloc_trim)
 *               -> false  this allocator cannot (not glibc, or a sanitizer's allocator)
 *
 * Why: after the monitor's full converge (tens of thousands of objects decoded, rendered and
 * written) the Lua heap is collected, but the allocator keeps the freed pages, and the
 * steady-state RSS would stay at the converge's peak. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <string.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "alloc.h"
#include "lutil.h"

/* mem.rss() -> bytes | nil, err */
static int mem_rss(lua_State *L)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f)
        return vmdr_push_fail(L, "unsupported", errno, "/proc/self/statm: %s", strerror(errno));
    int n = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (n != 2)
        return vmdr_push_fail(L, "unsupported", 0, "/proc/self/statm: unexpected content");
    lua_pushinteger(L, (lua_Integer)resident * (lua_Integer)sysconf(_SC_PAGESIZE));
    return 1;
}

#if defined(__SANITIZE_ADDRESS__)
#define VMDR_CAN_TRIM 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMDR_CAN_TRIM 0
#endif
#endif
#ifndef VMDR_CAN_TRIM
#ifdef __GLIBC__
#define VMDR_CAN_TRIM 1
#else
#define VMDR_CAN_TRIM 0
#endif
#endif

/* mem.trim() -> true | false (cannot here) */
static int mem_trim(lua_State *L)
{
#if VMDR_CAN_TRIM
    vmdr_pool *pool = vmdr_lua_pool(L);
    if (pool)
        vmdr_pool_trim(pool); /* the host's pool: its cached empty chunks */
    malloc_trim(0);
#endif
    lua_pushboolean(L, VMDR_CAN_TRIM);
    return 1;
}

/* t[key] = v for the table on top of the stack */
static void set_size(lua_State *L, const char *key, size_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, key);
}

/* mem.stats() -> { lua =, pool = {...} | nil, malloc = {...} | nil } */
static int mem_stats(lua_State *L)
{
    size_t lua_bytes = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
    lua_createtable(L, 0, 3);
    set_size(L, "lua", lua_bytes);
    vmdr_pool *pool = vmdr_lua_pool(L);
    if (pool) {
        vmdr_pool_stats ps;
        vmdr_pool_get_stats(pool, &ps);
        lua_createtable(L, 0, 9); /* stack: stats pool */
        set_size(L, "regions", ps.regions);
        set_size(L, "chunks_used", ps.chunks_used);
        set_size(L, "chunks_empty", ps.chunks_empty);
        set_size(L, "blocks", ps.blocks);
        set_size(L, "asked", ps.asked);
        set_size(L, "pending", ps.pending);
        set_size(L, "fast", ps.fast);
        set_size(L, "prefaulted", ps.prefaulted);
        set_size(L, "ready", ps.ready);
        lua_setfield(L, -2, "pool");
    }
#if VMDR_CAN_TRIM && defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    lua_createtable(L, 0, 3); /* stack: stats malloc */
    set_size(L, "in_use", mi.uordblks);
    set_size(L, "free", mi.fordblks);
    set_size(L, "mapped", mi.hblkhd);
    lua_setfield(L, -2, "malloc");
#endif
    return 1;
}

/* mem.prefault(bytes) -> true | false (no pool here) */
static int mem_prefault(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0, 1, "must not be negative");
    vmdr_pool *pool = vmdr_lua_pool(L);
    if (pool)
        vmdr_pool_prefault(pool, (size_t)n);
    lua_pushboolean(L, pool != NULL);
    return 1;
}

/* mem.long_running() -> true | false (cannot here) */
static int mem_long_running(lua_State *L)
{
#if VMDR_CAN_TRIM
    /* Setting either fixes both (glibc stops adjusting them dynamically). */
    int ok = mallopt(M_MMAP_THRESHOLD, 256 * 1024) == 1 && mallopt(M_TRIM_THRESHOLD, 1024 * 1024) == 1;
#ifdef PR_SET_THP_DISABLE
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
        ok = 0;
#endif
    lua_pushboolean(L, ok);
#else
    lua_pushboolean(L, 0);
#endif
    return 1;
}

static const luaL_Reg mem_funcs[] = {
    {"long_running", mem_long_running},
    {"prefault", mem_prefault},
    {"rss", mem_rss},
    {"stats", mem_stats},
    {"trim", mem_trim},
    {NULL, NULL},
};

int luaopen_vmdr_mem(lua_State *L)
{
    luaL_newlib(L, mem_funcs);
    lua_pushboolean(L, VMDR_CAN_TRIM);
    lua_setfield(L, -2, "can_trim"); /* false in sanitizer builds: their allocator keeps pages */
    return 1;
}
