/*
 * cb_avx2.c — codebook matmul rows for AVX2 + FMA + F16C.
 * Compiled with -mavx2 -mfma -mf16c (CMakeLists.txt, by file name); called
 * only when opc_cpu_has_avx2().
 *
 * Same scheme as cb_avx512.c with 8-lane registers:
 *   - 2-bit (k <= 4): table lane l = cb[l & 3]; vpermps reads the low 3 bits,
 *     so shifted index bytes need no AND;
 *   - 4-bit (k <= 16): two 8-entry tables, two vpermps and a blend on index
 *     bit 3 (moved to the sign bit by a shift of 28);
 *   - only 16 YMM registers: a group is dequantized in halves of 32 columns
 *     (4 vectors) so a tile of 8 tokens (8 accumulators) plus 4 weights, the
 *     table and one activation fit; decode (1 token) runs 2 rows x 4 chains.
 */
#include "cpu.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
/* Same prefetch distance and decode column chunk as cb_avx512.c. */
#define PF_ROWS 8
#define GEMV_CHUNK 4096

/* Row r's codebook as fp32: lo = entries 0..7, hi = 8..15 (4-bit only);
 * 2-bit tables are replicated (lane l = cb[l & 3]). Entries >= k are 0. */
AI void load_table(const opc_cb_matrix *m, int bits, int64_t r, __m256 *lo, __m256 *hi) {
    const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
    _Alignas(32) uint16_t h[16] = {0};
    memcpy(h, cb, sizeof(uint16_t) * (size_t)m->k);
    if (bits == 2) {
        for (int i = 4; i < 8; i++) h[i] = h[i & 3];
        *lo = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)h));
        *hi = *lo;
    } else {
        *lo = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)h));
        *hi = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(h + 8)));
    }
}

AI __m256i load8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

AI __m256 lut4(__m256i i, __m256 lo, __m256 hi) {
    __m256 a = _mm256_permutevar8x32_ps(lo, i);
    __m256 b = _mm256_permutevar8x32_ps(hi, i);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
}

/* Dequantize half h (0/1) of a packed 64-column group: w[v] = columns
 * 32h + 8v .. 32h + 8v + 7. */
AI void deq_half(int bits, const uint8_t *g, int h, __m256 lo, __m256 hi, __m256 w[4]) {
    if (bits == 2) {
        /* bytes 0-7 / 8-15 hold columns i and i+8 of each 16-column slice;
         * slice s sits in bit pair s: half h covers slices 2h and 2h+1 */
        __m256i a = load8(g), b = load8(g + 8);
        int s = 4 * h;
        w[0] = _mm256_permutevar8x32_ps(lo, _mm256_srli_epi32(a, s));
        w[1] = _mm256_permutevar8x32_ps(lo, _mm256_srli_epi32(b, s));
        w[2] = _mm256_permutevar8x32_ps(lo, _mm256_srli_epi32(a, s + 2));
        w[3] = _mm256_permutevar8x32_ps(lo, _mm256_srli_epi32(b, s + 2));
    } else {
        /* byte i: column i low nibble, column 32+i high nibble */
        int s = 4 * h;
        for (int v = 0; v < 4; v++) w[v] = lut4(_mm256_srli_epi32(load8(g + 8 * v), s), lo, hi);
    }
}

AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* NR rows x N tokens over groups [g0, g1) (+ padded tail group); see the
 * AVX-512 file for the shape of the computation. GS: group scales (cb.h),
 * applied like there by scaling the row's table once per group (1-2 vmulps
 * per group and row, shared by both halves and all tokens). */
