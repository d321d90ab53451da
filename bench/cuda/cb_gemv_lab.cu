/*
 * cb_gemv_lab.cu — kernel lab for the 2-bit codebook GEMV (llm.c dev/cuda style).
 *
 * One standalone program (CUDA runtime + cuBLAS only, no project libraries):
 *   --validate  every kernel version against a CPU reference (the same math as
 *               opc_cb_gemv_ref in src/quant/cb.c: per-row sums of x per
 *               codebook entry in double) on odd shapes, k = 1..4, with and
 *               without outliers, batch 1..8; fresh random inputs per case,
 *               outputs poisoned with NaN before every launch.
 *   --bench     bandwidth probes (cudaMemcpy D2D, a read-only kernel), then
 *               every version on 4096x4096, 14336x4096, 4096x14336 (rows x
 *               cols) next to cuBLAS fp16 GEMV (cublasGemmEx, n = batch), all
 *               in one process. Weights rotate over enough copies that the
 *               working set is >= 256 MB, several times the 50 MB L2, so the
 *               numbers are HBM numbers. Times are medians of 7 repetitions of
 *               200 back-to-back launches (stream) or of one CUDA graph holding
 *               200 launches (graph: launch gaps mostly removed).
 *   --quick     smaller validation set (for compute-sanitizer).
 *
 * The kernels live in src/cuda/cb_gemv_kernels.cuh, the file the library
 * launches, so the lab measures the product's code.
 *
 * Build: see bench/cuda/Makefile (nvcc -O3 -gencode arch=compute_90,code=sm_90 ... -lcublas).
 */
#include "../../src/cuda/cb_gemv_kernels.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

using namespace opc_cuda;

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, \
                    __LINE__, cudaGetErrorString(e_));                                    \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)
