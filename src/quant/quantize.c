/*
 * quantize.c — codebook quantizer (see quantize.h).
 *
 * Sections: bits/layout · one row (fit + assign) · one matrix (rows in
 * parallel, global outlier selection, refit) · importance / calibration ·
 * tensor plan · whole model (stream into the .bf2 writer).
 */
#define _GNU_SOURCE /* fnmatch, strdup */
#include "quantize.h"

#include "../core/half.h"
#include "../format/bf2.h"
#include "../model/forward.h"
#include "../model/runner.h"
#include "kmeans.h"
#ifdef OPC_HAVE_CUDA
#include "../cuda/calib_cuda.h"
#include "../cuda/forward_cuda.h"
#include "../cuda/quant_cuda.h"
#endif

#include <fnmatch.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FP16_MAX 65504.0f

/* ---------------------------------------------------------- bits ------- */

int opc_quant_bits_layout(float bits, int32_t *index_bits, int32_t *k) {
    struct { float bits; int32_t ib, k; } tab[] = {{1.58f, 2, 3}, {2.0f, 2, 4}, {3.0f, 4, 8}, {4.0f, 4, 16}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (fabsf(bits - tab[i].bits) < 0.01f) {
            *index_bits = tab[i].ib;
            *k = tab[i].k;
            return 1;
        }
    return 0;
}

uint64_t opc_cb_matrix_bytes(const opc_cb_matrix *m) {
    return opc_bf2_cb_bytes(m); /* exactly what .bf2 stores for it (format/bf2.c) */
}

uint64_t opc_quant_outlier_count(int64_t rows, int64_t cols, double frac) {
    if (!(frac > 0.0) || cols > 65535 || rows < 1 || cols < 1) return 0;
    /* the product in this order, as the GPU quantizer forms it */
    return (uint64_t)llround(frac * (double)((uint64_t)rows * (uint64_t)cols));
}

uint64_t opc_quant_cb_bytes(int64_t rows, int64_t cols, int32_t index_bits, int32_t k, double outlier_frac,
                            int group_scales) {
    /* the parts FORMAT.md lists for CB2/CB4: indices, codebooks (+ scale
     * bytes), and when there are outliers the CSR row pointers, columns and
     * values; test_quantize checks this against what the writer stores */
    uint64_t r = (uint64_t)rows, n_out = opc_quant_outlier_count(rows, cols, outlier_frac);
    uint64_t b = r * opc_cb_row_bytes(index_bits, cols) + r * (uint64_t)k * 2u;
    if (group_scales) b += r * (uint64_t)opc_cb_groups(cols);
    if (n_out) b += (r + 1u) * 4u + n_out * 4u;
    return b;
}

int32_t opc_quant_rot_log2(int64_t cols, int32_t max_log2) {
    if (cols < 2 || max_log2 <= 0) return 0;
    int32_t lg = 0;
    while (lg < max_log2 && lg < OPC_CB_ROT_MAX_LOG2 && cols % ((int64_t)2 << lg) == 0) lg++;
    return lg;
}

int opc_quant_rotatable(const char *name) {
    return strcmp(name, "token_embd.weight") != 0 && strcmp(name, "output.weight") != 0;
}

static int list_match(const char *list, const char *name);

int32_t opc_quant_rotated(const char *name, int64_t cols, const opc_quant_params *p) {
    if (!p->rotate || !opc_quant_rotatable(name)) return 0;
    if (p->rotate_tensors && !list_match(p->rotate_tensors, name)) return 0;
    return opc_quant_rot_log2(cols, p->rot_max_log2);
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------- one row ---- */

/* GPTQ works on blocks of this many rows at once: each row of the factor U
 * (and of H in the refit) is then read from memory once per block instead of
 * once per row, and the rows' independent accumulation chains overlap. Each
 * row's arithmetic is unchanged, so the result does not depend on it. */
#define GPTQ_ROWS 16

/* Per-thread scratch; allocated once per matrix, never inside the row loop. */
typedef struct row_ws {
    opc_kmeans_ws km;
    float *xbuf, *wbuf; /* (cols) gathered values/weights of non-outlier columns */
    float *deq;         /* (cols) dequantized row */
    uint8_t *mask;      /* (cols) 1 = outlier column */
    /* GPTQ only (NULL otherwise), one block of GPTQ_ROWS rows: */
    double *wu;         /* (GPTQ_ROWS, cols) the rows with error feedback applied */
    float *stored;      /* (GPTQ_ROWS, cols) the value represented at each column */
    uint8_t *gmask;     /* (GPTQ_ROWS, cols) 1 = outlier column */
    double *tw;         /* (cols, GPTQ_ROWS) refit: residual target per column, row-interleaved */
    double *tsc;        /* (cols, GPTQ_ROWS) refit: column scale, row-interleaved */
    uint8_t *tix;       /* (cols, GPTQ_ROWS) refit: index, or k + 1 for an outlier column */
    double *rhs;        /* (cols, GPTQ_ROWS) refit: (H tw)[a] per row */
} row_ws;

static void row_ws_free(row_ws *w) {
    opc_kmeans_ws_free(&w->km);
    free(w->xbuf);
    free(w->wbuf);
    free(w->deq);
    free(w->mask);
    free(w->wu);
    free(w->stored);
    free(w->gmask);
    free(w->tw);
    free(w->tsc);
    free(w->tix);
    free(w->rhs);
}

static opc_status row_ws_init(row_ws *w, int64_t cols, int gptq) {
    memset(w, 0, sizeof *w);
    opc_status st = opc_kmeans_ws_init(&w->km, cols);
    w->xbuf = malloc((size_t)cols * sizeof(float));
    w->wbuf = malloc((size_t)cols * sizeof(float));
    w->deq = malloc((size_t)cols * sizeof(float));
    w->mask = calloc((size_t)cols, 1);
    int ok = !st && w->xbuf && w->wbuf && w->deq && w->mask;
    if (ok && gptq) {
        size_t n = (size_t)cols * GPTQ_ROWS;
        w->wu = malloc(n * sizeof *w->wu);
        w->stored = malloc(n * sizeof *w->stored);
        w->gmask = calloc(n, 1);
        w->tw = malloc(n * sizeof *w->tw);
        w->tsc = malloc(n * sizeof *w->tsc);
        w->tix = malloc(n);
        w->rhs = malloc(n * sizeof *w->rhs);
        ok = w->wu && w->stored && w->gmask && w->tw && w->tsc && w->tix && w->rhs;
    }
    if (!ok) {
        row_ws_free(w);
        return opc_error(OPC_ERR_NOMEM, "cannot allocate quantizer scratch for %lld columns", (long long)cols);
    }
    return OPC_OK;
}

static int cmp_float(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* Scale of column c's group: 1 without group scales. */
static inline float col_scale(const uint8_t *gs, int64_t c) {
    return gs ? opc_cb_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
}

/* Importance-weighted mean |w| of group g's non-outlier columns (0 if none):
 * the group's magnitude, less swayed by a single spike than the RMS. */
static double group_mag(const float *w, const float *imp, int64_t cols, const uint8_t *mask, int64_t g) {
    double num = 0.0, den = 0.0;
    for (int64_t c = g * OPC_CB_GROUP; c < cols && c < (g + 1) * OPC_CB_GROUP; c++) {
        if (mask && mask[c]) continue;
        num += (double)imp[c] * fabs((double)w[c]);
        den += (double)imp[c];
    }
    return den > 0.0 ? num / den : 0.0;
}

/* Initial group scales of a row: each group's magnitude relative to the
 * row's largest, as q = -16 log2(ratio) (cb.h). A group with nothing to
 * represent (all zero or all outliers) gets the smallest scale. */
static void init_group_scales(const float *w, const float *imp, int64_t cols, const uint8_t *mask, uint8_t *gs) {
    const int64_t ng = opc_cb_groups(cols);
    double mag_max = 0.0;
    for (int64_t g = 0; g < ng; g++) {
        double m = group_mag(w, imp, cols, mask, g);
        if (m > mag_max) mag_max = m;
    }
    for (int64_t g = 0; g < ng; g++) {
        double m = group_mag(w, imp, cols, mask, g);
        long q = 255;
        if (mag_max <= 0.0)
            q = 0;
        else if (m > 0.0)
            q = lround(-16.0 * log2(m / mag_max));
        gs[g] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
}

/* Weighted squared error of one group's columns [c0, c1) represented by the
 * codebook cbf scaled by s, each at its nearest entry. s * cbf[j] is formed
 * exactly as the dequantizer forms it (float product). */
static double group_err(const float *w, const float *imp, int64_t c0, int64_t c1, const uint8_t *mask,
                        const float *cbf, int32_t k, float s) {
    float t[OPC_KMEANS_MAX_K];
    for (int32_t j = 0; j < k; j++) t[j] = s * cbf[j];
    double e = 0.0;
    for (int64_t c = c0; c < c1; c++) {
        if (mask && mask[c]) continue;
        float d = w[c] - t[opc_kmeans_nearest(t, k, w[c])];
        e += (double)imp[c] * (double)d * (double)d;
    }
    return e;
}

/* Step (b) of the scaled fit: per group, the q within +-window of the
 * current one with the least weighted error (indices re-assigned for every
 * candidate); ties keep the current q. Returns whether any q changed. */
static int search_scales(const float *w, const float *imp, int64_t cols, const uint8_t *mask, const float *cbf,
                         int32_t k, int window, uint8_t *gs) {
    const int64_t ng = opc_cb_groups(cols);
    int changed = 0;
    for (int64_t g = 0; g < ng; g++) {
        int64_t c0 = g * OPC_CB_GROUP, c1 = c0 + OPC_CB_GROUP < cols ? c0 + OPC_CB_GROUP : cols;
        int cur = gs[g], best = cur;
        double best_e = group_err(w, imp, c0, c1, mask, cbf, k, opc_cb_scale((uint8_t)cur));
        if (best_e == 0.0) continue;
        for (int q = cur - window; q <= cur + window; q++) {
            if (q < 0 || q > 255 || q == cur) continue;
            double e = group_err(w, imp, c0, c1, mask, cbf, k, opc_cb_scale((uint8_t)q));
            if (e < best_e) {
                best_e = e;
                best = q;
            }
        }
        if (best != cur) {
            gs[g] = (uint8_t)best;
            changed = 1;
        }
    }
    return changed;
}

/* Step (a): the row's codebook for fixed group scales (none: s = 1), fitted
 * on the non-outlier weights: weighted k-means of w / s with weights
 * imp * s^2, rounded to fp16 and sorted into cbf. */
static void fit_codebook(const float *w, const float *imp, int64_t cols, const opc_qmatrix_params *p,
                         uint64_t row_seed, row_ws *ws, const uint8_t *mask, const uint8_t *gs, float *cbf) {
    int32_t k = p->k;
    int64_t n = 0;
    for (int64_t c = 0; c < cols; c++) {
        if (mask && mask[c]) continue;
        float s = col_scale(gs, c);
        ws->xbuf[n] = w[c] / s;
        ws->wbuf[n] = imp[c] * s * s;
        n++;
    }
    float centers[OPC_KMEANS_MAX_K];
    double wsum = 0.0;
    for (int64_t i = 0; i < n; i++) wsum += ws->wbuf[i];
    if (n == 0) {
        for (int32_t j = 0; j < k; j++) centers[j] = 0.0f;
    } else if (p->method == OPC_QUANT_RTN) {
        float lo = ws->xbuf[0], hi = ws->xbuf[0];
        for (int64_t i = 1; i < n; i++) {
            if (ws->xbuf[i] < lo) lo = ws->xbuf[i];
            if (ws->xbuf[i] > hi) hi = ws->xbuf[i];
        }
        for (int32_t j = 0; j < k; j++)
            centers[j] = k == 1 ? 0.5f * (lo + hi) : lo + (hi - lo) * (float)j / (float)(k - 1);
    } else {
        if (!(wsum > 0.0)) /* tiny scales can underflow imp * s^2: fall back to plain weights */
            for (int64_t i = 0; i < n; i++) ws->wbuf[i] = 1.0f;
        double cost;
        if (p->method == OPC_QUANT_LLOYD) {
            opc_kmeans_opts o = {0, p->n_init, row_seed};
            cost = opc_kmeans_1d(ws->xbuf, ws->wbuf, n, k, &o, &ws->km, centers);
        } else {
            cost = opc_kmeans_1d_optimal(ws->xbuf, ws->wbuf, n, k, &ws->km, centers);
        }
        if (cost < 0.0)
            for (int32_t j = 0; j < k; j++) centers[j] = 0.0f; /* unreachable: weights are > 0 */
    }
    for (int32_t j = 0; j < k; j++) {
        float c = centers[j];
        if (!(c == c)) c = 0.0f;
        if (c > FP16_MAX) c = FP16_MAX;
        if (c < -FP16_MAX) c = -FP16_MAX;
        cbf[j] = opc_fp16_to_fp32(opc_fp32_to_fp16(c));
    }
    qsort(cbf, (size_t)k, sizeof *cbf, cmp_float); /* rounding keeps order; sort anyway */
}

/* Pack every column's nearest entry of its group's scaled codebook. */
static void assign_row(const float *w, int64_t cols, const float *cbf, int32_t k, int32_t bits, const uint8_t *gs,
                       uint8_t *idx_row, uint64_t row_bytes) {
    memset(idx_row, 0, (size_t)row_bytes);
    float t[OPC_KMEANS_MAX_K];
    for (int64_t c = 0; c < cols; c++) {
        if (c % OPC_CB_GROUP == 0) {
            float s = col_scale(gs, c);
            for (int32_t j = 0; j < k; j++) t[j] = gs ? s * cbf[j] : cbf[j];
        }
        opc_cb_set_index(idx_row, bits, c, (uint32_t)opc_kmeans_nearest(t, k, w[c]));
    }
}

/* Fit row r's codebook (and, with gs != NULL, its group scales) on its
 * non-outlier weights, round it to fp16 (sorted, finite), assign every
 * column to the nearest (scaled) entry and pack the indices. cbf receives
 * the fp16 values as floats. init_scales: start gs from the group
 * magnitudes; otherwise continue from the scales in gs. */
static void fit_row(const float *w, const float *imp, int64_t cols, const opc_qmatrix_params *p,
                    uint64_t row_seed, row_ws *ws, const uint8_t *mask, uint16_t *cb16, float *cbf,
                    uint8_t *idx_row, uint64_t row_bytes, uint8_t *gs, int init_scales) {
    const int32_t k = p->k;
    if (gs && init_scales) init_group_scales(w, imp, cols, mask, gs);
    const int rounds = gs ? (p->scale_rounds > 0 ? p->scale_rounds : 3) : 1;
    for (int it = 0; it < rounds; it++) {
        fit_codebook(w, imp, cols, p, row_seed, ws, mask, gs, cbf);
        /* +-8 steps = a factor 2^(+-1/2) per round: enough to correct the RMS
         * start within the rounds, cheap (17 candidates x 64 columns x k) */
        if (gs && !search_scales(w, imp, cols, mask, cbf, k, 8, gs)) break; /* fixed point */
    }
    for (int32_t j = 0; j < k; j++) cb16[j] = opc_fp32_to_fp16(cbf[j]);
    assign_row(w, cols, cbf, k, p->index_bits, gs, idx_row, row_bytes);
}

/* ---------------------------------------------------------- GPTQ ------- */

/* U = upper Cholesky factor of (H + lambda I)^-1, i.e. (H + lambda I)^-1 = U^T U.
 * With J the order reversal, J H J = M M^T (M lower) gives
 * H^-1 = (J M^-1 J)^T (J M^-1 J), and J M^-1 J is upper triangular: one
 * Cholesky and one triangular inverse, no explicit inverse of H.
 * lambda = damp * mean(diag H), raised tenfold until H is positive definite. */
static opc_status gptq_factor(const float *H, int64_t n, double damp, double **out) {
    *out = NULL;
    double *M = malloc((size_t)(n * n) * sizeof *M), *U = calloc((size_t)(n * n), sizeof *U);
    if (!M || !U) {
        free(M);
        free(U);
        return opc_error(OPC_ERR_NOMEM, "gptq: cannot allocate %lld x %lld factors", (long long)n, (long long)n);
    }
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0.0 ? mean / (double)n : 1.0;
    double lambda = (damp > 0.0 ? damp : 0.01) * mean;
    for (int attempt = 0; attempt < 6; attempt++, lambda *= 10.0) {
        /* M = J (H + lambda I) J, lower Cholesky in place */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) M[i * n + j] = (double)H[(n - 1 - i) * n + (n - 1 - j)] + (i == j ? lambda : 0.0);
        int ok = 1;
        for (int64_t j = 0; j < n && ok; j++) {
            double d = M[j * n + j];
            for (int64_t t = 0; t < j; t++) d -= M[j * n + t] * M[j * n + t];
            if (!(d > 0.0)) {
                ok = 0;
                break;
            }
            d = sqrt(d);
            M[j * n + j] = d;
            /* four rows i at a time: four independent chains of the same
             * sums in the same order (one chain alone waits on each add) */
#pragma omp parallel for schedule(static)
            for (int64_t i0 = j + 1; i0 < n; i0 += 4) {
                const double *mj = M + j * n;
                if (i0 + 4 <= n) {
                    const double *m0 = M + i0 * n, *m1 = m0 + n, *m2 = m1 + n, *m3 = m2 + n;
                    double v0 = m0[j], v1 = m1[j], v2 = m2[j], v3 = m3[j];
                    for (int64_t t = 0; t < j; t++) {
                        const double x = mj[t];
                        v0 -= m0[t] * x;
                        v1 -= m1[t] * x;
                        v2 -= m2[t] * x;
                        v3 -= m3[t] * x;
                    }
                    M[i0 * n + j] = v0 / d;
                    M[(i0 + 1) * n + j] = v1 / d;
                    M[(i0 + 2) * n + j] = v2 / d;
                    M[(i0 + 3) * n + j] = v3 / d;
                } else {
                    for (int64_t i = i0; i < n; i++) {
                        double v = M[i * n + j];
                        for (int64_t t = 0; t < j; t++) v -= M[i * n + t] * mj[t];
                        M[i * n + j] = v / d;
                    }
                }
            }
        }
        if (!ok) continue;
        /* Linv = M^-1 (lower), column by column; U[i][j] = Linv[n-1-i][n-1-j];
         * four columns j0..j0+3 at a time, interleaving their independent
         * chains; each entry is summed in the same order as alone. */
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t j0 = 0; j0 < n; j0 += 4) {
            const int nq = n - j0 < 4 ? (int)(n - j0) : 4;
            double *col = malloc((size_t)(4 * n) * sizeof *col); /* (4, n) */
            if (!col) continue; /* caught below: U stays 0 on the diagonal */
            for (int q = 0; q < nq; q++) { /* rows above the block's last column, one by one */
                const int64_t j = j0 + q;
                double *cq = col + q * n;
                cq[j] = 1.0 / M[j * n + j];
                for (int64_t i = j + 1; i < j0 + nq; i++) {
                    double v = 0.0;
                    for (int64_t t = j; t < i; t++) v -= M[i * n + t] * cq[t];
                    cq[i] = v / M[i * n + i];
                }
            }
            for (int64_t i = j0 + nq; i < n; i++) {
                const double *mi = M + i * n;
                double v[4] = {0.0, 0.0, 0.0, 0.0};
                for (int q = 0; q < nq; q++) /* each chain's first terms, before the common range */
                    for (int64_t t = j0 + q; t < j0 + nq; t++) v[q] -= mi[t] * col[q * n + t];
                if (nq == 4) {
                    const double *c0 = col, *c1 = col + n, *c2 = col + 2 * n, *c3 = col + 3 * n;
                    double v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
                    for (int64_t t = j0 + 4; t < i; t++) {
                        const double x = mi[t];
                        v0 -= x * c0[t];
                        v1 -= x * c1[t];
                        v2 -= x * c2[t];
                        v3 -= x * c3[t];
                    }
                    v[0] = v0, v[1] = v1, v[2] = v2, v[3] = v3;
                } else {
                    for (int q = 0; q < nq; q++)
                        for (int64_t t = j0 + nq; t < i; t++) v[q] -= mi[t] * col[q * n + t];
                }
                for (int q = 0; q < nq; q++) col[q * n + i] = v[q] / mi[i];
            }
            for (int q = 0; q < nq; q++)
                for (int64_t i = j0 + q; i < n; i++) U[(n - 1 - i) * n + (n - 1 - (j0 + q))] = col[q * n + i];
            free(col);
        }
        free(M);
        for (int64_t i = 0; i < n; i++)
            if (!(U[i * n + i] > 0.0)) {
                free(U);
                return opc_error(OPC_ERR_NOMEM, "gptq: factorisation scratch allocation failed");
            }
        *out = U;
        return OPC_OK;
    }
    free(M);
    free(U);
    return opc_error(OPC_ERR_INVALID_ARG, "gptq: Hessian is not positive definite even with damping");
}

opc_status opc_quant_gptq_factor(const float *H, int64_t n, double damp, double **U) {
    if (!H || n < 1 || !U) return opc_error(OPC_ERR_INVALID_ARG, "gptq: bad factor arguments (n %lld)", (long long)n);
    return gptq_factor(H, n, damp, U);
}

/* One GPTQ pass over a block of nr <= GPTQ_ROWS consecutive rows: per row,
 * round column c to its nearest codebook value (outlier columns: keep the
 * current value exactly), then spread the rounding error over the columns
 * after c. The rows are independent; they share each row U[c] of the
 * factor while it is in cache. W (nr, cols); cbf (nr, k); gs (nr, ng) or
 * NULL; mask (nr, cols); wu (nr, cols) scratch; idx (nr, row_bytes) out;
 * stored (nr, cols) out: the value represented at each column. */
static void gptq_rows(const float *W, int nr, int64_t cols, const double *U, const float *cbf, int32_t k,
                      int32_t bits, const uint8_t *gs, int64_t ng, const uint8_t *mask, double *wu, uint8_t *idx,
                      uint64_t row_bytes, float *stored) {
    for (int64_t i = 0; i < (int64_t)nr * cols; i++) wu[i] = W[i];
    memset(idx, 0, (size_t)nr * (size_t)row_bytes);
    float t[GPTQ_ROWS][OPC_KMEANS_MAX_K]; /* each row's codebook as scaled for column c's group */
    double e[GPTQ_ROWS];
    int who[GPTQ_ROWS];
    for (int64_t c = 0; c < cols; c++) {
        if (c % OPC_CB_GROUP == 0)
            for (int r = 0; r < nr; r++) {
                const float *cb = cbf + (int64_t)r * k;
                float s = gs ? col_scale(gs + (int64_t)r * ng, c) : 1.0f;
                for (int32_t j = 0; j < k; j++) t[r][j] = gs ? s * cb[j] : cb[j];
            }
        const double *restrict u = U + c * cols;
        int ne = 0;
        for (int r = 0; r < nr; r++) {
            double *x = wu + (int64_t)r * cols;
            int32_t j = opc_kmeans_nearest(t[r], k, (float)x[c]);
            opc_cb_set_index(idx + (uint64_t)r * row_bytes, bits, c, (uint32_t)j);
            double q = mask[(int64_t)r * cols + c] ? x[c] : (double)t[r][j];
            stored[(int64_t)r * cols + c] = (float)q;
            double er = (x[c] - q) / u[c];
            if (er != 0.0) {
                e[ne] = er;
                who[ne++] = r;
            }
        }
        int m = 0;
        for (; m + 1 < ne; m += 2) { /* two rows per pass over u: one load of u[i] for both */
            double *restrict x0 = wu + (int64_t)who[m] * cols, *restrict x1 = wu + (int64_t)who[m + 1] * cols;
            const double e0 = e[m], e1 = e[m + 1];
            /* omp simd: -O2's cheap vectoriser model leaves this scalar; the
             * lanes are independent, so the result is the same */
#pragma omp simd
            for (int64_t i = c + 1; i < cols; i++) {
                const double ui = u[i];
                x0[i] -= e0 * ui;
                x1[i] -= e1 * ui;
            }
        }
        for (; m < ne; m++) {
            double *restrict x = wu + (int64_t)who[m] * cols;
            const double em = e[m];
#pragma omp simd
            for (int64_t i = c + 1; i < cols; i++) x[i] -= em * u[i];
        }
    }
}

/* Solve the k x k normal equations A c = b (b in column k) of one row by
 * Gaussian elimination with partial pivoting into cbf (fp16-rounded,
 * sorted); entries with no column keep their value; a singular or
 * out-of-range solution keeps the old codebook. */
static void gptq_solve(double A[OPC_KMEANS_MAX_K][OPC_KMEANS_MAX_K + 2], int32_t k, float *cbf) {
    double tr = 0.0;
    for (int32_t i = 0; i < k; i++) tr += A[i][i];
    for (int32_t i = 0; i < k; i++) {
        if (A[i][i] == 0.0) { /* unused entry: keep it */
            for (int32_t j = 0; j <= k; j++) A[i][j] = 0.0;
            A[i][i] = 1.0;
            A[i][k] = cbf[i];
        } else {
            A[i][i] += 1e-9 * tr / k;
        }
    }
    for (int32_t col = 0; col < k; col++) { /* elimination with partial pivoting */
        int32_t piv = col;
        for (int32_t r = col + 1; r < k; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
        if (A[piv][col] == 0.0) return; /* singular: keep the old codebook */
        if (piv != col)
            for (int32_t j = 0; j <= k; j++) {
                double t = A[col][j];
                A[col][j] = A[piv][j];
                A[piv][j] = t;
            }
        for (int32_t r = 0; r < k; r++) {
            if (r == col) continue;
            double f = A[r][col] / A[col][col];
            if (f != 0.0)
                for (int32_t j = col; j <= k; j++) A[r][j] -= f * A[col][j];
        }
    }
    for (int32_t i = 0; i < k; i++) /* all or nothing: a partial update would leave it unsorted */
        if (!(fabs(A[i][k] / A[i][i]) <= FP16_MAX)) return; /* not finite / out of range: keep the old codebook */
    for (int32_t i = 0; i < k; i++) cbf[i] = (float)(A[i][k] / A[i][i]);
    for (int32_t i = 0; i < k; i++) cbf[i] = opc_fp16_to_fp32(opc_fp32_to_fp16(cbf[i]));
    qsort(cbf, (size_t)k, sizeof *cbf, cmp_float);
}

/* Least-squares codebooks for fixed assignments (and group scales s_c) in
 * the H metric, for a block of nr rows: per row minimise (w - q)^T H (w - q),
 * q_c = s_c cb[idx_c], over the k values, outlier columns fixed at
 * stored[c]. Normal equations
 * sum_{a in j} s_a (sum_b h_ab s_b cb[idx_b]) = sum_{a in j} s_a r_a,
 * A c = b (k x k). A row's sums do not depend on the other rows of the
 * block, which only share each row of H while it is in cache. With sym (H
 * exactly symmetric, as the calibration's is) A sums the pairs b > a once
 * and mirrors them: half the scattered adds, a different order of double
 * sums, far below the fp16 rounding of the codebook (SmolLM2 came out
 * bit-identical). The row data are interleaved (column-major over the
 * block) so the inner loop over rows reads contiguous memory.
 * W, stored (nr, cols); idx (nr, row_bytes); gs (nr, ng) or NULL;
 * mask (nr, cols); cbf (nr, k) in/out. */
static void gptq_refit_rows(const float *W, int nr, int64_t cols, const float *H, int sym, const uint8_t *idx,
                            uint64_t row_bytes, int32_t bits, const uint8_t *gs, int64_t ng, const uint8_t *mask,
                            const float *stored, int32_t k, row_ws *ws, float *cbf) {
    const int R = GPTQ_ROWS;
    const uint8_t skip = (uint8_t)(k + 1); /* outlier column: its A term goes to a junk slot */
    for (int r = 0; r < nr; r++) {
        const float *w = W + (int64_t)r * cols;
        const float *sr = stored + (int64_t)r * cols;
        const uint8_t *mr = mask + (int64_t)r * cols;
        const uint8_t *g = gs ? gs + (int64_t)r * ng : NULL;
        for (int64_t c = 0; c < cols; c++) {
            /* an outlier column's residual is fixed: h (w - stored) joins b */
            ws->tw[c * R + r] = mr[c] ? (double)w[c] - (double)sr[c] : (double)w[c];
            ws->tsc[c * R + r] = (double)col_scale(g, c);
            ws->tix[c * R + r] = mr[c] ? skip : (uint8_t)opc_cb_get_index(idx + (uint64_t)r * row_bytes, bits, c);
        }
    }
    for (int r = nr; r < R; r++) /* padding rows: their sums are never read */
        for (int64_t c = 0; c < cols; c++) ws->tw[c * R + r] = 0.0;
    /* rhs[a][r] = sum_b h_ab tw[b][r], b ascending, for four columns a at a
     * time: each tw[b] is loaded once for four of them, and a partial sum
     * is updated again only 64 sums later (no store-to-load chain) */
    for (int64_t a0 = 0; a0 < cols; a0 += 4) {
        const int n4 = cols - a0 < 4 ? (int)(cols - a0) : 4;
        double acc[4][GPTQ_ROWS];
        memset(acc, 0, sizeof acc);
        for (int64_t b = 0; b < cols; b++) {
            const double *tw = ws->tw + b * R;
            for (int q = 0; q < n4; q++) {
                const double hb = (double)H[(a0 + q) * cols + b];
                for (int r = 0; r < R; r++) acc[q][r] += hb * tw[r];
            }
        }
        memcpy(ws->rhs + a0 * R, acc, (size_t)n4 * sizeof acc[0]);
    }
    double A[GPTQ_ROWS][OPC_KMEANS_MAX_K][OPC_KMEANS_MAX_K + 2];
    double D[GPTQ_ROWS][OPC_KMEANS_MAX_K]; /* symmetric H: the a == b terms */
    memset(A, 0, sizeof A);
    memset(D, 0, sizeof D);
    for (int64_t a = 0; a < cols; a++) {
        const float *h = H + a * cols;
        double *Ap[GPTQ_ROWS]; /* A row of column a's entry, for the rows where a is not an outlier */
        double sa[GPTQ_ROWS];
        int ar[GPTQ_ROWS], na = 0;
        for (int r = 0; r < nr; r++) {
            const uint8_t ia = ws->tix[a * R + r];
            if (ia == skip) continue;
            Ap[na] = A[r][ia];
            sa[na] = ws->tsc[a * R + r];
            ar[na++] = r;
        }
        if (na == 0) continue;
        const double *rhs = ws->rhs + a * R;
        /* H symmetric: only b >= a, the pairs b > a stand for (b, a) too
         * (A = S + S^T + D below); otherwise every b */
        const int64_t b0 = sym ? a + 1 : 0;
        if (sym)
            for (int m = 0; m < na; m++) D[ar[m]][ws->tix[a * R + ar[m]]] += sa[m] * (double)h[a] * sa[m];
        if (!gs) { /* unit scales: s_a h s_b is h exactly */
            for (int64_t b = b0; b < cols; b++) {
                const double hb = (double)h[b];
                const uint8_t *ib = ws->tix + b * R;
                for (int m = 0; m < na; m++) Ap[m][ib[ar[m]]] += hb;
            }
        } else {
            for (int64_t b = b0; b < cols; b++) {
                const double hb = (double)h[b];
                const uint8_t *ib = ws->tix + b * R;
                const double *sb = ws->tsc + b * R;
                for (int m = 0; m < na; m++) Ap[m][ib[ar[m]]] += sa[m] * hb * sb[ar[m]];
            }
        }
        for (int m = 0; m < na; m++) Ap[m][k] += sa[m] * rhs[ar[m]];
    }
    if (sym) /* A = S + S^T + D: the strict upper pairs counted both ways */
        for (int r = 0; r < nr; r++)
            for (int32_t i = 0; i < k; i++) {
                for (int32_t j = 0; j < i; j++) A[r][i][j] = A[r][j][i] = A[r][i][j] + A[r][j][i];
                A[r][i][i] = 2.0 * A[r][i][i] + D[r][i];
            }
    for (int r = 0; r < nr; r++) gptq_solve(A[r], k, cbf + (int64_t)r * k);
}

/* ---------------------------------------------------------- one matrix - */

void opc_qmatrix_free(opc_qmatrix *q) {
    if (!q) return;
    opc_aligned_free(q->idx);
    opc_aligned_free(q->codebook);
    opc_aligned_free(q->ol_rowptr);
    opc_aligned_free(q->ol_col);
    opc_aligned_free(q->ol_val);
    opc_aligned_free(q->gscale);
    memset(q, 0, sizeof *q);
}

/* k-th smallest (0-based) of a[0..n) by quickselect with a three-way
 * partition (many equal errors are common: zero-error weights); reorders a. */
static float select_kth(float *a, uint64_t n, uint64_t kth) {
    uint64_t lo = 0, hi = n, rng = 0x5E1EC7ull;
    while (hi - lo > 1) {
        rng = mix64(rng);
        float pivot = a[lo + rng % (hi - lo)];
        uint64_t lt = lo, i = lo, gt = hi; /* [lo,lt) < pivot, [lt,gt) == pivot, [gt,hi) > pivot */
        while (i < gt) {
            float v = a[i];
            if (v < pivot) {
                a[i++] = a[lt];
                a[lt++] = v;
            } else if (v > pivot) {
                a[i] = a[--gt];
                a[gt] = v;
            } else {
                i++;
            }
        }
        if (kth < lt)
            hi = lt;
        else if (kth >= gt)
            lo = gt;
        else
            return pivot;
    }
    return a[lo];
}

void opc_quant_column_weights(const float *importance, int64_t cols, float *imp) {
    double mean = 0.0;
    if (importance)
        for (int64_t c = 0; c < cols; c++) mean += importance[c] > 0.0f ? importance[c] : 0.0f;
    mean /= (double)cols;
    for (int64_t c = 0; c < cols; c++) {
        if (!importance || !(mean > 0.0)) {
            imp[c] = 1.0f;
        } else {
            double v = importance[c] / mean; /* normalised: mean 1 */
            imp[c] = (float)(v > 1e-6 ? v : 1e-6);
        }
    }
}

opc_status opc_quantize_matrix(const float *W, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                               opc_qmatrix *out) {
    memset(out, 0, sizeof *out);
    if (!W || rows < 1 || cols < 1 || (p->index_bits != 2 && p->index_bits != 4) || p->k < 1 ||
        p->k > (1 << p->index_bits) || !(p->outlier_frac >= 0.0 && p->outlier_frac <= 0.5))
        return opc_error(OPC_ERR_INVALID_ARG, "quantize_matrix: bad arguments (%lld x %lld, %d-bit, k %d, "
                         "outliers %g)", (long long)rows, (long long)cols, p->index_bits, p->k, p->outlier_frac);
    if (p->rot_log2 < 0 || p->rot_log2 > OPC_CB_ROT_MAX_LOG2 || cols % ((int64_t)1 << p->rot_log2) != 0)
        return opc_error(OPC_ERR_INVALID_ARG, "quantize_matrix: rotation block 2^%d does not divide %lld columns "
                         "(max 2^%d)", p->rot_log2, (long long)cols, OPC_CB_ROT_MAX_LOG2);
    const uint64_t nel = (uint64_t)rows * (uint64_t)cols;
    const uint64_t rb = opc_cb_row_bytes(p->index_bits, cols);
    const int32_t k = p->k;
    const int64_t ng = opc_cb_groups(cols);
    int nt = p->n_threads > 0 ? p->n_threads : omp_get_max_threads();
    if (nt < 1) nt = 1;
    uint64_t n_out = opc_quant_outlier_count(rows, cols, p->outlier_frac);
    if (n_out >= (1ull << 32)) return opc_error(OPC_ERR_INVALID_ARG, "quantize_matrix: too many outliers");

    opc_status st = OPC_OK;
    float *imp = malloc((size_t)cols * sizeof *imp);
    float *err = n_out ? malloc((size_t)nel * sizeof *err) : NULL;
    float *cbf_all = malloc((size_t)rows * (size_t)k * sizeof *cbf_all); /* (rows, k) float codebooks */
    row_ws *ws = calloc((size_t)nt, sizeof *ws);
    /* rotated copy of W (rows, cols): the matrix actually quantized */
    float *wrot = p->rot_log2 > 0 ? opc_aligned_alloc((size_t)nel * sizeof *wrot) : NULL;
    out->idx = opc_aligned_alloc((size_t)(rows * (int64_t)rb));
    out->codebook = opc_aligned_alloc((size_t)rows * (size_t)k * 2);
    if (p->group_scales) out->gscale = opc_aligned_alloc((size_t)rows * (size_t)ng);
    if (!imp || (n_out && !err) || !cbf_all || !ws || !out->idx || !out->codebook ||
        (p->rot_log2 > 0 && !wrot) || (p->group_scales && !out->gscale)) {
        st = opc_error(OPC_ERR_NOMEM, "quantize_matrix: cannot allocate for %lld x %lld", (long long)rows,
                       (long long)cols);
        goto done;
    }
    for (int i = 0; i < nt && st == OPC_OK; i++) st = row_ws_init(&ws[i], cols, p->hessian != NULL);
    if (st) goto done;
    if (wrot) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            memcpy(wrot + (uint64_t)r * (uint64_t)cols, W + (uint64_t)r * (uint64_t)cols, (size_t)cols * sizeof *W);
            opc_cb_rotate(wrot + (uint64_t)r * (uint64_t)cols, cols, p->rot_log2);
        }
        W = wrot; /* from here on, everything happens in the rotated basis */
    }

    opc_quant_column_weights(p->importance, cols, imp);

    /* A cluster this small (4 weights, or 4x a row's average outlier budget)
     * is treated as movable whole into the sparse part; see the score below. */
    int64_t tiny = n_out ? (int64_t)ceil(4.0 * p->outlier_frac * (double)cols) : 0;
    if (n_out && tiny < 4) tiny = 4;

    /* Pass 1: every row on all its weights. */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8)
    for (int64_t r = 0; r < rows; r++) {
        if (p->interrupt && *p->interrupt) continue;
        row_ws *w = &ws[omp_get_thread_num()];
        const float *wr = W + (uint64_t)r * (uint64_t)cols;
        float *cbf = cbf_all + (uint64_t)r * (uint64_t)k;
        uint8_t *gs = out->gscale ? out->gscale + (uint64_t)r * (uint64_t)ng : NULL;
        fit_row(wr, imp, cols, p, mix64(p->seed ^ (uint64_t)r), w, NULL, out->codebook + (uint64_t)r * (uint64_t)k,
                cbf, out->idx + (uint64_t)r * rb, rb, gs, 1);
        if (err) {
            /* Outlier score = weighted error, except for members of a tiny
             * cluster (at most `tiny` weights, e.g. a lone spike that took a
             * codebook entry for itself and so has no error): they score
             * the error they would have without their entry, because moving
             * them to the sparse part frees that entry for the bulk. */
            const uint8_t *ir = out->idx + (uint64_t)r * rb;
            int64_t count[OPC_KMEANS_MAX_K] = {0};
            for (int64_t c = 0; c < cols; c++) count[opc_cb_get_index(ir, p->index_bits, c)]++;
            for (int64_t c = 0; c < cols; c++) {
                uint32_t j = opc_cb_get_index(ir, p->index_bits, c);
                float s = col_scale(gs, c); /* scaled error: what the stored weight misses */
                float d = wr[c] - s * cbf[j];
                float e = imp[c] * d * d;
                if (count[j] <= tiny && k > 1) {
                    float alt = INFINITY;
                    for (int32_t o = 0; o < k; o++) {
                        float da = wr[c] - s * cbf[o];
                        if ((uint32_t)o != j && cbf[o] != cbf[j] && da * da < alt) alt = da * da;
                    }
                    if (alt < INFINITY) e = imp[c] * alt;
                }
                err[(uint64_t)r * (uint64_t)cols + (uint64_t)c] = e;
            }
        }
    }
    if (p->interrupt && *p->interrupt) {
        st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
        goto done;
    }

    if (n_out) {
        /* Pass 2: the n_out largest weighted errors of the whole tensor become
         * outliers (ties broken in row-major order, so the choice is
         * deterministic); zero-error weights are never chosen. */
        float *tmp = malloc((size_t)nel * sizeof *tmp);
        if (!tmp) {
            st = opc_error(OPC_ERR_NOMEM, "quantize_matrix: cannot allocate outlier scratch");
            goto done;
        }
        memcpy(tmp, err, (size_t)nel * sizeof *tmp);
        float thr = select_kth(tmp, nel, nel - n_out);
        free(tmp);
        uint64_t n_gt = 0, n_pos = 0;
        for (uint64_t i = 0; i < nel; i++) {
            n_gt += err[i] > thr;
            n_pos += err[i] > 0.0f;
        }
        if (n_out > n_pos) n_out = n_pos;
        uint64_t n_eq = n_out > n_gt ? n_out - n_gt : 0;
        out->ol_rowptr = opc_aligned_alloc(((size_t)rows + 1) * 4);
        out->ol_col = opc_aligned_alloc(n_out ? (size_t)n_out * 2 : 1);
        out->ol_val = opc_aligned_alloc(n_out ? (size_t)n_out * 2 : 1);
        if (!out->ol_rowptr || !out->ol_col || !out->ol_val) {
            st = opc_error(OPC_ERR_NOMEM, "quantize_matrix: cannot allocate %llu outliers", (unsigned long long)n_out);
            goto done;
        }
        uint64_t o = 0;
        out->ol_rowptr[0] = 0;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) {
                float e = err[(uint64_t)r * (uint64_t)cols + (uint64_t)c];
                int take = e > 0.0f && (e > thr || (e == thr && n_eq > 0));
                if (take && o < n_out) {
                    if (!(e > thr)) n_eq--;
                    out->ol_col[o++] = (uint16_t)c;
                }
            }
            out->ol_rowptr[r + 1] = (uint32_t)o;
        }
        n_out = o;
        /* Pass 3: refit rows that lost weights to the sparse part, then store
         * each outlier as the fp16 delta from its (new) nearest entry. */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 8)
        for (int64_t r = 0; r < rows; r++) {
            uint32_t a = out->ol_rowptr[r], b = out->ol_rowptr[r + 1];
            if (a == b || (p->interrupt && *p->interrupt)) continue;
            row_ws *w = &ws[omp_get_thread_num()];
            const float *wr = W + (uint64_t)r * (uint64_t)cols;
            float *cbf = cbf_all + (uint64_t)r * (uint64_t)k;
            uint8_t *ir = out->idx + (uint64_t)r * rb;
            uint8_t *gs = out->gscale ? out->gscale + (uint64_t)r * (uint64_t)ng : NULL;
            for (uint32_t i = a; i < b; i++) w->mask[out->ol_col[i]] = 1;
            fit_row(wr, imp, cols, p, mix64(p->seed ^ (uint64_t)r ^ 0x5EEDull), w, w->mask,
                    out->codebook + (uint64_t)r * (uint64_t)k, cbf, ir, rb, gs, 1); /* magnitudes without the outliers */
            for (uint32_t i = a; i < b; i++) { /* deltas are not scaled (cb.h) */
                uint16_t c = out->ol_col[i];
                w->mask[c] = 0;
                float v = col_scale(gs, c) * cbf[opc_cb_get_index(ir, p->index_bits, c)];
                out->ol_val[i] = opc_fp32_to_fp16(wr[c] - v);
            }
        }
        if (p->interrupt && *p->interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
            goto done;
        }
    }

    if (p->hessian) {
        /* Pass 4 (GPTQ): per row, error-feedback rounding with the pass-1/3
         * codebook, least-squares refit of the codebook in the H metric,
         * error-feedback rounding again. Outliers keep the value GPTQ has
         * driven them to (stored as a delta from their codebook entry). */
        const float *H = p->hessian;
        double *U_own = NULL; /* the factor, unless the caller has it already */
        const double *U = p->gptq_u;
        if (!U) {
            st = gptq_factor(H, cols, p->damp, &U_own);
            if (st) goto done;
            U = U_own;
        }
        int sym = 1; /* exactly symmetric H (the calibration's is): the refit sums half of it */
        for (int64_t a = 0; a < cols && sym; a++)
            for (int64_t b = 0; b < a; b++)
                if (H[a * cols + b] != H[b * cols + a]) {
                    sym = 0;
                    break;
                }
        const int64_t nblk = (rows + GPTQ_ROWS - 1) / GPTQ_ROWS;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t bi = 0; bi < nblk; bi++) {
            if (p->interrupt && *p->interrupt) continue;
            row_ws *w = &ws[omp_get_thread_num()];
            const int64_t r0 = bi * GPTQ_ROWS;
            const int nr = (int)(rows - r0 < GPTQ_ROWS ? rows - r0 : GPTQ_ROWS);
            const float *wr = W + (uint64_t)r0 * (uint64_t)cols;
            float *cbf = cbf_all + (uint64_t)r0 * (uint64_t)k;
            uint8_t *ir = out->idx + (uint64_t)r0 * rb;
            /* the group scales stay as the k-means fit chose them */
            const uint8_t *gs = out->gscale ? out->gscale + (uint64_t)r0 * (uint64_t)ng : NULL;
            for (int r = 0; r < nr; r++)
                for (uint32_t i = n_out ? out->ol_rowptr[r0 + r] : 0; i < (n_out ? out->ol_rowptr[r0 + r + 1] : 0); i++)
                    w->gmask[(int64_t)r * cols + out->ol_col[i]] = 1;
            gptq_rows(wr, nr, cols, U, cbf, k, p->index_bits, gs, ng, w->gmask, w->wu, ir, rb, w->stored);
            gptq_refit_rows(wr, nr, cols, H, sym, ir, rb, p->index_bits, gs, ng, w->gmask, w->stored, k, w, cbf);
            gptq_rows(wr, nr, cols, U, cbf, k, p->index_bits, gs, ng, w->gmask, w->wu, ir, rb, w->stored);
            for (int r = 0; r < nr; r++) {
                const int64_t row = r0 + r;
                const float *cb = cbf + (int64_t)r * k;
                const uint8_t *g = gs ? gs + (int64_t)r * ng : NULL;
                for (int32_t j = 0; j < k; j++) out->codebook[(uint64_t)row * (uint64_t)k + (uint64_t)j] = opc_fp32_to_fp16(cb[j]);
                uint32_t a = n_out ? out->ol_rowptr[row] : 0, b = n_out ? out->ol_rowptr[row + 1] : 0;
                for (uint32_t i = a; i < b; i++) {
                    uint16_t c = out->ol_col[i];
                    w->gmask[(int64_t)r * cols + c] = 0;
                    float v = col_scale(g, c) * cb[opc_cb_get_index(ir + (uint64_t)r * rb, p->index_bits, c)];
                    out->ol_val[i] = opc_fp32_to_fp16(w->stored[(int64_t)r * cols + c] - v);
                }
            }
        }
        free(U_own);
        if (p->interrupt && *p->interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
            goto done;
        }
    }

    opc_cb_matrix *m = &out->m;
    m->rows = rows;
    m->cols = cols;
    m->bits = p->index_bits;
    m->k = k;
    m->idx = out->idx;
    m->row_bytes = rb;
    m->codebook = out->codebook;
    m->gscale = out->gscale;
    m->rot_log2 = p->rot_log2;
    m->n_outliers = n_out;
    if (n_out) {
        m->ol_rowptr = out->ol_rowptr;
        m->ol_col = out->ol_col;
        m->ol_val = out->ol_val;
    } else { /* no sparse part: drop the (empty) arrays */
        opc_aligned_free(out->ol_rowptr);
        opc_aligned_free(out->ol_col);
        opc_aligned_free(out->ol_val);
        out->ol_rowptr = NULL;
        out->ol_col = out->ol_val = NULL;
    }

    /* Error of what is actually stored, through the reference dequantizer. */
    double num = 0.0, den = 0.0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : num, den)
    for (int64_t r = 0; r < rows; r++) {
        row_ws *w = &ws[omp_get_thread_num()];
        const float *wr = W + (uint64_t)r * (uint64_t)cols;
        opc_cb_dequant_row_ref(m, r, w->deq);
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)wr[c] - (double)w->deq[c];
            num += (double)imp[c] * d * d;
            den += (double)imp[c] * (double)wr[c] * (double)wr[c];
        }
    }
    out->err_num = num;
    out->err_den = den;
    st = opc_cb_validate(m, "quantize_matrix");

