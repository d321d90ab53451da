/*
 * cb_gemm.cu — fused 2-bit codebook GEMM on tensor cores, for batches of
 * tokens too large for the GEMVs (chunked prefill, batched serving):
 *
 *   Y (n, rows) = X (n, cols) · Wᵀ,   W (rows, cols) a 2-bit codebook matrix (cb.h)
 *
 * Why fused: the alternative dequantizes the whole matrix to fp16 in global
 * memory (2 bytes written + 2 read per weight) and then runs cuBLAS: 16x the
 * bytes of the packed 2-bit matrix, whatever the batch. Here each
 * block streams the packed indices (cp.async, ST stages), turns one K-stage
 * of its BM rows into an fp16 tile in shared memory (PRMT codebook lookups,
 * group scales and CSR outliers applied there, once per tile rather than once
 * per token), and runs mma.sync m16n8k16 (fp32 accumulate) from that tile and
 * the staged fp16 X with ldmatrix. Folding the outliers into the W tile makes
 * them cost rows*nnz adds per block instead of nnz*n scalar multiply-adds.
 *
 * Block = WM x WN x WK warps over a BM x BN tile of (rows x tokens); one
 * K-stage is KG 64-column groups; warp (wm, wn, wk) owns a (BM/WM) x (BN/WN)
 * sub-tile and the stage's groups wk, wk + WK, ... (split-K inside the block,
 * summed through shared memory at the end). The compiled configurations are
 * a short list (launch_gemm below); anything else is not compiled.
 *
 * Numerics: W rounded to fp16 after the group scale and after each outlier
 * add, X is the caller's fp16 copy, products and sums in fp32: the same
 * bound as the fp16 GEMV kernels, |Y - exact| <= ~1e-3 * sum|W||x|.
 *
 * Measured (H200, bench/cuda/h2_s4_gemm_bench.cu; logs in bench/cuda/results/
 * h200_2026-11-26_s4_h2_*): 14336 x 4096 at n = 16 / 64 / 128: 26 / 49 / 77 us
 * vs 97 / 98 / 100 for dequant + cuBLAS; at n = 512 224 us vs 155 (cuBLAS on
 * a ready fp16 matrix: 94). mma.sync here peaks near 270 TFLOP/s, cuBLAS's
 * kernels near 640: past ~128-256 tokens the dequant pass is worth paying.
 * 1 % outliers add ~50 % at n = 8..16 (the CSR walk is latency-bound).
 */
#include "cb_device.cuh"
#include "cuda_api.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