#define CKB(call)                                                                         \
    do {                                                                                  \
        cublasStatus_t s_ = (call);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
            fprintf(stderr, "cuBLAS error %d at %s:%d\n", (int)s_, __FILE__, __LINE__);   \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

/* ------------------------------------------------------- host reference -- */

static float h_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
    if (exp == 0) {
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct HostCb {
    int rows = 0, cols = 0, groups = 0, k = 4;
    std::vector<uint8_t> idx;      /* (rows, groups*16) */
    std::vector<uint16_t> cb;      /* (rows, k) */
    std::vector<uint32_t> rowptr;  /* (rows+1) or empty */
    std::vector<uint16_t> ocol, oval;
    std::vector<uint8_t> gs;       /* (rows, groups) group scale bytes, or empty */
};

/* cb.h opc_cb_scale: 2^(-q/16) */
static double h_scale(uint8_t q) { return exp2(-(double)q / 16.0); }
static int gs_stride_of(int groups) { return (groups + 15) / 16 * 16; }

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_unif(void) { return (rnd_u32() & 0xFFFFFF) / 16777216.0f; } /* [0,1) */
static float rnd_normal(void) {
    float u1 = rnd_unif() + 1e-7f, u2 = rnd_unif();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
static uint16_t h_fp32_to_fp16(float f) { /* inputs here are small normals: simple RNE */
    __half h = __float2half_rn(f);
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static HostCb make_host(int rows, int cols, int k, double ol_frac, bool gscale = false) {
    HostCb m;
    m.rows = rows, m.cols = cols, m.k = k, m.groups = (cols + 63) / 64;
    m.idx.assign((size_t)rows * m.groups * 16, 0);
    m.cb.resize((size_t)rows * k);
    for (auto &c : m.cb) c = h_fp32_to_fp16(rnd_normal() * 0.05f);
    for (int r = 0; r < rows; r++) {
        uint8_t *row = &m.idx[(size_t)r * m.groups * 16];
        for (int c = 0; c < cols; c++) {
            uint32_t v = rnd_u32() % (uint32_t)k;
            int gi = c / 64, jj = c % 64;
            row[gi * 16 + jj % 16] |= (uint8_t)(v << (2 * (jj / 16)));
        }
    }
    if (gscale) { /* mostly moderate scales, some down to 2^-16 */
        m.gs.resize((size_t)rows * m.groups);
        for (auto &q : m.gs) q = (uint8_t)(rnd_u32() % 10 == 0 ? rnd_u32() % 256 : rnd_u32() % 48);
    }
    if (ol_frac > 0) {
        m.rowptr.assign(rows + 1, 0);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++)
                if (rnd_unif() < ol_frac) {
                    m.ocol.push_back((uint16_t)c);
                    m.oval.push_back(h_fp32_to_fp16(rnd_normal() * 0.2f));
                }
            m.rowptr[r + 1] = (uint32_t)m.ocol.size();
        }
    }
    return m;
}

static inline uint32_t h_get_index(const uint8_t *row, int c) {
    const uint8_t *g = row + (size_t)(c / 64) * 16;
    int j = c % 64;
    return (g[j % 16] >> (2 * (j / 16))) & 3u;
}

/* Same math as opc_cb_gemv_ref (src/quant/cb.c). Also returns per row the scale
 * sum_c |W[r][c] x[c]| that bounds rounding errors. */
static void ref_gemv(const HostCb &m, const float *x, std::vector<double> &y,
                     std::vector<double> &scale) {
    y.assign(m.rows, 0.0);
    scale.assign(m.rows, 0.0);
    for (int r = 0; r < m.rows; r++) {
        const uint8_t *row = &m.idx[(size_t)r * m.groups * 16];
        double acc = 0, sc = 0;
        for (int g0 = 0; g0 < m.groups; g0++) { /* per group: sums per entry, then the group's scale */
            double part[4] = {0, 0, 0, 0}, apart[4] = {0, 0, 0, 0};
            for (int c = g0 * 64; c < m.cols && c < g0 * 64 + 64; c++) {
                uint32_t i = h_get_index(row, c);
                part[i] += x[c];
                apart[i] += fabs(x[c]);
            }
            const double gsc = m.gs.empty() ? 1.0 : h_scale(m.gs[(size_t)r * m.groups + g0]);
            for (int i = 0; i < m.k; i++) {
                double cv = h_fp16_to_fp32(m.cb[(size_t)r * m.k + i]);
                acc += part[i] * cv * gsc;
                sc += apart[i] * fabs(cv) * gsc;
            }
        }
        if (!m.rowptr.empty())
            for (uint32_t e = m.rowptr[r]; e < m.rowptr[r + 1]; e++) {
                double d = (double)h_fp16_to_fp32(m.oval[e]) * x[m.ocol[e]];
                acc += d;
                sc += fabs(d);
            }
        y[r] = acc;
        scale[r] = sc;
    }
}

/* ----------------------------------------------------------- device side -- */

struct DevCb {
    uint4 *idx = nullptr;
    uint16_t *cb = nullptr;
    uint32_t *rowptr = nullptr;
    uint16_t *ocol = nullptr, *oval = nullptr;
    uint8_t *gs = nullptr;
    CbView view() const;
    int rows, cols, groups, k, gs_stride = 0;
    uint32_t nol = 0; /* outlier entries */
};
CbView DevCb::view() const {
    CbView v;
    v.idx = idx, v.codebook = cb, v.ol_rowptr = rowptr, v.ol_col = ocol, v.ol_val = oval;
    v.rows = rows, v.cols = cols, v.groups = groups, v.k = k;
    v.gs = gs, v.gs_stride = gs_stride;
    v.ol_n = nol;
    return v;
}

template <class T> static T *dupload(const std::vector<T> &v) {
    if (v.empty()) return nullptr;
    T *p;
    CK(cudaMalloc(&p, v.size() * sizeof(T)));
    CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
static DevCb upload(const HostCb &m) {
    DevCb d;
    d.rows = m.rows, d.cols = m.cols, d.groups = m.groups, d.k = m.k;
    d.idx = (uint4 *)dupload(m.idx);
    d.cb = dupload(m.cb);
    d.rowptr = dupload(m.rowptr);
    d.ocol = dupload(m.ocol);
    d.oval = dupload(m.oval);
    d.nol = (uint32_t)m.oval.size();
    if (!m.gs.empty()) { /* the library's upload repack: rows padded to 16 bytes */
        d.gs_stride = gs_stride_of(m.groups);
        std::vector<uint8_t> pad((size_t)m.rows * d.gs_stride, 0);
        for (int r = 0; r < m.rows; r++) memcpy(&pad[(size_t)r * d.gs_stride], &m.gs[(size_t)r * m.groups], m.groups);
        d.gs = dupload(pad);
    }
    return d;
}
static void dfree(DevCb &d) {
    cudaFree(d.idx), cudaFree(d.cb), cudaFree(d.rowptr), cudaFree(d.ocol), cudaFree(d.oval), cudaFree(d.gs);
    d = DevCb();
}

/* --only A,B,...: validate/bench only versions whose name starts with one of these */
static std::vector<std::string> g_only;
static bool selected(const std::string &name) {
    if (g_only.empty()) return true;
    for (const std::string &p : g_only)
        if (name.rfind(p, 0) == 0) return true;
    return false;
}

/* Kernel versions. Each launches y(nb, rows) = W x(nb, cols) on a stream. */
struct Version {
    std::string name;
    int max_batch;
    bool gs; /* applies group scales (m.gs) */
    std::function<void(const CbView &, const float *, int, float *, cudaStream_t)> launch;
};

template <int MT, int WK> static Version mma_version(void) {
    Version v;
    v.name = "v3_mma_mt" + std::to_string(MT) + "_wk" + std::to_string(WK);
    v.max_batch = OPC_CBK_MAX_BATCH;
    v.gs = false;
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        dim3 grid((m.rows + MT * 16 - 1) / (MT * 16));
        cbk_gemv_mma<MT, WK><<<grid, WK * 32, 0, s>>>(m, x, nb, y, vec);
    };
    return v;
}

template <int MT, int WK, int U> static Version v4_version(void) {
    Version v;
    v.name = "v4_mt" + std::to_string(MT) + "_wk" + std::to_string(WK) + "_u" + std::to_string(U);
    v.max_batch = OPC_CBK_MAX_BATCH;
    v.gs = true;
    CK(cudaFuncSetAttribute(cbk_gemv_v4<MT, WK, U>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)cbk_v4_smem<MT, WK, U>(OPC_CBK_MAX_BATCH)));
    CK(cudaFuncSetAttribute(cbk_gemv_v4<MT, WK, U, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)cbk_v4_smem<MT, WK, U>(OPC_CBK_MAX_BATCH)));
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        dim3 grid((m.rows + MT * 16 - 1) / (MT * 16));
        if (m.gs)
            cbk_gemv_v4<MT, WK, U, true><<<grid, WK * 32, cbk_v4_smem<MT, WK, U>(nb), s>>>(m, x, nullptr, nb, y, vec);
        else
            cbk_gemv_v4<MT, WK, U><<<grid, WK * 32, cbk_v4_smem<MT, WK, U>(nb), s>>>(m, x, nullptr, nb, y, vec);
    };
    return v;
}

/* v5's grid: as many blocks as fit on the GPU at once (persistent), at most one per tile. */
template <int MT, int WK, int UC> static int v5_grid(int rows, size_t smem) {
    static int sms = 0;
    if (!sms) CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cbk_gemv_v5<MT, WK, UC>, WK * 32, smem));
    int tiles = (rows + MT * 16 - 1) / (MT * 16);
    return std::max(1, std::min(tiles, per_sm * sms));
}

