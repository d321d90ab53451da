/*
 * test_cuda_quant.c — the GPU quantizer (src/cuda/quant_cuda.cu) against the
 * CPU one (opc_quantize_matrix): same layout, same outlier budget, equal or
 * better weighted error, bit-identical where nothing is summed (rotation,
 * RTN), deterministic; its reported error is what its stored matrix really
 * has. Table-driven over bit widths, group scales, rotation, odd sizes.
 *
 * With gpu_carry/h6_smol_tensors.bin present (four SmolLM2-135M tensors in
 * f16 with sampled-calibration importance, unrotated and rotated; written by
 * bench/cuda/extract_smol_tensors.c), also compares the CPU and GPU weighted
 * errors and times on real weights.
 *
 * Argument checks need no GPU; every GPU case skips without one (CI), so the
 * executable exits 77 there unless the argument checks ran.
 */
#include "harness.h"

#include "core/core.h"
#include "core/half.h"
#include "quant/cb.h"
#include "quant/quantize.h"

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"
#include "cuda/quant_cuda.h"

#include <stdint.h>
#include <time.h>
#include <limits.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double rnd_unit(void) { return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0); }
static double rnd_gauss(void) {
    double u = rnd_unit(), v = rnd_unit();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A weight matrix shaped like an LLM's: Gaussian body with a per-row scale,
 * per-64-column-group magnitude drift, a few strong input columns, and
 * heavy-tailed spikes (about 1 in 400 weights, 4-10x). */
static float *make_weights(int64_t rows, int64_t cols) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    double *colmul = malloc((size_t)cols * sizeof *colmul);
    for (int64_t c = 0; c < cols; c++) colmul[c] = rnd_unit() < 0.01 ? 4.0 : 1.0;
    for (int64_t r = 0; r < rows; r++) {
        double rs = 0.02 * exp(0.3 * rnd_gauss()), gm = 1.0;
        for (int64_t c = 0; c < cols; c++) {
            if (c % 64 == 0) gm = exp(0.4 * rnd_gauss());
            double v = rs * gm * colmul[c] * rnd_gauss();
            if (rnd_unit() < 0.0025) v *= 4.0 + 6.0 * rnd_unit();
            w[r * cols + c] = (float)v;
        }
    }
    free(colmul);
    return w;
}

static float *make_importance(int64_t cols) {
    float *imp = malloc((size_t)cols * sizeof *imp);
    for (int64_t c = 0; c < cols; c++) imp[c] = (float)(exp(1.5 * rnd_gauss()) * (rnd_unit() < 0.005 ? 100.0 : 1.0));
    return imp;
}

/* sum imp (W~ - Q)^2 of a stored matrix against the (rotated) source, through
 * the scalar reference dequantizer, with the quantizer's normalised weights */
static double stored_err(const opc_cb_matrix *m, const float *W, const float *imp_raw) {
    const int64_t rows = m->rows, cols = m->cols;
    float *row = malloc((size_t)cols * sizeof *row), *deq = malloc((size_t)cols * sizeof *deq);
    float *imp = malloc((size_t)cols * sizeof *imp);
    double mean = 0.0;
    for (int64_t c = 0; c < cols; c++) mean += imp_raw ? (imp_raw[c] > 0.0f ? imp_raw[c] : 0.0f) : 1.0;
    mean /= (double)cols;
    for (int64_t c = 0; c < cols; c++) {
        double v = imp_raw ? imp_raw[c] / mean : 1.0;
        imp[c] = (float)(v > 1e-6 ? v : 1e-6);
    }
    double num = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(row, W + r * cols, (size_t)cols * sizeof *row);
        opc_cb_rotate(row, cols, m->rot_log2);
        opc_cb_dequant_row_ref(m, r, deq);
        for (int64_t c = 0; c < cols; c++) {
            double d = (double)row[c] - (double)deq[c];
            num += (double)imp[c] * d * d;
        }
    }
    free(row);
    free(deq);
    free(imp);
    return num;
}

