/* The Lua state's pool allocator (runtime/alloc.c): blocks keep their bytes across
 * resizes between classes and between the pool and malloc, never overlap, are 8-byte
 * aligned; emptied chunks are cached or given back; a Lua state runs on it. */
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "alloc.h"
#include "check.h"

#define NLIVE 4000

typedef struct live {
    unsigned char *p;
    size_t n;
    unsigned char tag;
} live;

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Sizes around the class edges and the pool/malloc boundary. */
static size_t rnd_size(void)
{
    switch (rnd(4)) {
    case 0:
        return 1 + rnd(64);
    case 1:
        return VMDR_POOL_MAX - 8 + rnd(17); /* 504..520: both sides of the boundary */
    case 2:
        return 1 + rnd(VMDR_POOL_MAX);
    default:
        return 1 + rnd(3000);
    }
}

static int intact(const live *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->p[i] != (unsigned char)(l->tag + i))
            return 0;
    return 1;
}

static void fill(live *l)
{
    for (size_t i = 0; i < l->n; i++)
        l->p[i] = (unsigned char)(l->tag + i);
}

int main(void)
{
    vmdr_pool *p = vmdr_pool_new();
    CHECK(p != NULL, "no pool (this test is not built with a sanitizer)");
    if (p == NULL)
        return check_result();
    static live lv[NLIVE];
    int bad = 0;

    /* random alloc / resize / free against a model of every live block's bytes */
    for (long op = 0; op < 300000 && !bad; op++) {
        live *l = &lv[rnd(NLIVE)];
        if (l->p == NULL) {
            l->n = rnd_size();
            l->tag = (unsigned char)rnd(256);
            l->p = vmdr_pool_lalloc(p, NULL, 5 /* a type tag, not a size */, l->n);
            CHECK(l->p != NULL, "alloc %zu failed", l->n);
            CHECK(((uintptr_t)l->p & 7) == 0, "block %p not 8-byte aligned", (void *)l->p);
            fill(l);
        } else if (rnd(3) == 0) {
            bad |= !intact(l);
            vmdr_pool_lalloc(p, l->p, l->n, 0);
            l->p = NULL;
        } else {
            bad |= !intact(l);
            size_t n = rnd_size(), keep = n < l->n ? n : l->n;
            unsigned char *q = vmdr_pool_lalloc(p, l->p, l->n, n);
            CHECK(q != NULL, "resize %zu -> %zu failed", l->n, n);
            for (size_t i = 0; i < keep; i++)
                bad |= q[i] != (unsigned char)(l->tag + i);
            l->p = q;
            l->n = n;
            fill(l);
        }
    }
    CHECK(!bad, "a block's bytes changed under it (overlap or a lost copy)");
    for (int i = 0; i < NLIVE; i++) {
        if (lv[i].p) {
            CHECK(intact(&lv[i]), "block %d changed", i);
            vmdr_pool_lalloc(p, lv[i].p, lv[i].n, 0);
            lv[i].p = NULL;
        }
    }
    vmdr_pool_stats st;
    vmdr_pool_get_stats(p, &st);
    CHECK(st.blocks == 0, "%zu blocks still counted after freeing all", st.blocks);
    /* at most one kept chunk per class, and the cache is bounded */
    CHECK(st.chunks_used <= VMDR_POOL_MAX / 8, "%zu chunks still in use", st.chunks_used);
    CHECK(st.chunks_empty <= 32, "%zu empty chunks cached", st.chunks_empty);
    vmdr_pool_trim(p);
    vmdr_pool_get_stats(p, &st);
    CHECK(st.chunks_empty == 0, "trim left %zu cached chunks", st.chunks_empty);

    /* a block allocated and freed over and over stays in one chunk: no new regions */
    size_t regions = st.regions;
    for (int i = 0; i < 100000; i++) {
        void *b = vmdr_pool_lalloc(p, NULL, 0, 48);
        CHECK(b != NULL, "alloc failed");
        vmdr_pool_lalloc(p, b, 48, 0);
    }
    vmdr_pool_get_stats(p, &st);
    CHECK(st.regions == regions, "regions grew from %zu to %zu", regions, st.regions);

    /* a peak of small blocks, freed: emptied chunks beyond the cache are given back and
     * reused by the next peak instead of new regions */
    enum { PEAK = 200000 };
    void **many = malloc(PEAK * sizeof *many);
    vmdr_pool_get_stats(p, &st);
    size_t kept = st.chunks_used; /* one per class used so far may stay */
    for (int i = 0; i < PEAK; i++)
        many[i] = vmdr_pool_lalloc(p, NULL, 0, 40);
    vmdr_pool_get_stats(p, &st);
    size_t peak_regions = st.regions;
    CHECK(st.blocks == PEAK, "%zu blocks counted, want %d", st.blocks, PEAK);
    for (int i = 0; i < PEAK; i++)
        vmdr_pool_lalloc(p, many[i], 40, 0);
    vmdr_pool_get_stats(p, &st);
    CHECK(st.chunks_used <= kept + 1 && st.chunks_empty <= 32,
          "after the peak: %zu used (%zu before), %zu cached", st.chunks_used, kept,
          st.chunks_empty);
    for (int i = 0; i < PEAK; i++)
        many[i] = vmdr_pool_lalloc(p, NULL, 0, 24);
    vmdr_pool_get_stats(p, &st);
    CHECK(st.regions == peak_regions, "a second peak mapped new regions (%zu -> %zu)",
          peak_regions, st.regions);
    for (int i = 0; i < PEAK; i++)
        vmdr_pool_lalloc(p, many[i], 24, 0);

    /* sparse survivors: trim gives back the pages holding only free blocks, the
     * survivors keep their bytes, and allocation goes on correctly afterwards */
    for (int i = 0; i < PEAK; i++) {
        many[i] = vmdr_pool_lalloc(p, NULL, 0, 8 + (size_t)(i % 5) * 40);
        memset(many[i], (unsigned char)i, 8 + (size_t)(i % 5) * 40);
    }
    for (int i = 0; i < PEAK; i++) {
        if (i % 97 != 0) {
            vmdr_pool_lalloc(p, many[i], 8 + (size_t)(i % 5) * 40, 0);
            many[i] = NULL;
        }
    }
    size_t released = vmdr_pool_trim(p);
    CHECK(released > (size_t)4 << 20, "trim gave back only %zu bytes", released);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < PEAK; i++) {
            size_t n = 8 + (size_t)(i % 5) * 40;
            if (many[i] == NULL) {
                many[i] = vmdr_pool_lalloc(p, NULL, 0, n);
                memset(many[i], (unsigned char)i, n);
                continue;
            }
            unsigned char *b = many[i];
            int same = 1;
            for (size_t k = 0; k < n; k++)
                same &= b[k] == (unsigned char)i;
            CHECK(same, "block %d changed after trim (round %d)", i, round);
            if (round == 0 && i % 3 == 0) {
                vmdr_pool_lalloc(p, many[i], n, 0);
                many[i] = NULL;
            }
        }
        vmdr_pool_trim(p);
    }
    for (int i = 0; i < PEAK; i++)
        if (many[i])
            vmdr_pool_lalloc(p, many[i], 8 + (size_t)(i % 5) * 40, 0);
    vmdr_pool_get_stats(p, &st);
    CHECK(st.blocks == 0, "%zu blocks counted after freeing all", st.blocks);
    vmdr_pool_trim(p);
    vmdr_pool_get_stats(p, &st);
    CHECK(st.chunks_used == 0 && st.chunks_empty == 0, "after trim: %zu used, %zu cached",
          st.chunks_used, st.chunks_empty);
    free(many);
    vmdr_pool_delete(p);

    /* prefault: regions made on the pool's thread while blocks come and go, cancelled
     * half-way in odd rounds; in the last round the pool is deleted while its thread may
     * still be at work (the delete joins it) */
    cpu_set_t cpus;
    int multi = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) >= 2;
    for (int round = 0; round < 4; round++) {
        enum { N = 20000 };
        live *ls = calloc(N, sizeof *ls);
        CHECK(ls != NULL, "calloc");
        p = vmdr_pool_new();
        vmdr_pool_prefault(p, (size_t)(8 + 8 * round) << 20);
        for (int i = 0; i < N; i++) {
            ls[i].n = 1 + rnd(VMDR_POOL_MAX);
            ls[i].p = vmdr_pool_lalloc(p, NULL, 0, ls[i].n);
            ls[i].tag = (unsigned char)(i * 7 + round);
            fill(&ls[i]);
            if (i == N / 2 && round % 2)
                vmdr_pool_prefault(p, 0);
        }
        int lost = 0;
        for (int i = 0; i < N; i++)
            lost += !intact(&ls[i]);
        CHECK(lost == 0, "round %d: %d blocks lost their bytes", round, lost);
        vmdr_pool_get_stats(p, &st);
        CHECK(!multi || st.asked >= 4, "round %d: asked for %zu regions", round, st.asked);
        CHECK(multi || st.asked == 0, "one CPU: asked for %zu regions", st.asked);
        CHECK(st.prefaulted <= st.asked, "round %d: took %zu of %zu", round, st.prefaulted,
              st.asked);
        if (round == 3) {
            vmdr_pool_prefault(p, (size_t)128 << 20);
            vmdr_pool_delete(p);
            free(ls);
            continue;
        }
        for (int i = 0; i < N; i++)
            vmdr_pool_lalloc(p, ls[i].p, ls[i].n, 0);
        vmdr_pool_prefault(p, 0);
        vmdr_pool_trim(p);
        vmdr_pool_get_stats(p, &st);
        CHECK(st.blocks == 0 && st.chunks_used == 0 && st.ready == 0,
              "round %d after trim: %zu blocks, %zu chunks, %zu ready", round, st.blocks,
              st.chunks_used, st.ready);
        vmdr_pool_delete(p);
        free(ls);
    }

    /* a Lua state on the pool: tables, strings, growth and collection */
    p = vmdr_pool_new();
    lua_State *L = lua_newstate(vmdr_pool_lalloc, p);
    CHECK(L != NULL, "lua_newstate on the pool failed");
    luaL_openlibs(L);
    const char *script =
        "local t = {}\n"
        "for i = 1, 50000 do t[i] = { i, tostring(i) .. string.rep('x', i % 700) } end\n"
        "for i = 1, 50000, 2 do t[i] = nil end\n"
        "collectgarbage('collect')\n"
        "local s = 0\n"
        "for i = 2, 50000, 2 do s = s + t[i][1] + #t[i][2] end\n"
        "return s";
    int rc = luaL_dostring(L, script);
    CHECK(rc == LUA_OK, "script: %s", lua_tostring(L, -1));
    long long want = 0;
    for (long long i = 2; i <= 50000; i += 2) {
        char buf[32];
        want += i + snprintf(buf, sizeof buf, "%lld", i) + i % 700;
    }
    CHECK(rc == LUA_OK && lua_tointeger(L, -1) == want, "sum %lld, want %lld",
          (long long)lua_tointeger(L, -1), want);
    vmdr_pool_closing(p);
    lua_close(L);

    vmdr_pool_delete(p);
    return check_result();
}
