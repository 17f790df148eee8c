#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void vmdr_err_clear(vmdr_err *e)
{
    e->code[0] = '\0';
    e->message[0] = '\0';
    e->status = 0;
}

int vmdr_err_set(vmdr_err *e, const char *code, int status, const char *fmt, ...)
{
    va_list ap;
    snprintf(e->code, sizeof e->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    e->status = status;
    return -1;
}

int vmdr_err_is_set(const vmdr_err *e)
{
    return e->code[0] != '\0';
}
