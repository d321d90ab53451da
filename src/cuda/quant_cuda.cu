/*
 * quant_cuda.cu — the codebook quantizer on the GPU (see quant_cuda.h).
 *
 * The passes are those of opc_quantize_matrix (src/quant/quantize.c):
 *   0. rotate every row in place (k_rotate; bit-identical to opc_cb_rotate);
 *   1. fit every row on all its weights (k_fit_rows): group scales from the
 *      group magnitudes, then alternately the exact weighted k-means codebook
 *      and the per-group scale search; fp16 codebook; packed indices; each
 *      weight's outlier score;
 *   2. the tensor's n_out largest scores (k_hist: a three-pass radix select
 *      on the float bits, scores being >= 0) become outliers, ties in
 *      row-major order (k_row_counts, host prefix sum, k_compact);
 *   3. refit the rows that lost weights with those columns masked, store the
 *      outliers as fp16 deltas (k_fit_rows again);
 *   4. with a Hessian, GPTQ error feedback, refit and feedback again
 *      (k_gptq_*: see that section);
 *   5. weighted error of what is stored (k_row_err).
 *
 * The exact k-means per row: the non-masked values x = w / s sorted with
 * their column as tie-break (the CPU's merge sort is stable). Without group
 * scales x = w in both fits, so the whole tensor is sorted once, before pass
 * 1 (CUB segmented radix sort of 32-bit order-preserving keys, stable) and
 * the refit drops its outlier columns from that order; with group scales a
 * row sorts its 64-bit (key, column) pairs in shared memory every round
 * (bitonic). Then, as kmeans.c's prepare, the weighted mean and the prefix
 * sums of w, w x, w x^2 (double) of the shifted values, each summed in the
 * CPU's order (one warp per running sum), so every double of the DP is the
 * CPU's. The dynamic program dp[j][i] = min_s dp[j-1][s] + cost(s, i) has a
 * monotone argmin, so each layer is solved by the CPU's divide and conquer,
 * but breadth first: the nodes of one recursion level are independent (a
 * node [lo, hi] takes its argmin bounds from arg[lo-1] and arg[hi+1], both
 * fixed by earlier levels) and the tree's shape is fixed, so level L is
 * 2^L implicit node slots spread over the block (dp_layer: small nodes by
 * one thread or a team, long ones in balanced chunks). The last layer only
 * needs i = n: the CPU's right spine, one block-wide scan per node. Same
 * ranges, same operations, same tie rule (least value, then least s): the
 * codebooks are the CPU's bit for bit.
 *
 * Measured (bench_cuda_quant --profile, H200): the DP is most of the time;
 * it is bound by the latency of its global loads, not by arithmetic.
 *
 * Compiled with -fmad=false (CMakeLists.txt): the per-weight float
 * arithmetic then rounds exactly like the CPU reference.
 */
#include "quant_cuda.h"

#include <cuda_runtime.h>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NT 256       /* threads per row block: 8 warps, several blocks per SM */
#define NW (NT / 32)
#define MAXK 16
#define MAXG (OPC_CUDA_QUANT_MAX_COLS / OPC_CB_GROUP)
#define FP16_MAX_F 65504.0f
/* DP: candidates per thread of a team before its node counts as long; long
 * nodes are handled DEF_CAP at a time in chunks of DEF_CH candidates. A
 * level's candidate ranges overlap only at their ends, so they add up to at
 * most 2 (n + 1): DEF_ITEMS(n + 1) chunks bound one batch. */
#define DP_LIM 16
#define DEF_CAP NT
#define DEF_CH 8
#define SCAN_U 8
#define DEF_ITEMS(n1) (2 * (n1) / DEF_CH + 2 * DEF_CAP)

/* ---------------------------------------------------------- helpers ---- */

