/*
 * sample_cuda.cu — temperature / top-k / top-p sampling on the GPU
 * (sample_cuda.h), reproducing opc_sampler_sample (src/model/sampler.c).
 *
 *   k_smp_max     G blocks   block maxima of the logits (and argmax keys, greedy)
 *   k_smp_exp     G blocks   e_i = exp((l_i - max) / T), block sums in double
 *   k_smp_select  1 block    sum -> p_i = e_i * (1/sum); the candidate set
 *                            (top-k by a 3-pass radix select on p's bits, or
 *                            sampler.c's top-p cutoff prefilter); bitonic sort
 *                            by (p desc, id asc); top-p cut and the draw by
 *                            block prefix sums; publish the token.
 *
 * Why this shape: the vocabulary pass (up to 256K logits) wants many SMs, the
 * selection wants one block (block-wide barriers, no grid sync, nothing left
 * for the host); the candidate set after top-k or the prefilter is small
 * enough (tens to a few thousand) to sort in shared memory, which makes the
 * CPU's sequential order — sort, then cumulative sums from the top — cheap to
 * reproduce exactly.
 */
#include "sample_cuda.h"

#include <cuda_runtime.h>

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int kRedThreads = 256;  /* k_smp_max / k_smp_exp block size */
constexpr int kSelThreads = 1024; /* the select block: one SM, all of its scheduler slots */
constexpr int kCap = 16384;       /* candidates sorted in shared memory: 128 KiB of keys */
constexpr int kBins = 2048;       /* radix-select histogram (11-bit digits) */
constexpr int kUnroll = 8;        /* loads in flight per thread in the select block's vocabulary passes */

/* Parameters as the kernels read them (device memory, so a captured graph
 * sees new values without re-capture). Floats are computed on the host with
 * sampler.c's expressions, so they are bit-identical to the CPU's. */
struct SmpPar {
    float inv_t;    /* 1.0f / temp */
    float top_p;
    float cutoff;   /* (1 - top_p) / (n - 1): sampler.c's nucleus prefilter */
    int32_t top_k;
    int32_t greedy; /* temp <= 0: argmax, no draw */
    int32_t use_k;  /* 0 < top_k < n */
    int32_t use_p;  /* 0 < top_p < 1 */
    int32_t prefilter; /* use_p && !use_k && n > 1 */
};

/* Order-preserving key (larger value, larger key; NaN lowest) with ~index
 * below it: the u64 maximum is opc_argmax's choice (lowest id on ties). */
__device__ __forceinline__ unsigned long long arg_key(float v, int i) {
    uint32_t u = __float_as_uint(v);
    u = isnan(v) ? 0u : (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)i);
}

/* Candidate key: p >= 0, so its bits order like its value; ~id below makes a
 * descending sort the CPU's order (p desc, id asc). Never 0 (the sort pad). */
__device__ __forceinline__ unsigned long long cand_key(uint32_t pbits, int i) {
    return ((unsigned long long)pbits << 32) | (unsigned long long)(0xFFFFFFFFu - (uint32_t)i);
}
__device__ __forceinline__ int key_id(unsigned long long k) { return (int)(0xFFFFFFFFu - (uint32_t)k); }
__device__ __forceinline__ float key_p(unsigned long long k) { return __uint_as_float((uint32_t)(k >> 32)); }

/* p_i exactly as sampler.c: float e_i times float (1/sum); __fmul_rn keeps
 * the compiler from fusing it into anything else. */
__device__ __forceinline__ float prob(const float *e, float inv, int i) { return __fmul_rn(e[i], inv); }

__device__ __forceinline__ unsigned long long umax64(unsigned long long a, unsigned long long b) {
    return a > b ? a : b;
}

/* ------------------------------------------------------ vocabulary pass -- */

