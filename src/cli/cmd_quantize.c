/*
 * cmd_quantize.c — `opacc1ty quantize MODEL -o OUT.bf2 [options]`.
 *
 * Parses options, installs a SIGINT handler that sets the flag the library
 * polls (the writer then removes its temporary file, so Ctrl-C never leaves a
 * partial OUT.bf2 and never clobbers an existing one), runs calibration and
 * the quantizer, draws the progress bar and prints the summary.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../core/progress.h"
#include "../model/model.h"
#include "../quant/quantize.h"
#include "../tokenizer/tokenizer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_interrupt;

/* GPTQ defaults (measured on SmolLM2-135M, docs/RESULTS.md): on at this
 * --bits (0: never by default), with this many calibration tokens unless
 * --calib-tokens says otherwise, and this relative damping. */
#define GPTQ_AUTO_MAX_COLS 2048 /* --gptq auto: on at 2 bits up to this input width */
#define GPTQ_CALIB_TOKENS 1024
#define GPTQ_DAMP 0.1

static void on_sigint(int sig) {
    g_interrupt = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C kills at once */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty quantize MODEL -o OUT.bf2 [options]\n"
            "\n"
            "  --bits B            1.58 (ternary, k=3), 2 (k=4, default), 3 (k=8) or 4 (k=16)\n"
            "  --outliers F        fraction of each quantized tensor kept as fp16 deltas (default 0.005\n"
            "                      at --bits 2, 0.01 otherwise)\n"
            "  --bpw-budget X      mixed precision under X bits/weight all-in over the codebook tensors\n"
            "                      (default 2.5 at --bits 2, else 0 = off): starting from --bits and\n"
            "                      --outliers everywhere, tensors are promoted step by step while the size\n"
            "                      fits, in the order of their measured KLD gain per bit on SmolLM2\n"
            "                      (docs/RESULTS.md): the first block's FFN, the last block's ffn_down,\n"
            "                      every attn_v, the last block's ffn_up to 4 bits without outliers, then\n"
            "                      1%% outliers in ffn_up, ffn_gate, ffn_down, then all of ffn_down, ffn_up,\n"
            "                      ffn_gate, attn_output, attn_q to 4 bits;\n"
            "                      tensors named by --override, --override-outliers or --edge-bits are\n"
            "                      left as given (and counted), except the embedding and the head (f16\n"
            "                      by default): quantized by --override, they are outside the budget\n"
            "  --edge-bits B       bits of the first and last transformer block (default: like the rest;\n"
            "                      0 = off); --override wins\n");
    fprintf(f, /* two calls: C11 only promises string literals of 4095 bytes */
            "  --method M          kmeans (default: weighted k-means, exact 1-D optimum per row),\n"
            "                      lloyd (weighted k-means by Lloyd iterations, for comparison) or\n"
            "                      rtn (naive baseline: uniform levels between row min and max)\n"
            "  --gptq [on|off]     GPTQ-style error feedback with the calibration Hessians (default: on at\n"
            "                      --bits 2 when no quantized matrix is wider than %d columns, i.e. small\n"
            "                      models, where it costs ~4x the time; with it --calib-tokens defaults\n"
            "                      to %d: it needs a well determined Hessian, RESULTS.md)\n"
            "  --no-gptq           the same as --gptq off\n"
            "  --gptq-damp D       damping of the Hessian, relative to its mean diagonal (default %g)\n"
            "  --group-scales on|off  one scale byte per (row, 64 columns) on codebook tensors (+0.125 bpw;\n"
            "                      default off: it pays at 1%% outliers, not at equal size, see RESULTS.md)\n"
            "  --scale-rounds N    codebook fit <-> scale search alternations per row (default 3)\n"
            "  --rotate on|off     randomized Hadamard rotation of the input dimension of every codebook\n"
            "                      tensor but the embedding / output head (inputs rotated at run time;\n"
            "                      use it with --gptq: alone it measured far worse on SmolLM2, RESULTS.md)\n"
            "  --rotate-block N    largest rotation block (a power of two, 2..32768, default 32768); a\n"
            "                      tensor uses the largest power of two dividing its columns, up to N\n"
            "  --rotate-tensors PATS  rotate only tensors matching these patterns (with --rotate on)\n"
            "  --calib FILE        calibration text (must not overlap evaluation text)\n"
            "  --calib-tokens N    calibration tokens (default 256, %d with GPTQ; sampled from the model\n"
            "                      itself when no --calib is given; 0 = no calibration, uniform importance)\n"
            "  --calib-ctx N       tokens per calibration sequence (default 256)\n"
            "  --keep-fp16 PATS    comma-separated tensor patterns stored as f16 (in addition to the\n"
            "                      defaults token_embd.weight and output.weight)\n"
            "  --override PAT=B,.. per-tensor bits (1.58/2/3/4, 16 = f16, 32 = f32), e.g.\n"
            "                      'attn_v=3,ffn_down=3'; first match wins, over the f16 defaults\n"
            "  --override-outliers PAT=F,..  per-tensor outlier fraction, e.g. 'blk.0.*=0'; first match\n"
            "                      wins over --outliers\n"
            "  --threads N         OpenMP threads (default: all)\n"
            "  --seed S            seed for k-means++ and calibration sampling (default 1)\n"
            "  --n-init N          k-means starts per row (default 3)\n"
            "  --device D          cpu (default) or cuda: calibration, per-row k-means, group scales,\n"
            "                      rotation, outliers and GPTQ on the GPU; the tensors equal the CPU path's\n"
            "                      for the same statistics (the GPU calibration's differ by rounding;\n"
            "                      OPC_CUDA_CALIB=0 keeps it on the CPU; --method lloyd is CPU only)\n"
            "  --dry-run           print what each codebook tensor would get (bits, outliers, bpw) and\n"
            "                      the all-in bpw, then stop (no calibration, no output file)\n"
            "  --verbose           one summary line per tensor\n"
            "  --quiet             no progress bar\n"
            "\n"
            "A pattern with * ? [ is a glob on the full tensor name, otherwise a substring.\n",
            GPTQ_AUTO_MAX_COLS, GPTQ_CALIB_TOKENS, GPTQ_DAMP, GPTQ_CALIB_TOKENS);
}

