/*
 * cmd_benchmark.c — `opacc1ty benchmark MODEL`: prefill and decode speed of
 * the CPU forward pass, the weight bytes each decoded token reads, and that
 * traffic as a fraction of the memory read bandwidth measured by the built-in
 * probe in the same run (the roofline of a memory-bound decode).
 *
 * Decode is greedy and ignores end-of-sequence, so every run does exactly
 * --max-tokens steps. Weight bytes per token count what the forward pass
 * actually streams: codebook tensors as packed (indices + codebooks + group
 * scales + outliers), every other matrix as the copy the pass keeps (fp16 in
 * place or fp32 on the CPU, fp16 on the GPU). With --device cuda the whole
 * pass runs on the GPU and the roofline is the GPU's device-to-device copy
 * bandwidth, measured in the same run.
 */
#include "cli.h"

#include "core/core.h"
#include "core/cpu_features.h"
#include "cpu/cpu.h"
#include "format/bf2.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/runner.h"
#include "tokenizer/tokenizer.h"

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_default_prompt =
    "The history of computing is a story of making machines do more with less. Early computers "
    "filled whole rooms and used thousands of vacuum tubes; today a phone holds billions of "
    "transistors. Each step came from people who asked how the same work could be done with "
    "fewer resources, less memory and less energy.";

static void usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty benchmark MODEL [options]\n"
            "\n"
            "  --prompt TEXT        prompt text (default: a built-in paragraph)\n"
            "  --prompt-tokens N    repeat the prompt's tokens to exactly N (e.g. 512)\n"
            "  --max-tokens N       decode steps to time (default 64)\n"
            "  --threads N          threads for kernels and probe (default: all cores)\n"
            "  --batch N            prefill batch size (default 512)\n"
            "  --compare-gemv       also prefill one token at a time (the matrix-vector\n"
            "                       loop) and report the batched speed-up\n"
            "  --int8-act           int8 activations (AVX-512 VNNI; 2-bit decode, 2/4-bit\n"
            "                       prefill on int8 weights): faster, approximate, not the\n"
            "                       reference result\n"
            "  --device D           cpu (default) or cuda (the whole pass on the GPU; the\n"
            "                       roofline is then the GPU's copy bandwidth)\n"
            "  --json               machine-readable output on stdout\n");
}

static int parse_long(const char *s, const char *opt, long lo, long hi, long *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (!*s || *e || v < lo || v > hi) {
        fprintf(stderr, "opacc1ty benchmark: %s expects an integer in [%ld, %ld], got '%s'\n", opt,
                lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* Bytes one decode step reads for a (rows, cols) matrix used by the forward
 * pass (see the file comment); gpu: dense weights live as fp16 there. */
static uint64_t matrix_bytes(const opc_tensor *t, int gpu) {
    if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) return opc_bf2_cb_bytes(&t->cb);
    if (gpu) return (uint64_t)opc_tensor_nelem(t) * 2;
    /* f16 weights are read in place (forward.c) unless OPC_F16_AS_F32 forces
     * the old fp32 expansion; every other non-codebook type is fp32 in memory. */
    if (t->type == OPC_TYPE_F16 && !getenv("OPC_F16_AS_F32")) return (uint64_t)opc_tensor_nelem(t) * 2;
    return (uint64_t)opc_tensor_nelem(t) * 4;
}

static int is_layer_matrix(const char *name) {
    static const char *const suffix[] = {".attn_q.weight",   ".attn_k.weight",
                                         ".attn_v.weight",   ".attn_output.weight",
                                         ".ffn_gate.weight", ".ffn_up.weight",
                                         ".ffn_down.weight"};
    if (strncmp(name, "blk.", 4) != 0) return 0;
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t k = strlen(suffix[i]);
        if (n > k && !strcmp(name + n - k, suffix[i])) return 1;
    }
    return 0;
}

/* Weight bytes per decoded token and how many of them are codebook-packed. */
static void weight_traffic(const opc_model_desc *d, int gpu, uint64_t *total, uint64_t *packed) {
    *total = *packed = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (!is_layer_matrix(t->name)) continue;
        uint64_t b = matrix_bytes(t, gpu);
        *total += b;
        if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) *packed += b;
    }
    const opc_tensor *head = opc_model_desc_find(d, "output.weight");
    if (!head) head = opc_model_desc_find(d, "token_embd.weight"); /* tied head */
    if (head) {
        uint64_t b = matrix_bytes(head, gpu);
        *total += b;
        if (head->type == OPC_TYPE_CB2 || head->type == OPC_TYPE_CB4) *packed += b;
    }
}

