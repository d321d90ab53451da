/*
 * test_quantize.c — the quantizer: planted outliers are found, exact
 * codebooks are recovered, RTN levels are uniform, importance shifts the
 * error to unimportant columns, group scales follow per-group magnitudes,
 * rotated matrices un-rotate to the original and compute W x from R^T x,
 * results do not depend on the thread count (GPTQ: nor on its row blocks),
 * quantize -> write -> read -> dequantize equals the in-memory result bit for
 * bit (synthetic model and stories260K), an interrupted run leaves no
 * output and an existing output untouched, sizes are known before
 * quantizing, and the mixed-precision allocation keeps its size budget.
 */
#include "harness.h"

#include "core/half.h"
#include "format/bf2.h"
#include "quant/quantize.h"

#include <dirent.h>
#include <stdint.h>

static uint64_t g_rng = 777;
static double urand(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static opc_qmatrix_params mparams(int32_t bits, int32_t k, double frac) {
    opc_qmatrix_params p;
    memset(&p, 0, sizeof p);
    p.index_bits = bits;
    p.k = k;
    p.method = OPC_QUANT_KMEANS;
    p.outlier_frac = frac;
    p.seed = 3;
    p.n_init = 3;
    return p;
}

static void test_bits_layout(void) {
    int32_t ib, k;
    CHECK(opc_quant_bits_layout(1.58f, &ib, &k) && ib == 2 && k == 3);
    CHECK(opc_quant_bits_layout(2.0f, &ib, &k) && ib == 2 && k == 4);
    CHECK(opc_quant_bits_layout(3.0f, &ib, &k) && ib == 4 && k == 8);
    CHECK(opc_quant_bits_layout(4.0f, &ib, &k) && ib == 4 && k == 16);
    CHECK(!opc_quant_bits_layout(5.0f, &ib, &k));
    CHECK(!opc_quant_bits_layout(1.0f, &ib, &k));
}

/* Rows made of exactly 4 levels, plus planted spikes: the codebook must be the
 * 4 levels, the outliers exactly the spikes, and the reconstruction exact up
 * to fp16 rounding of the deltas. */
static void test_planted_outliers(void) {
    enum { R = 24, C = 150, NOUT = 36 };
    static float W[R * C];
    static uint8_t planted[R * C];
    const float lv[4] = {-0.75f, -0.25f, 0.125f, 0.5f}; /* exact in fp16 */
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) W[r * C + c] = lv[(r * 7 + c * 3 + (c * c) % 5) % 4] * (1.0f + (float)r / 32.0f);
    int placed = 0;
    while (placed < NOUT) {
        int i = (int)(urand() * R * C);
        if (planted[i]) continue;
        planted[i] = 1;
        W[i] += (urand() < 0.5 ? -1.0f : 1.0f) * (float)(3.0 + 5.0 * urand());
        placed++;
    }
    for (int scaled = 0; scaled < 2; scaled++) {
    opc_qmatrix_params p = mparams(2, 4, (double)NOUT / (R * C));
    p.group_scales = scaled; /* the same exact recovery with (here all-equal) group scales */
    opc_qmatrix q;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
    CHECK(scaled ? q.m.gscale != NULL : q.m.gscale == NULL);
    CHECK_EQ_INT(q.m.n_outliers, NOUT);
    int hits = 0;
    for (int r = 0; r < R; r++)
        for (uint32_t i = q.m.ol_rowptr[r]; i < q.m.ol_rowptr[r + 1]; i++) hits += planted[r * C + q.m.ol_col[i]];
    CHECK_EQ_INT(hits, NOUT);
    for (int r = 0; r < R && hits != NOUT; r++)
        for (int c = 0; c < C; c++) {
            if (!planted[r * C + c]) continue;
            int found = 0;
            for (uint32_t i = q.m.ol_rowptr[r]; i < q.m.ol_rowptr[r + 1]; i++) found |= q.m.ol_col[i] == c;
            if (!found) {
                fprintf(stderr, "  missed (%d,%d) = %g; row has %u outliers; codebook", r, c, W[r * C + c],
                        q.m.ol_rowptr[r + 1] - q.m.ol_rowptr[r]);
                for (int j = 0; j < 4; j++) fprintf(stderr, " %g", opc_fp16_to_fp32(q.codebook[r * 4 + j]));
                fprintf(stderr, "\n");
            }
        }
    float row[C];
    double maxerr = 0.0;
    for (int r = 0; r < R; r++) {
        opc_cb_dequant_row_ref(&q.m, r, row);
        for (int c = 0; c < C; c++) {
            double e = fabs((double)row[c] - (double)W[r * C + c]) / (fabs((double)W[r * C + c]) + 1e-3);
            if (e > maxerr) maxerr = e;
        }
    }
    CHECK_MSG(maxerr < 2e-3, "max relative error %g", maxerr);
    CHECK(q.err_num / q.err_den < 1e-6);
    opc_qmatrix_free(&q);
    /* without outliers the spikes pull codebook entries away: much worse */
    p.outlier_frac = 0.0;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
    CHECK(q.m.n_outliers == 0 && q.m.ol_rowptr == NULL);
    CHECK(q.err_num / q.err_den > 1e-3);
    opc_qmatrix_free(&q);
    }
    opc_qmatrix_free(NULL);
}

/* Rows whose 64-column groups differ in magnitude (factors 2^(-g/3) times a
 * random per-group jitter): per-group scales must track the magnitudes and
 * cut the error well below the per-row codebook alone; every stored scale
 * must be what the reference dequantizer applies (err_num recomputed). */
