/*
 * forward.c — CPU reference forward pass of a Llama-family decoder.
 *
 *   x = embed(tokens)                                      (T, dim)
 *   per layer l:
 *     h = rmsnorm(x) · attn_norm
 *     q = h Wqᵀ (+bq), k = h Wkᵀ (+bk), v = h Wvᵀ (+bv)    rotate-half RoPE on q, k
 *     k, v appended to the layer's KV cache at pos..pos+T-1
 *     a = causal GQA softmax(q kᵀ / sqrt(head_dim)) v      (T, n_heads*head_dim)
 *     x += a Woᵀ
 *     h = rmsnorm(x) · ffn_norm
 *     x += (silu(h Wgateᵀ) * (h Wupᵀ)) Wdownᵀ
 *   logits = rmsnorm(x) · output_norm · Woutᵀ               (T, vocab) or last row only
 *
 * Sections: dispatch + kernels (fp32 and fp16-weight matmul, dot, axpy),
 * weight preparation (dequantize at init, or views of f32/f16/codebook data),
 * RoPE tables, init/free, the forward pass.
 *
 * No external BLAS: the blocked AVX2 kernel below ran a SmolLM2 ctx-512
 * perplexity pass at 582 tok/s on the 2-core dev VM (~0.24 GFLOP per token:
 * ~140 GFLOP/s, roughly 60% of two Zen 4 cores' fp32 FMA peak), decode
 * is bound by reading the fp32 weights, and Debian's OpenBLAS would add a
 * build dependency (and its own thread pool fighting OpenMP's) for at most
 * the remaining prefill headroom.
 */
#include "forward.h"

#include "../core/cpu_features.h"
#include "../cpu/cpu.h"
#include "../core/half.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPC_X86 1
#else
#define OPC_X86 0
#endif

/* ================================================================ kernels == */

/* Instruction set chosen once at run time (the library is built for plain
 * x86-64; the AVX2 bodies carry their own target attribute). */
static int g_have_avx2 = -1;

static void detect_isa(void) {
    if (g_have_avx2 >= 0) return;
    /* core's detection also checks that the OS saves YMM state */
    g_have_avx2 = OPC_X86 && opc_cpu_has_avx2();
}

/* ---- scalar reference versions (any CPU; also the tails of the SIMD ones) */

static float dot_scalar(const float *a, const float *b, int64_t n) {
    /* four partial sums: same association as a 4-wide vector, and it lets the
     * compiler keep the adds in flight */
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void axpy_scalar(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* Y[t*ldy + r] = W[r] · X[t] for r in [r0,r1), t in [t0,t1). */
static void mm_block_scalar(const float *W, int64_t r0, int64_t r1, int64_t cols,
                            const float *X, int64_t t0, int64_t t1, float *Y, int64_t ldy) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = r0; r < r1; r++)
            Y[t * ldy + r] = dot_scalar(W + r * cols, X + t * cols, cols);
}

/* fp16 weight row · fp32 activations; same association as dot_scalar. */
static float dot_f16_scalar(const uint16_t *w, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += opc_fp16_to_fp32(w[i]) * x[i];
        s1 += opc_fp16_to_fp32(w[i + 1]) * x[i + 1];
        s2 += opc_fp16_to_fp32(w[i + 2]) * x[i + 2];
        s3 += opc_fp16_to_fp32(w[i + 3]) * x[i + 3];
    }
    for (; i < n; i++) s0 += opc_fp16_to_fp32(w[i]) * x[i];
    return (s0 + s1) + (s2 + s3);
}

static void mm_block_f16_scalar(const uint16_t *W, int64_t r0, int64_t r1, int64_t cols,
                                const float *X, int64_t t0, int64_t t1, float *Y, int64_t ldy) {
    for (int64_t t = t0; t < t1; t++)
        for (int64_t r = r0; r < r1; r++)
            Y[t * ldy + r] = dot_f16_scalar(W + r * cols, X + t * cols, cols);
}

#if OPC_X86
/* ---- AVX2 + FMA versions */

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b,
                                                          int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x,
                                                          int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* Register tile: 4 weight rows x 3 tokens = 12 accumulators + 3 activation
 * vectors + 1 weight vector = the 16 ymm registers AVX2 has. Each weight
 * load feeds 3 FMAs and each activation load 4, which keeps the loop
 * FMA-bound instead of load-bound for prefill.
 * One body for fp32 and fp16 weights: only the weight load (LOADW: 8 weights
 * at p -> __m256) and the scalar tail's conversion (WTOF) differ; DOT is the
 * matching single-row dot product for the row tail. */