static opc_status cuda_err(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "cuda quantize: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}
#define CU(call, what)                                      \
    do {                                                    \
        cudaError_t e_ = (call);                            \
        if (e_ != cudaSuccess) {                            \
            st = cuda_err(e_, what);                        \
            goto done;                                      \
        }                                                   \
    } while (0)

/* opc_cb_scale's mantissas (cb.h) */
__constant__ float c_mant[16] = {
    0x1.000000p+0f, 0x1.ea4afap-1f, 0x1.d5818ep-1f, 0x1.c199bep-1f, 0x1.ae89fap-1f, 0x1.9c4918p-1f,
    0x1.8ace54p-1f, 0x1.7a1148p-1f, 0x1.6a09e6p-1f, 0x1.5ab07ep-1f, 0x1.4bfdaep-1f, 0x1.3dea64p-1f,
    0x1.306fe0p-1f, 0x1.2387a6p-1f, 0x1.172b84p-1f, 0x1.0b5586p-1f,
};

__device__ __forceinline__ float d_scale(uint8_t q) {
    return c_mant[q & 15] * __uint_as_float((uint32_t)(127 - (q >> 4)) << 23);
}

/* opc_fp32_to_fp16 / opc_fp16_to_fp32 (src/core/half.h), same integer logic */
__device__ uint16_t d_f2h(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        float v = __uint_as_float(ax) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float r = v - (float)m;
        if (r > 0.5f || (r == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t h = (((ax >> 23) - 112) << 10) | ((ax >> 13) & 0x3ffu), rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

__device__ float d_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return __uint_as_float(sign);
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
}

/* opc_kmeans_nearest: sorted table, ties to the lower index */
__device__ __forceinline__ int d_nearest(const float *t, int k, float v) {
    int best = 0;
    float bd = (v - t[0]) * (v - t[0]);
    for (int j = 1; j < k; j++) {
        float d = (v - t[j]) * (v - t[j]);
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    return best;
}

/* x ordered as an unsigned integer (-0 folded onto +0: the CPU's `<` sees them equal) */
__device__ __forceinline__ uint32_t d_order(float x) {
    uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return __shfl_sync(0xffffffffu, v, 0); /* lane 0's sum, identical in every lane */
}

/* Sum over the block (deterministic order), the same value in every thread. */
__device__ double block_sum(double v) {
    __shared__ double red[NW + 1];
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int i = 0; i < NW; i++) s += red[i];
        red[NW] = s;
    }
    __syncthreads();
    double r = red[NW];
    __syncthreads();
    return r;
}

__device__ int block_sum_int(int v) {
    __shared__ int red[NW + 1];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        int s = 0;
        for (int i = 0; i < NW; i++) s += red[i];
        red[NW] = s;
    }
    __syncthreads();
    int r = red[NW];
    __syncthreads();
    return r;
}

__device__ void block_minmax(float *lo, float *hi) {
    __shared__ float rl[NW], rh[NW];
    float l = *lo, h = *hi;
    for (int o = 16; o > 0; o >>= 1) {
        l = fminf(l, __shfl_down_sync(0xffffffffu, l, o));
        h = fmaxf(h, __shfl_down_sync(0xffffffffu, h, o));
    }
    if ((threadIdx.x & 31) == 0) rl[threadIdx.x >> 5] = l, rh[threadIdx.x >> 5] = h;
    __syncthreads();
    l = rl[0], h = rh[0];
    for (int i = 1; i < NW; i++) l = fminf(l, rl[i]), h = fmaxf(h, rh[i]);
    __syncthreads();
    *lo = l, *hi = h;
}

/* Exclusive prefix sum over the block's threads in thread order. */
__device__ int block_excl_scan_int(int v) {
    __shared__ int wtot[NW];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int inc = v;
    for (int o = 1; o < 32; o <<= 1) {
        int t = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += t;
    }
    if (lane == 31) wtot[warp] = inc;
    __syncthreads();
    int before = 0;
    for (int i = 0; i < warp; i++) before += wtot[i];
    __syncthreads();
    return before + inc - v;
}

/* Ascending bitonic sort of keys[0..P), P a power of two, in shared memory. */
__device__ void bitonic_sort(uint64_t *keys, int P) {
    for (int k2 = 2; k2 <= P; k2 <<= 1) {
        for (int j = k2 >> 1; j > 0; j >>= 1) {
            for (int t = threadIdx.x; t < P / 2; t += NT) {
                int i = 2 * t - (t & (j - 1)); /* the lower element of pair t at distance j */
                int l = i + j;
                uint64_t a = keys[i], b = keys[l];
                bool up = (i & k2) == 0;
                if ((a > b) == up) {
                    keys[i] = b;
                    keys[l] = a;
                }
            }
            __syncthreads();
        }
    }
}

/* ---------------------------------------------------------- one row ---- */

typedef struct fit_args {
    const float *W;   /* (rows, cols) in the quantized (rotated) basis */
    const float *imp; /* (cols) normalised importance */
    int64_t rows, cols;
    int32_t ng, k, bits, method, rounds, P;
    uint64_t rb;
    uint16_t *cb16; /* (rows, k) */
    uint8_t *idx;   /* (rows, rb) */
    uint8_t *gs;    /* (rows, ng) or NULL */
    float *err;     /* pass 1: (rows, cols) outlier scores, or NULL */
    int64_t tiny;
    const uint16_t *order;     /* (rows, cols) each row's columns sorted by (w, column), or NULL */
    int64_t row0, row1;        /* the rows this launch fits */
    const uint32_t *ol_rowptr; /* pass 3: (rows + 1); NULL in pass 1 */
    const uint16_t *ol_col;
    uint16_t *ol_val;
    char *scratch; /* gridDim.x slices of scratch_stride bytes */
    uint64_t scratch_stride;
    unsigned long long *cyc; /* profiling: (8) SM cycles per phase (opc_cuda_quant_profile_take); NULL: off */
} fit_args;

/* One block's global scratch for the k-means of a row of n <= cols values. */
typedef struct blk_scratch {
    float *xs, *wv;              /* (cols) sorted values (unshifted), their weights */
    double *pw, *px, *pxx;       /* (cols + 1) prefix sums */
    double *dp0, *dp1;           /* (cols + 1) DP rows */
    int32_t *arg;                /* (k, cols + 1) argmins per layer */
    int32_t *dl;                 /* (cols + 1) a level's nodes with long ranges */
    double *dv;                  /* (chunk cap) minimum of each chunk of the long nodes */
    int32_t *di;                 /* (chunk cap) its argmin */
} blk_scratch;

static __host__ __device__ uint64_t align256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

static __host__ __device__ uint64_t scratch_bytes(int64_t cols, int32_t k) {
    uint64_t n1 = (uint64_t)cols + 1;
    return 2 * align256(4 * (uint64_t)cols) + 5 * align256(8 * n1) + align256(4 * n1 * (uint64_t)k) +
           align256(4 * (n1 + 1)) + align256(8 * DEF_ITEMS(n1)) + align256(4 * DEF_ITEMS(n1));
}

__device__ blk_scratch scratch_slice(const fit_args &A) {
    char *p = A.scratch + (uint64_t)blockIdx.x * A.scratch_stride;
    uint64_t n1 = (uint64_t)A.cols + 1;
    blk_scratch S;
    S.xs = (float *)p, p += align256(4 * (uint64_t)A.cols);
    S.wv = (float *)p, p += align256(4 * (uint64_t)A.cols);
    S.pw = (double *)p, p += align256(8 * n1);
    S.px = (double *)p, p += align256(8 * n1);
    S.pxx = (double *)p, p += align256(8 * n1);
    S.dp0 = (double *)p, p += align256(8 * n1);
    S.dp1 = (double *)p, p += align256(8 * n1);
    S.arg = (int32_t *)p, p += align256(4 * n1 * (uint64_t)A.k);
    S.dl = (int32_t *)p, p += align256(4 * (n1 + 1));
    S.dv = (double *)p, p += align256(8 * DEF_ITEMS(n1));
    S.di = (int32_t *)p;
    return S;
}

/* min over s of prev[s] + cost(s, i) for this thread's candidates s = s0 + r,
 * s0 + r + T, ... <= s1 (r the thread's rank in its team of T); the first
 * (smallest) s on ties, as the CPU's strict `<` in increasing s. b = INT_MAX
 * when no candidate is finite. The cost is opc_kmeans_1d_optimal's, the same
 * double operations. */
__device__ __forceinline__ void scan_part(const blk_scratch &S, const double *prev, int i, int s0, int s1, int r,
                                          int T, double *best, int *b) {
    const double pm = S.pw[i], xm = S.px[i], qm = S.pxx[i];
    double bv = INFINITY;
    int bi = INT_MAX;
    /* SCAN_U candidates per step, their 4 * SCAN_U loads issued together:
     * the scan is bound by load latency, not arithmetic */
    for (int s = s0 + r; s <= s1; s += SCAN_U * T) {
#pragma unroll
        for (int u = 0; u < SCAN_U; u++) {
            const int ss = s + u * T;
            if (ss <= s1) {
                double sw = pm - S.pw[ss], sx = xm - S.px[ss];
                double cost = qm - S.pxx[ss] - (sw > 0.0 ? sx * sx / sw : 0.0);
                double v = prev[ss] + (cost > 0.0 ? cost : 0.0);
                if (v < bv) { /* increasing s: the first on ties */
                    bv = v;
                    bi = ss;
                }
            }
        }
    }
    *best = bv;
    *b = bi;
}

/* (best, b) = the smaller value, the smaller s on equal values: associative
 * and commutative, so any reduction order gives the CPU's scan result. */
__device__ __forceinline__ void min_pair(double *best, int *b, double ob, int os) {
    if (ob < *best || (ob == *best && os < *b)) {
        *best = ob;
        *b = os;
    }
}

/* Reduce (best, b) over teams of T consecutive threads (T a power of two
 * <= NT); the team's first thread gets the result. Every thread of the
 * block calls it (shuffles over full warps; T > 32 uses shared memory). */
__device__ __forceinline__ void team_min(double *best, int *b, int T) {
    __shared__ double s_v[NW];
    __shared__ int s_i[NW];
    const int w = T < 32 ? T : 32;
    for (int o = w / 2; o > 0; o >>= 1) {
        double ob = __shfl_down_sync(0xffffffffu, *best, o, w);
        int os = __shfl_down_sync(0xffffffffu, *b, o, w);
        min_pair(best, b, ob, os);
    }
    if (T > 32) {
        const int warp = threadIdx.x >> 5;
        if ((threadIdx.x & 31) == 0) s_v[warp] = *best, s_i[warp] = *b;
        __syncthreads();
        if ((threadIdx.x & (T - 1)) == 0)
            for (int q = 1; q < T / 32; q++) min_pair(best, b, s_v[warp + q], s_i[warp + q]);
        __syncthreads();
    }
}

/* Node `slot` of recursion level L of the divide and conquer over [j, n]:
 * the path from the root is slot's L low bits, highest first (1 = right
 * half). *lo > *hi when that node is empty. No memory: the tree's shape does
 * not depend on the argmins, only its nodes' candidate ranges do. */
__device__ __forceinline__ void dp_node(int j, int n, int L, int slot, int *lo, int *hi) {
    int a = j, b = n;
    for (int bit = L - 1; bit >= 0 && a <= b; bit--) {
        int mid = a + (b - a) / 2;
        if ((slot >> bit) & 1)
            a = mid + 1;
        else
            b = mid - 1;
    }
    *lo = a, *hi = b;
}

/* DP layer j for every i in [j, n]: cur[i] and arg[i], breadth-first divide
 * and conquer (see the file comment): level L's nodes take their candidate
 * range from arg[lo - 1] and arg[hi + 1], fixed at earlier levels. The
 * candidates of a level add up to about n + nodes, but unevenly: where the
 * argmin jumps (a heavy tail entering the prefix) one node can own most of
 * them. So a level's 2^L node slots are first spread over the block in teams
 * of T = NT / 2^L threads (a power of two; 1 from level log2(NT) on), a team
 * keeping only a node of at most T * DP_LIM candidates; the longer ones are
 * then cut into chunks of DEF_CH candidates dealt round the whole block.
 * Every level thus costs about (n + nodes) / NT evaluations per thread plus
 * a few global round trips (measured: bench_cuda_quant --profile splits the
 * DP time into these phases). On the synthetic 8B rows one node of each
 * level holds about half the row's candidates (the argmin jumps once the
 * prefix takes in the upper tail). */
__device__ void dp_layer(const blk_scratch &S, int j, int n, const double *prev, double *cur, int32_t *arg,
                         unsigned long long *cyc) {
    __shared__ int s_ndef;
    __syncthreads(); /* the previous layer's last read of s_ndef comes before this write */
    for (int i = threadIdx.x; i < j; i += NT) cur[i] = INFINITY; /* fewer points than clusters */
    if (threadIdx.x == 0) s_ndef = 0;
    __syncthreads();
    for (int L = 0, size = n - j + 1; size > 0; L++, size /= 2) { /* size: the level's largest node */
        const int cnt = 1 << (L < 30 ? L : 30);
        int T = NT;
        while (T > 1 && T * cnt > NT) T >>= 1;
        const int teams = NT / T, team = threadIdx.x / T, r = threadIdx.x & (T - 1);
        long long t0 = cyc && threadIdx.x == 0 ? clock64() : 0;
        for (int base = 0; base < cnt; base += teams) { /* block-uniform trip count */
            const int slot = base + team;
            double best = INFINITY;
            int b = INT_MAX, lo = 0, hi = -1, mid = 0, optlo = 0, big = 0;
            if (slot < cnt) dp_node(j, n, L, slot, &lo, &hi);
            if (lo <= hi) {
                mid = lo + (hi - lo) / 2;
                optlo = lo == j ? j - 1 : arg[lo - 1];
                int opthi = hi == n ? n - 1 : arg[hi + 1];
                int smax = opthi < mid - 1 ? opthi : mid - 1;
                big = smax - optlo >= T * DP_LIM; /* the same in the whole team */
                if (!big) scan_part(S, prev, mid, optlo, smax, r, T, &best, &b);
            }
            if (T > 1) team_min(&best, &b, T);
            if (r == 0 && lo <= hi) {
                if (big) {
                    S.dl[atomicAdd(&s_ndef, 1)] = slot;
                } else {
                    cur[mid] = best;
                    arg[mid] = b == INT_MAX ? optlo : b;
                }
            }
        }
        __syncthreads();
        if (cyc && threadIdx.x == 0) {
            long long t = clock64();
            atomicAdd(&cyc[T > 1 ? 4 : 5], (unsigned long long)(t - t0));
            t0 = t;
        }
        const int ndef = s_ndef;
        __syncthreads(); /* every thread has read s_ndef before the next level adds to it */
        /* The long nodes, DEF_CAP at a time: cut into chunks of DEF_CH
         * candidates, the chunks dealt round the block (one thread each), the
         * chunks' minima combined per node by two atomic passes: the least
         * value (a double >= 0 orders like its bits), then the least s among
         * the chunks that reached it, which is the CPU's scan result. */
        for (int d0 = 0; d0 < ndef; d0 += DEF_CAP) { /* block-uniform */
            __shared__ int d_mid[DEF_CAP], d_optlo[DEF_CAP], d_smax[DEF_CAP], d_off[DEF_CAP + 1], d_idx[DEF_CAP];
            __shared__ unsigned long long d_val[DEF_CAP];
            const int nd = ndef - d0 < DEF_CAP ? ndef - d0 : DEF_CAP;
            int nch = 0;
            if (threadIdx.x < nd) {
                const int q = threadIdx.x;
                int lo, hi;
                dp_node(j, n, L, S.dl[d0 + q], &lo, &hi);
                const int mid = lo + (hi - lo) / 2;
                const int optlo = lo == j ? j - 1 : arg[lo - 1];
                const int opthi = hi == n ? n - 1 : arg[hi + 1];
                const int smax = opthi < mid - 1 ? opthi : mid - 1;
                d_mid[q] = mid, d_optlo[q] = optlo, d_smax[q] = smax;
                d_val[q] = (unsigned long long)__double_as_longlong(INFINITY);
                d_idx[q] = INT_MAX;
                nch = (smax - optlo + DEF_CH) / DEF_CH; /* >= 1: a long node has candidates */
            }
            const int off = block_excl_scan_int(nch); /* synchronises */
            if (threadIdx.x == nd - 1) d_off[nd] = off + nch;
            if (threadIdx.x < nd) d_off[threadIdx.x] = off;
            __syncthreads();
            const int total = d_off[nd];
            double *iv = S.dv;
            int32_t *ib = S.di;
            for (int pass = 0; pass < 2; pass++) {
                for (int x = threadIdx.x; x < total; x += NT) {
                    int a = 0, z = nd - 1; /* the node: the last q with d_off[q] <= x */
                    while (a < z) {
                        int m = (a + z + 1) / 2;
                        if (d_off[m] <= x)
                            a = m;
                        else
                            z = m - 1;
                    }
                    const int q = a;
                    if (pass == 0) {
                        const int s0 = d_optlo[q] + (x - d_off[q]) * DEF_CH;
                        const int s1 = s0 + DEF_CH - 1 < d_smax[q] ? s0 + DEF_CH - 1 : d_smax[q];
                        double best;
                        int b;
                        scan_part(S, prev, d_mid[q], s0, s1, 0, 1, &best, &b);
                        iv[x] = best, ib[x] = b;
                        if (b != INT_MAX) atomicMin(&d_val[q], (unsigned long long)__double_as_longlong(best));
                    } else if (ib[x] != INT_MAX && (unsigned long long)__double_as_longlong(iv[x]) == d_val[q]) {
                        atomicMin(&d_idx[q], ib[x]);
                    }
                }
                __syncthreads();
            }
            if (threadIdx.x < nd) {
                const int q = threadIdx.x, b = d_idx[q];
                cur[d_mid[q]] = b == INT_MAX ? INFINITY : __longlong_as_double((long long)d_val[q]);
                arg[d_mid[q]] = b == INT_MAX ? d_optlo[q] : b;
            }
            __syncthreads();
        }
        if (ndef > 0) {
            if (threadIdx.x == 0) s_ndef = 0;
            __syncthreads();
        }
        if (cyc && threadIdx.x == 0) atomicAdd(&cyc[6], (unsigned long long)(clock64() - t0));
    }
}

/* fit_codebook (quantize.c) for one row: the codebook for fixed group scales
 * gs (NULL: none) on the non-masked weights, fp16-rounded and sorted, into
 * s_cbf (shared, k floats). ord: the row's columns sorted by (w, column)
 * (A.order, no group scales) or NULL: then sorted here in keys (shared, P). */
__device__ void fit_codebook(const fit_args &A, const blk_scratch &S, const float *w, const uint8_t *mask,
                             const uint8_t *gs, const uint16_t *ord, uint64_t *keys, float *s_cbf) {
    __shared__ float s_cent[MAXK];
    __shared__ double s_mu;
    const int64_t cols = A.cols;
    const int k = A.k, P = A.P;
    long long t0 = A.cyc && threadIdx.x == 0 ? clock64() : 0;
    int cnt = 0, anypos = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int c = threadIdx.x; c < P; c += NT) {
        uint64_t key = ~0ull; /* masked and padding sort last */
        if (c < cols && !(mask && mask[c])) {
            float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
            float x = w[c] / s;
            float wt = A.imp[c] * s * s;
            cnt++;
            anypos |= wt > 0.0f;
            lo = fminf(lo, x);
            hi = fmaxf(hi, x);
            key = ((uint64_t)d_order(x) << 32) | (uint32_t)c;
        }
        if (!ord && A.method != OPC_QUANT_RTN) keys[c] = key;
    }
    const int n = block_sum_int(cnt);
    const int unit = block_sum_int(anypos) == 0; /* all weights underflowed: plain weights (as the CPU) */

    if (n == 0) {
        if (threadIdx.x < k) s_cent[threadIdx.x] = 0.0f;
    } else if (A.method == OPC_QUANT_RTN) {
        block_minmax(&lo, &hi);
        if (threadIdx.x < k)
            s_cent[threadIdx.x] = k == 1 ? 0.5f * (lo + hi) : lo + (hi - lo) * (float)threadIdx.x / (float)(k - 1);
    } else {
        if (!ord) {
            __syncthreads();
            bitonic_sort(keys, P);
        }
        /* the sorted values and weights, masked columns left out: each thread
         * a contiguous chunk of the sorted list, then the chunk offsets */
        const int m = ord ? (int)cols : n; /* list length before masking */
        const int C = (m + NT - 1) / NT;
        const int i0 = threadIdx.x * C < m ? threadIdx.x * C : m, i1 = i0 + C < m ? i0 + C : m;
        int kept = 0;
        if (mask && ord)
            for (int i = i0; i < i1; i++) kept += !mask[ord[i]];
        else
            kept = i1 - i0;
        int off = block_excl_scan_int(kept);
        for (int i = i0; i < i1; i++) {
            int c = ord ? (int)ord[i] : (int)(uint32_t)keys[i];
            if (ord && mask && mask[c]) continue;
            float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
            S.xs[off] = w[c] / s;
            S.wv[off] = unit ? 1.0f : A.imp[c] * s * s;
            off++;
        }
        __syncthreads();
        if (A.cyc && threadIdx.x == 0) {
            long long t = clock64();
            atomicAdd(&A.cyc[0], (unsigned long long)(t - t0));
            t0 = t;
        }
        /* The weighted mean and the prefix sums of the shifted values in the
         * CPU's order (kmeans.c prepare: one running sum each), so that every
         * double below is the CPU's, bit for bit. One warp per running sum
         * (sw, sx; then pw, px, pxx: the chains are independent): it loads 32
         * values at a time, and every lane adds all 32 in order (shuffled from
         * their lanes), so every lane holds the running sum and lane t stores
         * the one after value t (coalesced). */
        __shared__ double s_sum[2];
        const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        if (warp < 2) { /* warp 0: sw, warp 1: sx */
            double acc = 0.0;
            for (int i0 = 0; i0 < n; i0 += 32) {
                const int i = i0 + lane, mlen = n - i0 < 32 ? n - i0 : 32;
                const float xv = i < n ? S.xs[i] : 0.0f, wt = i < n ? S.wv[i] : 0.0f;
                for (int t0 = 0; t0 < mlen; t0 += 8) { /* 16 shuffles in flight, then the adds */
                    float xt[8], wtt[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        xt[u] = __shfl_sync(0xffffffffu, xv, (t0 + u) & 31);
                        wtt[u] = __shfl_sync(0xffffffffu, wt, (t0 + u) & 31);
                    }
#pragma unroll
                    for (int u = 0; u < 8; u++)
                        if (t0 + u < mlen) {
                            double wi = wtt[u] > 0.0f ? (double)wtt[u] : 0.0;
                            acc += warp == 0 ? wi : wi * (double)xt[u];
                        }
                }
            }
            if (lane == 0) s_sum[warp] = acc;
        }
        __syncthreads();
        if (warp < 3) { /* warp 0: pw, warp 1: px, warp 2: pxx */
            const double sw = s_sum[0], sx = s_sum[1];
            const double mu = sw > 0.0 ? sx / sw : 0.0;
            double *out = warp == 0 ? S.pw : warp == 1 ? S.px : S.pxx;
            double acc = 0.0;
            for (int i0 = 0; i0 < n; i0 += 32) {
                const int i = i0 + lane, mlen = n - i0 < 32 ? n - i0 : 32;
                const float xv = i < n ? S.xs[i] : 0.0f, wt = i < n ? S.wv[i] : 0.0f;
                double mine = 0.0;
                for (int t0 = 0; t0 < mlen; t0 += 8) {
                    float xt[8], wtt[8];
#pragma unroll
                    for (int u = 0; u < 8; u++) {
                        xt[u] = __shfl_sync(0xffffffffu, xv, (t0 + u) & 31);
                        wtt[u] = __shfl_sync(0xffffffffu, wt, (t0 + u) & 31);
                    }
#pragma unroll
                    for (int u = 0; u < 8; u++)
                        if (t0 + u < mlen) {
                            float xsf = (float)((double)xt[u] - mu);
                            double wi = wtt[u] > 0.0f ? (double)wtt[u] : 0.0, xi = (double)xsf;
                            acc += warp == 0 ? wi : warp == 1 ? wi * xi : wi * xi * xi;
                            if (lane == t0 + u) mine = acc;
                        }
                }
                if (i < n) out[i + 1] = mine;
            }
            if (lane == 0) {
                out[0] = 0.0;
                if (warp == 0) s_mu = mu;
            }
        }
        __syncthreads();
        const double mu = s_mu;
        if (A.cyc && threadIdx.x == 0) {
            long long t = clock64();
            atomicAdd(&A.cyc[1], (unsigned long long)(t - t0));
            t0 = t;
        }
        if (!(S.pw[n] > 0.0)) { /* unreachable: some weight is > 0 */
            if (threadIdx.x < k) s_cent[threadIdx.x] = 0.0f;
        } else {
            const int kk = k > n ? n : k; /* more centers than points: the rest repeat */
            double *prev = S.dp0, *cur = S.dp1;
            for (int i = threadIdx.x; i <= n; i += NT) { /* one cluster: the run [0, i) */
                double pw = S.pw[i], px = S.px[i];
                double c = S.pxx[i] - (pw > 0.0 ? px * px / pw : 0.0);
                prev[i] = c > 0.0 ? c : 0.0;
            }
            __syncthreads();
            for (int j = 2; j < kk; j++) {
                dp_layer(S, j, n, prev, cur, S.arg + (size_t)(j - 1) * (size_t)(n + 1), A.cyc);
                double *t = prev;
                prev = cur;
                cur = t;
            }
            /* Last layer: only arg[n] is used. The CPU's divide and conquer
             * reaches n along the right spine (lo = mid + 1, optlo = the
             * previous argmin): the same scans here, each by the whole block,
             * so that rounding that bends the argmin's monotonicity bends it
             * alike. */
            __shared__ int s_last;
            const long long tsp = A.cyc && threadIdx.x == 0 ? clock64() : 0;
            if (kk >= 2) {
                int lo = kk, optlo = kk - 1; /* block-uniform */
                while (lo <= n) {
                    const int mid = lo + (n - lo) / 2, smax = n - 1 < mid - 1 ? n - 1 : mid - 1;
                    double best;
                    int b;
                    scan_part(S, prev, mid, optlo, smax, threadIdx.x, NT, &best, &b);
                    team_min(&best, &b, NT);
                    if (threadIdx.x == 0) s_last = b == INT_MAX ? optlo : b;
                    __syncthreads();
                    optlo = s_last;
                    __syncthreads();
                    lo = mid + 1;
                }
            }
            __syncthreads();
            if (A.cyc && threadIdx.x == 0) {
                atomicAdd(&A.cyc[2], (unsigned long long)(clock64() - t0));
                atomicAdd(&A.cyc[7], (unsigned long long)(clock64() - tsp));
            }
            if (threadIdx.x == 0) { /* backtrack the runs, last cluster first */
                int i = n;
                for (int j = kk; j >= 1; j--) {
                    int s = j == 1 ? 0 : j == kk ? s_last : S.arg[(size_t)(j - 1) * (size_t)(n + 1) + (size_t)i];
                    double pw = S.pw[i] - S.pw[s];
                    double c = pw > 0.0 ? (S.px[i] - S.px[s]) / pw : (double)(float)((double)S.xs[s] - mu);
                    s_cent[j - 1] = (float)(c + mu);
                    i = s;
                }
                for (int j = kk; j < k; j++) s_cent[j] = s_cent[kk - 1];
            }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) { /* finite, fp16, sorted (k <= 16: insertion sort) */
        float v[MAXK];
        for (int j = 0; j < k; j++) {
            float c = s_cent[j];
            if (!(c == c)) c = 0.0f;
            if (c > FP16_MAX_F) c = FP16_MAX_F;
            if (c < -FP16_MAX_F) c = -FP16_MAX_F;
            float h = d_h2f(d_f2h(c));
            int t = j;
            while (t > 0 && v[t - 1] > h) {
                v[t] = v[t - 1];
                t--;
            }
            v[t] = h;
        }
        for (int j = 0; j < k; j++) s_cbf[j] = v[j];
    }
    __syncthreads();
}

/* init_group_scales: q = round(-16 log2(mag / max mag)) per group, from the
 * importance-weighted mean |w| of its non-masked columns. One warp per group. */
__device__ void init_scales(const fit_args &A, const float *w, const uint8_t *mask, uint8_t *gs) {
    __shared__ double s_mag[MAXG];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int g = warp; g < A.ng; g += NW) {
        double num = 0.0, den = 0.0;
        for (int64_t c = (int64_t)g * OPC_CB_GROUP + lane; c < A.cols && c < (int64_t)(g + 1) * OPC_CB_GROUP; c += 32) {
            if (mask && mask[c]) continue;
            num += (double)A.imp[c] * fabs((double)w[c]);
            den += (double)A.imp[c];
        }
        num = warp_sum(num);
        den = warp_sum(den);
        if (lane == 0) s_mag[g] = den > 0.0 ? num / den : 0.0;
    }
    __syncthreads();
    double mmax = 0.0;
    for (int g = 0; g < A.ng; g++) mmax = s_mag[g] > mmax ? s_mag[g] : mmax;
    for (int g = threadIdx.x; g < A.ng; g += NT) {
        double m = s_mag[g];
        long q = 255;
        if (mmax <= 0.0)
            q = 0;
        else if (m > 0.0)
            q = lround(-16.0 * log2(m / mmax));
        gs[g] = (uint8_t)(q < 0 ? 0 : q > 255 ? 255 : q);
    }
    __syncthreads();
}

