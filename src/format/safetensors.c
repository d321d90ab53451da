/*
 * safetensors.c — .safetensors reader: JSON header via cJSON, every field
 * validated before a pointer into the data area is formed (see safetensors.h).
 */
#include "safetensors.h"

#include "../core/half.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ dtypes ---- */

typedef struct st_dtype {
    const char *name;
    uint32_t size; /* bytes per element */
    opc_type type; /* OPC_TYPE_COUNT: defined by the format, not computed with */
} st_dtype;

/* The dtypes of the safetensors format with whole-byte elements. */
static const st_dtype k_dtypes[] = {
    {"F32", 4, OPC_TYPE_F32},      {"F16", 2, OPC_TYPE_F16},       {"BF16", 2, OPC_TYPE_BF16},
    {"F64", 8, OPC_TYPE_COUNT},    {"I64", 8, OPC_TYPE_COUNT},     {"U64", 8, OPC_TYPE_COUNT},
    {"I32", 4, OPC_TYPE_COUNT},    {"U32", 4, OPC_TYPE_COUNT},     {"I16", 2, OPC_TYPE_COUNT},
    {"U16", 2, OPC_TYPE_COUNT},    {"I8", 1, OPC_TYPE_COUNT},      {"U8", 1, OPC_TYPE_COUNT},
    {"BOOL", 1, OPC_TYPE_COUNT},   {"F8_E4M3", 1, OPC_TYPE_COUNT}, {"F8_E5M2", 1, OPC_TYPE_COUNT},
};

static const st_dtype *dtype_find(const char *s) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (!strcmp(k_dtypes[i].name, s)) return &k_dtypes[i];
    return NULL;
}

/* ------------------------------------------------------------ handle ---- */

typedef struct st_entry {
    const char *name; /* into opc_st_file.names */
    const st_dtype *dt;
    int32_t n_dims;
    int64_t shape[OPC_ST_MAX_DIMS];
    uint64_t begin, end; /* relative to the data area, validated */
} st_entry;

struct opc_st_file {
    char path[1024];
    opc_map map;   /* owned mapping (opc_st_open) or empty (opc_st_open_mem) */
    const uint8_t *data; /* data area: (data_size) bytes */
    uint64_t data_size;
    int64_t n;
    st_entry *e;      /* (n) in file order */
    int64_t *by_name; /* (n) indices sorted by name, for opc_st_find */
    char *names;      /* all names, NUL-separated */
};

void opc_st_close(opc_st_file *f) {
    if (!f) return;
    opc_map_close(&f->map);
    free(f->e);
    free(f->by_name);
    free(f->names);
    free(f);
}

const char *opc_st_path(const opc_st_file *f) { return f->path; }
int64_t opc_st_count(const opc_st_file *f) { return f->n; }

const char *opc_st_name(const opc_st_file *f, int64_t i) {
    return (i >= 0 && i < f->n) ? f->e[i].name : NULL;
}

/* ------------------------------------------------------------ parsing --- */

/* A JSON number that is an exact non-negative integer below 2^53 (doubles are
 * exact there; no real file needs more). */
static int json_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return 0;
    double v = it->valuedouble;
    if (!(v >= 0.0 && v <= 9007199254740992.0)) return 0; /* also rejects NaN */
    uint64_t u = (uint64_t)v;
    if ((double)u != v) return 0;
    *out = u;
    return 1;
}

/* qsort has no context argument in C11; thread-local so concurrent opens are safe */
static _Thread_local const st_entry *g_sort_entries;

static int cmp_name(const void *a, const void *b) {
    return strcmp(g_sort_entries[*(const int64_t *)a].name, g_sort_entries[*(const int64_t *)b].name);
}
static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = &g_sort_entries[*(const int64_t *)a], *y = &g_sort_entries[*(const int64_t *)b];
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* Parse one tensor entry `it` (named it->string) into e. */
static opc_status parse_entry(opc_st_file *f, const cJSON *it, st_entry *e) {
    const char *name = it->string;
    if (!cJSON_IsObject(it))
        return opc_error(OPC_ERR_CORRUPT, "%s: header entry \"%s\" is not a JSON object", f->path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(jd))
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: \"dtype\" is missing or not a string", f->path, name);
    if (!cJSON_IsArray(js))
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: \"shape\" is missing or not an array", f->path, name);
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: \"data_offsets\" is missing or not an array of 2",
                         f->path, name);
    e->dt = dtype_find(jd->valuestring);
    if (!e->dt)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: unsupported dtype \"%.32s\"", f->path, name,
                         jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > OPC_ST_MAX_DIMS)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions (at most %d supported)", f->path,
                         name, nd, OPC_ST_MAX_DIMS);
    e->n_dims = nd;
    uint64_t nelem = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (!json_uint(d, &v) || v > (uint64_t)INT64_MAX)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: shape[%d] is not a non-negative integer",
                             f->path, name, k);
        e->shape[k++] = (int64_t)v;
        if (!opc_mul_ok(nelem, v, &nelem))
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: shape overflows", f->path, name);
    }
    uint64_t nbytes;
    if (!opc_mul_ok(nelem, e->dt->size, &nbytes))
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: shape overflows", f->path, name);
    if (!json_uint(cJSON_GetArrayItem(jo, 0), &e->begin) || !json_uint(cJSON_GetArrayItem(jo, 1), &e->end))
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: data_offsets are not non-negative integers",
                         f->path, name);
    if (e->begin > e->end)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: data_offsets [%llu, %llu] end before they begin",
                         f->path, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > f->data_size)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: tensor %s: data_offsets [%llu, %llu] run past the data area (%llu bytes)",
                         f->path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)f->data_size);
    if (e->end - e->begin != nbytes)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: tensor %s: data_offsets cover %llu bytes but shape x %s needs %llu", f->path,
                         name, (unsigned long long)(e->end - e->begin), e->dt->name,
                         (unsigned long long)nbytes);
    return OPC_OK;
}

