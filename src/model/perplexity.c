/*
 * perplexity.c — PPL and KLD over chunks of a token stream (see perplexity.h
 * and docs/PERPLEXITY.md for the protocol and the reference-file format).
 */
#define _POSIX_C_SOURCE 200809L
#include "perplexity.h"

#include "sampler.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

opc_ppl_params opc_ppl_defaults(void) {
    opc_ppl_params p;
    memset(&p, 0, sizeof p);
    p.ctx = 512;
    p.bos_id = -1;
    p.save_topk = OPC_LOGP_DEFAULT_TOPK;
    return p;
}

size_t opc_text_normalize_newlines(char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\r') {
            s[o++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n') i++;
        } else {
            s[o++] = s[i];
        }
    }
    if (o < len) s[o] = '\0';
    return o;
}

double opc_logsumexp(const float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += expf(x[i] - mx);
    return (double)mx + log(s);
}

/* ------------------------------------------------ reference file ------- */

/* Header, all fields little-endian uint32 after the 8-byte magic. */
typedef struct logp_header {
    uint32_t version, n_vocab, ctx, n_chunks, first, n_scored, top_k, flags;
} logp_header;
#define LOGP_FLAG_FULL 1u
#define LOGP_FLAG_BOS 2u

/* One scored position: lp_target, lp_rest (float), ids[K] (int32), lp[K] (float). */
static size_t rec_size(uint32_t k) { return 8u + 8u * (size_t)k; }

static int write_u32s(FILE *fp, const uint32_t *v, size_t n) {
    /* the project targets little-endian hosts (x86-64, aarch64); the format is LE */
    return fwrite(v, sizeof *v, n, fp) == n;
}

/* Top-k of row (n) by value, descending; equal values keep the lower id first. */
static void topk(const float *row, int64_t n, int32_t k, int32_t *ids, float *vals) {
    int32_t m = 0;
    for (int64_t j = 0; j < n; j++) {
        float v = row[j];
        if (m == k && !(v > vals[k - 1])) continue;
        int32_t pos = m < k ? m : k - 1;
        while (pos > 0 && v > vals[pos - 1]) {
            vals[pos] = vals[pos - 1];
            ids[pos] = ids[pos - 1];
            pos--;
        }
        vals[pos] = v;
        ids[pos] = (int32_t)j;
        if (m < k) m++;
    }
}

/* Distribution summary of one logits row against a set of ids: the log-probs
 * of those ids and the log of the mass outside them. The exact same code
 * produces the saved reference and the compared model, so a model compared
 * with its own reference gives KL = 0 exactly. */
