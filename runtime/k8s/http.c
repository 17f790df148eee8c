/* The Kubernetes client's transport: libcurl multi, one per client (see k8s.h). */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "k8s.h"

#define DEFAULT_MAX_BODY ((size_t)1 << 30)
#define POLL_SLICE_MS 100
/* A request's body buffer bigger than this is not kept after its body was consumed: a
 * long-lived client (the monitor) would otherwise hold its largest list's buffer. */
#define KEEP_BODY_MAX ((size_t)256 << 10)

struct vmdr_k8s_xfer {
    vmdr_k8s_conn *conn; /* NULL once the conn was freed under a stream */
    CURL *easy;
    struct curl_slist *headers;
    vmdr_k8s_frame b; /* the body bytes (frame.c): [b.off, b.len) not yet consumed */
    size_t max;
    int in_multi;
    int done;         /* curl finished the transfer */
    CURLcode result;  /* valid when done */
    int headers_done; /* a final (non-1xx) header block ended */
    int too_large;
    long status;
    char content_type[128];
    double retry_after;
    size_t content_length; /* announced by the server, 0 if not; sizes the buffer once */
    int encoded;           /* a Content-Encoding other than identity (gzip): the length is not
                            * the body's */
    long (*hook)(void *, long, const char *, size_t, const char *, size_t, int, vmdr_err *);
    void *hook_payload;
    size_t hooked; /* buffer length at the last hook call */
    char errbuf[CURL_ERROR_SIZE];
    char method[16];
    char url_for_msg[256]; /* path only: messages never carry credentials */
    vmdr_k8s_xfer *next;   /* the conn's list of open streams */
};

struct vmdr_k8s_conn {
    CURLM *multi;
    CURL *tmpl; /* TLS and connection options; every transfer is a dup of it */
    vmdr_k8s_xfer req;
    char *base; /* server URL without a trailing slash (host replaced by server_name) */
    int (*interrupted)(void);
    vmdr_k8s_xfer *streams;
    struct curl_slist *connect_to; /* curl keeps the pointer: it lives as long as the conn */
    int global;                    /* holds a curl_global_init reference */
};

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_body(char *p, size_t size, size_t n, void *payload)
{
    vmdr_k8s_xfer *x = payload;
    size_t add = size * n;
    if (x->b.len - x->b.off + add > x->max) {
        /* Never longjmp out of curl (STYLE C3): record and return the abort code. */
        x->too_large = 1;
        return 0;
    }
    /* Only a plain request is sized by its Content-Length: a hooked one is consumed
     * as it arrives and never holds the whole body. */
    size_t known = !x->hook && x->content_length < x->max ? x->content_length : 0;
    size_t dropped;
    if (vmdr_k8s_frame_append(&x->b, p, add, known, &dropped) != 0)
        return 0;
    x->hooked = x->hooked > dropped ? x->hooked - dropped : 0;
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *payload)
{
    vmdr_k8s_xfer *x = payload;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new header block (after a 100 Continue or a redirect): start over. */
        const char *sp = memchr(p, ' ', len);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->content_type[0] = '\0';
        x->retry_after = -1;
        x->content_length = 0;
        x->encoded = 0;
        x->headers_done = 0;
    } else if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        if (x->status >= 200)
            x->headers_done = 1;
    } else {
        const char *colon = memchr(p, ':', len);
        if (colon) {
            size_t kl = (size_t)(colon - p);
            const char *v = colon + 1;
            const char *end = p + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
            size_t vl = (size_t)(end - v);
            if (kl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
                if (vl >= sizeof x->content_type)
                    vl = sizeof x->content_type - 1;
                memcpy(x->content_type, v, vl);
                x->content_type[vl] = '\0';
            } else if (kl == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
                char tmp[32];
                if (vl < sizeof tmp) {
                    memcpy(tmp, v, vl);
                    tmp[vl] = '\0';
                    x->content_length = (size_t)strtoull(tmp, NULL, 10);
                }
            } else if (kl == 16 && strncasecmp(p, "Content-Encoding", 16) == 0) {
                x->encoded = !(vl == 8 && strncasecmp(v, "identity", 8) == 0);
            } else if (kl == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
                char tmp[32];
                if (vl < sizeof tmp) {
                    memcpy(tmp, v, vl);
                    tmp[vl] = '\0';
                    char *e;
                    double s = strtod(tmp, &e);
                    /* An HTTP-date form is rare from API servers; treat it as absent. */
                    if (e != tmp && *e == '\0' && s >= 0)
                        x->retry_after = s;
                }
            }
        }
    }
    return len;
}

