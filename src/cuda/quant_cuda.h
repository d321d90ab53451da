/*
 * quant_cuda.h — the codebook quantizer on the GPU (`quantize --device cuda`).
 *
 * Same contract and same output structure as opc_quantize_matrix
 * (src/quant/quantize.h): per row the exact weighted 1-D k-means codebook
 * (the global optimum, by the same dynamic program as opc_kmeans_1d_optimal),
 * optional per-group scales and input rotation, the tensor's largest weighted
 * errors as fp16 outliers, rows that lost weights refitted, err_num/err_den
 * of what is stored. One thread block per row; everything from the rotation
 * to the packed indices and the CSR outliers is computed on the device, the
 * host only normalises the importance and turns per-row outlier counts into
 * row pointers.
 *
 * Equality with the CPU path: the rotation, group-scale candidates, index
 * assignment, outlier scores and fp16 roundings are the same float
 * operations in the same order (quant_cuda.cu is compiled without FMA
 * contraction); only double-precision sums (weighted means, prefix sums,
 * group errors) are added in another order, so a row whose optimum is a
 * near-tie could come out differently. Measured (tests/test_cuda_quant, H200):
 * bit-identical codebooks, scales, indices and outliers to the CPU path in
 * every synthetic case and on four real SmolLM2 tensors with 2-bit, group
 * scales and rotation. Deterministic run to run.
 *
 * Not on the GPU (UNSUPPORTED): GPTQ error feedback (p->hessian), the Lloyd
 * ablation (OPC_QUANT_LLOYD), rows longer than OPC_CUDA_QUANT_MAX_COLS.
 *
 * Compiled only when nvcc is found (OPC_HAVE_CUDA).
 */
#ifndef OPC_QUANT_CUDA_H
#define OPC_QUANT_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../quant/quantize.h"

#include <stdint.h>

/* A row is sorted in shared memory as 64-bit keys: 16384 x 8 B = 128 KiB of
 * the 227 KiB an H100 block may have. (Llama-3-8B's widest input is 14336.) */
#define OPC_CUDA_QUANT_MAX_COLS 16384

/* Quantize W (rows, cols) row-major in host memory, exactly as
 * opc_quantize_matrix would (same params, same *out ownership: free with
 * opc_qmatrix_free). p->n_threads and p->seed are not used (the exact k-means
 * has no random starts). Errors: INVALID_ARG, UNSUPPORTED (see above), NOMEM,
 * CUDA (no device, out of device memory), INTERRUPTED (polled between passes). */
opc_status opc_cuda_quantize_matrix(const float *W, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                    opc_qmatrix *out);

/* The same with W already in device memory (rows * cols floats). W_dev is
 * used as scratch: when p->rot_log2 > 0 it holds the rotated rows afterwards. */
opc_status opc_cuda_quantize_matrix_dev(float *W_dev, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                        opc_qmatrix *out);

#ifdef __cplusplus
}
#endif

#endif /* OPC_QUANT_CUDA_H */