done:
    if (ws)
        for (int i = 0; i < nt; i++) row_ws_free(&ws[i]);
    free(ws);
    free(imp);
    free(err);
    free(cbf_all);
    opc_aligned_free(wrot);
    if (st != OPC_OK) opc_qmatrix_free(out);
    return st;
}

/* ---------------------------------------------------------- importance -- */

void opc_importance_free(opc_importance *imp) {
    if (!imp) return;
    for (int32_t i = 0; i < imp->n; i++) {
        free(imp->sumsq ? imp->sumsq[i] : NULL);
        free(imp->sumsq_rot ? imp->sumsq_rot[i] : NULL);
        if (imp->hess && imp->hess_owner && imp->hess_owner[i] == i) free(imp->hess[i]);
    }
    free(imp->sumsq);
    free(imp->sumsq_rot);
    free(imp->hess);
    free(imp->hess_owner);
    free(imp->names);
    free(imp->cols);
    free(imp->count);
    memset(imp, 0, sizeof *imp);
}

static int32_t imp_find(const opc_importance *imp, const char *name) {
    for (int32_t i = 0; i < imp->n; i++)
        if (!strcmp(imp->names[i], name)) return i;
    return -1;
}

int opc_importance_get(const opc_importance *imp, const char *name, int64_t cols, float *dst) {
    return opc_importance_get_rotated(imp, name, cols, 0, dst);
}

