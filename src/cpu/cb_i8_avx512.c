/*
 * cb_i8_avx512.c — opt-in codebook matmuls on int8 activations and int8
 * weights with AVX-512 VNNI, decode (T = 1) and prefill (T > 1), 2- and
 * 4-bit, group scales and outliers included. Compiled with the AVX-512 +
 * VNNI flags (CMake, by file name); used only when
 * opc_cb_impl_available(OPC_CB_IMPL_AVX512_I8) and asked for
 * (opc_cpu_set_int8_activations, OPC_CB_KERNEL=avx512-i8): it approximates
 * the reference, the fp32 kernels match it within rounding.
 *
 * Why: the fp32 kernels spend 2-3 shuffle-class operations per 16 weights on
 * turning indices into floats (vpmovzxbd, vpsrld, vpermps) and one FMA per
 * 16 weights and token: decode is bound by that unpacking (~2.3-3.3 cycles
 * per 64 weights here), prefill by the FMA peak (~2.1-2.6). Here a group of
 * 64 indices becomes 64 int8 weights with four instructions and every token
 * then costs one vpdpbusd (64 multiply-adds, 4x an fp32 FMA):
 *   - row r's codebook is quantized to int8, tq_i = round(c_i / a_r),
 *     a_r = max|c_i| / 127, stored +128 as the unsigned operand of vpdpbusd;
 *     the +128 is undone by subtracting 128 sum(x) (per token, all rows);
 *   - the packed group is broadcast so that after one per-lane shift and a
 *     mask byte j of the register is the index of column j (2-bit: the 16
 *     bytes to the four 128-bit lanes, lane l shifted by 2l; 4-bit: the 32
 *     bytes to both halves, the upper half shifted by 4): no activation
 *     shuffle, and one vpshufb of the row's table gives the 64 weights;
 *   - activations are quantized per token and 256-column block to int8
 *     (scale e_b = max|x| / 127, round to nearest); the int32 sums are
 *     converted and scaled once per block.
 * Group scales: prefill rescales and re-rounds the table per group,
 * round(s_g c_i / a_r), shared by the tile's tokens (5 instructions per
 * group and row); decode instead converts each group's int32 sum and
 * multiplies it by s_g e_b (3 per group and row, and no re-rounding).
 * An earlier bit-serial decode (y = c0 sum x + plane sums, T-MAC style,
 * 3 vpdpbusd per group, exact weights) was 35-50% slower on the dev VM.
 *
 * Error, for each output (tests/test_cpu_kernels.c checks it, and checks the
 * kernel against an exact emulation of the arithmetic above):
 *   |y - y_ref| <= sum_c (|w_c| e(c) + |x_c| a_r / 2 + a_r e(c) / 2)
 * + fp32 rounding, w_c the (scaled) weight, e(c) = e_b / 2 of its block.
 */
/* VNNI comes from CMake (files named *_i8_avx512.c get -mavx512vnni). */
#include "cpu.h"

#include <immintrin.h>
#include <string.h>

#define I8_BLOCK_GROUPS 4      /* 256 columns per activation scale */
#define I8_MAX_COLS 32768      /* stack workspace bound; wider matrices use fp32 */
#define I8_N 4                 /* tokens per tile: 2 rows x 4 tokens x (int32 + fp32) */
#define I8_QBYTES (64 * 1024)  /* stack budget for one token block's int8 activations */
#define I8_MAX_TB 64

/* Quantize one token in blocks of I8_BLOCK_GROUPS groups: q (ngroups * 64
 * int8, zero padded), e (nblk) the block scales; gq (ngroups, or NULL) gets
 * each group's sum of q as a float. Returns sum_b e_b sum_{c in b} q_c. */