namespace {

using opc_cuda::cbk_cp16;
using opc_cuda::cbk_cp_commit;
using opc_cuda::cbk_cp_wait;
using opc_cuda::cbk_mma16816;
using opc_cuda::cbk_prmt;
using opc_cuda::cbk_row_pairs;

/* The kernel's view of a checked matrix (device pointers, no ownership).
 * The GEMV's header (cb_gemv_kernels.cuh) defines non-template kernels and
 * cannot be included by a second translation unit; the helpers both need
 * live in cb_device.cuh. */
struct GemmView {
    const uint4 *idx;          /* (rows, groups) 16-byte index groups */
    const uint16_t *codebook;  /* (rows, k) fp16 */
    const uint32_t *ol_rowptr; /* (rows + 1), NULL when no outliers */
    const uint16_t *ol_col;    /* (n_outliers) */
    const uint16_t *ol_val;    /* (n_outliers) fp16 deltas */
    const uint8_t *gs;         /* (rows, gs_stride) group scale bytes, or NULL */
    int rows, cols, groups, k, gs_stride;
};

/* ------------------------------------------------------ PTX helpers ---- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* Four 8x8 b16 matrices; lane l gives the row address of matrix l / 8. */
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* The PRMT tables of a codebook: lo = the low bytes of cb0..cb3, hi = the
 * high bytes. Selector nibbles (i0, i0 + 4, i1, i1 + 4) then give the fp16
 * pair (cb[i0], cb[i1]) in one PRMT. */
__device__ __forceinline__ void planes(uint32_t c01, uint32_t c23, uint32_t &lo, uint32_t &hi) {
    lo = __byte_perm(c01, c23, 0x6420);
    hi = __byte_perm(c01, c23, 0x7531);
}

/* Both selectors of the 4 two-bit indices in bits [0,2) of each byte of w:
 * 0x11 * i + 0x40 per byte; low half = bytes 0-1, high half = bytes 2-3. */
__device__ __forceinline__ uint32_t sel2(uint32_t w) { return (w & 0x03030303u) * 0x11u + 0x40404040u; }

/* (c01, c23) times the group scale s(q) = 2^(-q/16) (cb.h), as fp16 pairs. */
__device__ __forceinline__ void pairs_scaled(uint32_t c01, uint32_t c23, uint32_t q, uint32_t &s01, uint32_t &s23) {
    const __half2 s = __half2half2(__float2half_rn(exp2f((float)q * -0.0625f)));
    __half2 a = __hmul2(*reinterpret_cast<const __half2 *>(&c01), s);
    __half2 b = __hmul2(*reinterpret_cast<const __half2 *>(&c23), s);
    s01 = *reinterpret_cast<uint32_t *>(&a), s23 = *reinterpret_cast<uint32_t *>(&b);
}

/* -------------------------------------------------------- the kernel --- */

/* Shared memory of one configuration, in bytes (all offsets 16-byte aligned):
 *   idx  (ST, KG, BM) 16-byte index groups: a group's BM rows contiguous, so
 *        the dequantizing threads (consecutive rows) read consecutive words
 *   xs   (ST, BN, XR) fp16: X of the stage, row = KG*64 columns + 8 padding
 *   ws   (2, BM, XR) fp16: the dequantized W tiles of two stages
 * XR = KG*64 + 8 halves: a row stride of 16 (mod 128) bytes puts the 8 rows
 * of an ldmatrix 8x8 matrix on 8 distinct 4-bank slices (no conflicts).
 * After the main loop the same memory holds red (WK, BN, BM+1) fp32 partials. */
template <int BM, int BN, int KG, int WK, int ST> struct GemmSmem {
    static constexpr int XR = KG * 64 + 8;
    static constexpr size_t idx_bytes = (size_t)ST * KG * BM * 16;
    static constexpr size_t xs_bytes = (size_t)ST * BN * XR * 2;
    static constexpr size_t ws_bytes = (size_t)2 * BM * XR * 2; /* double-buffered */
    static constexpr size_t main_bytes = idx_bytes + xs_bytes + ws_bytes;
    static constexpr size_t red_bytes = (size_t)WK * BN * (BM + 1) * 4;
    static constexpr size_t bytes = main_bytes > red_bytes ? main_bytes : red_bytes;
};

template <int BM, int BN, int KG, int WM, int WN, int WK, int ST, bool GS, bool OL>
__global__ void __launch_bounds__(WM *WN *WK * 32)
    cb_gemm_kernel(GemmView m, const __half *__restrict__ x16, int n, float *__restrict__ y) {
    constexpr int NW = WM * WN * WK, NTH = NW * 32;
    constexpr int TM = BM / WM, TN = BN / WN; /* warp tile */
    constexpr int MT = TM / 16, NT = TN / 8;  /* mma tiles per warp */
    static_assert(TM % 16 == 0 && TN % 16 == 0, "warp tile: 16-row m tiles, pairs of 8-token n tiles");
    static_assert(KG % WK == 0, "the stage's groups split evenly over the K warps");
    static_assert(NTH % BM == 0, "each thread converts one fixed row (its codebook kept in registers)");
    static_assert((BM * KG * 2) % NTH == 0, "dequant items split evenly over the threads");
    static_assert(ST >= 3, "loads two stages ahead of the conversion, three of the mma");
    typedef GemmSmem<BM, BN, KG, WK, ST> SM;
    constexpr int XR = SM::XR;

    extern __shared__ __align__(16) unsigned char smem[];
    uint4 *idx_s = reinterpret_cast<uint4 *>(smem);                          /* (ST, KG, BM) */
    __half *xs = reinterpret_cast<__half *>(smem + SM::idx_bytes);            /* (ST, BN, XR) */
    __half *ws = reinterpret_cast<__half *>(smem + SM::idx_bytes + SM::xs_bytes); /* (2, BM, XR) */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wk = warp % WK, wn = (warp / WK) % WN, wm = warp / (WK * WN);
    const int row0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int nstages = (m.groups + KG - 1) / KG;

    /* Loader: stage s -> buffer s % ST. Index groups past the row's end and
     * rows past `rows` are zero-filled; X chunks (8 columns, 16 bytes) past
     * `cols` (cols % 8 == 0, so a chunk is all in or all out) or past n too,
     * so padding columns and missing tokens contribute 0. */
    auto load_stage = [&](int s) {
        const int buf = s % ST, G0 = s * KG;
        uint4 *id = idx_s + (size_t)buf * KG * BM;
        for (int i = tid; i < KG * BM; i += NTH) {
            const int kg = i / BM, r = i - kg * BM, G = G0 + kg, gr = row0 + r;
            const bool ok = G < m.groups && gr < m.rows;
            cbk_cp16(id + i, m.idx + (ok ? (size_t)gr * m.groups + G : 0), ok);
        }
        __half *xb = xs + (size_t)buf * BN * XR;
        const int c0 = G0 * 64;
        for (int i = tid; i < BN * KG * 8; i += NTH) {
            const int tk = i / (KG * 8), ch = i - tk * (KG * 8), col = c0 + ch * 8, b = n0 + tk;
            const bool ok = b < n && col < m.cols;
            cbk_cp16(xb + tk * XR + ch * 8, x16 + (ok ? (size_t)b * m.cols + col : 0), ok);
        }
    };

    /* Dequantizer: thread tid always converts row dr = tid % BM of the tile
     * (NTH % BM == 0), so that row's codebook stays in registers. Its items
     * are (group kg, half h) with rest = h * KG + kg = tid / BM + it * NTH / BM. */
    const int dr = tid % BM, dgr = row0 + dr;
    const bool drow_ok = dgr < m.rows;
    uint32_t lo = 0u, hi = 0u, c01 = 0u, c23 = 0u;
    if (drow_ok) cbk_row_pairs(m, dgr, c01, c23);
    if (!GS) planes(c01, c23, lo, hi);
    /* Outliers: every thread walks its row's CSR entries in column order (a
     * cursor over the stages) and adds the ones in its own items' columns
     * to the values it has stored: no other thread touches those addresses,
     * so no barrier. The threads of a row read the same entries (L1 hits).
     * The next OB entries are fetched before the mma of the previous stage
     * and applied after it, so their load latency hides behind the mma. */
    constexpr int OB = 4;
    uint32_t oe = 0u, oe1 = 0u;
    int oc[OB];
    uint16_t ov[OB];
    if (OL && drow_ok) oe = __ldg(m.ol_rowptr + dgr), oe1 = __ldg(m.ol_rowptr + dgr + 1);
    auto ol_fetch = [&]() {
#pragma unroll
        for (int i = 0; i < OB; i++) {
            const bool in = oe + i < oe1;
            oc[i] = in ? (int)__ldg(m.ol_col + oe + i) : INT_MAX;
            ov[i] = in ? __ldg(m.ol_val + oe + i) : (uint16_t)0;
        }
    };
    /* the fetched entries that fall in stage s, added to wsb; more fetches
     * only when a row has more than OB outliers in one stage */
    auto ol_apply = [&](int s, __half *wsb) {
        const int c0 = s * KG * 64, c1 = c0 + KG * 64;
        for (;;) {
            int used = 0;
#pragma unroll
            for (int i = 0; i < OB; i++) {
                const int c = oc[i];
                if (c >= c1) continue; /* sorted: this and the rest belong to later stages */
                used++;
                const int rest = ((c >> 3) & 1) * KG + ((c - c0) >> 6); /* the item holding column c */
                if ((rest - tid / BM) % (NTH / BM) != 0) continue;      /* another thread's */
                __half *p = wsb + dr * XR + (c - c0);
                *p = __hadd(*p, __ushort_as_half(ov[i]));
            }
            oe += used;
            if (used < OB) break;
            ol_fetch();
        }
    };

    /* indices of stage s -> fp16 W tile wsb. Words 2h, 2h+1 of a group hold
     * columns 16j + 8h + 0..7 (j = 0..3) at bit shift 2j (cb.h): one 16-byte
     * store per j. */
    auto dequant = [&](int s, __half *wsb) {
        const uint4 *id = idx_s + (size_t)(s % ST) * KG * BM;
#pragma unroll
        for (int it = 0; it < BM * KG * 2 / NTH; it++) {
            const int rest = (tid + it * NTH) / BM, kg = rest % KG, h = rest / KG;
            const uint2 w = reinterpret_cast<const uint2 *>(id + kg * BM + dr)[h];
            if (GS) {
                const int G = s * KG + kg;
                const uint32_t q = drow_ok && G < m.groups ? __ldg(m.gs + (size_t)dgr * m.gs_stride + G) : 0u;
                uint32_t s01, s23;
                pairs_scaled(c01, c23, q, s01, s23);
                planes(s01, s23, lo, hi);
            }
            __half *dst = wsb + dr * XR + kg * 64 + 8 * h;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint32_t u0 = sel2(w.x >> (2 * j)), u1 = sel2(w.y >> (2 * j));
                uint4 v;
                v.x = cbk_prmt(lo, hi, u0);       /* columns 16j + 8h + 0, 1 */
                v.y = cbk_prmt(lo, hi, u0 >> 16); /* + 2, 3 */
                v.z = cbk_prmt(lo, hi, u1);       /* + 4, 5 */
                v.w = cbk_prmt(lo, hi, u1 >> 16); /* + 6, 7 */
                *reinterpret_cast<uint4 *>(dst + 16 * j) = v;
            }
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    /* Pipeline: loads run ST-1 stages ahead; the W tile is double-buffered,
     * so iteration s converts stage s+1 and then multiplies stage s with one
     * barrier per stage (a warp's conversion overlaps other warps' mma). */
#pragma unroll
    for (int s = 0; s < ST - 1; s++) {
        if (s < nstages) load_stage(s);
        cbk_cp_commit(); /* empty groups keep the wait count uniform */
    }
    cbk_cp_wait<ST - 2>();
    __syncthreads();
    dequant(0, ws);
    if (OL) {
        ol_fetch();
        ol_apply(0, ws);
    }

    for (int s = 0; s < nstages; s++) {
        cbk_cp_wait<ST - 3>(); /* this thread's copies of stage s+1 have landed */
        __syncthreads();   /* ws[s&1] complete; stage s+1 visible; stage s-1's buffers and ws[(s+1)&1] free */
        if (s + ST - 1 < nstages) load_stage(s + ST - 1);
        cbk_cp_commit();
        __half *wnext = ws + (size_t)((s + 1) & 1) * BM * XR;
        if (s + 1 < nstages) {
            dequant(s + 1, wnext);
            if (OL) ol_fetch();
        }

        /* tensor cores: A (16x16 of W) and B (16 k x 8 tokens of X) by ldmatrix */
        const __half *wsb = ws + (size_t)(s & 1) * BM * XR;
        const __half *xb = xs + (size_t)(s % ST) * BN * XR;
#pragma unroll
        for (int kgi = 0; kgi < KG / WK; kgi++) {
            const int kg = wk + kgi * WK;
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                const int k0 = kg * 64 + ks * 16;
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) /* lanes 0-15: rows 0-15 at k0, lanes 16-31: same rows at k0 + 8 */
                    ldsm_x4(smem_u32(wsb + (wm * TM + mt * 16 + (lane & 15)) * XR + k0 + (lane >> 4) * 8), a[mt][0],
                            a[mt][1], a[mt][2], a[mt][3]);
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    /* matrices: (tokens 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15) */
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(smem_u32(xb + (wn * TN + np * 16 + (lane & 7) + ((lane >> 4) << 3)) * XR + k0 +
                                     ((lane >> 3) & 1) * 8),
                            b0, b1, b2, b3);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        cbk_mma16816(acc[mt][2 * np], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b0, b1);
                        cbk_mma16816(acc[mt][2 * np + 1], a[mt][0], a[mt][1], a[mt][2], a[mt][3], b2, b3);
                    }
                }
            }
        }
        if (OL && s + 1 < nstages) ol_apply(s + 1, wnext); /* before the next barrier publishes wnext */
    }

    /* Epilogue: the WK partial tiles through shared memory, then one thread
     * per (token, row) with rows fastest: coalesced stores of Y (n, rows). */
    cbk_cp_wait<0>();
    __syncthreads();
    float *red = reinterpret_cast<float *>(smem); /* (WK, BN, BM + 1) */
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int r = wm * TM + mt * 16 + g, tk = wn * TN + nt * 8 + 2 * t;
            float *p = red + ((size_t)wk * BN + tk) * (BM + 1) + r;
            p[0] = acc[mt][nt][0];
            p[BM + 1] = acc[mt][nt][1];
            p[8] = acc[mt][nt][2];
            p[BM + 1 + 8] = acc[mt][nt][3];
        }
    __syncthreads();
    for (int i = tid; i < BN * BM; i += NTH) {
        const int tk = i / BM, r = i - tk * BM, gr = row0 + r, b = n0 + tk;
        if (gr >= m.rows || b >= n) continue;
        float v = 0.0f;
#pragma unroll
        for (int k = 0; k < WK; k++) v += red[((size_t)k * BN + tk) * (BM + 1) + r];
        y[(size_t)b * m.rows + gr] = v;
    }
}

