/*
 * cb_gemv.cu — host side of the CUDA codebook GEMV: device memory helpers,
 * upload of a codebook matrix, and the checked launch of the 2-bit kernel
 * (kernels in cb_gemv_kernels.cuh, measured in bench/cuda/cb_gemv_lab.cu).
 */
#include "cuda_api.h"

#include "cb_gemv_kernels.cuh"

#include <cuda_runtime.h>

#include <limits.h>
#include <stdlib.h>
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
    opc_cuda_free(dev->gscale);
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
    return opc_cuda_cb_upload_any(host, dev);
}

extern "C" opc_status opc_cuda_cb_upload_any(const opc_cb_matrix *host, opc_cuda_cb_matrix *dev) {
    if (!host || !dev) return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_cb_upload: NULL argument");
    memset(dev, 0, sizeof *dev);
    opc_status st = opc_cb_validate(host, "opc_cuda_cb_upload");
    if (st != OPC_OK) return st;
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
    d.row_bytes = host->row_bytes, d.n_outliers = host->n_outliers, d.rot_log2 = host->rot_log2;
    st = upload_array((void **)&d.idx, host->idx, idx_bytes);
    if (st == OPC_OK && host->gscale) {
        /* repack: each row's ceil(cols/64) scale bytes padded to a multiple of
         * 16, so the streaming kernel copies them in aligned 16-byte pieces;
         * the padding is never used (those groups hold no columns). */
        const int64_t ng = opc_cb_groups(host->cols);
        d.gs_stride = (ng + 15) / 16 * 16;
        uint8_t *pad = (uint8_t *)calloc((size_t)host->rows, (size_t)d.gs_stride);
        if (!pad) {
            st = opc_error(OPC_ERR_NOMEM, "opc_cuda_cb_upload: group scale staging");
        } else {
            for (int64_t r = 0; r < host->rows; r++)
                memcpy(pad + r * d.gs_stride, host->gscale + r * ng, (size_t)ng);
            st = upload_array((void **)&d.gscale, pad, (uint64_t)host->rows * (uint64_t)d.gs_stride);
            free(pad);
        }
    }
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


/* Launch with the programmatic-dependent-launch attribute (see
 * cbk_grid_wait): the GEMV's weight loads overlap the previous kernel's
 * tail and the launch gap. OPC_CUDA_PDL=0 turns it off (for comparisons). */
static int pdl_on(void) {
    static int on = -1; /* benign race: every writer stores the same value */
    if (on < 0) {
        const char *e = getenv("OPC_CUDA_PDL");
        on = !(e && !strcmp(e, "0"));
    }
    return on;
}

template <typename... Args>
static cudaError_t launch_pdl(void (*kern)(Args...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                              Args... args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = pdl_on() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kern, args...);
}

/* The compiled configurations of the tensor-core kernel (rows per block =
 * 16*MT, WK split-K warps, U groups per lane per slab), measured side by side
 * in the lab. Anything else is not compiled. Shared memory grows with the
 * batch (x staged as fp16), past the 48 KB default for nb > 4: the limit is
 * raised once per configuration. */
template <int MT, int WK, int U, bool GS, bool X16>
static opc_status launch_v4_t(const opc_cuda::CbView &v, const float *x, const uint16_t *x16, int nb, float *y,
                              int vec, cudaStream_t s) {
    static int smem_ok = 0; /* benign race: every writer stores 1 after the same call */
    const size_t smem = opc_cuda::cbk_v4_smem<MT, WK, U>(nb);
    if (!smem_ok) {
        cudaError_t e = cudaFuncSetAttribute(opc_cuda::cbk_gemv_v4<MT, WK, U, GS, X16>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)opc_cuda::cbk_v4_smem<MT, WK, U>(OPC_CBK_MAX_BATCH));
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: shared memory limit");
        smem_ok = 1;
    }
    dim3 grid((unsigned)((v.rows + MT * 16 - 1) / (MT * 16)));
    cudaError_t e = launch_pdl(opc_cuda::cbk_gemv_v4<MT, WK, U, GS, X16>, grid, dim3(WK * 32), smem, s, v, x, x16,
                               nb, y, vec);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_cb_gemv");
}

