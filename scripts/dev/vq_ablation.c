/* vq_ablation.c — measurement-only experiment (not product code): 2-D vector
 * codebooks (16 entries of 2 values = 2 bits/weight) per group of G rows,
 * importance-weighted Lloyd (k-means++ starts), dequantized into F32 tensors
 * of a .bf2 so the existing forward pass / perplexity can score it. Other
 * tensors exactly as `opacc1ty quantize` stores them. bpw counted as the
 * format would store it: 4-bit index per pair + 16x2 fp16 per G rows.
 * Numbers: docs/RESULTS.md ("Vector codebooks"). Build from the repository
 * root after a release build in build/release:
 *   cc -O2 -std=c11 -fopenmp -I include -I src scripts/dev/vq_ablation.c \
 *      build/release/libopacc1ty.a -lm -lpcre2-8 -lcjson -o /tmp/vq_ablation */
#include "core/half.h"
#include "format/bf2.h"
#include "model/model.h"
#include "quant/quantize.h"
#include "quant/types.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV 16
static uint64_t mix(uint64_t z) { z += 0x9E3779B97F4A7C15ull; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; z = (z ^ (z >> 27)) * 0x94D049BB133111EBull; return z ^ (z >> 31); }

/* points (n,2), per-dim weights (n,2); returns cost; centers (KV,2) fp16-rounded */
static double vq_fit(const float *x, const float *wt, int64_t n, uint64_t seed, int starts, float *best_c, int32_t *asg) {
    double best = INFINITY;
    float c[KV * 2];
    int32_t *a = malloc(n * sizeof *a);
    double *d = malloc(n * sizeof *d);
    for (int s = 0; s < starts; s++) {
        uint64_t rng = mix(seed + (uint64_t)s * 77);
        /* k-means++ */
        rng = mix(rng);
        int64_t i0 = (int64_t)(rng % (uint64_t)n);
        c[0] = x[2 * i0]; c[1] = x[2 * i0 + 1];
        for (int64_t i = 0; i < n; i++) d[i] = INFINITY;
        for (int j = 1; j < KV; j++) {
            double tot = 0;
            for (int64_t i = 0; i < n; i++) {
                double dx = x[2 * i] - c[2 * (j - 1)], dy = x[2 * i + 1] - c[2 * (j - 1) + 1];
                double v = wt[2 * i] * dx * dx + wt[2 * i + 1] * dy * dy;
                if (v < d[i]) d[i] = v;
                tot += d[i];
            }
            rng = mix(rng);
            double u = (double)(rng >> 11) / 9007199254740992.0 * tot, acc = 0;
            int64_t pick = n - 1;
            for (int64_t i = 0; i < n; i++) { acc += d[i]; if (acc >= u) { pick = i; break; } }
            c[2 * j] = x[2 * pick]; c[2 * j + 1] = x[2 * pick + 1];
        }
        double cost = 0;
        for (int it = 0; it < 25; it++) {
            cost = 0;
            double sa[KV] = {0}, sb[KV] = {0}, sax[KV] = {0}, sby[KV] = {0};
            for (int64_t i = 0; i < n; i++) {
                int bj = 0; double bd = INFINITY;
                for (int j = 0; j < KV; j++) {
                    double dx = x[2 * i] - c[2 * j], dy = x[2 * i + 1] - c[2 * j + 1];
                    double v = wt[2 * i] * dx * dx + wt[2 * i + 1] * dy * dy;
                    if (v < bd) { bd = v; bj = j; }
                }
                a[i] = bj; cost += bd;
                sa[bj] += wt[2 * i]; sb[bj] += wt[2 * i + 1];
                sax[bj] += wt[2 * i] * x[2 * i]; sby[bj] += wt[2 * i + 1] * x[2 * i + 1];
            }
            for (int j = 0; j < KV; j++) {
                if (sa[j] > 0) c[2 * j] = (float)(sax[j] / sa[j]);
                if (sb[j] > 0) c[2 * j + 1] = (float)(sby[j] / sb[j]);
            }
        }
        for (int j = 0; j < 2 * KV; j++) c[j] = opc_fp16_to_fp32(opc_fp32_to_fp16(c[j]));
        cost = 0;
        for (int64_t i = 0; i < n; i++) {
            int bj = 0; double bd = INFINITY;
            for (int j = 0; j < KV; j++) {
                double dx = x[2 * i] - c[2 * j], dy = x[2 * i + 1] - c[2 * j + 1];
                double v = wt[2 * i] * dx * dx + wt[2 * i + 1] * dy * dy;
                if (v < bd) { bd = v; bj = j; }
            }
            a[i] = bj; cost += bd;
        }
        if (cost < best) { best = cost; memcpy(best_c, c, sizeof c); memcpy(asg, a, n * sizeof *a); }
    }
    free(a); free(d);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: vqexp MODEL OUT.bf2 G [calib_tokens]\n"); return 2; }
    int G = atoi(argv[3]);
    int ntok = argc > 4 ? atoi(argv[4]) : 256;
    opc_model_desc *d = NULL;
    if (opc_model_desc_open(argv[1], &d)) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
    opc_importance imp;
    if (opc_calibrate_sampled(d, ntok, 256, 1, 2, 0, 0, NULL, NULL, NULL, &imp)) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
    opc_quant_params p = opc_quant_defaults();
    p.importance = &imp;
    opc_bf2_writer *w = NULL;
    if (opc_bf2_writer_open(&w, argv[2])) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
    uint64_t q_elems = 0, q_bits = 0; double num = 0, den = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        opc_quant_choice ch; int32_t ib, k;
        opc_quant_plan(t, &p, &ch, &ib, &k);
        opc_tensor qt; opc_qmatrix qm;
        if (ch != OPC_QC_CB) {
            if (opc_quantize_tensor(t, i, &p, &qt, &qm)) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
            opc_bf2_writer_add(w, &qt);
            opc_quant_tensor_free(&qt, &qm);
            continue;
        }
        int64_t rows = t->shape[0], cols = t->shape[1], n = rows * cols;
        float *W = opc_aligned_alloc(n * 4);
        opc_dequantize(t->type, t->data, W, n);
        float *im = malloc(cols * 4);
        if (!opc_importance_get(&imp, t->name, cols, im)) for (int64_t c = 0; c < cols; c++) im[c] = 1;
        double mean = 0; for (int64_t c = 0; c < cols; c++) mean += im[c]; mean /= cols;
        for (int64_t c = 0; c < cols; c++) { double v = im[c] / mean; im[c] = (float)(v > 1e-6 ? v : 1e-6); }
        float *Q = opc_aligned_alloc(n * 4);
        int64_t ngr = (rows + G - 1) / G;
        double tn = 0, td = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : tn, td)
        for (int64_t g = 0; g < ngr; g++) {
            int64_t r0 = g * G, r1 = r0 + G < rows ? r0 + G : rows;
            int64_t np = (r1 - r0) * cols / 2;
            float *x = malloc(np * 2 * 4), *wt = malloc(np * 2 * 4);
            int32_t *a = malloc(np * sizeof *a);
            for (int64_t r = r0; r < r1; r++) for (int64_t c = 0; c < cols; c++) {
                int64_t pi = (r - r0) * cols + c;
                x[pi] = W[r * cols + c]; wt[pi] = im[c];
            }
            float cb[KV * 2];
            vq_fit(x, wt, np, mix((uint64_t)i * 1000003 + (uint64_t)g), 2, cb, a);
            for (int64_t pi = 0; pi < np; pi++) {
                int64_t r = r0 + (2 * pi) / cols, c = (2 * pi) % cols;
                Q[r * cols + c] = cb[2 * a[pi]]; Q[r * cols + c + 1] = cb[2 * a[pi] + 1];
                for (int e = 0; e < 2; e++) { double dd = W[r * cols + c + e] - Q[r * cols + c + e]; tn += im[c + e] * dd * dd; td += im[c + e] * (double)W[r * cols + c + e] * W[r * cols + c + e]; }
            }
            free(x); free(wt); free(a);
        }
        num += tn; den += td;
        memset(&qt, 0, sizeof qt);
        memcpy(qt.name, t->name, sizeof qt.name); qt.type = OPC_TYPE_F32; qt.n_dims = 2; qt.shape[0] = rows; qt.shape[1] = cols;
        qt.data = Q; qt.nbytes = n * 4; qt.qerr = (float)(tn / td);
        if (opc_bf2_writer_add(w, &qt)) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
        q_elems += n; q_bits += (uint64_t)n * 2 + (uint64_t)ngr * KV * 2 * 16;
        fprintf(stderr, "%-28s %lldx%lld qerr %.4f\n", t->name, (long long)rows, (long long)cols, tn / td);
        opc_aligned_free(W); opc_aligned_free(Q); free(im);
    }
    if (opc_bf2_writer_finish(w, d->name, &d->cfg, &d->vocab)) { fprintf(stderr, "%s\n", opc_last_error()); return 1; }
    opc_bf2_writer_close(w);
    printf("vq 2-D x %d entries per %d rows: %llu weights, %.4f bpw all-in (indices 2 + codebooks %.4f), weighted rel err %.4f\n", KV, G,
           (unsigned long long)q_elems, (double)q_bits / q_elems, (double)q_bits / q_elems - 2.0, num / den);
    return 0;
}