template <int MT, int WK, int UC> static Version v5_version(void) {
    Version v;
    v.name = "v5_mt" + std::to_string(MT) + "_wk" + std::to_string(WK) + "_u" + std::to_string(UC);
    v.max_batch = OPC_CBK_MAX_BATCH;
    v.gs = false;
    CK(cudaFuncSetAttribute(cbk_gemv_v5<MT, WK, UC>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        typedef CbkV5<MT, WK, UC> P;
        size_t smem = P::smem(m.groups, nb);
        if (smem > 227 * 1024) { /* does not fit: the product falls back to v4 */
            cbk_gemv_v4<1, 8, 2><<<(m.rows + 15) / 16, 256, cbk_v4_smem<1, 8, 2>(nb), s>>>(
                m, x, nullptr, nb, y, (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0));
            return;
        }
        /* occupancy per (rows, smem) is cached: a host call per launch would
         * distort the stream timings */
        static size_t c_smem[4] = {0, 0, 0, 0};
        static int c_rows[4], c_grid[4], c_next = 0;
        int grid = -1;
        for (int i = 0; i < 4; i++)
            if (c_smem[i] == smem && c_rows[i] == m.rows) grid = c_grid[i];
        if (grid < 0) {
            grid = v5_grid<MT, WK, UC>(m.rows, smem);
            c_smem[c_next] = smem, c_rows[c_next] = m.rows, c_grid[c_next] = grid;
            c_next = (c_next + 1) % 4;
        }
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        cbk_gemv_v5<MT, WK, UC><<<grid, WK * 32, smem, s>>>(m, x, nb, y, vec);
    };
    return v;
}

template <int WK, int U, int MINB = 1, int MT = 1> static Version v6_version(void) {
    Version v;
    v.name = "v6_wk" + std::to_string(WK) + "_u" + std::to_string(U) + (MINB > 1 ? "_b" + std::to_string(MINB) : "") +
             (MT > 1 ? "_mt" + std::to_string(MT) : "");
    v.max_batch = OPC_CBK_MAX_BATCH;
    v.gs = false;
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        cbk_gemv_v6<WK, U, MINB, MT><<<(m.rows + MT * 16 - 1) / (MT * 16), WK * 32, 0, s>>>(m, x, nb, y, vec);
    };
    return v;
}

/* v7: persistent grid of (blocks that fit per SM) x SMs, at most one block per
 * tile, tiles spread evenly (every block gets the same number, +-1 block).
 * Falls back to v4 when x does not fit in shared memory (as the library does). */
template <int MT, int NW, int CK, int ST> static Version v7_version(void) {
    typedef CbkV7<MT, NW, CK, ST> P;
    Version v;
    v.name = "v7_mt" + std::to_string(MT) + "_w" + std::to_string(NW) + "_ck" + std::to_string(CK) + "_st" +
             std::to_string(ST);
    v.max_batch = OPC_CBK_MAX_BATCH;
    v.gs = true;
    CK(cudaFuncSetAttribute(cbk_gemv_v7<MT, NW, CK, ST, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    CK(cudaFuncSetAttribute(cbk_gemv_v7<MT, NW, CK, ST, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    CK(cudaFuncSetAttribute(cbk_gemv_v4<1, 16, 1, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)cbk_v4_smem<1, 16, 1>(OPC_CBK_MAX_BATCH)));
    CK(cudaFuncSetAttribute(cbk_gemv_v4<1, 16, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)cbk_v4_smem<1, 16, 1>(OPC_CBK_MAX_BATCH)));
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        const size_t smem = P::smem(m.groups, nb);
        if (smem > 227 * 1024) {
            if (m.gs)
                cbk_gemv_v4<1, 16, 1, true><<<(m.rows + 15) / 16, 512, cbk_v4_smem<1, 16, 1>(nb), s>>>(m, x, nullptr, nb, y, vec);
            else
                cbk_gemv_v4<1, 16, 1><<<(m.rows + 15) / 16, 512, cbk_v4_smem<1, 16, 1>(nb), s>>>(m, x, nullptr, nb, y, vec);
            return;
        }
        static int sms = 0;
        if (!sms) CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        /* occupancy per smem size, cached: a host query per launch would distort stream timings */
        static size_t c_key[8];
        static int c_per[8], c_n = 0;
        const size_t key = smem * 2 + (m.gs != nullptr);
        int per_sm = -1;
        for (int i = 0; i < c_n; i++)
            if (c_key[i] == key) per_sm = c_per[i];
        if (per_sm < 0) {
            if (m.gs)
                CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cbk_gemv_v7<MT, NW, CK, ST, true>, NW * 32, smem));
            else
                CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cbk_gemv_v7<MT, NW, CK, ST, false>, NW * 32, smem));
            if (c_n < 8) c_key[c_n] = key, c_per[c_n] = per_sm, c_n++;
        }
        const int tiles = (m.rows + P::TR - 1) / P::TR, maxg = std::max(1, per_sm * sms);
        const int per_block = (tiles + maxg - 1) / maxg, grid = (tiles + per_block - 1) / per_block;
        if (m.gs)
            cbk_gemv_v7<MT, NW, CK, ST, true><<<grid, NW * 32, smem, s>>>(m, x, nb, y, vec);
        else
            cbk_gemv_v7<MT, NW, CK, ST, false><<<grid, NW * 32, smem, s>>>(m, x, nb, y, vec);
    };
    return v;
}


/* v8: persistent grid, each block owns tpb consecutive 16-row tiles; blocks
 * per SM from the occupancy at the largest tpb (a lower bound for smaller
 * ones). Batches > 4, group scales or an x too large for shared memory: v4,
 * as in the library. */