static float quantize_x(const float *x, int64_t cols, int8_t *q, float *e, float *gq) {
    const int64_t ngroups = opc_cb_groups(cols);
    const int64_t nblk = (ngroups + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
    float sum = 0;
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t c0 = b * I8_BLOCK_GROUPS * 64;
        const int64_t c1 = c0 + I8_BLOCK_GROUPS * 64 < cols ? c0 + I8_BLOCK_GROUPS * 64 : cols;
        __m512 amax = _mm512_setzero_ps();
        for (int64_t c = c0; c < c1; c += 16) {
            __mmask16 mk = c1 - c >= 16 ? 0xffff : (__mmask16)((1u << (c1 - c)) - 1u);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_maskz_loadu_ps(mk, x + c)));
        }
        const float m = _mm512_reduce_max_ps(amax);
        const __m512 vinv = _mm512_set1_ps(m > 0 ? 127.0f / m : 0.0f);
        const int64_t cend = c0 + I8_BLOCK_GROUPS * 64 < ngroups * 64 ? c0 + I8_BLOCK_GROUPS * 64
                                                                       : ngroups * 64;
        __m512i bs = _mm512_setzero_si512();
        for (int64_t c = c0; c < cend; c += 64) {
            __m512i gs = _mm512_setzero_si512();
            for (int64_t i = c; i < c + 64; i += 16) {
                __mmask16 mk = i >= cols           ? 0
                               : cols - i >= 16    ? 0xffff
                                                   : (__mmask16)((1u << (cols - i)) - 1u);
                __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
                __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)); /* nearest-even */
                _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(iv));
                gs = _mm512_add_epi32(gs, iv);
            }
            if (gq) gq[c / 64] = (float)_mm512_reduce_add_epi32(gs);
            bs = _mm512_add_epi32(bs, gs);
        }
        e[b] = m / 127.0f;
        sum += e[b] * (float)_mm512_reduce_add_epi32(bs);
    }
    return sum;
}

/* s(q) = 2^(-q/16) for up to 16 group scale bytes (lanes >= n: s(0)); the
 * same exact construction as in cb_avx512.c (mantissa table + exponent). */
static inline __attribute__((always_inline)) __m512 group_scales(const uint8_t *q, int64_t n) {
    _Alignas(64) float mt[16];
    for (int i = 0; i < 16; i++) mt[i] = opc_cb_scale((uint8_t)i);
    __m512i qi = _mm512_cvtepu8_epi32(
        _mm_maskz_loadu_epi8((__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), q));
    __m512 mant = _mm512_permutexvar_ps(qi, _mm512_load_ps(mt));
    __m512i ex = _mm512_slli_epi32(_mm512_srli_epi32(qi, 4), 23);
    return _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_castps_si512(mant), ex));
}

/* Row r's codebook over its int8 step a_r (16 fp32 lanes, entries >= k 0)
 * and a_r itself. */
static inline __attribute__((always_inline)) __m512 row_levels(const opc_cb_matrix *m, int64_t r,
                                                                float *alpha) {
    const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
    __m512 c = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)((1u << m->k) - 1u), cb));
    float amax = _mm512_reduce_max_ps(_mm512_abs_ps(c));
    *alpha = amax / 127.0f;
    return _mm512_mul_ps(c, _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f));
}

/* vpshufb table from levels (|lv| <= 127): round, +128, the 16 bytes in every
 * 128-bit lane. */
static inline __attribute__((always_inline)) __m512i lut(__m512 lv) {
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(lv), _mm512_set1_epi32(128));
    return _mm512_broadcast_i32x4(_mm512_cvtepi32_epi8(q));
}

/* 64 weight bytes of group g (column order) from the row's table. A 32-bit
 * shift by s <= 6 moves bits s, s+1 (s..s+3) of every byte to its low bits;
 * what leaks in from the next byte is masked off. */
static inline __attribute__((always_inline)) __m512i weights(int bits, const uint8_t *row,
                                                             int64_t g, __m512i tb) {
    if (bits == 2) {
        const __m512i sh = _mm512_set_epi32(6, 6, 6, 6, 4, 4, 4, 4, 2, 2, 2, 2, 0, 0, 0, 0);
        __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(row + g * 16)));
        return _mm512_shuffle_epi8(tb, _mm512_and_si512(_mm512_srlv_epi32(v, sh),
                                                        _mm512_set1_epi8(3)));
    }
    const __m512i sh = _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(row + g * 32)));
    return _mm512_shuffle_epi8(tb, _mm512_and_si512(_mm512_srlv_epi32(v, sh),
                                                    _mm512_set1_epi8(15)));
}

