/*
 * forward_cuda.h — the whole Llama-family forward pass on one CUDA GPU,
 * mirroring the CPU reference (src/model/forward.h), which it must match.
 *
 * Usage:
 *   opc_cuda_forward *f;
 *   opc_cuda_forward_init(&f, desc, ctx, max_batch);
 *   opc_cuda_forward_run(f, prompt, n_prompt, 0, logits, OPC_LOGITS_LAST);   // prefill
 *   opc_cuda_forward_run(f, &tok, 1, n_prompt, logits, OPC_LOGITS_LAST);      // decode
 *   opc_cuda_forward_free(f);
 *
 * What lives on the GPU (all uploaded by init; run allocates nothing):
 *   - CB2 weights: packed as in the file (opc_cuda_cb_upload); batches of
 *     <= 8 tokens use the 2-bit tensor-core GEMV (opc_cuda_cb_gemv), larger
 *     batches dequantize the matrix to an fp16 scratch and call cuBLAS
 *     (fp16 inputs, fp32 accumulate). The Q, K, V rows of a layer (and gate,
 *     up) are concatenated into one matrix when all parts are CB2: one launch,
 *     and enough row tiles for the small K/V projections (environment
 *     OPC_CUDA_NO_FUSE=1 keeps them apart, for comparison).
 *   - CB4 weights (3/4-bit): packed; <= 8 tokens use a CUDA-core GEMV with
 *     the row's codebook in shared memory (ops.cu cb4_gemv; OPC_CUDA_CB4=generic
 *     selects the old one-byte-per-weight kernel), larger batches the same
 *     dequantize + cuBLAS path.
 *   - every other weight type (f32, f16, bf16, GGUF blocks): dequantized once
 *     on the host to fp16, multiplied with cuBLAS (cublasGemmEx, fp32 accumulate).
 *   - norms and biases fp32; RoPE tables fp32, computed exactly as the CPU path;
 *     KV cache fp16 (n_layers, ctx, n_kv_heads*head_dim) for K and for V.
 *   - group scales (cb.h gscale) and rotated inputs (rot_log2) of codebook
 *     weights: every kernel applies the scales; a rotated matrix multiplies
 *     R^T x, made by a fast Walsh-Hadamard kernel (ops.cu rotate) once per
 *     distinct input (fused Q|K|V and gate|up share one, and fuse only when
 *     their rotations agree); a rotated codebook embedding is rotated back
 *     after the lookup, as on the CPU.
 * Activations are fp32 between operations; inputs of a cuBLAS multiply are
 * rounded to fp16. The 2-bit GEMVs are launched with programmatic dependent
 * launch (Hopper; OPC_CUDA_PDL=0 turns it off): their blocks start while the
 * previous kernel runs, fetch weights, and wait for it before reading
 * activations (OPC_CUDA_PDL_OPS=1 does the same for the small kernels). When
 * a norm or SwiGLU feeds a rotated matrix, it writes the rotated copy in the
 * same launch. When it feeds a plain 2-bit matrix on the int8 GEMV (batches
 * <= 4), the norm (with the residual add) or SwiGLU runs inside that GEMV's
 * x staging instead (opc_cuda_cb_gemv_xf; OPC_CUDA_NO_PROLOGUE_FUSE=1 keeps the
 * separate kernels, for comparison).
 *
 * Decode steps (n == 1) are captured once in a CUDA graph and replayed
 * (positions and tokens are read from device memory), unless disabled with
 * opc_cuda_forward_set_graph(f, 0) or the environment variable
 * OPC_CUDA_GRAPH=0.
 *
 * Compiled only when nvcc is found (OPC_HAVE_CUDA). One handle must not be
 * used by two threads at once.
 */
#ifndef OPC_FORWARD_CUDA_H
#define OPC_FORWARD_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../model/forward.h"
#include "../model/sampler.h"

#include <stdint.h>

typedef struct opc_cuda_forward opc_cuda_forward;

/* Prepare the GPU forward pass for `d` (which may be freed afterwards: every
 * weight is copied to the device). Errors: INVALID_ARG (ctx/max_batch),
 * NOT_FOUND/CORRUPT (missing tensor or wrong shape), UNSUPPORTED (a weight
 * type without a dequantizer, head_dim > 256 or odd), NOMEM, CUDA (no device,
 * out of device memory). */
opc_status opc_cuda_forward_init(opc_cuda_forward **out, const opc_model_desc *d, int32_t ctx,
                                 int32_t max_batch);
void opc_cuda_forward_free(opc_cuda_forward *f); /* NULL-safe */

/* Same contract as opc_forward_run: tokens[0..n) at positions pos..pos+n-1;
 * logits_out (host memory) as selected by mode. Synchronous: returns when the
 * logits are on the host. */
opc_status opc_cuda_forward_run(opc_cuda_forward *f, const int32_t *tokens, int32_t n, int32_t pos,
                                float *logits_out, opc_logits_mode mode);

/* Greedy decoding without a host round trip per token: n_steps decode
 * steps, the first feeding `tok` at position pos, each later one the pick of
 * the step before (the largest logit, first on ties: opc_argmax). out[i]
 * (host, n_steps) = the pick after step i, i.e. the token for position
 * pos + i + 1. Equal to n_steps calls of opc_cuda_forward_run(..., 1, ...,
 * OPC_LOGITS_LAST) + opc_argmax, without the logits download and host pick
 * per step. pos + n_steps <= ctx. Uses its own decode graph. */
opc_status opc_cuda_forward_greedy(opc_cuda_forward *f, int32_t tok, int32_t pos, int32_t n_steps, int32_t *out);

/* Sampled decoding without a host round trip per token: as
 * opc_cuda_forward_greedy, but each pick is opc_sampler_sample's choice for
 * parameters p (temperature, top-k, top-p) with the xorshift64* state *rng
 * (an opc_sampler's .rng; in/out: on return, the state after n_steps draws),
 * made on the device (sample_cuda.h, which documents the rounding
 * differences). temp <= 0 is greedy and leaves *rng alone. Uses a third
 * decode graph; p may change between calls without a re-capture. */
opc_status opc_cuda_forward_sample(opc_cuda_forward *f, int32_t tok, int32_t pos, int32_t n_steps,
                                   const opc_sampler_params *p, uint64_t *rng, int32_t *out);

/* Turn the decode-step CUDA graph on (default) or off. */
void opc_cuda_forward_set_graph(opc_cuda_forward *f, int on);

/* Calibration (calib_cuda.h): with s set, every linear layer's input is
 * added to s before its multiply (the head's only for the rows whose logits
 * are computed), the norms and SwiGLU are not fused into the GEMVs (their
 * output must exist) and no decode graph is used (each add keeps host-side
 * counts). s stays owned by the caller; NULL turns it off. */
struct opc_cuda_act_stats;
void opc_cuda_forward_set_stats(opc_cuda_forward *f, struct opc_cuda_act_stats *s);

const opc_config *opc_cuda_forward_config(const opc_cuda_forward *f);
int32_t opc_cuda_forward_ctx(const opc_cuda_forward *f);

/* Device memory the handle owns, in bytes. */
typedef struct opc_cuda_forward_mem {
    uint64_t weights;  /* packed codebooks + fp16 dense weights + norms */
    uint64_t kv_cache;
    uint64_t scratch;  /* activations, attention partials, dequant scratch */
} opc_cuda_forward_mem;
opc_cuda_forward_mem opc_cuda_forward_memory(const opc_cuda_forward *f);

#ifdef __cplusplus
}
#endif

#endif /* OPC_FORWARD_CUDA_H */
