/* The Lua-free core of vmdr.yaml: plain-scalar resolution, the quoting decision
 * of the encoder, and the path syntax of clean() rules. Bindings: runtime/yaml.c. */
#ifndef VMDR_YAML_CORE_H
#define VMDR_YAML_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ---- scalars (scalar.c) ---- */

typedef enum vmdr_yaml_kind {
    VMDR_YAML_STR,
    VMDR_YAML_NULL,
    VMDR_YAML_TRUE,
    VMDR_YAML_FALSE,
    VMDR_YAML_INT,
    VMDR_YAML_FLOAT
} vmdr_yaml_kind;

typedef struct vmdr_yaml_scalar {
    vmdr_yaml_kind kind;
    int64_t i;
    double f;
} vmdr_yaml_scalar;

/* Resolves an untagged plain scalar as Kubernetes (go-yaml v2) reads it. */
void vmdr_yaml_resolve(vmdr_yaml_scalar *out, const char *s, size_t n);

/* 1 when a YAML 1.1 or 1.2 reader might read the plain scalar s as something
 * other than this string (so the encoder must quote it). */
int vmdr_yaml_needs_quotes(const char *s, size_t n);

/* ---- key order (keysort.c) ---- */

/* Compares map keys in the order kubectl prints YAML (go-yaml v2's natural sort):
 * <0, 0 or >0. */
int vmdr_yaml_key_cmp(const char *a, size_t an, const char *b, size_t bn);

/* ---- clean() paths (path.c) ---- */

#define VMDR_YAML_PATH_MAX 32

typedef enum vmdr_yaml_seg_kind {
    VMDR_YAML_SEG_KEY,   /* name or ["name"]: a map key */
    VMDR_YAML_SEG_INDEX, /* [N]: list element N, from 0 */
    VMDR_YAML_SEG_ANY    /* * or [*]: every map value or list element */
} vmdr_yaml_seg_kind;

typedef struct vmdr_yaml_seg {
    vmdr_yaml_seg_kind kind;
    const char *s; /* KEY: points into the parsed path string */
    size_t n;
    int64_t index; /* INDEX */
} vmdr_yaml_seg;

typedef struct vmdr_yaml_path {
    vmdr_yaml_seg seg[VMDR_YAML_PATH_MAX];
    int n;
} vmdr_yaml_path;

/* Parses "spec.template.spec.volumes[*].dataVolume", "metadata.annotations[\"a.b/c\"]",
 * "items[0].name". Returns 0, or -1 with err ("invalid", message naming the column). */
int vmdr_yaml_path_parse(vmdr_yaml_path *out, const char *s, size_t n, vmdr_err *err);

#endif
