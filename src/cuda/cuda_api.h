/*
 * cuda_api.h — the CUDA backend's C boundary (implemented by the .cu files in src/cuda/).
 *
 * Plain C: callers need no CUDA headers. Streams are passed as
 * `struct CUstream_st *`, the type behind cudaStream_t (NULL = default stream).
 * Every entry point checks shapes and arguments and returns an opc_status
 * before anything is launched; CUDA failures come back as OPC_ERR_CUDA with
 * the runtime's message. Compiled only when nvcc is found (OPC_HAVE_CUDA).
 */
#ifndef OPC_CUDA_API_H
#define OPC_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* core.h and cb.h are C headers without their own guards */
#endif

#include "../core/core.h"
#include "../quant/cb.h"

typedef struct CUstream_st *opc_cuda_stream; /* == cudaStream_t */

#define OPC_CUDA_CB_MAX_BATCH 8 /* x vectors per opc_cuda_cb_gemv call */

/* Number of usable CUDA devices; 0 when there is no driver or no GPU (never fails). */
int opc_cuda_device_count(void);

/* Device memory helpers, so C callers (and tests) need no CUDA headers.
 * opc_cuda_free is NULL-safe. Copies are synchronous. */
opc_status opc_cuda_alloc(void **ptr, size_t bytes);
void opc_cuda_free(void *ptr);
opc_status opc_cuda_to_device(void *dst, const void *src, size_t bytes);
opc_status opc_cuda_to_host(void *dst, const void *src, size_t bytes);
opc_status opc_cuda_sync(opc_cuda_stream stream);

/* Device-to-device copy bandwidth (read + write bytes per second, in GB/s),
 * best of `reps` copies of `bytes`: the roofline `benchmark --device cuda`
 * compares decode traffic with (src/cuda/membw.cu). */
opc_status opc_cuda_copy_bw(size_t bytes, int reps, double *gb_s);

/* A codebook matrix whose arrays live in device memory; same layout and
 * meaning as opc_cb_matrix (src/quant/cb.h). Owned when made by
 * opc_cuda_cb_upload (free with opc_cuda_cb_free); a caller may also fill it
 * with its own device pointers and free them itself. */
typedef struct opc_cuda_cb_matrix {
    int64_t rows, cols;
    int32_t bits, k;
    uint64_t row_bytes;
    uint8_t *idx;        /* device (rows, row_bytes), 16-byte aligned */
    uint16_t *codebook;  /* device (rows, k) fp16 */
    uint64_t n_outliers; /* 0: no outliers, the three pointers below are NULL */
    uint32_t *ol_rowptr; /* device (rows + 1) */
    uint16_t *ol_col;    /* device (n_outliers) */
    uint16_t *ol_val;    /* device (n_outliers) fp16 deltas */
    /* Group scales (cb.h), repacked at upload: row r's ceil(cols/64) bytes start
     * at gscale + r * gs_stride, gs_stride = ceil(groups / 16) * 16 so that a
     * kernel can copy any 16-group run of a row with one aligned 16-byte copy.
     * NULL (gs_stride 0) = no group scales. */
    uint8_t *gscale;
    int64_t gs_stride;
    int32_t rot_log2;    /* as in cb.h: the caller passes x already rotated */
} opc_cuda_cb_matrix;

/* Validate a host matrix (opc_cb_validate) and copy it to the device
 * (group scales repacked to the padded stride above).
 * Errors: CORRUPT/UNSUPPORTED from validation, UNSUPPORTED for shapes the
 * kernels do not take (bits != 2, rows or cols >= 2^31), CUDA. On failure
 * *dev is left zeroed with nothing allocated. */
opc_status opc_cuda_cb_upload(const opc_cb_matrix *host, opc_cuda_cb_matrix *dev);

/* The same copy for any index width (2 or 4 bits): for callers with their
 * own kernels for 4-bit indices (the forward pass). */
opc_status opc_cuda_cb_upload_any(const opc_cb_matrix *host, opc_cuda_cb_matrix *dev);

/* Free what opc_cuda_cb_upload allocated and zero *dev. NULL-safe. */
void opc_cuda_cb_free(opc_cuda_cb_matrix *dev);

