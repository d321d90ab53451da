/*
 * cb_gemv_kernels.cuh — CUDA kernels for the 2-bit codebook GEMV (decode,
 * batch 1..8). Header-only and free of project headers so that the kernel lab
 * (bench/cuda/cb_gemv_lab.cu) times and validates exactly the code the
 * library launches (src/cuda/cb_gemv.cu).
 *
 * Layout read (src/quant/cb.h is normative): row r has `groups` = ceil(cols/64)
 * 16-byte groups; byte t of a group holds the index of column 16*j + t in bits
 * [2j, 2j+2). Seen as four little-endian 32-bit words w[0..3], word m byte b
 * (b = 0..3) is byte t = 4m + b, so for a fixed j the word m covers columns
 * 16j + 4m + (0..3): the half-word pair (bytes 2p, 2p+1) of word m gives the
 * two consecutive columns 16j + 4m + 2p + (0, 1).
 *
 * Math: y[b][r] = sum_c W[r][c] * x[b][c] with W[r][c] = cb[r][idx] (+ CSR
 * outlier deltas). Padding columns (c >= cols in the last group) have index 0;
 * the kernels read x there as 0 so they contribute nothing.
 *
 * Why tensor cores: at HBM speed a 2-bit GEMV must consume ~13-17 T weights/s
 * on an H100/H200; the scalar path (extract index, select, convert, FMA per
 * weight) needs 4-7 instructions per weight and runs out of issue slots long
 * before memory runs out of bytes. The fast path turns a pair of indices into
 * a pair of fp16 codebook values with one PRMT (a byte gather from two
 * registers holding the codebook's low and high bytes) and lets mma.sync do
 * the multiply-adds in fp32: ~2 instructions per weight in the inner loop.
 *
 * Versions (all validated by the lab; numbers in docs/RESULTS.md):
 *   v1  warp per row, selects, fp32 FMA          the correctness anchor
 *   v2  warp per row, PRMT lookup, fp32 FMA      CUDA cores only (pre-sm_80 fallback)
 *   v3  PRMT + mma.sync, x loaded per MMA        latency-bound: 5-17 % of copy
 *   v4  v3 + x staged in shared memory (fp16)    the library's kernel (SLAB)
 *   v5  v4 persistent + weight prefetch          no better than v4 (tail imbalance)
 *   v6  x per lane from global, no staging       fewer instructions, L1-bound: slower
 *   v7  persistent, cp.async weight stages       loads never wait behind math (lab numbers)
 *   v8  int8 mma m16n8k32, 4 lookups per PRMT    x quantized to 16 bits in shared memory (see below)
 * Group scales (cb.h gscale): v2, v4 and v7 (the library's kernels) scale the
 * codebook per (row, 64-column group) before the lookup; v1/v3/v5/v6 do not.
 */
#ifndef OPC_CB_GEMV_KERNELS_CUH
#define OPC_CB_GEMV_KERNELS_CUH

#include "cb_device.cuh"

#include <cuda_fp16.h>
#include <stdint.h>

namespace opc_cuda {

#define OPC_CBK_MAX_BATCH 8 /* mma n = 8: one x vector per batch column */

/* A 2-bit codebook matrix in device memory (views, no ownership). */
struct CbView {
    const uint4 *idx;          /* (rows, groups) 16-byte index groups */
    const uint16_t *codebook;  /* (rows, k) fp16 */
    const uint32_t *ol_rowptr; /* (rows + 1) CSR row pointers, NULL when no outliers */
    const uint16_t *ol_col;    /* (n_outliers) column */
    const uint16_t *ol_val;    /* (n_outliers) fp16 delta */
    const uint8_t *gs;         /* (rows, gs_stride) group scale bytes q (s = 2^(-q/16)), or NULL */
    int rows, cols, groups, k;
    int gs_stride;             /* bytes per row of gs, a multiple of 16 >= groups */
    uint32_t ol_n = 0;         /* n_outliers (sizes v8's shared-memory copy of the CSR entries; 0: none staged) */
};

/* ------------------------------------------------------------ helpers --- */



/* Codebook of row r as byte planes for the PRMT lookup: lo holds the low
 * bytes of cb[0..3], hi the high bytes. Entries >= k are 0 (never indexed by
 * valid data). */
__device__ __forceinline__ void cbk_row_planes(const CbView &m, int r, uint32_t &lo,
                                               uint32_t &hi) {
    uint32_t p01, p23;
    if (m.k == 4) { /* the usual case: one 8-byte load (rows of 4 fp16 are 8-byte aligned) */
        const uint2 c = __ldg(reinterpret_cast<const uint2 *>(m.codebook) + r);
        p01 = c.x, p23 = c.y;
    } else {
        uint32_t c[4];
#pragma unroll
        for (int i = 0; i < 4; i++) c[i] = i < m.k ? m.codebook[(size_t)r * m.k + i] : 0u;
        p01 = c[0] | (c[1] << 16), p23 = c[2] | (c[3] << 16);
    }
    lo = __byte_perm(p01, p23, 0x6420);
    hi = __byte_perm(p01, p23, 0x7531);
}


/* The PRMT byte planes (see cbk_row_planes) of a codebook given as pairs,
 * each value multiplied by the fp16 pair s2 = (s, s): a group's scaled
 * codebook costs 2 HMUL2 + 2 PRMT per row and group, not one op per weight.
 * The product is rounded to fp16 (relative error <= 2^-11, like x). */
__device__ __forceinline__ void cbk_planes_scaled(uint32_t c01, uint32_t c23, uint32_t s2, uint32_t &lo,
                                                  uint32_t &hi) {
    __half2 a = __hmul2(*reinterpret_cast<__half2 *>(&c01), *reinterpret_cast<__half2 *>(&s2));
    __half2 b = __hmul2(*reinterpret_cast<__half2 *>(&c23), *reinterpret_cast<__half2 *>(&s2));
    const uint32_t p01 = *reinterpret_cast<uint32_t *>(&a), p23 = *reinterpret_cast<uint32_t *>(&b);
    lo = __byte_perm(p01, p23, 0x6420);
    hi = __byte_perm(p01, p23, 0x7531);
}

/* Group scale s(q) = 2^(-q/16) (cb.h opc_cb_scale) as an fp16 pair (s, s).
 * exp2f is within 2 ulp of fp32; the fp16 rounding that follows dominates. */
__device__ __forceinline__ uint32_t cbk_scale_h2(uint32_t q) {
    const __half h = __float2half_rn(exp2f((float)q * -0.0625f));
    const uint32_t u = __half_as_ushort(h);
    return u | (u << 16);
}

/* Two fp16 codebook values (as a half2 in a uint32) for the index pair at
 * bits [s, s+2) and [s+8, s+10) of w: v = i0 | i1 << 8, and the PRMT selector
 * needs nibbles (i0, i0+4, i1, i1+4) = 0x11 * v + 0x4040 — one IMAD. */
__device__ __forceinline__ uint32_t cbk_lookup2(uint32_t w, int s, uint32_t lo, uint32_t hi) {
    uint32_t v = (w >> s) & 0x0303u;
    return __byte_perm(lo, hi, v * 0x11u + 0x4040u);
}

__device__ __forceinline__ uint32_t cbk_pack_h2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b); /* a in the low half */
    return *reinterpret_cast<uint32_t *>(&h);
}

/* x[c0 .. c0+3] of one vector, zero past `cols`. vec: x and cols allow 16-byte loads. */
__device__ __forceinline__ float4 cbk_load_x4(const float *x, int c0, int cols, bool vec) {
    if (vec && c0 + 4 <= cols) return __ldg(reinterpret_cast<const float4 *>(x + c0));
    float4 v;
    v.x = c0 + 0 < cols ? __ldg(x + c0 + 0) : 0.0f;
    v.y = c0 + 1 < cols ? __ldg(x + c0 + 1) : 0.0f;
    v.z = c0 + 2 < cols ? __ldg(x + c0 + 2) : 0.0f;
    v.w = c0 + 3 < cols ? __ldg(x + c0 + 3) : 0.0f;
    return v;
}

__device__ __forceinline__ float cbk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum of outlier deltas times x for row r, one vector; the whole warp
 * cooperates (lanes stride the row's CSR entries). Returns the sum in every lane. */
__device__ __forceinline__ float cbk_outliers_row(const CbView &m, int r, const float *x, int lane) {
    float s = 0.0f;
    for (uint32_t e = m.ol_rowptr[r] + lane; e < m.ol_rowptr[r + 1]; e += 32)
        s += __half2float(__ushort_as_half(m.ol_val[e])) * __ldg(x + m.ol_col[e]);
    return cbk_warp_sum(s);
}

/* ------------------------------------------------ v1: scalar reference --- */

/* One warp per row, one 16-byte group per lane per step, index -> value by
 * selects, fp32 FMA. Simple and obviously right: the lab's correctness anchor
 * and the speed floor. Grid: ceil(rows / warps_per_block); one x vector. */
__global__ void cbk_gemv_v1(CbView m, const float *__restrict__ x, float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int r = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    if (r >= m.rows) return;
    float c[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        c[i] = i < m.k ? __half2float(__ushort_as_half(m.codebook[(size_t)r * m.k + i])) : 0.0f;
    const uint4 *row = m.idx + (size_t)r * m.groups;
    float acc = 0.0f;
    for (int g = lane; g < m.groups; g += 32) {
        uint4 q = row[g];
        uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int mm = 0; mm < 4; mm++)
#pragma unroll
                for (int t = 0; t < 4; t++) {
                    int col = g * 64 + 16 * j + 4 * mm + t;
                    uint32_t i = (w[mm] >> (8 * t + 2 * j)) & 3u;
                    float v = (i & 2u) ? ((i & 1u) ? c[3] : c[2]) : ((i & 1u) ? c[1] : c[0]);
                    if (col < m.cols) acc = fmaf(v, __ldg(x + col), acc);
                }
    }
    acc = cbk_warp_sum(acc);
    if (m.ol_rowptr) acc += cbk_outliers_row(m, r, x, lane);
    if (lane == 0) y[r] = acc;
}

/* ------------------------------------- v2: PRMT lookup, CUDA-core FMA --- */

/* Same shape as v1, but indices become fp16 codebook pairs through one PRMT
 * each, then fp32 FMA with x read as float4. Shows what the lookup alone buys
 * without tensor cores. vec: x rows are 16-byte aligned (cols % 4 == 0). */
__global__ void cbk_gemv_v2(CbView m, const float *__restrict__ x, float *__restrict__ y, int vec) {
    const int lane = threadIdx.x & 31;
    const int r = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    if (r >= m.rows) return;
    uint32_t lo, hi, c01, c23;
    cbk_row_planes(m, r, lo, hi);
    cbk_row_pairs(m, r, c01, c23);
    const uint4 *row = m.idx + (size_t)r * m.groups;
    float acc0 = 0.0f, acc1 = 0.0f;
    for (int g = lane; g < m.groups; g += 32) {
        uint4 q = row[g];
        if (m.gs) cbk_planes_scaled(c01, c23, cbk_scale_h2(m.gs[(size_t)r * m.gs_stride + g]), lo, hi);
        uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int mm = 0; mm < 4; mm++) {
                float4 xv = cbk_load_x4(x, g * 64 + 16 * j + 4 * mm, m.cols, vec != 0);
                uint32_t p0 = cbk_lookup2(w[mm], 2 * j, lo, hi);
                uint32_t p1 = cbk_lookup2(w[mm], 16 + 2 * j, lo, hi);
                float2 f0 = __half22float2(*reinterpret_cast<__half2 *>(&p0));
                float2 f1 = __half22float2(*reinterpret_cast<__half2 *>(&p1));
                acc0 = fmaf(f0.x, xv.x, acc0);
                acc1 = fmaf(f0.y, xv.y, acc1);
                acc0 = fmaf(f1.x, xv.z, acc0);
                acc1 = fmaf(f1.y, xv.w, acc1);
            }
    }
    float acc = cbk_warp_sum(acc0 + acc1);
    if (m.ol_rowptr) acc += cbk_outliers_row(m, r, x, lane);
    if (lane == 0) y[r] = acc;
}

/* ---------------------------------- v3: PRMT lookup + mma.sync (fp32) --- */


/*
 * Block = WK warps over MT*16 rows; the warps split the row's groups (split-K)
 * and add their partial sums through shared memory at the end.
 *
 * mma m16n8k16 fragments (lane = 4*g + t): A rows g and g+8, k-slots
 * (2t, 2t+1) and (2t+8, 2t+9); B k-slots the same, batch column n = g; D rows
 * g, g+8, batch columns 2t, 2t+1. Since a GEMV's sum over k does not care
 * which physical column a k-slot stands for, lane (g, t) lets its k-slots be
 * columns of ITS OWN 16-byte group G = gbase + t, for both A (its two rows)
 * and B (x of batch g): every lane consumes exactly the bytes it loaded, no
 * shuffles. MMA number q (0..15) of a group covers the group's columns
 * 4q .. 4q+3: slots (2t, 2t+1) = columns 4q, 4q+1 (word q%4, shift 2(q/4)) and
 * slots (2t+8, 2t+9) = columns 4q+2, 4q+3 (same word, shift 16 + 2(q/4)).
 *
 * Why this shape: a lane issues 2*MT independent 16-byte loads per step
 * (several in flight hides HBM latency); the B fragment (x) is loaded once per
 * group and reused by MT row tiles; the batch (n <= 8) rides in the mma's
 * otherwise idle columns, so batch 8 reads the weights once.
 */
