/*
 * gguf_model.c — GGUF file -> opc_model_desc (config, vocabulary, tensors).
 *
 * Tensor views point into the GGUF mapping, so the opc_gguf handle is kept
 * in d->format_state and closed by opc_model_desc_free. GGUF names are
 * already our canonical names; only the dimension order changes (GGUF lists
 * ne innermost first, we list shape outermost first).
 *
 * llama.cpp's converter permutes the rows of llama-arch attn_q / attn_k into
 * interleaved-pair RoPE order; those two tensors are permuted back (into an
 * owned copy) so every model reaches the forward pass in HF rotate-half
 * order. qwen2 GGUFs are not permuted by the converter and are left alone.
 */
#include "loaders.h"

#include "gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gguf_state_free(void *p) { opc_gguf_close(p); }

/* ------------------------------------------------------------ config ---- */

/* <arch>.<suffix> as an int in [lo, hi]; def used when absent and
 * !required. Per-layer arrays (some archs store head counts per layer) are
 * reported as unsupported rather than as a type error. */
static opc_status arch_int(const opc_gguf *g, const char *arch, const char *suffix, int required,
                           int64_t def, int64_t lo, int64_t hi, int32_t *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (opc_gguf_find_key(g, key) < 0) {
        if (required)
            return opc_error(OPC_ERR_NOT_FOUND, "%s: %s: required key is missing", opc_gguf_path(g), key);
        *out = (int32_t)def;
        return OPC_OK;
    }
    if (opc_gguf_key_type(g, key) == OPC_GGUF_ARRAY)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: per-layer values are not supported",
                         opc_gguf_path(g), key);
    int64_t v;
    opc_status st = opc_gguf_get_int(g, key, &v);
    if (st) return st;
    if (v < lo || v > hi)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: value %lld out of range [%lld, %lld]",
                         opc_gguf_path(g), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return OPC_OK;
}

static opc_status arch_float(const opc_gguf *g, const char *arch, const char *suffix, int required,
                             double def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (opc_gguf_find_key(g, key) < 0) {
        if (required)
            return opc_error(OPC_ERR_NOT_FOUND, "%s: %s: required key is missing", opc_gguf_path(g), key);
        *out = (float)def;
        return OPC_OK;
    }
    double v;
    opc_status st = opc_gguf_get_float(g, key, &v);
    if (st) return st;
    if (!isfinite(v))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: value is not finite", opc_gguf_path(g), key);
    *out = (float)v;
    return OPC_OK;
}

/* Llama 3.x GGUFs carry their rope scaling as a precomputed per-frequency
 * divisor tensor (rope_freqs.weight, head_dim/2 f32) instead of metadata.
 * We accept it when it equals the llama3 rule with the published parameters
 * (low_freq_factor 1, high_freq_factor 4, original context 8192 unless the
 * file says otherwise); anything else is unsupported rather than silently
 * ignored. The rule per frequency i with wavelength wl = 2 pi theta^(2i/hd):
 *   wl < orig/high: 1;  wl > orig/low: factor;
 *   between: 1 / ((1 - s)/factor + s), s = (orig/wl - low) / (high - low).
 * The factor is solved from the lowest frequency, then every entry checked. */
static double llama3_wavelength(const opc_config *c, int32_t i) {
    double freq = pow((double)c->rope_theta, -2.0 * i / (double)c->head_dim);
    return 2.0 * 3.14159265358979323846 / freq;
}

