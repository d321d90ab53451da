/*
 * cb_i8_avx512.c — opt-in 2-bit decode GEMV with int8 activations on
 * AVX-512 VNNI: bit-serial (as in T-MAC), with the tables folded into
 * vpdpbusd. Compiled with the AVX-512 + VNNI flags (CMake, by file name);
 * used only when opc_cb_impl_available(OPC_CB_IMPL_AVX512_I8) and asked for
 * (opc_cpu_set_int8_activations, OPC_CB_KERNEL=avx512-i8): it approximates
 * the reference, the fp32 kernels match it within rounding.
 *
 * Why: the fp32 kernels spend 2-3 shuffle-class operations per 16 weights
 * on turning indices into floats (vpmovzxbd, vpsrld, vpermps). On the
 * Intel Xeon we measured they are compute-bound at ~7.5 GB/s of 2-bit
 * weights per core (vpermps and vpmovzxbd share one port there; ~16 GB/s on
 * the AMD dev VM); here no index is ever turned into a weight. With
 * idx = b0 + 2 b1 (k <= 4),
 *     cb[idx] = c0 + b0 (c1 - c0) + b1 (c2 - c0) + b0 b1 (c3 - c2 - c1 + c0)
 * so  y = c0 sum(x) + d1 P0 + d2 P1 + d3 P01,  P* = sums of x over the
 * columns whose bit-plane is set. The planes come straight from the packed
 * bytes: broadcast the 16-byte group to the four 128-bit lanes; lane j needs
 * bit pair j, so AND with a per-lane constant (1 << 2j) gives bytes 4^j * b0
 * in column order (no shift), and vpdpbusd multiplies them with int8
 * activations, summing 4 at a time into int32. The 4^j lane factors and the
 * activation scale are undone in fp32 once per 256-column block.
 * Per 64 weights and row: 1 broadcast load, 2 AND, 1 shift, 1 ternary logic,
 * 3 vpdpbusd.
 *
 * Accuracy: activations are quantized per 256-column block to int8 with
 * scale s = max|x| / 127, round to nearest: |x - s q| <= s / 2. Only the
 * plane terms see the quantized x (sum(x) is exact), so
 *     |y - y_ref| <= sum_c |w_c - c0| s(c) / 2  (+ fp32 rounding),
 * the bound tests/test_cpu_kernels.c checks.
 */
/* VNNI comes from CMake (files named *_i8_avx512.c get -mavx512vnni). */
#include "cpu.h"

#include "../core/half.h"

#include <immintrin.h>
#include <string.h>

#define I8_BLOCK_GROUPS 4 /* 256 columns per activation scale */
#define I8_MAX_COLS 32768 /* stack workspace bound; wider matrices use fp32 */

/* Quantize one token: q (ngroups*64 int8, zero padded), lane scales per
 * block (16 floats: block scale * 4^-j for 128-bit lane j), returns sum x. */