/* Y = X W^T for nb x vectors: X device (nb, cols) fp32, Y device (nb, rows)
 * fp32, 1 <= nb <= OPC_CUDA_CB_MAX_BATCH. Asynchronous on `stream`; no
 * allocation, no host synchronisation. Plain 2-bit matrices (no group scales)
 * at nb <= 4 run the int8 tensor-core kernel (lab v8): x quantized to 16 bits
 * per 256 columns, the codebook to 16-bit fixed point per row, int32 sums:
 * |Y - exact| well under 2e-4 * sum|W||x| (tests/test_cuda.c). Otherwise x is
 * rounded to fp16 for the fp16 tensor-core kernels (products and sums in
 * fp32): |Y - exact| <= ~1e-3 * sum|W||x|. Only bits == 2 is implemented
 * (UNSUPPORTED otherwise). Group scales are applied (the scaled codebook is
 * rounded to fp16); rotation is not: for rot_log2 > 0 pass x~ = R^T x
 * (opc_cb_rotate). Environment: OPC_CUDA_GEMV=slab|stream forces that fp16
 * kernel everywhere (int8 kernel off); OPC_CUDA_V8=w8|w24 another compiled
 * int8 configuration (comparisons). */
opc_status opc_cuda_cb_gemv(const opc_cuda_cb_matrix *m, const float *x, int64_t nb, float *y,
                            opc_cuda_stream stream);

/* opc_cuda_cb_gemv with the same vectors also in fp16: x16 device (nb, cols),
 * each value x rounded to the nearest fp16 (what the tensor-core kernels
 * multiply with anyway). The slab kernel then stages x16 with asynchronous
 * 16-byte copies instead of converting x in every block; x is still read
 * for the outlier corrections. x16 == NULL, cols % 8 != 0 or a misaligned
 * x16: same as opc_cuda_cb_gemv. */
opc_status opc_cuda_cb_gemv_x16(const opc_cuda_cb_matrix *m, const float *x, const uint16_t *x16, int64_t nb,
                                float *y, opc_cuda_stream stream);

/* Kernel choice for opc_cuda_cb_gemv_with (tests and benchmarks; callers
 * normally use opc_cuda_cb_gemv = AUTO). Values are stable. */
typedef enum opc_cuda_cb_kernel {
    OPC_CUDA_CB_AUTO = 0,     /* int8 kernel (v8) where it applies (above), else SLAB */
    OPC_CUDA_CB_DIRECT = 1,   /* tensor cores, x loaded per lane (lab v6; slower, kept for study) */
    OPC_CUDA_CB_SLAB = 2,     /* tensor cores, x staged in shared memory by slabs (lab v4) */
    OPC_CUDA_CB_CUDACORE = 3, /* no tensor cores, one launch per x vector (lab v2) */
    OPC_CUDA_CB_STREAM = 4    /* tensor cores, persistent, weights streamed by cp.async (lab v7);
                               * falls back to SLAB when x does not fit in shared memory */
} opc_cuda_cb_kernel;

/* opc_cuda_cb_gemv with an explicit kernel; same checks and contract. */
opc_status opc_cuda_cb_gemv_with(const opc_cuda_cb_matrix *m, const float *x, int64_t nb, float *y,
                                 opc_cuda_stream stream, opc_cuda_cb_kernel kernel);

/* An input transform for opc_cuda_cb_gemv_xf: the GEMV computes its x from
 * these vectors while staging it, instead of a separate kernel writing x
 * (one launch less per transform on the decode path). a and b hold nb
 * vectors of cols floats, rows `ld` floats apart (ld >= cols).
 *   RMSNORM: v = a + b (b may be NULL), x = v * rsqrt(mean(v^2) + eps) * w,
 *            w (cols); res_out (nb, ld), if not NULL, receives v (written
 *            once, by one block); it must not alias a or b.
 *   SWIGLU:  x = silu(a) * b (a: gate, b: up). */
typedef enum opc_cuda_xf_kind { OPC_CUDA_XF_RMSNORM = 1, OPC_CUDA_XF_SWIGLU = 2 } opc_cuda_xf_kind;
typedef struct opc_cuda_xform {
    opc_cuda_xf_kind kind;
    const float *a, *b; /* device (nb, ld) each */
    const float *w;     /* device (cols), RMSNORM only */
    float *res_out;     /* device (nb, ld) or NULL, RMSNORM only */
    float eps;          /* RMSNORM only */
    int64_t ld;
} opc_cuda_xform;

