/*
 * bf2.c — .bf2 reader and writer (spec: docs/FORMAT.md; API: bf2.h).
 *
 * Sections: little-endian helpers · reader (header, metadata cursor, config,
 * tokenizer, tensor directory) · writer (temp file, parts, metadata, atomic
 * rename) · opc_load_bf2 for the loader dispatch.
 */
#define _GNU_SOURCE /* mkstemp, fsync, fchmod */
#include "bf2.h"

#include "../core/checksum.h"
#include "../core/half.h"
#include "loaders.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor views point straight into the mapping, so host order must be the
 * file's (little-endian). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error ".bf2 views tensor data in place and needs a little-endian host"
#endif

#define N_PARTS 5
#define MAX_TENSORS 65536
#define MAX_TOKENS (1 << 24)
#define MAX_TOKEN_LEN 65536u
#define MAX_TEMPLATE_LEN (1u << 24)
#define MAX_ELEMS (1ull << 40)

/* ---------------------------------------------------- type id mapping ---- */

opc_type opc_bf2_type_from_id(uint32_t id) {
    switch (id) {
    case OPC_BF2_TYPE_F32: return OPC_TYPE_F32;
    case OPC_BF2_TYPE_F16: return OPC_TYPE_F16;
    case OPC_BF2_TYPE_BF16: return OPC_TYPE_BF16;
    case OPC_BF2_TYPE_CB2: return OPC_TYPE_CB2;
    case OPC_BF2_TYPE_CB4: return OPC_TYPE_CB4;
    default: return OPC_TYPE_COUNT;
    }
}

uint32_t opc_bf2_type_to_id(opc_type t) {
    switch (t) {
    case OPC_TYPE_F32: return OPC_BF2_TYPE_F32;
    case OPC_TYPE_F16: return OPC_BF2_TYPE_F16;
    case OPC_TYPE_BF16: return OPC_BF2_TYPE_BF16;
    case OPC_TYPE_CB2: return OPC_BF2_TYPE_CB2;
    case OPC_TYPE_CB4: return OPC_BF2_TYPE_CB4;
    default: return UINT32_MAX;
    }
}

static uint64_t plain_elem_size(opc_type t) { return t == OPC_TYPE_F32 ? 4 : 2; }

/* Expected part sizes for a tensor (FORMAT.md "part sizes"); false on overflow.
 * With group scales (tflags bit 0) part 1 is the codebooks followed by
 * rows x groups scale bytes. */
static int part_sizes(opc_type t, uint64_t rows, uint64_t cols, uint64_t nelem, uint32_t k,
                      uint64_t n_outliers, uint32_t tflags, uint64_t sz[N_PARTS]) {
    memset(sz, 0, N_PARTS * sizeof sz[0]);
    if (t == OPC_TYPE_CB2 || t == OPC_TYPE_CB4) {
        uint64_t rb = opc_cb_row_bytes(t == OPC_TYPE_CB2 ? 2 : 4, (int64_t)cols);
        if (!opc_mul_ok(rows, rb, &sz[0])) return 0;
        if (!opc_mul_ok(rows, (uint64_t)k * 2, &sz[1])) return 0;
        if (tflags & OPC_BF2_TF_GSCALE) {
            uint64_t gs; /* rows, cols < 2^31: no overflow, but keep the rule uniform */
            if (!opc_mul_ok(rows, (uint64_t)opc_cb_groups((int64_t)cols), &gs) || sz[1] + gs < sz[1]) return 0;
            sz[1] += gs;
        }
        if (n_outliers) {
            if (!opc_mul_ok(rows + 1, 4, &sz[2])) return 0;
            sz[3] = n_outliers * 2; /* n_outliers < 2^32 checked before */
            sz[4] = n_outliers * 2;
        }
        return 1;
    }
    return opc_mul_ok(nelem, plain_elem_size(t), &sz[0]);
}

/* tflags describing a codebook view (the writer's side of the reader's checks). */
static uint32_t cb_tflags(const opc_cb_matrix *m) {
    return (m->gscale ? (uint32_t)OPC_BF2_TF_GSCALE : 0u) |
           (((uint32_t)m->rot_log2 << OPC_BF2_TF_ROT_SHIFT) & (uint32_t)OPC_BF2_TF_ROT_MASK);
}

uint64_t opc_bf2_cb_bytes(const opc_cb_matrix *m) {
    uint64_t sz[N_PARTS], sum = 0;
    if (m->rows <= 0 || m->cols <= 0 || (m->bits != 2 && m->bits != 4) || m->k < 0 || m->n_outliers >= (1ull << 32))
        return 0;
    if (!part_sizes(m->bits == 2 ? OPC_TYPE_CB2 : OPC_TYPE_CB4, (uint64_t)m->rows, (uint64_t)m->cols,
                    (uint64_t)m->rows * (uint64_t)m->cols, (uint32_t)m->k, m->n_outliers, cb_tflags(m), sz))
        return 0;
    for (int i = 0; i < N_PARTS; i++) sum += sz[i];
    return sum;
}

/* ---------------------------------------------------- little-endian ------ */

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}
static inline void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ================================================================ reader == */

/* A bounds-checked cursor over the metadata section. Every read names the
 * field it reads so a truncation message says what was missing. */
typedef struct cursor {
    const uint8_t *p;
    uint64_t size, off;
    uint64_t base; /* file offset of p[0], for messages */
    const char *what;
} cursor;

