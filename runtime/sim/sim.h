/* vmdr-sim: a simulated OpenShift Virtualization site speaking the Kubernetes REST API.
 * Standalone C (no Lua): libmicrohttpd for HTTP(S), cJSON for objects, libyaml for fixtures.
 *
 * Layout:
 *   main.c    argv, daemon lifecycle (start, restart fault, signals), kubeconfig, TLS material
 *   store.c   objects, the global resourceVersion, the event history, persistence
 *   load.c    fixtures (YAML/JSON, multi-document, kind: List) and --generate
 *   http.c    routing, verbs, discovery, Tables, Status errors, auth, faults, watch streams
 *   select.c  label and field selectors
 *   patch.c   JSON merge patch (RFC 7386) and JSON patch (RFC 6902)
 *   util.c    buffers, time, uuid, JSON helpers */
#ifndef VMDR_SIM_H
#define VMDR_SIM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "err.h"

/* ---- util.c ------------------------------------------------------------------------- */
typedef struct sim_buf {
    char *p;
    size_t n, cap;
} sim_buf;

void sim_buf_add(sim_buf *b, const char *s, size_t n);
void sim_buf_adds(sim_buf *b, const char *s);
void sim_buf_printf(sim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes and escapes). */
void sim_buf_json_str(sim_buf *b, const char *s);
void sim_buf_free(sim_buf *b);
/* Takes ownership of the bytes (NUL-terminated); the buffer is empty afterwards. */
char *sim_buf_take(sim_buf *b, size_t *len);

void *sim_xmalloc(size_t n);
void *sim_xrealloc(void *p, size_t n);
char *sim_xstrdup(const char *s);

double sim_now(void);  /* wall clock, seconds */
double sim_mono(void); /* monotonic, seconds */
void sim_rfc3339(char out[32], double t);
int sim_parse_rfc3339(const char *s, double *out);
void sim_human_duration(char out[32], double seconds);
void sim_uuid(char out[37]);

/* cJSON helpers: a missing member or a wrong type gives NULL / def. */
cJSON *sim_j_obj(const cJSON *o, const char *key);
const char *sim_j_str(const cJSON *o, const char *key);
/* Gets or creates the object member key of o. */
cJSON *sim_j_ensure_obj(cJSON *o, const char *key);
void sim_j_set_str(cJSON *o, const char *key, const char *v);
void sim_j_set(cJSON *o, const char *key, cJSON *v);
char *sim_j_print(const cJSON *o, size_t *len);
/* Dotted path lookup (a.b.c); NULL when absent. */
const cJSON *sim_j_path(const cJSON *o, const char *path);
int sim_read_file(const char *path, char **out, size_t *len);
int sim_write_file_atomic(const char *path, const char *data, size_t len, int mode);

/* ---- resources ----------------------------------------------------------------------- */
enum { SIM_RES_NAMESPACES, SIM_RES_PVCS, SIM_RES_PVS, SIM_RES_VMS, SIM_RES_LEASES, SIM_NRES };

typedef struct sim_res {
    const char *group; /* "" for the core group */
    const char *version;
    const char *plural;
    const char *singular;
    const char *kind;
    const char *list_kind;
    int namespaced;
    int custom;     /* a CRD: generation on any non-metadata/status change, no SMP */
    int has_status; /* a status subresource (status is ignored by the main endpoint) */
    const char *short_names[3];
    const char *categories[2];
} sim_res;

extern const sim_res sim_resources[SIM_NRES];
/* The resource for (group, version, plural), or -1. */
int sim_res_find(const char *group, const char *version, const char *plural);
/* The resource whose kind and apiVersion match (apiVersion may be an older kubevirt.io one). */
int sim_res_by_kind(const char *api_version, const char *kind);
/* "virtualmachines.kubevirt.io" or "persistentvolumeclaims": how API messages name it. */
void sim_res_qualified(int res, char out[96]);
/* "kubevirt.io/v1" or "v1" */
void sim_res_api_version(int res, char out[64]);

