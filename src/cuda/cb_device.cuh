/*
 * cb_device.cuh — device helpers shared by the codebook kernels: the GEMVs
 * (cb_gemv_kernels.cuh) and the fused GEMM (cb_gemm.cu). Only
 * __forceinline__ functions and templates, so any number of .cu files may
 * include it (cb_gemv_kernels.cuh itself defines kernels and is included by
 * one library file and the lab).
 */
#ifndef OPC_CB_DEVICE_CUH
#define OPC_CB_DEVICE_CUH

#include <cuda_fp16.h>
#include <stdint.h>

namespace opc_cuda {

/* 16 bytes global -> shared without passing through registers (LDGSTS), so a
 * warp can have many chunks in flight and still run math on an earlier one.
 * .cg: L2 only (streamed weights are never re-read). valid == false writes
 * 16 zero bytes and reads nothing (src-size 0). */
__device__ __forceinline__ void cbk_cp16(void *sdst, const void *gsrc, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(sdst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gsrc), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cbk_cp_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cbk_cp_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* Programmatic dependent launch (sm_90). The library launches the GEMV with
 * the PDL attribute: its blocks may start while the previous kernel in the
 * stream is still running, so everything that reads only the weights
 * (codebooks, the first weight loads) goes before cbk_grid_wait(), which
 * returns once the previous grid has completed and its writes are visible;
 * x is read and y written only after it. Without the attribute (the lab's
 * <<<>>> launches, older GPUs) both are no-ops. cbk_grid_trigger() lets the
 * next PDL-launched kernel be scheduled early. */
__device__ __forceinline__ void cbk_grid_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void cbk_grid_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Row r's codebook as two half2 words: c01 = (cb[0], cb[1]), c23 = (cb[2], cb[3]);
 * entries >= k are 0. */
template <class View> /* any view with codebook (rows, k) and k: CbView, the GEMM's */
__device__ __forceinline__ void cbk_row_pairs(const View &m, int r, uint32_t &c01, uint32_t &c23) {
    if (m.k == 4) {
        const uint2 c = __ldg(reinterpret_cast<const uint2 *>(m.codebook) + r);
        c01 = c.x, c23 = c.y;
        return;
    }
    uint32_t c[4];
#pragma unroll
    for (int i = 0; i < 4; i++) c[i] = i < m.k ? (uint32_t)__ldg(m.codebook + (size_t)r * m.k + i) : 0u;
    c01 = c[0] | (c[1] << 16), c23 = c[2] | (c[3] << 16);
}

/* PRMT through inline PTX: the __byte_perm intrinsic masks every selector
 * nibble to 3 bits (one extra LOP3 per lookup, seen in the v4 SASS); our
 * selectors never set a nibble's bit 3, so the mask is wasted ALU work. */
__device__ __forceinline__ uint32_t cbk_prmt(uint32_t a, uint32_t b, uint32_t sel) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
    return d;
}

/* D (16x8 fp32) += A (16x16 fp16, row) * B (16x8 fp16, col). */
__device__ __forceinline__ void cbk_mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                             uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    /* m16n8k16 needs sm_80+. Hosts check the compiled PTX version
     * (cudaFuncGetAttributes) and never launch this kernel then. */
    __trap();
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

} /* namespace opc_cuda */

#endif /* OPC_CB_DEVICE_CUH */
