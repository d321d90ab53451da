/*
 * llama2c.c — reader for llama2.c "v0" checkpoints (+ their tokenizer.bin).
 *
 * Layout (all little-endian, no magic, no alignment padding):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *       (vocab_size < 0 means the classifier is stored separately, |vocab_size| tokens)
 *   f32 token_embedding   (vocab, dim)
 *   f32 rms_att           (layer, dim)
 *   f32 wq                (layer, n_heads*head_dim, dim)
 *   f32 wk                (layer, n_kv_heads*head_dim, dim)
 *   f32 wv                (layer, n_kv_heads*head_dim, dim)
 *   f32 wo                (layer, dim, n_heads*head_dim)
 *   f32 rms_ffn           (layer, dim)
 *   f32 w1 (gate)         (layer, hidden_dim, dim)
 *   f32 w2 (down)         (layer, dim, hidden_dim)
 *   f32 w3 (up)           (layer, hidden_dim, dim)
 *   f32 rms_final         (dim)
 *   f32 freq_cis real+imag (seq_len, head_dim/2) each — skipped, we compute RoPE
 *   f32 wcls              (vocab, dim)    only when vocab_size < 0
 *
 * With no magic number, the only thing that tells a llama2.c checkpoint from
 * random bytes is that the header is plausible and the file size is exactly
 * what the header implies, so both are checked before any pointer is formed.
 * Tensors are zero-copy views into the mapping, except Q and K, whose rows
 * are un-permuted from llama2.c's interleaved RoPE pairs to the rotate-half
 * order the forward pass uses (model.h), which needs an owned copy.
 */
#include "loaders.h"

#include "../tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L2C_HEADER_BYTES 28u

static int32_t rd_i32_le(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

typedef struct l2c_header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_header;

/* Validate the header fields on their own (no file size yet). */
static opc_status check_header(const char *path, const l2c_header *h) {
    const struct {
        const char *name;
        int32_t v, max;
    } f[] = {
        {"dim", h->dim, 1 << 16},           {"hidden_dim", h->hidden_dim, 1 << 18},
        {"n_layers", h->n_layers, 1024},    {"n_heads", h->n_heads, 1024},
        {"n_kv_heads", h->n_kv_heads, 1024}, {"seq_len", h->seq_len, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v <= 0 || f[i].v > f[i].max)
            return opc_error(OPC_ERR_CORRUPT,
                             "%s: llama2.c header field %s = %d is out of range (1..%d); "
                             "not a llama2.c checkpoint?", path, f[i].name, f[i].v, f[i].max);
    }
    if (h->vocab_size == 0 || h->vocab_size < -(1 << 22) || h->vocab_size > (1 << 22))
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: llama2.c header field vocab_size = %d is out of range "
                         "(1..%d, negative for an unshared classifier)", path, h->vocab_size, 1 << 22);
    if (h->dim % h->n_heads != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: llama2.c header: n_heads %d does not divide dim %d",
                         path, h->n_heads, h->dim);
    if (h->n_kv_heads > h->n_heads || h->n_heads % h->n_kv_heads != 0)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: llama2.c header: n_kv_heads %d must divide n_heads %d", path,
                         h->n_kv_heads, h->n_heads);
    if ((h->dim / h->n_heads) % 2 != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: llama2.c header: head_dim %d (dim/n_heads) must be even for RoPE",
                         path, h->dim / h->n_heads);
    return OPC_OK;
}

/* Sequential cursor over the tensor area, in floats. All products are checked:
 * the header caps keep them far below 2^63, but a cheap check beats a proof. */
typedef struct l2c_cursor {
    const char *path;
    const uint8_t *base; /* first byte after the header */
    uint64_t n_floats;   /* floats available after the header */
    uint64_t pos;        /* next float */
} l2c_cursor;

