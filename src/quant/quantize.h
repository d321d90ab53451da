/*
 * quantize.h — the quantizer: learned per-row codebooks (weighted 1-D
 * k-means), dense-and-sparse outliers, and the whole-model driver that
 * streams a source model into a .bf2 file one tensor at a time.
 *
 * Per 2-D weight W (rows, cols) and per output row r:
 *   1. fit a codebook of k values to W[r][:] by k-means weighted by the
 *      importance imp[c] of each input column (sum of squared calibration
 *      activations, or 1 without calibration); round it to fp16;
 *   2. assign every weight to its nearest codebook value;
 * then over the whole tensor:
 *   3. keep the `outlier_frac` weights with the largest weighted error
 *      imp[c] * (W - Q)^2 as fp16 additive corrections (CSR, see cb.h), and
 *      refit the codebooks of the affected rows on the remaining weights.
 *      Members of a tiny cluster (<= max(4, 4 x the row's average budget)
 *      weights, e.g. a spike that took a codebook entry for itself) are
 *      scored by their error without their entry, since moving them to the
 *      sparse part frees that entry for the bulk of the row;
 *   4. optionally (GPTQ), re-round each row with error feedback through the
 *      layer's input Hessian and refit its codebook in the H metric.
 * The codebook fit is the exact optimum of the weighted 1-D k-means problem
 * (kmeans.h, opc_kmeans_1d_optimal); OPC_QUANT_LLOYD uses Lloyd instead.
 * Bits -> layout: 1.58 -> CB2 k=3, 2 -> CB2 k=4, 3 -> CB4 k=8, 4 -> CB4 k=16.
 *
 * Two optional refinements of the layout (cb.h):
 *   - group scales: one byte q per (row, 64-column group), W = s(q) cb[idx].
 *     Per row the fit alternates (a) the exact weighted k-means of the
 *     codebook on w / s with weights imp * s^2 (the same objective, since
 *     imp (w - s c)^2 = imp s^2 (w/s - c)^2) and (b) per group, the q in a
 *     window around the current one that minimises the weighted error with
 *     the indices re-assigned for each candidate. q starts from each group's
 *     weighted mean |w| relative to the row's largest (again after the
 *     outliers are taken out). Outliers are chosen on the
 *     scaled error and stored as unscaled deltas.
 *   - input rotation: the row is replaced by w~ = opc_cb_rotate(w) (block
 *     2^rot_log2) before any of the above; importance and Hessian must then
 *     be statistics of rotated activations (the calibration keeps rotated
 *     sums of squares, the quantizer forms R^T H R). Rotation spreads a
 *     massive input column (SmolLM2: one column holds 20-55 % of the
 *     importance of attn_q/k) over its whole block, where a diagonal
 *     importance can no longer protect it: without GPTQ, which sees the
 *     off-diagonal H, rotation measured far worse (docs/RESULTS.md).
 *
 * The round-to-nearest baseline (OPC_QUANT_RTN) uses the same layout with k
 * evenly spaced levels between the row's min and max.
 *
 * Determinism: every row is fitted with a seed derived from (seed, tensor,
 * row), so results do not depend on the thread count; GPTQ rows are
 * independent given the layer's factor (blocks of rows only share it).
 */
#ifndef OPC_QUANTIZE_H
#define OPC_QUANTIZE_H

#include "../model/model.h"

#include <signal.h>
#include <stdint.h>

typedef enum opc_quant_method {
    OPC_QUANT_KMEANS = 0, /* importance-weighted k-means codebooks, exact 1-D optimum (default) */
    OPC_QUANT_RTN = 1,    /* naive baseline: k uniform levels between row min and max */
    OPC_QUANT_LLOYD = 2   /* weighted k-means by Lloyd (quantile + k-means++ starts): the ablation */
} opc_quant_method;

/* Storage choices for one tensor. */
typedef enum opc_quant_choice {
    OPC_QC_F32 = 0, /* norms, biases */
    OPC_QC_F16,     /* --keep-fp16 (default: token_embd / output head) */
    OPC_QC_CB       /* codebook-quantized */
} opc_quant_choice;

/* Bits value (1.58, 2, 3, 4) -> index width and k; returns 0 when unsupported. */
int opc_quant_bits_layout(float bits, int32_t *index_bits, int32_t *k);

/* ---------------------------------------------------- one matrix -------- */

