/*
 * engine_model.c — the server's engine over a real model: tokenizer + chat
 * template on the connection threads, forward pass + sampler + streaming
 * detokenizer per slot on the worker thread.
 *
 * A slot keeps the last sampled token "pending" instead of feeding it to the
 * model at once: the forward pass for a token runs at the start of the next
 * step, so the last token of a request (max_tokens, EOS, stop string) never
 * costs a forward pass whose logits nobody reads.
 *
 * Slots do not share a forward handle: a handle (CPU opc_forward or CUDA
 * opc_cuda_forward) holds one sequence's KV cache and its own copy of the
 * weights it converts at init, so memory grows with --parallel. Decode steps
 * of different slots run one after another (neither forward pass has a
 * multi-sequence batch); each one uses the whole CPU / GPU.
 */
#include "engine.h"

#include "../model/forward.h"
#include "../model/sampler.h"
#include "../tokenizer/tokenizer.h"
#ifdef OPC_HAVE_CUDA
#include "../cuda/forward_cuda.h"
#endif

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokens of a prompt read per step: large enough for matrix-matrix
 * efficiency, small enough that other slots' streams keep flowing while a
 * long prompt is read. */
#define PREFILL_CHUNK 64
#define DEFAULT_CTX_CAP 2048

typedef struct slot {
    opc_forward *fwd;      /* CPU handle, or NULL */
    void *gpu;             /* opc_cuda_forward handle (OPC_ENGINE_CUDA), or NULL */
    opc_sampler smp; /* re-initialised per request (seed, temperature) */
    int smp_ready;
    opc_detok dt;
    float *logits;   /* (vocab) logits for the next sample */
    int32_t *seq;    /* (n_ctx) the slot's token sequence: seq[0..pos) are in the KV
                      * cache, seq[pos..n_prompt) is prompt still to be read */
    int32_t n_prompt;
    int32_t pos;     /* tokens in the KV cache; kept after end() so the next request
                      * that starts with the same tokens (a chat's history) reuses them */
    int32_t pending; /* sampled token not yet fed to the model, or -1 */
    char *text;      /* (text_cap) bytes of the last step's token */
    size_t text_cap; /* opc_tokenizer_max_token_bytes() + 8, as opc_detok_push asks */
} slot;

typedef struct model_engine {
    opc_engine e; /* first: the public part */
    opc_model_desc *desc;
    opc_tokenizer *tok;
    pthread_mutex_t tok_mu; /* encode is called from many connection threads */
    opc_chat_family fam;
    opc_status chat_st; /* why chat is unavailable, or OK */
    char chat_err[256];
    int32_t eog[2]; /* EOS and the chat family's end-of-turn token; -1 when absent */
    slot *slots;    /* (n_slots) */
} model_engine;

/* One forward call on whichever backend the slot runs. */
static opc_status slot_run(slot *sl, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                           opc_logits_mode mode) {
#ifdef OPC_HAVE_CUDA
    if (sl->gpu) return opc_cuda_forward_run(sl->gpu, tokens, n, pos, logits, mode);
#endif
    return opc_forward_run(sl->fwd, tokens, n, pos, logits, mode);
}

static opc_status me_encode(opc_engine *e, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n) {
    model_engine *m = (model_engine *)e;
    opc_encode_opts eo = {-1, 0}; /* vocab's BOS rule; user text never forms special tokens */
    pthread_mutex_lock(&m->tok_mu);
    opc_status st = opc_tokenizer_encode(m->tok, text, len, &eo, ids, cap, n);
    pthread_mutex_unlock(&m->tok_mu);
    return st;
}

static opc_status me_chat_encode(opc_engine *e, const opc_chat_msg *msgs, size_t n_msgs,
                                 int32_t *ids, size_t cap, size_t *n) {
    model_engine *m = (model_engine *)e;
    *n = 0;
    if (m->chat_st != OPC_OK) return opc_error(m->chat_st, "%s", m->chat_err);
    if (n_msgs > 1u << 20) return opc_error(OPC_ERR_INVALID_ARG, "too many chat messages");
    char *text = NULL;
    opc_status st = opc_chat_render(m->fam, m->desc->vocab.chat_template, msgs, (int)n_msgs, 1,
                                    &text);
    if (st != OPC_OK) return st;
    /* the rendered text carries the template's special tokens (and BOS where
     * the family wants it): parse them, add nothing */
    opc_encode_opts eo = {0, 1};
    pthread_mutex_lock(&m->tok_mu);
    st = opc_tokenizer_encode(m->tok, text, strlen(text), &eo, ids, cap, n);
    pthread_mutex_unlock(&m->tok_mu);
    free(text);
    return st;
}

/* Tokens at the start of ids[0..n) whose KV entries the slot already holds. */
static size_t me_prefix_len(const slot *sl, const int32_t *ids, size_t n) {
    size_t k = 0;
    while (k < n && k < (size_t)sl->pos && sl->seq[k] == ids[k]) k++;
    return k;
}