static opc_status cur_need(cursor *c, uint64_t n, const char *field) {
    if (!opc_range_ok(c->off, n, c->size))
        return opc_error(OPC_ERR_CORRUPT, "%s: metadata truncated reading %s (needs %llu bytes at offset %llu, "
                         "%llu left)", c->what, field, (unsigned long long)n,
                         (unsigned long long)(c->base + c->off), (unsigned long long)(c->size - c->off));
    return OPC_OK;
}
static opc_status cur_u32(cursor *c, uint32_t *v, const char *field) {
    opc_status st = cur_need(c, 4, field);
    if (st) return st;
    *v = le32(c->p + c->off);
    c->off += 4;
    return OPC_OK;
}
static opc_status cur_i32(cursor *c, int32_t *v, const char *field) {
    uint32_t u;
    opc_status st = cur_u32(c, &u, field);
    if (!st) memcpy(v, &u, 4);
    return st;
}
static opc_status cur_f32(cursor *c, float *v, const char *field) {
    uint32_t u;
    opc_status st = cur_u32(c, &u, field);
    if (!st) *v = opc_bits_f32(u);
    return st;
}
static opc_status cur_u64(cursor *c, uint64_t *v, const char *field) {
    opc_status st = cur_need(c, 8, field);
    if (st) return st;
    *v = le64(c->p + c->off);
    c->off += 8;
    return OPC_OK;
}
/* A str: pointer into the buffer + length, bounded by max_len. */
static opc_status cur_str(cursor *c, const uint8_t **s, uint32_t *len, uint32_t max_len,
                          const char *field) {
    opc_status st = cur_u32(c, len, field);
    if (st) return st;
    if (*len > max_len)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s has length %u (max %u)", c->what, field, *len, max_len);
    st = cur_need(c, *len, field);
    if (st) return st;
    *s = c->p + c->off;
    c->off += *len;
    return OPC_OK;
}
/* Heap copy of a str, NUL-terminated; NULs inside rejected unless allow_nul. */
static opc_status cur_strdup(cursor *c, char **out, uint32_t *out_len, uint32_t max_len,
                             int allow_nul, const char *field) {
    const uint8_t *s;
    uint32_t len;
    opc_status st = cur_str(c, &s, &len, max_len, field);
    if (st) return st;
    if (!allow_nul && memchr(s, 0, len))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s contains a NUL byte", c->what, field);
    char *p = malloc((size_t)len + 1);
    if (!p) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %s", c->what, field);
    memcpy(p, s, len);
    p[len] = '\0';
    *out = p;
    if (out_len) *out_len = len;
    return OPC_OK;
}

#define TRY(x)                                                                           \
    do {                                                                                 \
        opc_status st_ = (x);                                                            \
        if (st_ != OPC_OK) return st_;                                                   \
    } while (0)

static opc_status read_config(cursor *c, opc_config *cfg) {
    uint32_t size, u;
    TRY(cur_u32(c, &size, "config_size"));
    if (size < OPC_BF2_CONFIG_SIZE)
        return opc_error(OPC_ERR_CORRUPT, "%s: config_size %u is smaller than %d", c->what, size,
                         OPC_BF2_CONFIG_SIZE);
    TRY(cur_need(c, size, "config"));
    uint64_t end = c->off + size;
    TRY(cur_u32(c, &u, "config.arch"));
    if (u > OPC_ARCH_QWEN2)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: config.arch %u is not a known architecture", c->what, u);
    cfg->arch = (opc_arch)u;
    TRY(cur_i32(c, &cfg->dim, "config.dim"));
    TRY(cur_i32(c, &cfg->hidden_dim, "config.hidden_dim"));
    TRY(cur_i32(c, &cfg->n_layers, "config.n_layers"));
    TRY(cur_i32(c, &cfg->n_heads, "config.n_heads"));
    TRY(cur_i32(c, &cfg->n_kv_heads, "config.n_kv_heads"));
    TRY(cur_i32(c, &cfg->head_dim, "config.head_dim"));
    TRY(cur_i32(c, &cfg->vocab_size, "config.vocab_size"));
    TRY(cur_i32(c, &cfg->max_seq_len, "config.max_seq_len"));
    TRY(cur_f32(c, &cfg->rms_eps, "config.rms_eps"));
    TRY(cur_f32(c, &cfg->rope_theta, "config.rope_theta"));
    TRY(cur_u32(c, &u, "config.rope_scaling"));
    if (u > OPC_ROPE_SCALING_LLAMA3)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: config.rope_scaling %u is not known", c->what, u);
    cfg->rope_scaling = (opc_rope_scaling)u;
    TRY(cur_f32(c, &cfg->rope_factor, "config.rope_factor"));
    TRY(cur_f32(c, &cfg->rope_low_freq_factor, "config.rope_low_freq_factor"));
    TRY(cur_f32(c, &cfg->rope_high_freq_factor, "config.rope_high_freq_factor"));
    TRY(cur_i32(c, &cfg->rope_orig_max_pos, "config.rope_orig_max_pos"));
    TRY(cur_i32(c, &cfg->tied_embeddings, "config.tied_embeddings"));
    TRY(cur_i32(c, &cfg->attn_bias, "config.attn_bias"));
    if (cfg->tied_embeddings != 0 && cfg->tied_embeddings != 1)
        return opc_error(OPC_ERR_CORRUPT, "%s: config.tied_embeddings %d is not 0 or 1", c->what, cfg->tied_embeddings);
    if (cfg->attn_bias != 0 && cfg->attn_bias != 1)
        return opc_error(OPC_ERR_CORRUPT, "%s: config.attn_bias %d is not 0 or 1", c->what, cfg->attn_bias);
    c->off = end; /* skip fields of a later minor revision */
    return OPC_OK;
}

static opc_status check_id(cursor *c, int32_t id, int32_t n, const char *field) {
    if (id < -1 || id >= n)
        return opc_error(OPC_ERR_CORRUPT, "%s: vocab.%s %d out of range [-1, %d)", c->what, field, id, n);
    return OPC_OK;
}

static opc_status check_bool(cursor *c, int32_t v, const char *field) {
    if (v != 0 && v != 1)
        return opc_error(OPC_ERR_CORRUPT, "%s: vocab.%s %d is not 0 or 1", c->what, field, v);
    return OPC_OK;
}