/* search_scales: per group (one warp), the q within +-window of the current
 * one with the least weighted error; ties keep the current q. Returns
 * whether any q changed (the same value in every thread). */
__device__ int search_scales(const fit_args &A, const float *w, const uint8_t *mask, const float *cbf, int window,
                             uint8_t *gs) {
    __shared__ int s_changed;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, k = A.k;
    if (threadIdx.x == 0) s_changed = 0;
    __syncthreads();
    for (int g = warp; g < A.ng; g += NW) {
        const int64_t c0 = (int64_t)g * OPC_CB_GROUP;
        const int64_t ca = c0 + lane, cb = c0 + lane + 32;
        const bool va = ca < A.cols && !(mask && mask[ca]), vb = cb < A.cols && !(mask && mask[cb]);
        const float wa = va ? w[ca] : 0.0f, wb = vb ? w[cb] : 0.0f;
        const float ia = va ? A.imp[ca] : 0.0f, ib = vb ? A.imp[cb] : 0.0f;
        const int cur = gs[g];
        int best = cur;
        double best_e = 0.0;
        for (int q = cur - window - 1; q <= cur + window; q++) {
            /* the first iteration scores the current q, the rest the window */
            const bool first = q == cur - window - 1;
            const int qq = first ? cur : q;
            if (!first && (qq < 0 || qq > 255 || qq == cur)) continue;
            float s = d_scale((uint8_t)qq), t[MAXK];
            for (int j = 0; j < k; j++) t[j] = s * cbf[j];
            double e = 0.0;
            if (va) {
                float d = wa - t[d_nearest(t, k, wa)];
                e += (double)ia * (double)d * (double)d;
            }
            if (vb) {
                float d = wb - t[d_nearest(t, k, wb)];
                e += (double)ib * (double)d * (double)d;
            }
            e = warp_sum(e); /* warp-uniform: every lane decides alike */
            if (first) {
                best_e = e;
                if (e == 0.0) break; /* nothing to improve */
            } else if (e < best_e) {
                best_e = e;
                best = qq;
            }
        }
        __syncwarp(); /* every lane has read gs[g] (cur) before lane 0 overwrites it */
        if (lane == 0 && best != cur) {
            gs[g] = (uint8_t)best;
            s_changed = 1;
        }
    }
    __syncthreads();
    int ch = s_changed;
    __syncthreads();
    return ch;
}

/* The scaled codebook of column c's group (gs NULL: the codebook itself). */
__device__ __forceinline__ void group_table(const uint8_t *gs, int64_t c, const float *cbf, int k, float *t) {
    if (!gs) {
        for (int j = 0; j < k; j++) t[j] = cbf[j];
    } else {
        float s = d_scale(gs[c / OPC_CB_GROUP]);
        for (int j = 0; j < k; j++) t[j] = s * cbf[j];
    }
}

/* Pass 1 (ol_rowptr NULL) fits every row on all its weights and scores its
 * outliers; pass 3 refits the rows with outliers, those columns masked, and
 * stores the deltas. One block per row, rows strided over the grid. */
__global__ void __launch_bounds__(NT) k_fit_rows(fit_args A) {
    extern __shared__ __align__(16) unsigned char smem[];
    const size_t nkey = A.order ? 0 : (size_t)A.P;                   /* sorted in here unless presorted */
    uint64_t *keys = (uint64_t *)smem;                               /* (nkey) sort keys */
    uint8_t *mask = smem + nkey * 8;                                 /* (cols) 1 = outlier column */
    uint8_t *gs_s = mask + (((size_t)A.cols + 15) & ~(size_t)15);    /* (ng) the row's group scales */
    __shared__ float s_cbf[MAXK];
    __shared__ int s_count[MAXK];
    const blk_scratch S = scratch_slice(A);
    const int k = A.k;
    for (int64_t r = A.row0 + blockIdx.x; r < A.row1; r += gridDim.x) {
        const long long trow = A.cyc && threadIdx.x == 0 ? clock64() : 0;
        const float *w = A.W + (uint64_t)r * (uint64_t)A.cols;
        const uint8_t *mk = NULL;
        uint32_t oa = 0, ob = 0;
        if (A.ol_rowptr) {
            oa = A.ol_rowptr[r], ob = A.ol_rowptr[r + 1];
            if (oa == ob) continue; /* block-uniform: keeps its pass-1 fit */
            for (int64_t c = threadIdx.x; c < A.cols; c += NT) mask[c] = 0;
            __syncthreads();
            for (uint32_t i = oa + threadIdx.x; i < ob; i += NT) mask[A.ol_col[i]] = 1;
            __syncthreads();
            mk = mask;
        }
        uint8_t *gs = A.gs ? gs_s : NULL;
        if (gs) init_scales(A, w, mk, gs);
        const int rounds = gs ? A.rounds : 1;
        for (int it = 0; it < rounds; it++) {
            fit_codebook(A, S, w, mk, gs, A.order ? A.order + (uint64_t)r * (uint64_t)A.cols : NULL, keys, s_cbf);
            /* +-8 steps = a factor 2^(+-1/2) per round (quantize.c) */
            if (gs && !search_scales(A, w, mk, s_cbf, 8, gs)) break;
        }
        /* store: codebook, group scales, packed indices (one thread per byte) */
        if (threadIdx.x < k) A.cb16[(uint64_t)r * (uint64_t)k + threadIdx.x] = d_f2h(s_cbf[threadIdx.x]);
        if (gs)
            for (int g = threadIdx.x; g < A.ng; g += NT) A.gs[(uint64_t)r * (uint64_t)A.ng + (uint64_t)g] = gs[g];
        uint8_t *irow = A.idx + (uint64_t)r * A.rb;
        for (uint64_t b = threadIdx.x; b < A.rb; b += NT) {
            float t[MAXK];
            uint32_t v = 0;
            if (A.bits == 2) {
                int64_t g = (int64_t)(b / 16), i = (int64_t)(b % 16);
                group_table(gs, g * OPC_CB_GROUP, s_cbf, k, t);
                for (int jj = 0; jj < 4; jj++) {
                    int64_t c = g * OPC_CB_GROUP + 16 * jj + i;
                    if (c < A.cols) v |= (uint32_t)d_nearest(t, k, w[c]) << (2 * jj);
                }
            } else {
                int64_t g = (int64_t)(b / 32), i = (int64_t)(b % 32);
                group_table(gs, g * OPC_CB_GROUP, s_cbf, k, t);
                for (int jj = 0; jj < 2; jj++) {
                    int64_t c = g * OPC_CB_GROUP + 32 * jj + i;
                    if (c < A.cols) v |= (uint32_t)d_nearest(t, k, w[c]) << (4 * jj);
                }
            }
            irow[b] = (uint8_t)v;
        }
        if (A.err) {
            /* outlier scores, as quantize.c pass 1: the scaled error, or for
             * members of a tiny cluster the error without their entry */
            if (threadIdx.x < MAXK) s_count[threadIdx.x] = 0;
            __syncthreads();
            for (int64_t c = threadIdx.x; c < A.cols; c += NT) {
                float t[MAXK];
                group_table(gs, c, s_cbf, k, t);
                atomicAdd(&s_count[d_nearest(t, k, w[c])], 1);
            }
            __syncthreads();
            float *er = A.err + (uint64_t)r * (uint64_t)A.cols;
            for (int64_t c = threadIdx.x; c < A.cols; c += NT) {
                float t[MAXK];
                group_table(gs, c, s_cbf, k, t);
                int j = d_nearest(t, k, w[c]);
                float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
                float d = w[c] - s * s_cbf[j];
                float e = A.imp[c] * d * d;
                if (s_count[j] <= A.tiny && k > 1) {
                    float alt = INFINITY;
                    for (int o = 0; o < k; o++) {
                        float da = w[c] - s * s_cbf[o];
                        if (o != j && s_cbf[o] != s_cbf[j] && da * da < alt) alt = da * da;
                    }
                    if (alt < INFINITY) e = A.imp[c] * alt;
                }
                er[c] = e;
            }
        }
        if (A.ol_rowptr) /* deltas from the new nearest entry, unscaled (cb.h) */
            for (uint32_t i = oa + threadIdx.x; i < ob; i += NT) {
                int64_t c = A.ol_col[i];
                float t[MAXK];
                group_table(gs, c, s_cbf, k, t);
                float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
                float v = s * s_cbf[d_nearest(t, k, w[c])];
                A.ol_val[i] = d_f2h(w[c] - v);
            }
        __syncthreads(); /* shared state is reused by the next row */
        if (A.cyc && threadIdx.x == 0) atomicAdd(&A.cyc[3], (unsigned long long)(clock64() - trow));
    }
}