static int32_t argmax(const float *v, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int opc_cmd_benchmark(int argc, char **argv) {
    const char *model = NULL, *prompt = k_default_prompt;
    long max_tokens = 64, threads = 0, batch = 512, prompt_tokens = 0;
    int json = 0, compare_gemv = 0, int8_act = 0;
    const char *device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--compare-gemv")) {
            compare_gemv = 1;
        } else if (!strcmp(a, "--int8-act")) {
            int8_act = 1;
        } else if (a[0] == '-' && a[1] && !has) {
            fprintf(stderr, "opacc1ty benchmark: %s needs a value (or is unknown)\n", a);
            return 2;
        } else if (!strcmp(a, "--prompt") || !strcmp(a, "-p")) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--prompt-tokens")) {
            if (!parse_long(argv[++i], a, 1, 1 << 20, &prompt_tokens)) return 2;
        } else if (!strcmp(a, "--max-tokens") || !strcmp(a, "-n")) {
            if (!parse_long(argv[++i], a, 1, 1 << 20, &max_tokens)) return 2;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (!parse_long(argv[++i], a, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            if (!parse_long(argv[++i], a, 1, 1 << 16, &batch)) return 2;
        } else if (!strcmp(a, "--device")) {
            device = argv[++i];
            if (strcmp(device, "cpu") && strcmp(device, "cuda")) {
                fprintf(stderr, "opacc1ty benchmark: --device must be cpu or cuda, got '%s'\n", device);
                return 2;
            }
            if (!strcmp(device, "cuda") && !opc_runner_have_cuda()) {
                fprintf(stderr, "opacc1ty benchmark: built without CUDA (no nvcc): --device cuda is unavailable\n");
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "opacc1ty benchmark: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "opacc1ty benchmark: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!model) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    opc_status st;
    opc_model_desc *d = NULL;
    opc_tokenizer *tok = NULL;
    opc_runner run = {0};
    int32_t *ids = NULL, *prompt_ids = NULL;
    float *logits = NULL;
    size_t n_text = 0;
    cJSON *root = NULL;

    if (threads > 0) opc_cpu_set_threads((int)threads);
    if (int8_act && !opc_cpu_set_int8_activations(true)) {
        fprintf(stderr, "opacc1ty benchmark: --int8-act needs AVX-512 VNNI, which this CPU lacks\n");
        return 1;
    }
    int nthreads = opc_cpu_get_threads();

    double t_load = opc_time_s();
    if ((st = opc_model_desc_open(model, &d)) != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    if ((st = opc_tokenizer_init(&tok, &d->vocab)) != OPC_OK) {
        rc = opc_cli_fail(st, "tokenizer");
        goto done;
    }
    opc_encode_opts eo = {-1, 0};
    if ((st = opc_tokenizer_encode_alloc(tok, prompt, strlen(prompt), &eo, &prompt_ids, &n_text)) !=
        OPC_OK) {
        rc = opc_cli_fail(st, "tokenize prompt");
        goto done;
    }
    if (n_text == 0) {
        fprintf(stderr, "opacc1ty benchmark: the prompt encodes to no tokens\n");
        goto done;
    }
    long n_prompt = prompt_tokens > 0 ? prompt_tokens : (long)n_text;
    long ctx = n_prompt + max_tokens + 1;
    if (d->cfg.max_seq_len > 0 && ctx > d->cfg.max_seq_len)
        fprintf(stderr, "opacc1ty benchmark: warning: %ld positions exceed the trained context of %d\n",
                ctx, d->cfg.max_seq_len);
    ids = malloc((size_t)ctx * sizeof *ids);
    logits = malloc((size_t)d->cfg.vocab_size * sizeof *logits);
    if (!ids || !logits) {
        rc = opc_cli_fail(opc_error(OPC_ERR_NOMEM, "token buffers"), "benchmark");
        goto done;
    }
    /* --prompt-tokens: repeat the text's tokens (after a BOS, if any, once) */
    for (long i = 0; i < n_prompt; i++) {
        size_t skip = (n_text > 1 && prompt_ids[0] == d->vocab.bos_id && i > 0) ? 1 : 0;
        size_t span = n_text - skip;
        ids[i] = i < (long)n_text ? prompt_ids[i] : prompt_ids[skip + (size_t)(i - (long)n_text) % span];
    }
    long mb = batch < n_prompt ? batch : n_prompt;
    const int gpu = !strcmp(device, "cuda");
    if (gpu && (int8_act || compare_gemv)) {
        fprintf(stderr, "opacc1ty benchmark: --int8-act and --compare-gemv are CPU options\n");
        goto done;
    }
    if ((st = opc_runner_init(&run, d, device, (int32_t)ctx, (int32_t)mb, nthreads)) != OPC_OK) {
        rc = opc_cli_fail(st, model);
        goto done;
    }
    t_load = opc_time_s() - t_load;

    /* Roofline first, while nothing else of ours runs. */
    double bw = 0.0;
    if (!gpu) {
        bw = opc_mem_read_bw((size_t)256 << 20, nthreads, 3);
    } else {
#ifdef OPC_HAVE_CUDA
        double gbs_copy = 0.0;
        if ((st = opc_cuda_copy_bw((size_t)1 << 30, 5, &gbs_copy)) != OPC_OK) {
            rc = opc_cli_fail(st, "copy probe");
            goto done;
        }
        bw = gbs_copy * 1e9;
#endif
    }

    /* Warm-up: touch every weight once (page cache, mmap faults, thread pool). */
    if ((st = opc_runner_run(&run, ids, 1, 0, logits, OPC_LOGITS_LAST)) != OPC_OK) {
        rc = opc_cli_fail(st, "warm-up");
        goto done;
    }

    double t0 = opc_time_s();
    if ((st = opc_runner_run(&run, ids, (int32_t)n_prompt, 0, logits, OPC_LOGITS_LAST)) != OPC_OK) {
        rc = opc_cli_fail(st, "prefill");
        goto done;
    }
    double t_prefill = opc_time_s() - t0;

    /* decode: one forward pass per token, timed individually; on the GPU the
     * greedy picks stay on the device (opc_runner_greedy: no logits download
     * or host sync per token), timed as one call */
    double t_dec = 0, best_step = 1e30;
    int32_t pos = (int32_t)n_prompt;
    if (gpu) {
        ids[pos] = argmax(logits, d->cfg.vocab_size);
        double ts = opc_time_s();
        if ((st = opc_runner_greedy(&run, ids[pos], pos, (int32_t)max_tokens, &ids[pos + 1])) != OPC_OK) {
            rc = opc_cli_fail(st, "decode");
            goto done;
        }
        t_dec = opc_time_s() - ts;
        best_step = t_dec / (double)max_tokens;
    }
    for (long s = 0; !gpu && s < max_tokens; s++) {
        ids[pos] = argmax(logits, d->cfg.vocab_size);
        double ts = opc_time_s();
        if ((st = opc_runner_run(&run, &ids[pos], 1, pos, logits, OPC_LOGITS_LAST)) != OPC_OK) {
            rc = opc_cli_fail(st, "decode");
            goto done;
        }
        double dt = opc_time_s() - ts;
        t_dec += dt;
        if (dt < best_step) best_step = dt;
        pos++;
    }

    double t_gemv = 0;
    if (compare_gemv) {
        t0 = opc_time_s();
        for (long i = 0; i < n_prompt; i++) {
            if ((st = opc_runner_run(&run, &ids[i], 1, (int32_t)i, logits,
                                      i + 1 == n_prompt ? OPC_LOGITS_LAST : OPC_LOGITS_NONE)) !=
                OPC_OK) {
                rc = opc_cli_fail(st, "prefill (matrix-vector loop)");
                goto done;
            }
        }
        t_gemv = opc_time_s() - t0;
    }

    uint64_t wbytes, wpacked;
    weight_traffic(d, gpu, &wbytes, &wpacked);
    double prefill_tps = (double)n_prompt / t_prefill;
    double decode_tps = (double)max_tokens / t_dec;
    double ms_tok = 1e3 * t_dec / (double)max_tokens;
    double gbs = (double)wbytes * decode_tps / 1e9;
    double gbs_best = (double)wbytes / best_step / 1e9;
    const opc_cpu_features *cf = opc_cpu_get_features();
    const char *kernel = opc_cb_impl_name(opc_cb_impl_best());

    if (json) {
        root = cJSON_CreateObject();
        if (!root) {
            rc = opc_cli_fail(opc_error(OPC_ERR_NOMEM, "json"), "benchmark");
            goto done;
        }
        cJSON_AddStringToObject(root, "model", model);
        cJSON_AddStringToObject(root, "device", device);
        cJSON_AddStringToObject(root, "cpu", cf->brand);
        cJSON_AddStringToObject(root, "cpu_features", opc_cpu_features_str());
        cJSON_AddStringToObject(root, "cb_kernel", kernel);
        cJSON_AddNumberToObject(root, "threads", nthreads);
        cJSON_AddNumberToObject(root, "load_s", t_load);
        cJSON_AddNumberToObject(root, "prompt_tokens", (double)n_prompt);
        cJSON_AddNumberToObject(root, "prefill_s", t_prefill);
        cJSON_AddNumberToObject(root, "prefill_tok_s", prefill_tps);
        if (compare_gemv) {
            cJSON_AddNumberToObject(root, "prefill_gemv_loop_s", t_gemv);
            cJSON_AddNumberToObject(root, "prefill_speedup_vs_gemv_loop", t_gemv / t_prefill);
        }
        cJSON_AddNumberToObject(root, "decode_tokens", (double)max_tokens);
        cJSON_AddNumberToObject(root, "decode_s", t_dec);
        cJSON_AddNumberToObject(root, "decode_tok_s", decode_tps);
        cJSON_AddNumberToObject(root, "ms_per_token", ms_tok);
        cJSON_AddNumberToObject(root, "ms_per_token_best", best_step * 1e3);
        cJSON_AddNumberToObject(root, "weight_bytes_per_token", (double)wbytes);
        cJSON_AddNumberToObject(root, "codebook_bytes_per_token", (double)wpacked);
        cJSON_AddNumberToObject(root, "effective_gb_s", gbs);
        cJSON_AddNumberToObject(root, "effective_gb_s_best_step", gbs_best);
        cJSON_AddNumberToObject(root, gpu ? "probe_copy_gb_s" : "probe_read_gb_s", bw / 1e9);
        cJSON_AddNumberToObject(root, "roofline_pct", bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0);
        char *s = cJSON_Print(root);
        if (!s) {
            rc = opc_cli_fail(opc_error(OPC_ERR_NOMEM, "json"), "benchmark");
            goto done;
        }
        printf("%s\n", s);
        free(s);
    } else {
        const opc_config *c = &d->cfg;
        printf("model        %s (%s, dim %d, %d layers, vocab %d), loaded in %.2f s\n", model,
               opc_arch_name(c->arch), c->dim, c->n_layers, c->vocab_size, t_load);
        if (gpu)
            printf("device       cuda (the whole forward pass on the GPU)\n");
        else
            printf("cpu          %s, %d threads, codebook kernel %s\n", cf->brand, nthreads, kernel);
        printf("prefill      %ld tokens in %.3f s: %.1f tok/s\n", n_prompt, t_prefill, prefill_tps);
        if (compare_gemv)
            printf("             one token at a time: %.3f s (%.1f tok/s); batched is %.2fx faster\n",
                   t_gemv, (double)n_prompt / t_gemv, t_gemv / t_prefill);
        if (gpu)
            printf("decode       %ld tokens in %.3f s: %.2f tok/s, %.2f ms/token (greedy picks on the device)\n",
                   max_tokens, t_dec, decode_tps, ms_tok);
        else
            printf("decode       %ld tokens in %.3f s: %.2f tok/s, %.2f ms/token (best step %.2f ms)\n",
                   max_tokens, t_dec, decode_tps, ms_tok, best_step * 1e3);
        printf("weights      %.2f MiB read per token (%.2f MiB codebook-packed)\n",
               (double)wbytes / 1048576.0, (double)wpacked / 1048576.0);
        if (gpu)
            printf("bandwidth    %.2f GB/s effective; GPU copy probe %.1f GB/s (read + write): %.0f%% of the "
                   "roofline\n",
                   gbs, bw / 1e9, bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0);
        else
            printf("bandwidth    %.2f GB/s effective (best step %.2f GB/s); probe %.2f GB/s with %d "
                   "threads: %.0f%% of the roofline\n",
                   gbs, gbs_best, bw / 1e9, nthreads, bw > 0 ? 100.0 * gbs * 1e9 / bw : 0.0);
    }
    rc = 0;
done:
    cJSON_Delete(root);
    opc_runner_free(&run);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
    free(prompt_ids);
    free(ids);
    free(logits);
    return rc;
}