static opc_status read_vocab(cursor *c, opc_vocab *v) {
    uint32_t kind, vflags;
    int32_t n_tokens, n_merges;
    TRY(cur_u32(c, &kind, "vocab.kind"));
    if (kind > OPC_VOCAB_SPM)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: vocab.kind %u is not known", c->what, kind);
    v->kind = (opc_vocab_kind)kind;
    TRY(cur_i32(c, &n_tokens, "vocab.n_tokens"));
    TRY(cur_i32(c, &n_merges, "vocab.n_merges"));
    if (n_tokens < 0 || n_tokens > MAX_TOKENS)
        return opc_error(OPC_ERR_CORRUPT, "%s: vocab.n_tokens %d out of range", c->what, n_tokens);
    if (n_merges < 0 || n_merges > MAX_TOKENS)
        return opc_error(OPC_ERR_CORRUPT, "%s: vocab.n_merges %d out of range", c->what, n_merges);
    TRY(cur_i32(c, &v->bos_id, "vocab.bos_id"));
    TRY(cur_i32(c, &v->eos_id, "vocab.eos_id"));
    TRY(cur_i32(c, &v->unk_id, "vocab.unk_id"));
    TRY(cur_i32(c, &v->pad_id, "vocab.pad_id"));
    TRY(check_id(c, v->bos_id, n_tokens, "bos_id"));
    TRY(check_id(c, v->eos_id, n_tokens, "eos_id"));
    TRY(check_id(c, v->unk_id, n_tokens, "unk_id"));
    TRY(check_id(c, v->pad_id, n_tokens, "pad_id"));
    TRY(cur_i32(c, &v->add_bos, "vocab.add_bos"));
    TRY(cur_i32(c, &v->add_eos, "vocab.add_eos"));
    TRY(cur_i32(c, &v->add_space_prefix, "vocab.add_space_prefix"));
    TRY(check_bool(c, v->add_bos, "add_bos"));
    TRY(check_bool(c, v->add_eos, "add_eos"));
    TRY(check_bool(c, v->add_space_prefix, "add_space_prefix"));
    TRY(cur_u32(c, &vflags, "vocab.vflags"));
    if (vflags & ~7u)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: vocab.vflags 0x%x has unknown bits", c->what, vflags);
    const uint8_t *s;
    uint32_t len;
    TRY(cur_str(c, &s, &len, sizeof v->pre - 1, "vocab.pre"));
    if (memchr(s, 0, len)) return opc_error(OPC_ERR_CORRUPT, "%s: vocab.pre contains a NUL byte", c->what);
    memcpy(v->pre, s, len);
    v->pre[len] = '\0';

    /* Each token needs at least its 4-byte length: refuse counts the bytes
     * left cannot hold before allocating for them. */
    TRY(cur_need(c, (uint64_t)n_tokens * 4, "vocab.tokens"));
    v->tokens = calloc((size_t)(n_tokens ? n_tokens : 1), sizeof *v->tokens);
    v->token_len = calloc((size_t)(n_tokens ? n_tokens : 1), sizeof *v->token_len);
    if (!v->tokens || !v->token_len) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate the vocabulary", c->what);
    v->n_tokens = n_tokens;
    for (int32_t i = 0; i < n_tokens; i++) {
        char field[48];
        snprintf(field, sizeof field, "vocab.tokens[%d]", i);
        TRY(cur_strdup(c, &v->tokens[i], &v->token_len[i], MAX_TOKEN_LEN, 1, field));
    }
    if (vflags & 1u) {
        TRY(cur_need(c, (uint64_t)n_tokens * 4, "vocab.scores"));
        v->scores = malloc((size_t)(n_tokens ? n_tokens : 1) * sizeof *v->scores);
        if (!v->scores) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate vocab.scores", c->what);
        for (int32_t i = 0; i < n_tokens; i++) TRY(cur_f32(c, &v->scores[i], "vocab.scores"));
    }
    if (vflags & 2u) {
        TRY(cur_need(c, (uint64_t)n_tokens * 4, "vocab.types"));
        v->types = malloc((size_t)(n_tokens ? n_tokens : 1) * sizeof *v->types);
        if (!v->types) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate vocab.types", c->what);
        for (int32_t i = 0; i < n_tokens; i++) TRY(cur_i32(c, &v->types[i], "vocab.types"));
    }
    TRY(cur_need(c, (uint64_t)n_merges * 4, "vocab.merges"));
    v->merges = calloc((size_t)(n_merges ? n_merges : 1), sizeof *v->merges);
    if (!v->merges) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate vocab.merges", c->what);
    v->n_merges = n_merges;
    for (int32_t i = 0; i < n_merges; i++) {
        char field[48];
        snprintf(field, sizeof field, "vocab.merges[%d]", i);
        TRY(cur_strdup(c, &v->merges[i], NULL, MAX_TOKEN_LEN, 0, field));
    }
    if (vflags & 4u) TRY(cur_strdup(c, &v->chat_template, NULL, MAX_TEMPLATE_LEN, 0, "vocab.chat_template"));
    return OPC_OK;
}

static int fp16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