static int set_blob(CURL *e, CURLoption opt, const char *data, size_t len)
{
    struct curl_blob b;
    b.data = (void *)data;
    b.len = len;
    b.flags = CURL_BLOB_COPY;
    return curl_easy_setopt(e, opt, &b) == CURLE_OK ? 0 : -1;
}

/* Applies the connection-level options to the template handle. */
static int setup_template(vmdr_k8s_conn *c, const vmdr_k8s_conn_opts *o, vmdr_err *err)
{
    CURL *e = c->tmpl;
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *scheme = NULL, *url = NULL;
    int rc = -1;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, o->server, 0) != CURLUE_OK) {
        vmdr_err_set(err, "invalid", 0, "server URL '%s' is not a valid URL", o->server);
        goto done;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (scheme == NULL || (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)) {
        vmdr_err_set(err, "invalid", 0, "server URL '%s' must be http:// or https://", o->server);
        goto done;
    }
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (o->server_name && *o->server_name && host && port) {
        /* TLS server name: connect to the real host, but speak (SNI, verification,
         * Host) to server_name, as Go's tls.Config.ServerName does. */
        char connect_to[512];
        struct curl_slist *ct;
        snprintf(connect_to, sizeof connect_to, "%s:%s:%s:%s", o->server_name, port, host, port);
        ct = curl_slist_append(NULL, connect_to);
        c->connect_to = ct;
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, ct);
        curl_url_set(u, CURLUPART_HOST, o->server_name, 0);
    }
    curl_url_get(u, CURLUPART_URL, &url, 0);
    {
        size_t l = strlen(url);
        while (l > 0 && url[l - 1] == '/')
            url[--l] = '\0';
        c->base = strdup(url);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "vmdr/" VMDR_VERSION);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (o->proxy && *o->proxy)
        curl_easy_setopt(e, CURLOPT_PROXY, o->proxy);
    if (o->ca_data && o->ca_len) {
        if (set_blob(e, CURLOPT_CAINFO_BLOB, o->ca_data, o->ca_len) != 0) {
            vmdr_err_set(err, "tls", 0, "this libcurl cannot take a CA from memory");
            goto done;
        }
    } else if (o->ca_file && *o->ca_file) {
        curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    }
    if (o->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    if (o->cert_data && o->cert_len)
        set_blob(e, CURLOPT_SSLCERT_BLOB, o->cert_data, o->cert_len);
    else if (o->cert_file && *o->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, o->cert_file);
    if (o->key_data && o->key_len)
        set_blob(e, CURLOPT_SSLKEY_BLOB, o->key_data, o->key_len);
    else if (o->key_file && *o->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, o->key_file);
    rc = 0;
done:
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_free(url);
    if (u)
        curl_url_cleanup(u);
    return rc;
}

static int xfer_init(vmdr_k8s_xfer *x, vmdr_k8s_conn *c)
{
    x->conn = c;
    x->easy = curl_easy_duphandle(c->tmpl);
    if (x->easy == NULL)
        return -1;
    x->retry_after = -1;
    return 0;
}

