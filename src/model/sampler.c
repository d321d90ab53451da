/*
 * sampler.c — greedy / temperature / top-k / top-p sampling (see sampler.h).
 *
 * Order of operations (as in llama2.c and most runtimes): logits / temp ->
 * softmax -> keep the top_k most likely -> keep the smallest prefix whose
 * mass reaches top_p -> renormalise -> draw.
 */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

opc_sampler_params opc_sampler_defaults(void) {
    opc_sampler_params p = {0.0f, 40, 0.95f, 0};
    return p;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

opc_status opc_sampler_init(opc_sampler *s, int32_t vocab, const opc_sampler_params *p) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return opc_error(OPC_ERR_INVALID_ARG, "sampler: vocab size %d", vocab);
    s->par = p ? *p : opc_sampler_defaults();
    s->vocab = vocab;
    uint64_t x = s->par.seed;
    s->rng = splitmix64(&x); /* spread small seeds over the state space */
    if (s->rng == 0) s->rng = 0x2545f4914f6cdd1dull;
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    if (!s->cand) return opc_error(OPC_ERR_NOMEM, "sampler: cannot allocate %d candidates", vocab);
    return OPC_OK;
}

void opc_sampler_free(opc_sampler *s) {
    if (!s) return;
    free(s->cand);
    s->cand = NULL;
}

static uint64_t xorshift64s(uint64_t *st) {
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545f4914f6cdd1dull;
}

float opc_sampler_uniform(opc_sampler *s) {
    return (float)(xorshift64s(&s->rng) >> 40) * (1.0f / 16777216.0f); /* 24 random bits */
}

int32_t opc_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static int cmp_desc(const void *a, const void *b) {
    const opc_prob_index *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return x->id < y->id ? -1 : (x->id > y->id); /* stable order for equal probabilities */
}

/* Heap of k candidates whose root is the one cmp_desc puts last. */
static void sift_down(opc_prob_index *h, int32_t k, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && cmp_desc(&h[l], &h[w]) > 0) w = l;
        if (r < k && cmp_desc(&h[r], &h[w]) > 0) w = r;
        if (w == i) return;
        const opc_prob_index t = h[i];
        h[i] = h[w], h[w] = t;
        i = w;
    }
}

/* Move the k candidates that cmp_desc orders first into c[0..k), in any
 * order, in O(n log k): sorting all n (a whole vocabulary) per token for a
 * top-k of 40 took milliseconds. cmp_desc is a strict total order (ties
 * broken by id), so the set is exactly the first k of the full sort. */
static void select_top(opc_prob_index *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t i = k; i < n; i++)
        if (cmp_desc(&c[i], &c[0]) < 0) { /* c[i] sorts before the heap's last */
            c[0] = c[i];
            sift_down(c, k, 0);
        }
}

int32_t opc_sampler_sample(opc_sampler *s, const float *logits) {
    const int32_t n = s->vocab;
    if (s->par.temp <= 0.0f) return opc_argmax(logits, n);
    const float inv_t = 1.0f / s->par.temp;
    float mx = logits[0];
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        float e = expf((logits[i] - mx) * inv_t);
        s->cand[i].p = e;
        s->cand[i].id = i;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++) s->cand[i].p *= inv;

    int32_t m = n;
    const int use_k = s->par.top_k > 0 && s->par.top_k < n;
    const int use_p = s->par.top_p > 0.0f && s->par.top_p < 1.0f;
    if (use_p && !use_k && n > 1) {
        /* Tokens with p < (1 - top_p) / (n - 1) can never be inside the
         * nucleus (the rest would already exceed top_p), so drop them before
         * sorting: the sort then sees tens of candidates instead of the vocab. */
        const float cutoff = (1.0f - s->par.top_p) / (float)(n - 1);
        int32_t k = 0;
        for (int32_t i = 0; i < n; i++)
            if (s->cand[i].p >= cutoff) s->cand[k++] = s->cand[i];
        m = k;
        if (m == 0) { /* only possible for a near-uniform distribution and tiny top_p */
            for (int32_t i = 0; i < n; i++) s->cand[i].id = i;
            for (int32_t i = 0; i < n; i++) s->cand[i].p = expf((logits[i] - mx) * inv_t) * inv;
            m = n;
        }
    }
    if (use_k || use_p) {
        if (use_k && m > s->par.top_k) { /* only the top k need sorting */
            select_top(s->cand, m, s->par.top_k);
            m = s->par.top_k;
        }
        qsort(s->cand, (size_t)m, sizeof *s->cand, cmp_desc);
        double cum = 0.0, total = 0.0;
        for (int32_t i = 0; i < m; i++) total += s->cand[i].p;
        if (use_p) {
            int32_t last = m - 1;
            for (int32_t i = 0; i < m; i++) {
                cum += s->cand[i].p / total;
                if (cum >= s->par.top_p) {
                    last = i;
                    break;
                }
            }
            m = last + 1;
        }
    }
    double total = 0.0;
    for (int32_t i = 0; i < m; i++) total += s->cand[i].p;
    double r = (double)opc_sampler_uniform(s) * total, cdf = 0.0;
    for (int32_t i = 0; i < m; i++) {
        cdf += s->cand[i].p;
        if (r < cdf) return s->cand[i].id;
    }
    return s->cand[m - 1].id; /* rounding: r landed at the very top */
}
