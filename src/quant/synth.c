/*
 * synth.c — random-weight models with real shapes, streamed into a .bf2 file
 * (see synth.h for what the model contains and why).
 *
 * Sections: shapes · random numbers · vocabulary · tensor plan · row
 * generators · the streaming writer loop.
 */
#include "synth.h"

#include "../core/half.h"
#include "../format/bf2.h"
#include "quantize.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ shapes == */

typedef struct synth_shape {
    const char *name;
    const char *pre; /* pre-tokenizer of the real model, so prompts split alike */
    opc_config cfg;
} synth_shape;

/* Hyper-parameters of the public configs (config.json of each model). */
static const synth_shape g_shapes[] = {
    {"smollm2", "smollm",
     {.arch = OPC_ARCH_LLAMA, .dim = 576, .hidden_dim = 1536, .n_layers = 30, .n_heads = 9,
      .n_kv_heads = 3, .head_dim = 64, .vocab_size = 49152, .max_seq_len = 8192, .rms_eps = 1e-5f,
      .rope_theta = 100000.0f, .tied_embeddings = 1}},
    {"llama3.2-1b", "llama-bpe",
     {.arch = OPC_ARCH_LLAMA, .dim = 2048, .hidden_dim = 8192, .n_layers = 16, .n_heads = 32,
      .n_kv_heads = 8, .head_dim = 64, .vocab_size = 128256, .max_seq_len = 131072, .rms_eps = 1e-5f,
      .rope_theta = 500000.0f, .rope_scaling = OPC_ROPE_SCALING_LLAMA3, .rope_factor = 32.0f,
      .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_orig_max_pos = 8192,
      .tied_embeddings = 1}},
    {"llama3-8b", "llama-bpe",
     {.arch = OPC_ARCH_LLAMA, .dim = 4096, .hidden_dim = 14336, .n_layers = 32, .n_heads = 32,
      .n_kv_heads = 8, .head_dim = 128, .vocab_size = 128256, .max_seq_len = 8192, .rms_eps = 1e-5f,
      .rope_theta = 500000.0f, .tied_embeddings = 0}},
    /* one decoder layer of Llama-3-70B (plus embedding and head): per-layer timing */
    {"llama3-70b-layer", "llama-bpe",
     {.arch = OPC_ARCH_LLAMA, .dim = 8192, .hidden_dim = 28672, .n_layers = 1, .n_heads = 64,
      .n_kv_heads = 8, .head_dim = 128, .vocab_size = 128256, .max_seq_len = 8192, .rms_eps = 1e-5f,
      .rope_theta = 500000.0f, .tied_embeddings = 0}},
    /* for tests: every code path of the big shapes, in milliseconds */
    {"tiny", "gpt2",
     {.arch = OPC_ARCH_LLAMA, .dim = 128, .hidden_dim = 320, .n_layers = 2, .n_heads = 4,
      .n_kv_heads = 2, .head_dim = 32, .vocab_size = 512, .max_seq_len = 512, .rms_eps = 1e-5f,
      .rope_theta = 10000.0f, .tied_embeddings = 1}},
    /* for tests: an own output head (the 8B/70B layout), and widths that are
     * not multiples of the 64-column packing group (padding paths) */
    {"tiny-untied", "gpt2",
     {.arch = OPC_ARCH_LLAMA, .dim = 96, .hidden_dim = 200, .n_layers = 2, .n_heads = 3,
      .n_kv_heads = 1, .head_dim = 32, .vocab_size = 300, .max_seq_len = 512, .rms_eps = 1e-5f,
      .rope_theta = 10000.0f, .tied_embeddings = 0}},
};
#define N_SHAPES ((int)(sizeof g_shapes / sizeof g_shapes[0]))

const char *opc_synth_shape_name(int i) { return i >= 0 && i < N_SHAPES ? g_shapes[i].name : NULL; }

static const synth_shape *find_shape(const char *name) {
    for (int i = 0; name && i < N_SHAPES; i++)
        if (!strcmp(g_shapes[i].name, name)) return &g_shapes[i];
    return NULL;
}

static opc_status unknown_shape(const char *name) {
    char list[256] = "";
    for (int i = 0; i < N_SHAPES; i++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", g_shapes[i].name);
    }
    return opc_error(OPC_ERR_INVALID_ARG, "synth: unknown shape '%s' (known: %s)", name ? name : "(null)", list);
}

