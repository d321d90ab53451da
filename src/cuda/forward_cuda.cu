/*
 * forward_cuda.cu — the Llama-family forward pass on the GPU (forward_cuda.h).
 *
 *   x = embed(tokens)                                        (n, dim)
 *   per layer l:
 *     xb = rmsnorm(x [+= pending residual]) · attn_norm        (add fused in)
 *     q, k, v = xb W{q,k,v}ᵀ      one fused GEMV/GEMM when all three are 2-bit
 *     (+bias) rotate-half RoPE on q, k; k, v -> fp16 cache rows pos..pos+n-1
 *     a = causal GQA attention over the cache                  split-K for n <= 8
 *     x += a Woᵀ ; xb = rmsnorm(x) · ffn_norm
 *     pending = (silu(xb Wgateᵀ) * (xb Wupᵀ)) Wdownᵀ       gate|up fused likewise
 *   logits = rmsnorm(x + pending) · output_norm · Woutᵀ
 *
 * Same order of operations as the CPU reference (src/model/forward.c).
 * Where the consumer is a plain 2-bit matrix on the int8 GEMV (batches <= 4,
 * decode), the norms and the SwiGLU run inside that GEMV's x staging
 * (opc_cuda_cb_gemv_xf; norm_linear below): 3 launches fewer per layer.
 * Sections: handle + weight upload, init/free, the pass, run + CUDA graph.
 */
#include "forward_cuda.h"

#include "calib_cuda.h"
#include "cuda_api.h"
#include "ops.cuh"
#include "sample_cuda.h"

#include "../core/half.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

using namespace opc_cudafwd;

/* ===================================================== the handle ====== */

enum { W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN, W_COUNT };
static const char *const g_wname[W_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_gate", "ffn_up", "ffn_down"};

enum { WK_NONE = 0, WK_DENSE, WK_CB };

/* A weight as the GPU pass uses it. */
typedef struct gweight {
    int kind;               /* WK_DENSE: w16; WK_CB: cb/cbd */
    int shared;             /* a copy of another gweight (tied head): not freed */
    int64_t rows, cols;
    int rot;                /* WK_CB: input rotation log2 (cb.h rot_log2), 0 = none */
    __half *w16;            /* device (rows, cols) fp16 */
    opc_cuda_cb_matrix cb;  /* device packed codebook matrix (bits 2 or 4) */
    CbDev cbd;
} gweight;

typedef struct glayer {
    gweight w[W_COUNT];  /* WK_NONE for the parts of a fused weight */
    gweight qkv;         /* rows [Wq; Wk; Wv] when all three are CB2, else WK_NONE */
    gweight gate_up;     /* rows [Wgate; Wup] when both are CB2, else WK_NONE */
    float *attn_norm, *ffn_norm; /* device (dim) */
    float *bq, *bk, *bv;         /* device (q_dim), (kv_dim), (kv_dim) or NULL */
} glayer;

#define GBIG_MAX_BATCH 8 /* batches up to this use the GEMV kernels */

struct opc_cuda_forward {
    opc_config cfg;
    char path[1024];
    int32_t ctx, max_batch, q_dim, kv_dim;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;

    gweight embd, head;
    float *out_norm; /* device (dim) */
    glayer *layers;  /* host array (n_layers) of device weights */

    float *rope_cos, *rope_sin; /* device (ctx, head_dim/2) */
    __half *kcache, *vcache;    /* device (n_layers, ctx, kv_dim) */

    /* activations for up to max_batch tokens, device */
    float *x, *xb32, *att32, *xo, *hb; /* (B, dim|q_dim|dim|hidden) */
    float *x2;  /* (min(B, 4), dim): the residual's second buffer, for norms fused into a GEMV (forward_slice) */
    float *xr32;        /* (B, max(dim, q_dim, hidden)): rotated input of a rotated matrix */
    __half *xr16;       /* the same in fp16 (cuBLAS path) */
    const float *xr_src;/* what xr holds: rotation of xr_src (n rows) by 2^xr_rot blocks */
    int xr_rot, xr_n;
    float *qkv; /* (B, q_dim + 2 kv_dim): fused rows [q|k|v], or q, k, v blocks of B rows */
    float *gu;  /* (B, 2 hidden): fused rows [gate|up], or gate, up blocks of B rows */
    __half *xb16, *att16, *hb16;                         /* fp16 copies: cuBLAS inputs */
    float *logits;                                       /* (B, vocab) */
    float *part;    /* attention split partials (min(B,8), n_heads, splits_max, hd + 2) */
    __half *dq16;   /* dequantized codebook matrix for the GEMM path (largest CB matrix) */
    int32_t *d_in;  /* device (1 + B): [0] = pos, then the tokens */
    int32_t *h_in;  /* pinned host staging of d_in */
    float *h_logits;/* pinned (vocab): last-row logits come back through it (faster than pageable) */
    int splits_max, chunk;

    int use_graph, graph_failed, decode_eager;
    int pdl_ops; /* PDL for the small kernels too (see init) */
    int fuse_prologue; /* norms and SwiGLU fused into the 2-bit GEMV's staging (forward_slice) */
    cudaGraphExec_t graph;
    /* greedy decoding on the device (opc_cuda_forward_greedy): a second graph
     * = decode step + argmax_next, and its scratch (zero between calls) */
    cudaGraphExec_t graph_greedy;
    int graph_greedy_failed;
    unsigned long long *g_best;
    unsigned *g_cnt;
    int32_t *g_step, *g_out; /* g_out: (ctx) tokens of one greedy call */
    /* sampled decoding on the device (opc_cuda_forward_sample): a third graph
     * = decode step + the sampler's pick, which reads its parameters and PRNG
     * state from device memory (sample_cuda.h); g_step/g_out as for greedy */
    cudaGraphExec_t graph_sample;
    int graph_sample_failed;
    opc_cuda_sampler *smp;

    opc_cuda_act_stats *stats; /* calibration statistics of every linear input, or NULL (calib_cuda.h) */

    opc_cuda_forward_mem mem;
    void **dev; /* device allocations to free */
    int32_t n_dev, cap_dev;
};

static opc_status cuda_err(cudaError_t e, const char *what) {
    return opc_error(OPC_ERR_CUDA, "cuda forward: %s: %s (%s)", what, cudaGetErrorString(e),
                     cudaGetErrorName(e));
}

/* The launch error (if any) of the kernels just queued. */
static opc_status kcheck(const char *what) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? OPC_OK : cuda_err(e, what);
}

static opc_status blas_err(cublasStatus_t s, const char *what) {
    return opc_error(OPC_ERR_CUDA, "cuda forward: %s: cuBLAS status %d", what, (int)s);
}

/* cudaMalloc `bytes`, remembered for opc_cuda_forward_free. */
static opc_status dev_alloc(opc_cuda_forward *f, void **p, uint64_t bytes, const char *what) {
    *p = NULL;
    if (bytes == 0) bytes = 16;
    if (f->n_dev == f->cap_dev) {
        int32_t cap = f->cap_dev ? 2 * f->cap_dev : 256;
        void **n = (void **)realloc(f->dev, (size_t)cap * sizeof *n);
        if (!n) return opc_error(OPC_ERR_NOMEM, "cuda forward: cannot grow allocation list");
        f->dev = n, f->cap_dev = cap;
    }
    cudaError_t e = cudaMalloc(p, (size_t)bytes);
    if (e != cudaSuccess) {
        *p = NULL;
        return opc_error(OPC_ERR_CUDA, "cuda forward: cannot allocate %llu device bytes for %s: %s",
                         (unsigned long long)bytes, what, cudaGetErrorString(e));
    }
    f->dev[f->n_dev++] = *p;
    return OPC_OK;
}

