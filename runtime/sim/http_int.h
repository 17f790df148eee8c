/* vmdr-sim HTTP internals shared by http.c (routing, replies, auth, daemon), discovery.c,
 * table.c, list.c, watch.c, write.c and admin.c. Not a public interface. */
#ifndef VMDR_SIM_HTTP_INT_H
#define VMDR_SIM_HTTP_INT_H

#include <microhttpd.h>

#include "sim.h"

/* Per-request context handed through the handlers. */
typedef struct ctx {
    sim_server *srv;
    struct MHD_Connection *c;
    const char *url;
    const char *method;
    const char *body;
    size_t body_len;
    int table;      /* the client accepts a meta.k8s.io Table */
    int aggregated; /* the client accepts aggregated discovery v2 */
    int include;    /* Table rows: 0 none, 1 metadata, 2 object */
    int garble;     /* malformed-reply fault applies to this response */
    int gzip;       /* the client accepts gzip and --gzip is on */
    char garble_mode[16];
} ctx;

/* replies (http.c) */
enum MHD_Result sim__reply_raw(ctx *x, int status, const char *ctype, char *body, size_t len,
                               const char *retry_after);
enum MHD_Result sim__reply_json(ctx *x, int status, char *body, size_t len);
enum MHD_Result sim__reply_cjson(ctx *x, int status, cJSON *j);
const char *sim__reason_for(int code);
cJSON *sim__status_obj(int code, const char *reason, const char *message, const char *name,
                       const char *group, const char *kind);
enum MHD_Result sim__reply_status(ctx *x, int code, const char *reason, const char *name, int res,
                                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
enum MHD_Result sim__reply_not_found(ctx *x, int res, const char *name);
enum MHD_Result sim__reply_no_route(ctx *x);
enum MHD_Result sim__reply_method(ctx *x);
enum MHD_Result sim__reply_invalid(ctx *x, int res, const char *name, const char *field,
                                   const char *detail);
/* The object text as JSON, or as a one-row Table when the client asked for Tables. */
enum MHD_Result sim__reply_obj_text(ctx *x, int status, int res, const char *text, size_t len);
const char *sim__arg(ctx *x, const char *k);
int sim__arg_true(ctx *x, const char *k);
int sim__authenticated(ctx *x);
int sim__is_method(ctx *x, const char *m);

/* Queues r with status, logging "METHOD URL -> STATUS" on stderr under --verbose. */
enum MHD_Result sim__queue(ctx *x, unsigned status, struct MHD_Response *r);

/* Compresses in[0..n) as a gzip member (level 1, as kube-apiserver); NULL on failure. */
char *sim__gzip(const char *in, size_t n, size_t *out_len);
#define SIM_GZIP_MIN (128 * 1024) /* kube-apiserver compresses responses from this size */

/* discovery.c: /version, /api, /apis, group-versions, aggregated discovery, /openapi/v3 */
enum MHD_Result sim__discovery(ctx *x, char **seg, int nseg, int *handled);

/* table.c */
cJSON *sim__table_new(int res, uint64_t rv, const char *cont);
cJSON *sim__table_row(ctx *x, int res, const cJSON *obj);

/* list.c, watch.c, write.c: the verbs (ns is NULL for cluster-wide or cluster-scoped) */
enum MHD_Result sim__do_list(ctx *x, int res, const char *ns);
enum MHD_Result sim__do_get(ctx *x, int res, const char *ns, const char *name);
enum MHD_Result sim__do_watch(ctx *x, int res, const char *ns);
enum MHD_Result sim__do_create(ctx *x, int res, const char *ns);
enum MHD_Result sim__do_update(ctx *x, int res, const char *ns, const char *name, const char *sub);
enum MHD_Result sim__do_patch(ctx *x, int res, const char *ns, const char *name, const char *sub);
enum MHD_Result sim__do_delete(ctx *x, int res, const char *ns, const char *name);

/* admin.c: /_sim endpoints and fault injection */
enum MHD_Result sim__admin(ctx *x, char **seg, int nseg);
/* Returns 1 (the reply queued in *rc) when an injected fault answers this request. */
int sim__faults_before(ctx *x, enum MHD_Result *rc);
cJSON *sim__faults_json(sim_server *srv);

#endif