template <int MT, int WK>
__global__ void __launch_bounds__(WK * 32)
    cbk_gemv_mma(CbView m, const float *__restrict__ x, int nb, float *__restrict__ y, int vec) {
    __shared__ float red[WK][MT * 16][OPC_CBK_MAX_BATCH + 1]; /* +1: no bank conflicts */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * MT * 16;

    uint32_t lo[MT][2], hi[MT][2];
    const uint4 *rowp[MT][2];
    bool rv[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = row0 + mt * 16 + g + 8 * h;
            rv[mt][h] = r < m.rows;
            lo[mt][h] = hi[mt][h] = 0u;
            if (rv[mt][h]) cbk_row_planes(m, r, lo[mt][h], hi[mt][h]);
            rowp[mt][h] = m.idx + (size_t)(rv[mt][h] ? r : 0) * m.groups;
        }

    float acc[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;

    const bool xload = g < nb;
    const float *xb = x + (size_t)(xload ? g : 0) * m.cols;
    const bool xvec = vec != 0;

    /* warp-uniform trip count: mma.sync needs all 32 lanes */
    for (int gbase = warp * 4; gbase < m.groups; gbase += WK * 4) {
        const int G = gbase + t;
        const bool gv = G < m.groups;
        uint4 q[MT][2];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                q[mt][h] = (gv && rv[mt][h]) ? rowp[mt][h][G] : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int qi = 0; qi < 16; qi++) {
            const int j = qi >> 2, mm = qi & 3;
            uint32_t b0 = 0u, b1 = 0u;
            if (xload && gv) {
                float4 xv = cbk_load_x4(xb, G * 64 + 4 * qi, m.cols, xvec);
                b0 = cbk_pack_h2(xv.x, xv.y);
                b1 = cbk_pack_h2(xv.z, xv.w);
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint32_t w0 = mm == 0 ? q[mt][0].x : mm == 1 ? q[mt][0].y : mm == 2 ? q[mt][0].z : q[mt][0].w;
                const uint32_t w1 = mm == 0 ? q[mt][1].x : mm == 1 ? q[mt][1].y : mm == 2 ? q[mt][1].z : q[mt][1].w;
                uint32_t a0 = cbk_lookup2(w0, 2 * j, lo[mt][0], hi[mt][0]);      /* row g,   cols 4q, 4q+1 */
                uint32_t a1 = cbk_lookup2(w1, 2 * j, lo[mt][1], hi[mt][1]);      /* row g+8, cols 4q, 4q+1 */
                uint32_t a2 = cbk_lookup2(w0, 16 + 2 * j, lo[mt][0], hi[mt][0]); /* row g,   cols 4q+2, 4q+3 */
                uint32_t a3 = cbk_lookup2(w1, 16 + 2 * j, lo[mt][1], hi[mt][1]); /* row g+8, cols 4q+2, 4q+3 */
                cbk_mma16816(acc[mt], a0, a1, a2, a3, b0, b1);
            }
        }
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        red[warp][mt * 16 + g][2 * t] = acc[mt][0];
        red[warp][mt * 16 + g][2 * t + 1] = acc[mt][1];
        red[warp][mt * 16 + g + 8][2 * t] = acc[mt][2];
        red[warp][mt * 16 + g + 8][2 * t + 1] = acc[mt][3];
    }
    __syncthreads();

    /* Epilogue: warp w finishes rows w, w + WK, ...: lane b < nb sums the WK
     * partials of batch b; outliers (if any) are a warp-wide CSR walk. */
    for (int rl = warp; rl < MT * 16; rl += WK) {
        const int r = row0 + rl;
        if (r >= m.rows) break; /* warp-uniform */
        float tot = 0.0f;
        if (lane < nb) {
#pragma unroll
            for (int w = 0; w < WK; w++) tot += red[w][rl][lane];
        }
        if (m.ol_rowptr) {
            const uint32_t e0 = m.ol_rowptr[r], e1 = m.ol_rowptr[r + 1];
            for (int b = 0; b < nb; b++) {
                float s = 0.0f;
                for (uint32_t e = e0 + lane; e < e1; e += 32)
                    s += __half2float(__ushort_as_half(m.ol_val[e])) *
                         __ldg(x + (size_t)b * m.cols + m.ol_col[e]);
                s = cbk_warp_sum(s);
                if (lane == b) tot += s;
            }
        }
        if (lane < nb) y[(size_t)lane * m.rows + r] = tot;
    }
}

/* ----------------------- v4: v3 + x staged in shared memory, loads first --- */


/* w >> n as a multiply-high, so the shift runs on the FMA pipe instead of the
 * ALU pipe (LOP3/PRMT/SHF share the ALU pipe, the bottleneck here). Inline
 * PTX so that the compiler does not turn it back into a shift. */
template <int N> __device__ __forceinline__ uint32_t cbk_shr_fma(uint32_t w) {
    if constexpr (N == 0) {
        return w;
    } else {
        uint32_t d;
        asm("mul.hi.u32 %0, %1, %2;" : "=r"(d) : "r"(w), "r"(1u << (32 - N)));
        return d;
    }
}

/* Both PRMT selectors of a word for index position j at once:
 * U = 17 * ((w >> 2j) & 0x03030303) + 0x40404040. Its low half is the
 * selector for bytes 0-1 and its high half the one for bytes 2-3 (each half
 * is < 0x8000, so no carry crosses). One LOP3 + one IMAD for two lookups. */
template <int J> __device__ __forceinline__ uint32_t cbk_sel2(uint32_t w) {
    return (cbk_shr_fma<2 * J>(w) & 0x03030303u) * 0x11u + 0x40404040u;
}

/* The 4 A-fragment registers of MMA number qi (0..15) of a group, for the two
 * rows (words w0: row g, w1: row g+8) of one 16-row tile. Per two weights:
 * half a LOP3 and one PRMT on the ALU pipe; the rest on the FMA pipe. */
template <int QI>
__device__ __forceinline__ void cbk_afrag(const uint4 &q0, const uint4 &q1, uint32_t lo0, uint32_t hi0,
                                          uint32_t lo1, uint32_t hi1, uint32_t &a0, uint32_t &a1,
                                          uint32_t &a2, uint32_t &a3) {
    constexpr int J = QI >> 2, MM = QI & 3;
    const uint32_t w0 = MM == 0 ? q0.x : MM == 1 ? q0.y : MM == 2 ? q0.z : q0.w;
    const uint32_t w1 = MM == 0 ? q1.x : MM == 1 ? q1.y : MM == 2 ? q1.z : q1.w;
    const uint32_t u0 = cbk_sel2<J>(w0), u1 = cbk_sel2<J>(w1);
    a0 = cbk_prmt(lo0, hi0, u0);                  /* row g,   columns 4qi, 4qi+1 */
    a1 = cbk_prmt(lo1, hi1, u1);                  /* row g+8, columns 4qi, 4qi+1 */
    a2 = cbk_prmt(lo0, hi0, cbk_shr_fma<16>(u0)); /* row g,   columns 4qi+2, 4qi+3 */
    a3 = cbk_prmt(lo1, hi1, cbk_shr_fma<16>(u1)); /* row g+8, columns 4qi+2, 4qi+3 */
}

/* cbk_afrag for a qi that is a constant only after loop unrolling. */
__device__ __forceinline__ void cbk_afrag_rt(int qi, const uint4 &q0, const uint4 &q1, uint32_t lo0,
                                             uint32_t hi0, uint32_t lo1, uint32_t hi1, uint32_t &a0,
                                             uint32_t &a1, uint32_t &a2, uint32_t &a3) {
    switch (qi) {
#define OPC_CBK_QI(n) \
    case n: cbk_afrag<n>(q0, q1, lo0, hi0, lo1, hi1, a0, a1, a2, a3); break;
        OPC_CBK_QI(0) OPC_CBK_QI(1) OPC_CBK_QI(2) OPC_CBK_QI(3) OPC_CBK_QI(4) OPC_CBK_QI(5)
        OPC_CBK_QI(6) OPC_CBK_QI(7) OPC_CBK_QI(8) OPC_CBK_QI(9) OPC_CBK_QI(10) OPC_CBK_QI(11)
        OPC_CBK_QI(12) OPC_CBK_QI(13) OPC_CBK_QI(14)
    default: cbk_afrag<15>(q0, q1, lo0, hi0, lo1, hi1, a0, a1, a2, a3); break;
#undef OPC_CBK_QI
    }
}

/* Staged x: per batch vector a row of `slab` groups, each 64 fp16 + 8 fp16
 * padding (36 words), and the row stride padded to 16 (mod 32) words. Then
 * the 8 lanes of a quarter-warp's 16-byte B-fragment loads (4 groups t, 2
 * batch rows g) land on 8 distinct 4-bank slices: no bank conflicts. */
__host__ __device__ constexpr int cbk_xs_words(int slab) {
    return 36 * slab + (16 - (36 * slab) % 32 + 32) % 32;
}
template <int MT, int WK, int U> __host__ __device__ constexpr size_t cbk_v4_smem(int nb) {
    return 4u * ((size_t)nb * cbk_xs_words(WK * 4 * U) + (size_t)WK * MT * 16 * (OPC_CBK_MAX_BATCH + 1));
}

/* v4: v3's fragment mapping (see above), reorganised for memory-level
 * parallelism, which is what v3 lacked (it ran 5-17% of copy bandwidth:
 * every MMA waited on its own branchy x load).
 *   - The K dimension is cut in slabs of S = WK*4*U groups. For each slab a
 *     lane first issues all its 2*MT*U 16-byte weight loads (streaming, not
 *     kept in cache), then the block converts that slab of x (all nb vectors)
 *     to fp16 in shared memory, then every lane computes from registers and
 *     conflict-free 16-byte shared loads: no global load inside the math.
 *   - A 4096-column matrix is one slab (S = 64): one barrier, then math.
 * Dynamic shared memory: cbk_v4_smem<MT,WK,U>(nb) bytes. */