opc_status opc_synth_config(const char *shape, int32_t n_layers, opc_config *cfg) {
    const synth_shape *s = find_shape(shape);
    if (!s) return unknown_shape(shape);
    if (n_layers < 0 || n_layers > 4096)
        return opc_error(OPC_ERR_INVALID_ARG, "synth: --layers %d out of range (1..4096)", n_layers);
    *cfg = s->cfg;
    if (n_layers > 0) cfg->n_layers = n_layers;
    return opc_config_validate(cfg, shape);
}

opc_synth_params opc_synth_defaults(void) {
    opc_synth_params p;
    memset(&p, 0, sizeof p);
    p.shape = "smollm2";
    p.bits = 2.0f;
    p.head_bits = 16.0f;
    p.embd_bits = 16.0f;
    p.seed = 1;
    return p;
}

/* ======================================================== random numbers == */

/* splitmix64: one add and a 64-bit finalizer per draw, fast enough that
 * generating the 2 GB of an 8B model is bound by the disk, and good enough
 * for values nobody reads. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_next(uint64_t *s) { return mix64(*s += 0x9E3779B97F4A7C15ull); }

/* The state of one row's stream: a pure function of the tensor's base
 * (seed x name) and the row, so rows can be made in any order by any thread. */
enum { STREAM_VALUES = 0, STREAM_INDICES = 1, STREAM_OUTLIERS = 2, STREAM_SCALES = 3 };
static inline uint64_t row_stream(uint64_t base, int64_t row, int stream) {
    return base ^ mix64(((uint64_t)row << 2) | (uint64_t)stream);
}

/* Approximately standard normal: Irwin-Hall sum of four 16-bit uniforms
 * (mean 2, variance 1/3), rescaled. One draw per value; tails end at 3.46. */
static inline float gauss(uint64_t r) {
    uint32_t s = (uint32_t)(r & 0xffff) + (uint32_t)((r >> 16) & 0xffff) + (uint32_t)((r >> 32) & 0xffff) +
                 (uint32_t)(r >> 48);
    return ((float)s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}
static inline float uniform01(uint64_t r) { return (float)(r >> 40) * (1.0f / 16777216.0f); }

static uint64_t name_hash(const char *s) { /* FNV-1a */
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* ============================================================ vocabulary == */

opc_status opc_synth_vocab(int32_t vocab_size, const char *pre, opc_vocab *v) {
    if (vocab_size < 258 || vocab_size > (1 << 24))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: vocabulary of %d tokens (need 258..2^24)", vocab_size);
    memset(v, 0, sizeof *v);
    v->kind = OPC_VOCAB_BPE_BYTELEVEL;
    v->n_tokens = vocab_size;
    v->tokens = calloc((size_t)vocab_size, sizeof *v->tokens);
    v->token_len = calloc((size_t)vocab_size, sizeof *v->token_len);
    v->types = calloc((size_t)vocab_size, sizeof *v->types);
    if (!v->tokens || !v->token_len || !v->types) goto nomem;
    /* GPT-2 bytes_to_unicode: printable bytes stand for themselves, the other
     * 68 map to U+0100.. in byte order. The tokenizer looks byte tokens up by
     * exactly this text. */
    uint32_t extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : 256 + extra++;
        char *s = malloc(3);
        if (!s) goto nomem;
        if (cp < 0x80) {
            s[0] = (char)cp;
            s[1] = '\0';
            v->token_len[b] = 1;
        } else { /* cp < 0x800: two UTF-8 bytes */
            s[0] = (char)(0xC0 | (cp >> 6));
            s[1] = (char)(0x80 | (cp & 0x3F));
            s[2] = '\0';
            v->token_len[b] = 2;
        }
        v->tokens[b] = s;
        v->types[b] = 1; /* normal */
    }
    for (int32_t i = 256; i < vocab_size; i++) {
        char buf[32];
        int n;
        if (i == 256)
            n = snprintf(buf, sizeof buf, "<|begin_of_text|>");
        else if (i == 257)
            n = snprintf(buf, sizeof buf, "<|end_of_text|>");
        else /* filler: unique, never produced by encoding (no merges reach it) */
            n = snprintf(buf, sizeof buf, "<synth_%d>", (int)i);
        v->tokens[i] = malloc((size_t)n + 1);
        if (!v->tokens[i]) goto nomem;
        memcpy(v->tokens[i], buf, (size_t)n + 1);
        v->token_len[i] = (uint32_t)n;
        v->types[i] = i < 258 ? 3 : 1; /* BOS/EOS are control tokens */
    }
    v->n_merges = 0;
    snprintf(v->pre, sizeof v->pre, "%s", pre ? pre : "gpt2");
    v->bos_id = 256;
    v->eos_id = 257;
    v->unk_id = -1;
    v->pad_id = -1;
    v->add_bos = 1;
    return OPC_OK;
nomem:
    opc_vocab_free(v);
    return opc_error(OPC_ERR_NOMEM, "synth: cannot allocate a %d-token vocabulary", vocab_size);
}

/* =========================================================== tensor plan == */

typedef struct tspec {
    char name[OPC_MAX_NAME];
    opc_type type;   /* F32 (norm), F16 or CB2/CB4 */
    int64_t rows;    /* 1-D: the length */
    int64_t cols;    /* 0 for 1-D */
    int32_t k;       /* codebook types */
    float sigma;     /* typical std of the weights */
} tspec;

/* bits -> type and k; 16 -> F16. Returns 0 for an unsupported value. */
static int bits_type(float bits, opc_type *type, int32_t *k) {
    if (fabsf(bits - 16.0f) < 0.01f) {
        *type = OPC_TYPE_F16;
        *k = 0;
        return 1;
    }
    int32_t ib;
    if (!opc_quant_bits_layout(bits, &ib, k)) return 0;
    *type = ib == 2 ? OPC_TYPE_CB2 : OPC_TYPE_CB4;
    return 1;
}

static void spec_set(tspec *t, const char *name, opc_type type, int32_t k, int64_t rows, int64_t cols,
                     float sigma) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->k = k;
    t->rows = rows;
    t->cols = cols;
    t->sigma = sigma;
}

