/* The body buffer of a transfer and the line framing of a watch stream (see k8s.h).
 * Pure bytes: no curl, no Lua, so the framing can be unit-tested and fuzzed alone. */
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

void vmdr_k8s_frame_init(vmdr_k8s_frame *f, size_t first_cap)
{
    memset(f, 0, sizeof *f);
    f->first_cap = first_cap;
}

void vmdr_k8s_frame_reset(vmdr_k8s_frame *f)
{
    f->len = f->off = f->scan = 0;
}

void vmdr_k8s_frame_free(vmdr_k8s_frame *f)
{
    free(f->buf);
    f->buf = NULL;
    f->len = f->cap = f->off = f->scan = 0;
}

int vmdr_k8s_frame_append(vmdr_k8s_frame *f, const char *p, size_t n, size_t known,
                          size_t *dropped)
{
    *dropped = 0;
    if (f->len + n + 1 > f->cap) {
        if (f->off > 0 && f->off >= f->len / 2) {
            /* A stream: drop consumed lines before growing. */
            memmove(f->buf, f->buf + f->off, f->len - f->off);
            f->len -= f->off;
            f->scan = f->scan > f->off ? f->scan - f->off : 0;
            *dropped = f->off;
            f->off = 0;
        }
        if (f->len + n + 1 > f->cap) {
            size_t cap = f->cap ? f->cap : f->first_cap ? f->first_cap : 16384;
            while (cap < f->len + n + 1)
                cap *= 2;
            /* A known length is allocated once: doubling a 20 MB list would copy it
             * again and again and leave a buffer up to twice its size (peak RSS). */
            if (known > 0 && known >= f->len + n)
                cap = known + 1;
            char *nb = realloc(f->buf, cap);
            if (nb == NULL)
                return -1;
            f->buf = nb;
            f->cap = cap;
        }
    }
    if (n > 0)
        memcpy(f->buf + f->len, p, n);
    f->len += n;
    f->buf[f->len] = '\0';
    return 0;
}

size_t vmdr_k8s_frame_trim(vmdr_k8s_frame *f)
{
    size_t base = f->first_cap ? f->first_cap : 16384;
    size_t rest = f->len - f->off;
    if (f->buf == NULL || f->cap / 4 <= base || rest + 1 > base)
        return 0;
    char *nb = malloc(base);
    if (nb == NULL)
        return 0; /* keep the big one: nothing is lost */
    memcpy(nb, f->buf + f->off, rest);
    nb[rest] = '\0';
    free(f->buf);
    size_t dropped = f->off;
    f->buf = nb;
    f->cap = base;
    f->len = rest;
    f->scan = f->scan > f->off ? f->scan - f->off : 0;
    f->off = 0;
    return dropped;
}

int vmdr_k8s_frame_has_line(vmdr_k8s_frame *f)
{
    if (f->scan < f->off)
        f->scan = f->off;
    if (f->buf && memchr(f->buf + f->scan, '\n', f->len - f->scan) != NULL)
        return 1;
    /* Nothing before len holds a newline: the next look starts there. */
    f->scan = f->len;
    return 0;
}

int vmdr_k8s_frame_next(vmdr_k8s_frame *f, int done, const char **line, size_t *len)
{
    if (f->buf == NULL)
        return 0;
    if (f->scan < f->off)
        f->scan = f->off;
    for (;;) {
        char *start = f->buf + f->off;
        char *nl = memchr(f->buf + f->scan, '\n', f->len - f->scan);
        if (nl == NULL)
            break;
        size_t n = (size_t)(nl - start);
        f->off = (size_t)(nl - f->buf) + 1;
        f->scan = f->off;
        if (n > 0 && start[n - 1] == '\r')
            n--;
        if (n == 0)
            continue; /* keep-alive blank line */
        *line = start;
        *len = n;
        return 1;
    }
    f->scan = f->len;
    if (done && f->len > f->off) {
        /* An unterminated last line: hand it over, the caller judges it. */
        *line = f->buf + f->off;
        *len = f->len - f->off;
        f->off = f->scan = f->len;
        return 1;
    }
    return 0;
}