#define MM_BLOCK_AVX2(NAME, TARGET, WT, LOADW, WTOF, DOT)                                          \
    __attribute__((target(TARGET))) static void NAME(const WT *W, int64_t r0, int64_t r1, int64_t cols,\
                                                     const float *X, int64_t t0, int64_t t1, float *Y,\
                                                     int64_t ldy) {                                \
    const int64_t c8 = cols & ~(int64_t)7;                                                         \
    int64_t r = r0;                                                                                \
    for (; r + 4 <= r1; r += 4) {                                                                  \
        const WT *w0 = W + r * cols, *w1 = w0 + cols, *w2 = w1 + cols, *w3 = w2 + cols;            \
        int64_t t = t0;                                                                            \
        for (; t + 3 <= t1; t += 3) {                                                              \
            const float *x0 = X + t * cols, *x1 = x0 + cols, *x2 = x1 + cols;                      \
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00,          \
                   a12 = a00, a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;    \
            for (int64_t c = 0; c < c8; c += 8) {                                                  \
                __m256 v0 = _mm256_loadu_ps(x0 + c), v1 = _mm256_loadu_ps(x1 + c),                 \
                       v2 = _mm256_loadu_ps(x2 + c);                                               \
                __m256 w = LOADW(w0 + c);                                                          \
                a00 = _mm256_fmadd_ps(w, v0, a00);                                                 \
                a01 = _mm256_fmadd_ps(w, v1, a01);                                                 \
                a02 = _mm256_fmadd_ps(w, v2, a02);                                                 \
                w = LOADW(w1 + c);                                                                 \
                a10 = _mm256_fmadd_ps(w, v0, a10);                                                 \
                a11 = _mm256_fmadd_ps(w, v1, a11);                                                 \
                a12 = _mm256_fmadd_ps(w, v2, a12);                                                 \
                w = LOADW(w2 + c);                                                                 \
                a20 = _mm256_fmadd_ps(w, v0, a20);                                                 \
                a21 = _mm256_fmadd_ps(w, v1, a21);                                                 \
                a22 = _mm256_fmadd_ps(w, v2, a22);                                                 \
                w = LOADW(w3 + c);                                                                 \
                a30 = _mm256_fmadd_ps(w, v0, a30);                                                 \
                a31 = _mm256_fmadd_ps(w, v1, a31);                                                 \
                a32 = _mm256_fmadd_ps(w, v2, a32);                                                 \
            }                                                                                      \
            float s[4][3] = {{hsum256(a00), hsum256(a01), hsum256(a02)},                           \
                             {hsum256(a10), hsum256(a11), hsum256(a12)},                           \
                             {hsum256(a20), hsum256(a21), hsum256(a22)},                           \
                             {hsum256(a30), hsum256(a31), hsum256(a32)}};                          \
            const WT *ws[4] = {w0, w1, w2, w3};                                                    \
            const float *xs[3] = {x0, x1, x2};                                                     \
            for (int i = 0; i < 4; i++)                                                            \
                for (int j = 0; j < 3; j++) {                                                      \
                    float acc = s[i][j];                                                           \
                    for (int64_t c = c8; c < cols; c++) acc += WTOF(ws[i][c]) * xs[j][c];          \
                    Y[(t + j) * ldy + r + i] = acc;                                                \
                }                                                                                  \
        }                                                                                          \
        /* token tail: 4 rows x 1 token (decode lands here) */                                     \
        for (; t < t1; t++) {                                                                      \
            const float *x0 = X + t * cols;                                                        \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                            \
            for (int64_t c = 0; c < c8; c += 8) {                                                  \
                __m256 v = _mm256_loadu_ps(x0 + c);                                                \
                a0 = _mm256_fmadd_ps(LOADW(w0 + c), v, a0);                                        \
                a1 = _mm256_fmadd_ps(LOADW(w1 + c), v, a1);                                        \
                a2 = _mm256_fmadd_ps(LOADW(w2 + c), v, a2);                                        \
                a3 = _mm256_fmadd_ps(LOADW(w3 + c), v, a3);                                        \
            }                                                                                      \
            float s[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};                     \
            const WT *ws[4] = {w0, w1, w2, w3};                                                    \
            for (int i = 0; i < 4; i++) {                                                          \
                float acc = s[i];                                                                  \
                for (int64_t c = c8; c < cols; c++) acc += WTOF(ws[i][c]) * x0[c];                 \
                Y[t * ldy + r + i] = acc;                                                          \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    /* row tail */                                                                                 \
    for (; r < r1; r++)                                                                            \
        for (int64_t t = t0; t < t1; t++) Y[t * ldy + r] = DOT(W + r * cols, X + t * cols, cols);  \
}

#define F32_ID(v) (v)
MM_BLOCK_AVX2(mm_block_avx2, "avx2,fma", float, _mm256_loadu_ps, F32_ID, dot_avx2)

/* ---- AVX2 + FMA + F16C versions for fp16 weights: the same register tile as
 * mm_block_avx2, with each weight vector loaded as 8 halves (16 bytes) and
 * widened by vcvtph2ps. Decode is bound by the bytes read, so reading half of
 * them is the whole point; the conversion is one extra uop per weight load,
 * shared by the 3 (or 1) FMAs that use it. */

/* 8 fp16 values at p (unaligned) -> 8 floats */
__attribute__((target("avx2,fma,f16c"))) static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

__attribute__((target("avx2,fma,f16c"))) static float dot_f16_avx2(const uint16_t *w,
                                                                   const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(load_f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16x8(w + i), _mm256_loadu_ps(x + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += opc_fp16_to_fp32(w[i]) * x[i];
    return s;
}

MM_BLOCK_AVX2(mm_block_f16_avx2, "avx2,fma,f16c", uint16_t, load_f16x8, opc_fp16_to_fp32, dot_f16_avx2)
#endif

static float dot_f32(const float *a, const float *b, int64_t n) {
#if OPC_X86
    if (g_have_avx2) return dot_avx2(a, b, n);
#endif
    return dot_scalar(a, b, n);
}

static void axpy_f32(float *y, float a, const float *x, int64_t n) {
#if OPC_X86
    if (g_have_avx2) {
        axpy_avx2(y, a, x, n);
        return;
    }
#endif
    axpy_scalar(y, a, x, n);
}

/* Work item = MM_RB rows of W (4 register tiles; 37-98 KB of fp32 for
 * SmolLM2's 576/1536 columns) against a tile of MM_TT tokens of X (216-576 KB):
 * together they fit a 1 MB L2, so each weight row block is read from memory
 * once per token tile and each activation tile once per row block. */
#define MM_RB 16
#define MM_TT 96

void opc_matmul(const opc_weight *w, const float *X, int64_t T, float *Y, int n_threads) {
    if (w->type == OPC_TYPE_CB2 || w->type == OPC_TYPE_CB4) {
        /* The CPU-kernels dispatcher (src/cpu) picks the kernel; the caller's
         * thread count still applies (generate/perplexity/benchmark --threads). */
        opc_cb_matmul_impl(OPC_CB_IMPL_AUTO, w->cb, X, T, Y, n_threads);
        return;
    }
    OPC_ASSERT((w->type == OPC_TYPE_F32 && w->f32) || (w->type == OPC_TYPE_F16 && w->f16));
    detect_isa();
    const float *W = w->f32;
    const uint16_t *W16 = w->type == OPC_TYPE_F16 ? w->f16 : NULL;
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t nrb = (rows + MM_RB - 1) / MM_RB;
    const int use_avx2 = g_have_avx2;
    int nth = n_threads > 0 ? n_threads : omp_get_max_threads();
    /* Below ~256K multiply-adds (~30 us on one core) a fork/join costs more
     * than it saves, and on an oversubscribed machine a barrier can wait
     * milliseconds for a descheduled thread (stories260K, small k/v matrices). */
    if (rows * cols * T < (1 << 18)) nth = 1;
    /* Token tiles outside, row blocks inside: a tile of X stays in L2 while
     * every row block of W streams past it. */
#pragma omp parallel num_threads(nth)
    for (int64_t t0 = 0; t0 < T; t0 += MM_TT) {
        int64_t t1 = t0 + MM_TT < T ? t0 + MM_TT : T;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nrb; b++) {
            int64_t r0 = b * MM_RB, r1 = r0 + MM_RB < rows ? r0 + MM_RB : rows;
            if (W16) {
#if OPC_X86
                if (use_avx2) {
                    mm_block_f16_avx2(W16, r0, r1, cols, X, t0, t1, Y, rows);
                    continue;
                }
#endif
                mm_block_f16_scalar(W16, r0, r1, cols, X, t0, t1, Y, rows);
                continue;
            }
#if OPC_X86
            if (use_avx2) {
                mm_block_avx2(W, r0, r1, cols, X, t0, t1, Y, rows);
                continue;
            }
#endif
            mm_block_scalar(W, r0, r1, cols, X, t0, t1, Y, rows);
        }
    }
}

/* ======================================================== the handle ===== */

enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_COUNT };
static const char *const g_wname[W_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_gate", "ffn_up", "ffn_down"};

typedef struct fwd_layer {
    opc_weight w[W_COUNT];
    char name[W_COUNT][OPC_MAX_NAME]; /* canonical weight names, for the hook */
    const float *attn_norm, *ffn_norm; /* (dim) */
    const float *bq, *bk, *bv;         /* (q_dim), (kv_dim), (kv_dim) or NULL */
} fwd_layer;

struct opc_forward {
    const opc_model_desc *d;
    opc_config cfg;
    int32_t ctx, max_batch, n_threads;
    int32_t q_dim, kv_dim;
    int f16_as_f32; /* OPC_F16_AS_F32=1: expand F16 weights at init (old path, A/B timing) */

    /* token embedding (vocab, dim): fp32 rows, or a quantized tensor from
     * which single rows are dequantized on lookup */
    const opc_tensor *embd;
    const float *embd_f32;
    uint64_t embd_row_bytes;
    opc_weight head; /* output head (vocab, dim) */
    const float *out_norm;
    fwd_layer *layers; /* (n_layers) */

    /* owned fp32 copies of dequantized weights */
    void **owned;
    int32_t n_owned, cap_owned;
    opc_forward_mem mem;

    float *rope_cos, *rope_sin; /* (ctx, head_dim/2) */
    float *kcache, *vcache;     /* (n_layers, ctx, kv_dim) */

    /* activations for one slice of up to max_batch tokens */
    float *x;       /* (B, dim) residual stream */
    float *xb;      /* (B, dim) normed input of the next linear layers */
    float *q;       /* (B, q_dim) */
    float *att_out; /* (B, q_dim) */
    float *xo;      /* (B, dim) output of attn_output / ffn_down before the residual add */
    float *hb, *hb2;/* (B, hidden_dim) */
    float *att;     /* (n_threads, ctx) attention scores, one row per thread */
    float *xrot;    /* (B, max(dim, q_dim, hidden_dim)) rotated input of a rotated codebook weight */
    const float *xrot_src; /* the X that xrot was made from, with xrot_log2 and xrot_n */
    int32_t xrot_log2;
    int64_t xrot_n;

    opc_act_hook hook;
    void *hook_user;
};

static opc_status own(opc_forward *f, void *p) {
    if (f->n_owned == f->cap_owned) {
        int32_t cap = f->cap_owned ? 2 * f->cap_owned : 64;
        void **n = realloc(f->owned, (size_t)cap * sizeof *n);
        if (!n) {
            opc_aligned_free(p);
            return opc_error(OPC_ERR_NOMEM, "forward: cannot grow buffer list");
        }
        f->owned = n;
        f->cap_owned = cap;
    }
    f->owned[f->n_owned++] = p;
    return OPC_OK;
}

static float *alloc_f32(opc_forward *f, uint64_t n, const char *what, opc_status *st) {
    uint64_t bytes;
    *st = OPC_OK;
    if (!opc_mul_ok(n, sizeof(float), &bytes) || bytes > (uint64_t)SIZE_MAX) {
        *st = opc_error(OPC_ERR_NOMEM, "forward: %s: size overflows", what);
        return NULL;
    }
    float *p = opc_aligned_alloc((size_t)bytes);
    if (!p) {
        *st = opc_error(OPC_ERR_NOMEM, "forward: cannot allocate %llu bytes for %s",
                        (unsigned long long)bytes, what);
        return NULL;
    }
    *st = own(f, p);
    return *st == OPC_OK ? p : NULL;
}

/* Dequantize a (rows, cols) block-typed tensor to an owned fp32 buffer,
 * checking that the data covers rows whole rows of the type. */
static opc_status dequant_matrix(opc_forward *f, const opc_tensor *t, int64_t rows, int64_t cols,
                                 const float **out) {
    const opc_type_traits *tr = opc_type_get(t->type);
    if (!tr || !tr->to_float)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: type %s has no dequantizer",
                         f->d->path, t->name, tr ? tr->name : "?");
    uint64_t rb, need;
    opc_status st = opc_type_row_bytes(t->type, cols, &rb);
    if (st != OPC_OK) return opc_error_wrap(st, "%s: tensor %s: ", f->d->path, t->name);
    if (!opc_mul_ok(rb, (uint64_t)rows, &need) || need > t->nbytes || !t->data)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: %llu data bytes, need %llu for (%lld, %lld) %s",
                         f->d->path, t->name, (unsigned long long)t->nbytes,
                         (unsigned long long)need, (long long)rows, (long long)cols, tr->name);
    float *dst = alloc_f32(f, (uint64_t)rows * (uint64_t)cols, t->name, &st);
    if (!dst) return st;
    const uint8_t *src = t->data;
    if (t->type == OPC_TYPE_F32) {
        memcpy(dst, src, (size_t)rows * (size_t)cols * sizeof(float));
    } else {
#pragma omp parallel for num_threads(f->n_threads) schedule(static)
        for (int64_t r = 0; r < rows; r++) tr->to_float(src + (uint64_t)r * rb, dst + r * cols, cols);
    }
    f->mem.weights_f32 += (uint64_t)rows * (uint64_t)cols * sizeof(float);
    *out = dst;
    return OPC_OK;
}

/* fp32 view of a tensor: in place when it is f32 and 4-byte aligned,
 * otherwise an owned dequantized copy. */
static opc_status f32_matrix(opc_forward *f, const opc_tensor *t, int64_t rows, int64_t cols,
                             const float **out) {
    if (t->type == OPC_TYPE_F32 && t->data && ((uintptr_t)t->data & 3u) == 0) {
        uint64_t need = (uint64_t)rows * (uint64_t)cols * sizeof(float);
        if (need > t->nbytes)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: %llu data bytes, need %llu",
                             f->d->path, t->name, (unsigned long long)t->nbytes,
                             (unsigned long long)need);
        f->mem.weights_view += need;
        *out = t->data;
        return OPC_OK;
    }
    return dequant_matrix(f, t, rows, cols, out);
}

/* fp16 view of a tensor used in place: halves the bytes the matmul reads per
 * token compared with an fp32 copy (the tied head of a 2-bit SmolLM2 is 3/4
 * of the decode traffic as fp32). The caller checked type and alignment. */
static opc_status f16_view(opc_forward *f, const opc_tensor *t, int64_t rows, int64_t cols,
                           const uint16_t **out) {
    uint64_t need;
    if (!opc_mul_ok((uint64_t)rows * (uint64_t)cols, 2, &need) || need > t->nbytes)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: %llu data bytes, need %llu for (%lld, %lld) f16",
                         f->d->path, t->name, (unsigned long long)t->nbytes,
                         (unsigned long long)need, (long long)rows, (long long)cols);
    f->mem.weights_view += need;
    f->mem.weights_f16 += need;
    *out = t->data;
    return OPC_OK;
}

