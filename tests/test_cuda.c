/*
 * test_cuda.c — the CUDA codebook GEMV against the scalar reference
 * (opc_cb_gemv_ref), plus argument checks of the C boundary.
 *
 * Built only usefully where nvcc was found (OPC_HAVE_CUDA); the GPU cases
 * skip when no device is present (CI), so the executable exits 77 there
 * unless the argument checks ran (they need no GPU).
 */
#include "harness.h"

#include "core/core.h"
#include "core/half.h"
#include "quant/cb.h"

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"

#include <stdint.h>

#include "cb_host.h"

/* One case: upload, poison y with NaN, run batch nb, compare each output with
 * the reference within 2e-3 * sum_c |W[r][c] x[c]| (x is rounded to fp16 on
 * the GPU: <= 2^-11 relative per term; products and sums in fp32). */
static void run_case_gs(int64_t rows, int64_t cols, int32_t k, int outlier_pct, int nb, int gscale) {
    host_cb h;
    host_make(&h, rows, cols, k, outlier_pct, gscale);
    float *x = malloc(sizeof(float) * (size_t)(nb * cols));
    float *y = malloc(sizeof(float) * (size_t)(nb * rows));
    float *ref = malloc(sizeof(float) * (size_t)rows);
    float *wrow = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < nb * cols; i++) x[i] = rnd_sym();

    opc_cuda_cb_matrix d;
    opc_status st = opc_cuda_cb_upload(&h.m, &d);
    CHECK_MSG(st == OPC_OK, "upload: %s", opc_last_error());
    void *dx = NULL, *dy = NULL;
    if (st == OPC_OK) st = opc_cuda_alloc(&dx, sizeof(float) * (size_t)(nb * cols));
    if (st == OPC_OK) st = opc_cuda_alloc(&dy, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_to_device(dx, x, sizeof(float) * (size_t)(nb * cols));
    CHECK_MSG(st == OPC_OK, "device buffers: %s", opc_last_error());

    /* the same vectors in fp16, for opc_cuda_cb_gemv_x16 */
    uint16_t *x16 = malloc(2 * (size_t)(nb * cols));
    for (int64_t i = 0; i < nb * cols; i++) x16[i] = opc_fp32_to_fp16(x[i]);
    void *dx16 = NULL;
    if (st == OPC_OK) st = opc_cuda_alloc(&dx16, 2 * (size_t)(nb * cols));
    if (st == OPC_OK) st = opc_cuda_to_device(dx16, x16, 2 * (size_t)(nb * cols));

    /* every kernel the library can pick, each on a freshly poisoned y; the
     * last round is AUTO with the fp16 copy of x */
    for (int kern = OPC_CUDA_CB_AUTO; st == OPC_OK && kern <= OPC_CUDA_CB_STREAM + 1; kern++) {
        memset(y, 0xFF, sizeof(float) * (size_t)(nb * rows)); /* NaN: unwritten outputs fail */
        st = opc_cuda_to_device(dy, y, sizeof(float) * (size_t)(nb * rows));
        if (st == OPC_OK && kern > OPC_CUDA_CB_STREAM)
            st = opc_cuda_cb_gemv_x16(&d, dx, dx16, nb, dy, NULL);
        else if (st == OPC_OK)
            st = opc_cuda_cb_gemv_with(&d, dx, nb, dy, NULL, (opc_cuda_cb_kernel)kern);
        CHECK_MSG(st == OPC_OK, "gemv kernel %d: %s", kern, opc_last_error());
        if (st == OPC_OK) st = opc_cuda_sync(NULL);
        if (st == OPC_OK) st = opc_cuda_to_host(y, dy, sizeof(float) * (size_t)(nb * rows));
        CHECK_MSG(st == OPC_OK, "sync/copy: %s", opc_last_error());

        int bad = 0;
        double worst = 0.0;
        for (int b = 0; st == OPC_OK && b < nb; b++) {
            const float *xb = x + (int64_t)b * cols;
            opc_cb_gemv_ref(&h.m, xb, ref);
            /* group scales: the scaled codebook is rounded to fp16, whose
             * subnormals are 2^-24 apart: an absolute 2^-25 per weight on top */
            double xabs = 0.0;
            for (int64_t c = 0; c < cols; c++) xabs += fabs((double)xb[c]);
            for (int64_t r = 0; r < rows; r++) {
                opc_cb_dequant_row_ref(&h.m, r, wrow);
                double scale = 0.0;
                for (int64_t c = 0; c < cols; c++) scale += fabs((double)wrow[c] * xb[c]);
                if (gscale) scale += 0x1p-25 / 2e-3 * xabs;
                double got = y[(int64_t)b * rows + r];
                double err = fabs(got - ref[r]) / (scale + 1e-30);
                if (!(err <= 2e-3)) { /* also catches NaN */
                    if (bad++ < 3)
                        fprintf(stderr,
                                "    kernel %d rows=%lld cols=%lld k=%d ol=%d%% gs=%d nb=%d: y[%d][%lld] = %g, ref %g\n",
                                kern, (long long)rows, (long long)cols, k, outlier_pct, gscale, nb, b,
                                (long long)r, got, (double)ref[r]);
                } else if (err > worst) {
                    worst = err;
                }
            }
        }
        CHECK_MSG(bad == 0, "kernel %d: %d outputs off (rows=%lld cols=%lld k=%d nb=%d)", kern, bad,
                  (long long)rows, (long long)cols, k, nb);
        CHECK(worst < 2e-3);
    }
    opc_cuda_free(dx);
    opc_cuda_free(dx16);
    opc_cuda_free(dy);
    opc_cuda_cb_free(&d);
    free(x), free(x16), free(y), free(ref), free(wrow);
    host_free(&h);
}