/* x16 != NULL: stage the caller's fp16 copy of x (see opc_cuda_cb_gemv_x16). */
template <int MT, int WK, int U, bool GS>
static opc_status launch_v4(const opc_cuda::CbView &v, const float *x, const uint16_t *x16, int nb, float *y,
                            int vec, cudaStream_t s) {
    return x16 ? launch_v4_t<MT, WK, U, GS, true>(v, x, x16, nb, y, vec, s)
               : launch_v4_t<MT, WK, U, GS, false>(v, x, x16, nb, y, vec, s);
}

/* The streaming kernel (lab v7) in its one compiled configuration: 16-row
 * tiles, 4 warps, 64-group chunks, 3 stages. Persistent grid: as many blocks
 * as fit on the device at once, tiles spread evenly over them. Returns
 * OPC_ERR_UNSUPPORTED (nothing launched) when x does not fit in shared
 * memory; the caller then uses the slab kernel. Device properties and the
 * occupancy per shared-memory size are cached (benign races: every writer
 * stores the same values). */
enum { V7_MT = 1, V7_NW = 4, V7_CK = 64, V7_ST = 3 };
template <bool GS>
static opc_status launch_v7(const opc_cuda::CbView &v, const float *x, int nb, float *y, int vec,
                            cudaStream_t s) {
    typedef opc_cuda::CbkV7<V7_MT, V7_NW, V7_CK, V7_ST> P;
    static int sms = 0, smem_max = 0;
    static size_t c_smem[8];
    static int c_per[8], c_n = 0;
    if (!sms) {
        int dev = 0, n = 0, mx = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&mx, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(opc_cuda::cbk_gemv_v7<V7_MT, V7_NW, V7_CK, V7_ST, GS>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, mx);
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: device properties");
        smem_max = mx, sms = n;
    }
    const size_t smem = P::smem(v.groups, nb);
    if (smem > (size_t)smem_max)
        return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_gemv: x (%d x %d) does not fit in shared memory", nb,
                         v.cols);
    int per_sm = -1;
    for (int i = 0; i < c_n; i++)
        if (c_smem[i] == smem) per_sm = c_per[i];
    if (per_sm < 0) {
        cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, opc_cuda::cbk_gemv_v7<V7_MT, V7_NW, V7_CK, V7_ST, GS>, V7_NW * 32, smem);
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: occupancy");
        if (per_sm < 1)
            return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_gemv: streaming kernel does not fit an SM");
        if (c_n < 8) c_smem[c_n] = smem, c_per[c_n] = per_sm, c_n++;
    }
    const int tiles = (v.rows + P::TR - 1) / P::TR, maxg = per_sm * sms;
    const int per_block = (tiles + maxg - 1) / maxg, grid = (tiles + per_block - 1) / per_block;
    cudaError_t e = launch_pdl(opc_cuda::cbk_gemv_v7<V7_MT, V7_NW, V7_CK, V7_ST, GS>, dim3((unsigned)grid),
                               dim3(V7_NW * 32), smem, s, v, x, nb, y, vec);
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_cb_gemv");
}

/* Outlier entries v8 stages per block of tpb tiles (CbkV8::ol_cap), at most
 * `room` (rounded down to 8). OPC_CUDA_V8_OLCAP=0 turns the staging off (the
 * epilogue reads global memory, as before), =N fixes the cap at N (tests of
 * the overflow path); read once (benign race: every writer stores the same). */
static int v8_olcap(const opc_cuda::CbView &v, int tpb, int room) {
    static int env = -2;
    if (env == -2) {
        const char *e = getenv("OPC_CUDA_V8_OLCAP");
        env = e && *e ? atoi(e) : -1;
    }
    int cap = opc_cuda::CbkV8::ol_cap(v, tpb);
    if (cap > 0 && env >= 0) cap = env / 8 * 8;
    room = room / 8 * 8;
    return cap < room ? cap : room;
}

/* v8's mode (CBK_V8_*): the outlier epilogue's form. OPC_CUDA_V8_OLEPI=warp
 * selects the previous one, for comparisons on a device (read once; benign
 * race: every writer stores the same value). */
