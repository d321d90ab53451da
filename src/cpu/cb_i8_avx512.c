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
 * round(s_g c_i / a_r); decode instead converts each group's int32 sum and
 * multiplies it by s_g e_b (3 per group and row, and no re-rounding).
 * Prefill decodes each row's int8 weights once per block of up to 64 tokens
 * into an L1/L2 buffer, then runs 4-row x 4-token register tiles over it
 * (vpdpbusd with both operands from registers; see ptile): decoding per
 * 2 x 4 tile instead, with the int32 -> fp32 epilogue of one
 * _mm512_reduce_add_ps per output and no prefetch of x, reached ~200 G
 * multiply-adds/s per core of the ~530 G vpdpbusd peak (2 per cycle, 4
 * cycles latency, measured); this layout ~320-350 G on the 1B shapes.
 * An earlier bit-serial decode (y = c0 sum x + plane sums, T-MAC style,
 * 3 vpdpbusd per group, exact weights) was 35-50% slower on the dev VM.
 *
 * Error, for each output (tests/test_cpu_kernels.c checks it, and checks the
 * kernel against an exact emulation of the arithmetic above):
 *   |y - y_ref| <= sum_c (|w_c| e(c) + |x_c| a_r / 2 + a_r e(c) / 2)
 * + fp32 rounding, w_c the (scaled) weight, e(c) = e_b / 2 of its block.
 */
/* VNNI comes from CMake (files named *_i8_avx512.c get -mavx512vnni). */
#include "cb_outliers_f16c.h"
#include "cpu.h"

#include <immintrin.h>
#include <string.h>

#define I8_BLOCK_GROUPS 4      /* 256 columns per activation scale */
#define I8_MAX_COLS 32768      /* stack workspace bound; wider matrices use fp32 */
#define I8_XPF 512             /* quantize_x prefetch distance in floats: 2 KiB */
/* prefill */
#define I8_QBYTES (256 * 1024) /* stack budget for one token block's int8 activations */
#define I8_MAX_TB 64           /* tokens per block: decode_row is shared by these */
#define I8_PR 4                /* tile: rows ... */
#define I8_PN 4                /* ... x tokens (16 int32 + 8 fp32 sums in registers) */
#define I8_PP ((I8_PR + 1) / 2) /* row pairs: one fp32 sum per pair and token */
#define I8_KBLK 8              /* column chunk: 8 blocks = 2048 columns */

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
            /* x was written by the previous operation and is mostly not in
             * L1/L2 (a 512-token prompt's activations are 4-16 MiB): without
             * this the loads below stalled for 8-15% of a prefill matmul */
            _mm_prefetch((const char *)(x + c + I8_XPF), _MM_HINT_T0);
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

/* Row r's sparse outliers times x (decode; cb_outliers_f16c.h). Fused into
 * the decode tiles because a separate pass costs a per-row setup that, on
 * 576-column rows with ~6 outliers, took as long as the row itself (16% of a
 * SmolLM2 decode). */
