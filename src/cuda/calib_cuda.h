/*
 * calib_cuda.h — calibration statistics summed on the GPU, for `quantize
 * --device cuda` (src/quant/quantize.c opc_calibrate_*_dev).
 *
 * The CUDA forward pass (forward_cuda.h) hands every linear layer's input
 * X (n, cols), fp32 on the device, to an opc_cuda_act_stats object set with
 * opc_cuda_forward_set_stats; the object adds, per input site:
 *   - sum over rows of x^2 per column, in fp64, each column's terms added
 *     one row after another as the CPU hook does (quantize.c calib_hook);
 *   - the same for R^T x (opc_cb_rotate with the site's block) when asked;
 *   - the Hessian sum x x^T in fp32 through cuBLAS (SYRK, no TF32), rows
 *     queued in a small batch so one-token decode steps do not cost a pass
 *     over H each.
 * One site per distinct input, so q/k/v (and gate/up) share one set of sums
 * exactly as they share one X; quantize.c copies a site's sums to every
 * weight that reads it. Nothing is allocated after init; every add only
 * queues work on the caller's stream.
 *
 * Compiled only when nvcc is found (OPC_HAVE_CUDA).
 */
#ifndef OPC_CALIB_CUDA_H
#define OPC_CALIB_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../model/model.h"

#include <stdint.h>

/* Where a linear input is seen (layer = the block; the head: n_layers). */
typedef enum opc_act_site {
    OPC_ACT_ATTN_IN = 0, /* blk.N.attn_q/attn_k/attn_v: the attention norm's output (dim) */
    OPC_ACT_ATTN_OUT,    /* blk.N.attn_output: the attention output (n_heads * head_dim) */
    OPC_ACT_FFN_IN,      /* blk.N.ffn_gate/ffn_up: the FFN norm's output (dim) */
    OPC_ACT_DOWN_IN,     /* blk.N.ffn_down: silu(gate) * up (hidden_dim) */
    OPC_ACT_HEAD_IN,     /* output.weight: the final norm's output (dim), layer n_layers */
    OPC_ACT_SITES
} opc_act_site;

typedef struct opc_cuda_act_stats opc_cuda_act_stats;
struct CUstream_st; /* cudaStream_t is a pointer to it */

/* Statistics for a model with config c, for calls of up to max_rows rows.
 * rot_log2[site]: block (log2) of the rotated sums at that site, 0 = none
 * (1..15). with_hessian: also sum x x^T (cols^2 floats of device memory per
 * layer and site). Errors: INVALID_ARG, NOMEM, CUDA (no device, out of
 * device memory). */
opc_status opc_cuda_act_stats_init(opc_cuda_act_stats **out, const opc_config *c, int32_t max_rows,
                                   int with_hessian, const int32_t rot_log2[OPC_ACT_SITES]);
/* NULL-safe. Free it before destroying the stream its adds ran on (the
 * forward pass's): it waits for that stream, and its cuBLAS handle is bound
 * to it. */
void opc_cuda_act_stats_free(opc_cuda_act_stats *s);

/* Add X (n, cols) (device, fp32, rows contiguous; cols = the site's width)
 * seen at (layer, site). Asynchronous on stream; no allocation. Errors:
 * INVALID_ARG (site, layer or n out of range), CUDA (launch). */
opc_status opc_cuda_act_stats_add(opc_cuda_act_stats *s, int32_t layer, opc_act_site site, const float *x,
                                  int32_t n, struct CUstream_st *stream);

/* Columns of a site and the rows added to it so far (host bookkeeping: no
 * synchronisation). */
int64_t opc_cuda_act_stats_cols(const opc_cuda_act_stats *s, opc_act_site site);
int64_t opc_cuda_act_stats_rows(const opc_cuda_act_stats *s, int32_t layer, opc_act_site site);

/* Copy one site's sums to the host (synchronous; waits for every queued add
 * on every stream via the device). Any output may be NULL: sumsq (cols),
 * sumsq_rot (cols; only when the site has a rotation), hess (cols, cols) full
 * symmetric (only with_hessian). The queued Hessian rows are added first.
 * Errors: INVALID_ARG, CUDA. */
opc_status opc_cuda_act_stats_get(opc_cuda_act_stats *s, int32_t layer, opc_act_site site, double *sumsq,
                                  double *sumsq_rot, float *hess);

#ifdef __cplusplus
}
#endif

#endif /* OPC_CALIB_CUDA_H */
