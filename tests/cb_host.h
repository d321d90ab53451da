/*
 * cb_host.h — random 2-bit codebook matrices on the host for the CUDA kernel
 * tests (test_cuda.c: GEMV, test_cuda_gemm.c: fused GEMM): a reproducible
 * xorshift stream and host_make / host_free. Header-only (static functions):
 * each test executable gets its own copy and its own stream.
 */
#ifndef OPC_TESTS_CB_HOST_H
#define OPC_TESTS_CB_HOST_H

#include "core/half.h"
#include "quant/cb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* xorshift: fresh, reproducible inputs per case (a test may reseed it) */
static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rnd_sym(void) { return (float)(rnd() & 0xFFFFFF) / 8388608.0f - 1.0f; } /* [-1, 1) */

/* A random 2-bit matrix with its host arrays (freed by host_free). */
typedef struct host_cb {
    opc_cb_matrix m;
    uint8_t *idx, *gs;
    uint16_t *cb, *ocol, *oval;
    uint32_t *rowptr;
} host_cb;

/* k codebook entries per row; outlier_pct: % of weights with an fp16 delta;
 * gscale: random group scales (mostly 2^0..2^-3, one group in ten down to
 * 2^-16, where the scaled fp16 codebook goes subnormal). */
static void host_make(host_cb *h, int64_t rows, int64_t cols, int32_t k, int outlier_pct, int gscale) {
    memset(h, 0, sizeof *h);
    h->m.rows = rows, h->m.cols = cols, h->m.bits = 2, h->m.k = k;
    h->m.row_bytes = opc_cb_row_bytes(2, cols);
    h->idx = calloc((size_t)(rows * (int64_t)h->m.row_bytes), 1);
    h->cb = malloc((size_t)(rows * k) * 2);
    for (int64_t i = 0; i < rows * k; i++) h->cb[i] = opc_fp32_to_fp16(0.1f * rnd_sym());
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            opc_cb_set_index(h->idx + r * (int64_t)h->m.row_bytes, 2, c, rnd() % (uint32_t)k);
    h->m.idx = h->idx, h->m.codebook = h->cb;
    if (gscale) {
        const int64_t n = rows * opc_cb_groups(cols);
        h->gs = malloc((size_t)n);
        for (int64_t i = 0; i < n; i++) h->gs[i] = (uint8_t)(rnd() % 10 == 0 ? rnd() % 256 : rnd() % 48);
        h->m.gscale = h->gs;
    }
    if (outlier_pct > 0) {
        h->rowptr = calloc((size_t)rows + 1, 4);
        h->ocol = malloc((size_t)(rows * cols) * 2);
        h->oval = malloc((size_t)(rows * cols) * 2);
        uint32_t n = 0;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++)
                if ((int)(rnd() % 100) < outlier_pct) {
                    h->ocol[n] = (uint16_t)c;
                    h->oval[n] = opc_fp32_to_fp16(0.5f * rnd_sym());
                    n++;
                }
            h->rowptr[r + 1] = n;
        }
        h->m.n_outliers = n;
        h->m.ol_rowptr = h->rowptr, h->m.ol_col = h->ocol, h->m.ol_val = h->oval;
    }
}

static void host_free(host_cb *h) {
    free(h->idx), free(h->gs), free(h->cb), free(h->ocol), free(h->oval), free(h->rowptr);
    memset(h, 0, sizeof *h);
}

#endif /* OPC_TESTS_CB_HOST_H */