static inline __attribute__((always_inline)) float row_outliers(const opc_cb_matrix *m,
                                                                int64_t r, const float *x) {
    float s[4];
    opc_cb_outlier_sums(m, r, x, s);
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* ---- decode (T = 1) ---------------------------------------------------- */

/* NR rows (1-2) of one token. lv0/lv1, al0/al1: the rows' levels and steps
 * (row_levels). GS: 0 no group scales, corr the +128 correction 128 sum_b
 * e_b sum q; 1: sc0/sc1 (ngroups) = s_g e_b already multiplied and rc0/rc1
 * the rows' +128 corrections. q (qs) int8 activations, e (nblk) block
 * scales, x1 the token's fp32 activations (for the fused outliers). */
static inline __attribute__((always_inline)) void tile(int bits, int NR, int GS,
                                                       const opc_cb_matrix *m, int64_t r,
                                                       __m512 lv0, __m512 lv1, float al0,
                                                       float al1, const float *sc0,
                                                       const float *sc1, const int8_t *q,
                                                       const float *e, int64_t nblk, float corr,
                                                       float rc0, float rc1, const float *x1,
                                                       float *Y) {
    const int64_t ng = opc_cb_groups(m->cols);
    const uint64_t gb = bits == 2 ? 16 : 32;
    const uint8_t *p0 = m->idx + (uint64_t)r * m->row_bytes, *p1 = p0 + m->row_bytes;
    const __m512i tb0 = lut(lv0), tb1 = NR == 2 ? lut(lv1) : tb0;
    __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
    if (GS) {
        /* each group's int32 sum times s_g e_b */
        const __m512i z = _mm512_setzero_si512();
        for (int64_t g = 0; g < ng; g++) {
            _mm_prefetch((const char *)(p0 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(p1 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
            __m512i xv = _mm512_loadu_si512((const void *)(q + g * 64));
            __m512i a0 = _mm512_dpbusd_epi32(z, weights(bits, p0, g, tb0), xv);
            f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_set1_ps(sc0[g]), f0);
            if (NR == 2) {
                __m512i a1 = _mm512_dpbusd_epi32(z, weights(bits, p1, g, tb1), xv);
                f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1), _mm512_set1_ps(sc1[g]), f1);
            }
        }
    } else {
        for (int64_t b = 0; b < nblk; b++) {
            const int64_t g1 = (b + 1) * I8_BLOCK_GROUPS < ng ? (b + 1) * I8_BLOCK_GROUPS : ng;
            __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
            for (int64_t g = b * I8_BLOCK_GROUPS; g < g1; g++) {
                _mm_prefetch((const char *)(p0 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
                if (NR == 2)
                    _mm_prefetch((const char *)(p1 + g * gb + 8 * m->row_bytes), _MM_HINT_T0);
                __m512i xv = _mm512_loadu_si512((const void *)(q + g * 64));
                a0 = _mm512_dpbusd_epi32(a0, weights(bits, p0, g, tb0), xv);
                if (NR == 2) a1 = _mm512_dpbusd_epi32(a1, weights(bits, p1, g, tb1), xv);
            }
            const __m512 s = _mm512_set1_ps(e[b]);
            f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), s, f0);
            if (NR == 2) f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1), s, f1);
        }
        rc0 = rc1 = corr;
    }
    Y[r] = al0 * (_mm512_reduce_add_ps(f0) - rc0);
    if (NR == 2) Y[r + 1] = al1 * (_mm512_reduce_add_ps(f1) - rc1);
    if (m->n_outliers) {
        Y[r] += row_outliers(m, r, x1);
        if (NR == 2) Y[r + 1] += row_outliers(m, r + 1, x1);
    }
}

/* All (bits, rows, group scales) variants of one decode tile. */
static void tile_dispatch(int nr, const opc_cb_matrix *m, int64_t r, __m512 lv0, __m512 lv1,
                          float al0, float al1, const float *sc0, const float *sc1,
                          const int8_t *q, const float *e, int64_t nblk, float corr, float rc0,
                          float rc1, const float *x1, float *Y) {
#define I8_TILE(B, R, G)                                                                  \
    tile(B, R, G, m, r, lv0, lv1, al0, al1, sc0, sc1, q, e, nblk, corr, rc0, rc1, x1, Y)
    const int gs = m->gscale != NULL;
    if (m->bits == 2) {
        if (gs) {
            if (nr == 2) I8_TILE(2, 2, 1); else I8_TILE(2, 1, 1);
        } else {
            if (nr == 2) I8_TILE(2, 2, 0); else I8_TILE(2, 1, 0);
        }
    } else {
        if (gs) {
            if (nr == 2) I8_TILE(4, 2, 1); else I8_TILE(4, 1, 1);
        } else {
            if (nr == 2) I8_TILE(4, 2, 0); else I8_TILE(4, 1, 0);
        }
    }
#undef I8_TILE
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

/* ---- prefill (T > 1): pre-decoded weight rows ------------------------- */

/* Row r's int8 weights (+128, as vpdpbusd's unsigned operand) for all its
 * groups into w (ng * 64 bytes, column order), group scales applied:
 * tq = rne(s_g c_i / a_r), the same table the decode tiles build. Done once
 * per row and token block, so the 3 (no group scales) to 8 (group scales)
 * instructions per group are shared by every token of the block instead of
 * by the I8_PN tokens of one tile. */
static void decode_row(const opc_cb_matrix *m, int64_t r, __m512 lv, uint8_t *w) {
    const int64_t ng = opc_cb_groups(m->cols);
    const uint8_t *p = m->idx + (uint64_t)r * m->row_bytes;
    const uint8_t *qb = m->gscale ? m->gscale + (uint64_t)r * (uint64_t)ng : NULL; /* (ng) */
    const __m512i tb = lut(lv);
    for (int64_t g = 0; g < ng; g++) {
        __m512i t = tb;
        if (qb) t = lut(_mm512_mul_ps(lv, _mm512_set1_ps(opc_cb_scale(qb[g]))));
        _mm512_store_si512((void *)(w + g * 64), m->bits == 2 ? weights(2, p, g, t)
                                                              : weights(4, p, g, t));
    }
}

/* v0..v3 (one per token) hold a row pair's fp32 sums as (A, B, A, B) in
 * every 128 bits: sa, sb the four tokens' totals of row A and of row B (16
 * instructions for 8 outputs; _mm512_reduce_add_ps takes 7 per output, and
 * with it the epilogue took 15% of a 2048-column prefill). */
static inline __attribute__((always_inline)) void sum4p(__m512 v0, __m512 v1, __m512 v2, __m512 v3,
                                                        __m128 *sa, __m128 *sb) {
    const __m512d d0 = _mm512_castps_pd(v0), d1 = _mm512_castps_pd(v1);
    const __m512d d2 = _mm512_castps_pd(v2), d3 = _mm512_castps_pd(v3);
    const __m512 u01 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(d0, d1)),
                                     _mm512_castpd_ps(_mm512_unpackhi_pd(d0, d1)));
    const __m512 u23 = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(d2, d3)),
                                     _mm512_castpd_ps(_mm512_unpackhi_pd(d2, d3)));
    __m512 a = _mm512_shuffle_ps(u01, u23, 0x88), b = _mm512_shuffle_ps(u01, u23, 0xdd);
    a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, 0x4e));
    a = _mm512_add_ps(a, _mm512_shuffle_f32x4(a, a, 0xb1));
    b = _mm512_add_ps(b, _mm512_shuffle_f32x4(b, b, 0x4e));
    b = _mm512_add_ps(b, _mm512_shuffle_f32x4(b, b, 0xb1));
    *sa = _mm512_castps512_ps128(a);
    *sb = _mm512_castps512_ps128(b);
}