int vmdr_k8s_conn_new(vmdr_k8s_conn **out, const vmdr_k8s_conn_opts *o, vmdr_err *err)
{
    vmdr_k8s_conn *c = NULL;
    *out = NULL;
    if (o->server == NULL || *o->server == '\0')
        return vmdr_err_set(err, "invalid", 0, "no server URL");
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return vmdr_err_set(err, "nomem", 0, "out of memory");
    /* Reference-counted by curl: each conn holds one, released in conn_free (no static). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(c);
        return vmdr_err_set(err, "error", 0, "curl initialisation failed");
    }
    c->global = 1;
    c->interrupted = o->interrupted;
    c->multi = curl_multi_init();
    c->tmpl = curl_easy_init();
    if (c->multi == NULL || c->tmpl == NULL) {
        vmdr_err_set(err, "error", 0, "curl initialisation failed");
        goto fail;
    }
    if (setup_template(c, o, err) != 0)
        goto fail;
    if (xfer_init(&c->req, c) != 0) {
        vmdr_err_set(err, "error", 0, "curl initialisation failed");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    vmdr_k8s_conn_free(c);
    return -1;
}

static void xfer_detach(vmdr_k8s_xfer *x)
{
    if (x->easy) {
        if (x->in_multi && x->conn)
            curl_multi_remove_handle(x->conn->multi, x->easy);
        x->in_multi = 0;
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
}

void vmdr_k8s_conn_free(vmdr_k8s_conn *c)
{
    if (c == NULL)
        return;
    for (vmdr_k8s_xfer *s = c->streams; s; s = s->next) {
        xfer_detach(s);
        s->conn = NULL;
    }
    c->streams = NULL;
    xfer_detach(&c->req);
    vmdr_k8s_frame_free(&c->req.b);
    if (c->tmpl)
        curl_easy_cleanup(c->tmpl);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->connect_to);
    free(c->base);
    if (c->global)
        curl_global_cleanup();
    free(c);
}

int vmdr_k8s_conn_set_client_cert(vmdr_k8s_conn *c, const char *cert, size_t cert_len,
                                  const char *key, size_t key_len, vmdr_err *err)
{
    CURL *hs[2] = {c->tmpl, c->req.easy};
    for (int i = 0; i < 2; i++) {
        if (hs[i] == NULL)
            continue;
        if (set_blob(hs[i], CURLOPT_SSLCERT_BLOB, cert, cert_len) != 0 ||
            set_blob(hs[i], CURLOPT_SSLKEY_BLOB, key, key_len) != 0)
            return vmdr_err_set(err, "tls", 0, "cannot set the client certificate");
    }
    return 0;
}

/* Drives every transfer of the conn once and records finished ones. */
static int pump(vmdr_k8s_conn *c, vmdr_err *err)
{
    int running = 0;
    CURLMcode mc = curl_multi_perform(c->multi, &running);
    if (mc != CURLM_OK)
        return vmdr_err_set(err, "error", 0, "curl: %s", curl_multi_strerror(mc));
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        vmdr_k8s_xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            x->done = 1;
            x->result = m->data.result;
        }
    }
    return 0;
}

enum { UNTIL_DONE, UNTIL_HEADERS, UNTIL_LINE };

static int ready(vmdr_k8s_xfer *x, int what)
{
    if (x->done)
        return 1;
    if (what == UNTIL_HEADERS)
        return x->headers_done;
    if (what == UNTIL_LINE)
        return vmdr_k8s_frame_has_line(&x->b);
    return 0;
}

