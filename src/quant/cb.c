/*
 * cb.c — scalar reference for codebook matrices (the spec; see cb.h).
 */
#include "cb.h"

#include "../core/half.h"

#include <math.h>

opc_status opc_cb_validate(const opc_cb_matrix *m, const char *what) {
    if (m->rows <= 0 || m->cols <= 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: codebook matrix has shape (%lld, %lld)", what,
                         (long long)m->rows, (long long)m->cols);
    if (m->bits != 2 && m->bits != 4)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: codebook index width %d (expected 2 or 4)",
                         what, m->bits);
    if (m->k < 1 || m->k > (1 << m->bits))
        return opc_error(OPC_ERR_CORRUPT, "%s: codebook size %d does not fit %d-bit indices",
                         what, m->k, m->bits);
    if (m->row_bytes != opc_cb_row_bytes(m->bits, m->cols))
        return opc_error(OPC_ERR_CORRUPT, "%s: row stride %llu, expected %llu", what,
                         (unsigned long long)m->row_bytes,
                         (unsigned long long)opc_cb_row_bytes(m->bits, m->cols));
    if (!m->idx || !m->codebook)
        return opc_error(OPC_ERR_CORRUPT, "%s: missing index or codebook data", what);
    if (m->rot_log2 < 0 || m->rot_log2 > OPC_CB_ROT_MAX_LOG2 ||
        m->cols % ((int64_t)1 << m->rot_log2) != 0)
        return opc_error(OPC_ERR_CORRUPT,
                         "%s: rotation block 2^%d does not divide %lld columns (max 2^%d)", what,
                         m->rot_log2, (long long)m->cols, OPC_CB_ROT_MAX_LOG2);
    if (m->n_outliers > 0) {
        if (m->cols > 65535)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: outliers need cols <= 65535 (got %lld)",
                             what, (long long)m->cols);
        if (!m->ol_rowptr || !m->ol_col || !m->ol_val)
            return opc_error(OPC_ERR_CORRUPT, "%s: missing outlier arrays", what);
        if (m->ol_rowptr[0] != 0 || m->ol_rowptr[m->rows] != m->n_outliers)
            return opc_error(OPC_ERR_CORRUPT, "%s: outlier row pointers do not span 0..%llu",
                             what, (unsigned long long)m->n_outliers);
        for (int64_t r = 0; r < m->rows; r++) {
            uint32_t a = m->ol_rowptr[r], b = m->ol_rowptr[r + 1];
            if (b < a || b > m->n_outliers)
                return opc_error(OPC_ERR_CORRUPT, "%s: outlier row pointer %lld not monotone",
                                 what, (long long)r);
            for (uint32_t i = a; i < b; i++) {
                if (m->ol_col[i] >= m->cols || (i > a && m->ol_col[i] <= m->ol_col[i - 1]))
                    return opc_error(OPC_ERR_CORRUPT,
                                     "%s: outlier %u in row %lld: column %u out of range or "
                                     "not increasing",
                                     what, i, (long long)r, m->ol_col[i]);
            }
        }
    }
    return OPC_OK;
}

void opc_cb_dequant_row_ref(const opc_cb_matrix *m, int64_t r, float *dst) {
    const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
    const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
    float table[16];
    for (int32_t i = 0; i < m->k; i++) table[i] = opc_fp16_to_fp32(cb[i]);
    for (int32_t i = m->k; i < 16; i++) table[i] = 0.0f; /* unreachable for valid data */
    const uint8_t *gs = m->gscale ? m->gscale + (uint64_t)r * (uint64_t)opc_cb_groups(m->cols) : NULL;
    for (int64_t c = 0; c < m->cols; c++) {
        float v = table[opc_cb_get_index(row, m->bits, c)];
        dst[c] = gs ? opc_cb_scale(gs[c / OPC_CB_GROUP]) * v : v;
    }
    if (m->n_outliers) {
        for (uint32_t i = m->ol_rowptr[r]; i < m->ol_rowptr[r + 1]; i++)
            dst[m->ol_col[i]] += opc_fp16_to_fp32(m->ol_val[i]);
    }
}

