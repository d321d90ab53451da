/*
 * kmeans.c — weighted 1-D k-means by sorting + prefix sums (see kmeans.h).
 */
#include "kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

opc_status opc_kmeans_ws_init(opc_kmeans_ws *ws, int64_t cap) {
    memset(ws, 0, sizeof *ws);
    if (cap < 1) return opc_error(OPC_ERR_INVALID_ARG, "k-means workspace for %lld values", (long long)cap);
    ws->cap = cap;
    ws->xs = malloc((size_t)cap * sizeof *ws->xs);
    ws->ws = malloc((size_t)cap * sizeof *ws->ws);
    ws->pw = malloc((size_t)(cap + 1) * sizeof *ws->pw);
    ws->px = malloc((size_t)(cap + 1) * sizeof *ws->px);
    ws->pxx = malloc((size_t)(cap + 1) * sizeof *ws->pxx);
    ws->order = malloc((size_t)cap * sizeof *ws->order);
    ws->order2 = malloc((size_t)cap * sizeof *ws->order2);
    ws->dist = malloc((size_t)cap * sizeof *ws->dist);
    ws->dp_prev = malloc((size_t)(cap + 1) * sizeof *ws->dp_prev);
    ws->dp_cur = malloc((size_t)(cap + 1) * sizeof *ws->dp_cur);
    ws->dp_arg = malloc((size_t)OPC_KMEANS_MAX_K * (size_t)(cap + 1) * sizeof *ws->dp_arg);
    if (!ws->xs || !ws->ws || !ws->pw || !ws->px || !ws->pxx || !ws->order || !ws->order2 || !ws->dist || !ws->dp_prev ||
        !ws->dp_cur || !ws->dp_arg) {
        opc_kmeans_ws_free(ws);
        return opc_error(OPC_ERR_NOMEM, "cannot allocate a k-means workspace for %lld values", (long long)cap);
    }
    return OPC_OK;
}

void opc_kmeans_ws_free(opc_kmeans_ws *ws) {
    if (!ws) return;
    free(ws->xs);
    free(ws->ws);
    free(ws->pw);
    free(ws->px);
    free(ws->pxx);
    free(ws->order);
    free(ws->dist);
    free(ws->order2);
    free(ws->dp_prev);
    free(ws->dp_cur);
    free(ws->dp_arg);
    memset(ws, 0, sizeof *ws);
}

/* splitmix64: a tiny seeded generator, so results never depend on libc rand */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* Sort (x, w) pairs by x: insertion sort on short runs is not enough for
 * rows of thousands, so a non-recursive merge sort of indices by value. Ties
 * keep input order, so the result is deterministic. */
static void sort_pairs(const float *x, const float *w, int64_t n, opc_kmeans_ws *ws) {
    int64_t *a = ws->order;
    int64_t *b = ws->order2; /* merge buffer */
    for (int64_t i = 0; i < n; i++) a[i] = i;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) b[o++] = x[a[j]] < x[a[i]] ? a[j++] : a[i++];
            while (i < mid) b[o++] = a[i++];
            while (j < hi) b[o++] = a[j++];
        }
        memcpy(a, b, (size_t)n * sizeof *a);
    }
    for (int64_t i = 0; i < n; i++) {
        ws->xs[i] = x[a[i]];
        ws->ws[i] = w ? w[a[i]] : 1.0f;
    }
}