static opc_status read_tensor(cursor *c, const uint8_t *file, uint64_t data_off, uint64_t meta_off,
                              uint32_t flags, int32_t idx, opc_tensor *t) {
    char label[160];
    snprintf(label, sizeof label, "tensor %d", idx);
    const uint8_t *s;
    uint32_t len;
    TRY(cur_str(c, &s, &len, OPC_MAX_NAME - 1, "tensor name"));
    if (len == 0 || memchr(s, 0, len))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: name is empty or contains a NUL byte", c->what, label);
    memcpy(t->name, s, len);
    t->name[len] = '\0';
    snprintf(label, sizeof label, "tensor %d (%s)", idx, t->name);

    uint32_t type_id, n_dims, k, tflags;
    uint64_t shape[4], n_outliers, off[N_PARTS], size[N_PARTS], hash;
    float qerr;
    TRY(cur_u32(c, &type_id, "tensor type_id"));
    TRY(cur_u32(c, &n_dims, "tensor n_dims"));
    for (int i = 0; i < 4; i++) TRY(cur_u64(c, &shape[i], "tensor shape"));
    TRY(cur_u32(c, &k, "tensor k"));
    TRY(cur_u32(c, &tflags, "tensor tflags"));
    TRY(cur_f32(c, &qerr, "tensor qerr"));
    TRY(cur_u64(c, &n_outliers, "tensor n_outliers"));
    for (int i = 0; i < N_PARTS; i++) TRY(cur_u64(c, &off[i], "tensor part_offset"));
    for (int i = 0; i < N_PARTS; i++) TRY(cur_u64(c, &size[i], "tensor part_size"));
    TRY(cur_u64(c, &hash, "tensor hash"));

    opc_type type = opc_bf2_type_from_id(type_id);
    if (type == OPC_TYPE_COUNT)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: unknown type_id %u", c->what, label, type_id);
    int is_cb = type == OPC_TYPE_CB2 || type == OPC_TYPE_CB4;
    if (n_dims < 1 || n_dims > 4 || (is_cb && n_dims != 2))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: n_dims %u invalid for type %s", c->what, label,
                         n_dims, opc_type_get(type)->name);
    uint64_t nelem = 1;
    for (uint32_t i = 0; i < 4; i++) {
        if (i < n_dims ? (shape[i] < 1 || shape[i] >= (1ull << 31)) : shape[i] != 0)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: shape[%u] = %llu out of range", c->what, label, i,
                             (unsigned long long)shape[i]);
        if (i < n_dims && (!opc_mul_ok(nelem, shape[i], &nelem) || nelem > MAX_ELEMS))
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: too many elements", c->what, label);
    }
    uint64_t rows = shape[0], cols = n_dims > 1 ? shape[1] : 1;
    /* Unknown bits first: a later writer may define them (UNSUPPORTED); known
     * bits that make no sense here are damage (CORRUPT). */
    if (tflags & ~(uint32_t)OPC_BF2_TF_KNOWN)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: tflags 0x%x has unknown bits 0x%x", c->what, label, tflags,
                         tflags & ~(uint32_t)OPC_BF2_TF_KNOWN);
    if (!is_cb && tflags != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: tflags 0x%x must be 0 for a plain (%s) tensor", c->what, label,
                         tflags, opc_type_get(type)->name);
    uint32_t rot_log2 = (tflags & OPC_BF2_TF_ROT_MASK) >> OPC_BF2_TF_ROT_SHIFT;
    if (rot_log2 && cols % (1ull << rot_log2) != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: tflags rotation block 2^%u does not divide cols %llu", c->what,
                         label, rot_log2, (unsigned long long)cols);
    if (qerr != qerr) return opc_error(OPC_ERR_CORRUPT, "%s: %s: qerr is NaN", c->what, label);
    if (is_cb) {
        uint32_t kmax = type == OPC_TYPE_CB2 ? 4 : 16;
        if (k < 1 || k > kmax)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: k = %u out of range [1, %u]", c->what, label, k, kmax);
        if (n_outliers > nelem || n_outliers >= (1ull << 32))
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: n_outliers %llu exceeds the element count", c->what,
                             label, (unsigned long long)n_outliers);
    } else if (k != 0 || n_outliers != 0) {
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: k/n_outliers must be 0 for a plain tensor", c->what, label);
    }
    uint64_t want[N_PARTS];
    if (!part_sizes(type, rows, cols, nelem, k, n_outliers, tflags, want))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: tensor size overflows", c->what, label);
    for (int i = 0; i < N_PARTS; i++) {
        if (size[i] != want[i])
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: part %d size %llu, expected %llu", c->what, label, i,
                             (unsigned long long)size[i], (unsigned long long)want[i]);
        if (size[i] == 0) {
            if (off[i] != 0)
                return opc_error(OPC_ERR_CORRUPT, "%s: %s: empty part %d has offset %llu (must be 0)", c->what,
                                 label, i, (unsigned long long)off[i]);
            continue;
        }
        if (off[i] % OPC_BF2_ALIGN || off[i] < data_off || !opc_range_ok(off[i] - data_off, size[i], meta_off - data_off))
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: part %d offset %llu size %llu outside the data section "
                             "[%llu, %llu) or not %d-byte aligned", c->what, label, i,
                             (unsigned long long)off[i], (unsigned long long)size[i],
                             (unsigned long long)data_off, (unsigned long long)meta_off, OPC_BF2_ALIGN);
    }
    if (!(flags & OPC_BF2_SKIP_VERIFY)) {
        opc_xxh64_state hs;
        opc_xxh64_init(&hs, 0);
        for (int i = 0; i < N_PARTS; i++)
            if (size[i]) opc_xxh64_update(&hs, file + off[i], (size_t)size[i]);
        if (opc_xxh64_digest(&hs) != hash)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: checksum mismatch (data damaged)", c->what, label);
    }

    t->type = type;
    t->n_dims = (int32_t)n_dims;
    for (uint32_t i = 0; i < 4; i++) t->shape[i] = (int64_t)shape[i];
    t->data = file + off[0];
    t->nbytes = size[0];
    t->qerr = qerr;
    if (is_cb) {
        opc_cb_matrix *m = &t->cb;
        m->rows = (int64_t)rows;
        m->cols = (int64_t)cols;
        m->bits = type == OPC_TYPE_CB2 ? 2 : 4;
        m->k = (int32_t)k;
        m->idx = file + off[0];
        m->row_bytes = opc_cb_row_bytes(m->bits, m->cols);
        m->codebook = (const uint16_t *)(const void *)(file + off[1]);
        /* the scales follow the codebooks inside part 1 (its size was checked above) */
        m->gscale = (tflags & OPC_BF2_TF_GSCALE) ? file + off[1] + rows * k * 2 : NULL;
        m->rot_log2 = (int32_t)rot_log2;
        m->n_outliers = n_outliers;
        if (n_outliers) {
            m->ol_rowptr = (const uint32_t *)(const void *)(file + off[2]);
            m->ol_col = (const uint16_t *)(const void *)(file + off[3]);
            m->ol_val = (const uint16_t *)(const void *)(file + off[4]);
        }
        char what[300];
        snprintf(what, sizeof what, "%s: %s", c->what, label);
        TRY(opc_cb_validate(m, what));
        for (uint64_t i = 0; i < rows * k; i++)
            if (!fp16_finite(m->codebook[i]))
                return opc_error(OPC_ERR_CORRUPT, "%s: codebook entry %llu is not finite", what, (unsigned long long)i);
        for (uint64_t i = 0; i < n_outliers; i++)
            if (!fp16_finite(m->ol_val[i]))
                return opc_error(OPC_ERR_CORRUPT, "%s: outlier delta %llu is not finite", what, (unsigned long long)i);
    }
    return OPC_OK;
}

