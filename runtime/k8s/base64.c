/* base64 for kubeconfig *-data fields and HTTP basic auth (RFC 4648 §4). */
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int vmdr_k8s_base64_decode(char **out, size_t *outlen, const char *s, size_t n, vmdr_err *err)
{
    char *buf = malloc(n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    *out = NULL;
    *outlen = 0;
    if (buf == NULL)
        return vmdr_err_set(err, "nomem", 0, "out of memory");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = sextet(c);
        if (v < 0 || pad) {
            free(buf);
            if (v < 0)
                return vmdr_err_set(err, "invalid", 0,
                                    "invalid base64: character 0x%02x at offset %zu", c, i);
            return vmdr_err_set(err, "invalid", 0,
                                "invalid base64: data after padding at offset %zu", i);
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    /* Leftover bits must be the zero padding of a 2- or 3-character final group. */
    if (bits >= 6 || pad > 2) {
        free(buf);
        return vmdr_err_set(err, "invalid", 0, "invalid base64: truncated input");
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

char *vmdr_k8s_base64_encode(const char *s, size_t n, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = malloc((n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    if (out == NULL)
        return NULL;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = ALPHABET[v >> 18];
        out[o++] = ALPHABET[(v >> 12) & 63];
        out[o++] = ALPHABET[(v >> 6) & 63];
        out[o++] = ALPHABET[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
        out[o++] = ALPHABET[v >> 18];
        out[o++] = ALPHABET[(v >> 12) & 63];
        out[o++] = i + 1 < n ? ALPHABET[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    if (outlen)
        *outlen = o;
    return out;
}
