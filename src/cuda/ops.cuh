/*
 * ops.cuh — the non-GEMV operations of the CUDA forward pass (ops.cu), as
 * host-side launchers for forward_cuda.cu. Internal to src/cuda (C++ linkage).
 *
 * Every launcher is asynchronous on `s`, allocates nothing, and leaves the
 * launch error to be read with cudaGetLastError() by the caller. Shapes are
 * row-major, tokens outermost: (n, dim) means n rows of dim floats.
 *
 * Positions come from device memory (`pos_dev`, one int) rather than from a
 * kernel argument, so the decode step can be captured once in a CUDA graph
 * and replayed for every position.
 */
#ifndef OPC_CUDA_OPS_CUH
#define OPC_CUDA_OPS_CUH

#include "cuda_api.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>

namespace opc_cudafwd {

/* Largest head_dim the attention kernels are compiled for (8 values per lane). */
constexpr int kMaxHeadDim = 256;
/* Keys per attention split for decode; see attention() below. */
constexpr int kAttnWarps = 4;

/* Whether the launchers below use programmatic dependent launch, for the
 * calling thread (the forward pass sets it per handle before queueing). */
void set_pdl_ops(int on);

/* Codebook matrix (bits 2 or 4) in device memory, as plain values for kernels. */
struct CbDev {
    const uint8_t *idx;       /* (rows, row_bytes) */
    const __half *codebook;   /* (rows, k) */
    const uint32_t *ol_rowptr;/* (rows + 1) or NULL */
    const uint16_t *ol_col;   /* (n_outliers) */
    const __half *ol_val;     /* (n_outliers) */
    const uint8_t *gscale;    /* (rows, gs_stride) group scale bytes (cb.h), or NULL */
    int64_t rows, cols;
    int64_t row_bytes, gs_stride;
    int bits, k;
};
CbDev cb_dev(const opc_cuda_cb_matrix *m);

/* x (n, dim) += xo (n, dim) when xo != NULL; then
 * out32/out16 (n, dim) = x * rsqrt(mean(x^2) + eps) * w. dim <= 8192. */
void add_rmsnorm(float *x, const float *xo, const float *w, float *out32, __half *out16, int n,
                 int dim, float eps, cudaStream_t s);

/* add_rmsnorm that also writes the rotated rows (rotate(out32, rot32, rot16,
 * n, dim, log2, 0)) in the same launch. Only where add_rmsnorm_rot_ok():
 * 2^4 <= 2^log2 <= dim, 2^log2 divides dim; out32 must not be NULL. */
int add_rmsnorm_rot_ok(int dim, int log2);
void add_rmsnorm_rot(float *x, const float *xo, const float *w, float *out32, __half *out16, int n, int dim,
                     float eps, int log2, float *rot32, __half *rot16, cudaStream_t s);

/* Embedding rows for tokens tok_dev (n): x (n, dim) fp32 from a dense fp16
 * table (vocab, dim), or from a codebook matrix (exactly one is non-NULL). */
void embed(const __half *table, const CbDev *cb, const int32_t *tok_dev, int n, int dim, float *x,
           cudaStream_t s);

/* Dequantize a codebook matrix (outliers included) to a dense fp16 (rows, cols). */
void cb_dequant_f16(const CbDev &m, __half *out, cudaStream_t s);

/* y (nb, rows) = x (nb, cols) W^T for any codebook width, CUDA cores, one warp
 * per row; 1 <= nb <= 8. The simple, correct path for 4-bit indices. */
void cb_gemv_generic(const CbDev &m, const float *x, int nb, float *y, cudaStream_t s);

/* The same product for 4-bit indices (k <= 16) through shared-memory pair
 * tables (ops.cu); cb4_gemv_ok() says whether it takes this matrix (x of one
 * vector must fit in 96 KiB of shared memory: cols <= ~24K). Errors are left
 * for cudaGetLastError(). */
bool cb4_gemv_ok(const CbDev &m);
void cb4_gemv(const CbDev &m, const float *x, int nb, float *y, cudaStream_t s);

/* For token t of n at position p = *pos_dev + t: add the optional biases,
 * rotate-half RoPE on q (n, n_heads*hd; rows ldq floats apart) in place and
 * on k (n, n_kv*hd), and store k and v (rows ldkv apart) as fp16 rows p of
 * the layer's caches kc/vc (ctx, n_kv*hd). cos/sin tables: (ctx, hd/2).
 * The strides let q, k, v be column blocks of one fused QKV output. */
void rope_store_kv(float *q, int ldq, const float *k, const float *v, int ldkv, const float *bq, const float *bk,
                   const float *bv, const float *rope_cos, const float *rope_sin, __half *kc,
                   __half *vc, const int32_t *pos_dev, int n, int n_heads, int n_kv, int hd,
                   cudaStream_t s);

/* Causal GQA attention of n queries q (n, n_heads*hd) at positions
 * *pos_dev + t over the cache rows 0..*pos_dev + t, into out32/out16
 * (n, n_heads*hd). splits > 1: flash-decoding, each block takes `chunk`
 * consecutive keys and writes (max, sum, acc[hd]) to `part`
 * (n, n_heads, splits, hd + 2); a second kernel merges them. splits == 1:
 * one block per (token, head) over all its keys, no `part` needed. */
void attention(const float *q, int ldq, const __half *kc, const __half *vc, const int32_t *pos_dev, int n,
               int n_heads, int n_kv, int hd, int splits, int chunk, float *part, float *out32,
               __half *out16, cudaStream_t s);

/* Greedy decoding on the device: the token with the largest logit of
 * logits (n) — the first on ties, like opc_argmax — goes to out[*step];
 * then *step += 1 and io = (io[0] + 1, token), the next step's (position,
 * token). best/cnt: scratch that must be zero before the first call (each
 * call leaves them zero). */
void argmax_next(const float *logits, int n, unsigned long long *best, unsigned *cnt, int32_t *io, int32_t *out,
                 int32_t *step, cudaStream_t s);

/* Largest rotation block rotate() takes: 2^15 columns (cb.h's maximum),
 * one block of shared memory per rotation block (128 KB at the maximum). */
constexpr int kRotMaxLog2 = 15;
/* Raise rotate()'s shared-memory limit for blocks of 2^log2 columns; once,
 * before any graph capture. Returns the CUDA error, if any. */
cudaError_t rotate_prepare(int log2);

/* The input rotation of codebook matrices (cb.h opc_cb_rotate), on n rows
 * of `cols` floats: out32 (n, cols) = R^T in (per block of 2^log2 columns:
 * signs, fast Walsh-Hadamard transform, 1/sqrt(b)); out16, if not NULL, gets
 * the same values in fp16. inverse != 0 applies R instead (opc_cb_unrotate:
 * transform, then signs), e.g. to a looked-up row of a rotated embedding.
 * in may equal out32. 1 <= log2 <= kRotMaxLog2, cols % 2^log2 == 0. */
void rotate(const float *in, float *out32, __half *out16, int n, int cols, int log2, int inverse,
            cudaStream_t s);

/* swiglu() that also writes the rotated rows of h (rotate(h32, rot32, rot16,
 * n, hid, log2, 0)) in the same launch. Only where swiglu_rot_ok():
 * 2^4 <= 2^log2 <= 2^13, 2^log2 divides hid. h32 must not alias g. */
int swiglu_rot_ok(int hid, int log2);
void swiglu_rot(float *h32, __half *h16, const float *g, const float *u, int ld, int n, int hid, int log2,
                float *rot32, __half *rot16, cudaStream_t s);

/* h (n, hid) = silu(g) * u into h32 (may alias g when ld == hid) and h16;
 * g and u rows are ld floats apart (ld = 2*hid for a fused gate|up output). */
void swiglu(float *h32, __half *h16, const float *g, const float *u, int ld, int n, int hid,
            cudaStream_t s);

} /* namespace opc_cudafwd */

#endif /* OPC_CUDA_OPS_CUH */
