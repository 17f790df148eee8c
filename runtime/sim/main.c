/* vmdr-sim: argv, TLS material, kubeconfig, the daemon's life (restart fault, signals),
 * and the state file's persister. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <microhttpd.h>

#include "sim.h"

static volatile sig_atomic_t g_stop; /* the one global: set by SIGINT/SIGTERM */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fputs("usage: vmdr-sim [--fixtures DIR]... [--listen HOST:PORT] [--tls] [--cert FILE --key "
          "FILE]\n"
          "                [--token T | --token-file FILE] [--client-ca FILE]\n"
          "                [--kubeconfig-out FILE] [--kubeconfig-client-cert FILE\n"
          "                 --kubeconfig-client-key FILE] [--state FILE] [--generate N]\n"
          "                [--faults JSON|@FILE] [--history N] [--bookmark-interval SEC] [--gzip]\n"
          "                [--quiet | --verbose]\n"
          "Serves VirtualMachines, PVCs, PVs, namespaces and leases over the Kubernetes REST API.\n"
          "PORT 0 picks a free port; the URL is printed on stdout as 'vmdr-sim listening on URL'.\n"
          "Admin (same listener and auth): GET /_sim/state, GET|POST /_sim/faults "
          "(docs/vmdr-sim.md).\n",
          f);
}

static int read_text(const char *path, char **out, const char *what)
{
    size_t len;
    if (sim_read_file(path, out, &len)) {
        fprintf(stderr, "vmdr-sim: cannot read %s %s: %s\n", what, path, strerror(errno));
        return -1;
    }
    return 0;
}

static void b64(sim_buf *out, const char *s, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        char q[4] = {t[v >> 18 & 63], t[v >> 12 & 63], i + 1 < n ? t[v >> 6 & 63] : '=',
                     i + 2 < n ? t[v & 63] : '='};
        sim_buf_add(out, q, 4);
    }
}

/* Runs argv (no shell), output discarded; returns its exit status or -1. */
static int run(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A throwaway CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI
 * in a private temporary directory that is removed again. */
static int make_certs(char **ca, char **cert, char **key)
{
    char dir[] = "/tmp/vmdr-sim-tls-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "vmdr-sim: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    char p_cakey[64], p_ca[64], p_key[64], p_csr[64], p_crt[64], p_ext[64];
    snprintf(p_cakey, sizeof p_cakey, "%s/ca.key", dir);
    snprintf(p_ca, sizeof p_ca, "%s/ca.crt", dir);
    snprintf(p_key, sizeof p_key, "%s/tls.key", dir);
    snprintf(p_csr, sizeof p_csr, "%s/tls.csr", dir);
    snprintf(p_crt, sizeof p_crt, "%s/tls.crt", dir);
    snprintf(p_ext, sizeof p_ext, "%s/ext.cnf", dir);
    const char *ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                      "keyEncipherment\nextendedKeyUsage=serverAuth\n"
                      "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    int rc = sim_write_file_atomic(p_ext, ext, strlen(ext), 0600);
    char *ca_argv[] = {"openssl",
                       "req",
                       "-x509",
                       "-newkey",
                       "ec",
                       "-pkeyopt",
                       "ec_paramgen_curve:prime256v1",
                       "-nodes",
                       "-keyout",
                       p_cakey,
                       "-out",
                       p_ca,
                       "-days",
                       "3650",
                       "-subj",
                       "/CN=vmdr-sim-ca",
                       NULL};
    char *csr_argv[] = {
        "openssl", "req",     "-new", "-newkey", "ec",  "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes",  "-keyout", p_key,  "-out",    p_csr, "-subj",    "/CN=vmdr-sim",
        NULL};
    char *sign_argv[] = {"openssl",  "x509", "-req",   "-in",   p_csr,
                         "-CA",      p_ca,   "-CAkey", p_cakey, "-CAcreateserial",
                         "-out",     p_crt,  "-days",  "3650",  "-sha256",
                         "-extfile", p_ext,  NULL};
    if (rc == 0 && (run(ca_argv) != 0 || run(csr_argv) != 0 || run(sign_argv) != 0)) {
        fprintf(stderr, "vmdr-sim: openssl failed to make the TLS certificates (is openssl "
                        "installed? scripts/deps)\n");
        rc = -1;
    }
    if (rc == 0)
        rc = read_text(p_ca, ca, "CA") || read_text(p_crt, cert, "certificate") ||
             read_text(p_key, key, "key");
    char *rm_argv[] = {"rm", "-rf", dir, NULL};
    run(rm_argv);
    return rc ? -1 : 0;
}

static int write_kubeconfig(const char *path, const char *url, const char *ca_pem,
                            const char *token, const char *ccert, const char *ckey)
{
    sim_buf b = {0};
    sim_buf_adds(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: vmdr-sim\n  cluster:\n");
    sim_buf_printf(&b, "    server: %s\n", url);
    if (ca_pem) {
        sim_buf_adds(&b, "    certificate-authority-data: ");
        b64(&b, ca_pem, strlen(ca_pem));
        sim_buf_adds(&b, "\n");
    }
    sim_buf_adds(&b, "users:\n- name: vmdr-sim\n  user:");
    int any = 0;
    if (token) {
        sim_buf_printf(&b, "\n    token: %s", token);
        any = 1;
    }
    if (ccert && ckey) {
        sim_buf_adds(&b, "\n    client-certificate-data: ");
        b64(&b, ccert, strlen(ccert));
        sim_buf_adds(&b, "\n    client-key-data: ");
        b64(&b, ckey, strlen(ckey));
        any = 1;
    }
    sim_buf_adds(&b, any ? "\n" : " {}\n");
    sim_buf_adds(&b, "contexts:\n- name: vmdr-sim\n  context:\n    cluster: vmdr-sim\n"
                     "    user: vmdr-sim\n    namespace: default\ncurrent-context: vmdr-sim\n");
    /* 0600: it holds the token */
    int rc = sim_write_file_atomic(path, b.p, b.n, 0600);
    sim_buf_free(&b);
    if (rc)
        fprintf(stderr, "vmdr-sim: cannot write kubeconfig %s: %s\n", path, strerror(errno));
    return rc;
}

static int parse_listen(const char *s, char host[64], int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= 64)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || colon[1] == '\0')
        return -1;
    *port = (int)p;
    return 0;
}

