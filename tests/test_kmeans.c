/*
 * test_kmeans.c — weighted 1-D k-means: known clusters are recovered, weights
 * move centers where they should, results match an exhaustive optimum on
 * small inputs, degenerate inputs behave, same seed gives the same answer.
 */
#include "harness.h"

#include "quant/kmeans.h"

#include <stdint.h>

static uint64_t g_rng = 12345;
static double urand(void) { /* xorshift64*, uniform in [0, 1) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) { /* Box-Muller */
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void test_known_clusters(void) {
    const float truth[4] = {-3.0f, -1.0f, 1.0f, 3.0f};
    enum { N = 600 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = truth[i % 4] + 0.05f * (float)nrand();
    opc_kmeans_ws ws;
    CHECK(opc_kmeans_ws_init(&ws, N) == OPC_OK);
    float c[4];
    opc_kmeans_opts o = {0, 3, 7};
    double cost = opc_kmeans_1d(x, NULL, N, 4, &o, &ws, c);
    CHECK(cost >= 0.0);
    for (int j = 0; j < 4; j++) CHECK_NEAR(c[j], truth[j], 0.02);
    /* cost is the within-cluster scatter: about N * 0.05^2 */
    CHECK_NEAR(cost, N * 0.0025, N * 0.0025 * 0.3);
    float co[4];
    double copt = opc_kmeans_1d_optimal(x, NULL, N, 4, &ws, co);
    CHECK(copt <= cost * (1 + 1e-9));
    for (int j = 0; j < 4; j++) CHECK_NEAR(co[j], truth[j], 0.02);
    opc_kmeans_ws_free(&ws);
}

static void test_weights(void) {
    opc_kmeans_ws ws;
    CHECK(opc_kmeans_ws_init(&ws, 16) == OPC_OK);
    /* k = 1: the center is the weighted mean */
    float x1[2] = {0.0f, 1.0f}, w1[2] = {1.0f, 3.0f}, c[4];
    double cost = opc_kmeans_1d(x1, w1, 2, 1, NULL, &ws, c);
    CHECK_NEAR(c[0], 0.75, 1e-6);
    CHECK_NEAR(cost, 1.0 * 0.75 * 0.75 + 3.0 * 0.25 * 0.25, 1e-6);
    /* k = 2 on {0, 1, 2, 10}: uniform weights put 10 alone; a heavy weight on
     * 0 pulls the left center to it. */
    float x2[4] = {0.0f, 1.0f, 2.0f, 10.0f};
    float wu[4] = {1, 1, 1, 1}, wh[4] = {100, 1, 1, 1};
    opc_kmeans_1d(x2, wu, 4, 2, NULL, &ws, c);
    CHECK_NEAR(c[0], 1.0, 1e-6);
    CHECK_NEAR(c[1], 10.0, 1e-6);
    opc_kmeans_1d(x2, wh, 4, 2, NULL, &ws, c);
    CHECK_NEAR(c[0], (0.0 * 100 + 1.0 + 2.0) / 102.0, 1e-5);
    /* a zero weight point does not move a center */
    float x3[3] = {0.0f, 1.0f, 5.0f}, w3[3] = {1, 1, 0};
    opc_kmeans_1d(x3, w3, 3, 1, NULL, &ws, c);
    CHECK_NEAR(c[0], 0.5, 1e-6);
    opc_kmeans_ws_free(&ws);
}

/* Exact weighted 1-D k-means by dynamic programming over contiguous runs of
 * the sorted values (O(k n^2)): an independent reference for small n. */
static double optimum(const float *xin, const float *win, int n, int k) {
    float x[64], w[64];
    int idx[64];
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort by value */
        for (int j = i; j > 0 && xin[idx[j]] < xin[idx[j - 1]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        x[i] = xin[idx[i]];
        w[i] = win[idx[i]];
    }
    double dp[17][65];
    for (int j = 0; j <= k; j++)
        for (int i = 0; i <= n; i++) dp[j][i] = 1e300;
    dp[0][0] = 0.0;
    for (int j = 1; j <= k; j++)
        for (int i = 1; i <= n; i++)
            for (int s = j - 1; s < i; s++) { /* last cluster = [s, i) */
                double sw = 0, sx = 0, sxx = 0;
                for (int t = s; t < i; t++) {
                    sw += w[t];
                    sx += (double)w[t] * x[t];
                    sxx += (double)w[t] * x[t] * x[t];
                }
                double cost = sw > 0 ? sxx - sx * sx / sw : 0.0;
                if (dp[j - 1][s] + cost < dp[j][i]) dp[j][i] = dp[j - 1][s] + cost;
            }
    double best = 1e300;
    for (int j = 1; j <= k; j++) best = dp[j][n] < best ? dp[j][n] : best;
    return best;
}

static void test_vs_exact(void) {
    opc_kmeans_ws ws;
    CHECK(opc_kmeans_ws_init(&ws, 64) == OPC_OK);
    int n_exact = 0, cases = 0;
    double worst = 1.0;
    for (int trial = 0; trial < 40; trial++) {
        int n = 20 + trial;
        int k = 2 + trial % 7; /* 2..8 */
        float x[64], w[64], c[16];
        for (int i = 0; i < n; i++) {
            x[i] = (float)(trial % 2 ? nrand() : nrand() * nrand()); /* gaussian and heavy-tailed */
            w[i] = (float)(0.1 + urand());
        }
        opc_kmeans_opts o = {0, 3, (uint64_t)trial};
        double got = opc_kmeans_1d(x, w, n, k, &o, &ws, c);
        double opt = optimum(x, w, n, k);
        float co[16];
        double exact = opc_kmeans_1d_optimal(x, w, n, k, &ws, co);
        CHECK_MSG(fabs(exact - opt) <= 1e-6 * (opt + 1e-9), "trial %d: optimal solver %.9g vs reference %.9g",
                  trial, exact, opt);
        for (int j = 1; j < k; j++) CHECK(co[j - 1] <= co[j]);
        /* its centers reproduce its cost under nearest assignment */
        double recost = 0.0;
        for (int i = 0; i < n; i++) {
            double d = x[i] - co[opc_kmeans_nearest(co, k, x[i])];
            recost += w[i] * d * d;
        }
        CHECK_MSG(fabs(recost - exact) <= 1e-4 * (exact + 1e-9), "trial %d: recost %g vs %g", trial, recost, exact);
        cases++;
        double ratio = opt > 0 ? got / opt : 1.0;
        if (ratio > worst) worst = ratio;
        if (ratio < 1.0 + 1e-6) n_exact++;
        CHECK_MSG(got >= opt * (1.0 - 1e-6), "trial %d: cost %g below the optimum %g", trial, got, opt);
        for (int j = 1; j < k; j++) CHECK(c[j - 1] <= c[j]);
    }
    /* Lloyd (3 starts) is a local method: report how far it is, bound it loosely */
    fprintf(stderr, "  Lloyd vs exact optimum: %d/%d exact, worst ratio %.4f\n", n_exact, cases, worst);
    CHECK(worst < 2.5);
    opc_kmeans_ws_free(&ws);
}

static void test_degenerate(void) {
    opc_kmeans_ws ws;
    CHECK(opc_kmeans_ws_init(&ws, 8) == OPC_OK);
    float x[5] = {1, 1, 1, 2, 2}, c[16];
    double cost = opc_kmeans_1d(x, NULL, 5, 4, NULL, &ws, c);
    CHECK_NEAR(cost, 0.0, 1e-12);
    CHECK(c[0] == 1.0f && c[3] == 2.0f);
    CHECK_NEAR(opc_kmeans_1d_optimal(x, NULL, 5, 4, &ws, c), 0.0, 1e-12);
    CHECK(c[0] == 1.0f && c[3] == 2.0f);
    CHECK(opc_kmeans_1d_optimal(x, NULL, 9, 2, &ws, c) < 0);
    float one = 3.5f;
    CHECK_NEAR(opc_kmeans_1d(&one, NULL, 1, 3, NULL, &ws, c), 0.0, 1e-12);
    CHECK(c[0] == 3.5f);
    /* bad arguments */
    CHECK(opc_kmeans_1d(x, NULL, 0, 2, NULL, &ws, c) < 0);
    CHECK(opc_kmeans_1d(x, NULL, 5, 0, NULL, &ws, c) < 0);
    CHECK(opc_kmeans_1d(x, NULL, 5, 17, NULL, &ws, c) < 0);
    CHECK(opc_kmeans_1d(x, NULL, 9, 2, NULL, &ws, c) < 0); /* n > capacity */
    float zw[5] = {0, 0, 0, 0, 0};
    CHECK(opc_kmeans_1d(x, zw, 5, 2, NULL, &ws, c) < 0); /* all weights zero */
    opc_kmeans_ws_free(&ws);
    opc_kmeans_ws_free(NULL);
}

static void test_deterministic(void) {
    enum { N = 1000 };
    float x[N], a[16], b[16];
    for (int i = 0; i < N; i++) x[i] = (float)nrand();
    opc_kmeans_ws ws;
    CHECK(opc_kmeans_ws_init(&ws, N) == OPC_OK);
    opc_kmeans_opts o = {0, 5, 99};
    double ca = opc_kmeans_1d(x, NULL, N, 16, &o, &ws, a);
    double cb = opc_kmeans_1d(x, NULL, N, 16, &o, &ws, b);
    CHECK(ca == cb);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* 16 centers on a gaussian: the optimal quantizer's MSE is ~0.0095 */
    CHECK(ca / N < 0.0125);
    opc_kmeans_ws_free(&ws);
}

int main(void) {
    RUN(test_known_clusters);
    RUN(test_weights);
    RUN(test_vs_exact);
    RUN(test_degenerate);
    RUN(test_deterministic);
    return harness_finish();
}
