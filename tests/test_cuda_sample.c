/*
 * test_cuda_sample.c — sampling on the GPU (src/cuda/sample_cuda.h,
 * opc_cuda_forward_sample) against the CPU sampler (src/model/sampler.c):
 *   - random logits (vocabularies of 32000, 49152 and 128256; Gaussian,
 *     peaked, near-flat and coarsely rounded logits with many exact ties;
 *     temperatures 0.5..1.5; top_k 0/1/40/1000; top_p 0.5/0.9/0.95/1): the
 *     device pick with the same PRNG state is the CPU's, and the state
 *     advances identically (the mismatch count is printed; the only allowed
 *     source is the last-bit rounding sample_cuda.h documents, asserted
 *     below 0.1 %);
 *   - stories260K: sampled decoding on the device (opc_cuda_forward_sample,
 *     chunks of 16) gives exactly the tokens of the GPU forward pass with the
 *     logits downloaded and sampled on the host, and the CPU forward pass
 *     gives the same tokens until, at most, a step where the two passes'
 *     logits (fp16 rounding on the GPU) move the draw across a candidate
 *     boundary: a near-tie, checked and printed;
 *   - argument errors, temp 0 = greedy (no draw).
 * No GPU (CI) or built without nvcc: every case skips (exit 77).
 */
#include "harness.h"

#include "core/core.h"
#include "model/forward.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

#ifdef OPC_HAVE_CUDA
#include "cuda/cuda_api.h"
#include "cuda/forward_cuda.h"
#include "cuda/sample_cuda.h"

#include <stdint.h>

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd_u64(void) {
    uint64_t x = rnd_state;
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    rnd_state = x;
    return x * 0x2545f4914f6cdd1dull;
}
static double rnd_unit(void) { return (double)((rnd_u64() >> 11) + 1) * (1.0 / 9007199254740993.0); }
static double rnd_gauss(void) { return sqrt(-2.0 * log(rnd_unit())) * cos(6.283185307179586 * rnd_unit()); }

/* Logits of one of several shapes: 0 Gaussian (sd 2); 1 peaked (sd 1.5 and
 * 20 tokens lifted by 6..10, as an LM's head); 2 near-flat (sd 0.3: top-p
 * keeps most of the vocabulary); 3 Gaussian rounded to 0.25 (exact ties at
 * every cut); 4 a few copies of the maximum (ties at the top). */
static void make_logits(float *lg, int n, int shape) {
    for (int i = 0; i < n; i++) {
        double g = rnd_gauss();
        switch (shape) {
        case 1: lg[i] = (float)(1.5 * g); break;
        case 2: lg[i] = (float)(0.3 * g); break;
        case 3: lg[i] = (float)(floor(8.0 * g) * 0.25); break;
        default: lg[i] = (float)(2.0 * g); break;
        }
    }
    if (shape == 1)
        for (int j = 0; j < 20; j++) lg[rnd_u64() % (uint64_t)n] += (float)(6.0 + 4.0 * rnd_unit());
    if (shape == 4) {
        int best = opc_argmax(lg, n);
        for (int j = 0; j < 3; j++) lg[rnd_u64() % (uint64_t)n] = lg[best] + 1.0f;
    }
}