static int v8_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("OPC_CUDA_V8_OLEPI");
        mode = e && !strcmp(e, "warp") ? opc_cuda::CBK_V8_OL_WARP : opc_cuda::CBK_V8_OL_OCTET;
    }
    return mode;
}

/* Blocks per SM v8 may fill (OPC_CUDA_V8_RES=N; 0 or unset: as many as the
 * occupancy allows). Why a cap: a grid that fills every SM to its register
 * limit leaves no room for the next kernel's blocks, so the next GEMV's
 * prologue (codebooks, outlier rows, its first weight loads, all issued
 * before cbk_grid_wait() to overlap this kernel under PDL) cannot start until
 * this kernel's blocks exit. With fewer blocks than the occupancy limit (e.g.
 * w8b2 at one block per SM) a block of the next kernel fits beside them.
 * Measured, not the default: 8B-shape decode on an H200, no outliers, graph
 * on: w16 (default) 466 tok/s, w8b2 at 2/SM (no room) 435, w8b2 RES=1 342,
 * w8 RES=2 358, w8 RES=1 263; with PDL off w16 429, w8b2 RES=1 388 (the lab's
 * cost of 8 warps per SM). So the early-resident blocks of the next kernel
 * make the step slower, not faster (bench/cuda/results/h200_2026-11-26_s4_h6_*;
 * without a timeline the cause is unconfirmed: likely uneven block placement,
 * two blocks of a grid on one SM, when free slots are taken in SM order).
 * Read once (benign race: every writer stores the same value). */
static int v8_res(void) {
    static int res = -1;
    if (res < 0) {
        const char *e = getenv("OPC_CUDA_V8_RES");
        res = e && *e ? atoi(e) : 0;
        if (res < 0) res = 0;
    }
    return res;
}

/* The int8 kernel (lab v8) in one compiled configuration: NW warps split
 * the K steps of every 16-row tile, P weight items in flight per warp,
 * persistent blocks that each own a run of consecutive tiles and quantize x
 * once. Returns OPC_ERR_UNSUPPORTED (nothing launched) when the quantized x
 * does not fit in shared memory; the caller then uses the fp16 kernels.
 * Device properties and occupancy per shared-memory size are cached (benign
 * races: every writer stores the same values). */
template <int V8_NW, int V8_P, int V8_MINB, bool XF>
static opc_status launch_v8_t(const opc_cuda::CbView &v, const float *x, const opc_cuda::CbXf &xf, int nb, float *y,
                              int vec, cudaStream_t s) {
    typedef opc_cuda::CbkV8 P;
    static int sms = 0, smem_max = 0;
    static size_t c_smem[8];
    static int c_per[8], c_n = 0;
    if (!sms) {
        int dev = 0, n = 0, mx = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        if (e == cudaSuccess) e = cudaDeviceGetAttribute(&mx, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(opc_cuda::cbk_gemv_v8<V8_NW, V8_P, V8_MINB, XF>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, mx);
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: device properties");
        smem_max = mx, sms = n;
    }
    if ((uint64_t)v.rows * (uint64_t)v.groups >= ((uint64_t)1 << 32)) /* the kernel's 32-bit row offsets */
        return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_gemv: int8 kernel needs rows * groups < 2^32");
    /* blocks per SM from the occupancy at the largest tiles-per-block (one
     * block per SM): a lower bound for any larger grid, whose blocks need less */
    const int tiles = (v.rows + 15) / 16, tpb0 = (tiles + sms - 1) / sms;
    const size_t smem_x = P::smem(v.groups, nb, tpb0, V8_NW);
    if (smem_x > (size_t)smem_max)
        return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_gemv: quantized x (%d x %d) does not fit in shared memory",
                         nb, v.cols);
    /* the outlier entries staged in shared memory: what fits (OPC_CUDA_V8_OLCAP) */
    const int ocap0 = v8_olcap(v, tpb0, (int)(((size_t)smem_max - smem_x) / 4));
    const size_t smem0 = P::smem(v.groups, nb, tpb0, V8_NW, ocap0);
    int per_sm = -1;
    for (int i = 0; i < c_n; i++)
        if (c_smem[i] == smem0) per_sm = c_per[i];
    if (per_sm < 0) {
        cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, opc_cuda::cbk_gemv_v8<V8_NW, V8_P, V8_MINB, XF>, V8_NW * 32, smem0);
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemv: occupancy");
        if (per_sm < 1)
            return opc_error(OPC_ERR_UNSUPPORTED, "opc_cuda_cb_gemv: int8 kernel does not fit an SM");
        if (c_n < 8) c_smem[c_n] = smem0, c_per[c_n] = per_sm, c_n++;
    }
    const int res = v8_res(), bps = res > 0 && res < per_sm ? res : per_sm; /* blocks per SM (OPC_CUDA_V8_RES) */
    const int maxg = bps * sms, tpb = (tiles + maxg - 1) / maxg, grid = (tiles + tpb - 1) / tpb;
    const int ocap = min(ocap0, v8_olcap(v, tpb, ocap0)); /* fewer tiles per block: fewer entries */
    cudaError_t e = launch_pdl(opc_cuda::cbk_gemv_v8<V8_NW, V8_P, V8_MINB, XF>, dim3((unsigned)grid), dim3(V8_NW * 32),
                               P::smem(v.groups, nb, tpb, V8_NW, ocap), s, v, x, xf, nb, y, vec, tpb, ocap, v8_mode());
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_cb_gemv");
}