template <int NW, int P, int MINB> static Version v8_version(void) {
    Version v;
    v.name = "v8_w" + std::to_string(NW) + "_p" + std::to_string(P) + (MINB > 1 ? "_b" + std::to_string(MINB) : "");
    v.max_batch = OPC_CBK_V8_MAX_BATCH;
    v.gs = false;
    CK(cudaFuncSetAttribute(cbk_gemv_v8<NW, P, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
    CK(cudaFuncSetAttribute(cbk_gemv_v4<1, 16, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            (int)cbk_v4_smem<1, 16, 1>(OPC_CBK_MAX_BATCH)));
    v.launch = [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
        int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
        static int sms = 0;
        if (!sms) CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
        const int tiles = (m.rows + 15) / 16, tpb0 = (tiles + sms - 1) / sms;
        const size_t smem0 = CbkV8::smem(m.groups, nb, tpb0, NW);
        if (nb > OPC_CBK_V8_MAX_BATCH || m.gs || smem0 > 227 * 1024) {
            cbk_gemv_v4<1, 16, 1><<<(m.rows + 15) / 16, 512, cbk_v4_smem<1, 16, 1>(nb), s>>>(m, x, nullptr, nb, y, vec);
            return;
        }
        /* occupancy per (smem) cached: a host query per launch would distort stream timings */
        static size_t c_key[8];
        static int c_per[8], c_n = 0;
        int per_sm = -1;
        for (int i = 0; i < c_n; i++)
            if (c_key[i] == smem0) per_sm = c_per[i];
        if (per_sm < 0) {
            CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cbk_gemv_v8<NW, P, MINB>, NW * 32, smem0));
            if (c_n < 8) c_key[c_n] = smem0, c_per[c_n] = per_sm, c_n++;
        }
        /* OPC_CUDA_V8_RES=N: at most N blocks per SM, as the library (cb_gemv.cu v8_res) */
        static int res = -1;
        if (res < 0) {
            const char *e = getenv("OPC_CUDA_V8_RES");
            res = e && *e ? std::max(0, atoi(e)) : 0;
        }
        if (res > 0) per_sm = std::min(per_sm, res);
        const int maxg = std::max(1, per_sm * sms);
        const int tpb = (tiles + maxg - 1) / maxg, grid = (tiles + tpb - 1) / tpb;
        /* outlier entries staged in shared memory, as the library (cb_gemv.cu v8_olcap):
         * OPC_CUDA_V8_OLCAP=0 off, =N a fixed cap (the overflow path) */
        static int env = -2, mode = -1;
        if (env == -2) env = getenv("OPC_CUDA_V8_OLCAP") && *getenv("OPC_CUDA_V8_OLCAP") ? atoi(getenv("OPC_CUDA_V8_OLCAP")) : -1;
        /* OPC_CUDA_V8_MODE: the kernel's mode (CBK_V8_*; default the octet epilogue, as the library) */
        if (mode < 0) mode = getenv("OPC_CUDA_V8_MODE") && *getenv("OPC_CUDA_V8_MODE") ? atoi(getenv("OPC_CUDA_V8_MODE")) : CBK_V8_OL_OCTET;
        int ocap = CbkV8::ol_cap(m, tpb);
        if (ocap > 0 && env >= 0) ocap = env / 8 * 8;
        const int room = (int)((227 * 1024 - CbkV8::smem(m.groups, nb, tpb, NW)) / 32 * 8);
        ocap = std::min(ocap, room);
        cbk_gemv_v8<NW, P, MINB><<<grid, NW * 32, CbkV8::smem(m.groups, nb, tpb, NW, ocap), s>>>(m, x, CbXf(), nb, y, vec,
                                                                                               tpb, ocap, mode);
    };
    return v;
}

static std::vector<Version> all_versions(void) {
    std::vector<Version> vs;
    vs.push_back({"v1_scalar", OPC_CBK_MAX_BATCH, false,
                  [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
                      for (int b = 0; b < nb; b++)
                          cbk_gemv_v1<<<(m.rows + 7) / 8, 256, 0, s>>>(
                              m, x + (size_t)b * m.cols, y + (size_t)b * m.rows);
                  }});
    vs.push_back({"v2_prmt_fma", OPC_CBK_MAX_BATCH, true,
                  [](const CbView &m, const float *x, int nb, float *y, cudaStream_t s) {
                      int vec = (m.cols % 4 == 0) && ((uintptr_t)x % 16 == 0);
                      for (int b = 0; b < nb; b++)
                          cbk_gemv_v2<<<(m.rows + 7) / 8, 256, 0, s>>>(
                              m, x + (size_t)b * m.cols, y + (size_t)b * m.rows, vec);
                  }});
    vs.push_back(mma_version<1, 8>());
    vs.push_back(mma_version<2, 8>());
    vs.push_back(v4_version<1, 8, 2>());
    vs.push_back(v4_version<2, 8, 1>());
    vs.push_back(v4_version<1, 16, 1>());
    vs.push_back(v4_version<1, 32, 1>());
    vs.push_back(v5_version<1, 8, 2>());
    vs.push_back(v5_version<1, 16, 1>());
    vs.push_back(v6_version<8, 1>());
    vs.push_back(v6_version<8, 2>());
    vs.push_back(v6_version<16, 1>());
    vs.push_back(v6_version<16, 2>());
    vs.push_back(v6_version<8, 1, 3>());
    vs.push_back(v6_version<16, 1, 2>());
    vs.push_back(v6_version<4, 2>());
    vs.push_back(v6_version<8, 1, 1, 2>());
    vs.push_back(v6_version<16, 1, 1, 2>());
    vs.push_back(v6_version<4, 1, 1, 2>());
    vs.push_back(v6_version<8, 1, 2, 2>());
    vs.push_back(v7_version<1, 8, 64, 4>());
    vs.push_back(v7_version<1, 4, 32, 4>());
    vs.push_back(v7_version<1, 4, 64, 3>());
    vs.push_back(v7_version<2, 4, 32, 3>());
    vs.push_back(v7_version<2, 4, 16, 4>());
    vs.push_back(v7_version<2, 2, 32, 4>());
    vs.push_back(v7_version<1, 2, 16, 6>());
    vs.push_back(v7_version<1, 4, 16, 6>());
    vs.push_back(v8_version<16, 2, 1>());
    vs.push_back(v8_version<16, 3, 1>());
    vs.push_back(v8_version<8, 2, 3>());
    vs.push_back(v8_version<8, 3, 2>());
    vs.push_back(v8_version<8, 2, 2>());
    vs.push_back(v8_version<24, 2, 1>());
    vs.push_back(v8_version<32, 2, 1>());
    return vs;
}

/* ------------------------------------------------------------ validation -- */