/* ------------------------------------------------------- host side ---- */

static opc_status cuda_fail(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* One compiled configuration: raise its shared-memory limit once (benign
 * race: every writer stores the same value), then launch. */
template <int BM, int BN, int KG, int WM, int WN, int WK, int ST, bool GS, bool OL>
static opc_status launch_cfg(const GemmView &v, const uint16_t *x16, int n, float *y, cudaStream_t s) {
    typedef GemmSmem<BM, BN, KG, WK, ST> SM;
    auto kern = cb_gemm_kernel<BM, BN, KG, WM, WN, WK, ST, GS, OL>;
    static int smem_ok = 0;
    if (!smem_ok) {
        cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SM::bytes);
        if (e != cudaSuccess) return cuda_fail(e, "opc_cuda_cb_gemm: shared memory limit");
        smem_ok = 1;
    }
    const dim3 grid((unsigned)((v.rows + BM - 1) / BM), (unsigned)((n + BN - 1) / BN));
    kern<<<grid, WM * WN * WK * 32, SM::bytes, s>>>(v, reinterpret_cast<const __half *>(x16), n, y);
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? OPC_OK : cuda_fail(e, "opc_cuda_cb_gemm");
}

template <int BM, int BN, int KG, int WM, int WN, int WK, int ST>
static opc_status launch_any(const GemmView &v, const uint16_t *x16, int n, float *y, cudaStream_t s) {
    const bool gs = v.gs != NULL, ol = v.ol_rowptr != NULL;
    if (gs) return ol ? launch_cfg<BM, BN, KG, WM, WN, WK, ST, true, true>(v, x16, n, y, s)
                      : launch_cfg<BM, BN, KG, WM, WN, WK, ST, true, false>(v, x16, n, y, s);
    return ol ? launch_cfg<BM, BN, KG, WM, WN, WK, ST, false, true>(v, x16, n, y, s)
              : launch_cfg<BM, BN, KG, WM, WN, WK, ST, false, false>(v, x16, n, y, s);
}

