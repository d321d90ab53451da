/*
 * bench_cuda_forward.c — speed of the whole GPU forward pass (forward_cuda.h):
 * prefill (pp: N prompt tokens in one call, logits of the last) and decode
 * (tg: N single-token steps from an empty cache, llama-bench's tg128), with
 * and without the decode CUDA graph, and with the greedy pick on the device
 * (opc_cuda_forward_greedy: no per-token logits download or host sync).
 *
 *   bench_cuda_forward MODEL [--pp 512] [--tg 128] [--reps 3]
 *
 * Tokens are random ids (fixed seed): speed does not depend on their values.
 * Every call is synchronous (logits back on the host), so wall-clock time
 * around it is the device time plus the launch and copy overheads a real
 * caller pays. Each figure is the median of --reps runs after one warm-up.
 * Bytes per decode token: the device weights minus the embedding table when
 * the head is untied (one row of it is read per token).
 */
#define _POSIX_C_SOURCE 200809L
#include "core/core.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef OPC_HAVE_CUDA
#include "cuda/forward_cuda.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [--pp N] [--tg N] [--reps N]\n", argv[0]);
        return 2;
    }
    int pp = 512, tg = 128, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--pp")) pp = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tg")) tg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (pp < 1 || tg < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "bad --pp/--tg/--reps\n");
        return 2;
    }
    opc_model_desc *d = NULL;
    double t0 = now_s();
    if (opc_model_desc_open(argv[1], &d) != OPC_OK) {
        fprintf(stderr, "%s\n", opc_last_error());
        return 1;
    }
    const int ctx = pp > tg + 1 ? pp + 8 : tg + 8;
    opc_cuda_forward *f = NULL;
    if (opc_cuda_forward_init(&f, d, ctx, pp) != OPC_OK) {
        fprintf(stderr, "%s\n", opc_last_error());
        opc_model_desc_free(d);
        return 1;
    }
    const double t_load = now_s() - t0;
    const opc_config *c = opc_cuda_forward_config(f);
    const opc_cuda_forward_mem mem = opc_cuda_forward_memory(f);
    uint64_t per_tok = mem.weights;
    const opc_tensor *out_t = opc_model_desc_find(d, "output.weight");
    const opc_tensor *emb_t = opc_model_desc_find(d, "token_embd.weight");
    if (out_t && !c->tied_embeddings && emb_t) {
        const uint64_t emb = emb_t->type == OPC_TYPE_CB2 || emb_t->type == OPC_TYPE_CB4
                                 ? emb_t->nbytes + (uint64_t)emb_t->cb.rows * (uint64_t)emb_t->cb.k * 2u
                                 : (uint64_t)c->vocab_size * (uint64_t)c->dim * 2u;
        per_tok -= emb < per_tok ? emb : 0;
    }
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(pp > tg ? pp : tg));
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
    if (!toks || !logits) return 1;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < (pp > tg ? pp : tg); i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        toks[i] = (int32_t)(rng % (uint64_t)c->vocab_size);
    }
    printf("model %s: dim %d, layers %d, heads %d/%d, hidden %d, vocab %d; load+upload %.1f s\n",
           argv[1], c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size,
           t_load);
    printf("device memory: weights %.1f MB, kv cache %.1f MB, scratch %.1f MB; weight bytes per decode token %.1f MB\n",
           mem.weights / 1e6, mem.kv_cache / 1e6, mem.scratch / 1e6, per_tok / 1e6);

    double tm[100];
    int rc = 0;
    /* prefill */
    for (int r = -1; r < reps && !rc; r++) {
        double s = now_s();
        if (opc_cuda_forward_run(f, toks, pp, 0, logits, OPC_LOGITS_LAST) != OPC_OK) rc = 1;
        if (r >= 0) tm[r] = now_s() - s;
    }
    if (!rc) {
        double m = median(tm, reps);
        printf("pp%-4d %10.1f tok/s  (%.2f ms per call, median of %d)\n", pp, pp / m, 1e3 * m, reps);
    }
    /* decode, graph on and off */
    for (int g = 1; g >= 0 && !rc; g--) {
        opc_cuda_forward_set_graph(f, g);
        for (int r = -1; r < reps && !rc; r++) {
            double s = now_s();
            for (int i = 0; i < tg && !rc; i++)
                if (opc_cuda_forward_run(f, toks + i, 1, i, logits, OPC_LOGITS_LAST) != OPC_OK) rc = 1;
            if (r >= 0) tm[r] = now_s() - s;
        }
        if (!rc) {
            double m = median(tm, reps);
            printf("tg%-4d %10.1f tok/s  (%.3f ms per token, graph %s, median of %d); %.0f GB/s of weights\n",
                   tg, tg / m, 1e3 * m / tg, g ? "on " : "off", reps, (double)per_tok * tg / m / 1e9);
        }
    }
    /* decode with the greedy pick on the device: no logits download and no
     * host round trip per token (opc_cuda_forward_greedy), graph on */
    opc_cuda_forward_set_graph(f, 1);
    int32_t *gout = malloc(sizeof(int32_t) * (size_t)tg);
    if (!gout) rc = 1;
    for (int r = -1; r < reps && !rc; r++) {
        double s = now_s();
        if (opc_cuda_forward_greedy(f, toks[0], 0, tg, gout) != OPC_OK) rc = 1;
        if (r >= 0) tm[r] = now_s() - s;
    }
    if (!rc) {
        double m = median(tm, reps);
        printf("tg%-4d %10.1f tok/s  (%.3f ms per token, greedy on the device, graph on, median of %d); %.0f GB/s of weights\n",
               tg, tg / m, 1e3 * m / tg, reps, (double)per_tok * tg / m / 1e9);
    }
    free(gout);
    if (rc) fprintf(stderr, "error: %s\n", opc_last_error());
    free(toks), free(logits);
    opc_cuda_forward_free(f);
    opc_model_desc_free(d);
    return rc;
}

#else

int main(void) {
    fprintf(stderr, "bench_cuda_forward: built without CUDA\n");
    return 0;
}

#endif
