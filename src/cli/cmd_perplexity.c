/*
 * cmd_perplexity.c — `opacc1ty perplexity MODEL --text FILE [...]`: PPL with
 * llama.cpp's protocol (or --full), optional reference-distribution save and
 * KLD comparison. Protocol: docs/PERPLEXITY.md. Results go to stdout,
 * progress and diagnostics to stderr.
 */
#include "cli.h"

#include "core/core.h"
#include "core/progress.h"
#include "cpu/cpu.h"
#include "model/runner.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty perplexity MODEL --text FILE [options]\n"
            "\n"
            "  --text FILE         evaluation text (UTF-8; CRLF/CR are read as LF)\n"
            "  --ctx N             tokens per chunk (default 512)\n"
            "  --chunks N          evaluate only the first N chunks (default: all)\n"
            "  --batch N           tokens per forward call (default: ctx)\n"
            "  --full              score every position of a chunk, not only the second half\n"
            "  --bos auto|yes|no   put BOS at the start of each chunk (auto: when the model's\n"
            "                      tokenizer adds BOS, as llama.cpp does; default auto)\n"
            "  --save-logits FILE  write the reference top-K distributions (see docs/PERPLEXITY.md)\n"
            "  --save-top-k K      K for --save-logits (default %d)\n"
            "  --kld FILE          compare against a --save-logits file: KLD and top-1 agreement\n"
            "  --threads N         OpenMP threads (default: all cores)\n"
            "  --device D          cpu (default) or cuda (the whole forward pass on the GPU)\n"
            "  --int8-act          CPU: int8 activations in the codebook kernels (AVX-512 VNNI;\n"
            "                      faster, approximate: measures what `generate --int8-act` runs)\n"
            "  --quiet             no progress display\n",
            OPC_LOGP_DEFAULT_TOPK);
}

static int parse_int(const char *s, const char *opt, long lo, long hi, long *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) {
        fprintf(stderr, "opacc1ty perplexity: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static void on_progress(void *user, int32_t done, int32_t total, double ppl) {
    opc_progress *p = user;
    char extra[64];
    snprintf(extra, sizeof extra, "ppl %.4f", ppl);
    (void)total;
    opc_progress_update(p, done, extra);
}

int opc_cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *text_path = NULL, *save = NULL, *kld = NULL, *bos_mode = "auto";
    const char *device = "cpu";
    long ctx = 512, chunks = 0, batch = 0, threads = 0, topk = OPC_LOGP_DEFAULT_TOPK;
    int int8_act = 0;
    int full = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
#define NEXT()                                                                           \
    do {                                                                                 \
        if (!has) {                                                                      \
            fprintf(stderr, "opacc1ty perplexity: %s needs a value\n", a);                \
            return 2;                                                                    \
        }                                                                                \
        i++;                                                                             \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--text") || !strcmp(a, "-f")) {
            NEXT();
            text_path = argv[i];
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            NEXT();
            if (!parse_int(argv[i], a, 4, 1 << 20, &ctx)) return 2;
        } else if (!strcmp(a, "--chunks")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 1 << 24, &chunks)) return 2;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--int8-act")) {
            int8_act = 1;
        } else if (!strcmp(a, "--save-top-k")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 512, &topk)) return 2;
        } else if (!strcmp(a, "--bos")) {
            NEXT();
            bos_mode = argv[i];
            if (strcmp(bos_mode, "auto") && strcmp(bos_mode, "yes") && strcmp(bos_mode, "no")) {
                fprintf(stderr, "opacc1ty perplexity: --bos expects auto, yes or no\n");
                return 2;
            }
        } else if (!strcmp(a, "--save-logits")) {
            NEXT();
            save = argv[i];
        } else if (!strcmp(a, "--kld")) {
            NEXT();
            kld = argv[i];
        } else if (!strcmp(a, "--device")) {
            NEXT();
            device = argv[i];
            if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
                fprintf(stderr, "opacc1ty perplexity: --device must be cpu or cuda, got '%s'\n", device);
                return 2;
            }
            if (!strcmp(device, "cuda") && !opc_runner_have_cuda()) {
                fprintf(stderr, "opacc1ty perplexity: built without CUDA (no nvcc): --device cuda is unavailable\n");
                return 2;
            }
        } else if (!strcmp(a, "--full")) {
            full = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "opacc1ty perplexity: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "opacc1ty perplexity: unexpected argument '%s'\n", a);
            return 2;
        }