AI void tile(int bits, int NR, int N, int GS, const opc_cb_matrix *m, int64_t r, const float *X,
             const float *xpad, int64_t g0, int64_t g1, int tail, float *Y, int first) {
    const int NA = N == 1 ? 4 : (N == 2 ? 2 : 1);
    const uint64_t gb = bits == 2 ? 16 : 32;
    const int64_t cols = m->cols, rows = m->rows;
    const uint8_t *p0 = m->idx + (uint64_t)r * m->row_bytes;
    const uint8_t *p1 = p0 + m->row_bytes;
    __m256 lo0, hi0, lo1 = _mm256_setzero_ps(), hi1 = _mm256_setzero_ps();
    load_table(m, bits, r, &lo0, &hi0);
    if (NR == 2) load_table(m, bits, r + 1, &lo1, &hi1);
    __m256 acc0[8], acc1[8];
#pragma GCC unroll 8
    for (int a = 0; a < N * NA; a++) {
        acc0[a] = _mm256_setzero_ps();
        acc1[a] = _mm256_setzero_ps();
    }
    const int64_t ng = opc_cb_groups(cols);
    /* (ng) scale bytes of rows r and r + 1 (GS only) */
    const uint8_t *q0 = GS ? m->gscale + (uint64_t)r * (uint64_t)ng : NULL;
    const uint8_t *q1 = GS ? q0 + ng : NULL;
    int64_t gend = g1 + (tail ? 1 : 0);
    if (GS) /* the scale bytes PF_ROWS rows below (see cb_avx512.c) */
        for (int64_t g = g0; g < gend + 63; g += 64) {
            int64_t gp = g < gend ? g : gend - 1;
            _mm_prefetch((const char *)(q0 + PF_ROWS * ng + gp), _MM_HINT_T0);
            if (NR == 2) _mm_prefetch((const char *)(q1 + PF_ROWS * ng + gp), _MM_HINT_T0);
        }
    for (int64_t g = g0; g < gend; g++) {
        int is_tail = g == g1;
        __m256 l0 = lo0, h0 = hi0, l1 = lo1, h1 = hi1;
        if (GS) {
            __m256 s0 = _mm256_set1_ps(opc_cb_scale(q0[g]));
            l0 = _mm256_mul_ps(lo0, s0);
            h0 = bits == 2 ? l0 : _mm256_mul_ps(hi0, s0);
            if (NR == 2) {
                __m256 s1 = _mm256_set1_ps(opc_cb_scale(q1[g]));
                l1 = _mm256_mul_ps(lo1, s1);
                h1 = bits == 2 ? l1 : _mm256_mul_ps(hi1, s1);
            }
        }
        _mm_prefetch((const char *)(p0 + (uint64_t)g * gb + PF_ROWS * m->row_bytes), _MM_HINT_T0);
        if (NR == 2)
            _mm_prefetch((const char *)(p1 + (uint64_t)g * gb + PF_ROWS * m->row_bytes),
                         _MM_HINT_T0);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 w0[4], w1[4];
            deq_half(bits, p0 + (uint64_t)g * gb, h, l0, h0, w0);
            if (NR == 2) deq_half(bits, p1 + (uint64_t)g * gb, h, l1, h1, w1);
#pragma GCC unroll 8
            for (int t = 0; t < N; t++) {
                const float *xt =
                    (is_tail ? xpad + t * OPC_CB_GROUP : X + t * cols + g * OPC_CB_GROUP) + 32 * h;
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) {
                    __m256 xv = _mm256_loadu_ps(xt + 8 * v);
                    int a = t * NA + (v % NA);
                    acc0[a] = _mm256_fmadd_ps(w0[v], xv, acc0[a]);
                    if (NR == 2) acc1[a] = _mm256_fmadd_ps(w1[v], xv, acc1[a]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        __m256 s0 = acc0[t * NA], s1 = acc1[t * NA];
#pragma GCC unroll 4
        for (int a = 1; a < NA; a++) {
            s0 = _mm256_add_ps(s0, acc0[t * NA + a]);
            s1 = _mm256_add_ps(s1, acc1[t * NA + a]);
        }
        float *y = Y + t * rows + r;
        float v0 = hsum(s0);
        y[0] = first ? v0 : y[0] + v0;
        if (NR == 2) {
            float v1 = hsum(s1);
            y[1] = first ? v1 : y[1] + v1;
        }
    }
}

#define TILE_CASE(B, NN)                                                                \
    case NN: tile(B, 1, NN, GS, m, rr, X, xpad, g0, g1, tail, Y, first); break;

/* Decode (1 token) takes 2 rows at a time to share activation loads and get
 * 8 FMA chains; prefill tiles take 1 row (register budget, see top). GS is a
 * compile-time switch so the unscaled tiles stay as they were. */
AI void tile_dispatch_gs(int GS, int bits, int nr, int n, const opc_cb_matrix *m, int64_t r,
                         const float *X, const float *xpad, int64_t g0, int64_t g1, int tail,
                         float *Y, int first) {
    if (n == 1 && nr == 2) {
        if (bits == 2)
            tile(2, 2, 1, GS, m, r, X, xpad, g0, g1, tail, Y, first);
        else
            tile(4, 2, 1, GS, m, r, X, xpad, g0, g1, tail, Y, first);
        return;
    }
    for (int64_t rr = r; rr < r + nr; rr++) {
        if (bits == 2) {
            switch (n) {
                TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3) TILE_CASE(2, 4)
                TILE_CASE(2, 5) TILE_CASE(2, 6) TILE_CASE(2, 7) TILE_CASE(2, 8)
            default: break;
            }
        } else {
            switch (n) {
                TILE_CASE(4, 1) TILE_CASE(4, 2) TILE_CASE(4, 3) TILE_CASE(4, 4)
                TILE_CASE(4, 5) TILE_CASE(4, 6) TILE_CASE(4, 7) TILE_CASE(4, 8)
            default: break;
            }
        }
    }
}

static void tile_dispatch(int bits, int nr, int n, const opc_cb_matrix *m, int64_t r,
                          const float *X, const float *xpad, int64_t g0, int64_t g1, int tail,
                          float *Y, int first) {
    if (m->gscale)
        tile_dispatch_gs(1, bits, nr, n, m, r, X, xpad, g0, g1, tail, Y, first);
    else
        tile_dispatch_gs(0, bits, nr, n, m, r, X, xpad, g0, g1, tail, Y, first);
}

void opc_cb_rows_avx2(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                      int64_t r1) {
    const int64_t cols = m->cols;
    const int64_t nfull = cols / OPC_CB_GROUP;
    const int64_t rem = cols % OPC_CB_GROUP;
    _Alignas(32) float xpad[OPC_CB_TBLOCK * OPC_CB_GROUP];
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
        int64_t chunk = nb == 1 ? GEMV_CHUNK / OPC_CB_GROUP : (256 * 1024 / 4 / nb) / OPC_CB_GROUP;
        if (chunk < 1) chunk = 1;
        /* Several token tiles: tiles outside, rows inside, in row slabs
         * whose packed chunk fits OPC_CB_WCHUNK_BYTES (see cb_avx512.c). */
        const int64_t slab = opc_cb_row_slab(nb, chunk, m->bits, r1 - r0);
        for (int64_t s0 = r0; s0 < r1; s0 += slab) {
            const int64_t s1 = s0 + slab < r1 ? s0 + slab : r1;
            for (int64_t g0 = 0; g0 < nfull || (g0 == 0 && rem); g0 += chunk) {
                int64_t g1 = g0 + chunk < nfull ? g0 + chunk : nfull;
                int tail = rem && g1 == nfull;
                int first = g0 == 0;
                for (int64_t t0 = 0; t0 < nb; t0 += OPC_CB_TTILE) {
                    int n = (int)(nb - t0 < OPC_CB_TTILE ? nb - t0 : OPC_CB_TTILE);
                    for (int64_t r = s0; r < s1; r += 2) {
                        int nr = r + 1 < s1 ? 2 : 1;
                        tile_dispatch(m->bits, nr, n, m, r, Xb + t0 * cols,
                                      xpad + t0 * OPC_CB_GROUP, g0, g1, tail, Yb + t0 * m->rows,
                                      first);
                    }
                }
                if (g1 >= nfull) break;
            }
        }
    }
    if (m->n_outliers) opc_cb_outliers_avx2(m, X, T, Y, r0, r1);
}

