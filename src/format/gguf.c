/*
 * gguf.c — GGUF v2/v3 reader (see gguf.h).
 *
 * File layout (all little-endian):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x     { str key | u32 vtype | value }
 *   n_tensors x{ str name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_start + offset, offset a multiple of the alignment
 * where str = u64 len + len bytes (no NUL), and an array value is
 *   u32 elem_vtype | u64 n | n values (arrays may nest).
 *
 * The whole header is parsed once at open with a bounds-checked cursor:
 * every count is checked against the bytes left before anything is
 * allocated or looped over (each element takes at least one byte, so parse
 * time is linear in the file size whatever the counts claim), and every
 * tensor's size is computed with overflow checks and its data range checked
 * against the file. After open, accessors index prebuilt tables and never
 * re-validate.
 */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 8        /* array nesting we accept (real files use 1) */
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_ALIGNMENT (1u << 24)

/* ------------------------------------------------------- ggml type table -- */

/* Block geometry of every ggml type that can appear in a file, so that the
 * size of any tensor can be validated even when we cannot dequantize it.
 * On-disk ids are frozen by ggml; gaps are ids that were removed. */
typedef struct {
    const char *name;
    uint32_t blck, size;
    opc_type type; /* OPC_TYPE_COUNT when we have no dequantizer */
} ggml_type_info;

static const ggml_type_info g_ggml[] = {
    [0] = {"F32", 1, 4, OPC_TYPE_F32},
    [1] = {"F16", 1, 2, OPC_TYPE_F16},
    [2] = {"Q4_0", 32, 18, OPC_TYPE_Q4_0},
    [3] = {"Q4_1", 32, 20, OPC_TYPE_Q4_1},
    [6] = {"Q5_0", 32, 22, OPC_TYPE_Q5_0},
    [7] = {"Q5_1", 32, 24, OPC_TYPE_Q5_1},
    [8] = {"Q8_0", 32, 34, OPC_TYPE_Q8_0},
    [10] = {"Q2_K", 256, 84, OPC_TYPE_COUNT},
    [11] = {"Q3_K", 256, 110, OPC_TYPE_COUNT},
    [12] = {"Q4_K", 256, 144, OPC_TYPE_Q4_K},
    [13] = {"Q5_K", 256, 176, OPC_TYPE_Q5_K},
    [14] = {"Q6_K", 256, 210, OPC_TYPE_Q6_K},
    [16] = {"IQ2_XXS", 256, 66, OPC_TYPE_COUNT},
    [17] = {"IQ2_XS", 256, 74, OPC_TYPE_COUNT},
    [18] = {"IQ3_XXS", 256, 98, OPC_TYPE_COUNT},
    [19] = {"IQ1_S", 256, 50, OPC_TYPE_COUNT},
    [20] = {"IQ4_NL", 32, 18, OPC_TYPE_COUNT},
    [21] = {"IQ3_S", 256, 110, OPC_TYPE_COUNT},
    [22] = {"IQ2_S", 256, 82, OPC_TYPE_COUNT},
    [23] = {"IQ4_XS", 256, 136, OPC_TYPE_COUNT},
    [24] = {"I8", 1, 1, OPC_TYPE_COUNT},
    [25] = {"I16", 1, 2, OPC_TYPE_COUNT},
    [26] = {"I32", 1, 4, OPC_TYPE_COUNT},
    [27] = {"I64", 1, 8, OPC_TYPE_COUNT},
    [28] = {"F64", 1, 8, OPC_TYPE_COUNT},
    [29] = {"IQ1_M", 256, 56, OPC_TYPE_COUNT},
    [30] = {"BF16", 1, 2, OPC_TYPE_BF16},
    [34] = {"TQ1_0", 256, 54, OPC_TYPE_COUNT},
    [35] = {"TQ2_0", 256, 66, OPC_TYPE_COUNT},
    [39] = {"MXFP4", 32, 17, OPC_TYPE_COUNT},
};
#define N_GGML ((uint32_t)(sizeof g_ggml / sizeof g_ggml[0]))

