/* vmdr_git_check_path: the path rule every write, read and remove goes through. */
#include <stdio.h>
#include <string.h>

#include "git/git.h"

static int fails;

static void expect(const char *path, int ok)
{
    vmdr_err e;
    vmdr_err_clear(&e);
    int rc = vmdr_git_check_path(path, &e);
    if ((rc == 0) != ok) {
        fprintf(stderr, "FAIL: '%s' should be %s (%s)\n", path, ok ? "accepted" : "refused",
                e.message);
        fails++;
    } else if (!ok && strcmp(e.code, "invalid") != 0) {
        fprintf(stderr, "FAIL: '%s' refused with code '%s', want 'invalid'\n", path, e.code);
        fails++;
    }
}

int main(void)
{
    expect("vms/base/ns/vm-a.yaml", 1);
    expect("README", 1);
    expect(".gitignore", 1);
    expect("a/.github/x", 1);
    expect("a..b/c", 1);
    expect("...", 1);
    expect("", 0);
    expect("/etc/passwd", 0);
    expect("../x", 0);
    expect("a/../../x", 0);
    expect("a/..", 0);
    expect(".", 0);
    expect("./a", 0);
    expect("a/./b", 0);
    expect("a//b", 0);
    expect("a/", 0);
    expect(".git", 0);
    expect(".git/hooks/pre-commit", 0);
    expect("sub/.git/config", 0);
    expect(".GiT/config", 0);
    expect("a\\b", 0);
    expect("a\nb", 0);
    char longp[5000];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    expect(longp, 0);
    return fails ? 1 : 0;
}
