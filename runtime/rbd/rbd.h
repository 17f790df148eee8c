/* vmdr rbd core: librados + librbd mirroring primitives, no Lua.
 *
 * Every call returns 0 or -1 and fills a caller-owned vmdr_err whose code is the stable
 * part ("not_found", "busy", "invalid", "permission", "timeout", "unreachable", ...).
 * Every blocking librados call is bounded by the timeout given to vmdr_rbd_connect (the
 * three librados timeouts are set from it). The batch runs in worker threads of its own. */
#ifndef VMDR_RBD_H
#define VMDR_RBD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "err.h"

#define VMDR_RBD_NAME_MAX 256

typedef struct vmdr_rbd_cluster {
    rados_t rados;
    double timeout; /* seconds: mount, mon op and OSD op timeouts */
    int refs;       /* the Lua handle and every open image hold one (main thread only) */
} vmdr_rbd_cluster;

typedef struct vmdr_rbd_connect_opts {
    const char *conf;    /* ceph.conf path, NULL: librados's default search */
    const char *keyring; /* NULL: from the conf */
    const char *user;    /* "admin" or "client.admin"; NULL: admin */
    const char *cluster; /* cluster name, NULL: "ceph" */
    double timeout;      /* seconds, > 0 */
    int (*interrupted)(void); /* polled while connecting; NULL: not interruptible */
} vmdr_rbd_connect_opts;

/* Where an image lives: pool [/ namespace] / name. */
typedef struct vmdr_rbd_spec {
    char pool[VMDR_RBD_NAME_MAX];
    char ns[VMDR_RBD_NAME_MAX];
    char name[VMDR_RBD_NAME_MAX];
} vmdr_rbd_spec;

typedef struct vmdr_rbd_image {
    vmdr_rbd_cluster *cluster;
    rados_ioctx_t io;
    rbd_image_t img;
    vmdr_rbd_spec spec;
} vmdr_rbd_image;

typedef struct vmdr_rbd_mirror_info {
    char state[16]; /* "enabled" | "disabled" | "disabling" */
    char mode[16];  /* "snapshot" | "journal" | "" when disabled */
    int primary;
    char global_id[64];
} vmdr_rbd_mirror_info;

typedef struct vmdr_rbd_site_status {
    char mirror_uuid[64]; /* "" for the local site */
    char state[24];       /* "replaying", "stopped", "syncing", "error", "unknown", ... */
    char description[256];
    int up;
    time_t last_update;
} vmdr_rbd_site_status;

#define VMDR_RBD_MAX_SITES 8
typedef struct vmdr_rbd_mirror_status {
    vmdr_rbd_mirror_info info;
    int nsites;
    vmdr_rbd_site_status sites[VMDR_RBD_MAX_SITES];
    int split_brain; /* some site says so */
} vmdr_rbd_mirror_status;

typedef struct vmdr_rbd_mirror_snap {
    uint64_t id;
    char state[24]; /* "primary", "primary_demoted", "non_primary", "non_primary_demoted" */
    int complete;
    char primary_mirror_uuid[64];
    uint64_t primary_snap_id;
    time_t time;
} vmdr_rbd_mirror_snap;

typedef struct vmdr_rbd_image_info {
    uint64_t size;
    uint64_t obj_size;
    uint64_t features;
    char features_str[256];
    char id[64];
    int has_parent;
    char parent_pool[VMDR_RBD_NAME_MAX];
    char parent_ns[VMDR_RBD_NAME_MAX];
    char parent_image[VMDR_RBD_NAME_MAX];
    char parent_snap[VMDR_RBD_NAME_MAX];
} vmdr_rbd_image_info;

/* errno (positive or negative) -> stable code */
const char *vmdr_rbd_errcode(int err);
/* Sets e from a librbd/librados return value; what names the action. Returns -1. */
int vmdr_rbd__fail(vmdr_err *e, int rc, const char *what, const vmdr_rbd_spec *spec);

int vmdr_rbd_connect(vmdr_rbd_cluster **out, const vmdr_rbd_connect_opts *o, vmdr_err *e);
/* Drops one reference; the last one shuts librados down. */
void vmdr_rbd_cluster_unref(vmdr_rbd_cluster *c);

/* Parses "pool/name" or "pool/ns/name" into spec. */
int vmdr_rbd_parse_spec(vmdr_rbd_spec *out, const char *s, vmdr_err *e);
int vmdr_rbd_set_spec(vmdr_rbd_spec *out, const char *pool, const char *ns, const char *name,
                      vmdr_err *e);
void vmdr_rbd_spec_format(const vmdr_rbd_spec *s, char *buf, size_t n);

int vmdr_rbd_ioctx(rados_ioctx_t *out, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, vmdr_err *e);

/* Opens an image. It does not count as a cluster reference: the binding holds one per
 * image handle (batch workers open images only while the batch call runs). */
int vmdr_rbd_image_open(vmdr_rbd_image *out, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s,
                        vmdr_err *e);
void vmdr_rbd_image_close(vmdr_rbd_image *im);

int vmdr_rbd_get_mirror_info(vmdr_rbd_mirror_info *out, vmdr_rbd_image *im, vmdr_err *e);
int vmdr_rbd_get_mirror_status(vmdr_rbd_mirror_status *out, vmdr_rbd_image *im, vmdr_err *e);
/* mode: "snapshot" | "journal". *already is set when it was enabled before. */
int vmdr_rbd_mirror_enable(vmdr_rbd_image *im, const char *mode, int *already, vmdr_err *e);
int vmdr_rbd_mirror_disable(vmdr_rbd_image *im, int force, int *already, vmdr_err *e);
#define VMDR_RBD_NUDGE_AFTER 2.0 /* seconds; see vmdr_rbd_promote */
#define VMDR_RBD_HEADER_OID_MAX 96
/* The image's header object ("rbd_header.<id>"), which a nudge notifies: 0, or -1 (out
 * untouched) when librbd cannot tell the id. */
