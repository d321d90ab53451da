/*
 * cb.c — scalar reference for codebook matrices (the spec; see cb.h).
 */
#include "cb.h"

#include "../core/half.h"

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
    for (int64_t c = 0; c < m->cols; c++) dst[c] = table[opc_cb_get_index(row, m->bits, c)];
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
        double part[16] = {0};
        for (int64_t c = 0; c < m->cols; c++) part[opc_cb_get_index(row, m->bits, c)] += x[c];
        double acc = 0.0;
        for (int32_t i = 0; i < m->k; i++) acc += part[i] * (double)opc_fp16_to_fp32(cb[i]);
        if (m->n_outliers) {
            for (uint32_t i = m->ol_rowptr[r]; i < m->ol_rowptr[r + 1]; i++)
                acc += (double)opc_fp16_to_fp32(m->ol_val[i]) * (double)x[m->ol_col[i]];
        }
        y[r] = (float)acc;
    }
}