/* rows whose codebook (and scales) are bit-identical; indices too */
static void same_rows(const opc_qmatrix *a, const opc_qmatrix *b, int64_t *same_cb, int64_t *same_idx) {
    const opc_cb_matrix *ma = &a->m, *mb = &b->m;
    const int64_t ng = opc_cb_groups(ma->cols);
    *same_cb = *same_idx = 0;
    for (int64_t r = 0; r < ma->rows; r++) {
        int cb = !memcmp(ma->codebook + r * ma->k, mb->codebook + r * mb->k, (size_t)ma->k * 2);
        if (ma->gscale && mb->gscale) cb &= !memcmp(ma->gscale + r * ng, mb->gscale + r * ng, (size_t)ng);
        *same_cb += cb;
        *same_idx += !memcmp(ma->idx + r * ma->row_bytes, mb->idx + r * mb->row_bytes, (size_t)ma->row_bytes);
    }
}

static int all_same(const opc_qmatrix *a, const opc_qmatrix *b) {
    const opc_cb_matrix *ma = &a->m, *mb = &b->m;
    if (ma->rows != mb->rows || ma->cols != mb->cols || ma->k != mb->k || ma->n_outliers != mb->n_outliers ||
        !ma->gscale != !mb->gscale)
        return 0;
    const int64_t rows = ma->rows;
    if (memcmp(ma->idx, mb->idx, (size_t)(rows * (int64_t)ma->row_bytes)) ||
        memcmp(ma->codebook, mb->codebook, (size_t)(rows * ma->k) * 2))
        return 0;
    if (ma->gscale && memcmp(ma->gscale, mb->gscale, (size_t)(rows * opc_cb_groups(ma->cols)))) return 0;
    if (ma->n_outliers &&
        (memcmp(ma->ol_rowptr, mb->ol_rowptr, (size_t)(rows + 1) * 4) ||
         memcmp(ma->ol_col, mb->ol_col, (size_t)ma->n_outliers * 2) ||
         memcmp(ma->ol_val, mb->ol_val, (size_t)ma->n_outliers * 2)))
        return 0;
    return 1;
}

static int have_gpu(void) { return opc_cuda_device_count() > 0; }

/* ------------------------------------------------------------ cases ---- */

typedef struct qcase {
    const char *name;
    int64_t rows, cols;
    int32_t index_bits, k;
    opc_quant_method method;
    double outliers;
    int group_scales;
    int32_t rot_log2;
    int importance;
    int exact; /* expect output bit-identical to the CPU's */
} qcase;

/* Without group scales the GPU sums in the CPU's order (kmeans.c: one
 * running sum per prefix array) and runs the same divide and conquer, so its
 * output must be the CPU's byte for byte. With group scales the per-group
 * sums of the scale search are added in another order: rows may differ on
 * near-ties (counted and printed, held to the same error). */
