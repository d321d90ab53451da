/*
 * test_cpu_kernels.c — every CPU implementation of the codebook matmul
 * (scalar, AVX2, AVX-512; forced through opc_cb_matmul_impl) against the
 * scalar reference opc_cb_gemv_ref on odd shapes, fresh random data each
 * run (the seed is printed; set OPC_TEST_SEED to replay a failure).
 *
 * Error bound. The kernels sum n = cols + n_outliers(row) exact products
 * (fp16 -> fp32 conversion is exact, FMA rounds once per add) in fp32, in
 * some order; the reference sums in double. For any summation order the
 * fp32 error is at most (n - 1) u / (1 - (n - 1) u) * sum |terms| with
 * u = 2^-24, so we allow (n + 2) * 2^-24 * sum |w x| (+2 for the rounded
 * outlier products and the final add). The observed worst ratio is printed:
 * typically far below the bound because rounding errors mostly cancel.
 * With group scales (cb.h) the terms are s_g w x and kernels may round
 * each scaled weight s_g w once more (the SIMD kernels scale the table) and
 * each group's product with s_g once (the scalar kernel), so the bound gains
 * (cols + 2 * groups) u * sum |s_g w x|.
 */
#include "harness.h"

#include "core/cpu_features.h"
#include "core/half.h"
#include "cpu/cpu.h"
#include "quant/cb.h"

#include <stdint.h>
#include <time.h>

static uint64_t g_rng;