/* The configuration AUTO uses (lab: bench/cuda/results/h200_2026-11-26_s3_h1_*.txt);
 * OPC_CUDA_V8=w8|w24|w8b2 selects another compiled one, for comparisons on a
 * device (w8b2: 8 warps with the register budget of 2 blocks per SM, i.e. the
 * w16 kernel's registers per thread, so that with OPC_CUDA_V8_RES=1 a block of
 * the next kernel fits beside each one; see v8_res). */
static opc_status launch_v8(const opc_cuda::CbView &v, const float *x, const opc_cuda::CbXf &xf, int nb, float *y,
                            int vec, cudaStream_t s) {
    static int cfg = -1; /* benign race: every writer stores the same value */
    if (cfg < 0) {
        const char *e = getenv("OPC_CUDA_V8");
        cfg = e && !strcmp(e, "w8") ? 1 : e && !strcmp(e, "w24") ? 2 : e && !strcmp(e, "w8b2") ? 3 : 0;
    }
    /* the transforms in their own instances (XF): the plain GEMV's code is unchanged */
    const bool t = xf.mode != opc_cuda::CBK_XF_NONE;
    if (cfg == 1) return t ? launch_v8_t<8, 2, 3, true>(v, x, xf, nb, y, vec, s)
                           : launch_v8_t<8, 2, 3, false>(v, x, xf, nb, y, vec, s);
    if (cfg == 2) return t ? launch_v8_t<24, 2, 1, true>(v, x, xf, nb, y, vec, s)
                           : launch_v8_t<24, 2, 1, false>(v, x, xf, nb, y, vec, s);
    if (cfg == 3) return t ? launch_v8_t<8, 2, 2, true>(v, x, xf, nb, y, vec, s)
                           : launch_v8_t<8, 2, 2, false>(v, x, xf, nb, y, vec, s);
    return t ? launch_v8_t<16, 2, 1, true>(v, x, xf, nb, y, vec, s) : launch_v8_t<16, 2, 1, false>(v, x, xf, nb, y, vec, s);
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

/* What AUTO means: the measured-fastest kernel (docs/RESULTS.md, lab bench):
 * the int8 kernel for plain 2-bit matrices (no group scales) at batch <= 4,
 * else the slab kernel. OPC_CUDA_GEMV=slab|stream forces that fp16 kernel
 * everywhere (the int8 kernel off), for comparisons on a device. */
static opc_cuda_cb_kernel g_auto_kernel = OPC_CUDA_CB_SLAB;
static int g_auto_int8 = 1;
static int g_auto_init = 0;

static opc_status gemv_impl(const opc_cuda_cb_matrix *m, const float *x, const uint16_t *x16, int64_t nb,
                            float *y, opc_cuda_stream stream, opc_cuda_cb_kernel kernel);

extern "C" opc_status opc_cuda_cb_gemv(const opc_cuda_cb_matrix *m, const float *x, int64_t nb,
                                       float *y, opc_cuda_stream stream) {
    return gemv_impl(m, x, NULL, nb, y, stream, OPC_CUDA_CB_AUTO);
}

extern "C" opc_status opc_cuda_cb_gemv_x16(const opc_cuda_cb_matrix *m, const float *x, const uint16_t *x16,
                                           int64_t nb, float *y, opc_cuda_stream stream) {
    return gemv_impl(m, x, x16, nb, y, stream, OPC_CUDA_CB_AUTO);
}

extern "C" opc_status opc_cuda_cb_gemv_with(const opc_cuda_cb_matrix *m, const float *x, int64_t nb,
                                            float *y, opc_cuda_stream stream,
                                            opc_cuda_cb_kernel kernel) {
    return gemv_impl(m, x, NULL, nb, y, stream, kernel);
}

/* Read OPC_CUDA_GEMV once (benign race: every writer stores the same values). */
static void auto_init(void) {
    if (g_auto_init) return;
    const char *env = getenv("OPC_CUDA_GEMV");
    if (env && !strcmp(env, "stream")) g_auto_kernel = OPC_CUDA_CB_STREAM, g_auto_int8 = 0;
    else if (env && !strcmp(env, "slab")) g_auto_kernel = OPC_CUDA_CB_SLAB, g_auto_int8 = 0;
    g_auto_init = 1;
}

/* The layout checks of a 2-bit matrix every kernel entry point makes (the
 * GEMVs here, the fused GEMM in cb_gemm.cu); fn names the caller. */
extern "C" opc_status opc_cuda_cb_check(const opc_cuda_cb_matrix *m, const char *fn) {
    if (m->bits != 2)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %d-bit indices have no CUDA kernel here (2-bit only)",
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
    if (m->k == 4 && ((uintptr_t)m->codebook & 7u)) /* read as one 8-byte load per row */
        return opc_error(OPC_ERR_INVALID_ARG, "%s: codebook array not 8-byte aligned", fn);
    if (m->n_outliers && (!m->ol_rowptr || !m->ol_col || !m->ol_val))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: %llu outliers but missing CSR arrays", fn,
                         (unsigned long long)m->n_outliers);
    if (m->gscale && m->gs_stride < (m->cols + 1023) / 1024 * 16)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: group scale stride %lld too small for %lld columns", fn,
                         (long long)m->gs_stride, (long long)m->cols);
    return OPC_OK;
}