static void summarize(const float *row, int64_t n, double lse, const int32_t *ids, int32_t k,
                      float *lp, float *lp_rest) {
    float mx = row[0];
    for (int64_t j = 1; j < n; j++)
        if (row[j] > mx) mx = row[j];
    double total = 0.0, top = 0.0;
    for (int64_t j = 0; j < n; j++) total += expf(row[j] - mx);
    for (int32_t i = 0; i < k; i++) {
        top += expf(row[ids[i]] - mx);
        lp[i] = (float)((double)row[ids[i]] - lse);
    }
    double rest = (total - top) / total;
    *lp_rest = rest > 0.0 ? (float)log(rest) : -INFINITY;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------ evaluation ----- */

opc_status opc_perplexity(const opc_runner *f, const int32_t *tokens, int64_t n_tokens,
                          const opc_ppl_params *p, opc_ppl_result *r) {
    memset(r, 0, sizeof *r);
    const opc_config *cfg = opc_runner_config(f);
    const int64_t vocab = cfg->vocab_size;
    const int32_t ctx = p->ctx;
    if (ctx < 2 || ctx > opc_runner_ctx(f))
        return opc_error(OPC_ERR_INVALID_ARG, "perplexity: ctx %d must be in [2, %d] (the forward context)",
                         ctx, opc_runner_ctx(f));
    if (!tokens || n_tokens < ctx)
        return opc_error(OPC_ERR_INVALID_ARG, "perplexity: the text has %lld tokens, fewer than one chunk of %d",
                         (long long)n_tokens, ctx);
    int32_t n_chunks = (int32_t)(n_tokens / ctx);
    if (p->n_chunks > 0 && p->n_chunks < n_chunks) n_chunks = p->n_chunks;
    const int32_t first = p->full ? 0 : ctx / 2;
    const int32_t n_scored = ctx - 1 - first;
    const int32_t n_logits = ctx - first; /* rows computed: first .. ctx-1 */
    int32_t batch = p->batch > 0 ? p->batch : f->max_batch;
    if (batch > f->max_batch) batch = f->max_batch;
    const int32_t K = p->save_topk > 0 ? p->save_topk : OPC_LOGP_DEFAULT_TOPK;
    if (K > vocab) return opc_error(OPC_ERR_INVALID_ARG, "perplexity: top-k %d exceeds the vocabulary", K);
    if (p->bos_id >= vocab)
        return opc_error(OPC_ERR_INVALID_ARG, "perplexity: BOS id %d outside the vocabulary", p->bos_id);

    opc_status st = OPC_OK;
    float *logits = NULL, *nll = NULL, *kvals = NULL;
    int32_t *chunk = NULL, *ref_tokens = NULL;
    uint8_t *rec = NULL, *ref_rec = NULL;
    uint8_t *top1 = NULL;
    FILE *save = NULL, *ref = NULL;
    char tmp_path[1100] = "";
    logp_header rh = {0};

    uint64_t nlog = (uint64_t)n_logits * (uint64_t)vocab;
    logits = malloc(nlog * sizeof *logits);
    nll = malloc((size_t)n_scored * sizeof *nll);
    chunk = malloc((size_t)ctx * sizeof *chunk);
    if (!logits || !nll || !chunk) {
        st = opc_error(OPC_ERR_NOMEM, "perplexity: cannot allocate %llu logits", (unsigned long long)nlog);
        goto done;
    }

    if (p->save_path) {
        snprintf(tmp_path, sizeof tmp_path, "%s.tmp", p->save_path);
        save = fopen(tmp_path, "wb");
        rec = malloc((size_t)n_scored * rec_size((uint32_t)K));
        if (!save || !rec) {
            st = opc_error(save ? OPC_ERR_NOMEM : OPC_ERR_IO, "%s: cannot open for writing", tmp_path);
            goto done;
        }
        logp_header h = {OPC_LOGP_VERSION, (uint32_t)vocab, (uint32_t)ctx, (uint32_t)n_chunks,
                         (uint32_t)first, (uint32_t)n_scored, (uint32_t)K,
                         (p->full ? LOGP_FLAG_FULL : 0u) | (p->bos_id >= 0 ? LOGP_FLAG_BOS : 0u)};
        int ok = fwrite(OPC_LOGP_MAGIC, 1, 8, save) == 8 && write_u32s(save, &h.version, 8);
        for (int32_t c = 0; ok && c < n_chunks; c++) {
            memcpy(chunk, tokens + (int64_t)c * ctx, (size_t)ctx * sizeof *chunk);
            if (p->bos_id >= 0) chunk[0] = p->bos_id;
            ok = fwrite(chunk, sizeof *chunk, (size_t)ctx, save) == (size_t)ctx;
        }
        if (!ok) {
            st = opc_error(OPC_ERR_IO, "%s: write failed", tmp_path);
            goto done;
        }
    }

    if (p->kld_path) {
        ref = fopen(p->kld_path, "rb");
        if (!ref) {
            st = opc_error(OPC_ERR_IO, "%s: cannot open the reference logits file", p->kld_path);
            goto done;
        }
        char magic[8];
        if (fread(magic, 1, 8, ref) != 8 || memcmp(magic, OPC_LOGP_MAGIC, 8) ||
            fread(&rh.version, sizeof(uint32_t), 8, ref) != 8) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: not an opacc1ty reference logits file (magic %s)",
                           p->kld_path, OPC_LOGP_MAGIC);
            goto done;
        }
        if (rh.version != OPC_LOGP_VERSION) {
            st = opc_error(OPC_ERR_UNSUPPORTED, "%s: version %u (expected %u)", p->kld_path, rh.version,
                           OPC_LOGP_VERSION);
            goto done;
        }
        if (rh.n_vocab != (uint32_t)vocab || rh.ctx != (uint32_t)ctx || rh.first != (uint32_t)first ||
            rh.n_scored != (uint32_t)n_scored || rh.top_k == 0 || rh.top_k > rh.n_vocab ||
            rh.n_chunks == 0 || rh.n_chunks > (1u << 24)) {
            st = opc_error(OPC_ERR_CORRUPT,
                           "%s: reference is vocab %u, ctx %u, first %u, %u scored, top-k %u, %u chunks; "
                           "this run is vocab %lld, ctx %d, first %d, %d scored (same --ctx/--full needed)",
                           p->kld_path, rh.n_vocab, rh.ctx, rh.first, rh.n_scored, rh.top_k, rh.n_chunks,
                           (long long)vocab, ctx, first, n_scored);
            goto done;
        }
        if ((int64_t)rh.n_chunks < n_chunks) n_chunks = (int32_t)rh.n_chunks;
        /* the file must hold every record it announces */
        uint64_t need = 8 + 32 + (uint64_t)rh.n_chunks * rh.ctx * 4 +
                        (uint64_t)rh.n_chunks * rh.n_scored * rec_size(rh.top_k);
        if (fseek(ref, 0, SEEK_END) != 0 || (uint64_t)ftell(ref) != need) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: size %ld bytes, header implies %llu", p->kld_path,
                           ftell(ref), (unsigned long long)need);
            goto done;
        }
        fseek(ref, 40, SEEK_SET);
        ref_tokens = malloc((size_t)rh.n_chunks * rh.ctx * sizeof *ref_tokens);
        ref_rec = malloc((size_t)n_scored * rec_size(rh.top_k));
        kvals = malloc((size_t)n_chunks * (size_t)n_scored * sizeof *kvals);
        top1 = malloc((size_t)n_scored);
        if (!ref_tokens || !ref_rec || !kvals || !top1) {
            st = opc_error(OPC_ERR_NOMEM, "perplexity: cannot allocate KLD buffers");
            goto done;
        }
        if (fread(ref_tokens, sizeof *ref_tokens, (size_t)rh.n_chunks * rh.ctx, ref) !=
            (size_t)rh.n_chunks * rh.ctx) {
            st = opc_error(OPC_ERR_IO, "%s: short read of the token table", p->kld_path);
            goto done;
        }
        for (int32_t c = 0; c < n_chunks; c++)
            for (int32_t i = 0; i < ctx; i++) {
                int32_t t = tokens[(int64_t)c * ctx + i];
                if (i == 0 && p->bos_id >= 0) t = p->bos_id;
                if (ref_tokens[(int64_t)c * ctx + i] != t) {
                    st = opc_error(OPC_ERR_CORRUPT,
                                   "%s: token %d of chunk %d is %d in the reference but %d here "
                                   "(different text, tokenizer or BOS setting)",
                                   p->kld_path, i, c, ref_tokens[(int64_t)c * ctx + i], t);
                    goto done;
                }
            }
    }

    double sum = 0.0, sum2 = 0.0, ref_sum = 0.0, ksum = 0.0, ksum2 = 0.0;
    int64_t count = 0, n_top1 = 0;
    const double t0 = opc_time_s();
    const size_t rs = rec_size((uint32_t)K), rrs = ref ? rec_size(rh.top_k) : 0;
    for (int32_t c = 0; c < n_chunks; c++) {
        memcpy(chunk, tokens + (int64_t)c * ctx, (size_t)ctx * sizeof *chunk);
        if (p->bos_id >= 0) chunk[0] = p->bos_id;
        /* positions before `first` only fill the KV cache; the rest produce logits */
        for (int32_t pos = 0; pos < ctx;) {
            int32_t end = pos < first ? first : ctx;
            int32_t m = end - pos < batch ? end - pos : batch;
            opc_logits_mode mode = pos < first ? OPC_LOGITS_NONE : OPC_LOGITS_ALL;
            float *out = mode == OPC_LOGITS_ALL ? logits + (int64_t)(pos - first) * vocab : NULL;
            st = opc_runner_run(f, chunk + pos, m, pos, out, mode);
            if (st != OPC_OK) goto done;
            pos += m;
        }
        if (ref && fread(ref_rec, 1, (size_t)n_scored * rrs, ref) != (size_t)n_scored * rrs) {
            st = opc_error(OPC_ERR_IO, "%s: short read in chunk %d", p->kld_path, c);
            goto done;
        }
        float *kv = kvals ? kvals + (int64_t)c * n_scored : NULL;
#pragma omp parallel for schedule(static)
        for (int32_t i = 0; i < n_scored; i++) {
            const float *row = logits + (int64_t)i * vocab;
            const int32_t target = chunk[first + i + 1];
            const double lse = opc_logsumexp(row, vocab);
            nll[i] = (float)(lse - (double)row[target]);
            if (rec) {
                uint8_t *o = rec + (size_t)i * rs;
                int32_t *ids = (int32_t *)(o + 8);
                float *lp = (float *)(o + 8 + 4 * (size_t)K);
                topk(row, vocab, K, ids, lp);
                float lt = (float)((double)row[target] - lse), lr;
                summarize(row, vocab, lse, ids, K, lp, &lr);
                memcpy(o, &lt, 4);
                memcpy(o + 4, &lr, 4);
            }
            if (ref) {
                const uint8_t *o = ref_rec + (size_t)i * rrs;
                const int32_t kk = (int32_t)rh.top_k;
                const int32_t *ids = (const int32_t *)(o + 8);
                const float *lp = (const float *)(o + 8 + 4 * (size_t)kk);
                float lr, lq[512], lq_rest;
                float *lqp = kk <= 512 ? lq : NULL;
                double kl = 0.0;
                int ids_ok = 1;
                for (int32_t j = 0; j < kk; j++)
                    if (ids[j] < 0 || ids[j] >= vocab) ids_ok = 0;
                memcpy(&lr, o + 4, 4);
                if (ids_ok && lqp) {
                    summarize(row, vocab, lse, ids, kk, lqp, &lq_rest);
                    for (int32_t j = 0; j < kk; j++)
                        if (lp[j] > -INFINITY) kl += exp((double)lp[j]) * ((double)lp[j] - lqp[j]);
                    if (lr > -INFINITY) {
                        double lqr = lq_rest > -69.0f ? lq_rest : -69.0; /* q_rest >= 1e-30 */
                        kl += exp((double)lr) * ((double)lr - lqr);
                    }
                } else {
                    kl = NAN; /* reported as corrupt below */
                }
                kv[i] = (float)kl;
                top1[i] = (uint8_t)(ids_ok && opc_argmax(row, vocab) == ids[0]);
            }
        }
        for (int32_t i = 0; i < n_scored; i++) {
            sum += nll[i];
            sum2 += (double)nll[i] * nll[i];
        }
        count += n_scored;
        if (ref) {
            for (int32_t i = 0; i < n_scored; i++) {
                if (!(kv[i] == kv[i])) {
                    st = opc_error(OPC_ERR_CORRUPT, "%s: chunk %d position %d: token id out of range "
                                   "or top-k above 512", p->kld_path, c, i);
                    goto done;
                }
                float lt;
                memcpy(&lt, ref_rec + (size_t)i * rrs, 4);
                ref_sum -= lt;
                ksum += kv[i];
                ksum2 += (double)kv[i] * kv[i];
                n_top1 += top1[i];
            }
        }
        if (save && fwrite(rec, 1, (size_t)n_scored * rs, save) != (size_t)n_scored * rs) {
            st = opc_error(OPC_ERR_IO, "%s: write failed", tmp_path);
            goto done;
        }
        if (p->progress) p->progress(p->progress_user, c + 1, n_chunks, exp(sum / (double)count));
    }
    r->seconds = opc_time_s() - t0;
    r->n_chunks = n_chunks;
    r->count = count;
    r->nll_mean = sum / (double)count;
    r->ppl = exp(r->nll_mean);
    {
        /* llama.cpp's estimate: standard error of the mean NLL, carried to PPL */
        double var = sum2 / (double)count - r->nll_mean * r->nll_mean;
        r->ppl_err = var > 0 && count > 1 ? r->ppl * sqrt(var / (double)(count - 1)) : 0.0;
    }
    if (ref) {
        const int64_t nk = (int64_t)n_chunks * n_scored;
        r->has_kld = 1;
        r->kld_mean = ksum / (double)nk;
        double var = ksum2 / (double)nk - r->kld_mean * r->kld_mean;
        r->kld_err = var > 0 && nk > 1 ? sqrt(var / (double)(nk - 1)) : 0.0;
        qsort(kvals, (size_t)nk, sizeof *kvals, cmp_float);
        r->kld_median = kvals[nk / 2];
        int64_t i99 = (int64_t)ceil(0.99 * (double)nk) - 1;
        r->kld_p99 = kvals[i99 < 0 ? 0 : i99];
        r->kld_max = kvals[nk - 1];
        r->top1_agree = (double)n_top1 / (double)nk;
        r->ref_nll_mean = ref_sum / (double)nk;
        r->ref_ppl = exp(r->ref_nll_mean);
    }
    if (save) {
        int bad = fflush(save) != 0 || fclose(save) != 0;
        save = NULL;
        if (bad || rename(tmp_path, p->save_path) != 0) {
            st = opc_error(OPC_ERR_IO, "%s: cannot finish writing (flush/rename from %s)", p->save_path,
                           tmp_path);
            goto done;
        }
        tmp_path[0] = '\0';
    }
done:
    if (save) fclose(save);
    if (tmp_path[0] && st != OPC_OK) remove(tmp_path);
    if (ref) fclose(ref);
    free(logits);
    free(nll);
    free(kvals);
    free(chunk);
    free(ref_tokens);
    free(rec);
    free(ref_rec);
    free(top1);
    return st;
}