static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}
static float rndf(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* A random codebook matrix with its own storage. outlier_mode: 0 none,
 * 1 heavy (about a third of the rows get up to half their columns).
 * gscale_mode: 0 none, 1 random scale bytes per (row, group): 0 (factor 1)
 * often, small q, and the full byte range up to 255 (factor 2^-15.9). */
typedef struct tmat {
    opc_cb_matrix m;
    uint8_t *idx, *gs;
    uint16_t *cb, *ol_val, *ol_col;
    uint32_t *rowptr;
} tmat;

static void tmat_free(tmat *t) {
    free(t->idx);
    free(t->gs);
    free(t->cb);
    free(t->ol_val);
    free(t->ol_col);
    free(t->rowptr);
    memset(t, 0, sizeof *t);
}

static int tmat_make(tmat *t, int64_t rows, int64_t cols, int bits, int k, int outlier_mode,
                     int gscale_mode) {
    memset(t, 0, sizeof *t);
    uint64_t rb = opc_cb_row_bytes(bits, cols);
    t->idx = calloc((size_t)(rows * (int64_t)rb), 1);
    t->cb = malloc(sizeof(uint16_t) * (size_t)(rows * k));
    t->rowptr = calloc((size_t)rows + 1, sizeof(uint32_t));
    if (!t->idx || !t->cb || !t->rowptr) return -1;
    for (int64_t r = 0; r < rows; r++) {
        /* codebook entries of mixed magnitude, including exact zero sometimes */
        float scale = (r % 5 == 0) ? 8.0f : 0.05f;
        for (int i = 0; i < k; i++)
            t->cb[r * k + i] = opc_fp32_to_fp16((rnd() % 17 == 0) ? 0.0f : rndf() * scale);
        uint8_t *row = t->idx + r * (int64_t)rb;
        for (int64_t c = 0; c < cols; c++)
            opc_cb_set_index(row, bits, c, (uint32_t)(rnd() % (uint64_t)k));
        /* Padding columns of the last group get random (valid) indices: the
         * spec says index 0, but a kernel must not let them contribute
         * whatever they hold. */
        int64_t padded = (int64_t)(rb / (bits == 2 ? 16u : 32u)) * OPC_CB_GROUP;
        for (int64_t c = cols; c < padded; c++)
            opc_cb_set_index(row, bits, c, (uint32_t)(rnd() % (uint64_t)k));
    }
    uint64_t cap = 0;
    if (outlier_mode) {
        for (int64_t r = 0; r < rows; r++) {
            uint32_t n = 0;
            if (rnd() % 3 == 0) n = (uint32_t)(rnd() % (uint64_t)(cols / 2 + 2));
            if (n > (uint32_t)cols) n = (uint32_t)cols;
            t->rowptr[r + 1] = t->rowptr[r] + n;
        }
        cap = t->rowptr[rows];
    }
    if (cap) {
        t->ol_val = malloc(sizeof(uint16_t) * cap);
        t->ol_col = malloc(sizeof(uint16_t) * cap);
        if (!t->ol_val || !t->ol_col) return -1;
        for (int64_t r = 0; r < rows; r++) {
            uint32_t a = t->rowptr[r], n = t->rowptr[r + 1] - a;
            /* n distinct sorted columns: walk the columns, keep each with the
             * right remaining probability (selection sampling) */
            uint32_t kept = 0;
            for (int64_t c = 0; c < cols && kept < n; c++) {
                if (rnd() % (uint64_t)(cols - c) < (uint64_t)(n - kept)) {
                    t->ol_col[a + kept] = (uint16_t)c;
                    t->ol_val[a + kept] = opc_fp32_to_fp16(rndf() * 4.0f);
                    kept++;
                }
            }
        }
    }
    t->m.rows = rows;
    t->m.cols = cols;
    t->m.bits = bits;
    t->m.k = k;
    t->m.idx = t->idx;
    t->m.row_bytes = rb;
    t->m.codebook = t->cb;
    t->m.n_outliers = cap;
    t->m.ol_rowptr = cap ? t->rowptr : NULL;
    t->m.ol_col = t->ol_col;
    t->m.ol_val = t->ol_val;
    if (gscale_mode) {
        int64_t n = rows * opc_cb_groups(cols);
        t->gs = malloc((size_t)n);
        if (!t->gs) return -1;
        for (int64_t i = 0; i < n; i++) {
            uint64_t u = rnd() % 8;
            t->gs[i] = u < 3 ? 0 : u < 6 ? (uint8_t)(rnd() % 40) : (uint8_t)(rnd() % 256);
        }
        if (n > 1) t->gs[n - 1] = 255; /* the smallest factor at least once */
        t->m.gscale = t->gs;
    }
    return 0;
}

/* s(gscale) of column c of row r, 1 when the matrix has none. */
static double col_scale(const opc_cb_matrix *m, int64_t r, int64_t c) {
    if (!m->gscale) return 1.0;
    return opc_cb_scale(m->gscale[r * opc_cb_groups(m->cols) + c / OPC_CB_GROUP]);
}

/* sum_c |w[r][c] x[c]| split like the kernels: codebook part + outlier part. */
static double abs_sum(const opc_cb_matrix *m, int64_t r, const float *x, int64_t *nterms) {
    const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
    double s = 0.0;
    for (int64_t c = 0; c < m->cols; c++) {
        float w = opc_fp16_to_fp32(m->codebook[r * m->k + opc_cb_get_index(row, m->bits, c)]);
        s += fabs(col_scale(m, r, c) * (double)w * x[c]);
    }
    int64_t n = m->cols;
    if (m->gscale) n += m->cols + 2 * opc_cb_groups(m->cols); /* see the top comment */
    if (m->n_outliers) {
        for (uint32_t i = m->ol_rowptr[r]; i < m->ol_rowptr[r + 1]; i++, n++)
            s += fabs((double)opc_fp16_to_fp32(m->ol_val[i]) * x[m->ol_col[i]]);
    }
    *nterms = n;
    return s;
}

/* Extra error allowed for the int8 kernel (cb_i8_avx512.c, any T, 2- and
 * 4-bit): weights s_g c rounded to int8 steps a = max|c_i| / 127 (error
 * <= a / 2), activations per 256-column block to steps max|x| / 127 (error
 * e(c) = max|x| / 127 / 2), so |dy| <= sum_c (|w_c| e(c) + |x_c| a / 2 +
 * a e(c) / 2); plus fp32 rounding of the block sums, which carry the +128
 * weight offset (128 a sum |x|) before it is subtracted. */
static double p8_extra(const opc_cb_matrix *m, int64_t r, const float *x) {
    const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
    double cb[16] = {0}, amax = 0;
    for (int i = 0; i < m->k; i++) {
        cb[i] = opc_fp16_to_fp32(m->codebook[r * m->k + i]);
        amax = fmax(amax, fabs(cb[i]));
    }
    const double a = amax / 127.0;
    double e = 0, ax = 0;
    for (int64_t b0 = 0; b0 < m->cols; b0 += 256) {
        int64_t b1 = b0 + 256 < m->cols ? b0 + 256 : m->cols;
        double xm = 0;
        for (int64_t c = b0; c < b1; c++) xm = fmax(xm, fabs(x[c]));
        const double ex = xm / 127.0 / 2.0;
        for (int64_t c = b0; c < b1; c++) {
            double w = col_scale(m, r, c) * cb[opc_cb_get_index(row, m->bits, c)];
            e += fabs(w) * ex + fabs(x[c]) * a / 2.0 + a * ex / 2.0;
            ax += fabs(x[c]) + ex;
        }
    }
    return e * (1 + 1e-6) + 4096 * 0x1p-24 * 256.0 * a * ax;
}

static double g_worst_ratio;

/* Run impl on one shape; returns the number of mismatching outputs. */
static int check_case(opc_cb_impl impl, int64_t rows, int64_t cols, int64_t T, int bits, int k,
                      int outliers, int gscale, int nthreads) {
    tmat t;
    int bad = 0;
    if (tmat_make(&t, rows, cols, bits, k, outliers, gscale) != 0) {
        tmat_free(&t);
        CHECK_MSG(0, "out of memory");
        return 1;
    }
    CHECK_EQ_INT(opc_cb_validate(&t.m, "test"), OPC_OK);
    float *X = malloc(sizeof(float) * (size_t)(T * cols));
    const int guard = 16;
    float *Y = malloc(sizeof(float) * (size_t)(T * rows + guard));
    float *Yref = malloc(sizeof(float) * (size_t)(T * rows));
    if (!X || !Y || !Yref) {
        CHECK_MSG(0, "out of memory");
        bad = 1;
        goto done;
    }
    for (int64_t i = 0; i < T * cols; i++) X[i] = rndf();
    for (int64_t i = 0; i < T * rows + guard; i++) Y[i] = -12345.0f; /* canaries */
    for (int64_t tt = 0; tt < T; tt++) opc_cb_gemv_ref(&t.m, X + tt * cols, Yref + tt * rows);
    opc_cb_matmul_impl(impl, &t.m, X, T, Y, nthreads);
    for (int64_t tt = 0; tt < T; tt++) {
        for (int64_t r = 0; r < rows; r++) {
            int64_t n;
            double s = abs_sum(&t.m, r, X + tt * cols, &n);
            double err = fabs((double)Y[tt * rows + r] - (double)Yref[tt * rows + r]);
            double tol = (double)(n + 2) * 0x1p-24 * s + 1e-30;
            if (impl == OPC_CB_IMPL_AVX512_I8) tol += p8_extra(&t.m, r, X + tt * cols);
            if (s > 0 && err / s > g_worst_ratio) g_worst_ratio = err / s;
            if (!(err <= tol)) {
                if (bad < 3)
                    fprintf(stderr,
                            "  %s rows=%lld cols=%lld T=%lld bits=%d k=%d ol=%d gs=%d thr=%d: "
                            "y[%lld][%lld] = %.9g, ref %.9g (tol %.3g)\n",
                            opc_cb_impl_name(impl), (long long)rows, (long long)cols,
                            (long long)T, bits, k, outliers, gscale, nthreads, (long long)tt,
                            (long long)r, (double)Y[tt * rows + r],
                            (double)Yref[tt * rows + r], tol);
                bad++;
            }
        }
    }
    for (int i = 0; i < guard; i++)
        if (Y[T * rows + i] != -12345.0f) bad++;
done:
    free(X);
    free(Y);
    free(Yref);
    tmat_free(&t);
    return bad;
}

static void sweep(opc_cb_impl impl) {
    if (!opc_cb_impl_available(impl)) SKIP("%s not supported by this CPU", opc_cb_impl_name(impl));
    static const int64_t rows_list[] = {1, 7, 33, 130};
    static const int64_t cols_list[] = {1, 63, 64, 65, 200, 576};
    static const int64_t T_list[] = {1, 3, 8, 17};
    static const int bk[][2] = {{2, 4}, {2, 3}, {2, 1}, {4, 16}, {4, 11}};
    int cases = 0, failed = 0;
    double worst[2] = {0, 0}; /* without / with group scales */
    for (int gs = 0; gs < 2; gs++) {
        g_worst_ratio = 0;
        for (size_t a = 0; a < sizeof rows_list / sizeof rows_list[0]; a++)
            for (size_t b = 0; b < sizeof cols_list / sizeof cols_list[0]; b++)
                for (size_t c = 0; c < sizeof T_list / sizeof T_list[0]; c++)
                    for (size_t d = 0; d < sizeof bk / sizeof bk[0]; d++)
                        for (int ol = 0; ol < 2; ol++) {
                            int nthreads = 1 + (int)((a + b + c + d + (size_t)(ol + gs)) % 2);
                            int bad = check_case(impl, rows_list[a], cols_list[b], T_list[c],
                                                 bk[d][0], bk[d][1], ol, gs, nthreads);
                            cases++;
                            if (bad) failed++;
                        }
        worst[gs] = g_worst_ratio;
    }
    CHECK_MSG(failed == 0, "%d of %d shapes mismatch", failed, cases);
    fprintf(stderr, "  %s: %d shapes, worst |err| / sum|w x| = %.3g (group scales: %.3g)\n",
            opc_cb_impl_name(impl), cases, worst[0], worst[1]);
}

static void test_scalar(void) { sweep(OPC_CB_IMPL_SCALAR); }
static void test_avx2(void) { sweep(OPC_CB_IMPL_AVX2); }
static void test_avx512(void) { sweep(OPC_CB_IMPL_AVX512); }
static void test_avx512_i8(void) { sweep(OPC_CB_IMPL_AVX512_I8); }

/* The int8 kernel is opt-in: AUTO uses it only after asking. And it really
 * quantizes: on a case built to lose small activations it must differ from
 * the exact kernel by exactly what int8 rounding predicts. */
static void test_int8_opt_in(void) {
    if (!opc_cb_impl_available(OPC_CB_IMPL_AVX512_I8)) SKIP("no AVX-512 VNNI");
    if (getenv("OPC_CB_KERNEL")) SKIP("OPC_CB_KERNEL is set");
    CHECK(opc_cb_impl_best() != OPC_CB_IMPL_AVX512_I8);
    CHECK(opc_cpu_set_int8_activations(true));
    CHECK_EQ_INT(opc_cb_impl_best(), OPC_CB_IMPL_AVX512_I8);
    CHECK(!opc_cpu_set_int8_activations(false));
    CHECK(opc_cb_impl_best() != OPC_CB_IMPL_AVX512_I8);
    /* one row of 256 columns, codebook {0, 1, 0, 0}, every index 1, so
     * y = sum x. x = 127 once and 0.3 elsewhere: the block scale is
     * 127 / 127 = 1, so int8 rounds every 0.3 to 0 and only 127 remains. */
    uint8_t idx[64];
    memset(idx, 0x55, sizeof idx); /* every 2-bit index = 1 */
    uint16_t cb[4] = {opc_fp32_to_fp16(0.0f), opc_fp32_to_fp16(1.0f), 0, 0};
    opc_cb_matrix m = {.rows = 1, .cols = 256, .bits = 2, .k = 4, .idx = idx, .row_bytes = 64,
                         .codebook = cb};
    float x[256], y_exact = 0, y_i8 = 0;
    for (int i = 0; i < 256; i++) x[i] = 0.3f;
    x[0] = 127.0f;
    opc_cb_matmul_impl(OPC_CB_IMPL_AVX512, &m, x, 1, &y_exact, 1);
    opc_cb_matmul_impl(OPC_CB_IMPL_AVX512_I8, &m, x, 1, &y_i8, 1);
    CHECK_NEAR(y_exact, 127.0 + 255 * 0.3, 1e-3);
    CHECK_NEAR(y_i8, 127.0, 1e-3); /* 0.3 rounds to 0 at scale 1 */
}

/* The int8 kernel against an emulation of exactly what it is specified to
 * compute (cb_i8_avx512.c): activations rounded per token and 256-column
 * block to q = rne(x * (127 / max|x|)), weights to tq = rne(c * (127 /
 * max|c|)) times s_g (decode) or tq = rne(s_g * (c * (127 / max|c|)))
 * (prefill), in fp32 like the kernel, then y = a_r sum_blocks e_b sum_c
 * tq_c q_c summed in double; outliers exact.
 * Only fp32 rounding of the block sums may differ, so the bound is tight
 * (1e-5 of sum |terms|) and a wrong lane, shift or table entry fails it,
 * which the worst-case quantization bound in the sweep would not catch. */
static void test_int8_emulated(void) {
    if (!opc_cb_impl_available(OPC_CB_IMPL_AVX512_I8)) SKIP("no AVX-512 VNNI");
    /* {5, 2500, 70}: prefill column chunks (> 2048 columns), a full 64-token
     * block whose last tile is short, and a second block */
    static const int64_t shapes[][3] = {{7, 200, 9},  {6, 576, 17}, {5, 1500, 5},
                                        {3, 64, 2},   {9, 1500, 1}, {4, 65, 1},
                                        {1, 576, 1},  {5, 2500, 70}};
    int bad = 0, cases = 0;
    double worst = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bits = 2; bits <= 4; bits += 2)
            for (int gs = 0; gs < 2; gs++)
                for (int ol = 0; ol < 2; ol++) {
                    const int64_t rows = shapes[si][0], cols = shapes[si][1], T = shapes[si][2];
                    const int k = bits == 2 ? 4 : 13;
                    tmat t;
                    if (tmat_make(&t, rows, cols, bits, k, ol, gs) != 0) {
                        tmat_free(&t);
                        CHECK_MSG(0, "out of memory");
                        return;
                    }
                    float *X = malloc(sizeof(float) * (size_t)(T * cols));
                    float *Y = malloc(sizeof(float) * (size_t)(T * rows));
                    CHECK(X && Y);
                    if (!X || !Y) {
                        free(X);
                        free(Y);
                        tmat_free(&t);
                        return;
                    }
                    for (int64_t i = 0; i < T * cols; i++) X[i] = rndf() * (i % 7 == 0 ? 4.0f : 1.0f);
                    opc_cb_matmul_impl(OPC_CB_IMPL_AVX512_I8, &t.m, X, T, Y, 1 + (int)(si % 2));
                    cases++;
                    for (int64_t tt = 0; tt < T; tt++) {
                        const float *x = X + tt * cols;
                        for (int64_t r = 0; r < rows; r++) {
                            const uint8_t *row = t.m.idx + (uint64_t)r * t.m.row_bytes;
                            float lv[16] = {0}, amax = 0;
                            for (int i = 0; i < k; i++) {
                                lv[i] = opc_fp16_to_fp32(t.m.codebook[r * k + i]);
                                amax = fmaxf(amax, fabsf(lv[i]));
                            }
                            const float inv_w = amax > 0 ? 127.0f / amax : 0.0f;
                            for (int i = 0; i < k; i++) lv[i] *= inv_w;
                            double y = 0;
                            for (int64_t b0 = 0; b0 < cols; b0 += 256) {
                                int64_t b1 = b0 + 256 < cols ? b0 + 256 : cols;
                                float xm = 0;
                                for (int64_t c = b0; c < b1; c++) xm = fmaxf(xm, fabsf(x[c]));
                                const float inv_x = xm > 0 ? 127.0f / xm : 0.0f;
                                double blk = 0;
                                for (int64_t c = b0; c < b1; c++) {
                                    float l = lv[opc_cb_get_index(row, bits, c)];
                                    double tq;
                                    if (gs && T == 1)
                                        tq = nearbyintf(l) * col_scale(&t.m, r, c);
                                    else
                                        tq = nearbyintf(gs ? l * (float)col_scale(&t.m, r, c) : l);
                                    double qx = nearbyintf(x[c] * inv_x);
                                    blk += tq * qx;
                                }
                                y += blk * (double)(xm / 127.0f);
                            }
                            y *= (double)(amax / 127.0f);
                            double tot = 0;
                            for (int64_t c = 0; c < cols; c++) tot += fabs((double)x[c]);
                            if (t.m.n_outliers)
                                for (uint32_t i = t.m.ol_rowptr[r]; i < t.m.ol_rowptr[r + 1]; i++) {
                                    double d = opc_fp16_to_fp32(t.m.ol_val[i]) * (double)x[t.m.ol_col[i]];
                                    y += d;
                                    tot += fabs(d);
                                }
                            /* sum of |terms| incl. the +128 offset: 129 a_r sum|x| bounds it */
                            const double scale = 129.0 * (double)(amax / 127.0f) * tot + tot + 1e-30;
                            const double err = fabs((double)Y[tt * rows + r] - y);
                            if (err / scale > worst) worst = err / scale;
                            if (!(err <= 1e-5 * scale)) {
                                if (bad < 3)
                                    fprintf(stderr,
                                            "  i8 rows=%lld cols=%lld T=%lld bits=%d gs=%d "
                                            "ol=%d: y[%lld][%lld] = %.9g, emulated %.9g\n",
                                            (long long)rows, (long long)cols, (long long)T, bits,
                                            gs, ol, (long long)tt, (long long)r,
                                            (double)Y[tt * rows + r], y);
                                bad++;
                            }
                        }
                    }
                    free(X);
                    free(Y);
                    tmat_free(&t);
                }
    CHECK_MSG(bad == 0, "%d outputs differ from the emulation", bad);
    fprintf(stderr, "  %d shapes, worst |err| / (129 a sum|x|) = %.3g\n", cases, worst);
}