opc_status opc_bf2_load_mem(const uint8_t *data, uint64_t size, uint32_t flags, const char *what,
                            opc_model_desc *d) {
    if (!data || ((uintptr_t)data % OPC_BF2_ALIGN))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: .bf2 image must be %d-byte aligned", what, OPC_BF2_ALIGN);
    if (size < OPC_BF2_HEADER_SIZE)
        return opc_error(OPC_ERR_CORRUPT, "%s: file of %llu bytes is shorter than the %d-byte header", what,
                         (unsigned long long)size, OPC_BF2_HEADER_SIZE);
    if (memcmp(data, "OPCBF2\0", 7) != 0) return opc_error(OPC_ERR_CORRUPT, "%s: bad magic (not a .bf2 file)", what);
    if (data[7] != OPC_BF2_VERSION)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: header.version %u (this build reads version %d)", what,
                         data[7], OPC_BF2_VERSION);
    if (opc_xxh64(data, 56, 0) != le64(data + 56))
        return opc_error(OPC_ERR_CORRUPT, "%s: header.header_hash mismatch (header damaged)", what);
    uint32_t header_size = le32(data + 8), hflags = le32(data + 12);
    uint64_t data_off = le64(data + 16), meta_off = le64(data + 24), meta_size = le64(data + 32);
    uint64_t meta_hash = le64(data + 40), reserved = le64(data + 48);
    if (header_size != OPC_BF2_HEADER_SIZE)
        return opc_error(OPC_ERR_CORRUPT, "%s: header.header_size %u (expected %d)", what, header_size, OPC_BF2_HEADER_SIZE);
    if (hflags != 0) return opc_error(OPC_ERR_UNSUPPORTED, "%s: header.flags 0x%x has unknown bits", what, hflags);
    if (reserved != 0) return opc_error(OPC_ERR_CORRUPT, "%s: header.reserved is not 0", what);
    if (data_off != OPC_BF2_HEADER_SIZE)
        return opc_error(OPC_ERR_CORRUPT, "%s: header.data_offset %llu (expected %d)", what,
                         (unsigned long long)data_off, OPC_BF2_HEADER_SIZE);
    if (meta_off < data_off || meta_off % OPC_BF2_ALIGN)
        return opc_error(OPC_ERR_CORRUPT, "%s: header.meta_offset %llu invalid", what, (unsigned long long)meta_off);
    if (meta_size < 4 || !opc_range_ok(meta_off, meta_size, size) || meta_off + meta_size != size)
        return opc_error(OPC_ERR_CORRUPT, "%s: header.meta_offset %llu + meta_size %llu does not end at the "
                         "file size %llu (truncated?)", what, (unsigned long long)meta_off,
                         (unsigned long long)meta_size, (unsigned long long)size);
    if (opc_xxh64(data + meta_off, (size_t)meta_size, 0) != meta_hash)
        return opc_error(OPC_ERR_CORRUPT, "%s: header.meta_hash mismatch (metadata damaged)", what);

    cursor c = {data + meta_off, meta_size, 0, meta_off, what};
    const uint8_t *s;
    uint32_t len;
    TRY(cur_str(&c, &s, &len, sizeof d->name - 1, "name"));
    memcpy(d->name, s, len);
    d->name[len] = '\0';
    TRY(read_config(&c, &d->cfg));
    TRY(read_vocab(&c, &d->vocab));
    uint32_t n_tensors;
    TRY(cur_u32(&c, &n_tensors, "n_tensors"));
    if (n_tensors < 1 || n_tensors > MAX_TENSORS)
        return opc_error(OPC_ERR_CORRUPT, "%s: n_tensors %u out of range [1, %d]", what, n_tensors, MAX_TENSORS);
    /* an entry is at least 153 bytes (4 + 1-byte name + 148): bound the allocation by the bytes left */
    TRY(cur_need(&c, (uint64_t)n_tensors * 153, "tensor directory"));
    TRY(opc_model_desc_alloc_tensors(d, (int32_t)n_tensors));
    for (uint32_t i = 0; i < n_tensors; i++) {
        TRY(read_tensor(&c, data, data_off, meta_off, flags, (int32_t)i, &d->tensors[i]));
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(d->tensors[j].name, d->tensors[i].name))
                return opc_error(OPC_ERR_CORRUPT, "%s: tensor %u: duplicate name %s", what, i, d->tensors[i].name);
    }
    if (c.off != c.size)
        return opc_error(OPC_ERR_CORRUPT, "%s: %llu unread bytes after the tensor directory", what,
                         (unsigned long long)(c.size - c.off));
    return OPC_OK;
}