int vmdr_rbd_header_oid(rbd_image_t img, char out[VMDR_RBD_HEADER_OID_MAX]);
#define VMDR_RBD_NUDGE_EVERY 1.0 /* seconds between nudges, once they started */
#define VMDR_RBD_NUDGE_TIMEOUT_MS 1000 /* a nudge's notification waits this long for acks */

/* A forced promote sends an empty header notification after nudge_after seconds and every
 * second after that, while it runs (<= 0: never): it ends librbd's wait for rbd-mirror at
 * the next tick instead of after 5 s (core.c, "nudger"). *nudges (may be NULL) is increased
 * by the notifications sent. */
int vmdr_rbd_promote(vmdr_rbd_image *im, int force, double nudge_after, int *nudges,
                     int *already, vmdr_err *e);
/* *snap_id gets the demotion snapshot's id (0 if none was found). */
int vmdr_rbd_demote(vmdr_rbd_image *im, int *already, uint64_t *snap_id, vmdr_err *e);
int vmdr_rbd_resync(vmdr_rbd_image *im, vmdr_err *e);
int vmdr_rbd_mirror_snapshot(vmdr_rbd_image *im, uint64_t *snap_id, vmdr_err *e);
/* Mirror snapshots, oldest first; *out is malloc'ed (free it), *n the count. */
int vmdr_rbd_mirror_snaps(vmdr_rbd_mirror_snap **out, int *n, vmdr_rbd_image *im, vmdr_err *e);
/* 1 when a complete copy of primary snapshot snap_id (or of a later one) is here, else 0. */
int vmdr_rbd_synced(int *out, vmdr_rbd_image *im, uint64_t snap_id, vmdr_err *e);
int vmdr_rbd_get_image_info(vmdr_rbd_image_info *out, vmdr_rbd_image *im, vmdr_err *e);

int vmdr_rbd_pool_mirror_mode(char *out, size_t n, vmdr_rbd_cluster *c, const vmdr_rbd_spec *s,
                              vmdr_err *e);
int vmdr_rbd_create(vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, uint64_t size,
                    const char *features, int order, vmdr_err *e);
int vmdr_rbd_remove(vmdr_rbd_cluster *c, const vmdr_rbd_spec *s, vmdr_err *e);
/* Runs a mon command (JSON); *outbuf is rados-allocated (rados_buffer_free). */
int vmdr_rbd_mon_command(vmdr_rbd_cluster *c, const char *cmd, char **outbuf, size_t *outlen,
                         vmdr_err *e);
/* Adds a mirror snapshot schedule through ceph-mgr's rbd_support module; "unavailable"
 * when no mgr is active. */
int vmdr_rbd_schedule_add(vmdr_rbd_cluster *c, const char *pool, const char *ns,
                          const char *interval, vmdr_err *e);

/* ---- batch --------------------------------------------------------------------------- */
typedef enum {
    VMDR_RBD_OP_PROMOTE,
    VMDR_RBD_OP_DEMOTE,
    VMDR_RBD_OP_ENABLE,
    VMDR_RBD_OP_DISABLE,
    VMDR_RBD_OP_RESYNC,
    VMDR_RBD_OP_STATUS,
    VMDR_RBD_OP_SNAPSHOT,
} vmdr_rbd_op;

typedef enum { VMDR_RBD_DONE_OK, VMDR_RBD_DONE_ALREADY, VMDR_RBD_DONE_FAILED } vmdr_rbd_outcome;

typedef struct vmdr_rbd_item {
    vmdr_rbd_spec spec;
    /* results */
    vmdr_rbd_outcome outcome;
    vmdr_err err;
    double seconds;
    uint64_t snap_id;            /* snapshot, demote */
    int attempts;                /* promote with retry */
    int nudges;                  /* forced promote: header notifications sent */
    int flattened;               /* enable with flatten */
    vmdr_rbd_mirror_status *status; /* status op: malloc'ed, freed by vmdr_rbd_batch_free */
} vmdr_rbd_item;

typedef struct vmdr_rbd_batch {
    vmdr_rbd_cluster *cluster;
    vmdr_rbd_op op;
    int parallel;
    int force;
    int use_aio;       /* promote/demote/status: librbd's async API from one thread */
    double retry;      /* seconds to retry a promote on EROFS (and a graceful one on EBUSY) */
    double nudge;      /* forced promote: notify the header after this many seconds; <= 0 never */
    char mode[16];     /* enable */
    int flatten;       /* enable: flatten a clone first (a clone cannot be mirrored) */
    int (*interrupted)(void); /* polled by the waiting thread; NULL: never */
    vmdr_rbd_item *items;
    size_t n;
} vmdr_rbd_batch;

/* Runs the whole batch; returns 0 (per-item failures are in the items) or -1 when the batch
 * could not run at all (no threads). Stops starting new items once interrupted. */
int vmdr_rbd_batch_run(vmdr_rbd_batch *b, vmdr_err *e);
void vmdr_rbd_batch_free(vmdr_rbd_batch *b);
/* One item, synchronously (what a worker thread does). */
void vmdr_rbd_item_run(vmdr_rbd_batch *b, vmdr_rbd_item *it, rados_ioctx_t *io,
                       vmdr_rbd_spec *io_spec);

double vmdr_rbd_now(void);

#endif