/* ------------------------------------------------------ weight upload -- */

/* Copy a codebook matrix of any width (2 or 4 bits) to the device, group
 * scales repacked (cuda_api.h). Freed with opc_cuda_cb_free. */
static opc_status upload_cb(const opc_cb_matrix *h, opc_cuda_cb_matrix *d) {
    return opc_cuda_cb_upload_any(h, d);
}

/* Dequantize a (rows, cols) tensor of any block type on the host, row by row,
 * to fp16 and upload it. f16 tensors are copied as they are. */
static opc_status upload_dense(opc_cuda_forward *f, const opc_tensor *t, int64_t rows, int64_t cols,
                               __half **out) {
    const opc_type_traits *tr = opc_type_get(t->type);
    if (!tr || (!tr->to_float && t->type != OPC_TYPE_F32))
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s: type %s has no dequantizer", f->path,
                         t->name, tr ? tr->name : "?");
    uint64_t rb, need, nel;
    opc_status st = opc_type_row_bytes(t->type, cols, &rb);
    if (st != OPC_OK) return opc_error_wrap(st, "%s: tensor %s: ", f->path, t->name);
    if (!opc_mul_ok(rb, (uint64_t)rows, &need) || need > t->nbytes || !t->data ||
        !opc_mul_ok((uint64_t)rows, (uint64_t)cols, &nel))
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: %llu data bytes, need %llu for (%lld, %lld) %s",
                         f->path, t->name, (unsigned long long)t->nbytes, (unsigned long long)need,
                         (long long)rows, (long long)cols, tr->name);
    st = dev_alloc(f, (void **)out, nel * 2u, t->name);
    if (st != OPC_OK) return st;
    f->mem.weights += nel * 2u;
    if (t->type == OPC_TYPE_F16) {
        cudaError_t e = cudaMemcpy(*out, t->data, (size_t)need, cudaMemcpyHostToDevice);
        return e == cudaSuccess ? OPC_OK : cuda_err(e, t->name);
    }
    /* ~8 MB of fp16 per host->device copy */
    int64_t chunk = (int64_t)((8u << 20) / ((uint64_t)cols * 2u));
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *row = (float *)malloc((size_t)cols * sizeof(float));
    uint16_t *stage = (uint16_t *)malloc((size_t)chunk * (size_t)cols * 2u);
    if (!row || !stage) {
        free(row), free(stage);
        return opc_error(OPC_ERR_NOMEM, "cuda forward: staging buffer for %s", t->name);
    }
    const uint8_t *src = (const uint8_t *)t->data;
    for (int64_t r0 = 0; r0 < rows && st == OPC_OK; r0 += chunk) {
        const int64_t r1 = r0 + chunk < rows ? r0 + chunk : rows;
        for (int64_t r = r0; r < r1; r++) {
            if (t->type == OPC_TYPE_F32)
                memcpy(row, src + (uint64_t)r * rb, (size_t)cols * sizeof(float));
            else
                tr->to_float(src + (uint64_t)r * rb, row, cols);
            uint16_t *o = stage + (r - r0) * cols;
            for (int64_t c = 0; c < cols; c++) o[c] = opc_fp32_to_fp16(row[c]);
        }
        cudaError_t e = cudaMemcpy(*out + r0 * cols, stage, (size_t)(r1 - r0) * (size_t)cols * 2u,
                                   cudaMemcpyHostToDevice);
        if (e != cudaSuccess) st = cuda_err(e, t->name);
    }
    free(row);
    free(stage);
    return st;
}

static opc_status prep_weight(opc_cuda_forward *f, const opc_model_desc *d, const char *name,
                              int64_t rows, int64_t cols, gweight *w) {
    const opc_tensor *t;
    memset(w, 0, sizeof *w);
    opc_status st = opc_model_desc_require(d, name, rows, cols, &t);
    if (st != OPC_OK) return st;
    w->rows = rows, w->cols = cols;
    if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) {
        if (t->cb.rows != rows || t->cb.cols != cols)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: codebook view is (%lld, %lld), expected (%lld, %lld)",
                             f->path, name, (long long)t->cb.rows, (long long)t->cb.cols,
                             (long long)rows, (long long)cols);
        st = upload_cb(&t->cb, &w->cb);
        if (st != OPC_OK) return opc_error_wrap(st, "%s: tensor %s: ", f->path, name);
        w->kind = WK_CB;
        w->rot = t->cb.rot_log2;
        w->cbd = cb_dev(&w->cb);
        f->mem.weights += (uint64_t)rows * t->cb.row_bytes + (uint64_t)rows * (uint64_t)t->cb.k * 2u +
                          t->cb.n_outliers * 4u + (uint64_t)rows * (uint64_t)w->cb.gs_stride;
        return OPC_OK;
    }
    w->kind = WK_DENSE;
    return upload_dense(f, t, rows, cols, &w->w16);
}

/* A 1-D vector (norm weight, bias) as fp32 on the device. required = 0:
 * *out = NULL when the tensor is absent. */
static opc_status prep_vec(opc_cuda_forward *f, const opc_model_desc *d, const char *name, int64_t n,
                           int required, float **out) {
    *out = NULL;
    if (!required && !opc_model_desc_find(d, name)) return OPC_OK;
    const opc_tensor *t;
    opc_status st = opc_model_desc_require(d, name, n, 0, &t);
    if (st != OPC_OK) return st;
    uint64_t rb;
    st = opc_type_row_bytes(t->type, n, &rb);
    if (st != OPC_OK) return opc_error_wrap(st, "%s: tensor %s: ", f->path, name);
    if (rb > t->nbytes || !t->data)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: %llu data bytes, need %llu", f->path, name,
                         (unsigned long long)t->nbytes, (unsigned long long)rb);
    float *h = (float *)malloc((size_t)n * sizeof(float));
    if (!h) return opc_error(OPC_ERR_NOMEM, "cuda forward: %s", name);
    st = opc_dequantize(t->type, t->data, h, n);
    if (st == OPC_OK) st = dev_alloc(f, (void **)out, (uint64_t)n * 4u, name);
    if (st == OPC_OK) {
        cudaError_t e = cudaMemcpy(*out, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) st = cuda_err(e, name);
        f->mem.weights += (uint64_t)n * 4u;
    }
    free(h);
    return st;
}

/* The CB2 view of a weight when it is one (shape checked), else NULL. */
static opc_status cb2_part(opc_cuda_forward *f, const opc_model_desc *d, const char *name, int64_t rows,
                           int64_t cols, const opc_cb_matrix **out) {
    const opc_tensor *t;
    *out = NULL;
    opc_status st = opc_model_desc_require(d, name, rows, cols, &t);
    if (st != OPC_OK) return st;
    if (t->type != OPC_TYPE_CB2 || t->cb.bits != 2) return OPC_OK;
    if (t->cb.rows != rows || t->cb.cols != cols)
        return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: codebook view is (%lld, %lld), expected (%lld, %lld)",
                         f->path, name, (long long)t->cb.rows, (long long)t->cb.cols, (long long)rows,
                         (long long)cols);
    st = opc_cb_validate(&t->cb, name);
    if (st != OPC_OK) return opc_error_wrap(st, "%s: ", f->path);
    *out = &t->cb;
    return OPC_OK;
}

/* Upload the row-concatenation of np 2-bit matrices with equal cols as one
 * matrix: one GEMV launch instead of np, and enough row tiles to fill the GPU
 * for the small k/v projections. Codebooks are padded to the largest k with
 * zeros (no index refers to them); the outlier CSR is re-based. */