opc_status opc_bf2_load(const char *path, uint32_t flags, opc_model_desc *d) {
    if (d->n_maps >= OPC_MAX_MAPS) return opc_error(OPC_ERR_INTERNAL, "%s: too many mappings", path);
    opc_map *m = &d->maps[d->n_maps];
    TRY(opc_map_open(path, m));
    d->n_maps++; /* owned by d from here on, freed with it even on failure */
    d->format = OPC_SRC_BF2;
    return opc_bf2_load_mem(m->data, m->size, flags, path, d);
}

opc_status opc_load_bf2(const char *path, opc_model_desc *d) {
    const char *env = getenv("OPC_BF2_SKIP_VERIFY");
    uint32_t flags = (env && *env && strcmp(env, "0") != 0) ? OPC_BF2_SKIP_VERIFY : 0;
    return opc_bf2_load(path, flags, d);
}

/* ================================================================ writer == */

typedef struct dir_entry {
    char name[OPC_MAX_NAME];
    uint32_t type_id, n_dims, k, tflags;
    uint64_t shape[4];
    float qerr;
    uint64_t n_outliers;
    uint64_t off[N_PARTS], size[N_PARTS];
    uint64_t hash;
} dir_entry;

struct opc_bf2_writer {
    FILE *f;
    char *path;     /* destination */
    char *tmp_path; /* temporary file beside it */
    uint64_t pos;   /* bytes written so far */
    dir_entry *dir;
    int32_t n_dir, cap_dir;
    int failed;     /* a write error happened: finish refuses */
    int done;       /* renamed into place */
};

static opc_status w_io_error(opc_bf2_writer *w, const char *what) {
    w->failed = 1;
    return opc_error(OPC_ERR_IO, "%s: %s: %s", w->tmp_path, what, strerror(errno));
}

static opc_status w_write(opc_bf2_writer *w, const void *p, uint64_t n) {
    if (n && fwrite(p, 1, (size_t)n, w->f) != n) return w_io_error(w, "write failed");
    w->pos += n;
    return OPC_OK;
}

static opc_status w_pad(opc_bf2_writer *w) {
    static const uint8_t zeros[OPC_BF2_ALIGN];
    uint64_t r = w->pos % OPC_BF2_ALIGN;
    return r ? w_write(w, zeros, OPC_BF2_ALIGN - r) : OPC_OK;
}

opc_status opc_bf2_writer_open(opc_bf2_writer **out, const char *path) {
    *out = NULL;
    if (!path || !*path) return opc_error(OPC_ERR_INVALID_ARG, "no output path given");
    opc_bf2_writer *w = calloc(1, sizeof *w);
    if (!w) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate writer", path);
    size_t n = strlen(path);
    w->path = malloc(n + 1);
    w->tmp_path = malloc(n + 16);
    if (!w->path || !w->tmp_path) {
        opc_bf2_writer_close(w);
        return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate writer", path);
    }
    memcpy(w->path, path, n + 1);
    snprintf(w->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(w->tmp_path);
    if (fd < 0) {
        opc_status st = opc_error(OPC_ERR_IO, "%s: cannot create temporary file %s: %s", path, w->tmp_path,
                                  strerror(errno));
        w->tmp_path[0] = '\0'; /* nothing to remove */
        opc_bf2_writer_close(w);
        return st;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; a model file is meant to be shared */
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        opc_status st = w_io_error(w, "fdopen failed");
        opc_bf2_writer_close(w);
        return st;
    }
    /* the header is rewritten at the end, once offsets and hashes are known */
    static const uint8_t zeros[OPC_BF2_HEADER_SIZE];
    opc_status st = w_write(w, zeros, sizeof zeros);
    if (st) {
        opc_bf2_writer_close(w);
        return st;
    }
    *out = w;
    return OPC_OK;
}

void opc_bf2_writer_close(opc_bf2_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    if (!w->done && w->tmp_path && w->tmp_path[0]) unlink(w->tmp_path);
    free(w->path);
    free(w->tmp_path);
    free(w->dir);
    free(w);
}

opc_status opc_bf2_writer_add(opc_bf2_writer *w, const opc_tensor *t) {
    if (!w || !w->f || w->failed) return opc_error(OPC_ERR_INVALID_ARG, "bf2 writer is not usable");
    uint32_t id = opc_bf2_type_to_id(t->type);
    if (id == UINT32_MAX)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: type %s cannot be stored in .bf2 (quantize or "
                         "convert it first)", w->path, t->name,
                         opc_type_get(t->type) ? opc_type_get(t->type)->name : "?");
    size_t nl = strlen(t->name);
    if (nl == 0 || nl >= OPC_MAX_NAME || t->n_dims < 1 || t->n_dims > 4)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor '%s': bad name or n_dims %d", w->path, t->name, t->n_dims);
    for (int32_t i = 0; i < w->n_dir; i++)
        if (!strcmp(w->dir[i].name, t->name))
            return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s added twice", w->path, t->name);
    dir_entry e;
    memset(&e, 0, sizeof e);
    memcpy(e.name, t->name, nl + 1);
    e.type_id = id;
    e.n_dims = (uint32_t)t->n_dims;
    uint64_t nelem = 1;
    for (int i = 0; i < t->n_dims; i++) {
        if (t->shape[i] < 1 || t->shape[i] >= (1ll << 31))
            return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: shape[%d] = %lld", w->path, t->name, i,
                             (long long)t->shape[i]);
        e.shape[i] = (uint64_t)t->shape[i];
        nelem *= e.shape[i];
    }
    e.qerr = t->qerr == t->qerr ? t->qerr : -1.0f;
    const void *parts[N_PARTS] = {0};
    const uint8_t *gscale = NULL; /* written right after the codebooks, inside part 1 */
    uint64_t gscale_bytes = 0;
    int is_cb = t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4;
    if (is_cb) {
        const opc_cb_matrix *m = &t->cb;
        if (t->n_dims != 2 || m->rows != t->shape[0] || m->cols != t->shape[1] ||
            m->bits != (t->type == OPC_TYPE_CB2 ? 2 : 4))
            return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: codebook view does not match its shape/type",
                             w->path, t->name);
        if (m->rot_log2 < 0 || m->rot_log2 > OPC_CB_ROT_MAX_LOG2 || m->cols % ((int64_t)1 << m->rot_log2) != 0)
            return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: rotation block 2^%d is not a power of two "
                             "<= 2^%d dividing %lld columns", w->path, t->name, m->rot_log2, OPC_CB_ROT_MAX_LOG2,
                             (long long)m->cols);
        TRY(opc_cb_validate(m, t->name));
        e.k = (uint32_t)m->k;
        e.tflags = cb_tflags(m);
        e.n_outliers = m->n_outliers;
        parts[0] = m->idx;
        parts[1] = m->codebook;
        gscale = m->gscale;
        if (gscale) gscale_bytes = (uint64_t)m->rows * (uint64_t)opc_cb_groups(m->cols);
        parts[2] = m->ol_rowptr;
        parts[3] = m->ol_col;
        parts[4] = m->ol_val;
    } else {
        parts[0] = t->data;
    }
    if (!part_sizes(t->type, e.shape[0], e.n_dims > 1 ? e.shape[1] : 1, nelem, e.k, e.n_outliers, e.tflags,
                    e.size))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: size overflows", w->path, t->name);
    if (!is_cb && t->nbytes != e.size[0])
        return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: %llu bytes, expected %llu", w->path, t->name,
                         (unsigned long long)t->nbytes, (unsigned long long)e.size[0]);
    if (w->n_dir == w->cap_dir) {
        int32_t cap = w->cap_dir ? 2 * w->cap_dir : 64;
        dir_entry *nd = realloc(w->dir, (size_t)cap * sizeof *nd);
        if (!nd) return opc_error(OPC_ERR_NOMEM, "%s: cannot grow the tensor directory", w->path);
        w->dir = nd;
        w->cap_dir = cap;
    }
    opc_xxh64_state hs;
    opc_xxh64_init(&hs, 0);
    for (int i = 0; i < N_PARTS; i++) {
        if (!e.size[i]) continue;
        if (!parts[i]) return opc_error(OPC_ERR_INVALID_ARG, "%s: tensor %s: part %d has no data", w->path, t->name, i);
        /* part 1 with group scales comes from two arrays: codebooks, then scales */
        uint64_t tail = i == 1 ? gscale_bytes : 0, head = e.size[i] - tail;
        TRY(w_pad(w));
        e.off[i] = w->pos;
        TRY(w_write(w, parts[i], head));
        opc_xxh64_update(&hs, parts[i], (size_t)head);
        if (tail) {
            TRY(w_write(w, gscale, tail));
            opc_xxh64_update(&hs, gscale, (size_t)tail);
        }
    }
    e.hash = opc_xxh64_digest(&hs);
    w->dir[w->n_dir++] = e;
    return OPC_OK;
}

