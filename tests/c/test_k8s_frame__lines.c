/* vmdr.k8s core: the watch-stream framer hands over the same lines whatever the chunking
 * (one byte at a time or all at once) and whatever the first buffer size (so the drop of
 * consumed lines runs): "\r\n" and "\n" ends, keep-alive blank lines skipped, a line cut
 * across chunks joined, an unterminated last line handed over only at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "k8s/k8s.h"

static const char BODY[] = "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\r\n"
                           "\n\r\n"
                           "{\"type\":\"MODIFIED\",\"object\":{\"b\":\"x\\ny\"}}\n"
                           "{\"type\":\"BOOKMARK\"}\n"
                           "{\"type\":\"DELETED\"";
static const char *const LINES[] = {"{\"type\":\"ADDED\",\"object\":{\"a\":1}}",
                                    "{\"type\":\"MODIFIED\",\"object\":{\"b\":\"x\\ny\"}}",
                                    "{\"type\":\"BOOKMARK\"}", "{\"type\":\"DELETED\""};

static void run(size_t step, size_t first_cap)
{
    vmdr_k8s_frame f;
    vmdr_k8s_frame_init(&f, first_cap);
    size_t n = sizeof BODY - 1, fed = 0, dropped_total = 0;
    int k = 0;
    const char *line;
    size_t len;
    while (fed < n) {
        size_t chunk = step < n - fed ? step : n - fed, dropped;
        CHECK(vmdr_k8s_frame_append(&f, BODY + fed, chunk, 0, &dropped) == 0, "append");
        dropped_total += dropped;
        fed += chunk;
        while (vmdr_k8s_frame_next(&f, 0, &line, &len)) {
            CHECK(k < 3, "step %zu: a line too many before the end", step);
            if (k < 3)
                CHECK(len == strlen(LINES[k]) && memcmp(line, LINES[k], len) == 0,
                      "step %zu cap %zu: line %d is '%.*s'", step, first_cap, k, (int)len, line);
            k++;
        }
    }
    CHECK(k == 3, "step %zu: %d complete lines, expected 3", step, k);
    CHECK(!vmdr_k8s_frame_has_line(&f), "the unterminated rest is not a complete line");
    CHECK(vmdr_k8s_frame_next(&f, 1, &line, &len) == 1 && len == strlen(LINES[3]) &&
              memcmp(line, LINES[3], len) == 0,
          "step %zu: the last line at the end", step);
    CHECK(vmdr_k8s_frame_next(&f, 1, &line, &len) == 0, "nothing after the last line");
    if (first_cap == 8 && step == 1)
        CHECK(dropped_total > 0, "a small buffer drops consumed lines instead of growing");
    vmdr_k8s_frame_free(&f);
}

int main(void)
{
    for (size_t step = 1; step <= sizeof BODY; step++) {
        run(step, 0);
        run(step, 8);
    }
    /* A zeroed frame is valid, and a known length is allocated at once. */
    vmdr_k8s_frame z;
    memset(&z, 0, sizeof z);
    size_t dropped;
    CHECK(vmdr_k8s_frame_append(&z, "ab\n", 3, 1000, &dropped) == 0 && z.cap == 1001,
          "known length: cap %zu", z.cap);
    const char *line;
    size_t len;
    CHECK(vmdr_k8s_frame_next(&z, 0, &line, &len) == 1 && len == 2, "zeroed frame line");
    vmdr_k8s_frame_free(&z);

    /* A backlog grows the buffer; once it is consumed, trim gives it back and keeps the
     * unconsumed rest (a line cut across chunks) in a buffer of the first size. */
    vmdr_k8s_frame t;
    vmdr_k8s_frame_init(&t, 64);
    char ev[40];
    int made = 0;
    for (; made < 100; made++) {
        int n = snprintf(ev, sizeof ev, "{\"n\":%d}\n", made);
        CHECK(vmdr_k8s_frame_append(&t, ev, (size_t)n, 0, &dropped) == 0, "backlog append");
    }
    CHECK(t.cap > 4 * 64, "the backlog grew the buffer: cap %zu", t.cap);
    CHECK(vmdr_k8s_frame_trim(&t) == 0 && t.cap > 4 * 64, "nothing consumed: kept");
    int got = 0;
    while (got < 50 && vmdr_k8s_frame_next(&t, 0, &line, &len))
        got++;
    CHECK(vmdr_k8s_frame_trim(&t) == 0, "a backlog still unconsumed is kept");
    while (got < 99 && vmdr_k8s_frame_next(&t, 0, &line, &len))
        got++;
    CHECK(vmdr_k8s_frame_next(&t, 0, &line, &len) == 1 && len == 8 &&
              memcmp(line, "{\"n\":99}", 8) == 0,
          "the last line of the backlog");
    CHECK(vmdr_k8s_frame_append(&t, "{\"cut", 5, 0, &dropped) == 0, "a partial line");
    size_t before = t.off;
    CHECK(vmdr_k8s_frame_trim(&t) == before && t.cap == 64 && t.off == 0 && t.len == 5,
          "trimmed to the first size: cap %zu len %zu", t.cap, t.len);
    CHECK(vmdr_k8s_frame_trim(&t) == 0 && t.cap == 64, "a small buffer is kept");
    CHECK(vmdr_k8s_frame_append(&t, "\":1}\n", 5, 0, &dropped) == 0 &&
              vmdr_k8s_frame_next(&t, 0, &line, &len) == 1 && len == 9 &&
              memcmp(line, "{\"cut\":1}", 9) == 0,
          "the line cut before the trim is whole after it");
    vmdr_k8s_frame_free(&t);
    return check_result();
}
