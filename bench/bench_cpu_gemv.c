/*
 * bench_cpu_gemv.c — the CPU codebook-kernel lab (in the style of llm.c's
 * dev/cuda programs): the scalar reference, every kernel version, validation
 * against the reference, and one timing table, on Llama-3-8B-sized matrices.
 *
 *   bench_cpu_gemv [--quick] [--threads N] [--bits B] [--T n,n,...] [--variants] [--mem MiB]
 *
 * Versions timed
 *   scalar / avx2 / avx512   the product kernels (src/cpu), forced by name
 *   avx512-i8                the opt-in int8-activation decode kernel (src/cpu/
 *                            cb_i8_avx512.c): approximate, see its err column
 *   <impl>+gs                the same matrices with random per-group scale bytes
 *                            (cb.h gscale): the cost of group scales, same run
 *   f32 / f16                a plain dense GEMV/GEMM of the same shape (AVX-512
 *                            or AVX2 FMA), the baseline a 2-bit format must beat
 *   --variants: alternatives kept here to document why they lost (2-bit only):
 *   v-mask                   "bit-plane" AVX-512: w = c0 + b0 d1 + b1 d2 + b0 b1 d3,
 *                            so y = c0 sum x + d1 sum_{b0} x + ...: masked adds
 *                            (vptestmb masks straight from the packed bytes)
 *   v-lut                    T-MAC-style tables: per 4 columns (one packed byte)
 *                            a 16-entry table of subset sums of x per bit-plane,
 *                            looked up with vgatherdps
 *
 * Memory: every weight matrix is replicated so that one sweep touches more
 * than --mem MiB (default 128: 4x the 32 MiB L3 of the dev machine; use more
 * where the last-level cache is larger) and the timed loop rotates through
 * the copies: each call reads its weights from DRAM, as in a real decode
 * step. The probe reads a buffer of twice that (at least 256 MiB). GB/s counts the packed bytes the kernel must read
 * (indices + codebooks [+ outliers]); "%bw" compares with opc_mem_read_bw
 * measured in the same run with the same thread count.
 */