/* Canonical order: embedding, then per layer the order the forward pass
 * reads them, then the final norm and the head. *n_out tensors in *out (freed by caller). */
static opc_status build_plan(const opc_config *c, opc_type wtype, int32_t wk, opc_type htype, int32_t hk,
                             opc_type etype, int32_t ek, tspec **out, int32_t *n_out) {
    int32_t n = 1 + 9 * c->n_layers + 1 + (c->tied_embeddings ? 0 : 1);
    tspec *p = calloc((size_t)n, sizeof *p);
    if (!p) return opc_error(OPC_ERR_NOMEM, "synth: cannot allocate the tensor plan");
    const float sig = 0.02f; /* Llama's initializer_range */
    int64_t dim = c->dim, hid = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int32_t i = 0;
    char nm[OPC_MAX_NAME];
    spec_set(&p[i++], "token_embd.weight", etype, ek, c->vocab_size, dim, sig);
    for (int32_t l = 0; l < c->n_layers; l++) {
#define W(suffix, type, k, r, cl)                                                        \
    snprintf(nm, sizeof nm, "blk.%d." suffix, (int)l);                                   \
    spec_set(&p[i++], nm, type, k, r, cl, sig)
        W("attn_norm.weight", OPC_TYPE_F32, 0, dim, 0);
        W("attn_q.weight", wtype, wk, qd, dim);
        W("attn_k.weight", wtype, wk, kvd, dim);
        W("attn_v.weight", wtype, wk, kvd, dim);
        W("attn_output.weight", wtype, wk, dim, qd);
        W("ffn_norm.weight", OPC_TYPE_F32, 0, dim, 0);
        W("ffn_gate.weight", wtype, wk, hid, dim);
        W("ffn_up.weight", wtype, wk, hid, dim);
        W("ffn_down.weight", wtype, wk, dim, hid);
#undef W
    }
    spec_set(&p[i++], "output_norm.weight", OPC_TYPE_F32, 0, dim, 0, sig);
    if (!c->tied_embeddings) spec_set(&p[i++], "output.weight", htype, hk, c->vocab_size, dim, sig);
    OPC_ASSERT(i == n);
    *out = p;
    *n_out = n;
    return OPC_OK;
}

