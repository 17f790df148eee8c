/* vmdr_utf8_check (codec.h): the UTF-8 validation both codecs use on output. */
#include <string.h>

#include "check.h"
#include "codec.h"

static const struct {
    const char *s;
    size_t n;   /* 0: strlen */
    size_t bad; /* offset of the first invalid byte, or (size_t)-1 for valid */
} cases[] = {
    {"", 0, (size_t)-1},
    {"plain ascii, longer than eight bytes", 0, (size_t)-1},
    {"caf\xC3\xA9", 0, (size_t)-1},
    {"\xE6\x97\xA5\xE6\x9C\xAC", 0, (size_t)-1},
    {"\xF0\x9F\x98\x80 emoji", 0, (size_t)-1},
    {"\xF4\x8F\xBF\xBF", 0, (size_t)-1}, /* U+10FFFF */
    {"\xEF\xBF\xBF", 0, (size_t)-1},     /* U+FFFF */
    {"a\0b", 3, (size_t)-1},             /* NUL is valid UTF-8 */
    {"abc\xFF", 0, 3},
    {"\x80", 0, 0},             /* lone continuation */
    {"\xC0\x80", 0, 0},         /* overlong NUL */
    {"\xC1\xBF", 0, 0},         /* overlong */
    {"\xE0\x9F\xBF", 0, 0},     /* overlong 3-byte */
    {"\xED\xA0\x80", 0, 0},     /* surrogate U+D800 */
    {"\xED\xBF\xBF", 0, 0},     /* surrogate U+DFFF */
    {"\xF0\x8F\xBF\xBF", 0, 0}, /* overlong 4-byte */
    {"\xF4\x90\x80\x80", 0, 0}, /* above U+10FFFF */
    {"\xF5\x80\x80\x80", 0, 0},
    {"ok\xC3", 0, 2},           /* truncated */
    {"12345678\xE2\x82", 0, 8}, /* truncated after a fast ASCII run */
    {"\xE2\x82\x41", 0, 0},     /* bad continuation */
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = cases[i].n ? cases[i].n : strlen(cases[i].s);
        size_t want = cases[i].bad == (size_t)-1 ? n : cases[i].bad;
        size_t got = vmdr_utf8_check(cases[i].s, n);
        CHECK(got == want, "case %zu: got %zu, want %zu", i, got, want);
    }
    return check_result();
}
