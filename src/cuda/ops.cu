/*
 * ops.cu — element-wise and attention kernels of the CUDA forward pass:
 * RMSNorm (with the residual add fused in), embedding lookup, RoPE + KV-cache
 * store, causal GQA attention (flash-decoding split for decode, one block per
 * query for prefill), SwiGLU, codebook dequantization to fp16 (for the
 * cuBLAS prefill path) and a generic codebook GEMV for 4-bit indices.
 *
 * The CPU reference (src/model/forward.c) is the specification: same order of
 * operations, fp32 arithmetic. Differences are the fp16 KV cache and the
 * fp16 rounding of GEMM inputs, which the tests bound.
 */
#include "cb_device.cuh"
#include "ops.cuh"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <utility>

namespace opc_cudafwd {

CbDev cb_dev(const opc_cuda_cb_matrix *m) {
    CbDev d;
    d.idx = m->idx;
    d.codebook = reinterpret_cast<const __half *>(m->codebook);
    d.ol_rowptr = m->n_outliers ? m->ol_rowptr : NULL;
    d.ol_col = m->ol_col;
    d.ol_val = reinterpret_cast<const __half *>(m->ol_val);
    d.gscale = m->gscale;
    d.gs_stride = m->gscale ? m->gs_stride : 0;
    d.rows = m->rows, d.cols = m->cols;
    d.row_bytes = (int64_t)m->row_bytes;
    d.bits = m->bits, d.k = m->k;
    return d;
}

static unsigned grid_for(int64_t count, int threads) {
    int64_t b = (count + threads - 1) / threads;
    return (unsigned)(b > 65535 * 16 ? 65535 * 16 : b); /* grid-stride loops cover the rest */
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Group scale of (row r, column c): cb.h opc_cb_scale(q) = 2^(-q/16); 1 without scales.
 * exp2f is within 2 ulp of the exact fp32 value the CPU reference uses. */
__device__ __forceinline__ float cb_gscale(const CbDev &m, int64_t r, int64_t c) {
    return m.gscale ? exp2f((float)m.gscale[r * m.gs_stride + (c >> 6)] * -0.0625f) : 1.0f;
}

/* Programmatic dependent launch (Hopper): let the next kernel in the stream
 * be scheduled now. The codebook GEMVs are launched with the PDL attribute:
 * their blocks become resident while this kernel runs and fetch their
 * weights (which no kernel writes) before they wait (griddepcontrol.wait)
 * for this grid to complete. Kernels launched normally ignore it. */
__device__ __forceinline__ void pdl_trigger(void) { opc_cuda::cbk_grid_trigger(); }

/* ... and wait, before touching any memory another kernel writes, until the
 * previous grid in the stream has completed (a no-op when this kernel was
 * launched without the PDL attribute). */
__device__ __forceinline__ void pdl_wait(void) { opc_cuda::cbk_grid_wait(); }

/* Launch, with the programmatic-stream-serialization attribute when this
 * thread's set_pdl_ops() said so: then the kernel's blocks may be scheduled
 * as soon as the previous kernel's blocks have all triggered, and each of
 * these kernels starts with pdl_trigger(); pdl_wait();. (The codebook GEMVs,
 * which have weights to fetch before they wait, always use PDL: cb_gemv.cu.)
 * Errors are left for cudaGetLastError(). */
static thread_local int t_pdl_ops = 0;
void set_pdl_ops(int on) { t_pdl_ops = on != 0; }
static int pdl_enabled(void) { return t_pdl_ops; }
template <typename... KArgs, typename... Args>
static void launch_k(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args &&...args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at, cfg.numAttrs = pdl_enabled() ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

/* Index of column c of a packed row (cb.h layout), device version of opc_cb_get_index. */
__device__ __forceinline__ unsigned cb_index(const uint8_t *row, int bits, int64_t c) {
    const int64_t g = c >> 6;
    const int j = (int)(c & 63);
    if (bits == 2) return (row[g * 16 + (j & 15)] >> (2 * (j >> 4))) & 3u;
    return (row[g * 32 + (j & 31)] >> (4 * (j >> 5))) & 15u;
}

/* Sign of column c (cb.h opc_cb_rot_sign) for the 64 columns of group c >> 6,
 * as a bit mask: bit j set = column 64*(c>>6) + j is negated. */
__device__ __forceinline__ uint64_t rot_sign_bits(int64_t c) { return opc_cb_rot_sign_word(c >> 6); }

/* Butterflies of a normalized Walsh-Hadamard transform over the index bits
 * above the E values a thread holds: lane bits by shuffles, then warp bits
 * through `sm` ([i][tid] layout with `stride` >= the active threads, so
 * E*stride floats: conflict-free), one barrier pair per bit. Each run of T
 * threads holds consecutive E-value pieces of one rotation block of T*E
 * columns; every thread of the CUDA block must call this (barriers), and
 * `active` says whether this one holds values. T is a power of two. */
/* Butterflies of the Walsh-Hadamard transform over the index bits a thread
 * holds itself (its E values, in registers; no normalisation). */
template <int E> __device__ __forceinline__ void fwht_local(float (&v)[E]) {
#pragma unroll
    for (int h = 1; h < E; h *= 2)
#pragma unroll
        for (int i = 0; i < E; i++)
            if (!(i & h)) {
                const float a = v[i], d = v[i + h];
                v[i] = a + d, v[i + h] = a - d;
            }
}

template <int E>
__device__ __forceinline__ void fwht_cross(float (&v)[E], int tid, int T, bool active, float *sm, int stride) {
    const int lane = tid & 31;
    if (active) {
        const unsigned mask = T >= 32 ? 0xffffffffu : (1u << T) - 1u;
        for (int hl = 1; hl < 32 && hl < T; hl *= 2) {
            const bool up = lane & hl;
#pragma unroll
            for (int i = 0; i < E; i++) {
                const float o = __shfl_xor_sync(mask, v[i], hl);
                v[i] = up ? o - v[i] : v[i] + o;
            }
        }
    }
    for (int hw = 32; hw < T; hw *= 2) {
        if (active)
#pragma unroll
            for (int i = 0; i < E; i++) sm[i * stride + tid] = v[i];
        __syncthreads();
        if (active) {
            const bool up = tid & hw;
#pragma unroll
            for (int i = 0; i < E; i++) {
                const float o = sm[i * stride + (tid ^ hw)];
                v[i] = up ? o - v[i] : v[i] + o;
            }
        }
        __syncthreads();
    }
}

/* -------------------------------------------------------------- RMSNorm -- */

/* One block of 1024 threads per token row; each thread keeps its <= 8
 * elements (dim <= 8192) in registers, so every load of a pass is issued
 * before the first use. (A first version, 256 threads looping over the row
 * twice, was latency-bound: 14.6 us per call at dim 4096 under ncu, 30% of a
 * decode layer's non-GEMV time.) */
constexpr int kNormThreads = 1024, kNormPer = 8;

__global__ void __launch_bounds__(kNormThreads)
    k_add_rmsnorm(float *x, const float *xo, const float *w, float *out32, __half *out16, int dim,
                  float eps, int rot_log2, float *rot32, __half *rot16) {
    pdl_trigger();
    pdl_wait();
    const int64_t t = blockIdx.x;
    float *xr = x + t * dim;
    float v[kNormPer];
    float ss = 0.f;
#pragma unroll
    for (int j = 0; j < kNormPer; j++) {
        const int i = threadIdx.x + j * kNormThreads;
        v[j] = i < dim ? xr[i] : 0.f;
    }
    if (xo) {
#pragma unroll
        for (int j = 0; j < kNormPer; j++) {
            const int i = threadIdx.x + j * kNormThreads;
            if (i < dim) {
                v[j] += xo[t * dim + i];
                xr[i] = v[j];
            }
        }
    }
#pragma unroll
    for (int j = 0; j < kNormPer; j++) ss += v[j] * v[j];
    __shared__ float red[32];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float r = red[threadIdx.x]; /* 1024 threads: exactly 32 partial sums */
        r = warp_sum(r);
        if (threadIdx.x == 0) red[0] = r;
    }
    __syncthreads();
    const float scale = rsqrtf(red[0] / (float)dim + eps);
    /* rot_log2 > 0: also the rotated row (cb.h opc_cb_rotate) for the rotated
     * matrices this norm feeds, without a separate launch: values go through
     * shared memory (one pad word per 16, conflict-free both ways) to 16
     * consecutive values per thread, then the same butterflies as k_rotate. */
    extern __shared__ float rs[]; /* (dim / 16 * 17) when rot_log2 > 0, else none */
#pragma unroll
    for (int j = 0; j < kNormPer; j++) {
        const int i = threadIdx.x + j * kNormThreads;
        if (i < dim) {
            const float o = w[i] * (v[j] * scale);
            if (out32) out32[t * dim + i] = o;
            if (out16) out16[t * dim + i] = __float2half_rn(o);
            if (rot_log2) rs[i + (i >> 4)] = o;
        }
    }
    if (!rot_log2) return; /* block-uniform */
    __syncthreads();
    constexpr int E = 16;
    const int tid = threadIdx.x, T = (1 << rot_log2) / E;
    const bool active = tid < dim / E;
    const int c0 = tid * E;
    float r[E] = {};
    uint64_t sg = 0;
    if (active) {
        sg = rot_sign_bits(c0) >> (c0 & 63);
#pragma unroll
        for (int i = 0; i < E; i++) {
            r[i] = rs[tid * 17 + i];
            if ((sg >> i) & 1u) r[i] = -r[i];
        }
        fwht_local<E>(r);
    }
    __syncthreads(); /* rs is reused by the warp-bit stages */
    fwht_cross<E>(r, tid, T, active, rs, dim / E); /* [i][tid] over the dim/E active threads */
    if (active) {
        const float norm = rsqrtf((float)(1 << rot_log2));
#pragma unroll
        for (int i = 0; i < E; i += 4) {
            const float4 f = make_float4(r[i] * norm, r[i + 1] * norm, r[i + 2] * norm, r[i + 3] * norm);
            *reinterpret_cast<float4 *>(rot32 + t * dim + c0 + i) = f;
            const __half2 a = __floats2half2_rn(f.x, f.y), b = __floats2half2_rn(f.z, f.w);
            uint2 u;
            u.x = *reinterpret_cast<const uint32_t *>(&a), u.y = *reinterpret_cast<const uint32_t *>(&b);
            *reinterpret_cast<uint2 *>(rot16 + t * dim + c0 + i) = u;
        }
    }
}

void add_rmsnorm(float *x, const float *xo, const float *w, float *out32, __half *out16, int n,
                 int dim, float eps, cudaStream_t s) {
    launch_k(k_add_rmsnorm, n, kNormThreads, 0, s, x, xo, w, out32, out16, dim, eps, 0, (float *)NULL,
             (__half *)NULL);
}

int add_rmsnorm_rot_ok(int dim, int log2) {
    /* dim <= 8192: the staging buffer (dim/16*17 floats) stays under 48 KB */
    return log2 >= 4 && (1 << log2) <= dim && dim % (1 << log2) == 0 && dim <= kNormThreads * kNormPer;
}

void add_rmsnorm_rot(float *x, const float *xo, const float *w, float *out32, __half *out16, int n, int dim,
                     float eps, int log2, float *rot32, __half *rot16, cudaStream_t s) {
    launch_k(k_add_rmsnorm, n, kNormThreads, (size_t)dim / 16 * 17 * 4, s, x, xo, w, out32, out16, dim, eps, log2,
             rot32, rot16);
}

/* ------------------------------------------------------------ embedding -- */

__global__ void k_embed(const __half *table, CbDev cb, int use_cb, const int32_t *tok, int n,
                        int dim, float *x) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y;
    const int64_t r = tok[t];
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x) {
        float v;
        if (use_cb) {
            v = __half2float(cb.codebook[r * cb.k + cb_index(cb.idx + r * cb.row_bytes, cb.bits, i)]) *
                cb_gscale(cb, r, i);
        } else {
            v = __half2float(table[r * dim + i]);
        }
        x[(int64_t)t * dim + i] = v;
    }
    /* outliers of the row: sparse deltas, added after every plain value is
     * written (one thread; a row has a handful) */
    if (use_cb && cb.ol_rowptr && blockIdx.x == 0) {
        __syncthreads();
        if (threadIdx.x == 0)
            for (uint32_t o = cb.ol_rowptr[r]; o < cb.ol_rowptr[r + 1]; o++) {
                int c = cb.ol_col[o];
                /* only columns this block wrote are certain to be visible; the
                 * launch uses one block in x when outliers exist */
                x[(int64_t)t * dim + c] += __half2float(cb.ol_val[o]);
            }
    }
}