/* ---- select.c ------------------------------------------------------------------------ */
typedef struct sim_selector sim_selector;
/* Parses a label selector; NULL with err (code "invalid") filled on a syntax error.
 * An empty or NULL string gives a selector that matches everything. */
sim_selector *sim_selector_parse(const char *s, vmdr_err *err);
int sim_selector_matches(const sim_selector *sel, const cJSON *labels);
int sim_selector_empty(const sim_selector *sel);
void sim_selector_free(sim_selector *sel);

typedef struct sim_fieldsel {
    int n;
    struct {
        int field; /* 0 metadata.name, 1 metadata.namespace */
        int neg;
        char *value;
    } req[8];
} sim_fieldsel;
int sim_fieldsel_parse(sim_fieldsel *fs, const char *s, vmdr_err *err);
int sim_fieldsel_matches(const sim_fieldsel *fs, const char *ns, const char *name);
void sim_fieldsel_free(sim_fieldsel *fs);

/* ---- patch.c ------------------------------------------------------------------------- */
/* Applies an RFC 7386 merge patch to target (modified in place; may be replaced). */
cJSON *sim_merge_patch(cJSON *target, const cJSON *patch);
/* A strategic merge patch for the core types (directives honoured, finalizers merged as a
 * set, other lists replaced); NULL when it deletes the whole target. */
cJSON *sim_strategic_patch(cJSON *target, const cJSON *patch);
/* Applies an RFC 6902 patch; returns 0 or -1 with err (code "invalid" or "conflict"
 * for a failed test operation). target may be replaced through *doc. */
int sim_json_patch(cJSON **doc, const cJSON *ops, vmdr_err *err);

/* ---- store.c ------------------------------------------------------------------------- */
/* An object's serialised JSON, shared (refcounted) between the store and list responses
 * still being sent, so a list is a snapshot of pointers rather than a copy of every byte. */
typedef struct sim_text {
    int refs; /* atomic */
    size_t len;
    size_t bare; /* offset of the members after apiVersion and kind ("{" + s + bare is the
                    item as a core list carries it), 0 when not in that shape */
    char s[];
} sim_text;

sim_text *sim_text_ref(sim_text *t);
void sim_text_unref(sim_text *t);

typedef struct sim_obj {
    char *key; /* "ns/name", or "name" for cluster-scoped objects: etcd key order */
    char *ns;  /* "" for cluster-scoped */
    char *name;
    cJSON *json;
    sim_text *ref;
    const char *text; /* ref->s: cached compact JSON of json */
    size_t len;
} sim_obj;

typedef struct sim_coll {
    sim_obj **v;
    size_t n, cap;
} sim_coll;

enum { SIM_EV_ADDED, SIM_EV_MODIFIED, SIM_EV_DELETED };

typedef struct sim_event {
    uint64_t rv;
    int res, type;
    char *ns, *name;
    char *text; /* the object (for DELETED: its last state at the deletion RV) */
    size_t len;
    char *prev_text; /* MODIFIED: the previous state at this RV (a selected watch's DELETED) */
    size_t prev_len;
    cJSON *labels, *prev_labels;
    sim_text *before;   /* the object as it was before this event (NULL for ADDED): lets a
                           continued list serve the snapshot of its first page */
} sim_event;

typedef struct sim_store {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t rv;    /* the last resourceVersion issued (one global counter, as etcd) */
    uint64_t floor; /* history starts after this RV: older watches get 410 Gone */
    sim_coll coll[SIM_NRES];
    sim_event *ev; /* ring of the most recent events */
    size_t ev_cap, ev_head, ev_n;
    uint64_t changes; /* bumped on each change: the persister saves when it moves */
    int closing;      /* shutting down: watch streams end */
    uint64_t epoch;   /* bumped by a restart fault: older watch streams end */
} sim_store;

