/* The vmdr.proc core (see proc.h): posix_spawn, then one poll loop that feeds stdin,
 * drains both pipes (so a child filling one pipe never deadlocks against us), notices
 * the child's exit through a pidfd, and enforces the timeout and the interrupt check. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void vmdr_proc_result_free(vmdr_proc_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}

/* The PATH the child would search: its own when we give it an environment. */
static const char *child_path(const char *const *envp)
{
    if (envp == NULL) {
        const char *p = getenv("PATH");
        return p ? p : "/usr/local/bin:/usr/bin:/bin";
    }
    for (; *envp; envp++)
        if (strncmp(*envp, "PATH=", 5) == 0)
            return *envp + 5;
    return "/usr/local/bin:/usr/bin:/bin"; /* execvp's default when PATH is unset */
}

/* Finds prog like execvp does, so "not found" is known before forking. */
static int find_program(char *out, size_t outsz, const char *prog, const char *const *envp,
                        vmdr_err *e)
{
    if (strchr(prog, '/')) {
        snprintf(out, outsz, "%s", prog);
        return 0;
    }
    const char *path = child_path(envp);
    int denied = 0;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        struct stat st;
        /* An empty PATH element means the current directory (POSIX). */
        if (snprintf(out, outsz, "%.*s%s%s", (int)n, n ? path : ".", "/", prog) <
                (int)outsz &&
            stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(out, X_OK) == 0)
                return 0;
            denied = 1;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    if (denied)
        return vmdr_err_set(e, "permission", EACCES, "program '%s' is not executable", prog);
    return vmdr_err_set(e, "not_found", ENOENT, "program '%s' not found in PATH", prog);
}

static int buf_read(buf *b, int fd)
{
    if (b->cap - b->len < 65536 + 1) {
        size_t nc = b->cap ? b->cap * 2 : 65536 * 2;
        while (nc - b->len < 65536 + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL)
            return -2;
        b->p = np;
        b->cap = nc;
    }
    ssize_t n = read(fd, b->p + b->len, b->cap - b->len - 1);
    if (n > 0) {
        b->len += (size_t)n;
        b->p[b->len] = '\0';
    }
    return (int)(n > 0 ? 1 : n); /* 1 data, 0 EOF, -1 error (errno) */
}