void embed(const __half *table, const CbDev *cb, const int32_t *tok_dev, int n, int dim, float *x,
           cudaStream_t s) {
    CbDev d;
    memset(&d, 0, sizeof d);
    if (cb) d = *cb;
    /* With outliers one block per token writes the whole row, so the
     * block-local barrier orders the plain values before the deltas. */
    const unsigned bx = (cb && cb->ol_rowptr) ? 1u : (unsigned)((dim + 255) / 256);
    launch_k(k_embed, dim3(bx, (unsigned)n), 256, 0, s, table, d, cb != NULL, tok_dev, n, dim, x);
}

/* ----------------------------------------------------- codebook dequant -- */

/* One thread per 8 consecutive columns of a row: one 8-byte load of index
 * bytes (the planes of a group re-read the same bytes through L1) and one
 * 16-byte store of 8 fp16, so a warp writes 512 contiguous bytes. (A first
 * version, one thread per 16-column plane with 2-byte stores, made the fp16
 * writes uncoalesced and the 8B-shape prefill ~5x slower than its GEMMs.) */
__global__ void k_cb_dequant(CbDev m, __half *out, int vec) {
    const int64_t per_row = (m.cols + 7) / 8;
    const int64_t total = m.rows * per_row;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / per_row, c0 = (i % per_row) * 8;
        const int64_t g = c0 >> 6;
        const int j0 = (int)(c0 & 63);
        int shift, b0;
        unsigned mask;
        const uint8_t *src;
        if (m.bits == 2) {
            shift = 2 * (j0 >> 4), b0 = j0 & 15, mask = 3u;
            src = m.idx + r * m.row_bytes + g * 16 + b0;
        } else {
            shift = 4 * (j0 >> 5), b0 = j0 & 31, mask = 15u;
            src = m.idx + r * m.row_bytes + g * 32 + b0;
        }
        /* b0 is a multiple of 8 and rows/groups are 16-byte aligned */
        const uint2 raw = *reinterpret_cast<const uint2 *>(src);
        const __half *cb = m.codebook + r * m.k;
        const float sc = cb_gscale(m, r, c0); /* the 8 columns share one 64-column group */
        __align__(16) __half v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const unsigned byte = ((j < 4 ? raw.x : raw.y) >> (8 * (j & 3))) & 0xFFu;
            v[j] = m.gscale ? __float2half_rn(__half2float(cb[(byte >> shift) & mask]) * sc)
                            : cb[(byte >> shift) & mask];
        }
        __half *o = out + r * m.cols + c0;
        if (vec && c0 + 8 <= m.cols) {
            *reinterpret_cast<uint4 *>(o) = *reinterpret_cast<const uint4 *>(v);
        } else {
            for (int j = 0; j < 8 && c0 + j < m.cols; j++) o[j] = v[j];
        }
    }
}

