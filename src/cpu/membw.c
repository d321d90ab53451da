/*
 * membw.c — memory read bandwidth probe: the roofline a memory-bound GEMV is
 * compared with (bench/bench_cpu_gemv.c, `opacc1ty benchmark`).
 *
 * Each thread sums its own contiguous slice of a buffer much larger than the
 * last-level cache with the widest vector loads available; the best of
 * several passes is kept (the machine may be shared, and the best pass is
 * closest to what the hardware can deliver).
 */
#include "cpu.h"

#include "../core/cpu_features.h"

#include <omp.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPC_X86 1
#endif

/* A scalar loop issues one 8-byte load per instruction and does not reach
 * the DRAM limit on a modern core (measured: ~23 GB/s per thread here
 * against ~30 for a vector loop), so the probe uses the widest loads the
 * CPU has; 4 independent accumulators keep the adds off the critical path. */
#ifdef OPC_X86
__attribute__((target("avx512f"))) static uint64_t sum_slice_avx512(const uint64_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512((const void *)(p + i + 8)));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512((const void *)(p + i + 16)));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512((const void *)(p + i + 24)));
    }
    uint64_t s = (uint64_t)_mm512_reduce_add_epi64(
        _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

__attribute__((target("avx2"))) static uint64_t sum_slice_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    _Alignas(32) uint64_t t[4];
    _mm256_store_si256((__m256i *)t,
                       _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    uint64_t s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static uint64_t sum_slice_scalar(const uint64_t *p, size_t n) {
    uint64_t s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += p[i + j];
    for (; i < n; i++) s[0] += p[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static uint64_t sum_slice(const uint64_t *p, size_t n) {
#ifdef OPC_X86
    const opc_cpu_features *f = opc_cpu_get_features();
    if (f->avx512f) return sum_slice_avx512(p, n);
    if (f->avx2) return sum_slice_avx2(p, n);
#endif
    return sum_slice_scalar(p, n);
}

double opc_mem_read_bw(size_t bytes, int nthreads, int reps) {
    if (bytes == 0) bytes = (size_t)256 << 20;
    if (reps < 1) reps = 1;
    int nt = nthreads > 0 ? nthreads : opc_cpu_get_threads();
    /* Timed in 8 MiB segments walked in order through the whole buffer
     * (each one is cold: last touched a full buffer ago), keeping the best
     * segment. On a shared machine a long pass is nearly always cut by other
     * processes, while the kernels are timed as best-of-many short calls;
     * timing short segments puts the probe on the same footing. */
    const size_t seg = ((size_t)8 << 20) / sizeof(uint64_t);
    size_t n = bytes / sizeof(uint64_t);
    if (n < 2 * seg) n = 2 * seg;
    n -= n % seg;
    uint64_t *buf = opc_aligned_alloc(n * sizeof(uint64_t));
    if (!buf) return 0.0;
    volatile uint64_t sink = 0;
    double best = 0.0;
    /* First touch from the threads that will read (page placement). */
#pragma omp parallel num_threads(nt)
    {
        size_t tn = (size_t)omp_get_num_threads(), tid = (size_t)omp_get_thread_num();
        size_t per = (n + tn - 1) / tn, a = tid * per, b = a + per < n ? a + per : n;
        if (a < b) memset(buf + a, (int)(tid + 1), (b - a) * sizeof(uint64_t));
    }
    /* pass 0 is a warm-up (page tables, thread pool), not timed */
    for (int rep = 0; rep <= reps; rep++) {
        for (size_t s0 = 0; s0 < n; s0 += seg) {
            uint64_t total = 0;
            double t0 = opc_time_s();
#pragma omp parallel num_threads(nt) reduction(+ : total)
            {
                size_t tn = (size_t)omp_get_num_threads(), tid = (size_t)omp_get_thread_num();
                size_t per = (seg + tn - 1) / tn, a = tid * per;
                size_t b = a + per < seg ? a + per : seg;
                if (a < b) total += sum_slice(buf + s0 + a, b - a);
            }
            double dt = opc_time_s() - t0;
            sink += total;
            if (rep > 0 && dt > 0) {
                double bw = (double)(seg * sizeof(uint64_t)) / dt;
                if (bw > best) best = bw;
            }
        }
    }
    (void)sink;
    opc_aligned_free(buf);
    return best;
}
