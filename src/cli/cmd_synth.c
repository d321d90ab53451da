/*
 * cmd_synth.c — `opacc1ty synth --shape NAME --bits B -o OUT.bf2 [options]`:
 * a random-weight model with a real model's shapes, for speed tests that
 * should not need a download (src/quant/synth.h says what is inside).
 *
 * Ctrl-C sets the flag the library polls; the .bf2 writer then removes its
 * temporary file, so an interrupted run leaves nothing under OUT.bf2.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include "../core/progress.h"
#include "../quant/synth.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupt = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C kills at once */
}

static void usage(FILE *f) {
    fprintf(f, "usage: opacc1ty synth --shape NAME --bits B -o OUT.bf2 [options]\n"
               "\n"
               "Writes a model with random weights and the real shapes of NAME, to measure speed\n"
               "without downloading anything (the text it generates is meaningless).\n"
               "\n"
               "  --shape NAME     ");
    for (int i = 0; opc_synth_shape_name(i); i++) fprintf(f, "%s%s", i ? ", " : "", opc_synth_shape_name(i));
    fprintf(f, "\n"
               "  --bits B         1.58 (k=3), 2 (k=4), 3 (k=8), 4 (k=16) codebooks, or 16 (plain f16)\n"
               "  -o, --output F   output .bf2 file (written atomically)\n"
               "  --layers N       override the shape's layer count (e.g. 2 for a quick 8B-wide model)\n"
               "  --outliers F     fraction of each codebook tensor stored as sparse outliers\n"
               "                   (default 0; at most 0.5)\n"
               "  --gscale         per-64-column group scales on every codebook tensor (cb.h; +0.125 bpw)\n"
               "  --rotate         rotated inputs on every codebook tensor but the embedding, block = the\n"
               "                   largest power of two dividing its width (at most 32768)\n"
               "  --head-bits B    untied output head: 16 (default, as `quantize` keeps it) or 1.58/2/3/4\n"
               "  --embd-bits B    token embedding: 16 (default, as `quantize`) or 1.58/2/3/4; for a\n"
               "                   tied head (smollm2, llama3.2-1b) this is also the head's format\n"
               "  --seed S         random seed (default 1); same seed, same bytes\n"
               "  --threads N      OpenMP threads (default: all)\n"
               "  --quiet          no progress bar\n");
}

typedef struct prog_ctx {
    opc_progress bar;
    int started, quiet;
} prog_ctx;

static void on_progress(void *user, const opc_synth_progress *p) {
    prog_ctx *c = user;
    if (!c->started) {
        opc_progress_init(&c->bar, "synth", (int64_t)p->elems_total, c->quiet);
        c->started = 1;
    }
    char extra[160];
    snprintf(extra, sizeof extra, "[%d/%d] %s", (int)p->tensor, (int)p->n_tensors, p->name);
    opc_progress_update(&c->bar, (int64_t)p->elems_done, extra);
}

/* Strict number parsing: the whole string, finite, in range. */
static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v == v)) return 0;
    *out = (float)v;
    return 1;
}
static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}
static int valid_bits(float b) {
    const float ok[] = {1.58f, 2.0f, 3.0f, 4.0f, 16.0f};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (b > ok[i] - 0.01f && b < ok[i] + 0.01f) return 1;
    return 0;
}