int opc_importance_get_rotated(const opc_importance *imp, const char *name, int64_t cols, int32_t rot_log2,
                               float *dst) {
    if (!imp) return 0;
    int32_t i = imp_find(imp, name);
    /* the tied head reads token_embd: its input columns are the output head's */
    if (i < 0 && !strcmp(name, "token_embd.weight")) i = imp_find(imp, "output.weight");
    if (i < 0 || imp->cols[i] != cols || imp->count[i] == 0) return 0;
    const double *s = imp->sumsq[i];
    if (rot_log2 > 0) { /* only the block the calibration rotated with */
        if (!imp->sumsq_rot || !imp->sumsq_rot[i] || rot_log2 != opc_quant_rot_log2(cols, imp->rot_max_log2))
            return 0;
        s = imp->sumsq_rot[i];
    }
    for (int64_t c = 0; c < cols; c++) dst[c] = (float)s[c];
    return 1;
}

/* Rotate every row (H R), transpose (R^T H, H symmetric), rotate every row
 * again: R^T H R. */
opc_status opc_quant_rotate_hessian(const float *H, int64_t n, int32_t rot_log2, float **out) {
    *out = NULL;
    float *A = opc_aligned_alloc((size_t)(n * n) * sizeof *A), *B = opc_aligned_alloc((size_t)(n * n) * sizeof *B);
    if (!A || !B) {
        opc_aligned_free(A);
        opc_aligned_free(B);
        return opc_error(OPC_ERR_NOMEM, "cannot allocate a rotated %lld x %lld Hessian", (long long)n, (long long)n);
    }
    memcpy(A, H, (size_t)(n * n) * sizeof *A);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) opc_cb_rotate(A + i * n, n, rot_log2);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) B[j * n + i] = A[i * n + j];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) opc_cb_rotate(B + i * n, n, rot_log2);
    opc_aligned_free(A);
    *out = B;
    return OPC_OK;
}

