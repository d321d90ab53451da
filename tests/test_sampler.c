/*
 * test_sampler.c — the CPU sampler (src/model/sampler.c) against a direct
 * implementation of its documented rule: softmax with temperature, keep the
 * top_k most probable (ties by lower id), keep the smallest prefix whose
 * renormalised mass reaches top_p (after dropping, for top-p alone, the
 * tokens below (1 - top_p) / (n - 1)), draw with the sampler's own uniform.
 * The sampler's shortcuts (top-k by partial selection instead of a full
 * sort, the top-p prefilter) must not change a single pick.
 */
#include "harness.h"
#include "model/sampler.h"

#include <stdint.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_ref(const void *a, const void *b) {
    const opc_prob_index *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* The rule, with a full sort of the vocabulary; u is the draw in [0, 1).
 * Probabilities are computed exactly as the sampler does (float exp of
 * float differences, double sum, float normaliser), so equal inputs give
 * equal floats and the comparison below can be exact. */
static int32_t ref_pick(const float *logits, int32_t n, const opc_sampler_params *p, float u, opc_prob_index *c) {
    const float inv_t = 1.0f / p->temp;
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((logits[i] - mx) * inv_t);
        c[i].id = i;
        sum += c[i].p;
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++) c[i].p *= inv;
    int32_t m = n;
    const int use_k = p->top_k > 0 && p->top_k < n, use_p = p->top_p > 0.0f && p->top_p < 1.0f;
    if (use_p && !use_k && n > 1) { /* the sampler's documented prefilter: p below this never reaches top_p */
        const float cutoff = (1.0f - p->top_p) / (float)(n - 1);
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if (c[i].p >= cutoff) c[k++] = c[i];
        if (k > 0) m = k; /* (k == 0: the sampler rebuilds all n, unchanged here) */
    }
    if (use_k || use_p) {
        qsort(c, (size_t)m, sizeof *c, cmp_ref);
        if (use_k) m = p->top_k;
        if (use_p) {
            double total = 0.0, cum = 0.0;
            for (int32_t i = 0; i < m; i++) total += c[i].p;
            for (int32_t i = 0; i < m; i++) {
                cum += c[i].p / total;
                if (cum >= p->top_p) {
                    m = i + 1;
                    break;
                }
            }
        }
    }
    double total = 0.0, cdf = 0.0;
    for (int32_t i = 0; i < m; i++) total += c[i].p;
    const double r = (double)u * total;
    for (int32_t i = 0; i < m; i++) {
        cdf += c[i].p;
        if (r < cdf) return c[i].id;
    }
    return c[m - 1].id;
}

/* Random logits of several shapes: smooth, peaked, many exact ties (the
 * tie order by id matters for top-k), near-flat (long nucleus). */
static void fill_logits(float *x, int32_t n, int shape) {
    for (int32_t i = 0; i < n; i++) {
        const double g = urand() + urand() + urand() - 1.5;
        switch (shape) {
        case 0: x[i] = (float)(3.0 * g); break;
        case 1: x[i] = (float)(3.0 * g) + (urand() < 0.001 ? 12.0f : 0.0f); break;
        case 2: x[i] = (float)(int)(4.0 * urand()); break;
        default: x[i] = (float)(1e-3 * g); break;
        }
    }
}

static void test_matches_rule(void) {
    const int32_t vocabs[] = {7, 1000, 32000};
    const float temps[] = {0.5f, 1.0f, 1.3f};
    const int32_t ks[] = {0, 1, 3, 40, 1000};
    const float ps[] = {1.0f, 0.95f, 0.5f};
    int mismatches = 0, picks = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++) {
        const int32_t n = vocabs[v];
        float *logits = malloc((size_t)n * sizeof *logits);
        opc_prob_index *c = malloc((size_t)n * sizeof *c);
        CHECK(logits && c);
        if (!logits || !c) return;
        for (int shape = 0; shape < 4; shape++) {
            fill_logits(logits, n, shape);
            for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
                for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
                    for (size_t pi = 0; pi < sizeof ps / sizeof *ps; pi++) {
                        opc_sampler_params par = {temps[ti], ks[ki], ps[pi], 17u + (uint64_t)(v * 1000 + ki * 10 + pi)};
                        opc_sampler s, twin;
                        if (opc_sampler_init(&s, n, &par) != OPC_OK || opc_sampler_init(&twin, n, &par) != OPC_OK) {
                            CHECK(0);
                            continue;
                        }
                        for (int rep = 0; rep < 4; rep++) {
                            const float u = opc_sampler_uniform(&twin); /* the draw the sampler will make */
                            const int32_t want = ref_pick(logits, n, &par, u, c);
                            const int32_t got = opc_sampler_sample(&s, logits);
                            mismatches += got != want, picks++;
                            if (got != want)
                                fprintf(stderr, "  n %d shape %d temp %g k %d p %g: %d vs %d\n", n, shape,
                                        (double)par.temp, par.top_k, (double)par.top_p, got, want);
                        }
                        CHECK(s.rng == twin.rng); /* one draw per pick */
                        opc_sampler_free(&s);
                        opc_sampler_free(&twin);
                    }
        }
        free(logits);
        free(c);
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK(picks == 3 * 4 * 3 * 5 * 3 * 4);
}

/* temp 0 is argmax (lowest id among equal maxima); top_k 1 is argmax at any
 * temperature; no draw ever leaves the top-k set. */
static void test_limits(void) {
    const int32_t n = 5000;
    float *logits = malloc((size_t)n * sizeof *logits);
    CHECK(logits != NULL);
    if (!logits) return;
    fill_logits(logits, n, 2); /* values 0..3: many tied maxima */
    const int32_t am = opc_argmax(logits, n);
    CHECK(logits[am] == 3.0f);
    for (int32_t i = 0; i < am; i++) CHECK(logits[i] < 3.0f);
    opc_sampler_params g = {0.0f, 40, 0.95f, 1};
    opc_sampler s;
    CHECK(opc_sampler_init(&s, n, &g) == OPC_OK);
    CHECK_EQ_INT(opc_sampler_sample(&s, logits), am);
    opc_sampler_free(&s);
    opc_sampler_params k1 = {1.5f, 1, 1.0f, 2};
    CHECK(opc_sampler_init(&s, n, &k1) == OPC_OK);
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(opc_sampler_sample(&s, logits), am);
    opc_sampler_free(&s);
    fill_logits(logits, n, 0);
    opc_sampler_params k5 = {2.0f, 5, 1.0f, 3};
    CHECK(opc_sampler_init(&s, n, &k5) == OPC_OK);
    int outside = 0;
    for (int i = 0; i < 200; i++) {
        const int32_t t = opc_sampler_sample(&s, logits);
        int above = 0; /* tokens ordered before t: must be < 5 */
        for (int32_t j = 0; j < n; j++) above += logits[j] > logits[t] || (logits[j] == logits[t] && j < t);
        outside += above >= 5;
    }
    CHECK_EQ_INT(outside, 0);
    opc_sampler_free(&s);
    free(logits);
}

int main(void) {
    RUN(test_matches_rule);
    RUN(test_limits);
    return harness_finish();
}
