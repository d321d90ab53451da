/*
 * calib_cuda.cu — calibration statistics on the GPU (calib_cuda.h).
 *
 * Per (layer, site) slot, on the device:
 *   sumsq     (cols) fp64   sum over rows of x^2
 *   sumsq_rot (cols) fp64   the same for R^T x (rotate() of ops.cu, the
 *                           forward pass's own rotation = opc_cb_rotate)
 *   hess      (cols, cols)  sum x x^T, fp32, cuBLAS SYRK: the upper
 *                           triangle in column-major order, i.e. the lower
 *                           one of the row-major matrix; mirrored on get
 *   pend      (kPend, cols) rows not yet added to hess
 * Sections: slots + init/free, kernels, add, get.
 */
#include "calib_cuda.h"

#include "ops.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdlib.h>
#include <string.h>

/* Rows queued per Hessian update: a decode step brings one row per site, and
 * a rank-1 SYRK reads and writes all of H (822 MB at 14336 columns); 64 rows
 * per pass cut that traffic 64-fold for (64, cols) floats of queue per slot. */
#define kPend 64

typedef struct act_slot {
    int64_t cols;
    int32_t rot;       /* rotation block log2, 0 = no rotated sums */
    double *sumsq;     /* device (cols) */
    double *sumsq_rot; /* device (cols) or NULL */
    float *hess;       /* device (cols, cols) or NULL */
    float *pend;       /* device (kPend, cols) or NULL */
    int32_t pend_n;
    int64_t rows;
} act_slot;

struct opc_cuda_act_stats {
    int32_t n_layers, n_slots, max_rows;
    int with_hessian;
    int64_t site_cols[OPC_ACT_SITES];
    act_slot *slot;          /* (n_layers * 4 + 1): layer-major, then the head */
    float *rot;              /* device (max_rows, widest rotated site) */
    cublasHandle_t blas;
    cudaStream_t stream;     /* the stream of the last add (queued work lives there) */
};

static opc_status cuda_fail(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "cuda calibration: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static act_slot *slot_of(opc_cuda_act_stats *s, int32_t layer, opc_act_site site) {
    if (site < 0 || site >= OPC_ACT_SITES) return NULL;
    if (site == OPC_ACT_HEAD_IN) return layer == s->n_layers ? &s->slot[s->n_slots - 1] : NULL;
    if (layer < 0 || layer >= s->n_layers) return NULL;
    return &s->slot[layer * 4 + (int)site];
}

/* ===================================================== init / free ===== */

extern "C" void opc_cuda_act_stats_free(opc_cuda_act_stats *s) {
    if (!s) return;
    if (s->stream) cudaStreamSynchronize(s->stream);
    for (int32_t i = 0; s->slot && i < s->n_slots; i++) {
        act_slot *a = &s->slot[i];
        cudaFree(a->sumsq);
        cudaFree(a->sumsq_rot);
        cudaFree(a->hess);
        cudaFree(a->pend);
    }
    free(s->slot);
    cudaFree(s->rot);
    if (s->blas) cublasDestroy(s->blas);
    free(s);
}

/* cudaMalloc + zero, or an error naming what. */
static opc_status dev_zeros(void **p, uint64_t bytes, const char *what) {
    cudaError_t e = cudaMalloc(p, (size_t)bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        return opc_error(OPC_ERR_CUDA, "cuda calibration: cannot allocate %llu device bytes for %s: %s",
                         (unsigned long long)bytes, what, cudaGetErrorString(e));
    }
    e = cudaMemset(*p, 0, (size_t)bytes);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, what);
}

