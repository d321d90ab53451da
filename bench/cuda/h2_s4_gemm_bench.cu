/*
 * h2_s4_gemm_bench.cu — the fused 2-bit codebook GEMM (opc_cuda_cb_gemm,
 * src/cuda/cb_gemm.cu) against what the forward pass did before for batches
 * > 8: dequantize the matrix to fp16 (ops.cu cb_dequant_f16) + cublasGemmEx,
 * and against cuBLAS on an fp16 matrix that is already there (the speed of
 * light for an fp16 model); at n <= 8 also the GEMV the forward uses there.
 *
 *   h2_s4_gemm_bench [--reps 20] [--outliers PCT] [--ns 8,16,...] [--shapes R1xC1,...]
 *
 * Built against the library (bash bench/cuda/h2_s4_device.sh). Each figure
 * is the mean of --reps back-to-back calls after 3 warm-up calls, timed with
 * CUDA events on one stream: device time, no host synchronisation between
 * calls. Random k = 4 codebooks and indices; outliers (CSR, random columns)
 * when --outliers > 0. A check compares the fused result with the
 * dequant+cuBLAS one (same fp16 W, different summation order).
 */
#include "cuda/cuda_api.h"
#include "cuda/ops.cuh"

#include "core/half.h"

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                 \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));       \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)
#define OK(x)                                                                                 \
    do {                                                                                      \
        if ((x) != OPC_OK) {                                                                  \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, opc_last_error());             \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static float rnd_sym(void) { return (float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f; }

/* A random (rows, cols) 2-bit matrix on the device. */
static void make_matrix(int64_t rows, int64_t cols, double ol_pct, opc_cuda_cb_matrix *d) {
    opc_cb_matrix m;
    memset(&m, 0, sizeof m);
    m.rows = rows, m.cols = cols, m.bits = 2, m.k = 4, m.row_bytes = opc_cb_row_bytes(2, cols);
    uint8_t *idx = (uint8_t *)malloc((size_t)(rows * (int64_t)m.row_bytes));
    uint16_t *cb = (uint16_t *)malloc((size_t)rows * 8);
    for (int64_t i = 0; i < rows * (int64_t)m.row_bytes; i++) idx[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < rows * 4; i++) cb[i] = opc_fp32_to_fp16(0.05f * rnd_sym());
    m.idx = idx, m.codebook = cb;
    uint32_t *rp = NULL;
    uint16_t *oc = NULL, *ov = NULL;
    if (ol_pct > 0) {
        const int per = (int)(cols * ol_pct / 100.0 + 0.5); /* evenly spread, sorted */
        rp = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(rows + 1));
        oc = (uint16_t *)malloc(2 * (size_t)(rows * per + 1));
        ov = (uint16_t *)malloc(2 * (size_t)(rows * per + 1));
        uint32_t n = 0;
        rp[0] = 0;
        for (int64_t r = 0; r < rows; r++) {
            for (int i = 0; i < per; i++) {
                oc[n] = (uint16_t)((int64_t)i * cols / per + rnd() % (uint32_t)(cols / per));
                ov[n] = opc_fp32_to_fp16(0.5f * rnd_sym());
                n++;
            }
            rp[r + 1] = n;
        }
        m.n_outliers = n, m.ol_rowptr = rp, m.ol_col = oc, m.ol_val = ov;
    }
    OK(opc_cuda_cb_upload(&m, d));
    free(idx), free(cb), free(rp), free(oc), free(ov);
}

typedef enum { K_FUSED, K_FUSED_CFG, K_DQ_BLAS, K_BLAS16, K_GEMV } kind_t;

struct ctx {
    opc_cuda_cb_matrix *m;
    opc_cudafwd::CbDev cbd;
    __half *w16;  /* (rows, cols) the dequantized matrix */
    __half *x16;  /* (n, cols) */
    float *x32;   /* (n, cols) */
    float *y;     /* (n, rows) */
    cublasHandle_t blas;
    cudaStream_t s;
};

static void blas_gemm(ctx &c, int n) {
    const float alpha = 1.0f, beta = 0.0f;
    /* as forward_cuda.cu's linear(): Yᵀ (rows, n) = W (rows, cols) · Xᵀ, column-major views */
    cublasStatus_t bs = cublasGemmEx(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)c.m->rows, n, (int)c.m->cols, &alpha,
                                     c.w16, CUDA_R_16F, (int)c.m->cols, c.x16, CUDA_R_16F, (int)c.m->cols, &beta, c.y,
                                     CUDA_R_32F, (int)c.m->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasGemmEx: %d\n", (int)bs);
        exit(1);
    }
}

