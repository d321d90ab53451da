/* mix_eval.c — measurement-only tool (not product code): score mixtures of
 * already-quantized .bf2 files of one model without re-quantizing. Each
 * tensor of the evaluated model is taken from one of the files by pattern,
 * which gives exactly the tensor `opacc1ty quantize` would write for it at
 * that file's settings (the quantizer fits every tensor independently, seeded
 * by (seed, tensor index, row), and the calibration does not depend on the
 * bit width). Used to measure per-tensor-group sensitivity for the 2-bit
 * allocation (docs/RESULTS.md).
 *
 * Evaluation: KLD (and PPL) against the unquantized model on a held-out
 * slice of the text: --skip chunks of --ctx tokens are skipped first, so the
 * slice does not overlap the first chunks the reported PPL/KLD use.
 *
 *   mix_eval REF_MODEL TEXT [--ctx 256] [--skip 40] [--chunks 4] [--full]
 *            [--threads 2] NAME=FILE.bf2 ... < PLAN
 * PLAN: one evaluation per line: `label base [PATTERN=NAME ...]`; a tensor
 * takes the file of the first PATTERN it matches (a glob with * ? [, else a
 * substring of the canonical name), else base's. Prints per line: label,
 * bpw all-in over the codebook tensors, KLD mean, PPL, top-1 agreement.
 *
 * Build from the repository root after a CPU release build in BUILD:
 *   cc -O2 -std=c11 -fopenmp -I include -I src scripts/dev/mix_eval.c \
 *      BUILD/libopacc1ty.a -lm -lpcre2-8 -lcjson -o /tmp/mix_eval */
#define _GNU_SOURCE
#include "core/core.h"
#include "format/bf2.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "model/runner.h"
#include "quant/quantize.h"
#include "tokenizer/tokenizer.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILES 16