/* Outlier deltas, one thread per row, after k_cb_dequant (same stream). The
 * sum cb + delta is rounded once to fp16, as the fp16 value read back is exact. */
__global__ void k_cb_outliers(CbDev m, __half *out) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < m.rows;
         r += (int64_t)gridDim.x * blockDim.x)
        for (uint32_t o = m.ol_rowptr[r]; o < m.ol_rowptr[r + 1]; o++) {
            __half *p = out + r * m.cols + m.ol_col[o];
            *p = __float2half_rn(__half2float(*p) + __half2float(m.ol_val[o]));
        }
}

void cb_dequant_f16(const CbDev &m, __half *out, cudaStream_t s) {
    const int64_t total = m.rows * ((m.cols + 7) / 8);
    k_cb_dequant<<<grid_for(total, 256), 256, 0, s>>>(m, out, m.cols % 8 == 0);
    if (m.ol_rowptr) k_cb_outliers<<<grid_for(m.rows, 128), 128, 0, s>>>(m, out);
}

/* ------------------------------------------------- generic codebook GEMV -- */

/* One warp per row; each lane walks columns lane, lane+32, ... so the x
 * loads of a warp are coalesced; the row's codebook (<= 16 fp16) is read
 * through L1. nb accumulators in registers (compile-time bound 8). */
__global__ void k_cb_gemv_generic(CbDev m, const float *x, int nb, float *y) {
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= m.rows) return;
    const uint8_t *row = m.idx + r * m.row_bytes;
    const __half *cb = m.codebook + r * m.k;
    float acc[8];
#pragma unroll
    for (int b = 0; b < 8; b++) acc[b] = 0.f;
    for (int64_t c = lane; c < m.cols; c += 32) {
        const float w = __half2float(cb[cb_index(row, m.bits, c)]) * cb_gscale(m, r, c);
#pragma unroll
        for (int b = 0; b < 8; b++)
            if (b < nb) acc[b] += w * x[(int64_t)b * m.cols + c];
    }
    if (m.ol_rowptr)
        for (uint32_t o = m.ol_rowptr[r] + lane; o < m.ol_rowptr[r + 1]; o += 32) {
            const float dv = __half2float(m.ol_val[o]);
            const int c = m.ol_col[o];
#pragma unroll
            for (int b = 0; b < 8; b++)
                if (b < nb) acc[b] += dv * x[(int64_t)b * m.cols + c];
        }
#pragma unroll
    for (int b = 0; b < 8; b++) {
        float v = warp_sum(acc[b]);
        if (b < nb && lane == 0) y[(int64_t)b * m.rows + r] = v;
    }
}

void cb_gemv_generic(const CbDev &m, const float *x, int nb, float *y, cudaStream_t s) {
    const int warps = 8;
    k_cb_gemv_generic<<<(unsigned)((m.rows + warps - 1) / warps), warps * 32, 0, s>>>(m, x, nb, y);
}

/* -------------------------------------------- 4-bit codebook GEMV (CB4) -- */