int opc_cmd_synth(int argc, char **argv) {
    opc_synth_params p = opc_synth_defaults();
    const char *out = NULL, *shape = NULL;
    int have_bits = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
            continue;
        } else if (!strcmp(a, "--gscale")) {
            p.gscale = 1;
            continue;
        } else if (!strcmp(a, "--rotate")) {
            p.rotate = 1;
            continue;
        } else if (a[0] != '-') {
            fprintf(stderr, "opacc1ty synth: unexpected argument '%s'\n", a);
            return 2;
        }
        if (!v) {
            if (!strcmp(a, "--shape") || !strcmp(a, "--bits") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
                !strcmp(a, "--layers") || !strcmp(a, "--outliers") || !strcmp(a, "--head-bits") ||
                !strcmp(a, "--embd-bits") || !strcmp(a, "--seed") || !strcmp(a, "--threads")) {
                fprintf(stderr, "opacc1ty synth: %s needs a value\n", a);
                return 2;
            }
            fprintf(stderr, "opacc1ty synth: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--shape")) {
            shape = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            out = v;
        } else if (!strcmp(a, "--bits")) {
            if (!parse_float(v, &p.bits) || !valid_bits(p.bits)) {
                fprintf(stderr, "opacc1ty synth: --bits must be 1.58, 2, 3, 4 or 16 (got '%s')\n", v);
                return 2;
            }
            have_bits = 1;
        } else if (!strcmp(a, "--head-bits")) {
            if (!parse_float(v, &p.head_bits) || !valid_bits(p.head_bits)) {
                fprintf(stderr, "opacc1ty synth: --head-bits must be 1.58, 2, 3, 4 or 16 (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--embd-bits")) {
            if (!parse_float(v, &p.embd_bits) || !valid_bits(p.embd_bits)) {
                fprintf(stderr, "opacc1ty synth: --embd-bits must be 1.58, 2, 3, 4 or 16 (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--layers")) {
            if (!parse_ll(v, 1, 4096, &n)) {
                fprintf(stderr, "opacc1ty synth: --layers must be an integer in 1..4096 (got '%s')\n", v);
                return 2;
            }
            p.n_layers = (int32_t)n;
        } else if (!strcmp(a, "--outliers")) {
            char *end;
            errno = 0;
            p.outlier_frac = strtod(v, &end);
            if (end == v || *end || errno || !(p.outlier_frac >= 0.0 && p.outlier_frac <= 0.5)) {
                fprintf(stderr, "opacc1ty synth: --outliers must be a fraction in [0, 0.5] (got '%s')\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-') {
                fprintf(stderr, "opacc1ty synth: --seed must be a non-negative integer (got '%s')\n", v);
                return 2;
            }
            p.seed = s;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_ll(v, 1, 4096, &n)) {
                fprintf(stderr, "opacc1ty synth: --threads must be an integer in 1..4096 (got '%s')\n", v);
                return 2;
            }
            p.n_threads = (int32_t)n;
        } else {
            fprintf(stderr, "opacc1ty synth: unknown option %s\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!shape || !have_bits || !out) {
        fprintf(stderr, "opacc1ty synth: --shape, --bits and -o are required\n\n");
        usage(stderr);
        return 2;
    }
    opc_config cfg;
    opc_status st = opc_synth_config(shape, p.n_layers, &cfg);
    if (st == OPC_ERR_INVALID_ARG) {
        fprintf(stderr, "opacc1ty synth: %s\n", opc_last_error());
        return 2;
    }
    if (st) return opc_cli_fail(st, shape);
    if (p.outlier_frac > 0.0 && p.bits > 15.0f && p.embd_bits > 15.0f &&
        (cfg.tied_embeddings || p.head_bits > 15.0f)) {
        fprintf(stderr, "opacc1ty synth: --outliers needs codebook weights (--bits 1.58, 2, 3 or 4)\n");
        return 2;
    }
    if (p.gscale && p.bits > 15.0f && p.embd_bits > 15.0f && (cfg.tied_embeddings || p.head_bits > 15.0f)) {
        fprintf(stderr, "opacc1ty synth: --gscale needs codebook weights (--bits 1.58, 2, 3 or 4)\n");
        return 2;
    }
    if (p.rotate && p.bits > 15.0f && (cfg.tied_embeddings || p.head_bits > 15.0f)) {
        fprintf(stderr, "opacc1ty synth: --rotate needs codebook layer weights (--bits 1.58, 2, 3 or 4) or a\n"
                        "  codebook untied head (--head-bits); the embedding is never rotated\n");
        return 2;
    }
    p.shape = shape;

    signal(SIGINT, on_sigint);
    p.interrupt = &g_interrupt;
    prog_ctx pc = {.quiet = quiet};
    p.progress = on_progress;
    p.progress_user = &pc;
    opc_synth_summary sum;
    st = opc_synth_write(out, &p, &sum);
    if (pc.started) opc_progress_finish(&pc.bar);
    signal(SIGINT, SIG_DFL);
    if (st) return opc_cli_fail(st, out);

    struct stat sb;
    unsigned long long fsize = stat(out, &sb) == 0 ? (unsigned long long)sb.st_size : 0ull;
    printf("wrote %s: shape %s, %d layer%s, %g bits", out, shape, (int)cfg.n_layers, cfg.n_layers == 1 ? "" : "s",
           (double)p.bits);
    if (p.outlier_frac > 0) printf(", %llu outliers", (unsigned long long)sum.n_outliers);
    if (p.gscale) printf(", group scales");
    if (p.rotate) printf(", rotated inputs");
    printf("\n  %d tensors, %.3f M weights, file %.1f MiB (%.3f bits/weight incl. embedding), %.1f s\n",
           (int)sum.n_tensors, (double)sum.n_params / 1e6, (double)fsize / (1024.0 * 1024.0),
           sum.n_params ? 8.0 * (double)sum.tensor_bytes / (double)sum.n_params : 0.0, sum.seconds);
    return 0;
}