template <int MT, int WK, int U, bool GS = false, bool X16 = false> /* GS: m.gs != NULL (group scales) */
__global__ void __launch_bounds__(WK * 32)
    cbk_gemv_v4(CbView m, const float *__restrict__ x, const uint16_t *__restrict__ x16, int nb,
                float *__restrict__ y, int vec) {
    cbk_grid_trigger();
    constexpr int S = WK * 4 * U;
    constexpr int XSW = cbk_xs_words(S);
    extern __shared__ __align__(16) uint32_t cbk_smem[];
    uint32_t *xs = cbk_smem;                                  /* (nb, XSW) words */
    float(*red)[MT * 16][OPC_CBK_MAX_BATCH + 1] =             /* (WK, MT*16, 9) */
        reinterpret_cast<float(*)[MT * 16][OPC_CBK_MAX_BATCH + 1]>(cbk_smem + (size_t)nb * XSW);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * MT * 16;

    uint32_t lo[MT][2], hi[MT][2], c01[MT][2], c23[MT][2];
    const uint4 *rowp[MT][2];
    bool rv[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = row0 + mt * 16 + g + 8 * h;
            rv[mt][h] = r < m.rows;
            lo[mt][h] = hi[mt][h] = c01[mt][h] = c23[mt][h] = 0u;
            if (rv[mt][h]) {
                if (GS) cbk_row_pairs(m, r, c01[mt][h], c23[mt][h]);
                else cbk_row_planes(m, r, lo[mt][h], hi[mt][h]);
            }
            rowp[mt][h] = m.idx + (size_t)(rv[mt][h] ? r : 0) * m.groups;
        }
    float acc[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;
    const bool xl = g < nb;
    const bool xvec = vec != 0;

    for (int s0 = 0; s0 < m.groups; s0 += S) {
        /* 1. this slab's weights (and group scales): all loads in flight before anything waits */
        uint4 q[U][MT][2];
        uint32_t gq[U][MT][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int G = s0 + (u * WK + warp) * 4 + t;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const bool ok = G < m.groups && rv[mt][h];
                    q[u][mt][h] = ok ? __ldcs(rowp[mt][h] + G) : make_uint4(0u, 0u, 0u, 0u);
                    if (GS)
                        gq[u][mt][h] = ok ? __ldg(m.gs + (size_t)(row0 + mt * 16 + g + 8 * h) * m.gs_stride + G)
                                          : 0u;
                }
        }
        if (s0 == 0) cbk_grid_wait(); /* weights in flight; x is the previous kernel's output */
        /* 2. x slab -> fp16 in shared memory, zero past cols */
        const int c0 = s0 * 64;
        if (X16) {
            /* the caller's fp16 copy (x16 != NULL, cols % 8 == 0, 16-byte aligned):
             * 16-byte asynchronous copies of 8 columns, no conversion in the loop;
             * chunks past cols are zero-filled */
            for (int i = threadIdx.x; i < nb * S * 8; i += WK * 32) {
                const int b = i / (S * 8), ch = i - b * (S * 8), col = c0 + ch * 8;
                const bool ok = col < m.cols;
                cbk_cp16(xs + b * XSW + (ch >> 3) * 36 + (ch & 7) * 4, x16 + (ok ? (size_t)b * m.cols + col : 0), ok);
            }
            cbk_cp_commit();
            cbk_cp_wait<0>();
        } else {
            for (int i = threadIdx.x; i < nb * S * 16; i += WK * 32) {
                const int b = i / (S * 16), qd = i - b * (S * 16);
                float4 v = cbk_load_x4(x + (size_t)b * m.cols, c0 + qd * 4, m.cols, xvec);
                uint2 hv = make_uint2(cbk_pack_h2(v.x, v.y), cbk_pack_h2(v.z, v.w));
                *reinterpret_cast<uint2 *>(xs + b * XSW + (qd >> 4) * 36 + (qd & 15) * 2) = hv;
            }
        }
        __syncthreads();
        /* 3. math: lookups + mma from registers and shared memory only */
#pragma unroll
        for (int u = 0; u < U; u++) {
            const uint32_t *xrow = xs + (xl ? g : 0) * XSW + ((u * WK + warp) * 4 + t) * 36;
            if (GS) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int h = 0; h < 2; h++)
                        cbk_planes_scaled(c01[mt][h], c23[mt][h], cbk_scale_h2(gq[u][mt][h]), lo[mt][h],
                                          hi[mt][h]);
            }
#pragma unroll
            for (int qp = 0; qp < 8; qp++) {
                uint4 xv = xl ? *reinterpret_cast<const uint4 *>(xrow + qp * 4) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int qi = 2 * qp + e;
                    const uint32_t b0 = e ? xv.z : xv.x, b1 = e ? xv.w : xv.y;
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        uint32_t a0, a1, a2, a3;
                        cbk_afrag_rt(qi, q[u][mt][0], q[u][mt][1], lo[mt][0], hi[mt][0], lo[mt][1],
                                     hi[mt][1], a0, a1, a2, a3);
                        cbk_mma16816(acc[mt], a0, a1, a2, a3, b0, b1);
                    }
                }
            }
        }
        __syncthreads(); /* xs is rewritten by the next slab */
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        red[warp][mt * 16 + g][2 * t] = acc[mt][0];
        red[warp][mt * 16 + g][2 * t + 1] = acc[mt][1];
        red[warp][mt * 16 + g + 8][2 * t] = acc[mt][2];
        red[warp][mt * 16 + g + 8][2 * t + 1] = acc[mt][3];
    }
    __syncthreads();

    /* Epilogue without outliers: one thread per (row, vector) adds the WK
     * partials (for nb = 1 a single warp works; the old one-warp-per-row loop
     * issued ~15 % of the kernel's instructions for 2-bit 4096-wide rows). */
    if (!m.ol_rowptr) {
        for (int i = threadIdx.x; i < MT * 16 * nb; i += WK * 32) {
            const int rl = i % (MT * 16), b = i / (MT * 16), r = row0 + rl;
            if (r >= m.rows) continue;
            float tot = 0.0f;
#pragma unroll
            for (int w = 0; w < WK; w++) tot += red[w][rl][b];
            y[(size_t)b * m.rows + r] = tot;
        }
        return;
    }
    /* With outliers: warp w finishes rows w, w + WK, ...; lane b < nb sums batch b's
     * WK partials. Outliers: each lane takes CSR entries e0 + lane, + 32, ...
     * and gathers x for every batch vector at once (independent loads), then
     * one warp sum per vector. */
    for (int rl = warp; rl < MT * 16; rl += WK) {
        const int r = row0 + rl;
        if (r >= m.rows) break; /* warp-uniform */
        float tot = 0.0f;
        if (lane < nb) {
#pragma unroll
            for (int w = 0; w < WK; w++) tot += red[w][rl][lane];
        }
        if (m.ol_rowptr) {
            const uint32_t e1 = m.ol_rowptr[r + 1];
            float sb[OPC_CBK_MAX_BATCH];
#pragma unroll
            for (int b = 0; b < OPC_CBK_MAX_BATCH; b++) sb[b] = 0.0f;
            for (uint32_t e = m.ol_rowptr[r] + lane; e < e1; e += 32) {
                const int c = m.ol_col[e];
                const float v = __half2float(__ushort_as_half(m.ol_val[e]));
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                    if (b < nb) sb[b] += v * __ldg(x + (size_t)b * m.cols + c);
            }
#pragma unroll
            for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                if (b < nb) {
                    const float sum = cbk_warp_sum(sb[b]);
                    if (lane == b) tot += sum;
                }
        }
        if (lane < nb) y[(size_t)lane * m.rows + r] = tot;
    }
}

/* ------------- v5: whole x in shared memory, persistent, prefetching --- */

template <int MT, int WK, int UC> struct CbkV5 {
    static constexpr int GPI = WK * 4 * UC; /* groups per work item (one K chunk of one tile) */
    /* x staged once: groups rounded up to whole items, so item math never
     * reads past the staged (zero-padded) columns */
    static __host__ __device__ int xs_words(int groups) {
        return cbk_xs_words((groups + GPI - 1) / GPI * GPI);
    }
    static __host__ __device__ size_t smem(int groups, int nb) {
        return 4u * ((size_t)nb * xs_words(groups) + (size_t)WK * MT * 16 * (OPC_CBK_MAX_BATCH + 1));
    }
};

/*
 * v5: the work of a block is a list of items (row tile, K chunk of WK*4*UC
 * groups); blocks take tiles blockIdx.x, + gridDim.x, ... (grid = what fits
 * on the GPU at once). While the math of item i runs, the 16-byte weight
 * loads of item i+1 are already in flight (two register buffers, unrolled by
 * two), so HBM latency is paid once per block, not once per item; x (all nb
 * vectors, fp16) is staged in shared memory once per block. The fragment
 * mapping and the math are v3's/v4's. Needs CbkV5::smem(groups, nb) bytes of
 * dynamic shared memory (the host falls back to v4 when that does not fit).
 */
template <int MT, int WK, int UC>
__global__ void __launch_bounds__(WK * 32)
    cbk_gemv_v5(CbView m, const float *__restrict__ x, int nb, float *__restrict__ y, int vec) {
    typedef CbkV5<MT, WK, UC> P;
    extern __shared__ __align__(16) uint32_t cbk_smem[];
    const int XSW = P::xs_words(m.groups);
    uint32_t *xs = cbk_smem; /* (nb, XSW) words */
    float(*red)[MT * 16][OPC_CBK_MAX_BATCH + 1] =
        reinterpret_cast<float(*)[MT * 16][OPC_CBK_MAX_BATCH + 1]>(cbk_smem + (size_t)nb * XSW);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int chunks = (m.groups + P::GPI - 1) / P::GPI;
    const int ntiles = (m.rows + MT * 16 - 1) / (MT * 16);
    const int my_tiles = ((int)blockIdx.x < ntiles) ? (ntiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
    const int nitems = my_tiles * chunks;

    struct Item {
        uint4 q[UC][MT][2];
    };
    auto load_item = [&](int it, Item &d) {
        const int tile = (int)blockIdx.x + (it / chunks) * (int)gridDim.x, ch = it % chunks;
#pragma unroll
        for (int u = 0; u < UC; u++) {
            const int G = ch * P::GPI + (u * WK + warp) * 4 + t;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = tile * MT * 16 + mt * 16 + g + 8 * h;
                    d.q[u][mt][h] = (r < m.rows && G < m.groups)
                                        ? __ldcs(m.idx + (size_t)r * m.groups + G)
                                        : make_uint4(0u, 0u, 0u, 0u);
                }
        }
    };

    Item ia, ib;
    if (nitems > 0) load_item(0, ia); /* in flight while x is staged */

    {
        const int qrow = (XSW / 36) * 16; /* quads (4 columns) per staged row, incl. padding groups */
        for (int i = threadIdx.x; i < nb * qrow; i += WK * 32) {
            const int b = i / qrow, qd = i - b * qrow;
            float4 v = cbk_load_x4(x + (size_t)b * m.cols, qd * 4, m.cols, vec != 0);
            *reinterpret_cast<uint2 *>(xs + b * XSW + (qd >> 4) * 36 + (qd & 15) * 2) =
                make_uint2(cbk_pack_h2(v.x, v.y), cbk_pack_h2(v.z, v.w));
        }
    }
    __syncthreads();

    float acc[MT][4];
    uint32_t lo[MT][2], hi[MT][2];
    const bool xl = g < nb;

    auto compute_item = [&](int it, const Item &d) {
        const int tile = (int)blockIdx.x + (it / chunks) * (int)gridDim.x, ch = it % chunks;
        const int row0 = tile * MT * 16;
        if (ch == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                acc[mt][0] = acc[mt][1] = acc[mt][2] = acc[mt][3] = 0.0f;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = row0 + mt * 16 + g + 8 * h;
                    lo[mt][h] = hi[mt][h] = 0u;
                    if (r < m.rows) cbk_row_planes(m, r, lo[mt][h], hi[mt][h]);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < UC; u++) {
            const uint32_t *xrow = xs + (xl ? g : 0) * XSW + (ch * P::GPI + (u * WK + warp) * 4 + t) * 36;
#pragma unroll
            for (int qp = 0; qp < 8; qp++) {
                uint4 xv = xl ? *reinterpret_cast<const uint4 *>(xrow + qp * 4) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const uint32_t b0 = e ? xv.z : xv.x, b1 = e ? xv.w : xv.y;
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        uint32_t a0, a1, a2, a3;
                        cbk_afrag_rt(2 * qp + e, d.q[u][mt][0], d.q[u][mt][1], lo[mt][0], hi[mt][0],
                                     lo[mt][1], hi[mt][1], a0, a1, a2, a3);
                        cbk_mma16816(acc[mt], a0, a1, a2, a3, b0, b1);
                    }
                }
            }
        }
        if (ch != chunks - 1) return;
        /* tile done: add the WK warps' partial sums, outliers, store */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            red[warp][mt * 16 + g][2 * t] = acc[mt][0];
            red[warp][mt * 16 + g][2 * t + 1] = acc[mt][1];
            red[warp][mt * 16 + g + 8][2 * t] = acc[mt][2];
            red[warp][mt * 16 + g + 8][2 * t + 1] = acc[mt][3];
        }
        __syncthreads();
        for (int rl = warp; rl < MT * 16; rl += WK) {
            const int r = row0 + rl;
            if (r >= m.rows) break; /* warp-uniform */
            float tot = 0.0f;
            if (lane < nb) {
#pragma unroll
                for (int w = 0; w < WK; w++) tot += red[w][rl][lane];
            }
            if (m.ol_rowptr) {
                const uint32_t e1 = m.ol_rowptr[r + 1];
                float sb[OPC_CBK_MAX_BATCH];
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++) sb[b] = 0.0f;
                for (uint32_t e = m.ol_rowptr[r] + lane; e < e1; e += 32) {
                    const int c = m.ol_col[e];
                    const float v = __half2float(__ushort_as_half(m.ol_val[e]));
#pragma unroll
                    for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                        if (b < nb) sb[b] += v * __ldg(x + (size_t)b * m.cols + c);
                }
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                    if (b < nb) {
                        const float sum = cbk_warp_sum(sb[b]);
                        if (lane == b) tot += sum;
                    }
            }
            if (lane < nb) y[(size_t)lane * m.rows + r] = tot;
        }
        __syncthreads(); /* red is reused by the next tile */
    };

    /* two register buffers, unrolled so that their indices stay compile-time */
    for (int it = 0; it < nitems; it += 2) {
        if (it + 1 < nitems) load_item(it + 1, ib);
        compute_item(it, ia);
        if (it + 1 >= nitems) break;
        if (it + 2 < nitems) load_item(it + 2, ia);
        compute_item(it + 1, ib);
    }
}

/* --------------- v6: x straight from global into registers, no staging --- */

/* x[c0 .. c0+63] of one vector as 32 fp16 pairs (B-fragment registers),
 * zero past cols. Every lane of a warp loads; lanes with equal addresses
 * share one L1 transaction, so the 8 row-lanes of a column group cost one. */
__device__ __forceinline__ void cbk_load_xgroup(const float *xb, int c0, int cols, bool vec, uint32_t (&bx)[32]) {
    if (vec && c0 + 64 <= cols) {
        const float4 *p = reinterpret_cast<const float4 *>(xb + c0);
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float4 v = __ldg(p + i);
            bx[2 * i] = cbk_pack_h2(v.x, v.y);
            bx[2 * i + 1] = cbk_pack_h2(v.z, v.w);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 16; i++) {
            float4 v = cbk_load_x4(xb, c0 + 4 * i, cols, false);
            bx[2 * i] = cbk_pack_h2(v.x, v.y);
            bx[2 * i + 1] = cbk_pack_h2(v.z, v.w);
        }
    }
}

/*
 * v6: v4's fragment mapping and split-K block (WK warps over MT 16-row tiles,
 * each lane U groups per step), minus everything that made v4 wait: no shared
 * staging of x and no barrier before the math. A lane issues its weight loads
 * and its own x loads together at the start of a step, so one memory round
 * trip covers both; the next step's weights are loaded before this step's
 * math (one-ahead prefetch). Lanes whose batch column g >= nb load vector
 * nb-1 instead of zeros (no predication; those D columns are never stored).
 * The MT tiles share each x fragment (x loads and fp16 conversion per weight
 * fall by MT); two accumulator sets per tile halve the mma.sync chains.
 */