/*
 * Decode GEMV (batches <= 8) for 4-bit indices (k = 8 or 16 entries), with
 * group scales and outliers. The generic kernel above reads one index byte
 * and one codebook entry from global memory per weight (an 8B-shape 4-bit
 * model decoded at 179 tok/s on an H200, ~345 GB/s); here the packed bytes
 * stream through registers and the lookup is in shared memory:
 *   - each warp works on C4_ROWS rows at a time; their codebooks are 16
 *     floats each in shared memory, and every lane of the warp reads the
 *     same row's table at once, so the lookups never conflict on banks (a
 *     256-entry pair table, one 8-byte lookup per two weights, was 1.4x
 *     slower: random lookups conflict);
 *   - cb.h layout: byte t of a row's 32-byte group g holds the indices of
 *     columns 64g + t (low nibble) and 64g + 32 + t (high nibble); x is
 *     staged once per (persistent) block as the matching pairs
 *     (x[64g+t], x[64g+32+t]), one pad slot per 16 pairs so that the 32
 *     lanes, each on its own 16 consecutive pairs, hit different banks;
 *   - each lane has C4_U 16-byte pieces per row in flight before it uses
 *     any (one at a time: 500 instead of 705 tok/s on the model above);
 *   - group scales multiply each 32-weight partial sum (s * sum(cb x)
 *     instead of sum((s cb) x): reassociated, so fp32 rounding differs).
 * Shared memory: nb * groups * 272 bytes of x pairs + the tables (1 KiB);
 * cb4_gemv() splits batches into chunks whose x fits in 96 KiB.
 */
constexpr int C4_WARPS = 8, C4_ROWS = 2, C4_U = 4;
constexpr size_t C4_TAB_BYTES = (size_t)C4_WARPS * C4_ROWS * 16 * sizeof(float);
constexpr size_t C4_X_BUDGET = 96 * 1024; /* x pairs per block at most */

template <int NB> __global__ void __launch_bounds__(C4_WARPS * 32) k_cb4_gemv(CbDev m, const float *x, float *y) {
    extern __shared__ float2 c4_sm[];
    /* x pair p = 32 g + t sits at (p >> 4) * 17 + (p & 15): one pad slot per
     * 16 pairs, so the 32 lanes (each on its own 16 consecutive pairs) read
     * different banks for the same step q (unpadded: all in one bank) */
    const int64_t groups = m.row_bytes / 32, npair = groups * 32, xstride = groups * 34;
    float2 *xs = c4_sm; /* (NB, xstride) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *tab = reinterpret_cast<float *>(c4_sm + NB * xstride) + warp * C4_ROWS * 16; /* (C4_ROWS, 16) */
    pdl_trigger();
    pdl_wait();
#pragma unroll
    for (int b = 0; b < NB; b++)
        for (int64_t p = threadIdx.x; p < npair; p += blockDim.x) {
            const int64_t c0 = (p >> 5) * 64 + (p & 31), c1 = c0 + 32;
            const float *xb = x + b * m.cols;
            xs[b * xstride + (p >> 4) * 17 + (p & 15)] =
                make_float2(c0 < m.cols ? xb[c0] : 0.f, c1 < m.cols ? xb[c1] : 0.f);
        }
    __syncthreads();
    for (int64_t r0 = ((int64_t)blockIdx.x * C4_WARPS + warp) * C4_ROWS; r0 < m.rows;
         r0 += (int64_t)gridDim.x * C4_WARPS * C4_ROWS) {
        /* this warp's tables (entries >= k are never indexed: 0) */
        __syncwarp();
#pragma unroll
        for (int rr = 0; rr < C4_ROWS; rr++) {
            const int64_t r = r0 + rr < m.rows ? r0 + rr : m.rows - 1;
            const __half *cb = m.codebook + r * m.k;
            if (lane < 16)
                tab[rr * 16 + lane] = lane < m.k ? __half2float(cb[lane]) : 0.f;
        }
        __syncwarp();
        float acc[C4_ROWS][NB];
#pragma unroll
        for (int rr = 0; rr < C4_ROWS; rr++)
#pragma unroll
            for (int b = 0; b < NB; b++)
                acc[rr][b] = 0.f;
        const uint4 *rows4[C4_ROWS];
#pragma unroll
        for (int rr = 0; rr < C4_ROWS; rr++)
            rows4[rr] = reinterpret_cast<const uint4 *>(m.idx + (r0 + rr < m.rows ? r0 + rr : r0) * m.row_bytes);
        const int64_t nu = groups * 2; /* 16-byte pieces per row: two per group */
        /* C4_U pieces per row and lane in flight before any is used: one
         * piece at a time left each warp waiting a full DRAM latency per
         * 32 weights (measured: 170-750 GB/s) */
        for (int64_t u0 = lane; u0 < nu; u0 += 32 * C4_U) {
            uint4 wv[C4_U][C4_ROWS];
#pragma unroll
            for (int j = 0; j < C4_U; j++)
#pragma unroll
                for (int rr = 0; rr < C4_ROWS; rr++)
                    wv[j][rr] = u0 + 32 * j < nu ? __ldcs(rows4[rr] + u0 + 32 * j) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int j = 0; j < C4_U; j++) {
                const int64_t u = u0 + 32 * j;
                if (u >= nu)
                    break;
                const uint4 *w = wv[j];
                const float2 *xp = xs + u * 17; /* pairs 16u .. 16u + 15 */
                float part[C4_ROWS][NB];
#pragma unroll
                for (int rr = 0; rr < C4_ROWS; rr++)
#pragma unroll
                    for (int b = 0; b < NB; b++)
                        part[rr][b] = 0.f;
#pragma unroll
                for (int q = 0; q < 16; q++) {
                    float2 xv[NB];
#pragma unroll
                    for (int b = 0; b < NB; b++)
                        xv[b] = xp[b * xstride + q];
#pragma unroll
                    for (int rr = 0; rr < C4_ROWS; rr++) {
                        const uint32_t word = q < 4 ? w[rr].x : q < 8 ? w[rr].y : q < 12 ? w[rr].z : w[rr].w;
                        const float *t16 = tab + rr * 16;
                        const float tlo = t16[(word >> (8 * (q & 3))) & 15u],
                                    thi = t16[(word >> (8 * (q & 3) + 4)) & 15u];
#pragma unroll
                        for (int b = 0; b < NB; b++)
                            part[rr][b] = fmaf(thi, xv[b].y, fmaf(tlo, xv[b].x, part[rr][b]));
                    }
                }
#pragma unroll
                for (int rr = 0; rr < C4_ROWS; rr++) {
                    const float sc = m.gscale && r0 + rr < m.rows ? cb_gscale(m, r0 + rr, (u >> 1) * 64) : 1.0f;
#pragma unroll
                    for (int b = 0; b < NB; b++)
                        acc[rr][b] = fmaf(sc, part[rr][b], acc[rr][b]);
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < C4_ROWS; rr++) {
            const int64_t r = r0 + rr;
            if (r >= m.rows)
                break;
            if (m.ol_rowptr)
                for (uint32_t o = m.ol_rowptr[r] + lane; o < m.ol_rowptr[r + 1]; o += 32) {
                    const float dv = __half2float(m.ol_val[o]);
                    const int c = m.ol_col[o], p = (c >> 6) * 32 + (c & 31), pi = (p >> 4) * 17 + (p & 15);
#pragma unroll
                    for (int b = 0; b < NB; b++)
                        acc[rr][b] += dv * ((c & 32) ? xs[b * xstride + pi].y : xs[b * xstride + pi].x);
                }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                const float v = warp_sum(acc[rr][b]);
                if (lane == 0)
                    y[(int64_t)b * m.rows + r] = v;
            }
        }
    }
}