/* ---- metadata serialisation into a growable buffer ---- */

typedef struct mbuf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} mbuf;

static void mb_put(mbuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void mb_u32(mbuf *b, uint32_t v) {
    uint8_t t[4];
    put_le32(t, v);
    mb_put(b, t, 4);
}
static void mb_i32(mbuf *b, int32_t v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    mb_u32(b, u);
}
static void mb_f32(mbuf *b, float v) { mb_u32(b, opc_f32_bits(v)); }
static void mb_u64(mbuf *b, uint64_t v) {
    uint8_t t[8];
    put_le64(t, v);
    mb_put(b, t, 8);
}
static void mb_str(mbuf *b, const char *s, size_t len) {
    mb_u32(b, (uint32_t)len);
    mb_put(b, s, len);
}

static opc_status build_meta(const opc_bf2_writer *w, const char *name, const opc_config *cfg,
                             const opc_vocab *v, mbuf *b) {
    size_t nl = name ? strlen(name) : 0;
    if (nl > 127) nl = 127;
    mb_str(b, name ? name : "", nl);
    mb_u32(b, OPC_BF2_CONFIG_SIZE);
    mb_u32(b, (uint32_t)cfg->arch);
    mb_i32(b, cfg->dim);
    mb_i32(b, cfg->hidden_dim);
    mb_i32(b, cfg->n_layers);
    mb_i32(b, cfg->n_heads);
    mb_i32(b, cfg->n_kv_heads);
    mb_i32(b, cfg->head_dim);
    mb_i32(b, cfg->vocab_size);
    mb_i32(b, cfg->max_seq_len);
    mb_f32(b, cfg->rms_eps);
    mb_f32(b, cfg->rope_theta);
    mb_u32(b, (uint32_t)cfg->rope_scaling);
    mb_f32(b, cfg->rope_factor);
    mb_f32(b, cfg->rope_low_freq_factor);
    mb_f32(b, cfg->rope_high_freq_factor);
    mb_i32(b, cfg->rope_orig_max_pos);
    mb_i32(b, cfg->tied_embeddings ? 1 : 0);
    mb_i32(b, cfg->attn_bias ? 1 : 0);

    if (v->n_tokens < 0 || v->n_tokens > MAX_TOKENS || v->n_merges < 0 || v->n_merges > MAX_TOKENS ||
        (v->n_tokens && (!v->tokens || !v->token_len)) || (v->n_merges && !v->merges))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: vocabulary is inconsistent", w->path);
    uint32_t vflags = (v->scores ? 1u : 0) | (v->types ? 2u : 0) | (v->chat_template ? 4u : 0);
    mb_u32(b, (uint32_t)v->kind);
    mb_i32(b, v->n_tokens);
    mb_i32(b, v->n_merges);
    mb_i32(b, v->bos_id);
    mb_i32(b, v->eos_id);
    mb_i32(b, v->unk_id);
    mb_i32(b, v->pad_id);
    mb_i32(b, v->add_bos ? 1 : 0);
    mb_i32(b, v->add_eos ? 1 : 0);
    mb_i32(b, v->add_space_prefix ? 1 : 0);
    mb_u32(b, vflags);
    mb_str(b, v->pre, strnlen(v->pre, sizeof v->pre - 1));
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (!v->tokens[i] || v->token_len[i] > MAX_TOKEN_LEN)
            return opc_error(OPC_ERR_INVALID_ARG, "%s: vocabulary token %d is missing or too long", w->path, i);
        mb_str(b, v->tokens[i], v->token_len[i]);
    }
    if (v->scores)
        for (int32_t i = 0; i < v->n_tokens; i++) mb_f32(b, v->scores[i]);
    if (v->types)
        for (int32_t i = 0; i < v->n_tokens; i++) mb_i32(b, v->types[i]);
    for (int32_t i = 0; i < v->n_merges; i++) {
        size_t ml = v->merges[i] ? strlen(v->merges[i]) : 0;
        if (!v->merges[i] || ml > MAX_TOKEN_LEN)
            return opc_error(OPC_ERR_INVALID_ARG, "%s: merge %d is missing or too long", w->path, i);
        mb_str(b, v->merges[i], ml);
    }
    if (v->chat_template) {
        size_t tl = strlen(v->chat_template);
        if (tl > MAX_TEMPLATE_LEN) return opc_error(OPC_ERR_INVALID_ARG, "%s: chat template too long", w->path);
        mb_str(b, v->chat_template, tl);
    }

    mb_u32(b, (uint32_t)w->n_dir);
    for (int32_t i = 0; i < w->n_dir; i++) {
        const dir_entry *e = &w->dir[i];
        mb_str(b, e->name, strlen(e->name));
        mb_u32(b, e->type_id);
        mb_u32(b, e->n_dims);
        for (int j = 0; j < 4; j++) mb_u64(b, e->shape[j]);
        mb_u32(b, e->k);
        mb_u32(b, e->tflags);
        mb_f32(b, e->qerr);
        mb_u64(b, e->n_outliers);
        for (int j = 0; j < N_PARTS; j++) mb_u64(b, e->off[j]);
        for (int j = 0; j < N_PARTS; j++) mb_u64(b, e->size[j]);
        mb_u64(b, e->hash);
    }
    if (b->oom) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate the metadata", w->path);
    return OPC_OK;
}