cJSON *opc_json_parse(const char *text, size_t len, const char *what) {
    if (memchr(text, 0, len)) {
        opc_error(OPC_ERR_CORRUPT, "%s: not valid JSON (NUL byte at %ld)",
                  what, (long)((const char *)memchr(text, 0, len) - text));
        return NULL;
    }
    /* cJSON reads up to a NUL: give it a terminated copy rather than trust
     * its length handling with a buffer that ends at a page boundary. */
    char *buf = malloc(len + 1);
    if (!buf) {
        opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, len + 1);
        return NULL;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 0);
    if (!root) {
        /* cJSON reports where it stopped through the end pointer on failure */
        long pos = end ? (long)(end - buf) : -1;
        opc_error(OPC_ERR_CORRUPT, "%s: not valid JSON (error near byte %ld)", what, pos);
    } else {
        while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
        if (*end) {
            opc_error(OPC_ERR_CORRUPT, "%s: not valid JSON (trailing bytes at %ld)", what, (long)(end - buf));
            cJSON_Delete(root);
            root = NULL;
        }
    }
    free(buf);
    return root;
}

static opc_status parse_header(opc_st_file *f, const char *json, size_t len) {
    char what[1100];
    snprintf(what, sizeof what, "%s: header", f->path);
    cJSON *root = opc_json_parse(json, len, what);
    if (!root) return OPC_ERR_CORRUPT;
    opc_status st = OPC_OK;
    if (!cJSON_IsObject(root)) {
        st = opc_error(OPC_ERR_CORRUPT, "%s: header is not a JSON object", f->path);
        goto done;
    }
    /* Count entries and name bytes. */
    int64_t n = 0;
    size_t name_bytes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (!it->string) { /* cannot happen for an object, but never trust */
            st = opc_error(OPC_ERR_CORRUPT, "%s: header object member without a name", f->path);
            goto done;
        }
        if (!strcmp(it->string, "__metadata__")) continue;
        n++;
        name_bytes += strlen(it->string) + 1;
    }
    f->e = calloc((size_t)(n ? n : 1), sizeof *f->e);
    f->by_name = calloc((size_t)(n ? n : 1), sizeof *f->by_name);
    f->names = malloc(name_bytes ? name_bytes : 1);
    if (!f->e || !f->by_name || !f->names) {
        st = opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %lld tensor entries", f->path, (long long)n);
        goto done;
    }
    int64_t i = 0;
    size_t o = 0;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!cJSON_IsObject(it) && !cJSON_IsNull(it)) {
                st = opc_error(OPC_ERR_CORRUPT, "%s: \"__metadata__\" is not a JSON object", f->path);
                goto done;
            }
            continue;
        }
        size_t nlen = strlen(it->string);
        memcpy(f->names + o, it->string, nlen + 1);
        f->e[i].name = f->names + o;
        o += nlen + 1;
        if ((st = parse_entry(f, it, &f->e[i])) != OPC_OK) goto done;
        f->by_name[i] = i;
        i++;
    }
    f->n = n;

    /* Duplicate names (JSON allows them; a tensor file must not). */
    g_sort_entries = f->e;
    qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_name);
    for (int64_t k = 1; k < n; k++)
        if (!strcmp(f->e[f->by_name[k]].name, f->e[f->by_name[k - 1]].name)) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: tensor %s appears twice in the header", f->path,
                           f->e[f->by_name[k]].name);
            goto done;
        }
    /* Overlapping data (two tensors sharing bytes means a corrupt index). */
    if (n > 1) {
        int64_t *by_off = malloc((size_t)n * sizeof *by_off);
        if (!by_off) {
            st = opc_error(OPC_ERR_NOMEM, "%s: cannot allocate", f->path);
            goto done;
        }
        for (int64_t k = 0; k < n; k++) by_off[k] = k;
        qsort(by_off, (size_t)n, sizeof *by_off, cmp_begin);
        for (int64_t k = 1; k < n; k++) {
            const st_entry *a = &f->e[by_off[k - 1]], *b = &f->e[by_off[k]];
            if (b->begin < a->end) {
                st = opc_error(OPC_ERR_CORRUPT, "%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap",
                               f->path, a->name, (unsigned long long)a->begin, (unsigned long long)a->end,
                               b->name, (unsigned long long)b->begin, (unsigned long long)b->end);
                break;
            }
        }
        free(by_off);
    }