static const qcase cases[] = {
    {"2bit", 256, 1024, 2, 4, OPC_QUANT_KMEANS, 0.01, 0, 0, 1, 1},
    {"2bit_uniform_imp", 192, 512, 2, 4, OPC_QUANT_KMEANS, 0.01, 0, 0, 0, 1},
    {"2bit_default", 160, 2048, 2, 4, OPC_QUANT_KMEANS, 0.005, 0, 0, 1, 1},
    {"4bit_default_edge", 96, 2048, 4, 16, OPC_QUANT_KMEANS, 0.005, 0, 0, 1, 1},
    {"2bit_gs", 256, 1024, 2, 4, OPC_QUANT_KMEANS, 0.01, 1, 0, 1, 0},
    {"2bit_gs_rot", 256, 1024, 2, 4, OPC_QUANT_KMEANS, 0.01, 1, 10, 1, 0},
    {"1.58bit_rot", 200, 768, 2, 3, OPC_QUANT_KMEANS, 0.01, 0, 8, 1, 1},
    {"3bit_odd_cols", 130, 1000, 4, 8, OPC_QUANT_KMEANS, 0.005, 0, 3, 1, 1},
    {"4bit_gs", 128, 512, 4, 16, OPC_QUANT_KMEANS, 0.01, 1, 0, 1, 0},
    {"2bit_gs_no_outliers", 100, 333, 2, 4, OPC_QUANT_KMEANS, 0.0, 1, 0, 1, 0},
    {"2bit_wide_8b_down", 48, 14336, 2, 4, OPC_QUANT_KMEANS, 0.01, 1, 11, 1, 0},
    {"2bit_wide_8b_down_default", 40, 14336, 2, 4, OPC_QUANT_KMEANS, 0.005, 0, 0, 1, 1},
    {"4bit_wide_8b_down_default", 24, 14336, 4, 16, OPC_QUANT_KMEANS, 0.005, 0, 0, 1, 1},
    {"2bit_no_outliers", 64, 4096, 2, 4, OPC_QUANT_KMEANS, 0.0, 0, 0, 1, 1},
    {"fewer_cols_than_k", 7, 3, 2, 4, OPC_QUANT_KMEANS, 0.0, 0, 0, 1, 1},
    {"rtn", 128, 640, 2, 4, OPC_QUANT_RTN, 0.01, 0, 7, 1, 1},
    {"rtn_gs", 64, 256, 2, 4, OPC_QUANT_RTN, 0.0, 1, 0, 0, 0},
};

static void run_case(const qcase *qc) {
    float *W = make_weights(qc->rows, qc->cols);
    float *imp = qc->importance ? make_importance(qc->cols) : NULL;
    opc_qmatrix_params p;
    memset(&p, 0, sizeof p);
    p.index_bits = qc->index_bits;
    p.k = qc->k;
    p.method = qc->method;
    p.outlier_frac = qc->outliers;
    p.importance = imp;
    p.seed = 7;
    p.group_scales = qc->group_scales;
    p.scale_rounds = 3;
    p.rot_log2 = qc->rot_log2;
    opc_qmatrix qc_cpu, qg, qg2;
    opc_status sc = opc_quantize_matrix(W, qc->rows, qc->cols, &p, &qc_cpu);
    opc_status sg = opc_cuda_quantize_matrix(W, qc->rows, qc->cols, &p, &qg);
    CHECK_MSG(sc == OPC_OK && sg == OPC_OK, "%s: cpu %d gpu %d: %s", qc->name, sc, sg, opc_last_error());
    if (sc || sg) goto out;
    opc_status sg2 = opc_cuda_quantize_matrix(W, qc->rows, qc->cols, &p, &qg2);
    CHECK(sg2 == OPC_OK);
    if (sg2 == OPC_OK) {
        CHECK_MSG(all_same(&qg, &qg2), "%s: two GPU runs differ", qc->name);
        opc_qmatrix_free(&qg2);
    }
    const opc_cb_matrix *g = &qg.m, *c = &qc_cpu.m;
    CHECK(opc_cb_validate(g, qc->name) == OPC_OK);
    CHECK_EQ_INT(g->rows, c->rows);
    CHECK_EQ_INT(g->cols, c->cols);
    CHECK_EQ_INT(g->bits, c->bits);
    CHECK_EQ_INT(g->k, c->k);
    CHECK_EQ_INT(g->rot_log2, c->rot_log2);
    CHECK_EQ_INT(g->row_bytes, c->row_bytes);
    CHECK(!g->gscale == !c->gscale);
    CHECK(!!qg.gscale == !!qc->group_scales);
    /* the outlier budget is a count fixed by the fraction: same on both paths
     * unless fewer weights than that have any error */
    CHECK_MSG(g->n_outliers <= (uint64_t)llround(qc->outliers * (double)(qc->rows * qc->cols)) &&
                  (double)g->n_outliers >= 0.999 * (double)c->n_outliers,
              "%s: outliers gpu %llu cpu %llu", qc->name, (unsigned long long)g->n_outliers,
              (unsigned long long)c->n_outliers);
    /* the GPU's reported error is its stored matrix's */
    double num = stored_err(g, W, imp);
    CHECK_MSG(fabs(num - qg.err_num) <= 1e-9 * num + 1e-30, "%s: reported %.12g, stored %.12g", qc->name,
              qg.err_num, num);
    CHECK_MSG(fabs(qg.err_den - qc_cpu.err_den) <= 1e-9 * qc_cpu.err_den, "%s: err_den %.12g vs %.12g", qc->name,
              qg.err_den, qc_cpu.err_den);
    double rg = qg.err_num / qg.err_den, rc = qc_cpu.err_num / qc_cpu.err_den;
    int64_t scb, sidx;
    same_rows(&qg, &qc_cpu, &scb, &sidx);
    fprintf(stderr, "    %-22s rel err cpu %.6e gpu %.6e (gpu/cpu %.5f); rows identical: codebook %lld/%lld, "
            "indices %lld/%lld; outliers %llu/%llu\n",
            qc->name, rc, rg, rg / rc, (long long)scb, (long long)qc->rows, (long long)sidx, (long long)qc->rows,
            (unsigned long long)g->n_outliers, (unsigned long long)c->n_outliers);
    /* equal quality: the exact k-means is the same optimum, summed in another order */
    CHECK_MSG(rg <= rc * 1.005 + 1e-12, "%s: gpu %.6e worse than cpu %.6e", qc->name, rg, rc);
    if (qc->exact) CHECK_MSG(all_same(&qg, &qc_cpu), "%s: expected bit-identical output", qc->name);
    else if (!qc->group_scales) CHECK_MSG(scb * 10 >= qc->rows * 9, "%s: only %lld rows agree", qc->name, (long long)scb);
out:
    opc_qmatrix_free(&qc_cpu);
    opc_qmatrix_free(&qg);
    free(W);
    free(imp);
}