/* Whether an F16 tensor goes through the fp16 matmul in place (2-byte aligned
 * data; otherwise, or with OPC_F16_AS_F32 set, it is expanded to fp32). */
static int f16_in_place(const opc_forward *f, const opc_tensor *t) {
    return t->type == OPC_TYPE_F16 && !f->f16_as_f32 && t->data && ((uintptr_t)t->data & 1u) == 0;
}

static opc_status prep_weight(opc_forward *f, const char *name, int64_t rows, int64_t cols,
                              opc_weight *w) {
    const opc_tensor *t;
    opc_status st = opc_model_desc_require(f->d, name, rows, cols, &t);
    if (st != OPC_OK) return st;
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) {
        if (t->cb.rows != rows || t->cb.cols != cols)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: codebook view is (%lld, %lld), expected (%lld, %lld)",
                             f->d->path, name, (long long)t->cb.rows, (long long)t->cb.cols,
                             (long long)rows, (long long)cols);
        st = opc_cb_validate(&t->cb, name);
        if (st != OPC_OK) return opc_error_wrap(st, "%s: ", f->d->path);
        w->type = t->type;
        w->cb = &t->cb;
        f->mem.weights_view += t->nbytes + (uint64_t)rows * (uint64_t)t->cb.k * 2u +
                               t->cb.n_outliers * 4u;
        return OPC_OK;
    }
    if (f16_in_place(f, t)) {
        w->type = OPC_TYPE_F16;
        return f16_view(f, t, rows, cols, &w->f16);
    }
    w->type = OPC_TYPE_F32;
    return f32_matrix(f, t, rows, cols, &w->f32);
}

