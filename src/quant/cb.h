/*
 * cb.h — codebook-quantized matrices: the packed layout every kernel reads.
 *
 * A (rows, cols) weight matrix W is stored as
 *   - per row r, a codebook of k fp16 values cb[r][0..k)
 *   - per element, a b-bit index (k <= 2^b) into its row's codebook
 *   - optionally, a sparse additive correction (CSR, rows sorted, columns
 *     sorted within a row): W[r][c] = cb[r][idx[r][c]] + delta, delta in fp16.
 *     Storing the delta rather than the value makes the sparse part a pure
 *     add, so kernels can run it as a separate pass or fused epilogue.
 *
 * Index packing (decided once at quantize time, for the kernels):
 *   Each row is cut into groups of 64 columns; a row's stride is
 *   ceil(cols / 64) groups. Within a group, indices are bit-planed so that a
 *   SIMD register or a GPU thread can unpack 16 consecutive columns per
 *   shift-and-mask:
 *
 *   bits = 2 (k <= 4): a group is 16 bytes. Byte i (0..15) holds the index of
 *     column 16*j + i in bits [2j, 2j+2), j = 0..3.
 *     -> one 128-bit load gives 64 indices; (v >> 2j) & 3 gives 16 consecutive.
 *   bits = 4 (k <= 16): a group is 32 bytes. Byte i (0..31) holds column i in
 *     its low nibble and column 32 + i in its high nibble.
 *
 *   Columns past `cols` in the last group are padding: index 0, and kernels
 *   must not let them contribute (the activation is treated as 0 there).
 *
 * This header describes a view (no ownership); .bf2 stores exactly these
 * arrays so a view points straight into the file mapping.
 */
#ifndef OPC_CB_H
#define OPC_CB_H

#include "../core/core.h"

#include <stdint.h>

#define OPC_CB_GROUP 64 /* columns per packing group */

typedef struct opc_cb_matrix {
    int64_t rows, cols;
    int32_t bits;               /* index width: 2 or 4 */
    int32_t k;                  /* codebook entries per row, k <= 2^bits */
    const uint8_t *idx;         /* (rows, row_bytes) packed indices */
    uint64_t row_bytes;         /* ceil(cols/64) * 16 (bits=2) or * 32 (bits=4) */
    const uint16_t *codebook;   /* (rows, k) fp16 */
    /* sparse additive corrections, CSR; n_outliers == 0 means none */
    uint64_t n_outliers;
    const uint32_t *ol_rowptr;  /* (rows + 1), ol_rowptr[rows] == n_outliers */
    const uint16_t *ol_col;     /* (n_outliers) column within the row (cols <= 65535) */
    const uint16_t *ol_val;     /* (n_outliers) fp16 delta added to the codebook value */
} opc_cb_matrix;

/* Bytes per packed row for the given index width. */
static inline uint64_t opc_cb_row_bytes(int32_t bits, int64_t cols) {
    uint64_t groups = (uint64_t)((cols + OPC_CB_GROUP - 1) / OPC_CB_GROUP);
    return groups * (uint64_t)(bits == 2 ? 16 : 32);
}

/* Index of column c in a packed row (scalar reference). */
static inline uint32_t opc_cb_get_index(const uint8_t *row, int32_t bits, int64_t c) {
    const uint8_t *g = row + (uint64_t)(c / OPC_CB_GROUP) * (bits == 2 ? 16u : 32u);
    int64_t j = c % OPC_CB_GROUP;
    if (bits == 2) return (g[j % 16] >> (2 * (j / 16))) & 3u;
    return (g[j % 32] >> (4 * (j / 32))) & 15u;
}

/* Set the index of column c in a packed row (row must be zeroed first). */
static inline void opc_cb_set_index(uint8_t *row, int32_t bits, int64_t c, uint32_t v) {
    uint8_t *g = row + (uint64_t)(c / OPC_CB_GROUP) * (bits == 2 ? 16u : 32u);
    int64_t j = c % OPC_CB_GROUP;
    if (bits == 2)
        g[j % 16] = (uint8_t)(g[j % 16] | ((v & 3u) << (2 * (j / 16))));
    else
        g[j % 32] = (uint8_t)(g[j % 32] | ((v & 15u) << (4 * (j / 32))));
}

/* Check a view's internal consistency (sizes, CSR monotone, columns in range). */
opc_status opc_cb_validate(const opc_cb_matrix *m, const char *what);

/* Scalar reference: dequantize row r into dst (cols floats), outliers included. */
void opc_cb_dequant_row_ref(const opc_cb_matrix *m, int64_t r, float *dst);

/* Scalar reference GEMV: y[r] = sum_c W[r][c] * x[c] for r in [0, rows).
 * x: (cols), y: (rows). The specification every SIMD/CUDA kernel must match. */
void opc_cb_gemv_ref(const opc_cb_matrix *m, const float *x, float *y);

/* Y = X W^T for a batch: X (T, cols) row-major, Y (T, rows). The entry point
 * the forward pass calls for codebook weights; src/cpu/ dispatches it to the
 * fastest kernel for this CPU (the reference loops over opc_cb_gemv_ref). */
void opc_cb_matmul(const opc_cb_matrix *m, const float *X, int64_t T, float *Y);

#endif /* OPC_CB_H */