static int32_t me_prefix(opc_engine *e, int32_t si, const int32_t *ids, size_t n) {
    model_engine *m = (model_engine *)e;
    return (int32_t)me_prefix_len(&m->slots[si], ids, n);
}

static opc_status me_begin(opc_engine *e, int32_t si, const int32_t *ids, size_t n,
                           const opc_srv_sampling *s) {
    model_engine *m = (model_engine *)e;
    slot *sl = &m->slots[si];
    if (n == 0 || n >= (size_t)e->n_ctx)
        return opc_error(OPC_ERR_INVALID_ARG, "serve: prompt of %zu tokens for a context of %d", n,
                         (int)e->n_ctx);
    if (sl->smp_ready) opc_sampler_free(&sl->smp);
    sl->smp_ready = 0;
    opc_sampler_params sp = opc_sampler_defaults();
    sp.temp = s->temperature;
    sp.top_k = 0; /* OpenAI's API has no top-k */
    sp.top_p = s->top_p;
    sp.seed = s->seed;
    opc_status st = opc_sampler_init(&sl->smp, e->n_vocab, &sp);
    if (st != OPC_OK) return st;
    sl->smp_ready = 1;
    opc_detok_init(&sl->dt, m->tok);
    /* The completion continues the prompt's text: a leading "▁" of the first
     * generated piece is a real space here, not SentencePiece's dummy prefix
     * (which the prompt's own first piece carried). */
    sl->dt.at_start = 0;
    sl->pending = -1;
    /* keep the cached prefix this prompt shares with the slot's last sequence;
     * at least one token is read again, for the logits */
    int32_t keep = (int32_t)me_prefix_len(sl, ids, n);
    if (keep > (int32_t)n - 1) keep = (int32_t)n - 1;
    memcpy(sl->seq + keep, ids + keep, (n - (size_t)keep) * sizeof *ids);
    sl->pos = keep; /* the forward pass overwrites positions >= pos */
    sl->n_prompt = (int32_t)n;
    return OPC_OK;
}

static opc_status me_step(opc_engine *e, const int32_t *slots, int32_t n, opc_engine_out *out) {
    model_engine *m = (model_engine *)e;
    for (int32_t k = 0; k < n; k++) {
        slot *sl = &m->slots[slots[k]];
        if (sl->pos < sl->n_prompt) {
            /* prefill, a chunk per step; logits only after the last chunk */
            int32_t c = sl->n_prompt - sl->pos;
            if (c > PREFILL_CHUNK) c = PREFILL_CHUNK;
            int last = sl->pos + c == sl->n_prompt;
            opc_status st = slot_run(sl, sl->seq + sl->pos, c, sl->pos,
                                     last ? sl->logits : NULL,
                                     last ? OPC_LOGITS_LAST : OPC_LOGITS_NONE);
            if (st != OPC_OK) return st;
            sl->pos += c;
            if (!last) {
                memset(&out[k], 0, sizeof out[k]);
                out[k].none = 1;
                continue;
            }
        } else if (sl->pending >= 0) {
            if (sl->pos >= e->n_ctx)
                return opc_error(OPC_ERR_INVALID_ARG, "serve: slot %d: context of %d is full",
                                 (int)slots[k], (int)e->n_ctx);
            sl->seq[sl->pos] = sl->pending;
            opc_status st = slot_run(sl, &sl->pending, 1, sl->pos, sl->logits, OPC_LOGITS_LAST);
            if (st != OPC_OK) return st;
            sl->pos++;
            sl->pending = -1;
        }
        int32_t tok = opc_sampler_sample(&sl->smp, sl->logits);
        out[k].none = 0;
        out[k].token = tok;
        out[k].eog = tok == m->eog[0] || tok == m->eog[1];
        out[k].text = sl->text;
        out[k].len = 0;
        if (!out[k].eog) {
            out[k].len = opc_detok_push(&sl->dt, tok, 1, sl->text, sl->text_cap);
            sl->pending = tok;
        }
    }
    return OPC_OK;
}

static void me_end(opc_engine *e, int32_t si) {
    model_engine *m = (model_engine *)e;
    /* pos and seq stay: the cache is reused by a later request with the same start */
    m->slots[si].pending = -1;
    m->slots[si].n_prompt = 0;
}

static void me_destroy(opc_engine *e) {
    model_engine *m = (model_engine *)e;
    if (m->slots) {
        for (int32_t i = 0; i < e->n_slots; i++) {
            opc_forward_free(m->slots[i].fwd);
#ifdef OPC_HAVE_CUDA
            opc_cuda_forward_free(m->slots[i].gpu);
#endif
            if (m->slots[i].smp_ready) opc_sampler_free(&m->slots[i].smp);
            free(m->slots[i].logits);
            free(m->slots[i].text);
            free(m->slots[i].seq);
        }
        free(m->slots);
    }
    opc_tokenizer_free(m->tok);
    opc_model_desc_free(m->desc);
    pthread_mutex_destroy(&m->tok_mu);
    free(m);
}