static uint64_t spec_elems(const tspec *t) { return (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1); }

/* ======================================================== row generators == */

/* Lloyd-Max levels of a standard normal for k = 3, 4, 8, 16 (the optimal
 * 1-D quantizer a k-means on Gaussian-ish rows converges to); other k fall
 * back to evenly spaced quantiles. */
static void base_levels(int32_t k, float *lv) {
    static const float l3[] = {-1.2240f, 0.0f, 1.2240f};
    static const float l4[] = {-1.5104f, -0.4528f, 0.4528f, 1.5104f};
    static const float l8[] = {-2.1520f, -1.3440f, -0.7560f, -0.2451f, 0.2451f, 0.7560f, 1.3440f, 2.1520f};
    static const float l16[] = {-2.7326f, -2.0690f, -1.6180f, -1.2562f, -0.9424f, -0.6568f, -0.3881f, -0.1284f,
                                0.1284f,  0.3881f,  0.6568f,  0.9424f,  1.2562f,  1.6180f,  2.0690f,  2.7326f};
    const float *src = k == 3 ? l3 : k == 4 ? l4 : k == 8 ? l8 : k == 16 ? l16 : NULL;
    for (int32_t i = 0; i < k; i++)
        lv[i] = src ? src[i] : (k == 1 ? 0.0f : -2.0f + 4.0f * (float)i / (float)(k - 1));
}

/* A row's std: around sigma, spread over rows like trained weights are
 * (log-normal, ~25 %). */
static inline float row_sigma(uint64_t *s, float sigma) { return sigma * expf(0.25f * gauss(rng_next(s))); }

/* One codebook row: k sorted fp16 levels, and the packed indices. */
static void cb_row(const tspec *t, int32_t bits, uint64_t row_bytes, uint64_t base, int64_t r, const float *lv,
                   uint8_t *idx, uint16_t *cb, float *sig_out) {
    uint64_t s = row_stream(base, r, STREAM_VALUES);
    float sr = row_sigma(&s, t->sigma);
    float v[16];
    for (int32_t i = 0; i < t->k; i++) v[i] = sr * (lv[i] + 0.1f * gauss(rng_next(&s)));
    for (int32_t i = 1; i < t->k; i++) /* insertion sort: k <= 16 */
        for (int32_t j = i; j > 0 && v[j] < v[j - 1]; j--) {
            float tmp = v[j];
            v[j] = v[j - 1];
            v[j - 1] = tmp;
        }
    for (int32_t i = 0; i < t->k; i++) cb[i] = opc_fp32_to_fp16(v[i]);
    *sig_out = sr;

    /* Indices: uniform over [0, k). A power-of-two k takes random bytes as
     * they come (masked to k-1 in each field); k = 3 maps 8 random bits per
     * field to [0, 3) by multiply-shift. */
    s = row_stream(base, r, STREAM_INDICES);
    int32_t k = t->k;
    int pow2 = (k & (k - 1)) == 0;
    if (pow2) {
        uint8_t mask = (uint8_t)(bits == 2 ? (k - 1) * 0x55 : (k - 1) * 0x11);
        for (uint64_t o = 0; o < row_bytes; o += 8) { /* row_bytes is a multiple of 16 */
            uint64_t x = rng_next(&s);
            for (int j = 0; j < 8; j++) idx[o + j] = (uint8_t)(x >> (8 * j)) & mask;
        }
    } else {
        int per = bits == 2 ? 4 : 2; /* fields per byte */
        int fb = bits;
        uint64_t x = 0;
        int left = 0;
        for (uint64_t o = 0; o < row_bytes; o++) {
            uint8_t byte = 0;
            for (int f = 0; f < per; f++) {
                if (!left) {
                    x = rng_next(&s);
                    left = 8;
                }
                uint32_t u = (uint32_t)(x & 0xff);
                x >>= 8;
                left--;
                byte = (uint8_t)(byte | (((u * (uint32_t)k) >> 8) << (fb * f)));
            }
            idx[o] = byte;
        }
    }
    /* padding columns of the last group carry index 0 (cb.h) */
    int64_t padded = (int64_t)(row_bytes / (bits == 2 ? 16u : 32u)) * OPC_CB_GROUP;
    for (int64_t c = t->cols; c < padded; c++) {
        uint8_t *g = idx + (uint64_t)(c / OPC_CB_GROUP) * (bits == 2 ? 16u : 32u);
        int64_t j = c % OPC_CB_GROUP;
        if (bits == 2)
            g[j % 16] = (uint8_t)(g[j % 16] & ~(3u << (2 * (j / 16))));
        else
            g[j % 32] = (uint8_t)(g[j % 32] & ~(15u << (4 * (j / 32))));
    }
}