static const ggml_type_info *ggml_info(uint32_t id) {
    if (id >= N_GGML || !g_ggml[id].name) return NULL;
    return &g_ggml[id];
}

opc_type opc_type_from_ggml(uint32_t ggml_type) {
    const ggml_type_info *ti = ggml_info(ggml_type);
    return ti ? ti->type : OPC_TYPE_COUNT;
}

const char *opc_ggml_type_name(uint32_t ggml_type) {
    const ggml_type_info *ti = ggml_info(ggml_type);
    return ti ? ti->name : "unknown";
}

/* ------------------------------------------------------------ handle ---- */

typedef struct {
    const char *key;
    uint64_t key_len;
    opc_gguf_vtype type;
    const uint8_t *val;     /* start of the value payload (after the vtype) */
    /* arrays only */
    opc_gguf_vtype arr_type;
    uint64_t arr_n;
    const uint8_t *arr_data; /* first element */
    uint64_t *str_off;       /* string arrays: offset of element i from arr_data */
} gguf_kv;

struct opc_gguf {
    opc_map map;          /* owned when opened from a path */
    const uint8_t *base;  /* (size) file bytes */
    uint64_t size;
    char *path;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;
    int64_t n_kv;
    gguf_kv *kv;          /* (n_kv) in file order */
    int64_t *kv_sorted;   /* (n_kv) indices sorted by key, for binary search */
    int64_t n_tensors;
    opc_gguf_tensor_info *ti;   /* (n_tensors) in file order */
    int64_t *ti_sorted;   /* (n_tensors) indices sorted by name */
    uint64_t *offsets;    /* (n_tensors) data offsets as stored (relative to data_start) */
};

/* ------------------------------------------------------------ cursor ---- */

typedef struct {
    const uint8_t *p;
    uint64_t size, off;
    const char *path;
} cursor;

static uint64_t left(const cursor *c) { return c->size - c->off; }

static opc_status need(const cursor *c, uint64_t n, const char *field) {
    if (n > left(c))
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: %s: truncated (needs %llu bytes at offset %llu, file has %llu)",
                         c->path, field, (unsigned long long)n, (unsigned long long)c->off,
                         (unsigned long long)c->size);
    return OPC_OK;
}

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static opc_status rd_u32(cursor *c, uint32_t *v, const char *field) {
    opc_status st = need(c, 4, field);
    if (st) return st;
    *v = (uint32_t)rd_le(c->p + c->off, 4);
    c->off += 4;
    return OPC_OK;
}

static opc_status rd_u64(cursor *c, uint64_t *v, const char *field) {
    opc_status st = need(c, 8, field);
    if (st) return st;
    *v = rd_le(c->p + c->off, 8);
    c->off += 8;
    return OPC_OK;
}

static opc_status rd_str(cursor *c, const char **s, uint64_t *len, const char *field) {
    uint64_t n;
    opc_status st = rd_u64(c, &n, field);
    if (st) return st;
    if (n > left(c))
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: %s: string length %llu runs past the end of the file (%llu bytes left)",
                         c->path, field, (unsigned long long)n, (unsigned long long)left(c));
    *s = (const char *)(c->p + c->off);
    *len = n;
    c->off += n;
    return OPC_OK;
}