static int validate(bool quick) {
    struct Shape { int rows, cols; };
    std::vector<Shape> shapes = {{1, 1}, {3, 63}, {17, 64}, {31, 100}, {33, 130}, {64, 4096},
                                 {100, 1000}, {257, 4097}};
    if (!quick) {
        shapes.push_back({1000, 2050});
        shapes.push_back({4096, 4096});
        shapes.push_back({300, 14336});
        shapes.push_back({8000, 520}); /* 4+ tiles per block: several rows per warp in v8's outlier epilogue */
    }
    const int batches[] = {1, 2, 3, 4, 8};
    std::vector<Version> vs = all_versions();
    int fails = 0, cases = 0;
    double worst[64] = {0}, worst_abs[64] = {0}, worst_rel[64] = {0}, worst_spiky[64] = {0};
    for (const Shape &sh : shapes)
        for (int k = 1; k <= 4; k++)
            for (int ol = 0; ol < 2; ol++)
            for (int gsc = 0; gsc < 2; gsc++) {
                if (quick && k != 4 && k != 1) continue;
                if (!quick && sh.rows * (double)sh.cols > 2e6 && k != 4) continue;
                if (gsc && k == 2) continue;
                HostCb hm = make_host(sh.rows, sh.cols, k, ol ? 0.01 : 0.0, gsc != 0);
                DevCb dm = upload(hm);
                CbView view = dm.view();
                for (int nb : batches) {
                    std::vector<float> hx((size_t)nb * sh.cols);
                    for (auto &v : hx) v = rnd_normal();
                    /* batch 2: "spiky" x like LLM activations, one column in 64 twenty
                     * times larger (per-block int16 x pays for them, fp16 x does not) */
                    const bool spiky = (nb == 2);
                    if (spiky)
                        for (auto &v : hx)
                            if (rnd_u32() % 64 == 0) v *= 20.0f;
                    /* a misaligned x (offset by one float) exercises the scalar x path */
                    bool misalign = (nb == 3);
                    float *dxbuf, *dy;
                    CK(cudaMalloc(&dxbuf, (hx.size() + 4) * sizeof(float)));
                    float *dx = dxbuf + (misalign ? 1 : 0);
                    CK(cudaMemcpy(dx, hx.data(), hx.size() * sizeof(float), cudaMemcpyHostToDevice));
                    CK(cudaMalloc(&dy, (size_t)nb * sh.rows * sizeof(float)));
                    std::vector<std::vector<double>> ref(nb), scale(nb);
                    for (int b = 0; b < nb; b++) ref_gemv(hm, &hx[(size_t)b * sh.cols], ref[b], scale[b]);
                    std::vector<float> hy((size_t)nb * sh.rows);
                    for (size_t vi = 0; vi < vs.size(); vi++) {
                        const Version &v = vs[vi];
                        if ((gsc && !v.gs) || !selected(v.name)) continue;
                        CK(cudaMemset(dy, 0xFF, hy.size() * sizeof(float))); /* NaN poison */
                        v.launch(view, dx, nb, dy, 0);
                        CK(cudaGetLastError());
                        CK(cudaDeviceSynchronize());
                        CK(cudaMemcpy(hy.data(), dy, hy.size() * sizeof(float), cudaMemcpyDeviceToHost));
                        /* error bound: fp32 paths ~1e-6 of sum|w x|; the mma path rounds
                         * x to fp16 (<= 2^-11 relative) then accumulates in fp32 */
                        const double tol = (vi < 2 && !gsc) ? 1e-5 : 1e-3;
                        /* scaled fp16 codebooks go subnormal (2^-24 apart) for tiny
                         * group scales: an absolute 2^-25 per weight on top */
                        double xabs[OPC_CBK_MAX_BATCH] = {0};
                        if (gsc)
                            for (int b = 0; b < nb; b++)
                                for (int c = 0; c < sh.cols; c++) xabs[b] += fabs(hx[(size_t)b * sh.cols + c]);
                        double werr = 0, num = 0, den = 0, wabs = 0, wmax = 0;
                        bool bad = false;
                        for (int b = 0; b < nb; b++)
                            for (int r = 0; r < sh.rows; r++) {
                                double got = hy[(size_t)b * sh.rows + r], want = ref[b][r];
                                if (!std::isfinite(got)) { bad = true; continue; }
                                double e = fabs(got - want) / (scale[b][r] + 0x1p-25 / tol * xabs[b] + 1e-30);
                                werr = std::max(werr, e);
                                wabs = std::max(wabs, fabs(got - want));
                                wmax = std::max(wmax, fabs(want));
                                num += (got - want) * (got - want);
                                den += want * want;
                            }
                        cases++;
                        worst[vi] = std::max(worst[vi], werr);
                        worst_abs[vi] = std::max(worst_abs[vi], wabs);
                        worst_rel[vi] = std::max(worst_rel[vi], wabs / (wmax + 1e-30));
                        if (spiky) worst_spiky[vi] = std::max(worst_spiky[vi], werr);
                        if (bad || werr > tol) {
                            fails++;
                            printf("FAIL %-16s rows=%d cols=%d k=%d outliers=%d gscale=%d nb=%d misalign=%d: "
                                   "%s max err/scale %.3g rel-l2 %.3g\n",
                                   v.name.c_str(), sh.rows, sh.cols, k, ol, gsc, nb, (int)misalign,
                                   bad ? "non-finite (unwritten?) output;" : "", werr,
                                   sqrt(num / (den + 1e-300)));
                        }
                    }
                    cudaFree(dxbuf);
                    cudaFree(dy);
                }
                dfree(dm);
            }
    printf("validation: %d cases, %d failures\n", cases, fails);
    for (size_t vi = 0; vi < vs.size(); vi++)
        if (selected(vs[vi].name))
            printf("  %-18s worst |y-ref| / sum|w*x| = %.3g (spiky x: %.3g)   max |y-ref| = %.3g   "
                   "max |y-ref| / max|ref| = %.3g\n",
                   vs[vi].name.c_str(), worst[vi], worst_spiky[vi], worst_abs[vi], worst_rel[vi]);
    return fails ? 1 : 0;
}

/* ------------------------------------------------------------ benchmark --- */

