/*
 * test_cuda_forward.c — the GPU forward pass (src/cuda/forward_cuda.h)
 * against the CPU reference (src/model/forward.h) on real models:
 *   - stories260K in fp32 (weights go to the GPU as fp16 + cuBLAS);
 *   - the same model quantized here, in memory, with the project's quantizer:
 *     2-bit (CB2, outliers, quantized tied embedding/head) and 3/4-bit (CB4);
 *   - a 2-bit SmolLM2 .bf2 when one was made (gpu_carry/smollm2-2bit.bf2);
 *   - greedy decoding from "Zoo" on stories260K reproduces llama2.c's text;
 *   - the decode-step CUDA graph gives the same logits as direct launches;
 *   - argument errors.
 * Each comparison feeds both passes the same tokens (a prefill with every
 * row's logits, then greedy decode steps chosen from the CPU logits) and
 * checks per row max|gpu - cpu| <= tol * max(1, max|cpu|).
 *
 * Tolerance: the GPU rounds the inputs of every cuBLAS multiply and of the
 * 2-bit tensor-core GEMV to fp16 (relative 2^-11 per element), keeps the KV
 * cache in fp16 and stores dense weights as fp16; the CPU is fp32 throughout.
 * Relative errors of ~1e-3 per layer, growing slowly with depth, give the
 * 1e-2 (stories260K, 5 layers) and 2e-2 (SmolLM2, 30 layers) bounds used here.
 *
 * No GPU (CI) or built without nvcc: every case skips and the executable
 * exits 77.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "harness.h"

#include "core/core.h"
#include "model/forward.h"
#include "model/sampler.h"
#include "quant/quantize.h"
#include "quant/synth.h"
#include "tokenizer/tokenizer.h"

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"
#include "cuda/forward_cuda.h"

#include <stdint.h>

/* First existing path among the candidates (relative to the source tree). */
static int find_path(char *buf, size_t cap, const char *const *rels, int n) {
    for (int i = 0; i < n; i++) {
        harness_path(buf, cap, rels[i]);
        if (opc_file_exists(buf)) return 1;
    }
    return 0;
}

static opc_model_desc *open_stories(void) {
    /* gpu_carry/ is how the model travels to the GPU machine (../shared does not) */
    static const char *const rels[] = {"gpu_carry/stories260K/stories260K.bin",
                                       "../shared/models/stories260K/stories260K.bin"};
    char p[1024];
    if (!find_path(p, sizeof p, rels, 2)) return NULL;
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(p, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    return d;
}

/* ------------------------------------------------ in-memory quantization */

typedef struct qset {
    opc_qmatrix *q;
    int32_t n;
} qset;

/* Replace every layer weight of d (and token_embd when embd != 0) by its
 * codebook quantization: the i-th quantized tensor gets index width/k from
 * plan[i % n_plan], so a plan of several entries mixes types inside a layer
 * (fused and unfused GPU paths, codebooks of different k in one fused
 * matrix). The tensors then point into qs (freed by qset_free, after the
 * description). */
/* gscale: per-group scales on every quantized tensor. rot: 0 none; 1 every
 * tensor's input rotated (largest power-of-two block dividing its width, the
 * embedding too: a rotated lookup and a rotated tied head); 2 every second
 * tensor only, so q/k/v and gate/up mix rotated and plain inputs (unfused). */
static int quantize_desc(opc_model_desc *d, const int32_t (*plan)[2], int n_plan, int embd,
                         double outliers, int gscale, int rot, qset *qs) {
    qs->q = calloc((size_t)d->n_tensors, sizeof *qs->q);
    qs->n = 0;
    if (!qs->q) return 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        opc_tensor *t = &d->tensors[i];
        int layer = -1;
        const int is_embd = !strcmp(t->name, "token_embd.weight");
        if (t->n_dims != 2 || t->type != OPC_TYPE_F32) continue;
        if (sscanf(t->name, "blk.%d.", &layer) != 1 && !(embd && is_embd)) continue;
        const int32_t *pl = plan[qs->n % n_plan];
        opc_qmatrix_params p;
        memset(&p, 0, sizeof p);
        p.index_bits = pl[0], p.k = pl[1];
        p.method = OPC_QUANT_KMEANS;
        p.outlier_frac = outliers;
        p.seed = 7;
        p.n_init = 1;
        p.group_scales = gscale;
        if (rot == 1 || (rot == 2 && qs->n % 2 == 0)) p.rot_log2 = opc_quant_rot_log2(t->shape[1], OPC_CB_ROT_MAX_LOG2);
        opc_qmatrix *q = &qs->q[qs->n];
        if (opc_quantize_matrix(t->data, t->shape[0], t->shape[1], &p, q) != OPC_OK) {
            fprintf(stderr, "  quantize %s: %s\n", t->name, opc_last_error());
            return 0;
        }
        qs->n++;
        t->type = pl[0] == 2 ? OPC_TYPE_CB2 : OPC_TYPE_CB4;
        t->cb = q->m;
        t->data = q->idx;
        t->nbytes = (uint64_t)q->m.rows * q->m.row_bytes;
    }
    return qs->n > 0;
}