/* Bytes of one scalar value; 0 for string/array/unknown. */
static uint64_t scalar_size(uint32_t t) {
    switch (t) {
    case OPC_GGUF_UINT8: case OPC_GGUF_INT8: case OPC_GGUF_BOOL: return 1;
    case OPC_GGUF_UINT16: case OPC_GGUF_INT16: return 2;
    case OPC_GGUF_UINT32: case OPC_GGUF_INT32: case OPC_GGUF_FLOAT32: return 4;
    case OPC_GGUF_UINT64: case OPC_GGUF_INT64: case OPC_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *vtype_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return t < 13 ? names[t] : "unknown";
}

/* Skip one value of type t (the vtype already consumed). `field` names the key
 * for messages. Arrays of arrays recurse up to GGUF_MAX_DEPTH. */
static opc_status skip_value(cursor *c, uint32_t t, int depth, const char *field) {
    uint64_t sz = scalar_size(t);
    if (sz) {
        opc_status st = need(c, sz, field);
        if (st) return st;
        c->off += sz;
        return OPC_OK;
    }
    if (t == OPC_GGUF_STRING) {
        const char *s;
        uint64_t n;
        return rd_str(c, &s, &n, field);
    }
    if (t != OPC_GGUF_ARRAY)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: unknown value type %u", c->path, field, t);
    if (depth >= GGUF_MAX_DEPTH)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: arrays nested deeper than %d", c->path, field,
                         GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    opc_status st = rd_u32(c, &et, field);
    if (!st) st = rd_u64(c, &n, field);
    if (st) return st;
    sz = scalar_size(et);
    if (sz) {
        uint64_t total;
        if (!opc_mul_ok(n, sz, &total) || total > left(c))
            return opc_error(OPC_ERR_CORRUPT,
                             "%s: %s: array of %llu %s runs past the end of the file", c->path,
                             field, (unsigned long long)n, vtype_name(et));
        c->off += total;
        return OPC_OK;
    }
    if (et != OPC_GGUF_STRING && et != OPC_GGUF_ARRAY)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: unknown array element type %u", c->path,
                         field, et);
    /* a string takes >= 8 bytes, a nested array >= 12: reject absurd counts
     * before looping over them */
    uint64_t min_elem = et == OPC_GGUF_STRING ? 8 : 12;
    if (n > left(c) / min_elem)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: %s: array count %llu exceeds what the remaining %llu bytes can hold",
                         c->path, field, (unsigned long long)n, (unsigned long long)left(c));
    for (uint64_t i = 0; i < n; i++) {
        st = skip_value(c, et, depth + 1, field);
        if (st) return st;
    }
    return OPC_OK;
}

/* ------------------------------------------------------------ sorting --- */

static int cmp_bytes(const char *a, uint64_t alen, const char *b, uint64_t blen) {
    uint64_t m = alen < blen ? alen : blen;
    int r = m ? memcmp(a, b, (size_t)m) : 0;
    if (r) return r;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* qsort has no context argument in C11: sort index arrays with a small merge
 * sort that takes one instead. n log n, allocation-free given tmp. */
typedef int (*idx_cmp)(const void *ctx, int64_t a, int64_t b);

static void merge_sort(int64_t *a, int64_t *tmp, int64_t n, idx_cmp cmp, const void *ctx) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = cmp(ctx, a[j], a[i]) < 0 ? a[j++] : a[i++];
            while (i < mid) tmp[k++] = a[i++];
            while (j < hi) tmp[k++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

static int kv_cmp(const void *ctx, int64_t a, int64_t b) {
    const gguf_kv *kv = ctx;
    return cmp_bytes(kv[a].key, kv[a].key_len, kv[b].key, kv[b].key_len);
}

static int ti_cmp(const void *ctx, int64_t a, int64_t b) {
    const opc_gguf_tensor_info *ti = ctx;
    return cmp_bytes(ti[a].name, ti[a].name_len, ti[b].name, ti[b].name_len);
}

/* ------------------------------------------------------------- parsing -- */

static opc_status parse_kv(opc_gguf *g, cursor *c, int64_t i) {
    gguf_kv *kv = &g->kv[i];
    char field[64];
    snprintf(field, sizeof field, "metadata entry %lld key", (long long)i);
    opc_status st = rd_str(c, &kv->key, &kv->key_len, field);
    if (st) return st;
    /* from here on, messages name the key itself */
    char kname[128];
    snprintf(kname, sizeof kname, "key '%.*s'", (int)(kv->key_len > 80 ? 80 : kv->key_len), kv->key);
    uint32_t t;
    st = rd_u32(c, &t, kname);
    if (st) return st;
    if (t > OPC_GGUF_FLOAT64)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: unknown value type %u", g->path, kname, t);
    kv->type = (opc_gguf_vtype)t;
    kv->val = c->p + c->off;
    if (t != OPC_GGUF_ARRAY) return skip_value(c, t, 0, kname);

    uint32_t et;
    uint64_t n;
    st = rd_u32(c, &et, kname);
    if (!st) st = rd_u64(c, &n, kname);
    if (st) return st;
    if (et > OPC_GGUF_FLOAT64)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: unknown array element type %u", g->path, kname, et);
    kv->arr_type = (opc_gguf_vtype)et;
    kv->arr_n = n;
    kv->arr_data = c->p + c->off;
    if (et != OPC_GGUF_STRING) {
        /* rewind to the array header and let skip_value check the payload */
        c->off -= 12;
        return skip_value(c, OPC_GGUF_ARRAY, 0, kname);
    }
    /* string arrays get an offset table so element i is O(1) (token lists
     * are looked up element by element) */
    if (n > left(c) / 8)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: %s: array count %llu exceeds what the remaining %llu bytes can hold",
                         g->path, kname, (unsigned long long)n, (unsigned long long)left(c));
    kv->str_off = malloc((size_t)(n ? n : 1) * sizeof *kv->str_off);
    if (!kv->str_off)
        return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot index %llu strings", g->path, kname,
                         (unsigned long long)n);
    uint64_t base = c->off;
    for (uint64_t j = 0; j < n; j++) {
        kv->str_off[j] = c->off - base;
        const char *s;
        uint64_t len;
        st = rd_str(c, &s, &len, kname);
        if (st) return st;
    }
    return OPC_OK;
}