__device__ __forceinline__ uint32_t hash32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}
__global__ void fill_u32(uint32_t *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = hash32((uint32_t)i * 2654435761u ^ seed) ^ hash32((uint32_t)(i >> 32) + seed);
}
/* fp16 values uniform in [-a, a): never zero-filled, never inf/nan */
__global__ void fill_h(__half *p, size_t n, uint32_t seed, float a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = __float2half((hash32((uint32_t)i ^ seed * 0x9E3779B9u) * (1.0f / 4294967296.0f) * 2.0f - 1.0f) * a);
}
__global__ void fill_f(float *p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = hash32((uint32_t)i ^ seed * 0x85ebca6bu) * (1.0f / 4294967296.0f) * 2.0f - 1.0f;
}
/* Read-bandwidth probe: 4 independent 16-byte loads in flight per thread. */
__global__ void read_probe(const uint4 *__restrict__ p, size_t n, uint32_t *sink) {
    uint32_t acc = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride),
              d = __ldcs(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        uint4 a = p[i];
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9E3779B9u) sink[0] = acc; /* keeps the loads alive */
}

static void launch_fill_u32(void *p, size_t bytes, uint32_t seed) {
    fill_u32<<<1024, 256>>>((uint32_t *)p, bytes / 4, seed);
    CK(cudaGetLastError());
}

static const int ITERS = 200, REPS = 7;