typedef struct opc_qmatrix_params {
    int32_t index_bits;     /* 2 or 4 */
    int32_t k;              /* codebook entries, k <= 2^index_bits */
    opc_quant_method method;
    double outlier_frac;    /* in [0, 0.5] */
    const float *importance;/* (cols) per input column, or NULL = uniform */
    uint64_t seed;
    int32_t n_init;         /* k-means starts per row (<= 0: 3) */
    int32_t n_threads;      /* <= 0: OpenMP default */
    volatile sig_atomic_t *interrupt; /* polled; set -> OPC_ERR_INTERRUPTED */
    /* GPTQ-style error feedback: the layer's input Hessian H = sum x x^T
     * (cols, cols), or NULL for none. With it, each row's weights are
     * rounded to the codebook column by column, the rounding error is
     * pushed onto the remaining columns through the upper Cholesky factor
     * of (H + damp I)^-1, the codebook is refitted by least squares in the H
     * metric, and the row is rounded once more. */
    const float *hessian;
    double damp;            /* relative damping: damp * mean(diag H) (<= 0: 0.01) */
    const double *gptq_u;   /* NULL, or that upper factor of (H + damp I)^-1 (cols, cols) already
                               computed for this hessian and damp (opc_quantize_model shares one
                               among the tensors with one input: q/k/v, gate/up) */
    int group_scales;       /* 1: per-(row, 64-column group) scales (cb.h gscale) */
    int32_t scale_rounds;   /* alternations codebook fit <-> scale search (<= 0: 3) */
    /* Input rotation: W (given in the original basis) is quantized as
     * W~ = rows rotated by opc_cb_rotate with blocks of 2^rot_log2 (0 = none;
     * 2^rot_log2 must divide cols). importance and hessian must already be
     * in the rotated basis. The stored view records rot_log2. */
    int32_t rot_log2;
    int device;             /* 0 = CPU; 1 = CUDA (src/cuda/quant_cuda.h), GPTQ included */
} opc_qmatrix_params;

/* A quantized matrix that owns its arrays; `m` is the view over them. */
typedef struct opc_qmatrix {
    opc_cb_matrix m;
    uint8_t *idx;       /* (rows, row_bytes) */
    uint16_t *codebook; /* (rows, k) */
    uint32_t *ol_rowptr;/* (rows + 1) or NULL */
    uint16_t *ol_col;   /* (n_outliers) */
    uint16_t *ol_val;   /* (n_outliers) */
    uint8_t *gscale;    /* (rows, ceil(cols/64)) group scale bytes, or NULL */
    double err_num, err_den; /* sum imp (W - Q)^2 and sum imp W^2 over the matrix (rotated basis if rotated) */
} opc_qmatrix;

/* The per-column weights the k-means fit uses (cols): importance normalised
 * to mean 1 and floored at 1e-6 (a column never seen active still pulls a
 * little on the codebook); all 1 without importance or when it sums to 0.
 * Shared by the CPU and GPU quantizers, which must agree bit for bit. */
void opc_quant_column_weights(const float *importance, int64_t cols, float *imp);

/* Quantize W (rows, cols) row-major. On success *out owns everything (free
 * with opc_qmatrix_free). Errors: INVALID_ARG, NOMEM, INTERRUPTED. */
opc_status opc_quantize_matrix(const float *W, int64_t rows, int64_t cols,
                               const opc_qmatrix_params *p, opc_qmatrix *out);
void opc_qmatrix_free(opc_qmatrix *q); /* NULL-safe; leaves *q zeroed */

/* GPTQ's factor of H (n, n): *U (n, n) doubles, upper triangular, with
 * (H + lambda I)^-1 = U^T U, lambda = damp * mean(diag H) (damp <= 0: 0.01)
 * raised tenfold until positive definite; free() it. The one the CPU pass
 * uses, so the GPU quantizer (quant_cuda.h) can take the same. Errors:
 * INVALID_ARG (not positive definite), NOMEM. */
opc_status opc_quant_gptq_factor(const float *H, int64_t n, double damp, double **U);

/* All-in bytes of a codebook matrix as stored: indices + codebooks + group
 * scales + outliers. */
uint64_t opc_cb_matrix_bytes(const opc_cb_matrix *m);

/* Rotation block (log2) the quantizer uses for a matrix with `cols` input
 * columns: the largest power of two dividing cols, capped at 2^max_log2;
 * 0 (no rotation) when that is 1 or max_log2 <= 0. A function of cols only,
 * so matrices sharing an input (q/k/v, gate/up) share one rotated input. */
int32_t opc_quant_rot_log2(int64_t cols, int32_t max_log2);

/* Can this tensor be rotated? Everything but the token embedding (a lookup
 * table) and the output head (tied to it in most small models, and it keeps
 * the embedding's unrotated importance). */
int opc_quant_rotatable(const char *name);

/* ---------------------------------------------------- importance -------- */

