/*
 * cb_avx512.c — codebook matmul rows for AVX-512 (F/BW/VL/DQ, FMA, F16C).
 * Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c
 * (CMakeLists.txt, by file name); called only when opc_cpu_has_avx512().
 *
 * Dequantize-and-FMA, never materialising more than one 64-column group:
 *   - the row's k fp16 codebook entries are converted once into one ZMM
 *     "table" register. 4-bit: vpermps reads the low 4 bits of each lane's
 *     index. 2-bit: the 4 entries are repeated in every 128-bit lane (lane
 *     l = cb[l & 3]) and the in-lane vpermilps reads only the low 2 bits, so
 *     the shifted index bytes need no AND;
 *   - one 128-bit load + vpmovzxbd gives 16 lanes of index bytes; shifts by
 *     0/2/4/6 (2-bit) or 0/4 (4-bit) and one permute per 16 columns turn them
 *     into fp32 weights in registers; one FMA per 16 columns and token.
 *   - 2 rows at a time share every activation load; prefill reuses each
 *     dequantized group for a tile of up to 8 tokens (2 x 8 accumulators +
 *     8 weight vectors = 24 of the 32 ZMM registers).
 * Measured alternatives (masked adds per bit-plane, LUTs, int8 activations:
 * cb_i8_avx512.c) are in bench/bench_cpu_gemv.c and docs/RESULTS.md.
 */
#include "cb_outliers_f16c.h"
#include "cpu.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
/* Prefetch distance in rows (see tile) and the column chunk for decode:
 * 4096 activations = 16 KiB stay in L1 while every row pair streams by.
 * Both chosen by measurement (bench_cpu_gemv, docs/RESULTS.md). */
#define PF_ROWS 8
#define GEMV_CHUNK 4096
/* Prefill: keep a token block's activations for one column chunk within
 * ~256 KiB (L2). Larger chunks measured no better on the loaded dev VM. */
#define XCHUNK_BYTES (256 * 1024)
/* Group scales are expanded this many groups at a time (a multiple of 16;
 * 2 x 256 floats of stack per tile). */
#define GS_CHUNK 256

/* (16) fp32 table for row r: lane l = cb[l] (4-bit) or cb[l & 3] (2-bit);
 * entries >= k are 0 like the reference. The masked load never touches
 * bytes past the row's k entries. */
AI __m512 load_table(const opc_cb_matrix *m, int bits, int64_t r) {
    const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
    __m256i h = _mm256_maskz_loadu_epi16((__mmask16)((1u << m->k) - 1u), cb);
    __m512 t = _mm512_cvtph_ps(h);
    if (bits == 2)
        t = _mm512_permutexvar_ps(
            _mm512_set_epi32(3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0), t);
    return t;
}

/* s(q) = 2^(-q/16) (opc_cb_scale) for up to 16 group scale bytes q[0..n),
 * lane i = group i (lanes >= n: s(0), never read). The mantissa comes from a
 * 16-lane table of s(0..15) (exact, a constant after folding); the integer
 * part q/16 is subtracted from the exponent field, exact because s(q) stays
 * a normal float (>= 2^-16). One call serves 16 groups of one row. */
AI __m512 group_scales(const uint8_t *q, int64_t n) {
    _Alignas(64) float mt[16];
    for (int i = 0; i < 16; i++) mt[i] = opc_cb_scale((uint8_t)i);
    __m512i qi = _mm512_cvtepu8_epi32(
        _mm_maskz_loadu_epi8((__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), q));
    __m512 mant = _mm512_permutexvar_ps(qi, _mm512_load_ps(mt)); /* reads q & 15 */
    __m512i e = _mm512_slli_epi32(_mm512_srli_epi32(qi, 4), 23);
    return _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_castps_si512(mant), e));
}

/* Dequantize one packed 64-column group into w[j] = columns 16j..16j+15. */
AI void deq_group(int bits, const uint8_t *g, __m512 tb, __m512 w[4]) {
    if (bits == 2) {
        /* byte i holds columns i, 16+i, 32+i, 48+i in bit pairs 0,2,4,6 */
        __m512i i0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)g));
        w[0] = _mm512_permutevar_ps(tb, i0);
        w[1] = _mm512_permutevar_ps(tb, _mm512_srli_epi32(i0, 2));
        w[2] = _mm512_permutevar_ps(tb, _mm512_srli_epi32(i0, 4));
        w[3] = _mm512_permutevar_ps(tb, _mm512_srli_epi32(i0, 6));
    } else {
        /* byte i holds column i (low nibble) and 32+i (high nibble) */
        __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)g));
        __m512i hi = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(g + 16)));
        w[0] = _mm512_permutexvar_ps(lo, tb);
        w[1] = _mm512_permutexvar_ps(hi, tb);
        w[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(lo, 4), tb);
        w[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(hi, 4), tb);
    }
}

