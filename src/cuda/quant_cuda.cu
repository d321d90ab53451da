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
 *   4. weighted error of what is stored (k_row_err).
 *
 * The exact k-means per row: the non-masked values x = w / s are sorted with
 * their column as tie-break (64-bit keys, bitonic sort in shared memory: a
 * stable sort, like the CPU's merge sort), shifted by their weighted mean,
 * and turned into prefix sums of w, w x, w x^2 (double). The dynamic program
 * dp[j][i] = min_s dp[j-1][s] + cost(s, i) has a monotone argmin, so each
 * layer is solved by divide and conquer as on the CPU, but breadth first:
 * the nodes of one recursion level are independent (a node [lo, hi] takes
 * its argmin bounds from arg[lo-1] and arg[hi+1], both fixed by earlier
 * levels), one warp per node scans its candidates. The last layer needs
 * only i = n: one scan.
 *
 * Compiled with -fmad=false (CMakeLists.txt): the per-weight float
 * arithmetic then rounds exactly like the CPU reference.
 */
#include "quant_cuda.h"

#include <cuda_runtime.h>

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NT 256       /* threads per row block: 8 warps, several blocks per SM */
#define NW (NT / 32)
#define MAXK 16
#define MAXG (OPC_CUDA_QUANT_MAX_COLS / OPC_CB_GROUP)
#define FP16_MAX_F 65504.0f

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

/* Exclusive prefix over threads of three doubles (thread order). */
__device__ void block_excl_scan3(const double v[3], double out[3]) {
    __shared__ double wtot[3][NW];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double inc[3];
    for (int d = 0; d < 3; d++) {
        inc[d] = v[d];
        for (int o = 1; o < 32; o <<= 1) {
            double t = __shfl_up_sync(0xffffffffu, inc[d], o);
            if (lane >= o) inc[d] += t;
        }
        if (lane == 31) wtot[d][warp] = inc[d];
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int d = 0; d < 3; d++) {
            double s = 0.0;
            for (int i = 0; i < NW; i++) {
                double t = wtot[d][i];
                wtot[d][i] = s;
                s += t;
            }
        }
    __syncthreads();
    for (int d = 0; d < 3; d++) {
        double ex = __shfl_up_sync(0xffffffffu, inc[d], 1);
        out[d] = wtot[d][warp] + (lane == 0 ? 0.0 : ex);
    }
    __syncthreads();
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
    const uint32_t *ol_rowptr; /* pass 3: (rows + 1); NULL in pass 1 */
    const uint16_t *ol_col;
    uint16_t *ol_val;
    char *scratch; /* gridDim.x slices of scratch_stride bytes */
    uint64_t scratch_stride;
} fit_args;

/* One block's global scratch for the k-means of a row of n <= cols values. */
typedef struct blk_scratch {
    float *xs, *wv;              /* (cols) sorted shifted values, their weights */
    double *pw, *px, *pxx;       /* (cols + 1) prefix sums */
    double *dp0, *dp1;           /* (cols + 1) DP rows */
    int32_t *arg;                /* (k, cols + 1) argmins per layer */
    int2 *la, *lb;               /* (cols + 1) node lists of two recursion levels */
} blk_scratch;

static __host__ __device__ uint64_t align256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

static __host__ __device__ uint64_t scratch_bytes(int64_t cols, int32_t k) {
    uint64_t n1 = (uint64_t)cols + 1;
    return 2 * align256(4 * (uint64_t)cols) + 5 * align256(8 * n1) + align256(4 * n1 * (uint64_t)k) +
           2 * align256(8 * (n1 + 1));
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
    S.la = (int2 *)p, p += align256(8 * (n1 + 1));
    S.lb = (int2 *)p;
    return S;
}

/* One warp: min over s in [s0, s1] of prev[s] + cost(s, i); the first
 * (smallest) s on ties, as the CPU's strict `<` in increasing s. Result in
 * every lane; *bs = s0 when the range is empty or every value is infinite. */
__device__ __forceinline__ double scan_min(const blk_scratch &S, const double *prev, int i, int s0, int s1, int *bs) {
    const int lane = threadIdx.x & 31;
    const double pm = S.pw[i], xm = S.px[i], qm = S.pxx[i];
    double best = INFINITY;
    int b = INT_MAX;
    for (int s = s0 + lane; s <= s1; s += 32) {
        double sw = pm - S.pw[s], sx = xm - S.px[s];
        double cost = qm - S.pxx[s] - (sw > 0.0 ? sx * sx / sw : 0.0);
        double v = prev[s] + (cost > 0.0 ? cost : 0.0);
        if (v < best) {
            best = v;
            b = s;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        double ob = __shfl_down_sync(0xffffffffu, best, o);
        int os = __shfl_down_sync(0xffffffffu, b, o);
        if (ob < best || (ob == best && os < b)) {
            best = ob;
            b = os;
        }
    }
    best = __shfl_sync(0xffffffffu, best, 0);
    b = __shfl_sync(0xffffffffu, b, 0);
    *bs = b == INT_MAX ? s0 : b;
    return best;
}

/* DP layer j for every i in [j, n]: cur[i] and arg[i], breadth-first divide
 * and conquer (see the file comment), one warp per node of a level. */
__device__ void dp_layer(const blk_scratch &S, int j, int n, const double *prev, double *cur, int32_t *arg) {
    __shared__ int s_cnt, s_next;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* the previous layer's last read of s_cnt comes before this write */
    for (int i = threadIdx.x; i < j; i += NT) cur[i] = INFINITY; /* fewer points than clusters */
    int2 *la = S.la, *lb = S.lb;
    if (threadIdx.x == 0) {
        la[0] = make_int2(j, n);
        s_cnt = 1;
        s_next = 0;
    }
    __syncthreads();
    int cnt = s_cnt;
    while (cnt > 0) {
        for (int node = warp; node < cnt; node += NW) {
            int2 nd = la[node];
            int lo = nd.x, hi = nd.y, mid = lo + (hi - lo) / 2;
            int optlo = lo == j ? j - 1 : arg[lo - 1];
            int opthi = hi == n ? n - 1 : arg[hi + 1];
            int smax = opthi < mid - 1 ? opthi : mid - 1;
            int bs;
            double best = scan_min(S, prev, mid, optlo, smax, &bs);
            if (lane == 0) {
                cur[mid] = best;
                arg[mid] = bs;
                if (mid - 1 >= lo) lb[atomicAdd(&s_next, 1)] = make_int2(lo, mid - 1);
                if (hi >= mid + 1) lb[atomicAdd(&s_next, 1)] = make_int2(mid + 1, hi);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            s_cnt = s_next;
            s_next = 0;
        }
        __syncthreads();
        cnt = s_cnt;
        int2 *t = la;
        la = lb;
        lb = t;
    }
}

/* fit_codebook (quantize.c) for one row: the codebook for fixed group scales
 * gs (NULL: none) on the non-masked weights, fp16-rounded and sorted, into
 * s_cbf (shared, k floats). */
__device__ void fit_codebook(const fit_args &A, const blk_scratch &S, const float *w, const uint8_t *mask,
                             const uint8_t *gs, uint64_t *keys, float *s_cbf) {
    __shared__ float s_cent[MAXK];
    const int64_t cols = A.cols;
    const int k = A.k, P = A.P;
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
        keys[c] = key;
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
        __syncthreads();
        bitonic_sort(keys, P);
        /* weighted mean, for the shift that keeps the x^2 sums small */
        double sw = 0.0, sx = 0.0;
        for (int i = threadIdx.x; i < n; i += NT) {
            int c = (int)(uint32_t)keys[i];
            float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
            float x = w[c] / s, wt = unit ? 1.0f : A.imp[c] * s * s;
            double wi = wt > 0.0f ? (double)wt : 0.0;
            sw += wi;
            sx += wi * (double)x;
        }
        sw = block_sum(sw);
        sx = block_sum(sx);
        const double mu = sw > 0.0 ? sx / sw : 0.0;
        /* prefix sums: each thread a contiguous chunk, then the chunk offsets */
        const int C = (n + NT - 1) / NT;
        const int i0 = threadIdx.x * C < n ? threadIdx.x * C : n, i1 = i0 + C < n ? i0 + C : n;
        double loc[3] = {0.0, 0.0, 0.0}, off[3];
        for (int i = i0; i < i1; i++) {
            int c = (int)(uint32_t)keys[i];
            float s = gs ? d_scale(gs[c / OPC_CB_GROUP]) : 1.0f;
            float x = w[c] / s, wt = unit ? 1.0f : A.imp[c] * s * s;
            float xsf = (float)((double)x - mu);
            S.xs[i] = xsf;
            S.wv[i] = wt;
            double wi = wt > 0.0f ? (double)wt : 0.0, xi = (double)xsf;
            loc[0] += wi;
            loc[1] += wi * xi;
            loc[2] += wi * xi * xi;
        }
        block_excl_scan3(loc, off);
        for (int i = i0; i < i1; i++) {
            double wi = S.wv[i] > 0.0f ? (double)S.wv[i] : 0.0, xi = (double)S.xs[i];
            off[0] += wi;
            off[1] += wi * xi;
            off[2] += wi * xi * xi;
            S.pw[i + 1] = off[0];
            S.px[i + 1] = off[1];
            S.pxx[i + 1] = off[2];
        }
        if (threadIdx.x == 0) S.pw[0] = S.px[0] = S.pxx[0] = 0.0;
        __syncthreads();
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
                dp_layer(S, j, n, prev, cur, S.arg + (size_t)(j - 1) * (size_t)(n + 1));
                double *t = prev;
                prev = cur;
                cur = t;
            }
            __shared__ int s_last;
            if (kk >= 2 && threadIdx.x < 32) { /* last layer: only i = n */
                int bs;
                scan_min(S, prev, n, kk - 1, n - 1, &bs);
                if (threadIdx.x == 0) s_last = bs;
            }
            __syncthreads();
            if (threadIdx.x == 0) { /* backtrack the runs, last cluster first */
                int i = n;
                for (int j = kk; j >= 1; j--) {
                    int s = j == 1 ? 0 : j == kk ? s_last : S.arg[(size_t)(j - 1) * (size_t)(n + 1) + (size_t)i];
                    double pw = S.pw[i] - S.pw[s];
                    double c = pw > 0.0 ? (S.px[i] - S.px[s]) / pw : (double)S.xs[s];
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
    uint64_t *keys = (uint64_t *)smem;                               /* (P) sort keys */
    uint8_t *mask = smem + (size_t)A.P * 8;                          /* (cols) 1 = outlier column */
    uint8_t *gs_s = mask + (((size_t)A.cols + 15) & ~(size_t)15);    /* (ng) the row's group scales */
    __shared__ float s_cbf[MAXK];
    __shared__ int s_count[MAXK];
    const blk_scratch S = scratch_slice(A);
    const int k = A.k;
    for (int64_t r = blockIdx.x; r < A.rows; r += gridDim.x) {
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
            fit_codebook(A, S, w, mk, gs, keys, s_cbf);
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
    }
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

/* ---------------------------------------------------------- driver ----- */

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
    if (p->hessian)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: GPTQ error feedback runs on the CPU only");
    if (p->method != OPC_QUANT_KMEANS && p->method != OPC_QUANT_RTN)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: method %d (only the exact k-means and RTN)", (int)p->method);
    if (cols > OPC_CUDA_QUANT_MAX_COLS)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: %lld columns (at most %d on the GPU)", (long long)cols,
                         OPC_CUDA_QUANT_MAX_COLS);
    if (rows > INT_MAX)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda quantize: %lld rows", (long long)rows);
    return OPC_OK;
}

opc_status opc_cuda_quantize_matrix_dev(float *dW, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                        opc_qmatrix *out) {
    memset(out, 0, sizeof *out);
    if (!dW) return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: NULL weights");
    opc_status cst = check_params(rows, cols, p);
    if (cst) return cst;

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
    float *imp = (float *)malloc((size_t)cols * sizeof *imp);
    uint32_t *cnt = NULL, *allow = NULL;
    double *num = NULL, *den = NULL;
    if (!imp) return opc_error(OPC_ERR_NOMEM, "cuda quantize: cannot allocate %lld importances", (long long)cols);

    /* Column weights exactly as the CPU path: importance normalised to mean
     * 1, floored at 1e-6. */
    {
        double mean = 0.0;
        if (p->importance)
            for (int64_t c = 0; c < cols; c++) mean += p->importance[c] > 0.0f ? p->importance[c] : 0.0f;
        mean /= (double)cols;
        for (int64_t c = 0; c < cols; c++) {
            if (!p->importance || !(mean > 0.0)) {
                imp[c] = 1.0f;
            } else {
                double v = p->importance[c] / mean;
                imp[c] = (float)(v > 1e-6 ? v : 1e-6);
            }
        }
    }
    int64_t tiny = n_out ? (int64_t)ceil(4.0 * p->outlier_frac * (double)cols) : 0;
    if (n_out && tiny < 4) tiny = 4;

    int dev = 0, n_sm = 0, per_sm = 0;
    const size_t fit_smem = (size_t)P * 8 + (((size_t)cols + 15) & ~(size_t)15) + 256;
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
                             8 * (uint64_t)rows, sstride * (uint64_t)nblk};
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
        if (!p->group_scales) d_gs = NULL;
        CU(cudaMemcpy(d_imp, imp, 4 * (size_t)cols, cudaMemcpyHostToDevice), "importance upload");

        if (p->rot_log2 > 0) {
            const int64_t b = (int64_t)1 << p->rot_log2;
            const float norm = 1.0f / sqrtf((float)b); /* as opc_cb_rotate computes it */
            k_rotate<<<(unsigned)rows, NT, (size_t)cols * 4>>>(dW, cols, p->rot_log2, norm);
            CU(cudaGetLastError(), "rotate");
        }

        fit_args A;
        memset(&A, 0, sizeof A);
        A.W = dW, A.imp = d_imp, A.rows = rows, A.cols = cols, A.ng = ng, A.k = k, A.bits = p->index_bits;
        A.method = p->method, A.rounds = p->scale_rounds > 0 ? p->scale_rounds : 3, A.P = P, A.rb = rb;
        A.cb16 = d_cb, A.idx = d_idx, A.gs = d_gs, A.err = n_out ? d_err : NULL, A.tiny = tiny;
        A.scratch = d_scr, A.scratch_stride = sstride;
        k_fit_rows<<<(unsigned)nblk, NT, fit_smem>>>(A);
        CU(cudaGetLastError(), "fit rows");
        CU(cudaDeviceSynchronize(), "fit rows");
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
            if (n_out) {
                CU(cudaMemcpy(d_rowptr, out->ol_rowptr, 4 * ((size_t)rows + 1), cudaMemcpyHostToDevice), "row pointers");
                CU(cudaMemcpy(d_allow, allow, 4 * (size_t)rows, cudaMemcpyHostToDevice), "tie allowance");
                k_compact<<<(unsigned)((rows + 7) / 8), 256>>>(d_err, rows, cols, thr, d_rowptr, d_allow, d_ocol);
                CU(cudaGetLastError(), "outlier columns");
                /* Pass 3: refit the rows that lost weights, store the deltas */
                A.err = NULL;
                A.ol_rowptr = d_rowptr, A.ol_col = d_ocol, A.ol_val = d_oval;
                k_fit_rows<<<(unsigned)nblk, NT, fit_smem>>>(A);
                CU(cudaGetLastError(), "refit rows");
                CU(cudaDeviceSynchronize(), "refit rows");
                if (p->interrupt && *p->interrupt) {
                    st = opc_error(OPC_ERR_INTERRUPTED, "quantization interrupted");
                    goto done;
                }
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
    if (ar.base) cudaFree(ar.base);
    free(imp);
    free(cnt);
    free(allow);
    free(num);
    free(den);
    if (st != OPC_OK) opc_qmatrix_free(out);
    return st;
}

opc_status opc_cuda_quantize_matrix(const float *W, int64_t rows, int64_t cols, const opc_qmatrix_params *p,
                                    opc_qmatrix *out) {
    memset(out, 0, sizeof *out);
    if (!W) return opc_error(OPC_ERR_INVALID_ARG, "cuda quantize: NULL weights");
    opc_status cst = check_params(rows, cols, p);
    if (cst) return cst;
    float *dW = NULL;
    const size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
    cudaError_t e = cudaMalloc((void **)&dW, bytes);
    if (e != cudaSuccess) return cuda_err(e, "device memory for the weights");
    e = cudaMemcpy(dW, W, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        cudaFree(dW);
        return cuda_err(e, "weights upload");
    }
    opc_status st = opc_cuda_quantize_matrix_dev(dW, rows, cols, p, out);
    cudaFree(dW);
    return st;
}