static opc_status parse_tensor_info(opc_gguf *g, cursor *c, int64_t i) {
    opc_gguf_tensor_info *t = &g->ti[i];
    char field[64];
    snprintf(field, sizeof field, "tensor info %lld name", (long long)i);
    opc_status st = rd_str(c, &t->name, &t->name_len, field);
    if (st) return st;
    char tname[128];
    snprintf(tname, sizeof tname, "tensor '%.*s'", (int)(t->name_len > 80 ? 80 : t->name_len), t->name);
    if (t->name_len == 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor info %lld: empty name", g->path, (long long)i);
    st = rd_u32(c, &t->n_dims, tname);
    if (st) return st;
    if (t->n_dims < 1 || t->n_dims > 4)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: n_dims %u is not in 1..4", g->path, tname, t->n_dims);
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        st = rd_u64(c, &t->ne[d], tname);
        if (st) return st;
        if (t->ne[d] > (uint64_t)INT64_MAX || !opc_mul_ok(nelem, t->ne[d], &nelem) ||
            nelem > (uint64_t)INT64_MAX)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: ne[%u] = %llu overflows the element count",
                             g->path, tname, d, (unsigned long long)t->ne[d]);
    }
    st = rd_u32(c, &t->ggml_type, tname);
    if (st) return st;
    uint64_t offset;
    st = rd_u64(c, &offset, tname);
    if (st) return st;
    const ggml_type_info *gt = ggml_info(t->ggml_type);
    if (!gt)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: unknown ggml type %u", g->path, tname,
                         t->ggml_type);
    t->type = gt->type;
    if (t->ne[0] % gt->blck)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: ne[0] = %llu is not a multiple of the %s block size %u",
                         g->path, tname, (unsigned long long)t->ne[0], gt->name, gt->blck);
    /* nelem / blck blocks; nelem fits in int64 so the division is exact per row */
    if (!opc_mul_ok(nelem / gt->blck, gt->size, &t->nbytes))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: byte size overflows", g->path, tname);
    /* validated in finish_tensors() once the data section start is known */
    g->offsets[i] = offset;
    return OPC_OK;
}

static opc_status finish_tensors(opc_gguf *g) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        opc_gguf_tensor_info *t = &g->ti[i];
        uint64_t offset = g->offsets[i];
        if (offset % g->alignment)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor '%.*s': offset %llu is not a multiple of the alignment %llu",
                             g->path, (int)(t->name_len > 80 ? 80 : t->name_len), t->name,
                             (unsigned long long)offset, (unsigned long long)g->alignment);
        uint64_t abs;
        if (!opc_add_ok(g->data_start, offset, &abs) || !opc_range_ok(abs, t->nbytes, g->size))
            return opc_error(OPC_ERR_CORRUPT,
                             "%s: tensor '%.*s': data [%llu, +%llu) lies outside the file (%llu bytes, data section at %llu)",
                             g->path, (int)(t->name_len > 80 ? 80 : t->name_len), t->name,
                             (unsigned long long)offset, (unsigned long long)t->nbytes,
                             (unsigned long long)g->size, (unsigned long long)g->data_start);
        t->data = g->base + abs;
    }
    return OPC_OK;
}

