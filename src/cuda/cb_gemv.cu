/*
 * cb_gemv.cu — host side of the CUDA codebook GEMV: device memory helpers,
 * upload of a codebook matrix, and the checked launch of the 2-bit kernel
 * (kernels in cb_gemv_kernels.cuh, measured in bench/cuda/cb_gemv_lab.cu).
 */
#include "cuda_api.h"

#include "cb_gemv_kernels.cuh"

#include <cuda_runtime.h>

#include <limits.h>
#include <string.h>

/* ---------------------------------------------------------- helpers ---- */

static opc_status cuda_fail(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" int opc_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

extern "C" opc_status opc_cuda_alloc(void **ptr, size_t bytes) {
    if (!ptr || bytes == 0)
        return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_alloc: NULL pointer or zero size");
    *ptr = NULL;
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e != cudaSuccess) {
        *ptr = NULL;
        return cuda_fail(e, "opc_cuda_alloc");
    }
    return OPC_OK;
}

extern "C" void opc_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

extern "C" opc_status opc_cuda_to_device(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return OPC_OK;
    if (!dst || !src) return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_to_device: NULL pointer");
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_to_device");
}

extern "C" opc_status opc_cuda_to_host(void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return OPC_OK;
    if (!dst || !src) return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_to_host: NULL pointer");
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_to_host");
}

extern "C" opc_status opc_cuda_sync(opc_cuda_stream stream) {
    cudaError_t e = cudaStreamSynchronize(stream);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_sync");
}

/* ----------------------------------------------------------- upload ---- */

extern "C" void opc_cuda_cb_free(opc_cuda_cb_matrix *dev) {
    if (!dev) return;
    opc_cuda_free(dev->idx);
    opc_cuda_free(dev->codebook);
    opc_cuda_free(dev->ol_rowptr);
    opc_cuda_free(dev->ol_col);
    opc_cuda_free(dev->ol_val);
    memset(dev, 0, sizeof *dev);
}

/* Allocate `bytes` on the device and copy `src` there. */
static opc_status upload_array(void **dst, const void *src, uint64_t bytes) {
    opc_status st = opc_cuda_alloc(dst, (size_t)bytes);
    if (st != OPC_OK) return st;
    return opc_cuda_to_device(*dst, src, (size_t)bytes);
}

extern "C" opc_status opc_cuda_cb_upload(const opc_cb_matrix *host, opc_cuda_cb_matrix *dev) {
    if (!host || !dev) return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_cb_upload: NULL argument");
    memset(dev, 0, sizeof *dev);
    opc_status st = opc_cb_validate(host, "opc_cuda_cb_upload");
    if (st != OPC_OK) return st;
    if (host->bits != 2)
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "opc_cuda_cb_upload: %d-bit indices have no CUDA kernel yet (2-bit only)",
                         host->bits);
    if (host->rows > INT_MAX || host->cols > INT_MAX)
        return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_upload: shape (%lld, %lld) too large",
                         (long long)host->rows, (long long)host->cols);
    uint64_t idx_bytes, cb_bytes, ptr_bytes = 0, ol_bytes = 0;
    if (!opc_mul_ok((uint64_t)host->rows, host->row_bytes, &idx_bytes) ||
        !opc_mul_ok((uint64_t)host->rows, (uint64_t)host->k * 2u, &cb_bytes) ||
        (host->n_outliers &&
         (!opc_mul_ok((uint64_t)host->rows + 1, 4, &ptr_bytes) ||
          !opc_mul_ok(host->n_outliers, 2, &ol_bytes))))
        return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_upload: matrix size overflows");

    opc_cuda_cb_matrix d;
    memset(&d, 0, sizeof d);
    d.rows = host->rows, d.cols = host->cols, d.bits = host->bits, d.k = host->k;
    d.row_bytes = host->row_bytes, d.n_outliers = host->n_outliers;
    st = upload_array((void **)&d.idx, host->idx, idx_bytes);
    if (st == OPC_OK) st = upload_array((void **)&d.codebook, host->codebook, cb_bytes);
    if (st == OPC_OK && host->n_outliers) {
        st = upload_array((void **)&d.ol_rowptr, host->ol_rowptr, ptr_bytes);
        if (st == OPC_OK) st = upload_array((void **)&d.ol_col, host->ol_col, ol_bytes);
        if (st == OPC_OK) st = upload_array((void **)&d.ol_val, host->ol_val, ol_bytes);
    }
    if (st != OPC_OK) {
        opc_cuda_cb_free(&d);
        return opc_error_wrap(st, "uploading a (%lld, %lld) codebook matrix: ",
                              (long long)host->rows, (long long)host->cols);
    }
    *dev = d;
    return OPC_OK;
}

/* ------------------------------------------------------------- GEMV ---- */


/* The compiled configurations of the tensor-core kernel (rows per block =
 * 16*MT, WK split-K warps, U groups per lane per slab), measured side by side
 * in the lab. Anything else is not compiled. Shared memory grows with the
 * batch (x staged as fp16), past the 48 KB default for nb > 4: the limit is
 * raised once per configuration. */