static opc_status rope_freqs_llama3(const opc_gguf *g, opc_config *c) {
    int64_t ti = opc_gguf_find_tensor(g, "rope_freqs.weight");
    if (ti < 0) return OPC_OK;
    opc_gguf_tensor_info t;
    opc_status st = opc_gguf_tensor_at(g, ti, &t);
    if (st) return st;
    const int32_t n = c->head_dim / 2;
    if (t.type != OPC_TYPE_F32 || t.n_dims != 1 || t.ne[0] != (uint64_t)n)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: rope_freqs.weight: expected %d f32 values", opc_gguf_path(g), n);
    const uint8_t *p = t.data;
    const double lo = 1.0, hi = 4.0;
    const double orig = c->rope_orig_max_pos > 0 ? (double)c->rope_orig_max_pos : 8192.0;
    const double low_wl = orig / lo, high_wl = orig / hi;
    float last;
    memcpy(&last, p + 4 * (size_t)(n - 1), 4);
    double factor = 1.0, wl = llama3_wavelength(c, n - 1);
    if (wl > low_wl) {
        factor = last;
    } else if (wl >= high_wl) {
        double sm = (orig / wl - lo) / (hi - lo), den = 1.0 / (double)last - sm;
        factor = den > 1e-6 ? (1.0 - sm) / den : -1.0;
    }
    if (!(factor >= 1.0) || !isfinite(factor) || factor > 1e6)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: rope_freqs.weight: divisors do not follow llama3 rope scaling",
                         opc_gguf_path(g));
    for (int32_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, p + 4 * (size_t)i, 4);
        double want;
        wl = llama3_wavelength(c, i);
        if (wl < high_wl) want = 1.0;
        else if (wl > low_wl) want = factor;
        else {
            double sm = (orig / wl - lo) / (hi - lo);
            want = 1.0 / ((1.0 - sm) / factor + sm);
        }
        if (!(fabs((double)f - want) <= 1e-3 * want))
            return opc_error(OPC_ERR_UNSUPPORTED,
                             "%s: rope_freqs.weight[%d] = %g does not match llama3 rope scaling "
                             "(factor %g, low 1, high 4, original context %g: expected %g)",
                             opc_gguf_path(g), i, (double)f, factor, orig, want);
    }
    if (factor != 1.0) {
        c->rope_scaling = OPC_ROPE_SCALING_LLAMA3;
        c->rope_factor = (float)factor;
        c->rope_low_freq_factor = (float)lo;
        c->rope_high_freq_factor = (float)hi;
        c->rope_orig_max_pos = (int32_t)orig;
    }
    return OPC_OK;
}

static opc_status load_config(const opc_gguf *g, const char *arch, opc_config *c) {
    opc_status st;
    const int64_t BIG = 1 << 24;
    if ((st = arch_int(g, arch, "embedding_length", 1, 0, 1, BIG, &c->dim)) ||
        (st = arch_int(g, arch, "feed_forward_length", 1, 0, 1, BIG, &c->hidden_dim)) ||
        (st = arch_int(g, arch, "block_count", 1, 0, 1, 65536, &c->n_layers)) ||
        (st = arch_int(g, arch, "attention.head_count", 1, 0, 1, 65536, &c->n_heads)) ||
        (st = arch_int(g, arch, "attention.head_count_kv", 0, c->n_heads, 1, 65536, &c->n_kv_heads)) ||
        (st = arch_int(g, arch, "attention.key_length", 0, c->dim / c->n_heads, 1, 65536, &c->head_dim)) ||
        (st = arch_int(g, arch, "context_length", 1, 0, 1, INT32_MAX, &c->max_seq_len)) ||
        (st = arch_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, &c->rms_eps)) ||
        (st = arch_float(g, arch, "rope.freq_base", 0, 10000.0, &c->rope_theta)))
        return st;
    int32_t vlen;
    if ((st = arch_int(g, arch, "attention.value_length", 0, c->head_dim, 1, 65536, &vlen))) return st;
    if (vlen != c->head_dim)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s.attention.value_length %d differs from key_length %d",
                         opc_gguf_path(g), arch, vlen, c->head_dim);
    int32_t rope_dim;
    if ((st = arch_int(g, arch, "rope.dimension_count", 0, c->head_dim, 1, 65536, &rope_dim))) return st;
    if (rope_dim != c->head_dim)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s.rope.dimension_count %d: partial rotary embeddings "
                         "(head_dim %d) are not supported", opc_gguf_path(g), arch, rope_dim, c->head_dim);

    /* rope scaling */
    char key[128];
    c->rope_scaling = OPC_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    if ((st = arch_int(g, arch, "rope.scaling.original_context_length", 0, 0, 0, INT32_MAX,
                       &c->rope_orig_max_pos)))
        return st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (opc_gguf_find_key(g, key) >= 0) {
        const char *s;
        uint64_t n;
        if ((st = opc_gguf_get_str(g, key, &s, &n))) return st;
        if (n == 6 && !memcmp(s, "linear", 6)) {
            c->rope_scaling = OPC_ROPE_SCALING_LINEAR;
            if ((st = arch_float(g, arch, "rope.scaling.factor", 1, 0, &c->rope_factor))) return st;
            if (!(c->rope_factor > 0.0f))
                return opc_error(OPC_ERR_CORRUPT, "%s: %s.rope.scaling.factor %g must be positive",
                                 opc_gguf_path(g), arch, (double)c->rope_factor);
        } else if (n == 6 && !memcmp(s, "llama3", 6)) {
            c->rope_scaling = OPC_ROPE_SCALING_LLAMA3;
            if ((st = arch_float(g, arch, "rope.scaling.factor", 1, 0, &c->rope_factor))) return st;
            c->rope_low_freq_factor = 1.0f;
            c->rope_high_freq_factor = 4.0f;
        } else if (!(n == 4 && !memcmp(s, "none", 4))) {
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: rope scaling type \"%.*s\" is not supported",
                             opc_gguf_path(g), key, (int)(n > 40 ? 40 : n), s);
        }
    }
    if (c->rope_scaling == OPC_ROPE_SCALING_NONE && (st = rope_freqs_llama3(g, c))) return st;
    return OPC_OK;
}