static void run_case(int64_t rows, int64_t cols, int32_t k, int outlier_pct, int nb) {
    run_case_gs(rows, cols, k, outlier_pct, nb, 0);
}

static void test_gemv_matches_reference(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    /* odd shapes: partial groups, partial 16-row tiles, tiny and tall */
    static const struct { int64_t rows, cols; } shapes[] = {
        {1, 1}, {5, 63}, {16, 64}, {17, 65}, {33, 200}, {100, 1000}, {513, 2049}, {4096, 256}, {64, 4096}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int k = 1; k <= 4; k++) run_case(shapes[i].rows, shapes[i].cols, k, 0, 1);
}

static void test_gemv_batch_and_outliers(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    for (int nb = 1; nb <= OPC_CUDA_CB_MAX_BATCH; nb++) run_case(37, 333, 4, 0, nb);
    run_case(50, 300, 4, 2, 1);
    run_case(50, 300, 3, 2, 8);
    run_case(9000, 130, 4, 1, 3); /* many row tiles per block (persistent grid) */
    run_case(20, 14400, 4, 0, 8); /* x too large for shared memory: the slab kernel */
    run_case(40, 30000, 4, 0, 4); /* quantized x too large for the int8 kernel: an fp16 kernel */
    run_case(3000, 520, 2, 1, 4); /* int8 kernel: several tiles per block, outliers, batch 4 */
}

/* The int8 kernel (AUTO for plain 2-bit matrices at batch <= 4) quantizes
 * the codebook to 16 bits per row and x to 16 bits per 256 columns: it must
 * stay within 2e-4 * sum_c |W[r][c] x[c]| of the reference (ten times tighter
 * than the fp16 kernels' bound above). Odd shapes,
 * k = 1..4, batch 1..4, outliers, many tiles per block, x scales with
 * mixed magnitudes (one block in ten scaled by 1e-3, one column in fifty
 * by 8). Skipped when OPC_CUDA_GEMV forces another kernel. */
static void run_tight(const host_cb *hp, int outlier_pct, int nb);
static void run_case_tight(int64_t rows, int64_t cols, int32_t k, int outlier_pct, int nb) {
    host_cb h;
    host_make(&h, rows, cols, k, outlier_pct, 0);
    run_tight(&h, outlier_pct, nb);
    host_free(&h);
}