extern "C" opc_status opc_cuda_act_stats_init(opc_cuda_act_stats **out, const opc_config *c, int32_t max_rows,
                                              int with_hessian, const int32_t rot_log2[OPC_ACT_SITES]) {
    *out = NULL;
    if (!c || c->n_layers < 1 || max_rows < 1 || max_rows > (1 << 20))
        return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: bad arguments (max_rows %d)", max_rows);
    const int64_t cols[OPC_ACT_SITES] = {c->dim, (int64_t)c->n_heads * c->head_dim, c->dim, c->hidden_dim, c->dim};
    for (int i = 0; i < OPC_ACT_SITES; i++) {
        const int32_t lg = rot_log2 ? rot_log2[i] : 0;
        if (cols[i] < 1 || cols[i] > (1 << 20) || lg < 0 || lg > opc_cudafwd::kRotMaxLog2 ||
            (lg > 0 && cols[i] % ((int64_t)1 << lg)))
            return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: site %d: %lld columns, rotation block 2^%d", i,
                             (long long)cols[i], lg);
    }
    opc_cuda_act_stats *s = (opc_cuda_act_stats *)calloc(1, sizeof *s);
    if (!s) return opc_error(OPC_ERR_NOMEM, "cuda calibration: cannot allocate the statistics handle");
    s->n_layers = c->n_layers, s->n_slots = c->n_layers * 4 + 1, s->max_rows = max_rows;
    s->with_hessian = with_hessian != 0;
    memcpy(s->site_cols, cols, sizeof cols);
    opc_status st = OPC_OK;
    int64_t rot_cols = 0;
    s->slot = (act_slot *)calloc((size_t)s->n_slots, sizeof *s->slot);
    if (!s->slot) {
        st = opc_error(OPC_ERR_NOMEM, "cuda calibration: cannot allocate %d slots", s->n_slots);
        goto fail;
    }
    {
        cublasStatus_t bs = cublasCreate(&s->blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            s->blas = NULL;
            st = opc_error(OPC_ERR_CUDA, "cuda calibration: cublasCreate: status %d", (int)bs);
            goto fail;
        }
        /* plain fp32 products and sums, like the CPU's Hessian (no TF32) */
        cublasSetMathMode(s->blas, CUBLAS_PEDANTIC_MATH);
    }
    for (int32_t i = 0; i < s->n_slots; i++) {
        const int site = i == s->n_slots - 1 ? (int)OPC_ACT_HEAD_IN : i % 4;
        act_slot *a = &s->slot[i];
        a->cols = cols[site];
        a->rot = rot_log2 ? rot_log2[site] : 0;
        const uint64_t n = (uint64_t)a->cols;
        if ((st = dev_zeros((void **)&a->sumsq, n * 8u, "sums of squares")) != OPC_OK) goto fail;
        if (a->rot > 0) {
            if ((st = dev_zeros((void **)&a->sumsq_rot, n * 8u, "rotated sums of squares")) != OPC_OK) goto fail;
            if (a->cols > rot_cols) rot_cols = a->cols;
        }
        if (s->with_hessian) {
            if ((st = dev_zeros((void **)&a->hess, n * n * 4u, "Hessian")) != OPC_OK) goto fail;
            if ((st = dev_zeros((void **)&a->pend, n * kPend * 4u, "Hessian row queue")) != OPC_OK) goto fail;
        }
    }
    if (rot_cols > 0) {
        if ((st = dev_zeros((void **)&s->rot, (uint64_t)max_rows * (uint64_t)rot_cols * 4u, "rotated rows")) != OPC_OK)
            goto fail;
        for (int i = 0; i < OPC_ACT_SITES; i++) {
            cudaError_t e = rot_log2[i] > 0 ? opc_cudafwd::rotate_prepare(rot_log2[i]) : cudaSuccess;
            if (e != cudaSuccess) {
                st = cuda_fail(e, "rotation kernel");
                goto fail;
            }
        }
    }
    *out = s;
    return OPC_OK;
fail:
    opc_cuda_act_stats_free(s);
    return st;
}

extern "C" int64_t opc_cuda_act_stats_cols(const opc_cuda_act_stats *s, opc_act_site site) {
    return s && site >= 0 && site < OPC_ACT_SITES ? s->site_cols[site] : 0;
}

extern "C" int64_t opc_cuda_act_stats_rows(const opc_cuda_act_stats *s, int32_t layer, opc_act_site site) {
    const act_slot *a = s ? slot_of(const_cast<opc_cuda_act_stats *>(s), layer, site) : NULL;
    return a ? a->rows : 0;
}

/* ========================================================= kernels ===== */

/* s[c] += sum_t x[t][c]^2, one thread per column adding the rows in order,
 * as the CPU hook does (the square of a float is exact in double, so FMA
 * contraction changes nothing). x (n, cols). */
__global__ void k_sumsq(const float *__restrict__ x, int n, int cols, double *__restrict__ s) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    double acc = s[c];
    for (int t = 0; t < n; t++) {
        const double v = (double)x[(size_t)t * (size_t)cols + c];
        acc += v * v;
    }
    s[c] = acc;
}

/* Row-major upper triangle of H (n, n) := its lower one (what SYRK with the
 * column-major upper fill wrote). 32 x 32 tiles through shared memory so
 * reads and writes are both coalesced; tiles strictly above the diagonal
 * read their mirror tile below it (disjoint: safe in place), diagonal tiles
 * read all of themselves before writing. */
__global__ void k_mirror(float *H, int n) {
    __shared__ float t[32][33];
    const int bi = blockIdx.y, bj = blockIdx.x; /* destination tile (bi, bj), bi <= bj */
    if (bi > bj) return;
    const int tx = threadIdx.x, ty = threadIdx.y; /* 32 x 8 threads */
    for (int r = ty; r < 32; r += 8) { /* source tile (bj, bi): row bj*32 + r, column bi*32 + tx */
        const int row = bj * 32 + r, col = bi * 32 + tx;
        if (row < n && col < n) t[r][tx] = H[(size_t)row * n + col];
    }
    __syncthreads();
    for (int r = ty; r < 32; r += 8) { /* destination row bi*32 + r, column bj*32 + tx = source (tx, r) */
        const int row = bi * 32 + r, col = bj * 32 + tx;
        if (row < n && col < n && col > row) H[(size_t)row * n + col] = t[tx][r];
    }
}