static void test_group_scales(void) {
    enum { R = 12, C = 64 * 7 + 21 }; /* a partial last group */
    static float W[R * C];
    static float mag[R][8];
    for (int r = 0; r < R; r++)
        for (int g = 0; g < 8; g++) mag[r][g] = (float)(exp2(-(double)((g * 5 + r) % 8) / 3.0) * (0.8 + 0.4 * urand()));
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) W[r * C + c] = (float)nrand() * mag[r][c / 64];
    float imp[C];
    for (int c = 0; c < C; c++) imp[c] = (float)(0.5 + urand());
    opc_qmatrix q0, q1;
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    p.importance = imp;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q0) == OPC_OK);
    p.group_scales = 1;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q1) == OPC_OK);
    CHECK(q1.m.gscale == q1.gscale && q1.gscale && opc_cb_validate(&q1.m, "gs") == OPC_OK);
    double r0 = q0.err_num / q0.err_den, r1 = q1.err_num / q1.err_den;
    fprintf(stderr, "  relative weighted error: row codebook %.4f, + group scales %.4f\n", r0, r1);
    CHECK(r1 < 0.75 * r0);
    /* scales follow the groups' magnitudes: per row, log2 of each group's
     * scale minus the row's mean, against the same for the groups' sample
     * RMS (what the data has, not the planted factor) */
    double worst = 0.0;
    for (int r = 0; r < R; r++) {
        double got[8], want[8], mg = 0.0, mw = 0.0;
        for (int g = 0; g < 8; g++) {
            double ss = 0.0;
            int n = 0;
            for (int c = g * 64; c < C && c < (g + 1) * 64; c++, n++) ss += (double)W[r * C + c] * W[r * C + c];
            want[g] = 0.5 * log2(ss / n);
            got[g] = -(double)q1.gscale[r * 8 + g] / 16.0;
            mg += got[g] / 8;
            mw += want[g] / 8;
        }
        for (int g = 0; g < 8; g++)
            if (fabs((got[g] - mg) - (want[g] - mw)) > worst) worst = fabs((got[g] - mg) - (want[g] - mw));
    }
    fprintf(stderr, "  worst log2 scale error against the groups' RMS %.3f\n", worst);
    CHECK(worst < 0.5);
    /* the reported error is the error of what the reference dequantizes */
    double num = 0.0;
    float row[C];
    for (int r = 0; r < R; r++) {
        opc_cb_dequant_row_ref(&q1.m, r, row);
        for (int c = 0; c < C; c++) num += (double)imp[c] * ((double)W[r * C + c] - row[c]) * ((double)W[r * C + c] - row[c]);
    }
    /* imp is normalised to mean 1 inside the quantizer */
    double mean = 0.0;
    for (int c = 0; c < C; c++) mean += imp[c];
    mean /= C;
    CHECK_MSG(fabs(num / mean - q1.err_num) <= 1e-6 * q1.err_num, "%g vs %g", num / mean, q1.err_num);
    /* bytes: one scale per (row, group) on top of the plain layout */
    CHECK(opc_cb_matrix_bytes(&q1.m) == opc_cb_matrix_bytes(&q0.m) + (uint64_t)R * 8);
    opc_qmatrix_free(&q0);
    opc_qmatrix_free(&q1);
    /* a row of zeros in one group, and all-zero rows, stay exact */
    static float Z[2 * C];
    for (int c = 0; c < C; c++) Z[c] = c < 64 ? 0.0f : (float)nrand();
    for (int c = 0; c < C; c++) Z[C + c] = 0.0f;
    p.importance = NULL;
    CHECK(opc_quantize_matrix(Z, 2, C, &p, &q1) == OPC_OK);
    opc_cb_dequant_row_ref(&q1.m, 0, row);
    for (int c = 0; c < 64; c++) CHECK(row[c] == 0.0f || q1.gscale[0] == 255);
    opc_cb_dequant_row_ref(&q1.m, 1, row);
    int zeros = 1;
    for (int c = 0; c < C; c++) zeros &= row[c] == 0.0f;
    CHECK(zeros);
    opc_qmatrix_free(&q1);
}

/* Rotation: the stored matrix is W R; un-rotating each dequantized row gives
 * back W (4-bit: within its quantization error), and the reference GEMV on
 * x~ = R^T x computes W x. Bad blocks are rejected. */
static void test_rotation(void) {
    enum { R = 20, C = 192 }; /* 64 x 3: block 64 */
    static float W[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)(nrand() * (i % 29 == 0 ? 8.0 : 1.0)); /* spiky columns */
    CHECK_EQ_INT(opc_quant_rot_log2(C, OPC_CB_ROT_MAX_LOG2), 6);
    for (int gs = 0; gs < 2; gs++) {
        opc_qmatrix q;
        opc_qmatrix_params p = mparams(4, 16, 0.0);
        p.group_scales = gs;
        p.rot_log2 = 6;
        CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
        CHECK_EQ_INT(q.m.rot_log2, 6);
        float row[C], x[C], xr[C], y[R];
        double num = 0.0, den = 0.0;
        for (int r = 0; r < R; r++) {
            opc_cb_dequant_row_ref(&q.m, r, row);
            opc_cb_unrotate(row, C, 6);
            for (int c = 0; c < C; c++) {
                num += ((double)row[c] - W[r * C + c]) * ((double)row[c] - W[r * C + c]);
                den += (double)W[r * C + c] * W[r * C + c];
            }
        }
        fprintf(stderr, "  4-bit rotated%s: relative error after un-rotation %.5f (in the rotated basis %.5f)\n",
                gs ? " + group scales" : "", num / den, q.err_num / q.err_den);
        CHECK(num / den < 0.02);
        CHECK(fabs(num / den - q.err_num / q.err_den) < 1e-3); /* orthogonal: same error in both bases */
        for (int c = 0; c < C; c++) x[c] = xr[c] = (float)nrand();
        opc_cb_rotate(xr, C, 6);
        opc_cb_gemv_ref(&q.m, xr, y);
        double e = 0.0, n2 = 0.0;
        for (int r = 0; r < R; r++) {
            double want = 0.0;
            for (int c = 0; c < C; c++) want += (double)W[r * C + c] * x[c];
            e += (y[r] - want) * (y[r] - want);
            n2 += want * want;
        }
        CHECK_MSG(e / n2 < 0.02, "gemv relative error %g", e / n2);
        opc_qmatrix_free(&q);
    }
    /* 2-bit with spiky columns: rotation spreads the spikes, so (without
     * importance) the plain per-row codebook fits the rotated rows better */
    opc_qmatrix a, b;
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &a) == OPC_OK);
    p.rot_log2 = 6;
    CHECK(opc_quantize_matrix(W, R, C, &p, &b) == OPC_OK);
    fprintf(stderr, "  2-bit spiky rows: relative error %.4f plain, %.4f rotated\n", a.err_num / a.err_den,
            b.err_num / b.err_den);
    CHECK(b.err_num / b.err_den < a.err_num / a.err_den);
    opc_qmatrix_free(&a);
    opc_qmatrix_free(&b);
    /* blocks that do not divide cols, or too large */
    opc_qmatrix q;
    p.rot_log2 = 7;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p.rot_log2 = OPC_CB_ROT_MAX_LOG2 + 1;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p.rot_log2 = -1;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    /* the block rule: largest power of two dividing cols, capped */
    CHECK_EQ_INT(opc_quant_rot_log2(576, 15), 6);
    CHECK_EQ_INT(opc_quant_rot_log2(1536, 15), 9);
    CHECK_EQ_INT(opc_quant_rot_log2(1536, 6), 6);
    CHECK_EQ_INT(opc_quant_rot_log2(14336, 15), 11);
    CHECK_EQ_INT(opc_quant_rot_log2(1 << 20, 15), 15);
    CHECK_EQ_INT(opc_quant_rot_log2(172, 15), 2);
    CHECK_EQ_INT(opc_quant_rot_log2(97, 15), 0);
    CHECK_EQ_INT(opc_quant_rot_log2(4096, 0), 0);
    CHECK(!opc_quant_rotatable("token_embd.weight") && !opc_quant_rotatable("output.weight"));
    CHECK(opc_quant_rotatable("blk.0.attn_q.weight"));
}