static void qset_free(qset *qs) {
    for (int32_t i = 0; i < qs->n; i++) opc_qmatrix_free(&qs->q[i]);
    free(qs->q);
    qs->q = NULL, qs->n = 0;
}

/* ------------------------------------------------------- comparison ---- */

/* Worst relative error of row g against row c (vocab), or +inf on a NaN. */
static double row_err(const float *g, const float *c, int64_t vocab, double *max_abs) {
    double e = 0.0, m = 1.0;
    for (int64_t i = 0; i < vocab; i++) {
        if (!isfinite(g[i])) return INFINITY;
        double d = fabs((double)g[i] - c[i]);
        if (d > e) e = d;
        if (fabs(c[i]) > m) m = fabs(c[i]);
    }
    if (max_abs && e > *max_abs) *max_abs = e;
    return e / m;
}

/* Prefill n_prompt tokens (every row's logits), then n_decode greedy steps
 * chosen from the CPU's logits, on both passes; returns the worst row error. */
static double compare(const char *label, const opc_model_desc *d, const int32_t *prompt,
                      int n_prompt, int n_decode, int ctx, int max_batch, int graph) {
    const int64_t V = d->cfg.vocab_size;
    opc_forward *cf = NULL;
    opc_cuda_forward *gf = NULL;
    double worst = INFINITY, max_abs = 0.0;
    float *lc = malloc(sizeof(float) * (size_t)(V * n_prompt));
    float *lg = malloc(sizeof(float) * (size_t)(V * n_prompt));
    int32_t *seq = malloc(sizeof(int32_t) * (size_t)(n_prompt + n_decode));
    opc_status st = opc_forward_init(&cf, d, ctx, max_batch, 0);
    CHECK_MSG(st == OPC_OK, "%s: cpu init: %s", label, opc_last_error());
    if (st == OPC_OK) st = opc_cuda_forward_init(&gf, d, ctx, max_batch);
    CHECK_MSG(st == OPC_OK, "%s: gpu init: %s", label, opc_last_error());
    if (st != OPC_OK || !lc || !lg || !seq) goto done;
    opc_cuda_forward_set_graph(gf, graph);
    memcpy(seq, prompt, sizeof(int32_t) * (size_t)n_prompt);
    worst = 0.0;
    memset(lg, 0xFF, sizeof(float) * (size_t)(V * n_prompt)); /* NaN: unwritten logits fail */
    st = opc_forward_run(cf, seq, n_prompt, 0, lc, OPC_LOGITS_ALL);
    if (st == OPC_OK) st = opc_cuda_forward_run(gf, seq, n_prompt, 0, lg, OPC_LOGITS_ALL);
    CHECK_MSG(st == OPC_OK, "%s: prefill: %s", label, opc_last_error());
    for (int t = 0; st == OPC_OK && t < n_prompt; t++) {
        double e = row_err(lg + t * V, lc + t * V, V, &max_abs);
        if (e > worst) worst = e;
    }
    int argmax_diff = 0;
    for (int s = 0; st == OPC_OK && s < n_decode; s++) {
        const int pos = n_prompt + s;
        const float *prev = s == 0 ? lc + (int64_t)(n_prompt - 1) * V : lc;
        seq[pos] = opc_argmax(prev, V);
        memset(lg, 0xFF, sizeof(float) * (size_t)V);
        st = opc_forward_run(cf, seq + pos, 1, pos, lc, OPC_LOGITS_LAST);
        if (st == OPC_OK) st = opc_cuda_forward_run(gf, seq + pos, 1, pos, lg, OPC_LOGITS_LAST);
        CHECK_MSG(st == OPC_OK, "%s: decode %d: %s", label, s, opc_last_error());
        if (st != OPC_OK) break;
        double e = row_err(lg, lc, V, &max_abs);
        if (e > worst) worst = e;
        argmax_diff += opc_argmax(lg, V) != opc_argmax(lc, V);
    }
    fprintf(stderr, "  %-34s max_batch %3d graph %d: %d+%d rows, max|gpu-cpu| %.3g, worst rel %.3g, argmax differs %d\n",
            label, max_batch, graph, n_prompt, n_decode, max_abs, worst, argmax_diff);
    if (st != OPC_OK) worst = INFINITY;
done:
    opc_forward_free(cf);
    opc_cuda_forward_free(gf);
    free(lc), free(lg), free(seq);
    return worst;
}