int main(int argc, char **argv)
{
    const char *fixtures[32];
    int nfix = 0;
    const char *listen = "127.0.0.1:0", *cert_file = NULL, *key_file = NULL, *token = NULL;
    const char *token_file = NULL, *client_ca = NULL, *kc_out = NULL, *state = NULL;
    const char *faults = NULL, *kc_cert = NULL, *kc_key = NULL;
    long generate = 0, history = 10000;
    double bookmark_interval = 5;
    int tls = 0, quiet = 0, gzip = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT()                                                                                     \
    (i + 1 < argc ? argv[++i]                                                                      \
                  : (fprintf(stderr, "vmdr-sim: %s needs a value\n", a), exit(2), (char *)NULL))
        if (!strcmp(a, "--fixtures")) {
            if (nfix == 32) {
                fputs("vmdr-sim: at most 32 --fixtures\n", stderr);
                return 2;
            }
            fixtures[nfix++] = NEXT();
        } else if (!strcmp(a, "--listen")) {
            listen = NEXT();
        } else if (!strcmp(a, "--tls")) {
            tls = 1;
        } else if (!strcmp(a, "--cert")) {
            cert_file = NEXT();
        } else if (!strcmp(a, "--key")) {
            key_file = NEXT();
        } else if (!strcmp(a, "--token")) {
            token = NEXT();
        } else if (!strcmp(a, "--token-file")) {
            token_file = NEXT();
        } else if (!strcmp(a, "--client-ca")) {
            client_ca = NEXT();
        } else if (!strcmp(a, "--kubeconfig-out")) {
            kc_out = NEXT();
        } else if (!strcmp(a, "--kubeconfig-client-cert")) {
            kc_cert = NEXT();
        } else if (!strcmp(a, "--kubeconfig-client-key")) {
            kc_key = NEXT();
        } else if (!strcmp(a, "--state")) {
            state = NEXT();
        } else if (!strcmp(a, "--generate") || !strcmp(a, "--history")) {
            const char *v = NEXT();
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > 10000000) {
                fprintf(stderr, "vmdr-sim: %s wants a count, not '%s'\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--generate"))
                generate = n;
            else
                history = n ? n : 1;
        } else if (!strcmp(a, "--bookmark-interval")) {
            const char *v = NEXT();
            char *end;
            bookmark_interval = strtod(v, &end);
            if (*end || bookmark_interval < 0.05) {
                fprintf(stderr, "vmdr-sim: --bookmark-interval wants seconds >= 0.05\n");
                return 2;
            }
        } else if (!strcmp(a, "--gzip")) {
            gzip = 1;
        } else if (!strcmp(a, "--faults")) {
            faults = NEXT();
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            verbose = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("vmdr-sim %s\n", VMDR_VERSION);
            return 0;
        } else {
            fprintf(stderr, "vmdr-sim: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef NEXT
    }
    if ((cert_file != NULL) != (key_file != NULL)) {
        fputs("vmdr-sim: --cert and --key go together\n", stderr);
        return 2;
    }
    if ((kc_cert != NULL) != (kc_key != NULL)) {
        fputs("vmdr-sim: --kubeconfig-client-cert and --kubeconfig-client-key go together\n",
              stderr);
        return 2;
    }
    if (cert_file || client_ca)
        tls = 1;

    static sim_server srv;
    memset(&srv, 0, sizeof srv);
    if (parse_listen(listen, srv.host, &srv.port)) {
        fprintf(stderr, "vmdr-sim: --listen wants HOST:PORT (e.g. 127.0.0.1:0), not '%s'\n",
                listen);
        return 2;
    }
    char *tokbuf = NULL;
    if (token_file) {
        if (read_text(token_file, &tokbuf, "token file"))
            return 2;
        tokbuf[strcspn(tokbuf, "\r\n")] = '\0';
        token = tokbuf;
    }
    if (token && !*token) {
        fputs("vmdr-sim: the token is empty\n", stderr);
        return 2;
    }
    srv.token = token ? sim_xstrdup(token) : NULL;
    srv.tls = tls;
    srv.quiet = quiet;
    srv.verbose = verbose;
    srv.started = sim_mono();
    srv.faults.bookmark_interval = bookmark_interval;
    srv.faults.gzip = gzip;
    pthread_mutex_init(&srv.fmu, NULL);
    if (client_ca) {
        if (read_text(client_ca, &srv.ca_pem, "client CA"))
            return 2;
        srv.client_ca = 1;
    }
    if (faults) {
        char *text = NULL;
        if (faults[0] == '@') {
            if (read_text(faults + 1, &text, "faults file"))
                return 2;
        }
        vmdr_err e = {0};
        if (sim_faults_apply(&srv, text ? text : faults, &e)) {
            fprintf(stderr, "vmdr-sim: --faults: %s\n", e.message);
            return 2;
        }
        free(text);
    }

    char *ca_pem = NULL, *cert_pem = NULL, *key_pem = NULL;
    if (tls) {
        if (cert_file) {
            if (read_text(cert_file, &cert_pem, "certificate") ||
                read_text(key_file, &key_pem, "key"))
                return 2;
        } else if (make_certs(&ca_pem, &cert_pem, &key_pem)) {
            return 1;
        }
    }

    sim_store_init(&srv.store, (size_t)history);
    vmdr_err e = {0};
    int from_state = 0;
    struct stat sb;
    if (state && stat(state, &sb) == 0) {
        /* A saved state is the site as it was: fixtures and --generate made it already. */
        if (sim_store_load_state(&srv.store, state, &e)) {
            fprintf(stderr, "vmdr-sim: %s\n", e.message);
            return 1;
        }
        from_state = 1;
    } else {
        static const char *const base_ns[] = {"default", "kube-system", "kube-public",
                                              "kube-node-lease", NULL};
        for (int i = 0; base_ns[i]; i++)
            sim_store_ensure_ns(&srv.store, base_ns[i]);
        for (int i = 0; i < nfix; i++) {
            int loaded, skipped;
            if (sim_load_fixtures(&srv.store, fixtures[i], &loaded, &skipped, &e)) {
                fprintf(stderr, "vmdr-sim: %s\n", e.message);
                return 1;
            }
            if (!quiet)
                fprintf(
                    stderr,
                    "vmdr-sim: %s: %d objects loaded, %d skipped (kinds not served, duplicates)\n",
                    fixtures[i], loaded, skipped);
        }
        if (generate)
            sim_generate(&srv.store, (int)generate);
    }
    /* History starts now: loading is not a stream of events. */
    srv.store.floor = srv.store.rv;
    srv.store.changes = 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d = sim_http_start(&srv, cert_pem, key_pem, &e);
    if (!d) {
        fprintf(stderr, "vmdr-sim: %s\n", e.message);
        return 1;
    }
    char url[128];
    snprintf(url, sizeof url, "%s://%s:%d", tls ? "https" : "http", srv.host, srv.port);
    if (kc_out) {
        char *kcc = NULL, *kck = NULL;
        if (kc_cert && (read_text(kc_cert, &kcc, "client certificate") ||
                        read_text(kc_key, &kck, "client key"))) {
            MHD_stop_daemon(d);
            return 2;
        }
        const char *ca_for_kc = ca_pem ? ca_pem : NULL;
        if (!ca_for_kc && cert_pem)
            ca_for_kc = cert_pem; /* a self-signed --cert is its own CA */
        if (write_kubeconfig(kc_out, url, ca_for_kc, token, kcc, kck)) {
            MHD_stop_daemon(d);
            return 1;
        }
        free(kcc);
        free(kck);
    }
    if (!quiet && from_state)
        fprintf(stderr, "vmdr-sim: state resumed from %s\n", state);
    printf("vmdr-sim listening on %s\n", url);
    fflush(stdout);

    uint64_t saved = 0;
    while (!g_stop) {
        usleep(50 * 1000);
        pthread_mutex_lock(&srv.fmu);
        int restart = srv.restart_seconds;
        srv.restart_seconds = 0;
        pthread_mutex_unlock(&srv.fmu);
        if (restart) {
            /* The API server goes away: open streams end, the port refuses connections. */
            pthread_mutex_lock(&srv.store.mu);
            srv.store.epoch++;
            pthread_cond_broadcast(&srv.store.cv);
            pthread_mutex_unlock(&srv.store.mu);
            MHD_stop_daemon(d);
            if (!quiet)
                fprintf(stderr, "vmdr-sim: listener closed for %d s (restart fault)\n", restart);
            for (int t = 0; t < restart * 20 && !g_stop; t++)
                usleep(50 * 1000);
            /* While the port was closed another process may have got it, for instance as the
             * local port of an outgoing connection (both come from the ephemeral range): such a
             * holder goes away soon, so keep trying for a while before giving up. */
            d = sim_http_start(&srv, cert_pem, key_pem, &e);
            for (int t = 0; !d && t < 600 && !g_stop; t++) {
                if (t == 0)
                    fprintf(stderr, "vmdr-sim: restart: %s (retrying)\n", e.message);
                usleep(50 * 1000);
                d = sim_http_start(&srv, cert_pem, key_pem, &e);
            }
            if (!d) {
                fprintf(stderr, "vmdr-sim: restart: %s\n", e.message);
                return 1;
            }
        }
        if (state) {
            /* Saved at most every 50 ms: a burst of writes is one file write. */
            pthread_mutex_lock(&srv.store.mu);
            uint64_t ch = srv.store.changes;
            pthread_mutex_unlock(&srv.store.mu);
            if (ch != saved && sim_store_save(&srv.store, state, &saved, &e))
                fprintf(stderr, "vmdr-sim: %s\n", e.message);
        }
    }
    pthread_mutex_lock(&srv.store.mu);
    srv.store.closing = 1;
    pthread_cond_broadcast(&srv.store.cv);
    int final_save = state && (srv.store.changes != saved || !from_state);
    pthread_mutex_unlock(&srv.store.mu);
    if (final_save && sim_store_save(&srv.store, state, NULL, &e))
        fprintf(stderr, "vmdr-sim: %s\n", e.message);
    MHD_stop_daemon(d);
    sim_store_free(&srv.store);
    free(ca_pem);
    free(cert_pem);
    free(key_pem);
    free(srv.ca_pem);
    free(tokbuf);
    free(srv.token);
    return 0;
}