template <int WK, int U, int MINB = 1, int MT = 1> /* MINB: blocks/SM the register budget must allow */
__global__ void __launch_bounds__(WK * 32, MINB)
    cbk_gemv_v6(CbView m, const float *__restrict__ x, int nb, float *__restrict__ y, int vec) {
    __shared__ float red[WK][MT * 16][OPC_CBK_MAX_BATCH + 1];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * MT * 16;
    uint32_t lo[MT][2], hi[MT][2];
    const uint4 *rp[MT][2];
    bool rv[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = row0 + mt * 16 + g + 8 * h;
            rv[mt][h] = r < m.rows;
            lo[mt][h] = hi[mt][h] = 0u;
            if (rv[mt][h]) cbk_row_planes(m, r, lo[mt][h], hi[mt][h]);
            rp[mt][h] = m.idx + (size_t)(rv[mt][h] ? r : 0) * m.groups;
        }
    const float *xb = x + (size_t)(g < nb ? g : nb - 1) * m.cols;
    const bool xvec = vec != 0;
    constexpr int STEP = WK * 4 * U; /* groups per block step */

    float acc[2][MT][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int mt = 0; mt < MT; mt++) acc[i][mt][0] = acc[i][mt][1] = acc[i][mt][2] = acc[i][mt][3] = 0.0f;
    uint4 q[U][MT][2], qn[U][MT][2];
    auto load_q = [&](int gb, uint4 (&d)[U][MT][2]) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int G = gb + (u * WK + warp) * 4 + t;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    d[u][mt][h] = (G < m.groups && rv[mt][h]) ? __ldcs(rp[mt][h] + G)
                                                              : make_uint4(0u, 0u, 0u, 0u);
        }
    };
    load_q(0, q);
    for (int gb = 0; gb < m.groups; gb += STEP) { /* block-uniform trip count */
        if (gb + STEP < m.groups) load_q(gb + STEP, qn);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int G = gb + (u * WK + warp) * 4 + t;
            uint32_t bx[32];
            cbk_load_xgroup(xb, G * 64, m.cols, xvec, bx); /* zero past cols, also for G >= groups */
#pragma unroll
            for (int qi = 0; qi < 16; qi++)
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    uint32_t a0, a1, a2, a3;
                    cbk_afrag_rt(qi, q[u][mt][0], q[u][mt][1], lo[mt][0], hi[mt][0], lo[mt][1], hi[mt][1],
                                 a0, a1, a2, a3);
                    cbk_mma16816(acc[qi & 1][mt], a0, a1, a2, a3, bx[2 * qi], bx[2 * qi + 1]);
                }
        }
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int mt = 0; mt < MT; mt++) q[u][mt][0] = qn[u][mt][0], q[u][mt][1] = qn[u][mt][1];
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        red[warp][mt * 16 + g][2 * t] = acc[0][mt][0] + acc[1][mt][0];
        red[warp][mt * 16 + g][2 * t + 1] = acc[0][mt][1] + acc[1][mt][1];
        red[warp][mt * 16 + g + 8][2 * t] = acc[0][mt][2] + acc[1][mt][2];
        red[warp][mt * 16 + g + 8][2 * t + 1] = acc[0][mt][3] + acc[1][mt][3];
    }
    __syncthreads();
    for (int rl = warp; rl < MT * 16; rl += WK) {
        const int r = row0 + rl;
        if (r >= m.rows) break; /* warp-uniform */
        float tot = 0.0f;
        if (lane < nb) {
#pragma unroll
            for (int w = 0; w < WK; w++) tot += red[w][rl][lane];
        }
        if (m.ol_rowptr) {
            const uint32_t e1 = m.ol_rowptr[r + 1];
            float sb[OPC_CBK_MAX_BATCH];
#pragma unroll
            for (int b = 0; b < OPC_CBK_MAX_BATCH; b++) sb[b] = 0.0f;
            for (uint32_t e = m.ol_rowptr[r] + lane; e < e1; e += 32) {
                const int c = m.ol_col[e];
                const float v = __half2float(__ushort_as_half(m.ol_val[e]));
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                    if (b < nb) sb[b] += v * __ldg(x + (size_t)b * m.cols + c);
            }
#pragma unroll
            for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                if (b < nb) {
                    const float sum = cbk_warp_sum(sb[b]);
                    if (lane == b) tot += sum;
                }
        }
        if (lane < nb) y[(size_t)lane * m.rows + r] = tot;
    }
}

/* ------------- v7: persistent, weights streamed through cp.async stages --- */

/* Shared-memory plan of v7 (bytes): x as fp16 for all nb vectors over the
 * whole (chunk-padded) K, ST weight stages, the split-K reduction buffer and
 * the 256-entry group-scale table. */
template <int MT, int NW, int CK, int ST> struct CbkV7 {
    static constexpr int TR = 16 * MT;           /* rows per tile */
    static constexpr int RSB = CK * 16 + 64;     /* bytes per staged row: +64 puts rows g and g+1
                                                  * in opposite bank halves (quarter-warp LDS.128) */
    static constexpr int STB = TR * RSB + TR * CK; /* one stage: indices, then scale bytes */
    static constexpr int UG = CK / (4 * NW);     /* groups per lane per chunk */
    static_assert(CK % 16 == 0 && CK % (4 * NW) == 0, "a chunk is whole 16-group runs and whole warp steps");
    static __host__ __device__ int chunks(int groups) { return (groups + CK - 1) / CK; }
    static __host__ __device__ int xs_words(int groups) { return cbk_xs_words(chunks(groups) * CK); }
    static __host__ __device__ size_t smem(int groups, int nb) {
        return (size_t)nb * xs_words(groups) * 4u + (size_t)ST * STB +
               (size_t)NW * TR * (OPC_CBK_MAX_BATCH + 1) * 4u + 256u * 4u;
    }
};

/*
 * v7: v4's fragment mapping and math, with the memory side rebuilt so that
 * no warp ever waits on DRAM while it has math to do (v4 issued one slab of
 * loads and then stalled on it; v5 held the prefetch in registers, which
 * capped the warps per SM).
 *   - Persistent: block b takes row tiles b, b + grid, ...; its work is the
 *     flat list of items (tile, chunk of CK groups).
 *   - The weights of item i + ST - 1 are copied global -> shared by cp.async
 *     while item i is computed: ST - 1 chunks (e.g. 3 x 8 KB) in flight per
 *     block at all times, from the first cycle to the last, and they cost no
 *     registers. One barrier per item recycles the oldest stage.
 *   - Group scales (GS) ride in the same stage (CK bytes per row) and turn
 *     into scaled codebook planes per (row, group) through a shared table of
 *     the 256 scales as fp16 pairs.
 *   - x is converted to fp16 into shared memory once per block, while the
 *     first chunks are already in flight. The host uses v7 only when that fits.
 *   - The codebooks of the next tile are loaded to registers one tile ahead.
 * Two accumulator sets per tile break the mma.sync dependency chain in half.
 * Needs CbkV7<...>::smem(groups, nb) bytes of dynamic shared memory.
 */
template <int MT, int NW, int CK, int ST, bool GS>
__global__ void __launch_bounds__(NW * 32)
    cbk_gemv_v7(CbView m, const float *__restrict__ x, int nb, float *__restrict__ y, int vec) {
    typedef CbkV7<MT, NW, CK, ST> P;
    constexpr int TR = P::TR, RSB = P::RSB, STB = P::STB, NT = NW * 32;
    constexpr int NCW = (TR * CK + NT - 1) / NT;      /* 16-byte index copies per thread per item */
    constexpr int NCS = (TR * CK / 16 + NT - 1) / NT; /* 16-byte scale copies per thread per item */
    extern __shared__ __align__(16) uint8_t cbk_smem7[];
    const int chunks = P::chunks(m.groups);
    const int XSW = P::xs_words(m.groups);
    uint32_t *xs = reinterpret_cast<uint32_t *>(cbk_smem7);  /* (nb, XSW) words */
    uint8_t *stg = cbk_smem7 + (size_t)nb * XSW * 4;        /* (ST, STB) bytes */
    float(*red)[TR][OPC_CBK_MAX_BATCH + 1] =                 /* (NW, TR, 9) */
        reinterpret_cast<float(*)[TR][OPC_CBK_MAX_BATCH + 1]>(stg + (size_t)ST * STB);
    uint32_t *stbl = reinterpret_cast<uint32_t *>(red + NW); /* (256) fp16 pairs (s, s) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int ntiles = (m.rows + TR - 1) / TR;
    const int my_tiles = ((int)blockIdx.x < ntiles) ? (ntiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 0;
    const int nitems = my_tiles * chunks;

    /* The copy side walks the items ST - 1 ahead of the math with its own
     * counters. A thread's copies sit at fixed (row, group) offsets inside
     * every item, so only the item's base moves: no division in the loop.
     * Always one commit group per call. */
    int cw_rr[NCW], cw_gg[NCW];
#pragma unroll
    for (int j = 0; j < NCW; j++) {
        const int i = j * NT + (int)threadIdx.x;
        cw_rr[j] = i / CK, cw_gg[j] = i % CK; /* rr >= TR: no copy (only when NT does not divide TR*CK) */
    }
    int cp_n = 0, cp_r0 = (int)blockIdx.x * TR, cp_g0 = 0, cp_stage = 0;
    const int cp_rstep = (int)gridDim.x * TR;
    auto issue = [&]() {
        if (cp_n < nitems) {
            uint8_t *dst = stg + cp_stage * STB;
            const uint4 *base = m.idx + (size_t)cp_r0 * m.groups + cp_g0;
#pragma unroll
            for (int j = 0; j < NCW; j++) {
                if ((TR * CK) % NT == 0 || cw_rr[j] < TR) {
                    const bool ok = cp_r0 + cw_rr[j] < m.rows && cp_g0 + cw_gg[j] < m.groups;
                    cbk_cp16(dst + cw_rr[j] * RSB + cw_gg[j] * 16, ok ? base + cw_rr[j] * m.groups + cw_gg[j] : m.idx, ok);
                }
            }
            if (GS) {
#pragma unroll
                for (int j = 0; j < NCS; j++) {
                    const int i = j * NT + (int)threadIdx.x;
                    if ((TR * CK / 16) % NT == 0 || i < TR * CK / 16) {
                        const int rr = i / (CK / 16), gg = (i % (CK / 16)) * 16;
                        const bool ok = cp_r0 + rr < m.rows && cp_g0 + gg < m.gs_stride;
                        cbk_cp16(dst + TR * RSB + rr * CK + gg,
                                 ok ? m.gs + (size_t)(cp_r0 + rr) * m.gs_stride + cp_g0 + gg : m.gs, ok);
                    }
                }
            }
            cp_g0 += CK;
            if (cp_g0 >= chunks * CK) cp_g0 = 0, cp_r0 += cp_rstep;
            cp_stage = cp_stage + 1 == ST ? 0 : cp_stage + 1;
        }
        cp_n++;
        cbk_cp_commit();
    };

    cbk_grid_trigger();
#pragma unroll
    for (int s = 0; s < ST - 1; s++) issue();
    cbk_grid_wait(); /* weights in flight; x is the previous kernel's output */

    /* x -> fp16 in shared memory (zero past cols), and the scale table, while
     * the first chunks are in flight */
    for (int b = 0; b < nb; b++) {
        const int qrow = chunks * CK * 16; /* 4-column quads per vector */
        const float *xb = x + (size_t)b * m.cols;
        for (int qd = threadIdx.x; qd < qrow; qd += NT) {
            float4 v = cbk_load_x4(xb, qd * 4, m.cols, vec != 0);
            *reinterpret_cast<uint2 *>(xs + b * XSW + (qd >> 4) * 36 + (qd & 15) * 2) =
                make_uint2(cbk_pack_h2(v.x, v.y), cbk_pack_h2(v.z, v.w));
        }
    }
    if (GS)
        for (int i = threadIdx.x; i < 256; i += NT) stbl[i] = cbk_scale_h2((uint32_t)i);

    auto load_cb = [&](int tile, uint32_t (&c01)[MT][2], uint32_t (&c23)[MT][2]) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = tile * TR + mt * 16 + g + 8 * h;
                c01[mt][h] = c23[mt][h] = 0u;
                if (r < m.rows) cbk_row_pairs(m, r, c01[mt][h], c23[mt][h]);
            }
    };
    uint32_t c01[MT][2], c23[MT][2], n01[MT][2], n23[MT][2], lo[MT][2], hi[MT][2];
    if (nitems > 0) load_cb((int)blockIdx.x, n01, n23);
    float acc[2][MT][4];
#pragma unroll
    for (int e = 0; e < 2; e++)
#pragma unroll
        for (int mt = 0; mt < MT; mt++) acc[e][mt][0] = acc[e][mt][1] = acc[e][mt][2] = acc[e][mt][3] = 0.0f;
    /* Lanes of batch columns g >= nb read vector nb - 1 (their D columns are
     * never stored): no predicated loads, no zeroing in the loop. */
    const uint32_t *xlane = xs + (g < nb ? g : nb - 1) * XSW + t * 36;

    int tile = (int)blockIdx.x, ch = 0, stage = 0;
    for (int it = 0; it < nitems; it++) {
        cbk_cp_wait<ST - 2>(); /* this thread's copies of item it have landed */
        __syncthreads();       /* everyone's have; and the stage of item it - 1 is free */
        issue();
        if (ch == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    c01[mt][h] = n01[mt][h], c23[mt][h] = n23[mt][h];
                    if (!GS) {
                        lo[mt][h] = __byte_perm(c01[mt][h], c23[mt][h], 0x6420);
                        hi[mt][h] = __byte_perm(c01[mt][h], c23[mt][h], 0x7531);
                    }
                }
            if (tile + (int)gridDim.x < ntiles) load_cb(tile + (int)gridDim.x, n01, n23); /* used a tile later */
        }
        const uint8_t *st = stg + stage * STB;