/* Device vs CPU sampler on random logits, table-driven. */
static void test_random_logits(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    static const int32_t vocabs[] = {32000, 49152, 128256};
    static const float temps[] = {0.5f, 0.8f, 1.0f, 1.5f};
    static const int32_t ks[] = {0, 1, 40, 1000};
    static const float ps[] = {0.5f, 0.9f, 0.95f, 1.0f};
    long picks = 0, mism = 0, rng_mism = 0, distinct_ok = 0, greedy_bad = 0;
    /* OPC_TEST_QUICK=1 (compute-sanitizer): the smallest vocabulary, one
     * temperature, two logit shapes (Gaussian, ties), one draw each */
    const int quick = getenv("OPC_TEST_QUICK") != NULL;
    const int nv = quick ? 1 : 3, nshape = quick ? 2 : 5, nrep = quick ? 1 : 2;
    for (int v = 0; v < nv; v++) {
        const int32_t n = vocabs[v];
        float *lg = malloc((size_t)n * sizeof *lg);
        opc_cuda_sampler *ds = NULL;
        opc_status st = opc_cuda_sampler_init(&ds, n);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (!lg || !ds) {
            free(lg);
            opc_cuda_sampler_free(ds);
            return;
        }
        for (int ti = quick; ti < (quick ? 2 : 4); ti++)
            for (int ki = 0; ki < 4; ki++)
                for (int pi = 0; pi < 4; pi++) {
                    opc_sampler_params par = {temps[ti], ks[ki], ps[pi], (uint64_t)(1000 * v + 64 * ti + 8 * ki + pi)};
                    opc_sampler cs;
                    if (opc_sampler_init(&cs, n, &par) != OPC_OK) {
                        CHECK_MSG(0, "%s", opc_last_error());
                        continue;
                    }
                    /* 5 logit shapes x 2 draws each: the second draw reuses the
                     * logits with the advanced state */
                    int32_t first_tok = -1, varied = 0;
                    for (int si = 0; si < nshape; si++) {
                        make_logits(lg, n, quick ? 3 * si : si);
                        for (int rep = 0; rep < nrep; rep++) {
                            uint64_t drng = cs.rng;
                            int32_t dtok = -1;
                            const int32_t ctok = opc_sampler_sample(&cs, lg);
                            st = opc_cuda_sample_host(ds, lg, &par, &drng, &dtok);
                            if (st != OPC_OK) {
                                CHECK_MSG(0, "%s", opc_last_error());
                                break;
                            }
                            picks++;
                            if (dtok != ctok) {
                                mism++;
                                fprintf(stderr, "  mismatch: vocab %d T %.2f k %d p %.2f shape %d: cpu %d gpu %d\n",
                                        n, (double)par.temp, par.top_k, (double)par.top_p, quick ? 3 * si : si, ctok,
                                        dtok);
                            }
                            rng_mism += drng != cs.rng;
                            if (first_tok < 0) first_tok = ctok;
                            varied |= ctok != first_tok;
                        }
                    }
                    distinct_ok += varied || ks[ki] == 1;
                    opc_sampler_free(&cs);
                }
        /* temp 0: the argmax, lowest id on ties, and no draw */
        for (int shape = 0; shape < 5; shape++) {
            make_logits(lg, n, shape);
            opc_sampler_params g = {0.0f, 40, 0.9f, 1};
            uint64_t r = 12345;
            int32_t t = -1;
            if (opc_cuda_sample_host(ds, lg, &g, &r, &t) != OPC_OK || t != opc_argmax(lg, n) || r != 12345)
                greedy_bad++;
        }
        opc_cuda_sampler_free(ds);
        free(lg);
    }
    fprintf(stderr, "  device vs CPU sampler: %ld picks, %ld token mismatches (%.3f %%), %ld PRNG state mismatches\n",
            picks, mism, picks ? 100.0 * (double)mism / (double)picks : 0.0, rng_mism);
    CHECK_EQ_INT(picks, nv * (quick ? 16 : 64) * nshape * nrep);
    CHECK_MSG(mism * 1000 <= picks, "%ld of %ld picks differ", mism, picks);
    CHECK_EQ_INT(rng_mism, 0);
    CHECK_EQ_INT(greedy_bad, 0);
    /* the draws are not degenerate: every configuration but top_k 1 saw more than one token */
    if (!quick) CHECK_EQ_INT(distinct_ok, nv * 64);
}

static void test_args(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    opc_cuda_sampler *ds = NULL;
    CHECK(opc_cuda_sampler_init(&ds, 0) == OPC_ERR_INVALID_ARG);
    CHECK(ds == NULL);
    CHECK(opc_cuda_sampler_init(&ds, 100) == OPC_OK);
    float lg[100] = {0};
    opc_sampler_params p = {1.0f, 0, 1.0f, 0};
    uint64_t zero = 0;
    int32_t t;
    CHECK(opc_cuda_sample_host(ds, lg, &p, &zero, &t) == OPC_ERR_INVALID_ARG); /* state 0 is never valid */
    CHECK(opc_cuda_sample_host(ds, lg, NULL, &zero, &t) == OPC_ERR_INVALID_ARG);
    CHECK(opc_cuda_sampler_bytes(ds) >= 100 * 12);
    opc_cuda_sampler_free(ds);
    opc_cuda_sampler_free(NULL);
}

/* --------------------------------------------------------- stories260K -- */

static opc_model_desc *open_stories(void) {
    static const char *const rels[] = {"gpu_carry/stories260K/stories260K.bin",
                                       "../shared/models/stories260K/stories260K.bin"};
    char p[1024];
    for (int i = 0; i < 2; i++) {
        harness_path(p, sizeof p, rels[i]);
        if (!opc_file_exists(p)) continue;
        opc_model_desc *d = NULL;
        opc_status st = opc_model_desc_open(p, &d);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        return d;
    }
    return NULL;
}

