/* vmdr_pool: the allocator of vmdr-run's Lua state (a lua_Alloc), a size-class pool for
 * small blocks in front of malloc.
 *
 * Why: decoding a Kubernetes list makes about a million small Lua objects (tables,
 * strings, node arrays). Through glibc malloc each pays an 8-byte header and rounding to
 * 16 bytes (about 16 MiB for a 20 MiB list: peak RSS was 4.05x the JSON), a 4 KiB page
 * fault per page of fresh heap, and malloc's bookkeeping. Lua tells the allocator the
 * size of every block it frees or resizes, so a pool needs no header at all: blocks of up
 * to VMDR_POOL_MAX bytes live in 64 KiB chunks of one size class (8-byte steps), carved
 * from 2 MiB regions that are offered to the kernel as transparent huge pages. Larger
 * blocks go to malloc.
 *
 * One pool belongs to one lua_State (one thread at a time, like the state). Empty chunks
 * are kept for reuse up to a small cache, the rest are given back to the kernel
 * (MADV_DONTNEED), so RSS falls after a peak as it does with malloc_trim.
 * No Lua header needed: vmdr_pool_lalloc has the lua_Alloc signature. */
#ifndef VMDR_ALLOC_H
#define VMDR_ALLOC_H

#include <stddef.h>

#define VMDR_POOL_MAX 512 /* largest pooled block, bytes */

typedef struct vmdr_pool vmdr_pool;

/* Whether vmdr-run's state uses the pool: not in a sanitizer build, where every Lua
 * object must stay a malloc block that the sanitizer watches (the pool's own tests still
 * run there). */
#if defined(__SANITIZE_ADDRESS__)
#define VMDR_POOL_FOR_LUA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMDR_POOL_FOR_LUA 0
#endif
#endif
#ifndef VMDR_POOL_FOR_LUA
#define VMDR_POOL_FOR_LUA 1
#endif

/* A new pool, or NULL (out of memory). */
vmdr_pool *vmdr_pool_new(void);
/* Frees every region. Call after lua_close of the state that used it. */
void vmdr_pool_delete(vmdr_pool *p);
/* The state is being closed: every block is about to be freed, so pooled blocks are not
 * freed one by one (touching a million blocks to link them into free lists costs more
 * than the rest of lua_close); vmdr_pool_delete unmaps the regions at once. */
void vmdr_pool_closing(vmdr_pool *p);
/* Gives the cached empty chunks back to the kernel. Returns the bytes released. */
size_t vmdr_pool_trim(vmdr_pool *p);

/* About `bytes` of small blocks are about to be allocated (a list of that size is being
 * decoded): a thread of the pool maps the regions they need beyond the pool's free room
 * and faults their pages in on another CPU, so the Lua thread finds them ready instead of
 * stopping for the kernel to zero each fresh page. That pays when fresh pages are slow:
 * on this VM, after an idle pause the host has taken freed memory back and a 10,000-VM
 * list spent 40% of its CPU in page zeroing (docs/bench/k8s.md). When regions come fast
 * twice in a row (under 1 ms for 2 MiB) the thread stops there: the Lua thread does better
 * zeroing its own pages, which then sit in its CPU's cache. The Lua thread never waits
 * for it: a region not ready yet is mapped as before. At most 256 MiB ahead; nothing on
 * a single CPU. bytes = 0: the decode is over; regions made and not taken are unmapped. */
void vmdr_pool_prefault(vmdr_pool *p, size_t bytes);

/* The lua_Alloc: ud is the pool. */
void *vmdr_pool_lalloc(void *ud, void *ptr, size_t osize, size_t nsize);

typedef struct vmdr_pool_stats {
    size_t regions;      /* 2 MiB regions mapped */
    size_t chunks_used;  /* chunks holding at least one block */
    size_t chunks_empty; /* empty chunks cached (resident) */
    size_t blocks;       /* pooled blocks in use */
    size_t asked;        /* regions vmdr_pool_prefault asked its thread to make */
    size_t pending;      /* of those, still to make or being made */
    size_t fast;         /* requests its thread stopped early: fresh pages came fast */
    size_t prefaulted;   /* regions the Lua thread took ready-made */
    size_t ready;        /* regions made ahead, not taken yet */
} vmdr_pool_stats;
void vmdr_pool_get_stats(vmdr_pool *p, vmdr_pool_stats *out);

#endif