/* The compiled configurations (BM x BN tile, KG groups per stage, warps
 * WM x WN x WK, ST stages), 8 warps each:
 *   S32  32 x 16,  8 groups, 1x1x8   small batches on short matrices: 4096 rows -> 128 blocks
 *   S64  64 x 16,  4 groups, 2x1x4   small batches
 *   M    64 x 64,  2 groups, 2x2x2   warp tile 32 x 32
 *   L   128 x 128, 1 group,  2x4x1   warp tile 64 x 32, X re-read least */
static opc_status launch_gemm(const GemmView &v, const uint16_t *x16, int n, float *y, cudaStream_t s,
                              opc_cuda_gemm_cfg cfg) {
    switch (cfg) {
    case OPC_CUDA_GEMM_S32: return launch_any<32, 16, 8, 1, 1, 8, 3>(v, x16, n, y, s);
    case OPC_CUDA_GEMM_S64: return launch_any<64, 16, 4, 2, 1, 4, 3>(v, x16, n, y, s);
    case OPC_CUDA_GEMM_M: return launch_any<64, 64, 2, 2, 2, 2, 3>(v, x16, n, y, s);
    case OPC_CUDA_GEMM_L: return launch_any<128, 128, 1, 2, 4, 1, 3>(v, x16, n, y, s);
    default: return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_cb_gemm: unknown configuration %d", (int)cfg);
    }
}