/* ------------------------------------------------------------ vocab ----- */

static opc_status dup_bytes(const char *s, uint64_t n, char **out, const char *path, const char *key) {
    *out = malloc((size_t)n + 1);
    if (!*out) return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot allocate %llu bytes", path, key,
                                (unsigned long long)n);
    if (n) memcpy(*out, s, (size_t)n);
    (*out)[n] = '\0';
    return OPC_OK;
}

static opc_status opt_id(const opc_gguf *g, const char *key, int32_t n_tokens, int32_t *out) {
    if (opc_gguf_find_key(g, key) < 0) return OPC_OK;
    int64_t v;
    opc_status st = opc_gguf_get_int(g, key, &v);
    if (st) return st;
    if (v < 0 || v >= n_tokens)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: token id %lld out of range (%d tokens)",
                         opc_gguf_path(g), key, (long long)v, n_tokens);
    *out = (int32_t)v;
    return OPC_OK;
}

static opc_status opt_bool(const opc_gguf *g, const char *key, int32_t *out) {
    if (opc_gguf_find_key(g, key) < 0) return OPC_OK;
    int b;
    opc_status st = opc_gguf_get_bool(g, key, &b);
    if (st) return st;
    *out = b;
    return OPC_OK;
}

static opc_status load_vocab(const opc_gguf *g, opc_vocab *v) {
    const char *path = opc_gguf_path(g);
    const char *s;
    uint64_t n;
    opc_status st;
    if (opc_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
        opc_log(OPC_LOG_INFO, "%s: no tokenizer.ggml.model: the model has no tokenizer", path);
        return OPC_OK;
    }
    if ((st = opc_gguf_get_str(g, "tokenizer.ggml.model", &s, &n))) return st;
    if (n == 4 && !memcmp(s, "gpt2", 4)) v->kind = OPC_VOCAB_BPE_BYTELEVEL;
    else if (n == 5 && !memcmp(s, "llama", 5)) v->kind = OPC_VOCAB_SPM;
    else
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: tokenizer.ggml.model: tokenizer \"%.*s\" is not supported (gpt2 and llama are)",
                         path, (int)(n > 40 ? 40 : n), s);

    snprintf(v->pre, sizeof v->pre, "default");
    if (opc_gguf_find_key(g, "tokenizer.ggml.pre") >= 0) {
        if ((st = opc_gguf_get_str(g, "tokenizer.ggml.pre", &s, &n))) return st;
        if (n >= sizeof v->pre)
            return opc_error(OPC_ERR_CORRUPT, "%s: tokenizer.ggml.pre: name of %llu bytes is too long",
                             path, (unsigned long long)n);
        memcpy(v->pre, s, (size_t)n);
        v->pre[n] = '\0';
    }

    /* tokens */
    const char *K_TOK = "tokenizer.ggml.tokens";
    opc_gguf_vtype et;
    uint64_t nt;
    if ((st = opc_gguf_get_arr_info(g, K_TOK, &et, &nt))) return st;
    if (et != OPC_GGUF_STRING)
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: expected an array of strings", path, K_TOK);
    if (nt == 0 || nt > (1u << 24))
        return opc_error(OPC_ERR_CORRUPT, "%s: %s: %llu tokens is not a plausible vocabulary size",
                         path, K_TOK, (unsigned long long)nt);
    v->tokens = calloc((size_t)nt, sizeof *v->tokens);
    v->token_len = calloc((size_t)nt, sizeof *v->token_len);
    if (!v->tokens || !v->token_len)
        return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot allocate %llu tokens", path, K_TOK,
                         (unsigned long long)nt);
    v->n_tokens = (int32_t)nt;
    for (uint64_t i = 0; i < nt; i++) {
        if ((st = opc_gguf_get_arr_str(g, K_TOK, i, &s, &n))) return st;
        if (n > UINT32_MAX) return opc_error(OPC_ERR_CORRUPT, "%s: %s[%llu]: too long", path, K_TOK,
                                             (unsigned long long)i);
        if ((st = dup_bytes(s, n, &v->tokens[i], path, K_TOK))) return st;
        v->token_len[i] = (uint32_t)n;
    }

    /* scores and token types: optional, but when present one per token */
    const char *K_SC = "tokenizer.ggml.scores", *K_TT = "tokenizer.ggml.token_type";
    if (opc_gguf_find_key(g, K_SC) >= 0) {
        v->scores = malloc((size_t)nt * sizeof *v->scores);
        if (!v->scores) return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot allocate", path, K_SC);
        if ((st = opc_gguf_get_arr_f32(g, K_SC, v->scores, nt))) return st;
    }
    if (opc_gguf_find_key(g, K_TT) >= 0) {
        v->types = malloc((size_t)nt * sizeof *v->types);
        if (!v->types) return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot allocate", path, K_TT);
        if ((st = opc_gguf_get_arr_i32(g, K_TT, v->types, nt))) return st;
    }

    /* merges (byte-level BPE only; required there) */
    if (v->kind == OPC_VOCAB_BPE_BYTELEVEL) {
        const char *K_M = "tokenizer.ggml.merges";
        uint64_t nm;
        if ((st = opc_gguf_get_arr_info(g, K_M, &et, &nm))) return st;
        if (et != OPC_GGUF_STRING)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: expected an array of strings", path, K_M);
        if (nm > INT32_MAX)
            return opc_error(OPC_ERR_CORRUPT, "%s: %s: %llu merges is too many", path, K_M,
                             (unsigned long long)nm);
        v->merges = calloc((size_t)(nm ? nm : 1), sizeof *v->merges);
        if (!v->merges) return opc_error(OPC_ERR_NOMEM, "%s: %s: cannot allocate", path, K_M);
        v->n_merges = (int32_t)nm;
        for (uint64_t i = 0; i < nm; i++) {
            if ((st = opc_gguf_get_arr_str(g, K_M, i, &s, &n))) return st;
            if ((st = dup_bytes(s, n, &v->merges[i], path, K_M))) return st;
        }
    }

    v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
    if ((st = opt_id(g, "tokenizer.ggml.bos_token_id", v->n_tokens, &v->bos_id)) ||
        (st = opt_id(g, "tokenizer.ggml.eos_token_id", v->n_tokens, &v->eos_id)) ||
        (st = opt_id(g, "tokenizer.ggml.unknown_token_id", v->n_tokens, &v->unk_id)) ||
        (st = opt_id(g, "tokenizer.ggml.padding_token_id", v->n_tokens, &v->pad_id)))
        return st;
    /* defaults as in llama.cpp: SentencePiece models add BOS and a dummy-prefix
     * space, byte-level BPE models do neither unless the file says so */
    v->add_bos = v->kind == OPC_VOCAB_SPM;
    v->add_eos = 0;
    v->add_space_prefix = v->kind == OPC_VOCAB_SPM;
    if ((st = opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix)))
        return st;
    if (opc_gguf_find_key(g, "tokenizer.chat_template") >= 0) {
        if ((st = opc_gguf_get_str(g, "tokenizer.chat_template", &s, &n))) return st;
        if ((st = dup_bytes(s, n, &v->chat_template, path, "tokenizer.chat_template"))) return st;
    }
    return OPC_OK;
}

