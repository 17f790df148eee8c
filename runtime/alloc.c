/* vmdr_pool: a size-class pool for the Lua state's small blocks (see alloc.h). */
#include "alloc.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older kernels say EINVAL and we touch pages */
#endif

#define CHUNK_SIZE ((size_t)64 << 10)
#define REGION_SIZE ((size_t)2 << 20) /* one transparent huge page; a multiple of CHUNK_SIZE */
#define CHUNK_HDR 64                  /* bytes of a chunk before its first block */
#define NCLASS (VMDR_POOL_MAX / 8)    /* class k holds blocks of (k + 1) * 8 bytes */
#define CACHE_MAX 32                  /* empty chunks kept resident for reuse (2 MiB) */
#define READY_MAX 128                 /* prefaulted regions waiting at most (256 MiB) */
#define FAST_REGION_MS 1.0 /* made faster (about 0.25 ms here, 4-12 ms after a pause)... */
#define FAST_REGIONS 2     /* ...so many times in a row: the kernel's pages are cheap now */

typedef struct chunk {
    struct chunk *next, *prev; /* the class's chunks with room, or the empty cache */
    void *free;                /* freed blocks, linked through their first word */
    char *bump;                /* never-used space starts here */
    unsigned used;             /* blocks handed out and not freed */
    unsigned short cls;
    unsigned char listed; /* on its class's list */
} chunk;

struct vmdr_pool {
    chunk *avail[NCLASS]; /* per class: chunks with room (a free block or bump space) */
    chunk *empty;         /* empty chunks, still resident */
    size_t nempty;
    chunk **clean; /* empty chunks whose pages went back to the kernel */
    size_t nclean, capclean;
    char *carve, *carve_end; /* the not yet used part of the newest region */
    void **regions;
    size_t nregions, capregions;
    size_t blocks, chunks_used;
    int closing;
    /* The prefault thread (vmdr_pool_prefault): it maps regions and faults their pages in
     * on another CPU while the Lua thread decodes; the Lua thread takes them from ready.
     * Everything below is under mu, except th and started (the Lua thread's only). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int started, stop;
    size_t want;     /* regions still to make */
    size_t inflight; /* regions being made now */
    unsigned gen;    /* bumped by a cancel: a region made for an older one is unmapped */
    void *ready[READY_MAX];
    size_t nready;
    size_t prefaulted; /* regions taken from ready, ever (stats) */
    size_t asked;      /* regions asked for, ever (stats) */
    size_t fast;       /* requests stopped early: the pages came fast (stats) */
    unsigned fast_run; /* regions made fast in a row */
};

static chunk *chunk_of(const void *b)
{
    return (chunk *)((uintptr_t)b & ~(uintptr_t)(CHUNK_SIZE - 1));
}

static size_t class_size(unsigned cls)
{
    return ((size_t)cls + 1) * 8;
}

static void avail_unlink(vmdr_pool *p, chunk *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        p->avail[c->cls] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->listed = 0;
}

static void avail_push(vmdr_pool *p, chunk *c)
{
    c->prev = NULL;
    c->next = p->avail[c->cls];
    if (c->next)
        c->next->prev = c;
    p->avail[c->cls] = c;
    c->listed = 1;
}

/* Maps a region aligned to its size (so a block's chunk is found by masking its address)
 * and asks for huge pages: a 20 MiB list then faults in 2 MiB at a time, not 4 KiB.
 * NULL when out of memory. Safe on any thread. */
static char *region_map(void)
{
    size_t len = 2 * REGION_SIZE;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    char *a = (char *)(((uintptr_t)m + REGION_SIZE - 1) & ~(uintptr_t)(REGION_SIZE - 1));
    if (a > m)
        munmap(m, (size_t)(a - m));
    if (m + len > a + REGION_SIZE)
        munmap(a + REGION_SIZE, (size_t)(m + len - (a + REGION_SIZE)));
#ifdef MADV_HUGEPAGE
    madvise(a, REGION_SIZE, MADV_HUGEPAGE); /* advice only: without THP, 4 KiB pages */
#endif
    return a;
}

/* A region prefaulted on the other thread, or NULL when none is ready. */
static char *ready_take(vmdr_pool *p)
{
    char *a = NULL;
    if (!p->started)
        return NULL;
    pthread_mutex_lock(&p->mu);
    if (p->nready > 0) {
        a = p->ready[--p->nready];
        p->prefaulted++;
    }
    pthread_mutex_unlock(&p->mu);
    return a;
}