/* Larger shapes that cross the prefill column-chunk, token-block and row-slab
 * edges (cols > 1024, T > 64, rows > slab) once per implementation. */
static void test_large_blocks(void) {
    for (int i = OPC_CB_IMPL_SCALAR; i < OPC_CB_IMPL_COUNT; i++) {
        if (!opc_cb_impl_available((opc_cb_impl)i)) continue;
        for (int gs = 0; gs < 2; gs++) {
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 37, 2113, 70, 2, 4, 1, gs, 2), 0);
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 18, 1500, 9, 4, 16, 0, gs, 2), 0);
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 21, 1500, 40, 2, 4, 1, gs, 2), 0);
            /* more rows than one prefill row slab (cb_avx512.c: 1536 rows of
             * 2-bit, 768 of 4-bit at a 16-group chunk) */
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 1601, 130, 70, 2, 4, 1, gs, 1), 0);
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 803, 130, 70, 4, 16, 0, gs, 2), 0);
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 9, 4160, 1, 2, 4, 1, gs, 2), 0);
            CHECK_EQ_INT(check_case((opc_cb_impl)i, 5, 4160, 1, 2, 3, 0, gs, 1), 0);
        }
    }
}

/* Rows are split across threads but each row's arithmetic is the same, so
 * 1 and 2 threads must agree bit for bit; AUTO must equal the best impl. */