/* Row r's sparse outliers times x (decode): scalar loads with F16C and four
 * independent sums, as in cb_avx512.c. Fused into the decode tiles because
 * a separate pass costs a per-row setup that, on 576-column rows with ~6
 * outliers, took as long as the row itself (16% of a SmolLM2 decode). */
static inline __attribute__((always_inline)) float row_outliers(const opc_cb_matrix *m,
                                                                int64_t r, const float *x) {
    uint32_t i = m->ol_rowptr[r];
    const uint32_t b = m->ol_rowptr[r + 1];
    const uint16_t *oc = m->ol_col, *ov = m->ol_val;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; i + 4 <= b; i += 4) {
        s0 += _cvtsh_ss(ov[i]) * x[oc[i]];
        s1 += _cvtsh_ss(ov[i + 1]) * x[oc[i + 1]];
        s2 += _cvtsh_ss(ov[i + 2]) * x[oc[i + 2]];
        s3 += _cvtsh_ss(ov[i + 3]) * x[oc[i + 3]];
    }
    for (; i < b; i++) s0 += _cvtsh_ss(ov[i]) * x[oc[i]];
    return (s0 + s1) + (s2 + s3);
}

/* NR rows (1-2) x N tokens (1..I8_N) of one token block. lv0/lv1, al0/al1:
 * the rows' levels and steps (row_levels). GS: 0 no group scales; 1
 * (prefill) sc0/sc1 (ngroups) the rows' group scales; 2 (decode, N = 1)
 * sc0/sc1 = s_g e_b already multiplied and rc0/rc1 the rows' +128
 * corrections. q (N, qs) int8 activations, e (N, nblk) block scales, corr
 * (N) the +128 corrections 128 sum_b e_b sum q (GS < 2). x1: decode only
 * (else NULL), the token's fp32 activations, for the fused outliers. */