/* part_max[b], part_arg[b]: maximum logit and argmax key of block b's slice. */
__global__ void __launch_bounds__(kRedThreads)
    k_smp_max(const float *logits, int n, float *part_max, unsigned long long *part_arg, unsigned *ghist) {
    if (blockIdx.x == 0) /* for k_smp_exp, which runs after every block of this kernel */
        for (int b = threadIdx.x; b < kBins; b += blockDim.x) ghist[b] = 0;
    float m = -INFINITY;
    unsigned long long a = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float v = logits[i];
        m = fmaxf(m, v);
        a = umax64(a, arg_key(v, i));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        a = umax64(a, __shfl_xor_sync(0xffffffffu, a, o));
    }
    __shared__ float sm[kRedThreads / 32];
    __shared__ unsigned long long sa[kRedThreads / 32];
    if ((threadIdx.x & 31) == 0) sm[threadIdx.x >> 5] = m, sa[threadIdx.x >> 5] = a;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kRedThreads / 32; w++) m = fmaxf(m, sm[w]), a = umax64(a, sa[w]);
        part_max[blockIdx.x] = m;
        part_arg[blockIdx.x] = a;
    }
}

/* e (vocab): exp((l - max) * inv_t) as sampler.c's expf(), but evaluated in
 * double and rounded once (correctly rounded; CUDA's single-precision expf
 * may be 2 ulp off, glibc's is nearly always correctly rounded).
 * part_sum[b] = the block's sum of e in double. With top-k, ghist (zeroed
 * by k_smp_max) += the histogram of e's top 11 bits: the first radix-select
 * pass, done here by every SM instead of by the select block. Nothing to do
 * when greedy. */
__global__ void __launch_bounds__(kRedThreads)
    k_smp_exp(const float *logits, int n, const SmpPar *par, const float *part_max, int nparts, float *e,
              double *part_sum, unsigned *ghist) {
    if (par->greedy) return;
    const int use_k = par->use_k;
    __shared__ float s_mx;
    __shared__ unsigned s_hist[kBins];
    if (use_k)
        for (int b = threadIdx.x; b < kBins; b += blockDim.x) s_hist[b] = 0;
    if (threadIdx.x == 0) {
        float m = part_max[0];
        for (int b = 1; b < nparts; b++) m = fmaxf(m, part_max[b]);
        s_mx = m;
    }
    __syncthreads();
    const float mx = s_mx, inv_t = par->inv_t;
    double s = 0.0;
    const int lane = threadIdx.x & 31;
    /* whole warps iterate (i < n decides inside) so lanes can merge their
     * histogram increments */
    for (int i0 = blockIdx.x * blockDim.x; i0 < n; i0 += gridDim.x * blockDim.x) {
        const int i = i0 + (int)threadIdx.x;
        float v = 0.0f;
        if (i < n) {
            const float x = __fmul_rn(__fsub_rn(logits[i], mx), inv_t);
            v = __double2float_rn(exp((double)x));
            e[i] = v;
            s += v;
        }
        if (use_k) {
            const unsigned act = __ballot_sync(0xffffffffu, i < n);
            if (i < n) {
                const uint32_t bin = __float_as_uint(v) >> 21;
                const unsigned peers = __match_any_sync(act, bin);
                if (lane == __ffs(peers) - 1) atomicAdd(&s_hist[bin], (unsigned)__popc(peers));
            }
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    __shared__ double ss[kRedThreads / 32];
    if ((threadIdx.x & 31) == 0) ss[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kRedThreads / 32; w++) s += ss[w];
        part_sum[blockIdx.x] = s;
    }
    if (use_k) /* (the __syncthreads above also ordered the histogram) */
        for (int b = threadIdx.x; b < kBins; b += blockDim.x)
            if (s_hist[b]) atomicAdd(&ghist[b], s_hist[b]);
}

/* ------------------------------------------------------- select block -- */

/* Shared scratch of the select block (besides the dynamic key buffer). */
struct SelShared {
    unsigned hist[kBins];
    double warp[33]; /* per-warp partials; [32] = block total */
    int i0, i1;      /* small results broadcast to the block */
    unsigned cnt;
    float inv;
    float u;
};

/* Exclusive prefix sum over the block of one double per thread (thread
 * order); *total = the block's sum. Every thread must call it. */
__device__ double block_excl_scan(double x, double *total, SelShared *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    double inc = x;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o) inc += y;
    }
    double ex = __shfl_up_sync(0xffffffffu, inc, 1);
    if (lane == 0) ex = 0.0;
    __syncthreads(); /* sh->warp may still be read by a previous call */
    if (lane == 31) sh->warp[w] = inc;
    __syncthreads();
    if (w == 0) {
        const double v = lane < kSelThreads / 32 ? sh->warp[lane] : 0.0;
        double vi = v;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const double y = __shfl_up_sync(0xffffffffu, vi, o);
            if (lane >= o) vi += y;
        }
        double vx = __shfl_up_sync(0xffffffffu, vi, 1);
        if (lane == 0) vx = 0.0;
        __syncwarp();
        sh->warp[lane] = vx;
        if (lane == 31) sh->warp[32] = vi;
    }
    __syncthreads();
    *total = sh->warp[32];
    return sh->warp[w] + ex;
}

