/* The vmdr.proc core: run an argv vector (never a shell), feed stdin, capture stdout
 * and stderr, bounded by a timeout and an interrupt check. No lua_State here. */
#ifndef VMDR_PROC_H
#define VMDR_PROC_H

#include <stddef.h>

#include "err.h"

typedef struct vmdr_proc_opts {
    const char *const *argv;  /* argv[0] is looked up in PATH when it has no '/' */
    const char *const *envp;  /* the child's whole environment; NULL: inherit ours */
    const char *cwd;          /* NULL: ours */
    const char *input;        /* stdin bytes; NULL: /dev/null */
    size_t input_len;
    double timeout;           /* seconds, > 0 */
    double grace;             /* seconds between SIGTERM and SIGKILL */
    int (*stop)(void);        /* non-zero: kill the child, code "interrupted" */
} vmdr_proc_opts;

typedef struct vmdr_proc_result {
    int status;  /* exit status, or -1 when a signal ended it */
    int signal;  /* the signal that ended it, or 0 */
    char *out;   /* malloc'd; NUL-terminated; free with vmdr_proc_result_free */
    size_t out_len;
    char *err;
    size_t err_len;
} vmdr_proc_result;

/* Runs the program and waits for it. On "timeout" and "interrupted" the child (and its
 * process group) got SIGTERM, then SIGKILL after `grace`; out/err then hold what it had
 * written. Other codes: not_found (no such program or cwd), permission, invalid, io. */
int vmdr_proc_run(vmdr_proc_result *out, const vmdr_proc_opts *o, vmdr_err *e);
void vmdr_proc_result_free(vmdr_proc_result *r);

#endif