const float *opc_importance_hessian(const opc_importance *imp, const char *name, int64_t cols) {
    if (!imp || !imp->hess) return NULL;
    int32_t i = imp_find(imp, name);
    if (i < 0 && !strcmp(name, "token_embd.weight")) i = imp_find(imp, "output.weight");
    if (i < 0 || imp->cols[i] != cols || imp->count[i] == 0) return NULL;
    return imp->hess[i];
}

typedef struct calib_state {
    opc_importance *imp;
    int32_t cap;
    int failed;
    int with_hessian;
    /* the previous hook call's X, to share one Hessian among q/k/v (and
     * gate/up), which see the same input */
    float *last_x;
    size_t last_cap;
    int last_n, last_cols;
    int32_t last_owner;
    /* rot_max_log2 > 0: rotatable tensors also get sums of squares of
     * R^T x, the basis their rotated rows live in (xr: scratch) */
    int32_t rot_max_log2;
    float *xr;
    size_t xr_cap;
    /* activation rows not yet added to their Hessian, per owner entry
     * (cap of them, each (HESS_BATCH, cols)): one blocked update per batch
     * instead of one pass over H per token */
    float **pend;
    int32_t *pend_n;
} calib_state;

/* Rows per Hessian update. */
#define HESS_BATCH 64
/* Columns of H a thread keeps in an L1-resident accumulator while it
 * streams the batch's rows: (HESS_BATCH x HESS_TILE) floats of X = 32 KB. */
#define HESS_TILE 128

/* H += X^T X on the upper triangle, X (n, cols), one row a of H per call
 * (h = H[a]); hess_update runs the rows in parallel. Every element receives its
 * n products in row order, each added unless x[t][a] == 0, exactly as n
 * rank-1 updates would: the result does not depend on the batching. */
static void hess_row(float *h, const float *X, int n, int cols, int a) {
    float acc[HESS_TILE];
    for (int b0 = a; b0 < cols; b0 += HESS_TILE) {
        const int nb = cols - b0 < HESS_TILE ? cols - b0 : HESS_TILE;
        memcpy(acc, h + b0, (size_t)nb * sizeof *acc);
        for (int t = 0; t < n; t++) {
            const float *x = X + (size_t)t * (size_t)cols;
            const float xa = x[a];
            if (xa == 0.0f) continue;
#pragma omp simd /* independent lanes: the same sums as scalar code */
            for (int j = 0; j < nb; j++) acc[j] += xa * x[b0 + j];
        }
        memcpy(h + b0, acc, (size_t)nb * sizeof *acc);
    }
}

static void hess_update(float *H, const float *X, int n, int cols) {
#pragma omp parallel for schedule(dynamic, 8)
    for (int a = 0; a < cols; a++) hess_row(H + (size_t)a * (size_t)cols, X, n, cols, a);
}

/* Add owner o's pending rows to its Hessian. */
static void hess_flush(calib_state *cs, int32_t o) {
    if (!cs->pend || !cs->pend[o] || cs->pend_n[o] == 0) return;
    hess_update(cs->imp->hess[o], cs->pend[o], cs->pend_n[o], (int)cs->imp->cols[o]);
    cs->pend_n[o] = 0;
}

/* Activation hook: sum x^2 per input column of the named weight. Runs on the
 * forward pass's calling thread, between matmuls. */