typedef struct prog_ctx {
    opc_progress bar;
    int started;
    int quiet;
} prog_ctx;

static void on_progress(void *user, const opc_quant_progress *p) {
    prog_ctx *c = user;
    if (!c->started) {
        opc_progress_init(&c->bar, "quantize", (int64_t)p->elems_total, c->quiet);
        c->started = 1;
    }
    char extra[160];
    snprintf(extra, sizeof extra, "[%d/%d] %s %s", p->tensor, p->n_tensors, p->name, p->action);
    opc_progress_update(&c->bar, (int64_t)p->elems_done, extra);
}

static void on_calib_progress(void *user, int64_t done, int64_t total) {
    prog_ctx *c = user;
    if (!c->started) {
        opc_progress_init(&c->bar, "calibrate", total, c->quiet);
        c->started = 1;
    }
    opc_progress_update(&c->bar, done, "tokens");
}

/* Encode up to max_tokens tokens of a calibration file. */
static opc_status calib_from_file(const opc_model_desc *d, const char *path, int32_t max_tokens, int32_t **ids,
                                  int64_t *n) {
    char *text = NULL;
    size_t len = 0;
    opc_status st = opc_read_file(path, &text, &len);
    if (st) return st;
    /* ~8 bytes per token is generous for English: do not encode a whole book */
    if (max_tokens > 0 && len > (size_t)max_tokens * 16) len = (size_t)max_tokens * 16;
    opc_tokenizer *tok = NULL;
    st = opc_tokenizer_init(&tok, &d->vocab);
    size_t got = 0;
    if (st == OPC_OK) {
        opc_encode_opts o = {0, 0};
        st = opc_tokenizer_encode_alloc(tok, text, len, &o, ids, &got);
    }
    opc_tokenizer_free(tok);
    free(text);
    if (st == OPC_OK) {
        *n = (int64_t)got;
        if (max_tokens > 0 && *n > max_tokens) *n = max_tokens;
    }
    return st;
}

/* --dry-run: what each tensor would get (bits, outliers, bytes) and the
 * all-in bpw, without calibrating or quantizing. */