static int region_new(vmdr_pool *p)
{
    if (p->nregions == p->capregions) {
        size_t cap = p->capregions ? p->capregions * 2 : 16;
        void **r = realloc(p->regions, cap * sizeof *r);
        if (r == NULL)
            return -1;
        p->regions = r;
        p->capregions = cap;
    }
    /* one made ahead if there is one; never a wait for the thread */
    char *a = ready_take(p);
    if (a == NULL && (a = region_map()) == NULL)
        return -1;
    p->regions[p->nregions++] = a;
    p->carve = a;
    p->carve_end = a + REGION_SIZE;
    return 0;
}

/* Faults every page of a new region in, as zeroes (pool memory that was never handed
 * out must read as zero: vmdr_pool_trim tells carved chunks by their header). */
static void populate(char *a)
{
    if (madvise(a, REGION_SIZE, MADV_POPULATE_WRITE) == 0)
        return;
    for (size_t i = 0; i < REGION_SIZE; i += 4096)
        ((volatile char *)a)[i] = 0;
}

static void *prefault_main(void *arg)
{
    vmdr_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->want == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        p->want--;
        p->inflight++;
        unsigned gen = p->gen;
        pthread_mutex_unlock(&p->mu);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char *a = region_map();
        if (a)
            populate(a);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        pthread_mutex_lock(&p->mu);
        p->inflight--;
        /* Fresh pages that come fast: the kernel had them ready (on this VM, memory the
         * host still backs). Then the Lua thread is better off faulting its own: the
         * page it has just zeroed is still in its CPU's cache, one zeroed here is not
         * (a list took 5% longer with every region made here). Made here they pay only
         * when they are slow: memory the host took back while the machine was idle. One
         * fast region proves little (a slow run has some), two in a row stop it. */
        if (a == NULL || ms >= FAST_REGION_MS)
            p->fast_run = 0;
        else if (++p->fast_run == FAST_REGIONS && gen == p->gen && p->want > 0) {
            p->want = 0;
            p->fast++;
        }
        if (a == NULL) {
            p->want = 0; /* out of memory: the Lua thread maps its own (and fails itself) */
        } else if (p->stop || gen != p->gen || p->nready == READY_MAX) {
            munmap(a, REGION_SIZE);
        } else {
            p->ready[p->nready++] = a;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts the thread once; 0 when it runs. Signals stay with the other threads. */
static int prefault_start(vmdr_pool *p)
{
    if (p->started)
        return 0;
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) != 0 || CPU_COUNT(&cpus) < 2)
        return -1; /* one CPU: the faults would only move, not overlap */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&p->th, NULL, prefault_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    p->started = 1;
    return 0;
}

/* Unmaps the regions made ahead and not taken, and stops what is being made. */
static void prefault_cancel(vmdr_pool *p)
{
    void *drop[READY_MAX];
    size_t n;
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->want = 0;
    p->gen++;
    n = p->nready;
    memcpy(drop, p->ready, n * sizeof *drop);
    p->nready = 0;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < n; i++)
        munmap(drop[i], REGION_SIZE);
}