/* Groups g0 .. g0 + ngb of an NR x N tile into the fp32 sums f: ngb ==
 * I8_BLOCK_GROUPS (compile-time, unrolled: a full block) or less (the last
 * block). The int32 sums start at zero for each block. Two rows' int32 sums
 * are folded into one vector (unpack lo + hi, add: lanes A, B, A, B) before
 * the conversion, so a block costs NR x N / 2 conversions and FMAs, which
 * compete with vpdpbusd for the same two pipes, and the fp32 sums take half
 * the registers. */
static inline __attribute__((always_inline)) void pblock(int NR, int N, int64_t ngb,
                                                         const uint8_t *w, int64_t ws,
                                                         const int8_t *q, int64_t qs, int64_t g0,
                                                         const float *es, int64_t nblk,
                                                         __m512 f[I8_PP][I8_PN]) {
    __m512i a[I8_PR][I8_PN];
#pragma GCC unroll 8
    for (int i = 0; i < NR; i++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) a[i][t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int64_t g = g0; g < g0 + ngb; g++) {
        __m512i wv[I8_PR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; i++) wv[i] = _mm512_load_si512((const void *)(w + i * ws + g * 64));
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            __m512i xv = _mm512_load_si512((const void *)(q + t * qs + g * 64));
            /* keep x in a register: folded into every vpdpbusd it would cost
             * NR x N loads per group instead of NR + N (2 per cycle here) */
            __asm__("" : "+v"(xv));
#pragma GCC unroll 8
            for (int i = 0; i < NR; i++) a[i][t] = _mm512_dpbusd_epi32(a[i][t], wv[i], xv);
        }
    }
    const int np = (NR + 1) / 2;
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        const __m512 s = _mm512_set1_ps(es[t * nblk]);
#pragma GCC unroll 8
        for (int p = 0; p < np; p++) {
            const __m512i lo = a[2 * p][t];
            const __m512i hi = 2 * p + 1 < NR ? a[2 * p + 1][t] : _mm512_setzero_si512();
            const __m512i c = _mm512_add_epi32(_mm512_unpacklo_epi32(lo, hi),
                                               _mm512_unpackhi_epi32(lo, hi));
            f[p][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), s, f[p][t]);
        }
    }
}

/* Blocks b0 .. b1 of NR rows x N tokens of pre-decoded weights: w (NR, ws)
 * bytes, q (N, qs) int8 activations, e (N, nblk) block scales, fa (I8_PP,
 * I8_PN, 16) the fp32 sums carried between column chunks (read unless b0 =
 * 0, written unless b1 = nblk), corr (N) the +128 corrections, al (NR) the
 * rows' steps; Y (N, rows) at the tile's first token, r the tile's first
 * row. 16 int32 + 8 fp32 sums + 4 weight vectors stay in registers (29 of
 * the 32 zmm at 4 x 4), so every group costs NR + N loads for NR x N
 * vpdpbusd, and 16 independent sums hide its 4-cycle latency at 2 per cycle
 * (dev VM, Zen 5). Single-core prefill on 1024 x 2048 / 8192, T = 512:
 * 3 x 4 with one fp32 sum per row ~290 / 235 G multiply-adds/s, 4 x 3 ~310
 * / 250, 4 x 4 with folded pairs ~350 / 320. */