static void test_rtn_levels(void) {
    enum { C = 100 };
    float W[2 * C];
    for (int i = 0; i < 2 * C; i++) W[i] = (float)nrand();
    W[10] = -2.5f;
    W[20] = 3.5f;
    W[C + 5] = -1.0f;
    W[C + 6] = 1.0f;
    for (int i = C; i < 2 * C; i++) W[i] = W[i] > 1.0f ? 1.0f : (W[i] < -1.0f ? -1.0f : W[i]);
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    p.method = OPC_QUANT_RTN;
    opc_qmatrix q;
    CHECK(opc_quantize_matrix(W, 2, C, &p, &q) == OPC_OK);
    float mn = W[0], mx = W[0];
    for (int i = 0; i < C; i++) {
        mn = W[i] < mn ? W[i] : mn;
        mx = W[i] > mx ? W[i] : mx;
    }
    for (int j = 0; j < 4; j++) {
        CHECK(q.codebook[j] == opc_fp32_to_fp16(mn + (mx - mn) * (float)j / 3.0f));
        CHECK(q.codebook[4 + j] == opc_fp32_to_fp16(-1.0f + 2.0f * (float)j / 3.0f));
    }
    /* every weight maps to its nearest level */
    for (int c = 0; c < C; c++) {
        uint32_t ix = opc_cb_get_index(q.idx, 2, c);
        float v = opc_fp16_to_fp32(q.codebook[ix]);
        for (int j = 0; j < 4; j++) CHECK(fabsf(W[c] - v) <= fabsf(W[c] - opc_fp16_to_fp32(q.codebook[j])));
    }
    /* k-means beats the uniform grid on gaussian rows */
    opc_qmatrix qk;
    p.method = OPC_QUANT_KMEANS;
    CHECK(opc_quantize_matrix(W, 2, C, &p, &qk) == OPC_OK);
    CHECK(qk.err_num < q.err_num);
    opc_qmatrix_free(&q);
    opc_qmatrix_free(&qk);
}

/* Importance on a few columns: their error must drop, at the cost of the rest. */
static void test_importance(void) {
    enum { R = 16, C = 256 };
    static float W[R * C], imp[C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    for (int c = 0; c < C; c++) imp[c] = c % 8 == 0 ? 100.0f : 1.0f;
    opc_qmatrix q0, q1;
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q0) == OPC_OK);
    p.importance = imp;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q1) == OPC_OK);
    double e_imp[2] = {0, 0}, e_rest[2] = {0, 0};
    float row[C];
    for (int v = 0; v < 2; v++) {
        const opc_qmatrix *q = v ? &q1 : &q0;
        for (int r = 0; r < R; r++) {
            opc_cb_dequant_row_ref(&q->m, r, row);
            for (int c = 0; c < C; c++) {
                double d = row[c] - W[r * C + c];
                if (c % 8 == 0)
                    e_imp[v] += d * d;
                else
                    e_rest[v] += d * d;
            }
        }
    }
    fprintf(stderr, "  important-column MSE %.4g -> %.4g, others %.4g -> %.4g\n", e_imp[0], e_imp[1], e_rest[0],
            e_rest[1]);
    /* with 32 important weights per row against 224 others, 4 entries cannot
     * fit them much better than the optimal Gaussian quantizer does; the
     * objective (importance-weighted error) must drop clearly */
    CHECK(e_imp[1] < 0.85 * e_imp[0]);
    CHECK(e_rest[1] > e_rest[0]);
    CHECK(q1.err_num < 0.85 * (100.0 * e_imp[0] + e_rest[0]) / (100.0 * 32 + 224) * (100.0 * 32 + 224) / 1.0);
    opc_qmatrix_free(&q0);
    opc_qmatrix_free(&q1);
}