/* ---------------------------------------------------------- presort ---- */

/* Sort keys for the whole tensor: the order-preserving bits of each weight
 * (x = w / 1, as the CPU divides by a unit scale) and its column. */
__global__ void k_sort_keys(const float *W, uint64_t nel, int64_t cols, uint32_t *key, uint16_t *col) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nel; i += (uint64_t)gridDim.x * blockDim.x) {
        key[i] = d_order(W[i]);
        col[i] = (uint16_t)(i % (uint64_t)cols);
    }
}

/* Segment r of a chunk starts at r * cols. */
__global__ void k_seg_offsets(int *off, int64_t rows, int64_t cols) {
    int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r <= rows) off[r] = (int)(r * cols);
}

/* ---------------------------------------------------------- rotation --- */

/* opc_cb_rotate on every row, in place: the same butterflies in the same
 * pairing, so the same floats. One block per row, the row in shared memory. */
__global__ void __launch_bounds__(NT) k_rotate(float *W, int64_t cols, int32_t rot_log2, float norm) {
    extern __shared__ __align__(16) unsigned char smem[];
    float *x = (float *)smem;
    float *row = W + (uint64_t)blockIdx.x * (uint64_t)cols;
    for (int64_t c = threadIdx.x; c < cols; c += NT) {
        const uint64_t z = opc_cb_rot_sign_word(c >> 6);
        float v = row[c];
        x[c] = ((z >> (c & 63)) & 1u) ? -v : v;
    }
    __syncthreads();
    const int64_t b = (int64_t)1 << rot_log2, half = b / 2;
    for (int64_t h = 1; h < b; h *= 2) {
        for (int64_t p = threadIdx.x; p < cols / 2; p += NT) {
            int64_t base = (p / half) * b, q = p % half;
            int64_t j = base + (q / h) * 2 * h + q % h;
            float a = x[j], d = x[j + h];
            x[j] = a + d;
            x[j + h] = a - d;
        }
        __syncthreads();
    }
    for (int64_t c = threadIdx.x; c < cols; c += NT) row[c] = x[c] * norm;
}

/* ---------------------------------------------------------- outliers --- */

/* Histogram of 11 (or 10) bits of the scores' float bits, among those whose
 * higher bits equal `prefix` under `pmask`. Scores are >= 0, so their bits
 * order like the floats. */
__global__ void k_hist(const float *err, uint64_t nel, int shift, uint32_t binmask, uint32_t pmask, uint32_t prefix,
                       uint32_t *hist) {
    __shared__ uint32_t h[2048];
    for (int i = threadIdx.x; i < 2048; i += blockDim.x) h[i] = 0;
    __syncthreads();
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nel; i += (uint64_t)gridDim.x * blockDim.x) {
        uint32_t u = __float_as_uint(err[i]);
        if ((u & pmask) == prefix) atomicAdd(&h[(u >> shift) & binmask], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 2048; i += blockDim.x)
        if (h[i]) atomicAdd(&hist[i], h[i]);
}

/* Per row (one warp each): scores above thr, and scores equal to a positive thr. */
__global__ void k_row_counts(const float *err, int64_t rows, int64_t cols, float thr, uint32_t *cnt /* (rows, 2) */) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const int lane = threadIdx.x & 31;
    uint32_t gt = 0, eq = 0;
    const float *er = err + (uint64_t)r * (uint64_t)cols;
    for (int64_t c = lane; c < cols; c += 32) {
        float e = er[c];
        gt += e > thr;
        eq += e == thr && e > 0.0f;
    }
    for (int o = 16; o > 0; o >>= 1) {
        gt += __shfl_down_sync(0xffffffffu, gt, o);
        eq += __shfl_down_sync(0xffffffffu, eq, o);
    }
    if (lane == 0) cnt[2 * r] = gt, cnt[2 * r + 1] = eq;
}

/* The outlier columns of each row, increasing (one warp per row): every
 * score above thr, and the first allow[r] scores equal to it. */
__global__ void k_compact(const float *err, int64_t rows, int64_t cols, float thr, const uint32_t *rowptr,
                          const uint32_t *allow, uint16_t *ol_col) {
    int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const int lane = threadIdx.x & 31;
    const unsigned lt = (1u << lane) - 1u;
    const float *er = err + (uint64_t)r * (uint64_t)cols;
    uint32_t o = rowptr[r], eq_seen = 0, eq_allow = allow[r];
    for (int64_t c0 = 0; c0 < cols; c0 += 32) {
        int64_t c = c0 + lane;
        float e = c < cols ? er[c] : 0.0f;
        bool iseq = c < cols && e == thr && e > 0.0f;
        unsigned beq = __ballot_sync(0xffffffffu, iseq);
        bool take = (c < cols && e > thr) || (iseq && eq_seen + __popc(beq & lt) < eq_allow);
        unsigned bt = __ballot_sync(0xffffffffu, take);
        if (take) ol_col[o + __popc(bt & lt)] = (uint16_t)c;
        o += __popc(bt);
        eq_seen += __popc(beq);
    }
}

/* ---------------------------------------------------------- error ------ */

/* Per row: sum imp (W - Q)^2 and sum imp W^2, Q dequantized exactly as
 * opc_cb_dequant_row_ref does. */
__global__ void __launch_bounds__(NT) k_row_err(const float *W, const float *imp, int64_t cols, int32_t k, int32_t bits,
                                                uint64_t rb, const uint8_t *idx, const uint16_t *cb16, const uint8_t *gsc,
                                                int32_t ng, const uint32_t *rowptr, const uint16_t *ol_col,
                                                const uint16_t *ol_val, double *num, double *den) {
    extern __shared__ __align__(16) unsigned char smem[];
    float *dq = (float *)smem; /* (cols) the dequantized row */
    __shared__ float tab[MAXK];
    const int64_t r = blockIdx.x;
    if (threadIdx.x < MAXK) tab[threadIdx.x] = threadIdx.x < k ? d_h2f(cb16[(uint64_t)r * (uint64_t)k + threadIdx.x]) : 0.0f;
    __syncthreads();
    const uint8_t *row = idx + (uint64_t)r * rb;
    const uint8_t *gs = gsc ? gsc + (uint64_t)r * (uint64_t)ng : NULL;
    for (int64_t c = threadIdx.x; c < cols; c += NT) {
        const uint8_t *g = row + (uint64_t)(c / OPC_CB_GROUP) * (bits == 2 ? 16u : 32u);
        int64_t j = c % OPC_CB_GROUP;
        uint32_t ix = bits == 2 ? (g[j % 16] >> (2 * (j / 16))) & 3u : (g[j % 32] >> (4 * (j / 32))) & 15u;
        float v = tab[ix];
        dq[c] = gs ? d_scale(gs[c / OPC_CB_GROUP]) * v : v;
    }
    __syncthreads();
    if (rowptr)
        for (uint32_t i = rowptr[r] + threadIdx.x; i < rowptr[r + 1]; i += NT) dq[ol_col[i]] += d_h2f(ol_val[i]);
    __syncthreads();
    const float *wr = W + (uint64_t)r * (uint64_t)cols;
    double a = 0.0, b = 0.0;
    for (int64_t c = threadIdx.x; c < cols; c += NT) {
        double d = (double)wr[c] - (double)dq[c];
        a += (double)imp[c] * d * d;
        b += (double)imp[c] * (double)wr[c] * (double)wr[c];
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) num[r] = a, den[r] = b;
}

/* ---------------------------------------------------------- GPTQ ------- */

/* Pass 4, with a Hessian (p->hessian): quantize.c's gptq_rows, then
 * gptq_refit_rows + gptq_solve, then gptq_rows again. Each row's double and
 * float operations are the CPU's, in the CPU's order (no FMA: -fmad=false),
 * so the result is the CPU's byte for byte; what runs in parallel is only
 * what the CPU keeps independent: the rows, the later columns' updates of
 * one column step (one subtraction each), the refit's right-hand sides. The
 * factor U is the CPU's (opc_quant_gptq_factor, cached per Hessian by
 * opc_quantize_model) uploaded: see quant_cuda.h for why. */

#define GQ_ROWS_MAX 16 /* rows per error-feedback block: U is read once per block */
#define GQ_PRE 8       /* U entries per thread loaded ahead in a column step: 2048 columns */

/* outlier mask (rows, cols) from the CSR columns; one block per row */
__global__ void k_gptq_mask(const uint32_t *rowptr, const uint16_t *ol_col, int64_t cols, uint8_t *mask) {
    const int64_t r = blockIdx.x;
    for (uint32_t i = rowptr[r] + threadIdx.x; i < rowptr[r + 1]; i += blockDim.x) mask[r * cols + ol_col[i]] = 1;
}

/* float codebooks (rows * k) from the fp16 ones: cbf_all of the CPU path */
__global__ void k_gptq_cbf(const uint16_t *cb16, float *cbf, uint64_t n) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        cbf[i] = d_h2f(cb16[i]);
}

/* gptq_rows for R rows per block. x (R, cols) doubles in shared memory; per
 * column c, thread r rounds row r's x[c] with its scaled codebook (ix, stored
 * out; outlier columns keep x[c]) and publishes e = (x[c] - q) / U[c][c];
 * then all threads apply x[i] -= e * U[c][i] for i > c (rows with e == 0
 * skipped, as the CPU does). Column steps are sequential: two barriers each,
 * the diagonal and the mask loaded one step ahead (they are on that path).
 * U (cols, cols); cbf (rows, k); gsc (rows, ng) or NULL; mask, ix (rows,
 * cols) bytes; stored (rows, cols). */
__global__ void __launch_bounds__(NT) k_gptq_round(const float *__restrict__ W, int64_t rows, int64_t cols,
                                                   const double *__restrict__ U, const float *__restrict__ cbf,
                                                   int32_t k, const uint8_t *__restrict__ gsc, int32_t ng,
                                                   const uint8_t *__restrict__ mask, int R, uint8_t *__restrict__ ix,
                                                   float *__restrict__ stored) {
    extern __shared__ __align__(16) unsigned char smem[];
    double *x = (double *)smem;        /* (R, cols) */
    double *e = x + (int64_t)R * cols; /* (R) this column's scaled errors */
    const int64_t r0 = (int64_t)blockIdx.x * R;
    const int nr = rows - r0 < R ? (int)(rows - r0) : R;
    for (int64_t i = threadIdx.x; i < (int64_t)nr * cols; i += NT) x[i] = (double)W[r0 * cols + i];
    const int me = threadIdx.x < nr; /* this thread rounds row r0 + threadIdx.x */
    const int64_t row = r0 + (me ? threadIdx.x : 0);
    float t[MAXK]; /* the row's codebook as scaled for column c's group */
    for (int j = 0; j < MAXK; j++) t[j] = 0.0f;
    double ud = me ? U[0] : 1.0;
    uint8_t mk = me ? mask[row * cols] : 0;
    __syncthreads();
    for (int64_t c = 0; c < cols; c++) {
        const double *u = U + c * cols;
        /* this step's U row, loaded before the rounding it does not depend
         * on: its latency hides behind the rounding's division */
        double pre[GQ_PRE];
#pragma unroll
        for (int q = 0; q < GQ_PRE; q++) {
            const int64_t i = c + 1 + threadIdx.x + (int64_t)q * NT;
            pre[q] = i < cols ? u[i] : 0.0;
        }
        if (me) {
            double ud_n = 1.0;
            uint8_t mk_n = 0;
            if (c + 1 < cols) {
                ud_n = U[(c + 1) * cols + c + 1];
                mk_n = mask[row * cols + c + 1];
            }
            if (c % OPC_CB_GROUP == 0) {
                const float *cb = cbf + row * k;
                const float s = gsc ? d_scale(gsc[row * ng + c / OPC_CB_GROUP]) : 1.0f;
                for (int j = 0; j < k; j++) t[j] = gsc ? s * cb[j] : cb[j];
            }
            const double xc = x[threadIdx.x * cols + c];
            const int j = d_nearest(t, k, (float)xc);
            ix[row * cols + c] = (uint8_t)j;
            const double q = mk ? xc : (double)t[j];
            stored[row * cols + c] = (float)q;
            e[threadIdx.x] = (xc - q) / ud;
            ud = ud_n;
            mk = mk_n;
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < GQ_PRE; q++) {
            const int64_t i = c + 1 + threadIdx.x + (int64_t)q * NT;
            if (i < cols)
                for (int r = 0; r < nr; r++) {
                    const double er = e[r];
                    if (er != 0.0) x[r * cols + i] -= er * pre[q];
                }
        }
        /* beyond GQ_PRE * NT columns: four per thread per round, their U
         * loads issued together */
        for (int64_t i0 = c + 1 + threadIdx.x + (int64_t)GQ_PRE * NT; i0 < cols; i0 += 4 * NT) {
            double uu[4];
#pragma unroll
            for (int q = 0; q < 4; q++) uu[q] = i0 + q * NT < cols ? u[i0 + q * NT] : 0.0;
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const int64_t i = i0 + q * NT;
                if (i < cols)
                    for (int r = 0; r < nr; r++) {
                        const double er = e[r];
                        if (er != 0.0) x[r * cols + i] -= er * uu[q];
                    }
            }
        }
        __syncthreads();
    }
}

