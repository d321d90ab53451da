/*
 * types.h — the one table of tensor element types (like ggml's type traits).
 *
 * In-memory type ids (opc_type) are NOT on-disk ids: each file format maps its
 * own frozen ids to these (GGUF's ggml_type, safetensors' dtype strings, .bf2's
 * append-only type ids).
 *
 * Block types store a row of n elements as n / blck_size blocks of type_size
 * bytes each; a row must be a whole number of blocks. The scalar dequantizer
 * in each entry is the specification every faster kernel is tested against.
 */
#ifndef OPC_TYPES_H
#define OPC_TYPES_H

#include "opacc1ty.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum opc_type {
    OPC_TYPE_F32 = 0,
    OPC_TYPE_F16,
    OPC_TYPE_BF16,
    OPC_TYPE_Q8_0,
    OPC_TYPE_Q4_0,
    OPC_TYPE_Q4_1,
    OPC_TYPE_Q5_0,
    OPC_TYPE_Q5_1,
    OPC_TYPE_Q4_K,
    OPC_TYPE_Q5_K,
    OPC_TYPE_Q6_K,
    /* codebook types (.bf2): per-row fp16 codebooks + packed indices, see cb.h.
     * Their opc_tensor carries an opc_cb_matrix view; to_float is NULL (use
     * opc_cb_dequant_row_ref). */
    OPC_TYPE_CB2, /* 2-bit indices, k <= 4 (2-bit; k = 3 is ternary-like) */
    OPC_TYPE_CB4, /* 4-bit indices, k <= 16 (3-bit k=8 and 4-bit k=16) */
    OPC_TYPE_COUNT
} opc_type;

/* Dequantize n consecutive elements (n is a multiple of blck_size). */
typedef void (*opc_to_float_fn)(const void *src, float *dst, int64_t n);

typedef struct opc_type_traits {
    const char *name;      /* "f32", "q4_1", ... */
    int32_t blck_size;     /* elements per block (1 for plain floats) */
    int32_t type_size;     /* bytes per block */
    bool is_quantized;
    opc_to_float_fn to_float; /* scalar reference dequantizer; NULL if none */
} opc_type_traits;

/* Traits for a type; NULL for an out-of-range id. */
const opc_type_traits *opc_type_get(opc_type t);

/* Bytes needed for a row of n elements; 0 and INVALID_ARG error if n is not
 * a multiple of the block size. */
opc_status opc_type_row_bytes(opc_type t, int64_t n, uint64_t *out);

/* Dequantize `n` elements starting at the beginning of `src` into dst.
 * n must be a multiple of the block size. */
opc_status opc_dequantize(opc_type t, const void *src, float *dst, int64_t n);

#endif /* OPC_TYPES_H */
