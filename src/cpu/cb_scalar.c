/*
 * cb_scalar.c — portable codebook matmul rows (no intrinsics).
 *
 * The fallback for CPUs without AVX2 and the baseline the SIMD versions are
 * measured against. Unlike the reference (one pass per token, double sums),
 * it dequantizes one 64-column group into a 64-float stack buffer once per
 * tile of up to 8 tokens and runs short fp32 dot products over it, with 4
 * partial sums so the compiler may keep them in separate registers. Group
 * scales (cb.h) multiply each group's dot product once; outlier deltas are
 * added unscaled by the second pass.
 */
#include "cpu.h"

#include "../core/half.h"

/* w[0..64) = row's codebook values for group g (padding columns included:
 * the caller never multiplies them). */
static inline void deq_group(int bits, const uint8_t *grp, const float *tb, float *w) {
    if (bits == 2) {
        for (int i = 0; i < 16; i++) {
            unsigned b = grp[i];
            w[i] = tb[b & 3u];
            w[16 + i] = tb[(b >> 2) & 3u];
            w[32 + i] = tb[(b >> 4) & 3u];
            w[48 + i] = tb[b >> 6];
        }
    } else {
        for (int i = 0; i < 32; i++) {
            unsigned b = grp[i];
            w[i] = tb[b & 15u];
            w[32 + i] = tb[b >> 4];
        }
    }
}

static inline float dot(const float *w, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        s0 += w[c] * x[c];
        s1 += w[c + 1] * x[c + 1];
        s2 += w[c + 2] * x[c + 2];
        s3 += w[c + 3] * x[c + 3];
    }
    for (; c < n; c++) s0 += w[c] * x[c];
    return (s0 + s1) + (s2 + s3);
}

void opc_cb_rows_scalar(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                        int64_t r1) {
    const int64_t cols = m->cols, rows = m->rows;
    const int64_t ngroups = (cols + OPC_CB_GROUP - 1) / OPC_CB_GROUP;
    const uint64_t gb = m->bits == 2 ? 16 : 32;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
        const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
        /* (ngroups) this row's group scale bytes, or NULL */
        const uint8_t *gs = m->gscale ? m->gscale + (uint64_t)r * (uint64_t)ngroups : NULL;
        float tb[16] = {0};
        for (int32_t i = 0; i < m->k; i++) tb[i] = opc_fp16_to_fp32(cb[i]);
        for (int64_t t0 = 0; t0 < T; t0 += OPC_CB_TTILE) {
            int64_t n = T - t0 < OPC_CB_TTILE ? T - t0 : OPC_CB_TTILE;
            float acc[OPC_CB_TTILE] = {0};
            for (int64_t g = 0; g < ngroups; g++) {
                float w[OPC_CB_GROUP];
                deq_group(m->bits, row + (uint64_t)g * gb, tb, w);
                int64_t c0 = g * OPC_CB_GROUP;
                int64_t len = cols - c0 < OPC_CB_GROUP ? cols - c0 : OPC_CB_GROUP;
                if (gs) {
                    /* the group's dot products, then its scale: one multiply
                     * per group and token instead of one per weight */
                    const float s = opc_cb_scale(gs[g]);
                    for (int64_t t = 0; t < n; t++)
                        acc[t] += s * dot(w, X + (t0 + t) * cols + c0, len);
                } else {
                    for (int64_t t = 0; t < n; t++) acc[t] += dot(w, X + (t0 + t) * cols + c0, len);
                }
            }
            for (int64_t t = 0; t < n; t++) Y[(t0 + t) * rows + r] = acc[t];
        }
    }
    if (m->n_outliers) opc_cb_outliers_scalar(m, X, T, Y, r0, r1);
}

/* Second pass over rows [r0, r1): Y[t][r] += delta * X[t][col] for each
 * outlier, run right after the dense part by the same thread on the same
 * rows (their activations are still in L1). */
void opc_cb_outliers_scalar(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                            int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        uint32_t a = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
        if (a == b) continue;
        for (int64_t t = 0; t < T; t++) {
            const float *x = X + t * m->cols;
            float s = 0.0f;
            for (uint32_t i = a; i < b; i++) s += opc_fp16_to_fp32(m->ol_val[i]) * x[m->ol_col[i]];
            Y[t * m->rows + r] += s;
        }
    }
}