static void calib_hook(void *user, int layer, const char *name, const float *X, int n, int cols) {
    (void)layer;
    calib_state *cs = user;
    opc_importance *imp = cs->imp;
    if (cs->failed) return;
    int32_t i = imp_find(imp, name);
    if (i < 0) {
        if (imp->n == cs->cap) {
            int32_t cap = cs->cap ? 2 * cs->cap : 256;
            void *a = realloc(imp->names, (size_t)cap * sizeof *imp->names);
            if (a) imp->names = a;
            void *b = realloc(imp->cols, (size_t)cap * sizeof *imp->cols);
            if (b) imp->cols = b;
            void *c = realloc(imp->sumsq, (size_t)cap * sizeof *imp->sumsq);
            if (c) imp->sumsq = c;
            void *c2 = realloc(imp->sumsq_rot, (size_t)cap * sizeof *imp->sumsq_rot);
            if (c2) imp->sumsq_rot = c2;
            void *d = realloc(imp->count, (size_t)cap * sizeof *imp->count);
            if (d) imp->count = d;
            void *e = realloc(imp->hess, (size_t)cap * sizeof *imp->hess);
            if (e) imp->hess = e;
            void *g = realloc(imp->hess_owner, (size_t)cap * sizeof *imp->hess_owner);
            if (g) imp->hess_owner = g;
            void *pp = realloc(cs->pend, (size_t)cap * sizeof *cs->pend);
            if (pp) cs->pend = pp;
            void *pn = realloc(cs->pend_n, (size_t)cap * sizeof *cs->pend_n);
            if (pn) cs->pend_n = pn;
            if (!a || !b || !c || !c2 || !d || !e || !g || !pp || !pn) {
                cs->failed = 1;
                return;
            }
            cs->cap = cap;
        }
        i = imp->n;
        imp->sumsq[i] = calloc((size_t)cols, sizeof(double));
        imp->sumsq_rot[i] = NULL;
        if (!imp->sumsq[i]) {
            cs->failed = 1;
            return;
        }
        snprintf(imp->names[i], OPC_MAX_NAME, "%s", name);
        imp->cols[i] = cols;
        imp->count[i] = 0;
        imp->hess[i] = NULL;
        imp->hess_owner[i] = -1;
        cs->pend[i] = NULL;
        cs->pend_n[i] = 0;
        imp->n++;
    }
    if (imp->cols[i] != cols) return;
    double *s = imp->sumsq[i];
    for (int t = 0; t < n; t++) {
        const float *x = X + (size_t)t * (size_t)cols;
        for (int c = 0; c < cols; c++) s[c] += (double)x[c] * (double)x[c];
    }
    /* Rotated sums of squares too, so that the quantizer can rotate any
     * subset of the tensors (the Hessian stays unrotated: the quantizer
     * rotates it, R^T H R, for the tensors it rotates). */
    const int32_t lg = opc_quant_rotatable(name) ? opc_quant_rot_log2(cols, cs->rot_max_log2) : 0;
    if (lg > 0) {
        size_t need = (size_t)n * (size_t)cols;
        if (!imp->sumsq_rot[i]) imp->sumsq_rot[i] = calloc((size_t)cols, sizeof(double));
        if (need > cs->xr_cap) {
            float *nb = realloc(cs->xr, need * sizeof *nb);
            if (nb) {
                cs->xr = nb;
                cs->xr_cap = need;
            }
        }
        if (!imp->sumsq_rot[i] || need > cs->xr_cap) {
            cs->failed = 1;
            return;
        }
        memcpy(cs->xr, X, need * sizeof *X);
        double *sr = imp->sumsq_rot[i];
        for (int t = 0; t < n; t++) {
            float *x = cs->xr + (size_t)t * (size_t)cols;
            opc_cb_rotate(x, cols, lg);
            for (int c = 0; c < cols; c++) sr[c] += (double)x[c] * (double)x[c];
        }
    }
    imp->count[i] += n;
    if (!cs->with_hessian) return;

    size_t nx = (size_t)n * (size_t)cols;
    int same = cs->last_owner >= 0 && n == cs->last_n && cols == cs->last_cols &&
               !memcmp(cs->last_x, X, nx * sizeof *X);
    if (same && (imp->hess_owner[i] < 0 || imp->hess_owner[i] == cs->last_owner)) {
        /* same input as the previous weight: its Hessian already has these rows */
        imp->hess_owner[i] = cs->last_owner;
        imp->hess[i] = imp->hess[cs->last_owner];
        return;
    }
    if (imp->hess_owner[i] < 0) {
        imp->hess[i] = calloc((size_t)cols * (size_t)cols, sizeof(float));
        if (!imp->hess[i]) {
            cs->failed = 1;
            return;
        }
        imp->hess_owner[i] = i;
    }
    int32_t o = imp->hess_owner[i];
    /* queue the rows; the upper triangle of sum x x^T grows a batch at a time */
    if (!cs->pend[o]) {
        cs->pend[o] = malloc((size_t)HESS_BATCH * (size_t)cols * sizeof(float));
        if (!cs->pend[o]) {
            cs->failed = 1;
            return;
        }
    }
    for (int t = 0; t < n; t++) {
        memcpy(cs->pend[o] + (size_t)cs->pend_n[o] * (size_t)cols, X + (size_t)t * (size_t)cols,
               (size_t)cols * sizeof *X);
        if (++cs->pend_n[o] == HESS_BATCH) hess_flush(cs, o);
    }
    if (nx > cs->last_cap) {
        float *nb = realloc(cs->last_x, nx * sizeof *nb);
        if (!nb) {
            cs->failed = 1;
            return;
        }
        cs->last_x = nb;
        cs->last_cap = nx;
    }
    memcpy(cs->last_x, X, nx * sizeof *X);
    cs->last_n = n;
    cs->last_cols = cols;
    cs->last_owner = o;
}

static opc_status calib_finish(calib_state *cs, opc_status st) {
    if (st == OPC_OK && cs->failed) st = opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate statistics");
    opc_importance *imp = cs->imp;
    for (int32_t i = 0; i < imp->n && cs->pend; i++) {
        if (st == OPC_OK && !cs->failed) hess_flush(cs, i);
        free(cs->pend[i]);
    }
    free(cs->pend);
    free(cs->pend_n);
    free(cs->last_x);
    free(cs->xr);
    cs->imp->rot_max_log2 = cs->rot_max_log2;
    if (st == OPC_OK && imp->hess) /* mirror the upper triangles: full symmetric matrices */
        for (int32_t i = 0; i < imp->n; i++) {
            if (imp->hess_owner[i] != i) continue;
            float *H = imp->hess[i];
            int64_t c = imp->cols[i];
            for (int64_t a = 0; a < c; a++)
                for (int64_t b = 0; b < a; b++) H[a * c + b] = H[b * c + a];
        }
    if (st != OPC_OK) opc_importance_free(cs->imp);
    return st;
}

/* The forward pass a calibration runs (r: exactly one of r.cpu, r.cuda):
 * the CPU reference with calib_hook, or the CUDA pass with the same
 * statistics summed on the GPU (src/cuda/calib_cuda.h). */
typedef struct calib_pass {
    opc_runner r;
#ifdef OPC_HAVE_CUDA
    opc_cuda_act_stats *stats;
#endif
    int with_hessian;
    int32_t rot_max_log2;
} calib_pass;

#ifdef OPC_HAVE_CUDA
/* The GPU pass with statistics for contexts of ctx tokens in calls of up to
 * max_batch; the caller falls back to the CPU on any error. */
static opc_status calib_gpu_open(calib_pass *cp, const opc_model_desc *d, int32_t ctx, int32_t max_batch) {
    const opc_config *c = &d->cfg;
    const int64_t cols[OPC_ACT_SITES] = {c->dim, (int64_t)c->n_heads * c->head_dim, c->dim, c->hidden_dim, c->dim};
    int32_t rot[OPC_ACT_SITES] = {0};
    for (int i = 0; i < OPC_ACT_SITES; i++) /* every site but the head's is rotatable (opc_quant_rotatable) */
        rot[i] = i == OPC_ACT_HEAD_IN ? 0 : opc_quant_rot_log2(cols[i], cp->rot_max_log2);
    opc_status st = opc_runner_init(&cp->r, d, "cuda", ctx, max_batch, 0);
    if (st == OPC_OK) st = opc_cuda_act_stats_init(&cp->stats, c, max_batch, cp->with_hessian, rot);
    if (st != OPC_OK) {
        opc_runner_free(&cp->r);
        return st;
    }
    opc_cuda_forward_set_stats(cp->r.cuda, cp->stats);
    return OPC_OK;
}

/* The GPU's sums as the CPU hook would have left them in imp: the entries
 * in the order the forward pass meets the weights (blk.0 q, k, v, output,
 * gate, up, down, blk.1 ..., output.weight when any logits were computed),
 * one download per site, copied to every weight that reads it (q/k/v and
 * gate/up share one Hessian, owned by q and gate). */
static opc_status calib_gpu_collect(calib_pass *cp, const opc_config *c, opc_importance *imp) {
    static const struct { const char *name; opc_act_site site; } part[] = {
        {"attn_q", OPC_ACT_ATTN_IN},  {"attn_k", OPC_ACT_ATTN_IN}, {"attn_v", OPC_ACT_ATTN_IN},
        {"attn_output", OPC_ACT_ATTN_OUT}, {"ffn_gate", OPC_ACT_FFN_IN}, {"ffn_up", OPC_ACT_FFN_IN},
        {"ffn_down", OPC_ACT_DOWN_IN}};
    const int32_t np = (int32_t)(sizeof part / sizeof part[0]), cap = c->n_layers * np + 1;
    imp->names = calloc((size_t)cap, sizeof *imp->names);
    imp->cols = calloc((size_t)cap, sizeof *imp->cols);
    imp->count = calloc((size_t)cap, sizeof *imp->count);
    imp->sumsq = calloc((size_t)cap, sizeof *imp->sumsq);
    imp->sumsq_rot = calloc((size_t)cap, sizeof *imp->sumsq_rot);
    imp->hess = calloc((size_t)cap, sizeof *imp->hess);
    imp->hess_owner = calloc((size_t)cap, sizeof *imp->hess_owner);
    if (!imp->names || !imp->cols || !imp->count || !imp->sumsq || !imp->sumsq_rot || !imp->hess || !imp->hess_owner)
        return opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate statistics");
    int32_t first = -1; /* the entry of the current site's first weight: it downloads, the others copy it */
    for (int32_t l = 0; l <= c->n_layers; l++) {
        const int head = l == c->n_layers;
        for (int32_t p = 0; p < (head ? 1 : np); p++) {
            const opc_act_site site = head ? OPC_ACT_HEAD_IN : part[p].site;
            const int64_t cols = opc_cuda_act_stats_cols(cp->stats, site);
            const int64_t rows = opc_cuda_act_stats_rows(cp->stats, l, site);
            if (head && rows == 0) break; /* the CPU hook never saw the head */
            if (head || p == 0 || part[p - 1].site != site) first = imp->n;
            const int32_t lg = head ? 0 : opc_quant_rot_log2(cols, cp->rot_max_log2);
            const int32_t i = imp->n++;
            if (head)
                snprintf(imp->names[i], OPC_MAX_NAME, "output.weight");
            else
                snprintf(imp->names[i], OPC_MAX_NAME, "blk.%d.%s.weight", l, part[p].name);
            imp->cols[i] = cols;
            imp->count[i] = rows;
            imp->hess_owner[i] = cp->with_hessian ? first : -1;
            imp->sumsq[i] = malloc((size_t)cols * sizeof(double));
            imp->sumsq_rot[i] = lg > 0 ? malloc((size_t)cols * sizeof(double)) : NULL;
            if (!imp->sumsq[i] || (lg > 0 && !imp->sumsq_rot[i]))
                return opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate statistics");
            if (i != first) { /* same input as entry `first` */
                memcpy(imp->sumsq[i], imp->sumsq[first], (size_t)cols * sizeof(double));
                if (lg > 0) memcpy(imp->sumsq_rot[i], imp->sumsq_rot[first], (size_t)cols * sizeof(double));
                imp->hess[i] = imp->hess[first];
                continue;
            }
            if (cp->with_hessian && !(imp->hess[i] = malloc((size_t)cols * (size_t)cols * sizeof(float))))
                return opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate a %lld x %lld Hessian", (long long)cols,
                                 (long long)cols);
            opc_status st = opc_cuda_act_stats_get(cp->stats, l, site, imp->sumsq[i], imp->sumsq_rot[i], imp->hess[i]);
            if (st != OPC_OK) return st;
        }
    }
    return OPC_OK;
}
#endif

/* Open the pass for contexts of ctx tokens in calls of up to max_batch
 * (gpu_batch on the GPU). device 1: the GPU unless the build has no CUDA,
 * OPC_CUDA_CALIB=0 is set, or the model cannot go there (no device, a shape
 * the CUDA pass does not take, too little device memory): then the CPU, with
 * a warning that says why. */
static opc_status calib_pass_open(calib_pass *cp, const opc_model_desc *d, int32_t ctx, int32_t max_batch,
                                  int32_t gpu_batch, int32_t n_threads, int device, calib_state *cs) {
    memset(&cp->r, 0, sizeof cp->r);
#ifdef OPC_HAVE_CUDA
    cp->stats = NULL;
    const char *env = getenv("OPC_CUDA_CALIB");
    if (device == 1 && !(env && !strcmp(env, "0"))) {
        if (calib_gpu_open(cp, d, ctx, gpu_batch) == OPC_OK) return OPC_OK;
        opc_log(OPC_LOG_WARN, "calibration runs on the CPU: %s", opc_last_error());
    }
#else
    (void)gpu_batch, (void)device;
#endif
    opc_status st = opc_runner_init(&cp->r, d, "cpu", ctx, max_batch, n_threads);
    if (st == OPC_OK) opc_forward_set_act_hook(cp->r.cpu, calib_hook, cs);
    return st;
}

/* Close the pass and hand over its statistics in cs->imp (freed on error). */
static opc_status calib_pass_finish(calib_pass *cp, calib_state *cs, const opc_config *c, opc_status st) {
#ifdef OPC_HAVE_CUDA
    if (cp->r.cuda) {
        if (st == OPC_OK) st = calib_gpu_collect(cp, c, cs->imp);
        /* the statistics first: their cuBLAS handle and queue use the pass's stream */
        opc_cuda_forward_set_stats(cp->r.cuda, NULL);
        opc_cuda_act_stats_free(cp->stats);
        opc_runner_free(&cp->r);
        cs->imp->rot_max_log2 = cs->rot_max_log2;
        cs->imp->device = 1;
        if (st != OPC_OK) opc_importance_free(cs->imp);
        return st;
    }
#else
    (void)c;
#endif
    opc_runner_free(&cp->r);
    return calib_finish(cs, st);
}

