/* rbd core without a cluster: image spec parsing and errno -> code mapping. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rbd/rbd.h"

static int fails;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            fails++;                                                                          \
        }                                                                                     \
    } while (0)

int main(void)
{
    vmdr_rbd_spec s;
    vmdr_err e;
    char buf[1024];

    vmdr_err_clear(&e);
    CHECK(vmdr_rbd_parse_spec(&s, "rbd/disk", &e) == 0);
    CHECK(strcmp(s.pool, "rbd") == 0 && s.ns[0] == '\0' && strcmp(s.name, "disk") == 0);
    vmdr_rbd_spec_format(&s, buf, sizeof buf);
    CHECK(strcmp(buf, "rbd/disk") == 0);

    CHECK(vmdr_rbd_parse_spec(&s, "replicapool/tenant/csi-vol-1", &e) == 0);
    CHECK(strcmp(s.ns, "tenant") == 0 && strcmp(s.name, "csi-vol-1") == 0);
    vmdr_rbd_spec_format(&s, buf, sizeof buf);
    CHECK(strcmp(buf, "replicapool/tenant/csi-vol-1") == 0);

    /* refused, with a code, never a crash */
    const char *bad[] = {"noslash", "/img", "pool/", "a/b/c/d", "pool//img", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vmdr_err_clear(&e);
        CHECK(vmdr_rbd_parse_spec(&s, bad[i], &e) == -1);
        CHECK(strcmp(e.code, "invalid") == 0);
    }
    char longname[600];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    memcpy(longname, "rbd/", 4);
    CHECK(vmdr_rbd_parse_spec(&s, longname, &e) == -1);

    CHECK(vmdr_rbd_set_spec(&s, "rbd", NULL, "img", &e) == 0);
    CHECK(vmdr_rbd_set_spec(&s, "rbd", "a/b", "img", &e) == -1);
    CHECK(vmdr_rbd_set_spec(&s, "", NULL, "img", &e) == -1);

    CHECK(strcmp(vmdr_rbd_errcode(-ENOENT), "not_found") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(EBUSY), "busy") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-EINVAL), "invalid") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-EPERM), "permission") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-EACCES), "permission") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-ETIMEDOUT), "timeout") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-ENOTCONN), "unreachable") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-EROFS), "read_only") == 0);
    CHECK(strcmp(vmdr_rbd_errcode(-E2BIG), "error") == 0);

    vmdr_err_clear(&e);
    CHECK(vmdr_rbd_set_spec(&s, "rbd", NULL, "img", &e) == 0);
    CHECK(vmdr_rbd__fail(&e, -EBUSY, "promote", &s) == -1);
    CHECK(strcmp(e.code, "busy") == 0 && e.status == EBUSY);
    CHECK(strstr(e.message, "promote rbd/img") != NULL);
    return fails ? 1 : 0;
}
