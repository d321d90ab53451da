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
 * contraction), and so are the k-means sums and the divide and conquer of
 * the exact DP: without group scales the codebooks, indices and outliers are
 * the CPU's byte for byte (tests/test_cuda_quant asserts it; err_num is summed
 * in another order, as the CPU's own depends on its thread count). With group scales the per-group error
 * sums of the scale search are added in another order, so a near-tie could
 * pick another scale; measured identical on every test case and on four
 * real SmolLM2 tensors. Deterministic run to run.
 *
 * Speed (bench_cuda_quant --defaults, the `quantize` defaults on every
 * linear weight of 32 Llama-3-8B-shaped layers, upload included): see
 * docs/RESULTS.md. From host memory the rows go up in quarters, each
 * quarter's upload overlapping the first fit of the quarter before it.
 *
 * GPTQ error feedback (p->hessian) is pass 4 on the device, quantize.c's
 * gptq_rows / gptq_refit_rows / gptq_rows with each row's double operations
 * in the CPU's order: given the same passes 1-3 its output is the CPU's byte
 * for byte (tests/test_cuda_quant). The factor U of (H + damp I)^-1:
 * p->gptq_u when given (opc_quantize_model caches one per Hessian, made by
 * opc_cuda_gptq_factor with --device cuda), uploaded with H; else made on
 * the device. Own kernels rather than cuSOLVER: they sum every entry in the
 * CPU's order, so U is the CPU's double for double (4-5x faster than the CPU
 * with 16 threads at 576..4096 columns, H200: docs/RESULTS.md).
 *
 * Not on the GPU (UNSUPPORTED): the Lloyd ablation (OPC_QUANT_LLOYD), rows
 * longer than OPC_CUDA_QUANT_MAX_COLS.
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

/* With group scales a row is sorted in shared memory as 64-bit keys: 16384 x
 * 8 B = 128 KiB of the 227 KiB an H100 block may have; without, columns are
 * 16-bit sort values. (Llama-3-8B's widest input is 14336.) */
#define OPC_CUDA_QUANT_MAX_COLS 16384

/* Quantize W (rows, cols) row-major in host memory, exactly as
 * opc_quantize_matrix would (same params, same *out ownership: free with
 * opc_qmatrix_free). p->n_threads and p->seed are not used (the exact k-means
 * has no random starts). Errors: INVALID_ARG, UNSUPPORTED (see above), NOMEM,
 * CUDA (no device, out of device memory), INTERRUPTED (polled between passes). */
opc_status opc_cuda_quantize_matrix(const float *W, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                    opc_qmatrix *out);

/* The same from 16-bit weights in host memory: W16 (rows, cols) fp16, or
 * bfloat16 when bf16 != 0, widened on the device exactly as
 * opc_fp16_to_fp32 / opc_bf16_to_fp32, so the result is that of
 * opc_cuda_quantize_matrix on the widened weights, for half the upload and
 * no host conversion. */
opc_status opc_cuda_quantize_matrix_h16(const uint16_t *W16, int bf16, int64_t rows, int64_t cols,
                                        const opc_qmatrix_params *p, opc_qmatrix *out);

/* The same with W already in device memory (rows * cols floats). W_dev is
 * used as scratch: when p->rot_log2 > 0 it holds the rotated rows afterwards. */
opc_status opc_cuda_quantize_matrix_dev(float *W_dev, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                        opc_qmatrix *out);

/* GPTQ's factor (opc_quant_gptq_factor, quantize.h) computed on the device,
 * each entry summed in the CPU's order: the same doubles, into a malloc'd
 * *U (n, n) (free()). Errors: INVALID_ARG (not positive definite), NOMEM, CUDA. */
opc_status opc_cuda_gptq_factor(const float *H, int64_t n, double damp, double **U);

/* Profiling, for bench_cuda_quant: while on, every phase of the quantizer
 * ends with a device synchronisation and its wall time (seconds) is added to
 * that phase's total; kernel-internal splits are added in SM giga-cycles.
 * Not thread-safe; costs nothing while off. */
#define OPC_CUDA_QPROF_MAX 24
typedef struct opc_cuda_qprof {
    int n;
    const char *name[OPC_CUDA_QPROF_MAX];
    double value[OPC_CUDA_QPROF_MAX];
} opc_cuda_qprof;
void opc_cuda_quant_profile(int on);
/* The totals since the last call, then zeroed. */
void opc_cuda_quant_profile_take(opc_cuda_qprof *out);

#ifdef __cplusplus
}
#endif

#endif /* OPC_QUANT_CUDA_H */