#pragma unroll
        for (int u = 0; u < P::UG; u++) {
            const int gl = (u * NW + warp) * 4 + t; /* group within the chunk */
            const uint32_t *xrow = xlane + (ch * CK + (u * NW + warp) * 4) * 36;
            uint4 q[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int rr = mt * 16 + g + 8 * h;
                    q[mt][h] = *reinterpret_cast<const uint4 *>(st + rr * RSB + gl * 16);
                    if (GS) cbk_planes_scaled(c01[mt][h], c23[mt][h], stbl[st[TR * RSB + rr * CK + gl]], lo[mt][h], hi[mt][h]);
                }
#pragma unroll
            for (int qp = 0; qp < 8; qp++) {
                const uint4 xv = *reinterpret_cast<const uint4 *>(xrow + qp * 4);
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const uint32_t b0 = e ? xv.z : xv.x, b1 = e ? xv.w : xv.y;
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        uint32_t a0, a1, a2, a3;
                        cbk_afrag_rt(2 * qp + e, q[mt][0], q[mt][1], lo[mt][0], hi[mt][0], lo[mt][1], hi[mt][1],
                                     a0, a1, a2, a3);
                        cbk_mma16816(acc[e][mt], a0, a1, a2, a3, b0, b1);
                    }
                }
            }
        }
        stage = stage + 1 == ST ? 0 : stage + 1;
        if (++ch != chunks) continue;

        /* tile done: add the NW warps' partial sums, outliers, store */
        const int row0 = tile * TR;
        ch = 0, tile += (int)gridDim.x;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            red[warp][mt * 16 + g][2 * t] = acc[0][mt][0] + acc[1][mt][0];
            red[warp][mt * 16 + g][2 * t + 1] = acc[0][mt][1] + acc[1][mt][1];
            red[warp][mt * 16 + g + 8][2 * t] = acc[0][mt][2] + acc[1][mt][2];
            red[warp][mt * 16 + g + 8][2 * t + 1] = acc[0][mt][3] + acc[1][mt][3];
#pragma unroll
            for (int e = 0; e < 2; e++) acc[e][mt][0] = acc[e][mt][1] = acc[e][mt][2] = acc[e][mt][3] = 0.0f;
        }
        __syncthreads();
        /* red is next written after the next item's barrier: no second barrier here */
        for (int rl = warp; rl < TR; rl += NW) {
            const int r = row0 + rl;
            if (r >= m.rows) break; /* warp-uniform */
            float tot = 0.0f;
            if (lane < nb) {
#pragma unroll
                for (int w = 0; w < NW; w++) tot += red[w][rl][lane];
            }
            if (m.ol_rowptr) {
                const uint32_t e1 = m.ol_rowptr[r + 1];
                float sb[OPC_CBK_MAX_BATCH];
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++) sb[b] = 0.0f;
                for (uint32_t e = m.ol_rowptr[r] + lane; e < e1; e += 32) {
                    const int c = m.ol_col[e];
                    const float v = __half2float(__ushort_as_half(m.ol_val[e]));
#pragma unroll
                    for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                        if (b < nb) sb[b] += v * __ldg(x + (size_t)b * m.cols + c);
                }
#pragma unroll
                for (int b = 0; b < OPC_CBK_MAX_BATCH; b++)
                    if (b < nb) {
                        const float sum = cbk_warp_sum(sb[b]);
                        if (lane == b) tot += sum;
                    }
            }
            if (lane < nb) y[(size_t)lane * m.rows + r] = tot;
        }
    }
    cbk_cp_wait<0>(); /* no copy outlives the block (the tail commits are empty) */
}

/* ------------------ v8: int8 tensor cores, 4 codebook lookups per PRMT --- */

/*
 * Why int8: v4 executes 3.6 thread-instructions per weight (ncu, 14336 x
 * 4096, batch 1: selector arithmetic per index pair, one PRMT per two fp16
 * values, x staged per block) and reaches 17-25 % of copy bandwidth. With
 * 8-bit operands one PRMT turns 4 two-bit indices into 4 codebook bytes, the
 * selectors of 16 indices cost 5 instructions, and one m16n8k32 consumes 16
 * weights per lane: the inner loop is ~165 SASS instructions per 128 weights
 * per lane (64 PRMT, 16 LOP3, 24 shifts as IMAD.HI, 16 IMMA, 5 LDS, the rest
 * flush and bookkeeping), ~1.3 per weight.
 * Measured (H200, bench/cuda/results/h200_2026-11-26_s3_h1_*): at batch 1
 * 1.04x (4096^2) to 1.4x (14336 x 4096, 4096 x 14336) faster than the best
 * v4, 35 % of copy on 14336 x 4096; still latency-bound
 * (16 warps per SM at 98 registers; ncu: 0.41 issued instructions per cycle
 * per scheduler, long-scoreboard and fixed-latency stalls), not memory-bound.
 *
 * Numerics (near-exact; the scalar reference is the spec):
 *   - codebook: per row Q_k = round(cb_k / s_r), s_r = max_k |cb_k| / 32767,
 *     split Q = 256 Qhi + Qlo, Qhi signed int8, Qlo unsigned int8: two PRMT
 *     tables (byte planes), the same selectors, two mmas (s8.s8 and u8.s8).
 *     |cb_k - s_r Q_k| <= max|cb| / 65534, below fp16's own rounding of the
 *     largest entry. Computed once per block row in the prologue.
 *   - x: per block of 256 columns (one warp step) and vector, sx = max|x| /
 *     16256, X = round(x / sx) in [-16256, 16256] = 128 xh + xl with xh in
 *     [-127, 127], xl in [-64, 64], both int8. The batch rides in the mma's
 *     n = 8 columns: column 2b holds xh of vector b, column 2b + 1 its xl,
 *     so a lane (g, t) ends each step with rows g, g+8 of vector t: (hi, lo).
 *   - int32 bounds per step (256 columns): |sum Qhi X| <= 128 * 16256 * 256
 *     = 5.3e8 and |sum Qlo X| <= 255 * 16256 * 256 = 1.06e9, both < 2^31; each
 *     step's pair is combined in fp32 (256 * hi + lo) and scaled by sx, the
 *     row scale s_r is applied once at the end.
 *
 * Index words and k-slots. A group's word m (bytes 4m..4m+3) holds column
 * 16j + 4m + b at bits 8b + 2j. t0 = w & 0x33333333 has the indices of j = 0
 * (nibble 2b) and j = 2 (nibble 2b+1); t1 = (w >> 2) & 0x33333333 those of
 * j = 1 and 3. PRMT reads the low 4 nibbles of its selector (all < 4, so no
 * sign mode and only the first source): prmt(plane, t0) gives the bytes of
 * columns (4m, 4m+32, 4m+1, 4m+33), prmt(plane, t0 >> 16) those of (4m+2,
 * 4m+34, 4m+3, 4m+35), and t1 the same + 16. Those are not consecutive
 * columns, but a GEMV's k-slots may stand for any columns as long as A and B
 * agree: x is staged in shared memory in exactly this order, so the inner
 * loop permutes nothing.
 *
 * mma m16n8k32 (.s8, lane = 4 g + t): A regs a0/a2 = row g, k-slots 4t..4t+3 /
 * 16+4t..; a1/a3 the same for row g+8; B b0/b1 = the same k-slots of batch
 * column g; D d0, d1 = row g, columns 2t, 2t+1; d2, d3 row g+8. As in v4 the
 * k-slots of lane t are columns of ITS OWN 16-byte group G = 4 S + t, so a
 * step S is 4 groups = 256 columns = one x scale block, and mma (m, h) of a
 * step (word m, h = 0: t0, h = 1: t1) reads chunk m of the staged x.
 *
 * Work split: a persistent block of NW warps owns `tpb` consecutive 16-row
 * tiles and stages (quantizes) all of x once; warp w takes the steps S = w,
 * w + NW, ... of every one of its tiles (split-K), with its 16-byte weight
 * loads P items ahead in registers (an item = one tile x one step = 32 bytes
 * per lane). Per-warp partial sums go to shared memory per tile, one barrier
 * at the end, then the epilogue adds the warps, scales by s_r, adds outliers.
 * No barrier inside the loop: warps never wait for each other.
 *
 * Prologue transforms (CbXf, below): the staging step may compute x from
 * other vectors (RMSNorm of a residual sum, SwiGLU of gate and up) instead of
 * reading it, which removes the small kernel that produced x and its launch:
 * 3 launches per layer, 8B-shape decode on an H200 2.164 -> 2.112 ms per
 * token (bench/cuda/results/h200_2026-11-26_s3_h4_main.txt). Less than the
 * small kernels' own ~3 us each: with PDL their launches were already
 * partly hidden, and the prologue now does their work (an L2 round trip and
 * a block-wide sum) while no weights stream.
 */

#define OPC_CBK_V8_MAX_BATCH 4 /* 2 mma columns (xh, xl) per vector */

/* Shared memory of v8 (bytes), in this order:
 *   xq   (2 nb, xstride) int8: row 2b = xh of vector b, 2b+1 = xl, permuted
 *        per step as [chunk m (4)][group t (4)][16 bytes]; xstride = 64 mod 128
 *        so that rows 2b and 2b+1 read by one quarter-warp hit opposite banks
 *   xsc  (nb, steps) float: x scales sx
 *   pl   (tpb * 16) uint4: per block row {Qhi plane, Qlo plane, s_r bits, 0}
 *   red  (tpb, NW, 16, nb) float: per-warp partial sums (before the main
 *        loop: scratch of the RMSNORM transform's sums, see CbXf)
 *   rs   (OPC_CBK_V8_MAX_BATCH) float: the RMSNORM transform's scales
 *   olp  (tpb * 16 + 1) uint32: the block rows' CSR outlier row pointers
 *        (copied before the grid wait: they are weights)
 *   olc, olv (olcap) uint16 each: the block's CSR entries (columns, fp16
 *        deltas) from its first entry rounded down to a multiple of 8, at most
 *        olcap of them (a multiple of 8), copied by cp.async before the grid
 *        wait; entries past olcap are read from global memory */
struct CbkV8 {
    static __host__ __device__ int steps(int groups) { return (groups + 3) / 4; }
    static __host__ __device__ int xstride(int groups) { return steps(groups) * 256 + 64; }
    static __host__ __device__ size_t off_xsc(int groups, int nb) { return (size_t)2 * nb * xstride(groups); }
    static __host__ __device__ size_t off_pl(int groups, int nb) {
        return (off_xsc(groups, nb) + (size_t)4 * nb * steps(groups) + 15) / 16 * 16;
    }
    static __host__ __device__ size_t off_red(int groups, int nb, int tpb) {
        return off_pl(groups, nb) + (size_t)16 * 16 * tpb;
    }
    static __host__ __device__ size_t off_rs(int groups, int nb, int tpb, int nw) {
        return off_red(groups, nb, tpb) + (size_t)4 * tpb * nw * 16 * nb;
    }
    static __host__ __device__ size_t off_olp(int groups, int nb, int tpb, int nw) {
        return off_rs(groups, nb, tpb, nw) + (size_t)4 * OPC_CBK_V8_MAX_BATCH;
    }
    static __host__ __device__ size_t off_olc(int groups, int nb, int tpb, int nw) {
        return (off_olp(groups, nb, tpb, nw) + (size_t)4 * (16 * tpb + 1) + 15) / 16 * 16;
    }
    static __host__ __device__ size_t smem(int groups, int nb, int tpb, int nw, int olcap = 0) {
        return off_olc(groups, nb, tpb, nw) + (size_t)4 * olcap;
    }
    /* Entries of a block's CSR range to stage (olc/olv above): 1.5x the mean
     * per block of tpb tiles + 264 (the rounding down of the first entry, and
     * slack for uneven rows), a multiple of 8; 0 without outliers or when the
     * arrays are not 16-byte aligned (cp.async of 8 entries). Rows with more
     * are correct, only slower (their tail comes from global memory). The
     * caller lowers it to what fits in shared memory. */
    static __host__ int ol_cap(const CbView &m, int tpb) {
        if (!m.ol_rowptr || m.ol_n == 0 || (((uintptr_t)m.ol_col | (uintptr_t)m.ol_val) & 15u)) return 0;
        const double per = (double)m.ol_n * 16.0 * tpb / (double)m.rows;
        const double c = 1.5 * per + 264.0;
        const double lim = (double)m.ol_n + 8.0 < 1048576.0 ? (double)m.ol_n + 8.0 : 1048576.0;
        return ((int)(c < lim ? c : lim) + 7) / 8 * 8;
    }
};

/*
 * Optional input transform of v8 (CbXf), applied while x is staged, so that
 * the small kernel that would otherwise produce x (an RMSNorm, a SwiGLU) and
 * its launch disappear from the decode step. x itself is then unused:
 *   RMSNORM: v = a + b (b may be NULL), x = v * rsqrt(mean(v^2) + eps) * w.
 *            Every block computes the sums of squares of all of v itself
 *            (v is <= 16K floats per vector, read from L2: cheaper than a
 *            grid-wide barrier or another launch); block 0 alone writes v
 *            to res_out (if not NULL), which must not alias a or b: the
 *            other blocks are still reading them.
 *   SWIGLU:  x = silu(a) * b (the gate and up halves of one fused output).
 * a and b hold nb vectors `ld` floats apart; w is (cols). Values past cols
 * are staged as 0, like x's padding.
 */
