/*
 * membw.cu — the GPU's memory bandwidth, measured in the same run as a
 * benchmark (the roofline of a memory-bound decode): a device-to-device
 * cudaMemcpyAsync, timed with events. Reported as read + write bytes per
 * second, the number vendors and llama.cpp's issue tables quote as "copy".
 */
#include "cuda_api.h"

#include <cuda_runtime.h>

extern "C" opc_status opc_cuda_copy_bw(size_t bytes, int reps, double *gb_s) {
    *gb_s = 0.0;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    opc_status st = OPC_OK;
    float best_ms = 0.0f;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
        st = opc_error(OPC_ERR_CUDA, "copy probe: cannot allocate 2 x %zu bytes on the GPU", bytes);
        goto out;
    }
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
        st = opc_error(OPC_ERR_CUDA, "copy probe: cudaEventCreate failed");
        goto out;
    }
    cudaMemset(a, 1, bytes);
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0); /* warm-up */
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        float ms = 0.0f;
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
            st = opc_error(OPC_ERR_CUDA, "copy probe: %s", cudaGetErrorString(cudaGetLastError()));
            goto out;
        }
        if (r == 0 || ms < best_ms) best_ms = ms;
    }
    if (best_ms > 0.0f) *gb_s = 2.0 * (double)bytes / ((double)best_ms * 1e-3) / 1e9;
out:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return st;
}