/* Per-tensor input-column importance (sum of squared activations), keyed by
 * the canonical tensor name the forward pass's activation hook reports. */
typedef struct opc_importance {
    int32_t n;
    char (*names)[OPC_MAX_NAME]; /* (n) */
    int64_t *cols;               /* (n) */
    double **sumsq;              /* (n) arrays of cols */
    double **sumsq_rot;          /* (n) the same for R^T x (block opc_quant_rot_log2(cols,
                                    rot_max_log2)), or NULL entries: not collected */
    float **hess;                /* (n) (cols, cols) sum of x x^T (upper triangle filled), or NULL
                                    when not collected; entries fed the same X share one matrix */
    int32_t *hess_owner;         /* (n) index of the entry that owns hess[i] */
    int64_t *count;              /* (n) activation rows seen */
    int64_t n_tokens;            /* calibration tokens run */
    int32_t rot_max_log2;        /* rotation cap of sumsq_rot; 0 = none collected */
    int32_t device;              /* where the forward pass ran: 0 = CPU, 1 = CUDA */
} opc_importance;

void opc_importance_free(opc_importance *imp); /* members only; NULL-safe */
/* Column importance of `name` as floats into dst (cols); false if absent.
 * For token_embd.weight the output head's importance is used (tied). */
int opc_importance_get(const opc_importance *imp, const char *name, int64_t cols, float *dst);
/* The same in the basis of a rotation with block 2^rot_log2 (0: unrotated);
 * false when the calibration did not collect that block. */
int opc_importance_get_rotated(const opc_importance *imp, const char *name, int64_t cols, int32_t rot_log2,
                               float *dst);
/* The Hessian of `name` (full symmetric, cols x cols floats, owned by imp,
 * unrotated: the quantizer forms R^T H R itself), or NULL when not collected. */
const float *opc_importance_hessian(const opc_importance *imp, const char *name, int64_t cols);
/* H~ = R^T H R (n x n, H symmetric), the Hessian of rotated inputs
 * x~ = opc_cb_rotate(x): *out is a new aligned buffer (opc_aligned_free). */
opc_status opc_quant_rotate_hessian(const float *H, int64_t n, int32_t rot_log2, float **out);

/* Data-free calibration: sample n_tokens tokens from the model itself
 * (from BOS, temperature 1, seeded; restarting every seq_len tokens) while
 * the forward pass's activation hook sums x^2 per input column of every
 * linear weight. Text sampled from the model cannot overlap any evaluation
 * set. */
typedef void (*opc_calib_progress_fn)(void *user, int64_t tokens_done, int64_t tokens_total);

opc_status opc_calibrate_sampled(const opc_model_desc *d, int32_t n_tokens, int32_t seq_len,
                                 uint64_t seed, int32_t n_threads, int with_hessian,
                                 int32_t rot_max_log2, volatile sig_atomic_t *interrupt,
                                 opc_calib_progress_fn progress, void *progress_user,
                                 opc_importance *out);

/* with_hessian: also sum x x^T per linear layer input (for GPTQ; memory
 * grows with cols^2 per distinct input: ~400 MB for SmolLM2-135M).
 * rot_max_log2 > 0: every rotatable tensor also gets the sums of squares of
 * its rotated activations (opc_cb_rotate with opc_quant_rot_log2(cols,
 * rot_max_log2)), the basis the quantizer fits rotated weights in; the
 * quantizer's rot_max_log2 must be the same (checked per tensor). */

/* Calibration on given token ids (e.g. an encoded --calib file), in
 * sequences of seq_len tokens. */
opc_status opc_calibrate_tokens(const opc_model_desc *d, const int32_t *tokens, int64_t n_tokens,
                                int32_t seq_len, int32_t n_threads, int with_hessian,
                                int32_t rot_max_log2, volatile sig_atomic_t *interrupt,
                                opc_calib_progress_fn progress, void *progress_user,
                                opc_importance *out);

/* The same two calibrations with a choice of forward pass: device 0 = the
 * CPU reference (as above); 1 = the CUDA pass (src/cuda/forward_cuda.h) with
 * the statistics summed on the GPU (src/cuda/calib_cuda.h): sums of squares
 * in fp64 added row by row as on the CPU, the Hessian in fp32 (cuBLAS).
 * The GPU pass multiplies in fp16 (cuBLAS, fp32 accumulate), so its
 * activations, and the sums, differ slightly from the CPU's (measured in
 * docs/RESULTS.md; tests/test_cuda_quant bounds them); sampled calibration
 * can then also draw other tokens. Falls back to the CPU, with a warning
 * that says why, when the build has no CUDA, the environment has
 * OPC_CUDA_CALIB=0, or the model cannot run on the GPU (no device, an
 * unsupported shape, too little device memory). out->device tells which. */