/* The refit's per-weight inputs, column-major over rows (cols, rows) so the
 * per-row sums below read them coalesced: tw = w (outliers: w - stored, their
 * residual is fixed), tsc = the column's group scale, tix = the index or k + 1
 * for an outlier column. */
__global__ void k_gptq_prep(const float *W, const float *stored, const uint8_t *mask, const uint8_t *ix,
                            const uint8_t *gsc, int32_t ng, int64_t rows, int64_t cols, int32_t k, double *tw,
                            float *tsc, uint8_t *tix) {
    const uint64_t n = (uint64_t)rows * (uint64_t)cols;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        const int64_t r = (int64_t)(i / (uint64_t)cols), c = (int64_t)(i % (uint64_t)cols);
        const uint64_t o = (uint64_t)c * (uint64_t)rows + (uint64_t)r;
        const int m = mask[i];
        tw[o] = m ? (double)W[i] - (double)stored[i] : (double)W[i];
        tsc[o] = gsc ? d_scale(gsc[r * ng + c / OPC_CB_GROUP]) : 1.0f;
        tix[o] = m ? (uint8_t)(k + 1) : ix[i];
    }
}

/* rhs (cols, rows): rhs[a][r] = sum_b H[a][b] tw[b][r], b ascending from 0.0
 * (the CPU's order; only the tiling is new). A block: 32 rows (lanes) x 32
 * columns a (8 warps x 4), H and tw tiles of 32 b in shared memory. */
__global__ void __launch_bounds__(256) k_gptq_rhs(const float *__restrict__ H, const double *__restrict__ tw,
                                                  int64_t rows, int64_t cols, double *__restrict__ rhs) {
    __shared__ double ts[32][32];
    __shared__ float hs[32][33];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const int64_t r0 = (int64_t)blockIdx.x * 32, a0 = (int64_t)blockIdx.y * 32;
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    for (int64_t b0 = 0; b0 < cols; b0 += 32) {
        for (int i = threadIdx.x; i < 32 * 32; i += 256) {
            const int bb = i / 32, rr = i % 32, aa = i / 32;
            const int64_t b = b0 + bb, r = r0 + rr;
            ts[bb][rr] = b < cols && r < rows ? tw[b * rows + r] : 0.0;
            const int64_t a = a0 + aa, hb = b0 + rr; /* H tile: row aa, column rr */
            hs[aa][rr] = a < cols && hb < cols ? H[a * cols + hb] : 0.0f;
        }
        __syncthreads();
        const int nb = cols - b0 < 32 ? (int)(cols - b0) : 32; /* no padding terms: +0.0 is not a no-op on -0.0 */
        for (int bb = 0; bb < nb; bb++) {
            const double tv = ts[bb][lane];
#pragma unroll
            for (int q = 0; q < 4; q++) acc[q] += (double)hs[wid * 4 + q][bb] * tv;
        }
        __syncthreads();
    }
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int64_t a = a0 + wid * 4 + q, r = r0 + lane;
        if (a < cols && r < rows) rhs[a * rows + r] = acc[q];
    }
}

/* gptq_solve: the same elimination, the same fp16 rounding; an insertion sort
 * (stable) for qsort (equal values: only -0.0 / +0.0 could tell them apart). */
template <int KM>
__device__ void d_gptq_solve(double (&A)[KM][KM + 2], int k, float *cbf) {
    double tr = 0.0;
    for (int i = 0; i < k; i++) tr += A[i][i];
    for (int i = 0; i < k; i++) {
        if (A[i][i] == 0.0) {
            for (int j = 0; j <= k; j++) A[i][j] = 0.0;
            A[i][i] = 1.0;
            A[i][k] = cbf[i];
        } else {
            A[i][i] += 1e-9 * tr / k;
        }
    }
    for (int col = 0; col < k; col++) {
        int piv = col;
        for (int r = col + 1; r < k; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
        if (A[piv][col] == 0.0) return;
        if (piv != col)
            for (int j = 0; j <= k; j++) {
                double t = A[col][j];
                A[col][j] = A[piv][j];
                A[piv][j] = t;
            }
        for (int r = 0; r < k; r++) {
            if (r == col) continue;
            double f = A[r][col] / A[col][col];
            if (f != 0.0)
                for (int j = col; j <= k; j++) A[r][j] -= f * A[col][j];
        }
    }
    for (int i = 0; i < k; i++) /* as the CPU: all or nothing */
        if (!(fabs(A[i][k] / A[i][i]) <= FP16_MAX_F)) return;
    for (int i = 0; i < k; i++) cbf[i] = (float)(A[i][k] / A[i][i]);
    for (int i = 0; i < k; i++) cbf[i] = d_h2f(d_f2h(cbf[i]));
    for (int i = 1; i < k; i++) {
        const float v = cbf[i];
        int j = i - 1;
        while (j >= 0 && cbf[j] > v) {
            cbf[j + 1] = cbf[j];
            j--;
        }
        cbf[j + 1] = v;
    }
}

/* gptq_refit_rows' normal equations, one thread per (row, entry i): every
 * term of row i of a row's A comes from a column a with tix[a] == i, so the
 * thread walks only those columns, in ascending order, and each of its
 * accumulators (A[i][0..k), the right-hand side A[i][k], the diagonal term
 * D[i]) gets the CPU's terms in the CPU's (a, b) order. A warp is 32 rows with
 * one i; each lane finds its own next a, then the lanes run their b loops
 * together (similar lengths: a lane's n-th column is near n k). With sym (H
 * exactly symmetric) only b > a, mirrored in k_gptq_solve, as the CPU.
 * Aout (rows, k, k + 2): A[i][0..k] then D[i]. */
template <int KM>
__global__ void __launch_bounds__(128) k_gptq_acc(const float *__restrict__ H, int sym,
                                                  const double *__restrict__ rhs, const float *__restrict__ tsc,
                                                  const uint8_t *__restrict__ tix, int has_gs, int64_t rows,
                                                  int64_t cols, int32_t k, double *__restrict__ Aout) {
    const int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t grp = g / 32;
    const int i = (int)(grp % k);
    const int64_t r = (grp / k) * 32 + (g % 32);
    if (r >= rows) return; /* no barriers below */
    double acc[KM];
#pragma unroll
    for (int j = 0; j < KM; j++) acc[j] = 0.0;
    double dsum = 0.0, bsum = 0.0;
    int64_t a = -1;
    for (;;) {
        do a++;
        while (a < cols && tix[a * rows + r] != i);
        if (a >= cols) break;
        const double sa = (double)tsc[a * rows + r];
        const float *h = H + a * cols;
        if (sym) dsum += sa * (double)h[a] * sa;
        const int64_t b0 = sym ? a + 1 : 0;
        if (!has_gs) {
            for (int64_t b = b0; b < cols; b++) {
                const double hb = (double)h[b];
                const int ib = tix[b * rows + r];
#pragma unroll
                for (int j = 0; j < KM; j++)
                    if (ib == j) acc[j] += hb;
            }
        } else {
            for (int64_t b = b0; b < cols; b++) {
                const double hb = (double)h[b];
                const int ib = tix[b * rows + r];
                const double v = sa * hb * (double)tsc[b * rows + r];
#pragma unroll
                for (int j = 0; j < KM; j++)
                    if (ib == j) acc[j] += v;
            }
        }
        bsum += sa * rhs[a * rows + r];
    }
    double *o = Aout + ((uint64_t)r * (uint64_t)k + (uint64_t)i) * (uint64_t)(k + 2);
#pragma unroll
    for (int j = 0; j < KM; j++)
        if (j < k) o[j] = acc[j];
    o[k] = bsum;
    o[k + 1] = dsum;
}

/* The rest of gptq_refit_rows for one row per thread: mirror (sym), solve. */
template <int KM>
__global__ void k_gptq_solve(const double *__restrict__ Ain, int sym, int64_t rows, int32_t k,
                             float *__restrict__ cbf) {
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    double A[KM][KM + 2];
    const double *in = Ain + (uint64_t)r * (uint64_t)k * (uint64_t)(k + 2);
    for (int i = 0; i < k; i++)
        for (int j = 0; j <= k; j++) A[i][j] = in[i * (k + 2) + j];
    if (sym)
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < i; j++) A[i][j] = A[j][i] = A[i][j] + A[j][i];
            A[i][i] = 2.0 * A[i][i] + in[i * (k + 2) + k + 1];
        }
    float cb[KM];
    for (int j = 0; j < k; j++) cb[j] = cbf[r * k + j];
    d_gptq_solve<KM>(A, k, cb);
    for (int j = 0; j < k; j++) cbf[r * k + j] = cb[j];
}

/* The result of pass 4 in the matrix's arrays, one block per row: fp16
 * codebook, packed indices (bit-planed, cb.h), each outlier as the fp16
 * delta of its GPTQ value from its (unscaled-delta) codebook entry. */
__global__ void k_gptq_final(const float *cbf, const uint8_t *ix, const float *stored, const uint8_t *gsc, int32_t ng,
                             int64_t cols, int32_t k, int32_t bits, uint64_t rb, const uint32_t *rowptr,
                             const uint16_t *ol_col, uint16_t *cb16, uint8_t *idx, uint16_t *ol_val) {
    const int64_t r = blockIdx.x;
    const float *cb = cbf + r * k;
    if (threadIdx.x < k) cb16[r * k + threadIdx.x] = d_f2h(cb[threadIdx.x]);
    const uint8_t *xr = ix + r * cols;
    const int gb = bits == 2 ? 16 : 32; /* bytes per 64-column group */
    for (uint64_t o = threadIdx.x; o < rb; o += blockDim.x) {
        const int64_t c0 = (int64_t)(o / (uint64_t)gb) * OPC_CB_GROUP + (int64_t)(o % (uint64_t)gb);
        uint32_t v = 0;
        for (int s = 0; s < (bits == 2 ? 4 : 2); s++) {
            const int64_t c = c0 + s * gb;
            if (c < cols) v |= (uint32_t)(xr[c] & (bits == 2 ? 3u : 15u)) << (bits * s);
        }
        idx[r * rb + o] = (uint8_t)v;
    }
    if (rowptr)
        for (uint32_t i = rowptr[r] + threadIdx.x; i < rowptr[r + 1]; i += blockDim.x) {
            const int64_t c = ol_col[i];
            const float s = gsc ? d_scale(gsc[r * ng + c / OPC_CB_GROUP]) : 1.0f;
            const float v = s * cb[xr[c]];
            ol_val[i] = d_f2h(stored[r * cols + c] - v);
        }
}

/* ---------------------------------------------------------- driver ----- */

/* ---------------------------------------------------------- profile ---- */

static struct {
    int on;
    double last;
    unsigned long long *d_cyc; /* (8) fit kernel cycles: see opc_cuda_quant_profile_take */
    opc_cuda_qprof acc;
} g_prof;

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void prof_add(const char *name, double v) {
    opc_cuda_qprof *a = &g_prof.acc;
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->name[i], name)) {
            a->value[i] += v;
            return;
        }
    if (a->n < OPC_CUDA_QPROF_MAX) {
        a->name[a->n] = name;
        a->value[a->n++] = v;
    }
}

/* End of a phase: wait for the device, charge the time since the last mark. */
static void prof_mark(const char *name) {
    if (!g_prof.on) return;
    cudaDeviceSynchronize();
    double t = prof_now();
    if (name) prof_add(name, t - g_prof.last);
    g_prof.last = t;
}

void opc_cuda_quant_profile(int on) {
    g_prof.on = on;
    if (on && !g_prof.d_cyc && cudaMalloc((void **)&g_prof.d_cyc, 8 * sizeof(unsigned long long)) == cudaSuccess)
        cudaMemset(g_prof.d_cyc, 0, 8 * sizeof(unsigned long long));
}