#include "core/core.h"
#include "core/cpu_features.h"
#include "core/half.h"
#include "cpu/cpu.h"
#include "quant/cb.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ data ----- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}
static float rndf(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

/* ncopy independent copies of one random (rows, cols) codebook matrix. */
typedef struct bmat {
    opc_cb_matrix m[64];
    int ncopy;
    uint8_t *idx;
    uint16_t *cb;
    uint8_t *gs;    /* (ncopy, rows, groups) scale bytes, or NULL */
    uint64_t bytes; /* bytes one GEMV reads: indices + codebooks */
} bmat;

/* Give every copy random group scale bytes (0..47: factors 1 .. 2^-2.9,
 * the range a quantizer produces) and count them in bytes; on = 0 detaches
 * them again (the arrays stay for bmat_free). */
static int bmat_set_gscale(bmat *b, int on) {
    int64_t n = b->m[0].rows * opc_cb_groups(b->m[0].cols);
    if (on && !b->gs) {
        b->gs = opc_aligned_alloc((uint64_t)n * (uint64_t)b->ncopy);
        if (!b->gs) return -1;
        for (int64_t i = 0; i < n * b->ncopy; i++) b->gs[i] = (uint8_t)(rnd() % 48);
    }
    for (int i = 0; i < b->ncopy; i++) b->m[i].gscale = on ? b->gs + (uint64_t)n * (uint64_t)i : NULL;
    if (on) b->bytes += (uint64_t)n;
    else b->bytes -= (uint64_t)n;
    return 0;
}

static int bmat_make(bmat *b, int64_t rows, int64_t cols, int bits, int ncopy) {
    memset(b, 0, sizeof *b);
    int k = 1 << bits;
    uint64_t rb = opc_cb_row_bytes(bits, cols);
    uint64_t isz = (uint64_t)rows * rb, csz = (uint64_t)rows * (uint64_t)k;
    b->idx = opc_aligned_alloc(isz * (uint64_t)ncopy);
    b->cb = opc_aligned_alloc(csz * 2 * (uint64_t)ncopy);
    if (!b->idx || !b->cb) return -1;
    for (uint64_t i = 0; i < isz * (uint64_t)ncopy; i += 8) {
        uint64_t v = rnd();
        memcpy(b->idx + i, &v, 8);
    }
    for (uint64_t i = 0; i < csz * (uint64_t)ncopy; i++) b->cb[i] = opc_fp32_to_fp16(rndf() * 0.05f);
    /* padding columns must hold index 0 (cb.h) */
    if (cols % OPC_CB_GROUP)
        for (int64_t r = 0; r < rows * ncopy; r++) {
            uint8_t *row = b->idx + (uint64_t)r * rb;
            for (int64_t c = cols; c < (int64_t)(rb / (bits == 2 ? 16 : 32)) * 64; c++) {
                uint8_t *g = row + (uint64_t)(c / 64) * (bits == 2 ? 16u : 32u);
                int64_t j = c % 64;
                if (bits == 2) g[j % 16] &= (uint8_t) ~(3u << (2 * (j / 16)));
                else g[j % 32] &= (uint8_t) ~(15u << (4 * (j / 32)));
            }
        }
    b->ncopy = ncopy;
    for (int i = 0; i < ncopy; i++) {
        opc_cb_matrix *m = &b->m[i];
        m->rows = rows;
        m->cols = cols;
        m->bits = bits;
        m->k = k;
        m->row_bytes = rb;
        m->idx = b->idx + isz * (uint64_t)i;
        m->codebook = b->cb + csz * (uint64_t)i;
    }
    b->bytes = isz + csz * 2;
    return 0;
}

/* Give every copy its own CSR outliers: each row gets frac * cols entries at
 * evenly spread columns with a random start (sorted, distinct). */
static uint32_t *g_ol_rowptr;
static uint16_t *g_ol_col, *g_ol_val;
static int bmat_add_outliers(bmat *b, double frac) {
    int64_t rows = b->m[0].rows, cols = b->m[0].cols;
    int64_t per = (int64_t)(frac * (double)cols + 0.5);
    if (per < 1) per = 1;
    uint64_t n = (uint64_t)(rows * per);
    g_ol_rowptr = opc_aligned_alloc(sizeof(uint32_t) * (size_t)(rows + 1) * (size_t)b->ncopy);
    g_ol_col = opc_aligned_alloc(sizeof(uint16_t) * n * (size_t)b->ncopy);
    g_ol_val = opc_aligned_alloc(sizeof(uint16_t) * n * (size_t)b->ncopy);
    if (!g_ol_rowptr || !g_ol_col || !g_ol_val) return -1;
    int64_t step = cols / per;
    for (int i = 0; i < b->ncopy; i++) {
        uint32_t *rp = g_ol_rowptr + (size_t)(rows + 1) * (size_t)i;
        uint16_t *oc = g_ol_col + n * (size_t)i, *ov = g_ol_val + n * (size_t)i;
        for (int64_t r = 0; r <= rows; r++) rp[r] = (uint32_t)(r * per);
        for (int64_t r = 0; r < rows; r++) {
            int64_t start = (int64_t)(rnd() % (uint64_t)step);
            for (int64_t j = 0; j < per; j++) {
                oc[r * per + j] = (uint16_t)(start + j * step);
                ov[r * per + j] = opc_fp32_to_fp16(rndf() * 0.1f);
            }
        }
        b->m[i].n_outliers = n;
        b->m[i].ol_rowptr = rp;
        b->m[i].ol_col = oc;
        b->m[i].ol_val = ov;
    }
    b->bytes += n * 4 + (uint64_t)(rows + 1) * 4;
    return 0;
}

static void bmat_free(bmat *b) {
    opc_aligned_free(g_ol_rowptr);
    opc_aligned_free(g_ol_col);
    opc_aligned_free(g_ol_val);
    g_ol_rowptr = NULL;
    g_ol_col = g_ol_val = NULL;
    opc_aligned_free(b->idx);
    opc_aligned_free(b->cb);
    opc_aligned_free(b->gs);
    memset(b, 0, sizeof *b);
}

/* -------------------------------------------------- dense baselines ---- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define T256 __attribute__((target("avx2,fma,f16c")))

/* Y (T, rows) = X (T, cols) W^T, W fp32 (rows, cols), cols % 16 == 0. Rows
 * split across threads; up to 4 tokens share each weight load. */
T512 static void dense_f32(const float *W, int64_t rows, int64_t cols, const float *X, int64_t T,
                           float *Y, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        for (int64_t t0 = 0; t0 < T; t0 += 4) {
            int64_t n = T - t0 < 4 ? T - t0 : 4;
            __m512 a[4][2] = {{_mm512_setzero_ps()}};
            for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
            for (int64_t c = 0; c < cols; c += 32) {
                __m512 w0 = _mm512_loadu_ps(w + c), w1 = _mm512_loadu_ps(w + c + 16);
                for (int64_t t = 0; t < n; t++) {
                    const float *x = X + (t0 + t) * cols + c;
                    a[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), a[t][0]);
                    a[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), a[t][1]);
                }
            }
            for (int64_t t = 0; t < n; t++)
                Y[(t0 + t) * rows + r] = _mm512_reduce_add_ps(_mm512_add_ps(a[t][0], a[t][1]));
        }
    }
}