/* Values of a sequence the prefix sums run over. */
struct VocabP { /* p_i in token order */
    const float *e;
    float inv;
    __device__ double operator()(int i) const { return (double)prob(e, inv, i); }
};
struct KeyP { /* p of the i-th sorted candidate */
    const unsigned long long *k;
    __device__ double operator()(int i) const { return (double)key_p(k[i]); }
};
struct KeyQ { /* p / total, as sampler.c's top-p loop adds them */
    const unsigned long long *k;
    double total;
    __device__ double operator()(int i) const { return (double)key_p(k[i]) / total; }
};

/* The first i < m where the running sum v(0) + ... + v(i) satisfies
 * thr < sum (strict) or sum >= thr, and the sum of all m values. The thr
 * callback gets the total first (the draw scales u by it). Each thread
 * sums a contiguous range, so the ranges' offsets come from one block scan.
 * Returns -1 when no prefix qualifies (sampler.c then takes the last). */
template <class V, class Thr>
__device__ int first_cross(const V &v, int m, Thr thr_of_total, int strict, double *total_out, SelShared *sh) {
    const int per = (m + kSelThreads - 1) / kSelThreads;
    const int lo = min(m, (int)threadIdx.x * per), hi = min(m, lo + per);
    double loc = 0.0;
#pragma unroll 8
    for (int i = lo; i < hi; i++) loc += v(i);
    double total;
    double cum = block_excl_scan(loc, &total, sh);
    const double thr = thr_of_total(total);
    if (threadIdx.x == 0) sh->i0 = INT_MAX;
    __syncthreads();
    for (int i = lo; i < hi; i++) {
        cum += v(i);
        if (strict ? thr < cum : cum >= thr) {
            atomicMin(&sh->i0, i);
            break;
        }
    }
    __syncthreads();
    const int r = sh->i0;
    __syncthreads();
    if (total_out) *total_out = total;
    return r == INT_MAX ? -1 : r;
}

struct ThrConst {
    double t;
    __device__ double operator()(double) const { return t; }
};
struct ThrScaled { /* r = u * total, as sampler.c's draw */
    float u;
    __device__ double operator()(double total) const { return (double)u * total; }
};

/* Bits of the k-th largest e (1 <= k <= n), by radix select over e's bits
 * (e >= 0: its bits order like its value) in three digits of 11, 11 and 10
 * bits: ghist is the first digit's histogram (k_smp_exp); each later pass
 * histograms the tokens whose higher bits match the digits chosen so far.
 * Because p = fl(e * inv) never decreases with e, the k-th largest p is
 * fl(e_k * inv): the top-k cut in p follows from this one. */