static void run_once(ctx &c, kind_t k, int n, int cfg) {
    switch (k) {
    case K_FUSED: OK(opc_cuda_cb_gemm(c.m, reinterpret_cast<const uint16_t *>(c.x16), n, c.y, c.s)); break;
    case K_FUSED_CFG:
        OK(opc_cuda_cb_gemm_with(c.m, reinterpret_cast<const uint16_t *>(c.x16), n, c.y, c.s, (opc_cuda_gemm_cfg)cfg));
        break;
    case K_DQ_BLAS:
        opc_cudafwd::cb_dequant_f16(c.cbd, c.w16, c.s);
        blas_gemm(c, n);
        break;
    case K_BLAS16: blas_gemm(c, n); break;
    case K_GEMV: OK(opc_cuda_cb_gemv_x16(c.m, c.x32, reinterpret_cast<const uint16_t *>(c.x16), n, c.y, c.s)); break;
    }
}

static double time_us(ctx &c, kind_t k, int n, int cfg, int reps) {
    for (int i = 0; i < 3; i++) run_once(c, k, n, cfg);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a, c.s));
    for (int i = 0; i < reps; i++) run_once(c, k, n, cfg);
    CK(cudaEventRecord(b, c.s));
    CK(cudaEventSynchronize(b));
    float ms = 0.0f;
    CK(cudaEventElapsedTime(&ms, a, b));
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return 1e3 * ms / reps;
}

/* max |fused - dq+cublas| / max |dq+cublas| over the n x rows outputs */
static double check(ctx &c, int n) {
    const size_t ny = (size_t)n * (size_t)c.m->rows;
    float *a = (float *)malloc(4 * ny), *b = (float *)malloc(4 * ny);
    run_once(c, K_DQ_BLAS, n, 0);
    CK(cudaMemcpy(a, c.y, 4 * ny, cudaMemcpyDeviceToHost));
    CK(cudaMemset(c.y, 0xFF, 4 * ny));
    run_once(c, K_FUSED, n, 0);
    CK(cudaMemcpy(b, c.y, 4 * ny, cudaMemcpyDeviceToHost));
    double mx = 0.0, md = 0.0;
    for (size_t i = 0; i < ny; i++) {
        mx = fmax(mx, fabs((double)a[i]));
        const double d = fabs((double)a[i] - b[i]);
        md = (d > md || isnan(d)) ? (isnan(d) ? INFINITY : d) : md;
    }
    free(a), free(b);
    return md / (mx + 1e-30);
}