static opc_status print_plan(const opc_model_desc *d, const opc_quant_params *p0) {
    opc_quant_params p = *p0;
    p.edge_layers = d->cfg.n_layers;
    opc_quant_alloc a;
    memset(&a, 0, sizeof a);
    if (p.bpw_budget > 0.0) {
        opc_status st = opc_quant_allocate(d->tensors, d->n_tensors, d->cfg.n_layers, &p, &a);
        if (st) return st;
        p.overrides = a.overrides;
        p.outlier_overrides = a.outlier_overrides;
    }
    uint64_t qb = 0, qe = 0;
    opc_status st = OPC_OK;
    printf("%-28s %-5s %3s %11s %9s %8s\n", "tensor", "store", "k", "shape", "bpw", "outl%");
    for (int32_t i = 0; i < d->n_tensors && st == OPC_OK; i++) {
        const opc_tensor *t = &d->tensors[i];
        opc_quant_choice ch;
        int32_t ib, k;
        st = opc_quant_plan(t, &p, &ch, &ib, &k);
        if (st || ch != OPC_QC_CB) continue;
        double f = opc_quant_outlier_frac(t->name, &p);
        uint64_t b = opc_quant_cb_bytes(t->shape[0], t->shape[1], ib, k, f, p.group_scales);
        double ne = (double)opc_tensor_nelem(t);
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->shape[0], (long long)t->shape[1]);
        printf("%-28s cb%-3d %3d %11s %9.4f %8.3f\n", t->name, ib, k, shape, 8.0 * (double)b / ne, 100.0 * f);
        qb += b;
        qe += (uint64_t)ne;
    }
    if (st == OPC_OK && qe) {
        printf("codebook tensors: %llu weights, %.4f bpw all-in (at most: outliers as planned)\n",
               (unsigned long long)qe, 8.0 * (double)qb / (double)qe);
        if (p0->bpw_budget > 0.0)
            printf("allocation: budget %g bpw, from %.4f bpw: %s\n", p0->bpw_budget, a.bpw_base,
                   a.steps ? a.steps : "no step fits");
    }
    opc_quant_alloc_free(&a);
    return st;
}

/* Widest input (columns) of the matrices quantize would quantize: 2-D
 * weights other than the embedding and the head (kept f16 by default). */
static int64_t max_matrix_cols(const opc_model_desc *d) {
    int64_t m = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (t->n_dims != 2 || !strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight")) continue;
        if (t->shape[1] > m) m = t->shape[1];
    }
    return m;
}