__device__ uint32_t kth_largest_bits(const float *e, int n, int k, const unsigned *ghist, SelShared *sh) {
    uint32_t prefix = 0, mask = 0;
    int need = k;
    const int lane = threadIdx.x & 31;
    for (int ps = 0; ps < 3; ps++) {
        const int sh_ = ps == 0 ? 21 : ps == 1 ? 10 : 0, nb = ps == 2 ? 1024 : 2048;
        for (int b = threadIdx.x; b < kBins; b += kSelThreads) sh->hist[b] = ps == 0 ? ghist[b] : 0u;
        __syncthreads();
        /* kUnroll loads in flight per thread (one block reads the whole
         * vocabulary from L2: latency-bound otherwise); whole warps iterate,
         * so lanes merge their increments (a near-flat distribution puts most
         * tokens in one bin, and 32 atomics on one shared address serialise) */
        for (int i0 = 0; ps > 0 && i0 < n; i0 += kSelThreads * kUnroll) {
            uint32_t bv[kUnroll];
#pragma unroll
            for (int j = 0; j < kUnroll; j++) {
                const int i = i0 + j * kSelThreads + (int)threadIdx.x;
                bv[j] = i < n ? __float_as_uint(e[i]) : 0u;
            }
#pragma unroll
            for (int j = 0; j < kUnroll; j++) {
                const int i = i0 + j * kSelThreads + (int)threadIdx.x;
                const bool in = i < n && (bv[j] & mask) == prefix;
                const unsigned act = __ballot_sync(0xffffffffu, in);
                if (in) {
                    const uint32_t bin = (bv[j] >> sh_) & (uint32_t)(nb - 1);
                    const unsigned peers = __match_any_sync(act, bin);
                    if (lane == __ffs(peers) - 1) atomicAdd(&sh->hist[bin], (unsigned)__popc(peers));
                }
            }
        }
        __syncthreads();
        /* digits from the top: thread t holds d0 = nb-1-2t and d1 = d0-1 */
        const int d0 = nb - 1 - 2 * (int)threadIdx.x, d1 = d0 - 1;
        const double h0 = d0 >= 0 ? (double)sh->hist[d0] : 0.0, h1 = d1 >= 0 ? (double)sh->hist[d1] : 0.0;
        double tot;
        const double before = block_excl_scan(h0 + h1, &tot, sh); /* counts above d0: exact in double */
        if (before < need && before + h0 >= need)
            sh->i0 = d0, sh->i1 = (int)before;
        else if (before + h0 < need && before + h0 + h1 >= need)
            sh->i0 = d1, sh->i1 = (int)(before + h0);
        __syncthreads();
        const int d = sh->i0;
        need -= sh->i1;
        prefix |= (uint32_t)d << sh_;
        mask |= (uint32_t)(nb - 1) << sh_;
        __syncthreads();
    }
    return prefix;
}

/* Keys of every token with bits(p) >= thr into keys (unordered); returns the count. */
__device__ int compact(const float *e, float inv, int n, uint32_t thr, unsigned long long *keys, SelShared *sh) {
    if (threadIdx.x == 0) sh->cnt = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    for (int i0 = 0; i0 < n; i0 += kSelThreads * kUnroll) { /* as kth_largest_bits; one slot reservation per warp */
        uint32_t bv[kUnroll];
#pragma unroll
        for (int j = 0; j < kUnroll; j++) {
            const int i = i0 + j * kSelThreads + (int)threadIdx.x;
            bv[j] = i < n ? __float_as_uint(prob(e, inv, i)) : 0u;
        }
#pragma unroll
        for (int j = 0; j < kUnroll; j++) {
            const int i = i0 + j * kSelThreads + (int)threadIdx.x;
            const bool in = i < n && bv[j] >= thr;
            const unsigned act = __ballot_sync(0xffffffffu, in);
            unsigned base = 0;
            if (lane == 0 && act) base = atomicAdd(&sh->cnt, (unsigned)__popc(act));
            base = __shfl_sync(0xffffffffu, base, 0);
            if (in) keys[base + (unsigned)__popc(act & ((1u << lane) - 1u))] = cand_key(bv[j], i);
        }
    }
    __syncthreads();
    const int c = (int)sh->cnt;
    __syncthreads();
    return c;
}

/* Bitonic sort of keys[0, P) descending (P a power of two), by the block.
 * keys may be shared or global memory: __syncthreads orders both. Each
 * stage is P/2 compare-exchanges of pairs (i, i + j); a thread takes up to
 * 4 pairs at once, so a large set in global memory (L2) has 8 loads in
 * flight per thread rather than 2. */