void opc_cuda_quant_profile_take(opc_cuda_qprof *out) {
    if (g_prof.d_cyc) {
        unsigned long long c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        cudaMemcpy(c, g_prof.d_cyc, sizeof c, cudaMemcpyDeviceToHost);
        cudaMemset(g_prof.d_cyc, 0, sizeof c);
        prof_add("fit kernel: sort + gather (SM Gcycles)", 1e-9 * (double)c[0]);
        prof_add("fit kernel: prefix sums (SM Gcycles)", 1e-9 * (double)c[1]);
        prof_add("fit kernel: DP (SM Gcycles)", 1e-9 * (double)c[2]);
        prof_add("fit kernel: row total (SM Gcycles)", 1e-9 * (double)c[3]);
        prof_add("  DP levels, teams > 1 (SM Gcycles)", 1e-9 * (double)c[4]);
        prof_add("  DP levels, one thread a node (SM Gcycles)", 1e-9 * (double)c[5]);
        prof_add("  DP long nodes (SM Gcycles)", 1e-9 * (double)c[6]);
        prof_add("  DP last layer (SM Gcycles)", 1e-9 * (double)c[7]);
    }
    *out = g_prof.acc;
    memset(&g_prof.acc, 0, sizeof g_prof.acc);
}

/* A bump allocator over one device allocation. */
typedef struct arena {
    char *base;
    uint64_t used;
} arena;
static void *take(arena *a, uint64_t bytes) {
    void *p = a->base + a->used;
    a->used += align256(bytes ? bytes : 1);
    return p;
}

/* Everything the GPU path refuses, before any device work. */
static opc_status check_params(int64_t rows, int64_t cols, const opc_qmatrix_params *p) {
    if (!p || rows < 1 || cols < 1 || (p->index_bits != 2 && p->index_bits != 4) || p->k < 1 ||
        p->k > (1 << p->index_bits) || !(p->outlier_frac >= 0.0 && p->outlier_frac <= 0.5))
        return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: bad arguments (%lld x %lld, %d-bit, k %d, outliers %g)",
                         (long long)rows, (long long)cols, p ? p->index_bits : 0, p ? p->k : 0,
                         p ? p->outlier_frac : 0.0);
    if (p->rot_log2 < 0 || p->rot_log2 > OPC_CB_ROT_MAX_LOG2 || cols % ((int64_t)1 << p->rot_log2) != 0)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: rotation block 2^%d does not divide %lld columns",
                         p->rot_log2, (long long)cols);
    if (p->method != OPC_QUANT_KMEANS && p->method != OPC_QUANT_RTN)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: method %d (only the exact k-means and RTN)", (int)p->method);
    if (cols > OPC_CUDA_QUANT_MAX_COLS)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: %lld columns (at most %d on the GPU)", (long long)cols,
                         OPC_CUDA_QUANT_MAX_COLS);
    if (rows > INT_MAX)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: %lld rows", (long long)rows);
    return OPC_OK;
}

/* What W_host holds (quantize_impl). */
enum { HOST_F32, HOST_F16, HOST_BF16 };

/* fp16 / bf16 to fp32 on the device, exactly as opc_fp16_to_fp32 and
 * opc_bf16_to_fp32 (src/core/half.h). */
__global__ void k_widen(const uint16_t *src, float *dst, uint64_t n, int bf16) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x)
        dst[i] = bf16 ? __uint_as_float((uint32_t)src[i] << 16) : d_h2f(src[i]);
}

/* ---------------------------------------------------------- GPTQ factor  */

/* gptq_factor (quantize.c) on the device with every entry summed in the
 * CPU's order. The CPU's Cholesky is left-looking: entry (i, j) starts at
 * M[i][j] and subtracts L[i][t] L[j][t] for t = 0, 1, ..., j - 1; applying
 * those terms right-looking (step t subtracts term t from every trailing
 * entry) gives each entry the same sequence of operations, and each step is
 * parallel over the whole trailing triangle. The triangular inverse likewise:
 * entry (i, j) of L^-1 starts at 0 and subtracts L[i][t] X[t][j] for
 * t = j .. i - 1 in that order. 2 n launches each: fine from n = 576 (a few
 * ms) to 4096. */

/* V (n, n) lower = J (H + lambda I) J; the diagonal adds lambda, the rest
 * + 0.0 as the CPU (which turns -0.0 into +0.0) */
__global__ void k_fac_init(const float *H, int64_t n, double lambda, double *V) {
    const uint64_t nn = (uint64_t)n * (uint64_t)n;
    for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; x < nn; x += (uint64_t)gridDim.x * blockDim.x) {
        const int64_t i = (int64_t)(x / (uint64_t)n), j = (int64_t)(x % (uint64_t)n);
        V[x] = j <= i ? (double)H[(n - 1 - i) * n + (n - 1 - j)] + (i == j ? lambda : 0.0) : 0.0;
    }
}

/* Cholesky step t, part 1: column t of L from the accumulated V (d = sqrt of
 * the diagonal; *bad set when it is not > 0, as the CPU gives up there).
 * L is stored transposed, LT[t][i] = L[i][t], so the steps read it coalesced. */
__global__ void k_fac_col(const double *V, int64_t n, int64_t t, double *LT, int *bad) {
    const int64_t i = t + (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const double dd = V[t * n + t];
    if (i == t && !(dd > 0.0)) *bad = 1;
    const double d = sqrt(dd);
    LT[t * n + i] = i == t ? d : V[i * n + t] / d;
}

/* part 2: V[i][j] -= L[i][t] L[j][t] for t < j <= i */
__global__ void k_fac_upd(double *V, const double *LT, int64_t n, int64_t t) {
    const int64_t j = t + 1 + (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t i = t + 1 + (int64_t)blockIdx.y * 8 + threadIdx.y;
    if (i >= n || j > i) return;
    V[i * n + j] -= LT[t * n + i] * LT[t * n + j];
}

/* Inverse step t, part 1: row t of X = L^-1, X[t][j] for j <= t */
__global__ void k_inv_row(const double *A, const double *LT, int64_t n, int64_t t, double *X) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j > t) return;
    X[t * n + j] = j == t ? 1.0 / LT[t * n + t] : A[t * n + j] / LT[t * n + t];
}

/* part 2: A[i][j] -= L[i][t] X[t][j] for i > t, j <= t (A starts at 0) */
__global__ void k_inv_upd(double *A, const double *LT, const double *X, int64_t n, int64_t t) {
    const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    const int64_t i = t + 1 + (int64_t)blockIdx.y * 8 + threadIdx.y;
    if (i >= n || j > t) return;
    A[i * n + j] -= LT[t * n + i] * X[t * n + j];
}

/* U as the CPU stores it: U[(n-1-i) n + (n-1-j)] = X[i][j] for i >= j, 0 below the diagonal */
__global__ void k_fac_out(const double *X, int64_t n, double *U) {
    const uint64_t nn = (uint64_t)n * (uint64_t)n;
    for (uint64_t x = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; x < nn; x += (uint64_t)gridDim.x * blockDim.x) {
        const int64_t a = (int64_t)(x / (uint64_t)n), b = (int64_t)(x % (uint64_t)n);
        const int64_t i = n - 1 - a, j = n - 1 - b; /* U[a][b] = X[i][j] */
        U[x] = i >= j ? X[i * n + j] : 0.0;
    }
}

/* The factor into U_dev (n, n) in device memory; scratch 3 n^2 doubles. */
static opc_status gptq_factor_dev(const float *H, int64_t n, double damp, double *U_dev) {
    opc_status st = OPC_OK;
    const uint64_t nn = (uint64_t)n * (uint64_t)n;
    double *V = NULL, *L = NULL;
    float *dH = NULL;
    int *d_bad = NULL, bad = 0;
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean = mean > 0.0 ? mean / (double)n : 1.0;
    double lambda = (damp > 0.0 ? damp : 0.01) * mean;
    const unsigned ew = (unsigned)((nn + 255) / 256 < 65535 * 8 ? (nn + 255) / 256 : 65535 * 8);
    CU(cudaMalloc((void **)&V, 8 * nn), "device memory for the GPTQ factor");
    CU(cudaMalloc((void **)&L, 8 * nn), "device memory for the GPTQ factor");
    CU(cudaMalloc((void **)&dH, 4 * nn), "device memory for the GPTQ factor");
    CU(cudaMalloc((void **)&d_bad, sizeof(int)), "device memory for the GPTQ factor");
    CU(cudaMemcpy(dH, H, 4 * (size_t)nn, cudaMemcpyHostToDevice), "Hessian upload");
    for (int attempt = 0; attempt < 6; attempt++, lambda *= 10.0) {
        CU(cudaMemset(d_bad, 0, sizeof(int)), "factor flag");
        CU(cudaMemset(L, 0, 8 * (size_t)nn), "factor");
        k_fac_init<<<ew, 256>>>(dH, n, lambda, V);
        for (int64_t t = 0; t < n; t++) {
            const int64_t m = n - t; /* rows t .. n-1 */
            k_fac_col<<<(unsigned)((m + 255) / 256), 256>>>(V, n, t, L, d_bad);
            if (m > 1) k_fac_upd<<<dim3((unsigned)((m - 1 + 31) / 32), (unsigned)((m - 1 + 7) / 8)), dim3(32, 8)>>>(V, L, n, t);
        }
        CU(cudaGetLastError(), "factor (Cholesky)");
        CU(cudaMemcpy(&bad, d_bad, sizeof bad, cudaMemcpyDeviceToHost), "factor flag");
        if (bad) continue;
        /* L^-1 into X (= U_dev as scratch) with V as the accumulators */
        double *X = U_dev;
        CU(cudaMemset(V, 0, 8 * (size_t)nn), "factor");
        for (int64_t t = 0; t < n; t++) {
            k_inv_row<<<(unsigned)((t + 1 + 255) / 256), 256>>>(V, L, n, t, X);
            if (t + 1 < n)
                k_inv_upd<<<dim3((unsigned)((t + 1 + 31) / 32), (unsigned)((n - t - 1 + 7) / 8)), dim3(32, 8)>>>(V, L, X, n, t);
        }
        CU(cudaGetLastError(), "factor (inverse)");
        /* X to U's layout, through V */
        CU(cudaMemcpy(V, X, 8 * (size_t)nn, cudaMemcpyDeviceToDevice), "factor");
        k_fac_out<<<ew, 256>>>(V, n, U_dev);
        CU(cudaGetLastError(), "factor (layout)");
        CU(cudaDeviceSynchronize(), "factor");
        goto done;
    }
    st = opc_error(OPC_ERR_INVALID_ARG, "gptq: Hessian is not positive definite even with damping");
done:
    cudaFree(V);
    cudaFree(L);
    cudaFree(dH);
    cudaFree(d_bad);
    return st;
}

opc_status opc_cuda_gptq_factor(const float *H, int64_t n, double damp, double **U) {
    if (!H || n < 1 || !U) return opc_error(OPC_ERR_INVALID_ARG, "cuda gptq factor: bad arguments (n %lld)", (long long)n);
    *U = NULL;
    double *dU = NULL, *hU = (double *)malloc((size_t)(n * n) * sizeof *hU);
    opc_status st = OPC_OK;
    if (!hU) return opc_error(OPC_ERR_NOMEM, "cuda gptq factor: cannot allocate %lld x %lld", (long long)n, (long long)n);
    CU(cudaMalloc((void **)&dU, 8 * (size_t)(n * n)), "device memory for the GPTQ factor");
    st = gptq_factor_dev(H, n, damp, dU);
    if (st) goto done;
    CU(cudaMemcpy(hU, dU, 8 * (size_t)(n * n), cudaMemcpyDeviceToHost), "factor download");
    *U = hU;
    hU = NULL;
done:
    if (dU) cudaFree(dU);
    free(hU);
    return st;
}

/* Pass 4 (GPTQ) on the device, over the result of passes 1-3 in place:
 * d_idx (rows, rb), d_cb (rows, k), d_oval (n_out) rewritten; dW (rows, cols)
 * the (rotated) weights; d_gs, d_rowptr, d_ocol as passes 1-3 left them. H is
 * uploaded, and U when the caller has it (p->gptq_u), else it is made here
 * (gptq_factor_dev: the same doubles). Its own device allocation, freed
 * before it returns. */