/* Whether opc_cuda_cb_gemv_xf takes (m, nb): the int8 kernel's cases of
 * opc_cuda_cb_gemv (plain 2-bit: no group scales; nb <= 4; x fits in shared
 * memory; not turned off by OPC_CUDA_GEMV). No side effects, never logs. */
int opc_cuda_cb_gemv_xf_ok(const opc_cuda_cb_matrix *m, int64_t nb);

/* Y (nb, rows) = X W^T where X = the transform *xf of its inputs (above),
 * with the numerics of opc_cuda_cb_gemv's int8 kernel. Rotation is not
 * applied (pass rot_log2 == 0 matrices, or accept the rotated basis).
 * Asynchronous on `stream`, no allocation. Errors: INVALID_ARG (NULLs, bad
 * transform, aliasing res_out), the matrix checks of opc_cuda_cb_gemv,
 * UNSUPPORTED where opc_cuda_cb_gemv_xf_ok says no (nothing launched), CUDA. */
opc_status opc_cuda_cb_gemv_xf(const opc_cuda_cb_matrix *m, const opc_cuda_xform *xf, int64_t nb, float *y,
                               opc_cuda_stream stream);

/* The layout checks every 2-bit kernel entry point makes (bits, k, shape,
 * row_bytes, array presence and alignment, outlier arrays, group-scale
 * stride); fn names the caller in the message. INVALID_ARG or
 * UNSUPPORTED (bits != 2). */
opc_status opc_cuda_cb_check(const opc_cuda_cb_matrix *m, const char *fn);

/* Fused 2-bit codebook GEMM on tensor cores (src/cuda/cb_gemm.cu), for
 * batches past the GEMVs: Y (n, rows) fp32 = X W^T, X given as x16, device
 * (n, cols) fp16, 16-byte aligned. W is never written out: each block turns
 * a tile of packed indices into fp16 in shared memory (group scales and
 * outliers applied there) and feeds mma.sync. Numerics as the fp16 GEMV
 * kernels: |Y - exact| <= ~1e-3 * sum|W||x|. Rotation is not applied (pass
 * x~ = R^T x for rot_log2 > 0). Asynchronous on `stream`; no allocation.
 * Errors: INVALID_ARG (NULLs, bad matrix, n outside 1..65535*16),
 * UNSUPPORTED (bits != 2; cols % 8 != 0 or x16 misaligned; built for a
 * pre-sm_80 target), CUDA. Nothing is launched on error. */
opc_status opc_cuda_cb_gemm(const opc_cuda_cb_matrix *m, const uint16_t *x16, int64_t n, float *y,
                            opc_cuda_stream stream);

/* Whether opc_cuda_cb_gemm takes this matrix (its UNSUPPORTED cases aside
 * from x16's alignment). No side effects, never logs. */
int opc_cuda_cb_gemm_ok(const opc_cuda_cb_matrix *m);

/* Tile configurations of the fused GEMM (tests, benchmarks); values stable.
 * AUTO picks by n and rows (the measured-fastest). */
typedef enum opc_cuda_gemm_cfg {
    OPC_CUDA_GEMM_AUTO = 0,
    OPC_CUDA_GEMM_S32 = 1, /* 32 rows x 16 tokens per block, 8-way split K */
    OPC_CUDA_GEMM_S64 = 2, /* 64 x 16, 4-way split K */
    OPC_CUDA_GEMM_M = 3,   /* 64 x 64 */
    OPC_CUDA_GEMM_L = 4    /* 128 x 128 */
} opc_cuda_gemm_cfg;

/* opc_cuda_cb_gemm with an explicit configuration; same checks and contract. */
opc_status opc_cuda_cb_gemm_with(const opc_cuda_cb_matrix *m, const uint16_t *x16, int64_t n, float *y,
                                 opc_cuda_stream stream, opc_cuda_gemm_cfg cfg);

/* y = R^T x (opc_cb_rotate) for n vectors of cols floats in device memory,
 * R the rotation of blocks of 2^rot_log2 columns; inverse != 0 applies R
 * (opc_cb_unrotate). y may equal x. Asynchronous on `stream`; allocates
 * nothing. Errors: INVALID_ARG (rot_log2 outside 1..15, cols not a multiple
 * of 2^rot_log2, n outside 1..65535), CUDA. */
opc_status opc_cuda_rotate(const float *x, float *y, int64_t n, int64_t cols, int32_t rot_log2, int inverse,
                           opc_cuda_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPC_CUDA_API_H */