typedef struct qcand {
    double p;
    int32_t id;
} qcand;

static int qcand_desc(const void *a, const void *b) {
    const qcand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The sampler's kept distribution in double (the same steps as sampler.c,
 * without its float rounding): q[id] = probability of the draw choosing id,
 * and order[] the candidates in draw order; returns their count. */
static int kept_dist(const float *lg, int n, const opc_sampler_params *par, double *q, int32_t *order) {
    qcand *c = malloc((size_t)n * sizeof *c);
    if (!c) return 0;
    float mx = lg[0];
    for (int i = 1; i < n; i++) mx = lg[i] > mx ? lg[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].p = exp(((double)lg[i] - mx) / par->temp);
        c[i].id = i;
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++) c[i].p /= sum;
    qsort(c, (size_t)n, sizeof *c, qcand_desc);
    int m = par->top_k > 0 && par->top_k < n ? par->top_k : n;
    double tot = 0.0;
    for (int i = 0; i < m; i++) tot += c[i].p;
    if (par->top_p > 0.0f && par->top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < m; i++)
            if ((cum += c[i].p / tot) >= par->top_p) {
                m = i + 1;
                break;
            }
    }
    tot = 0.0;
    for (int i = 0; i < m; i++) tot += c[i].p;
    memset(q, 0, (size_t)n * sizeof *q);
    for (int i = 0; i < m; i++) q[c[i].id] = c[i].p / tot, order[i] = c[i].id;
    free(c);
    return m;
}

/* Sampled decoding on stories260K: device picks == host picks of the same
 * GPU logits; the CPU forward pass agrees up to a logits near-tie. */