static opc_status gptq_pass(const float *dW, int64_t rows, int64_t cols, const opc_qmatrix_params *p, int32_t ng,
                            uint64_t rb, uint8_t *d_idx, uint16_t *d_cb, const uint8_t *d_gs, uint64_t n_out,
                            const uint32_t *d_rowptr, const uint16_t *d_ocol, uint16_t *d_oval, int dev, int n_sm) {
    const int32_t k = p->k;
    const float *H = p->hessian;
    const uint64_t nel = (uint64_t)rows * (uint64_t)cols, n2 = (uint64_t)cols * (uint64_t)cols;
    const double *U = p->gptq_u; /* NULL: made here, on the device */
    arena ar = {NULL, 0};
    opc_status st = OPC_OK;
    int max_smem = 0, R = 1, sym = 1;
    /* exactly symmetric H (the calibration's is): the refit sums half of it */
    for (int64_t a = 0; a < cols && sym; a++)
        for (int64_t b = 0; b < a; b++)
            if (H[a * cols + b] != H[b * cols + a]) {
                sym = 0;
                break;
            }
    CU(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "device attributes");
    /* rows per error-feedback block: enough blocks for every SM, at most
     * GQ_ROWS_MAX, and R rows of doubles must fit shared memory */
    R = (int)((rows + n_sm - 1) / n_sm);
    if (R > GQ_ROWS_MAX) R = GQ_ROWS_MAX;
    while (R > 1 && (uint64_t)R * (uint64_t)cols * 8 + 8 * (uint64_t)R > (uint64_t)max_smem) R--;
    if ((uint64_t)cols * 8 + 8 > (uint64_t)max_smem) {
        st = opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: GPTQ on %lld columns needs more shared memory than %d B",
                       (long long)cols, max_smem);
        goto done;
    }
    {
        const size_t round_smem = (size_t)R * (size_t)cols * 8 + 8 * (size_t)R;
        CU(cudaFuncSetAttribute(k_gptq_round, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)round_smem),
           "gptq smem");
        uint64_t need = 0;
        {
            const uint64_t sz[] = {8 * n2, 4 * n2, 4 * (uint64_t)rows * k, nel, 4 * nel, nel, 8 * nel, 4 * nel, nel, 8 * nel,
                                   8 * (uint64_t)rows * k * (k + 2)};
            for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) need += align256(sz[i]);
        }
        CU(cudaMalloc((void **)&ar.base, need), "device memory for GPTQ");
        double *d_U = (double *)take(&ar, 8 * n2);     /* (cols, cols) */
        float *d_H = (float *)take(&ar, 4 * n2);       /* (cols, cols) */
        float *d_cbf = (float *)take(&ar, 4 * (uint64_t)rows * k); /* (rows, k) */
        uint8_t *d_mask = (uint8_t *)take(&ar, nel);   /* (rows, cols) */
        float *d_st = (float *)take(&ar, 4 * nel);     /* (rows, cols) stored values */
        uint8_t *d_ix = (uint8_t *)take(&ar, nel);     /* (rows, cols) indices, unpacked */
        double *d_tw = (double *)take(&ar, 8 * nel);   /* (cols, rows) */
        float *d_tsc = (float *)take(&ar, 4 * nel);    /* (cols, rows) */
        uint8_t *d_tix = (uint8_t *)take(&ar, nel);    /* (cols, rows) */
        double *d_rhs = (double *)take(&ar, 8 * nel);  /* (cols, rows) */
        double *d_A = (double *)take(&ar, 8 * (uint64_t)rows * k * (k + 2)); /* (rows, k, k + 2) */
        if (U) {
            CU(cudaMemcpy(d_U, U, 8 * (size_t)n2, cudaMemcpyHostToDevice), "factor upload");
        } else {
            st = gptq_factor_dev(H, cols, p->damp, d_U); /* the CPU's doubles (opc_cuda_gptq_factor) */
            if (st) goto done;
            prof_mark("gptq factor (GPU)");
        }
        CU(cudaMemcpy(d_H, H, 4 * (size_t)n2, cudaMemcpyHostToDevice), "Hessian upload");
        CU(cudaMemset(d_mask, 0, (size_t)nel), "outlier mask");
        prof_mark("gptq upload");
        const unsigned ew = (unsigned)((nel + 1023) / 1024 < 65535 * 16 ? (nel + 1023) / 1024 : 65535 * 16);
        k_gptq_cbf<<<(unsigned)(((uint64_t)rows * k + 255) / 256), 256>>>(d_cb, d_cbf, (uint64_t)rows * k);
        CU(cudaGetLastError(), "gptq codebooks");
        if (n_out) {
            k_gptq_mask<<<(unsigned)rows, 32>>>(d_rowptr, d_ocol, cols, d_mask);
            CU(cudaGetLastError(), "gptq mask");
        }
        const unsigned nblk = (unsigned)((rows + R - 1) / R);
        k_gptq_round<<<nblk, NT, round_smem>>>(dW, rows, cols, d_U, d_cbf, k, d_gs, ng, d_mask, R, d_ix, d_st);
        CU(cudaGetLastError(), "gptq rounding");
        prof_mark("gptq rounding 1");
        k_gptq_prep<<<ew, 256>>>(dW, d_st, d_mask, d_ix, d_gs, ng, rows, cols, k, d_tw, d_tsc, d_tix);
        CU(cudaGetLastError(), "gptq refit inputs");
        k_gptq_rhs<<<dim3((unsigned)((rows + 31) / 32), (unsigned)((cols + 31) / 32)), 256>>>(d_H, d_tw, rows, cols,
                                                                                             d_rhs);
        CU(cudaGetLastError(), "gptq refit rhs");
        prof_mark("gptq refit inputs + rhs");
        const unsigned na = (unsigned)((((rows + 31) / 32) * k * 32 + 127) / 128);
        const unsigned ns = (unsigned)((rows + 63) / 64);
        if (k <= 4) {
            k_gptq_acc<4><<<na, 128>>>(d_H, sym, d_rhs, d_tsc, d_tix, d_gs != NULL, rows, cols, k, d_A);
            k_gptq_solve<4><<<ns, 64>>>(d_A, sym, rows, k, d_cbf);
        } else if (k <= 8) {
            k_gptq_acc<8><<<na, 128>>>(d_H, sym, d_rhs, d_tsc, d_tix, d_gs != NULL, rows, cols, k, d_A);
            k_gptq_solve<8><<<ns, 64>>>(d_A, sym, rows, k, d_cbf);
        } else {
            k_gptq_acc<16><<<na, 128>>>(d_H, sym, d_rhs, d_tsc, d_tix, d_gs != NULL, rows, cols, k, d_A);
            k_gptq_solve<16><<<ns, 64>>>(d_A, sym, rows, k, d_cbf);
        }
        CU(cudaGetLastError(), "gptq refit");
        prof_mark("gptq refit normal eqs + solve");
        k_gptq_round<<<nblk, NT, round_smem>>>(dW, rows, cols, d_U, d_cbf, k, d_gs, ng, d_mask, R, d_ix, d_st);
        CU(cudaGetLastError(), "gptq rounding");
        prof_mark("gptq rounding 2");
        k_gptq_final<<<(unsigned)rows, 128>>>(d_cbf, d_ix, d_st, d_gs, ng, cols, k, p->index_bits, rb,
                                              n_out ? d_rowptr : NULL, d_ocol, d_cb, d_idx, d_oval);
        CU(cudaGetLastError(), "gptq result");
        CU(cudaDeviceSynchronize(), "gptq (pass 4)");
        prof_mark("gptq result");
    }
done:
    if (ar.base) cudaFree(ar.base);
    return st;
}

/* The quantizer on dW (rows, cols) in device memory. With W_host (of kind
 * HOST_*) the rows are uploaded here, in chunks on a second stream, each
 * chunk's widening, rotation, sort and first fit queued behind its upload:
 * the host copies chunk c + 1 (a pageable copy returns once staged) while
 * the device fits chunk c. */