T512 static void dense_f16(const uint16_t *W, int64_t rows, int64_t cols, const float *X,
                           int64_t T, float *Y, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *w = W + r * cols;
        for (int64_t t0 = 0; t0 < T; t0 += 4) {
            int64_t n = T - t0 < 4 ? T - t0 : 4;
            __m512 a[4][2];
            for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
            for (int64_t c = 0; c < cols; c += 32) {
                __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c)));
                __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + c + 16)));
                for (int64_t t = 0; t < n; t++) {
                    const float *x = X + (t0 + t) * cols + c;
                    a[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), a[t][0]);
                    a[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), a[t][1]);
                }
            }
            for (int64_t t = 0; t < n; t++)
                Y[(t0 + t) * rows + r] = _mm512_reduce_add_ps(_mm512_add_ps(a[t][0], a[t][1]));
        }
    }
}

/* ----------------------------------------------- losing variants ------- */

/* v-mask: 2-bit, k = 4, 1 token. With idx = b0 + 2 b1,
 *   cb[idx] = c0 + b0 (c1 - c0) + b1 (c2 - c0) + b0 b1 (c3 - c2 - c1 + c0),
 * so y = c0 S + d1 P0 + d2 P1 + d3 P01 with S = sum x (shared by all rows)
 * and P = sums of x over the columns whose bit(s) are set: three masked
 * adds per 16 columns, masks from vptestmb on the packed bytes. */
T512 static void vmask_rows(const opc_cb_matrix *m, const float *x, float S, float *y, int64_t r0,
                            int64_t r1) {
    int64_t ng = m->cols / 64;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = m->idx + (uint64_t)r * m->row_bytes;
        const uint16_t *cb = m->codebook + r * 4;
        __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps(), p01 = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            _mm_prefetch((const char *)(p + g * 16 + 8 * m->row_bytes), _MM_HINT_T0);
            __m128i v = _mm_loadu_si128((const __m128i *)(p + g * 16));
            const float *xg = x + g * 64;
            for (int j = 0; j < 4; j++) {
                __mmask16 m0 = _mm_test_epi8_mask(v, _mm_set1_epi8((char)(1 << (2 * j))));
                __mmask16 m1 = _mm_test_epi8_mask(v, _mm_set1_epi8((char)(2 << (2 * j))));
                __m512 xv = _mm512_loadu_ps(xg + 16 * j);
                p0 = _mm512_mask_add_ps(p0, m0, p0, xv);
                p1 = _mm512_mask_add_ps(p1, m1, p1, xv);
                p01 = _mm512_mask_add_ps(p01, m0 & m1, p01, xv);
            }
        }
        float c0 = opc_fp16_to_fp32(cb[0]), c1 = opc_fp16_to_fp32(cb[1]);
        float c2 = opc_fp16_to_fp32(cb[2]), c3 = opc_fp16_to_fp32(cb[3]);
        y[r] = c0 * S + (c1 - c0) * _mm512_reduce_add_ps(p0) + (c2 - c0) * _mm512_reduce_add_ps(p1) +
               (c3 - c2 - c1 + c0) * _mm512_reduce_add_ps(p01);
    }
}