static opc_status upload_fused(opc_cuda_forward *f, const opc_cb_matrix *const *parts, int np,
                               const char *what, gweight *w) {
    opc_cb_matrix m;
    memset(&m, 0, sizeof m);
    memset(w, 0, sizeof *w);
    m.cols = parts[0]->cols, m.bits = 2, m.row_bytes = parts[0]->row_bytes;
    m.rot_log2 = parts[0]->rot_log2; /* the caller fuses only parts with equal rotations */
    uint64_t nol = 0;
    int any_gs = 0;
    const int64_t ng = opc_cb_groups(m.cols);
    for (int i = 0; i < np; i++) {
        m.rows += parts[i]->rows;
        if (parts[i]->k > m.k) m.k = parts[i]->k;
        nol += parts[i]->n_outliers;
        any_gs |= parts[i]->gscale != NULL;
    }
    if (nol > 0xFFFFFFFFull)
        return opc_error(OPC_ERR_UNSUPPORTED, "cuda forward: %s: too many outliers to fuse", what);
    uint8_t *idx = (uint8_t *)malloc((size_t)(m.rows * (int64_t)m.row_bytes));
    uint16_t *cb = (uint16_t *)calloc((size_t)(m.rows * m.k), 2);
    uint32_t *rp = nol ? (uint32_t *)malloc((size_t)(m.rows + 1) * 4) : NULL;
    uint16_t *oc = nol ? (uint16_t *)malloc((size_t)nol * 2) : NULL;
    uint16_t *ov = nol ? (uint16_t *)malloc((size_t)nol * 2) : NULL;
    /* a part without group scales gets q = 0 (scale 1) rows */
    uint8_t *gsc = any_gs ? (uint8_t *)calloc((size_t)m.rows, (size_t)ng) : NULL;
    opc_status st = OPC_OK;
    if (!idx || !cb || (nol && (!rp || !oc || !ov)) || (any_gs && !gsc)) {
        st = opc_error(OPC_ERR_NOMEM, "cuda forward: fusing %s", what);
        goto out;
    }
    {
        int64_t r0 = 0;
        uint64_t o0 = 0;
        for (int i = 0; i < np; i++) {
            const opc_cb_matrix *p = parts[i];
            memcpy(idx + r0 * (int64_t)m.row_bytes, p->idx, (size_t)(p->rows * (int64_t)p->row_bytes));
            if (p->gscale) memcpy(gsc + r0 * ng, p->gscale, (size_t)(p->rows * ng));
            for (int64_t r = 0; r < p->rows; r++)
                memcpy(cb + (r0 + r) * m.k, p->codebook + r * p->k, (size_t)p->k * 2);
            if (nol) {
                for (int64_t r = 0; r < p->rows; r++)
                    rp[r0 + r] = (uint32_t)(o0 + (p->n_outliers ? p->ol_rowptr[r] : 0));
                if (p->n_outliers) {
                    memcpy(oc + o0, p->ol_col, (size_t)p->n_outliers * 2);
                    memcpy(ov + o0, p->ol_val, (size_t)p->n_outliers * 2);
                }
            }
            r0 += p->rows;
            o0 += p->n_outliers;
        }
        if (nol) rp[m.rows] = (uint32_t)o0;
    }
    m.idx = idx, m.codebook = cb, m.n_outliers = nol, m.ol_rowptr = rp, m.ol_col = oc, m.ol_val = ov;
    m.gscale = gsc;
    st = opc_cuda_cb_upload(&m, &w->cb);
    if (st != OPC_OK) {
        st = opc_error_wrap(st, "%s: %s: ", f->path, what);
        goto out;
    }
    w->kind = WK_CB;
    w->rows = m.rows, w->cols = m.cols, w->rot = m.rot_log2;
    w->cbd = cb_dev(&w->cb);
    f->mem.weights += (uint64_t)m.rows * m.row_bytes + (uint64_t)m.rows * (uint64_t)m.k * 2u + nol * 4u +
                      (uint64_t)m.rows * (uint64_t)w->cb.gs_stride;
out:
    free(idx), free(cb), free(rp), free(oc), free(ov), free(gsc);
    return st;
}

static void free_weight(gweight *w) {
    /* dense weights are in the allocation list; codebook arrays are not */
    if (w->kind == WK_CB && !w->shared) opc_cuda_cb_free(&w->cb);
    memset(w, 0, sizeof *w);
}

/* ========================================================= init/free === */

extern "C" void opc_cuda_forward_free(opc_cuda_forward *f) {
    if (!f) return;
    if (f->stream) cudaStreamSynchronize(f->stream);
    if (f->graph) cudaGraphExecDestroy(f->graph);
    if (f->graph_greedy) cudaGraphExecDestroy(f->graph_greedy);
    if (f->graph_sample) cudaGraphExecDestroy(f->graph_sample);
    opc_cuda_sampler_free(f->smp);
    if (f->layers) {
        for (int32_t l = 0; l < f->cfg.n_layers; l++) {
            for (int w = 0; w < W_COUNT; w++) free_weight(&f->layers[l].w[w]);
            free_weight(&f->layers[l].qkv);
            free_weight(&f->layers[l].gate_up);
        }
        free(f->layers);
    }
    free_weight(&f->head);
    free_weight(&f->embd);
    for (int32_t i = 0; i < f->n_dev; i++) cudaFree(f->dev[i]);
    free(f->dev);
    if (f->h_in) cudaFreeHost(f->h_in);
    if (f->h_logits) cudaFreeHost(f->h_logits);
    if (f->blas) cublasDestroy(f->blas);
    if (f->stream) cudaStreamDestroy(f->stream);
    free(f);
}