/* 24 tokens of a stories-like prompt: BOS, then ids from the tokenizer. */
static int stories_prompt(const opc_model_desc *d, int32_t *ids, int cap) {
    opc_tokenizer *tok = NULL;
    size_t n = 0;
    if (opc_tokenizer_init(&tok, &d->vocab) != OPC_OK) return 0;
    const char *text = "Once upon a time, there was a little dog named Max who loved to run";
    opc_encode_opts eo = {1, 0};
    opc_status st = opc_tokenizer_encode(tok, text, strlen(text), &eo, ids, (size_t)cap, &n);
    opc_tokenizer_free(tok);
    return st == OPC_OK ? (int)n : 0;
}

/* ----------------------------------------------------------- cases ----- */

static void test_args(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    opc_model_desc *d = open_stories();
    if (!d) SKIP("stories260K not found");
    opc_cuda_forward *f = NULL;
    CHECK_EQ_INT(opc_cuda_forward_init(&f, d, 0, 8), OPC_ERR_INVALID_ARG);
    CHECK(f == NULL);
    CHECK_EQ_INT(opc_cuda_forward_init(&f, d, 64, 0), OPC_ERR_INVALID_ARG);
    opc_status st = opc_cuda_forward_init(&f, d, 64, 8);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (f) {
        float lg[512];
        int32_t t[2] = {1, 512};
        CHECK_EQ_INT(opc_cuda_forward_run(f, t, 0, 0, lg, OPC_LOGITS_LAST), OPC_ERR_INVALID_ARG);
        CHECK_EQ_INT(opc_cuda_forward_run(f, t, 2, 0, lg, OPC_LOGITS_LAST), OPC_ERR_INVALID_ARG);
        CHECK_EQ_INT(opc_cuda_forward_run(f, t, 1, 64, lg, OPC_LOGITS_LAST), OPC_ERR_INVALID_ARG);
        CHECK_EQ_INT(opc_cuda_forward_run(f, t, 1, 0, NULL, OPC_LOGITS_LAST), OPC_ERR_INVALID_ARG);
        CHECK_EQ_INT(opc_cuda_forward_run(f, t, 1, 0, NULL, OPC_LOGITS_NONE), OPC_OK);
        const opc_cuda_forward_mem m = opc_cuda_forward_memory(f);
        CHECK(m.weights > 0 && m.kv_cache > 0 && m.scratch > 0);
        CHECK_EQ_INT(opc_cuda_forward_ctx(f), 64);
    }
    opc_cuda_forward_free(f);
    opc_cuda_forward_free(NULL);
    opc_model_desc_free(d);
}