/* Reserve (a*b*c) floats; *out points at them. CORRUPT if the file is short. */
static opc_status take(l2c_cursor *c, const char *what, uint64_t a, uint64_t b, uint64_t cc,
                       const float **out) {
    uint64_t n, end;
    if (!opc_mul_ok(a, b, &n) || !opc_mul_ok(n, cc, &n) || !opc_add_ok(c->pos, n, &end) ||
        end > c->n_floats)
        return opc_error(OPC_ERR_CORRUPT, "%s: llama2.c tensor %s (%llu x %llu x %llu floats) "
                         "runs past the end of the file", c->path, what, (unsigned long long)a,
                         (unsigned long long)b, (unsigned long long)cc);
    *out = (const float *)(const void *)(c->base + c->pos * 4u);
    c->pos = end;
    return OPC_OK;
}

static void set_tensor(opc_tensor *t, const char *name, const float *data, int64_t rows,
                       int64_t cols) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = OPC_TYPE_F32;
    t->data = data;
    t->qerr = -1.0f;
    if (cols == 0) {
        t->n_dims = 1;
        t->shape[0] = rows;
        t->nbytes = (uint64_t)rows * 4u;
    } else {
        t->n_dims = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->nbytes = (uint64_t)rows * (uint64_t)cols * 4u;
    }
}

/* Find the tokenizer: the explicit path, else tokenizer.bin, else tok<vocab>.bin
 * in the checkpoint's folder; the error names both candidates. */