/* The checks every GEMV entry point makes on the matrix and the batch. */
static opc_status check_matrix(const opc_cuda_cb_matrix *m, int64_t nb, const char *fn) {
    opc_status st = opc_cuda_cb_check(m, fn);
    if (st != OPC_OK) return st;
    if (m->n_outliers && m->cols > 65535)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: outliers need cols <= 65535 (got %lld)", fn,
                         (long long)m->cols);
    if (nb < 1 || nb > OPC_CUDA_CB_MAX_BATCH)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: batch %lld outside 1..%d", fn, (long long)nb,
                         OPC_CUDA_CB_MAX_BATCH);
    return OPC_OK;
}

/* The kernels' view of a checked matrix. */
static opc_cuda::CbView view_of(const opc_cuda_cb_matrix *m) {
    opc_cuda::CbView v;
    v.idx = reinterpret_cast<const uint4 *>(m->idx);
    v.codebook = m->codebook;
    v.ol_rowptr = m->n_outliers ? m->ol_rowptr : NULL;
    v.ol_col = m->ol_col;
    v.ol_val = m->ol_val;
    v.rows = (int)m->rows, v.cols = (int)m->cols, v.k = m->k;
    v.groups = (int)(m->row_bytes / 16);
    v.gs = m->gscale, v.gs_stride = m->gscale ? (int)m->gs_stride : 0;
    v.ol_n = m->n_outliers > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)m->n_outliers; /* a sizing hint (CbkV8::ol_cap) */
    return v;
}