static void test_stories_sampled(void) {
    if (opc_cuda_device_count() == 0) SKIP("no CUDA device");
    if (getenv("OPC_TEST_QUICK")) SKIP("OPC_TEST_QUICK set");
    opc_model_desc *d = open_stories();
    if (!d) SKIP("stories260K not found");
    enum { N = 120, CTX = 256, V = 512 };
    opc_tokenizer *tok = NULL;
    CHECK(opc_tokenizer_init(&tok, &d->vocab) == OPC_OK);
    int32_t prompt[32];
    size_t np = 0;
    opc_encode_opts eo = {1, 0};
    CHECK(tok && opc_tokenizer_encode(tok, "Once upon a time", 16, &eo, prompt, 32, &np) == OPC_OK);
    CHECK_EQ_INT(d->cfg.vocab_size, V);
    if (d->cfg.vocab_size != V) np = 0; /* the buffers below assume V */
    opc_cuda_forward *f = NULL;
    opc_forward *cf = NULL;
    opc_status st = opc_cuda_forward_init(&f, d, CTX, 16);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    st = opc_forward_init(&cf, d, CTX, 16, 1);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    static const opc_sampler_params cfgs[] = {{0.8f, 40, 0.95f, 7}, {1.0f, 0, 0.9f, 11}, {0.8f, 0, 1.0f, 3}};
    for (int ci = 0; f && cf && np > 0 && ci < 3; ci++) {
        const opc_sampler_params *par = &cfgs[ci];
        static float lg_gpu[N + 1][V], lg_cpu[N + 1][V];
        static uint64_t rng_at[N + 1];
        int32_t host[N + 1], dev[N + 1], cpu[N + 1];
        opc_sampler s1, s2, s3;
        CHECK(opc_sampler_init(&s1, V, par) == OPC_OK && opc_sampler_init(&s2, V, par) == OPC_OK &&
              opc_sampler_init(&s3, V, par) == OPC_OK);
        /* reference: GPU logits downloaded each step, host sampler */
        int pos = (int)np;
        st = opc_cuda_forward_run(f, prompt, (int32_t)np, 0, lg_gpu[0], OPC_LOGITS_LAST);
        for (int i = 0; st == OPC_OK && i <= N; i++) {
            rng_at[i] = s1.rng;
            host[i] = opc_sampler_sample(&s1, lg_gpu[i]);
            if (i < N) st = opc_cuda_forward_run(f, &host[i], 1, pos + i, lg_gpu[i + 1], OPC_LOGITS_LAST);
        }
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        /* device: the same prefill, the first pick on the host, then chunks */
        float lg0[V];
        st = opc_cuda_forward_run(f, prompt, (int32_t)np, 0, lg0, OPC_LOGITS_LAST);
        dev[0] = opc_sampler_sample(&s2, lg0);
        for (int i = 0; st == OPC_OK && i < N; i += 16) {
            const int c = N - i < 16 ? N - i : 16;
            st = opc_cuda_forward_sample(f, dev[i], pos + i, c, par, &s2.rng, dev + i + 1);
        }
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        int same = 0;
        while (same <= N && dev[same] == host[same]) same++;
        fprintf(stderr, "  T %.1f k %d p %.2f: device picks == host picks of GPU logits for %d of %d tokens\n",
                (double)par->temp, par->top_k, (double)par->top_p, same, N + 1);
        CHECK_EQ_INT(same, N + 1);
        CHECK(s2.rng == s1.rng);
        /* CPU forward pass + CPU sampler */
        int diverge = -1;
        st = opc_forward_run(cf, prompt, (int32_t)np, 0, lg_cpu[0], OPC_LOGITS_LAST);
        for (int i = 0; st == OPC_OK && i <= N; i++) {
            cpu[i] = opc_sampler_sample(&s3, lg_cpu[i]);
            if (cpu[i] != host[i]) {
                diverge = i;
                break;
            }
            if (i < N) st = opc_forward_run(cf, &cpu[i], 1, pos + i, lg_cpu[i + 1], OPC_LOGITS_LAST);
        }
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (diverge < 0) {
            fprintf(stderr, "  CPU forward + sampler: the same %d tokens\n", N + 1);
        } else {
            /* a near-tie: the draw u lies within the two kept distributions'
             * L1 distance of an edge of the CPU pick's CDF interval */
            static double qc[V], qg[V];
            int32_t oc[V], og[V];
            const int mc = kept_dist(lg_cpu[diverge], V, par, qc, oc);
            kept_dist(lg_gpu[diverge], V, par, qg, og);
            opc_sampler tmp = s1;
            tmp.rng = rng_at[diverge];
            const double u = opc_sampler_uniform(&tmp);
            double lo = 0.0, hi = 0.0, l1 = 0.0;
            for (int i = 0; i < mc; i++) {
                hi = lo + qc[oc[i]];
                if (oc[i] == cpu[diverge]) break;
                lo = hi;
            }
            for (int i = 0; i < V; i++) l1 += fabs(qc[i] - qg[i]);
            const double margin = fmin(u - lo, hi - u);
            fprintf(stderr,
                    "  CPU forward + sampler: same tokens until step %d (cpu %d, gpu %d): u %.6f, CPU interval "
                    "[%.6f, %.6f), margin %.2e <= L1 distance of the two kept distributions %.2e\n",
                    diverge, cpu[diverge], host[diverge], u, lo, hi, margin, l1);
            CHECK_MSG(margin <= l1 + 1e-6, "divergence at step %d is not a near-tie", diverge);
        }
        opc_sampler_free(&s1);
        opc_sampler_free(&s2);
        opc_sampler_free(&s3);
    }
    if (f) {
        /* errors; temp 0 = the greedy path, PRNG untouched */
        opc_sampler_params p = {0.8f, 40, 0.95f, 0};
        uint64_t r = 99;
        int32_t out[4], gout[4];
        CHECK(opc_cuda_forward_sample(f, 1, 0, 2, NULL, &r, out) == OPC_ERR_INVALID_ARG);
        CHECK(opc_cuda_forward_sample(f, 1, CTX - 1, 2, &p, &r, out) == OPC_ERR_INVALID_ARG);
        CHECK(opc_cuda_forward_sample(f, V, 0, 1, &p, &r, out) == OPC_ERR_INVALID_ARG);
        p.temp = 0.0f;
        CHECK(opc_cuda_forward_run(f, prompt, (int32_t)np, 0, NULL, OPC_LOGITS_NONE) == OPC_OK);
        CHECK(opc_cuda_forward_sample(f, prompt[np - 1], (int32_t)np - 1, 4, &p, &r, out) == OPC_OK);
        CHECK(r == 99);
        CHECK(opc_cuda_forward_run(f, prompt, (int32_t)np, 0, NULL, OPC_LOGITS_NONE) == OPC_OK);
        CHECK(opc_cuda_forward_greedy(f, prompt[np - 1], (int32_t)np - 1, 4, gout) == OPC_OK);
        CHECK(!memcmp(out, gout, sizeof out));
    }
    opc_forward_free(cf);
    opc_cuda_forward_free(f);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
}

int main(void) {
    RUN(test_args);
    RUN(test_random_logits);
    RUN(test_stories_sampled);
    return harness_finish();
}

#else /* built without nvcc */

static void test_no_cuda(void) { SKIP("built without CUDA (no nvcc)"); }

int main(void) {
    RUN(test_no_cuda);
    return harness_finish(); /* 77: skipped */
}

#endif