enum { CBK_XF_NONE = 0, CBK_XF_RMSNORM = 1, CBK_XF_SWIGLU = 2 };
struct CbXf {
    int mode;            /* CBK_XF_* */
    const float *a, *b;  /* (nb, ld) each; b: RMSNORM residual delta or NULL, SWIGLU up */
    const float *w;      /* RMSNORM: (cols) norm weight */
    float *res_out;      /* RMSNORM: (nb, ld) v = a + b, written by block 0, or NULL */
    float eps;
    int ld;
};

/* 4 consecutive transformed inputs of vector b from column c0 (0 past cols).
 * rs: per-vector RMSNORM scales (shared memory). Same operation order as the
 * separate kernels (ops.cu k_add_rmsnorm, k_swiglu). */
__device__ __forceinline__ float4 cbk_xf_load4(const float *x, const CbXf &xf, const float *rs, int b, int c0,
                                               int cols, bool vec) {
    if (xf.mode == CBK_XF_NONE) return cbk_load_x4(x + (size_t)b * cols, c0, cols, vec);
    const float4 p = cbk_load_x4(xf.a + (size_t)b * xf.ld, c0, cols, vec);
    const float4 q = xf.b ? cbk_load_x4(xf.b + (size_t)b * xf.ld, c0, cols, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
    if (xf.mode == CBK_XF_SWIGLU)
        return make_float4(p.x / (1.0f + __expf(-p.x)) * q.x, p.y / (1.0f + __expf(-p.y)) * q.y,
                           p.z / (1.0f + __expf(-p.z)) * q.z, p.w / (1.0f + __expf(-p.w)) * q.w);
    const float s = rs[b];
    const float4 w = cbk_load_x4(xf.w, c0, cols, vec);
    return make_float4(w.x * ((p.x + q.x) * s), w.y * ((p.y + q.y) * s), w.z * ((p.z + q.z) * s),
                       w.w * ((p.w + q.w) * s));
}

/* RMSNORM prologue, whole block (barriers): rs[b] = rsqrt(mean(v_b^2) + eps)
 * for the nb vectors v = a + b, and block 0 writes v to res_out. scratch:
 * nw * nb floats of shared memory, free until the main loop. */
__device__ __forceinline__ void cbk_xf_rms(const CbXf &xf, int cols, int nb, bool vec, int nw, float *scratch,
                                           float *rs) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nt = nw * 32;
    float *ro = blockIdx.x == 0 ? xf.res_out : NULL;
    for (int b = 0; b < nb; b++) {
        const float *pa = xf.a + (size_t)b * xf.ld, *pb = xf.b ? xf.b + (size_t)b * xf.ld : NULL;
        float *pr = ro ? ro + (size_t)b * xf.ld : NULL;
        float ss = 0.0f;
        if (vec) { /* cols % 4 == 0 and every row 16-byte aligned (host) */
            for (int c = 4 * (int)threadIdx.x; c < cols; c += 4 * nt) {
                float4 v = __ldg(reinterpret_cast<const float4 *>(pa + c));
                if (pb) {
                    const float4 o = __ldg(reinterpret_cast<const float4 *>(pb + c));
                    v.x += o.x, v.y += o.y, v.z += o.z, v.w += o.w;
                }
                if (pr) *reinterpret_cast<float4 *>(pr + c) = v;
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            }
        } else {
            for (int c = threadIdx.x; c < cols; c += nt) {
                const float v = __ldg(pa + c) + (pb ? __ldg(pb + c) : 0.0f);
                if (pr) pr[c] = v;
                ss += v * v;
            }
        }
        ss = cbk_warp_sum(ss);
        if (lane == 0) scratch[b * nw + warp] = ss;
    }
    __syncthreads();
    if ((int)threadIdx.x < nb) {
        float t = 0.0f;
        for (int w = 0; w < nw; w++) t += scratch[threadIdx.x * nw + w];
        rs[threadIdx.x] = rsqrtf(t / (float)cols + xf.eps);
    }
    __syncthreads();
}

/* cp.async of one 16-byte chunk of which the first `bytes` (0..16) are
 * copied and the rest zero-filled. compute-sanitizer still counts a 16-byte
 * read: do not use it for a chunk that ends past an allocation. */
__device__ __forceinline__ void cbk_cp16_n(void *sdst, const void *gsrc, uint32_t bytes) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(sdst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gsrc), "r"(bytes));
}

/* D (16x8 s32) += A (16x32 s8, row) * B (32x8 s8, col); UA: A unsigned (u8). */
template <bool UA>
__device__ __forceinline__ void cbk_imma(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched there: see cbk_mma16816 */
#else
    if (UA)
        asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
            "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

/* A row's codebook (fp16 pairs c01, c23 of cbk_row_pairs; entries >= k are 0)
 * as int8 byte planes: Q_k = round(cb_k / s), s = max|cb| / 32767,
 * Q = 256 hi + lo (hi signed, lo unsigned). Returns {hi, lo, s bits, 0}. */
__device__ __forceinline__ uint4 cbk_v8_planes(uint32_t c01, uint32_t c23) {
    const float c[4] = {__half2float(__ushort_as_half((unsigned short)(c01 & 0xffffu))),
                        __half2float(__ushort_as_half((unsigned short)(c01 >> 16))),
                        __half2float(__ushort_as_half((unsigned short)(c23 & 0xffffu))),
                        __half2float(__ushort_as_half((unsigned short)(c23 >> 16)))};
    const float mx = fmaxf(fmaxf(fabsf(c[0]), fabsf(c[1])), fmaxf(fabsf(c[2]), fabsf(c[3])));
    const float inv = mx > 0.0f ? 32767.0f / mx : 0.0f;
    uint32_t hi = 0, lo = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int q = __float2int_rn(c[i] * inv); /* |q| <= 32767 */
        hi |= (uint32_t)((q >> 8) & 0xff) << (8 * i);
        lo |= (uint32_t)(q & 0xff) << (8 * i);
    }
    return make_uint4(hi, lo, __float_as_uint(mx * (1.0f / 32767.0f)), 0u);
}

/* x quantized with the magic-number trick: fmaf(v, inv, 1.5 * 2^23) rounds
 * v * inv to the nearest integer n (|n| < 2^22) and leaves n in the low bits
 * of the float's pattern, two's complement: no conversion instruction. */
#define OPC_CBK_MAGIC 12582912.0f /* 1.5 * 2^23 */

/* Bytes 0 of a, b, c, d interleaved as (a, b, c, d) in one word. */
__device__ __forceinline__ uint32_t cbk_pack4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    return cbk_prmt(cbk_prmt(a, b, 0x0040u), cbk_prmt(c, d, 0x0040u), 0x5410u);
}

/* Lane l's columns of step S in cbk_v8_stage's layout: group gq = l >> 3,
 * chunk mm = (l >> 1) & 3, half e = l & 1, i.e. the columns c0 + (0..3)
 * (j = e) and c0 + 32 + (0..3) (j = e + 2) of group gq. */
__device__ __forceinline__ int cbk_v8_col0(int S, int lane) {
    return S * 256 + (lane >> 3) * 64 + 16 * (lane & 1) + 4 * ((lane >> 1) & 3);
}

/* One warp quantizes its lanes' 8 values (a: columns c0.., c: c0 + 32..,
 * cbk_v8_col0) of step S of one vector into the permuted layout: 8 bytes of
 * each plane per lane. */
__device__ __forceinline__ void cbk_v8_quant(float4 a, float4 c, int S, int lane, uint8_t *xh_row, uint8_t *xl_row,
                                             float *sx_out) {
    const int gq = lane >> 3, mm = (lane >> 1) & 3, e = lane & 1;
    float mx = fmaxf(fmaxf(fmaxf(fabsf(a.x), fabsf(a.y)), fmaxf(fabsf(a.z), fabsf(a.w))),
                     fmaxf(fmaxf(fabsf(c.x), fabsf(c.y)), fmaxf(fabsf(c.z), fabsf(c.w))));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float inv = mx > 0.0f ? 16256.0f / mx : 0.0f, inv128 = inv * (1.0f / 128.0f);
    const float v[8] = {a.x, c.x, a.y, c.y, a.z, c.z, a.w, c.w}; /* the chunk's byte order */
    uint32_t hb[8], lb[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        /* X = round(v inv), H = round(v inv / 128): |X - 128 H| <= 64, |H| <= 127;
         * the patterns are 0x4B400000 + X and + H, and (X - 128 H) keeps its
         * low byte under pattern - 128 * pattern (0x4B400000 * 127 ends in 0x00) */
        const uint32_t xb_ = __float_as_uint(fmaf(v[i], inv, OPC_CBK_MAGIC));
        hb[i] = __float_as_uint(fmaf(v[i], inv128, OPC_CBK_MAGIC));
        lb[i] = xb_ - (hb[i] << 7);
    }
    const int off = S * 256 + mm * 64 + gq * 16 + e * 8;
    *reinterpret_cast<uint2 *>(xh_row + off) =
        make_uint2(cbk_pack4(hb[0], hb[1], hb[2], hb[3]), cbk_pack4(hb[4], hb[5], hb[6], hb[7]));
    *reinterpret_cast<uint2 *>(xl_row + off) =
        make_uint2(cbk_pack4(lb[0], lb[1], lb[2], lb[3]), cbk_pack4(lb[4], lb[5], lb[6], lb[7]));
    if (lane == 0) *sx_out = mx * (1.0f / 16256.0f);
}

/* One warp stages step S (256 columns) of vector b: loads (through the
 * transform, if any) and quantizes. */
__device__ __forceinline__ void cbk_v8_stage(const float *x, const CbXf &xf, const float *rs, int b, int cols,
                                             bool vec, int S, int lane, uint8_t *xh_row, uint8_t *xl_row,
                                             float *sx_out) {
    const int c0 = cbk_v8_col0(S, lane);
    cbk_v8_quant(cbk_xf_load4(x, xf, rs, b, c0, cols, vec), cbk_xf_load4(x, xf, rs, b, c0 + 32, cols, vec), S, lane,
                 xh_row, xl_row, sx_out);
}

/* Column c (< cols) of vector b as staged by cbk_v8_quant: sx (128 xh + xl),
 * within sx / 2 of x, i.e. 2^-15 of the max of its 256-column block (every
 * codebook weight of the row already sees this x). xq: the staged planes,
 * rows 2b / 2b + 1 at XST bytes apart; xsc: (nb, nsteps) scales. The byte
 * offset inverts cbk_v8_col0 and cbk_v8_quant's order: w = c mod 256 is
 * group w >> 6, half e = bit 4, chunk mm = bits 2-3, position 2 (w & 3) + bit 5. */
__device__ __forceinline__ float cbk_v8_xval(const uint8_t *xq, const float *xsc, int XST, int nsteps, int b, int c) {
    const int S = c >> 8, w = c & 255;
    const int off = S * 256 + ((w >> 2) & 3) * 64 + (w >> 6) * 16 + ((w >> 4) & 1) * 8 + 2 * (w & 3) + ((w >> 5) & 1);
    const int xh = (int8_t)xq[(size_t)(2 * b) * XST + off], xl = (int8_t)xq[(size_t)(2 * b + 1) * XST + off];
    return xsc[b * nsteps + S] * (float)(128 * xh + xl);
}

/* Ask L2 for the 128-byte lines of [p0, p1) (nothing if empty), threads tid of
 * nt striding: fire and forget, no registers held, no fault on the range. */