/* run_case_tight on a made matrix (outlier_pct: for the messages only) */
static void run_tight(const host_cb *hp, int outlier_pct, int nb) {
    host_cb h = *hp;
    const int64_t rows = h.m.rows, cols = h.m.cols;
    const int32_t k = h.m.k;
    float *x = malloc(sizeof(float) * (size_t)(nb * cols)), *y = malloc(sizeof(float) * (size_t)(nb * rows));
    float *ref = malloc(sizeof(float) * (size_t)rows), *wrow = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < nb * cols; i++) {
        x[i] = rnd_sym();
        if ((i / 256) % 10 == 3) x[i] *= 1e-3f;
        if (rnd() % 50 == 0) x[i] *= 8.0f;
    }
    opc_cuda_cb_matrix d;
    void *dx = NULL, *dy = NULL;
    opc_status st = opc_cuda_cb_upload(&h.m, &d);
    if (st == OPC_OK) st = opc_cuda_alloc(&dx, sizeof(float) * (size_t)(nb * cols));
    if (st == OPC_OK) st = opc_cuda_alloc(&dy, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_to_device(dx, x, sizeof(float) * (size_t)(nb * cols));
    memset(y, 0xFF, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_to_device(dy, y, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_cb_gemv(&d, dx, nb, dy, NULL);
    if (st == OPC_OK) st = opc_cuda_sync(NULL);
    if (st == OPC_OK) st = opc_cuda_to_host(y, dy, sizeof(float) * (size_t)(nb * rows));
    CHECK_MSG(st == OPC_OK, "int8 gemv (%lld x %lld, nb %d): %s", (long long)rows, (long long)cols, nb,
              opc_last_error());
    int bad = 0;
    double worst = 0.0;
    for (int b = 0; st == OPC_OK && b < nb; b++) {
        const float *xb = x + (int64_t)b * cols;
        opc_cb_gemv_ref(&h.m, xb, ref);
        for (int64_t r = 0; r < rows; r++) {
            opc_cb_dequant_row_ref(&h.m, r, wrow);
            double scale = 0.0;
            for (int64_t c = 0; c < cols; c++) scale += fabs((double)wrow[c] * xb[c]);
            const double got = y[(int64_t)b * rows + r], err = fabs(got - ref[r]) / (scale + 1e-30);
            if (!(err <= 2e-4)) {
                if (bad++ < 3)
                    fprintf(stderr, "    int8 rows=%lld cols=%lld k=%d ol=%d%% nb=%d: y[%d][%lld] = %.9g, ref %.9g\n",
                            (long long)rows, (long long)cols, k, outlier_pct, nb, b, (long long)r, got, (double)ref[r]);
            } else if (err > worst) {
                worst = err;
            }
        }
    }
    CHECK_MSG(bad == 0, "int8 gemv: %d outputs off (rows=%lld cols=%lld k=%d nb=%d)", bad, (long long)rows,
              (long long)cols, k, nb);
    opc_cuda_free(dx);
    opc_cuda_free(dy);
    opc_cuda_cb_free(&d);
    free(x), free(y), free(ref), free(wrow);
}

static void test_gemv_int8_precision(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    if (getenv("OPC_CUDA_GEMV")) SKIP("OPC_CUDA_GEMV forces another kernel");
    static const struct { int64_t rows, cols; int k, ol, nb; } cs[] = {
        {1, 1, 4, 0, 1},     {7, 63, 3, 0, 2},    {16, 64, 4, 0, 1},   {17, 257, 2, 0, 3},   {33, 1000, 1, 0, 4},
        {100, 4096, 4, 1, 1}, {513, 2049, 4, 0, 2}, {3000, 520, 4, 2, 4}, {64, 14336, 4, 0, 1}, {40, 12000, 4, 0, 4},
        /* tall with many outliers: 3-4+ tiles per block on a 132-SM card, so
         * the outlier epilogue's warps take several rows at once (R = 3, 4) */
        {8000, 1024, 4, 3, 1}, {6000, 600, 3, 5, 4},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        run_case_tight(cs[i].rows, cs[i].cols, cs[i].k, cs[i].ol, cs[i].nb);
}

/* Uneven outliers: the int8 kernel copies each block's CSR entries into
 * shared memory up to a cap sized from the mean per block (CbkV8::ol_cap);
 * a block holding a few rows with half their columns as outliers exceeds it
 * and must read the rest from global memory. Rows with 0..4 outliers between
 * them, one row in 37 with every other column; first entries at odd
 * offsets (the copy starts at a multiple of 8). With one 16-row tile per
 * block (these shapes on a 132-SM card) the 300 x 3000 and 77 x 4096 cases
 * exceed the cap (1500 / 2048 entries in a heavy row's block against ~1270 /
 * ~1590); OPC_CUDA_V8_OLCAP=8 forces the overflow path on every case. */
static void test_gemv_int8_outlier_skew(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    if (getenv("OPC_CUDA_GEMV")) SKIP("OPC_CUDA_GEMV forces another kernel");
    static const struct { int64_t rows, cols; int nb; } cs[] = {{300, 3000, 1}, {2000, 1030, 3}, {77, 4096, 4}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        host_cb h;
        host_make(&h, cs[i].rows, cs[i].cols, 4, 0, 0);
        const int64_t rows = cs[i].rows, cols = cs[i].cols;
        h.rowptr = calloc((size_t)rows + 1, 4);
        h.ocol = malloc((size_t)(rows * cols) * 2);
        h.oval = malloc((size_t)(rows * cols) * 2);
        uint32_t n = 0;
        for (int64_t r = 0; r < rows; r++) {
            const int heavy = r % 37 == 5;
            const int64_t cnt = heavy ? cols / 2 : (int64_t)(rnd() % 5);
            for (int64_t j = 0; j < cnt; j++) {
                h.ocol[n] = (uint16_t)(heavy ? 2 * j + 1 : (j * cols) / (cnt + 1) + 1); /* sorted */
                h.oval[n] = opc_fp32_to_fp16(0.5f * rnd_sym());
                n++;
            }
            h.rowptr[r + 1] = n;
        }
        h.m.n_outliers = n;
        h.m.ol_rowptr = h.rowptr, h.m.ol_col = h.ocol, h.m.ol_val = h.oval;
        run_tight(&h, 50, cs[i].nb);
        host_free(&h);
    }
}

/* The GEMV with an input transform (opc_cuda_cb_gemv_xf) against the host:
 * x computed in float exactly as ops.cu does (v = a + b, v * rsqrt(mean v^2 +
 * eps) * w; silu(a) * b), then the reference GEMV; same bound as the int8
 * kernel (2e-4 * sum |W||x|; the GPU's rsqrtf/__expf add ~1e-6 relative).
 * a and b are rows of one buffer (nb, ld) apart by `boff` floats, like the
 * fused gate|up output (ld = 2 cols, boff = cols); RMSNORM also checks that
 * res_out = a + b exactly, every row. */
static void run_case_xf(int64_t rows, int64_t cols, int32_t k, int outlier_pct, int nb, opc_cuda_xf_kind kind,
                        int64_t ld, int64_t boff, int with_b) {
    host_cb h;
    host_make(&h, rows, cols, k, outlier_pct, 0);
    const int64_t nin = nb * ld + boff; /* the buffer that holds a and b */
    float *in = malloc(sizeof(float) * (size_t)nin), *w = malloc(sizeof(float) * (size_t)cols);
    float *x = malloc(sizeof(float) * (size_t)(nb * cols)), *y = malloc(sizeof(float) * (size_t)(nb * rows));
    float *res = malloc(sizeof(float) * (size_t)(nb * ld)), *ref = malloc(sizeof(float) * (size_t)rows);
    float *wrow = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < nin; i++) in[i] = 3.0f * rnd_sym();
    for (int64_t c = 0; c < cols; c++) w[c] = 1.0f + 0.5f * rnd_sym();
    const float eps = 1e-5f;
    for (int b = 0; b < nb; b++) {
        const float *pa = in + b * ld, *pb = in + b * ld + boff;
        float *xb = x + (int64_t)b * cols;
        if (kind == OPC_CUDA_XF_SWIGLU) {
            for (int64_t c = 0; c < cols; c++) xb[c] = pa[c] / (1.0f + expf(-pa[c])) * pb[c];
        } else {
            double ss = 0.0;
            for (int64_t c = 0; c < cols; c++) {
                const float v = pa[c] + (with_b ? pb[c] : 0.0f);
                ss += (double)v * v;
            }
            const float sc = (float)(1.0 / sqrt(ss / (double)cols + eps));
            for (int64_t c = 0; c < cols; c++) xb[c] = w[c] * ((pa[c] + (with_b ? pb[c] : 0.0f)) * sc);
        }
    }
    opc_cuda_cb_matrix d;
    void *din = NULL, *dw = NULL, *dy = NULL, *dres = NULL;
    opc_status st = opc_cuda_cb_upload(&h.m, &d);
    if (st == OPC_OK) st = opc_cuda_alloc(&din, sizeof(float) * (size_t)nin);
    if (st == OPC_OK) st = opc_cuda_alloc(&dw, sizeof(float) * (size_t)cols);
    if (st == OPC_OK) st = opc_cuda_alloc(&dy, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_alloc(&dres, sizeof(float) * (size_t)(nb * ld));
    if (st == OPC_OK) st = opc_cuda_to_device(din, in, sizeof(float) * (size_t)nin);
    if (st == OPC_OK) st = opc_cuda_to_device(dw, w, sizeof(float) * (size_t)cols);
    memset(y, 0xFF, sizeof(float) * (size_t)(nb * rows)); /* NaN: unwritten outputs fail */
    memset(res, 0xFF, sizeof(float) * (size_t)(nb * ld));
    if (st == OPC_OK) st = opc_cuda_to_device(dy, y, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_to_device(dres, res, sizeof(float) * (size_t)(nb * ld));
    CHECK_MSG(st == OPC_OK, "xf buffers: %s", opc_last_error());
    CHECK(st != OPC_OK || opc_cuda_cb_gemv_xf_ok(&d, nb));
    opc_cuda_xform xf;
    memset(&xf, 0, sizeof xf);
    xf.kind = kind, xf.a = (const float *)din, xf.ld = ld, xf.eps = eps;
    xf.b = with_b ? (const float *)din + boff : NULL;
    if (kind == OPC_CUDA_XF_RMSNORM) xf.w = (const float *)dw, xf.res_out = (float *)dres;
    if (st == OPC_OK) st = opc_cuda_cb_gemv_xf(&d, &xf, nb, (float *)dy, NULL);
    if (st == OPC_OK) st = opc_cuda_sync(NULL);
    if (st == OPC_OK) st = opc_cuda_to_host(y, dy, sizeof(float) * (size_t)(nb * rows));
    if (st == OPC_OK) st = opc_cuda_to_host(res, dres, sizeof(float) * (size_t)(nb * ld));
    CHECK_MSG(st == OPC_OK, "gemv_xf (%lld x %lld, nb %d, kind %d): %s", (long long)rows, (long long)cols, nb,
              (int)kind, opc_last_error());
    int bad = 0, bad_res = 0;
    for (int b = 0; st == OPC_OK && b < nb; b++) {
        const float *xb = x + (int64_t)b * cols;
        opc_cb_gemv_ref(&h.m, xb, ref);
        for (int64_t r = 0; r < rows; r++) {
            opc_cb_dequant_row_ref(&h.m, r, wrow);
            double scale = 0.0;
            for (int64_t c = 0; c < cols; c++) scale += fabs((double)wrow[c] * xb[c]);
            const double got = y[(int64_t)b * rows + r], err = fabs(got - ref[r]) / (scale + 1e-30);
            if (!(err <= 2e-4) && bad++ < 3)
                fprintf(stderr, "    xf %d rows=%lld cols=%lld k=%d ol=%d%% nb=%d: y[%d][%lld] = %.9g, ref %.9g\n",
                        (int)kind, (long long)rows, (long long)cols, k, outlier_pct, nb, b, (long long)r, got,
                        (double)ref[r]);
        }
        if (kind == OPC_CUDA_XF_RMSNORM)
            for (int64_t c = 0; c < cols; c++) {
                const float v = in[b * ld + c] + (with_b ? in[b * ld + boff + c] : 0.0f);
                if (memcmp(&v, &res[b * ld + c], sizeof v) != 0) bad_res++;
            }
    }
    CHECK_MSG(bad == 0, "gemv_xf kind %d: %d outputs off (rows=%lld cols=%lld k=%d nb=%d)", (int)kind, bad,
              (long long)rows, (long long)cols, k, nb);
    CHECK_MSG(bad_res == 0, "gemv_xf: %d residual values differ from a + b (cols=%lld nb=%d)", bad_res,
              (long long)cols, nb);
    opc_cuda_free(din), opc_cuda_free(dw), opc_cuda_free(dy), opc_cuda_free(dres);
    opc_cuda_cb_free(&d);
    free(in), free(w), free(x), free(y), free(res), free(ref), free(wrow);
    host_free(&h);
}

static void test_gemv_xf_matches_host(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    if (getenv("OPC_CUDA_GEMV")) SKIP("OPC_CUDA_GEMV forces another kernel");
    /* rows, cols, k, outliers %, nb, ld, b offset: aligned (vector loads) and
     * odd (scalar loads) strides, partial 256-column steps, outliers (their
     * corrections use the transformed x), several tiles per block, batch 4;
     * RMSNORM through both of the kernel's paths (x from registers when each
     * warp stages <= 2 (step, vector) items: 4096 x 1, 1000 x 2, 510 x 1,
     * 1500 x 2, 2048 x 2; else two passes) */
    static const struct { int64_t rows, cols; int k, ol, nb; int64_t ld, boff; } cs[] = {
        {64, 4096, 4, 0, 1, 4096, 4096},  {100, 1000, 3, 1, 2, 1000, 2000}, {17, 257, 2, 0, 3, 259, 7},
        {3000, 520, 4, 2, 4, 520, 4 * 520}, {48, 14336, 4, 0, 1, 28672, 14336}, {5, 63, 1, 0, 4, 63, 1},
        {33, 510, 4, 1, 1, 511, 3},       {70, 1500, 2, 1, 2, 1500, 1},     {7000, 700, 4, 3, 2, 704, 2 * 704},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        run_case_xf(cs[i].rows, cs[i].cols, cs[i].k, cs[i].ol, cs[i].nb, OPC_CUDA_XF_RMSNORM, cs[i].ld, cs[i].boff, 1);
        run_case_xf(cs[i].rows, cs[i].cols, cs[i].k, cs[i].ol, cs[i].nb, OPC_CUDA_XF_SWIGLU, cs[i].ld, cs[i].boff, 1);
    }
    run_case_xf(200, 2048, 4, 1, 2, OPC_CUDA_XF_RMSNORM, 2048, 0, 0); /* no residual delta */
}

/* opc_cuda_cb_gemv_xf refuses what it cannot do before launching anything. */
static void test_gemv_xf_rejects(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    if (getenv("OPC_CUDA_GEMV")) SKIP("OPC_CUDA_GEMV forces another kernel");
    host_cb h;
    host_make(&h, 32, 256, 4, 0, 0);
    opc_cuda_cb_matrix d;
    void *buf = NULL;
    opc_status st = opc_cuda_cb_upload(&h.m, &d);
    if (st == OPC_OK) st = opc_cuda_alloc(&buf, sizeof(float) * 4096);
    CHECK_MSG(st == OPC_OK, "setup: %s", opc_last_error());
    if (st == OPC_OK) {
        float *a = (float *)buf, *y = a + 2048;
        opc_cuda_xform xf;
        memset(&xf, 0, sizeof xf);
        xf.kind = OPC_CUDA_XF_RMSNORM, xf.a = a, xf.b = a + 256, xf.w = a + 512, xf.ld = 256, xf.eps = 1e-5f;
        xf.res_out = a; /* aliases a: other blocks still read it */
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_INVALID_ARG);
        xf.res_out = a + 1024;
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 5, y, NULL), OPC_ERR_UNSUPPORTED); /* int8 kernel: nb <= 4 */
        CHECK(!opc_cuda_cb_gemv_xf_ok(&d, 5));
        xf.ld = 255;
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_INVALID_ARG);
        xf.ld = 256, xf.w = NULL;
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_INVALID_ARG);
        xf.kind = OPC_CUDA_XF_SWIGLU, xf.b = NULL;
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_INVALID_ARG);
        xf.kind = (opc_cuda_xf_kind)7, xf.b = a + 256;
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_INVALID_ARG);
        d.gscale = (uint8_t *)buf, d.gs_stride = 16; /* group scales: not the int8 kernel's */
        xf.kind = OPC_CUDA_XF_SWIGLU;
        CHECK(!opc_cuda_cb_gemv_xf_ok(&d, 1));
        CHECK_EQ_INT(opc_cuda_cb_gemv_xf(&d, &xf, 1, y, NULL), OPC_ERR_UNSUPPORTED);
        d.gscale = NULL, d.gs_stride = 0;
    }
    opc_cuda_free(buf);
    opc_cuda_cb_free(&d);
    host_free(&h);
}

