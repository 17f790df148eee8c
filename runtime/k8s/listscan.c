/* Splits a Kubernetes list response while it downloads: every element of the top-level
 * "items" array is handed over as soon as its last byte arrived, and everything else
 * (kind, apiVersion, metadata) is kept as the "envelope" with "items":[] in place of the
 * array. The caller decodes each element (overlapping decoding with the transfer) and
 * the bytes are dropped at once, so the whole body is never held in memory. */
#include <stdlib.h>
#include <string.h>

#include "k8s.h"

enum { M_ENVELOPE, M_BETWEEN, M_ITEM, M_AFTER };

/* The bytes that change the scanner's state inside an item. */
static const unsigned char item_special[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1};

static int env_add(vmdr_k8s_listscan *s, const char *p, size_t n, vmdr_err *err)
{
    if (s->env_len + n + 1 > s->env_cap) {
        size_t cap = s->env_cap ? s->env_cap * 2 : 4096;
        while (cap < s->env_len + n + 1)
            cap *= 2;
        char *nb = realloc(s->env, cap);
        if (nb == NULL)
            return vmdr_err_set(err, "nomem", 0, "out of memory");
        s->env = nb;
        s->env_cap = cap;
    }
    memcpy(s->env + s->env_len, p, n);
    s->env_len += n;
    s->env[s->env_len] = '\0';
    return 0;
}

void vmdr_k8s_listscan_init(vmdr_k8s_listscan *s)
{
    memset(s, 0, sizeof *s);
}

void vmdr_k8s_listscan_free(vmdr_k8s_listscan *s)
{
    free(s->env);
    memset(s, 0, sizeof *s);
}

long vmdr_k8s_listscan_feed(vmdr_k8s_listscan *s, const char *buf, size_t len, int done,
                            int (*item)(void *payload, const char *p, size_t n, vmdr_err *err),
                            void *payload, vmdr_err *err)
{
    size_t used = 0; /* bytes of buf consumed (copied to the envelope, skipped, or decoded) */
    size_t i = s->pos;
    for (; i < len; i++) {
        /* Fast paths: inside an item only quotes and brackets matter, inside a string
         * (that is not a key candidate) only quotes and backslashes. */
        if (s->in_str && !s->esc && !(s->mode == M_ENVELOPE && s->depth == 1)) {
            while (i < len && buf[i] != '"' && buf[i] != '\\')
                i++;
            if (i == len)
                break;
        } else if (!s->in_str && s->mode == M_ITEM) {
            while (i < len && !item_special[(unsigned char)buf[i]])
                i++;
            if (i == len)
                break;
        }
        char c = buf[i];
        if (s->in_str) {
            if (s->esc)
                s->esc = 0;
            else if (c == '\\')
                s->esc = 1;
            else if (c == '"') {
                s->in_str = 0;
                if (s->mode == M_ENVELOPE && s->depth == 1)
                    s->str_end = 1; /* a string closed at depth 1: maybe a key */
            } else if (s->mode == M_ENVELOPE && s->depth == 1) {
                if (s->cand_len < sizeof s->cand - 1)
                    s->cand[s->cand_len] = c;
                s->cand_len++;
            }
            continue;
        }
        switch (s->mode) {
        case M_BETWEEN:
            if (c == '{' && s->try_item && len - i >= 4 * s->max_item + 4096) {
                long n = s->try_item(payload, buf + i, len - i, err);
                if (n < 0)
                    return -1;
                if (n > 0) {
                    if ((size_t)n > s->max_item)
                        s->max_item = (size_t)n;
                    s->count++;
                    used = i + (size_t)n;
                    i = used - 1; /* the loop steps to the byte after the item */
                    break;
                }
            }
            if (c == '{') {
                s->mode = M_ITEM;
                s->item_start = i;
                s->depth = 3;
            } else if (c == ']') {
                s->mode = M_AFTER;
                s->depth = 1;
                if (env_add(s, "]", 1, err) != 0)
                    return -1;
                used = i + 1;
            } else if (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                used = i + 1;
            } else {
                return vmdr_err_set(err, "bad_response", 0,
                                    "items[%ld] of the list is not an object", s->count);
            }
            break;
        case M_ITEM:
            if (c == '"') {
                s->in_str = 1;
            } else if (c == '{' || c == '[') {
                s->depth++;
            } else if (c == '}' || c == ']') {
                if (--s->depth == 2) {
                    size_t n = i + 1 - s->item_start;
                    if (n > s->max_item)
                        s->max_item = n;
                    if (item(payload, buf + s->item_start, n, err) != 0)
                        return -1;
                    s->count++;
                    s->mode = M_BETWEEN;
                    used = i + 1;
                }
            }
            break;
        default: /* envelope, before or after the items */
            if (c == '"') {
                s->in_str = 1;
                s->cand_len = 0;
                s->str_end = 0;
            } else if (c == ':' && s->depth == 1 && s->str_end) {
                s->is_items = s->cand_len == 5 && memcmp(s->cand, "items", 5) == 0;
                s->str_end = 0;
            } else if (c == '[' && s->depth == 1 && s->is_items && s->mode == M_ENVELOPE) {
                if (env_add(s, buf + used, i + 1 - used, err) != 0)
                    return -1;
                used = i + 1;
                s->mode = M_BETWEEN;
                s->depth = 2;
                s->found = 1;
                continue;
            } else if (c == '{' || c == '[') {
                s->depth++;
                s->is_items = 0;
            } else if (c == '}' || c == ']') {
                s->depth--;
            } else if (c == ',') {
                s->is_items = 0;
                s->str_end = 0;
            } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
                s->str_end = 0;
            }
            break;
        }
    }
    if (s->mode == M_ENVELOPE || s->mode == M_AFTER) {
        if (env_add(s, buf + used, len - used, err) != 0)
            return -1;
        used = len;
    }
    s->pos = len - used; /* rescanning resumes after what was kept */
    if (s->mode == M_ITEM)
        s->item_start -= used;
    if (done && (s->mode == M_BETWEEN || s->mode == M_ITEM))
        return vmdr_err_set(err, "bad_response", 0,
                            "the list ends inside its items (after %ld complete items): "
                            "the response was cut short",
                            s->count);
    return (long)used;
}