int main(int argc, char **argv) {
    int reps = 20;
    double ol = 0.0;
    int ns[32] = {5, 6, 7, 8, 16, 32, 64, 128, 256, 512}, nn = 10;
    int64_t shapes[16][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
    int nshapes = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--outliers") && i + 1 < argc) ol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--ns") && i + 1 < argc) {
            nn = 0;
            for (char *p = strtok(argv[++i], ","); p && nn < 32; p = strtok(NULL, ",")) ns[nn++] = atoi(p);
        } else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
            nshapes = 0;
            for (char *p = strtok(argv[++i], ","); p && nshapes < 16; p = strtok(NULL, ","))
                if (sscanf(p, "%ldx%ld", &shapes[nshapes][0], &shapes[nshapes][1]) == 2) nshapes++;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--outliers PCT] [--ns 8,16,..] [--shapes RxC,..]\n", argv[0]);
            return 2;
        }
    }
    if (opc_cuda_device_count() == 0) {
        fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, %d SMs; reps %d; outliers %.2f %%\n", p.name, p.multiProcessorCount, reps, ol);
    int nmax = 0;
    for (int i = 0; i < nn; i++) nmax = ns[i] > nmax ? ns[i] : nmax;

    ctx c;
    memset(&c, 0, sizeof c);
    CK(cudaStreamCreate(&c.s));
    if (cublasCreate(&c.blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(c.blas, c.s) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublas init failed\n");
        return 1;
    }
    for (int si = 0; si < nshapes; si++) {
        const int64_t rows = shapes[si][0], cols = shapes[si][1];
        opc_cuda_cb_matrix m;
        make_matrix(rows, cols, ol, &m);
        c.m = &m;
        c.cbd = opc_cudafwd::cb_dev(&m);
        CK(cudaMalloc(&c.w16, 2 * (size_t)(rows * cols)));
        CK(cudaMalloc(&c.x16, 2 * (size_t)(nmax * cols)));
        CK(cudaMalloc(&c.x32, 4 * (size_t)(nmax * cols)));
        CK(cudaMalloc(&c.y, 4 * (size_t)(nmax * rows)));
        {
            float *hx = (float *)malloc(4 * (size_t)(nmax * cols));
            uint16_t *hx16 = (uint16_t *)malloc(2 * (size_t)(nmax * cols));
            for (int64_t i = 0; i < nmax * cols; i++) hx[i] = rnd_sym(), hx16[i] = opc_fp32_to_fp16(hx[i]);
            CK(cudaMemcpy(c.x32, hx, 4 * (size_t)(nmax * cols), cudaMemcpyHostToDevice));
            CK(cudaMemcpy(c.x16, hx16, 2 * (size_t)(nmax * cols), cudaMemcpyHostToDevice));
            free(hx), free(hx16);
        }
        opc_cudafwd::cb_dequant_f16(c.cbd, c.w16, c.s);
        CK(cudaStreamSynchronize(c.s));
        const double wbytes = (double)rows * (double)m.row_bytes; /* packed indices */
        printf("\n%lld x %lld (2-bit: %.1f MB; fp16: %.1f MB)\n", (long long)rows, (long long)cols, wbytes / 1e6,
               2e-6 * (double)rows * (double)cols);
        printf("%5s %9s %9s %9s %9s %9s %9s %9s %9s %8s %8s %9s\n", "n", "fused", "S32", "S64", "M", "L", "dq+cublas",
               "cublas16", "gemv", "TFLOP/s", "x dq", "check");
        for (int i = 0; i < nn; i++) {
            const int n = ns[i];
            const double tf = time_us(c, K_FUSED, n, 0, reps);
            double tc[5];
            for (int cfg = 1; cfg <= 4; cfg++) tc[cfg] = time_us(c, K_FUSED_CFG, n, cfg, reps);
            const double tdq = time_us(c, K_DQ_BLAS, n, 0, reps);
            opc_cudafwd::cb_dequant_f16(c.cbd, c.w16, c.s); /* K_BLAS16 needs the fp16 W */
            const double tb = time_us(c, K_BLAS16, n, 0, reps);
            const double tg = n <= OPC_CUDA_CB_MAX_BATCH ? time_us(c, K_GEMV, n, 0, reps) : NAN;
            const double flops = 2.0 * (double)rows * (double)cols * n;
            printf("%5d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %8.1f %8.2f %9.2e\n", n, tf, tc[1], tc[2], tc[3],
                   tc[4], tdq, tb, tg, flops / tf * 1e-6, tdq / tf, check(c, n));
            fflush(stdout);
        }
        CK(cudaFree(c.w16));
        CK(cudaFree(c.x16));
        CK(cudaFree(c.x32));
        CK(cudaFree(c.y));
        opc_cuda_cb_free(&m);
    }
    cublasDestroy(c.blas);
    CK(cudaStreamDestroy(c.s));
    printf("\ntimes in us per call (mean of %d); TFLOP/s and 'x dq' (dq+cublas time / fused time) for 'fused' (AUTO)\n",
           reps);
    return 0;
}