opc_status opc_calibrate_sampled_dev(const opc_model_desc *d, int32_t n_tokens, int32_t seq_len, uint64_t seed,
                                     int32_t n_threads, int device, int with_hessian, int32_t rot_max_log2,
                                     volatile sig_atomic_t *interrupt, opc_calib_progress_fn progress,
                                     void *progress_user, opc_importance *out) {
    memset(out, 0, sizeof *out);
    if (n_tokens < 1 || seq_len < 2)
        return opc_error(OPC_ERR_INVALID_ARG, "calibration: %d tokens in sequences of %d", n_tokens, seq_len);
    calib_state cs = {.imp = out, .with_hessian = with_hessian, .last_owner = -1, .rot_max_log2 = rot_max_log2};
    calib_pass cp = {.with_hessian = with_hessian, .rot_max_log2 = rot_max_log2};
    opc_status st = calib_pass_open(&cp, d, seq_len, 1, 1, n_threads, device, &cs);
    if (st) return opc_error_wrap(st, "calibration: ");
    int32_t vocab = d->cfg.vocab_size;
    float *logits = malloc((size_t)vocab * sizeof *logits);
    double *ex = malloc((size_t)vocab * sizeof *ex); /* exp(logit - max): one exp per entry per step */
    if (!logits || !ex) st = opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate logits");
    int32_t start = d->vocab.bos_id >= 0 && d->vocab.bos_id < vocab ? d->vocab.bos_id : 0;
    uint64_t rng = mix64(seed ^ 0xCA11B8A7Eull);
    int32_t tok = start, pos = 0;
    for (int32_t i = 0; i < n_tokens && st == OPC_OK; i++) {
        if (interrupt && *interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "calibration interrupted");
            break;
        }
        st = opc_runner_run(&cp.r, &tok, 1, pos, logits, OPC_LOGITS_LAST);
        if (st) break;
        pos++;
        if (pos >= seq_len) { /* start a fresh sample */
            pos = 0;
            tok = start;
        } else { /* sample the next token at temperature 1 */
            float mx = logits[0];
            for (int32_t v = 1; v < vocab; v++) mx = logits[v] > mx ? logits[v] : mx;
            double sum = 0.0;
            for (int32_t v = 0; v < vocab; v++) sum += (ex[v] = exp((double)(logits[v] - mx)));
            rng = mix64(rng);
            double u = (double)(rng >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0.0;
            tok = vocab - 1;
            for (int32_t v = 0; v < vocab; v++) {
                acc += ex[v];
                if (acc >= u) {
                    tok = v;
                    break;
                }
            }
        }
        out->n_tokens++;
        if (progress) progress(progress_user, i + 1, n_tokens);
    }
    free(ex);
    free(logits);
    return calib_pass_finish(&cp, &cs, &d->cfg, st);
}

opc_status opc_calibrate_sampled(const opc_model_desc *d, int32_t n_tokens, int32_t seq_len, uint64_t seed,
                                 int32_t n_threads, int with_hessian, int32_t rot_max_log2,
                                 volatile sig_atomic_t *interrupt,
                                 opc_calib_progress_fn progress, void *progress_user, opc_importance *out) {
    return opc_calibrate_sampled_dev(d, n_tokens, seq_len, seed, n_threads, 0, with_hessian, rot_max_log2, interrupt,
                                     progress, progress_user, out);
}

/* Sequences longer than this go to the GPU pass in slices of it: the
 * logits and activation scratch grow with the batch (0.5 GB of logits at an
 * 8B model's 128K vocabulary), the statistics do not need more. */
#define CALIB_GPU_BATCH 512

opc_status opc_calibrate_tokens_dev(const opc_model_desc *d, const int32_t *tokens, int64_t n_tokens, int32_t seq_len,
                                    int32_t n_threads, int device, int with_hessian, int32_t rot_max_log2,
                                    volatile sig_atomic_t *interrupt, opc_calib_progress_fn progress,
                                    void *progress_user, opc_importance *out) {
    memset(out, 0, sizeof *out);
    if (n_tokens < 1 || seq_len < 1)
        return opc_error(OPC_ERR_INVALID_ARG, "calibration: %lld tokens in sequences of %d", (long long)n_tokens,
                         seq_len);
    calib_state cs = {.imp = out, .with_hessian = with_hessian, .last_owner = -1, .rot_max_log2 = rot_max_log2};
    calib_pass cp = {.with_hessian = with_hessian, .rot_max_log2 = rot_max_log2};
    opc_status st = calib_pass_open(&cp, d, seq_len, seq_len < 64 ? seq_len : 64,
                                    seq_len < CALIB_GPU_BATCH ? seq_len : CALIB_GPU_BATCH, n_threads, device, &cs);
    if (st) return opc_error_wrap(st, "calibration: ");
    float *logits = malloc((size_t)d->cfg.vocab_size * sizeof *logits);
    if (!logits) st = opc_error(OPC_ERR_NOMEM, "calibration: cannot allocate logits");
    for (int64_t at = 0; at < n_tokens && st == OPC_OK; at += seq_len) {
        if (interrupt && *interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "calibration interrupted");
            break;
        }
        int32_t n = (int32_t)(n_tokens - at < seq_len ? n_tokens - at : seq_len);
        st = opc_runner_run(&cp.r, tokens + at, n, 0, logits, OPC_LOGITS_LAST);
        out->n_tokens += n;
        if (progress) progress(progress_user, at + n, n_tokens);
    }
    free(logits);
    return calib_pass_finish(&cp, &cs, &d->cfg, st);
}

opc_status opc_calibrate_tokens(const opc_model_desc *d, const int32_t *tokens, int64_t n_tokens, int32_t seq_len,
                                int32_t n_threads, int with_hessian, int32_t rot_max_log2,
                                volatile sig_atomic_t *interrupt,
                                opc_calib_progress_fn progress, void *progress_user, opc_importance *out) {
    return opc_calibrate_tokens_dev(d, tokens, n_tokens, seq_len, n_threads, 0, with_hessian, rot_max_log2, interrupt,
                                    progress, progress_user, out);
}

/* ---------------------------------------------------------- plan ------- */

opc_quant_params opc_quant_defaults(void) {
    opc_quant_params p;
    memset(&p, 0, sizeof p);
    p.bits = 2.0f;
    p.outlier_frac = 0.01;
    p.method = OPC_QUANT_KMEANS;
    p.seed = 1;
    p.n_init = 3;
    p.group_scales = 0;
    p.scale_rounds = 3;
    p.rotate = 0;
    p.rot_max_log2 = OPC_CB_ROT_MAX_LOG2;
    return p;
}

/* A pattern with glob characters is matched with fnmatch against the whole
 * name; a plain word matches as a substring ("attn_v" -> blk.N.attn_v.weight). */
static int pattern_match(const char *pat, size_t len, const char *name) {
    char buf[256];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, pat, len);
    buf[len] = '\0';
    if (strpbrk(buf, "*?[")) return fnmatch(buf, name, 0) == 0;
    return strstr(name, buf) != NULL;
}

/* Does any comma-separated pattern in list match name? */
static int list_match(const char *list, const char *name) {
    while (list && *list) {
        const char *e = strchr(list, ',');
        size_t len = e ? (size_t)(e - list) : strlen(list);
        if (pattern_match(list, len, name)) return 1;
        list = e ? e + 1 : NULL;
    }
    return 0;
}

/* A rule list "PATTERN=VALUE,...": the first rule whose PATTERN matches name.
 * parse reads one VALUE (a NUL-terminated copy) into *v and returns 0, or -1
 * when it is malformed or out of range. Every rule up to the match is checked; errors
 * name the rule: "<kind> 'RULE' is not PATTERN=<value>" or "<kind> 'RULE':
 * <range>". Returns 1 (and *out set), 0 no match, -1 malformed (error set). */
static int first_rule(const char *list, const char *name, const char *kind, const char *value, const char *range,
                      int (*parse)(const char *num, double *v), double *out) {
    while (list && *list) {
        const char *e = strchr(list, ',');
        size_t len = e ? (size_t)(e - list) : strlen(list);
        const char *eq = memchr(list, '=', len);
        char num[32];
        size_t nl = eq ? len - (size_t)(eq + 1 - list) : 0;
        if (!eq || eq == list || nl == 0 || nl >= sizeof num) {
            opc_error(OPC_ERR_INVALID_ARG, "%s '%.*s' is not PATTERN=%s", kind, (int)len, list, value);
            return -1;
        }
        memcpy(num, eq + 1, nl);
        num[nl] = '\0';
        double v;
        if (parse(num, &v) < 0) {
            opc_error(OPC_ERR_INVALID_ARG, "%s '%.*s': %s", kind, (int)len, list, range);
            return -1;
        }
        if (pattern_match(list, (size_t)(eq - list), name)) {
            *out = v;
            return 1;
        }
        list = e ? e + 1 : NULL;
    }
    return 0;
}

static int parse_bits(const char *num, double *v) {
    char *end;
    const float b = strtof(num, &end);
    int32_t ib, k;
    if (*end || !(b == 16.0f || b == 32.0f || opc_quant_bits_layout(b, &ib, &k))) return -1;
    *v = b;
    return 0;
}

static int parse_frac(const char *num, double *v) {
    char *end;
    const double f = strtod(num, &end);
    if (*end || !(f >= 0.0 && f <= 0.5)) return -1;
    *v = f;
    return 0;
}

/* First override PATTERN=BITS matching name: 1 and *bits set; 0 none;
 * -1 malformed (error set). */
static int override_bits(const char *list, const char *name, float *bits) {
    double v;
    const int r = first_rule(list, name, "override", "BITS", "BITS must be 1.58, 2, 3, 4, 16 or 32", parse_bits, &v);
    if (r == 1) *bits = (float)v; /* a float to begin with: exact */
    return r;
}

/* First outlier rule PATTERN=FRACTION of list matching name: 1 and *frac
 * set; 0 none; -1 malformed (error set). */
static int outlier_rule(const char *list, const char *name, double *frac) {
    return first_rule(list, name, "outlier override", "FRACTION", "FRACTION must be in [0, 0.5]", parse_frac, frac);
}

double opc_quant_outlier_frac(const char *name, const opc_quant_params *p) {
    double f = p->outlier_frac;
    return outlier_rule(p->outlier_overrides, name, &f) < 0 ? -1.0 : f;
}

opc_status opc_quant_plan(const opc_tensor *t, const opc_quant_params *p, opc_quant_choice *choice,
                          int32_t *index_bits, int32_t *k) {
    *index_bits = *k = 0;
    if (t->n_dims != 2) { /* norms and biases: tiny and sensitive, keep exact */
        *choice = OPC_QC_F32;
        return OPC_OK;
    }
    float bits = p->bits;
    int ov = override_bits(p->overrides, t->name, &bits);
    if (ov < 0) return OPC_ERR_INVALID_ARG;
    if (ov == 0 && p->edge_bits > 0.0f && p->edge_layers > 0) {
        /* The first and last blocks are the most sensitive to 2-bit error
         * (docs/RESULTS.md: on SmolLM2 4-bit edges beat the same bits spent
         * on outliers), and they are 2 of n_layers blocks. */
        int layer = -1, used = 0;
        if (sscanf(t->name, "blk.%d.%n", &layer, &used) == 1 && used > 0 &&
            (layer == 0 || layer == p->edge_layers - 1))
            bits = p->edge_bits;
    }
    if (ov == 0) {
        /* Default f16: the token embedding (tied to the output head in
         * SmolLM2/stories260K, so it is also the last matmul, the most
         * sensitive one) and an untied output head. */
        if (!strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight") ||
            list_match(p->keep_fp16, t->name)) {
            *choice = OPC_QC_F16;
            return OPC_OK;
        }
    }
    if (bits == 32.0f) {
        *choice = OPC_QC_F32;
        return OPC_OK;
    }
    if (bits == 16.0f) {
        *choice = OPC_QC_F16;
        return OPC_OK;
    }
    if (!opc_quant_bits_layout(bits, index_bits, k))
        return opc_error(OPC_ERR_INVALID_ARG, "unsupported --bits %g (1.58, 2, 3 or 4)", (double)bits);
    *choice = OPC_QC_CB;
    return OPC_OK;
}

/* ---------------------------------------------------------- allocation -- */

/* Where an allocation step applies: every block, or only the first / last. */
typedef enum alloc_where { AT_ALL = 0, AT_FIRST, AT_LAST } alloc_where;

/* One step of the 2-bit allocation: the tensors of class `cls` (a name
 * substring) in `where`'s blocks go to `bits` without outliers, or (bits 0)
 * keep their bits and get the outlier fraction `outliers`. */
typedef struct alloc_step {
    alloc_where where;
    const char *cls;
    float bits;
    double outliers;
    const char *name; /* for the summary */
} alloc_step;

/* Steps in the order of their measured KLD gain per stored bit on
 * SmolLM2-135M: KLD to the unquantized model on held-out WikiText-2 tokens
 * (6 x 512 tokens after the first 40 chunks, so not the reported chunks),
 * each step alone on top of 2-bit + 0.5 % outliers everywhere (with attn_v
 * at 4 bits for the per-block FFN rows), scripts/dev/mix_eval.c; the KLD
 * decrease / bpw spent is in the comment. Per block, only the first and the
 * last stand out (first block FFN 6-7, last ffn_down 4, ffn_up 2.5; any
 * middle block's FFN tensor 0.0-1.5, mean ~0.6); whole classes: attn_v 2.5,
 * ffn_up 0.9, ffn_gate 0.75, attn_output 0.7, attn_q 0.3, attn_k 0. Outliers
 * 0.5 -> 1 %: attn_v 2.9 (but it is 4-bit by then), ffn_up 1.9, ffn_gate 1.6,
 * ffn_down 1.4, attn_q 0.8, attn_k and attn_output 0. Promoted tensors drop
 * their outliers: at 4 bits they measured no better with them. 3 bits (k = 8)
 * stores the same 4-bit indices and measured clearly worse than 4. */