#undef NEXT
    }
    if (!model || !text_path) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    opc_status st;
    opc_model_desc *d = NULL;
    opc_tokenizer *tok = NULL;
    opc_runner run = {0};
    char *text = NULL;
    size_t len = 0, n_tokens = 0;
    int32_t *ids = NULL;

    if ((st = opc_read_file(text_path, &text, &len)) != OPC_OK) {
        rc = opc_cli_fail(st, text_path);
        goto done;
    }
    len = opc_text_normalize_newlines(text, len);
    if ((st = opc_model_desc_open(model, &d)) != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    if ((st = opc_tokenizer_init(&tok, &d->vocab)) != OPC_OK) {
        rc = opc_cli_fail(st, "tokenizer");
        goto done;
    }
    /* Like llama.cpp: the whole text in one piece, BOS per the vocab's flag,
     * special-token text not parsed. */
    double t0 = opc_time_s();
    opc_encode_opts eo = {-1, 0};
    if ((st = opc_tokenizer_encode_alloc(tok, text, len, &eo, &ids, &n_tokens)) != OPC_OK) {
        rc = opc_cli_fail(st, "tokenize");
        goto done;
    }
    double t_tok = opc_time_s() - t0;
    int32_t bos = -1;
    if (!strcmp(bos_mode, "yes") || (!strcmp(bos_mode, "auto") && d->vocab.add_bos)) {
        bos = opc_tokenizer_bos(tok);
        if (bos < 0) {
            fprintf(stderr, "opacc1ty perplexity: --bos %s but the model has no BOS token\n", bos_mode);
            goto done;
        }
    }
    if ((long)n_tokens < ctx) {
        fprintf(stderr, "opacc1ty perplexity: %s has %zu tokens, fewer than one chunk of --ctx %ld\n",
                text_path, n_tokens, ctx);
        goto done;
    }
    if (!batch || batch > ctx) batch = ctx;
    if (int8_act && !opc_cpu_set_int8_activations(true)) {
        fprintf(stderr, "opacc1ty perplexity: --int8-act needs AVX-512 VNNI, which this CPU lacks\n");
        goto done;
    }
    if ((st = opc_runner_init(&run, d, device, (int32_t)ctx, (int32_t)batch, (int32_t)threads)) != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    long n_chunks = (long)n_tokens / ctx;
    if (chunks && chunks < n_chunks) n_chunks = chunks;
    fprintf(stderr,
            "perplexity: %s: %zu bytes -> %zu tokens in %.2f s; %ld chunks of %ld, scoring %s; "
            "BOS %s; batch %ld; device %s\n",
            text_path, len, n_tokens, t_tok, n_chunks, ctx,
            full ? "all positions (--full)" : "the second half of each chunk (llama.cpp)",
            bos >= 0 ? "replaces the first token of each chunk" : "off", batch, device);

    opc_progress prog;
    opc_progress_init(&prog, "perplexity", n_chunks, quiet);
    opc_ppl_params pp = opc_ppl_defaults();
    pp.ctx = (int32_t)ctx;
    pp.n_chunks = (int32_t)n_chunks;
    pp.batch = (int32_t)batch;
    pp.full = full;
    pp.bos_id = bos;
    pp.save_path = save;
    pp.save_topk = (int32_t)topk;
    pp.kld_path = kld;
    pp.progress = on_progress;
    pp.progress_user = &prog;
    opc_ppl_result r;
    st = opc_perplexity(&run, ids, (int64_t)n_tokens, &pp, &r);
    opc_progress_finish(&prog);
    if (st != OPC_OK) {
        rc = opc_cli_fail(st, "perplexity");
        goto done;
    }
    printf("chunks %d, ctx %ld, %s, scored tokens %lld, %.1f s (%.1f tok/s evaluated)\n", r.n_chunks, ctx,
           full ? "full" : "llama.cpp second-half", (long long)r.count, r.seconds,
           (double)r.n_chunks * (double)ctx / (r.seconds > 0 ? r.seconds : 1e-9));
    printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    if (save) printf("reference distributions (top-%ld + rest) written to %s\n", topk, save);
    if (r.has_kld) {
        printf("reference PPL = %.4f (from %s)\n", r.ref_ppl, kld);
        printf("KLD mean = %.6f +/- %.6f, median = %.6f, 99th percentile = %.6f, max = %.6f\n",
               r.kld_mean, r.kld_err, r.kld_median, r.kld_p99, r.kld_max);
        printf("top-1 agreement = %.4f%%\n", 100.0 * r.top1_agree);
    }
    rc = 0;
done:
    opc_runner_free(&run);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
    free(text);
    free(ids);
    return rc;
}