extern "C" opc_status opc_cuda_forward_init(opc_cuda_forward **out, const opc_model_desc *d,
                                            int32_t ctx, int32_t max_batch) {
    *out = NULL;
    if (!d) return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: no model");
    if (ctx <= 0 || max_batch <= 0 || ctx > (1 << 22) || max_batch > (1 << 16))
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: ctx %d / max_batch %d out of range", ctx,
                         max_batch);
    opc_status st = opc_config_validate(&d->cfg, d->path);
    if (st != OPC_OK) return st;
    const opc_config *c = &d->cfg;
    if (c->head_dim > kMaxHeadDim || c->head_dim % 2)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: head_dim %d: the CUDA attention takes even sizes <= %d",
                         d->path, c->head_dim, kMaxHeadDim);
    if (c->dim > 8192)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: dim %d: the CUDA RMSNorm takes dim <= 8192", d->path,
                         c->dim);
    if (opc_cuda_device_count() <= 0) return opc_error(OPC_ERR_CUDA, "cuda forward: no CUDA device");

    opc_cuda_forward *f = (opc_cuda_forward *)calloc(1, sizeof *f);
    if (!f) return opc_error(OPC_ERR_NOMEM, "cuda forward: cannot allocate handle");
    f->cfg = *c;
    snprintf(f->path, sizeof f->path, "%s", d->path);
    f->ctx = ctx;
    f->max_batch = max_batch < ctx ? max_batch : ctx;
    if (f->max_batch > 65535) f->max_batch = 65535; /* tokens index grid.y in the kernels */
    f->q_dim = c->n_heads * c->head_dim;
    f->kv_dim = c->n_kv_heads * c->head_dim;
    const char *env = getenv("OPC_CUDA_GRAPH");
    f->use_graph = !(env && !strcmp(env, "0"));
    /* Programmatic dependent launch for the norms, RoPE, attention, SwiGLU and
     * rotations (the GEMVs always use it). H200 decode, same run: 8B shape
     * 356 -> 375 tok/s, SmolLM2 (dim 576) 758 -> 707: on for wide models
     * only. OPC_CUDA_PDL_OPS=0/1 overrides; OPC_CUDA_PDL=0 turns all PDL off. */
    env = getenv("OPC_CUDA_PDL_OPS");
    const char *env_all = getenv("OPC_CUDA_PDL");
    f->pdl_ops = env ? !strcmp(env, "1") : c->dim >= 2048;
    if (env_all && !strcmp(env_all, "0")) f->pdl_ops = 0;
    /* OPC_CUDA_NO_PROLOGUE_FUSE=1: the separate norm and SwiGLU kernels (comparisons) */
    env = getenv("OPC_CUDA_NO_PROLOGUE_FUSE");
    f->fuse_prologue = !(env && strcmp(env, "0"));
    const int64_t dim = c->dim, hid = c->hidden_dim, qd = f->q_dim, kvd = f->kv_dim;
    const int64_t vocab = c->vocab_size, hd = c->head_dim;
    const uint64_t B = (uint64_t)f->max_batch;
    char name[OPC_MAX_NAME];
    cudaError_t e;
    cublasStatus_t bs;
    uint64_t max_cb = 0; /* largest codebook matrix, for the GEMM path's fp16 scratch */

    if ((e = cudaStreamCreateWithFlags(&f->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        st = cuda_err(e, "stream");
        goto fail;
    }
    if ((bs = cublasCreate(&f->blas)) != CUBLAS_STATUS_SUCCESS) {
        st = blas_err(bs, "cublasCreate");
        goto fail;
    }
    /* A fixed workspace: cuBLAS then allocates nothing while a graph is captured. */
    if ((st = dev_alloc(f, &f->blas_ws, 32u << 20, "cuBLAS workspace")) != OPC_OK) goto fail;
    if ((bs = cublasSetStream(f->blas, f->stream)) != CUBLAS_STATUS_SUCCESS ||
        (bs = cublasSetWorkspace(f->blas, f->blas_ws, 32u << 20)) != CUBLAS_STATUS_SUCCESS) {
        st = blas_err(bs, "cuBLAS set-up");
        goto fail;
    }

    /* embedding and head */
    {
        const opc_tensor *out_t = opc_model_desc_find(d, "output.weight");
        const int tied = c->tied_embeddings || !out_t;
        if ((st = prep_weight(f, d, "token_embd.weight", vocab, dim, &f->embd)) != OPC_OK) goto fail;
        if (tied) {
            f->head = f->embd;
            f->head.shared = 1;
        } else if ((st = prep_weight(f, d, "output.weight", vocab, dim, &f->head)) != OPC_OK) {
            goto fail;
        }
        if (f->head.kind == WK_CB) max_cb = (uint64_t)vocab * (uint64_t)dim;
        if ((st = prep_vec(f, d, "output_norm.weight", dim, 1, &f->out_norm)) != OPC_OK) goto fail;
    }

    /* layers */
    f->layers = (glayer *)calloc((size_t)c->n_layers, sizeof *f->layers);
    if (!f->layers) {
        st = opc_error(OPC_ERR_NOMEM, "cuda forward: cannot allocate %d layers", c->n_layers);
        goto fail;
    }
    for (int32_t l = 0; l < c->n_layers; l++) {
        glayer *L = &f->layers[l];
        const int64_t shp[W_COUNT][2] = {{qd, dim},  {kvd, dim}, {kvd, dim}, {dim, qd},
                                         {hid, dim}, {hid, dim}, {dim, hid}};
        const opc_cb_matrix *part[W_COUNT];
        for (int w = 0; w < W_COUNT; w++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, g_wname[w]);
            if ((st = cb2_part(f, d, name, shp[w][0], shp[w][1], &part[w])) != OPC_OK) goto fail;
        }
        /* fused parts share one input, so they must share its rotation too */
        const int fuse_qkv = part[W_Q] && part[W_K] && part[W_V] && !getenv("OPC_CUDA_NO_FUSE") &&
                             part[W_K]->rot_log2 == part[W_Q]->rot_log2 &&
                             part[W_V]->rot_log2 == part[W_Q]->rot_log2;
        const int fuse_gu = part[W_GATE] && part[W_UP] && !getenv("OPC_CUDA_NO_FUSE") &&
                            part[W_UP]->rot_log2 == part[W_GATE]->rot_log2;
        if (fuse_qkv) {
            snprintf(name, sizeof name, "blk.%d.attn_qkv", l);
            if ((st = upload_fused(f, part + W_Q, 3, name, &L->qkv)) != OPC_OK) goto fail;
            if ((uint64_t)L->qkv.rows * (uint64_t)dim > max_cb) max_cb = (uint64_t)L->qkv.rows * (uint64_t)dim;
        }
        if (fuse_gu) {
            snprintf(name, sizeof name, "blk.%d.ffn_gate_up", l);
            if ((st = upload_fused(f, part + W_GATE, 2, name, &L->gate_up)) != OPC_OK) goto fail;
            if ((uint64_t)L->gate_up.rows * (uint64_t)dim > max_cb)
                max_cb = (uint64_t)L->gate_up.rows * (uint64_t)dim;
        }
        for (int w = 0; w < W_COUNT; w++) {
            if ((fuse_qkv && w <= W_V) || (fuse_gu && (w == W_GATE || w == W_UP))) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, g_wname[w]);
            if ((st = prep_weight(f, d, name, shp[w][0], shp[w][1], &L->w[w])) != OPC_OK) goto fail;
            if (L->w[w].kind == WK_CB && (uint64_t)(shp[w][0] * shp[w][1]) > max_cb)
                max_cb = (uint64_t)(shp[w][0] * shp[w][1]);
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((st = prep_vec(f, d, name, dim, 1, &L->attn_norm)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((st = prep_vec(f, d, name, dim, 1, &L->ffn_norm)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.attn_q.bias", l);
        if ((st = prep_vec(f, d, name, qd, c->attn_bias, &L->bq)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
        if ((st = prep_vec(f, d, name, kvd, c->attn_bias, &L->bk)) != OPC_OK) goto fail;
        snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
        if ((st = prep_vec(f, d, name, kvd, c->attn_bias, &L->bv)) != OPC_OK) goto fail;
    }

    /* RoPE tables (ctx, head_dim/2), fp32 as on the CPU */
    {
        const int half = c->head_dim / 2;
        const uint64_t nrope = (uint64_t)ctx * (uint64_t)half;
        float *hc = (float *)malloc(nrope * sizeof(float)), *hs = (float *)malloc(nrope * sizeof(float));
        if (!hc || !hs) {
            free(hc), free(hs);
            st = opc_error(OPC_ERR_NOMEM, "cuda forward: rope tables");
            goto fail;
        }
        for (int i = 0; i < half; i++) {
            /* the CPU path's function, so both tables are bit-identical */
            const double inv = opc_rope_inv_freq(c, i);
            for (int32_t p = 0; p < ctx; p++) {
                const double a = (double)p * inv;
                hc[(uint64_t)p * half + i] = (float)cos(a);
                hs[(uint64_t)p * half + i] = (float)sin(a);
            }
        }
        st = dev_alloc(f, (void **)&f->rope_cos, nrope * 4u, "rope cos");
        if (st == OPC_OK) st = dev_alloc(f, (void **)&f->rope_sin, nrope * 4u, "rope sin");
        if (st == OPC_OK && ((e = cudaMemcpy(f->rope_cos, hc, nrope * 4u, cudaMemcpyHostToDevice)) != cudaSuccess ||
                             (e = cudaMemcpy(f->rope_sin, hs, nrope * 4u, cudaMemcpyHostToDevice)) != cudaSuccess))
            st = cuda_err(e, "rope tables");
        free(hc), free(hs);
        if (st != OPC_OK) goto fail;
        f->mem.scratch += 2 * nrope * 4u;
    }

    /* KV cache (fp16) */
    {
        const uint64_t nkv = (uint64_t)c->n_layers * (uint64_t)ctx * (uint64_t)kvd;
        if ((st = dev_alloc(f, (void **)&f->kcache, nkv * 2u, "key cache")) != OPC_OK) goto fail;
        if ((st = dev_alloc(f, (void **)&f->vcache, nkv * 2u, "value cache")) != OPC_OK) goto fail;
        f->mem.kv_cache = 2 * nkv * 2u;
    }

    /* Attention splits for decode: chunks of >= 64 keys, at most 32 splits,
     * so a decode step has n_heads * splits blocks (e.g. 32 * 16 = 512 on an
     * 8B shape at ctx 1024: several waves over 132 SMs). */
    {
        int64_t ch = ((int64_t)ctx + 31) / 32;
        ch = ((ch + 63) / 64) * 64;
        f->chunk = (int)ch;
        f->splits_max = (int)(((int64_t)ctx + ch - 1) / ch);
    }

    /* rotations: every rotated matrix's block size prepared (shared memory
     * limits are raised here, never during a graph capture) */
    {
        const gweight *all[2] = {&f->embd, &f->head};
        for (int i = 0; i < 2; i++)
            if (all[i]->kind == WK_CB && all[i]->rot && (e = rotate_prepare(all[i]->rot)) != cudaSuccess) {
                st = cuda_err(e, "rotation kernel");
                goto fail;
            }
        for (int32_t l = 0; l < c->n_layers; l++) {
            glayer *L = &f->layers[l];
            const gweight *ws[W_COUNT + 2] = {&L->qkv, &L->gate_up};
            for (int w = 0; w < W_COUNT; w++) ws[2 + w] = &L->w[w];
            for (int w = 0; w < W_COUNT + 2; w++)
                if (ws[w]->kind == WK_CB && ws[w]->rot && (e = rotate_prepare(ws[w]->rot)) != cudaSuccess) {
                    st = cuda_err(e, "rotation kernel");
                    goto fail;
                }
        }
    }

    /* activations */
    {
        const int64_t maxc = dim > qd ? (dim > hid ? dim : hid) : (qd > hid ? qd : hid);
        const uint64_t B8 = B < GBIG_MAX_BATCH ? B : GBIG_MAX_BATCH;
        const uint64_t npart = B8 * (uint64_t)c->n_heads * (uint64_t)f->splits_max * (uint64_t)(hd + 2);
        struct {
            void **p;
            uint64_t bytes;
            const char *what;
        } bufs[] = {{(void **)&f->x, B * dim * 4, "x"},
                    {(void **)&f->x2, (B < 4 ? B : 4) * dim * 4, "residual (second buffer)"},
                    {(void **)&f->xb32, B * dim * 4, "xb"},
                    {(void **)&f->xb16, B * dim * 2, "xb16"},
                    {(void **)&f->qkv, B * (qd + 2 * kvd) * 4, "qkv"},
                    {(void **)&f->xr32, B * (uint64_t)maxc * 4, "rotated input"},
                    {(void **)&f->xr16, B * (uint64_t)maxc * 2, "rotated input fp16"},
                    {(void **)&f->att32, B * qd * 4, "att"},
                    {(void **)&f->att16, B * qd * 2, "att16"},
                    {(void **)&f->xo, B * dim * 4, "xo"},
                    {(void **)&f->hb, B * hid * 4, "hb"},
                    {(void **)&f->gu, B * 2 * hid * 4, "gate/up"},
                    {(void **)&f->hb16, B * hid * 2, "hb16"},
                    {(void **)&f->logits, B * vocab * 4, "logits"},
                    {(void **)&f->part, npart * 4, "attention partials"},
                    {(void **)&f->g_best, 8, "greedy scratch"},
                    {(void **)&f->g_cnt, 4, "greedy counter"},
                    {(void **)&f->g_step, 4, "greedy step"},
                    {(void **)&f->g_out, (uint64_t)ctx * 4, "greedy tokens"},
                    {(void **)&f->d_in, (B + 1) * 4, "tokens"},
                    {(void **)&f->dq16, B > GBIG_MAX_BATCH ? max_cb * 2 : 0, "dequant scratch"}};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
            if ((st = dev_alloc(f, bufs[i].p, bufs[i].bytes, bufs[i].what)) != OPC_OK) goto fail;
            f->mem.scratch += bufs[i].bytes;
        }
        if ((e = cudaMemset(f->g_best, 0, 8)) != cudaSuccess || (e = cudaMemset(f->g_cnt, 0, 4)) != cudaSuccess) {
            st = cuda_err(e, "greedy scratch");
            goto fail;
        }
        if ((e = cudaMallocHost((void **)&f->h_in, (size_t)(B + 1) * 4)) != cudaSuccess) {
            f->h_in = NULL;
            st = cuda_err(e, "pinned token buffer");
            goto fail;
        }
        if ((e = cudaMallocHost((void **)&f->h_logits, (size_t)vocab * 4)) != cudaSuccess) {
            f->h_logits = NULL;
            st = cuda_err(e, "pinned logits buffer");
            goto fail;
        }
    }
    if ((st = opc_cuda_sampler_init(&f->smp, (int32_t)vocab)) != OPC_OK) goto fail;
    f->mem.scratch += opc_cuda_sampler_bytes(f->smp);
    *out = f;
    return OPC_OK;
fail:
    opc_cuda_forward_free(f);
    return st;
}

extern "C" void opc_cuda_forward_set_graph(opc_cuda_forward *f, int on) {
    if (f) f->use_graph = on != 0;
}

extern "C" void opc_cuda_forward_set_stats(opc_cuda_forward *f, struct opc_cuda_act_stats *s) {
    if (f) f->stats = s;
}
extern "C" const opc_config *opc_cuda_forward_config(const opc_cuda_forward *f) { return &f->cfg; }
extern "C" int32_t opc_cuda_forward_ctx(const opc_cuda_forward *f) { return f->ctx; }
extern "C" opc_cuda_forward_mem opc_cuda_forward_memory(const opc_cuda_forward *f) { return f->mem; }

/* ========================================================== the pass === */

/* OPC_CUDA_CB4=generic: the old one-warp-per-row 4-bit GEMV (comparisons). */
static int getenv_cached_cb4_off(void) {
    static int v = -1; /* benign race: every writer stores the same value */
    if (v < 0) {
        const char *e = getenv("OPC_CUDA_CB4");
        v = e && !strcmp(e, "generic");
    }
    return v;
}

/* Whether a 2-bit matrix takes the fused GEMM (cb_gemm.cu) for n tokens,
 * instead of dequantizing it to fp16 for cuBLAS. H200 (logs
 * bench/cuda/results/h200_2026-11-26_s4_h2_*): it beats dequant + cuBLAS
 * 1.2-4x at 16..64 tokens, breaks even near 128 on 4096-row matrices and
 * loses from ~256 (cuBLAS drives the tensor cores at ~2.4x its rate). The
 * GEMVs stay at n <= 8: faster there, except at n = 8 on large matrices
 * with outliers. OPC_CUDA_GEMM=fused|cublas forces one path for every n > 8. */
#define GEMM_FUSED_MAX 128
static int use_fused_gemm(const gweight *w, int n) {
    static int mode = -1; /* 0 auto, 1 fused, 2 cublas; benign race: every writer stores the same value */
    if (mode < 0) {
        const char *e = getenv("OPC_CUDA_GEMM");
        mode = e && !strcmp(e, "fused") ? 1 : e && !strcmp(e, "cublas") ? 2 : 0;
    }
    if (w->kind != WK_CB || w->cb.bits != 2 || n <= GBIG_MAX_BATCH) return 0;
    return (mode == 1 || (mode == 0 && n <= GEMM_FUSED_MAX)) && opc_cuda_cb_gemm_ok(&w->cb);
}

/* Y (n, rows) = X (n, cols) Wᵀ. x32 and x16 are the same activations in
 * fp32 (GEMV kernels) and fp16 (cuBLAS). */
static opc_status linear(opc_cuda_forward *f, const gweight *w, const float *x32, const __half *x16,
                         int n, float *y) {
    if (w->kind == WK_CB && w->rot > 0) {
        /* a rotated matrix multiplies R^T x (cb.h). xr holds the rotation of
         * xr_src (made by a fused norm, or by an earlier linear() on the same
         * input: q/k/v and gate/up when not fused); every producer of an
         * input invalidates it (xr_src = NULL) before writing. */
        if (!(f->xr_src == x32 && f->xr_rot == w->rot && f->xr_n == n)) {
            rotate(x32, f->xr32, f->xr16, n, (int)w->cols, w->rot, 0, f->stream);
            opc_status st = kcheck("input rotation");
            if (st != OPC_OK) return st;
            f->xr_src = x32, f->xr_rot = w->rot, f->xr_n = n;
        }
        x32 = f->xr32, x16 = f->xr16;
    }
    if (use_fused_gemm(w, n)) {
        opc_status st = opc_cuda_cb_gemm(&w->cb, reinterpret_cast<const uint16_t *>(x16), n, y, f->stream);
        if (st != OPC_ERR_UNSUPPORTED) return st; /* else x16 misaligned: the paths below */
    }
    if (w->kind == WK_CB && n <= GBIG_MAX_BATCH) {
        if (w->cb.bits == 2)
            return opc_cuda_cb_gemv_x16(&w->cb, x32, reinterpret_cast<const uint16_t *>(x16), n, y, f->stream);
        if (cb4_gemv_ok(w->cbd) && !getenv_cached_cb4_off())
            cb4_gemv(w->cbd, x32, n, y, f->stream);
        else
            cb_gemv_generic(w->cbd, x32, n, y, f->stream);
        return kcheck("codebook gemv");
    }
    const __half *W = w->w16;
    if (w->kind == WK_CB) {
        /* Batches > 8: one pass that writes the fp16 matrix (2 bytes/weight)
         * lets cuBLAS run the tensor cores at full rate, instead of re-reading
         * the packed matrix once per 8 tokens. */
        cb_dequant_f16(w->cbd, f->dq16, f->stream);
        opc_status st = kcheck("codebook dequantize");
        if (st != OPC_OK) return st;
        W = f->dq16;
    }
    /* Column-major view: Yᵀ (rows, n) = W (rows, cols) · Xᵀ (cols, n), where
     * the row-major W buffer is Wᵀ in column-major with ld = cols. */
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t bs = cublasGemmEx(f->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols,
                                     &alpha, W, CUDA_R_16F, (int)w->cols, x16, CUDA_R_16F,
                                     (int)w->cols, &beta, y, CUDA_R_32F, (int)w->rows,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return bs == CUBLAS_STATUS_SUCCESS ? OPC_OK : blas_err(bs, "cublasGemmEx");
}

/* x (+)= xo; xb32/xb16 = rmsnorm(x) * w, x the residual (n, dim). When the
 * first matrix this input feeds is rotated (and the block size suits the
 * fused kernel), the same launch also writes its rotated copy into xr
 * (linear() then reuses it). */
static void norm_for(opc_cuda_forward *f, float *x, const float *xo, const float *w, const gweight *next, int n) {
    const opc_config *c = &f->cfg;
    f->xr_src = NULL; /* xb is rewritten */
    const int rot = next && next->kind == WK_CB ? next->rot : 0;
    if (rot > 0 && add_rmsnorm_rot_ok(c->dim, rot)) {
        add_rmsnorm_rot(x, xo, w, f->xb32, f->xb16, n, c->dim, c->rms_eps, rot, f->xr32, f->xr16, f->stream);
        f->xr_src = f->xb32, f->xr_rot = rot, f->xr_n = n;
    } else {
        add_rmsnorm(x, xo, w, f->xb32, f->xb16, n, c->dim, c->rms_eps, f->stream);
    }
}

/* Whether w's GEMV of n vectors can make its own input (opc_cuda_cb_gemv_xf):
 * plain 2-bit (no rotation: the transform writes the unrotated basis; no
 * group scales) on the int8 kernel. Depends only on the weight and n, so a
 * captured decode step makes the same choices at every replay. */
static int fuse_ok(const opc_cuda_forward *f, const gweight *w, int n) {
    /* statistics need the input itself, which a fused prologue never writes */
    return f->fuse_prologue && !f->stats && w->kind == WK_CB && w->rot == 0 && opc_cuda_cb_gemv_xf_ok(&w->cb, n);
}

/* Calibration statistics of a linear input x (n, cols) at (layer, site):
 * queued on the stream; nothing without a statistics object. */
static opc_status act_stats(opc_cuda_forward *f, int layer, opc_act_site site, const float *x, int n) {
    return f->stats ? opc_cuda_act_stats_add(f->stats, layer, site, x, n, f->stream) : OPC_OK;
}

/* The norm before `next` (the only consumer of its output), over the
 * residual *res (+ xo when not NULL), then y = next(norm): fused into the
 * GEMV when fuse_ok (the updated residual goes to the other of f->x/f->x2,
 * which becomes *res: the GEMV's blocks all read the old one, so it cannot
 * be updated in place), else add_rmsnorm in place + linear(). */
static opc_status norm_linear(opc_cuda_forward *f, float **res, const float *xo, const float *w,
                              const gweight *next, int n, float *y, int layer, opc_act_site site) {
    if (fuse_ok(f, next, n)) {
        float *other = *res == f->x ? f->x2 : f->x;
        opc_cuda_xform xf;
        memset(&xf, 0, sizeof xf);
        xf.kind = OPC_CUDA_XF_RMSNORM, xf.a = *res, xf.b = xo, xf.w = w, xf.eps = f->cfg.rms_eps;
        xf.ld = f->cfg.dim, xf.res_out = xo ? other : NULL; /* no delta: the residual stays */
        f->xr_src = NULL; /* xb is not written; nothing may reuse a rotation of it */
        opc_status st = opc_cuda_cb_gemv_xf(&next->cb, &xf, n, y, f->stream);
        if (st == OPC_OK && xo) *res = other;
        return st;
    }
    norm_for(f, *res, xo, w, next, n);
    opc_status st = kcheck("rmsnorm");
    if (st == OPC_OK) st = act_stats(f, layer, site, f->xb32, n);
    return st != OPC_OK ? st : linear(f, next, f->xb32, f->xb16, n, y);
}

/* One slice of n <= max_batch tokens whose position and ids are already in
 * d_in. Only queues work on f->stream (also while a graph is captured).
 * The residual stream lives in f->x, or in f->x2 after an odd number of
 * fused norms (norm_linear); every slice starts again from the embedding in
 * f->x, so a captured step replays the same pointers. */
static opc_status forward_slice(opc_cuda_forward *f, int n, opc_logits_mode mode) {
    const opc_config *c = &f->cfg;
    const int dim = c->dim, hid = c->hidden_dim, qd = f->q_dim, kvd = f->kv_dim;
    const int32_t *d_pos = f->d_in, *d_tok = f->d_in + 1;
    cudaStream_t s = f->stream;
    const int splits = n <= GBIG_MAX_BATCH ? f->splits_max : 1;
    set_pdl_ops(f->pdl_ops);
    const int chunk = splits == 1 ? f->ctx : f->chunk;
    opc_status st;

    embed(f->embd.kind == WK_DENSE ? f->embd.w16 : NULL, f->embd.kind == WK_CB ? &f->embd.cbd : NULL,
          d_tok, n, dim, f->x, s);
    if (f->embd.kind == WK_CB && f->embd.rot > 0) /* a lookup wants the original basis */
        rotate(f->x, f->x, NULL, n, dim, f->embd.rot, 1, s);
    if ((st = kcheck("embedding")) != OPC_OK) return st;
    float *res = f->x;           /* the residual stream (n, dim) */
    const float *pending = NULL; /* ffn output of the previous layer, added in the next norm */
    for (int l = 0; l < c->n_layers; l++) {
        glayer *L = &f->layers[l];
        __half *kc = f->kcache + (int64_t)l * f->ctx * kvd, *vc = f->vcache + (int64_t)l * f->ctx * kvd;
        float *q = f->qkv, *k, *v;
        int ldq, ldkv;
        if (L->qkv.kind) { /* fused: row t of qkv is [q | k | v] */
            if ((st = norm_linear(f, &res, pending, L->attn_norm, &L->qkv, n, f->qkv, l, OPC_ACT_ATTN_IN)) != OPC_OK)
                return st;
            k = q + qd, v = k + kvd, ldq = ldkv = qd + 2 * kvd;
        } else { /* three blocks of max_batch rows */
            norm_for(f, res, pending, L->attn_norm, &L->w[W_Q], n);
            if ((st = kcheck("rmsnorm")) != OPC_OK) return st;
            if ((st = act_stats(f, l, OPC_ACT_ATTN_IN, f->xb32, n)) != OPC_OK) return st;
            k = q + (int64_t)f->max_batch * qd, v = k + (int64_t)f->max_batch * kvd, ldq = qd, ldkv = kvd;
            if ((st = linear(f, &L->w[W_Q], f->xb32, f->xb16, n, q)) != OPC_OK) return st;
            if ((st = linear(f, &L->w[W_K], f->xb32, f->xb16, n, k)) != OPC_OK) return st;
            if ((st = linear(f, &L->w[W_V], f->xb32, f->xb16, n, v)) != OPC_OK) return st;
        }
        rope_store_kv(q, ldq, k, v, ldkv, L->bq, L->bk, L->bv, f->rope_cos, f->rope_sin, kc, vc, d_pos,
                      n, c->n_heads, c->n_kv_heads, c->head_dim, s);
        if ((st = kcheck("rope")) != OPC_OK) return st;
        f->xr_src = NULL; /* (att32 is only ever rotated by linear(): no stale copy, but stay uniform) */
        attention(q, ldq, kc, vc, d_pos, n, c->n_heads, c->n_kv_heads, c->head_dim, splits, chunk,
                  f->part, f->att32, f->att16, s);
        if ((st = kcheck("attention")) != OPC_OK) return st;
        if ((st = act_stats(f, l, OPC_ACT_ATTN_OUT, f->att32, n)) != OPC_OK) return st;
        if ((st = linear(f, &L->w[W_O], f->att32, f->att16, n, f->xo)) != OPC_OK) return st;
        const float *g = f->gu, *u;
        int ldg;
        if (L->gate_up.kind) { /* fused: row t of gu is [gate | up] */
            if ((st = norm_linear(f, &res, f->xo, L->ffn_norm, &L->gate_up, n, f->gu, l, OPC_ACT_FFN_IN)) != OPC_OK)
                return st;
            u = g + hid, ldg = 2 * hid;
        } else {
            norm_for(f, res, f->xo, L->ffn_norm, &L->w[W_GATE], n);
            if ((st = kcheck("rmsnorm")) != OPC_OK) return st;
            if ((st = act_stats(f, l, OPC_ACT_FFN_IN, f->xb32, n)) != OPC_OK) return st;
            u = g + (int64_t)f->max_batch * hid, ldg = hid;
            if ((st = linear(f, &L->w[W_GATE], f->xb32, f->xb16, n, f->gu)) != OPC_OK) return st;
            if ((st = linear(f, &L->w[W_UP], f->xb32, f->xb16, n, f->gu + (int64_t)f->max_batch * hid)) != OPC_OK)
                return st;
        }
        f->xr_src = NULL;
        const gweight *wd = &L->w[W_DOWN];
        if (fuse_ok(f, wd, n)) { /* silu(g) * u made in the down GEMV's staging: no hb */
            opc_cuda_xform xf;
            memset(&xf, 0, sizeof xf);
            xf.kind = OPC_CUDA_XF_SWIGLU, xf.a = g, xf.b = u, xf.ld = ldg;
            if ((st = opc_cuda_cb_gemv_xf(&wd->cb, &xf, n, f->xo, s)) != OPC_OK) return st;
        } else {
            if (wd->kind == WK_CB && wd->rot > 0 && swiglu_rot_ok(hid, wd->rot)) { /* fused: no separate rotation */
                swiglu_rot(f->hb, f->hb16, g, u, ldg, n, hid, wd->rot, f->xr32, f->xr16, s);
                f->xr_src = f->hb, f->xr_rot = wd->rot, f->xr_n = n;
            } else {
                swiglu(f->hb, f->hb16, g, u, ldg, n, hid, s);
            }
            if ((st = kcheck("swiglu")) != OPC_OK) return st;
            if ((st = act_stats(f, l, OPC_ACT_DOWN_IN, f->hb, n)) != OPC_OK) return st;
            if ((st = linear(f, wd, f->hb, f->hb16, n, f->xo)) != OPC_OK) return st;
        }
        pending = f->xo;
    }
    if (mode == OPC_LOGITS_NONE) return OPC_OK;
    norm_for(f, res, pending, f->out_norm, mode == OPC_LOGITS_LAST && n > 1 ? NULL : &f->head, n);
    if ((st = kcheck("output norm")) != OPC_OK) return st;
    const int first = mode == OPC_LOGITS_LAST ? n - 1 : 0;
    if ((st = act_stats(f, c->n_layers, OPC_ACT_HEAD_IN, f->xb32 + (int64_t)first * dim, n - first)) != OPC_OK)
        return st;
    return linear(f, &f->head, f->xb32 + (int64_t)first * dim, f->xb16 + (int64_t)first * dim,
                  n - first, f->logits);
}

/* What a decode step does with its logits: nothing (they are downloaded),
 * the greedy pick, or the sampler's pick; both picks write the next step's
 * (position, token) into d_in and the token into g_out[g_step++]. */
enum { PICK_NONE = 0, PICK_GREEDY = 1, PICK_SAMPLE = 2 };

/* One decode step (n = 1, last logits), plus the device-side pick `pick`.
 * Only queues work on f->stream. */
static opc_status decode_step(opc_cuda_forward *f, int pick) {
    opc_status st = forward_slice(f, 1, OPC_LOGITS_LAST);
    if (st != OPC_OK || pick == PICK_NONE) return st;
    if (pick == PICK_SAMPLE) return opc_cuda_sampler_pick(f->smp, f->logits, f->d_in, f->g_out, f->g_step, f->stream);
    argmax_next(f->logits, f->cfg.vocab_size, f->g_best, f->g_cnt, f->d_in, f->g_out, f->g_step, f->stream);
    return kcheck("greedy pick");
}

/* Capture the decode step once (into f->graph, f->graph_greedy with the
 * greedy pick or f->graph_sample with the sampler's). On any failure the
 * handle falls back to launching the kernels directly. */
static void capture_decode(opc_cuda_forward *f, int pick) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t *exec = pick == PICK_SAMPLE ? &f->graph_sample : pick == PICK_GREEDY ? &f->graph_greedy : &f->graph;
    int *failed = pick == PICK_SAMPLE   ? &f->graph_sample_failed
                  : pick == PICK_GREEDY ? &f->graph_greedy_failed
                                        : &f->graph_failed;
    if (cudaStreamBeginCapture(f->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        *failed = 1;
        return;
    }
    opc_status st = decode_step(f, pick);
    cudaError_t e = cudaStreamEndCapture(f->stream, &g);
    if (st == OPC_OK && e == cudaSuccess && g)
        e = cudaGraphInstantiate(exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (st != OPC_OK || e != cudaSuccess) {
        cudaGetLastError();
        *exec = NULL;
        *failed = 1;
    }
}

/* n_steps decode steps with the device-side pick `pick` (greedy or
 * sample), the first feeding tok at pos; out (host, n_steps) gets the picks.
 * With rng, the sampler's PRNG state comes back into *rng. */
static opc_status decode_on_device(opc_cuda_forward *f, int pick, int32_t tok, int32_t pos, int32_t n_steps,
                                   int32_t *out, uint64_t *rng) {
    if (!f || !out || n_steps < 1 || pos < 0)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: bad %s arguments (steps %d, pos %d)",
                         pick == PICK_SAMPLE ? "sampling" : "greedy", n_steps, pos);
    if ((int64_t)pos + n_steps > f->ctx)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: positions %d..%d exceed the context of %d", pos,
                         pos + n_steps - 1, f->ctx);
    if (tok < 0 || tok >= f->cfg.vocab_size)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: token %d is outside the vocabulary of %d", tok,
                         f->cfg.vocab_size);
    f->h_in[0] = pos, f->h_in[1] = tok;
    cudaError_t e = cudaMemcpyAsync(f->d_in, f->h_in, 8, cudaMemcpyHostToDevice, f->stream);
    if (e == cudaSuccess) e = cudaMemsetAsync(f->g_step, 0, 4, f->stream);
    if (e != cudaSuccess) return cuda_err(e, "device decoding start");
    cudaGraphExec_t *graph = pick == PICK_SAMPLE ? &f->graph_sample : &f->graph_greedy;
    int *failed = pick == PICK_SAMPLE ? &f->graph_sample_failed : &f->graph_greedy_failed;
    opc_status st = OPC_OK;
    /* no host round trip between steps: each step reads its (position,
     * token) from d_in, which the previous step's pick wrote */
    for (int32_t i = 0; i < n_steps && st == OPC_OK; i++) {
        if (f->use_graph && !*graph && !*failed && f->decode_eager) capture_decode(f, pick);
        if (f->use_graph && *graph) {
            e = cudaGraphLaunch(*graph, f->stream);
            if (e != cudaSuccess) st = cuda_err(e, "graph launch");
        } else {
            st = decode_step(f, pick);
            f->decode_eager = 1;
        }
    }
    if (st == OPC_OK) {
        e = cudaMemcpyAsync(out, f->g_out, (size_t)n_steps * 4, cudaMemcpyDeviceToHost, f->stream);
        if (e != cudaSuccess) st = cuda_err(e, "picked tokens download");
    }
    if (st == OPC_OK && rng) st = opc_cuda_sampler_get_rng(f->smp, rng, f->stream);
    e = cudaStreamSynchronize(f->stream);
    if (st == OPC_OK && e != cudaSuccess) st = cuda_err(e, "forward pass");
    return st;
}

extern "C" opc_status opc_cuda_forward_greedy(opc_cuda_forward *f, int32_t tok, int32_t pos, int32_t n_steps,
                                              int32_t *out) {
    return decode_on_device(f, PICK_GREEDY, tok, pos, n_steps, out, NULL);
}

extern "C" opc_status opc_cuda_forward_sample(opc_cuda_forward *f, int32_t tok, int32_t pos, int32_t n_steps,
                                              const opc_sampler_params *p, uint64_t *rng, int32_t *out) {
    if (!f || !p || !rng)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: sampling without parameters or PRNG state");
    if (p->temp <= 0.0f) /* greedy: the CPU sampler draws nothing either */
        return decode_on_device(f, PICK_GREEDY, tok, pos, n_steps, out, NULL);
    opc_status st = opc_cuda_sampler_set(f->smp, p, *rng, f->stream);
    return st != OPC_OK ? st : decode_on_device(f, PICK_SAMPLE, tok, pos, n_steps, out, rng);
}

extern "C" opc_status opc_cuda_forward_run(opc_cuda_forward *f, const int32_t *tokens, int32_t n,
                                           int32_t pos, float *logits_out, opc_logits_mode mode) {
    if (!f || !tokens || n <= 0 || pos < 0)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: bad arguments (n %d, pos %d)", n, pos);
    if ((int64_t)pos + n > f->ctx)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: positions %d..%d exceed the context of %d",
                         pos, pos + n - 1, f->ctx);
    if (mode != OPC_LOGITS_NONE && !logits_out)
        return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: logits requested but no output buffer");
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= f->cfg.vocab_size)
            return opc_error(OPC_ERR_INVALID_ARG, "cuda forward: token %d at index %d is outside the vocabulary of %d",
                             tokens[i], i, f->cfg.vocab_size);
    const int64_t vocab = f->cfg.vocab_size;
    opc_status st = OPC_OK;
    for (int32_t s = 0; s < n && st == OPC_OK; s += f->max_batch) {
        const int32_t m = n - s < f->max_batch ? n - s : f->max_batch;
        const int last_slice = s + m == n;
        const opc_logits_mode sm = mode == OPC_LOGITS_ALL ? OPC_LOGITS_ALL
                                   : (mode == OPC_LOGITS_LAST && last_slice) ? OPC_LOGITS_LAST
                                                                              : OPC_LOGITS_NONE;
        const int decode = m == 1 && sm == OPC_LOGITS_LAST;
        /* The first decode step runs directly (it warms up cuBLAS and the
         * kernels' attributes); the second captures the graph. */
        const int use_graph = f->use_graph && !f->stats; /* statistics: see opc_cuda_forward_set_stats */
        if (decode && use_graph && !f->graph && !f->graph_failed && f->decode_eager)
            capture_decode(f, 0);
        f->h_in[0] = pos + s;
        memcpy(f->h_in + 1, tokens + s, (size_t)m * sizeof *tokens);
        cudaError_t e = cudaMemcpyAsync(f->d_in, f->h_in, (size_t)(m + 1) * 4, cudaMemcpyHostToDevice,
                                        f->stream);
        if (e != cudaSuccess) return cuda_err(e, "token upload");
        if (decode && use_graph && f->graph) {
            e = cudaGraphLaunch(f->graph, f->stream);
            if (e != cudaSuccess) return cuda_err(e, "graph launch");
        } else {
            st = forward_slice(f, m, sm);
            if (decode) f->decode_eager = 1;
        }
        if (st == OPC_OK && sm != OPC_LOGITS_NONE) {
            const int64_t rows = sm == OPC_LOGITS_ALL ? m : 1;
            float *lo = mode == OPC_LOGITS_ALL ? logits_out + (int64_t)s * vocab : logits_out;
            e = cudaMemcpyAsync(rows == 1 ? f->h_logits : lo, f->logits,
                                (size_t)(rows * vocab) * sizeof(float), cudaMemcpyDeviceToHost, f->stream);
            if (e != cudaSuccess) st = cuda_err(e, "logits download");
        }
        e = cudaStreamSynchronize(f->stream);
        if (st == OPC_OK && e != cudaSuccess) st = cuda_err(e, "forward pass");
        if (st == OPC_OK && sm != OPC_LOGITS_NONE && (sm == OPC_LOGITS_LAST || m == 1))
            memcpy(mode == OPC_LOGITS_ALL ? logits_out + (int64_t)s * vocab : logits_out, f->h_logits,
                   (size_t)vocab * sizeof(float));
    }
    return st;
}
