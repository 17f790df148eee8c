/* vmdr.k8s core: base64 as kubeconfig *-data fields use it (RFC 4648 test vectors,
 * whitespace and missing padding accepted, garbage rejected with its offset). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/k8s.h"

static int failures = 0;

static void check_decode(const char *in, const char *want)
{
    char *out = NULL;
    size_t n = 0;
    vmdr_err err;
    vmdr_err_clear(&err);
    int rc = vmdr_k8s_base64_decode(&out, &n, in, strlen(in), &err);
    if (want == NULL) {
        if (rc == 0 || strcmp(err.code, "invalid") != 0) {
            fprintf(stderr, "decode('%s') should fail as invalid\n", in);
            failures++;
        }
    } else if (rc != 0 || n != strlen(want) || memcmp(out, want, n) != 0) {
        fprintf(stderr, "decode('%s') = rc %d '%.*s', want '%s' (%s)\n", in, rc, (int)n,
                out ? out : "", want, err.message);
        failures++;
    }
    free(out);
}

int main(void)
{
    static const char *const vec[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        size_t n;
        char *enc = vmdr_k8s_base64_encode(vec[i][0], strlen(vec[i][0]), &n);
        if (enc == NULL || strcmp(enc, vec[i][1]) != 0) {
            fprintf(stderr, "encode('%s') = '%s', want '%s'\n", vec[i][0], enc, vec[i][1]);
            failures++;
        }
        free(enc);
        check_decode(vec[i][1], vec[i][0]);
    }
    check_decode("Zm9v\nYmFy\n", "foobar"); /* line-wrapped, as base64(1) writes it */
    check_decode("Zm9vYg", "foob");         /* padding left out */
    check_decode("Zm9v*mFy", NULL);
    check_decode("Zg==Zg==", NULL); /* data after padding */
    check_decode("Z", NULL);        /* a lone sextet is not a byte */
    {
        /* binary round trip: every byte value */
        char all[256];
        for (int i = 0; i < 256; i++)
            all[i] = (char)i;
        size_t n, m;
        char *enc = vmdr_k8s_base64_encode(all, sizeof all, &n);
        char *dec = NULL;
        vmdr_err err;
        if (vmdr_k8s_base64_decode(&dec, &m, enc, n, &err) != 0 || m != 256 ||
            memcmp(dec, all, 256) != 0) {
            fprintf(stderr, "binary round trip failed\n");
            failures++;
        }
        free(enc);
        free(dec);
    }
    {
        vmdr_err err;
        char *out;
        size_t n;
        vmdr_k8s_base64_decode(&out, &n, "QUJD!", 5, &err);
        if (strstr(err.message, "offset 4") == NULL) {
            fprintf(stderr, "error should name the offset: %s\n", err.message);
            failures++;
        }
    }
    return failures ? 1 : 0;
}
