/*
 * cpu.h — the CPU backend's kernels for codebook matrices, their run-time
 * dispatch and threading, and a memory-read-bandwidth probe (the roofline).
 *
 * opc_cb_matmul (declared in quant/cb.h) picks the fastest implementation
 * this CPU supports. The functions below let tests and benchmarks force one
 * implementation and set the thread count explicitly.
 */
#ifndef OPC_CPU_H
#define OPC_CPU_H

#include "../quant/cb.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum opc_cb_impl {
    OPC_CB_IMPL_AUTO = 0, /* best available for this CPU */
    OPC_CB_IMPL_SCALAR,   /* portable C (SSE2 at most, what the compiler emits) */
    OPC_CB_IMPL_AVX2,     /* AVX2 + FMA + F16C: permutevar8x32 codebook lookup */
    OPC_CB_IMPL_AVX512,   /* AVX-512F/BW/VL/DQ: permutexvar codebook lookup */
    OPC_CB_IMPL_AVX512_I8, /* + VNNI: int8 activations (2-bit decode; 2/4-bit prefill
                              on int8 weights too): approximate, so AUTO picks it
                              only after opc_cpu_set_int8_activations */
    OPC_CB_IMPL_COUNT
} opc_cb_impl;

/* "auto", "scalar", "avx2", "avx512", "avx512-i8". */
const char *opc_cb_impl_name(opc_cb_impl impl);

/* Parse a name from opc_cb_impl_name; returns OPC_CB_IMPL_COUNT when unknown. */
opc_cb_impl opc_cb_impl_parse(const char *name);

/* Whether this CPU can run impl (AUTO and SCALAR always can). */
bool opc_cb_impl_available(opc_cb_impl impl);

/* What AUTO resolves to: the widest exact kernel available, unless the
 * environment variable OPC_CB_KERNEL names a narrower available one (A/B
 * runs); the int8-activation kernel when it was asked for (below, or
 * OPC_CB_KERNEL=avx512-i8) and the CPU has it. */
opc_cb_impl opc_cb_impl_best(void);

/* Opt in (true) or out of the approximate int8-activation kernels for
 * AUTO. Off by default: the default kernels match opc_cb_gemv_ref within
 * fp32 rounding. Returns whether AUTO now uses it (false if unavailable). */
bool opc_cpu_set_int8_activations(bool on);

/* Threads for the CPU kernels: n > 0 fixes the count, 0 (default) follows
 * omp_get_max_threads(). Calls made from inside an OpenMP parallel region
 * always run on the calling thread only (no nested teams). */
void opc_cpu_set_threads(int n);
int opc_cpu_get_threads(void);

/* Y = X W^T with a forced implementation and thread count (nthreads <= 0:
 * opc_cpu_get_threads()). X: (T, cols) row-major, Y: (T, rows). m must be
 * valid (opc_cb_validate). An impl this CPU lacks falls back to AUTO's. */
void opc_cb_matmul_impl(opc_cb_impl impl, const opc_cb_matrix *m, const float *X, int64_t T,
                        float *Y, int nthreads);

/* ------------------------------------------------ per-ISA row kernels -- */

/* Compute rows [r0, r1) of Y = X W^T for all T tokens, sparse outliers
 * included. X: (T, cols), Y: (T, rows), stride rows.
 * Each lives in its own translation unit compiled for its ISA; call only
 * when opc_cb_impl_available says so. */
typedef void (*opc_cb_rows_fn)(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                               int64_t r0, int64_t r1);
void opc_cb_rows_scalar(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                        int64_t r1);
void opc_cb_rows_avx2(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                      int64_t r1);
void opc_cb_rows_avx512(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                        int64_t r1);
/* cols <= 32768 only: 2-bit decode (T == 1) and 2/4-bit prefill (T > 1);
 * anything else goes to opc_cb_rows_avx512. */
void opc_cb_rows_avx512_i8(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                           int64_t r0, int64_t r1);

/* The sparse outliers of rows [r0, r1) as a second pass (m->n_outliers > 0):
 * Y[t][r] += sum over the row's CSR entries of delta * X[t][col]. Called by
 * the row kernels (the AVX-512 decode path fuses them instead). */
void opc_cb_outliers_scalar(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                            int64_t r0, int64_t r1);
void opc_cb_outliers_avx2(const opc_cb_matrix *m, const float *X, int64_t T, float *Y, int64_t r0,
                          int64_t r1);
void opc_cb_outliers_avx512(const opc_cb_matrix *m, const float *X, int64_t T, float *Y,
                            int64_t r0, int64_t r1);

/* Sizes shared by the kernels. Prefill reuses one unpacked group of indices
 * for OPC_CB_TTILE tokens (8: 2 rows x 8 tokens = 16 accumulators + 8
 * dequantized weight vectors fit the 32 ZMM registers). Columns are walked in
 * chunks of OPC_CB_KCHUNK so a chunk of OPC_CB_TBLOCK tokens' activations
 * (64 x 1024 x 4 B = 256 KiB) stays in L2 while every row pair streams by. */
#define OPC_CB_TTILE 8
#define OPC_CB_TBLOCK 64
#define OPC_CB_KCHUNK 1024

/* Prefill with several token tiles: the packed rows of one column chunk that
 * every token tile re-reads are kept within this much of L2 (1 MiB per core
 * on the dev VM, 2 MiB on the Xeon host). */
#define OPC_CB_WCHUNK_BYTES (384 * 1024)

/* Rows per slab (even, >= 2) for nb tokens over column chunks of `chunk`
 * groups of a `bits`-bit matrix: all `rows` when one token tile covers nb,
 * else as many as keep a slab's packed chunk within OPC_CB_WCHUNK_BYTES. */
static inline int64_t opc_cb_row_slab(int64_t nb, int64_t chunk, int bits, int64_t rows) {
    if (nb <= OPC_CB_TTILE) return rows;
    int64_t slab = (OPC_CB_WCHUNK_BYTES / (chunk * (int64_t)(bits == 2 ? 16 : 32))) & ~(int64_t)1;
    return slab < 2 ? 2 : slab;
}

/* ------------------------------------------------ bandwidth probe ------ */

/* Memory read bandwidth in bytes/s: nthreads (<= 0: opc_cpu_get_threads())
 * sum a `bytes`-sized buffer (several times the last-level cache; 0 picks
 * 256 MiB) in 8 MiB segments, each split across the threads; the best
 * segment over `reps` passes (after one warm-up pass) is returned. Allocates
 * and frees the buffer itself; returns 0 when the allocation fails. */
double opc_mem_read_bw(size_t bytes, int nthreads, int reps);

/* Sparse dot product of one outlier chunk: sum_i v[i] * x[oc[i]], v the
 * deltas already widened to fp32, with four partial sums to hide the gather
 * latency. Shared by the AVX2 and AVX-512 outlier passes (same order of
 * additions, so both give the same result). */
static inline float opc_ol_chunk_dot(const float *v, const uint16_t *oc, uint32_t n, const float *x) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += v[i] * x[oc[i]];
        s1 += v[i + 1] * x[oc[i + 1]];
        s2 += v[i + 2] * x[oc[i + 2]];
        s3 += v[i + 3] * x[oc[i + 3]];
    }
    for (; i < n; i++) s0 += v[i] * x[oc[i]];
    return (s0 + s1) + (s2 + s3);
}

#endif /* OPC_CPU_H */