/* "models/SmolLM2-135M-Instruct.Q4_1.gguf" -> "SmolLM2-135M-Instruct.Q4_1" */
static void id_from_path(const char *path, char *out, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* a folder given with a trailing slash */
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    size_t e = n;
    static const char *const exts[] = {".gguf", ".bf2", ".bin"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t l = strlen(exts[i]);
        if (n - b > l && !strncmp(path + n - l, exts[i], l)) e = n - l;
    }
    size_t len = e - b < cap - 1 ? e - b : cap - 1;
    memcpy(out, path + b, len);
    out[len] = '\0';
}

opc_status opc_engine_model_open(const char *model_path, const opc_engine_model_opts *o,
                                 opc_engine **out) {
    *out = NULL;
    if (!o || o->n_slots < 1 || o->n_slots > 256)
        return opc_error(OPC_ERR_INVALID_ARG, "serve: --parallel must be in 1..256");
#ifndef OPC_HAVE_CUDA
    if (o->device == OPC_ENGINE_CUDA)
        return opc_error(OPC_ERR_UNSUPPORTED, "serve: this build has no CUDA backend (no nvcc at build time)");
#endif
    model_engine *m = calloc(1, sizeof *m);
    if (!m) return opc_error(OPC_ERR_NOMEM, "serve: out of memory");
    pthread_mutex_init(&m->tok_mu, NULL);
    opc_engine *e = &m->e;
    e->impl = m;
    e->destroy = me_destroy;
    e->encode = me_encode;
    e->chat_encode = me_chat_encode;
    e->begin = me_begin;
    e->step = me_step;
    e->end = me_end;
    e->prefix = me_prefix;
    e->n_slots = 0; /* counts constructed slots until the end, for destroy */

    opc_status st = opc_model_desc_open(model_path, &m->desc);
    if (st != OPC_OK) goto fail;
    const opc_config *cfg = &m->desc->cfg;
    int32_t ctx = o->n_ctx > 0 ? o->n_ctx
                               : (cfg->max_seq_len > 0 && cfg->max_seq_len < DEFAULT_CTX_CAP
                                      ? cfg->max_seq_len
                                      : DEFAULT_CTX_CAP);
    if (ctx < 2) {
        st = opc_error(OPC_ERR_INVALID_ARG, "serve: --ctx %d is too small", (int)ctx);
        goto fail;
    }
    if (cfg->max_seq_len > 0 && ctx > cfg->max_seq_len)
        opc_log(OPC_LOG_WARN, "serve: --ctx %d exceeds %s's trained context of %d", (int)ctx,
                model_path, (int)cfg->max_seq_len);
    e->n_ctx = ctx;
    e->n_vocab = cfg->vocab_size;
    if (o->model_id && *o->model_id) snprintf(e->model_id, sizeof e->model_id, "%s", o->model_id);
    else id_from_path(model_path, e->model_id, sizeof e->model_id);

    st = opc_tokenizer_init(&m->tok, &m->desc->vocab);
    if (st != OPC_OK) goto fail;
    m->eog[0] = opc_tokenizer_eos(m->tok);
    m->eog[1] = -1;
    m->chat_st = opc_chat_detect(m->desc->vocab.chat_template, &m->fam);
    if (m->chat_st != OPC_OK) {
        snprintf(m->chat_err, sizeof m->chat_err, "%s", opc_last_error());
        opc_error_clear();
    } else {
        const char *eot = opc_chat_end_of_turn(m->fam);
        if (eot) m->eog[1] = opc_tokenizer_find(m->tok, eot);
    }

    m->slots = calloc((size_t)o->n_slots, sizeof *m->slots);
    if (!m->slots) {
        st = opc_error(OPC_ERR_NOMEM, "serve: out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < o->n_slots; i++) {
        slot *sl = &m->slots[i];
        e->n_slots = i + 1;
        sl->pending = -1;
        sl->logits = malloc((size_t)e->n_vocab * sizeof *sl->logits);
        sl->text_cap = opc_tokenizer_max_token_bytes(m->tok) + 8;
        sl->text = malloc(sl->text_cap);
        sl->seq = malloc((size_t)ctx * sizeof *sl->seq);
        if (!sl->logits || !sl->text || !sl->seq) {
            st = opc_error(OPC_ERR_NOMEM, "serve: out of memory for slot %d logits", (int)i);
            goto fail;
        }
#ifdef OPC_HAVE_CUDA
        if (o->device == OPC_ENGINE_CUDA) {
            opc_cuda_forward *g = NULL;
            st = opc_cuda_forward_init(&g, m->desc, ctx, PREFILL_CHUNK);
            sl->gpu = g;
            if (st != OPC_OK) goto fail;
            continue;
        }
#endif
        st = opc_forward_init(&sl->fwd, m->desc, ctx, PREFILL_CHUNK, o->n_threads);
        if (st != OPC_OK) goto fail;
    }
    *out = e;
    return OPC_OK;
fail:
    me_destroy(e);
    return st;
}