static opc_status find_tokenizer(const char *ckpt, int32_t vocab, char *out, size_t cap) {
    char dir[1024];
    const char *slash = strrchr(ckpt, '/');
    if (slash) {
        size_t n = (size_t)(slash - ckpt);
        if (n >= sizeof dir) return opc_error(OPC_ERR_INVALID_ARG, "%s: path too long", ckpt);
        memcpy(dir, ckpt, n);
        dir[n] = '\0';
        if (n == 0) snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    char a[1100], b[1100];
    snprintf(a, sizeof a, "%s/tokenizer.bin", dir);
    snprintf(b, sizeof b, "%s/tok%d.bin", dir, vocab);
    const char *cand[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (opc_file_exists(cand[i])) {
            if (strlen(cand[i]) >= cap) return opc_error(OPC_ERR_INVALID_ARG, "%s: path too long", cand[i]);
            snprintf(out, cap, "%s", cand[i]);
            return OPC_OK;
        }
    }
    return opc_error(OPC_ERR_NOT_FOUND, "%s: no llama2.c tokenizer found (tried %s and %s)", ckpt, a, b);
}

opc_status opc_load_llama2c(const char *ckpt, const char *tokenizer_bin, opc_model_desc *d) {
    if (!ckpt || !d) return opc_error(OPC_ERR_INVALID_ARG, "opc_load_llama2c: NULL argument");
    if (d->n_maps >= OPC_MAX_MAPS) return opc_error(OPC_ERR_INTERNAL, "%s: too many file mappings", ckpt);
    opc_map *m = &d->maps[d->n_maps];
    opc_status st = opc_map_open(ckpt, m);
    if (st != OPC_OK) return st;
    d->n_maps++; /* owned by d from here on: freed with it on any failure */
    d->format = OPC_SRC_LLAMA2C;

    if (m->size < L2C_HEADER_BYTES)
        return opc_error(OPC_ERR_CORRUPT, "%s: %llu bytes is too short for a llama2.c header (28 bytes)",
                         ckpt, (unsigned long long)m->size);
    l2c_header h;
    h.dim = rd_i32_le(m->data + 0);
    h.hidden_dim = rd_i32_le(m->data + 4);
    h.n_layers = rd_i32_le(m->data + 8);
    h.n_heads = rd_i32_le(m->data + 12);
    h.n_kv_heads = rd_i32_le(m->data + 16);
    h.vocab_size = rd_i32_le(m->data + 20);
    h.seq_len = rd_i32_le(m->data + 24);
    if ((st = check_header(ckpt, &h)) != OPC_OK) return st;

    const int shared = h.vocab_size > 0;
    const uint64_t vocab = (uint64_t)(shared ? h.vocab_size : -h.vocab_size);
    const uint64_t dim = (uint64_t)h.dim, hid = (uint64_t)h.hidden_dim, nl = (uint64_t)h.n_layers;
    const uint64_t head_dim = dim / (uint64_t)h.n_heads;
    const uint64_t q_rows = (uint64_t)h.n_heads * head_dim;  /* == dim */
    const uint64_t kv_rows = (uint64_t)h.n_kv_heads * head_dim;

    /* The exact size the header implies, computed before any pointer is formed. */
    uint64_t per_layer = 0, total = 0, t;
    const uint64_t parts[] = {dim, q_rows * dim, kv_rows * dim, kv_rows * dim, dim * q_rows,
                              dim, hid * dim, dim * hid, hid * dim};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (!opc_add_ok(per_layer, parts[i], &per_layer)) goto overflow;
    if (!opc_mul_ok(per_layer, nl, &total)) goto overflow;
    if (!opc_mul_ok(vocab, dim, &t) || !opc_add_ok(total, t, &total)) goto overflow; /* embedding */
    if (!opc_add_ok(total, dim, &total)) goto overflow;                               /* rms_final */
    if (!opc_mul_ok((uint64_t)h.seq_len, head_dim, &t) || !opc_add_ok(total, t, &total)) /* freq_cis */
        goto overflow;
    if (!shared && (!opc_mul_ok(vocab, dim, &t) || !opc_add_ok(total, t, &total))) goto overflow;
    uint64_t want_bytes;
    if (!opc_mul_ok(total, 4, &want_bytes) || !opc_add_ok(want_bytes, L2C_HEADER_BYTES, &want_bytes))
        goto overflow;
    if (m->size != want_bytes)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: file is %llu bytes but its llama2.c header (dim %d, hidden %d, layers %d, "
                         "heads %d, kv heads %d, vocab %d, seq_len %d) implies %llu bytes%s",
                         ckpt, (unsigned long long)m->size, h.dim, h.hidden_dim, h.n_layers, h.n_heads,
                         h.n_kv_heads, h.vocab_size, h.seq_len, (unsigned long long)want_bytes,
                         m->size < want_bytes ? " (truncated?)" : "");

    /* Config */
    opc_config *c = &d->cfg;
    memset(c, 0, sizeof *c);
    c->arch = OPC_ARCH_LLAMA;
    c->dim = h.dim;
    c->hidden_dim = h.hidden_dim;
    c->n_layers = h.n_layers;
    c->n_heads = h.n_heads;
    c->n_kv_heads = h.n_kv_heads;
    c->head_dim = (int32_t)head_dim;
    c->vocab_size = (int32_t)vocab;
    c->max_seq_len = h.seq_len;
    c->rms_eps = 1e-5f;      /* llama2.c's RMSNorm constant */
    c->rope_theta = 10000.0f; /* llama2.c's fixed RoPE base */
    c->rope_scaling = OPC_ROPE_SCALING_NONE;
    c->tied_embeddings = shared;
    c->attn_bias = 0;
    {
        const char *base = strrchr(ckpt, '/');
        base = base ? base + 1 : ckpt;
        snprintf(d->name, sizeof d->name, "%s", base);
        char *dot = strrchr(d->name, '.');
        if (dot && dot != d->name) *dot = '\0';
    }

    /* Tensors: embedding + 9 per layer + output_norm (+ output). */
    int32_t n_t = 1 + 9 * h.n_layers + 1 + (shared ? 0 : 1);
    if ((st = opc_model_desc_alloc_tensors(d, n_t)) != OPC_OK) return st;
    l2c_cursor cur = {ckpt, m->data + L2C_HEADER_BYTES, (m->size - L2C_HEADER_BYTES) / 4u, 0};
    const float *p_emb, *p_att, *p_q, *p_k, *p_v, *p_o, *p_ffn, *p_w1, *p_w2, *p_w3, *p_fin, *p_fc, *p_cls = NULL;
    if ((st = take(&cur, "token_embedding", vocab, dim, 1, &p_emb)) ||
        (st = take(&cur, "rms_att_weight", nl, dim, 1, &p_att)) ||
        (st = take(&cur, "wq", nl, q_rows, dim, &p_q)) ||
        (st = take(&cur, "wk", nl, kv_rows, dim, &p_k)) ||
        (st = take(&cur, "wv", nl, kv_rows, dim, &p_v)) ||
        (st = take(&cur, "wo", nl, dim, q_rows, &p_o)) ||
        (st = take(&cur, "rms_ffn_weight", nl, dim, 1, &p_ffn)) ||
        (st = take(&cur, "w1", nl, hid, dim, &p_w1)) ||
        (st = take(&cur, "w2", nl, dim, hid, &p_w2)) ||
        (st = take(&cur, "w3", nl, hid, dim, &p_w3)) ||
        (st = take(&cur, "rms_final_weight", dim, 1, 1, &p_fin)) ||
        (st = take(&cur, "freq_cis", (uint64_t)h.seq_len, head_dim, 1, &p_fc)))
        return st;
    (void)p_fc; /* RoPE frequencies are recomputed from theta */
    if (!shared && (st = take(&cur, "wcls", vocab, dim, 1, &p_cls)) != OPC_OK) return st;

    opc_tensor *tt = d->tensors;
    int32_t k = 0;
    set_tensor(&tt[k++], "token_embd.weight", p_emb, (int64_t)vocab, (int64_t)dim);
    for (uint64_t l = 0; l < nl; l++) {
        char name[OPC_MAX_NAME];
#define NAME(s) (snprintf(name, sizeof name, "blk.%llu." s, (unsigned long long)l), name)
        set_tensor(&tt[k++], NAME("attn_norm.weight"), p_att + l * dim, (int64_t)dim, 0);
        opc_tensor *tq = &tt[k++];
        set_tensor(tq, NAME("attn_q.weight"), p_q + l * q_rows * dim, (int64_t)q_rows, (int64_t)dim);
        opc_tensor *tk = &tt[k++];
        set_tensor(tk, NAME("attn_k.weight"), p_k + l * kv_rows * dim, (int64_t)kv_rows, (int64_t)dim);
        set_tensor(&tt[k++], NAME("attn_v.weight"), p_v + l * kv_rows * dim, (int64_t)kv_rows, (int64_t)dim);
        set_tensor(&tt[k++], NAME("attn_output.weight"), p_o + l * dim * q_rows, (int64_t)dim, (int64_t)q_rows);
        set_tensor(&tt[k++], NAME("ffn_norm.weight"), p_ffn + l * dim, (int64_t)dim, 0);
        set_tensor(&tt[k++], NAME("ffn_gate.weight"), p_w1 + l * hid * dim, (int64_t)hid, (int64_t)dim);
        set_tensor(&tt[k++], NAME("ffn_down.weight"), p_w2 + l * dim * hid, (int64_t)dim, (int64_t)hid);
        set_tensor(&tt[k++], NAME("ffn_up.weight"), p_w3 + l * hid * dim, (int64_t)hid, (int64_t)dim);
#undef NAME
        /* llama2.c trains with interleaved (complex-pair) RoPE: rows 2i, 2i+1 of a
         * head rotate together. The forward pass expects rotate-half order. */
        if ((st = opc_tensor_unpermute_rope(tq, h.n_heads, (int32_t)head_dim)) != OPC_OK ||
            (st = opc_tensor_unpermute_rope(tk, h.n_kv_heads, (int32_t)head_dim)) != OPC_OK)
            return opc_error_wrap(st, "%s: ", ckpt);
    }
    set_tensor(&tt[k++], "output_norm.weight", p_fin, (int64_t)dim, 0);
    if (!shared) set_tensor(&tt[k++], "output.weight", p_cls, (int64_t)vocab, (int64_t)dim);
    OPC_ASSERT(k == n_t);

    /* Tokenizer */
    char tok_path[1100];
    if (tokenizer_bin) {
        snprintf(tok_path, sizeof tok_path, "%s", tokenizer_bin);
    } else if ((st = find_tokenizer(ckpt, (int32_t)vocab, tok_path, sizeof tok_path)) != OPC_OK) {
        return st;
    }
    return opc_vocab_from_llama2c(tok_path, (int32_t)vocab, &d->vocab);

overflow:
    return opc_error(OPC_ERR_CORRUPT, "%s: llama2.c header sizes overflow 64-bit arithmetic", ckpt);
}