static void test_cases(void) {
    if (!have_gpu()) SKIP("no CUDA device");
    /* under compute-sanitizer: small cases only (2: smaller still, for racecheck) */
    const char *quick = getenv("OPC_TEST_QUICK");
    const int64_t limit = !quick ? INT64_MAX : !strcmp(quick, "2") ? 40000 : 100000;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].rows * cases[i].cols <= limit) run_case(&cases[i]);
}

/* The device-side rotation is opc_cb_rotate, bit for bit. */
static void test_rotation_bits(void) {
    if (!have_gpu()) SKIP("no CUDA device");
    const int64_t rows = 9, cols = 3 * 512;
    float *W = make_weights(rows, cols), *back = malloc((size_t)(rows * cols) * sizeof *back);
    void *dW = NULL;
    CHECK(opc_cuda_alloc(&dW, (size_t)(rows * cols) * 4) == OPC_OK);
    CHECK(opc_cuda_to_device(dW, W, (size_t)(rows * cols) * 4) == OPC_OK);
    opc_qmatrix_params p;
    memset(&p, 0, sizeof p);
    p.index_bits = 2, p.k = 4, p.rot_log2 = 9;
    opc_qmatrix q;
    CHECK(opc_cuda_quantize_matrix_dev(dW, rows, cols, &p, &q) == OPC_OK);
    CHECK(opc_cuda_to_host(back, dW, (size_t)(rows * cols) * 4) == OPC_OK);
    for (int64_t r = 0; r < rows; r++) opc_cb_rotate(W + r * cols, cols, 9);
    CHECK(!memcmp(W, back, (size_t)(rows * cols) * 4));
    opc_qmatrix_free(&q);
    opc_cuda_free(dW);
    free(W);
    free(back);
}

