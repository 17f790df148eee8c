/* vmdr-sim helpers: growable buffers, time formats, uuids, JSON access, files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

void *sim_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        /* The sim is a test server: out of memory is not something to limp through. */
        fputs("vmdr-sim: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *sim_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("vmdr-sim: out of memory\n", stderr);
        abort();
    }
    return q;
}

char *sim_xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = sim_xmalloc(n + 1);
    memcpy(p, s, n + 1);
    return p;
}

static void buf_reserve(sim_buf *b, size_t extra)
{
    if (b->n + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1)
        cap *= 2;
    b->p = sim_xrealloc(b->p, cap);
    b->cap = cap;
}

void sim_buf_add(sim_buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void sim_buf_adds(sim_buf *b, const char *s)
{
    sim_buf_add(b, s, strlen(s));
}

void sim_buf_printf(sim_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sim_buf_add(b, tmp, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void sim_buf_json_str(sim_buf *b, const char *s)
{
    sim_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            sim_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            sim_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            sim_buf_add(b, "\\n", 2);
            break;
        case '\r':
            sim_buf_add(b, "\\r", 2);
            break;
        case '\t':
            sim_buf_add(b, "\\t", 2);
            break;
        default:
            if (*p < 0x20)
                sim_buf_printf(b, "\\u%04x", *p);
            else
                sim_buf_add(b, (const char *)p, 1);
        }
    }
    sim_buf_add(b, "\"", 1);
}

void sim_buf_free(sim_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

char *sim_buf_take(sim_buf *b, size_t *len)
{
    if (!b->p)
        sim_buf_add(b, "", 0);
    char *p = b->p;
    if (len)
        *len = b->n;
    b->p = NULL;
    b->n = b->cap = 0;
    return p;
}

double sim_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double sim_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void sim_rfc3339(char out[32], double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int sim_parse_rfc3339(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return -1;
    *out = (double)timegm(&tm);
    return 0;
}

/* The apimachinery HumanDuration rules, so AGE columns read as kubectl prints them. */
void sim_human_duration(char out[32], double d)
{
    long long s = (long long)d;
    if (s < -1) {
        snprintf(out, 32, "<invalid>");
        return;
    }
    if (s < 0)
        s = 0;
    long long m = s / 60, h = s / 3600, days = h / 24;
    if (s < 120)
        snprintf(out, 32, "%llds", s);
    else if (m < 10)
        s % 60 ? snprintf(out, 32, "%lldm%llds", m, s % 60) : snprintf(out, 32, "%lldm", m);
    else if (m < 180)
        snprintf(out, 32, "%lldm", m);
    else if (h < 8)
        m % 60 ? snprintf(out, 32, "%lldh%lldm", h, m % 60) : snprintf(out, 32, "%lldh", h);
    else if (h < 48)
        snprintf(out, 32, "%lldh", h);
    else if (h < 24 * 8)
        h % 24 ? snprintf(out, 32, "%lldd%lldh", days, h % 24) : snprintf(out, 32, "%lldd", days);
    else if (h < 24 * 365 * 2)
        snprintf(out, 32, "%lldd", days);
    else if (h < 24 * 365 * 8)
        days % 365 ? snprintf(out, 32, "%lldy%lldd", days / 365, days % 365)
                   : snprintf(out, 32, "%lldy", days / 365);
    else
        snprintf(out, 32, "%lldy", days / 365);
}

void sim_uuid(char out[37])
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        for (int i = 0; i < 16; i++)
            r[i] = (unsigned char)rand();
    }
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

cJSON *sim_j_obj(const cJSON *o, const char *key)
{
    cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsObject(v) ? v : NULL;
}

const char *sim_j_str(const cJSON *o, const char *key)
{
    cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

cJSON *sim_j_ensure_obj(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsObject(v))
        return v;
    v = cJSON_CreateObject();
    sim_j_set(o, key, v);
    return v;
}

void sim_j_set(cJSON *o, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
}

void sim_j_set_str(cJSON *o, const char *key, const char *v)
{
    sim_j_set(o, key, cJSON_CreateString(v));
}

char *sim_j_print(const cJSON *o, size_t *len)
{
    char *s = cJSON_PrintUnformatted(o);
    if (!s) {
        fputs("vmdr-sim: out of memory printing JSON\n", stderr);
        abort();
    }
    if (len)
        *len = strlen(s);
    return s;
}

const cJSON *sim_j_path(const cJSON *o, const char *path)
{
    char key[128];
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        o = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return o;
}

int sim_read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    sim_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        sim_buf_add(&b, tmp, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sim_buf_free(&b);
        return -1;
    }
    *out = sim_buf_take(&b, len);
    return 0;
}

/* Write to a temporary file in the same directory, fsync, rename: a crash leaves the old
 * file or the new one, never half of one. */
int sim_write_file_atomic(const char *path, const char *data, size_t len, int mode)
{
    size_t pn = strlen(path);
    char *tmp = sim_xmalloc(pn + 32);
    snprintf(tmp, pn + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            break;
        off += (size_t)w;
    }
    int ok = off == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        errno = e;
        return -1;
    }
    free(tmp);
    return 0;
}
