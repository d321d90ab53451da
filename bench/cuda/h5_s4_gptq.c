/*
 * h5_s4_gptq.c — time of GPTQ quantization (quantize's defaults: 2 bits,
 * k = 4, 0.5 % outliers, damping 0.1) of one matrix, GPU vs CPU (all OpenMP
 * threads), on SmolLM2-135M and 2048-wide shapes with a random SPD Hessian;
 * the outputs are compared byte for byte. Also the CPU time of the GPTQ
 * factor per width (made once per distinct Hessian, uploaded by the GPU path).
 *
 * Not built by CMake: bench/cuda/h5_s4_device.sh copies it to
 * bench/bench_h5_s4_gptq.c on the device machine before configuring.
 *   bench_h5_s4_gptq [--cpu-max-rows N]   (CPU timing only for rows <= N, default 8192)
 */
#include "core/core.h"
#include "cuda/quant_cuda.h"
#include "quant/cb.h"
#include "quant/quantize.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Gaussian from a counter (Box-Muller): any order, any thread, same values */
static double gauss(uint64_t i) {
    double u = ((double)(mix(2 * i) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double v = (double)(mix(2 * i + 1) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* H = V V^T / m + diag (V: cols x m Gaussian, m = 32), exactly symmetric */
static float *make_h(int64_t cols, uint64_t seed) {
    const int m = 32;
    double *V = malloc((size_t)(cols * m) * sizeof *V);
    float *H = malloc((size_t)(cols * cols) * sizeof *H);
    if (!V || !H) exit(1);
    for (int64_t i = 0; i < cols * m; i++) V[i] = gauss(seed * 1000003u + (uint64_t)i);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b <= a; b++) {
            double v = 0.0;
            for (int j = 0; j < m; j++) v += V[a * m + j] * V[b * m + j];
            v /= m;
            if (a == b) v += 0.1;
            H[a * cols + b] = H[b * cols + a] = (float)v;
        }
    free(V);
    return H;
}

static int same(const opc_qmatrix *a, const opc_qmatrix *b) {
    const opc_cb_matrix *x = &a->m, *y = &b->m;
    if (x->n_outliers != y->n_outliers) return 0;
    if (memcmp(x->idx, y->idx, (size_t)(x->rows * (int64_t)x->row_bytes)) ||
        memcmp(x->codebook, y->codebook, (size_t)(x->rows * x->k) * 2))
        return 0;
    if (x->n_outliers && (memcmp(x->ol_rowptr, y->ol_rowptr, (size_t)(x->rows + 1) * 4) ||
                          memcmp(x->ol_col, y->ol_col, (size_t)x->n_outliers * 2) ||
                          memcmp(x->ol_val, y->ol_val, (size_t)x->n_outliers * 2)))
        return 0;
    return 1;
}

int main(int argc, char **argv) {
    int64_t cpu_max_rows = 8192;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--cpu-max-rows")) cpu_max_rows = atoll(argv[++i]);
    printf("OpenMP threads: %d\n", omp_get_max_threads());

    printf("\nGPTQ factor U of (H + 0.1 mean(diag) I)^-1: CPU (opc_quant_gptq_factor, all threads) vs GPU\n"
           "(opc_cuda_gptq_factor: upload of H and download of U included; best of 2 after a warm-up)\n");
    const int64_t fw[] = {576, 1024, 1536, 2048, 4096};
    for (size_t i = 0; i < sizeof fw / sizeof fw[0]; i++) {
        float *H = make_h(fw[i], 7 + i);
        double *U = NULL, *Ug = NULL;
        double t0 = now_s();
        opc_status st = opc_quant_gptq_factor(H, fw[i], 0.1, &U);
        double t1 = now_s(), tg = 1e30;
        opc_status sg = OPC_OK;
        for (int rep = 0; rep < 3 && sg == OPC_OK; rep++) {
            free(Ug);
            Ug = NULL;
            double a = now_s();
            sg = opc_cuda_gptq_factor(H, fw[i], 0.1, &Ug);
            double b = now_s();
            if (rep && b - a < tg) tg = b - a;
        }
        int ident = st == OPC_OK && sg == OPC_OK && !memcmp(U, Ug, (size_t)(fw[i] * fw[i]) * sizeof *U);
        printf("  cols %5lld: cpu %8.1f ms  gpu %8.1f ms%s  identical %s  (U: %.1f MB)\n", (long long)fw[i],
               1e3 * (t1 - t0), 1e3 * tg, st || sg ? " FAILED" : "", ident ? "yes" : "NO", 8e-6 * (double)(fw[i] * fw[i]));
        fflush(stdout);
        free(U);
        free(Ug);
        free(H);
    }

    struct { const char *name; int64_t rows, cols; } sh[] = {
        {"smollm2 attn_q/o", 576, 576},    {"smollm2 attn_k/v", 192, 576}, {"smollm2 ffn_gate/up", 1536, 576},
        {"smollm2 ffn_down", 576, 1536},   {"2048 square", 2048, 2048},    {"2048 ffn_gate/up", 8192, 2048},
    };
    printf("\nGPTQ quantization of one matrix (factor given, as opc_quantize_model shares it; GPU time includes\n"
           "upload of W, H, U and download): best of 2 GPU runs after a warm-up\n");
    printf("  %-22s %12s %10s %10s %10s %8s %s\n", "shape", "rows x cols", "cpu ms", "gpu ms", "gpu no-H", "cpu/gpu",
           "identical");
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        const int64_t rows = sh[s].rows, cols = sh[s].cols;
        float *W = malloc((size_t)(rows * cols) * sizeof *W), *imp = malloc((size_t)cols * sizeof *imp);
        if (!W || !imp) return 1;
        for (int64_t i = 0; i < rows * cols; i++) W[i] = (float)(0.02 * gauss(77777777ull + (uint64_t)i));
        for (int64_t c = 0; c < cols; c++) imp[c] = (float)exp(1.5 * gauss(55555ull + (uint64_t)c));
        float *H = make_h(cols, 100 + s);
        double *U = NULL;
        if (opc_quant_gptq_factor(H, cols, 0.1, &U)) return 1;
        opc_qmatrix_params p;
        memset(&p, 0, sizeof p);
        p.index_bits = 2, p.k = 4, p.method = OPC_QUANT_KMEANS, p.outlier_frac = 0.005, p.importance = imp;
        p.seed = 1, p.damp = 0.1, p.hessian = H, p.gptq_u = U;
        opc_qmatrix qc, qg;
        memset(&qc, 0, sizeof qc);
        memset(&qg, 0, sizeof qg);
        double tg = 1e30, tn = 1e30, tc = -1.0;
        for (int rep = 0; rep < 3; rep++) {
            opc_qmatrix_free(&qg);
            double t0 = now_s();
            opc_status st = opc_cuda_quantize_matrix(W, rows, cols, &p, &qg);
            double t1 = now_s();
            if (st) {
                fprintf(stderr, "gpu: %s\n", opc_last_error());
                return 1;
            }
            if (rep && t1 - t0 < tg) tg = t1 - t0;
        }
        {
            opc_qmatrix_params pn = p;
            pn.hessian = NULL, pn.gptq_u = NULL;
            for (int rep = 0; rep < 2; rep++) {
                opc_qmatrix q;
                double t0 = now_s();
                if (opc_cuda_quantize_matrix(W, rows, cols, &pn, &q)) return 1;
                double t1 = now_s();
                if (t1 - t0 < tn) tn = t1 - t0;
                opc_qmatrix_free(&q);
            }
        }
        int ident = -1;
        if (rows <= cpu_max_rows) {
            double t0 = now_s();
            if (opc_quantize_matrix(W, rows, cols, &p, &qc)) return 1;
            tc = now_s() - t0;
            ident = same(&qc, &qg);
        }
        printf("  %-22s %5lld x %-5lld %10.1f %10.1f %10.1f %8.1f %s\n", sh[s].name, (long long)rows, (long long)cols,
               1e3 * tc, 1e3 * tg, 1e3 * tn, tc > 0 ? tc / tg : 0.0, ident < 0 ? "(cpu skipped)" : ident ? "yes" : "NO");
        /* where the GPU's time goes */
        opc_cuda_quant_profile(1);
        opc_qmatrix q;
        if (opc_cuda_quantize_matrix(W, rows, cols, &p, &q) == OPC_OK) opc_qmatrix_free(&q);
        opc_cuda_qprof pr;
        opc_cuda_quant_profile_take(&pr);
        opc_cuda_quant_profile(0);
        printf("     profile:");
        for (int i = 0; i < pr.n; i++)
            if (strstr(pr.name[i], "gptq") || strstr(pr.name[i], "fit") || strstr(pr.name[i], "refit"))
                printf(" %s %.1f ms;", pr.name[i], 1e3 * pr.value[i]);
        printf("\n");
        fflush(stdout);
        opc_qmatrix_free(&qc);
        opc_qmatrix_free(&qg);
        free(U);
        free(H);
        free(W);
        free(imp);
    }
    return 0;
}