template <int NB> static cudaError_t cb4_launch(const CbDev &m, const float *x, float *y, cudaStream_t s) {
    static int sms = 0, smem_max = 0;
    if (!sms) { /* once per process (one device); benign race: the same values */
        int dev = 0;
        cudaError_t e = cudaGetDevice(&dev);
        if (e == cudaSuccess)
            e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        if (e == cudaSuccess)
            e = cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(k_cb4_gemv<NB>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_max);
        if (e != cudaSuccess)
            return e;
    }
    const size_t smem = (size_t)NB * (size_t)(m.row_bytes / 32) * 34 * sizeof(float2) + C4_TAB_BYTES;
    int per_sm = 0;
    cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_cb4_gemv<NB>, C4_WARPS * 32, smem);
    if (e != cudaSuccess)
        return e;
    if (per_sm < 1)
        per_sm = 1;
    const int64_t need = (m.rows + C4_WARPS * C4_ROWS - 1) / (C4_WARPS * C4_ROWS);
    const int64_t grid = need < (int64_t)per_sm * sms ? need : (int64_t)per_sm * sms;
    launch_k(k_cb4_gemv<NB>, dim3((unsigned)grid), C4_WARPS * 32, smem, s, m, x, y);
    return cudaSuccess;
}

bool cb4_gemv_ok(const CbDev &m) {
    return m.bits == 4 && m.k <= 16 && (size_t)(m.row_bytes / 32) * 34 * sizeof(float2) <= C4_X_BUDGET;
}

void cb4_gemv(const CbDev &m, const float *x, int nb, float *y, cudaStream_t s) {
    /* vectors per launch: as many as fit the x budget, at most 8 */
    const size_t per = (size_t)(m.row_bytes / 32) * 34 * sizeof(float2);
    int chunk = (int)(C4_X_BUDGET / per);
    if (chunk > 8) chunk = 8;
    for (int b0 = 0; b0 < nb; b0 += chunk) {
        const int n = nb - b0 < chunk ? nb - b0 : chunk;
        const float *xb = x + (int64_t)b0 * m.cols;
        float *yb = y + (int64_t)b0 * m.rows;
        cudaError_t e;
        switch (n) {
        case 1: e = cb4_launch<1>(m, xb, yb, s); break;
        case 2: e = cb4_launch<2>(m, xb, yb, s); break;
        case 3: e = cb4_launch<3>(m, xb, yb, s); break;
        case 4: e = cb4_launch<4>(m, xb, yb, s); break;
        case 5: e = cb4_launch<5>(m, xb, yb, s); break;
        case 6: e = cb4_launch<6>(m, xb, yb, s); break;
        case 7: e = cb4_launch<7>(m, xb, yb, s); break;
        default: e = cb4_launch<8>(m, xb, yb, s); break;
        }
        if (e != cudaSuccess) return; /* left for cudaGetLastError() (kcheck) */
    }
}

/* --------------------------------------------------------- RoPE + cache -- */

__global__ void k_rope_store_kv(float *q, int ldq, const float *k, const float *v, int ldkv, const float *bq,
                                const float *bk, const float *bv, const float *rc, const float *rs,
                                __half *kc, __half *vc, const int32_t *pos_dev, int n_heads,
                                int n_kv, int hd) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y;
    const int64_t p = (int64_t)*pos_dev + t;
    const int half = hd / 2, kvd = n_kv * hd;
    const float *cs = rc + p * half, *sn = rs + p * half;
    const int nq = n_heads * half, nk = n_kv * half;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nq + nk + kvd; i += gridDim.x * blockDim.x) {
        if (i < nq + nk) {
            const int isk = i >= nq;
            const int ii = isk ? i - nq : i;
            const int h = ii / half, j = ii % half;
            const float *src = isk ? k + (int64_t)t * ldkv : q + (int64_t)t * ldq;
            const float *b = isk ? bk : bq;
            const int e0 = h * hd + j, e1 = e0 + half;
            float a = src[e0], c = src[e1];
            if (b) a += b[e0], c += b[e1];
            const float r0 = a * cs[j] - c * sn[j], r1 = c * cs[j] + a * sn[j];
            if (isk) {
                kc[p * kvd + e0] = __float2half_rn(r0);
                kc[p * kvd + e1] = __float2half_rn(r1);
            } else {
                q[(int64_t)t * ldq + e0] = r0;
                q[(int64_t)t * ldq + e1] = r1;
            }
        } else {
            const int e = i - nq - nk;
            float val = v[(int64_t)t * ldkv + e];
            if (bv) val += bv[e];
            vc[p * kvd + e] = __float2half_rn(val);
        }
    }
}