void sim_store_init(sim_store *st, size_t history);
void sim_store_free(sim_store *st);
/* Caller holds st->mu for everything below. */
sim_obj *sim_store_get(sim_store *st, int res, const char *ns, const char *name);
/* Index of the first object whose key is >= key. */
size_t sim_store_lower_bound(const sim_coll *c, const char *key);
/* Stores obj (taking ownership) as a new object or a replacement; sets its
 * resourceVersion, records the event and wakes watchers. */
sim_obj *sim_store_put(sim_store *st, int res, cJSON *obj, int record);
int sim_store_delete(sim_store *st, int res, const char *ns, const char *name, char **out_text,
                     size_t *out_len);
/* Forget the history: a watch from an older RV gets 410, continue tokens expire. */
void sim_store_compact(sim_store *st);
/* Ensures a Namespace object exists (the fixtures' namespaces exist from the start). */
void sim_store_ensure_ns(sim_store *st, const char *ns);
/* Orders members as the API server prints them: apiVersion, kind, metadata, the rest, status.
 * Consumes obj; returns the reordered object. */
cJSON *sim_normalise(int res, cJSON *obj);
/* Fills metadata the API server sets on create (uid, creationTimestamp, generation). */
void sim_store_stamp_new(int res, cJSON *obj);

/* Saves atomically; takes the lock itself. *changes gets the change counter saved. */
int sim_store_save(sim_store *st, const char *path, uint64_t *changes, vmdr_err *err);
int sim_store_load_state(sim_store *st, const char *path, vmdr_err *err);

/* ---- load.c -------------------------------------------------------------------------- */
/* Loads every .yaml/.yml/.json under dir (recursively). Objects of kinds the sim does not
 * serve are skipped (counted in *skipped). Returns 0 or -1 with err. */
int sim_load_fixtures(sim_store *st, const char *dir, int *loaded, int *skipped, vmdr_err *err);
void sim_generate(sim_store *st, int n);
/* Parses YAML (all documents) into a cJSON array of documents. */
cJSON *sim_yaml_parse_all(const char *text, size_t len, vmdr_err *err);

/* ---- http.c -------------------------------------------------------------------------- */
typedef struct sim_fail_rule {
    int count; /* requests still to fail */
    int after; /* matching requests still to let through before failing ("fail the K+1-th") */
    int status;
    int retry_after;  /* seconds, for 429/503; 0 = no header */
    char verb[16];    /* "" = any */
    char prefix[256]; /* "" = any path */
} sim_fail_rule;

typedef struct sim_faults {
    sim_fail_rule fail;
    int drop_watch_after; /* end each watch stream abruptly after N events; 0 = never */
    int delay_ms;
    int reject_auth;
    int garble_count; /* malformed replies: the next N API responses */
    char garble[16];  /* "truncate" | "html" | "content-type" */
    char garble_prefix[256];
    double bookmark_interval;
    int gzip; /* gzip responses over 128 KiB to clients that accept it */
} sim_faults;

typedef struct sim_server {
    sim_store store;
    pthread_mutex_t fmu; /* guards faults */
    sim_faults faults;
    char *token; /* owned; NULL: no bearer auth; guarded by fmu (the admin key rotates it) */
    int client_ca;     /* client certificates are checked */
    char *ca_pem;      /* --client-ca contents (GnuTLS trust) */
    int tls;
    char host[64];
    int port;
    int restart_seconds; /* set by the admin endpoint; main.c acts on it */
    int quiet;
    int verbose; /* one stderr line per request */
    uint64_t requests;
    double started;
} sim_server;

struct MHD_Daemon;
struct MHD_Daemon *sim_http_start(sim_server *srv, const char *cert_pem, const char *key_pem,
                                  vmdr_err *err);
/* Parses a faults JSON document into srv->faults (admin endpoint and --faults). Returns 0, or
 * -1 with err. */
int sim_faults_apply(sim_server *srv, const char *json, vmdr_err *err);

#endif