/* ------------------------------------------------------------ tensors --- */

static opc_status load_tensors(const opc_gguf *g, opc_model_desc *d) {
    const char *path = opc_gguf_path(g);
    int64_t nt = opc_gguf_n_tensors(g);
    if (nt > INT32_MAX) return opc_error(OPC_ERR_CORRUPT, "%s: n_tensors: too many tensors", path);
    opc_status st = opc_model_desc_alloc_tensors(d, (int32_t)nt);
    if (st) return st;
    for (int64_t i = 0; i < nt; i++) {
        opc_gguf_tensor_info ti;
        if ((st = opc_gguf_tensor_at(g, i, &ti))) return st;
        opc_tensor *t = &d->tensors[i];
        if (ti.name_len >= OPC_MAX_NAME)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor '%.*s...': name longer than %d bytes",
                             path, 40, ti.name, OPC_MAX_NAME - 1);
        memcpy(t->name, ti.name, (size_t)ti.name_len);
        t->name[ti.name_len] = '\0';
        if (memchr(ti.name, '\0', (size_t)ti.name_len))
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %lld: name contains a NUL byte", path, (long long)i);
        if (ti.type == OPC_TYPE_COUNT)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: ggml type %s (%u) is not supported",
                             path, t->name, opc_ggml_type_name(ti.ggml_type), ti.ggml_type);
        t->type = ti.type;
        t->n_dims = (int32_t)ti.n_dims;
        for (uint32_t k = 0; k < ti.n_dims; k++) t->shape[k] = (int64_t)ti.ne[ti.n_dims - 1 - k];
        t->data = ti.data;
        t->nbytes = ti.nbytes;
        t->qerr = -1.0f;
    }
    return OPC_OK;
}