static opc_status parse(opc_gguf *g) {
    cursor c = {g->base, g->size, 0, g->path};
    uint32_t magic, version;
    opc_status st = rd_u32(&c, &magic, "magic");
    if (st) return st;
    if (magic != 0x46554747u) /* "GGUF" little-endian */
        return opc_error(OPC_ERR_CORRUPT, "%s: magic: not a GGUF file", g->path);
    st = rd_u32(&c, &version, "version");
    if (st) return st;
    g->version = version;
    if (version == 1)
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: version: GGUF v1 (32-bit counts) is not supported; re-convert the model to v3",
                         g->path);
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: version: 0x%08x looks like a big-endian GGUF, which is not supported",
                             g->path, version);
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: version: GGUF version %u is not supported (2 and 3 are)",
                         g->path, version);
    }
    uint64_t n_tensors, n_kv;
    st = rd_u64(&c, &n_tensors, "n_tensors");
    if (!st) st = rd_u64(&c, &n_kv, "n_kv");
    if (st) return st;
    /* a metadata entry takes >= 13 bytes (key length, type, 1-byte value),
     * a tensor info >= 32 (name length + 1 byte, n_dims, one ne, type, offset) */
    if (n_kv > GGUF_MAX_KV || n_kv > left(&c) / 13)
        return opc_error(OPC_ERR_CORRUPT, "%s: n_kv: %llu metadata entries cannot fit in a %llu-byte file",
                         g->path, (unsigned long long)n_kv, (unsigned long long)g->size);
    if (n_tensors > GGUF_MAX_TENSORS || n_tensors > left(&c) / 32)
        return opc_error(OPC_ERR_CORRUPT, "%s: n_tensors: %llu tensor infos cannot fit in a %llu-byte file",
                         g->path, (unsigned long long)n_tensors, (unsigned long long)g->size);

    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->kv_sorted = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv_sorted);
    g->ti = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->ti);
    g->ti_sorted = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->ti_sorted);
    g->offsets = calloc((size_t)(n_tensors ? n_tensors : 1), sizeof *g->offsets);
    if (!g->kv || !g->kv_sorted || !g->ti || !g->ti_sorted || !g->offsets)
        return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate the header tables", g->path);

    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close() frees what was allocated so far */
        st = parse_kv(g, &c, (int64_t)i);
        if (st) return st;
    }
    g->n_kv = (int64_t)n_kv;
    for (int64_t i = 0; i < g->n_kv; i++) g->kv_sorted[i] = i;
    {
        int64_t *tmp = malloc((size_t)(n_kv ? n_kv : 1) * sizeof *tmp);
        if (!tmp) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate the key index", g->path);
        merge_sort(g->kv_sorted, tmp, g->n_kv, kv_cmp, g->kv);
        free(tmp);
    }
    for (int64_t i = 1; i < g->n_kv; i++) {
        const gguf_kv *a = &g->kv[g->kv_sorted[i - 1]], *b = &g->kv[g->kv_sorted[i]];
        if (!cmp_bytes(a->key, a->key_len, b->key, b->key_len))
            return opc_error(OPC_ERR_CORRUPT, "%s: key '%.*s': duplicate metadata key", g->path,
                             (int)(a->key_len > 80 ? 80 : a->key_len), a->key);
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = opc_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        int64_t a;
        st = opc_gguf_get_int(g, "general.alignment", &a);
        if (st) return st;
        if (a <= 0 || a > (int64_t)GGUF_MAX_ALIGNMENT || (a & (a - 1)))
            return opc_error(OPC_ERR_CORRUPT, "%s: general.alignment: %lld is not a power of two in 1..%u",
                             g->path, (long long)a, GGUF_MAX_ALIGNMENT);
        g->alignment = (uint64_t)a;
    }

    g->n_tensors = (int64_t)n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) {
        st = parse_tensor_info(g, &c, (int64_t)i);
        if (st) return st;
    }
    uint64_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    g->data_start = c.off + pad; /* may equal size when there is no tensor data */
    if (g->data_start > g->size && n_tensors > 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: data section: starts at %llu, past the end of the file (%llu bytes)",
                         g->path, (unsigned long long)g->data_start, (unsigned long long)g->size);
    st = finish_tensors(g);
    if (st) return st;

    for (int64_t i = 0; i < g->n_tensors; i++) g->ti_sorted[i] = i;
    int64_t *tmp = malloc((size_t)(n_tensors ? n_tensors : 1) * sizeof *tmp);
    if (!tmp) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate the tensor index", g->path);
    merge_sort(g->ti_sorted, tmp, g->n_tensors, ti_cmp, g->ti);
    free(tmp);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const opc_gguf_tensor_info *a = &g->ti[g->ti_sorted[i - 1]], *b = &g->ti[g->ti_sorted[i]];
        if (!cmp_bytes(a->name, a->name_len, b->name, b->name_len))
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor '%.*s': duplicate tensor name", g->path,
                             (int)(a->name_len > 80 ? 80 : a->name_len), a->name);
    }
    return OPC_OK;
}

