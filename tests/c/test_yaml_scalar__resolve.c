/* vmdr_yaml_resolve and vmdr_yaml_needs_quotes (runtime/yaml/scalar.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "yaml/yaml.h"

#define S VMDR_YAML_STR
#define Z VMDR_YAML_NULL
#define T VMDR_YAML_TRUE
#define F VMDR_YAML_FALSE
#define I VMDR_YAML_INT
#define D VMDR_YAML_FLOAT

static const struct {
    const char *s;
    vmdr_yaml_kind kind;
    int64_t i;
    double f;
} cases[] = {
    {"", Z, 0, 0},
    {"~", Z, 0, 0},
    {"null", Z, 0, 0},
    {"Null", Z, 0, 0},
    {"NULL", Z, 0, 0},
    {"nULL", S, 0, 0},
    {"true", T, 0, 0},
    {"True", T, 0, 0},
    {"yes", T, 0, 0},
    {"ON", T, 0, 0},
    {"y", T, 0, 0},
    {"Y", T, 0, 0},
    {"tRUE", S, 0, 0},
    {"false", F, 0, 0},
    {"No", F, 0, 0},
    {"off", F, 0, 0},
    {"n", F, 0, 0},
    {"0", I, 0, 0},
    {"-1", I, -1, 0},
    {"+12", I, 12, 0},
    {"0755", I, 493, 0},
    {"0o17", I, 15, 0},
    {"0x1F", I, 31, 0},
    {"-0x10", I, -16, 0},
    {"0b101", I, 5, 0},
    {"1_000", I, 1000, 0},
    {"9223372036854775807", I, INT64_MAX, 0},
    {"-9223372036854775808", I, INT64_MIN, 0},
    {"9223372036854775808", D, 0, 9223372036854775808.0},
    {"0xFFFFFFFFFFFFFFFFF", S, 0, 0},
    {"0x", S, 0, 0},
    {"09", D, 0, 9.0},
    {"1e3", D, 0, 1000.0},
    {"1E-2", D, 0, 0.01},
    {".5", D, 0, 0.5},
    {"-.5", D, 0, -0.5},
    {"1.", D, 0, 1.0},
    {"1.5e+3", D, 0, 1500.0},
    {".", S, 0, 0},
    {"e3", S, 0, 0},
    {"1e", S, 0, 0},
    {"-", S, 0, 0},
    {".inf", D, 0, HUGE_VAL},
    {"-.Inf", D, 0, -HUGE_VAL},
    {"+.INF", D, 0, HUGE_VAL},
    {"12:30", S, 0, 0},
    {"2024-01-01", S, 0, 0},
    {"1.2.3", S, 0, 0},
    {"10Gi", S, 0, 0},
    {"abc", S, 0, 0},
    {"0o8", S, 0, 0},
    {"0b2", S, 0, 0},
};

static const struct {
    const char *s;
    int quote;
} quotes[] = {
    {"", 1},
    {"true", 1},
    {"yes", 1},
    {"no", 1},
    {"on", 1},
    {"off", 1},
    {"y", 1},
    {"0755", 1},
    {"0x1F", 1},
    {"1e3", 1},
    {"null", 1},
    {"~", 1},
    {".5", 1},
    {"12:30", 1},
    {"2024-01-01", 1},
    {"Yes", 1},
    {"NULL", 1},
    {".inf", 1},
    {"-.5", 1},
    {"+1", 1},
    {"0o17", 1},
    {"1_000", 1},
    {"nULL", 1},
    {"tRuE", 1},
    {"<<", 1},
    {"=", 1},
    {":sym", 1},
    {"1,000", 1},
    {"1:2:3", 1},
    {"2024-01-01T10:00:00Z", 1},
    {".NaN", 1},
    {"0b1", 1},
    {"abc", 0},
    {"10Gi", 0},
    {"v1", 0},
    {"x1", 0},
    {"kubevirt.io/v1", 0},
    {"Retain", 0},
    {"-", 0},
    {":", 0},
    {"a:b", 0},
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vmdr_yaml_scalar r;
        vmdr_yaml_resolve(&r, cases[i].s, strlen(cases[i].s));
        CHECK(r.kind == cases[i].kind, "'%s': kind %d, want %d", cases[i].s, r.kind, cases[i].kind);
        if (r.kind == VMDR_YAML_INT && cases[i].kind == VMDR_YAML_INT)
            CHECK(r.i == cases[i].i, "'%s': %lld", cases[i].s, (long long)r.i);
        if (r.kind == VMDR_YAML_FLOAT && cases[i].kind == VMDR_YAML_FLOAT)
            CHECK(r.f == cases[i].f, "'%s': %.17g", cases[i].s, r.f);
    }
    vmdr_yaml_scalar r;
    vmdr_yaml_resolve(&r, ".nan", 4);
    CHECK(r.kind == VMDR_YAML_FLOAT && isnan(r.f), ".nan");

    for (size_t i = 0; i < sizeof quotes / sizeof quotes[0]; i++)
        CHECK(vmdr_yaml_needs_quotes(quotes[i].s, strlen(quotes[i].s)) == quotes[i].quote,
              "'%s' quote %d", quotes[i].s, !quotes[i].quote);

    /* every string our own reader would not read back as a string gets quoted:
     * all strings of up to 4 characters over a number-heavy alphabet */
    static const char alpha[] = "0123456789.-+_:xoebEnNyYt~";
    const size_t A = sizeof alpha - 1;
    char s[5];
    for (size_t len = 1; len <= 4; len++) {
        size_t total = 1;
        for (size_t k = 0; k < len; k++)
            total *= A;
        for (size_t idx = 0; idx < total; idx++) {
            size_t v = idx;
            for (size_t k = 0; k < len; k++) {
                s[k] = alpha[v % A];
                v /= A;
            }
            vmdr_yaml_resolve(&r, s, len);
            if (r.kind != VMDR_YAML_STR)
                CHECK(vmdr_yaml_needs_quotes(s, len), "'%.*s' resolves to %d unquoted", (int)len, s,
                      r.kind);
        }
    }
    return check_result();
}