static void test_stories_fp32(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    opc_model_desc *d = open_stories();
    if (!d) SKIP("stories260K not found");
    int32_t ids[64];
    int n = stories_prompt(d, ids, 64);
    CHECK(n > 9);
    /* 32: one prefill GEMM, attention without splits; 8: slices of 8, the
     * split-K attention; 3: odd slices */
    const int mbs[3] = {32, 8, 3};
    for (int i = 0; n > 9 && i < 3; i++)
        CHECK(compare("stories260K f32", d, ids, n, 24, 128, mbs[i], 1) <= 1e-2);
    CHECK(compare("stories260K f32 (no graph)", d, ids, n, 8, 128, 8, 0) <= 1e-2);
    /* decode past several 64-key attention splits (ctx 512: chunk 64), so the
     * split-K merge combines non-empty partials */
    CHECK(compare("stories260K f32 long decode", d, ids, n, 150, 512, 8, 1) <= 1e-2);
    opc_model_desc_free(d);
}

static void test_stories_cb(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    static const int32_t plan2[1][2] = {{2, 4}};
    static const int32_t plan34[2][2] = {{4, 16}, {4, 8}}; /* 4-bit and 3-bit layers */
    static const int32_t plan_mix[3][2] = {{2, 3}, {2, 4}, {4, 8}}; /* ternary-like, 2-bit, 3-bit */
    struct {
        const char *label;
        const int32_t (*plan)[2];
        int n_plan, embd, no_fuse; /* no_fuse 2: no prologue fusion (norm/SwiGLU in the GEMV) */
        double outliers;
        int gscale, rot;
    } cases[] = {{"stories260K CB2 k=4 (+embd, 1% ol)", plan2, 1, 1, 0, 0.01, 0, 0},
                 {"stories260K CB2 k=4 unfused", plan2, 1, 1, 1, 0.01, 0, 0},
                 {"stories260K CB2 k=4 no prologue fuse", plan2, 1, 1, 2, 0.01, 0, 0},
                 {"stories260K CB4 k=16/8 (1% ol)", plan34, 2, 0, 0, 0.01, 0, 0},
                 {"stories260K CB2 k=3/4 + CB4 k=8", plan_mix, 3, 1, 0, 0.01, 0, 0},
                 {"stories260K CB2 gscale (+embd, 1% ol)", plan2, 1, 1, 0, 0.01, 1, 0},
                 {"stories260K CB2 gscale+rot (+embd)", plan2, 1, 1, 0, 0.01, 1, 1},
                 {"stories260K CB2 gscale+rot unfused", plan2, 1, 1, 1, 0.0, 1, 1},
                 {"stories260K CB2 rot on every 2nd", plan2, 1, 1, 0, 0.01, 0, 2},
                 {"stories260K mixed gscale+rot", plan_mix, 3, 1, 0, 0.01, 1, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        opc_model_desc *d = open_stories();
        if (!d) SKIP("stories260K not found");
        qset qs = {NULL, 0};
        int ok = quantize_desc(d, cases[c].plan, cases[c].n_plan, cases[c].embd, cases[c].outliers,
                               cases[c].gscale, cases[c].rot, &qs);
        CHECK_MSG(ok, "%s: quantization failed", cases[c].label);
        int32_t ids[64];
        int n = stories_prompt(d, ids, 64);
        /* both read by opc_cuda_forward_init */
        if (cases[c].no_fuse) setenv(cases[c].no_fuse == 2 ? "OPC_CUDA_NO_PROLOGUE_FUSE" : "OPC_CUDA_NO_FUSE", "1", 1);
        if (ok && n > 9) {
            CHECK(compare(cases[c].label, d, ids, n, 16, 128, 32, 1) <= 1e-2);
            CHECK(compare(cases[c].label, d, ids, n, 16, 128, 8, 1) <= 1e-2);
            /* prefill slices of 3 tokens: the fused norms and SwiGLU at batch 3 */
            CHECK(compare(cases[c].label, d, ids, n, 4, 128, 3, 0) <= 1e-2);
        }
        unsetenv("OPC_CUDA_NO_FUSE");
        unsetenv("OPC_CUDA_NO_PROLOGUE_FUSE");
        opc_model_desc_free(d);
        qset_free(&qs);
    }
}

/* Greedy decoding from "Zoo" on the GPU reproduces llama2.c's output (the
 * text in ../shared/models/stories260K/README.md, as test_forward checks on
 * the CPU), with the decode graph and without; both give the same logits. */
static void test_stories_zoo(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    opc_model_desc *d = open_stories();
    if (!d) SKIP("stories260K not found");
    opc_tokenizer *tok = NULL;
    CHECK(opc_tokenizer_init(&tok, &d->vocab) == OPC_OK);
    const char *want = "Zoo was a little girl named Lily. She loved to play outside in the park. "
                       "One day, she saw a big, red ball.";
    int32_t seq[2][128];
    float lg[2][512];
    size_t n = 0;
    opc_encode_opts eo = {1, 0};
    CHECK(tok && opc_tokenizer_encode(tok, "Zoo", 3, &eo, seq[0], 128, &n) == OPC_OK);
    CHECK_EQ_INT(n, 4);
    double graph_diff = 0.0;
    for (int g = 0; tok && n == 4 && g < 2; g++) {
        opc_cuda_forward *f = NULL;
        opc_status st = opc_cuda_forward_init(&f, d, 128, 16);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (!f) break;
        opc_cuda_forward_set_graph(f, g == 0);
        memcpy(seq[g], seq[0], n * sizeof(int32_t));
        int len = (int)n;
        st = opc_cuda_forward_run(f, seq[g], len, 0, lg[g], OPC_LOGITS_LAST);
        while (st == OPC_OK && len < 60) {
            seq[g][len] = opc_argmax(lg[g], 512);
            st = opc_cuda_forward_run(f, seq[g] + len, 1, len, lg[g], OPC_LOGITS_LAST);
            len++;
        }
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        /* the same continuation by greedy decoding on the device (no host
         * round trip), in two calls (the second starts from the first's last
         * pick: its scratch and counters must be reset) */
        /* (same prefill as above, so every step runs the same kernels on the
         * same inputs: a 3-token prefill + decode could round differently) */
        int32_t gout[64];
        const int steps = 60 - (int)n - 1, first = 10;
        float lg2[512];
        if (st == OPC_OK) st = opc_cuda_forward_run(f, seq[g], (int32_t)n, 0, lg2, OPC_LOGITS_LAST);
        if (st == OPC_OK) st = opc_cuda_forward_greedy(f, seq[g][n], (int32_t)n, first, gout);
        if (st == OPC_OK)
            st = opc_cuda_forward_greedy(f, gout[first - 1], (int32_t)n + first, steps - first, gout + first);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (st == OPC_OK) {
            int same = 1;
            for (int i = 0; i < steps; i++) same &= gout[i] == seq[g][(int)n + 1 + i];
            CHECK_MSG(same, "graph %d: device greedy tokens differ from run + opc_argmax", g == 0);
        }
        CHECK(opc_cuda_forward_greedy(f, 0, 127, 2, gout) == OPC_ERR_INVALID_ARG); /* past ctx 128 */
        CHECK(opc_cuda_forward_greedy(f, 512, 0, 1, gout) == OPC_ERR_INVALID_ARG); /* token outside vocab */
        char *text = NULL;
        size_t tl = 0;
        CHECK(opc_tokenizer_decode(tok, seq[g], (size_t)len, 1, &text, &tl) == OPC_OK);
        CHECK_MSG(text && tl >= strlen(want) && !memcmp(text, want, strlen(want)),
                  "graph %d: got \"%s\"", g == 0, text ? text : "(null)");
        if (g == 0) fprintf(stderr, "  GPU greedy from \"Zoo\": %s\n", text ? text : "(null)");
        free(text);
        opc_cuda_forward_free(f);
    }
    for (int i = 0; i < 512; i++) {
        double e = fabs((double)lg[0][i] - lg[1][i]);
        if (!(e <= graph_diff)) graph_diff = isfinite(e) ? e : INFINITY;
    }
    fprintf(stderr, "  graph vs direct launches, last logits: max|diff| %.3g\n", graph_diff);
    CHECK(!memcmp(seq[0], seq[1], 60 * sizeof(int32_t)));
    CHECK(graph_diff <= 1e-5);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
}

/* A 2-bit SmolLM2 made by `opacc1ty quantize` (docs/RESULTS.md says how). */
static void test_smollm2_2bit(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    /* under compute-sanitizer the 30-layer model takes minutes: OPC_TEST_QUICK=1 */
    if (getenv("OPC_TEST_QUICK")) SKIP("OPC_TEST_QUICK set");
    static const char *const rels[] = {"gpu_carry/smollm2-2bit.bf2", "models/smollm2-2bit.bf2"};
    char p[1024];
    if (!find_path(p, sizeof p, rels, 2)) SKIP("no 2-bit SmolLM2 .bf2 (gpu_carry/smollm2-2bit.bf2)");
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(p, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    opc_tokenizer *tok = NULL;
    CHECK(opc_tokenizer_init(&tok, &d->vocab) == OPC_OK);
    static const char *const prompts[] = {
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"};
    for (int i = 0; tok && i < 3; i++) {
        int32_t ids[128];
        size_t n = 0;
        opc_encode_opts eo = {-1, 0};
        CHECK(opc_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), &eo, ids, 128, &n) == OPC_OK);
        if (n < 2) continue;
        CHECK(compare("SmolLM2 2-bit .bf2", d, ids, (int)n, 8, 256, 64, 1) <= 2e-2);
    }
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
}

/* Synthetic models with group scales and rotated inputs on every codebook
 * tensor (opacc1ty synth --gscale --rotate): widths that reach every path of
 * the GPU rotation — the fused RMSNorm+rotation and SwiGLU+rotation kernels
 * with their shared-memory butterflies (llama3.2-1b: rotation blocks of 2048
 * and 8192), the stand-alone rotation kernel and odd widths (tiny-untied: dim
 * 96, hidden 200, blocks 32 and 8), and 4-bit codebooks (tiny at 4 bits). The
 * values are random, so the comparison is GPU vs CPU only. */
static void test_synth_gscale_rotated(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    static const struct { const char *shape; int layers; float bits; } cs[] = {
        {"tiny-untied", 2, 2.0f}, {"tiny", 2, 4.0f}, {"llama3.2-1b", 1, 2.0f}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char path[1024], label[64];
        if (getenv("OPC_TEST_QUICK") && !strcmp(cs[i].shape, "llama3.2-1b")) continue; /* memcheck: minutes */
        snprintf(path, sizeof path, "%s/tmp_cuda_synth_%d.bf2", OPC_BINARY_DIR, (int)i);
        snprintf(label, sizeof label, "synth %s %g-bit gscale+rot", cs[i].shape, (double)cs[i].bits);
        opc_synth_params p = opc_synth_defaults();
        p.shape = cs[i].shape, p.bits = cs[i].bits, p.n_layers = cs[i].layers;
        p.gscale = 1, p.rotate = 1, p.outlier_frac = 0.01;
        opc_status st = opc_synth_write(path, &p, NULL);
        CHECK_MSG(st == OPC_OK, "%s: %s", label, opc_last_error());
        opc_model_desc *d = NULL;
        if (st == OPC_OK) st = opc_model_desc_open(path, &d);
        CHECK_MSG(st == OPC_OK, "%s: %s", label, opc_last_error());
        if (d) {
            int32_t ids[12];
            for (int j = 0; j < 12; j++) ids[j] = (int32_t)((j * 2654435761u + 7u) % (uint32_t)d->cfg.vocab_size);
            CHECK(compare(label, d, ids, 12, 6, 64, 16, 1) <= 2e-2);
            CHECK(compare(label, d, ids, 12, 6, 64, 4, 1) <= 2e-2);
        }
        opc_model_desc_free(d);
        remove(path);
    }
}

int main(void) {
    RUN(test_args);
    RUN(test_stories_fp32);
    RUN(test_stories_cb);
    RUN(test_stories_zoo);
    RUN(test_smollm2_2bit);
    RUN(test_synth_gscale_rotated);
    return harness_finish();
}

#else /* built without nvcc */

static void test_no_cuda(void) { SKIP("built without CUDA (no nvcc)"); }

int main(void) {
    RUN(test_no_cuda);
    return harness_finish(); /* 77: skipped */
}

#endif
