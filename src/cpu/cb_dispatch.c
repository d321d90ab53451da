/*
 * cb_dispatch.c — run-time choice of the codebook matmul kernel and OpenMP
 * threading over rows.
 *
 * Threads split the rows into contiguous, even-sized ranges (each a multiple
 * of 2 so the 2-row kernels stay paired): rows are independent, every thread
 * streams its own slice of the packed matrix, and no reduction is needed.
 */
#include "cpu.h"

#include "../core/cpu_features.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_impl_names[OPC_CB_IMPL_COUNT] = {"auto", "scalar", "avx2", "avx512",
                                                            "avx512-i8"};

const char *opc_cb_impl_name(opc_cb_impl impl) {
    return (unsigned)impl < OPC_CB_IMPL_COUNT ? g_impl_names[impl] : "unknown";
}

opc_cb_impl opc_cb_impl_parse(const char *name) {
    for (int i = 0; i < OPC_CB_IMPL_COUNT; i++)
        if (name && !strcmp(name, g_impl_names[i])) return (opc_cb_impl)i;
    return OPC_CB_IMPL_COUNT;
}

bool opc_cb_impl_available(opc_cb_impl impl) {
    switch (impl) {
    case OPC_CB_IMPL_AUTO:
    case OPC_CB_IMPL_SCALAR: return true;
    case OPC_CB_IMPL_AVX2: return opc_cpu_has_avx2();
    case OPC_CB_IMPL_AVX512: return opc_cpu_has_avx512();
    case OPC_CB_IMPL_AVX512_I8: return opc_cpu_has_avx512() && opc_cpu_get_features()->avx512vnni;
    default: return false;
    }
}

static opc_cb_impl g_best = OPC_CB_IMPL_SCALAR;
static pthread_once_t g_best_once = PTHREAD_ONCE_INIT;
static volatile bool g_int8; /* opted in to OPC_CB_IMPL_AVX512_I8 */

static void pick_best(void) {
    opc_cb_impl best = OPC_CB_IMPL_SCALAR;
    if (opc_cb_impl_available(OPC_CB_IMPL_AVX2)) best = OPC_CB_IMPL_AVX2;
    if (opc_cb_impl_available(OPC_CB_IMPL_AVX512)) best = OPC_CB_IMPL_AVX512;
    /* OPC_CB_KERNEL=scalar|avx2 narrows the choice for A/B runs; a wider or
     * unknown name is ignored (never run an ISA the CPU lacks). */
    const char *env = getenv("OPC_CB_KERNEL");
    opc_cb_impl want = opc_cb_impl_parse(env);
    if (want != OPC_CB_IMPL_COUNT && want != OPC_CB_IMPL_AUTO && want < best &&
        opc_cb_impl_available(want))
        best = want;
    if (want == OPC_CB_IMPL_AVX512_I8 && opc_cb_impl_available(want)) g_int8 = true;
    g_best = best;
}

opc_cb_impl opc_cb_impl_best(void) {
    pthread_once(&g_best_once, pick_best);
    return g_int8 ? OPC_CB_IMPL_AVX512_I8 : g_best;
}

bool opc_cpu_set_int8_activations(bool on) {
    pthread_once(&g_best_once, pick_best);
    g_int8 = on && opc_cb_impl_available(OPC_CB_IMPL_AVX512_I8);
    return g_int8;
}

static int g_threads; /* 0: follow omp_get_max_threads() */

void opc_cpu_set_threads(int n) { g_threads = n > 0 ? n : 0; }

int opc_cpu_get_threads(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

static opc_cb_rows_fn rows_fn(opc_cb_impl impl) {
    if (impl == OPC_CB_IMPL_AUTO || !opc_cb_impl_available(impl)) impl = opc_cb_impl_best();
    switch (impl) {
    case OPC_CB_IMPL_AVX512: return opc_cb_rows_avx512;
    case OPC_CB_IMPL_AVX512_I8: return opc_cb_rows_avx512_i8;
    case OPC_CB_IMPL_AVX2: return opc_cb_rows_avx2;
    default: return opc_cb_rows_scalar;
    }
}

void opc_cb_matmul_impl(opc_cb_impl impl, const opc_cb_matrix *m, const float *X, int64_t T,
                        float *Y, int nthreads) {
    if (T <= 0 || m->rows <= 0) return;
    opc_cb_rows_fn fn = rows_fn(impl);
    int nt = nthreads > 0 ? nthreads : opc_cpu_get_threads();
    /* Below ~64K multiply-adds a thread team costs more than it saves; inside
     * someone else's parallel region stay on the calling thread. */
    if (omp_in_parallel() || (double)m->rows * (double)m->cols * (double)T < 65536.0) nt = 1;
    int64_t max_nt = (m->rows + 1) / 2;
    if (nt > max_nt) nt = (int)max_nt;
    if (nt <= 1) {
        fn(m, X, T, Y, 0, m->rows);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t n = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t per = (((m->rows + n - 1) / n) + 1) & ~(int64_t)1;
        int64_t r0 = tid * per, r1 = r0 + per < m->rows ? r0 + per : m->rows;
        if (r0 < r1) {
            fn(m, X, T, Y, r0, r1);
        }
    }
}

void opc_cb_matmul(const opc_cb_matrix *m, const float *X, int64_t T, float *Y) {
    opc_cb_matmul_impl(OPC_CB_IMPL_AUTO, m, X, T, Y, 0);
}