/* The one wait of the client: 1 when ready, 0 at the deadline, -1 with err. */
static int conn_wait(vmdr_k8s_conn *c, vmdr_k8s_xfer *x, int what, long timeout_ms, vmdr_err *err)
{
    long deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
    for (;;) {
        if (pump(c, err) != 0)
            return -1;
        if (x->hook && x->headers_done && !x->done && x->b.len > x->hooked) {
            /* between curl calls: the hook may run Lua (never inside a curl callback) */
            long used = x->hook(x->hook_payload, x->status, x->content_type,
                                x->encoded ? 0 : x->content_length, x->b.buf + x->b.off,
                                x->b.len - x->b.off, 0, err);
            if (used < 0)
                return -1;
            x->b.off += (size_t)used;
            x->b.scan = x->b.off;
            x->hooked = x->b.len;
        }
        if (x->b.len > x->b.scan || x->done || what != UNTIL_LINE) {
            if (ready(x, what))
                return 1;
        }
        if (c->interrupted && c->interrupted())
            return vmdr_err_set(err, "interrupted", 0, "%s %s interrupted by signal", x->method,
                                x->url_for_msg);
        long wait = POLL_SLICE_MS;
        if (deadline) {
            long left = deadline - mono_ms();
            if (left <= 0)
                return 0;
            if (left < wait)
                wait = left;
        }
        int n = 0;
        CURLMcode mc = curl_multi_poll(c->multi, NULL, 0, (int)wait, &n);
        if (mc != CURLM_OK)
            return vmdr_err_set(err, "error", 0, "curl: %s", curl_multi_strerror(mc));
    }
}

/* Maps a failed transfer to the client's error codes. */
static int xfer_error(vmdr_k8s_xfer *x, vmdr_err *err)
{
    const char *code = "unreachable";
    CURLcode r = x->result;
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(r);
    if (x->too_large)
        return vmdr_err_set(err, "too_large", 0, "%s %s: response larger than %zu bytes", x->method,
                            x->url_for_msg, x->max);
    switch (r) {
    case CURLE_OPERATION_TIMEDOUT:
        code = "timeout";
        break;
    case CURLE_SSL_CONNECT_ERROR:
        /* A handshake cut by the peer going away is a connection problem, not a TLS
         * setting to fix: the caller should retry, not reconfigure. */
        if (strstr(why, "reset by peer") || strstr(why, "refused") ||
            strstr(why, "unexpected eof") || strstr(why, "SSL_ERROR_SYSCALL") ||
            strstr(why, "Broken pipe"))
            break;
        code = "tls";
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        code = "tls";
        break;
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        code = "bad_response";
        break;
    case CURLE_OUT_OF_MEMORY:
        code = "nomem";
        break;
    case CURLE_URL_MALFORMAT:
        code = "invalid";
        break;
    default:
        break;
    }
    return vmdr_err_set(err, code, 0, "%s %s: %s", x->method, x->url_for_msg, why);
}