static inline __attribute__((always_inline)) void ptile(int NR, int N, const uint8_t *w,
                                                        int64_t ws, const int8_t *q, int64_t qs,
                                                        const float *e, int64_t nblk, int64_t ng,
                                                        int64_t b0, int64_t b1, float *fa,
                                                        const float *corr, const float *al,
                                                        int64_t rows, int64_t r, float *Y) {
    __m512 f[I8_PP][I8_PN];
    const int np = (NR + 1) / 2; /* row pairs */
#pragma GCC unroll 8
    for (int i = 0; i < np; i++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++)
            f[i][t] = b0 == 0 ? _mm512_setzero_ps() : _mm512_load_ps(fa + (i * I8_PN + t) * 16);
    const int64_t nfull = ng / I8_BLOCK_GROUPS, bf = b1 < nfull ? b1 : nfull;
    for (int64_t b = b0; b < bf; b++)
        pblock(NR, N, I8_BLOCK_GROUPS, w, ws, q, qs, b * I8_BLOCK_GROUPS, e + b, nblk, f);
    if (bf < b1) /* the last, partial block */
        pblock(NR, N, ng - nfull * I8_BLOCK_GROUPS, w, ws, q, qs, nfull * I8_BLOCK_GROUPS,
               e + nfull, nblk, f);
    if (b1 < nblk) { /* more column chunks follow */
#pragma GCC unroll 8
        for (int i = 0; i < np; i++)
#pragma GCC unroll 8
            for (int t = 0; t < N; t++) _mm512_store_ps(fa + (i * I8_PN + t) * 16, f[i][t]);
        return;
    }
    const __m128 c4 = _mm_maskz_loadu_ps((__mmask8)((1u << N) - 1u), corr);
#pragma GCC unroll 8
    for (int p = 0; p < np; p++) {
        const __m512 z = _mm512_setzero_ps();
        __m128 sa, sb;
        sum4p(f[p][0], N > 1 ? f[p][1] : z, N > 2 ? f[p][2] : z, N > 3 ? f[p][3] : z, &sa, &sb);
        _Alignas(16) float y[4];
        _mm_store_ps(y, _mm_mul_ps(_mm_set1_ps(al[2 * p]), _mm_sub_ps(sa, c4)));
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) Y[t * rows + r + 2 * p] = y[t];
        if (2 * p + 1 < NR) {
            _mm_store_ps(y, _mm_mul_ps(_mm_set1_ps(al[2 * p + 1]), _mm_sub_ps(sb, c4)));
#pragma GCC unroll 8
            for (int t = 0; t < N; t++) Y[t * rows + r + 2 * p + 1] = y[t];
        }
    }
}

#define I8_PCASE(R, NN)                                                                  \
    case NN:                                                                             \
        ptile(R, NN, w, ws, q, qs, e, nblk, ng, b0, b1, fa, corr, al, rows, r, Y);       \
        break;

/* One prefill tile of nr (1..I8_PR) rows and n (1..I8_PN) tokens. */
static void ptile_dispatch(int nr, int n, const uint8_t *w, int64_t ws, const int8_t *q,
                           int64_t qs, const float *e, int64_t nblk, int64_t ng, int64_t b0,
                           int64_t b1, float *fa, const float *corr, const float *al,
                           int64_t rows, int64_t r, float *Y) {
#define I8_PROW(R)                                                                       \
    switch (n) {                                                                         \
        I8_PCASE(R, 1) I8_PCASE(R, 2) I8_PCASE(R, 3) I8_PCASE(R, 4)                      \
    default: break;                                                                      \
    }
    switch (nr) {
    case 1: I8_PROW(1) break;
    case 2: I8_PROW(2) break;
    case 3: I8_PROW(3) break;
    case 4: I8_PROW(4) break;
    default: break;
    }
#undef I8_PROW
}

/* Prefill: per token block (up to I8_MAX_TB tokens, their int8 activations
 * within I8_QBYTES), per tile of I8_PR rows, the rows' weights are decoded
 * once (decode_row) and every I8_PN-token tile of the block then runs on
 * them, in column chunks of I8_KBLK blocks so that the chunk's weights
 * (I8_PR x 2 KiB) stay in L1 while the tokens' activations stream from L2.
 * Stack: ~440 KiB (q 256, w 128, e 32, fa 8.5 KiB); callers run it on the
 * main thread or OpenMP workers, whose glibc default stack is the stack
 * rlimit (usually 8 MiB). */
