/* The order in which kubectl prints map keys in YAML: go-yaml v2's key sort, which
 * sigs.k8s.io/yaml uses. It is a "natural" order, not bytewise: "a2" < "a10",
 * "v10" < "v1alpha2", "a_b" < "aB". At the first rune where the keys differ:
 *   - two letters compare by code point;
 *   - a letter sorts after anything that is not a letter;
 *   - otherwise the digit runs starting there compare as numbers (zeros after a
 *     non-zero digit of the common prefix count), then the shorter run first,
 *     then by code point;
 * and a key that is a prefix of the other sorts first.
 * (JSON output sorts bytewise, as kubectl -o json does: see json.c.)
 * Letters: ASCII A-Z a-z; beyond ASCII, code points count as letters except the
 * common punctuation and symbol blocks (an approximation of unicode.IsLetter that
 * is exact for every key Kubernetes accepts, which are ASCII). */
#include <stdint.h>

#include "yaml.h"

/* Decodes one UTF-8 sequence at s[*i] (lenient: a bad byte is returned as itself). */
static uint32_t next_rune(const unsigned char *s, size_t n, size_t *i)
{
    uint32_t c = s[*i];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c < 0xC0 || *i + len > n) {
        (*i)++;
        return c;
    }
    c &= len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07;
    for (size_t k = 1; k < len; k++)
        c = (c << 6) | (s[*i + k] & 0x3F);
    *i += len;
    return c;
}

static int is_letter(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (c <= 0xBF || c == 0xD7 || c == 0xF7)
        return 0;
    if ((c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
        (c >= 0xFF00 && c <= 0xFF0F) || c >= 0x1F000)
        return 0;
    return 1;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* 1 when a sorts before b (go-yaml's Less). */
static int key_less(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    size_t i = 0, j = 0;
    while (i < an && j < bn) {
        size_t i0 = i, j0 = j;
        uint32_t ra = next_rune(a, an, &i), rb = next_rune(b, bn, &j);
        if (ra == rb)
            continue;
        int al = is_letter(ra), bl = is_letter(rb);
        if (al && bl)
            return ra < rb;
        if (al || bl)
            return bl;
        /* Go's int64 arithmetic wraps: so does this, through uint64 */
        uint64_t na = 0, nb = 0;
        if (ra == '0' || rb == '0') {
            for (size_t k = i0; k > 0 && is_digit(a[k - 1]); k--) {
                if (a[k - 1] != '0') {
                    na = nb = 1;
                    break;
                }
            }
        }
        size_t ea = i0, eb = j0;
        while (ea < an && is_digit(a[ea]))
            na = na * 10 + (uint64_t)(a[ea++] - '0');
        while (eb < bn && is_digit(b[eb]))
            nb = nb * 10 + (uint64_t)(b[eb++] - '0');
        if (na != nb)
            return (int64_t)na < (int64_t)nb;
        if (ea - i0 != eb - j0)
            return ea - i0 < eb - j0;
        return ra < rb;
    }
    /* one is a prefix of the other: compare lengths in runes, as Go does */
    return i >= an && j < bn;
}

int vmdr_yaml_key_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
    if (key_less(ua, an, ub, bn))
        return -1;
    if (key_less(ub, bn, ua, an))
        return 1;
    return 0;
}