opc_status opc_calibrate_sampled_dev(const opc_model_desc *d, int32_t n_tokens, int32_t seq_len,
                                     uint64_t seed, int32_t n_threads, int device, int with_hessian,
                                     int32_t rot_max_log2, volatile sig_atomic_t *interrupt,
                                     opc_calib_progress_fn progress, void *progress_user,
                                     opc_importance *out);
opc_status opc_calibrate_tokens_dev(const opc_model_desc *d, const int32_t *tokens, int64_t n_tokens,
                                    int32_t seq_len, int32_t n_threads, int device, int with_hessian,
                                    int32_t rot_max_log2, volatile sig_atomic_t *interrupt,
                                    opc_calib_progress_fn progress, void *progress_user,
                                    opc_importance *out);

/* ---------------------------------------------------- whole model ------- */

typedef struct opc_quant_progress {
    int32_t tensor, n_tensors;  /* index of the tensor being worked on */
    const char *name;
    const char *action;         /* "cb2 k=4", "f16", "f32", "calibrating" ... */
    uint64_t elems_done, elems_total; /* over all tensors, for the bar / ETA */
} opc_quant_progress;

typedef struct opc_quant_params {
    float bits;               /* 1.58, 2, 3 or 4 (default 2) */
    double outlier_frac;      /* default 0.01 */
    opc_quant_method method;
    const char *keep_fp16;    /* extra comma-separated glob patterns kept as f16 (NULL: none) */
    const char *overrides;    /* comma-separated PATTERN=BITS (BITS 1.58/2/3/4/16); first match wins */
    const char *outlier_overrides; /* comma-separated PATTERN=FRACTION: the outlier fraction of matching
                                 codebook tensors instead of outlier_frac; first match wins (NULL: none) */
    double bpw_budget;        /* > 0: opc_quantize_model first runs opc_quant_allocate, which promotes
                                 tensors (bits, outliers) under this all-in bpw of the codebook tensors;
                                 0 (opc_quant_defaults; the CLI sets 2.5 at --bits 2): every tensor as
                                 overrides / edge_bits / bits say */
    float edge_bits;          /* > 0: the first and the last transformer block (blk.0, blk.L-1) get
                                 these bits unless an override names them (0: like the rest) */
    int32_t edge_layers;      /* the model's block count for edge_bits; opc_quantize_model sets it
                                 from the model (direct opc_quant_plan callers set it themselves) */
    const opc_importance *importance; /* NULL: uniform importance */
    int gptq;                 /* error feedback with the calibration Hessians (needs them) */
    double gptq_damp;         /* relative damping of H (<= 0: 0.01) */
    int32_t n_threads;
    uint64_t seed;
    int32_t n_init;           /* k-means starts per row (<= 0: 3) */
    int group_scales;         /* per-(row, 64-column group) scales on codebook tensors */
    int32_t scale_rounds;     /* codebook fit <-> scale search alternations (<= 0: 3) */
    int rotate;               /* rotate the inputs of rotatable codebook tensors */
    const char *rotate_tensors; /* comma-separated patterns limiting which (NULL: all rotatable) */
    int32_t rot_max_log2;     /* largest rotation block, log2 (1..OPC_CB_ROT_MAX_LOG2) */
    int device;               /* 0 = CPU, 1 = CUDA (see opc_qmatrix_params.device) */
    volatile sig_atomic_t *interrupt;
    void (*progress)(void *user, const opc_quant_progress *p);
    void *progress_user;
} opc_quant_params;

opc_quant_params opc_quant_defaults(void);

typedef struct opc_quant_tensor_stat {
    char name[OPC_MAX_NAME];
    opc_type type;            /* stored type */
    int32_t k;
    int64_t rows, cols;
    uint64_t bytes;           /* all-in bytes stored for this tensor */
    uint64_t idx_bytes, cb_bytes, gs_bytes, ol_bytes; /* of which indices / codebooks / scales / outliers */
    int32_t rot_log2;         /* rotation block (log2), 0 = none */
    uint64_t n_outliers;
    float qerr;               /* relative weighted MSE, < 0 for unquantized */
    double seconds;
} opc_quant_tensor_stat;