/* v-lut: per packed byte position (4 columns i, 16+i, 32+i, 48+i of a group)
 * a 16-entry table of subset sums of those 4 activations; a bit-plane's 4
 * bits of that byte index it. Tables: (cols / 4, 16) floats, built once per
 * token and shared by all rows. */
static void vlut_build(const float *x, int64_t cols, float *tab) {
    for (int64_t g = 0; g < cols / 64; g++)
        for (int i = 0; i < 16; i++) {
            const float *xg = x + g * 64;
            float a = xg[i], b = xg[16 + i], c = xg[32 + i], d = xg[48 + i];
            float *t = tab + (g * 16 + i) * 16;
            for (int s = 0; s < 16; s++)
                t[s] = ((s & 1) ? a : 0) + ((s & 2) ? b : 0) + ((s & 4) ? c : 0) + ((s & 8) ? d : 0);
        }
}

/* bits 0,2,4,6 of each byte -> a nibble */
T512 static inline __m512i compress_even(__m512i v) {
    v = _mm512_and_si512(v, _mm512_set1_epi32(0x55));
    v = _mm512_and_si512(_mm512_or_si512(v, _mm512_srli_epi32(v, 1)), _mm512_set1_epi32(0x33));
    return _mm512_and_si512(_mm512_or_si512(v, _mm512_srli_epi32(v, 2)), _mm512_set1_epi32(0x0f));
}

T512 static void vlut_rows(const opc_cb_matrix *m, const float *tab, float S, float *y, int64_t r0,
                           int64_t r1) {
    int64_t ng = m->cols / 64;
    const __m512i lane16 = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(16));
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = m->idx + (uint64_t)r * m->row_bytes;
        const uint16_t *cb = m->codebook + r * 4;
        __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps(), p01 = _mm512_setzero_ps();
        for (int64_t g = 0; g < ng; g++) {
            _mm_prefetch((const char *)(p + g * 16 + 8 * m->row_bytes), _MM_HINT_T0);
            __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + g * 16)));
            const float *tg = tab + g * 256;
            __m512i n0 = _mm512_add_epi32(lane16, compress_even(v));
            __m512i n1 = _mm512_add_epi32(lane16, compress_even(_mm512_srli_epi32(v, 1)));
            __m512i n01 = _mm512_add_epi32(lane16,
                                           compress_even(_mm512_and_si512(v, _mm512_srli_epi32(v, 1))));
            p0 = _mm512_add_ps(p0, _mm512_i32gather_ps(n0, tg, 4));
            p1 = _mm512_add_ps(p1, _mm512_i32gather_ps(n1, tg, 4));
            p01 = _mm512_add_ps(p01, _mm512_i32gather_ps(n01, tg, 4));
        }
        float c0 = opc_fp16_to_fp32(cb[0]), c1 = opc_fp16_to_fp32(cb[1]);
        float c2 = opc_fp16_to_fp32(cb[2]), c3 = opc_fp16_to_fp32(cb[3]);
        y[r] = c0 * S + (c1 - c0) * _mm512_reduce_add_ps(p0) + (c2 - c0) * _mm512_reduce_add_ps(p1) +
               (c3 - c2 - c1 + c0) * _mm512_reduce_add_ps(p01);
    }
}

typedef enum { V_MASK, V_LUT } variant;

static void run_variant(variant v, const opc_cb_matrix *m, const float *x, float *y, float *tab,
                        int nt) {
    float S = 0;
    for (int64_t c = 0; c < m->cols; c++) S += x[c];
    if (v == V_LUT) vlut_build(x, m->cols, tab); /* timed: it is per-token work */
#pragma omp parallel num_threads(nt)
    {
        int64_t n = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t per = (m->rows + n - 1) / n, r0 = tid * per;
        int64_t r1 = r0 + per < m->rows ? r0 + per : m->rows;
        if (r0 < r1) {
            if (v == V_MASK) vmask_rows(m, x, S, y, r0, r1);
            else vlut_rows(m, tab, S, y, r0, r1);
        }
    }
}