/* acc += the row's sparse outliers times x (cb_outliers_f16c.h). */
AI __m512 outliers_into(const opc_cb_matrix *m, int64_t r, const float *x, __m512 acc) {
    float s[4];
    opc_cb_outlier_sums(m, r, x, s);
    /* lanes 0-3 of acc take the four partial sums */
    return _mm512_add_ps(acc, _mm512_castps128_ps512(_mm_set_ps(s[3], s[2], s[1], s[0])));
}

/* One packed group g for NR rows and N tokens: dequantize once, then one
 * FMA per 16 columns, row and token. xg points at token 0's 64 activations
 * of this group; token t's are xs floats further on. */
AI void group_step(int bits, int NR, int N, int NA, const uint8_t *p0, const uint8_t *p1,
                   int64_t g, __m512 tb0, __m512 tb1, const float *xg, int64_t xs, __m512 *acc0,
                   __m512 *acc1) {
    const uint64_t gb = bits == 2 ? 16 : 32;
    __m512 w0[4], w1[4];
    deq_group(bits, p0 + (uint64_t)g * gb, tb0, w0);
    if (NR == 2) deq_group(bits, p1 + (uint64_t)g * gb, tb1, w1);
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512 xv = _mm512_loadu_ps(xg + t * xs + 16 * j);
            int a = t * NA + (j % NA);
            acc0[a] = _mm512_fmadd_ps(w0[j], xv, acc0[a]);
            if (NR == 2) acc1[a] = _mm512_fmadd_ps(w1[j], xv, acc1[a]);
        }
    }
}

/* One tile: NR rows (1 or 2) x N tokens (1..8) over groups [g0, g1), plus
 * the zero-padded tail group when `tail`. NA accumulators per (row, token)
 * so that even a single token has 4 independent FMA chains per row (FMA
 * latency 4 x 2 pipes needs ~8 in flight). Results are stored (first chunk)
 * or added to Y.
 * GS (group scales, cb.h): each group's table is multiplied by the group's
 * scale before the lookup, so the permutes yield s * cb[idx] directly: one
 * vmulps per group and row, shared by all N tokens and all 4 column vectors
 * (a separate partial sum per group would cost an FMA per token and double
 * the accumulators). The scales are expanded 16 groups at a time into a
 * stack array and broadcast from memory (a load, not a shuffle). */