void opc_cb_gemv_ref(const opc_cb_matrix *m, const float *x, float *y) {
    for (int64_t r = 0; r < m->rows; r++) {
        const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
        const uint16_t *cb = m->codebook + (uint64_t)r * (uint64_t)m->k;
        /* Sum activations per codebook entry, then one multiply per entry:
         * k multiplies per row instead of cols. Accumulate in double so the
         * reference is the most accurate thing in the project. */
        double acc = 0.0;
        if (!m->gscale) {
            double part[16] = {0};
            for (int64_t c = 0; c < m->cols; c++) part[opc_cb_get_index(row, m->bits, c)] += x[c];
            for (int32_t i = 0; i < m->k; i++) acc += part[i] * (double)opc_fp16_to_fp32(cb[i]);
        } else {
            /* Same per entry sums, once per 64-column group, then the group's scale. */
            const int64_t ng = opc_cb_groups(m->cols);
            const uint8_t *gs = m->gscale + (uint64_t)r * (uint64_t)ng;
            for (int64_t g = 0; g < ng; g++) {
                double part[16] = {0}, gacc = 0.0;
                int64_t c1 = (g + 1) * OPC_CB_GROUP < m->cols ? (g + 1) * OPC_CB_GROUP : m->cols;
                for (int64_t c = g * OPC_CB_GROUP; c < c1; c++)
                    part[opc_cb_get_index(row, m->bits, c)] += x[c];
                for (int32_t i = 0; i < m->k; i++) gacc += part[i] * (double)opc_fp16_to_fp32(cb[i]);
                acc += gacc * (double)opc_cb_scale(gs[g]);
            }
        }
        if (m->n_outliers) {
            for (uint32_t i = m->ol_rowptr[r]; i < m->ol_rowptr[r + 1]; i++)
                acc += (double)opc_fp16_to_fp32(m->ol_val[i]) * (double)x[m->ol_col[i]];
        }
        y[r] = (float)acc;
    }
}

/* x[c] *= opc_cb_rot_sign(c) for all c, one hash per 64 columns. */
static void apply_signs(float *x, int64_t n) {
    for (int64_t c0 = 0; c0 < n; c0 += 64) {
        const uint64_t z = opc_cb_rot_sign_word(c0 >> 6);
        for (int64_t c = c0; c < n && c < c0 + 64; c++)
            if ((z >> (c & 63)) & 1u) x[c] = -x[c];
    }
}

/* Normalized blockwise Walsh-Hadamard transform, in place (its own inverse). */
static void fwht_blocks(float *x, int64_t n, int32_t rot_log2) {
    const int64_t b = (int64_t)1 << rot_log2;
    const float norm = 1.0f / sqrtf((float)b);
    for (int64_t base = 0; base + b <= n; base += b) {
        float *v = x + base;
        /* In-place radix-2 butterflies: after the pass with stride h, v holds
         * the transform over index bits below 2h. */
        for (int64_t h = 1; h < b; h *= 2)
            for (int64_t i = 0; i < b; i += 2 * h)
                for (int64_t j = i; j < i + h; j++) {
                    float a = v[j], d = v[j + h];
                    v[j] = a + d;
                    v[j + h] = a - d;
                }
        for (int64_t i = 0; i < b; i++) v[i] *= norm;
    }
}

void opc_cb_rotate(float *x, int64_t n, int32_t rot_log2) {
    if (rot_log2 <= 0) return;
    apply_signs(x, n);
    fwht_blocks(x, n, rot_log2);
}

void opc_cb_unrotate(float *x, int64_t n, int32_t rot_log2) {
    if (rot_log2 <= 0) return;
    fwht_blocks(x, n, rot_log2);
    apply_signs(x, n);
}