static void test_threads_deterministic(void) {
    enum { R = 64, C = 200 };
    static float W[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)(nrand() * (1.0 + (i % 13 == 0) * 4.0));
    for (int method = 0; method < 2; method++) {
        opc_qmatrix a, b;
        opc_qmatrix_params p = mparams(4, 16, 0.02);
        p.method = method ? OPC_QUANT_LLOYD : OPC_QUANT_KMEANS;
        p.n_threads = 1;
        CHECK(opc_quantize_matrix(W, R, C, &p, &a) == OPC_OK);
        p.n_threads = 3;
        CHECK(opc_quantize_matrix(W, R, C, &p, &b) == OPC_OK);
        CHECK(a.m.n_outliers == b.m.n_outliers && a.m.n_outliers == (uint64_t)llround(0.02 * R * C));
        CHECK(!memcmp(a.idx, b.idx, (size_t)(R * a.m.row_bytes)));
        CHECK(!memcmp(a.codebook, b.codebook, (size_t)R * 16 * 2));
        CHECK(!memcmp(a.ol_rowptr, b.ol_rowptr, (R + 1) * 4));
        CHECK(!memcmp(a.ol_col, b.ol_col, a.m.n_outliers * 2) && !memcmp(a.ol_val, b.ol_val, a.m.n_outliers * 2));
        CHECK(opc_cb_validate(&a.m, "a") == OPC_OK);
        opc_qmatrix_free(&a);
        opc_qmatrix_free(&b);
    }
    { /* group scales + rotation + outliers: the same bytes for any thread count */
        opc_qmatrix a, b;
        opc_qmatrix_params p = mparams(2, 4, 0.01);
        p.group_scales = 1;
        p.rot_log2 = 3; /* 200 = 8 x 25 */
        p.n_threads = 1;
        CHECK(opc_quantize_matrix(W, R, C, &p, &a) == OPC_OK);
        p.n_threads = 3;
        CHECK(opc_quantize_matrix(W, R, C, &p, &b) == OPC_OK);
        CHECK(a.m.n_outliers == b.m.n_outliers && a.m.n_outliers == (uint64_t)llround(0.01 * R * C));
        CHECK(!memcmp(a.idx, b.idx, (size_t)(R * a.m.row_bytes)));
        CHECK(!memcmp(a.codebook, b.codebook, (size_t)R * 4 * 2));
        CHECK(!memcmp(a.gscale, b.gscale, (size_t)R * 4));
        CHECK(!memcmp(a.ol_col, b.ol_col, a.m.n_outliers * 2) && !memcmp(a.ol_val, b.ol_val, a.m.n_outliers * 2));
        CHECK(opc_cb_validate(&a.m, "a") == OPC_OK && a.m.rot_log2 == 3);
        opc_qmatrix_free(&a);
        opc_qmatrix_free(&b);
    }
    /* bad arguments */
    opc_qmatrix q;
    opc_qmatrix_params p = mparams(2, 5, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p = mparams(3, 4, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p = mparams(2, 4, 0.9);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
}


/* GPTQ: with correlated inputs, error feedback must lower the output error
 * ||(W - Q) X^T||^2 that the plain per-weight fit ignores. */
static void test_gptq(void) {
    enum { R = 32, C = 128, N = 512 };
    static float W[R * C], X[N * C], H[C * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    /* inputs with strong column correlations: x = z A, A random mixing */
    static float A[C * C];
    for (int i = 0; i < C * C; i++) A[i] = (float)(nrand() * (i % (C + 1) == 0 ? 3.0 : 0.3));
    for (int t = 0; t < N; t++) {
        float z[C];
        for (int c = 0; c < C; c++) z[c] = (float)nrand();
        for (int c = 0; c < C; c++) {
            double v = 0;
            for (int j = 0; j < C; j++) v += z[j] * A[j * C + c];
            X[t * C + c] = (float)v;
        }
    }
    float imp[C];
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double v = 0;
            for (int t = 0; t < N; t++) v += (double)X[t * C + a] * X[t * C + b];
            H[a * C + b] = (float)v;
        }
    for (int c = 0; c < C; c++) imp[c] = H[c * C + c];
    double out_err[5];
    for (int v = 0; v < 5; v++) { /* plain, gptq, gptq + outliers, and both again with group scales */
        opc_qmatrix_params p = mparams(2, 4, v == 2 || v == 4 ? 0.01 : 0.0);
        p.importance = imp;
        p.group_scales = v >= 3;
        if (v >= 1) p.hessian = H;
        opc_qmatrix q;
        CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
        CHECK(opc_cb_validate(&q.m, "gptq") == OPC_OK);
        float row[C];
        double e = 0;
        for (int r = 0; r < R; r++) {
            opc_cb_dequant_row_ref(&q.m, r, row);
            for (int t = 0; t < N; t++) {
                double y = 0;
                for (int c = 0; c < C; c++) y += (double)(W[r * C + c] - row[c]) * X[t * C + c];
                e += y * y;
            }
        }
        out_err[v] = e;
        opc_qmatrix_free(&q);
    }
    fprintf(stderr, "  output error: plain %.4g, gptq %.4g, gptq + 1%% outliers %.4g; with group scales %.4g, %.4g\n",
            out_err[0], out_err[1], out_err[2], out_err[3], out_err[4]);
    CHECK(out_err[1] < 0.8 * out_err[0]);
    CHECK(out_err[2] < out_err[1]);
    CHECK(out_err[3] < 0.8 * out_err[0]);
    CHECK(out_err[4] < out_err[3]);
}

/* GPTQ works on blocks of rows that share each row of the factor: the
 * result must not depend on the thread count nor on how rows fall into
 * blocks (37 rows = two full blocks and a partial one; the rows 5..36 alone
 * are blocked differently but must come out the same, row for row). */
static void test_gptq_blocks(void) {
    enum { R = 37, C = 96, N = 300 };
    static float W[R * C], X[N * C], H[C * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)(nrand() * (1.0 + (i % 17 == 0) * 3.0));
    for (int t = 0; t < N; t++) {
        double z = nrand();
        for (int c = 0; c < C; c++) X[t * C + c] = (float)(nrand() + z * (c % 3 == 0)); /* correlated columns */
    }
    float imp[C];
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double v = 0;
            for (int t = 0; t < N; t++) v += (double)X[t * C + a] * X[t * C + b];
            H[a * C + b] = (float)v;
        }
    for (int c = 0; c < C; c++) imp[c] = H[c * C + c];
    for (int v = 0; v < 2; v++) { /* outliers + group scales, then neither */
        opc_qmatrix_params p = mparams(2, 4, v == 0 ? 0.02 : 0.0);
        p.importance = imp;
        p.hessian = H;
        p.group_scales = v == 0;
        opc_qmatrix q[3];
        for (int t = 0; t < 3; t++) {
            p.n_threads = t + 1;
            CHECK(opc_quantize_matrix(W, R, C, &p, &q[t]) == OPC_OK);
        }
        for (int t = 1; t < 3; t++) {
            CHECK(q[t].m.n_outliers == q[0].m.n_outliers);
            CHECK(!memcmp(q[t].idx, q[0].idx, (size_t)(R * q[0].m.row_bytes)));
            CHECK(!memcmp(q[t].codebook, q[0].codebook, (size_t)R * 4 * 2));
            CHECK(!q[0].gscale || !memcmp(q[t].gscale, q[0].gscale, (size_t)R * 2));
            CHECK(!q[0].m.n_outliers || (!memcmp(q[t].ol_col, q[0].ol_col, q[0].m.n_outliers * 2) &&
                                         !memcmp(q[t].ol_val, q[0].ol_val, q[0].m.n_outliers * 2)));
        }
        if (v == 1) { /* without outliers every row is on its own: a subset gives the same rows */
            opc_qmatrix s;
            p.n_threads = 2;
            CHECK(opc_quantize_matrix(W + 5 * C, R - 5, C, &p, &s) == OPC_OK);
            int same = 1;
            for (int r = 5; r < R; r++) {
                same &= !memcmp(s.idx + (r - 5) * s.m.row_bytes, q[0].idx + r * q[0].m.row_bytes, s.m.row_bytes);
                same &= !memcmp(s.codebook + (r - 5) * 4, q[0].codebook + r * 4, 4 * 2);
            }
            CHECK_MSG(same, "GPTQ rows depend on their block");
            opc_qmatrix_free(&s);
        }
        for (int t = 0; t < 3; t++) opc_qmatrix_free(&q[t]);
    }
}

/* ------------------------------------------------- whole-model tests ---- */

/* A llama-shaped config for the synthetic descriptions below: tied
 * embeddings, no special tokens, the usual eps and theta. */
static void synth_config(opc_model_desc *d, const char *path, int dim, int hidden, int layers, int head_dim,
                         int vocab, int seq) {
    snprintf(d->path, sizeof d->path, "%s", path);
    snprintf(d->name, sizeof d->name, "synthetic");
    opc_config *c = &d->cfg;
    c->dim = dim;
    c->hidden_dim = hidden;
    c->n_layers = layers;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = head_dim;
    c->vocab_size = vocab;
    c->max_seq_len = seq;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tied_embeddings = 1;
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
}

typedef struct synth {
    opc_model_desc *d;
    float *bufs[8];
} synth;

/* A tiny llama-shaped description with f32 weights (one layer). */
static void synth_init(synth *s) {
    memset(s, 0, sizeof *s);
    opc_model_desc *d = calloc(1, sizeof *d);
    s->d = d;
    synth_config(d, "synthetic", 96, 130, 1, 24, 50, 64);
    struct { const char *name; int64_t r, c; } t[] = {
        {"token_embd.weight", 50, 96}, {"blk.0.attn_norm.weight", 96, 0}, {"blk.0.attn_q.weight", 96, 96},
        {"blk.0.attn_v.weight", 48, 96}, {"blk.0.ffn_up.weight", 130, 96}, {"blk.0.ffn_down.weight", 96, 130},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    opc_model_desc_alloc_tensors(d, n);
    for (int i = 0; i < n; i++) {
        opc_tensor *x = &d->tensors[i];
        snprintf(x->name, OPC_MAX_NAME, "%s", t[i].name);
        x->type = OPC_TYPE_F32;
        x->n_dims = t[i].c ? 2 : 1;
        x->shape[0] = t[i].r;
        x->shape[1] = t[i].c;
        int64_t ne = t[i].r * (t[i].c ? t[i].c : 1);
        float *b = opc_aligned_alloc((size_t)ne * 4);
        for (int64_t j = 0; j < ne; j++) b[j] = (float)(0.05 * nrand() * (j % 37 == 0 ? 6.0 : 1.0));
        x->data = x->owned = b;
        x->nbytes = (uint64_t)ne * 4;
        x->qerr = -1.0f;
    }
}

static const char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/tmp_%s", OPC_BINARY_DIR, name);
    return buf;
}

/* Quantize `src` to a file, read it back, and compare every tensor with the
 * in-memory quantization of the same tensor: bytes and dequantized rows. */
static void round_trip(const opc_model_desc *src, const opc_quant_params *p, const char *fname) {
    char path[1024];
    tmp_path(path, sizeof path, fname);
    opc_quant_summary sum;
    opc_status st = opc_quantize_model(src, path, p, &sum);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    opc_model_desc *d = NULL;
    st = opc_model_desc_open(path, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    CHECK_EQ_INT(d->n_tensors, src->n_tensors);
    CHECK(!memcmp(&d->cfg, &src->cfg, sizeof d->cfg));
    int n_cb = 0;
    uint64_t q_bytes = 0;
    for (int32_t i = 0; i < d->n_tensors && d->n_tensors == src->n_tensors; i++) {
        const opc_tensor *got = &d->tensors[i];
        opc_tensor mem;
        opc_qmatrix qm;
        CHECK(opc_quantize_tensor(&src->tensors[i], i, p, &mem, &qm) == OPC_OK);
        CHECK_STR(got->name, mem.name);
        CHECK(got->type == mem.type && got->nbytes == mem.nbytes && !memcmp(got->data, mem.data, mem.nbytes));
        CHECK(got->qerr == mem.qerr);
        if (got->type == OPC_TYPE_CB2 || got->type == OPC_TYPE_CB4) {
            n_cb++;
            const opc_cb_matrix *a = &got->cb, *b = &mem.cb;
            q_bytes += opc_cb_matrix_bytes(a);
            CHECK(a->k == b->k && a->n_outliers == b->n_outliers);
            CHECK(!memcmp(a->codebook, b->codebook, (size_t)(a->rows * a->k * 2)));
            CHECK(a->rot_log2 == b->rot_log2 && !a->gscale == !b->gscale);
            CHECK(!p->group_scales == !a->gscale);
            CHECK(a->rot_log2 == opc_quant_rotated(got->name, a->cols, p));
            if (a->gscale && b->gscale)
                CHECK(!memcmp(a->gscale, b->gscale, (size_t)(a->rows * opc_cb_groups(a->cols))));
            float *ra = malloc((size_t)a->cols * 4), *rb = malloc((size_t)a->cols * 4);
            int same = 1;
            for (int64_t r = 0; r < a->rows; r++) {
                opc_cb_dequant_row_ref(a, r, ra);
                opc_cb_dequant_row_ref(b, r, rb);
                same &= !memcmp(ra, rb, (size_t)a->cols * 4);
            }
            CHECK_MSG(same, "tensor %s: dequantized rows differ", got->name);
            free(ra);
            free(rb);
            /* GPTQ trades the per-weight error for the output error: a looser bound */
            CHECK_MSG(got->qerr >= 0.0f && got->qerr < (p->method == OPC_QUANT_RTN ? 1.0f : p->gptq ? 0.5f : 0.25f),
                      "%s qerr %g k %d",
                      got->name, (double)got->qerr, a->k);
        }
        opc_quant_tensor_free(&mem, &qm);
    }
    CHECK(n_cb > 0);
    CHECK(q_bytes == sum.q_bytes);
    fprintf(stderr, "  %s: %d codebook tensors, %.3f bpw all-in, file %llu bytes, %.2f s\n", fname, n_cb,
            8.0 * (double)sum.q_bytes / (double)sum.q_elems, (unsigned long long)sum.file_bytes, sum.seconds);
    opc_quant_summary_free(&sum);
    opc_model_desc_free(d);
    remove(path);
}

static void test_round_trip_synthetic(void) {
    synth s;
    synth_init(&s);
    opc_quant_params p = opc_quant_defaults();
    round_trip(s.d, &p, "q_synth2.bf2");
    p.bits = 4.0f;
    p.overrides = "attn_v=3,ffn_down=1.58";
    round_trip(s.d, &p, "q_synth4.bf2");
    p = opc_quant_defaults();
    p.method = OPC_QUANT_RTN;
    p.outlier_frac = 0.0;
    round_trip(s.d, &p, "q_synth_rtn.bf2");
    /* group scales and rotation through the file (token_embd quantized too:
     * it must not be rotated) */
    p = opc_quant_defaults();
    p.group_scales = 1;
    p.rotate = 1;
    p.overrides = "token_embd.weight=2";
    round_trip(s.d, &p, "q_synth_gsrot.bf2");
    p.group_scales = 0;
    p.rot_max_log2 = 2;
    p.bits = 4.0f;
    round_trip(s.d, &p, "q_synth_rot4.bf2");
    /* plan: defaults and overrides */
    opc_quant_choice ch;
    int32_t ib, k;
    p = opc_quant_defaults();
    CHECK(opc_quant_plan(&s.d->tensors[0], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F16);
    CHECK(opc_quant_plan(&s.d->tensors[1], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F32);
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 4);
    p.overrides = "token_embd.weight=4,blk.*.attn_?.weight=3";
    CHECK(opc_quant_plan(&s.d->tensors[0], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 16);
    CHECK(opc_quant_plan(&s.d->tensors[3], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 8);
    p.overrides = NULL;
    p.keep_fp16 = "*ffn_*";
    CHECK(opc_quant_plan(&s.d->tensors[4], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F16);
    p.keep_fp16 = NULL;
    p.overrides = "attn_q";
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_ERR_INVALID_ARG);
    p.overrides = "attn_q=5";
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_ERR_INVALID_ARG);
    char path[1024];
    tmp_path(path, sizeof path, "q_bad.bf2");
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INVALID_ARG);
    CHECK(!opc_file_exists(path));
    opc_model_desc_free(s.d);
}

static int count_temps(const char *base) {
    DIR *dir = opendir(OPC_BINARY_DIR);
    if (!dir) return -1;
    int n = 0;
    struct dirent *e;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "tmp_%s.tmp.", base);
    while ((e = readdir(dir)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(dir);
    return n;
}

static volatile sig_atomic_t g_flag;
static void interrupt_at_3(void *user, const opc_quant_progress *pr) {
    (void)user;
    if (pr->tensor == 3) g_flag = 1; /* as the CLI's SIGINT handler would */
}

static void test_interrupt(void) {
    synth s;
    synth_init(&s);
    char path[1024];
    tmp_path(path, sizeof path, "q_int.bf2");
    remove(path);
    opc_quant_params p = opc_quant_defaults();
    p.interrupt = &g_flag;
    p.progress = interrupt_at_3;
    g_flag = 0;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    CHECK(!opc_file_exists(path));
    CHECK_EQ_INT(count_temps("q_int.bf2"), 0);
    /* an existing output is never clobbered */
    FILE *f = fopen(path, "wb");
    fputs("keep me", f);
    fclose(f);
    g_flag = 0;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    char *txt = NULL;
    size_t n = 0;
    CHECK(opc_read_file(path, &txt, &n) == OPC_OK && n == 7 && !memcmp(txt, "keep me", 7));
    free(txt);
    CHECK_EQ_INT(count_temps("q_int.bf2"), 0);
    /* flag already set: nothing happens at all */
    g_flag = 1;
    p.progress = NULL;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    remove(path);
    opc_model_desc_free(s.d);
}

static void test_round_trip_stories260k(void) {
    char path[1024];
    SHARED_PATH(path, "models/stories260K/stories260K.bin");
    if (!opc_file_exists(path)) SKIP("%s not found", path);
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(path, &d);
    if (st == OPC_ERR_UNSUPPORTED) SKIP("llama2.c loader not available: %s", opc_last_error());
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    opc_quant_params p = opc_quant_defaults();
    round_trip(d, &p, "q_st2.bf2");
    p.bits = 3.0f;
    p.outlier_frac = 0.005;
    round_trip(d, &p, "q_st3.bf2");
    opc_model_desc_free(d);
}

/* Calibration with rotation on stories260K: the rotated sums of squares keep
 * each token's energy (R orthogonal) and equal the diagonal of R^T H R; the
 * quantizer then rotates exactly the selected tensors (with GPTQ on R^T H R
 * and group scales), writes and reads them back bit for bit, and refuses a
 * rotation block the calibration did not collect. */
static void test_calibration_rotated(void) {
    char path[1024];
    SHARED_PATH(path, "models/stories260K/stories260K.bin");
    if (!opc_file_exists(path)) SKIP("%s not found", path);
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(path, &d);
    if (st == OPC_ERR_UNSUPPORTED) SKIP("llama2.c loader not available: %s", opc_last_error());
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    opc_importance imp;
    st = opc_calibrate_sampled(d, 96, 48, 5, 1, 1, OPC_CB_ROT_MAX_LOG2, NULL, NULL, NULL, &imp);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) {
        opc_model_desc_free(d);
        return;
    }
    CHECK_EQ_INT(imp.rot_max_log2, OPC_CB_ROT_MAX_LOG2);
    const char *names[] = {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "blk.0.ffn_gate.weight"};
    for (int t = 0; t < 3; t++) {
        const opc_tensor *x = NULL;
        for (int32_t i = 0; i < d->n_tensors; i++)
            if (!strcmp(d->tensors[i].name, names[t])) x = &d->tensors[i];
        CHECK(x != NULL);
        if (!x) continue;
        int64_t cols = x->shape[1];
        int32_t lg = opc_quant_rot_log2(cols, OPC_CB_ROT_MAX_LOG2);
        CHECK(lg > 0);
        float *s0 = malloc((size_t)cols * 4), *s1 = malloc((size_t)cols * 4);
        CHECK(opc_importance_get(&imp, names[t], cols, s0));
        CHECK(opc_importance_get_rotated(&imp, names[t], cols, lg, s1));
        CHECK(!opc_importance_get_rotated(&imp, names[t], cols, lg - 1, s1 + 0) || lg - 1 == 0);
        double a = 0.0, b = 0.0;
        for (int64_t c = 0; c < cols; c++) {
            a += s0[c];
            b += s1[c];
        }
        CHECK_MSG(fabs(a - b) <= 1e-5 * a, "%s: energy %g unrotated, %g rotated", names[t], a, b);
        const float *H = opc_importance_hessian(&imp, names[t], cols);
        CHECK(H != NULL);
        float *Hr = NULL;
        if (H && opc_quant_rotate_hessian(H, cols, lg, &Hr) == OPC_OK) {
            double worst = 0.0, sym = 0.0;
            for (int64_t c = 0; c < cols; c++) {
                double e = fabs((double)Hr[c * cols + c] - s1[c]) / (s1[c] + 1e-3 * b / (double)cols);
                if (e > worst) worst = e;
                for (int64_t j = 0; j < c; j++) {
                    double dd = fabs((double)Hr[c * cols + j] - Hr[j * cols + c]);
                    if (dd > sym) sym = dd;
                }
            }
            fprintf(stderr, "  %s (block %d): diag(R^T H R) vs rotated sums of squares: worst relative %.2e, "
                    "asymmetry %.2e\n", names[t], 1 << lg, worst, sym);
            CHECK(worst < 1e-3);
            CHECK(sym <= 1e-4 * b / (double)cols);
        }
        opc_aligned_free(Hr);
        free(s0);
        free(s1);
    }
    opc_quant_params p = opc_quant_defaults();
    p.importance = &imp;
    p.gptq = 1;
    p.group_scales = 1;
    p.rotate = 1;
    round_trip(d, &p, "q_st_gptq_gsrot.bf2");
    p.gptq = 0;
    p.rotate_tensors = "ffn_down,attn_output";
    round_trip(d, &p, "q_st_rot_some.bf2");
    CHECK(opc_quant_rotated("blk.3.ffn_down.weight", 172, &p) == 2 && opc_quant_rotated("blk.3.attn_q.weight", 64, &p) == 0);
    /* a block the calibration did not collect */
    p.rotate_tensors = NULL;
    p.rot_max_log2 = 3;
    opc_tensor out;
    opc_qmatrix qm;
    for (int32_t i = 0; i < d->n_tensors; i++)
        if (!strcmp(d->tensors[i].name, "blk.0.attn_q.weight"))
            CHECK(opc_quantize_tensor(&d->tensors[i], i, &p, &out, &qm) == OPC_ERR_INVALID_ARG);
    opc_importance_free(&imp);
    opc_model_desc_free(d);
}

/* ------------------------------------------------- size budget ---------- */

/* opc_quant_cb_bytes (known before quantizing) is what the format stores. */
static void test_cb_bytes_prediction(void) {
    enum { R = 37, C = 150 };
    static float W[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    const struct { int32_t bits, k; double frac; int gs; } cases[] = {
        {2, 4, 0.0, 0}, {2, 4, 0.005, 0}, {2, 3, 0.01, 0}, {4, 16, 0.0, 0}, {4, 8, 0.02, 0}, {2, 4, 0.01, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        opc_qmatrix_params p = mparams(cases[i].bits, cases[i].k, cases[i].frac);
        p.group_scales = cases[i].gs;
        opc_qmatrix q;
        CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
        CHECK_EQ_INT(q.m.n_outliers, opc_quant_outlier_count(R, C, cases[i].frac));
        CHECK_EQ_INT(opc_cb_matrix_bytes(&q.m),
                     opc_quant_cb_bytes(R, C, cases[i].bits, cases[i].k, cases[i].frac, cases[i].gs));
        opc_qmatrix_free(&q);
    }
    CHECK_EQ_INT(opc_quant_outlier_count(4, 70000, 0.01), 0); /* 16-bit column index */
}

/* A Llama-shaped description (f32 random weights) with n_layers blocks of
 * the seven linear classes, for the allocation tests. */
static opc_model_desc *synth_layers(int n_layers) {
    opc_model_desc *d = calloc(1, sizeof *d);
    char path[32];
    snprintf(path, sizeof path, "synthetic-%d", n_layers);
    synth_config(d, path, 256, 384, n_layers, 16, 40, 32);
    const struct { const char *cls; int64_t r, c; } cls[] = {
        {"attn_q", 256, 256}, {"attn_k", 32, 256}, {"attn_v", 32, 256}, {"attn_output", 256, 256},
        {"ffn_gate", 384, 256}, {"ffn_up", 384, 256}, {"ffn_down", 256, 384},
    };
    const int nc = (int)(sizeof cls / sizeof cls[0]);
    opc_model_desc_alloc_tensors(d, 1 + n_layers * nc);
    for (int i = 0; i < d->n_tensors; i++) {
        opc_tensor *x = &d->tensors[i];
        int64_t r = 40, cc = 256;
        if (i == 0) {
            snprintf(x->name, OPC_MAX_NAME, "token_embd.weight");
        } else {
            int l = (i - 1) / nc, j = (i - 1) % nc;
            snprintf(x->name, OPC_MAX_NAME, "blk.%d.%s.weight", l, cls[j].cls);
            r = cls[j].r;
            cc = cls[j].c;
        }
        x->type = OPC_TYPE_F32;
        x->n_dims = 2;
        x->shape[0] = r;
        x->shape[1] = cc;
        float *b = opc_aligned_alloc((size_t)(r * cc) * 4);
        for (int64_t e = 0; e < r * cc; e++) b[e] = (float)(0.05 * nrand());
        x->data = x->owned = b;
        x->nbytes = (uint64_t)(r * cc) * 4;
        x->qerr = -1.0f;
    }
    return d;
}

/* Bits and outlier fraction a tensor gets under the allocation's rules. */
static void planned(const opc_model_desc *d, int32_t i, const opc_quant_params *p, const opc_quant_alloc *a,
                    int32_t *k, double *frac) {
    opc_quant_params q = *p;
    q.overrides = a->overrides;
    q.outlier_overrides = a->outlier_overrides;
    q.edge_layers = d->cfg.n_layers;
    opc_quant_choice ch;
    int32_t ib;
    *k = 0;
    CHECK(opc_quant_plan(&d->tensors[i], &q, &ch, &ib, k) == OPC_OK);
    *frac = opc_quant_outlier_frac(d->tensors[i].name, &q);
}

/* The allocation stays within the budget, spends more as the budget grows,
 * is deterministic, takes steps in their order (the first block's FFN
 * before the rest), leaves tensors the caller named alone, and does nothing
 * when the budget is below the uniform size. */
static void test_allocation(void) {
    opc_model_desc *d = synth_layers(6);
    opc_quant_params p = opc_quant_defaults();
    p.outlier_frac = 0.005;
    opc_quant_alloc a, b;
    double prev = 0.0;
    int n_budgets = 0;
    p.bpw_budget = 1.0;
    CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a) == OPC_OK);
    const double base = a.bpw_base, q_elems = (double)a.q_elems;
    CHECK(a.bpw == base && !a.steps && base > 2.0 && base < 3.0);
    opc_quant_alloc_free(&a);
    /* what the first step (blk.0.ffn_down to 4 bits) costs, in bpw */
    const double step1 = 8.0 * ((double)opc_quant_cb_bytes(256, 384, 4, 16, 0.0, 0) -
                                (double)opc_quant_cb_bytes(256, 384, 2, 4, 0.005, 0)) / q_elems;
    for (double budget = base - 0.1; budget <= base + 2.5; budget += 0.05) {
        p.bpw_budget = budget;
        CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a) == OPC_OK);
        CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &b) == OPC_OK);
        CHECK(!strcmp(a.overrides ? a.overrides : "", b.overrides ? b.overrides : "") &&
              !strcmp(a.outlier_overrides ? a.outlier_overrides : "", b.outlier_overrides ? b.outlier_overrides : ""));
        CHECK(a.bpw_base == base);
        if (budget >= base) CHECK_MSG(a.bpw <= budget, "bpw %.4f > budget %.4f", a.bpw, budget);
        else CHECK(a.bpw == base && !a.steps);
        CHECK(a.bpw >= prev);
        prev = a.bpw;
        /* the first step fits: blk.0.ffn_down is 4-bit without outliers */
        int32_t k;
        double f;
        planned(d, 7, &p, &a, &k, &f); /* blk.0.ffn_down */
        if (budget >= base + step1) CHECK(k == 16 && f == 0.0);
        else CHECK(k == 4 && f == 0.005);
        planned(d, 2, &p, &a, &k, &f); /* blk.0.attn_k: no step names it */
        CHECK(k == 4 && f == 0.005);
        n_budgets++;
        opc_quant_alloc_free(&a);
        opc_quant_alloc_free(&b);
    }
    CHECK(n_budgets > 40);
    CHECK(prev > base + 0.5); /* the largest budgets take every step */
    /* tensors named by the caller are left as given and still counted */
    p.bpw_budget = base + 2.0;
    p.overrides = "blk.0.ffn_down=2";
    p.outlier_overrides = "blk.5.ffn_up=0.02";
    CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a) == OPC_OK);
    int32_t k;
    double f;
    planned(d, 7, &p, &a, &k, &f);
    CHECK(k == 4 && f == 0.005);
    planned(d, 1 + 5 * 7 + 5, &p, &a, &k, &f); /* blk.5.ffn_up */
    CHECK(k == 4 && f == 0.02);
    planned(d, 1 + 5 * 7 + 6, &p, &a, &k, &f); /* blk.5.ffn_down: the last block's, promoted */
    CHECK(k == 16 && f == 0.0);
    planned(d, 1 + 2 * 7 + 2, &p, &a, &k, &f); /* blk.2.attn_v */
    CHECK(k == 16 && f == 0.0);
    opc_quant_alloc_free(&a);
    /* malformed caller lists */
    p.outlier_overrides = "ffn_up=0.7";
    CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a) == OPC_ERR_INVALID_ARG);
    p.outlier_overrides = "ffn_up";
    CHECK(opc_quant_outlier_frac("blk.0.ffn_up.weight", &p) < 0.0);
    char path[1024];
    tmp_path(path, sizeof path, "q_bad_ol.bf2");
    CHECK(opc_quantize_model(d, path, &p, NULL) == OPC_ERR_INVALID_ARG);
    CHECK(!opc_file_exists(path));

    /* end to end: the file is within the budget and what the rules say,
     * tensor by tensor (round_trip with the rules as plain overrides) */
    p.overrides = NULL;
    p.outlier_overrides = NULL;
    p.bpw_budget = base + 0.3;
    CHECK(opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a) == OPC_OK);
    CHECK(a.steps != NULL);
    tmp_path(path, sizeof path, "q_budget.bf2");
    opc_quant_summary sum;
    CHECK(opc_quantize_model(d, path, &p, &sum) == OPC_OK);
    CHECK(sum.q_bytes <= a.q_bytes && sum.q_elems == a.q_elems);
    CHECK_MSG(8.0 * (double)sum.q_bytes / (double)sum.q_elems <= p.bpw_budget, "%.4f bpw",
              8.0 * (double)sum.q_bytes / (double)sum.q_elems);
    CHECK(sum.alloc_steps && !strcmp(sum.alloc_steps, a.steps));
    opc_quant_summary_free(&sum);
    opc_model_desc *q = NULL;
    CHECK(opc_model_desc_open(path, &q) == OPC_OK);
    for (int32_t i = 0; q && i < q->n_tensors; i++) {
        planned(d, i, &p, &a, &k, &f);
        CHECK(q->tensors[i].cb.k == k);
    }
    opc_model_desc_free(q);
    remove(path);
    opc_quant_params r = p;
    r.bpw_budget = 0.0;
    r.overrides = a.overrides;
    r.outlier_overrides = a.outlier_overrides;
    round_trip(d, &r, "q_budget_rules.bf2");
    opc_quant_alloc_free(&a);
    opc_model_desc_free(d);
}

int main(void) {
    RUN(test_bits_layout);
    RUN(test_planted_outliers);
    RUN(test_rtn_levels);
    RUN(test_importance);
    RUN(test_group_scales);
    RUN(test_rotation);
    RUN(test_threads_deterministic);
    RUN(test_gptq);
    RUN(test_gptq_blocks);
    RUN(test_round_trip_synthetic);
    RUN(test_interrupt);
    RUN(test_round_trip_stories260k);
    RUN(test_calibration_rotated);
    RUN(test_cb_bytes_prediction);
    RUN(test_allocation);
    return harness_finish();
}