static opc_status quantize_impl(float *dW, const void *W_host, int kind, int64_t rows, int64_t cols,
                                const opc_qmatrix_params *p, opc_qmatrix *out) {
    const uint64_t esz = kind == HOST_F32 ? 4 : 2; /* bytes per uploaded weight */
    const uint64_t nel = (uint64_t)rows * (uint64_t)cols;
    const uint64_t rb = opc_cb_row_bytes(p->index_bits, cols);
    const int32_t k = p->k, ng = (int32_t)opc_cb_groups(cols);
    uint64_t n_out = 0;
    if (p->outlier_frac > 0.0 && cols <= 65535) n_out = (uint64_t)llround(p->outlier_frac * (double)nel);
    if (n_out >= (1ull << 32)) return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: too many outliers");
    int P = 1;
    while (P < cols) P *= 2;

    opc_status st = OPC_OK;
    arena ar = {NULL, 0};
    prof_mark(NULL);
    float *imp = (float *)malloc((size_t)cols * sizeof *imp);
    uint32_t *cnt = NULL, *allow = NULL;
    double *num = NULL, *den = NULL;
    if (!imp) return opc_error(OPC_ERR_NOMEM, "cuda quantize: cannot allocate %lld importances", (long long)cols);

    opc_quant_column_weights(p->importance, cols, imp); /* exactly as the CPU path */
    int64_t tiny = n_out ? (int64_t)ceil(4.0 * p->outlier_frac * (double)cols) : 0;
    if (n_out && tiny < 4) tiny = 4;

    /* Without group scales a row's sort order is its weights' and the same in
     * both fits (the refit leaves the outlier columns out of it): one
     * segmented radix sort of the whole tensor beforehand, and the row kernel
     * needs no shared memory for keys. With group scales it sorts w / s in
     * shared memory each round. Rows in chunks of at most INT_MAX elements
     * (CUB's count type). */
    const int presort = p->method == OPC_QUANT_KMEANS && !p->group_scales;
    /* rows per chunk: a quarter of the tensor when uploading (the first
     * chunk's upload is the only one not hidden), else all of it */
    int64_t crow = W_host ? (rows + 3) / 4 : rows;
    if (presort && crow > INT_MAX / cols) crow = INT_MAX / cols;
    const int64_t sort_rows = presort ? crow : 0;
    cudaStream_t su = NULL;
    cudaEvent_t ev = NULL;
    size_t sort_tmp = 0;
    int dev = 0, n_sm = 0, per_sm = 0;
    const size_t fit_smem = (presort ? 0 : (size_t)P * 8) + (((size_t)cols + 15) & ~(size_t)15) + 256;
    if (presort)
        CU(cub::DeviceSegmentedRadixSort::SortPairs(NULL, sort_tmp, (const uint32_t *)NULL, (uint32_t *)NULL,
                                                    (const uint16_t *)NULL, (uint16_t *)NULL, (int)(sort_rows * cols),
                                                    (int)sort_rows, (const int *)NULL, (const int *)NULL + 1),
           "sort workspace");
    CU(cudaGetDevice(&dev), "no CUDA device");
    CU(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev), "device attributes");
    CU(cudaFuncSetAttribute(k_fit_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)fit_smem), "fit smem");
    CU(cudaFuncSetAttribute(k_rotate, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(cols * 4)), "rotate smem");
    CU(cudaFuncSetAttribute(k_row_err, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(cols * 4)), "error smem");
    CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_fit_rows, NT, fit_smem), "occupancy");
    if (per_sm < 1) {
        st = opc_error(OPC_ERR_CUDA, "cuda quantize: the row kernel does not fit an SM (%zu B shared)", fit_smem);
        goto done;
    }
    {
        int64_t nblk = (int64_t)n_sm * per_sm;
        if (nblk > rows) nblk = rows;
        const uint64_t sstride = align256(scratch_bytes(cols, k));
        /* one device allocation: sizes first, then carve */
        uint64_t need = 0;
        {
            uint64_t sz[] = {4 * (uint64_t)cols, n_out ? 4 * nel : 0, rows * rb, 2 * (uint64_t)rows * k,
                             p->group_scales ? (uint64_t)rows * ng : 0, 4 * ((uint64_t)rows + 1), 4 * (uint64_t)rows,
                             8 * (uint64_t)rows, 2 * n_out, 2 * n_out, 4 * 2048, 8 * (uint64_t)rows,
                             8 * (uint64_t)rows, sstride * (uint64_t)nblk, presort ? 4 * (uint64_t)sort_rows * cols : 0,
                             presort ? 4 * (uint64_t)sort_rows * cols : 0, presort ? 2 * nel : 0,
                             presort ? 2 * (uint64_t)sort_rows * cols : 0, presort ? 4 * ((uint64_t)sort_rows + 1) : 0,
                             sort_tmp, W_host && kind != HOST_F32 ? 2 * nel : 0};
            for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) need += align256(sz[i] ? sz[i] : 1);
        }
        CU(cudaMalloc((void **)&ar.base, need), "device memory");
        float *d_imp = (float *)take(&ar, 4 * (uint64_t)cols);
        float *d_err = n_out ? (float *)take(&ar, 4 * nel) : (float *)take(&ar, 0);
        uint8_t *d_idx = (uint8_t *)take(&ar, rows * rb);
        uint16_t *d_cb = (uint16_t *)take(&ar, 2 * (uint64_t)rows * k);
        uint8_t *d_gs = (uint8_t *)take(&ar, p->group_scales ? (uint64_t)rows * ng : 0);
        uint32_t *d_rowptr = (uint32_t *)take(&ar, 4 * ((uint64_t)rows + 1));
        uint32_t *d_allow = (uint32_t *)take(&ar, 4 * (uint64_t)rows);
        uint32_t *d_cnt = (uint32_t *)take(&ar, 8 * (uint64_t)rows);
        uint16_t *d_ocol = (uint16_t *)take(&ar, 2 * n_out);
        uint16_t *d_oval = (uint16_t *)take(&ar, 2 * n_out);
        uint32_t *d_hist = (uint32_t *)take(&ar, 4 * 2048);
        double *d_num = (double *)take(&ar, 8 * (uint64_t)rows);
        double *d_den = (double *)take(&ar, 8 * (uint64_t)rows);
        char *d_scr = (char *)take(&ar, sstride * (uint64_t)nblk);
        uint32_t *d_skey = (uint32_t *)take(&ar, presort ? 4 * (uint64_t)sort_rows * cols : 0);
        uint32_t *d_skey2 = (uint32_t *)take(&ar, presort ? 4 * (uint64_t)sort_rows * cols : 0);
        uint16_t *d_order = (uint16_t *)take(&ar, presort ? 2 * nel : 0);
        uint16_t *d_scol = (uint16_t *)take(&ar, presort ? 2 * (uint64_t)sort_rows * cols : 0);
        int *d_soff = (int *)take(&ar, presort ? 4 * ((uint64_t)sort_rows + 1) : 0);
        void *d_stmp = take(&ar, sort_tmp);
        uint16_t *d_w16 = (uint16_t *)take(&ar, W_host && kind != HOST_F32 ? 2 * nel : 0); /* 16-bit upload */
        if (!p->group_scales) d_gs = NULL;
        CU(cudaMemcpy(d_imp, imp, 4 * (size_t)cols, cudaMemcpyHostToDevice), "importance upload");
        prof_mark("setup (importance, device alloc)");

        fit_args A;
        memset(&A, 0, sizeof A);
        A.W = dW, A.imp = d_imp, A.rows = rows, A.cols = cols, A.ng = ng, A.k = k, A.bits = p->index_bits;
        A.method = p->method, A.rounds = p->scale_rounds > 0 ? p->scale_rounds : 3, A.P = P, A.rb = rb;
        A.cb16 = d_cb, A.idx = d_idx, A.gs = d_gs, A.err = n_out ? d_err : NULL, A.tiny = tiny;
        A.scratch = d_scr, A.scratch_stride = sstride;
        A.order = presort ? d_order : NULL;
        A.cyc = g_prof.on ? g_prof.d_cyc : NULL;
        if (W_host) {
            CU(cudaStreamCreateWithFlags(&su, cudaStreamNonBlocking), "upload stream");
            CU(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "upload event");
        }
        if (presort) {
            k_seg_offsets<<<(unsigned)((sort_rows + 256) / 256), 256>>>(d_soff, sort_rows, cols);
            CU(cudaGetLastError(), "sort offsets");
        }
        /* Pass 1, chunk by chunk: upload, rotation, sort, fit. */
        for (int64_t r0 = 0; r0 < rows; r0 += crow) {
            const int64_t nr = rows - r0 < crow ? rows - r0 : crow;
            const uint64_t o = (uint64_t)r0 * (uint64_t)cols;
            if (W_host) {
                const size_t bytes = (size_t)esz * (size_t)nr * (size_t)cols;
                const char *src = (const char *)W_host + esz * o;
                CU(cudaMemcpyAsync(kind == HOST_F32 ? (void *)(dW + o) : (void *)(d_w16 + o), src, bytes,
                                   cudaMemcpyHostToDevice, su),
                   "weights upload");
                CU(cudaEventRecord(ev, su), "upload event");
                CU(cudaStreamWaitEvent(0, ev, 0), "upload wait");
                if (kind != HOST_F32) {
                    const uint64_t ne = (uint64_t)nr * (uint64_t)cols;
                    k_widen<<<(unsigned)((ne + 1023) / 1024), 256>>>(d_w16 + o, dW + o, ne, kind == HOST_BF16);
                    CU(cudaGetLastError(), "widen");
                }
            }
            if (p->rot_log2 > 0) {
                const int64_t b = (int64_t)1 << p->rot_log2;
                const float norm = 1.0f / sqrtf((float)b); /* as opc_cb_rotate computes it */
                k_rotate<<<(unsigned)nr, NT, (size_t)cols * 4>>>(dW + o, cols, p->rot_log2, norm);
                CU(cudaGetLastError(), "rotate");
            }
            if (presort) {
                /* keys: the weights' order-preserving bits (d_order, as the
                 * in-kernel sort); values: the column. The radix sort is
                 * stable, so equal keys keep column order, as the CPU's merge
                 * sort. */
                const uint64_t ne = (uint64_t)nr * (uint64_t)cols;
                k_sort_keys<<<(unsigned)((ne + 1023) / 1024), 256>>>(dW + o, ne, cols, d_skey, d_order + o);
                CU(cudaGetLastError(), "sort keys");
                size_t tmp = sort_tmp;
                CU(cub::DeviceSegmentedRadixSort::SortPairs(d_stmp, tmp, d_skey, d_skey2, d_order + o, d_scol, (int)ne,
                                                            (int)nr, d_soff, d_soff + 1),
                   "segmented sort");
                CU(cudaMemcpyAsync(d_order + o, d_scol, 2 * (size_t)ne, cudaMemcpyDeviceToDevice), "sorted columns");
            }
            A.row0 = r0, A.row1 = r0 + nr;
            k_fit_rows<<<(unsigned)(nblk < nr ? nblk : nr), NT, fit_smem>>>(A);
            CU(cudaGetLastError(), "fit rows");
        }
        CU(cudaDeviceSynchronize(), "fit rows");
        prof_mark(W_host ? "upload + fit (pass 1), overlapped" : "fit (pass 1)");
        if (p->interrupt && *p->interrupt) {
            st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
            goto done;
        }

        float thr = 0.0f;
        if (n_out) {
            /* Pass 2: thr = the (nel - n_out)-th smallest score, by radix select
             * over 11 + 11 + 10 bits of its float bits. */
            uint32_t hist[2048], prefix = 0, pmask = 0;
            uint64_t kth = nel - n_out;
            const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
            for (int pass = 0; pass < 3; pass++) {
                CU(cudaMemset(d_hist, 0, sizeof hist), "histogram");
                k_hist<<<(unsigned)(n_sm * 4), 512>>>(d_err, nel, shifts[pass], (1u << widths[pass]) - 1u, pmask, prefix,
                                                       d_hist);
                CU(cudaGetLastError(), "histogram");
                CU(cudaMemcpy(hist, d_hist, sizeof hist, cudaMemcpyDeviceToHost), "histogram download");
                uint64_t cum = 0;
                uint32_t bin = 0;
                for (bin = 0; bin < (1u << widths[pass]); bin++) {
                    if (kth < cum + hist[bin]) break;
                    cum += hist[bin];
                }
                if (bin >= (1u << widths[pass])) {
                    st = opc_error(OPC_ERR_INTERNAL, "cuda quantize: outlier selection lost its rank");
                    goto done;
                }
                kth -= cum;
                prefix |= bin << shifts[pass];
                pmask |= ((1u << widths[pass]) - 1u) << shifts[pass];
            }
            memcpy(&thr, &prefix, 4);
            cnt = (uint32_t *)malloc(8 * (size_t)rows);
            allow = (uint32_t *)malloc(4 * (size_t)rows);
            out->ol_rowptr = (uint32_t *)opc_aligned_alloc(((size_t)rows + 1) * 4);
            if (!cnt || !allow || !out->ol_rowptr) {
                st = opc_error(OPC_ERR_NOMEM, "cuda quantize: cannot allocate outlier counts");
                goto done;
            }
            k_row_counts<<<(unsigned)((rows + 7) / 8), 256>>>(d_err, rows, cols, thr, d_cnt);
            CU(cudaGetLastError(), "outlier counts");
            CU(cudaMemcpy(cnt, d_cnt, 8 * (size_t)rows, cudaMemcpyDeviceToHost), "outlier counts download");
            /* as the CPU: everything above thr, then ties in row-major order;
             * never a zero score */
            uint64_t n_gt = 0;
            for (int64_t r = 0; r < rows; r++) n_gt += cnt[2 * r];
            uint64_t n_eq = thr > 0.0f && n_out > n_gt ? n_out - n_gt : 0;
            uint64_t o = 0;
            out->ol_rowptr[0] = 0;
            for (int64_t r = 0; r < rows; r++) {
                uint32_t a = cnt[2 * r + 1] < n_eq ? cnt[2 * r + 1] : (uint32_t)n_eq;
                n_eq -= a;
                allow[r] = a;
                o += cnt[2 * r] + a;
                out->ol_rowptr[r + 1] = (uint32_t)o;
            }
            n_out = o;
            prof_mark("outlier selection");
            if (n_out) {
                CU(cudaMemcpy(d_rowptr, out->ol_rowptr, 4 * ((size_t)rows + 1), cudaMemcpyHostToDevice), "row pointers");
                CU(cudaMemcpy(d_allow, allow, 4 * (size_t)rows, cudaMemcpyHostToDevice), "tie allowance");
                k_compact<<<(unsigned)((rows + 7) / 8), 256>>>(d_err, rows, cols, thr, d_rowptr, d_allow, d_ocol);
                CU(cudaGetLastError(), "outlier columns");
                /* Pass 3: refit the rows that lost weights, store the deltas */
                A.err = NULL;
                A.ol_rowptr = d_rowptr, A.ol_col = d_ocol, A.ol_val = d_oval;
                A.row0 = 0, A.row1 = rows;
                k_fit_rows<<<(unsigned)nblk, NT, fit_smem>>>(A);
                CU(cudaGetLastError(), "refit rows");
                CU(cudaDeviceSynchronize(), "refit rows");
                prof_mark("refit (pass 3)");
                if (p->interrupt && *p->interrupt) {
                    st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
                    goto done;
                }
            }
        }

        if (p->hessian) { /* Pass 4: GPTQ error feedback */
            st = gptq_pass(dW, rows, cols, p, ng, rb, d_idx, d_cb, d_gs, n_out, d_rowptr, d_ocol, d_oval, dev, n_sm);
            if (st) goto done;
            if (p->interrupt && *p->interrupt) {
                st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
                goto done;
            }
        }

        k_row_err<<<(unsigned)rows, NT, (size_t)cols * 4>>>(dW, d_imp, cols, k, p->index_bits, rb, d_idx, d_cb, d_gs, ng,
                                                           n_out ? d_rowptr : NULL, d_ocol, d_oval, d_num, d_den);
        CU(cudaGetLastError(), "error");

        /* results to the host, in the CPU path's allocations */
        out->idx = (uint8_t *)opc_aligned_alloc((size_t)(rows * (int64_t)rb));
        out->codebook = (uint16_t *)opc_aligned_alloc((size_t)rows * (size_t)k * 2);
        if (p->group_scales) out->gscale = (uint8_t *)opc_aligned_alloc((size_t)rows * (size_t)ng);
        if (n_out) {
            out->ol_col = (uint16_t *)opc_aligned_alloc((size_t)n_out * 2);
            out->ol_val = (uint16_t *)opc_aligned_alloc((size_t)n_out * 2);
        }
        num = (double *)malloc(8 * (size_t)rows);
        den = (double *)malloc(8 * (size_t)rows);
        if (!out->idx || !out->codebook || (p->group_scales && !out->gscale) || (n_out && (!out->ol_col || !out->ol_val)) ||
            !num || !den) {
            st = opc_error(OPC_ERR_NOMEM, "cuda quantize: cannot allocate the result for %lld x %lld", (long long)rows,
                           (long long)cols);
            goto done;
        }
        CU(cudaMemcpy(out->idx, d_idx, (size_t)(rows * (int64_t)rb), cudaMemcpyDeviceToHost), "indices download");
        CU(cudaMemcpy(out->codebook, d_cb, (size_t)rows * (size_t)k * 2, cudaMemcpyDeviceToHost), "codebook download");
        if (p->group_scales)
            CU(cudaMemcpy(out->gscale, d_gs, (size_t)rows * (size_t)ng, cudaMemcpyDeviceToHost), "scales download");
        if (n_out) {
            CU(cudaMemcpy(out->ol_col, d_ocol, (size_t)n_out * 2, cudaMemcpyDeviceToHost), "outliers download");
            CU(cudaMemcpy(out->ol_val, d_oval, (size_t)n_out * 2, cudaMemcpyDeviceToHost), "outliers download");
        }
        CU(cudaMemcpy(num, d_num, 8 * (size_t)rows, cudaMemcpyDeviceToHost), "error download");
        CU(cudaMemcpy(den, d_den, 8 * (size_t)rows, cudaMemcpyDeviceToHost), "error download");
        out->err_num = out->err_den = 0.0;
        for (int64_t r = 0; r < rows; r++) out->err_num += num[r], out->err_den += den[r];
        prof_mark("error + download");
    }

    {
        opc_cb_matrix *m = &out->m;
        m->rows = rows, m->cols = cols, m->bits = p->index_bits, m->k = k;
        m->idx = out->idx, m->row_bytes = rb, m->codebook = out->codebook, m->gscale = out->gscale;
        m->rot_log2 = p->rot_log2;
        m->n_outliers = n_out;
        if (n_out) {
            m->ol_rowptr = out->ol_rowptr, m->ol_col = out->ol_col, m->ol_val = out->ol_val;
        } else { /* no sparse part: no arrays, as the CPU path */
            opc_aligned_free(out->ol_rowptr);
            out->ol_rowptr = NULL;
        }
        st = opc_cb_validate(m, "cuda quantize");
    }

done:
    if (ev) cudaEventDestroy(ev);
    if (su) cudaStreamDestroy(su);
    if (ar.base) cudaFree(ar.base);
    prof_mark("free");
    free(imp);
    free(cnt);
    free(allow);
    free(num);
    free(den);
    if (st != OPC_OK) opc_qmatrix_free(out);
    return st;
}

opc_status opc_cuda_quantize_matrix_dev(float *dW, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                        opc_qmatrix *out) {
    memset(out, 0, sizeof *out);
    if (!dW) return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: NULL weights");
    opc_status cst = check_params(rows, cols, p);
    if (cst) return cst;
    return quantize_impl(dW, NULL, HOST_F32, rows, cols, p, out);
}

/* Host weights of any kind: the device copy, the quantizer, the free. */
static opc_status quantize_host(const void *W, int kind, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                opc_qmatrix *out) {
    memset(out, 0, sizeof *out);
    if (!W) return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: NULL weights");
    opc_status cst = check_params(rows, cols, p);
    if (cst) return cst;
    float *dW = NULL;
    const size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
    prof_mark(NULL);
    cudaError_t e = cudaMalloc((void **)&dW, bytes);
    if (e != cudaSuccess) return cuda_err(e, "device memory for the weights");
    prof_mark("weights alloc");
    opc_status st = quantize_impl(dW, W, kind, rows, cols, p, out);
    cudaFree(dW);
    prof_mark("weights free");
    return st;
}

opc_status opc_cuda_quantize_matrix(const float *W, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                    opc_qmatrix *out) {
    return quantize_host(W, HOST_F32, rows, cols, p, out);
}

opc_status opc_cuda_quantize_matrix_h16(const uint16_t *W16, int bf16, int64_t rows, int64_t cols,
                                        const opc_qmatrix_params *p, opc_qmatrix *out) {
    return quantize_host(W16, bf16 ? HOST_BF16 : HOST_F16, rows, cols, p, out);
}