void vmdr_pool_prefault(vmdr_pool *p, size_t bytes)
{
    if (p == NULL)
        return;
    if (bytes == 0) {
        prefault_cancel(p);
        return;
    }
    /* what the pool can hand out without a new region */
    size_t room = (size_t)(p->carve_end - p->carve) + (p->nempty + p->nclean) * CHUNK_SIZE;
    if (bytes <= room || prefault_start(p) != 0)
        return;
    size_t need = (bytes - room + REGION_SIZE - 1) / REGION_SIZE;
    pthread_mutex_lock(&p->mu);
    size_t coming = p->nready + p->want + p->inflight;
    if (need > READY_MAX)
        need = READY_MAX;
    if (need > coming) {
        if (coming == 0)
            p->fast_run = 0; /* a new request: judge its pages afresh */
        p->want += need - coming;
        p->asked += need - coming;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

static chunk *chunk_get(vmdr_pool *p, unsigned cls)
{
    chunk *c;
    if (p->empty) {
        c = p->empty;
        p->empty = c->next;
        p->nempty--;
    } else if (p->nclean > 0) {
        c = p->clean[--p->nclean];
    } else {
        if (p->carve == p->carve_end && region_new(p) != 0)
            return NULL;
        c = (chunk *)p->carve;
        p->carve += CHUNK_SIZE;
    }
    c->free = NULL;
    c->bump = (char *)c + CHUNK_HDR;
    c->used = 0;
    c->cls = (unsigned short)cls;
    c->next = c->prev = NULL;
    p->chunks_used++;
    avail_push(p, c);
    return c;
}

/* An emptied chunk: cached while the cache has room, else its pages go back. */
static void chunk_put(vmdr_pool *p, chunk *c)
{
    p->chunks_used--;
    if (p->nempty < CACHE_MAX) {
        c->next = p->empty;
        p->empty = c;
        p->nempty++;
        return;
    }
    if (p->nclean == p->capclean) {
        size_t cap = p->capclean ? p->capclean * 2 : 64;
        chunk **n = realloc(p->clean, cap * sizeof *n);
        if (n == NULL) { /* keep it resident rather than lose it */
            c->next = p->empty;
            p->empty = c;
            p->nempty++;
            return;
        }
        p->clean = n;
        p->capclean = cap;
    }
    madvise(c, CHUNK_SIZE, MADV_DONTNEED);
    p->clean[p->nclean++] = c;
}

static void *pool_alloc(vmdr_pool *p, size_t n)
{
    unsigned cls = (unsigned)((n - 1) >> 3);
    size_t size = class_size(cls);
    chunk *c = p->avail[cls];
    if (c == NULL && (c = chunk_get(p, cls)) == NULL)
        return NULL;
    void *b;
    if (c->free) {
        b = c->free;
        c->free = *(void **)b;
    } else {
        b = c->bump;
        c->bump += size;
    }
    c->used++;
    p->blocks++;
    if (c->free == NULL && c->bump + size > (char *)c + CHUNK_SIZE)
        avail_unlink(p, c); /* full */
    return b;
}

static void pool_free(vmdr_pool *p, void *b)
{
    chunk *c = chunk_of(b);
    *(void **)b = c->free;
    c->free = b;
    c->used--;
    p->blocks--;
    if (c->used == 0 && !(c->listed && p->avail[c->cls] == c && c->next == NULL)) {
        /* empty, and not the class's only chunk with room (which stays, so that one block
         * allocated and freed over and over does not move a chunk back and forth) */
        if (c->listed)
            avail_unlink(p, c);
        chunk_put(p, c);
    } else if (!c->listed) {
        avail_push(p, c);
    }
}

void *vmdr_pool_lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    vmdr_pool *p = ud;
    /* With ptr == NULL, osize is a type tag, not a size (Lua manual, lua_Alloc). */
    int old_pooled = ptr != NULL && osize <= VMDR_POOL_MAX;
    if (nsize == 0) {
        if (old_pooled && p->closing)
            return NULL; /* the state is closing: vmdr_pool_delete unmaps all at once */
        if (old_pooled)
            pool_free(p, ptr);
        else
            free(ptr);
        return NULL;
    }
    if (ptr == NULL)
        return nsize <= VMDR_POOL_MAX ? pool_alloc(p, nsize) : malloc(nsize);
    if (!old_pooled && nsize > VMDR_POOL_MAX)
        return realloc(ptr, nsize);
    if (old_pooled && nsize <= VMDR_POOL_MAX && (osize - 1) >> 3 == (nsize - 1) >> 3)
        return ptr; /* same class */
    /* Between classes, or between the pool and malloc: move the block. A failure returns
     * NULL with the old block intact, as the Lua manual asks (shrinking may fail). */
    void *n = nsize <= VMDR_POOL_MAX ? pool_alloc(p, nsize) : malloc(nsize);
    if (n == NULL)
        return NULL;
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    if (old_pooled)
        pool_free(p, ptr);
    else
        free(ptr);
    return n;
}

vmdr_pool *vmdr_pool_new(void)
{
    vmdr_pool *p = calloc(1, sizeof(vmdr_pool));
    if (p == NULL)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

void vmdr_pool_closing(vmdr_pool *p)
{
    p->closing = 1;
}

#define PAGE 4096
#define MAX_BLOCKS ((CHUNK_SIZE - CHUNK_HDR) / 8)

/* Gives back the pages of a chunk in use that hold only free blocks (or nothing yet).
 * A free block on such a page leaves the free list (its link would read as zero): it
 * is lost to allocation until the whole chunk empties and starts over, which is what
 * lets a long-running process shed a peak whose survivors are scattered over every
 * chunk (1% of a list's items kept pinned half its memory before this). */
static size_t chunk_trim(vmdr_pool *p, chunk *c)
{
    size_t size = class_size(c->cls), released = 0;
    char *base = (char *)c + CHUNK_HDR, *end = (char *)c + CHUNK_SIZE;
    size_t nb = (size_t)(c->bump - base) / size;
    unsigned char fr[MAX_BLOCKS / 8 + 1], drop[MAX_BLOCKS / 8 + 1];
    memset(fr, 0, sizeof fr);
    memset(drop, 0, sizeof drop);
    for (char *b = c->free; b; b = *(char **)b) {
        size_t i = (size_t)(b - base) / size;
        fr[i / 8] |= (unsigned char)(1u << (i % 8));
    }
    char *run = NULL; /* start of a run of pages to give back */
    for (char *pg = (char *)c + PAGE; pg <= end; pg += PAGE) {
        int ok = 0;
        if (pg < end) {
            ok = 1;
            char *lim = pg + PAGE < c->bump ? pg + PAGE : c->bump;
            if (pg < c->bump) {
                size_t first = (size_t)(pg - base) / size, last = (size_t)(lim - 1 - base) / size;
                for (size_t i = first; i <= last && ok; i++)
                    ok = (fr[i / 8] >> (i % 8)) & 1;
                if (ok)
                    for (size_t i = first; i <= last; i++)
                        drop[i / 8] |= (unsigned char)(1u << (i % 8));
            }
        }
        if (ok && run == NULL)
            run = pg;
        if (!ok && run != NULL) {
            madvise(run, (size_t)(pg - run), MADV_DONTNEED);
            released += (size_t)(pg - run);
            run = NULL;
        }
    }
    /* the free list again, without the dropped blocks (all on resident pages) */
    void *head = NULL;
    for (size_t i = nb; i-- > 0;) {
        if (((fr[i / 8] >> (i % 8)) & 1) && !((drop[i / 8] >> (i % 8)) & 1)) {
            void *b = base + i * size;
            *(void **)b = head;
            head = b;
        }
    }
    c->free = head;
    if (c->listed && c->free == NULL && c->bump + size > end)
        avail_unlink(p, c); /* nothing left to hand out until a block comes back */
    return released;
}

size_t vmdr_pool_trim(vmdr_pool *p)
{
    size_t released = 0;
    prefault_cancel(p);
    while (p->empty) {
        chunk *c = p->empty;
        if (p->nclean == p->capclean) {
            size_t cap = p->capclean ? p->capclean * 2 : 64;
            chunk **n = realloc(p->clean, cap * sizeof *n);
            if (n == NULL)
                break;
            p->clean = n;
            p->capclean = cap;
        }
        p->empty = c->next;
        p->nempty--;
        madvise(c, CHUNK_SIZE, MADV_DONTNEED);
        p->clean[p->nclean++] = c;
        released += CHUNK_SIZE;
    }
    if (p->empty)
        return released; /* out of memory for the clean list: leave the rest alone */
    /* Chunks in use: every carved chunk whose header is set (a clean one reads as zero). */
    for (size_t r = 0; r < p->nregions; r++) {
        char *lim = p->regions[r] == p->carve_end - REGION_SIZE ? p->carve
                                                                 : (char *)p->regions[r] + REGION_SIZE;
        for (char *a = p->regions[r]; a < lim; a += CHUNK_SIZE) {
            chunk *c = (chunk *)a;
            if (c->bump == NULL)
                continue;
            if (c->used == 0) { /* a class's kept chunk: give it all back */
                if (c->listed)
                    avail_unlink(p, c);
                p->chunks_used--;
                if (p->nclean == p->capclean) {
                    size_t cap = p->capclean ? p->capclean * 2 : 64;
                    chunk **n = realloc(p->clean, cap * sizeof *n);
                    if (n == NULL) {
                        avail_push(p, c);
                        p->chunks_used++;
                        continue;
                    }
                    p->clean = n;
                    p->capclean = cap;
                }
                madvise(c, CHUNK_SIZE, MADV_DONTNEED);
                p->clean[p->nclean++] = c;
                released += CHUNK_SIZE;
                continue;
            }
            released += chunk_trim(p, c);
        }
    }
    return released;
}

void vmdr_pool_get_stats(vmdr_pool *p, vmdr_pool_stats *out)
{
    out->regions = p->nregions;
    out->chunks_used = p->chunks_used;
    out->chunks_empty = p->nempty;
    out->blocks = p->blocks;
    pthread_mutex_lock(&p->mu); /* the prefault thread's counters */
    out->prefaulted = p->prefaulted;
    out->asked = p->asked;
    out->fast = p->fast;
    out->pending = p->want + p->inflight;
    out->ready = p->nready;
    pthread_mutex_unlock(&p->mu);
}

void vmdr_pool_delete(vmdr_pool *p)
{
    if (p == NULL)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->th, NULL);
        for (size_t i = 0; i < p->nready; i++)
            munmap(p->ready[i], REGION_SIZE);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    for (size_t i = 0; i < p->nregions; i++)
        munmap(p->regions[i], REGION_SIZE);
    free(p->regions);
    free(p->clean);
    free(p);
}