/* A 1-D fp32 vector (norm weight, bias). required = 0: *out = NULL if absent. */
static opc_status prep_vec(opc_forward *f, const char *name, int64_t n, int required,
                           const float **out) {
    *out = NULL;
    if (!required && !opc_model_desc_find(f->d, name)) return OPC_OK;
    const opc_tensor *t;
    opc_status st = opc_model_desc_require(f->d, name, n, 0, &t);
    if (st != OPC_OK) return st;
    return f32_matrix(f, t, 1, n, out);
}

/* ------------------------------------------------------------ RoPE ------ */

/* Inverse frequency of rotary pair i (0 <= i < head_dim/2), with the
 * model's scaling, following HF's rope_init functions ("default", "linear",
 * "llama3"). Computed in double; the tables are fp32. */
double opc_rope_inv_freq(const opc_config *c, int i) {
    double inv = pow((double)c->rope_theta, -2.0 * i / (double)c->head_dim);
    if (c->rope_scaling == OPC_ROPE_SCALING_LINEAR && c->rope_factor > 0) {
        inv /= c->rope_factor;
    } else if (c->rope_scaling == OPC_ROPE_SCALING_LLAMA3 && c->rope_factor > 0) {
        const double factor = c->rope_factor, lo = c->rope_low_freq_factor,
                     hi = c->rope_high_freq_factor, old = (double)c->rope_orig_max_pos;
        const double lo_wavelen = old / lo, hi_wavelen = old / hi;
        const double wavelen = 2.0 * 3.14159265358979323846 / inv;
        if (wavelen > lo_wavelen) {
            inv = inv / factor; /* long wavelengths: fully interpolated */
        } else if (wavelen >= hi_wavelen) {
            /* medium band: blend between interpolated and original */
            double smooth = (old / wavelen - lo) / (hi - lo);
            inv = (1.0 - smooth) * inv / factor + smooth * inv;
        } /* short wavelengths: unchanged */
    }
    return inv;
}