int opc_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *calib = NULL;
    opc_quant_params p = opc_quant_defaults();
    int32_t calib_tokens = -1, calib_ctx = 256; /* -1: the default for the GPTQ choice */
    int gptq = -1;                                /* -1: auto (GPTQ_AUTO_MAX_COLS), 0 off, 1 on */
    int outliers_set = 0, budget_set = 0, dry_run = 0;
    p.gptq_damp = GPTQ_DAMP;
    int verbose = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                       \
    if (!v) {                                                                            \
        fprintf(stderr, "opacc1ty quantize: %s needs a value\n", a);                     \
        return 2;                                                                        \
    }                                                                                    \
    i++
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VALUE;
            out = v;
        } else if (!strcmp(a, "--bits")) {
            NEED_VALUE;
            char *end;
            p.bits = strtof(v, &end);
            int32_t ib, k;
            if (*end || !opc_quant_bits_layout(p.bits, &ib, &k)) {
                fprintf(stderr, "opacc1ty quantize: --bits must be 1.58, 2, 3 or 4 (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--outliers")) {
            NEED_VALUE;
            char *end;
            p.outlier_frac = strtod(v, &end);
            outliers_set = 1;
            if (*end || !(p.outlier_frac >= 0.0 && p.outlier_frac <= 0.5)) {
                fprintf(stderr, "opacc1ty quantize: --outliers must be a fraction in [0, 0.5] (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--method")) {
            NEED_VALUE;
            if (!strcmp(v, "kmeans"))
                p.method = OPC_QUANT_KMEANS;
            else if (!strcmp(v, "rtn"))
                p.method = OPC_QUANT_RTN;
            else if (!strcmp(v, "lloyd"))
                p.method = OPC_QUANT_LLOYD;
            else {
                fprintf(stderr, "opacc1ty quantize: --method must be kmeans, lloyd or rtn\n");
                return 2;
            }
        } else if (!strcmp(a, "--gptq")) {
            gptq = 1; /* --gptq alone or --gptq on|off */
            if (v && (!strcmp(v, "on") || !strcmp(v, "off"))) {
                gptq = !strcmp(v, "on");
                i++;
            }
        } else if (!strcmp(a, "--no-gptq")) {
            gptq = 0;
        } else if (!strcmp(a, "--gptq-damp")) {
            NEED_VALUE;
            char *end;
            p.gptq_damp = strtod(v, &end);
            if (*end || !(p.gptq_damp > 0.0 && p.gptq_damp <= 100.0)) {
                fprintf(stderr, "opacc1ty quantize: --gptq-damp must be in (0, 100] (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--group-scales") || !strcmp(a, "--rotate")) {
            NEED_VALUE;
            int on = !strcmp(v, "on") ? 1 : !strcmp(v, "off") ? 0 : -1;
            if (on < 0) {
                fprintf(stderr, "opacc1ty quantize: %s must be on or off (got %s)\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--rotate"))
                p.rotate = on;
            else
                p.group_scales = on;
        } else if (!strcmp(a, "--scale-rounds")) {
            NEED_VALUE;
            p.scale_rounds = atoi(v);
            if (p.scale_rounds < 1 || p.scale_rounds > 100) {
                fprintf(stderr, "opacc1ty quantize: --scale-rounds must be 1..100 (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--rotate-block")) {
            NEED_VALUE;
            char *end;
            long b = strtol(v, &end, 10);
            int32_t lg = 0;
            while (lg < OPC_CB_ROT_MAX_LOG2 && (1L << lg) < b) lg++;
            if (*end || b < 2 || (1L << lg) != b) {
                fprintf(stderr, "opacc1ty quantize: --rotate-block must be a power of two in 2..%d (got %s)\n",
                        1 << OPC_CB_ROT_MAX_LOG2, v);
                return 2;
            }
            p.rot_max_log2 = lg;
        } else if (!strcmp(a, "--rotate-tensors")) {
            NEED_VALUE;
            p.rotate_tensors = v;
        } else if (!strcmp(a, "--calib")) {
            NEED_VALUE;
            calib = v;
        } else if (!strcmp(a, "--calib-tokens")) {
            NEED_VALUE;
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > 100000000) {
                fprintf(stderr, "opacc1ty quantize: --calib-tokens must be 0..100000000 (got %s)\n", v);
                return 2;
            }
            calib_tokens = (int32_t)n;
        } else if (!strcmp(a, "--calib-ctx")) {
            NEED_VALUE;
            calib_ctx = atoi(v);
        } else if (!strcmp(a, "--keep-fp16")) {
            NEED_VALUE;
            p.keep_fp16 = v;
        } else if (!strcmp(a, "--override")) {
            NEED_VALUE;
            p.overrides = v;
        } else if (!strcmp(a, "--override-outliers")) {
            NEED_VALUE;
            p.outlier_overrides = v;
        } else if (!strcmp(a, "--bpw-budget")) {
            NEED_VALUE;
            char *end;
            p.bpw_budget = strtod(v, &end);
            budget_set = 1;
            if (*end || !(p.bpw_budget >= 0.0 && p.bpw_budget <= 64.0)) {
                fprintf(stderr, "opacc1ty quantize: --bpw-budget must be in [0, 64] (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--edge-bits")) {
            NEED_VALUE;
            char *end;
            int32_t ib, k;
            p.edge_bits = strtof(v, &end);
            if (*end || (p.edge_bits != 0.0f && p.edge_bits != 16.0f && !opc_quant_bits_layout(p.edge_bits, &ib, &k))) {
                fprintf(stderr, "opacc1ty quantize: --edge-bits must be 0, 1.58, 2, 3, 4 or 16 (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE;
            p.n_threads = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE;
            p.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--n-init")) {
            NEED_VALUE;
            p.n_init = atoi(v);
        } else if (!strcmp(a, "--device")) {
            NEED_VALUE;
            if (!strcmp(v, "cpu")) {
                p.device = 0;
            } else if (!strcmp(v, "cuda")) {
#ifdef OPC_HAVE_CUDA
                p.device = 1;
#else
                fprintf(stderr, "opacc1ty quantize: --device cuda: built without the CUDA backend\n");
                return 2;
#endif
            } else {
                fprintf(stderr, "opacc1ty quantize: --device must be cpu or cuda (got %s)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            verbose = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "opacc1ty quantize: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "opacc1ty quantize: unexpected argument %s\n", a);
            return 2;
        }
#undef NEED_VALUE
    }
    if (!model || (!out && !dry_run)) {
        usage(stderr);
        return 2;
    }
    if (p.device == 1 && p.method == OPC_QUANT_LLOYD) {
        fprintf(stderr, "opacc1ty quantize: --method lloyd runs on the CPU only (drop --device cuda)\n");
        return 2;
    }
    /* 2-bit default: 0.5 % outliers and mixed precision under 2.5 bpw
     * (docs/RESULTS.md, SmolLM2 ctx 512, 10 chunks: PPL 115.4 / KLD 1.153 at
     * 2.4895 bpw, vs 149.1 / 1.335 for 4-bit edge blocks at 2.4528 and
     * 198.1 / 1.567 for uniform 2-bit with 1 % outliers at 2.4607). */
    if (fabsf(p.bits - 2.0f) < 0.01f) {
        if (!outliers_set) p.outlier_frac = 0.005;
        if (!budget_set) p.bpw_budget = 2.5;
    }
    if (calib_ctx < 2) {
        fprintf(stderr, "opacc1ty quantize: --calib-ctx must be >= 2\n");
        return 2;
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint); /* `kill` too: stop cleanly, remove the temporary file */
    p.interrupt = &g_interrupt;
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(model, &d);
    if (st) return opc_cli_fail(st, model);
    /* Default: GPTQ at 2 bits when every quantized matrix is at most
     * GPTQ_AUTO_MAX_COLS wide (small models: its cost grows with rows x
     * cols^2 per matrix, ~4x the plain quantize time on SmolLM2-135M, far more
     * on 1B+ models), with calibration and a k-means method to feed back
     * into. SmolLM2, ctx 512, 10 chunks, same 2.4895 bpw: PPL 115.4 -> 94.1,
     * KLD 1.153 -> 1.028 (docs/RESULTS.md). It wants more calibration tokens
     * for a well determined Hessian. */
    if (gptq < 0)
        gptq = fabsf(p.bits - 2.0f) < 0.01f && calib_tokens != 0 && p.method != OPC_QUANT_RTN &&
               max_matrix_cols(d) <= GPTQ_AUTO_MAX_COLS;
    p.gptq = gptq;
    if (calib_tokens < 0) calib_tokens = gptq ? GPTQ_CALIB_TOKENS : 256;
    if (dry_run) {
        st = print_plan(d, &p);
        opc_model_desc_free(d);
        return st ? opc_cli_fail(st, "plan") : 0;
    }

    /* Calibration: importance = sum of squared input activations per column. */
    opc_importance imp;
    memset(&imp, 0, sizeof imp);
    const char *calib_desc = "none (uniform importance)";
    char calib_buf[256];
    double t_cal = opc_time_s();
    if (p.gptq && (calib_tokens == 0 || p.method == OPC_QUANT_RTN)) {
        fprintf(stderr, "opacc1ty quantize: --gptq needs calibration (--calib-tokens > 0) and k-means\n");
        opc_model_desc_free(d);
        return 2;
    }
    if (calib_tokens > 0 && p.method != OPC_QUANT_RTN) {
        prog_ctx pc = {.quiet = quiet};
        if (calib) {
            int32_t *ids = NULL;
            int64_t n = 0;
            st = calib_from_file(d, calib, calib_tokens, &ids, &n);
            if (st == OPC_OK)
                st = opc_calibrate_tokens_dev(d, ids, n, calib_ctx, p.n_threads, p.device, p.gptq,
                                              p.rotate ? p.rot_max_log2 : 0, &g_interrupt, on_calib_progress, &pc,
                                              &imp);
            free(ids);
            snprintf(calib_buf, sizeof calib_buf, "%lld tokens of %s", (long long)imp.n_tokens, calib);
        } else {
            st = opc_calibrate_sampled_dev(d, calib_tokens, calib_ctx, p.seed, p.n_threads, p.device, p.gptq,
                                           p.rotate ? p.rot_max_log2 : 0, &g_interrupt, on_calib_progress, &pc,
                                           &imp);
            snprintf(calib_buf, sizeof calib_buf, "%lld tokens sampled from the model (seed %llu)",
                     (long long)imp.n_tokens, (unsigned long long)p.seed);
        }
        if (pc.started) opc_progress_finish(&pc.bar);
        if (st) {
            opc_model_desc_free(d);
            return opc_cli_fail(st, "calibration");
        }
        if (imp.device == 1) /* GPU forward pass (quantize.h opc_calibrate_*_dev) */
            snprintf(calib_buf + strlen(calib_buf), sizeof calib_buf - strlen(calib_buf), " on the GPU");
        calib_desc = calib_buf;
        p.importance = &imp;
    }
    t_cal = opc_time_s() - t_cal;

    prog_ctx pc = {.quiet = quiet};
    p.progress = on_progress;
    p.progress_user = &pc;
    opc_quant_summary s;
    st = opc_quantize_model(d, out, &p, &s);
    if (pc.started) opc_progress_finish(&pc.bar);
    opc_importance_free(&imp);
    if (st) {
        opc_model_desc_free(d);
        return opc_cli_fail(st, "quantize");
    }

    if (verbose) {
        printf("%-28s %-5s %3s %11s %9s %8s %5s %10s %7s\n", "tensor", "type", "k", "shape", "bpw", "outl%", "rot",
               "qerr", "time_s");
        for (int32_t i = 0; i < s.n; i++) {
            const opc_quant_tensor_stat *t = &s.t[i];
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)t->rows, (long long)t->cols);
            double ne = (double)t->rows * (double)t->cols;
            printf("%-28s %-5s %3d %11s %9.4f %8.3f %5lld %10.3e %7.2f\n", t->name, opc_type_get(t->type)->name,
                   t->k, shape, 8.0 * (double)t->bytes / ne, 100.0 * (double)t->n_outliers / ne,
                   t->rot_log2 ? (long long)1 << t->rot_log2 : 0LL, (double)t->qerr, t->seconds);
        }
    }
    const char *method = p.method == OPC_QUANT_RTN     ? "rtn (uniform levels between row min and max)"
                         : p.method == OPC_QUANT_LLOYD ? "weighted k-means (Lloyd)"
                                                       : "weighted k-means (exact 1-D optimum)";
    printf("quantized %s -> %s\n", model, out);
    printf("  method        %s%s, --bits %g, outliers %.3g%%, seed %llu\n", method,
           p.gptq ? " + GPTQ error feedback" : "", (double)p.bits, 100.0 * p.outlier_frac, (unsigned long long)p.seed);
    if (p.edge_bits > 0.0f)
        printf("  edge layers   blk.0 and blk.%d at %g bits (--edge-bits; --override wins)\n", d->cfg.n_layers - 1,
               (double)p.edge_bits);
    if (p.bpw_budget > 0.0)
        printf("  allocation    budget %g bpw, from %.4f bpw: %s\n", p.bpw_budget, s.alloc_bpw_base,
               s.alloc_steps ? s.alloc_steps : "no step fits");
    if (p.rotate)
        printf("  layout        group scales %s, rotation on (blocks up to %d columns%s%s)\n",
               p.group_scales ? "on" : "off", 1 << p.rot_max_log2, p.rotate_tensors ? ", tensors " : "",
               p.rotate_tensors ? p.rotate_tensors : "");
    else
        printf("  layout        group scales %s, rotation off\n", p.group_scales ? "on" : "off");
    printf("  calibration   %s (%.1f s)\n", calib_desc, t_cal);
    if (s.q_elems) {
        double qe = (double)s.q_elems;
        printf("  quantized     %llu weights, %.4f bpw all-in (indices %.4f + codebooks %.4f + scales %.4f + "
               "outliers %.4f)\n",
               (unsigned long long)s.q_elems, 8.0 * (double)s.q_bytes / qe, 8.0 * (double)s.q_idx_bytes / qe,
               8.0 * (double)s.q_cb_bytes / qe, 8.0 * (double)s.q_gs_bytes / qe, 8.0 * (double)s.q_ol_bytes / qe);
        printf("  outliers      %llu (%.3f%% of quantized weights)\n", (unsigned long long)s.n_outliers,
               100.0 * (double)s.n_outliers / qe);
    }
    printf("  whole model   %llu weights, %.4f bpw tensor data, file %llu bytes = %.4f bpw\n",
           (unsigned long long)s.all_elems, 8.0 * (double)s.all_bytes / (double)s.all_elems,
           (unsigned long long)s.file_bytes, 8.0 * (double)s.file_bytes / (double)s.all_elems);
    printf("  time          %.2f s quantize + %.2f s calibration\n", s.seconds, t_cal);
    opc_quant_summary_free(&s);
    opc_model_desc_free(d);
    return 0;
}