static void group_kill(pid_t pid, int sig)
{
    /* The child leads its own process group: this reaches what it started too. */
    if (kill(-pid, sig) != 0)
        kill(pid, sig);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

int vmdr_proc_run(vmdr_proc_result *out, const vmdr_proc_opts *o, vmdr_err *e)
{
    char prog[PATH_MAX];
    int in[2] = {-1, -1}, po[2] = {-1, -1}, pe[2] = {-1, -1}, pidfd = -1;
    int rc = -1, fa_ok = 0, at_ok = 0, reaped = 0, wstatus = 0, sent_kill = 0;
    const char *why = NULL; /* "timeout" | "interrupted" once we are killing */
    double kill_at = 0;
    buf ob = {0}, eb = {0};
    size_t in_off = 0;
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;

    memset(out, 0, sizeof *out);
    if (o->argv == NULL || o->argv[0] == NULL || o->argv[0][0] == '\0')
        return vmdr_err_set(e, "invalid", EINVAL, "empty argv");
    if (o->stop && o->stop())
        return vmdr_err_set(e, "interrupted", EINTR, "'%s' not started: interrupted",
                            o->argv[0]);
    if (o->cwd) {
        struct stat st;
        if (stat(o->cwd, &st) != 0)
            return vmdr_err_set(e, errno == ENOENT ? "not_found" : "io", errno,
                                "cwd '%s': %s", o->cwd, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return vmdr_err_set(e, "not_dir", ENOTDIR, "cwd '%s': not a directory", o->cwd);
    }
    if (find_program(prog, sizeof prog, o->argv[0], o->envp, e) != 0)
        return -1;

    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0 ||
        (o->input && pipe2(in, O_CLOEXEC) != 0)) {
        vmdr_err_set(e, "io", errno, "pipe: %s", strerror(errno));
        goto done;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        vmdr_err_set(e, "io", ENOMEM, "posix_spawn setup: out of memory");
        goto done;
    }
    fa_ok = 1;
    if (posix_spawnattr_init(&at) != 0) {
        vmdr_err_set(e, "io", ENOMEM, "posix_spawn setup: out of memory");
        goto done;
    }
    at_ok = 1;
    if (o->input)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    if (o->cwd)
        posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    /* Descriptors a library opened without O_CLOEXEC must not leak into the child. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);

    /* We ignore SIGPIPE and catch SIGINT/SIGTERM; the child starts with defaults, no
     * blocked signals, in a process group of its own so a kill reaches its children. */
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    sigaddset(&dfl, SIGQUIT);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);

    int err = posix_spawn(&pid, prog, &fa, &at, (char *const *)o->argv,
                          o->envp ? (char *const *)o->envp : environ);
    if (err != 0) {
        pid = -1;
        if (err == ENOENT)
            vmdr_err_set(e, "not_found", err, "cannot run '%s': %s", o->argv[0], strerror(err));
        else if (err == EACCES || err == EPERM)
            vmdr_err_set(e, "permission", err, "cannot run '%s': %s", o->argv[0],
                         strerror(err));
        else if (err == ENOEXEC)
            vmdr_err_set(e, "invalid", err, "cannot run '%s': %s", o->argv[0], strerror(err));
        else
            vmdr_err_set(e, "io", err, "cannot run '%s': %s", o->argv[0], strerror(err));
        goto done;
    }
    close_fd(&po[1]);
    close_fd(&pe[1]);
    close_fd(&in[0]);
    if (in[1] >= 0) {
        fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
        if (o->input_len == 0)
            close_fd(&in[1]);
    }
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif

    double deadline = now_mono() + o->timeout;
    for (;;) {
        double now = now_mono();
        if (why == NULL && !reaped) {
            if (o->stop && o->stop())
                why = "interrupted";
            else if (now >= deadline)
                why = "timeout";
            if (why) {
                group_kill(pid, SIGTERM);
                kill_at = now + o->grace;
            }
        } else if (why == NULL && now >= deadline) {
            /* It exited, but something it started still holds the pipes open. */
            why = "timeout";
            group_kill(pid, SIGTERM);
            kill_at = now + o->grace;
        }
        if (why && !sent_kill && now >= kill_at) {
            group_kill(pid, SIGKILL);
            sent_kill = 1;
        }
        if (reaped && ((po[0] < 0 && pe[0] < 0) || (why && sent_kill)))
            break;

        struct pollfd pf[4];
        int np = 0, io_out = -1, io_err = -1, io_in = -1, io_pid = -1;
        if (po[0] >= 0)
            pf[io_out = np++] = (struct pollfd){po[0], POLLIN, 0};
        if (pe[0] >= 0)
            pf[io_err = np++] = (struct pollfd){pe[0], POLLIN, 0};
        if (in[1] >= 0)
            pf[io_in = np++] = (struct pollfd){in[1], POLLOUT, 0};
        if (!reaped && pidfd >= 0)
            pf[io_pid = np++] = (struct pollfd){pidfd, POLLIN, 0};
        /* Slices of at most 100 ms bound how late a signal that raced the check is seen;
         * without a pidfd, the exit is polled for every 10 ms. */
        double wait = why ? (sent_kill ? 0.1 : kill_at - now) : deadline - now;
        if (wait > 0.1)
            wait = 0.1;
        if (!reaped && pidfd < 0 && wait > 0.01)
            wait = 0.01;
        if (wait < 0)
            wait = 0;
        int n = poll(pf, (nfds_t)np, (int)(wait * 1000) + 1);
        if (n < 0 && errno != EINTR) {
            vmdr_err_set(e, "io", errno, "poll: %s", strerror(errno));
            group_kill(pid, SIGKILL);
            why = "io";
            break;
        }
        if (n > 0) {
            if (io_out >= 0 && pf[io_out].revents) {
                int r = buf_read(&ob, po[0]);
                if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN))
                    close_fd(&po[0]);
                if (r == -2)
                    goto nomem;
            }
            if (io_err >= 0 && pf[io_err].revents) {
                int r = buf_read(&eb, pe[0]);
                if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN))
                    close_fd(&pe[0]);
                if (r == -2)
                    goto nomem;
            }
            if (io_in >= 0 && pf[io_in].revents) {
                ssize_t w = write(in[1], o->input + in_off, o->input_len - in_off);
                if (w > 0)
                    in_off += (size_t)w;
                /* EPIPE: the child stopped reading; what it got is its business. */
                if (in_off == o->input_len || (w < 0 && errno != EAGAIN && errno != EINTR))
                    close_fd(&in[1]);
            }
        }
        if (!reaped) {
            pid_t w = waitpid(pid, &wstatus, WNOHANG);
            if (w == pid)
                reaped = 1;
        }
    }
    if (!reaped) {
        /* Only after a poll failure: it got SIGKILL, so this wait is short. */
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
        reaped = 1;
    }
    if (WIFEXITED(wstatus)) {
        out->status = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        out->status = -1;
        out->signal = WTERMSIG(wstatus);
    }
    out->out = ob.p ? ob.p : calloc(1, 1);
    out->out_len = ob.len;
    out->err = eb.p ? eb.p : calloc(1, 1);
    out->err_len = eb.len;
    ob.p = eb.p = NULL;
    if (out->out == NULL || out->err == NULL) {
        vmdr_proc_result_free(out);
        vmdr_err_set(e, "io", ENOMEM, "out of memory");
        goto done;
    }
    if (why && strcmp(why, "timeout") == 0)
        vmdr_err_set(e, "timeout", ETIMEDOUT, "'%s' did not finish within %g s", o->argv[0],
                     o->timeout);
    else if (why && strcmp(why, "interrupted") == 0)
        vmdr_err_set(e, "interrupted", EINTR, "'%s' stopped: interrupted", o->argv[0]);
    else if (why == NULL)
        rc = 0;
    goto done;
nomem:
    vmdr_err_set(e, "io", ENOMEM, "'%s': output too large for memory", o->argv[0]);
    group_kill(pid, SIGKILL);
    while (!reaped && waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
done:
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (at_ok)
        posix_spawnattr_destroy(&at);
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&po[0]);
    close_fd(&po[1]);
    close_fd(&pe[0]);
    close_fd(&pe[1]);
    close_fd(&pidfd);
    free(ob.p);
    free(eb.p);
    return rc;
}