static opc_status open_common(opc_gguf *g, const char *name, opc_gguf **out) {
    g->path = malloc(strlen(name) + 1);
    if (!g->path) {
        opc_gguf_close(g);
        return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate", name);
    }
    memcpy(g->path, name, strlen(name) + 1);
    opc_status st = parse(g);
    if (st) {
        opc_gguf_close(g);
        return st;
    }
    *out = g;
    return OPC_OK;
}

opc_status opc_gguf_open(const char *path, opc_gguf **out) {
    *out = NULL;
    opc_gguf *g = calloc(1, sizeof *g);
    if (!g) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate a GGUF handle", path);
    opc_status st = opc_map_open(path, &g->map);
    if (st) {
        free(g);
        return st;
    }
    g->base = g->map.data;
    g->size = g->map.size;
    return open_common(g, path, out);
}

opc_status opc_gguf_open_memory(const void *data, size_t size, const char *name, opc_gguf **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!data && size) return opc_error(OPC_ERR_INVALID_ARG, "%s: NULL buffer", name);
    opc_gguf *g = calloc(1, sizeof *g);
    if (!g) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate a GGUF handle", name);
    g->base = data;
    g->size = size;
    return open_common(g, name, out);
}

void opc_gguf_close(opc_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->kv_sorted);
    free(g->ti);
    free(g->ti_sorted);
    free(g->offsets);
    free(g->path);
    opc_map_close(&g->map);
    free(g);
}

uint32_t opc_gguf_version(const opc_gguf *g) { return g->version; }
const char *opc_gguf_path(const opc_gguf *g) { return g->path; }
uint64_t opc_gguf_alignment(const opc_gguf *g) { return g->alignment; }
uint64_t opc_gguf_data_offset(const opc_gguf *g) { return g->data_start; }
uint64_t opc_gguf_file_size(const opc_gguf *g) { return g->size; }

/* ----------------------------------------------------------- metadata --- */

int64_t opc_gguf_n_kv(const opc_gguf *g) { return g->n_kv; }