static void test_gemv_group_scales(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    /* odd group counts (the upload pads each row's scales to 16 bytes),
     * partial tiles, outliers (not scaled), batches */
    static const struct { int64_t rows, cols; int k, ol, nb; } cs[] = {
        {1, 1, 4, 0, 1},     {5, 63, 3, 0, 2},     {17, 65, 4, 2, 1},  {33, 1000, 4, 0, 8},
        {100, 1088, 2, 1, 3}, {513, 2049, 4, 0, 1}, {64, 4096, 1, 0, 4}, {300, 5000, 4, 1, 5},
        {40, 14400, 4, 0, 8}, /* x does not fit in shared memory: slab kernel */
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        run_case_gs(cs[i].rows, cs[i].cols, cs[i].k, cs[i].ol, cs[i].nb, 1);
}

/* The GPU rotation against opc_cb_rotate / opc_cb_unrotate: every block
 * size class of the kernel (registers only, lane shuffles, shared memory,
 * the 2^15 maximum), several blocks per vector, several vectors, in place
 * and out of place; fp32 throughout, so within a few ulp of the CPU's sums
 * (different summation order). */
static void test_rotate_matches_reference(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    static const struct { int lg, blocks, n; } cs[] = {{1, 3, 2}, {2, 43, 1}, {4, 2, 3}, {6, 5, 2},  {9, 2, 2},
                                                       {10, 3, 1}, {12, 2, 2}, {13, 1, 2}, {14, 1, 1}, {15, 2, 1}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const int64_t b = (int64_t)1 << cs[i].lg, cols = b * cs[i].blocks, n = cs[i].n, tot = n * cols;
        float *x = malloc(sizeof(float) * (size_t)tot), *want = malloc(sizeof(float) * (size_t)tot);
        float *got = malloc(sizeof(float) * (size_t)tot);
        for (int64_t j = 0; j < tot; j++) x[j] = rnd_sym();
        void *dx = NULL, *dy = NULL;
        opc_status st = opc_cuda_alloc(&dx, sizeof(float) * (size_t)tot);
        if (st == OPC_OK) st = opc_cuda_alloc(&dy, sizeof(float) * (size_t)tot);
        for (int inv = 0; st == OPC_OK && inv < 2; inv++)
            for (int inplace = 0; st == OPC_OK && inplace < 2; inplace++) {
                memcpy(want, x, sizeof(float) * (size_t)tot);
                for (int64_t r = 0; r < n; r++) {
                    if (inv) opc_cb_unrotate(want + r * cols, cols, cs[i].lg);
                    else opc_cb_rotate(want + r * cols, cols, cs[i].lg);
                }
                memset(got, 0xFF, sizeof(float) * (size_t)tot); /* NaN poison */
                st = opc_cuda_to_device(dy, got, sizeof(float) * (size_t)tot);
                if (st == OPC_OK) st = opc_cuda_to_device(inplace ? dy : dx, x, sizeof(float) * (size_t)tot);
                if (st == OPC_OK)
                    st = opc_cuda_rotate(inplace ? dy : dx, dy, n, cols, cs[i].lg, inv, NULL);
                if (st == OPC_OK) st = opc_cuda_sync(NULL);
                if (st == OPC_OK) st = opc_cuda_to_host(got, dy, sizeof(float) * (size_t)tot);
                CHECK_MSG(st == OPC_OK, "rotate 2^%d: %s", cs[i].lg, opc_last_error());
                double worst = 0.0;
                for (int64_t j = 0; st == OPC_OK && j < tot; j++) {
                    const double e = fabs((double)got[j] - want[j]);
                    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
                }
                /* |x| < 1: sums of b terms scaled by 1/sqrt(b), rounding ~ log2(b) ulp */
                CHECK_MSG(worst <= 1e-5, "rotate 2^%d x %d blocks x %lld, inverse %d, in place %d: max err %g",
                          cs[i].lg, cs[i].blocks, (long long)n, inv, inplace, worst);
            }
        opc_cuda_free(dx);
        opc_cuda_free(dy);
        free(x), free(want), free(got);
    }
    float *p = (float *)(uintptr_t)16; /* never dereferenced: the checks come first */
    CHECK_EQ_INT(opc_cuda_rotate(p, p, 1, 100, 3, 0, NULL), OPC_ERR_INVALID_ARG); /* 8 does not divide 100 */
    CHECK_EQ_INT(opc_cuda_rotate(p, p, 1, 64, 0, 0, NULL), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_cuda_rotate(p, p, 1, 1 << 16, 16, 0, NULL), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_cuda_rotate(NULL, p, 1, 64, 3, 0, NULL), OPC_ERR_INVALID_ARG);
}

static void test_gemv_rejects_bad_arguments(void) {
    /* Checked before anything touches the GPU: runs without a device too. The
     * pointers are never dereferenced. */
    static _Alignas(16) uint8_t fake[64];
    opc_cuda_cb_matrix d;
    memset(&d, 0, sizeof d);
    d.rows = 4, d.cols = 64, d.bits = 2, d.k = 4, d.row_bytes = 16;
    d.idx = fake, d.codebook = (uint16_t *)fake;
    float *x = (float *)fake, *y = (float *)fake;

    CHECK_EQ_INT(opc_cuda_cb_gemv(NULL, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, NULL, 1, y, NULL), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 0, y, NULL), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 9, y, NULL), OPC_ERR_INVALID_ARG);
    d.bits = 4;
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_UNSUPPORTED);
    CHECK(strstr(opc_last_error(), "opc_cuda_cb_gemv") != NULL);
    d.bits = 2, d.k = 5;
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    d.k = 4, d.row_bytes = 32;
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "row_bytes") != NULL);
    d.row_bytes = 16, d.idx = fake + 4; /* misaligned index array */
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    d.idx = fake, d.n_outliers = 3; /* outliers without CSR arrays */
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    d.n_outliers = 0, d.rows = 0;
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    d.rows = 4;
    CHECK_EQ_INT(opc_cuda_cb_gemv_with(&d, x, 1, y, NULL, (opc_cuda_cb_kernel)7), OPC_ERR_INVALID_ARG);
    d.gscale = fake, d.gs_stride = 1; /* group scales need a stride padded to 16 */
    CHECK_EQ_INT(opc_cuda_cb_gemv(&d, x, 1, y, NULL), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "stride") != NULL);
}