/* first index i in [0, n) with xs[i] >= v (n if none) */
static int64_t lower_bound(const float *xs, int64_t n, double v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if ((double)xs[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static double range_cost(const opc_kmeans_ws *ws, int64_t a, int64_t b, double c) {
    /* sum w (x - c)^2 = Sxx - 2 c Sx + c^2 Sw */
    double sw = ws->pw[b] - ws->pw[a], sx = ws->px[b] - ws->px[a], sxx = ws->pxx[b] - ws->pxx[a];
    double v = sxx - 2.0 * c * sx + c * c * sw;
    return v > 0.0 ? v : 0.0;
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Lloyd from sorted centers c[k]; returns the final cost, c updated (sorted). */
static double lloyd(const opc_kmeans_ws *ws, int64_t n, int32_t k, int32_t max_iter, double *c) {
    int64_t bnd[OPC_KMEANS_MAX_K + 1], prev[OPC_KMEANS_MAX_K + 1];
    for (int32_t j = 0; j <= k; j++) prev[j] = -1;
    int reseeds = 0;
    for (int32_t it = 0; it < max_iter; it++) {
        bnd[0] = 0;
        bnd[k] = n;
        for (int32_t j = 1; j < k; j++) {
            int64_t b = lower_bound(ws->xs, n, 0.5 * (c[j - 1] + c[j]));
            bnd[j] = b < bnd[j - 1] ? bnd[j - 1] : b;
        }
        int same = 1;
        for (int32_t j = 0; j <= k; j++) same &= bnd[j] == prev[j];
        int empty = -1;
        for (int32_t j = 0; j < k; j++) {
            double sw = ws->pw[bnd[j + 1]] - ws->pw[bnd[j]];
            if (sw > 0.0)
                c[j] = (ws->px[bnd[j + 1]] - ws->px[bnd[j]]) / sw;
            else if (empty < 0)
                empty = j;
        }
        if (same) {
            /* Converged. An empty cluster wastes a codebook entry: move it to
             * the point farthest (weighted) from its center and go on. Bounded
             * so data with fewer distinct values than k terminates. */
            if (empty < 0 || reseeds >= k) break;
            double worst = -1.0;
            int64_t wi = -1;
            for (int32_t j = 0; j < k; j++)
                for (int64_t i = bnd[j]; i < bnd[j + 1]; i++) {
                    double d = (double)ws->xs[i] - c[j];
                    d = d * d * (double)ws->ws[i];
                    if (d > worst) {
                        worst = d;
                        wi = i;
                    }
                }
            if (wi < 0 || worst <= 0.0) break;
            c[empty] = ws->xs[wi];
            qsort(c, (size_t)k, sizeof *c, cmp_double);
            reseeds++;
            for (int32_t j = 0; j <= k; j++) prev[j] = -1;
            continue;
        }
        memcpy(prev, bnd, sizeof(int64_t) * (size_t)(k + 1));
    }
    /* cost with the final centers and their optimal (midpoint) boundaries */
    bnd[0] = 0;
    bnd[k] = n;
    for (int32_t j = 1; j < k; j++) {
        int64_t b = lower_bound(ws->xs, n, 0.5 * (c[j - 1] + c[j]));
        bnd[j] = b < bnd[j - 1] ? bnd[j - 1] : b;
    }
    double cost = 0.0;
    for (int32_t j = 0; j < k; j++) cost += range_cost(ws, bnd[j], bnd[j + 1], c[j]);
    return cost;
}

/* Weighted quantile start: center j at the (j + 0.5) / k weighted quantile. */
static void init_quantile(const opc_kmeans_ws *ws, int64_t n, int32_t k, double *c) {
    double total = ws->pw[n];
    for (int32_t j = 0; j < k; j++) {
        double target = total * ((double)j + 0.5) / (double)k;
        int64_t lo = 0, hi = n - 1;
        while (lo < hi) { /* first i with pw[i + 1] >= target */
            int64_t mid = lo + (hi - lo) / 2;
            if (ws->pw[mid + 1] < target)
                lo = mid + 1;
            else
                hi = mid;
        }
        c[j] = ws->xs[lo];
    }
}

/* k-means++: first center by weight, then each next one with probability
 * proportional to w * (distance to the nearest chosen center)^2. O(n k). */
static void init_pp(opc_kmeans_ws *ws, int64_t n, int32_t k, uint64_t *rng, double *c) {
    double total = ws->pw[n];
    double u = rng_unit(rng) * total;
    int64_t i0 = 0;
    while (i0 < n - 1 && ws->pw[i0 + 1] < u) i0++;
    c[0] = ws->xs[i0];
    double *dist = ws->dist; /* (n) weighted squared distance to the nearest chosen center */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ws->xs[i] - c[0];
        dist[i] = d * d * (double)ws->ws[i];
        sum += dist[i];
    }
    for (int32_t j = 1; j < k; j++) {
        int64_t pick = n - 1;
        if (sum > 0.0) {
            double t = rng_unit(rng) * sum, acc = 0.0;
            for (int64_t i = 0; i < n; i++) {
                acc += dist[i];
                if (acc >= t && dist[i] > 0.0) {
                    pick = i;
                    break;
                }
            }
        }
        c[j] = ws->xs[pick];
        sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)ws->xs[i] - c[j];
            d = d * d * (double)ws->ws[i];
            if (d < dist[i]) dist[i] = d;
            sum += dist[i];
        }
    }
    qsort(c, (size_t)k, sizeof *c, cmp_double);
}

/* Sort, then prefix sums of w, w*x, w*x^2 of the values shifted by their
 * weighted mean (shifting keeps the x^2 sums small, so the run costs
 * sxx - sx^2/sw lose less to cancellation). Returns the shift. */
static double prepare(const float *x, const float *w, int64_t n, opc_kmeans_ws *ws) {
    sort_pairs(x, w, n, ws);
    double sw = 0.0, sx = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double wi = ws->ws[i] > 0.0f ? (double)ws->ws[i] : 0.0;
        sw += wi;
        sx += wi * (double)ws->xs[i];
    }
    double mu = sw > 0.0 ? sx / sw : 0.0;
    ws->pw[0] = ws->px[0] = ws->pxx[0] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        ws->xs[i] = (float)((double)ws->xs[i] - mu); /* every solver works in shifted coordinates */
        double wi = ws->ws[i] > 0.0f ? (double)ws->ws[i] : 0.0, xi = (double)ws->xs[i];
        ws->pw[i + 1] = ws->pw[i] + wi;
        ws->px[i + 1] = ws->px[i] + wi * xi;
        ws->pxx[i + 1] = ws->pxx[i] + wi * xi * xi;
    }
    return mu;
}