void rope_store_kv(float *q, int ldq, const float *k, const float *v, int ldkv, const float *bq, const float *bk,
                   const float *bv, const float *rope_cos, const float *rope_sin, __half *kc,
                   __half *vc, const int32_t *pos_dev, int n, int n_heads, int n_kv, int hd,
                   cudaStream_t s) {
    /* one item (a rotary pair of q or k, or a v element) per thread: a
     * single block looping over them was latency-bound (9.5 us at 8B shape) */
    const int items = n_heads * (hd / 2) + n_kv * (hd / 2) + n_kv * hd;
    launch_k(k_rope_store_kv, dim3((unsigned)((items + 127) / 128), (unsigned)n), 128, 0, s, q, ldq, k, v, ldkv, bq, bk, bv, rope_cos, rope_sin, kc, vc, pos_dev,
                                      n_heads, n_kv, hd);
}

/* ------------------------------------------------------------ attention -- */

/* Block = kAttnWarps warps for one (head, token, split). Each warp takes
 * every kAttnWarps-th key of the block's range with an online softmax; lane
 * l holds head elements l, l+32, ... (VPL of them), so a key row is read as
 * one coalesced warp access. The warps' (max, sum, acc) are merged in shared
 * memory. VPL = ceil(hd / 32) is a template parameter so acc[] stays in
 * registers (run-time indexing would move it to local memory). */
template <int VPL>
__global__ void __launch_bounds__(kAttnWarps * 32)
    k_attention(const float *q, int ldq, const __half *kc, const __half *vc, const int32_t *pos_dev,
                int n_heads, int n_kv, int hd, int splits, int chunk, float *part, float *out32,
                __half *out16) {
    pdl_trigger();
    pdl_wait();
    const int h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int qd = n_heads * hd, kvd = n_kv * hd;
    const int kvh = h / (n_heads / n_kv);
    const int64_t last = (int64_t)*pos_dev + t; /* attends to keys 0..last */
    const int64_t j0 = (int64_t)sp * chunk;
    int64_t j1 = j0 + chunk;
    if (j1 > last + 1) j1 = last + 1;
    const float scale = rsqrtf((float)hd);

    float qv[VPL], acc[VPL];
#pragma unroll
    for (int i = 0; i < VPL; i++) {
        const int d = lane + 32 * i;
        qv[i] = d < hd ? q[(int64_t)t * ldq + h * hd + d] * scale : 0.f;
        acc[i] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int64_t j = j0 + warp; j < j1; j += kAttnWarps) {
        const __half *kr = kc + j * kvd + kvh * hd, *vr = vc + j * kvd + kvh * hd;
        float sdot = 0.f;
#pragma unroll
        for (int i = 0; i < VPL; i++) {
            const int d = lane + 32 * i;
            if (d < hd) sdot += qv[i] * __half2float(kr[d]);
        }
        const float sc = warp_sum(sdot);
        const float mn = fmaxf(m, sc);
        const float corr = __expf(m - mn), pj = __expf(sc - mn); /* exp(-inf) = 0 on the first key */
        l = l * corr + pj;
#pragma unroll
        for (int i = 0; i < VPL; i++) {
            const int d = lane + 32 * i;
            acc[i] = acc[i] * corr + (d < hd ? pj * __half2float(vr[d]) : 0.f);
        }
        m = mn;
    }

    __shared__ float sm_m[kAttnWarps], sm_l[kAttnWarps];
    __shared__ float sm_acc[kAttnWarps][kMaxHeadDim];
    if (lane == 0) sm_m[warp] = m, sm_l[warp] = l;
#pragma unroll
    for (int i = 0; i < VPL; i++) {
        const int d = lane + 32 * i;
        if (d < hd) sm_acc[warp][d] = acc[i];
    }
    __syncthreads();
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kAttnWarps; w++) M = fmaxf(M, sm_m[w]);
    float L = 0.f, f[kAttnWarps];
#pragma unroll
    for (int w = 0; w < kAttnWarps; w++) {
        f[w] = sm_m[w] == -INFINITY ? 0.f : __expf(sm_m[w] - M); /* a warp with no keys adds 0 */
        L += sm_l[w] * f[w];
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.f;
#pragma unroll
        for (int w = 0; w < kAttnWarps; w++) a += sm_acc[w][d] * f[w];
        if (splits == 1) {
            const float o = a / L;
            out32[(int64_t)t * qd + h * hd + d] = o;
            out16[(int64_t)t * qd + h * hd + d] = __float2half_rn(o);
        } else {
            float *pp = part + (((int64_t)t * n_heads + h) * splits + sp) * (hd + 2);
            pp[2 + d] = a;
            if (d == 0) pp[0] = M, pp[1] = L; /* M = -inf: this split had no keys */
        }
    }
}

/* Merge the splits of one (head, token): thread d owns output element d. */
__global__ void k_attention_merge(const float *part, int n_heads, int hd, int splits, float *out32,
                                  __half *out16) {
    pdl_trigger();
    pdl_wait();
    const int h = blockIdx.x, t = blockIdx.y;
    const float *pp = part + ((int64_t)t * n_heads + h) * splits * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, pp[s * (hd + 2)]);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float L = 0.f, a = 0.f;
        for (int s = 0; s < splits; s++) {
            const float ms = pp[s * (hd + 2)];
            if (ms == -INFINITY) continue;
            const float f = __expf(ms - M);
            L += pp[s * (hd + 2) + 1] * f;
            a += pp[s * (hd + 2) + 2 + d] * f;
        }
        const float o = a / L;
        out32[(int64_t)t * n_heads * hd + h * hd + d] = o;
        out16[(int64_t)t * n_heads * hd + h * hd + d] = __float2half_rn(o);
    }
}