static float quantize_x(const float *x, int64_t cols, int8_t *q, float *lscale) {
    int64_t ngroups = (cols + 63) / 64;
    int64_t nblk = (ngroups + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
    __m512 sum = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblk; b++) {
        int64_t c0 = b * I8_BLOCK_GROUPS * 64;
        int64_t c1 = c0 + I8_BLOCK_GROUPS * 64 < cols ? c0 + I8_BLOCK_GROUPS * 64 : cols;
        __m512 amax = _mm512_setzero_ps();
        for (int64_t c = c0; c < c1; c += 16) {
            __mmask16 mk = c1 - c >= 16 ? 0xffff : (__mmask16)((1u << (c1 - c)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(mk, x + c);
            sum = _mm512_add_ps(sum, v);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        }
        float m = _mm512_reduce_max_ps(amax);
        float s = m / 127.0f, inv = m > 0 ? 127.0f / m : 0.0f;
        __m512 vinv = _mm512_set1_ps(inv);
        int64_t cend = c0 + I8_BLOCK_GROUPS * 64 < ngroups * 64 ? c0 + I8_BLOCK_GROUPS * 64
                                                                 : ngroups * 64;
        for (int64_t c = c0; c < cend; c += 16) {
            __mmask16 mk = c >= cols                ? 0
                           : cols - c >= 16         ? 0xffff
                                                    : (__mmask16)((1u << (cols - c)) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(mk, x + c);
            __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)); /* nearest-even */
            _mm_storeu_si128((__m128i *)(q + c), _mm512_cvtsepi32_epi8(iv));
        }
        __m512 lf = _mm512_set_ps(1.f / 64, 1.f / 64, 1.f / 64, 1.f / 64, 1.f / 16, 1.f / 16,
                                  1.f / 16, 1.f / 16, 1.f / 4, 1.f / 4, 1.f / 4, 1.f / 4, 1.f, 1.f,
                                  1.f, 1.f);
        _mm512_storeu_ps(lscale + b * 16, _mm512_mul_ps(lf, _mm512_set1_ps(s)));
    }
    return _mm512_reduce_add_ps(sum);
}

/* Plane sums for NR rows over all groups: P[r][0..3) = (P0, 2 P1, P01). */
static inline __attribute__((always_inline)) void planes(int NR, const opc_cb_matrix *m,
                                                         int64_t r, const int8_t *q,
                                                         const float *lscale, float P[2][3]) {
    const int64_t ngroups = (m->cols + 63) / 64;
    const uint8_t *p0 = m->idx + (uint64_t)r * m->row_bytes;
    const uint8_t *p1 = p0 + m->row_bytes;
    /* lane j of the broadcast group keeps bit 2j (b0) / bit 2j+1 (b1) */
    const __m512i m0 = _mm512_set_epi32(0x40404040, 0x40404040, 0x40404040, 0x40404040,
                                        0x10101010, 0x10101010, 0x10101010, 0x10101010,
                                        0x04040404, 0x04040404, 0x04040404, 0x04040404,
                                        0x01010101, 0x01010101, 0x01010101, 0x01010101);
    const __m512i m1 = _mm512_add_epi8(m0, m0);
    __m512 f00 = _mm512_setzero_ps(), f01 = f00, f02 = f00, f10 = f00, f11 = f00, f12 = f00;
    for (int64_t g0 = 0; g0 < ngroups; g0 += I8_BLOCK_GROUPS) {
        int64_t g1 = g0 + I8_BLOCK_GROUPS < ngroups ? g0 + I8_BLOCK_GROUPS : ngroups;
        __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a10 = a00, a11 = a00,
                a12 = a00;
        for (int64_t g = g0; g < g1; g++) {
            _mm_prefetch((const char *)(p0 + g * 16 + 8 * m->row_bytes), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(p1 + g * 16 + 8 * m->row_bytes), _MM_HINT_T0);
            __m512i xq = _mm512_loadu_si512((const void *)(q + g * 64));
            __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p0 + g * 16)));
            /* (v >> 1) & v & m0: b0 AND b1 at bit 2j (the 16-bit shift only
             * leaks a neighbour's bit into bit 7, which m0 never keeps) */
            a00 = _mm512_dpbusd_epi32(a00, _mm512_and_si512(v, m0), xq);
            a01 = _mm512_dpbusd_epi32(a01, _mm512_and_si512(v, m1), xq);
            a02 = _mm512_dpbusd_epi32(
                a02, _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 1), v, m0, 0x80), xq);
            if (NR == 2) {
                __m512i u = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p1 + g * 16)));
                a10 = _mm512_dpbusd_epi32(a10, _mm512_and_si512(u, m0), xq);
                a11 = _mm512_dpbusd_epi32(a11, _mm512_and_si512(u, m1), xq);
                a12 = _mm512_dpbusd_epi32(
                    a12, _mm512_ternarylogic_epi32(_mm512_srli_epi16(u, 1), u, m0, 0x80), xq);
            }
        }
        __m512 ls = _mm512_loadu_ps(lscale + (g0 / I8_BLOCK_GROUPS) * 16);
        f00 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a00), ls, f00);
        f01 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a01), ls, f01);
        f02 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a02), ls, f02);
        if (NR == 2) {
            f10 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a10), ls, f10);
            f11 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a11), ls, f11);
            f12 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a12), ls, f12);
        }
    }
    P[0][0] = _mm512_reduce_add_ps(f00);
    P[0][1] = _mm512_reduce_add_ps(f01);
    P[0][2] = _mm512_reduce_add_ps(f02);
    if (NR == 2) {
        P[1][0] = _mm512_reduce_add_ps(f10);
        P[1][1] = _mm512_reduce_add_ps(f11);
        P[1][2] = _mm512_reduce_add_ps(f12);
    }
}

static inline float combine(const opc_cb_matrix *m, int64_t r, float sx, const float P[3]) {
    const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
    float c[4] = {0, 0, 0, 0};
    for (int i = 0; i < m->k; i++) c[i] = opc_fp16_to_fp32(cb[i]);
    return c[0] * sx + (c[1] - c[0]) * P[0] + (c[2] - c[0]) * 0.5f * P[1] +
           (c[3] - c[2] - c[1] + c[0]) * P[2];
}

void opc_cb_rows_avx512_i8(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                           int64_t r0, int64_t r1) {
    if (m->bits != 2 || m->cols > I8_MAX_COLS || T != 1) {
        opc_cb_rows_avx512(m, X, T, Y, r0, r1); /* exact fp32 path */
        return;
    }
    _Alignas(64) int8_t q[I8_MAX_COLS];
    _Alignas(64) float lscale[I8_MAX_COLS / 256 * 16];
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * m->cols;
        float *y = Y + t * m->rows;
        float sx = quantize_x(x, m->cols, q, lscale);
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) {
            float P[2][3];
            planes(2, m, r, q, lscale, P);
            y[r] = combine(m, r, sx, P[0]);
            y[r + 1] = combine(m, r + 1, sx, P[1]);
        }
        if (r < r1) {
            float P[2][3];
            planes(1, m, r, q, lscale, P);
            y[r] = combine(m, r, sx, P[0]);
        }
    }
    if (m->n_outliers) opc_cb_outliers_avx512(m, X, T, Y, r0, r1);
}
