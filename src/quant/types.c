/*
 * types.c — the type-traits table (see types.h).
 */
#include "types.h"

#include "../core/half.h"
#include "../core/core.h"

#include <string.h>

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = opc_fp16_to_fp32(h);
    }
}
static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = opc_bf16_to_fp32(h);
    }
}

/* Block-quantized dequantizers live in ggml_quants.c (GGUF formats). */
void opc_dequant_q8_0(const void *src, float *dst, int64_t n);
void opc_dequant_q4_0(const void *src, float *dst, int64_t n);
void opc_dequant_q4_1(const void *src, float *dst, int64_t n);
void opc_dequant_q5_0(const void *src, float *dst, int64_t n);
void opc_dequant_q5_1(const void *src, float *dst, int64_t n);
void opc_dequant_q4_k(const void *src, float *dst, int64_t n);
void opc_dequant_q5_k(const void *src, float *dst, int64_t n);
void opc_dequant_q6_k(const void *src, float *dst, int64_t n);

static const opc_type_traits g_traits[OPC_TYPE_COUNT] = {
    [OPC_TYPE_F32] = {"f32", 1, 4, false, f32_to_float},
    [OPC_TYPE_F16] = {"f16", 1, 2, false, f16_to_float},
    [OPC_TYPE_BF16] = {"bf16", 1, 2, false, bf16_to_float},
    [OPC_TYPE_Q8_0] = {"q8_0", 32, 34, true, opc_dequant_q8_0},
    [OPC_TYPE_Q4_0] = {"q4_0", 32, 18, true, opc_dequant_q4_0},
    [OPC_TYPE_Q4_1] = {"q4_1", 32, 20, true, opc_dequant_q4_1},
    [OPC_TYPE_Q5_0] = {"q5_0", 32, 22, true, opc_dequant_q5_0},
    [OPC_TYPE_Q5_1] = {"q5_1", 32, 24, true, opc_dequant_q5_1},
    [OPC_TYPE_Q4_K] = {"q4_k", 256, 144, true, opc_dequant_q4_k},
    [OPC_TYPE_Q5_K] = {"q5_k", 256, 176, true, opc_dequant_q5_k},
    [OPC_TYPE_Q6_K] = {"q6_k", 256, 210, true, opc_dequant_q6_k},
    /* codebook types: blck/type size describe the index stream only */
    [OPC_TYPE_CB2] = {"cb2", 64, 16, true, NULL},
    [OPC_TYPE_CB4] = {"cb4", 64, 32, true, NULL},
};

const opc_type_traits *opc_type_get(opc_type t) {
    if ((int)t < 0 || t >= OPC_TYPE_COUNT || !g_traits[t].name) return NULL;
    return &g_traits[t];
}

opc_status opc_type_row_bytes(opc_type t, int64_t n, uint64_t *out) {
    *out = 0;
    const opc_type_traits *tr = opc_type_get(t);
    if (!tr) return opc_error(OPC_ERR_UNSUPPORTED, "unknown tensor type id %d", (int)t);
    if (n < 0 || n % tr->blck_size)
        return opc_error(OPC_ERR_INVALID_ARG, "%lld elements is not a multiple of the %s block size %d",
                         (long long)n, tr->name, tr->blck_size);
    uint64_t blocks = (uint64_t)(n / tr->blck_size);
    if (!opc_mul_ok(blocks, (uint64_t)tr->type_size, out))
        return opc_error(OPC_ERR_INVALID_ARG, "row size overflows");
    return OPC_OK;
}

opc_status opc_dequantize(opc_type t, const void *src, float *dst, int64_t n) {
    const opc_type_traits *tr = opc_type_get(t);
    if (!tr || !tr->to_float) return opc_error(OPC_ERR_UNSUPPORTED, "no dequantizer for type id %d", (int)t);
    if (n < 0 || n % tr->blck_size)
        return opc_error(OPC_ERR_INVALID_ARG, "%lld elements is not a multiple of the %s block size %d",
                         (long long)n, tr->name, tr->blck_size);
    tr->to_float(src, dst, n);
    return OPC_OK;
}