/* 16-bit host weights (fp16 and bf16), widened on the device: the same
 * output as the CPU path on the widened weights, byte for byte. */
static void test_h16_input(void) {
    if (!have_gpu()) SKIP("no CUDA device");
    const int64_t rows = 72, cols = 3 * 1024;
    float *W = make_weights(rows, cols), *Wd = malloc((size_t)(rows * cols) * sizeof *Wd);
    float *imp = make_importance(cols);
    uint16_t *h = malloc((size_t)(rows * cols) * sizeof *h);
    for (int bf = 0; bf <= 1; bf++) {
        for (int64_t i = 0; i < rows * cols; i++) {
            h[i] = bf ? opc_fp32_to_bf16(W[i]) : opc_fp32_to_fp16(W[i]);
            Wd[i] = bf ? opc_bf16_to_fp32(h[i]) : opc_fp16_to_fp32(h[i]);
        }
        opc_qmatrix_params p;
        memset(&p, 0, sizeof p);
        p.index_bits = 2, p.k = 4, p.method = OPC_QUANT_KMEANS, p.outlier_frac = 0.005, p.importance = imp;
        opc_qmatrix a, b;
        opc_status sa = opc_quantize_matrix(Wd, rows, cols, &p, &a);
        opc_status sb = opc_cuda_quantize_matrix_h16(h, bf, rows, cols, &p, &b);
        CHECK_MSG(sa == OPC_OK && sb == OPC_OK, "%s: cpu %d gpu %d: %s", bf ? "bf16" : "f16", sa, sb, opc_last_error());
        if (sa == OPC_OK && sb == OPC_OK) {
            CHECK_MSG(all_same(&a, &b), "%s input: expected bit-identical output", bf ? "bf16" : "f16");
            CHECK(b.m.n_outliers > 0);
        }
        opc_qmatrix_free(&a);
        opc_qmatrix_free(&b);
    }
    free(W);
    free(Wd);
    free(imp);
    free(h);
}

/* What the GPU refuses, refused before any device work (no GPU needed). */
static void test_bad_args(void) {
    float w[64] = {0}, h[64 * 64] = {0};
    opc_qmatrix_params p;
    memset(&p, 0, sizeof p);
    p.index_bits = 2, p.k = 4;
    opc_qmatrix q;
    p.hessian = h;
    CHECK_EQ_INT(opc_cuda_quantize_matrix(w, 1, 64, &p, &q), OPC_ERR_UNSUPPORTED);
    p.hessian = NULL, p.method = OPC_QUANT_LLOYD;
    CHECK_EQ_INT(opc_cuda_quantize_matrix(w, 1, 64, &p, &q), OPC_ERR_UNSUPPORTED);
    p.method = OPC_QUANT_KMEANS, p.k = 5;
    CHECK_EQ_INT(opc_cuda_quantize_matrix(w, 1, 64, &p, &q), OPC_ERR_INVALID_ARG);
    p.k = 4, p.rot_log2 = 7; /* 128 does not divide 64 */
    CHECK_EQ_INT(opc_cuda_quantize_matrix(w, 1, 64, &p, &q), OPC_ERR_INVALID_ARG);
    p.rot_log2 = 0;
    CHECK_EQ_INT(opc_cuda_quantize_matrix(w, 1, OPC_CUDA_QUANT_MAX_COLS + 64, &p, &q), OPC_ERR_UNSUPPORTED);
    CHECK_EQ_INT(opc_cuda_quantize_matrix(NULL, 1, 64, &p, &q), OPC_ERR_INVALID_ARG);
    CHECK(q.idx == NULL && q.codebook == NULL);
}

/* Real weights: CPU vs GPU error and time per configuration (printed, and
 * held to the same quality bound as the synthetic cases). */