void attention(const float *q, int ldq, const __half *kc, const __half *vc, const int32_t *pos_dev, int n,
               int n_heads, int n_kv, int hd, int splits, int chunk, float *part, float *out32,
               __half *out16, cudaStream_t s) {
    const dim3 grid((unsigned)n_heads, (unsigned)n, (unsigned)splits);
    const int th = kAttnWarps * 32;
    const int vpl = (hd + 31) / 32;
    if (vpl <= 1)
        launch_k(k_attention<1>, grid, th, 0, s, q, ldq, kc, vc, pos_dev, n_heads, n_kv, hd, splits, chunk, part, out32, out16);
    else if (vpl <= 2)
        launch_k(k_attention<2>, grid, th, 0, s, q, ldq, kc, vc, pos_dev, n_heads, n_kv, hd, splits, chunk, part, out32, out16);
    else if (vpl <= 4)
        launch_k(k_attention<4>, grid, th, 0, s, q, ldq, kc, vc, pos_dev, n_heads, n_kv, hd, splits, chunk, part, out32, out16);
    else
        launch_k(k_attention<8>, grid, th, 0, s, q, ldq, kc, vc, pos_dev, n_heads, n_kv, hd, splits, chunk, part, out32, out16);
    if (splits > 1)
        launch_k(k_attention_merge, dim3((unsigned)n_heads, (unsigned)n), hd < 128 ? 128 : 256, 0, s, 
            part, n_heads, hd, splits, out32, out16);
}

/* --------------------------------------------------------- greedy pick -- */

/* Order-preserving key of a float (larger value, larger key); NaN sorts
 * lowest. Packed with ~index below it, the u64 maximum is the largest value
 * and, among equal values, the smallest index: opc_argmax's choice. */
__device__ __forceinline__ unsigned long long argmax_key(float v, int i) {
    uint32_t u = __float_as_uint(v);
    u = isnan(v) ? 0u : (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)i);
}

__device__ __forceinline__ unsigned long long umax64(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

/* Each block reduces a strided slice to one key and folds it into *best
 * with a 64-bit atomicMax; the last block to finish (counter) publishes the
 * token: out[*step] = tok, *step += 1, and io = (pos + 1, tok) — the next
 * decode step's input, read by the captured graph from device memory — then
 * clears *best and *cnt for the next call. */
__global__ void __launch_bounds__(256)
    k_argmax_next(const float *logits, int n, unsigned long long *best, unsigned *cnt, int32_t *io, int32_t *out,
                  int32_t *step) {
    pdl_trigger();
    pdl_wait();
    unsigned long long k = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        k = umax64(k, argmax_key(logits[i], i));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) k = umax64(k, __shfl_xor_sync(0xffffffffu, k, o));
    __shared__ unsigned long long sk[8];
    __shared__ int s_last;
    if ((threadIdx.x & 31) == 0) sk[threadIdx.x >> 5] = k;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) k = umax64(k, sk[w]);
        atomicMax(best, k);
        __threadfence();
        s_last = atomicAdd(cnt, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!s_last || threadIdx.x != 0) return;
    __threadfence();
    const unsigned long long b = atomicAdd(best, 0ull);
    const int32_t tok = (int32_t)(0xFFFFFFFFu - (uint32_t)(b & 0xFFFFFFFFull));
    out[*step] = tok;
    *step += 1;
    io[0] += 1;
    io[1] = tok;
    *best = 0ull;
    *cnt = 0u;
}

void argmax_next(const float *logits, int n, unsigned long long *best, unsigned *cnt, int32_t *io, int32_t *out,
                 int32_t *step, cudaStream_t s) {
    /* 32 blocks of 256: ~16 logits per thread at a 128K vocabulary */
    int blocks = (n + 255) / 256;
    if (blocks > 32) blocks = 32;
    launch_k(k_argmax_next, blocks, 256, 0, s, logits, n, best, cnt, io, out, step);
}

/* ------------------------------------------------------------- rotation -- */

/*
 * One block per (rotation block of b = 2^log2 columns, token). Thread i holds
 * E = 2^le consecutive values (E <= 64 and E-aligned, so one sign word covers
 * them) in registers; the butterflies over index bits [0, le) run in
 * registers, bits [le, le+5) across the lanes of a warp (shuffles), and only
 * the bits above that (the warp index) go through shared memory, one barrier
 * pair per bit. So a 4096-column block (E = 16, 8 warps) needs 3 barrier
 * pairs instead of 12 (a first, all-shared-memory version had 12).
 */
template <int E>
__global__ void __launch_bounds__(512) /* <= 512 threads: up to 128 registers for E = 64 */
    k_rotate(const float *in, float *out32, __half *out16, int cols, int log2, int inverse, int vec) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ float rot_smem[]; /* (b) */
    const int b = 1 << log2, T = b / E;
    const int tid = threadIdx.x;
    const int64_t c0 = (int64_t)blockIdx.x * b + (int64_t)tid * E; /* first column of this thread */
    const int64_t row = (int64_t)blockIdx.y * cols;
    const uint64_t sg = rot_sign_bits(c0) >> (c0 & 63);
    float v[E];
    if (E >= 4 && vec) { /* 16-byte loads: rows stay 16-byte aligned */
#pragma unroll
        for (int i = 0; i < E; i += 4) {
            const float4 f = *reinterpret_cast<const float4 *>(in + row + c0 + i);
            v[i] = f.x, v[(i + 1) % E] = f.y, v[(i + 2) % E] = f.z, v[(i + 3) % E] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < E; i++) v[i] = in[row + c0 + i];
    }
#pragma unroll
    for (int i = 0; i < E; i++)
        if (!inverse && ((sg >> i) & 1u)) v[i] = -v[i];
    fwht_local<E>(v);
    fwht_cross<E>(v, tid, T, true, rot_smem, T);
    const float norm = rsqrtf((float)b);
#pragma unroll
    for (int i = 0; i < E; i++) {
        v[i] *= norm;
        if (inverse && ((sg >> i) & 1u)) v[i] = -v[i];
    }
    if (E >= 4 && vec) {
#pragma unroll
        for (int i = 0; i < E; i += 4) {
            *reinterpret_cast<float4 *>(out32 + row + c0 + i) =
                make_float4(v[i], v[(i + 1) % E], v[(i + 2) % E], v[(i + 3) % E]);
            if (out16) {
                const __half2 a = __floats2half2_rn(v[i], v[(i + 1) % E]);
                const __half2 b2 = __floats2half2_rn(v[(i + 2) % E], v[(i + 3) % E]);
                uint2 u;
                u.x = *reinterpret_cast<const uint32_t *>(&a), u.y = *reinterpret_cast<const uint32_t *>(&b2);
                *reinterpret_cast<uint2 *>(out16 + row + c0 + i) = u;
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < E; i++) {
            out32[row + c0 + i] = v[i];
            if (out16) out16[row + c0 + i] = __float2half_rn(v[i]);
        }
    }
}