static opc_status gemv_impl(const opc_cuda_cb_matrix *m, const float *x, const uint16_t *x16, int64_t nb,
                            float *y, opc_cuda_stream stream, opc_cuda_cb_kernel kernel) {
    const char *fn = "opc_cuda_cb_gemv";
    if (!m || !x || !y) return opc_error(OPC_ERR_INVALID_ARG, "%s: NULL argument", fn);
    opc_status cst = check_matrix(m, nb, fn);
    if (cst != OPC_OK) return cst;
    const opc_cuda::CbView v = view_of(m);

    const bool gs = m->gscale != NULL;
    /* 16-byte x loads need every batch row aligned: base aligned and cols % 4 == 0 */
    const int vec = ((uintptr_t)x % 16 == 0) && (m->cols % 4 == 0);
    /* the fp16 copy is staged with 16-byte copies of 8 columns: rows must stay aligned */
    if (x16 && (m->cols % 8 != 0 || (uintptr_t)x16 % 16 != 0)) x16 = NULL;
    cudaStream_t s = stream;
    if (kernel < OPC_CUDA_CB_AUTO || kernel > OPC_CUDA_CB_STREAM)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: unknown kernel id %d", fn, (int)kernel);
    if (kernel == OPC_CUDA_CB_AUTO) {
        auto_init();
        kernel = g_auto_kernel;
        if (g_auto_int8 && !gs && nb <= OPC_CBK_V8_MAX_BATCH && mma_compiled()) {
            opc_cuda::CbXf none;
            memset(&none, 0, sizeof none); /* mode CBK_XF_NONE: stage x as it is */
            opc_status st = launch_v8(v, x, none, (int)nb, y, vec, s);
            if (st == OPC_OK) return OPC_OK;
            if (st != OPC_ERR_UNSUPPORTED) return st; /* else: x too large, an fp16 kernel */
        }
    }
    if (kernel == OPC_CUDA_CB_DIRECT && gs) kernel = OPC_CUDA_CB_SLAB; /* v6 has no group-scale path */
    if (!mma_compiled()) kernel = OPC_CUDA_CB_CUDACORE; /* built for a pre-sm_80 target */
    if (kernel == OPC_CUDA_CB_STREAM) {
        opc_status st = gs ? launch_v7<true>(v, x, (int)nb, y, vec, s) : launch_v7<false>(v, x, (int)nb, y, vec, s);
        if (st == OPC_ERR_UNSUPPORTED) kernel = OPC_CUDA_CB_SLAB; /* x too large for shared memory */
        else if (st != OPC_OK) return st;
    }
    const unsigned tiles = (unsigned)((v.rows + 15) / 16);
    switch (kernel) {
    case OPC_CUDA_CB_DIRECT: /* fewer instructions than SLAB but L1-bound on x: slower (RESULTS.md) */
        opc_cuda::cbk_gemv_v6<8, 1, 3><<<tiles, 8 * 32, 0, s>>>(v, x, (int)nb, y, vec);
        break;
    case OPC_CUDA_CB_SLAB: {
        /* Lab, H200 (bench/cuda/results/h200_2026-11-26_h4_lab_v4_final.txt, us
         * per call at batch 1/2/4/8): 32-row tiles over 8 warps share each staged
         * x fragment between two row tiles and win on tall matrices (14336x4096
         * with the fp16 x: 13.6/14.0/15.2/17.4 vs 16-row tiles 16.7/18.2/21.3/30.5)
         * and on wide ones from batch 2 (4096x14336: 17.7/18.3/21.3 at 2/4/8 vs
         * 18.1/22.3/31.4); 16-row tiles over 16 warps win otherwise (4096x4096:
         * 5.9 us; 4096x14336 batch 1: 16.3). Staging the fp16 copy of x pays only
         * with the 32-row tiles (16-row tiles at batch 1: 6.5 vs 5.9 us). */
        const bool tall = m->rows >= 2 * m->cols, wide = m->cols >= 2 * m->rows;
        const bool mt2 = tall || (wide && nb >= 2);
        const uint16_t *xs16 = mt2 ? x16 : NULL;
        opc_status st = mt2 ? (gs ? launch_v4<2, 8, 1, true>(v, x, xs16, (int)nb, y, vec, s)
                                  : launch_v4<2, 8, 1, false>(v, x, xs16, (int)nb, y, vec, s))
                            : (gs ? launch_v4<1, 16, 1, true>(v, x, xs16, (int)nb, y, vec, s)
                                  : launch_v4<1, 16, 1, false>(v, x, xs16, (int)nb, y, vec, s));
        if (st != OPC_OK) return st;
        break;
    }
    case OPC_CUDA_CB_STREAM:
        break; /* launched above */
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

/* ------------------------------------------- GEMV with an input transform -- */

extern "C" int opc_cuda_cb_gemv_xf_ok(const opc_cuda_cb_matrix *m, int64_t nb) {
    if (!m || m->bits != 2 || m->gscale || nb < 1 || nb > OPC_CBK_V8_MAX_BATCH || m->rows <= 0 || m->cols <= 0 ||
        m->rows > INT_MAX || m->cols > INT_MAX)
        return 0;
    auto_init();
    if (!g_auto_int8 || !mma_compiled()) return 0;
    const uint64_t groups = m->row_bytes / 16;
    if ((uint64_t)m->rows * groups >= ((uint64_t)1 << 32)) return 0; /* launch_v8_t's limit */
    static int sms = 0, smem_max = 0; /* benign race: every writer stores the same values */
    if (!sms) {
        int dev = 0, n = 0, mx = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) ||
            cudaDeviceGetAttribute(&mx, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) {
            cudaGetLastError();
            return 0;
        }
        smem_max = mx, sms = n;
    }
    /* launch_v8_t's shared-memory test, for the widest compiled configuration (24 warps) */
    const int tiles = (int)((m->rows + 15) / 16), tpb0 = (tiles + sms - 1) / sms;
    return opc_cuda::CbkV8::smem((int)groups, (int)nb, tpb0, 24) <= (size_t)smem_max;
}

extern "C" opc_status opc_cuda_cb_gemv_xf(const opc_cuda_cb_matrix *m, const opc_cuda_xform *xf, int64_t nb,
                                          float *y, opc_cuda_stream stream) {
    const char *fn = "opc_cuda_cb_gemv_xf";
    if (!m || !xf || !y || !xf->a) return opc_error(OPC_ERR_INVALID_ARG, "%s: NULL argument", fn);
    opc_status st = check_matrix(m, nb, fn);
    if (st != OPC_OK) return st;
    if (xf->kind != OPC_CUDA_XF_RMSNORM && xf->kind != OPC_CUDA_XF_SWIGLU)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: unknown transform %d", fn, (int)xf->kind);
    if (xf->ld < m->cols || xf->ld > INT_MAX)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: row stride %lld below %lld columns", fn, (long long)xf->ld,
                         (long long)m->cols);
    if (xf->kind == OPC_CUDA_XF_SWIGLU && !xf->b)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: SwiGLU without the up vector", fn);
    if (xf->kind == OPC_CUDA_XF_RMSNORM && !xf->w)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: RMSNorm without its weight", fn);
    if (xf->kind == OPC_CUDA_XF_RMSNORM && xf->res_out && (xf->res_out == xf->a || xf->res_out == xf->b))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: the residual output aliases an input (other blocks read it)", fn);
    if (!opc_cuda_cb_gemv_xf_ok(m, nb))
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: no int8 kernel for this (%lld, %lld) matrix at batch %lld (see opc_cuda_cb_gemv_xf_ok)",
                         fn, (long long)m->rows, (long long)m->cols, (long long)nb);
    opc_cuda::CbXf c;
    memset(&c, 0, sizeof c);
    c.mode = xf->kind == OPC_CUDA_XF_RMSNORM ? opc_cuda::CBK_XF_RMSNORM : opc_cuda::CBK_XF_SWIGLU;
    c.a = xf->a, c.b = xf->b, c.w = xf->kind == OPC_CUDA_XF_RMSNORM ? xf->w : NULL;
    c.res_out = xf->kind == OPC_CUDA_XF_RMSNORM ? xf->res_out : NULL;
    c.eps = xf->eps, c.ld = (int)xf->ld;
    /* 16-byte loads (and res_out stores) need every row of every vector aligned */
    const uintptr_t al = (uintptr_t)c.a | (uintptr_t)c.b | (uintptr_t)c.w | (uintptr_t)c.res_out;
    const int vec = al % 16 == 0 && m->cols % 4 == 0 && c.ld % 4 == 0;
    const float *none = NULL; /* x: unused, the transform makes it */
    return launch_v8(view_of(m), none, c, (int)nb, y, vec, stream);
}
