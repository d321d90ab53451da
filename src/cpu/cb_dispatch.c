/*
 * cb_dispatch.c — runtime choice of the codebook matmul kernel.
 * Until the SIMD kernels land this is the scalar reference, one row of X at a
 * time (correct, slow).
 */
#include "../quant/cb.h"

#include <stdlib.h>

void opc_cb_matmul(const opc_cb_matrix *m, const float *X, int64_t T, float *Y) {
    float *y = malloc((size_t)m->rows * sizeof *y);
    OPC_ASSERT(y != NULL);
    for (int64_t t = 0; t < T; t++) {
        opc_cb_gemv_ref(m, X + t * m->cols, y);
        for (int64_t r = 0; r < m->rows; r++) Y[t * m->rows + r] = y[r];
    }
    free(y);
}
