/*
 * bench_cuda_quant.c — time the GPU quantizer on every linear weight of a
 * Llama-3-8B-shaped model (synthetic weights; quantization time does not
 * depend on where the numbers came from), and the CPU quantizer on one layer
 * of it for comparison on the same machine.
 *
 *   bench_cuda_quant [--layers N] [--gs 0|1] [--rot 0|1] [--outliers F] [--bits 2|4]
 *                    [--edge-bits 0|2|4] [--defaults] [--profile] [--f16 0|1] [--cpu-layers N]
 *
 * Per layer: q 4096x4096, k/v 1024x4096, o 4096x4096, gate/up 14336x4096,
 * down 4096x14336; --bits 2 (k = 4, default) or 4 (k = 16), random
 * per-column importance. --edge-bits B quantizes the first and the last of
 * the N layers at B bits, as `quantize` does at --bits 2. --defaults = the
 * `quantize` defaults: --gs 0 --rot 0 --outliers 0.005 --edge-bits 4. The
 * weights of each distinct shape are generated once on the host and every
 * matrix is quantized from host memory (upload included), as `quantize
 * --device cuda` would. Prints per-tensor times of the first layer of each
 * bit width, per-layer times, the total, an estimate for 32 layers (edge
 * layers counted twice when edge bits are on) and the relative weighted
 * error; --profile adds the quantizer's per-phase times (each phase then
 * ends with a device synchronisation). --f16 1 hands the GPU fp16 weights
 * (opc_cuda_quantize_matrix_h16: half the upload), as a `.bf2` / GGUF f16
 * source holds them.
 */
#include "core/core.h"
#include "core/half.h"
#include "quant/quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"
#include "cuda/quant_cuda.h"

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

/* Gaussian rows (per-row and per-group scale drift, rare 4-10x spikes),
 * generated in parallel with a counter-based generator. */