static const alloc_step k_alloc_steps[] = {
    {AT_FIRST, "ffn_down", 4.0f, 0.0, "first-block ffn_down"}, /* 6.8: -0.119 KLD for 0.0176 bpw */
    {AT_FIRST, "ffn_up", 4.0f, 0.0, "first-block ffn_up"},     /* 6.7 */
    {AT_FIRST, "ffn_gate", 4.0f, 0.0, "first-block ffn_gate"}, /* 6.0 */
    {AT_LAST, "ffn_down", 4.0f, 0.0, "last-block ffn_down"},   /* 3.6 */
    {AT_ALL, "attn_v", 4.0f, 0.0, "attn_v"},                   /* 2.5: -0.165 for 0.066 bpw */
    {AT_LAST, "ffn_up", 4.0f, 0.0, "last-block ffn_up"},       /* 2.5 */
    {AT_ALL, "ffn_up", 0.0f, 0.01, "ffn_up outliers 1%"},      /* 1.9: -0.078 for 0.040 bpw */
    {AT_ALL, "ffn_gate", 0.0f, 0.01, "ffn_gate outliers 1%"},  /* 1.6 */
    {AT_ALL, "ffn_down", 0.0f, 0.01, "ffn_down outliers 1%"},  /* 1.4 */
    /* beyond 2.5 bpw on SmolLM2: whole classes (attn_k gained nothing) */
    {AT_ALL, "ffn_down", 4.0f, 0.0, "ffn_down"},               /* 1.0: -0.49 for 0.49 bpw */
    {AT_ALL, "ffn_up", 4.0f, 0.0, "ffn_up"},                   /* 0.86 */
    {AT_ALL, "ffn_gate", 4.0f, 0.0, "ffn_gate"},               /* 0.75 */
    {AT_ALL, "attn_output", 4.0f, 0.0, "attn_output"},         /* 0.67 */
    {AT_ALL, "attn_q", 4.0f, 0.0, "attn_q"},                   /* 0.31 */
};

void opc_quant_alloc_free(opc_quant_alloc *a) {
    if (!a) return;
    free(a->overrides);
    free(a->outlier_overrides);
    free(a->steps);
    memset(a, 0, sizeof *a);
}

/* The block index of a "blk.N." name, or -1. */
static int block_of(const char *name) {
    int layer = -1, used = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &used) == 1 && used > 0) return layer;
    return -1;
}

/* A growable string for the rule lists. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static int sbuf_add(sbuf *b, const char *sep, const char *fmt, ...) OPC_PRINTF(3, 4);
static int sbuf_add(sbuf *b, const char *sep, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return 0;
    size_t sl = b->len ? strlen(sep) : 0, need = b->len + sl + (size_t)n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return 0;
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, sep, sl);
    memcpy(b->s + b->len + sl, tmp, (size_t)n + 1);
    b->len += sl + (size_t)n;
    return 1;
}

/* Per codebook tensor: its state while the steps are walked. */
typedef struct alloc_t {
    int32_t ib, k;   /* index bits, entries */
    float bits;      /* 0: not a codebook tensor */
    double frac;     /* outlier fraction */
    int fixed;       /* named by the caller (overrides, outlier overrides, edge_bits) */
    int changed;     /* a step changed it */
    uint64_t bytes;
} alloc_t;

/* The embedding and the head are f16 unless the caller quantizes them
 * (--override): then they are outside the bpw budget, which covers what the
 * default quantizes, so the rest keeps its allocation (counted in, a 4-bit
 * SmolLM2 embedding alone exceeds 2.5 bpw, no step fits and PPL is 295
 * instead of 115). */
static int outside_budget(const char *name) {
    return !strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight");
}

opc_status opc_quant_allocate(const opc_tensor *tensors, int32_t n_tensors, int32_t n_layers,
                              const opc_quant_params *p, opc_quant_alloc *out) {
    memset(out, 0, sizeof *out);
    opc_quant_params pl = *p;
    pl.edge_layers = n_layers;
    alloc_t *a = calloc((size_t)(n_tensors > 0 ? n_tensors : 1), sizeof *a);
    if (!a) return opc_error(OPC_ERR_NOMEM, "allocate: cannot allocate the tensor table");
    uint64_t q_bytes = 0, q_elems = 0;
    opc_status st = OPC_OK;
    for (int32_t i = 0; i < n_tensors && st == OPC_OK; i++) {
        const opc_tensor *t = &tensors[i];
        opc_quant_choice ch;
        st = opc_quant_plan(t, &pl, &ch, &a[i].ib, &a[i].k);
        if (st || ch != OPC_QC_CB) continue;
        if (outside_budget(t->name)) continue;
        float ob;
        int layer = block_of(t->name);
        a[i].bits = a[i].k == 3 ? 1.58f : a[i].k == 4 ? 2.0f : a[i].k == 8 ? 3.0f : 4.0f;
        a[i].frac = opc_quant_outlier_frac(t->name, &pl);
        if (a[i].frac < 0.0) {
            st = OPC_ERR_INVALID_ARG;
            break;
        }
        double of;
        a[i].fixed = override_bits(pl.overrides, t->name, &ob) != 0 || outlier_rule(pl.outlier_overrides, t->name, &of) ||
                     (pl.edge_bits > 0.0f && (layer == 0 || layer == n_layers - 1));
        a[i].bytes = opc_quant_cb_bytes(t->shape[0], t->shape[1], a[i].ib, a[i].k, a[i].frac, pl.group_scales);
        q_bytes += a[i].bytes;
        q_elems += (uint64_t)opc_tensor_nelem(t);
    }
    if (st) {
        free(a);
        return st;
    }
    out->bpw_base = q_elems ? 8.0 * (double)q_bytes / (double)q_elems : 0.0;
    /* the byte limit: 8 bytes / q_elems <= budget */
    const uint64_t limit = (uint64_t)floor(p->bpw_budget * (double)q_elems / 8.0);
    sbuf steps = {0}, ov = {0}, ol = {0};
    int ok = 1;
    for (size_t s = 0; s < sizeof k_alloc_steps / sizeof k_alloc_steps[0] && ok; s++) {
        const alloc_step *stp = &k_alloc_steps[s];
        int32_t ib = 0, k = 0;
        if (stp->bits > 0.0f && !opc_quant_bits_layout(stp->bits, &ib, &k)) continue;
        int64_t delta = 0;
        int n_hit = 0;
        for (int pass = 0; pass < 2; pass++) { /* 0: cost, 1: apply */
            for (int32_t i = 0; i < n_tensors; i++) {
                const opc_tensor *t = &tensors[i];
                if (a[i].bits == 0.0f || a[i].fixed || !strstr(t->name, stp->cls)) continue;
                int layer = block_of(t->name);
                if ((stp->where == AT_FIRST && layer != 0) || (stp->where == AT_LAST && layer != n_layers - 1))
                    continue;
                int32_t nib = a[i].ib, nk = a[i].k;
                double nf = a[i].frac;
                float nb = a[i].bits;
                if (stp->bits > 0.0f) {
                    if (a[i].bits >= stp->bits) continue;
                    nib = ib, nk = k, nb = stp->bits, nf = stp->outliers;
                } else {
                    if (a[i].changed || a[i].frac >= stp->outliers) continue; /* promoted, or has more */
                    nf = stp->outliers;
                }
                uint64_t nbytes = opc_quant_cb_bytes(t->shape[0], t->shape[1], nib, nk, nf, pl.group_scales);
                if (pass == 0) {
                    delta += (int64_t)nbytes - (int64_t)a[i].bytes;
                    n_hit++;
                } else {
                    a[i].ib = nib, a[i].k = nk, a[i].bits = nb, a[i].frac = nf, a[i].bytes = nbytes;
                    a[i].changed = 1;
                }
            }
            if (pass == 0 && (n_hit == 0 || (int64_t)q_bytes + delta > (int64_t)limit)) break;
            if (pass == 1) {
                q_bytes = (uint64_t)((int64_t)q_bytes + delta);
                ok = stp->bits > 0.0f ? sbuf_add(&steps, ", ", "%s %g-bit", stp->name, (double)stp->bits)
                                      : sbuf_add(&steps, ", ", "%s", stp->name);
            }
        }
    }
    /* exact per-tensor rules, the caller's first (they win) */
    if (ok && pl.overrides && *pl.overrides) ok = sbuf_add(&ov, ",", "%s", pl.overrides);
    if (ok && pl.outlier_overrides && *pl.outlier_overrides) ok = sbuf_add(&ol, ",", "%s", pl.outlier_overrides);
    for (int32_t i = 0; i < n_tensors && ok; i++) {
        if (!a[i].changed) continue;
        ok = sbuf_add(&ov, ",", "%s=%g", tensors[i].name, (double)a[i].bits) &&
             sbuf_add(&ol, ",", "%s=%.17g", tensors[i].name, a[i].frac);
    }
    free(a);
    if (!ok) {
        free(steps.s);
        free(ov.s);
        free(ol.s);
        return opc_error(OPC_ERR_NOMEM, "allocate: cannot allocate the rule lists");
    }
    out->overrides = ov.s;
    out->outlier_overrides = ol.s;
    out->steps = steps.s;
    /* Check: the rules give every tensor the state the walk chose (a tensor
     * name that is a substring of another's would break this). */
    opc_quant_params chk = pl;
    chk.overrides = out->overrides;
    chk.outlier_overrides = out->outlier_overrides;
    uint64_t cb = 0, ce = 0;
    for (int32_t i = 0; i < n_tensors; i++) {
        opc_quant_choice ch;
        int32_t ib, k;
        if (outside_budget(tensors[i].name) || opc_quant_plan(&tensors[i], &chk, &ch, &ib, &k) || ch != OPC_QC_CB)
            continue;
        cb += opc_quant_cb_bytes(tensors[i].shape[0], tensors[i].shape[1], ib, k,
                                 opc_quant_outlier_frac(tensors[i].name, &chk), pl.group_scales);
        ce += (uint64_t)opc_tensor_nelem(&tensors[i]);
    }
    if (cb != q_bytes || ce != q_elems) {
        opc_quant_alloc_free(out);
        return opc_error(OPC_ERR_INVALID_ARG, "allocate: the per-tensor rules do not reproduce the allocation "
                         "(%llu vs %llu bytes): ambiguous tensor names?", (unsigned long long)cb,
                         (unsigned long long)q_bytes);
    }
    out->q_bytes = q_bytes;
    out->q_elems = q_elems;
    out->bpw = q_elems ? 8.0 * (double)q_bytes / (double)q_elems : 0.0;
    return OPC_OK;
}

/* ---------------------------------------------------------- tensors ----- */

void opc_quant_tensor_free(opc_tensor *t, opc_qmatrix *qm) {
    if (t) {
        opc_aligned_free(t->owned);
        memset(t, 0, sizeof *t);
    }
    opc_qmatrix_free(qm);
}

/* The source tensor as fp32 (rows, cols): a fresh buffer the caller frees. */
static opc_status source_f32(const opc_tensor *t, float **out) {
    int64_t n = opc_tensor_nelem(t);
    *out = NULL;
    float *buf = opc_aligned_alloc((size_t)n * sizeof(float));
    if (!buf) return opc_error(OPC_ERR_NOMEM, "tensor %s: cannot allocate %lld floats", t->name, (long long)n);
    opc_status st = OPC_OK;
    if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) {
        for (int64_t r = 0; r < t->cb.rows; r++) opc_cb_dequant_row_ref(&t->cb, r, buf + r * t->cb.cols);
    } else {
        st = opc_dequantize(t->type, t->data, buf, n);
        if (st) st = opc_error_wrap(st, "tensor %s: ", t->name);
    }
    if (st) {
        opc_aligned_free(buf);
        return st;
    }
    *out = buf;
    return OPC_OK;
}

/* GPTQ factors of the last few Hessians, so that the tensors that share an
 * input (q/k/v, gate/up: one Hessian pointer) factor it once. Four entries
 * hold one layer's distinct inputs in any tensor order. */
#define GPTQ_CACHE 4
typedef struct gptq_entry {
    const float *H;  /* key: the calibration's (unrotated) Hessian, cols, rot, damp */
    int64_t cols;
    int32_t rot;
    double damp;
    float *hrot;     /* R^T H R when rot > 0, else NULL (owned) */
    double *U;       /* (cols, cols) factor of the (rotated) Hessian (owned) */
    uint64_t used;   /* last use, for eviction */
} gptq_entry;
typedef struct gptq_cache {
    gptq_entry e[GPTQ_CACHE];
    uint64_t tick;
} gptq_cache;

static void gptq_entry_clear(gptq_entry *e) {
    opc_aligned_free(e->hrot);
    free(e->U);
    memset(e, 0, sizeof *e);
}

static void gptq_cache_free(gptq_cache *c) {
    for (int i = 0; i < GPTQ_CACHE; i++) gptq_entry_clear(&c->e[i]);
}

/* The cached (rotated) Hessian and factor for (H, cols, rot, damp), made
 * and cached on a miss (evicting the least recently used entry); device 1:
 * the factor is made on the GPU (the same doubles, 4-5x faster: RESULTS.md). */
static opc_status gptq_cache_get(gptq_cache *c, const float *H, int64_t cols, int32_t rot, double damp, int device,
                                 const float **Hq, const double **U) {
    gptq_entry *victim = &c->e[0];
    c->tick++;
    for (int i = 0; i < GPTQ_CACHE; i++) {
        gptq_entry *e = &c->e[i];
        if (e->U && e->H == H && e->cols == cols && e->rot == rot && e->damp == damp) {
            e->used = c->tick;
            *Hq = e->hrot ? e->hrot : H;
            *U = e->U;
            return OPC_OK;
        }
        if (e->used < victim->used) victim = e;
    }
    gptq_entry_clear(victim);
    opc_status st = OPC_OK;
    if (rot > 0) st = opc_quant_rotate_hessian(H, cols, rot, &victim->hrot);
#ifdef OPC_HAVE_CUDA
    if (st == OPC_OK && device == 1)
        st = opc_cuda_gptq_factor(victim->hrot ? victim->hrot : H, cols, damp, &victim->U);
    else
#endif
    if (st == OPC_OK) st = gptq_factor(victim->hrot ? victim->hrot : H, cols, damp, &victim->U);
    (void)device;
    if (st) {
        gptq_entry_clear(victim);
        return st;
    }
    victim->H = H;
    victim->cols = cols;
    victim->rot = rot;
    victim->damp = damp;
    victim->used = c->tick;
    *Hq = victim->hrot ? victim->hrot : H;
    *U = victim->U;
    return OPC_OK;
}

static opc_status quantize_tensor(const opc_tensor *src, int32_t tensor_index, const opc_quant_params *p,
                                  gptq_cache *cache, opc_tensor *out, opc_qmatrix *qm);