/* Multiprocessors of the current device (cached; a benign race writes the
 * same value); 132 when the query fails (H100/H200). */
static int sm_count(void) {
    static int sms = 0;
    if (!sms) {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) !=
                                                      cudaSuccess || n < 1) {
            cudaGetLastError();
            n = 132;
        }
        sms = n;
    }
    return sms;
}

/* What AUTO picks: the largest tile (L, M, S64) whose token width n fills at
 * least once and whose grid still covers 3/4 of the SMs, else S32. Larger
 * tiles re-read less of X and W from L2 and issue more mma per barrier, but
 * a grid smaller than the GPU leaves SMs idle (H200 measurements in
 * bench/cuda/results/h200_2026-11-26_s4_h2_*: e.g. 4096 x 4096 at n = 128:
 * L, 32 blocks: 76.6 us; M, 128 blocks: 33.2 us). */
static opc_cuda_gemm_cfg auto_cfg(const opc_cuda_cb_matrix *m, int64_t n) {
    static const struct { opc_cuda_gemm_cfg cfg; int bm, bn, min_n; } c[] = {
        {OPC_CUDA_GEMM_L, 128, 128, 128}, {OPC_CUDA_GEMM_M, 64, 64, 64}, {OPC_CUDA_GEMM_S64, 64, 16, 1}};
    const int64_t want = (int64_t)sm_count() * 3 / 4;
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const int64_t blocks = (m->rows + c[i].bm - 1) / c[i].bm * ((n + c[i].bn - 1) / c[i].bn);
        if (n >= c[i].min_n && blocks >= want) return c[i].cfg;
    }
    return OPC_CUDA_GEMM_S32;
}

