/* vmdr_err: the error value every native core fills in.
 * It does not include lua.h: cores never see a lua_State (STYLE: two layers). */
#ifndef VMDR_ERR_H
#define VMDR_ERR_H

#include <stddef.h>

#define VMDR_ERR_CODE_MAX 32
#define VMDR_ERR_MSG_MAX 1024

typedef struct vmdr_err {
    char code[VMDR_ERR_CODE_MAX];   /* stable, machine-readable: "not_found", "conflict", ... */
    char message[VMDR_ERR_MSG_MAX]; /* for people */
    int status;                     /* HTTP status, errno, or 0 */
} vmdr_err;

void vmdr_err_clear(vmdr_err *e);
/* Sets code, status and a printf-style message; returns -1 so cores can `return vmdr_err_set(...)`. */
int vmdr_err_set(vmdr_err *e, const char *code, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int vmdr_err_is_set(const vmdr_err *e);

#endif