/* Sets the per-transfer options of x for request r. */
static int xfer_prepare(vmdr_k8s_xfer *x, const vmdr_k8s_req *r, int stream, vmdr_err *err)
{
    vmdr_k8s_conn *c = x->conn;
    CURL *e = x->easy;
    size_t blen = strlen(c->base), plen = strlen(r->path);
    char *url = malloc(blen + plen + 2);
    if (url == NULL)
        return vmdr_err_set(err, "nomem", 0, "out of memory");
    memcpy(url, c->base, blen);
    if (r->path[0] != '/')
        url[blen++] = '/';
    memcpy(url + blen, r->path, plen + 1);
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);

    snprintf(x->method, sizeof x->method, "%s", r->method);
    {
        /* Messages name the path without its query (selectors are fine, but short is kind). */
        size_t q = strcspn(r->path, "?");
        if (q >= sizeof x->url_for_msg)
            q = sizeof x->url_for_msg - 1;
        memcpy(x->url_for_msg, r->path, q);
        x->url_for_msg[q] = '\0';
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    char hdr[256];
    snprintf(hdr, sizeof hdr, "Accept: %s", r->accept ? r->accept : "application/json");
    x->headers = curl_slist_append(x->headers, hdr);
    if (r->body) {
        snprintf(hdr, sizeof hdr, "Content-Type: %s",
                 r->content_type ? r->content_type : "application/json");
        x->headers = curl_slist_append(x->headers, hdr);
        x->headers = curl_slist_append(x->headers, "Expect:");
    }
    if (r->authorization && *r->authorization) {
        size_t al = strlen(r->authorization);
        char *a = malloc(al + 32);
        if (a == NULL)
            return vmdr_err_set(err, "nomem", 0, "out of memory");
        snprintf(a, al + 32, "Authorization: %s", r->authorization);
        x->headers = curl_slist_append(x->headers, a);
        memset(a, 0, al + 32); /* the token does not linger in freed memory */
        free(a);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        if (strcmp(r->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    if (stream) {
        /* A stream has no overall timeout; a connection silent for timeout_ms (longer
         * than the server's timeoutSeconds and bookmark interval) is dropped. */
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                         r->timeout_ms > 0 ? (r->timeout_ms + 999) / 1000 : 600L);
    } else {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms > 0 ? r->timeout_ms : 0L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 0L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 0L);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    x->errbuf[0] = '\0';
    vmdr_k8s_frame_reset(&x->b);
    x->max = r->max_body ? r->max_body : DEFAULT_MAX_BODY;
    x->done = 0;
    x->result = CURLE_OK;
    x->headers_done = 0;
    x->too_large = 0;
    x->status = 0;
    x->content_type[0] = '\0';
    x->retry_after = -1;
    x->content_length = 0;
    x->hook = stream ? NULL : r->on_body;
    x->hook_payload = r->payload;
    x->hooked = 0;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        return vmdr_err_set(err, "error", 0, "curl: cannot start the transfer");
    x->in_multi = 1;
    return 0;
}

static void xfer_finish(vmdr_k8s_xfer *x)
{
    if (x->in_multi && x->conn)
        curl_multi_remove_handle(x->conn->multi, x->easy);
    x->in_multi = 0;
}

int vmdr_k8s_request(vmdr_k8s_conn *c, const vmdr_k8s_req *r, vmdr_k8s_resp *out, vmdr_err *err)
{
    vmdr_k8s_xfer *x = &c->req;
    int rc;
    memset(out, 0, sizeof *out);
    /* A big buffer from an earlier request (whose body the caller has used) is not kept. */
    if (x->b.cap > KEEP_BODY_MAX)
        vmdr_k8s_frame_free(&x->b);
    if (xfer_prepare(x, r, 0, err) != 0)
        return -1;
    rc = conn_wait(c, x, UNTIL_DONE, 0, err);
    xfer_finish(x);
    /* Forget the authorization header now rather than at the next request. */
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, NULL);
    if (rc < 0)
        return -1;
    if (x->result != CURLE_OK || x->too_large)
        return xfer_error(x, err);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &out->status);
    if (x->hook) {
        long used = x->hook(x->hook_payload, out->status, x->content_type,
                            x->encoded ? 0 : x->content_length,
                            x->b.buf ? x->b.buf + x->b.off : "", x->b.len - x->b.off, 1, err);
        if (used < 0)
            return -1;
        x->b.off += (size_t)used;
        /* the hook took the whole body (a list): nothing to keep for the caller */
        if (x->b.off == x->b.len && x->b.cap > KEEP_BODY_MAX)
            vmdr_k8s_frame_free(&x->b);
    }
    out->body = x->b.buf ? x->b.buf + x->b.off : "";
    out->len = x->b.len - x->b.off;

    out->content_type = x->content_type;
    out->retry_after = x->retry_after;
    {
        curl_off_t us = 0;
        curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
        out->seconds = (double)us / 1e6;
    }
    return 0;
}

