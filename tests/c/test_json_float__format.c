/* vmdr_codec_format_float (codec.h): every finite double reads back exactly, and
 * integral values keep a ".0" so they stay floats. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "codec.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(void)
{
    static const struct {
        double d;
        const char *want;
    } fixed[] = {
        {0.1, "0.1"},
        {1.5, "1.5"},
        {3.0, "3.0"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1e300, "1e+300"},
        {-2.25, "-2.25"},
        {1e21, "1e+21"},
        {100.0, "100.0"},
        {9007199254740992.0, "9007199254740992.0"},
        {1.0 / 3, "0.3333333333333333"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        vmdr_codec_format_float(buf, fixed[i].d);
        CHECK(strcmp(buf, fixed[i].want) == 0, "%.17g: got %s, want %s", fixed[i].d, buf,
              fixed[i].want);
    }
    /* random bit patterns: every finite double survives */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = next();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d))
            continue;
        size_t n = vmdr_codec_format_float(buf, d);
        CHECK(n == strlen(buf) && n < 32, "length %zu for %s", n, buf);
        CHECK(strtod(buf, NULL) == d, "%s does not read back as %a", buf, d);
        CHECK(strpbrk(buf, ".e") != NULL, "%s would read as an integer", buf);
    }
    return check_result();
}