opc_status opc_quantize_tensor(const opc_tensor *src, int32_t tensor_index, const opc_quant_params *p,
                               opc_tensor *out, opc_qmatrix *qm) {
    return quantize_tensor(src, tensor_index, p, NULL, out, qm);
}

/* opc_quantize_tensor with an optional factor cache (NULL: none). */
static opc_status quantize_tensor(const opc_tensor *src, int32_t tensor_index, const opc_quant_params *p,
                                  gptq_cache *cache, opc_tensor *out, opc_qmatrix *qm) {
    memset(out, 0, sizeof *out);
    memset(qm, 0, sizeof *qm);
    opc_quant_choice choice;
    int32_t ib, k;
    opc_status st = opc_quant_plan(src, p, &choice, &ib, &k);
    if (st) return opc_error_wrap(st, "tensor %s: ", src->name);
    int64_t n = opc_tensor_nelem(src);
    memcpy(out->name, src->name, sizeof out->name);
    out->n_dims = src->n_dims;
    memcpy(out->shape, src->shape, sizeof out->shape);
    out->qerr = -1.0f;

    /* bf16 kept as is: converting it to f16 could overflow its range */
    if (choice == OPC_QC_F16 && (src->type == OPC_TYPE_F16 || src->type == OPC_TYPE_BF16)) {
        out->type = src->type;
        out->nbytes = (uint64_t)n * 2;
        out->owned = opc_aligned_alloc((size_t)out->nbytes);
        if (!out->owned) return opc_error(OPC_ERR_NOMEM, "tensor %s: cannot allocate", src->name);
        memcpy(out->owned, src->data, (size_t)out->nbytes);
        out->data = out->owned;
        return OPC_OK;
    }
    /* fp16/bf16 weights bound for the GPU quantizer go up as they are (half
     * the upload, widened on the device exactly as here); everything else is
     * widened to fp32 on the host first. */
    const int gpu_h16 = p->device == 1 && choice == OPC_QC_CB &&
                        (src->type == OPC_TYPE_F16 || src->type == OPC_TYPE_BF16);
    float *w = NULL;
    if (!gpu_h16) {
        st = source_f32(src, &w);
        if (st) return st;
    }
    if (choice == OPC_QC_F16) {
        /* values beyond fp16's range would become inf: keep such a tensor f32 */
        for (int64_t i = 0; i < n; i++)
            if (!(fabsf(w[i]) <= FP16_MAX)) {
                opc_log(OPC_LOG_WARN, "tensor %s has values outside the fp16 range: stored as f32", src->name);
                choice = OPC_QC_F32;
                break;
            }
    }
    if (choice == OPC_QC_F32) {
        out->type = OPC_TYPE_F32;
        out->nbytes = (uint64_t)n * 4;
        out->owned = w; /* the fp32 copy is the payload */
        out->data = w;
        return OPC_OK;
    }
    if (choice == OPC_QC_F16) {
        uint16_t *h = opc_aligned_alloc((size_t)n * 2);
        if (!h) {
            opc_aligned_free(w);
            return opc_error(OPC_ERR_NOMEM, "tensor %s: cannot allocate", src->name);
        }
        for (int64_t i = 0; i < n; i++) h[i] = opc_fp32_to_fp16(w[i]);
        opc_aligned_free(w);
        out->type = OPC_TYPE_F16;
        out->nbytes = (uint64_t)n * 2;
        out->owned = h;
        out->data = h;
        return OPC_OK;
    }
    int64_t rows = src->shape[0], cols = src->shape[1];
    const int32_t rot = opc_quant_rotated(src->name, cols, p);
    float *imp = NULL;
    if (p->importance) {
        imp = malloc((size_t)cols * sizeof *imp);
        if (imp && !opc_importance_get_rotated(p->importance, src->name, cols, rot, imp)) {
            free(imp);
            imp = NULL;
            if (rot > 0) { /* unrotated statistics would weight the wrong basis */
                opc_aligned_free(w);
                return opc_error(OPC_ERR_INVALID_ARG, "tensor %s: the calibration has no statistics for rotation "
                                 "block %lld (calibrate with the same rotation settings)", src->name,
                                 (long long)1 << rot);
            }
            opc_log(OPC_LOG_WARN, "tensor %s: no calibration statistics, uniform importance", src->name);
        }
    }
    float *hrot = NULL; /* R^T H R, owned here */
    const double ol_frac = opc_quant_outlier_frac(src->name, p);
    if (ol_frac < 0.0) {
        free(imp);
        opc_aligned_free(w);
        return opc_error_wrap(OPC_ERR_INVALID_ARG, "tensor %s: ", src->name);
    }
    opc_qmatrix_params mp = {
        .index_bits = ib,
        .k = k,
        .method = p->method,
        .outlier_frac = ol_frac,
        .importance = imp,
        .seed = mix64(p->seed ^ (0xB17F00Dull * (uint64_t)(tensor_index + 1))),
        .n_init = p->n_init,
        .n_threads = p->n_threads,
        .interrupt = p->interrupt,
        .hessian = NULL,
        .damp = p->gptq_damp,
        .group_scales = p->group_scales,
        .scale_rounds = p->scale_rounds,
        .rot_log2 = rot,
        .device = p->device,
    };
    if (p->gptq && p->method != OPC_QUANT_RTN) {
        mp.hessian = opc_importance_hessian(p->importance, src->name, cols);
        if (!mp.hessian) opc_log(OPC_LOG_WARN, "tensor %s: no calibration Hessian, no error feedback", src->name);
        if (mp.hessian && cache) {
            st = gptq_cache_get(cache, mp.hessian, cols, rot, p->gptq_damp, p->device, &mp.hessian, &mp.gptq_u);
            if (st) {
                free(imp);
                opc_aligned_free(w);
                return opc_error_wrap(st, "tensor %s: ", src->name);
            }
        } else if (mp.hessian && rot > 0) {
            st = opc_quant_rotate_hessian(mp.hessian, cols, rot, &hrot);
            if (st) {
                free(imp);
                opc_aligned_free(w);
                return opc_error_wrap(st, "tensor %s: ", src->name);
            }
            mp.hessian = hrot;
        }
    }
#ifdef OPC_HAVE_CUDA
    /* the GPU path (same result, GPTQ included: it takes the cached factor
     * mp.gptq_u) for all but Lloyd and rows wider than it sorts */
    if (mp.device == 1 && mp.method != OPC_QUANT_LLOYD && cols <= OPC_CUDA_QUANT_MAX_COLS)
        st = w ? opc_cuda_quantize_matrix(w, rows, cols, &mp, qm)
               : opc_cuda_quantize_matrix_h16((const uint16_t *)src->data, src->type == OPC_TYPE_BF16, rows, cols,
                                              &mp, qm);
    else
#endif
    {
        if (!w) st = source_f32(src, &w); /* the CPU path after all (Lloyd, wide rows) */
        if (st == OPC_OK) st = opc_quantize_matrix(w, rows, cols, &mp, qm);
    }
    opc_aligned_free(hrot);
    free(imp);
    opc_aligned_free(w);
    if (st) return opc_error_wrap(st, "tensor %s: ", src->name);
    out->type = ib == 2 ? OPC_TYPE_CB2 : OPC_TYPE_CB4;
    out->cb = qm->m;
    out->data = qm->idx;
    out->nbytes = (uint64_t)rows * qm->m.row_bytes;
    out->qerr = qm->err_den > 0.0 ? (float)(qm->err_num / qm->err_den) : 0.0f;
    return OPC_OK;
}

/* ---------------------------------------------------------- model ------ */

void opc_quant_summary_free(opc_quant_summary *s) {
    if (!s) return;
    free(s->t);
    free(s->alloc_steps);
    memset(s, 0, sizeof *s);
}

static const char *choice_action(const opc_tensor *t, const opc_quant_params *p, char *buf, size_t cap) {
    opc_quant_choice ch;
    int32_t ib, k;
    if (opc_quant_plan(t, p, &ch, &ib, &k) != OPC_OK) return "?";
    if (ch == OPC_QC_F32) return "f32";
    if (ch == OPC_QC_F16) return "f16";
    snprintf(buf, cap, "cb%d k=%d", ib, k);
    return buf;
}

opc_status opc_quantize_model(const opc_model_desc *src, const char *out_path, const opc_quant_params *p,
                              opc_quant_summary *summary) {
    opc_quant_summary sum;
    memset(&sum, 0, sizeof sum);
    if (summary) memset(summary, 0, sizeof *summary);
    if (!src || src->n_tensors < 1) return opc_error(OPC_ERR_INVALID_ARG, "quantize: model has no tensors");
    opc_quant_params pl = *p; /* the block count the edge-layer rule needs */
    pl.edge_layers = src->cfg.n_layers;
    p = &pl;
    /* check the plan (bad overrides / bits) before creating anything */
    for (int32_t i = 0; i < src->n_tensors; i++) {
        opc_quant_choice ch;
        int32_t ib, k;
        opc_status st = opc_quant_plan(&src->tensors[i], p, &ch, &ib, &k);
        if (st) return st;
        if (opc_quant_outlier_frac(src->tensors[i].name, p) < 0.0) return OPC_ERR_INVALID_ARG;
    }
    /* mixed precision under the size budget: its rules replace the caller's
     * (which they start with) */
    opc_quant_alloc alloc;
    memset(&alloc, 0, sizeof alloc);
    if (p->bpw_budget > 0.0) {
        opc_status st = opc_quant_allocate(src->tensors, src->n_tensors, src->cfg.n_layers, p, &alloc);
        if (st) return st;
        pl.overrides = alloc.overrides;
        pl.outlier_overrides = alloc.outlier_overrides;
        sum.alloc_bpw_base = alloc.bpw_base;
        if (alloc.bpw_base > p->bpw_budget)
            opc_log(OPC_LOG_WARN, "quantize: the bpw budget %g is below the uniform setting's %.4f bpw",
                    p->bpw_budget, alloc.bpw_base);
    }
    sum.t = calloc((size_t)src->n_tensors, sizeof *sum.t);
    if (!sum.t) {
        opc_quant_alloc_free(&alloc);
        return opc_error(OPC_ERR_NOMEM, "quantize: cannot allocate the summary");
    }
    uint64_t total = 0, done = 0;
    for (int32_t i = 0; i < src->n_tensors; i++) total += (uint64_t)opc_tensor_nelem(&src->tensors[i]);

    double t0 = opc_time_s();
    gptq_cache gc;
    memset(&gc, 0, sizeof gc);
    opc_bf2_writer *w = NULL;
    opc_status st = opc_bf2_writer_open(&w, out_path);
    for (int32_t i = 0; i < src->n_tensors && st == OPC_OK; i++) {
        const opc_tensor *t = &src->tensors[i];
        if (p->interrupt && *p->interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted before tensor %s", t->name);
            break;
        }
        char act[32];
        if (p->progress) {
            opc_quant_progress pr = {i, src->n_tensors, t->name, choice_action(t, p, act, sizeof act), done, total};
            p->progress(p->progress_user, &pr);
        }
        double ts = opc_time_s();
        opc_tensor qt;
        opc_qmatrix qm;
        st = quantize_tensor(t, i, p, &gc, &qt, &qm);
        if (st == OPC_OK) st = opc_bf2_writer_add(w, &qt);
        if (st == OPC_OK) {
            opc_quant_tensor_stat *s = &sum.t[sum.n++];
            snprintf(s->name, sizeof s->name, "%s", t->name);
            s->type = qt.type;
            s->rows = t->shape[0];
            s->cols = t->n_dims > 1 ? t->shape[1] : 1;
            s->qerr = qt.qerr;
            uint64_t nel = (uint64_t)opc_tensor_nelem(t);
            if (qt.type == OPC_TYPE_CB2 || qt.type == OPC_TYPE_CB4) {
                s->k = qt.cb.k;
                s->bytes = opc_cb_matrix_bytes(&qt.cb);
                s->idx_bytes = (uint64_t)qt.cb.rows * qt.cb.row_bytes;
                s->cb_bytes = (uint64_t)qt.cb.rows * (uint64_t)qt.cb.k * 2;
                s->gs_bytes = qt.cb.gscale ? (uint64_t)qt.cb.rows * (uint64_t)opc_cb_groups(qt.cb.cols) : 0;
                s->ol_bytes = s->bytes - s->idx_bytes - s->cb_bytes - s->gs_bytes;
                s->rot_log2 = qt.cb.rot_log2;
                sum.q_idx_bytes += s->idx_bytes;
                sum.q_cb_bytes += s->cb_bytes;
                sum.q_gs_bytes += s->gs_bytes;
                sum.q_ol_bytes += s->ol_bytes;
                s->n_outliers = qt.cb.n_outliers;
                sum.q_bytes += s->bytes;
                sum.q_elems += nel;
                sum.n_outliers += s->n_outliers;
            } else {
                s->bytes = qt.nbytes;
            }
            sum.all_bytes += s->bytes;
            sum.all_elems += nel;
            done += nel;
            s->seconds = opc_time_s() - ts;
        }
        opc_quant_tensor_free(&qt, &qm);
    }
    if (st == OPC_OK && p->interrupt && *p->interrupt)
        st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
    if (st == OPC_OK) st = opc_bf2_writer_finish(w, src->name, &src->cfg, &src->vocab);
    opc_bf2_writer_close(w); /* removes the temporary file unless finished */
    gptq_cache_free(&gc);
    sum.alloc_steps = alloc.steps; /* the summary owns it now */
    alloc.steps = NULL;
    opc_quant_alloc_free(&alloc);
    if (st == OPC_OK) {
        struct stat sb;
        if (stat(out_path, &sb) == 0) sum.file_bytes = (uint64_t)sb.st_size;
        sum.seconds = opc_time_s() - t0;
        if (p->progress) {
            opc_quant_progress pr = {src->n_tensors, src->n_tensors, "", "done", total, total};
            p->progress(p->progress_user, &pr);
        }
    }
    if (st == OPC_OK && summary)
        *summary = sum;
    else
        opc_quant_summary_free(&sum);
    return st;
}