/* Rotate-half RoPE on one head vector v (head_dim) at table row cs/sn (half). */
static void rope_apply(float *v, const float *cs, const float *sn, int half) {
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

/* ------------------------------------------------------------ init ------ */

opc_status opc_forward_init(opc_forward **out, const opc_model_desc *d, int32_t ctx,
                            int32_t max_batch, int32_t n_threads) {
    *out = NULL;
    if (!d) return opc_error(OPC_ERR_INVALID_ARG, "forward: no model");
    if (ctx <= 0 || max_batch <= 0 || ctx > (1 << 22) || max_batch > (1 << 16))
        return opc_error(OPC_ERR_INVALID_ARG, "forward: ctx %d / max_batch %d out of range", ctx,
                         max_batch);
    opc_status st = opc_config_validate(&d->cfg, d->path);
    if (st != OPC_OK) return st;
    detect_isa();
    opc_forward *f = calloc(1, sizeof *f);
    if (!f) return opc_error(OPC_ERR_NOMEM, "forward: cannot allocate handle");
    f->d = d;
    f->cfg = d->cfg;
    const opc_config *c = &f->cfg;
    f->ctx = ctx;
    f->max_batch = max_batch < ctx ? max_batch : ctx;
    f->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    const char *env16 = getenv("OPC_F16_AS_F32");
    f->f16_as_f32 = env16 && env16[0] && strcmp(env16, "0") != 0;
    f->q_dim = c->n_heads * c->head_dim;
    f->kv_dim = c->n_kv_heads * c->head_dim;
    const int64_t dim = c->dim, hid = c->hidden_dim, qd = f->q_dim, kvd = f->kv_dim;
    char name[OPC_MAX_NAME];

    /* embedding */
    st = opc_model_desc_require(d, "token_embd.weight", c->vocab_size, dim, &f->embd);
    if (st != OPC_OK) goto fail;
    const opc_tensor *out_t = opc_model_desc_find(d, "output.weight");
    int tied = c->tied_embeddings || !out_t;
    int embd_is_head_view = 0; /* tied f16 table: one view serves lookup and head */
    if (f->embd->type == OPC_TYPE_F32 || tied) {
        /* tied: the head needs every row anyway, so dequantize once */
        if (f->embd->type == OPC_TYPE_CB2 || f->embd->type == OPC_TYPE_CB4) {
            st = prep_weight(f, "token_embd.weight", c->vocab_size, dim, &f->head);
            if (st != OPC_OK) goto fail;
        } else if (f16_in_place(f, f->embd)) {
            /* fp16 head used in place; lookups convert one row (below) */
            st = prep_weight(f, "token_embd.weight", c->vocab_size, dim, &f->head);
            if (st != OPC_OK) goto fail;
            embd_is_head_view = 1;
        } else {
            st = f32_matrix(f, f->embd, c->vocab_size, dim, &f->embd_f32);
            if (st != OPC_OK) goto fail;
            f->head = (opc_weight){.type = OPC_TYPE_F32, .rows = c->vocab_size, .cols = dim,
                                   .f32 = f->embd_f32};
        }
    }
    if (!f->embd_f32 && f->embd->type != OPC_TYPE_CB2 && f->embd->type != OPC_TYPE_CB4) {
        /* quantized, untied: rows are dequantized on lookup; check them now */
        const opc_type_traits *tr = opc_type_get(f->embd->type);
        uint64_t need;
        if (!tr || !tr->to_float) {
            st = opc_error(OPC_ERR_UNSUPPORTED, "%s: token_embd.weight: type %s has no dequantizer",
                           d->path, tr ? tr->name : "?");
            goto fail;
        }
        st = opc_type_row_bytes(f->embd->type, dim, &f->embd_row_bytes);
        if (st != OPC_OK) goto fail;
        if (!opc_mul_ok(f->embd_row_bytes, (uint64_t)c->vocab_size, &need) || need > f->embd->nbytes) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: token_embd.weight: %llu bytes, need %llu", d->path,
                           (unsigned long long)f->embd->nbytes, (unsigned long long)need);
            goto fail;
        }
        if (!embd_is_head_view) f->mem.weights_view += need; /* else counted with the head */
    }
    if (!tied) {
        st = prep_weight(f, "output.weight", c->vocab_size, dim, &f->head);
        if (st != OPC_OK) goto fail;
    }
    st = prep_vec(f, "output_norm.weight", dim, 1, &f->out_norm);
    if (st != OPC_OK) goto fail;

    /* layers */
    f->layers = calloc((size_t)c->n_layers, sizeof *f->layers);
    if (!f->layers) {
        st = opc_error(OPC_ERR_NOMEM, "forward: cannot allocate %d layers", c->n_layers);
        goto fail;
    }
    for (int32_t l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        const int64_t shp[W_COUNT][2] = {{qd, dim},  {kvd, dim}, {kvd, dim}, {dim, qd},
                                         {hid, dim}, {hid, dim}, {dim, hid}};
        for (int w = 0; w < W_COUNT; w++) {
            snprintf(L->name[w], sizeof L->name[w], "blk.%d.%s.weight", l, g_wname[w]);
            st = prep_weight(f, L->name[w], shp[w][0], shp[w][1], &L->w[w]);
            if (st != OPC_OK) goto fail;
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((st = prep_vec(f, name, dim, 1, &L->attn_norm)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((st = prep_vec(f, name, dim, 1, &L->ffn_norm)) != OPC_OK) goto fail;
        /* q/k/v biases: required for Qwen2-style configs, used when present otherwise */
        snprintf(name, sizeof name, "blk.%d.attn_q.bias", l);
        if ((st = prep_vec(f, name, qd, c->attn_bias, &L->bq)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
        if ((st = prep_vec(f, name, kvd, c->attn_bias, &L->bk)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
        if ((st = prep_vec(f, name, kvd, c->attn_bias, &L->bv)) != OPC_OK) goto fail;
    }

    /* RoPE tables (ctx, head_dim/2) */
    const int half = c->head_dim / 2;
    uint64_t nrope = (uint64_t)ctx * (uint64_t)half;
    if (!(f->rope_cos = alloc_f32(f, nrope, "rope cos", &st))) goto fail;
    if (!(f->rope_sin = alloc_f32(f, nrope, "rope sin", &st))) goto fail;
    for (int i = 0; i < half; i++) {
        double inv = opc_rope_inv_freq(c, i);
        for (int32_t p = 0; p < ctx; p++) {
            double a = (double)p * inv;
            f->rope_cos[(uint64_t)p * half + i] = (float)cos(a);
            f->rope_sin[(uint64_t)p * half + i] = (float)sin(a);
        }
    }

    /* KV cache and activations */
    uint64_t nkv = (uint64_t)c->n_layers * (uint64_t)ctx * (uint64_t)kvd;
    if (!(f->kcache = alloc_f32(f, nkv, "key cache", &st))) goto fail;
    if (!(f->vcache = alloc_f32(f, nkv, "value cache", &st))) goto fail;
    f->mem.kv_cache = 2 * nkv * sizeof(float);
    const uint64_t B = (uint64_t)f->max_batch;
    struct {
        float **p;
        uint64_t n;
        const char *what;
    } bufs[] = {{&f->x, B * dim, "x"},          {&f->xb, B * dim, "xb"},
                {&f->q, B * qd, "q"},           {&f->att_out, B * qd, "att_out"},
                {&f->xo, B * dim, "xo"},        {&f->hb, B * hid, "hb"},
                {&f->hb2, B * hid, "hb2"},      {&f->att, (uint64_t)f->n_threads * ctx, "att"},
                {&f->xrot, B * (uint64_t)(hid > qd ? (hid > dim ? hid : dim) : (qd > dim ? qd : dim)), "xrot"}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!(*bufs[i].p = alloc_f32(f, bufs[i].n, bufs[i].what, &st))) goto fail;
        f->mem.scratch += bufs[i].n * sizeof(float);
    }
    f->mem.scratch += 2 * nrope * sizeof(float);
    *out = f;
    return OPC_OK;
fail:
    opc_forward_free(f);
    return st;
}

void opc_forward_free(opc_forward *f) {
    if (!f) return;
    for (int32_t i = 0; i < f->n_owned; i++) opc_aligned_free(f->owned[i]);
    free(f->owned);
    free(f->layers);
    free(f);
}

const opc_config *opc_forward_config(const opc_forward *f) { return &f->cfg; }
int32_t opc_forward_ctx(const opc_forward *f) { return f->ctx; }
int32_t opc_forward_max_batch(const opc_forward *f) { return f->max_batch; }
opc_forward_mem opc_forward_memory(const opc_forward *f) { return f->mem; }

void opc_forward_set_act_hook(opc_forward *f, opc_act_hook hook, void *user) {
    f->hook = hook;
    f->hook_user = user;
}

/* ------------------------------------------------------- the pass ------- */

/* out (n, dim) = rmsnorm(x (n, dim)) * w. Sum of squares in double: it costs
 * nothing here and removes one source of disagreement with references. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, int64_t dim,
                    float eps) {
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * dim;
        float *o = out + t * dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float s = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
        for (int64_t i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * s);
    }
}

static void add_bias(float *y, const float *b, int64_t n, int64_t cols) {
    if (!b) return;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < cols; i++) y[t * cols + i] += b[i];
}

/* The input a weight multiplies: X itself, or R^T X for a codebook matrix
 * stored rotated (cb.h). q/k/v share one normed input, gate/up another, so
 * `same_input` (X unchanged since the previous linear()) lets them share one
 * rotated copy. The FWHT is O(cols log b) per token against the matmul's
 * O(rows cols), but prefill still spreads it over the threads. */
static const float *layer_input(opc_forward *f, const opc_weight *w, const float *X, int64_t n,
                                int same_input) {
    const int32_t lg = (w->type == OPC_TYPE_CB2 || w->type == OPC_TYPE_CB4) ? w->cb->rot_log2 : 0;
    /* A new input invalidates the copy even when this weight needs none: a
     * later same_input weight must not pick up an older layer's rotation. */
    if (!same_input) f->xrot_src = NULL;
    if (lg <= 0) return X;
    if (same_input && f->xrot_src == X && f->xrot_log2 == lg && f->xrot_n == n) return f->xrot;
    const int64_t cols = w->cols;
#pragma omp parallel for num_threads(f->n_threads) if (n >= 8)
    for (int64_t t = 0; t < n; t++) {
        memcpy(f->xrot + t * cols, X + t * cols, (size_t)cols * sizeof(float));
        opc_cb_rotate(f->xrot + t * cols, cols, lg);
    }
    f->xrot_src = X;
    f->xrot_log2 = lg;
    f->xrot_n = n;
    return f->xrot;
}

static void linear(opc_forward *f, int layer, const char *name, const opc_weight *w,
                   const float *X, int64_t n, float *Y, int same_input) {
    /* The hook sees the model's own activations (unrotated): the quantizer
     * rotates them itself for the tensors it rotates. */
    if (f->hook) f->hook(f->hook_user, layer, name, X, (int)n, (int)w->cols);
    opc_matmul(w, layer_input(f, w, X, n, same_input), n, Y, f->n_threads);
}

/* Causal GQA attention for n new tokens at positions pos..pos+n-1 against the
 * layer's cache (which already holds them). q, out: (n, q_dim). */
static void attention(opc_forward *f, const float *q, const float *kc, const float *vc,
                      int64_t n, int64_t pos, float *out) {
    const opc_config *c = &f->cfg;
    const int64_t hd = c->head_dim, nh = c->n_heads, qd = f->q_dim, kvd = f->kv_dim;
    const int64_t group = c->n_heads / c->n_kv_heads;
    const float scale = (float)(1.0 / sqrt((double)hd));
    const int64_t work = n * nh;
    /* ~2*hd flops per (query, key) pair for scores and again for values; below
     * ~64K flops a parallel region's fork/join costs more than it saves
     * (stories260K decode), and on an oversubscribed machine much more. */
    const int par = (double)work * (double)(pos + n) * (double)hd * 4.0 > 65536.0;
#pragma omp parallel for num_threads(f->n_threads) schedule(dynamic, 1) if (par)
    for (int64_t wi = 0; wi < work; wi++) {
        const int64_t t = wi / nh, h = wi % nh, kvh = h / group;
        const int64_t last = pos + t; /* attends to keys 0..last */
        float *sc = f->att + (int64_t)omp_get_thread_num() * f->ctx;
        const float *qh = q + t * qd + h * hd;
        float mx = -INFINITY;
        for (int64_t j = 0; j <= last; j++) {
            float s = dot_f32(qh, kc + j * kvd + kvh * hd, hd) * scale;
            sc[j] = s;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        for (int64_t j = 0; j <= last; j++) {
            float e = expf(sc[j] - mx);
            sc[j] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
        float *o = out + t * qd + h * hd;
        memset(o, 0, (size_t)hd * sizeof(float));
        for (int64_t j = 0; j <= last; j++) axpy_f32(o, sc[j] * inv, vc + j * kvd + kvh * hd, hd);
    }
}

static void embed(opc_forward *f, const int32_t *tokens, int64_t n, float *x) {
    const int64_t dim = f->cfg.dim;
    for (int64_t t = 0; t < n; t++) {
        float *xr = x + t * dim;
        if (f->embd_f32) {
            memcpy(xr, f->embd_f32 + (int64_t)tokens[t] * dim, (size_t)dim * sizeof(float));
        } else if (f->embd->type == OPC_TYPE_CB2 || f->embd->type == OPC_TYPE_CB4) {
            opc_cb_dequant_row_ref(&f->embd->cb, tokens[t], xr);
            opc_cb_unrotate(xr, dim, f->embd->cb.rot_log2); /* a lookup wants the original basis */
        } else {
            /* quantized or f16 table: convert just this row */
            const uint8_t *src = (const uint8_t *)f->embd->data + (uint64_t)tokens[t] * f->embd_row_bytes;
            opc_type_get(f->embd->type)->to_float(src, xr, dim);
        }
    }
}

/* One slice of n <= max_batch tokens. */
static void forward_slice(opc_forward *f, const int32_t *tokens, int64_t n, int64_t pos,
                          float *logits, opc_logits_mode mode) {
    const opc_config *c = &f->cfg;
    const int64_t dim = c->dim, hid = c->hidden_dim, qd = f->q_dim, kvd = f->kv_dim;
    const int half = c->head_dim / 2;
    embed(f, tokens, n, f->x);
    for (int l = 0; l < c->n_layers; l++) {
        fwd_layer *L = &f->layers[l];
        float *kc = f->kcache + (int64_t)l * f->ctx * kvd, *vc = f->vcache + (int64_t)l * f->ctx * kvd;
        float *knew = kc + pos * kvd, *vnew = vc + pos * kvd; /* (n, kv_dim) rows of the cache */

        rmsnorm(f->xb, f->x, L->attn_norm, n, dim, c->rms_eps);
        linear(f, l, L->name[W_Q], &L->w[W_Q], f->xb, n, f->q, 0);
        linear(f, l, L->name[W_K], &L->w[W_K], f->xb, n, knew, 1);
        linear(f, l, L->name[W_V], &L->w[W_V], f->xb, n, vnew, 1);
        add_bias(f->q, L->bq, n, qd);
        add_bias(knew, L->bk, n, kvd);
        add_bias(vnew, L->bv, n, kvd);
        for (int64_t t = 0; t < n; t++) {
            const float *cs = f->rope_cos + (pos + t) * half, *sn = f->rope_sin + (pos + t) * half;
            for (int h = 0; h < c->n_heads; h++) rope_apply(f->q + t * qd + h * c->head_dim, cs, sn, half);
            for (int h = 0; h < c->n_kv_heads; h++) rope_apply(knew + t * kvd + h * c->head_dim, cs, sn, half);
        }
        attention(f, f->q, kc, vc, n, pos, f->att_out);
        linear(f, l, L->name[W_O], &L->w[W_O], f->att_out, n, f->xo, 0);
        for (int64_t i = 0; i < n * dim; i++) f->x[i] += f->xo[i];

        rmsnorm(f->xb, f->x, L->ffn_norm, n, dim, c->rms_eps);
        linear(f, l, L->name[W_GATE], &L->w[W_GATE], f->xb, n, f->hb, 0);
        linear(f, l, L->name[W_UP], &L->w[W_UP], f->xb, n, f->hb2, 1);
        for (int64_t i = 0; i < n * hid; i++) {
            float g = f->hb[i];
            f->hb[i] = g / (1.0f + expf(-g)) * f->hb2[i];
        }
        linear(f, l, L->name[W_DOWN], &L->w[W_DOWN], f->hb, n, f->xo, 0);
        for (int64_t i = 0; i < n * dim; i++) f->x[i] += f->xo[i];
    }
    if (mode == OPC_LOGITS_NONE) return;
    int64_t first = mode == OPC_LOGITS_LAST ? n - 1 : 0;
    rmsnorm(f->xb, f->x + first * dim, f->out_norm, n - first, dim, c->rms_eps);
    linear(f, c->n_layers, "output.weight", &f->head, f->xb, n - first, logits, 0);
}

opc_status opc_forward_run(opc_forward *f, const int32_t *tokens, int32_t n, int32_t pos,
                           float *logits_out, opc_logits_mode mode) {
    if (!f || !tokens || n <= 0 || pos < 0)
        return opc_error(OPC_ERR_INVALID_ARG, "forward: bad arguments (n %d, pos %d)", n, pos);
    if ((int64_t)pos + n > f->ctx)
        return opc_error(OPC_ERR_INVALID_ARG, "forward: positions %d..%d exceed the context of %d",
                         pos, pos + n - 1, f->ctx);
    if (mode != OPC_LOGITS_NONE && !logits_out)
        return opc_error(OPC_ERR_INVALID_ARG, "forward: logits requested but no output buffer");
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= f->cfg.vocab_size)
            return opc_error(OPC_ERR_INVALID_ARG, "forward: token %d at index %d is outside the vocabulary of %d",
                             tokens[i], i, f->cfg.vocab_size);
    const int64_t vocab = f->cfg.vocab_size;
    for (int32_t s = 0; s < n; s += f->max_batch) {
        int32_t m = n - s < f->max_batch ? n - s : f->max_batch;
        int last_slice = s + m == n;
        opc_logits_mode sm = mode == OPC_LOGITS_ALL ? OPC_LOGITS_ALL
                             : (mode == OPC_LOGITS_LAST && last_slice) ? OPC_LOGITS_LAST
                                                                        : OPC_LOGITS_NONE;
        float *lo = mode == OPC_LOGITS_ALL ? logits_out + (int64_t)s * vocab : logits_out;
        forward_slice(f, tokens + s, m, (int64_t)pos + s, lo, sm);
    }
    return OPC_OK;
}
