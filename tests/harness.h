/*
 * harness.h — a tiny table-driven test harness.
 *
 *   static void test_something(void) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(test_something); return harness_finish(); }
 *
 * Each CHECK counts one assertion; the final line is "N passed, N failed"
 * (with ", N skipped"). Exit status: 0 all passed, 1 any failed, 77 when every
 * test skipped (ctest reports 77 as skipped).
 */
#ifndef OPC_HARNESS_H
#define OPC_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* unused: a test file whose body is compiled out (no CUDA) still includes this */
static int h_passed __attribute__((unused)), h_failed __attribute__((unused)),
    h_skipped __attribute__((unused)), h_cur_failed __attribute__((unused)),
    h_cur_skipped __attribute__((unused)), h_tests_run __attribute__((unused));

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (cond) {                                                                      \
            h_passed++;                                                                  \
        } else {                                                                         \
            h_failed++;                                                                  \
            h_cur_failed++;                                                              \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                             \
    do {                                                                                 \
        if (cond) {                                                                      \
            h_passed++;                                                                  \
        } else {                                                                         \
            h_failed++;                                                                  \
            h_cur_failed++;                                                              \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                               \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

#define CHECK_NEAR(a, b, tol)                                                            \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %.3g)",         \
              (double)(a), (double)(b), (double)(tol))

#define CHECK_STR(a, b)                                                                  \
    CHECK_MSG(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))

/* Mark the current test skipped with a reason (e.g. model not downloaded). */
#define SKIP(...)                                                                        \
    do {                                                                                 \
        fprintf(stderr, "  SKIP: ");                                                     \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fputc('\n', stderr);                                                             \
        h_cur_skipped = 1;                                                               \
        return;                                                                          \
    } while (0)

#define RUN(fn)                                                                          \
    do {                                                                                 \
        h_cur_failed = 0;                                                                \
        h_cur_skipped = 0;                                                               \
        fprintf(stderr, "[ RUN  ] %s\n", #fn);                                           \
        fn();                                                                            \
        h_tests_run++;                                                                   \
        if (h_cur_skipped) h_skipped++;                                                  \
        fprintf(stderr, "[ %s ] %s\n",                                                   \
                h_cur_failed ? "FAIL" : (h_cur_skipped ? "SKIP" : " OK "), #fn);         \
    } while (0)

static inline int harness_finish(void) {
    printf("%d passed, %d failed, %d skipped\n", h_passed, h_failed, h_skipped);
    if (h_failed) return 1;
    if (h_tests_run > 0 && h_skipped == h_tests_run) return 77;
    return 0;
}

/* Paths to test data. ../shared sits beside the checkout; models/ is filled
 * by scripts/setup.sh. */
static inline const char *harness_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", OPC_SOURCE_DIR, rel);
    return buf;
}
#define SHARED_PATH(buf, rel) harness_path((buf), sizeof(buf), "../shared/" rel)
#define MODELS_PATH(buf, rel) harness_path((buf), sizeof(buf), "models/" rel)
#define SMOLLM2_GGUF "SmolLM2-135M-Instruct.Q4_1.gguf"

/* Write bytes to a temp file under the build dir; returns the path in buf. */
static inline int harness_write_temp(char *buf, size_t cap, const char *name, const void *data,
                                     size_t n) {
    snprintf(buf, cap, "%s/tmp_%s", OPC_BINARY_DIR, name);
    FILE *f = fopen(buf, "wb");
    if (!f) return -1;
    if (n && fwrite(data, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

#endif /* OPC_HARNESS_H */