/* Outliers per row: frac * cols on average (the fractional part decided by a
 * coin), so the total matches the requested fraction on any shape. */
static inline uint32_t outlier_count(uint64_t base, int64_t r, double frac, int64_t cols) {
    double want = frac * (double)cols;
    uint32_t n = (uint32_t)want;
    uint64_t s = row_stream(base, r, STREAM_OUTLIERS);
    if ((double)uniform01(rng_next(&s)) < want - (double)n) n++;
    if (n > (uint32_t)cols) n = (uint32_t)cols;
    return n;
}

/* Columns: one per stratum [j*cols/n, (j+1)*cols/n), so they come out sorted
 * and distinct without a sort. Deltas: 2..6 row stds, random sign — the size
 * of the weights a real quantizer keeps aside. The count draw comes first
 * in the same stream, so it is skipped here. */
static void outlier_row(uint64_t base, int64_t r, int64_t cols, uint32_t n, float sr, uint16_t *col,
                        uint16_t *val) {
    uint64_t s = row_stream(base, r, STREAM_OUTLIERS);
    (void)rng_next(&s);
    for (uint32_t j = 0; j < n; j++) {
        uint64_t lo = (uint64_t)j * (uint64_t)cols / n, hi = (uint64_t)(j + 1) * (uint64_t)cols / n;
        uint64_t x = rng_next(&s);
        col[j] = (uint16_t)(lo + (x & 0xffffffffu) % (hi - lo));
        float mag = sr * (2.0f + 4.0f * uniform01(x));
        val[j] = opc_fp32_to_fp16((x >> 32) & 1 ? -mag : mag);
    }
}

/* Group scales of one row: q uniform in [0, 16), i.e. s(q) = 2^(-q/16) from 1
 * down to 0.52 -- about the spread of 64-column group magnitudes within a
 * trained weight row -- with the largest group (q = 0) forced on group 0, as
 * the quantizer normalises each row to its largest group. Eight scales per
 * draw. */
static void scale_row(uint64_t base, int64_t r, int64_t groups, uint8_t *gs) {
    uint64_t s = row_stream(base, r, STREAM_SCALES), x = 0;
    for (int64_t g = 0; g < groups; g++) {
        if (g % 8 == 0) x = rng_next(&s);
        gs[g] = (uint8_t)((x >> (8 * (g % 8))) & 15u);
    }
    gs[0] = 0;
}

/* Rotation block of a codebook tensor with `cols` inputs: the largest power
 * of two dividing cols (the widest Hadamard block the format allows), at most
 * 2^OPC_CB_ROT_MAX_LOG2. 0 (none) for odd widths. */
static int32_t rot_log2_for(int64_t cols) {
    int32_t l = 0;
    while (l < OPC_CB_ROT_MAX_LOG2 && cols % ((int64_t)2 << l) == 0) l++;
    return l;
}

/* A plain row: f16 ~ N(0, row std), or f32 norm weights near 1. */
static void plain_row(const tspec *t, uint64_t base, int64_t r, void *dst) {
    uint64_t s = row_stream(base, r, STREAM_VALUES);
    if (t->type == OPC_TYPE_F32) { /* 1-D: "row" r is element r */
        *(float *)dst = 1.0f + t->sigma * gauss(rng_next(&s));
        return;
    }
    float sr = row_sigma(&s, t->sigma);
    uint16_t *h = dst;
    for (int64_t c = 0; c < t->cols; c++) h[c] = opc_fp32_to_fp16(sr * gauss(rng_next(&s)));
}

/* ================================================== streaming write loop == */

typedef struct run_ctx {
    const opc_synth_params *p;
    int32_t n_threads;
    uint64_t elems_done, elems_total;
    int32_t n_tensors;
} run_ctx;

