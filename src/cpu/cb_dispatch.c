/*
 * cb_dispatch.c — runtime choice of the codebook matmul kernel.
 * Until the SIMD kernels land this is the scalar reference, one row of X at a
 * time (correct, slow).
 */
#include "../quant/cb.h"

void opc_cb_matmul(const opc_cb_matrix *m, const float *X, int64_t T, float *Y) {
    for (int64_t t = 0; t < T; t++) opc_cb_gemv_ref(m, X + t * m->cols, Y + t * m->rows);
}
