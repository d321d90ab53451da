/*
 * cmd_generate.c — `opacc1ty generate MODEL --prompt TEXT [...]`: prefill the
 * prompt in batches, then decode token by token, streaming text to stdout.
 * Statistics (prefill and decode tok/s) go to stderr.
 */
#include "cli.h"

#include "core/core.h"
#include "core/cpu_features.h"
#include "cpu/cpu.h"
#include "model/chat.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/runner.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty generate MODEL --prompt TEXT [options]\n"
            "\n"
            "  --prompt TEXT      prompt text (required)\n"
            "  --max-tokens N     tokens to generate (default 128)\n"
            "  --temp T           temperature; 0 = greedy (default 0)\n"
            "  --top-k K          keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P          nucleus mass (default 0.95; 1 = off)\n"
            "  --seed S           sampler seed (default 0)\n"
            "  --chat             wrap the prompt in the model's chat template\n"
            "  --system TEXT      system message for --chat\n"
            "  --threads N        OpenMP threads (default: all cores)\n"
            "  --ctx N            context size (default: prompt + max-tokens)\n"
            "  --batch N          prefill batch size (default 512)\n"
            "  --verbose          print model, memory and timing details to stderr\n"
            "  --device D         cpu (default) or cuda (the whole forward pass on the GPU; greedy\n"
            "                     and sampled picks are made there too, the same tokens as the\n"
            "                     CPU sampler for equal logits; OPC_CUDA_HOST_SAMPLE=1 samples\n"
            "                     on the host instead, for comparisons)\n"
            "  --int8-act         CPU: int8 activations in the codebook kernels (AVX-512 VNNI;\n"
            "                     faster decode, approximate; see docs/RESULTS.md)\n");
}

