/* The vmdr.proc core without Lua: argv intact, both pipes, exit status, timeout, not_found. */
#include <stdio.h>
#include <string.h>

#include "proc/proc.h"

#define CHECK(c)                                                                            \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);           \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

static int never(void)
{
    return 0;
}

int main(void)
{
    vmdr_proc_result r;
    vmdr_err e;
    vmdr_proc_opts o;

    const char *echo[] = {"sh", "-c", "printf '%s|' \"$@\"; echo err >&2; exit 4", "sh",
                          "$(id)", "a b", "", NULL};
    memset(&o, 0, sizeof o);
    o.argv = echo;
    o.timeout = 30;
    o.grace = 1;
    o.stop = never;
    CHECK(vmdr_proc_run(&r, &o, &e) == 0);
    CHECK(r.status == 4 && r.signal == 0);
    CHECK(strcmp(r.out, "$(id)|a b||") == 0);
    CHECK(r.out_len == strlen("$(id)|a b||"));
    CHECK(strcmp(r.err, "err\n") == 0);
    vmdr_proc_result_free(&r);

    const char *cat[] = {"cat", NULL};
    o.argv = cat;
    o.input = "piped";
    o.input_len = 5;
    CHECK(vmdr_proc_run(&r, &o, &e) == 0);
    CHECK(r.status == 0 && strcmp(r.out, "piped") == 0);
    vmdr_proc_result_free(&r);
    o.input = NULL;

    const char *sleep[] = {"sleep", "30", NULL};
    o.argv = sleep;
    o.timeout = 0.2;
    CHECK(vmdr_proc_run(&r, &o, &e) == -1);
    CHECK(strcmp(e.code, "timeout") == 0);
    CHECK(r.signal == 15); /* SIGTERM was enough for sleep */
    vmdr_proc_result_free(&r);

    const char *none[] = {"vmdr-no-such-program-anywhere", NULL};
    o.argv = none;
    CHECK(vmdr_proc_run(&r, &o, &e) == -1);
    CHECK(strcmp(e.code, "not_found") == 0);
    CHECK(r.out == NULL);
    return 0;
}
