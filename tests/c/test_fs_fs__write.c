/* The vmdr.fs core without Lua: atomic write replaces, keeps no temp file, maps errno. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"

#define CHECK(c)                                                                            \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);           \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

int main(void)
{
    char dir[] = "/tmp/vmdr-test-fs-XXXXXX";
    char path[256], sub[256];
    vmdr_err e;
    char *buf = NULL;
    size_t n;
    vmdr_fs_entries es;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/f.yaml", dir);
    CHECK(vmdr_fs_write(path, "one\0two", 7, -1, &e) == 0);
    CHECK(vmdr_fs_read(&buf, &n, path, &e) == 0);
    CHECK(n == 7 && memcmp(buf, "one\0two", 7) == 0);
    free(buf);
    CHECK(vmdr_fs_write(path, "x", 1, 0600, &e) == 0);
    CHECK(vmdr_fs_read(&buf, &n, path, &e) == 0 && n == 1 && buf[0] == 'x');
    free(buf);

    /* rename onto a directory fails after the temp file exists: it must go */
    snprintf(sub, sizeof sub, "%s/d/e", dir);
    CHECK(vmdr_fs_mkdir_p(sub, 0755, &e) == 0);
    snprintf(sub, sizeof sub, "%s/d", dir);
    CHECK(vmdr_fs_write(sub, "x", 1, -1, &e) == -1);
    CHECK(strcmp(e.code, "is_dir") == 0);
    CHECK(vmdr_fs_walk(&es, dir, &e) == 0);
    CHECK(es.n == 3); /* d, d/e, f.yaml: nothing else */
    CHECK(strcmp(es.v[0].path, "d") == 0 && es.v[0].type == VMDR_FS_DIR);
    CHECK(strcmp(es.v[1].path, "d/e") == 0);
    CHECK(strcmp(es.v[2].path, "f.yaml") == 0 && es.v[2].type == VMDR_FS_FILE);
    vmdr_fs_entries_free(&es);

    snprintf(sub, sizeof sub, "%s/missing", dir);
    CHECK(vmdr_fs_read(&buf, &n, sub, &e) == -1 && strcmp(e.code, "not_found") == 0);
    CHECK(vmdr_fs_remove(dir, 1, &e) == 0);
    CHECK(access(dir, F_OK) != 0);
    return 0;
}