done:
    g_sort_entries = NULL;
    cJSON_Delete(root);
    return st;
}

static opc_status parse_image(opc_st_file *f, const uint8_t *p, uint64_t size) {
    if (size < 8)
        return opc_error(OPC_ERR_CORRUPT, "%s: %llu bytes is too short for a safetensors header length",
                         f->path, (unsigned long long)size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > OPC_ST_MAX_HEADER)
        return opc_error(OPC_ERR_CORRUPT, "%s: header length %llu exceeds the %u-byte limit", f->path,
                         (unsigned long long)hlen, OPC_ST_MAX_HEADER);
    if (hlen > size - 8)
        return opc_error(OPC_ERR_CORRUPT, "%s: header length %llu runs past the end of the file (%llu bytes)",
                         f->path, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen < 2)
        return opc_error(OPC_ERR_CORRUPT, "%s: header length %llu is too short for a JSON object", f->path,
                         (unsigned long long)hlen);
    f->data = p + 8 + hlen;
    f->data_size = size - 8 - hlen;
    /* the header may legally be padded with spaces after the object */
    return parse_header(f, (const char *)p + 8, (size_t)hlen);
}

static opc_st_file *st_new(const char *what) {
    opc_st_file *f = calloc(1, sizeof *f);
    if (f) snprintf(f->path, sizeof f->path, "%s", what ? what : "(memory)");
    return f;
}

opc_status opc_st_open_mem(const void *data, uint64_t size, const char *what, opc_st_file **out) {
    *out = NULL;
    if (!data && size) return opc_error(OPC_ERR_INVALID_ARG, "opc_st_open_mem: NULL data");
    opc_st_file *f = st_new(what);
    if (!f) return opc_error(OPC_ERR_NOMEM, "cannot allocate a safetensors handle");
    opc_status st = parse_image(f, data, size);
    if (st != OPC_OK) {
        opc_st_close(f);
        return st;
    }
    *out = f;
    return OPC_OK;
}

opc_status opc_st_open(const char *path, opc_st_file **out) {
    *out = NULL;
    opc_st_file *f = st_new(path);
    if (!f) return opc_error(OPC_ERR_NOMEM, "cannot allocate a safetensors handle");
    opc_status st = opc_map_open(path, &f->map);
    if (st == OPC_OK) st = parse_image(f, f->map.data, f->map.size);
    if (st != OPC_OK) {
        opc_st_close(f);
        return st;
    }
    *out = f;
    return OPC_OK;
}

/* ------------------------------------------------------------ access ---- */

int64_t opc_st_find(const opc_st_file *f, const char *name) {
    /* by hand: bsearch's comparator would need the entries through a global */
    int64_t lo = 0, hi = f->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->e[f->by_name[mid]].name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return -1;
}

opc_status opc_st_get(const opc_st_file *f, int64_t i, opc_st_tensor *out) {
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= f->n)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor index %lld out of range (%lld tensors)", f->path,
                         (long long)i, (long long)f->n);
    const st_entry *e = &f->e[i];
    out->name = e->name;
    out->dtype = e->dt->name;
    out->type = e->dt->type;
    out->n_dims = e->n_dims;
    memcpy(out->shape, e->shape, sizeof out->shape);
    out->nbytes = e->end - e->begin;
    out->data = out->nbytes ? (const void *)(f->data + e->begin) : (const void *)f->data;
    if (e->dt->type == OPC_TYPE_COUNT)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (supported: F32, F16, BF16)",
                         f->path, e->name, e->dt->name);
    return OPC_OK;
}

opc_status opc_st_to_f32(const opc_st_tensor *t, int64_t first, int64_t count, float *dst) {
    uint64_t esize = t->type == OPC_TYPE_F32 ? 4 : (t->type == OPC_TYPE_F16 || t->type == OPC_TYPE_BF16) ? 2 : 0;
    if (!esize) return opc_error(OPC_ERR_UNSUPPORTED, "tensor %s: dtype %s cannot be converted to f32", t->name,
                                 t->dtype ? t->dtype : "?");
    uint64_t nelem = t->nbytes / esize;
    if (first < 0 || count < 0 || !opc_range_ok((uint64_t)first, (uint64_t)count, nelem))
        return opc_error(OPC_ERR_INVALID_ARG, "tensor %s: elements [%lld, +%lld) out of range (%llu)", t->name,
                         (long long)first, (long long)count, (unsigned long long)nelem);
    const uint8_t *p = (const uint8_t *)t->data + (uint64_t)first * esize;
    for (int64_t k = 0; k < count; k++, p += esize) {
        if (t->type == OPC_TYPE_F32) {
            memcpy(&dst[k], p, 4);
        } else {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            dst[k] = t->type == OPC_TYPE_F16 ? opc_fp16_to_fp32(h) : opc_bf16_to_fp32(h);
        }
    }
    return OPC_OK;
}