typedef struct opc_quant_summary {
    int32_t n;
    opc_quant_tensor_stat *t; /* (n) */
    uint64_t q_bytes, q_elems;     /* codebook-quantized tensors only */
    uint64_t q_idx_bytes, q_cb_bytes, q_gs_bytes, q_ol_bytes; /* their split */
    uint64_t all_bytes, all_elems; /* every tensor (tensor data only) */
    uint64_t file_bytes;           /* the .bf2 file as written */
    uint64_t n_outliers;
    double seconds;
    char *alloc_steps;             /* with bpw_budget: the allocation steps taken, ", "-separated (owned),
                                      NULL when none fit */
    double alloc_bpw_base;         /* with bpw_budget: the all-in bpw before any step */
} opc_quant_summary;

void opc_quant_summary_free(opc_quant_summary *s); /* members; NULL-safe */

/* Rotation block (log2) the quantizer uses for tensor `name` with `cols`
 * input columns under p: 0 unless p->rotate, the tensor is rotatable and
 * matches p->rotate_tensors. */
int32_t opc_quant_rotated(const char *name, int64_t cols, const opc_quant_params *p);

/* What the quantizer will do with a tensor under params (choice + bits). */
opc_status opc_quant_plan(const opc_tensor *t, const opc_quant_params *p, opc_quant_choice *choice,
                          int32_t *index_bits, int32_t *k);
/* The outlier fraction a codebook tensor named `name` gets: the first match
 * in p->outlier_overrides, else p->outlier_frac; -1 (error set) when the
 * list is malformed. */
double opc_quant_outlier_frac(const char *name, const opc_quant_params *p);

/* Outliers a (rows, cols) codebook matrix keeps at fraction frac (none when
 * cols > 65535: the column index is 16-bit), and the all-in bytes it is
 * stored in (indices + codebooks + group scales + outliers), known before
 * quantizing. Both are upper bounds: a matrix with fewer weights that have
 * any error at all keeps only those (real weights: never in practice). */
uint64_t opc_quant_outlier_count(int64_t rows, int64_t cols, double frac);
uint64_t opc_quant_cb_bytes(int64_t rows, int64_t cols, int32_t index_bits, int32_t k, double outlier_frac,
                            int group_scales);

/* ---------------------------------------------------- bit allocation ---- */

/* Mixed precision under a size budget (the --bits 2 default, budget 2.5 bpw).
 * Start: every codebook tensor as p says (bits, outlier_frac, overrides,
 * edge_bits). Then walk a fixed list of steps, each "these tensors to 4 bits
 * without outliers" or "these tensors' outliers to F", in the order of their
 * measured KLD gain per stored bit (SmolLM2-135M, docs/RESULTS.md); a step is
 * taken when the all-in bpw over the codebook tensors stays <= the budget,
 * else skipped (a later, cheaper one may still fit). Tensors named by the
 * caller's overrides, outlier overrides or edge_bits are never changed (but
 * counted). A budget below the uniform size takes no step. Steps name tensors by
 * role (first / last block, class), so the list applies to any Llama-style
 * model. The result is exact per-tensor rules: bits rules (the caller's
 * overrides first) and outlier rules, to use as p->overrides and
 * p->outlier_overrides. Deterministic: a function of names, shapes and p. */
typedef struct opc_quant_alloc {
    char *overrides;          /* PATTERN=BITS list (owned) */
    char *outlier_overrides;  /* PATTERN=FRACTION list (owned) */
    char *steps;              /* the steps taken, ", "-separated (owned), NULL when none fit */
    double bpw_base, bpw;     /* all-in bpw over the codebook tensors before / after */
    uint64_t q_bytes, q_elems;/* after: bytes and weights of the codebook tensors */
} opc_quant_alloc;

/* n_layers: the model's block count (for "the last block"). Errors:
 * INVALID_ARG (bad overrides), NOMEM. */
opc_status opc_quant_allocate(const opc_tensor *tensors, int32_t n_tensors, int32_t n_layers,
                              const opc_quant_params *p, opc_quant_alloc *out);
void opc_quant_alloc_free(opc_quant_alloc *a); /* members; NULL-safe */

/* Quantize every tensor of src into a .bf2 at out_path (atomic: on error or
 * interruption nothing appears under out_path and an existing file stays).
 * summary may be NULL. */
opc_status opc_quantize_model(const opc_model_desc *src, const char *out_path,
                              const opc_quant_params *p, opc_quant_summary *summary);

/* Quantize one tensor in memory exactly as opc_quantize_model does (the
 * tensor's position `tensor_index` feeds the seed). out gets an owned tensor
 * (free with opc_quant_tensor_free). Used by the round-trip tests. */
opc_status opc_quantize_tensor(const opc_tensor *src, int32_t tensor_index, const opc_quant_params *p,
                               opc_tensor *out, opc_qmatrix *qm);
void opc_quant_tensor_free(opc_tensor *t, opc_qmatrix *qm);

#endif /* OPC_QUANTIZE_H */