AI void tile(int bits, int NR, int N, int GS, const opc_cb_matrix *m, int64_t r, const float *X,
             const float *xpad, int64_t g0, int64_t g1, int tail, float *Y, int first, int ol) {
    const int NA = N == 1 ? 4 : (N == 2 ? 2 : 1);
    const uint64_t gb = bits == 2 ? 16 : 32;
    const int64_t cols = m->cols, rows = m->rows;
    const uint8_t *p0 = m->idx + (uint64_t)r * m->row_bytes;
    const uint8_t *p1 = p0 + m->row_bytes;
    __m512 tb0 = load_table(m, bits, r);
    __m512 tb1 = NR == 2 ? load_table(m, bits, r + 1) : tb0;
    __m512 acc0[16], acc1[16];
#pragma GCC unroll 16
    for (int a = 0; a < N * NA; a++) {
        acc0[a] = _mm512_setzero_ps();
        acc1[a] = _mm512_setzero_ps();
    }
    /* Software prefetch of the same group PF_ROWS rows below: the data the
     * next tiles will read. Measured: without it one thread streamed 2-bit
     * weights at ~7.5 GB/s (too few misses in flight: 16 bytes of index feed
     * 64 columns of work), with it ~16 GB/s. */
    const uint64_t pf = PF_ROWS * m->row_bytes;
    if (!GS) {
        for (int64_t g = g0; g < g1; g++) {
            _mm_prefetch((const char *)(p0 + (uint64_t)g * gb + pf), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(p1 + (uint64_t)g * gb + pf), _MM_HINT_T0);
            group_step(bits, NR, N, NA, p0, p1, g, tb0, tb1, X + g * OPC_CB_GROUP, cols, acc0,
                       acc1);
        }
        if (tail) /* zero-padded copy of the last partial group, stride 64 */
            group_step(bits, NR, N, NA, p0, p1, g1, tb0, tb1, xpad, OPC_CB_GROUP, acc0, acc1);
    } else {
        const int64_t ng = opc_cb_groups(cols);
        const uint8_t *q0 = m->gscale + (uint64_t)r * (uint64_t)ng; /* (ng) scale bytes */
        const uint8_t *q1 = q0 + ng;
        /* the scale bytes PF_ROWS rows below, like the indices: their row
         * stride is not the index stream's, and without this a 14336-column
         * decode waited on them (2.4x slower than unscaled, measured) */
        for (int64_t g = g0; g < g1 + (tail ? 1 : 0); g += 64) {
            _mm_prefetch((const char *)(q0 + PF_ROWS * ng + g), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(q1 + PF_ROWS * ng + g), _MM_HINT_T0);
        }
        {
            const int64_t ge = g1 + (tail ? 1 : 0) - 1; /* last group: maybe another line */
            _mm_prefetch((const char *)(q0 + PF_ROWS * ng + ge), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(q1 + PF_ROWS * ng + ge), _MM_HINT_T0);
        }
        for (int64_t gc = g0; gc < g1; gc += GS_CHUNK) {
            int64_t ge = gc + GS_CHUNK < g1 ? gc + GS_CHUNK : g1;
            /* all scales of this stretch first: their stores have retired
             * long before the broadcasts read them back (reading each right
             * after its 64-byte store measured ~15% slower per group) */
            _Alignas(64) float s0[GS_CHUNK], s1[GS_CHUNK];
            for (int64_t g = gc; g < ge; g += 16) {
                _mm512_store_ps(s0 + (g - gc), group_scales(q0 + g, ge - g));
                if (NR == 2) _mm512_store_ps(s1 + (g - gc), group_scales(q1 + g, ge - g));
            }
            for (int64_t g = gc; g < ge; g++) {
                _mm_prefetch((const char *)(p0 + (uint64_t)g * gb + pf), _MM_HINT_T0);
                if (NR == 2)
                    _mm_prefetch((const char *)(p1 + (uint64_t)g * gb + pf), _MM_HINT_T0);
                __m512 t0 = _mm512_mul_ps(tb0, _mm512_set1_ps(s0[g - gc]));
                __m512 t1 = NR == 2 ? _mm512_mul_ps(tb1, _mm512_set1_ps(s1[g - gc])) : t0;
                group_step(bits, NR, N, NA, p0, p1, g, t0, t1, X + g * OPC_CB_GROUP, cols, acc0,
                           acc1);
            }
        }
        if (tail) {
            __m512 t0 = _mm512_mul_ps(tb0, _mm512_set1_ps(opc_cb_scale(q0[g1])));
            __m512 t1 = NR == 2 ? _mm512_mul_ps(tb1, _mm512_set1_ps(opc_cb_scale(q1[g1]))) : t0;
            group_step(bits, NR, N, NA, p0, p1, g1, t0, t1, xpad, OPC_CB_GROUP, acc0, acc1);
        }
    }
    /* Decode: fuse the sparse outliers into the accumulators (one pass
     * over the row, no second reduction); X is the whole activation row. */
    if (N == 1 && ol) {
        acc0[1] = outliers_into(m, r, X, acc0[1]);
        if (NR == 2) acc1[1] = outliers_into(m, r + 1, X, acc1[1]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        __m512 s0 = acc0[t * NA], s1 = acc1[t * NA];
#pragma GCC unroll 4
        for (int a = 1; a < NA; a++) {
            s0 = _mm512_add_ps(s0, acc0[t * NA + a]);
            s1 = _mm512_add_ps(s1, acc1[t * NA + a]);
        }
        float *y = Y + t * rows + r;
        float v0 = _mm512_reduce_add_ps(s0);
        y[0] = first ? v0 : y[0] + v0;
        if (NR == 2) {
            float v1 = _mm512_reduce_add_ps(s1);
            y[1] = first ? v1 : y[1] + v1;
        }
    }
}

/* Expand (bits, NR, N) into constants so each tile is fully unrolled with
 * its accumulators in registers. */
#define TILE_CASE(B, R, NN, G)                                                          \
    case NN: tile(B, R, NN, G, m, r, X, xpad, g0, g1, tail, Y, first, ol); break;
#define TILE_SWITCH(B, R, G)                                                            \
    switch (n) {                                                                        \
        TILE_CASE(B, R, 1, G) TILE_CASE(B, R, 2, G) TILE_CASE(B, R, 3, G)               \
        TILE_CASE(B, R, 4, G) TILE_CASE(B, R, 5, G) TILE_CASE(B, R, 6, G)               \
        TILE_CASE(B, R, 7, G) TILE_CASE(B, R, 8, G)                                     \
    default: break;                                                                     \
    }

static void tile_dispatch(int bits, int nr, int n, const opc_cb_matrix *m, int64_t r,
                          const float *X, const float *xpad, int64_t g0, int64_t g1, int tail,
                          float *Y, int first, int ol) {
    if (m->gscale) {
        if (bits == 2) {
            if (nr == 2) {
                TILE_SWITCH(2, 2, 1)
            } else {
                TILE_SWITCH(2, 1, 1)
            }
        } else {
            if (nr == 2) {
                TILE_SWITCH(4, 2, 1)
            } else {
                TILE_SWITCH(4, 1, 1)
            }
        }
        return;
    }
    if (bits == 2) {
        if (nr == 2) {
            TILE_SWITCH(2, 2, 0)
        } else {
            TILE_SWITCH(2, 1, 0)
        }
    } else {
        if (nr == 2) {
            TILE_SWITCH(4, 2, 0)
        } else {
            TILE_SWITCH(4, 1, 0)
        }
    }
}

void opc_cb_rows_avx512(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                        int64_t r1) {
    const int64_t cols = m->cols;
    const int64_t nfull = cols / OPC_CB_GROUP;
    const int64_t rem = cols % OPC_CB_GROUP;
    /* Zero-padded copy of the last partial group for a block of tokens, so
     * padding columns (index 0) meet activation 0 and nothing reads past X. */
    _Alignas(64) float xpad[OPC_CB_TBLOCK * OPC_CB_GROUP];
    for (int64_t tb = 0; tb < T; tb += OPC_CB_TBLOCK) {
        int64_t nb = T - tb < OPC_CB_TBLOCK ? T - tb : OPC_CB_TBLOCK;
        const float *Xb = X + tb * cols;
        float *Yb = Y + tb * m->rows;
        if (rem) {
            for (int64_t t = 0; t < nb; t++) {
                memset(xpad + t * OPC_CB_GROUP, 0, sizeof(float) * OPC_CB_GROUP);
                memcpy(xpad + t * OPC_CB_GROUP, Xb + t * cols + nfull * OPC_CB_GROUP,
                       sizeof(float) * (size_t)rem);
            }
        }
        /* Column chunk: keep nb tokens x chunk columns of X within ~256 KiB (L2). */
        int64_t chunk =
            nb == 1 ? GEMV_CHUNK / OPC_CB_GROUP : (XCHUNK_BYTES / 4 / nb) / OPC_CB_GROUP;
        if (chunk < 1) chunk = 1;
        /* Several token tiles: token tiles outside, row pairs inside, so a
         * tile's activations (8 x chunk floats) stay in L1 while the rows
         * stream by (rows outside re-read every token's activations from L2
         * for each row pair, 256 bytes per 16 bytes of weights: measured 3.4
         * cycles per 64 weights and token at T = 64 against 2.1-2.6 at T = 8).
         * The rows then go in slabs whose packed chunk (slab x chunk groups)
         * fits OPC_CB_WCHUNK_BYTES of L2, since every token tile re-reads it. */
        const int64_t slab = opc_cb_row_slab(nb, chunk, m->bits, r1 - r0);
        for (int64_t s0 = r0; s0 < r1; s0 += slab) {
            const int64_t s1 = s0 + slab < r1 ? s0 + slab : r1;
            for (int64_t g0 = 0; g0 < nfull || (g0 == 0 && rem); g0 += chunk) {
                int64_t g1 = g0 + chunk < nfull ? g0 + chunk : nfull;
                int tail = rem && g1 == nfull;
                int first = g0 == 0;
                /* decode adds the outliers inside the first chunk's tiles */
                int ol = T == 1 && first && m->n_outliers > 0;
                for (int64_t t0 = 0; t0 < nb; t0 += OPC_CB_TTILE) {
                    int n = (int)(nb - t0 < OPC_CB_TTILE ? nb - t0 : OPC_CB_TTILE);
                    for (int64_t r = s0; r < s1; r += 2) {
                        int nr = r + 1 < s1 ? 2 : 1;
                        tile_dispatch(m->bits, nr, n, m, r, Xb + t0 * cols,
                                      xpad + t0 * OPC_CB_GROUP, g0, g1, tail, Yb + t0 * m->rows,
                                      first, ol);
                    }
                }
                if (g1 >= nfull) break;
            }
        }
    }
    if (T > 1 && m->n_outliers) opc_cb_outliers_avx512(m, X, T, Y, r0, r1);
}

/* Sparse outliers for rows [r0, r1) of a batch: Y[t][r] += the row's
 * deltas times X[t] (prefill and the int8 kernel; decode fuses them into the
 * tiles). With ~6 outliers per 576-column row the per-(row, token) overhead,
 * not the multiply-adds, is the cost (a 512-token SmolLM2 prefill first spent
 * as long here as in the matmul), so:
 *   - tokens go in blocks of OL_TBLOCK = 16, transposed into xt (cols, 16):
 *     one outlier is then one 16-token FMA, x[t][col] for all 16 tokens in
 *     one load, and the block (16 x cols floats) stays in L1/L2 while every
 *     row's outliers visit it;
 *   - wider matrices (xt over OL_XT_FLOATS) and the last partial block use
 *     a scalar loop with the deltas converted once per row. */
#define OL_TBLOCK 16
#define OL_XT_FLOATS (16 * 2048) /* 128 KiB of stack */
#define OL_CHUNK 256

static void outliers_scalar_rows(const opc_cb_matrix *m, const float *X, int64_t t0, int64_t t1,
                                 float *Y, int64_t r0, int64_t r1) {
    _Alignas(64) float v[OL_CHUNK];
    for (int64_t r = r0; r < r1; r++) {
        const uint32_t a = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
        for (uint32_t i0 = a; i0 < b; i0 += OL_CHUNK) {
            const uint32_t n = b - i0 < OL_CHUNK ? b - i0 : OL_CHUNK;
            const uint16_t *oc = m->ol_col + i0; /* (n) columns */
            for (uint32_t i = 0; i < n; i += 16) {
                __mmask16 mk = (__mmask16)(n - i >= 16 ? 0xffffu : (1u << (n - i)) - 1u);
                __m256i h = _mm256_maskz_loadu_epi16(mk, m->ol_val + i0 + i);
                _mm512_store_ps(v + i, _mm512_cvtph_ps(h));
            }
            for (int64_t t = t0; t < t1; t++) {
                Y[t * m->rows + r] += opc_ol_chunk_dot(v, oc, n, X + t * m->cols);
            }
        }
    }
}

void opc_cb_outliers_avx512(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                            int64_t r0, int64_t r1) {
    const int64_t cols = m->cols, rows = m->rows;
    int64_t t0 = 0;
    if (cols * OL_TBLOCK <= OL_XT_FLOATS) {
        _Alignas(64) float xt[OL_XT_FLOATS];
        const __m512i vstride = _mm512_mullo_epi32(
            _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
            _mm512_set1_epi32((int)cols));
        for (; t0 + OL_TBLOCK <= T; t0 += OL_TBLOCK) {
            /* xt[c][t] = X[t0 + t][c]: 16 strided loads per column */
            const float *xb = X + t0 * cols;
            for (int64_t c = 0; c < cols; c++)
                _mm512_store_ps(xt + c * OL_TBLOCK, _mm512_i32gather_ps(vstride, xb + c, 4));
            for (int64_t r = r0; r < r1; r++) {
                const uint32_t a = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
                if (a == b) continue;
                __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
                uint32_t i = a;
                for (; i + 2 <= b; i += 2) {
                    acc0 = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(m->ol_val[i])),
                                           _mm512_load_ps(xt + m->ol_col[i] * OL_TBLOCK), acc0);
                    acc1 = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(m->ol_val[i + 1])),
                                           _mm512_load_ps(xt + m->ol_col[i + 1] * OL_TBLOCK), acc1);
                }
                if (i < b)
                    acc0 = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(m->ol_val[i])),
                                           _mm512_load_ps(xt + m->ol_col[i] * OL_TBLOCK), acc0);
                _Alignas(64) float s[OL_TBLOCK];
                _mm512_store_ps(s, _mm512_add_ps(acc0, acc1));
                for (int t = 0; t < OL_TBLOCK; t++) Y[(t0 + t) * rows + r] += s[t];
            }
        }
    }
    if (t0 < T) outliers_scalar_rows(m, X, t0, T, Y, r0, r1);
}