/* ------------------------------------------------------- timing -------- */

/* out = best seconds per call of `call` over enough calls to take ~min_s. */
#define TIME_BEST(out, min_s, max_calls, call)                                           \
    do {                                                                                 \
        double best_ = 1e30, start_ = opc_time_s();                                      \
        int calls_ = 0;                                                                  \
        do {                                                                             \
            double t0_ = opc_time_s();                                                   \
            call;                                                                        \
            double dt_ = opc_time_s() - t0_;                                             \
            if (dt_ < best_) best_ = dt_;                                                \
            calls_++;                                                                    \
        } while ((opc_time_s() - start_ < (min_s) || calls_ < 3) && calls_ < (max_calls)); \
        (out) = best_;                                                                   \
    } while (0)

static double max_rel_err(const float *y, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)y[i] - ref[i]);
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

static void row(const char *shape, int bits, int64_t T, int nt, const char *ver, double sec,
                double bytes, double flops, double bw, double err) {
    double gbs = bytes / sec / 1e9;
    printf("| %-11s | %4d | %3lld | %2d | %-12s | %9.3f | %7.1f | %5.0f%% | %7.1f | %8.1e |\n", shape,
           bits, (long long)T, nt, ver, sec * 1e3, gbs, 100.0 * bytes / sec / bw, flops / sec / 1e9,
           err);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int quick = 0, only_threads = 0, only_bits = 0, variants = 0;
    uint64_t rot = 128ull << 20;
    int64_t Ts[8] = {1, 8, 64};
    int nT = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--variants")) variants = 1;
        else if (!strcmp(argv[i], "--mem") && i + 1 < argc) rot = strtoull(argv[++i], NULL, 10) << 20;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) only_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc) only_bits = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--T") && i + 1 < argc) {
            nT = 0;
            for (char *s = argv[++i]; *s && nT < 8;) {
                Ts[nT++] = strtoll(s, &s, 10);
                if (*s == ',') s++;
                else break;
            }
        } else {
            fprintf(stderr, "usage: %s [--quick] [--variants] [--threads N] [--bits 2|4] [--T 1,8,64] [--mem MiB]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!opc_cpu_has_avx512()) {
        fprintf(stderr, "bench_cpu_gemv: the dense baselines and variants need AVX-512\n");
        return 1;
    }
    const opc_cpu_features *f = opc_cpu_get_features();
    printf("cpu: %s [%s], %d OpenMP threads available\n", f->brand, opc_cpu_features_str(),
           omp_get_max_threads());

    int threads[2] = {1, 2}, nthr = 2;
    if (only_threads) {
        threads[0] = only_threads;
        nthr = 1;
    }
    double bw[2];
    for (int i = 0; i < nthr; i++) {
        bw[i] = opc_mem_read_bw(2 * rot > (256ull << 20) ? 2 * rot : (256ull << 20), threads[i],
                                quick ? 2 : 4);
        printf("memory read bandwidth probe, %d thread(s), best 8 MiB segment: %.2f GB/s\n", threads[i],
               bw[i] / 1e9);
    }
    printf("\ntimes: best of repeated calls, weights rotating through >= %llu MiB of copies\n",
           (unsigned long long)(rot >> 20));
    printf("err: max |y - y_ref| / max |y_ref| against opc_cb_gemv_ref (first 256 rows)\n");
    printf("GB/s wt: packed bytes read per call / time (indices + codebooks [+ outliers])\n\n");
    printf("| shape       | bits |   T | th | version      |   ms/call | GB/s wt |  %%bw   | GFLOP/s |      err |\n");
    printf("|-------------|------|-----|----|--------------|-----------|---------|--------|---------|----------|\n");

    static const int64_t shapes[3][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
    const double min_s = quick ? 0.1 : 0.4;
    for (int s = 0; s < 3; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)cols);
        int64_t Tmax = 1;
        for (int i = 0; i < nT; i++) Tmax = Ts[i] > Tmax ? Ts[i] : Tmax;
        float *X = opc_aligned_alloc(sizeof(float) * (size_t)(Tmax * cols));
        float *Y = opc_aligned_alloc(sizeof(float) * (size_t)(Tmax * rows));
        float *Yref = opc_aligned_alloc(sizeof(float) * (size_t)(Tmax * 256));
        float *tab = opc_aligned_alloc(sizeof(float) * (size_t)(cols * 4));
        if (!X || !Y || !Yref || !tab) return 1;
        for (int64_t i = 0; i < Tmax * cols; i++) X[i] = rndf();

        for (int bits = 2; bits <= 4; bits += 2) {
            if (only_bits && bits != only_bits) continue;
            bmat b;
            uint64_t one = opc_cb_row_bytes(bits, cols) * (uint64_t)rows;
            int ncopy = (int)(rot / one) + 1;
            if (ncopy > 64) ncopy = 64;
            if (bmat_make(&b, rows, cols, bits, ncopy) != 0) return 1;
            opc_cb_matrix sub = b.m[0];
            sub.rows = 256;
            for (int i = 0; i < nT; i++) {
                int64_t T = Ts[i];
                for (int64_t t = 0; t < T; t++) opc_cb_gemv_ref(&sub, X + t * cols, Yref + t * 256);
                for (int ti = 0; ti < nthr; ti++) {
                    int nt = threads[ti];
                    for (int impl = OPC_CB_IMPL_SCALAR; impl < OPC_CB_IMPL_COUNT; impl++) {
                        if (!opc_cb_impl_available((opc_cb_impl)impl)) continue;
                        if (impl == OPC_CB_IMPL_SCALAR && (T > 8 || quick)) continue; /* minutes */
                        int cur = 0;
                        double sec;
                        TIME_BEST(sec, min_s, 2000, {
                            opc_cb_matmul_impl((opc_cb_impl)impl, &b.m[cur], X, T, Y, nt);
                            cur = (cur + 1) % b.ncopy;
                        });
                        /* validate the output of the last copy's first 256 rows
                         * against the reference on copy 0's data */
                        opc_cb_matmul_impl((opc_cb_impl)impl, &sub, X, T, Y, nt);
                        double err = max_rel_err(Y, Yref, T * 256);
                        row(shape, bits, T, nt, opc_cb_impl_name((opc_cb_impl)impl), sec,
                            (double)b.bytes, 2.0 * (double)rows * (double)cols * (double)T,
                            bw[ti], err);
                    }
                    /* group scales: the default kernel, and the int8 one for decode */
                    if (bmat_set_gscale(&b, 1) != 0) return 1;
                    for (int impl = OPC_CB_IMPL_AVX512; impl < OPC_CB_IMPL_COUNT; impl++) {
                        if (!opc_cb_impl_available((opc_cb_impl)impl)) continue;
                        if (impl == OPC_CB_IMPL_AVX512_I8 && (bits != 2 || T != 1)) continue;
                        opc_cb_matrix sg = b.m[0];
                        sg.rows = 256;
                        float *Yg = opc_aligned_alloc(sizeof(float) * (size_t)(T * 256));
                        if (!Yg) return 1;
                        for (int64_t t = 0; t < T; t++) opc_cb_gemv_ref(&sg, X + t * cols, Yg + t * 256);
                        int cur = 0;
                        double sec;
                        TIME_BEST(sec, min_s, 2000, {
                            opc_cb_matmul_impl((opc_cb_impl)impl, &b.m[cur], X, T, Y, nt);
                            cur = (cur + 1) % b.ncopy;
                        });
                        opc_cb_matmul_impl((opc_cb_impl)impl, &sg, X, T, Y, nt);
                        char ver[32];
                        snprintf(ver, sizeof ver, "%s+gs", opc_cb_impl_name((opc_cb_impl)impl));
                        row(shape, bits, T, nt, ver, sec, (double)b.bytes,
                            2.0 * (double)rows * (double)cols * (double)T, bw[ti],
                            max_rel_err(Y, Yg, T * 256));
                        opc_aligned_free(Yg);
                    }
                    if (bmat_set_gscale(&b, 0) != 0) return 1;
                    if (variants && bits == 2 && T == 1) {
                        for (int v = V_MASK; v <= V_LUT; v++) {
                            int cur = 0;
                            double sec;
                        TIME_BEST(sec, min_s, 2000, {
                                run_variant((variant)v, &b.m[cur], X, Y, tab, nt);
                                cur = (cur + 1) % b.ncopy;
                            });
                            run_variant((variant)v, &sub, X, Y, tab, nt);
                            row(shape, bits, T, nt, v == V_MASK ? "v-mask" : "v-lut", sec,
                                (double)b.bytes, 2.0 * (double)rows * (double)cols, bw[ti],
                                max_rel_err(Y, Yref, 256));
                        }
                    }
                }
            }
            /* the same matrices with 1% sparse fp16 outliers (what `quantize`
             * stores by default), decode only, best kernel */
            if (bmat_add_outliers(&b, 0.01) != 0) return 1;
            sub = b.m[0];
            sub.rows = 256;
            sub.n_outliers = sub.ol_rowptr[256];
            opc_cb_gemv_ref(&sub, X, Yref);
            for (int ti = 0; ti < nthr; ti++) {
                int nt = threads[ti], cur = 0;
                opc_cb_impl impl = opc_cb_impl_best();
                double sec;
                TIME_BEST(sec, min_s, 2000, {
                    opc_cb_matmul_impl(impl, &b.m[cur], X, 1, Y, nt);
                    cur = (cur + 1) % b.ncopy;
                });
                opc_cb_matmul_impl(impl, &sub, X, 1, Y, nt);
                char ver[32];
                snprintf(ver, sizeof ver, "%s+1%%ol", opc_cb_impl_name(impl));
                row(shape, bits, 1, nt, ver, sec, (double)b.bytes, 2.0 * (double)rows * (double)cols,
                    bw[ti], max_rel_err(Y, Yref, 256));
            }
            bmat_free(&b);
        }

        /* dense baselines: fp32 and fp16 weights of the same shape */
        if (!only_bits || only_bits == 16 || only_bits == 32) {
            for (int prec = 16; prec <= 32; prec += 16) {
                uint64_t one = (uint64_t)rows * (uint64_t)cols * (uint64_t)(prec / 8);
                int ncopy = (int)(rot / one) + 1;
                void *W = opc_aligned_alloc(one * (uint64_t)ncopy);
                if (!W) return 1;
                if (prec == 32)
                    for (uint64_t i = 0; i < one / 4 * (uint64_t)ncopy; i++) ((float *)W)[i] = rndf();
                else
                    for (uint64_t i = 0; i < one / 2 * (uint64_t)ncopy; i++)
                        ((uint16_t *)W)[i] = opc_fp32_to_fp16(rndf());
                for (int i = 0; i < nT; i++) {
                    int64_t T = Ts[i];
                    for (int ti = 0; ti < nthr; ti++) {
                        int nt = threads[ti], cur = 0;
                        double sec;
                        TIME_BEST(sec, min_s, 2000, {
                            if (prec == 32)
                                dense_f32((const float *)W + (uint64_t)cur * (one / 4), rows, cols, X,
                                          T, Y, nt);
                            else
                                dense_f16((const uint16_t *)W + (uint64_t)cur * (one / 2), rows,
                                          cols, X, T, Y, nt);
                            cur = (cur + 1) % ncopy;
                        });
                        row(shape, prec, T, nt, prec == 32 ? "f32" : "f16", sec, (double)one,
                            2.0 * (double)rows * (double)cols * (double)T, bw[ti], 0.0);
                    }
                }
                opc_aligned_free(W);
            }
        }
        opc_aligned_free(X);
        opc_aligned_free(Y);
        opc_aligned_free(Yref);
        opc_aligned_free(tab);
    }
    return 0;
}
