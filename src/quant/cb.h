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
 * Optional per-group scales (gscale != NULL): one byte q per (row, 64-column
 * packing group), meaning the factor s(q) = 2^(-q/16) (opc_cb_scale; range
 * 2^-15.94 .. 1 in steps of 4.4 %). The row's codebook holds the values of
 * its largest group; every other group scales them:
 *   W[r][c] = s(gscale[r*groups + c/64]) * cb[r][idx[r][c]] + delta
 * (outlier deltas are not scaled). 8 bits per 64 weights = 0.125 bpw buys
 * per-group magnitude on top of the per-row shape of the codebook.
 *
 * Optional input rotation (rot_log2 > 0): the stored matrix is W~ = W R,
 * R orthogonal, so W x = W~ (R^T x). R^T x is opc_cb_rotate(): per block of
 * b = 2^rot_log2 columns (b divides cols), x~ = H (d * x) / sqrt(b), H the
 * Sylvester-Hadamard matrix H[i][j] = (-1)^popcount(i & j), d the fixed
 * +-1 signs of opc_cb_rot_sign(). The quantizer applies the same map to
 * each weight row (w~ = H (d * w) / sqrt(b), since H H = b I), so a rotated
 * row is quantized in place of the original. Rotation spreads a few large
 * columns over a whole block (incoherence, as in QuIP#/QuaRot), which a
 * 4-entry codebook fits far better. Kernels never rotate: the caller passes
 * x~ (the forward pass keeps one rotated copy per distinct input).
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
    const uint8_t *gscale;      /* (rows, ceil(cols/64)) group scale bytes, or NULL = none */
    int32_t rot_log2;           /* 0 = none; else inputs are rotated in blocks of 2^rot_log2 */
} opc_cb_matrix;

#define OPC_CB_ROT_MAX_LOG2 15 /* largest rotation block: 32768 columns */

/* Number of 64-column groups per row (= entries per row of gscale). */
static inline int64_t opc_cb_groups(int64_t cols) { return (cols + OPC_CB_GROUP - 1) / OPC_CB_GROUP; }

/* s(q) = 2^(-q/16), exact: the fp32 nearest 2^(-(q%16)/16), scaled by 2^-(q/16). */
static inline float opc_cb_scale(uint8_t q) {
    static const float mant[16] = {
        0x1.000000p+0f, 0x1.ea4afap-1f, 0x1.d5818ep-1f, 0x1.c199bep-1f,
        0x1.ae89fap-1f, 0x1.9c4918p-1f, 0x1.8ace54p-1f, 0x1.7a1148p-1f,
        0x1.6a09e6p-1f, 0x1.5ab07ep-1f, 0x1.4bfdaep-1f, 0x1.3dea64p-1f,
        0x1.306fe0p-1f, 0x1.2387a6p-1f, 0x1.172b84p-1f, 0x1.0b5586p-1f,
    };
    union { uint32_t u; float f; } e = {.u = (uint32_t)(127 - (q >> 4)) << 23};
    return mant[q & 15] * e.f; /* exact: a power of two times a float */
}

#ifdef __CUDACC__
#define OPC_CB_HD __host__ __device__ /* the GPU kernels share these definitions */
#else
#define OPC_CB_HD
#endif

/* The rotation signs of the 64 columns of group g = c / 64 as a bit mask
 * (bit c % 64 set = column c is negated): splitmix64 of g + 1. Independent
 * of the block size, so every matrix with the same input width and block
 * shares one rotated input. */
static inline OPC_CB_HD uint64_t opc_cb_rot_sign_word(int64_t g) {
    uint64_t z = ((uint64_t)g + 1u) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The fixed sign of column c for rotations: +1 or -1. */
static inline float opc_cb_rot_sign(int64_t c) {
    return ((opc_cb_rot_sign_word(c >> 6) >> (c & 63)) & 1u) ? -1.0f : 1.0f;
}

/* x~ = R^T x for one vector of n = cols values (n a multiple of 2^rot_log2),
 * in place: per block, multiply by the signs, fast Walsh-Hadamard transform,
 * scale by 1/sqrt(b). rot_log2 == 0 leaves x unchanged. Also used by the
 * quantizer on weight rows (the map is its own transpose up to the signs,
 * see above). O(n log b). */
void opc_cb_rotate(float *x, int64_t n, int32_t rot_log2);

/* The inverse map, x = R x~ (transform first, then the signs): turns a row of
 * a rotated matrix back into the original basis (an embedding lookup, or a
 * check that rotation round-trips). */
void opc_cb_unrotate(float *x, int64_t n, int32_t rot_log2);

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

/* Scalar reference: dequantize row r into dst (cols floats), group scales and
 * outliers included; in the stored (rotated, if rot_log2 > 0) basis. */
void opc_cb_dequant_row_ref(const opc_cb_matrix *m, int64_t r, float *dst);

/* Scalar reference GEMV: y[r] = sum_c W[r][c] * x[c] for r in [0, rows).
 * x: (cols), y: (rows). The specification every SIMD/CUDA kernel must match.
 * W is the stored matrix: for a rotated one pass x~ = opc_cb_rotate(x). */
void opc_cb_gemv_ref(const opc_cb_matrix *m, const float *x, float *y);

/* Y = X W^T for a batch: X (T, cols) row-major, Y (T, rows). The entry point
 * the forward pass calls for codebook weights; src/cpu/ dispatches it to the
 * fastest kernel for this CPU (the reference loops over opc_cb_gemv_ref).
 * Like every kernel it takes X already rotated when m->rot_log2 > 0. */
void opc_cb_matmul(const opc_cb_matrix *m, const float *X, int64_t T, float *Y);

#endif /* OPC_CB_H */