int64_t opc_gguf_find_key(const opc_gguf *g, const char *key) {
    uint64_t klen = strlen(key);
    int64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = &g->kv[g->kv_sorted[mid]];
        int r = cmp_bytes(kv->key, kv->key_len, key, klen);
        if (r == 0) return g->kv_sorted[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

opc_status opc_gguf_kv_at(const opc_gguf *g, int64_t i, const char **key, uint64_t *key_len,
                          opc_gguf_vtype *type) {
    if (i < 0 || i >= g->n_kv)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: metadata index %lld out of range (%lld entries)",
                         g->path, (long long)i, (long long)g->n_kv);
    if (key) *key = g->kv[i].key;
    if (key_len) *key_len = g->kv[i].key_len;
    if (type) *type = g->kv[i].type;
    return OPC_OK;
}

opc_gguf_vtype opc_gguf_key_type(const opc_gguf *g, const char *key) {
    int64_t i = opc_gguf_find_key(g, key);
    return i < 0 ? (opc_gguf_vtype)-1 : g->kv[i].type;
}

static opc_status lookup(const opc_gguf *g, const char *key, const gguf_kv **out) {
    int64_t i = opc_gguf_find_key(g, key);
    *out = NULL;
    if (i < 0) return opc_error(OPC_ERR_NOT_FOUND, "%s: %s: key not found", g->path, key);
    *out = &g->kv[i];
    return OPC_OK;
}

static opc_status type_error(const opc_gguf *g, const char *key, uint32_t have, const char *want) {
    return opc_error(OPC_ERR_CORRUPT, "%s: %s: has type %s, expected %s", g->path, key,
                     vtype_name(have), want);
}

/* Read one integer scalar at p of type t; false if t is not an integer type. */
static bool read_int(const uint8_t *p, uint32_t t, int64_t *v, bool *too_big) {
    *too_big = false;
    switch (t) {
    case OPC_GGUF_UINT8: case OPC_GGUF_BOOL: *v = p[0]; return true;
    case OPC_GGUF_INT8: *v = (int8_t)p[0]; return true;
    case OPC_GGUF_UINT16: *v = (int64_t)rd_le(p, 2); return true;
    case OPC_GGUF_INT16: *v = (int16_t)(uint16_t)rd_le(p, 2); return true;
    case OPC_GGUF_UINT32: *v = (int64_t)rd_le(p, 4); return true;
    case OPC_GGUF_INT32: *v = (int32_t)(uint32_t)rd_le(p, 4); return true;
    case OPC_GGUF_UINT64: {
        uint64_t u = rd_le(p, 8);
        *too_big = u > (uint64_t)INT64_MAX;
        *v = (int64_t)(u & (uint64_t)INT64_MAX);
        return true;
    }
    case OPC_GGUF_INT64: {
        uint64_t u = rd_le(p, 8);
        int64_t s;
        memcpy(&s, &u, 8);
        *v = s;
        return true;
    }
    default: return false;
    }
}

static bool read_float(const uint8_t *p, uint32_t t, double *v) {
    if (t == OPC_GGUF_FLOAT32) {
        uint32_t u = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        *v = f;
        return true;
    }
    if (t == OPC_GGUF_FLOAT64) {
        uint64_t u = rd_le(p, 8);
        memcpy(v, &u, 8);
        return true;
    }
    int64_t i;
    bool big;
    if (read_int(p, t, &i, &big)) {
        *v = big ? (double)(uint64_t)rd_le(p, 8) : (double)i;
        return true;
    }
    return false;
}

opc_status opc_gguf_get_int(const opc_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    bool big;
    if (!read_int(kv->val, kv->type, out, &big)) return type_error(g, key, kv->type, "an integer");
    if (big) return opc_error(OPC_ERR_CORRUPT, "%s: %s: value does not fit in int64", g->path, key);
    return OPC_OK;
}

opc_status opc_gguf_get_float(const opc_gguf *g, const char *key, double *out) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type == OPC_GGUF_BOOL || !read_float(kv->val, kv->type, out))
        return type_error(g, key, kv->type, "a number");
    return OPC_OK;
}

opc_status opc_gguf_get_bool(const opc_gguf *g, const char *key, int *out) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type != OPC_GGUF_BOOL) return type_error(g, key, kv->type, "bool");
    *out = kv->val[0] != 0;
    return OPC_OK;
}

opc_status opc_gguf_get_str(const opc_gguf *g, const char *key, const char **s, uint64_t *len) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type != OPC_GGUF_STRING) return type_error(g, key, kv->type, "string");
    *len = rd_le(kv->val, 8);
    *s = (const char *)kv->val + 8;
    return OPC_OK;
}

