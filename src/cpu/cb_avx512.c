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

/* acc += the row's sparse outliers times x. Scalar loads + F16C, four
 * independent sums: measured faster than 16-wide vgatherdps here (1% outliers
 * on 4096 columns: gathers added ~50% to a decode GEMV, this ~25%). */
AI __m512 outliers_into(const opc_cb_matrix *m, int64_t r, const float *x, __m512 acc) {
    uint32_t i = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
    const uint16_t *oc = m->ol_col, *ov = m->ol_val;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (; i + 4 <= b; i += 4) {
        s0 += _cvtsh_ss(ov[i]) * x[oc[i]];
        s1 += _cvtsh_ss(ov[i + 1]) * x[oc[i + 1]];
        s2 += _cvtsh_ss(ov[i + 2]) * x[oc[i + 2]];
        s3 += _cvtsh_ss(ov[i + 3]) * x[oc[i + 3]];
    }
    for (; i < b; i++) s0 += _cvtsh_ss(ov[i]) * x[oc[i]];
    /* lanes 0-3 of acc take the four partial sums */
    return _mm512_add_ps(acc, _mm512_castps128_ps512(_mm_set_ps(s3, s2, s1, s0)));
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
 * or added to Y. */
AI void tile(int bits, int NR, int N, const opc_cb_matrix *m, int64_t r, const float *X,
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
    for (int64_t g = g0; g < g1; g++) {
        _mm_prefetch((const char *)(p0 + (uint64_t)g * gb + pf), _MM_HINT_T0);
        if (NR == 2) _mm_prefetch((const char *)(p1 + (uint64_t)g * gb + pf), _MM_HINT_T0);
        group_step(bits, NR, N, NA, p0, p1, g, tb0, tb1, X + g * OPC_CB_GROUP, cols, acc0, acc1);
    }
    if (tail) /* zero-padded copy of the last partial group, stride 64 */
        group_step(bits, NR, N, NA, p0, p1, g1, tb0, tb1, xpad, OPC_CB_GROUP, acc0, acc1);
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
#define TILE_CASE(B, R, NN)                                                             \
    case NN: tile(B, R, NN, m, r, X, xpad, g0, g1, tail, Y, first, ol); break;
#define TILE_SWITCH(B, R)                                                               \
    switch (n) {                                                                        \
        TILE_CASE(B, R, 1) TILE_CASE(B, R, 2) TILE_CASE(B, R, 3) TILE_CASE(B, R, 4)     \
        TILE_CASE(B, R, 5) TILE_CASE(B, R, 6) TILE_CASE(B, R, 7) TILE_CASE(B, R, 8)     \
    default: break;                                                                     \
    }

static void tile_dispatch(int bits, int nr, int n, const opc_cb_matrix *m, int64_t r,
                          const float *X, const float *xpad, int64_t g0, int64_t g1, int tail,
                          float *Y, int first, int ol) {
    if (bits == 2) {
        if (nr == 2) {
            TILE_SWITCH(2, 2)
        } else {
            TILE_SWITCH(2, 1)
        }
    } else {
        if (nr == 2) {
            TILE_SWITCH(4, 2)
        } else {
            TILE_SWITCH(4, 1)
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
        for (int64_t g0 = 0; g0 < nfull || (g0 == 0 && rem); g0 += chunk) {
            int64_t g1 = g0 + chunk < nfull ? g0 + chunk : nfull;
            int tail = rem && g1 == nfull;
            int first = g0 == 0;
            /* decode adds the outliers inside the first chunk's tiles */
            int ol = T == 1 && first && m->n_outliers > 0;
            for (int64_t r = r0; r < r1; r += 2) {
                int nr = r + 1 < r1 ? 2 : 1;
                for (int64_t t0 = 0; t0 < nb; t0 += OPC_CB_TTILE) {
                    int n = (int)(nb - t0 < OPC_CB_TTILE ? nb - t0 : OPC_CB_TTILE);
                    tile_dispatch(m->bits, nr, n, m, r, Xb + t0 * cols, xpad + t0 * OPC_CB_GROUP,
                                  g0, g1, tail, Yb + t0 * m->rows, first, ol);
                }
            }
            if (g1 >= nfull) break;
        }
    }
    if (T > 1 && m->n_outliers) opc_cb_outliers_avx512(m, X, T, Y, r0, r1);
}

/* Sparse outliers for rows [r0, r1) of a batch: Y[t][r] += the row's
 * deltas times X[t] (prefill; decode fuses them into the tiles). */
void opc_cb_outliers_avx512(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                            int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        if (m->ol_rowptr[r] == m->ol_rowptr[r + 1]) continue;
        for (int64_t t = 0; t < T; t++)
            Y[t * m->rows + r] +=
                _mm512_reduce_add_ps(outliers_into(m, r, X + t * m->cols, _mm512_setzero_ps()));
    }
}