template <int MT, int WK, int U>
static opc_status launch_v4(const opc_cuda::CbView &v, const float *x, int nb, float *y, int vec,
                            cudaStream_t s) {
    static int smem_ok = 0; /* benign race: every writer stores 1 after the same call */
    const size_t smem = opc_cuda::cbk_v4_smem<MT, WK, U>(nb);
    if (!smem_ok) {
        cudaError_t e = cudaFuncSetAttribute(opc_cuda::cbk_gemv_v4<MT, WK, U>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)opc_cuda::cbk_v4_smem<MT, WK, U>(OPC_CBK_MAX_BATCH));
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: shared memory limit");
        smem_ok = 1;
    }
    dim3 grid((unsigned)((v.rows + MT * 16 - 1) / (MT * 16)));
    opc_cuda::cbk_gemv_v4<MT, WK, U><<<grid, WK * 32, smem, s>>>(v, x, nb, y, vec);
    return OPC_OK;
}

/* Whether the tensor-core kernels were compiled for sm_80+ (the build's
 * CMAKE_CUDA_ARCHITECTURES decides; the JIT from older PTX would trap).
 * Cached; a benign race writes the same value. */
static bool mma_compiled(void) {
    static int ok = -1;
    if (ok < 0) {
        cudaFuncAttributes a;
        ok = cudaFuncGetAttributes(&a, opc_cuda::cbk_gemv_v6<8, 1, 3>) == cudaSuccess && a.ptxVersion >= 80;
        cudaGetLastError();
    }
    return ok == 1;
}

extern "C" opc_status opc_cuda_cb_gemv(const opc_cuda_cb_matrix *m, const float *x, int64_t nb,
                                       float *y, opc_cuda_stream stream) {
    return opc_cuda_cb_gemv_with(m, x, nb, y, stream, OPC_CUDA_CB_AUTO);
}

extern "C" opc_status opc_cuda_cb_gemv_with(const opc_cuda_cb_matrix *m, const float *x, int64_t nb,
                                            float *y, opc_cuda_stream stream,
                                            opc_cuda_cb_kernel kernel) {
    const char *fn = "opc_cuda_cb_gemv";
    if (!m || !x || !y) return opc_error(OPC_ERR_INVALID_ARG, "%s: NULL argument", fn);
    if (m->bits != 2)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %d-bit indices have no CUDA kernel (2-bit only)",
                         fn, m->bits);
    if (m->k < 1 || m->k > 4)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: codebook size k = %d (2-bit needs 1..4)", fn, m->k);
    if (m->rows <= 0 || m->cols <= 0 || m->rows > INT_MAX || m->cols > INT_MAX)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: shape (%lld, %lld) out of range", fn,
                         (long long)m->rows, (long long)m->cols);
    if (m->row_bytes != opc_cb_row_bytes(2, m->cols))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: row_bytes %llu, expected %llu for %lld columns",
                         fn, (unsigned long long)m->row_bytes,
                         (unsigned long long)opc_cb_row_bytes(2, m->cols), (long long)m->cols);
    if (!m->idx || !m->codebook || ((uintptr_t)m->idx & 15u))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: index array missing or not 16-byte aligned", fn);
    if (m->n_outliers && (!m->ol_rowptr || !m->ol_col || !m->ol_val))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: %llu outliers but missing CSR arrays", fn,
                         (unsigned long long)m->n_outliers);
    if (m->n_outliers && m->cols > 65535)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: outliers need cols <= 65535 (got %lld)", fn,
                         (long long)m->cols);
    if (nb < 1 || nb > OPC_CUDA_CB_MAX_BATCH)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: batch %lld outside 1..%d", fn, (long long)nb,
                         OPC_CUDA_CB_MAX_BATCH);

    opc_cuda::CbView v;
    v.idx = reinterpret_cast<const uint4 *>(m->idx);
    v.codebook = m->codebook;
    v.ol_rowptr = m->n_outliers ? m->ol_rowptr : NULL;
    v.ol_col = m->ol_col;
    v.ol_val = m->ol_val;
    v.rows = (int)m->rows, v.cols = (int)m->cols, v.k = m->k;
    v.groups = (int)(m->row_bytes / 16);
    /* 16-byte x loads need every batch row aligned: base aligned and cols % 4 == 0 */
    const int vec = ((uintptr_t)x % 16 == 0) && (m->cols % 4 == 0);
    cudaStream_t s = stream;
    if (kernel < OPC_CUDA_CB_AUTO || kernel > OPC_CUDA_CB_CUDACORE)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: unknown kernel id %d", fn, (int)kernel);
    if (kernel == OPC_CUDA_CB_AUTO)
        kernel = OPC_CUDA_CB_SLAB; /* lab v4_mt1_wk16_u1: fastest or near it in every measured
                                    * shape and batch on the H200 (docs/RESULTS.md) */
    if (!mma_compiled()) kernel = OPC_CUDA_CB_CUDACORE; /* built for a pre-sm_80 target */
    const unsigned tiles = (unsigned)((v.rows + 15) / 16);
    switch (kernel) {
    case OPC_CUDA_CB_DIRECT: /* fewer instructions than SLAB but L1-bound on x: slower (RESULTS.md) */
        opc_cuda::cbk_gemv_v6<8, 1, 3><<<tiles, 8 * 32, 0, s>>>(v, x, (int)nb, y, vec);
        break;
    case OPC_CUDA_CB_SLAB: {
        opc_status st = launch_v4<1, 16, 1>(v, x, (int)nb, y, vec, s);
        if (st != OPC_OK) return st;
        break;
    }
    default:
        /* CUDA cores only, one launch per x vector: correct, several times slower */
        for (int64_t b = 0; b < nb; b++)
            opc_cuda::cbk_gemv_v2<<<(unsigned)((v.rows + 7) / 8), 256, 0, s>>>(
                v, x + b * m->cols, y + b * m->rows, vec);
        break;
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(e, fn);
    return OPC_OK;
}