/* Whether the tensor-core kernels were compiled for sm_80+ (ldmatrix and
 * mma.sync m16n8k16); cached, a benign race writes the same value. */
static bool gemm_compiled(void) {
    static int ok = -1;
    if (ok < 0) {
        cudaFuncAttributes a;
        ok = cudaFuncGetAttributes(&a, cb_gemm_kernel<128, 128, 1, 2, 4, 1, 3, false, false>) == cudaSuccess &&
             a.ptxVersion >= 80;
        cudaGetLastError();
    }
    return ok == 1;
}

} /* namespace */

extern "C" int opc_cuda_cb_gemm_ok(const opc_cuda_cb_matrix *m) {
    return m && m->bits == 2 && m->k >= 1 && m->k <= 4 && m->rows > 0 && m->cols > 0 && m->rows <= INT_MAX &&
           m->cols <= INT_MAX && m->cols % 8 == 0 && m->row_bytes == opc_cb_row_bytes(2, m->cols) &&
           gemm_compiled();
}

extern "C" opc_status opc_cuda_cb_gemm_with(const opc_cuda_cb_matrix *m, const uint16_t *x16, int64_t n, float *y,
                                           opc_cuda_stream stream, opc_cuda_gemm_cfg cfg) {
    const char *fn = "opc_cuda_cb_gemm";
    if (!m || !x16 || !y) return opc_error(OPC_ERR_INVALID_ARG, "%s: NULL argument", fn);
    opc_status st = opc_cuda_cb_check(m, fn);
    if (st != OPC_OK) return st;
    if (m->cols % 8 != 0 || ((uintptr_t)x16 & 15u))
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: X is staged in 16-byte pieces: needs cols %% 8 == 0 (got %lld) and a 16-byte aligned x16",
                         fn, (long long)m->cols);
    if (n < 1 || n > 65535LL * 16)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: batch %lld outside 1..%lld", fn, (long long)n, 65535LL * 16);
    if (cfg < OPC_CUDA_GEMM_AUTO || cfg > OPC_CUDA_GEMM_L)
        return opc_error(OPC_ERR_INVALID_ARG, "%s: unknown configuration %d", fn, (int)cfg);
    if (!gemm_compiled())
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: not compiled for sm_80+ (mma.sync m16n8k16)", fn);
    GemmView v;
    v.idx = reinterpret_cast<const uint4 *>(m->idx);
    v.codebook = m->codebook;
    v.ol_rowptr = m->n_outliers ? m->ol_rowptr : NULL;
    v.ol_col = m->ol_col;
    v.ol_val = m->ol_val;
    v.gs = m->gscale;
    v.gs_stride = m->gscale ? (int)m->gs_stride : 0;
    v.rows = (int)m->rows, v.cols = (int)m->cols, v.k = m->k;
    v.groups = (int)(m->row_bytes / 16);
    if (cfg == OPC_CUDA_GEMM_AUTO) cfg = auto_cfg(m, n);
    return launch_gemm(v, x16, (int)n, y, stream, cfg);
}

extern "C" opc_status opc_cuda_cb_gemm(const opc_cuda_cb_matrix *m, const uint16_t *x16, int64_t n, float *y,
                                      opc_cuda_stream stream) {
    return opc_cuda_cb_gemm_with(m, x16, n, y, stream, OPC_CUDA_GEMM_AUTO);
}