static void threads_and_auto(int gscale) {
    tmat t;
    int64_t rows = 301, cols = 777, T = 9;
    CHECK(tmat_make(&t, rows, cols, 2, 4, 1, gscale) == 0);
    float *X = malloc(sizeof(float) * (size_t)(T * cols));
    float *Y1 = malloc(sizeof(float) * (size_t)(T * rows));
    float *Y2 = malloc(sizeof(float) * (size_t)(T * rows));
    float *Y3 = malloc(sizeof(float) * (size_t)(T * rows));
    CHECK(X && Y1 && Y2 && Y3);
    if (X && Y1 && Y2 && Y3) {
        for (int64_t i = 0; i < T * cols; i++) X[i] = rndf();
        opc_cb_impl best = opc_cb_impl_best();
        opc_cb_matmul_impl(best, &t.m, X, T, Y1, 1);
        opc_cb_matmul_impl(best, &t.m, X, T, Y2, 2);
        opc_cb_matmul(&t.m, X, T, Y3);
        CHECK(memcmp(Y1, Y2, sizeof(float) * (size_t)(T * rows)) == 0);
        CHECK(memcmp(Y1, Y3, sizeof(float) * (size_t)(T * rows)) == 0);
        /* T = 0 writes nothing */
        Y1[0] = 42.0f;
        opc_cb_matmul(&t.m, X, 0, Y1);
        CHECK(Y1[0] == 42.0f);
        fprintf(stderr, "  best kernel: %s\n", opc_cb_impl_name(best));
    }
    free(X);
    free(Y1);
    free(Y2);
    free(Y3);
    tmat_free(&t);
}