__device__ void bitonic_desc(unsigned long long *keys, int P) {
    const int half = P >> 1;
    for (int k = 2; k <= P; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int q0 = 0; q0 < half; q0 += 4 * kSelThreads) {
                int lo[4];
                unsigned long long a[4], b[4];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const int q = q0 + u * kSelThreads + (int)threadIdx.x;
                    lo[u] = q < half ? (q / j) * 2 * j + q % j : -1; /* the pair's lower index: bit j clear */
                    if (lo[u] >= 0) a[u] = keys[lo[u]], b[u] = keys[lo[u] + j];
                }
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    if (lo[u] < 0) continue;
                    const bool desc = (lo[u] & k) == 0;
                    if (desc ? a[u] < b[u] : a[u] > b[u]) keys[lo[u]] = b[u], keys[lo[u] + j] = a[u];
                }
            }
            __syncthreads();
        }
}

/* The pick. One block of kSelThreads; dynamic shared memory: kCap keys. */
__global__ void __launch_bounds__(kSelThreads, 1)
    k_smp_select(int n, const SmpPar *par, const unsigned long long *part_arg, const double *part_sum, int nparts,
                 const float *e, const unsigned *ghist, unsigned long long *gkeys, unsigned long long *rng, int32_t *io,
                 int32_t *out, int32_t *step) {
    extern __shared__ unsigned long long s_keys[];
    __shared__ SelShared sh;
    const SmpPar P = *par;
    int tok;
    if (P.greedy) {
        if (threadIdx.x == 0) {
            unsigned long long a = 0;
            for (int b = 0; b < nparts; b++) a = umax64(a, part_arg[b]);
            sh.i0 = key_id(a);
        }
        __syncthreads();
        tok = sh.i0;
    } else {
        if (threadIdx.x == 0) {
            double s = 0.0;
            for (int b = 0; b < nparts; b++) s += part_sum[b];
            sh.inv = (float)(1.0 / s);
            /* opc_sampler_uniform: xorshift64*, 24 random bits */
            unsigned long long x = *rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            *rng = x;
            sh.u = (float)((x * 0x2545f4914f6cdd1dull) >> 40) * (1.0f / 16777216.0f);
        }
        __syncthreads();
        const float inv = sh.inv, u = sh.u;
        if (!P.use_k && !P.use_p) { /* no sort: the draw runs over the vocabulary in token order */
            const int i = first_cross(VocabP{e, inv}, n, ThrScaled{u}, 1, NULL, &sh);
            tok = i < 0 ? n - 1 : i;
        } else {
            uint32_t thr = 0;
            if (P.use_k) { /* p's k-th largest value: fl(e_k * inv) (see kth_largest_bits) */
                const float ek = __uint_as_float(kth_largest_bits(e, n, P.top_k, ghist, &sh));
                thr = __float_as_uint(__fmul_rn(ek, inv));
            }
            else if (P.prefilter)
                thr = __float_as_uint(P.cutoff);
            int nc = compact(e, inv, n, thr, gkeys, &sh);
            if (nc == 0) nc = compact(e, inv, n, 0u, gkeys, &sh); /* sampler.c's empty-prefilter fallback */
            int pw = 1;
            while (pw < nc) pw <<= 1;
            unsigned long long *keys = gkeys;
            if (pw <= kCap) { /* small set: sort in shared memory */
                keys = s_keys;
                for (int i = threadIdx.x; i < pw; i += kSelThreads) s_keys[i] = i < nc ? gkeys[i] : 0ull;
            } else {
                for (int i = nc + (int)threadIdx.x; i < pw; i += kSelThreads) gkeys[i] = 0ull;
            }
            __syncthreads();
            bitonic_desc(keys, pw);
            int m = P.use_k && nc > P.top_k ? P.top_k : nc;
            if (P.use_p) {
                double total;
                first_cross(KeyP{keys}, m, ThrConst{0.0}, 1, &total, &sh); /* only the total */
                const int last = first_cross(KeyQ{keys, total}, m, ThrConst{(double)P.top_p}, 0, NULL, &sh);
                if (last >= 0) m = last + 1;
            }
            const int i = first_cross(KeyP{keys}, m, ThrScaled{u}, 1, NULL, &sh);
            tok = key_id(keys[i < 0 ? m - 1 : i]);
        }
    }
    if (threadIdx.x == 0) {
        if (out) out[step ? *step : 0] = tok;
        if (step) *step += 1;
        if (io) io[0] += 1, io[1] = tok;
    }
}

} // namespace