static inline __attribute__((always_inline)) void tile(int bits, int NR, int N, int GS,
                                                       const opc_cb_matrix *m, int64_t r,
                                                       __m512 lv0, __m512 lv1, float al0,
                                                       float al1, const float *sc0,
                                                       const float *sc1, const int8_t *q,
                                                       int64_t qs, const float *e, int64_t nblk,
                                                       const float *corr, float rc0, float rc1,
                                                       const float *x1, float *Y) {
    const int64_t ng = opc_cb_groups(m->cols);
    const uint64_t gb = bits == 2 ? 16 : 32;
    const uint8_t *p0 = m->idx + (uint64_t)r * m->row_bytes, *p1 = p0 + m->row_bytes;
    const __m512i tb0 = lut(lv0), tb1 = NR == 2 ? lut(lv1) : tb0;
    __m512 f0[I8_N], f1[I8_N];
#pragma GCC unroll 4
    for (int t = 0; t < N; t++) f0[t] = f1[t] = _mm512_setzero_ps();
    if (GS == 2) {
        /* decode with group scales: each group's int32 sum times s_g e_b */
        const __m512i z = _mm512_setzero_si512();
        for (int64_t g = 0; g < ng; g++) {
            _mm_prefetch((const char *)(p0 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(p1 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            __m512i xv = _mm512_loadu_si512((const void *)(q + g * 64));
            __m512i a0 = _mm512_dpbusd_epi32(z, weights(bits, p0, g, tb0), xv);
            f0[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_set1_ps(sc0[g]), f0[0]);
            if (NR == 2) {
                __m512i a1 = _mm512_dpbusd_epi32(z, weights(bits, p1, g, tb1), xv);
                f1[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1), _mm512_set1_ps(sc1[g]), f1[0]);
            }
        }
        Y[r] = al0 * (_mm512_reduce_add_ps(f0[0]) - rc0);
        if (NR == 2) Y[r + 1] = al1 * (_mm512_reduce_add_ps(f1[0]) - rc1);
        if (x1 && m->n_outliers) {
            Y[r] += row_outliers(m, r, x1);
            if (NR == 2) Y[r + 1] += row_outliers(m, r + 1, x1);
        }
        return;
    }
    for (int64_t b = 0; b < nblk; b++) {
        const int64_t g1 = (b + 1) * I8_BLOCK_GROUPS < ng ? (b + 1) * I8_BLOCK_GROUPS : ng;
        __m512i a0[I8_N], a1[I8_N];
#pragma GCC unroll 4
        for (int t = 0; t < N; t++) a0[t] = a1[t] = _mm512_setzero_si512();
        for (int64_t g = b * I8_BLOCK_GROUPS; g < g1; g++) {
            _mm_prefetch((const char *)(p0 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(p1 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            __m512i t0 = tb0, t1 = tb1;
            if (GS == 1) { /* prefill: the group's own table, shared by N tokens */
                t0 = lut(_mm512_mul_ps(lv0, _mm512_set1_ps(sc0[g])));
                if (NR == 2) t1 = lut(_mm512_mul_ps(lv1, _mm512_set1_ps(sc1[g])));
            }
            const __m512i w0 = weights(bits, p0, g, t0);
            const __m512i w1 = NR == 2 ? weights(bits, p1, g, t1) : w0;
#pragma GCC unroll 4
            for (int t = 0; t < N; t++) {
                __m512i xv = _mm512_loadu_si512((const void *)(q + t * qs + g * 64));
                a0[t] = _mm512_dpbusd_epi32(a0[t], w0, xv);
                if (NR == 2) a1[t] = _mm512_dpbusd_epi32(a1[t], w1, xv);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < N; t++) {
            const __m512 s = _mm512_set1_ps(e[t * nblk + b]);
            f0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0[t]), s, f0[t]);
            if (NR == 2) f1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1[t]), s, f1[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; t++) {
        Y[t * m->rows + r] = al0 * (_mm512_reduce_add_ps(f0[t]) - corr[t]);
        if (NR == 2) Y[t * m->rows + r + 1] = al1 * (_mm512_reduce_add_ps(f1[t]) - corr[t]);
    }
    if (N == 1 && x1 && m->n_outliers) {
        Y[r] += row_outliers(m, r, x1);
        if (NR == 2) Y[r + 1] += row_outliers(m, r + 1, x1);
    }
}

#define I8_CASE(B, R, G, NN)                                                              \
    case NN:                                                                              \
        tile(B, R, NN, G, m, r, lv0, lv1, al0, al1, sc0, sc1, q, qs, e, nblk, corr, rc0,  \
             rc1, x1, Y);                                                                 \
        break;
#define I8_SWITCH(B, R, G)                                                                \
    switch (n) {                                                                          \
        I8_CASE(B, R, G, 1) I8_CASE(B, R, G, 2) I8_CASE(B, R, G, 3) I8_CASE(B, R, G, 4)   \
    default: break;                                                                       \
    }

/* All (bits, rows, group scales, tokens) variants of one tile; q, e, corr
 * and Y already point at the tile's first token; gsd: group-scaled decode. */
static void tile_dispatch(int gsd, int nr, int n, const opc_cb_matrix *m, int64_t r, __m512 lv0,
                          __m512 lv1, float al0, float al1, const float *sc0, const float *sc1,
                          const int8_t *q, int64_t qs, const float *e, int64_t nblk,
                          const float *corr, float rc0, float rc1, const float *x1, float *Y) {
    if (gsd) { /* n == 1 */
        if (m->bits == 2) {
            if (nr == 2) I8_SWITCH(2, 2, 2) else I8_SWITCH(2, 1, 2)
        } else {
            if (nr == 2) I8_SWITCH(4, 2, 2) else I8_SWITCH(4, 1, 2)
        }
    } else if (m->bits == 2) {
        if (m->gscale) {
            if (nr == 2) I8_SWITCH(2, 2, 1) else I8_SWITCH(2, 1, 1)
        } else {
            if (nr == 2) I8_SWITCH(2, 2, 0) else I8_SWITCH(2, 1, 0)
        }
    } else {
        if (m->gscale) {
            if (nr == 2) I8_SWITCH(4, 2, 1) else I8_SWITCH(4, 1, 1)
        } else {
            if (nr == 2) I8_SWITCH(4, 2, 0) else I8_SWITCH(4, 1, 0)
        }
    }
}

/* Row r's group scales into sc (ngroups floats): s_g, or for decode
 * s_g e_b(g) with *rc = 128 sum_g s_g e_b(g) gq_g (its +128 correction). */
static void row_scales(const opc_cb_matrix *m, int64_t r, const float *e, const float *gq,
                       float *sc, float *rc) {
    const int64_t ng = opc_cb_groups(m->cols);
    const uint8_t *qb = m->gscale + (uint64_t)r * (uint64_t)ng; /* (ng) */
    /* the scale bytes of the row 8 below (see cb_avx512.c: their stride is
     * not the index stream's, so the hardware prefetcher misses them) */
    for (int64_t g = 0; g < ng; g += 64) _mm_prefetch((const char *)(qb + 8 * ng + g), _MM_HINT_T0);
    _mm_prefetch((const char *)(qb + 8 * ng + ng - 1), _MM_HINT_T0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g += 16) {
        const __mmask16 mk = (__mmask16)(ng - g >= 16 ? 0xffffu : (1u << (ng - g)) - 1u);
        __m512 s = group_scales(qb + g, ng - g);
        if (gq) {
            /* e_b of group g + i is e[(g + i) / 4] (g is a multiple of 16):
             * the (up to) 4 block scales spread over their 4 groups each */
            const int64_t nb = (ng - g + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
            const __m128 e4 = _mm_maskz_loadu_ps((__mmask8)(nb >= 4 ? 0xf : (1u << nb) - 1u),
                                                 e + g / I8_BLOCK_GROUPS);
            const __m512i bi = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
            s = _mm512_mul_ps(s, _mm512_permutexvar_ps(bi, _mm512_castps128_ps512(e4)));
            acc = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(mk, gq + g), acc);
        }
        _mm512_mask_storeu_ps(sc + g, mk, s);
    }
    *rc = 128.0f * _mm512_reduce_add_ps(acc);
}

void opc_cb_rows_avx512_i8(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                           int64_t r0, int64_t r1) {
    if (m->cols > I8_MAX_COLS) {
        opc_cb_rows_avx512(m, X, T, Y, r0, r1); /* exact fp32 path */
        return;
    }
    const int64_t ng = opc_cb_groups(m->cols), qs = ng * 64;
    const int64_t nblk = (ng + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
    int64_t tbmax = I8_QBYTES / qs;
    if (tbmax > I8_MAX_TB) tbmax = I8_MAX_TB;
    const int gs_decode = m->gscale && T == 1;
    _Alignas(64) int8_t q[I8_QBYTES];
    float e[I8_MAX_TB * (I8_MAX_COLS / 256)], corr[I8_MAX_TB];
    /* group scales of the current row pair; decode: per-group sums of q */
    _Alignas(64) float sc0[I8_MAX_COLS / 64], sc1[I8_MAX_COLS / 64], gq[I8_MAX_COLS / 64];
    for (int64_t tb = 0; tb < T; tb += tbmax) {
        const int64_t nb = T - tb < tbmax ? T - tb : tbmax;
        for (int64_t t = 0; t < nb; t++)
            corr[t] = 128.0f * quantize_x(X + (tb + t) * m->cols, m->cols, q + t * qs,
                                          e + t * nblk, gs_decode ? gq : NULL);
        for (int64_t r = r0; r < r1; r += 2) {
            const int nr = r + 1 < r1 ? 2 : 1;
            float al0, al1 = 0, rc0 = 0, rc1 = 0;
            const __m512 lv0 = row_levels(m, r, &al0);
            const __m512 lv1 = nr == 2 ? row_levels(m, r + 1, &al1) : lv0;
            if (m->gscale) {
                row_scales(m, r, e, gs_decode ? gq : NULL, sc0, &rc0);
                if (nr == 2) row_scales(m, r + 1, e, gs_decode ? gq : NULL, sc1, &rc1);
            }
            for (int64_t t0 = 0; t0 < nb; t0 += I8_N) {
                const int n = (int)(nb - t0 < I8_N ? nb - t0 : I8_N);
                tile_dispatch(gs_decode, nr, n, m, r, lv0, lv1, al0, al1, sc0, sc1, q + t0 * qs, qs,
                              e + t0 * nblk, nblk, corr + t0, rc0, rc1, T == 1 ? X : NULL,
                              Y + (tb + t0) * m->rows);
            }
        }
    }
    /* prefill: the outliers as a second pass (decode fused them) */
    if (T > 1 && m->n_outliers) opc_cb_outliers_avx512(m, X, T, Y, r0, r1);
}