static int parse_int(const char *s, const char *opt, long lo, long hi, long *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) {
        fprintf(stderr, "opacc1ty generate: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_float(const char *s, const char *opt, double lo, double hi, double *out) {
    char *e;
    double v = strtod(s, &e);
    if (!*s || *e || !(v >= lo && v <= hi)) {
        fprintf(stderr, "opacc1ty generate: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

int opc_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *system = NULL;
    long max_tokens = 128, top_k = 40, threads = 0, ctx = 0, batch = 512, seed = 0;
    int int8_act = 0;
    double temp = 0.0, top_p = 0.95;
    int chat = 0, verbose = 0, use_cuda = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
#define NEXT()                                                                           \
    do {                                                                                 \
        if (!has) {                                                                      \
            fprintf(stderr, "opacc1ty generate: %s needs a value\n", a);                  \
            return 2;                                                                    \
        }                                                                                \
        i++;                                                                             \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
            NEXT();
            prompt = argv[i];
        } else if (!strcmp(a, "--system")) {
            NEXT();
            system = argv[i];
        } else if (!strcmp(a, "--max-tokens") || !strcmp(a, "-n")) {
            NEXT();
            if (!parse_int(argv[i], a, 0, 1 << 20, &max_tokens)) return 2;
        } else if (!strcmp(a, "--temp")) {
            NEXT();
            if (!parse_float(argv[i], a, 0.0, 100.0, &temp)) return 2;
        } else if (!strcmp(a, "--top-k")) {
            NEXT();
            if (!parse_int(argv[i], a, 0, 1 << 24, &top_k)) return 2;
        } else if (!strcmp(a, "--top-p")) {
            NEXT();
            if (!parse_float(argv[i], a, 0.0, 1.0, &top_p)) return 2;
        } else if (!strcmp(a, "--seed")) {
            NEXT();
            if (!parse_int(argv[i], a, 0, 0x7fffffffL, &seed)) return 2;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--int8-act")) {
            int8_act = 1;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            NEXT();
            if (!parse_int(argv[i], a, 2, 1 << 22, &ctx)) return 2;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            NEXT();
            if (!parse_int(argv[i], a, 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(a, "--device")) {
            NEXT();
            if (strcmp(argv[i], "cpu") && strcmp(argv[i], "cuda")) {
                fprintf(stderr, "opacc1ty generate: --device must be cpu or cuda, got '%s'\n", argv[i]);
                return 2;
            }
            use_cuda = !strcmp(argv[i], "cuda");
            if (use_cuda && !opc_runner_have_cuda()) {
                fprintf(stderr, "opacc1ty generate: built without CUDA (no nvcc): --device cuda is unavailable\n");
                return 2;
            }
        } else if (!strcmp(a, "--chat")) {
            chat = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            verbose = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "opacc1ty generate: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "opacc1ty generate: unexpected argument '%s'\n", a);
            return 2;
        }
#undef NEXT
    }
    if (!model || !prompt) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    opc_status st;
    opc_model_desc *d = NULL;
    opc_tokenizer *tok = NULL;
    opc_runner run = {0};
    opc_sampler smp = {0};
    char *text = NULL, *piece = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    size_t n_prompt = 0;

    double t_load = opc_time_s();
    if ((st = opc_model_desc_open(model, &d)) != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    if ((st = opc_tokenizer_init(&tok, &d->vocab)) != OPC_OK) {
        rc = opc_cli_fail(st, "tokenizer");
        goto done;
    }

    /* prompt -> ids */
    opc_encode_opts eo = {-1, 0};
    const char *input = prompt;
    int32_t end_of_turn = -1;
    if (chat) {
        opc_chat_family fam;
        if ((st = opc_chat_detect(d->vocab.chat_template, &fam)) != OPC_OK) {
            rc = opc_cli_fail(st, "--chat");
            fprintf(stderr, "opacc1ty generate: run without --chat to use the prompt as raw text\n");
            goto done;
        }
        opc_chat_msg msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (opc_chat_msg){"system", system};
        msgs[nm++] = (opc_chat_msg){"user", prompt};
        if ((st = opc_chat_render(fam, d->vocab.chat_template, msgs, nm, 1, &text)) != OPC_OK) {
            rc = opc_cli_fail(st, "--chat");
            goto done;
        }
        char *def = system ? NULL : opc_chat_default_system(d->vocab.chat_template);
        fprintf(stderr, "generate: chat template: %s (detected from the model's tokenizer.chat_template)%s\n",
                opc_chat_family_name(fam), def ? "; with its default system prompt" : "");
        free(def);
        end_of_turn = opc_tokenizer_find(tok, opc_chat_end_of_turn(fam));
        input = text;
        eo.add_bos = 0;      /* the rendered text carries BOS where the family wants it */
        eo.parse_special = 1;
    }
    if ((st = opc_tokenizer_encode_alloc(tok, input, strlen(input), &eo, &ids, &n_prompt)) != OPC_OK) {
        rc = opc_cli_fail(st, "tokenize prompt");
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "opacc1ty generate: the prompt encodes to no tokens\n");
        goto done;
    }
    if (!ctx) ctx = (long)n_prompt + max_tokens;
    if ((long)n_prompt >= ctx) {
        fprintf(stderr, "opacc1ty generate: the prompt has %zu tokens, it does not fit --ctx %ld\n", n_prompt, ctx);
        goto done;
    }
    if (d->cfg.max_seq_len > 0 && ctx > d->cfg.max_seq_len)
        fprintf(stderr, "opacc1ty generate: warning: ctx %ld exceeds the trained context of %d\n", ctx,
                d->cfg.max_seq_len);
    int32_t *grown = realloc(ids, (size_t)(ctx + 1) * sizeof *ids);
    if (!grown) {
        rc = opc_cli_fail(opc_error(OPC_ERR_NOMEM, "token buffer"), "generate");
        goto done;
    }
    ids = grown;

    long mb = batch < (long)n_prompt ? batch : (long)n_prompt;
    if (int8_act && !opc_cpu_set_int8_activations(true)) {
        fprintf(stderr, "opacc1ty generate: --int8-act needs AVX-512 VNNI, which this CPU lacks\n");
        rc = 1;
        goto done;
    }
    st = opc_runner_init(&run, d, use_cuda ? "cuda" : "cpu", (int32_t)ctx, (int32_t)mb, (int32_t)threads);
    if (st != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    t_load = opc_time_s() - t_load;
    if (verbose && run.cpu) {
        opc_forward_mem m = opc_forward_memory(run.cpu);
        const opc_config *c = &d->cfg;
        fprintf(stderr,
                "generate: %s: %s, dim %d, %d layers, %d/%d heads, vocab %d; loaded in %.2f s\n"
                "generate: memory: %.1f MiB weights dequantized to fp32, %.1f MiB used in place "
                "(%.1f MiB of it fp16), %.1f MiB KV cache (ctx %ld), %.1f MiB scratch\n"
                "generate: cpu: %s; prompt %zu tokens\n",
                model, opc_arch_name(c->arch), c->dim, c->n_layers, c->n_heads, c->n_kv_heads,
                c->vocab_size, t_load, (double)m.weights_f32 / 1048576.0,
                (double)m.weights_view / 1048576.0, (double)m.weights_f16 / 1048576.0,
                (double)m.kv_cache / 1048576.0, ctx,
                (double)m.scratch / 1048576.0, opc_cpu_features_str(), n_prompt);
    }
    opc_sampler_params sp = {(float)temp, (int32_t)top_k, (float)top_p, (uint64_t)seed};
    if ((st = opc_sampler_init(&smp, d->cfg.vocab_size, &sp)) != OPC_OK) {
        rc = opc_cli_fail(st, "sampler");
        goto done;
    }
    logits = malloc((size_t)d->cfg.vocab_size * sizeof *logits);
    size_t pcap = opc_tokenizer_max_token_bytes(tok) + 16;
    piece = malloc(pcap);
    if (!logits || !piece) {
        rc = opc_cli_fail(opc_error(OPC_ERR_NOMEM, "logits"), "generate");
        goto done;
    }

    double t0 = opc_time_s();
    if ((st = opc_runner_run(&run, ids, (int32_t)n_prompt, 0, logits, OPC_LOGITS_LAST)) != OPC_OK) {
        rc = opc_cli_fail(st, "prefill");
        goto done;
    }
    double t_prefill = opc_time_s() - t0;

    opc_detok dt;
    opc_detok_init(&dt, tok);
    if (!chat) {
        /* echo the prompt (its text, as the model sees it) before the continuation */
        for (size_t i = 0; i < n_prompt; i++) {
            size_t k = opc_detok_push(&dt, ids[i], 1, piece, pcap);
            fwrite(piece, 1, k, stdout);
        }
    }
    fflush(stdout);
    const int32_t eos = d->vocab.eos_id;
    long n_gen = 0;
    int32_t pos = (int32_t)n_prompt;
    t0 = opc_time_s();
    const char *stop = "max-tokens";
    /* On the GPU the picks (greedy or sampled) are made on the device, up to
     * 16 steps per call with no logits download or host sync in between (the
     * tokens past an end-of-sequence pick are computed and dropped). The
     * first token comes from the prefill logits through the host sampler;
     * its PRNG state then travels with each chunk (smp.rng), so the stream of
     * draws is the CPU path's. */
    const char *host_env = getenv("OPC_CUDA_HOST_SAMPLE");
    const int dev_pick = !strcmp(opc_runner_device(&run), "cuda") &&
                         (temp <= 0.0 || !(host_env && !strcmp(host_env, "1")));
    int32_t gbuf[16];
    int gn = 0, gi = 0;
    while (n_gen < max_tokens) {
        int32_t next = gi < gn ? gbuf[gi++] : opc_sampler_sample(&smp, logits);
        n_gen++;
        if (next == eos || next == end_of_turn) {
            stop = next == eos ? "end of sequence" : "end of turn";
            break;
        }
        size_t k = opc_detok_push(&dt, next, 1, piece, pcap);
        fwrite(piece, 1, k, stdout);
        fflush(stdout);
        ids[pos] = next;
        if (n_gen == max_tokens) break; /* the last token needs no forward pass */
        if (pos + 1 >= ctx) {
            stop = "context full";
            break;
        }
        if (dev_pick) {
            if (gi >= gn) { /* `next` has not been fed yet: the next chunk starts with it */
                long c = max_tokens - n_gen;
                if (c > 16) c = 16;
                if (c > ctx - 1 - pos) c = ctx - 1 - pos;
                /* (temp 0: the device's greedy pick, the PRNG untouched) */
                st = opc_runner_sample(&run, next, pos, (int32_t)c, &sp, &smp.rng, gbuf);
                if (st != OPC_OK) {
                    rc = opc_cli_fail(st, "decode");
                    goto done;
                }
                gn = (int)c, gi = 0;
            }
        } else if ((st = opc_runner_run(&run, &ids[pos], 1, pos, logits, OPC_LOGITS_LAST)) != OPC_OK) {
            rc = opc_cli_fail(st, "decode");
            goto done;
        }
        pos++;
    }
    double t_decode = opc_time_s() - t0;
    size_t k = opc_detok_flush(&dt, piece, pcap);
    fwrite(piece, 1, k, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    /* decode speed counts forward passes: one per generated token except the last */
    long n_dec = n_gen > 1 ? n_gen - 1 : 0;
    fprintf(stderr,
            "generate: prompt %zu tokens in %.3f s (%.1f tok/s prefill); generated %ld tokens, "
            "%ld decode steps in %.3f s (%.2f tok/s decode); stopped: %s\n",
            n_prompt, t_prefill, (double)n_prompt / (t_prefill > 0 ? t_prefill : 1e-9), n_gen, n_dec,
            t_decode, n_dec > 0 && t_decode > 0 ? (double)n_dec / t_decode : 0.0, stop);
    rc = 0;
done:
    opc_sampler_free(&smp);
    opc_runner_free(&run);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
    free(text);
    free(piece);
    free(ids);
    free(logits);
    return rc;
}