double opc_kmeans_1d(const float *x, const float *w, int64_t n, int32_t k,
                     const opc_kmeans_opts *opts, opc_kmeans_ws *ws, float *centers) {
    if (n < 1 || k < 1 || k > OPC_KMEANS_MAX_K || !ws || n > ws->cap) return -1.0;
    int32_t max_iter = opts && opts->max_iter > 0 ? opts->max_iter : 100;
    int32_t n_init = opts && opts->n_init > 0 ? opts->n_init : 3;
    uint64_t rng = (opts ? opts->seed : 0) ^ 0x6B6D65616E73ull; /* "kmeans" */
    double mu = prepare(x, w, n, ws);
    if (!(ws->pw[n] > 0.0)) return -1.0;
    double best_cost = INFINITY, best[OPC_KMEANS_MAX_K], c[OPC_KMEANS_MAX_K];
    for (int32_t s = 0; s < n_init; s++) {
        if (s == 0)
            init_quantile(ws, n, k, c);
        else
            init_pp(ws, n, k, &rng, c);
        double cost = lloyd(ws, n, k, max_iter, c);
        if (cost < best_cost) {
            best_cost = cost;
            memcpy(best, c, sizeof(double) * (size_t)k);
        }
    }
    for (int32_t j = 0; j < k; j++) centers[j] = (float)(best[j] + mu);
    return best_cost;
}

/* dp_cur[i] for i in [lo, hi] given that the argmin lies in [optlo, opthi]. */
static void dp_solve(const opc_kmeans_ws *ws, const double *prev, double *cur, int32_t *arg, int64_t lo,
                     int64_t hi, int64_t optlo, int64_t opthi) {
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t smax = opthi < mid - 1 ? opthi : mid - 1;
        double best = INFINITY;
        int64_t bs = optlo;
        for (int64_t s = optlo; s <= smax; s++) {
            double sw = ws->pw[mid] - ws->pw[s], sx = ws->px[mid] - ws->px[s];
            double cost = ws->pxx[mid] - ws->pxx[s] - (sw > 0.0 ? sx * sx / sw : 0.0);
            double v = prev[s] + (cost > 0.0 ? cost : 0.0);
            if (v < best) {
                best = v;
                bs = s;
            }
        }
        cur[mid] = best;
        arg[mid] = (int32_t)bs;
        /* left half recursively (smaller), right half by looping */
        if (mid - 1 >= lo) dp_solve(ws, prev, cur, arg, lo, mid - 1, optlo, bs);
        lo = mid + 1;
        optlo = bs;
    }
}

double opc_kmeans_1d_optimal(const float *x, const float *w, int64_t n, int32_t k, opc_kmeans_ws *ws,
                             float *centers) {
    if (n < 1 || k < 1 || k > OPC_KMEANS_MAX_K || !ws || n > ws->cap) return -1.0;
    double mu = prepare(x, w, n, ws);
    if (!(ws->pw[n] > 0.0)) return -1.0;
    int32_t kk = (int64_t)k > n ? (int32_t)n : k; /* more centers than points: the rest repeat */
    double *prev = ws->dp_prev, *cur = ws->dp_cur;
    /* one cluster: the run [0, i) */
    for (int64_t i = 0; i <= n; i++) {
        double sw = ws->pw[i], sx = ws->px[i];
        double c = ws->pxx[i] - (sw > 0.0 ? sx * sx / sw : 0.0);
        prev[i] = c > 0.0 ? c : 0.0;
        ws->dp_arg[i] = 0;
    }
    for (int32_t j = 2; j <= kk; j++) {
        int32_t *arg = ws->dp_arg + (size_t)(j - 1) * (size_t)(n + 1);
        for (int64_t i = 0; i < j; i++) cur[i] = INFINITY; /* fewer points than clusters */
        dp_solve(ws, prev, cur, arg, j, n, j - 1, n - 1);
        double *t = prev;
        prev = cur;
        cur = t;
    }
    double cost = prev[n];
    /* backtrack the runs, last cluster first */
    int64_t i = n;
    for (int32_t j = kk; j >= 1; j--) {
        int64_t s = j == 1 ? 0 : ws->dp_arg[(size_t)(j - 1) * (size_t)(n + 1) + (size_t)i];
        double sw = ws->pw[i] - ws->pw[s];
        double c = sw > 0.0 ? (ws->px[i] - ws->px[s]) / sw : (double)ws->xs[s];
        centers[j - 1] = (float)(c + mu);
        i = s;
    }
    for (int32_t j = kk; j < k; j++) centers[j] = centers[kk - 1];
    return cost > 0.0 ? cost : 0.0;
}