/* Median ms per call of fn(i) over REPS timings of ITERS back-to-back calls. */
static double time_stream(const std::function<void(int)> &fn, cudaStream_t s) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 20; i++) fn(i); /* warm-up: module load, handles, clocks */
    CK(cudaStreamSynchronize(s));
    std::vector<double> t;
    for (int rep = 0; rep < REPS; rep++) {
        CK(cudaEventRecord(a, s));
        for (int i = 0; i < ITERS; i++) fn(i);
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        CK(cudaGetLastError());
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / ITERS);
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* Same, with the ITERS calls captured in one CUDA graph; returns -1 if capture fails. */
static double time_graph(const std::function<void(int)> &fn, cudaStream_t s) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return -1;
    for (int i = 0; i < ITERS; i++) fn(i);
    if (cudaStreamEndCapture(s, &graph) != cudaSuccess) { cudaGetLastError(); return -1; }
    if (cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) { cudaGetLastError(); return -1; }
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    std::vector<double> t;
    for (int rep = 0; rep < REPS; rep++) {
        CK(cudaEventRecord(a, s));
        CK(cudaGraphLaunch(exec, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / ITERS);
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaGraphExecDestroy(exec), cudaGraphDestroy(graph);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

struct Row {
    std::string shape, what;
    int nb;
    double us_stream, us_graph, bytes;
};


static int bench(void) {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    int clk_khz = 0, memclk_khz = 0, busw = 0;
    cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, 0);
    cudaDeviceGetAttribute(&memclk_khz, cudaDevAttrMemoryClockRate, 0);
    cudaDeviceGetAttribute(&busw, cudaDevAttrGlobalMemoryBusWidth, 0);
    printf("device: %s, %d SMs, L2 %.0f MB, %.1f GB, sm clock %.0f MHz, mem clock %.0f MHz, bus %d bit\n",
           p.name, p.multiProcessorCount, p.l2CacheSize / 1e6, p.totalGlobalMem / 1e9,
           clk_khz / 1e3, memclk_khz / 1e3, busw);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cublasHandle_t hb;
    CKB(cublasCreate(&hb));
    CKB(cublasSetStream(hb, s));

    /* ---- bandwidth probes ---- */
    const size_t probe_bytes = (size_t)1 << 30;
    void *pa, *pb;
    uint32_t *sink;
    CK(cudaMalloc(&pa, probe_bytes));
    CK(cudaMalloc(&pb, probe_bytes));
    CK(cudaMalloc(&sink, 4));
    launch_fill_u32(pa, probe_bytes, 1);
    launch_fill_u32(pb, probe_bytes, 2);
    CK(cudaDeviceSynchronize());
    std::vector<double> tc;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int rep = 0; rep < 12; rep++) {
        CK(cudaEventRecord(e0, s));
        CK(cudaMemcpyAsync(pb, pa, probe_bytes, cudaMemcpyDeviceToDevice, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep >= 2) tc.push_back(ms);
    }
    std::sort(tc.begin(), tc.end());
    const double copy_gbs = 2.0 * probe_bytes / (tc[tc.size() / 2] * 1e-3) / 1e9;
    std::vector<double> tr;
    for (int rep = 0; rep < 12; rep++) {
        CK(cudaEventRecord(e0, s));
        read_probe<<<p.multiProcessorCount * 4, 512, 0, s>>>((const uint4 *)pa, probe_bytes / 16, sink);
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        CK(cudaGetLastError());
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep >= 2) tr.push_back(ms);
    }
    std::sort(tr.begin(), tr.end());
    const double read_gbs = probe_bytes / (tr[tr.size() / 2] * 1e-3) / 1e9;
    printf("copy D2D 1 GiB: %.0f GB/s (read+write)   read probe 1 GiB: %.0f GB/s\n", copy_gbs, read_gbs);
    CK(cudaFree(pa));
    CK(cudaFree(pb));

    std::vector<Version> vs = all_versions();
    std::vector<Row> rows_out;
    struct Shape { int rows, cols; };
    const Shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
    const size_t min_ws = (size_t)256 << 20;
    const int batches[] = {1, 2, 4, 8};

    for (const Shape &sh : shapes) {
        char sname[64];
        snprintf(sname, sizeof sname, "%dx%d", sh.rows, sh.cols);
        const int groups = (sh.cols + 63) / 64;
        /* 2-bit copies (indices + codebook), rotated */
        const size_t idx_bytes = (size_t)sh.rows * groups * 16, cb_elems = (size_t)sh.rows * 4;
        const size_t per = idx_bytes + cb_elems * 2;
        const int ncopy = (int)std::max<size_t>(2, (min_ws + per - 1) / per);
        std::vector<DevCb> copies(ncopy);
        for (int i = 0; i < ncopy; i++) {
            DevCb &d = copies[i];
            d.rows = sh.rows, d.cols = sh.cols, d.groups = groups, d.k = 4;
            CK(cudaMalloc(&d.idx, idx_bytes));
            CK(cudaMalloc(&d.cb, cb_elems * 2));
            launch_fill_u32(d.idx, idx_bytes, 100 + i);
            fill_h<<<256, 256>>>((__half *)d.cb, cb_elems, 200 + i, 0.05f);
        }
        /* outlier variant for copies: 1% of weights, same CSR for every copy */
        HostCb ol_host;
        {
            ol_host.rows = sh.rows;
            ol_host.rowptr.assign(sh.rows + 1, 0);
            for (int r = 0; r < sh.rows; r++) {
                int per_row = sh.cols / 100, step = sh.cols / per_row;
                for (int i = 0; i < per_row; i++) {
                    ol_host.ocol.push_back((uint16_t)(i * step + (rnd_u32() % step)));
                    ol_host.oval.push_back(h_fp32_to_fp16(rnd_normal() * 0.2f));
                }
                ol_host.rowptr[r + 1] = (uint32_t)ol_host.ocol.size();
            }
        }
        uint32_t *d_rowptr = dupload(ol_host.rowptr);
        uint16_t *d_ocol = dupload(ol_host.ocol), *d_oval = dupload(ol_host.oval);
        const size_t ol_bytes = ol_host.rowptr.size() * 4 + ol_host.ocol.size() * 4;

        float *dx, *dy;
        CK(cudaMalloc(&dx, (size_t)OPC_CBK_MAX_BATCH * sh.cols * 4));
        CK(cudaMalloc(&dy, (size_t)OPC_CBK_MAX_BATCH * sh.rows * 4));
        fill_f<<<256, 256>>>(dx, (size_t)OPC_CBK_MAX_BATCH * sh.cols, 7);
        CK(cudaDeviceSynchronize());

        for (const Version &v : vs)
            for (int nb : batches) {
                if (!selected(v.name) || nb > v.max_batch) continue;
                if (v.name.rfind("v1", 0) == 0 || v.name.rfind("v2", 0) == 0)
                    if (nb > 1) continue; /* v1/v2: batch 1 only (one launch per vector) */
                auto fn = [&](int i) { v.launch(copies[i % ncopy].view(), dx, nb, dy, s); };
                double bytes = (double)per + nb * (sh.cols + sh.rows) * 4.0;
                rows_out.push_back({sname, v.name, nb, time_stream(fn, s) * 1e3, time_graph(fn, s) * 1e3, bytes});
            }
        /* group scales (random bytes), versions that take them, batch 1 and 4 */
        {
            const int gstride = gs_stride_of(groups);
            uint8_t *d_gs;
            CK(cudaMalloc(&d_gs, (size_t)sh.rows * gstride));
            launch_fill_u32(d_gs, (size_t)sh.rows * gstride, 77);
            for (const Version &v : vs) {
                if (!v.gs || !selected(v.name) || v.name.rfind("v2", 0) == 0) continue;
                for (int nb : {1, 4}) {
                    auto fn = [&](int i) {
                        CbView w = copies[i % ncopy].view();
                        w.gs = d_gs, w.gs_stride = gstride;
                        v.launch(w, dx, nb, dy, s);
                    };
                    double bytes = (double)per + (double)sh.rows * groups + nb * (sh.cols + sh.rows) * 4.0;
                    rows_out.push_back({sname, v.name + "+gs", nb, time_stream(fn, s) * 1e3,
                                        time_graph(fn, s) * 1e3, bytes});
                }
            }
            cudaFree(d_gs);
        }
        /* v4 staging the caller's fp16 copy of x (the library's opc_cuda_cb_gemv_x16) */
        {
            __half *dxh16;
            CK(cudaMalloc(&dxh16, (size_t)OPC_CBK_MAX_BATCH * sh.cols * 2));
            fill_h<<<256, 256>>>(dxh16, (size_t)OPC_CBK_MAX_BATCH * sh.cols, 11, 1.0f);
            CK(cudaFuncSetAttribute(cbk_gemv_v4<1, 16, 1, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)cbk_v4_smem<1, 16, 1>(OPC_CBK_MAX_BATCH)));
            CK(cudaFuncSetAttribute(cbk_gemv_v4<2, 8, 1, false, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)cbk_v4_smem<2, 8, 1>(OPC_CBK_MAX_BATCH)));
            const uint16_t *x16 = reinterpret_cast<const uint16_t *>(dxh16);
            for (int cfg = 0; cfg < 2; cfg++)
                for (int nb : batches) {
                    const char *nm = cfg ? "v4_mt2_wk8_u1+x16" : "v4_mt1_wk16_u1+x16";
                    if (!selected(cfg ? "v4_mt2_wk8_u1" : "v4_mt1_wk16_u1")) continue;
                    auto fn = [&](int i) {
                        CbView w = copies[i % ncopy].view();
                        if (cfg)
                            cbk_gemv_v4<2, 8, 1, false, true><<<(w.rows + 31) / 32, 256, cbk_v4_smem<2, 8, 1>(nb), s>>>(
                                w, dx, x16, nb, dy, 1);
                        else
                            cbk_gemv_v4<1, 16, 1, false, true><<<(w.rows + 15) / 16, 512, cbk_v4_smem<1, 16, 1>(nb), s>>>(
                                w, dx, x16, nb, dy, 1);
                    };
                    double bytes = (double)per + nb * (sh.cols * 2.0 + sh.rows * 4.0);
                    rows_out.push_back({sname, nm, nb, time_stream(fn, s) * 1e3, time_graph(fn, s) * 1e3, bytes});
                }
            cudaFree(dxh16);
        }
        /* outliers (1%), some configs, batch 1 and 8 */
        for (const Version &v : vs) {
            if (!selected(v.name) || (v.name != "v4_mt1_wk16_u1" && v.name != "v6_wk8_u1_b3" &&
                                      v.name.rfind("v7", 0) != 0 && v.name.rfind("v8", 0) != 0))
                continue;
            for (int nb : {1, 4, 8}) {
                if (nb > v.max_batch) continue;
                auto fn = [&](int i) {
                    CbView w = copies[i % ncopy].view();
                    w.ol_rowptr = d_rowptr, w.ol_col = d_ocol, w.ol_val = d_oval;
                    w.ol_n = (uint32_t)ol_host.oval.size();
                    v.launch(w, dx, nb, dy, s);
                };
                double bytes = (double)per + ol_bytes + nb * (sh.cols + sh.rows) * 4.0;
                rows_out.push_back({sname, v.name + "+ol1%", nb, time_stream(fn, s) * 1e3,
                                    time_graph(fn, s) * 1e3, bytes});
            }
        }
        for (auto &d : copies) dfree(d);
        cudaFree(d_rowptr), cudaFree(d_ocol), cudaFree(d_oval);

        /* cuBLAS fp16 GEMV: W fp16 (rows, cols) row-major = column-major (cols, rows),
         * y = W x is op(A) = A^T with lda = cols; n = batch; fp32 accumulate and output. */
        const size_t wbytes = (size_t)sh.rows * sh.cols * 2;
        const int nw = (int)std::max<size_t>(2, (min_ws + wbytes - 1) / wbytes);
        std::vector<__half *> wcopies(nw);
        for (int i = 0; i < nw; i++) {
            CK(cudaMalloc(&wcopies[i], wbytes));
            fill_h<<<1024, 256>>>(wcopies[i], wbytes / 2, 300 + i, 0.05f);
        }
        __half *dxh;
        CK(cudaMalloc(&dxh, (size_t)OPC_CBK_MAX_BATCH * sh.cols * 2));
        fill_h<<<256, 256>>>(dxh, (size_t)OPC_CBK_MAX_BATCH * sh.cols, 9, 1.0f);
        CK(cudaDeviceSynchronize());
        for (int nb : batches) {
            const float alpha = 1.0f, beta = 0.0f;
            auto fn = [&](int i) {
                CKB(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, sh.rows, nb, sh.cols, &alpha,
                                 wcopies[i % nw], CUDA_R_16F, sh.cols, dxh, CUDA_R_16F, sh.cols,
                                 &beta, dy, CUDA_R_32F, sh.rows, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
            };
            double bytes = (double)wbytes + nb * (sh.cols * 2.0 + sh.rows * 4.0);
            rows_out.push_back({sname, "cublas_fp16_gemmex", nb, time_stream(fn, s) * 1e3,
                                time_graph(fn, s) * 1e3, bytes});
        }
        for (auto w : wcopies) cudaFree(w);
        cudaFree(dxh), cudaFree(dx), cudaFree(dy);
    }

    /* ---- table ---- */
    printf("\n%-12s %-24s %3s %10s %10s %9s %7s %9s\n", "shape", "version", "nb", "us/stream",
           "us/graph", "GB/s(g)", "%copy", "x cuBLAS");
    for (const Row &r : rows_out) {
        double best = r.us_graph > 0 ? std::min(r.us_graph, r.us_stream) : r.us_stream;
        double gbs = r.bytes / (best * 1e-6) / 1e9;
        double cub = 0;
        for (const Row &c : rows_out)
            if (c.shape == r.shape && c.nb == r.nb && c.what == "cublas_fp16_gemmex")
                cub = c.us_graph > 0 ? std::min(c.us_graph, c.us_stream) : c.us_stream;
        printf("%-12s %-24s %3d %10.2f %10.2f %9.0f %6.1f%% %8.2fx\n", r.shape.c_str(),
               r.what.c_str(), r.nb, r.us_stream, r.us_graph, gbs, 100.0 * gbs / copy_gbs,
               cub > 0 ? cub / best : 0.0);
    }
    printf("(GB/s counts indices + codebooks [+ outliers] + x + y bytes; %%copy is of the D2D copy's "
           "%.0f GB/s read+write; 'x cuBLAS' is cuBLAS time / this time, same shape and batch; "
           "times are the better of stream/graph)\n", copy_gbs);
    cublasDestroy(hb);
    cudaStreamDestroy(s);
    return 0;
}

