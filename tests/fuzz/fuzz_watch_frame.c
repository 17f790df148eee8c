/* libFuzzer target: the watch-stream framer (runtime/k8s/frame.c) on any bytes in any
 * chunking. Input: byte 0 picks the first buffer size (1..64, so growth and the drop of
 * consumed lines happen all the time); then pairs of (chunk length, lines to take) drive
 * the feed until the bytes run out, the rest being the body. Whatever the split, the lines
 * handed over must be exactly those of the whole body split at "\n" (a "\r" before it
 * dropped, empty lines skipped, an unterminated rest last), none holding a "\n"; a trim
 * (the stream's give-back of a grown buffer) between takes loses nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

/* The expected lines of the whole body, each followed by a '\n', into out. */
static size_t reference(const char *p, size_t n, char *out)
{
    size_t o = 0, i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - p) : n;
        size_t len = end - i;
        if (nl && len > 0 && p[end - 1] == '\r')
            len--;
        if (len > 0) {
            memcpy(out + o, p + i, len);
            o += len;
            out[o++] = '\n';
        }
        i = end + 1;
    }
    return o;
}

static void take(vmdr_k8s_frame *f, int done, long max, char *got, size_t *g, size_t cap)
{
    const char *line;
    size_t len;
    while (max-- != 0 && vmdr_k8s_frame_next(f, done, &line, &len)) {
        if (len == 0 || memchr(line, '\n', len) != NULL || *g + len + 1 > cap) {
            fprintf(stderr, "fuzz_watch_frame: bad line of %zu bytes\n", len);
            abort();
        }
        if (line < f->buf || line + len > f->buf + f->len)
            abort(); /* a line outside the buffer */
        memcpy(got + *g, line, len);
        *g += len;
        got[(*g)++] = '\n';
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t first = (size_t)data[0] % 64 + 1;
    /* the control pairs: a 0xff chunk length ends them */
    size_t i = 1;
    while (i + 1 < size && data[i] != 0xff)
        i += 2;
    size_t ctl_end = i;
    const char *body = (const char *)data + (i < size ? i + 1 : size);
    size_t n = (size_t)((const char *)data + size - body);

    char *want = malloc(n + 1), *got = malloc(n + 1);
    size_t w = reference(body, n, want), g = 0;

    vmdr_k8s_frame f;
    vmdr_k8s_frame_init(&f, first);
    size_t fed = 0, c = 1;
    while (fed < n) {
        size_t chunk = c + 1 < ctl_end ? (size_t)data[c] % 32 : 7;
        long lines = c + 1 < ctl_end ? (long)data[c + 1] % 4 : -1;
        if (c + 1 < ctl_end)
            c += 2;
        if (chunk > n - fed)
            chunk = n - fed;
        size_t off = f.off, len = f.len, dropped;
        if (vmdr_k8s_frame_append(&f, body + fed, chunk, 0, &dropped) != 0)
            abort();
        /* nothing unconsumed may be lost or moved out of order */
        if (dropped > off || f.len != len - dropped + chunk || f.off != off - dropped ||
            f.buf[f.len] != '\0' || memcmp(f.buf + f.len - chunk, body + fed, chunk) != 0)
            abort();
        fed += chunk;
        if (lines == 3)
            (void)vmdr_k8s_frame_has_line(&f); /* the wait's look, then the take */
        else
            take(&f, 0, lines < 0 ? -1 : lines, got, &g, n + 1);
        if (lines == 0 || lines == 2) {
            /* the stream's give-back, between lines (take copied what it got) */
            size_t toff = f.off, tlen = f.len, tcap = f.cap;
            size_t dropped_t = vmdr_k8s_frame_trim(&f);
            if (f.cap != tcap &&
                (dropped_t != toff || f.off != 0 || f.len != tlen - toff || f.cap >= tcap))
                abort(); /* trimmed: the consumed bytes went, the rest moved to the start */
            if (f.cap == tcap && (dropped_t != 0 || f.off != toff || f.len != tlen))
                abort(); /* kept as it was */
            if (f.buf && (f.buf[f.len] != '\0' ||
                          memcmp(f.buf + f.len - (f.len < chunk ? f.len : chunk),
                                 body + fed - (f.len < chunk ? f.len : chunk),
                                 f.len < chunk ? f.len : chunk) != 0))
                abort();
        }
    }
    take(&f, 0, -1, got, &g, n + 1);
    take(&f, 1, -1, got, &g, n + 1);
    if (g != w || (w && memcmp(got, want, w) != 0)) {
        fprintf(stderr, "fuzz_watch_frame: %zu bytes of lines, expected %zu\n", g, w);
        abort();
    }
    if (f.buf && f.off != f.len)
        abort(); /* done: everything consumed */
    vmdr_k8s_frame_free(&f);
    free(want);
    free(got);
    return 0;
}