/* Every tensor the forward pass reads, with the shape the config implies. */
static opc_status check_tensors(opc_model_desc *d) {
    const opc_config *c = &d->cfg;
    const int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    const opc_tensor *t;
    opc_status st;
    if ((st = opc_model_desc_require(d, "token_embd.weight", c->vocab_size, c->dim, &t)) ||
        (st = opc_model_desc_require(d, "output_norm.weight", c->dim, 0, &t)))
        return st;
    if (!c->tied_embeddings && (st = opc_model_desc_require(d, "output.weight", c->vocab_size, c->dim, &t)))
        return st;
    for (int32_t l = 0; l < c->n_layers; l++) {
        static const struct { const char *suffix; int rows, cols; } req[] = {
            /* rows/cols code: 0 dim, 1 q, 2 kv, 3 hidden, -1 none (1-D) */
            {"attn_norm.weight", 0, -1}, {"attn_q.weight", 1, 0}, {"attn_k.weight", 2, 0},
            {"attn_v.weight", 2, 0}, {"attn_output.weight", 0, 1}, {"ffn_norm.weight", 0, -1},
            {"ffn_gate.weight", 3, 0}, {"ffn_up.weight", 3, 0}, {"ffn_down.weight", 0, 3},
            {"attn_q.bias", 1, -2}, {"attn_k.bias", 2, -2}, {"attn_v.bias", 2, -2},
        };
        for (size_t k = 0; k < sizeof req / sizeof req[0]; k++) {
            if (req[k].cols == -2 && !c->attn_bias) continue;
            const int64_t dims[4] = {c->dim, q, kv, c->hidden_dim};
            char name[OPC_MAX_NAME];
            snprintf(name, sizeof name, "blk.%d.%s", l, req[k].suffix);
            int64_t rows = dims[req[k].rows], cols = req[k].cols < 0 ? 0 : dims[req[k].cols];
            if ((st = opc_model_desc_require(d, name, rows, cols, &t))) return st;
        }
    }
    return OPC_OK;
}

