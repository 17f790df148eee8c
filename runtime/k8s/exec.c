/* Runs a client-go exec credential plugin: an argv vector (never a shell), the
 * environment plus the kubeconfig's additions, stdout and stderr collected through
 * poll so neither pipe can fill up and deadlock, bounded by a timeout and the
 * interrupt flag. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "k8s.h"

extern char **environ;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* environ with each "K=V" of add replacing a variable K, and each bare "K" of add
 * removing it; NULL-terminated, shallow. */
static char **merged_env(const char *const *add)
{
    size_t ne = 0, na = 0;
    while (environ && environ[ne])
        ne++;
    while (add && add[na])
        na++;
    char **env = calloc(ne + na + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < ne; i++) {
        size_t kl = strcspn(environ[i], "=");
        int replaced = 0;
        for (size_t j = 0; j < na && !replaced; j++)
            replaced = strncmp(add[j], environ[i], kl) == 0 &&
                       (add[j][kl] == '=' || add[j][kl] == '\0');
        if (!replaced)
            env[o++] = environ[i];
    }
    for (size_t j = 0; j < na; j++)
        if (strchr(add[j], '=') != NULL)
            env[o++] = (char *)add[j];
    env[o] = NULL;
    return env;
}

static int append(char **buf, size_t *len, const char *p, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    if (nb == NULL)
        return -1;
    memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
    return 0;
}

static void stop_child(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    for (int i = 0; i < 20; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return;
        struct timespec ts = {0, 25000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

int vmdr_k8s_exec(vmdr_k8s_exec_result *res, const char *const *argv, const char *const *env,
                  long timeout_ms, int (*interrupted)(void), vmdr_err *err)
{
    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    int fa_ok = 0, rc = -1;
    pid_t pid = -1;
    char **envp = NULL;
    memset(res, 0, sizeof *res);
    if (argv == NULL || argv[0] == NULL)
        return vmdr_err_set(err, "invalid", 0, "empty command");
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        vmdr_err_set(err, "error", errno, "pipe: %s", strerror(errno));
        goto done;
    }
    envp = merged_env(env);
    if (envp == NULL || posix_spawn_file_actions_init(&fa) != 0) {
        vmdr_err_set(err, "nomem", 0, "out of memory");
        goto done;
    }
    fa_ok = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
    int se = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
    if (se != 0) {
        pid = -1;
        vmdr_err_set(err, se == ENOENT ? "not_found" : "error", se, "cannot run '%s': %s", argv[0],
                     strerror(se));
        goto done;
    }
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;

    long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 60000);
    int open_fds = 2;
    while (open_fds > 0) {
        struct pollfd pf[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
        if (interrupted && interrupted()) {
            vmdr_err_set(err, "interrupted", 0, "'%s' interrupted by signal", argv[0]);
            goto done;
        }
        long left = deadline - now_ms();
        if (left <= 0) {
            vmdr_err_set(err, "timeout", 0, "'%s' did not finish within %ld ms", argv[0],
                         timeout_ms);
            goto done;
        }
        int n = poll(pf, 2, left < 100 ? (int)left : 100);
        if (n < 0 && errno != EINTR) {
            vmdr_err_set(err, "error", errno, "poll: %s", strerror(errno));
            goto done;
        }
        for (int i = 0; i < 2 && n > 0; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[8192];
            ssize_t r = read(pf[i].fd, buf, sizeof buf);
            if (r > 0) {
                int ok = i == 0 ? append(&res->out, &res->out_len, buf, (size_t)r)
                                : append(&res->errout, &res->err_len, buf, (size_t)r);
                if (ok != 0) {
                    vmdr_err_set(err, "nomem", 0, "out of memory");
                    goto done;
                }
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(pf[i].fd);
                if (i == 0)
                    outp[0] = -1;
                else
                    errp[0] = -1;
                open_fds--;
            }
        }
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            vmdr_err_set(err, "error", errno, "waitpid: %s", strerror(errno));
            pid = -1;
            goto done;
        }
    }
    pid = -1;
    res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (res->out == NULL)
        append(&res->out, &res->out_len, "", 0);
    if (res->errout == NULL)
        append(&res->errout, &res->err_len, "", 0);
    rc = 0;
done:
    if (pid > 0)
        stop_child(pid);
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    free(envp);
    if (rc != 0)
        vmdr_k8s_exec_result_free(res);
    return rc;
}

void vmdr_k8s_exec_result_free(vmdr_k8s_exec_result *res)
{
    if (res->out) {
        memset(res->out, 0, res->out_len); /* it held a credential */
        free(res->out);
    }
    free(res->errout);
    memset(res, 0, sizeof *res);
}