/* E per block size: 16 values per thread up to b = 2^13 (512 threads), then
 * 32 and 64 so that a block never exceeds 512 threads (1024 threads x 32
 * values needed more registers than an SM has: launch failure at 2^15). */
static int rot_e(int log2) { return log2 <= 4 ? (1 << log2) : log2 <= 13 ? 16 : log2 == 14 ? 32 : 64; }

cudaError_t rotate_prepare(int log2) {
    const int bytes = (1 << log2) * 4;
    if (bytes <= 48 * 1024) return cudaSuccess;
    return rot_e(log2) == 32 ? cudaFuncSetAttribute(k_rotate<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
                             : cudaFuncSetAttribute(k_rotate<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

void rotate(const float *in, float *out32, __half *out16, int n, int cols, int log2, int inverse,
            cudaStream_t s) {
    const int b = 1 << log2, E = rot_e(log2), T = b / E;
    const dim3 grid((unsigned)(cols / b), (unsigned)n);
    const size_t smem = T > 32 ? (size_t)b * 4 : 0;
    /* 16-byte loads and stores when every row start is aligned */
    const int vec = cols % 4 == 0 && !((uintptr_t)in & 15) && !((uintptr_t)out32 & 15) && !((uintptr_t)out16 & 7);
    switch (E) {
    case 1: launch_k(k_rotate<1>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    case 2: launch_k(k_rotate<2>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    case 4: launch_k(k_rotate<4>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    case 8: launch_k(k_rotate<8>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    case 16: launch_k(k_rotate<16>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    case 32: launch_k(k_rotate<32>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    default: launch_k(k_rotate<64>, grid, T, smem, s, in, out32, out16, cols, log2, inverse, vec); break;
    }
}

/* --------------------------------------------------------------- SwiGLU -- */

__global__ void k_swiglu(float *h32, __half *h16, const float *g, const float *u, int ld, int hid,
                         int64_t count) {
    pdl_trigger();
    pdl_wait();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t gi = (i / hid) * ld + i % hid;
        const float gv = g[gi];
        const float o = gv / (1.0f + __expf(-gv)) * u[gi];
        h32[i] = o;
        h16[i] = __float2half_rn(o);
    }
}

/* swiglu fused with the rotation of its output (the down projection's input):
 * one block per (rotation block of 2^log2 columns, token), 16 consecutive
 * columns per thread, the butterflies of k_rotate. */
__global__ void __launch_bounds__(512)
    k_swiglu_rot(float *h32, __half *h16, const float *g, const float *u, int ld, int hid, int log2, float *rot32,
                 __half *rot16) {
    pdl_trigger();
    pdl_wait();
    extern __shared__ float sw_smem[]; /* (b) when b > 512 */
    constexpr int E = 16;
    const int b = 1 << log2, T = b / E, tid = threadIdx.x;
    const int64_t c0 = (int64_t)blockIdx.x * b + (int64_t)tid * E, t = blockIdx.y;
    const uint64_t sg = rot_sign_bits(c0) >> (c0 & 63);
    float v[E];
#pragma unroll
    for (int i = 0; i < E; i++) {
        const float gv = g[t * ld + c0 + i];
        v[i] = gv / (1.0f + __expf(-gv)) * u[t * ld + c0 + i];
        h32[t * hid + c0 + i] = v[i];
        h16[t * hid + c0 + i] = __float2half_rn(v[i]);
        if ((sg >> i) & 1u) v[i] = -v[i];
    }
    fwht_local<E>(v);
    fwht_cross<E>(v, tid, T, true, sw_smem, T);
    const float norm = rsqrtf((float)b);
#pragma unroll
    for (int i = 0; i < E; i++) {
        rot32[t * hid + c0 + i] = v[i] * norm;
        rot16[t * hid + c0 + i] = __float2half_rn(v[i] * norm);
    }
}

int swiglu_rot_ok(int hid, int log2) { return log2 >= 4 && log2 <= 13 && hid % (1 << log2) == 0; }

void swiglu_rot(float *h32, __half *h16, const float *g, const float *u, int ld, int n, int hid, int log2,
                float *rot32, __half *rot16, cudaStream_t s) {
    const int b = 1 << log2, T = b / 16;
    launch_k(k_swiglu_rot, dim3((unsigned)(hid / b), (unsigned)n), T, T > 32 ? (size_t)b * 4 : 0, s, h32, h16, g, u,
             ld, hid, log2, rot32, rot16);
}

void swiglu(float *h32, __half *h16, const float *g, const float *u, int ld, int n, int hid,
            cudaStream_t s) {
    const int64_t count = (int64_t)n * hid;
    launch_k(k_swiglu, grid_for(count, 256), 256, 0, s, h32, h16, g, u, ld, hid, count);
}

} /* namespace opc_cudafwd */

extern "C" opc_status opc_cuda_rotate(const float *x, float *y, int64_t n, int64_t cols, int32_t rot_log2,
                                      int inverse, opc_cuda_stream stream) {
    if (!x || !y) return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_rotate: NULL vector");
    if (rot_log2 < 1 || rot_log2 > opc_cudafwd::kRotMaxLog2 || cols <= 0 || cols > INT_MAX ||
        cols % ((int64_t)1 << rot_log2) != 0 || n < 1 || n > 65535)
        return opc_error(OPC_ERR_INVALID_ARG, "opc_cuda_rotate: %lld x %lld vectors, block 2^%d", (long long)n,
                         (long long)cols, rot_log2);
    cudaError_t e = opc_cudafwd::rotate_prepare(rot_log2);
    if (e == cudaSuccess) {
        opc_cudafwd::rotate(x, y, NULL, (int)n, (int)cols, rot_log2, inverse, stream);
        e = cudaGetLastError();
    }
    return e == cudaSuccess ? OPC_OK
                            : opc_error(OPC_ERR_CUDA, "opc_cuda_rotate: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
}