static void test_threads_and_auto(void) {
    threads_and_auto(0);
    threads_and_auto(1);
}

static void test_names_and_features(void) {
    for (int i = 0; i < OPC_CB_IMPL_COUNT; i++)
        CHECK_EQ_INT(opc_cb_impl_parse(opc_cb_impl_name((opc_cb_impl)i)), i);
    CHECK_EQ_INT(opc_cb_impl_parse("avx9000"), OPC_CB_IMPL_COUNT);
    CHECK_EQ_INT(opc_cb_impl_parse(NULL), OPC_CB_IMPL_COUNT);
    CHECK(opc_cb_impl_available(OPC_CB_IMPL_SCALAR));
    CHECK(!opc_cpu_has_avx512() || opc_cpu_has_avx2());
    const opc_cpu_features *f = opc_cpu_get_features();
    CHECK(f != NULL);
    CHECK(!f->avx2 || f->avx);
    CHECK(!f->avx512bw || f->avx512f);
    fprintf(stderr, "  cpu: %s [%s]\n", f->brand, opc_cpu_features_str());
}

static void test_bandwidth_probe(void) {
    double bw = opc_mem_read_bw((size_t)16 << 20, 2, 1);
    CHECK(bw > 0.0);   /* a positive, finite rate (the machine may be busy) */
    CHECK(bw < 1e13);  /* < 10 TB/s */
    fprintf(stderr, "  16 MiB read, 2 threads: %.1f GB/s\n", bw / 1e9);
}

int main(void) {
    const char *env = getenv("OPC_TEST_SEED");
    g_rng = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761ULL + 1;
    if (!g_rng) g_rng = 1;
    fprintf(stderr, "seed: OPC_TEST_SEED=%llu\n", (unsigned long long)g_rng);
    RUN(test_names_and_features);
    RUN(test_scalar);
    RUN(test_avx2);
    RUN(test_avx512);
    RUN(test_avx512_i8);
    RUN(test_int8_opt_in);
    RUN(test_int8_emulated);
    RUN(test_large_blocks);
    RUN(test_threads_and_auto);
    RUN(test_bandwidth_probe);
    return harness_finish();
}