opc_status opc_gguf_get_arr_info(const opc_gguf *g, const char *key, opc_gguf_vtype *elem_type,
                                 uint64_t *n) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type != OPC_GGUF_ARRAY) return type_error(g, key, kv->type, "array");
    if (elem_type) *elem_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return OPC_OK;
}

opc_status opc_gguf_get_arr_str(const opc_gguf *g, const char *key, uint64_t i, const char **s,
                                uint64_t *len) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type != OPC_GGUF_ARRAY || kv->arr_type != OPC_GGUF_STRING)
        return type_error(g, key, kv->type == OPC_GGUF_ARRAY ? kv->arr_type : kv->type,
                          "array of strings");
    if (i >= kv->arr_n)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: %s: index %llu out of range (%llu elements)",
                         g->path, key, (unsigned long long)i, (unsigned long long)kv->arr_n);
    const uint8_t *p = kv->arr_data + kv->str_off[i];
    *len = rd_le(p, 8);
    *s = (const char *)p + 8;
    return OPC_OK;
}

static opc_status numeric_arr(const opc_gguf *g, const char *key, uint64_t n, const gguf_kv **out) {
    const gguf_kv *kv;
    opc_status st = lookup(g, key, &kv);
    if (st) return st;
    if (kv->type != OPC_GGUF_ARRAY || !scalar_size(kv->arr_type))
        return type_error(g, key, kv->type == OPC_GGUF_ARRAY ? kv->arr_type : kv->type,
                          "array of numbers");
    if (n != kv->arr_n)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: %s: array has %llu elements, caller expected %llu",
                         g->path, key, (unsigned long long)kv->arr_n, (unsigned long long)n);
    *out = kv;
    return OPC_OK;
}

opc_status opc_gguf_get_arr_i32(const opc_gguf *g, const char *key, int32_t *dst, uint64_t n) {
    const gguf_kv *kv;
    opc_status st = numeric_arr(g, key, n, &kv);
    if (st) return st;
    uint64_t es = scalar_size(kv->arr_type);
    for (uint64_t i = 0; i < n; i++) {
        int64_t v;
        bool big;
        if (!read_int(kv->arr_data + i * es, kv->arr_type, &v, &big))
            return type_error(g, key, kv->arr_type, "an integer array element");
        if (big || v < INT32_MIN || v > INT32_MAX)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: element %llu does not fit in int32", g->path,
                             key, (unsigned long long)i);
        dst[i] = (int32_t)v;
    }
    return OPC_OK;
}

opc_status opc_gguf_get_arr_f32(const opc_gguf *g, const char *key, float *dst, uint64_t n) {
    const gguf_kv *kv;
    opc_status st = numeric_arr(g, key, n, &kv);
    if (st) return st;
    uint64_t es = scalar_size(kv->arr_type);
    if (kv->arr_type == OPC_GGUF_BOOL) return type_error(g, key, kv->arr_type, "a numeric array element");
    for (uint64_t i = 0; i < n; i++) {
        double v;
        if (!read_float(kv->arr_data + i * es, kv->arr_type, &v))
            return type_error(g, key, kv->arr_type, "a numeric array element");
        dst[i] = (float)v;
    }
    return OPC_OK;
}

/* ------------------------------------------------------------ tensors --- */

int64_t opc_gguf_n_tensors(const opc_gguf *g) { return g->n_tensors; }

opc_status opc_gguf_tensor_at(const opc_gguf *g, int64_t i, opc_gguf_tensor_info *out) {
    if (i < 0 || i >= g->n_tensors)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor index %lld out of range (%lld tensors)",
                         g->path, (long long)i, (long long)g->n_tensors);
    *out = g->ti[i];
    return OPC_OK;
}

int64_t opc_gguf_find_tensor(const opc_gguf *g, const char *name) {
    uint64_t nlen = strlen(name);
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const opc_gguf_tensor_info *t = &g->ti[g->ti_sorted[mid]];
        int r = cmp_bytes(t->name, t->name_len, name, nlen);
        if (r == 0) return g->ti_sorted[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}