static int pat_match(const char *pat, const char *name) {
    if (strpbrk(pat, "*?[")) return fnmatch(pat, name, 0) == 0;
    return strstr(name, pat) != NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: mix_eval REF TEXT [opts] NAME=FILE ... < PLAN\n");
        return 2;
    }
    const char *ref_path = argv[1], *text_path = argv[2];
    int ctx = 256, skip = 40, chunks = 4, threads = 2, full = 0;
    const char *names[MAX_FILES];
    opc_model_desc *files[MAX_FILES];
    int nf = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc) skip = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) chunks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full")) full = 1;
        else {
            char *eq = strchr(argv[i], '=');
            if (!eq || nf == MAX_FILES) {
                fprintf(stderr, "bad argument %s\n", argv[i]);
                return 2;
            }
            *eq = '\0';
            names[nf] = argv[i];
            if (opc_model_desc_open(eq + 1, &files[nf])) {
                fprintf(stderr, "%s: %s\n", eq + 1, opc_last_error());
                return 1;
            }
            nf++;
        }
    }
    if (nf < 1) return 2;
    for (int f = 1; f < nf; f++)
        if (files[f]->n_tensors != files[0]->n_tensors) {
            fprintf(stderr, "%s: tensor count differs\n", names[f]);
            return 1;
        }

    /* tokens of the text, the slice after `skip` chunks */
    char *text = NULL;
    size_t len = 0, n_tok = 0;
    int32_t *ids = NULL;
    opc_model_desc *ref = NULL;
    opc_tokenizer *tok = NULL;
    if (opc_read_file(text_path, &text, &len) || opc_model_desc_open(ref_path, &ref) ||
        opc_tokenizer_init(&tok, &ref->vocab)) {
        fprintf(stderr, "%s\n", opc_last_error());
        return 1;
    }
    len = opc_text_normalize_newlines(text, len);
    opc_encode_opts eo = {-1, 0};
    if (opc_tokenizer_encode_alloc(tok, text, len, &eo, &ids, &n_tok)) {
        fprintf(stderr, "%s\n", opc_last_error());
        return 1;
    }
    if ((int64_t)n_tok < (int64_t)(skip + chunks) * ctx) {
        fprintf(stderr, "text too short\n");
        return 1;
    }
    int32_t *slice = ids + (int64_t)skip * ctx;
    int64_t n_slice = (int64_t)chunks * ctx;
    opc_ppl_params pp = opc_ppl_defaults();
    pp.ctx = ctx;
    pp.n_chunks = chunks;
    pp.full = full;
    pp.bos_id = ref->vocab.add_bos ? opc_tokenizer_bos(tok) : -1;
    /* the reference distributions, cached per (model, text, slice) */
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the two paths */
    for (const char *c = ref_path; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (const char *c = text_path; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    char ref_logp[512];
    snprintf(ref_logp, sizeof ref_logp, "/tmp/mix_eval_ref_%016llx_c%d_s%d_n%d_f%d.logp", (unsigned long long)h, ctx,
             skip, chunks, full);
    FILE *probe = fopen(ref_logp, "rb");
    if (probe) {
        fclose(probe);
    } else {
        opc_runner r;
        opc_ppl_result res;
        pp.save_path = ref_logp;
        if (opc_runner_init(&r, ref, "cpu", ctx, ctx, threads) ||
            opc_perplexity(&r, slice, n_slice, &pp, &res)) {
            fprintf(stderr, "reference: %s\n", opc_last_error());
            return 1;
        }
        printf("# reference PPL %.4f on %lld tokens (%.1f s)\n", res.ppl, (long long)res.count, res.seconds);
        opc_runner_free(&r);
        pp.save_path = NULL;
    }
    pp.kld_path = ref_logp;

    /* the evaluated model: files[0]'s description with tensors swapped in */
    opc_model_desc *w = files[0];
    int32_t nt = w->n_tensors;
    opc_tensor *orig = malloc((size_t)nt * sizeof *orig);
    memcpy(orig, w->tensors, (size_t)nt * sizeof *orig);
    char line[8192];
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL, *label = strtok_r(line, " \t\n", &save);
        if (!label || label[0] == '#') continue;
        char *base = strtok_r(NULL, " \t\n", &save);
        char *pats[256];
        int pf[256], np = 0, bf = -1;
        for (int f = 0; f < nf; f++)
            if (base && !strcmp(base, names[f])) bf = f;
        if (bf < 0) {
            fprintf(stderr, "%s: unknown base\n", label);
            continue;
        }
        char *tk;
        int bad = 0;
        while ((tk = strtok_r(NULL, " \t\n", &save)) && np < 256) {
            char *eq = strrchr(tk, '=');
            if (!eq) { bad = 1; break; }
            *eq = '\0';
            pf[np] = -1;
            for (int f = 0; f < nf; f++)
                if (!strcmp(eq + 1, names[f])) pf[np] = f;
            if (pf[np] < 0) { bad = 1; break; }
            pats[np++] = tk;
        }
        if (bad) {
            fprintf(stderr, "%s: bad pattern\n", label);
            continue;
        }
        uint64_t qb = 0, qe = 0;
        for (int32_t i = 0; i < nt; i++) {
            int f = bf;
            for (int j = 0; j < np; j++)
                if (pat_match(pats[j], orig[i].name)) { f = pf[j]; break; }
            w->tensors[i] = f == 0 ? orig[i] : files[f]->tensors[i]; /* files[0] is w itself */
            if (strcmp(w->tensors[i].name, orig[i].name)) {
                fprintf(stderr, "tensor order differs at %d\n", i);
                return 1;
            }
            if (w->tensors[i].type == OPC_TYPE_CB2 || w->tensors[i].type == OPC_TYPE_CB4) {
                qb += opc_cb_matrix_bytes(&w->tensors[i].cb);
                qe += (uint64_t)opc_tensor_nelem(&w->tensors[i]);
            }
        }
        opc_runner r;
        opc_ppl_result res;
        if (opc_runner_init(&r, w, "cpu", ctx, ctx, threads) || opc_perplexity(&r, slice, n_slice, &pp, &res)) {
            fprintf(stderr, "%s: %s\n", label, opc_last_error());
            return 1;
        }
        printf("%-28s bpw %.4f  KLD %.5f  PPL %9.3f  top1 %.2f  (%.1f s)\n", label,
               qe ? 8.0 * (double)qb / (double)qe : 0.0, res.kld_mean, res.ppl, 100.0 * res.top1_agree,
               res.seconds);
        fflush(stdout);
        opc_runner_free(&r);
    }
    memcpy(w->tensors, orig, (size_t)nt * sizeof *orig);
    free(orig);
    for (int f = 0; f < nf; f++) opc_model_desc_free(files[f]);
    opc_tokenizer_free(tok);
    opc_model_desc_free(ref);
    free(ids);
    free(text);
    return 0;
}