int vmdr_k8s_stream_open(vmdr_k8s_xfer **out, vmdr_k8s_conn *c, const vmdr_k8s_req *r,
                         long timeout_ms, vmdr_err *err)
{
    vmdr_k8s_xfer *x = calloc(1, sizeof *x);
    *out = NULL;
    if (x == NULL)
        return vmdr_err_set(err, "nomem", 0, "out of memory");
    if (xfer_init(x, c) != 0) {
        free(x);
        return vmdr_err_set(err, "error", 0, "curl initialisation failed");
    }
    x->next = c->streams;
    c->streams = x;
    if (xfer_prepare(x, r, 1, err) != 0)
        goto fail;
    /* A watch sends its headers at once: no headers within timeout_ms, no server. */
    int w = conn_wait(c, x, UNTIL_HEADERS, timeout_ms, err);
    if (w < 0)
        goto fail;
    if (w == 0) {
        vmdr_err_set(err, "timeout", 0, "%s %s: no response within %ld ms", x->method,
                     x->url_for_msg, timeout_ms);
        goto fail;
    }
    if (!x->headers_done && x->done && (x->result != CURLE_OK || x->too_large)) {
        xfer_error(x, err);
        goto fail;
    }
    *out = x;
    return 0;
fail:
    vmdr_k8s_stream_free(x);
    return -1;
}

long vmdr_k8s_stream_status(const vmdr_k8s_xfer *x)
{
    return x->status;
}

const char *vmdr_k8s_stream_content_type(const vmdr_k8s_xfer *x)
{
    return x->content_type;
}

size_t vmdr_k8s_conn_buffer(const vmdr_k8s_conn *c)
{
    return c->req.b.cap;
}

void vmdr_k8s_stream_buffer(const vmdr_k8s_xfer *x, size_t *allocated, size_t *pending)
{
    *allocated = x->b.cap;
    *pending = x->b.len - x->b.off;
}

int vmdr_k8s_stream_next(vmdr_k8s_xfer *x, long timeout_ms, const char **line, size_t *len,
                         vmdr_err *err)
{
    if (x->conn == NULL)
        return vmdr_err_set(err, "closed", 0, "the client of this stream was closed");
    for (;;) {
        if (vmdr_k8s_frame_next(&x->b, 0, line, len))
            return 1;
        if (x->done) {
            if (x->result != CURLE_OK || x->too_large)
                return xfer_error(x, err);
            return vmdr_k8s_frame_next(&x->b, 1, line, len) ? 1 : 2;
        }
        /* Every buffered line is consumed (the caller holds none: it asked for the next):
         * a buffer grown by a long line (a VM with big annotations) is given back here, or
         * the stream would keep its high-water mark as long as it lives. */
        vmdr_k8s_frame_trim(&x->b);
        int w = conn_wait(x->conn, x, UNTIL_LINE, timeout_ms, err);
        if (w < 0)
            return -1;
        if (w == 0)
            return 0;
    }
}

int vmdr_k8s_stream_rest(vmdr_k8s_xfer *x, long timeout_ms, const char **body, size_t *len,
                         vmdr_err *err)
{
    if (x->conn == NULL)
        return vmdr_err_set(err, "closed", 0, "the client of this stream was closed");
    int w = conn_wait(x->conn, x, UNTIL_DONE, timeout_ms, err);
    if (w < 0)
        return -1;
    if (w == 0)
        return vmdr_err_set(err, "timeout", 0, "%s %s: body not complete within %ld ms", x->method,
                            x->url_for_msg, timeout_ms);
    if (x->result != CURLE_OK || x->too_large)
        return xfer_error(x, err);
    *body = x->b.buf ? x->b.buf + x->b.off : "";
    *len = x->b.len - x->b.off;
    x->b.off = x->b.scan = x->b.len;
    return 0;
}

void vmdr_k8s_stream_free(vmdr_k8s_xfer *x)
{
    if (x == NULL)
        return;
    if (x->conn) {
        vmdr_k8s_xfer **pp = &x->conn->streams;
        while (*pp && *pp != x)
            pp = &(*pp)->next;
        if (*pp)
            *pp = x->next;
    }
    xfer_detach(x);
    vmdr_k8s_frame_free(&x->b);
    free(x);
}
