/* vmdr.k8s core: the HTTP transport of the Kubernetes client (libcurl), base64 and
 * the exec-credential runner. It knows nothing of Lua (STYLE: two layers) and nothing
 * of Kubernetes semantics beyond "a request" and "a stream of JSON lines": kubeconfig,
 * discovery, retries and the watch state machine live in lua/lib/vmdr/k8s/client.lua.
 *
 * One vmdr_k8s_conn is one curl multi handle. Every transfer of a client (requests
 * and watch streams) is added to that multi, so they share its connection cache:
 * keep-alive across calls, one pool per client. All waiting happens in one place
 * (conn_wait in http.c): curl_multi_poll in slices of at most 100 ms, checking the
 * interrupt callback between slices. */
#ifndef VMDR_K8S_H
#define VMDR_K8S_H

#include <stddef.h>

#include "err.h"

typedef struct vmdr_k8s_conn_opts {
    const char *server; /* "https://host:port[/prefix]" */
    const char *ca_file;
    const char *ca_data; /* PEM bytes (already base64-decoded) */
    size_t ca_len;
    const char *cert_file;
    const char *cert_data;
    size_t cert_len;
    const char *key_file;
    const char *key_data; /* secret */
    size_t key_len;
    int insecure;             /* skip server certificate verification */
    const char *server_name;  /* TLS server name (SNI + verification), else the URL's host */
    const char *proxy;        /* kubeconfig proxy-url; NULL: the environment, as curl reads it */
    long connect_timeout_ms;  /* 0: 10 s */
    int (*interrupted)(void); /* polled while waiting; non-zero aborts with "interrupted" */
} vmdr_k8s_conn_opts;

typedef struct vmdr_k8s_conn vmdr_k8s_conn;
typedef struct vmdr_k8s_xfer vmdr_k8s_xfer;

typedef struct vmdr_k8s_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* path and query, appended to the server URL */
    const char *body;   /* may be NULL */
    size_t body_len;
    const char *content_type;  /* of the body */
    const char *accept;        /* NULL: application/json */
    const char *authorization; /* the whole header value ("Bearer ..."), secret; may be NULL */
    long timeout_ms;           /* whole transfer; 0: none (streams) */
    size_t max_body;           /* 0: 1 GiB */
    /* Optional, for requests: called while the body arrives, between curl calls (never
     * inside one), with the bytes not yet consumed and done=1 once at the end of a
     * successful transfer; total is the body's announced length (0: not announced, or
     * compressed). Returns how many leading bytes it consumed (the core drops them), or
     * -1 with err to abort. Lets a list be decoded while it downloads. */
    long (*on_body)(void *payload, long status, const char *ctype, size_t total,
                    const char *buf, size_t len, int done, vmdr_err *err);
    void *payload;
} vmdr_k8s_req;

/* A finished response. The pointers stay valid until the next request on the conn. */
typedef struct vmdr_k8s_resp {
    long status;
    const char *body;
    size_t len;
    const char *content_type; /* "" when the server sent none */
    double retry_after;       /* seconds from a Retry-After header, -1 when absent */
    double seconds;           /* the transfer's duration (curl's total time) */
} vmdr_k8s_resp;

int vmdr_k8s_conn_new(vmdr_k8s_conn **out, const vmdr_k8s_conn_opts *o, vmdr_err *err);
/* Frees the conn; streams still open on it are detached (their next call fails "closed"). */
void vmdr_k8s_conn_free(vmdr_k8s_conn *c);
/* Replaces the client certificate and key (an exec plugin may hand out new ones). */
int vmdr_k8s_conn_set_client_cert(vmdr_k8s_conn *c, const char *cert, size_t cert_len,
                                  const char *key, size_t key_len, vmdr_err *err);

/* One request, waited for. Returns 0 with out filled for any HTTP status, or -1 with err
 * for transport failures: unreachable, timeout, tls, interrupted, too_large. */
int vmdr_k8s_request(vmdr_k8s_conn *c, const vmdr_k8s_req *r, vmdr_k8s_resp *out, vmdr_err *err);

/* Opens a streaming request (a watch) and waits until its response headers arrived.
 * Returns 0 with *out (for any HTTP status: see vmdr_k8s_stream_status), or -1 with err. */
int vmdr_k8s_stream_open(vmdr_k8s_xfer **out, vmdr_k8s_conn *c, const vmdr_k8s_req *r,
                         long timeout_ms, vmdr_err *err);
long vmdr_k8s_stream_status(const vmdr_k8s_xfer *x);
const char *vmdr_k8s_stream_content_type(const vmdr_k8s_xfer *x);
/* The bytes allocated for the body of the conn's requests (kept between requests only
 * while small). */
size_t vmdr_k8s_conn_buffer(const vmdr_k8s_conn *c);
/* The stream's buffer: bytes allocated and bytes received but not yet consumed. */
void vmdr_k8s_stream_buffer(const vmdr_k8s_xfer *x, size_t *allocated, size_t *pending);
/* Next non-empty line of the body, without its newline. Returns 1 with *line and *len (valid
 * until the next call), 0 when timeout_ms passed with no complete line, 2 at the clean end
 * of the body (any unterminated rest is returned first as a last line), -1 with err. */
int vmdr_k8s_stream_next(vmdr_k8s_xfer *x, long timeout_ms, const char **line, size_t *len,
                         vmdr_err *err);