/* Rows per progress/interrupt step: ~4M elements, a few ms of work. */
static int64_t chunk_rows(const tspec *t) {
    int64_t cols = t->cols ? t->cols : 1;
    int64_t n = (4 << 20) / cols;
    return n < 1 ? 1 : n;
}

static opc_status step(run_ctx *x, int32_t ti, const tspec *t, int64_t rows_done) {
    if (x->p->progress) {
        opc_synth_progress pr = {x->elems_done + (uint64_t)rows_done * (uint64_t)(t->cols ? t->cols : 1),
                                 x->elems_total, ti + 1, x->n_tensors, t->name};
        x->p->progress(x->p->progress_user, &pr);
    }
    if (x->p->interrupt && *x->p->interrupt)
        return opc_error(OPC_ERR_INTERRUPTED, "synth: interrupted at tensor %s", t->name);
    return OPC_OK;
}

/* Generate one tensor into freshly allocated buffers and hand it to the writer. */
static opc_status make_tensor(run_ctx *x, int32_t ti, const tspec *t, opc_bf2_writer *w, uint64_t *bytes,
                              uint64_t *n_ol_out) {
    const opc_synth_params *p = x->p;
    uint64_t base = mix64(p->seed ^ mix64(name_hash(t->name)));
    int64_t chunk = chunk_rows(t);
    int nt = x->n_threads;
    opc_tensor ten;
    memset(&ten, 0, sizeof ten);
    snprintf(ten.name, sizeof ten.name, "%s", t->name);
    ten.type = t->type;
    ten.qerr = -1.0f; /* random values: no quantization error to report */
    opc_status st = OPC_OK;
    *n_ol_out = 0;

    if (t->type == OPC_TYPE_F32 || t->type == OPC_TYPE_F16) {
        uint64_t esz = t->type == OPC_TYPE_F32 ? 4 : 2, n = spec_elems(t), nb;
        if (!opc_mul_ok(n, esz, &nb)) return opc_error(OPC_ERR_INVALID_ARG, "synth: %s too large", t->name);
        uint8_t *buf = opc_aligned_alloc(nb);
        if (!buf) return opc_error(OPC_ERR_NOMEM, "synth: cannot allocate %llu bytes for %s",
                                   (unsigned long long)nb, t->name);
        uint64_t row_b = t->cols ? (uint64_t)t->cols * esz : esz;
        for (int64_t r0 = 0; r0 < t->rows && st == OPC_OK; r0 += chunk) {
            int64_t r1 = r0 + chunk < t->rows ? r0 + chunk : t->rows;
#pragma omp parallel for schedule(static) num_threads(nt)
            for (int64_t r = r0; r < r1; r++) plain_row(t, base, r, buf + (uint64_t)r * row_b);
            st = step(x, ti, t, r1);
        }
        if (t->cols) {
            ten.n_dims = 2;
            ten.shape[0] = t->rows;
            ten.shape[1] = t->cols;
        } else {
            ten.n_dims = 1;
            ten.shape[0] = t->rows;
        }
        ten.data = buf;
        ten.nbytes = nb;
        if (st == OPC_OK) st = opc_bf2_writer_add(w, &ten);
        *bytes = nb;
        opc_aligned_free(buf);
        return st;
    }

    /* codebook tensor */
    int32_t bits = t->type == OPC_TYPE_CB2 ? 2 : 4;
    uint64_t rb = opc_cb_row_bytes(bits, t->cols), rows = (uint64_t)t->rows;
    int with_ol = p->outlier_frac > 0.0;
    if (with_ol && t->cols > 65535)
        return opc_error(OPC_ERR_INVALID_ARG, "synth: %s: outliers need cols <= 65535 (got %lld)", t->name,
                         (long long)t->cols);
    uint8_t *idx = opc_aligned_alloc(rows * rb);
    uint16_t *cb = opc_aligned_alloc(rows * (uint64_t)t->k * 2);
    uint32_t *rowptr = with_ol ? opc_aligned_alloc((rows + 1) * 4) : NULL;
    /* Group scales on every codebook tensor; rotation on every one except the
     * embedding, whose rows are looked up as vectors (a rotated row would need
     * the inverse map per token) -- a tied head then stays unrotated too. */
    int64_t groups = opc_cb_groups(t->cols);
    uint8_t *gs = p->gscale ? opc_aligned_alloc(rows * (uint64_t)groups) : NULL;
    int32_t rot = p->rotate && strcmp(t->name, "token_embd.weight") != 0 ? rot_log2_for(t->cols) : 0;
    uint16_t *ol_col = NULL, *ol_val = NULL;
    uint64_t n_ol = 0;
    float lv[16];
    base_levels(t->k, lv);
    if (!idx || !cb || (with_ol && !rowptr) || (p->gscale && !gs)) {
        st = opc_error(OPC_ERR_NOMEM, "synth: cannot allocate %s (%lld x %lld)", t->name, (long long)t->rows,
                       (long long)t->cols);
        goto done;
    }
    if (with_ol) { /* counts first: the CSR offsets must be known before rows are filled in parallel */
        rowptr[0] = 0;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < t->rows; r++) rowptr[r + 1] = outlier_count(base, r, p->outlier_frac, t->cols);
        for (uint64_t r = 0; r < rows; r++) {
            n_ol += rowptr[r + 1];
            if (n_ol >= UINT32_MAX) {
                st = opc_error(OPC_ERR_INVALID_ARG, "synth: %s: %llu outliers do not fit 32-bit row pointers",
                               t->name, (unsigned long long)n_ol);
                goto done;
            }
            rowptr[r + 1] = (uint32_t)n_ol;
        }
        if (n_ol) {
            ol_col = opc_aligned_alloc(n_ol * 2);
            ol_val = opc_aligned_alloc(n_ol * 2);
            if (!ol_col || !ol_val) {
                st = opc_error(OPC_ERR_NOMEM, "synth: cannot allocate %llu outliers for %s",
                               (unsigned long long)n_ol, t->name);
                goto done;
            }
        }
    }
    for (int64_t r0 = 0; r0 < t->rows && st == OPC_OK; r0 += chunk) {
        int64_t r1 = r0 + chunk < t->rows ? r0 + chunk : t->rows;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = r0; r < r1; r++) {
            float sr;
            cb_row(t, bits, rb, base, r, lv, idx + (uint64_t)r * rb, cb + (uint64_t)r * (uint64_t)t->k, &sr);
            if (gs) scale_row(base, r, groups, gs + (uint64_t)r * (uint64_t)groups);
            if (n_ol) {
                uint32_t a = rowptr[r], b = rowptr[r + 1];
                outlier_row(base, r, t->cols, b - a, sr, ol_col + a, ol_val + a);
            }
        }
        st = step(x, ti, t, r1);
    }
    if (st == OPC_OK) {
        ten.n_dims = 2;
        ten.shape[0] = t->rows;
        ten.shape[1] = t->cols;
        ten.data = idx;
        ten.nbytes = rows * rb;
        opc_cb_matrix *m = &ten.cb;
        m->rows = t->rows;
        m->cols = t->cols;
        m->bits = bits;
        m->k = t->k;
        m->idx = idx;
        m->row_bytes = rb;
        m->codebook = cb;
        m->n_outliers = n_ol;
        if (n_ol) {
            m->ol_rowptr = rowptr;
            m->ol_col = ol_col;
            m->ol_val = ol_val;
        }
        m->gscale = gs;
        m->rot_log2 = rot;
        st = opc_bf2_writer_add(w, &ten);
        *bytes = opc_bf2_cb_bytes(m);
        *n_ol_out = n_ol;
    }