/* fsync the folder holding `path`, so the rename itself is durable. */
static void fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else {
        size_t n = (size_t)(slash - path);
        if (n == 0) n = 1; /* "/file" */
        if (n >= sizeof dir) return;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse fsync on folders */
        close(fd);
    }
}

opc_status opc_bf2_writer_finish(opc_bf2_writer *w, const char *name, const opc_config *cfg,
                                 const opc_vocab *vocab) {
    if (!w || !w->f || w->failed || w->done) return opc_error(OPC_ERR_INVALID_ARG, "bf2 writer is not usable");
    if (w->n_dir < 1) return opc_error(OPC_ERR_INVALID_ARG, "%s: no tensors were added", w->path);
    mbuf b = {0};
    opc_status st = build_meta(w, name, cfg, vocab, &b);
    if (st == OPC_OK) st = w_pad(w);
    uint64_t meta_off = w->pos;
    if (st == OPC_OK) st = w_write(w, b.p, b.n);
    if (st == OPC_OK) {
        uint8_t h[OPC_BF2_HEADER_SIZE] = {0};
        memcpy(h, "OPCBF2\0", 7);
        h[7] = OPC_BF2_VERSION;
        put_le32(h + 8, OPC_BF2_HEADER_SIZE);
        put_le32(h + 12, 0);
        put_le64(h + 16, OPC_BF2_HEADER_SIZE);
        put_le64(h + 24, meta_off);
        put_le64(h + 32, (uint64_t)b.n);
        put_le64(h + 40, opc_xxh64(b.p, b.n, 0));
        put_le64(h + 48, 0);
        put_le64(h + 56, opc_xxh64(h, 56, 0));
        if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h)
            st = w_io_error(w, "cannot write the header");
    }
    free(b.p);
    if (st == OPC_OK && fflush(w->f) != 0) st = w_io_error(w, "flush failed");
    if (st == OPC_OK && fsync(fileno(w->f)) != 0) st = w_io_error(w, "fsync failed");
    if (st == OPC_OK) {
        int rc = fclose(w->f);
        w->f = NULL;
        if (rc != 0) st = w_io_error(w, "close failed");
    }
    if (st == OPC_OK) {
        if (rename(w->tmp_path, w->path) != 0) {
            st = opc_error(OPC_ERR_IO, "%s: cannot rename %s into place: %s", w->path, w->tmp_path, strerror(errno));
            w->failed = 1;
        } else {
            w->done = 1;
            fsync_parent(w->path);
        }
    }
    if (st != OPC_OK) { /* never leave a partial file behind */
        if (w->f) fclose(w->f);
        w->f = NULL;
        unlink(w->tmp_path);
        w->tmp_path[0] = '\0';
        w->failed = 1;
    }
    return st;
}

opc_status opc_bf2_write_model(const opc_model_desc *d, const char *path) {
    opc_bf2_writer *w;
    TRY(opc_bf2_writer_open(&w, path));
    opc_status st = OPC_OK;
    for (int32_t i = 0; i < d->n_tensors && st == OPC_OK; i++) st = opc_bf2_writer_add(w, &d->tensors[i]);
    if (st == OPC_OK) st = opc_bf2_writer_finish(w, d->name, &d->cfg, &d->vocab);
    opc_bf2_writer_close(w);
    return st;
}