/* ============================================================ add ====== */

/* H += P^T P over the queued rows (SYRK: column-major upper triangle). */
static opc_status hess_rows(opc_cuda_act_stats *s, act_slot *a, const float *x, int n) {
    if (n <= 0) return OPC_OK;
    const float one = 1.0f;
    /* row-major x (n, cols) is column-major x^T (cols, n): C = x^T x */
    cublasStatus_t bs = cublasSsyrk(s->blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, (int)a->cols, n, &one, x,
                                    (int)a->cols, &one, a->hess, (int)a->cols);
    return bs == CUBLAS_STATUS_SUCCESS ? OPC_OK
                                       : opc_error(OPC_ERR_CUDA, "cuda calibration: cublasSsyrk: status %d", (int)bs);
}

static opc_status hess_flush(opc_cuda_act_stats *s, act_slot *a) {
    opc_status st = hess_rows(s, a, a->pend, a->pend_n);
    a->pend_n = 0;
    return st;
}

extern "C" opc_status opc_cuda_act_stats_add(opc_cuda_act_stats *s, int32_t layer, opc_act_site site,
                                             const float *x, int32_t n, struct CUstream_st *stream) {
    act_slot *a = s ? slot_of(s, layer, site) : NULL;
    if (!a || !x || n < 1 || n > s->max_rows)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: bad add (layer %d, site %d, %d rows)", layer,
                         (int)site, n);
    cudaStream_t cs = (cudaStream_t)stream;
    if (cs != s->stream) {
        /* work queued on the old stream must not race the new one */
        if (s->stream) cudaStreamSynchronize(s->stream);
        s->stream = cs;
        cublasSetStream(s->blas, cs);
    }
    const int cols = (int)a->cols, threads = 256;
    const unsigned blocks = (unsigned)((cols + threads - 1) / threads);
    k_sumsq<<<blocks, threads, 0, cs>>>(x, n, cols, a->sumsq);
    if (a->rot > 0) {
        opc_cudafwd::rotate(x, s->rot, NULL, n, cols, a->rot, 0, cs);
        k_sumsq<<<blocks, threads, 0, cs>>>(s->rot, n, cols, a->sumsq_rot);
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(e, "statistics kernels");
    a->rows += n;
    if (!a->hess) return OPC_OK;
    opc_status st = OPC_OK;
    if (n >= kPend / 2) { /* a prefill slice: straight into H */
        st = hess_flush(s, a);
        if (st == OPC_OK) st = hess_rows(s, a, x, n);
        return st;
    }
    if (a->pend_n + n > kPend) st = hess_flush(s, a);
    if (st != OPC_OK) return st;
    e = cudaMemcpyAsync(a->pend + (size_t)a->pend_n * (size_t)cols, x, (size_t)n * (size_t)cols * 4u,
                        cudaMemcpyDeviceToDevice, cs);
    if (e != cudaSuccess) return cuda_fail(e, "Hessian row queue");
    a->pend_n += n;
    return OPC_OK;
}

/* ============================================================ get ====== */

extern "C" opc_status opc_cuda_act_stats_get(opc_cuda_act_stats *s, int32_t layer, opc_act_site site,
                                             double *sumsq, double *sumsq_rot, float *hess) {
    act_slot *a = s ? slot_of(s, layer, site) : NULL;
    if (!a) return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: no site %d in layer %d", (int)site, layer);
    if (sumsq_rot && !a->sumsq_rot)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: site %d has no rotated sums", (int)site);
    if (hess && !a->hess) return opc_error(OPC_ERR_INVALID_ARG, "cuda calibration: no Hessians collected");
    cudaStream_t cs = s->stream;
    const size_t cols = (size_t)a->cols;
    opc_status st = OPC_OK;
    if (hess) {
        /* SYRK and the queue run on the adds' stream; with no add yet the
         * matrix is all zeros and the mirror is a no-op on it */
        if ((st = hess_flush(s, a)) != OPC_OK) return st;
        const unsigned nt = (unsigned)((cols + 31) / 32);
        k_mirror<<<dim3(nt, nt), dim3(32, 8), 0, cs>>>(a->hess, (int)cols);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return cuda_fail(e, "Hessian mirror");
    }
    cudaError_t e = cs ? cudaStreamSynchronize(cs) : cudaDeviceSynchronize();
    if (e != cudaSuccess) return cuda_fail(e, "statistics");
    if (sumsq && (e = cudaMemcpy(sumsq, a->sumsq, cols * 8u, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cuda_fail(e, "sums of squares download");
    if (sumsq_rot && (e = cudaMemcpy(sumsq_rot, a->sumsq_rot, cols * 8u, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cuda_fail(e, "rotated sums download");
    if (hess && (e = cudaMemcpy(hess, a->hess, cols * cols * 4u, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return cuda_fail(e, "Hessian download");
    return OPC_OK;
}