__device__ __forceinline__ void cbk_prefetch_l2(const void *p0, const void *p1, int tid, int nt) {
    const uintptr_t a1 = (uintptr_t)p1;
    for (uintptr_t a = ((uintptr_t)p0 & ~(uintptr_t)127) + (uintptr_t)tid * 128; a < a1; a += (uintptr_t)nt * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
}

/* v + o elementwise. */
__device__ __forceinline__ float4 cbk_add4(float4 v, float4 o) {
    return make_float4(v.x + o.x, v.y + o.y, v.z + o.z, v.w + o.w);
}

/* Store the columns c0..c0+3 (< cols) of v at p. */
__device__ __forceinline__ void cbk_store4(float *p, int c0, int cols, bool vec, float4 v) {
    if (vec && c0 + 4 <= cols) {
        *reinterpret_cast<float4 *>(p + c0) = v;
        return;
    }
    if (c0 + 0 < cols) p[c0 + 0] = v.x;
    if (c0 + 1 < cols) p[c0 + 1] = v.y;
    if (c0 + 2 < cols) p[c0 + 2] = v.z;
    if (c0 + 3 < cols) p[c0 + 3] = v.w;
}

/* The RMSNORM transform in one pass over v, when every warp's share of x is
 * at most K (step, vector) items (ceil(steps / NW) * nb <= K; the 8B decode:
 * 4096 columns = 16 steps over 16 warps, nb 1): each lane loads its 8
 * values per item once (cbk_v8_stage's columns) and keeps them in registers
 * across the sums' barrier, instead of cbk_xf_rms's pass over all of v and
 * a second L2 round trip to stage it. Item i of warp w: step w + (i / nb) NW,
 * vector i % nb. Whole block (barriers); scratch: K NW floats; also writes
 * rs and, in block 0, res_out. Registers:
 * 16 per item live across the barrier (v and w), so K = 2 only where the
 * register cap allows (cbk_gemv_v8). */
template <int NW, int K>
__device__ __forceinline__ void cbk_v8_rms_stage(const CbXf &xf, int cols, int nb, int nsteps, bool vec, int XST,
                                                 uint8_t *xq, float *xsc, float *scratch, float *rs) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *ro = blockIdx.x == 0 ? xf.res_out : NULL;
    float4 va[K], vc[K], wa[K], wc[K];
    float ss[K];
#pragma unroll
    for (int i = 0; i < K; i++) {
        const int S = warp + (i / nb) * NW, b = i % nb;
        const bool ok = i < nb * ((nsteps + NW - 1) / NW) && S < nsteps; /* warp-uniform */
        const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
        va[i] = vc[i] = wa[i] = wc[i] = z;
        ss[i] = 0.0f;
        if (!ok) continue;
        const int c0 = cbk_v8_col0(S, lane);
        const float *pa = xf.a + (size_t)b * xf.ld, *pb = xf.b ? xf.b + (size_t)b * xf.ld : NULL;
        va[i] = cbk_load_x4(pa, c0, cols, vec), vc[i] = cbk_load_x4(pa, c0 + 32, cols, vec);
        if (pb) va[i] = cbk_add4(va[i], cbk_load_x4(pb, c0, cols, vec)),
                vc[i] = cbk_add4(vc[i], cbk_load_x4(pb, c0 + 32, cols, vec));
        wa[i] = cbk_load_x4(xf.w, c0, cols, vec), wc[i] = cbk_load_x4(xf.w, c0 + 32, cols, vec);
        if (ro) {
            cbk_store4(ro + (size_t)b * xf.ld, c0, cols, vec, va[i]);
            cbk_store4(ro + (size_t)b * xf.ld, c0 + 32, cols, vec, vc[i]);
        }
        ss[i] = va[i].x * va[i].x + va[i].y * va[i].y + va[i].z * va[i].z + va[i].w * va[i].w +
                vc[i].x * vc[i].x + vc[i].y * vc[i].y + vc[i].z * vc[i].z + vc[i].w * vc[i].w;
    }
#pragma unroll
    for (int i = 0; i < K; i++) {
        const float t = cbk_warp_sum(ss[i]);
        if (lane == 0) scratch[warp * K + i] = t; /* 0 for an unused item */
    }
    __syncthreads();
    if ((int)threadIdx.x < nb) {
        float t = 0.0f;
        for (int w = 0; w < NW; w++)
            for (int i = 0; i < K; i++)
                if (i % nb == (int)threadIdx.x) t += scratch[w * K + i];
        rs[threadIdx.x] = rsqrtf(t / (float)cols + xf.eps);
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < K; i++) {
        const int S = warp + (i / nb) * NW, b = i % nb;
        if (!(i < nb * ((nsteps + NW - 1) / NW) && S < nsteps)) continue; /* warp-uniform */
        const float s = rs[b];
        const float4 a = make_float4(wa[i].x * (va[i].x * s), wa[i].y * (va[i].y * s), wa[i].z * (va[i].z * s),
                                     wa[i].w * (va[i].w * s));
        const float4 c = make_float4(wc[i].x * (vc[i].x * s), wc[i].y * (vc[i].y * s), wc[i].z * (vc[i].z * s),
                                     wc[i].w * (vc[i].w * s));
        cbk_v8_quant(a, c, S, lane, xq + (size_t)(2 * b) * XST, xq + (size_t)(2 * b + 1) * XST, xsc + b * nsteps + S);
    }
}

/* The 4 A registers of mma (m, h) for one plane: rows g (word w0's selector
 * u0) and g+8 (u1); u = t0 (h = 0) or t1 (h = 1) of the word. */
__device__ __forceinline__ void cbk_v8_afrag(uint32_t p0, uint32_t p1, uint32_t u0, uint32_t u1, uint32_t u0h,
                                             uint32_t u1h, uint32_t &a0, uint32_t &a1, uint32_t &a2,
                                             uint32_t &a3) {
    a0 = cbk_prmt(p0, p0, u0);  /* row g,   columns (4m, 4m+32, 4m+1, 4m+33) + 16h */
    a1 = cbk_prmt(p1, p1, u1);  /* row g+8, the same columns */
    a2 = cbk_prmt(p0, p0, u0h); /* row g,   columns (4m+2, 4m+34, 4m+3, 4m+35) + 16h */
    a3 = cbk_prmt(p1, p1, u1h); /* row g+8 */
}

/*
 * v8 kernel. Grid: ceil(tiles / tpb) blocks, tiles = ceil(rows / 16); block
 * b owns tiles [b tpb, min(tiles, (b+1) tpb)). nb <= 4. Dynamic shared
 * memory: CbkV8::smem(groups, nb, tpb, NW, olcap). P: weight items in flight
 * per warp (register ring). MINB: blocks per SM the register budget must
 * allow. XF: compiled with the input transforms (xf.mode, CbXf above).
 * olcap: CSR entries staged in shared memory (a multiple of 8; 0: none, the
 * epilogue reads them from global memory; CbkV8::ol_cap). mode: CBK_V8_*.
 */