/* Sparse outliers for rows [r0, r1): scalar loads and four independent sums
 * (faster than vgatherdps; see cb_avx512.c); the deltas are converted once
 * per row, not once per token (prefill). */
#define OL_CHUNK 256
/* Tokens per pass over the rows: their activations (16 x cols floats, e.g.
 * 98 KiB at 1536 columns) stay cached while every row's outliers visit them;
 * sweeping all T tokens per row streamed X from L3 once per row. */
#define OL_TBLOCK 16
void opc_cb_outliers_avx2(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                          int64_t r0, int64_t r1) {
    _Alignas(32) float v[OL_CHUNK];
    for (int64_t t0 = 0; t0 < T; t0 += OL_TBLOCK) {
        const int64_t t1 = t0 + OL_TBLOCK < T ? t0 + OL_TBLOCK : T;
        for (int64_t r = r0; r < r1; r++) {
            const uint32_t a = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
            for (uint32_t i0 = a; i0 < b; i0 += OL_CHUNK) {
                const uint32_t n = b - i0 < OL_CHUNK ? b - i0 : OL_CHUNK;
                const uint16_t *oc = m->ol_col + i0; /* (n) columns */
                for (uint32_t i = 0; i < n; i++) v[i] = _cvtsh_ss(m->ol_val[i0 + i]);
                for (int64_t t = t0; t < t1; t++) {
                    Y[t * m->rows + r] += opc_ol_chunk_dot(v, oc, n, X + t * m->cols);
                }
            }
        }
    }
}