done:
    opc_aligned_free(idx);
    opc_aligned_free(cb);
    opc_aligned_free(gs);
    opc_aligned_free(rowptr);
    opc_aligned_free(ol_col);
    opc_aligned_free(ol_val);
    return st;
}

opc_status opc_synth_write(const char *path, const opc_synth_params *p, opc_synth_summary *summary) {
    if (!path || !*path || !p) return opc_error(OPC_ERR_INVALID_ARG, "synth: no output path given");
    double t0 = opc_time_s();
    const synth_shape *shape = find_shape(p->shape);
    if (!shape) return unknown_shape(p->shape);
    opc_type wtype, htype, etype;
    int32_t wk, hk, ek;
    if (!bits_type(p->bits, &wtype, &wk))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: bits %g: must be 1.58, 2, 3, 4 or 16", (double)p->bits);
    if (!bits_type(p->head_bits, &htype, &hk))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: head bits %g: must be 1.58, 2, 3, 4 or 16",
                         (double)p->head_bits);
    if (!bits_type(p->embd_bits, &etype, &ek))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: embedding bits %g: must be 1.58, 2, 3, 4 or 16",
                         (double)p->embd_bits);
    if (!(p->outlier_frac >= 0.0 && p->outlier_frac <= 0.5))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: outlier fraction %g out of range [0, 0.5]", p->outlier_frac);
    opc_config cfg;
    opc_status st = opc_synth_config(p->shape, p->n_layers, &cfg);
    if (st) return st;
    if (p->outlier_frac > 0.0 && wtype == OPC_TYPE_F16 && etype == OPC_TYPE_F16 &&
        (cfg.tied_embeddings || htype == OPC_TYPE_F16))
        return opc_error(OPC_ERR_INVALID_ARG, "synth: outliers need codebook weights (bits 1.58/2/3/4, not 16)");
    int any_cb = wtype != OPC_TYPE_F16 || etype != OPC_TYPE_F16 || (!cfg.tied_embeddings && htype != OPC_TYPE_F16);
    int any_rot = wtype != OPC_TYPE_F16 || (!cfg.tied_embeddings && htype != OPC_TYPE_F16);
    if (p->gscale && !any_cb)
        return opc_error(OPC_ERR_INVALID_ARG, "synth: group scales need codebook weights (bits 1.58/2/3/4, not 16)");
    if (p->rotate && !any_rot)
        return opc_error(OPC_ERR_INVALID_ARG, "synth: rotation needs codebook layer weights or a codebook untied "
                         "head (the embedding is never rotated)");

    tspec *plan = NULL;
    int32_t n = 0;
    opc_vocab vocab;
    memset(&vocab, 0, sizeof vocab);
    opc_bf2_writer *w = NULL;
    st = build_plan(&cfg, wtype, wk, htype, hk, etype, ek, &plan, &n);
    if (st == OPC_OK) st = opc_synth_vocab(cfg.vocab_size, shape->pre, &vocab);
    if (st == OPC_OK) st = opc_bf2_writer_open(&w, path);
    run_ctx x = {p, p->n_threads > 0 ? p->n_threads : omp_get_max_threads(), 0, 0, n};
    opc_synth_summary sum;
    memset(&sum, 0, sizeof sum);
    for (int32_t i = 0; i < n; i++) x.elems_total += spec_elems(&plan[i]);
    for (int32_t i = 0; i < n && st == OPC_OK; i++) {
        uint64_t bytes = 0, n_ol = 0;
        st = make_tensor(&x, i, &plan[i], w, &bytes, &n_ol);
        x.elems_done += spec_elems(&plan[i]);
        sum.tensor_bytes += bytes;
        sum.n_outliers += n_ol;
        sum.n_params += spec_elems(&plan[i]);
    }
    if (st == OPC_OK) {
        char name[128];
        const char *bname = wtype == OPC_TYPE_F16 ? "f16" : (fabsf(p->bits - 1.58f) < 0.01f ? "1.58bit" : "");
        /* the codebook variants, so `info` and benchmark logs say what was measured */
        const char *var = p->gscale && p->rotate ? "-gscale-rot" : p->gscale ? "-gscale" : p->rotate ? "-rot" : "";
        if (!*bname) {
            snprintf(name, sizeof name, "synth-%s-%gbit%s-seed%llu", shape->name, (double)p->bits, var,
                     (unsigned long long)p->seed);
        } else {
            snprintf(name, sizeof name, "synth-%s-%s%s-seed%llu", shape->name, bname, var,
                     (unsigned long long)p->seed);
        }
        st = opc_bf2_writer_finish(w, name, &cfg, &vocab);
    }
    opc_bf2_writer_close(w); /* removes the temporary file unless finished */
    opc_vocab_free(&vocab);
    free(plan);
    if (st) return st; /* messages already name the tensor or the file */
    sum.n_tensors = n;
    sum.seconds = opc_time_s() - t0;
    if (summary) *summary = sum;
    return OPC_OK;
}