/* ================================================================ host === */

struct opc_cuda_sampler {
    int32_t vocab, nparts;
    int64_t nkeys;               /* power of two >= vocab */
    float *e;                    /* device (vocab) */
    unsigned long long *keys;    /* device (nkeys) candidate keys */
    float *part_max;             /* device (nparts) */
    unsigned long long *part_arg;/* device (nparts) */
    double *part_sum;            /* device (nparts) */
    unsigned *hist;              /* device (kBins): first radix digit of e, top-k */
    SmpPar *par;                 /* device (1) */
    unsigned long long *rng;     /* device (1) */
    float *logits_in;            /* device (vocab): opc_cuda_sample_host's input */
    int32_t *tok;                /* device (1): opc_cuda_sample_host's output */
    uint64_t bytes;
};

static opc_status smp_err(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "cuda sampler: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" void opc_cuda_sampler_free(opc_cuda_sampler *s) {
    if (!s) return;
    void *ps[] = {s->e, s->keys, s->part_max, s->part_arg, s->part_sum, s->hist, s->par, s->rng, s->logits_in, s->tok};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        if (ps[i]) cudaFree(ps[i]);
    free(s);
}

extern "C" opc_status opc_cuda_sampler_init(opc_cuda_sampler **out, int32_t vocab) {
    *out = NULL;
    if (vocab <= 0 || vocab > (1 << 30))
        return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: vocabulary size %d out of range", vocab);
    opc_cuda_sampler *s = (opc_cuda_sampler *)calloc(1, sizeof *s);
    if (!s) return opc_error(OPC_ERR_NOMEM, "cuda sampler: cannot allocate handle");
    s->vocab = vocab;
    /* ~8 logits per thread of 256; a 256K vocabulary uses 128 blocks */
    int np = (vocab + 2047) / 2048;
    s->nparts = np < 1 ? 1 : np > 128 ? 128 : np;
    s->nkeys = 1;
    while (s->nkeys < vocab) s->nkeys <<= 1;
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } bufs[] = {{(void **)&s->e, (size_t)vocab * 4, "exp values"},
                {(void **)&s->keys, (size_t)s->nkeys * 8, "candidate keys"},
                {(void **)&s->part_max, (size_t)s->nparts * 4, "block maxima"},
                {(void **)&s->part_arg, (size_t)s->nparts * 8, "block argmax"},
                {(void **)&s->part_sum, (size_t)s->nparts * 8, "block sums"},
                {(void **)&s->hist, (size_t)kBins * 4, "histogram"},
                {(void **)&s->par, sizeof(SmpPar), "parameters"},
                {(void **)&s->rng, 8, "PRNG state"},
                {(void **)&s->logits_in, (size_t)vocab * 4, "logits"},
                {(void **)&s->tok, 4, "token"}};
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0] && e == cudaSuccess; i++) {
        e = cudaMalloc(bufs[i].p, bufs[i].bytes);
        if (e != cudaSuccess) {
            *bufs[i].p = NULL;
            opc_cuda_sampler_free(s);
            return smp_err(e, bufs[i].what);
        }
        s->bytes += bufs[i].bytes;
    }
    /* opt in to the key buffer's 128 KiB of shared memory (here, never
     * during a graph capture) */
    e = cudaFuncSetAttribute(k_smp_select, cudaFuncAttributeMaxDynamicSharedMemorySize, kCap * 8);
    if (e != cudaSuccess) {
        opc_cuda_sampler_free(s);
        return smp_err(e, "select kernel shared memory");
    }
    *out = s;
    return OPC_OK;
}

