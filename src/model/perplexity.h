/*
 * perplexity.h — perplexity and KL-divergence of a model on a token stream,
 * the yardstick for every quantized model (protocol: docs/PERPLEXITY.md).
 *
 * Default protocol = llama.cpp's `llama-perplexity`: the token stream is cut
 * into n_chunks = n_tokens / ctx non-overlapping chunks of ctx tokens (the
 * tail is dropped); each chunk is evaluated from an empty KV cache; when BOS
 * is on, the chunk's first token is replaced by BOS; the logits at positions
 * ctx/2 .. ctx-2 score the tokens at ctx/2+1 .. ctx-1 (ctx/2 - 1 tokens per
 * chunk). full = 1 scores positions 0 .. ctx-2 instead (ctx - 1 per chunk).
 * PPL = exp(mean NLL), error = PPL * sqrt(var(NLL) / (count - 1)).
 *
 * Reference distributions (--save-logits) are stored per scored position as
 * the top-K log-probabilities plus the log of the remaining mass ("top-K +
 * rest" file, format in docs/PERPLEXITY.md); --kld compares a model against
 * such a file: KL(ref || model) over the K+1 bins (a lower bound of the full
 * KL, exact when the rest mass is 0), its mean, median, 99th percentile, and
 * how often the model's argmax equals the reference's.
 */
#ifndef OPC_PERPLEXITY_H
#define OPC_PERPLEXITY_H

#include "runner.h"

#include <stddef.h>
#include <stdint.h>

#define OPC_LOGP_MAGIC "OPCLOGP1" /* 8 bytes, no NUL */
#define OPC_LOGP_VERSION 1u
#define OPC_LOGP_DEFAULT_TOPK 32

typedef void (*opc_ppl_progress_fn)(void *user, int32_t chunks_done, int32_t n_chunks,
                                    double ppl_so_far);

typedef struct opc_ppl_params {
    int32_t ctx;        /* tokens per chunk (<= the forward handle's ctx) */
    int32_t n_chunks;   /* <= 0: every whole chunk */
    int32_t batch;      /* tokens per forward call (<= 0: the handle's max batch) */
    int full;           /* score every position, not only the second half */
    int32_t bos_id;     /* replaces the first token of each chunk; -1: no BOS */
    const char *save_path; /* write reference top-K distributions here (or NULL) */
    int32_t save_topk;  /* K for save_path (<= 0: OPC_LOGP_DEFAULT_TOPK) */
    const char *kld_path;  /* compare against this reference file (or NULL) */
    opc_ppl_progress_fn progress;
    void *progress_user;
} opc_ppl_params;

opc_ppl_params opc_ppl_defaults(void);

typedef struct opc_ppl_result {
    int32_t n_chunks;
    int64_t count;      /* scored tokens */
    double nll_mean;    /* mean negative log-likelihood (nats) */
    double ppl, ppl_err;
    double seconds;     /* wall time of the evaluation */
    /* KLD (valid when has_kld) */
    int has_kld;
    double kld_mean, kld_err, kld_median, kld_p99, kld_max;
    double top1_agree;  /* fraction of positions where argmax(model) == argmax(ref) */
    double ref_nll_mean, ref_ppl; /* the reference's own PPL on the same tokens */
} opc_ppl_result;

/* Evaluate tokens[0..n_tokens). Needs n_tokens >= ctx (one whole chunk).
 * Errors: INVALID_ARG (too few tokens, ctx larger than the handle's),
 * IO (save/kld files), CORRUPT (kld file malformed or from another run:
 * vocab, ctx, protocol or tokens differ), NOMEM. */
opc_status opc_perplexity(const opc_runner *f, const int32_t *tokens, int64_t n_tokens,
                          const opc_ppl_params *p, opc_ppl_result *r);

/* log-softmax helper shared with tests: returns log(sum exp(x)) over n in
 * double, computed with the max subtracted. */
double opc_logsumexp(const float *x, int64_t n);

/* Replace CRLF and lone CR by LF in place; returns the new length. */
size_t opc_text_normalize_newlines(char *s, size_t len);

#endif /* OPC_PERPLEXITY_H */
