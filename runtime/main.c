/* vmdr-run: argv parsing and exit codes only; everything else is in host.c and Lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

#ifndef VMDR_VERSION
#define VMDR_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmdr-run [options] SCRIPT [options] [-- args...]\n"
            "\n"
            "SCRIPT is a path to a Lua workflow, or a workflow name looked up in the\n"
            "site directory's workflows/ and then the installed workflows/\n"
            "(\"vmdr-run failover\" and \"vmdr-run workflows/failover.lua\" both work).\n"
            "\n"
            "options:\n"
            "  -e, --extra-vars KEY=VALUE  set a variable (dotted keys reach nested config);\n"
            "                              -e @FILE reads a YAML file of variables; repeatable\n"
            "  -c, --config FILE           configuration file (default $VMDR_CONFIG, ./vmdr.yaml)\n"
            "      --dry-run               print what would change; change nothing\n"
            "  -v, --verbose               more logging (repeat for debug)\n"
            "  -q, --quiet                 warnings and errors only\n"
            "      --log-format text|json  log format (default text)\n"
            "      --lua-env               honour LUA_PATH/LUA_CPATH (for test runners)\n"
            "      --version               print the version\n"
            "  -h, --help                  this help\n"
            "\n"
            "exit codes: 0 ok, 1 workflow failed, 2 usage or configuration error,\n"
            "            3 uncaught error, 130 interrupted\n");
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "vmdr-run: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'vmdr-run --help'.\n");
    return VMDR_EXIT_USAGE;
}

/* Takes the value of "-x VALUE", "--long VALUE" or "--long=VALUE". */
static const char *optval(int argc, char **argv, int *i, const char *eq)
{
    if (eq)
        return eq + 1;
    if (*i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

/* Parses argv into o; returns -1 to go on, or the exit code (--version, --help, usage
 * errors). Kept apart from main so that every early exit frees o->vars there. */
static int parse(int argc, char **argv, vmdr_host_opts *o_out)
{
    vmdr_host_opts o = *o_out;
    const char **vars = o.vars;
    int rc = -1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = (a[0] == '-' && a[1] == '-') ? strchr(a, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
#define IS(s) (strlen(s) == nlen && strncmp(a, s, nlen) == 0)
        if (strcmp(a, "--") == 0) {
            o.args = (const char **)argv + i + 1;
            o.nargs = argc - i - 1;
            break;
        } else if (strcmp(a, "-e") == 0 || IS("--extra-vars")) {
            const char *v = optval(argc, argv, &i, eq);
            if (!v)
                return bad("option '%s' needs KEY=VALUE or @FILE", a);
            vars[o.nvars++] = v;
        } else if (strncmp(a, "-e", 2) == 0 && a[2] != '\0') {
            vars[o.nvars++] = a + 2;
        } else if (strcmp(a, "-c") == 0 || IS("--config")) {
            o.config = optval(argc, argv, &i, eq);
            if (!o.config)
                return bad("option '%s' needs a file", a);
        } else if (IS("--dry-run")) {
            o.dry_run = 1;
        } else if (a[0] == '-' && a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
            o.verbosity += (int)strlen(a + 1);
        } else if (IS("--verbose")) {
            o.verbosity++;
        } else if (strcmp(a, "-q") == 0 || IS("--quiet")) {
            o.verbosity = -1;
        } else if (IS("--log-format")) {
            o.log_format = optval(argc, argv, &i, eq);
            if (!o.log_format ||
                (strcmp(o.log_format, "text") != 0 && strcmp(o.log_format, "json") != 0))
                return bad("--log-format takes 'text' or 'json'%s", "");
        } else if (IS("--lua-env")) {
            o.lua_env = 1;
        } else if (IS("--version")) {
            printf("vmdr-run %s\n", VMDR_VERSION);
            return VMDR_EXIT_OK;
        } else if (strcmp(a, "-h") == 0 || IS("--help")) {
            usage(stdout);
            return VMDR_EXIT_OK;
        } else if (a[0] == '-' && a[1] != '\0') {
            return bad("unknown option '%s'", a);
        } else if (o.script == NULL) {
            o.script = a;
        } else {
            return bad("unexpected argument '%s' (arguments for the script go after --)", a);
        }
#undef IS
    }
    if (o.script == NULL) {
        usage(stderr);
        return VMDR_EXIT_USAGE;
    }
    *o_out = o;
    return rc;
}

int main(int argc, char **argv)
{
    vmdr_host_opts o;
    memset(&o, 0, sizeof o);
    const char **vars = calloc((size_t)argc + 1, sizeof *vars);
    if (!vars)
        return VMDR_EXIT_LUA;
    o.vars = vars;
    int code = parse(argc, argv, &o);
    if (code >= 0) {
        free(vars);
        return code;
    }
    code = vmdr_host_run(&o, argv[0]);
    free(vars);
    if (code == VMDR_EXIT_INTERRUPTED) {
        /* An interrupted blocking call may have left a library thread behind (vmdr.rbd
         * abandons a rados_connect that does not return): running librados' static
         * destructors under it aborts. Everything of ours is closed by now. */
        fflush(NULL);
        _exit(code);
    }
    return code;
}