/* --one NAME ROWS COLS NB: 5 launches of one version on random data (for ncu). */
static int run_one(const char *name, int rows, int cols, int nb) {
    std::vector<Version> vs = all_versions();
    for (const Version &v : vs) {
        if (v.name != name) continue;
        HostCb hm = make_host(rows, cols, 4, 0.0);
        DevCb dm = upload(hm);
        float *dx, *dy;
        CK(cudaMalloc(&dx, (size_t)nb * cols * 4));
        CK(cudaMalloc(&dy, (size_t)nb * rows * 4));
        fill_f<<<256, 256>>>(dx, (size_t)nb * cols, 5);
        for (int i = 0; i < 5; i++) v.launch(dm.view(), dx, nb, dy, 0);
        CK(cudaGetLastError());
        CK(cudaDeviceSynchronize());
        dfree(dm);
        cudaFree(dx), cudaFree(dy);
        return 0;
    }
    fprintf(stderr, "no version %s\n", name);
    return 2;
}

int main(int argc, char **argv) {
    bool do_val = false, do_bench = false, quick = false;
    if (argc == 6 && !strcmp(argv[1], "--one")) return run_one(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--validate")) do_val = true;
        else if (!strcmp(argv[i], "--bench")) do_bench = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            std::string l = argv[++i];
            for (size_t a = 0, b; a <= l.size(); a = b + 1) {
                b = l.find(',', a);
                if (b == std::string::npos) b = l.size();
                if (b > a) g_only.push_back(l.substr(a, b - a));
            }
        }
        else {
            fprintf(stderr, "usage: %s [--validate [--quick]] [--bench [--only PREFIX,...]]\n", argv[0]);
            return 2;
        }
    }
    if (!do_val && !do_bench) do_val = do_bench = true;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "no CUDA device\n");
        return 77;
    }
    int rc = 0;
    if (do_val) rc |= validate(quick);
    if (do_bench) rc |= bench();
    return rc;
}
