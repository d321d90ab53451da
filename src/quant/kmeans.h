/*
 * kmeans.h — weighted 1-D k-means, the codebook learner of the quantizer.
 *
 * In one dimension the clusters of a k-means solution are contiguous runs of
 * the sorted values, so after one sort every Lloyd step is cheap: the
 * boundaries between clusters are the midpoints between sorted centers
 * (found by binary search) and each cluster's weighted mean and cost come
 * from prefix sums of w, w*x and w*x^2 in O(1). A Lloyd iteration is
 * O(k log n) instead of O(n k), so several initialisations per row are
 * affordable: a weighted-quantile start plus seeded k-means++ starts; the
 * lowest weighted squared error wins.
 *
 * No allocation per call: callers keep one opc_kmeans_ws per thread.
 */
#ifndef OPC_KMEANS_H
#define OPC_KMEANS_H

#include "../core/core.h"

#include <stdint.h>

#define OPC_KMEANS_MAX_K 16

typedef struct opc_kmeans_ws {
    int64_t cap;  /* largest n this workspace serves */
    float *xs;    /* (cap) values, sorted */
    float *ws;    /* (cap) their weights */
    double *pw, *px, *pxx; /* (cap + 1) prefix sums of w, w*x, w*x^2 */
    int64_t *order, *order2; /* (cap) sort permutation + merge scratch */
    double *dist;   /* (cap) k-means++ distances */
    double *dp_prev, *dp_cur; /* (cap + 1) dynamic-programming rows (optimal solver) */
    int32_t *dp_arg;          /* (OPC_KMEANS_MAX_K, cap + 1) argmins for the backtrack */
} opc_kmeans_ws;

opc_status opc_kmeans_ws_init(opc_kmeans_ws *ws, int64_t cap);
void opc_kmeans_ws_free(opc_kmeans_ws *ws); /* NULL-safe */

typedef struct opc_kmeans_opts {
    int32_t max_iter; /* Lloyd iterations per start (stops earlier at convergence); <= 0: 100 */
    int32_t n_init;   /* starts: 1 = quantile only, n > 1 adds n-1 k-means++ starts; <= 0: 3 */
    uint64_t seed;    /* k-means++ seed: same seed, same result */
} opc_kmeans_opts;

/* Cluster x[0..n) with weights w (NULL: all 1; weights must be >= 0 and not
 * all 0) into k <= OPC_KMEANS_MAX_K centers, written ascending to centers[k].
 * When x has fewer than k distinct values the surplus centers repeat values.
 * Returns the weighted sum of squared distances to the nearest center
 * (>= 0), or a negative value on bad arguments (n < 1, k out of range,
 * n > ws->cap). */
double opc_kmeans_1d(const float *x, const float *w, int64_t n, int32_t k,
                     const opc_kmeans_opts *opts, opc_kmeans_ws *ws, float *centers);

/* The exact optimum of the same problem (global minimum of the weighted
 * squared error), by dynamic programming over contiguous runs of the sorted
 * values: dp[j][i] = min_s dp[j-1][s] + cost(s, i), with the argmin monotone
 * in i, so divide and conquer gives O(k n log n) with O(1) run costs from the
 * prefix sums. Lloyd can stop in a local optimum (tests/test_kmeans.c
 * measures how often); this cannot. Same arguments and result as
 * opc_kmeans_1d (opts is ignored). */
double opc_kmeans_1d_optimal(const float *x, const float *w, int64_t n, int32_t k, opc_kmeans_ws *ws,
                             float *centers);

/* Index of the center nearest to v among sorted centers[0..k) (ties: lower). */
static inline int32_t opc_kmeans_nearest(const float *centers, int32_t k, float v) {
    int32_t best = 0;
    float bd = (v - centers[0]) * (v - centers[0]);
    for (int32_t j = 1; j < k; j++) {
        float d = (v - centers[j]) * (v - centers[j]);
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    return best;
}

#endif /* OPC_KMEANS_H */