enum {
    CBK_V8_OL_WARP = 0,   /* outlier epilogue: a warp per R <= 4 rows, lanes stride the entries */
    CBK_V8_OL_OCTET = 1,  /* outlier epilogue: 8 lanes per row (the default; see there) */
    CBK_V8_LAB_NO_OL = 8, /* lab timing only: skip the outlier terms (wrong results; the lower bound) */
};
template <int NW, int P, int MINB, bool XF = false>
__global__ void __launch_bounds__(NW * 32, MINB)
    cbk_gemv_v8(CbView m, const float *__restrict__ x, CbXf xf, int nb, float *__restrict__ y, int vec, int tpb,
                int olcap, int mode) {
    /* XF = false: xf ignored, and the transforms compiled out (the plain
     * GEMV keeps its registers: the one-pass RMSNORM holds x in registers
     * across a barrier: 98 -> 116 registers per thread for NW 16, ptxas) */
    if (!XF) xf.mode = CBK_XF_NONE;
    cbk_grid_trigger();
    extern __shared__ __align__(16) uint8_t cbk_smem8[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int nsteps = CbkV8::steps(m.groups), XST = CbkV8::xstride(m.groups);
    float *xsc = reinterpret_cast<float *>(cbk_smem8 + CbkV8::off_xsc(m.groups, nb)); /* (nb, nsteps) */
    uint4 *pl = reinterpret_cast<uint4 *>(cbk_smem8 + CbkV8::off_pl(m.groups, nb));  /* (tpb * 16) */
    float *red = reinterpret_cast<float *>(cbk_smem8 + CbkV8::off_red(m.groups, nb, tpb)); /* (tpb, NW, 16, nb) */
    float *rs = reinterpret_cast<float *>(cbk_smem8 + CbkV8::off_rs(m.groups, nb, tpb, NW)); /* (nb) RMSNORM scales */
    const int tiles = (m.rows + 15) / 16;
    const int tile0 = (int)blockIdx.x * tpb;
    const int my_tiles = min(tpb, tiles - tile0);
    const int my_steps = warp < nsteps ? (nsteps - 1 - warp) / NW + 1 : 0;
    const int nitems = my_tiles * my_steps;

    /* The codebooks of the block's rows first (thread i, row tile0*16 + i), so
     * that they do not queue behind the weights in DRAM: the planes gate the
     * barrier below. */
    const int prow = tile0 * 16 + (int)threadIdx.x;
    const bool pown = (int)threadIdx.x < my_tiles * 16 && prow < m.rows;
    uint32_t pc01 = 0u, pc23 = 0u;
    if (pown) cbk_row_pairs(m, prow, pc01, pc23);
    /* and their outlier row pointers (thread i: row tile0*16 + i, i <= nrows):
     * the epilogue then starts from shared memory, not a dependent DRAM load */
    const int nrows = min(my_tiles * 16, m.rows - tile0 * 16);
    uint32_t *olp = reinterpret_cast<uint32_t *>(cbk_smem8 + CbkV8::off_olp(m.groups, nb, tpb, NW)); /* (nrows + 1) */
    uint32_t orp = 0u, oe0 = 0u, oe1 = 0u;
    if (m.ol_rowptr && (int)threadIdx.x <= nrows) orp = __ldg(m.ol_rowptr + tile0 * 16 + threadIdx.x);
    if (m.ol_rowptr && olcap > 0) { /* the block's entry range, for the cp.async staging below */
        oe0 = __ldg(m.ol_rowptr + tile0 * 16), oe1 = __ldg(m.ol_rowptr + tile0 * 16 + nrows);
    }

    /* Load side of the register ring: items in (tile, step) order, 32-bit
     * row offsets per tile (the host checks rows * groups < 2^32) and a
     * running group index. Rows past the end read the last row and groups
     * past the end the last group: in-bounds loads without predication; the
     * first are never stored, the second meet x == 0 (staged zeros). */
    int l_tl = 0, l_si = 0, l_g = 4 * warp + t;
    const int last_g = m.groups - 1;
    uint32_t la = 0u, lb = 0u;
    auto load_tile = [&]() {
        const int r0 = (tile0 + l_tl) * 16 + g;
        la = (uint32_t)min(r0, m.rows - 1) * (uint32_t)m.groups;
        lb = (uint32_t)min(r0 + 8, m.rows - 1) * (uint32_t)m.groups;
        l_g = 4 * warp + t;
    };
    load_tile();
    auto load = [&](uint4 (&d)[2]) {
        if (l_tl < my_tiles) { /* warp-uniform */
            const uint32_t G = (uint32_t)min(l_g, last_g);
            d[0] = __ldcs(m.idx + (la + G));
            d[1] = __ldcs(m.idx + (lb + G));
        }
        l_g += 4 * NW;
        if (++l_si == my_steps) {
            l_si = 0, l_tl++;
            if (l_tl < my_tiles) load_tile();
        }
    };
    uint4 q[P][2];
    if (nitems > 0) {
#pragma unroll
        for (int p = 0; p < P; p++) load(q[p]);
    }
    /* codebook planes of the block's rows (weights only: before the wait) */
    if ((int)threadIdx.x < my_tiles * 16) pl[threadIdx.x] = pown ? cbk_v8_planes(pc01, pc23) : make_uint4(0u, 0u, 0u, 0u);
    for (int i = threadIdx.x + NW * 32; i < my_tiles * 16; i += NW * 32) { /* more than NW*32 rows per block */
        const int r = tile0 * 16 + i;
        uint32_t c01 = 0u, c23 = 0u;
        if (r < m.rows) cbk_row_pairs(m, r, c01, c23);
        pl[i] = r < m.rows ? cbk_v8_planes(c01, c23) : make_uint4(0u, 0u, 0u, 0u);
    }
    if (m.ol_rowptr) {
        if ((int)threadIdx.x <= nrows) olp[threadIdx.x] = orp;
        for (int i = threadIdx.x + NW * 32; i <= nrows; i += NW * 32) olp[i] = __ldg(m.ol_rowptr + tile0 * 16 + i);
    }
    if (olcap > 0 && oe1 > oe0) {
        /* The block's outlier entries (columns, deltas) to shared memory, in
         * 16-byte chunks of 8 from oe0 rounded down: issued now, waited for
         * only before the epilogue, so their DRAM latency hides under the
         * main loop and the epilogue makes no global round trips. Measured
         * (H200, with the warp-per-rows epilogue): 8B decode with 0.85 %
         * outliers +2-4 %, lab 14336 x 4096 +1 % 16.6 -> 16.0 us; the larger
         * cost was the epilogue's reduction chains (CBK_V8_OL_OCTET). */
        uint8_t *olc = cbk_smem8 + CbkV8::off_olc(m.groups, nb, tpb, NW);
        uint8_t *olv = olc + 2 * (size_t)olcap;
        const uint32_t sb0 = oe0 & ~7u, nch = min((oe1 - sb0 + 7u) / 8u, (uint32_t)olcap / 8u);
        for (uint32_t i = threadIdx.x; i < nch; i += NW * 32) {
            const uint32_t c = sb0 + 8u * i, n = min(8u, oe1 - c);
            if (n == 8u) {
                cbk_cp16_n(olc + 16 * i, m.ol_col + c, 16u);
                cbk_cp16_n(olv + 16 * i, m.ol_val + c, 16u);
            } else { /* the last, partial chunk: element loads, never past the arrays' end (cp.async
                      * with a short source size still reads 16 bytes, says compute-sanitizer) */
                uint16_t *dc = reinterpret_cast<uint16_t *>(olc + 16 * i), *dv = reinterpret_cast<uint16_t *>(olv + 16 * i);
                for (uint32_t j = 0; j < 8u; j++) {
                    dc[j] = j < n ? __ldg(m.ol_col + c + j) : (uint16_t)0;
                    dv[j] = j < n ? __ldg(m.ol_val + c + j) : (uint16_t)0;
                }
            }
        }
        cbk_cp_commit();
    }
    cbk_grid_wait(); /* weights in flight; x is the previous kernel's output */

    /* x: each warp quantizes the steps it will consume, for every vector.
     * RMSNORM needs the sums of squares of all of v first (red is free until
     * the main loop): in one pass from registers where each warp's share is
     * small, else a pass over v for the scales and a second one to stage.
     * Both conditions are block-uniform (barriers inside). */
    constexpr int RK = 65536 / (NW * 32 * MINB) >= 96 ? 2 : 1; /* items the register cap allows */
    if (xf.mode == CBK_XF_RMSNORM && (nsteps + NW - 1) / NW * nb <= RK) {
        cbk_v8_rms_stage<NW, RK>(xf, m.cols, nb, nsteps, vec != 0, XST, cbk_smem8, xsc, red, rs);
    } else {
        if (xf.mode == CBK_XF_RMSNORM) cbk_xf_rms(xf, m.cols, nb, vec != 0, NW, red, rs);
        for (int S = warp; S < nsteps; S += NW)
            for (int b = 0; b < nb; b++)
                cbk_v8_stage(x, xf, rs, b, m.cols, vec != 0, S, lane, cbk_smem8 + (size_t)(2 * b) * XST,
                             cbk_smem8 + (size_t)(2 * b + 1) * XST, xsc + b * nsteps + S);
    }
    __syncthreads();
    if (m.ol_rowptr) { /* the unstaged outlier entries to L2 while the weights stream (olp: past the barrier) */
        const uint32_t e1 = olp[nrows], sb0 = olp[0] & ~7u;
        const uint32_t e0 = max(olp[0], olcap > 0 ? min(e1, sb0 + (uint32_t)olcap) : 0u);
        if (e1 > e0) {
            cbk_prefetch_l2(m.ol_col + e0, m.ol_col + e1, threadIdx.x, NW * 32);
            cbk_prefetch_l2(m.ol_val + e0, m.ol_val + e1, threadIdx.x, NW * 32);
        }
    }

    /* lanes of unused batch columns (g >= 2 nb) read rows 0/1: a broadcast
     * of another phase's addresses, and their D columns are never used */
    const uint8_t *xrow = cbk_smem8 + (size_t)(g < 2 * nb ? g : (g & 1)) * XST + t * 16;
    const float *sxrow = xsc + (t < nb ? t : 0) * nsteps;
    int c_tl = 0, c_si = 0;
    const uint2 *plc = reinterpret_cast<const uint2 *>(pl) + 2 * g; /* {hi, lo} of row g of the tile */
    uint2 pg = plc[0], pg8 = plc[16];
    float *rp = red + (size_t)(warp * 16 + g) * nb + t; /* this lane's partial slot, tile 0 */
    float acc0 = 0.0f, acc1 = 0.0f;
    const uint8_t *xp = xrow + warp * 256; /* this item's step of x, and its scale */
    const float *sxp = sxrow + warp;
    auto compute = [&](const uint4 (&d)[2]) {
        /* one accumulator set per (plane, h): four independent mma chains of 4 */
        int dh[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}}, dl[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
        for (int mm = 0; mm < 4; mm++) {
            const uint4 xv = *reinterpret_cast<const uint4 *>(xp + mm * 64);
            const uint32_t w0 = mm == 0 ? d[0].x : mm == 1 ? d[0].y : mm == 2 ? d[0].z : d[0].w;
            const uint32_t w1 = mm == 0 ? d[1].x : mm == 1 ? d[1].y : mm == 2 ? d[1].z : d[1].w;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const uint32_t u0 = (h ? cbk_shr_fma<2>(w0) : w0) & 0x33333333u;
                const uint32_t u1 = (h ? cbk_shr_fma<2>(w1) : w1) & 0x33333333u;
                const uint32_t u0h = cbk_shr_fma<16>(u0), u1h = cbk_shr_fma<16>(u1);
                const uint32_t b0 = h ? xv.z : xv.x, b1 = h ? xv.w : xv.y;
                uint32_t a0, a1, a2, a3;
                cbk_v8_afrag(pg.x, pg8.x, u0, u1, u0h, u1h, a0, a1, a2, a3);
                cbk_imma<false>(dh[h], a0, a1, a2, a3, b0, b1);
                cbk_v8_afrag(pg.y, pg8.y, u0, u1, u0h, u1h, a0, a1, a2, a3);
                cbk_imma<true>(dl[h], a0, a1, a2, a3, b0, b1);
            }
        }
        /* d[0] = sum Q x_h, d[1] = sum Q x_l (row g, vector t); X = 128 xh + xl.
         * int32: the two h halves together stay within the step bounds above */
        const float sx = *sxp;
        xp += NW * 256, sxp += NW;
        const int h0 = (dh[0][0] + dh[1][0]) * 128 + dh[0][1] + dh[1][1];
        const int l0 = (dl[0][0] + dl[1][0]) * 128 + dl[0][1] + dl[1][1];
        const int h1 = (dh[0][2] + dh[1][2]) * 128 + dh[0][3] + dh[1][3];
        const int l1 = (dl[0][2] + dl[1][2]) * 128 + dl[0][3] + dl[1][3];
        acc0 = fmaf(sx, fmaf(256.0f, (float)h0, (float)l0), acc0);
        acc1 = fmaf(sx, fmaf(256.0f, (float)h1, (float)l1), acc1);
        if (++c_si == my_steps) { /* this warp's share of the tile is done */
            if (t < nb) rp[0] = acc0, rp[8 * nb] = acc1;
            acc0 = acc1 = 0.0f, c_si = 0, c_tl++;
            xp = xrow + warp * 256, sxp = sxrow + warp;
            rp += NW * 16 * nb, plc += 32;
            if (c_tl < my_tiles) pg = plc[0], pg8 = plc[16];
        }
    };
    for (int k0 = 0; k0 < nitems; k0 += P) {
#pragma unroll
        for (int p = 0; p < P; p++)
            if (k0 + p < nitems) { /* warp-uniform */
                compute(q[p]);
                load(q[p]);
            }
    }
    if (olcap > 0) cbk_cp_wait<0>(); /* this thread's outlier chunks (none issued: no-op) */
    __syncthreads();

    /* epilogue: sum the warps that had steps, times s_r, plus outliers */
    const int nwu = min(NW, nsteps);
    if (!m.ol_rowptr || (mode & CBK_V8_LAB_NO_OL)) {
        for (int i = threadIdx.x; i < nrows * nb; i += NW * 32) {
            const int rl = i % nrows, b = i / nrows, tl = rl >> 4;
            float tot = 0.0f;
            for (int w = 0; w < nwu; w++) tot += red[((tl * NW + w) * 16 + (rl & 15)) * nb + b];
            y[(size_t)b * m.rows + tile0 * 16 + rl] = tot * __uint_as_float(pl[rl].z);
        }
        return;
    }
    const uint16_t *olc = reinterpret_cast<const uint16_t *>(cbk_smem8 + CbkV8::off_olc(m.groups, nb, tpb, NW));
    const uint16_t *olv = olc + olcap;
    const uint32_t sb0 = olp[0] & ~7u, sn = olcap > 0 ? min((olp[nrows] - sb0 + 7u) & ~7u, (uint32_t)olcap) : 0u;
    if (mode & CBK_V8_OL_OCTET) {
        /* 8 lanes (an octet) per row, 4 rows per warp at a time: lane o sums
         * the split-K partials of warps o, o + 8 (times s_r) and the row's
         * outlier entries o, o + 8, ... (entry e staged at e - sb0 when that
         * is below sn), then 3 shuffle levels within the octet. Shorter
         * dependent chains than the warp-per-rows form below (one 5-level
         * reduction per row, then the warps' partials summed one by one by a
         * single lane). H200, 1 % outliers, batch 1: 14336 x 4096 15.9 ->
         * 12.8 us, 4096 x 14336 16.5 -> 14.4, 4096^2 8.7 -> 7.1 (without
         * outliers 10.5, 11.9, 6.0); 8B decode with 0.85 % outliers 338 -> 407
         * tok/s against the previous epilogue without staging, same run
         * (bench/cuda/results/h200_2026-11-26_s4_h1_final2*.txt). Tried and dropped
         * (h200_2026-11-26_s4_h1_ab3*): the outlier sums between main-loop items (slower:
         * 12.8 -> 14.6 us, the loop is latency-bound on its own chain, extra
         * work delays it) and this form without outliers (slower than a
         * thread per row: 10.9 -> 11.5 us). */
        const int oct = lane >> 3, ol = lane & 7;
        for (int base = warp * 4; base < nrows; base += NW * 4) { /* warp-uniform */
            const int rl = base + oct;
            float sb[OPC_CBK_V8_MAX_BATCH] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (rl < nrows) {
                const int tl = rl >> 4;
                const float sr = __uint_as_float(pl[rl].z);
                for (int w = ol; w < nwu; w += 8)
#pragma unroll
                    for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++)
                        if (b < nb) sb[b] = fmaf(red[((tl * NW + w) * 16 + (rl & 15)) * nb + b], sr, sb[b]);
                const uint32_t e1 = olp[rl + 1];
#pragma unroll 2
                for (uint32_t e = olp[rl] + ol; e < e1; e += 8) {
                    const uint32_t so = e - sb0;
                    uint16_t c16, v16;
                    if (so < sn) c16 = olc[so], v16 = olv[so];
                    else c16 = __ldg(m.ol_col + e), v16 = __ldg(m.ol_val + e);
                    const float vv = __half2float(__ushort_as_half(v16));
#pragma unroll
                    for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++)
                        if (b < nb) sb[b] = fmaf(vv, cbk_v8_xval(cbk_smem8, xsc, XST, nsteps, b, (int)c16), sb[b]);
                }
            }
            float mine = 0.0f; /* lane o < nb of the octet ends with vector o's sum */
#pragma unroll
            for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++)
                if (b < nb) { /* warp-uniform */
                    float v = sb[b];
                    v += __shfl_xor_sync(0xffffffffu, v, 4);
                    v += __shfl_xor_sync(0xffffffffu, v, 2);
                    v += __shfl_xor_sync(0xffffffffu, v, 1);
                    if (ol == b) mine = v;
                }
            if (rl < nrows && ol < nb) y[(size_t)ol * m.rows + tile0 * 16 + rl] = mine;
        }
        return;
    }
    /* Outliers: a warp takes R <= OR consecutive rows at a time (R spreads the
     * block's rows over all warps) and its lanes stride those rows' CSR
     * entries with the R loads of a lane issued together: one L2 round trip
     * (prefetched above) per 32 entries of R rows, not a chain of dependent
     * DRAM loads per row. rowptr comes from shared memory and x from the
     * staged copy (cbk_v8_xval), which also covers the input transforms.
     * H200, 1 % outliers, batch 1 (bench/cuda/results/h200_2026-11-26_s3_h6_*):
     * 14336 x 4096 20.3 -> 15.6 us (10.4 without outliers), 4096 x 4096 8.7
     * -> 8.7, but 4096 x 14336 14.9 -> 16.9 (not profiled; likely the
     * rounds: there a warp's 2 rows of 143 entries take 5 dependent L2 round
     * trips while the other blocks saturate memory). Kept for comparisons
     * (CBK_V8_OL_WARP, OPC_CUDA_V8_OLEPI=warp): staging the entries in shared
     * memory barely moved it (14336 x 4096 16.6 -> 16.0 us), the octet form
     * above did (-> 12.8): the cost was the reduction chains, not the loads. */
    constexpr int OR = 4;
    const int R = min(OR, (nrows + NW - 1) / NW);
    for (int rl0 = warp * R; rl0 < nrows; rl0 += NW * R) {
        uint32_t eb[OR], ne[OR], nmax = 0u;
#pragma unroll
        for (int j = 0; j < OR; j++) {
            const bool ok = j < R && rl0 + j < nrows;
            eb[j] = ok ? olp[rl0 + j] : 0u;
            ne[j] = ok ? olp[rl0 + j + 1] - eb[j] : 0u;
            nmax = max(nmax, ne[j]);
        }
        float sb[OR][OPC_CBK_V8_MAX_BATCH];
#pragma unroll
        for (int j = 0; j < OR; j++)
#pragma unroll
            for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++) sb[j][b] = 0.0f;
        for (uint32_t k0 = 0; k0 < nmax; k0 += 32) { /* warp-uniform trip count */
            const uint32_t k = k0 + lane;
            int cc[OR];
            float vv[OR];
#pragma unroll
            for (int j = 0; j < OR; j++) { /* a missing entry: column 0, value 0 */
                const bool ok = k < ne[j];
                const uint32_t e = eb[j] + k, so = e - sb0;
                uint16_t c16 = 0, v16 = 0;
                if (ok) {
                    if (so < sn) c16 = olc[so], v16 = olv[so];
                    else c16 = __ldg(m.ol_col + e), v16 = __ldg(m.ol_val + e);
                }
                cc[j] = (int)c16;
                vv[j] = __half2float(__ushort_as_half(v16));
            }
#pragma unroll
            for (int j = 0; j < OR; j++)
#pragma unroll
                for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++)
                    if (b < nb) sb[j][b] = fmaf(vv[j], cbk_v8_xval(cbk_smem8, xsc, XST, nsteps, b, cc[j]), sb[j][b]);
        }
        /* lane j nb + b ends with row rl0 + j, vector b */
        float mine = 0.0f;
#pragma unroll
        for (int j = 0; j < OR; j++)
#pragma unroll
            for (int b = 0; b < OPC_CBK_V8_MAX_BATCH; b++)
                if (j < R && b < nb) { /* warp-uniform */
                    const float sum = cbk_warp_sum(sb[j][b]);
                    if (lane == j * nb + b) mine = sum;
                }
        const int j = lane / nb, b = lane - j * nb, rl = rl0 + j;
        if (j < R && rl < nrows) {
            const int tl = rl >> 4;
            float tot = 0.0f;
            for (int w = 0; w < nwu; w++) tot += red[((tl * NW + w) * 16 + (rl & 15)) * nb + b];
            y[(size_t)b * m.rows + tile0 * 16 + rl] = tot * __uint_as_float(pl[rl].z) + mine;
        }
    }
}

} /* namespace opc_cuda */

#endif /* OPC_CB_GEMV_KERNELS_CUH */