extern "C" uint64_t opc_cuda_sampler_bytes(const opc_cuda_sampler *s) { return s ? s->bytes : 0; }

extern "C" opc_status opc_cuda_sampler_set(opc_cuda_sampler *s, const opc_sampler_params *p, uint64_t rng,
                                           opc_cuda_stream stream) {
    if (!s || !p) return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: no sampler or parameters");
    const int32_t n = s->vocab;
    SmpPar h;
    memset(&h, 0, sizeof h);
    h.greedy = p->temp <= 0.0f;
    h.inv_t = h.greedy ? 0.0f : 1.0f / p->temp;
    h.top_k = p->top_k;
    h.top_p = p->top_p;
    h.use_k = p->top_k > 0 && p->top_k < n;
    h.use_p = p->top_p > 0.0f && p->top_p < 1.0f;
    h.prefilter = h.use_p && !h.use_k && n > 1;
    h.cutoff = h.prefilter ? (1.0f - p->top_p) / (float)(n - 1) : 0.0f;
    if (rng == 0) /* opc_sampler_init never leaves 0: xorshift would stay at 0 */
        return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: PRNG state 0");
    /* pageable sources: both copies have read the host values when they return */
    cudaError_t e = cudaMemcpyAsync(s->par, &h, sizeof h, cudaMemcpyHostToDevice, stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(s->rng, &rng, 8, cudaMemcpyHostToDevice, stream);
    return e == cudaSuccess ? OPC_OK : smp_err(e, "parameter upload");
}

extern "C" opc_status opc_cuda_sampler_pick(opc_cuda_sampler *s, const float *d_logits, int32_t *io, int32_t *out,
                                            int32_t *step, opc_cuda_stream stream) {
    if (!s || !d_logits) return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: no sampler or logits");
    k_smp_max<<<s->nparts, kRedThreads, 0, stream>>>(d_logits, s->vocab, s->part_max, s->part_arg, s->hist);
    k_smp_exp<<<s->nparts, kRedThreads, 0, stream>>>(d_logits, s->vocab, s->par, s->part_max, s->nparts, s->e,
                                                      s->part_sum, s->hist);
    k_smp_select<<<1, kSelThreads, kCap * 8, stream>>>(s->vocab, s->par, s->part_arg, s->part_sum, s->nparts, s->e,
                                                        s->hist, s->keys, s->rng, io, out, step);
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? OPC_OK : smp_err(e, "pick launch");
}

extern "C" opc_status opc_cuda_sampler_get_rng(opc_cuda_sampler *s, uint64_t *rng, opc_cuda_stream stream) {
    if (!s || !rng) return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: no sampler or output");
    const cudaError_t e = cudaMemcpyAsync(rng, s->rng, 8, cudaMemcpyDeviceToHost, stream);
    return e == cudaSuccess ? OPC_OK : smp_err(e, "PRNG state download");
}

extern "C" opc_status opc_cuda_sample_host(opc_cuda_sampler *s, const float *logits, const opc_sampler_params *p,
                                           uint64_t *rng, int32_t *tok) {
    if (!s || !logits || !p || !rng || !tok)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda sampler: missing argument");
    opc_status st = opc_cuda_sampler_set(s, p, *rng, NULL);
    if (st != OPC_OK) return st;
    cudaError_t e = cudaMemcpy(s->logits_in, logits, (size_t)s->vocab * 4, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return smp_err(e, "logits upload");
    if ((st = opc_cuda_sampler_pick(s, s->logits_in, NULL, s->tok, NULL, NULL)) != OPC_OK) return st;
    if ((e = cudaMemcpy(tok, s->tok, 4, cudaMemcpyDeviceToHost)) != cudaSuccess) return smp_err(e, "token download");
    if ((e = cudaMemcpy(rng, s->rng, 8, cudaMemcpyDeviceToHost)) != cudaSuccess)
        return smp_err(e, "PRNG state download");
    return OPC_OK;
}