static void rows_prefill(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                         int64_t r1) {
    const int64_t ng = opc_cb_groups(m->cols), qs = ng * 64;
    const int64_t nblk = (ng + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
    int64_t tbmax = I8_QBYTES / qs;
    if (tbmax > I8_MAX_TB) tbmax = I8_MAX_TB;
    _Alignas(64) int8_t q[I8_QBYTES];              /* (tbmax, qs) */
    _Alignas(64) uint8_t w[I8_PR * I8_MAX_COLS];   /* (I8_PR, qs) the row tile's weights */
    /* the row tile's fp32 sums between column chunks, (token tile, I8_PP,
     * I8_PN, 16); the last tile may start at token I8_MAX_TB - 1 */
    _Alignas(64) float fa[(I8_MAX_TB + I8_PN) * I8_PP * 16];
    float e[I8_MAX_TB * (I8_MAX_COLS / 256)], corr[I8_MAX_TB]; /* (tbmax, nblk), (tbmax) */
    for (int64_t tb = 0; tb < T; tb += tbmax) {
        const int64_t nb = T - tb < tbmax ? T - tb : tbmax;
        for (int64_t t = 0; t < nb; t++)
            corr[t] = 128.0f * quantize_x(X + (tb + t) * m->cols, m->cols, q + t * qs,
                                          e + t * nblk, NULL);
        for (int64_t r = r0; r < r1; r += I8_PR) {
            const int nr = (int)(r1 - r < I8_PR ? r1 - r : I8_PR);
            float al[I8_PR];
            for (int i = 0; i < nr; i++)
                decode_row(m, r + i, row_levels(m, r + i, &al[i]), w + i * qs);
            for (int64_t b0 = 0; b0 < nblk; b0 += I8_KBLK) {
                const int64_t b1 = b0 + I8_KBLK < nblk ? b0 + I8_KBLK : nblk;
                for (int64_t t0 = 0; t0 < nb; t0 += I8_PN) {
                    const int n = (int)(nb - t0 < I8_PN ? nb - t0 : I8_PN);
                    ptile_dispatch(nr, n, w, qs, q + t0 * qs, qs, e + t0 * nblk, nblk, ng, b0,
                                   b1, fa + t0 * I8_PP * 16, corr + t0, al, m->rows, r,
                                   Y + (tb + t0) * m->rows);
                }
            }
        }
    }
    if (m->n_outliers) opc_cb_outliers_avx512(m, X, T, Y, r0, r1); /* a second pass */
}

void opc_cb_rows_avx512_i8(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                           int64_t r0, int64_t r1) {
    if (m->cols > I8_MAX_COLS) {
        opc_cb_rows_avx512(m, X, T, Y, r0, r1); /* exact fp32 path */
        return;
    }
    if (T > 1) {
        rows_prefill(m, X, T, Y, r0, r1);
        return;
    }
    const int64_t ng = opc_cb_groups(m->cols);
    const int64_t nblk = (ng + I8_BLOCK_GROUPS - 1) / I8_BLOCK_GROUPS;
    _Alignas(64) int8_t q[I8_MAX_COLS];      /* (ng * 64) */
    float e[I8_MAX_COLS / 256];               /* (nblk) */
    /* group scales of the current row pair; per-group sums of q */
    _Alignas(64) float sc0[I8_MAX_COLS / 64], sc1[I8_MAX_COLS / 64], gq[I8_MAX_COLS / 64];
    const float corr = 128.0f * quantize_x(X, m->cols, q, e, m->gscale ? gq : NULL);
    for (int64_t r = r0; r < r1; r += 2) {
        const int nr = r + 1 < r1 ? 2 : 1;
        float al0, al1 = 0, rc0 = 0, rc1 = 0;
        const __m512 lv0 = row_levels(m, r, &al0);
        const __m512 lv1 = nr == 2 ? row_levels(m, r + 1, &al1) : lv0;
        if (m->gscale) {
            row_scales(m, r, e, gq, sc0, &rc0);
            if (nr == 2) row_scales(m, r + 1, e, gq, sc1, &rc1);
        }
        tile_dispatch(nr, m, r, lv0, lv1, al0, al1, sc0, sc1, q, e, nblk, corr, rc0, rc1, X, Y);
    }
}