/* Waits for the end of the body and returns all of it that was not yet consumed. */
int vmdr_k8s_stream_rest(vmdr_k8s_xfer *x, long timeout_ms, const char **body, size_t *len,
                         vmdr_err *err);
void vmdr_k8s_stream_free(vmdr_k8s_xfer *x);

/* The body buffer of a transfer and the line framing of a watch stream (frame.c).
 * Bytes [off, len) are not consumed yet; buf is NUL-terminated once allocated. */
typedef struct vmdr_k8s_frame {
    char *buf;
    size_t len, cap, off;
    size_t scan;      /* [off, scan) holds no newline: where the next search starts */
    size_t first_cap; /* the first allocation (0: 16 KiB); a zeroed frame is valid */
} vmdr_k8s_frame;
void vmdr_k8s_frame_init(vmdr_k8s_frame *f, size_t first_cap);
/* Forgets the bytes, keeps the allocation. */
void vmdr_k8s_frame_reset(vmdr_k8s_frame *f);
void vmdr_k8s_frame_free(vmdr_k8s_frame *f);
/* Appends n bytes. When it must grow and at least half of the buffer is consumed, it first
 * drops the consumed bytes; *dropped says how many (callers shift their own offsets).
 * known: the whole body's announced length (0: unknown), allocated at once if it fits.
 * Returns 0, or -1 out of memory (nothing appended). */
int vmdr_k8s_frame_append(vmdr_k8s_frame *f, const char *p, size_t n, size_t known,
                          size_t *dropped);
/* Gives back a buffer that a long line grew: when it is more than 4 times its first size and
 * what is not consumed fits in the first size, moves that rest into a new buffer of the
 * first size. Lines handed over earlier become invalid. Returns how many consumed bytes were
 * dropped (callers shift their own offsets by it; 0 when kept or when none were consumed). */
size_t vmdr_k8s_frame_trim(vmdr_k8s_frame *f);
/* Whether a complete line is buffered (not consumed); remembers how far it looked. */
int vmdr_k8s_frame_has_line(vmdr_k8s_frame *f);
/* Consumes the next non-empty line and returns 1 with *line and *len (without "\n" or
 * "\r\n"; valid until the next append), or 0 when no complete line is buffered. With
 * done (the body ended) an unterminated rest is returned, as it is, as a last line. */
int vmdr_k8s_frame_next(vmdr_k8s_frame *f, int done, const char **line, size_t *len);

/* Splits a list response as it arrives (listscan.c): each element of the top-level
 * "items" array goes to item() as soon as it is complete; the rest of the document is
 * collected in env with "items":[] in place of the array (env holds the whole document
 * when it has no items array). feed() returns the bytes of buf it consumed (the caller
 * drops them and passes the rest again with what arrives next), or -1 with err. */
typedef struct vmdr_k8s_listscan {
    char *env;
    size_t env_len, env_cap;
    long count; /* items handed over */
    int found;  /* the items array was seen */
    int mode, depth, in_str, esc, str_end, is_items;
    char cand[8]; /* the last string closed at depth 1 (a key candidate) */
    size_t cand_len;
    size_t pos;        /* bytes of the kept buffer already scanned */
    size_t item_start; /* offset of the current item in the kept buffer */
    /* Optional (NULL: every item is scanned, then handed to item()): decodes an item in
     * place from its first byte, so its bytes are read once, not scanned and then
     * decoded. Tried only with at least 4x the longest item so far (+4 KiB) at hand, so
     * it is most likely whole. Returns the item's length, 0 when it failed (then the item
     * is scanned and handed to item() as usual, which reports a real error), -1 with
     * err to abort. */
    long (*try_item)(void *payload, const char *p, size_t n, vmdr_err *err);
    size_t max_item; /* the longest item so far */
} vmdr_k8s_listscan;
void vmdr_k8s_listscan_init(vmdr_k8s_listscan *s);
long vmdr_k8s_listscan_feed(vmdr_k8s_listscan *s, const char *buf, size_t len, int done,
                            int (*item)(void *payload, const char *p, size_t n, vmdr_err *err),
                            void *payload, vmdr_err *err);
void vmdr_k8s_listscan_free(vmdr_k8s_listscan *s);

/* base64 (RFC 4648, standard alphabet, padding optional, whitespace ignored).
 * decode: *out is malloc'd (NUL-terminated); -1 with err "invalid" naming the offset. */
int vmdr_k8s_base64_decode(char **out, size_t *outlen, const char *s, size_t n, vmdr_err *err);
char *vmdr_k8s_base64_encode(const char *s, size_t n, size_t *outlen);

/* Runs argv (no shell) with env additions ("K=V" strings), stdin from /dev/null, and
 * collects stdout and stderr (malloc'd, NUL-terminated). *status is the exit status, or
 * 128+signal. Returns -1 with err: not_found (no such program), timeout, interrupted. */
typedef struct vmdr_k8s_exec_result {
    int status;
    char *out;
    size_t out_len;
    char *errout;
    size_t err_len;
} vmdr_k8s_exec_result;
int vmdr_k8s_exec(vmdr_k8s_exec_result *res, const char *const *argv, const char *const *env,
                  long timeout_ms, int (*interrupted)(void), vmdr_err *err);
void vmdr_k8s_exec_result_free(vmdr_k8s_exec_result *res);

#endif
