/*
 * model.c — the model description: allocation, lookup, validation, and the
 * RoPE row un-permutation shared by the GGUF and llama2.c loaders.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *opc_arch_name(opc_arch a) {
    switch (a) {
    case OPC_ARCH_LLAMA: return "llama";
    case OPC_ARCH_MISTRAL: return "mistral";
    case OPC_ARCH_QWEN2: return "qwen2";
    }
    return "unknown";
}

opc_status opc_config_validate(const opc_config *c, const char *what) {
#define POS(f)                                                                           \
    if (c->f <= 0) return opc_error(OPC_ERR_CORRUPT, "%s: config field " #f " = %d must be positive", what, (int)c->f)
    POS(dim);
    POS(hidden_dim);
    POS(n_layers);
    POS(n_heads);
    POS(n_kv_heads);
    POS(head_dim);
    POS(vocab_size);
#undef POS
    if (c->n_heads % c->n_kv_heads != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: n_heads %d is not a multiple of n_kv_heads %d",
                         what, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: head_dim %d must be even for RoPE", what,
                         c->head_dim);
    if (c->dim > (1 << 20) || c->hidden_dim > (1 << 22) || c->n_layers > 4096 ||
        c->n_heads > 4096 || c->vocab_size > (1 << 24) || c->head_dim > 4096)
        return opc_error(OPC_ERR_CORRUPT, "%s: implausibly large config (dim %d, hidden %d, "
                         "layers %d, heads %d, vocab %d)", what, c->dim, c->hidden_dim,
                         c->n_layers, c->n_heads, c->vocab_size);
    if (!(c->rms_eps > 0.0f && c->rms_eps < 1.0f))
        return opc_error(OPC_ERR_CORRUPT, "%s: rms_eps %g out of range", what, (double)c->rms_eps);
    if (!(c->rope_theta > 0.0f))
        return opc_error(OPC_ERR_CORRUPT, "%s: rope_theta %g must be positive", what,
                         (double)c->rope_theta);
    return OPC_OK;
}

void opc_vocab_free(opc_vocab *v) {
    if (!v) return;
    if (v->tokens)
        for (int32_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    free(v->tokens);
    free(v->token_len);
    free(v->scores);
    free(v->types);
    if (v->merges)
        for (int32_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->merges);
    free(v->chat_template);
    memset(v, 0, sizeof *v);
    v->bos_id = v->eos_id = v->unk_id = v->pad_id = -1;
}

opc_status opc_model_desc_alloc_tensors(opc_model_desc *d, int32_t n) {
    if (n < 0) return opc_error(OPC_ERR_INVALID_ARG, "negative tensor count");
    d->tensors = calloc((size_t)(n ? n : 1), sizeof *d->tensors);
    if (!d->tensors) return opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %d tensor entries", d->path, n);
    d->n_tensors = n;
    return OPC_OK;
}

void opc_model_desc_free(opc_model_desc *d) {
    if (!d) return;
    for (int32_t i = 0; i < d->n_tensors; i++) opc_aligned_free(d->tensors[i].owned);
    free(d->tensors);
    opc_vocab_free(&d->vocab);
    for (int32_t i = 0; i < d->n_maps; i++) opc_map_close(&d->maps[i]);
    if (d->format_free) d->format_free(d->format_state);
    free(d);
}

const opc_tensor *opc_model_desc_find(const opc_model_desc *d, const char *name) {
    for (int32_t i = 0; i < d->n_tensors; i++)
        if (strcmp(d->tensors[i].name, name) == 0) return &d->tensors[i];
    return NULL;
}

opc_status opc_model_desc_require(const opc_model_desc *d, const char *name, int64_t rows,
                                  int64_t cols, const opc_tensor **out) {
    const opc_tensor *t = opc_model_desc_find(d, name);
    *out = NULL;
    if (!t) return opc_error(OPC_ERR_NOT_FOUND, "%s: missing tensor %s", d->path, name);
    int ok = cols == 0 ? (t->n_dims == 1 && t->shape[0] == rows)
                       : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok) {
        char got[96] = "";
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof got; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (cols == 0)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s has shape (%s), expected (%lld)",
                             d->path, name, got, (long long)rows);
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s has shape (%s), expected (%lld, %lld)",
                         d->path, name, got, (long long)rows, (long long)cols);
    }
    *out = t;
    return OPC_OK;
}

opc_status opc_tensor_unpermute_rope(opc_tensor *t, int32_t n_heads, int32_t head_dim) {
    if (t->n_dims < 1 || n_heads <= 0 || head_dim <= 0 || head_dim % 2 ||
        t->shape[0] != (int64_t)n_heads * head_dim)
        return opc_error(OPC_ERR_CORRUPT, "tensor %s: %lld rows cannot be %d heads of %d for RoPE un-permutation",
                         t->name, (long long)t->shape[0], n_heads, head_dim);
    uint64_t rows = (uint64_t)t->shape[0];
    if (t->nbytes % rows)
        return opc_error(OPC_ERR_CORRUPT, "tensor %s: %llu bytes is not a whole number of %llu rows",
                         t->name, (unsigned long long)t->nbytes, (unsigned long long)rows);
    uint64_t rb = t->nbytes / rows;
    uint8_t *dst = opc_aligned_alloc(t->nbytes);
    if (!dst) return opc_error(OPC_ERR_NOMEM, "tensor %s: cannot allocate %llu bytes", t->name,
                               (unsigned long long)t->nbytes);
    const uint8_t *src = t->data;
    int32_t half = head_dim / 2;
    /* Interleaved source row h*hd + 2i + j holds rotate-half row h*hd + j*hd/2 + i. */
    for (int32_t h = 0; h < n_heads; h++)
        for (int32_t i = 0; i < half; i++)
            for (int32_t j = 0; j < 2; j++) {
                uint64_t s = (uint64_t)h * head_dim + 2 * (uint64_t)i + (uint64_t)j;
                uint64_t o = (uint64_t)h * head_dim + (uint64_t)j * half + (uint64_t)i;
                memcpy(dst + o * rb, src + s * rb, rb);
            }
    opc_aligned_free(t->owned);
    t->owned = dst;
    t->data = dst;
    return OPC_OK;
}