static float *gen(int64_t rows, int64_t cols, uint64_t seed) {
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    if (!w) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        uint64_t s = mix(seed ^ (uint64_t)r);
        double rs = 0.02, gm = 1.0;
        for (int64_t c = 0; c < cols; c += 2) {
            s = mix(s);
            double u = ((double)(s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
            s = mix(s);
            double v = (double)(s >> 11) * (1.0 / 9007199254740992.0);
            double rad = sqrt(-2.0 * log(u));
            if (c % 64 == 0) gm = exp(0.3 * rad * sin(6.283185307179586 * v));
            double g0 = rs * gm * rad * cos(6.283185307179586 * v), g1 = rs * gm * rad * sin(6.283185307179586 * v);
            if ((s & 1023) < 3) g0 *= 6.0;
            w[r * cols + c] = (float)g0;
            if (c + 1 < cols) w[r * cols + c + 1] = (float)g1;
        }
    }
    return w;
}

typedef struct shape {
    const char *name;
    int64_t rows, cols;
    int src; /* which generated matrix */
} shape;

int main(int argc, char **argv) {
    int layers = 32, gs = 1, rot = 1, cpu_layers = 1, bits = 2, edge_bits = 0, profile = 0, f16 = 0;
    double outliers = 0.01;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--defaults")) {
            gs = 0, rot = 0, outliers = 0.005, edge_bits = 4;
            i--;
            continue;
        }
        if (!strcmp(argv[i], "--profile")) {
            profile = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "option %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bits")) bits = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--f16")) f16 = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--edge-bits")) edge_bits = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--gs")) gs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rot")) rot = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--outliers")) outliers = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--cpu-layers")) cpu_layers = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if ((bits != 2 && bits != 4) || (edge_bits != 0 && edge_bits != 2 && edge_bits != 4) || layers < 1) {
        fprintf(stderr, "--bits 2|4, --edge-bits 0|2|4, --layers >= 1\n");
        return 2;
    }
    if (opc_cuda_device_count() < 1) {
        fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    const shape sh[] = {{"attn_q", 4096, 4096, 0},   {"attn_k", 1024, 4096, 1},    {"attn_v", 1024, 4096, 1},
                        {"attn_output", 4096, 4096, 0}, {"ffn_gate", 14336, 4096, 2}, {"ffn_up", 14336, 4096, 2},
                        {"ffn_down", 4096, 14336, 3}};
    const int64_t src_shape[4][2] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}};
    double t0 = now_s();
    float *src[4];
    for (int i = 0; i < 4; i++) {
        src[i] = gen(src_shape[i][0], src_shape[i][1], 0xB00 + (uint64_t)i);
        if (!src[i]) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
    }
    uint16_t *src16[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; f16 && i < 4; i++) { /* the weights as an f16 file holds them, and the CPU's widening */
        const int64_t ne = src_shape[i][0] * src_shape[i][1];
        src16[i] = malloc((size_t)ne * sizeof *src16[i]);
        if (!src16[i]) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
#pragma omp parallel for schedule(static)
        for (int64_t e = 0; e < ne; e++) {
            src16[i][e] = opc_fp32_to_fp16(src[i][e]);
            src[i][e] = opc_fp16_to_fp32(src16[i][e]);
        }
    }
    float *imp4k = malloc(4096 * sizeof(float)), *imp14k = malloc(14336 * sizeof(float));
    for (int c = 0; c < 14336; c++) {
        double u = ((double)(mix(0x1A7 + (uint64_t)c) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
        float v = (float)(-log(u)); /* exponential: a few columns dominate */
        if (c < 4096) imp4k[c] = v;
        imp14k[c] = v;
    }
    printf("weights generated in %.2f s (host)\n", now_s() - t0);
    printf("config: %d-bit (edge layers %s), outliers %.3g, group scales %s, rotation %s, %d layers, %s weights\n",
           bits, edge_bits ? (edge_bits == 4 ? "4-bit" : "2-bit") : "same", outliers, gs ? "on" : "off",
           rot ? "on" : "off", layers, f16 ? "f16" : "f32");
    if (profile) opc_cuda_quant_profile(1);

    double total = 0.0, num = 0.0, den = 0.0, t_edge = 0.0, t_mid = 0.0;
    int n_edge = 0, n_mid = 0, shown[5] = {0, 0, 0, 0, 0};
    uint64_t elems = 0;
    for (int l = 0; l < layers; l++) {
        const int edge = edge_bits && (l == 0 || l == layers - 1);
        const int lb = edge ? edge_bits : bits;
        double tl = 0.0;
        for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
            opc_qmatrix_params p;
            memset(&p, 0, sizeof p);
            p.index_bits = lb, p.k = lb == 2 ? 4 : 16, p.method = OPC_QUANT_KMEANS, p.outlier_frac = outliers, p.seed = 1;
            p.group_scales = gs, p.scale_rounds = 3;
            p.rot_log2 = rot ? opc_quant_rot_log2(sh[t].cols, OPC_CB_ROT_MAX_LOG2) : 0;
            p.importance = sh[t].cols == 4096 ? imp4k : imp14k;
            opc_qmatrix q;
            double a = now_s();
            opc_status st = f16 ? opc_cuda_quantize_matrix_h16(src16[sh[t].src], 0, sh[t].rows, sh[t].cols, &p, &q)
                                : opc_cuda_quantize_matrix(src[sh[t].src], sh[t].rows, sh[t].cols, &p, &q);
            double b = now_s();
            if (st) {
                fprintf(stderr, "%s: %s\n", sh[t].name, opc_last_error());
                return 1;
            }
            total += b - a;
            tl += b - a;
            num += q.err_num, den += q.err_den;
            elems += (uint64_t)(sh[t].rows * sh[t].cols);
            if (!shown[lb])
                printf("  gpu  %d-bit %-12s %6lld x %-6lld %8.3f s  rel err %.5e  outliers %llu\n", lb, sh[t].name,
                       (long long)sh[t].rows, (long long)sh[t].cols, b - a, q.err_num / q.err_den,
                       (unsigned long long)q.m.n_outliers);
            opc_qmatrix_free(&q);
        }
        shown[lb] = 1;
        if (edge) t_edge += tl, n_edge++;
        else t_mid += tl, n_mid++;
        /* cumulative: a cut-off run still tells */
        printf("  gpu  layer %d (%d-bit): %.3f s; layers 0..%d: %.3f s\n", l, lb, tl, l, total);
        fflush(stdout);
        if (profile && (l == 0 || l == 1)) {
            opc_cuda_qprof pr;
            opc_cuda_quant_profile_take(&pr);
            for (int i = 0; i < pr.n; i++) printf("    profile layer %d  %-40s %9.4f\n", l, pr.name[i], pr.value[i]);
        }
    }
    printf("GPU: %d layers, %.3g weights in %.2f s (%.1f M weights/s), rel err %.5e\n", layers, (double)elems, total,
           (double)elems / total / 1e6, num / den);
    {
        /* 32 Llama-3-8B layers: 2 edge layers (when edge bits are on) and the rest */
        double me = n_edge ? t_edge / n_edge : 0.0, mm = n_mid ? t_mid / n_mid : me;
        if (!n_edge) me = mm;
        double est = edge_bits ? 2.0 * me + 30.0 * mm : 32.0 * mm;
        printf("estimate for 32 layers: %.2f s (edge layer %.3f s, other layer %.3f s)\n", est, me, mm);
    }

    /* the CPU path on the same machine, same matrices */
    for (int l = 0; l < cpu_layers; l++) {
        double ct = 0.0;
        for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++) {
            opc_qmatrix_params p;
            memset(&p, 0, sizeof p);
            p.index_bits = bits, p.k = bits == 2 ? 4 : 16, p.method = OPC_QUANT_KMEANS, p.outlier_frac = outliers;
            p.seed = 1, p.group_scales = gs, p.scale_rounds = 3;
            p.rot_log2 = rot ? opc_quant_rot_log2(sh[t].cols, OPC_CB_ROT_MAX_LOG2) : 0;
            p.importance = sh[t].cols == 4096 ? imp4k : imp14k;
            opc_qmatrix q;
            double a = now_s();
            opc_status st = opc_quantize_matrix(src[sh[t].src], sh[t].rows, sh[t].cols, &p, &q);
            double b = now_s();
            if (st) {
                fprintf(stderr, "cpu %s: %s\n", sh[t].name, opc_last_error());
                return 1;
            }
            ct += b - a;
            printf("  cpu  %-12s %6lld x %-6lld %8.3f s  rel err %.5e\n", sh[t].name, (long long)sh[t].rows,
                   (long long)sh[t].cols, b - a, q.err_num / q.err_den);
            opc_qmatrix_free(&q);
            fflush(stdout);
        }
        printf("CPU: layer %d in %.2f s\n", l, ct);
    }
    for (int i = 0; i < 4; i++) free(src[i]), free(src16[i]);
    free(imp4k);
    free(imp14k);
    return 0;
}

#else
int main(void) {
    fprintf(stderr, "CUDA backend not built\n");
    return 77;
}
#endif