static void test_real_weights(void) {
    if (!have_gpu()) SKIP("no CUDA device");
    if (getenv("OPC_TEST_QUICK")) SKIP("OPC_TEST_QUICK");
    FILE *f = fopen(OPC_SOURCE_DIR "/gpu_carry/h6_smol_tensors.bin", "rb");
    if (!f) SKIP("gpu_carry/h6_smol_tensors.bin not present");
    char magic[8];
    int32_t n = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "OPCQT01", 8) || fread(&n, 4, 1, f) != 1) {
        fclose(f);
        CHECK_MSG(0, "bad tensor file");
        return;
    }
    for (int32_t t = 0; t < n; t++) {
        char name[64];
        int64_t rows, cols;
        if (fread(name, 1, 64, f) != 64 || fread(&rows, 8, 1, f) != 1 || fread(&cols, 8, 1, f) != 1) break;
        name[63] = 0;
        float *imp = malloc((size_t)cols * 4), *impr = malloc((size_t)cols * 4);
        float *W = malloc((size_t)(rows * cols) * 4);
        uint16_t *h = malloc((size_t)(rows * cols) * 2);
        int ok = fread(imp, 4, (size_t)cols, f) == (size_t)cols && fread(impr, 4, (size_t)cols, f) == (size_t)cols &&
                 fread(h, 2, (size_t)(rows * cols), f) == (size_t)(rows * cols);
        CHECK(ok);
        for (int64_t i = 0; ok && i < rows * cols; i++) W[i] = opc_fp16_to_fp32(h[i]);
        const struct { const char *cfg; int gs, rot; } cfgs[] = {{"2bit", 0, 0}, {"2bit+gs", 1, 0}, {"2bit+gs+rot", 1, 1}};
        for (size_t ci = 0; ok && ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
            opc_qmatrix_params p;
            memset(&p, 0, sizeof p);
            p.index_bits = 2, p.k = 4, p.method = OPC_QUANT_KMEANS, p.outlier_frac = 0.01, p.seed = 1;
            p.group_scales = cfgs[ci].gs, p.scale_rounds = 3;
            p.rot_log2 = cfgs[ci].rot ? opc_quant_rot_log2(cols, OPC_CB_ROT_MAX_LOG2) : 0;
            p.importance = cfgs[ci].rot ? impr : imp;
            opc_qmatrix a, b;
            double t0 = now_s();
            opc_status sa = opc_quantize_matrix(W, rows, cols, &p, &a);
            double t1 = now_s();
            opc_status sb = opc_cuda_quantize_matrix(W, rows, cols, &p, &b);
            double t2 = now_s();
            CHECK(sa == OPC_OK && sb == OPC_OK);
            if (sa == OPC_OK && sb == OPC_OK) {
                double ra = a.err_num / a.err_den, rb = b.err_num / b.err_den;
                int64_t scb, sidx;
                same_rows(&b, &a, &scb, &sidx);
                fprintf(stderr, "    real %-22s %-12s cpu %.6e (%.3f s)  gpu %.6e (%.3f s)  gpu/cpu %.5f  rows same %lld/%lld\n",
                        name, cfgs[ci].cfg, ra, t1 - t0, rb, t2 - t1, rb / ra, (long long)scb, (long long)rows);
                CHECK_MSG(rb <= ra * 1.005, "%s %s: gpu %.6e cpu %.6e", name, cfgs[ci].cfg, rb, ra);
                if (!cfgs[ci].gs) CHECK_MSG(all_same(&a, &b), "%s %s: expected bit-identical output", name, cfgs[ci].cfg);
            }
            opc_qmatrix_free(&a);
            opc_qmatrix_free(&b);
        }
        free(imp);
        free(impr);
        free(W);
        free(h);
    }
    fclose(f);
}

int main(void) {
    RUN(test_bad_args);
    RUN(test_rotation_bits);
    RUN(test_cases);
    RUN(test_h16_input);
    RUN(test_real_weights);
    return harness_finish();
}

#else
int main(void) {
    printf("CUDA backend not built\n");
    return 77;
}
#endif