static void test_upload_rejects_corrupt(void) {
    /* Validation runs before any allocation: no device needed. */
    host_cb h;
    host_make(&h, 3, 70, 4, 0, 0);
    opc_cuda_cb_matrix d;
    h.m.row_bytes = 16; /* 70 columns need 2 groups = 32 bytes */
    CHECK_EQ_INT(opc_cuda_cb_upload(&h.m, &d), OPC_ERR_CORRUPT);
    CHECK(d.idx == NULL);
    h.m.row_bytes = 32;
    h.m.k = 7;
    CHECK_EQ_INT(opc_cuda_cb_upload(&h.m, &d), OPC_ERR_CORRUPT);
    h.m.k = 4;
    uint32_t rowptr[4] = {0, 2, 1, 2}; /* not monotone */
    uint16_t col[2] = {1, 2}, val[2] = {0x3c00, 0x3c00};
    h.m.n_outliers = 2, h.m.ol_rowptr = rowptr, h.m.ol_col = col, h.m.ol_val = val;
    CHECK_EQ_INT(opc_cuda_cb_upload(&h.m, &d), OPC_ERR_CORRUPT);
    h.m.n_outliers = 0;
    h.m.bits = 4, h.m.k = 4, h.m.row_bytes = opc_cb_row_bytes(4, 70);
    CHECK_EQ_INT(opc_cuda_cb_upload(&h.m, &d), OPC_ERR_UNSUPPORTED);
    opc_cuda_cb_free(&d); /* zeroed: a no-op */
    opc_cuda_cb_free(NULL);
    host_free(&h);
}

int main(void) {
    RUN(test_gemv_rejects_bad_arguments);
    RUN(test_upload_rejects_corrupt);
    RUN(test_gemv_matches_reference);
    RUN(test_gemv_batch_and_outliers);
    RUN(test_gemv_int8_outlier_skew);
    RUN(test_gemv_group_scales);
    RUN(test_gemv_int8_precision);
    RUN(test_gemv_xf_matches_host);
    RUN(test_gemv_xf_rejects);
    RUN(test_rotate_matches_reference);
    int rc = harness_finish();
    /* No GPU (CI): the argument checks above still ran, but the test as a
     * whole reports itself skipped unless one of them failed. */
    if (rc == 0 && opc_cuda_device_count() == 0) {
        fprintf(stderr, "no CUDA device: GPU cases skipped\n");
        return 77;
    }
    return rc;
}

#else /* !OPC_HAVE_CUDA */

static void test_cuda_not_built(void) { SKIP("built without CUDA (nvcc not found or OPC_CUDA=OFF)"); }

int main(void) {
    RUN(test_cuda_not_built);
    return harness_finish();
}

#endif