/* ------------------------------------------------------------ entry ----- */

opc_status opc_load_gguf(const char *path, opc_model_desc *d) {
    opc_gguf *g;
    opc_status st = opc_gguf_open(path, &g);
    if (st) return st;
    d->format = OPC_SRC_GGUF;
    d->format_state = g;
    d->format_free = gguf_state_free;

    const char *s;
    uint64_t n;
    if (opc_gguf_find_key(g, "general.name") >= 0) {
        if ((st = opc_gguf_get_str(g, "general.name", &s, &n))) return st;
        snprintf(d->name, sizeof d->name, "%.*s", (int)(n < sizeof d->name ? n : sizeof d->name - 1), s);
    }
    if ((st = opc_gguf_get_str(g, "general.architecture", &s, &n))) return st;
    char arch[32];
    if (n == 5 && !memcmp(s, "llama", 5)) d->cfg.arch = OPC_ARCH_LLAMA;
    else if (n == 7 && !memcmp(s, "mistral", 7)) d->cfg.arch = OPC_ARCH_MISTRAL;
    else if (n == 5 && !memcmp(s, "qwen2", 5)) d->cfg.arch = OPC_ARCH_QWEN2;
    else
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: general.architecture: \"%.*s\" is not supported (llama, mistral, qwen2 are)",
                         path, (int)(n > 40 ? 40 : n), s);
    snprintf(arch, sizeof arch, "%.*s", (int)n, s);

    if ((st = load_config(g, arch, &d->cfg))) return st;
    if ((st = load_vocab(g, &d->vocab))) return st;
    if ((st = load_tensors(g, d))) return st;

    /* vocab size: explicit key, else the token list */
    char key[64];
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    if (opc_gguf_find_key(g, key) >= 0) {
        if ((st = arch_int(g, arch, "vocab_size", 1, 0, 1, 1 << 24, &d->cfg.vocab_size))) return st;
    } else if (d->vocab.n_tokens > 0) {
        d->cfg.vocab_size = d->vocab.n_tokens;
    } else {
        const opc_tensor *e = opc_model_desc_find(d, "token_embd.weight");
        if (e && e->n_dims == 2 && e->shape[0] <= (1 << 24)) d->cfg.vocab_size = (int32_t)e->shape[0];
    }
    if (d->vocab.n_tokens > d->cfg.vocab_size)
        return opc_error(OPC_ERR_CORRUPT, "%s: tokenizer.ggml.tokens: %d tokens but %s is %d", path,
                         d->vocab.n_tokens, key, d->cfg.vocab_size);
    d->cfg.tied_embeddings = opc_model_desc_find(d, "output.weight") == NULL;
    d->cfg.attn_bias = opc_model_desc_find(d, "blk.0.attn_q.bias") != NULL;

    if ((st = opc_config_validate(&d->cfg, path))) return st;
    if ((st = check_tensors(d))) return st;

    if (d->cfg.arch == OPC_ARCH_LLAMA || d->cfg.arch == OPC_ARCH_MISTRAL) {
        for (int32_t l = 0; l < d->cfg.n_layers; l++) {
            char name[OPC_MAX_NAME];
            snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
            opc_tensor *q = (opc_tensor *)opc_model_desc_find(d, name);
            snprintf(name, sizeof name, "blk.%d.attn_k.weight", l);
            opc_tensor *k = (opc_tensor *)opc_model_desc_find(d, name);
            if ((st = opc_tensor_unpermute_rope(q, d->cfg.n_heads, d->cfg.head_dim)) ||
                (st = opc_tensor_unpermute_rope(k, d->cfg.n_kv_heads, d->cfg.head_dim)))
                return opc_error_wrap(st, "%s: ", path);
        }
    }
    return OPC_OK;
}
