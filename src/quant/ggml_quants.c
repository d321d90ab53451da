/*
 * ggml_quants.c — scalar reference dequantizers for the GGUF block formats
 * (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).
 *
 * The block structs mirror ggml's on-disk layouts byte for byte; each has a
 * _Static_assert on its size because a file's tensor bytes are read through
 * them directly. fp16 fields are stored as raw uint16_t and converted with
 * opc_fp16_to_fp32 (exact), and each product is computed in the same order as
 * ggml's dequantize_row_* (scale first, then times the quant, then the min) so
 * results are bit-identical to ggml and to gguf-py's numpy reference.
 *
 * Byte order: GGUF is little-endian and so is every host we build for; the
 * multi-byte fields (fp16 scales, Q5's 32-bit high-bit mask) are assembled
 * from bytes, so the code does not depend on host endianness anyway.
 *
 * n is always a multiple of the block size (checked by opc_dequantize).
 */
#include "types.h"

#include "../core/half.h"

#include <stdint.h>

#define QK 32    /* elements per block of the legacy formats */
#define QK_K 256 /* elements per super-block of the k-quants */
#define K_SCALE_SIZE 12

static inline float le_f16(const uint8_t b[2]) {
    return opc_fp16_to_fp32((uint16_t)(b[0] | (b[1] << 8)));
}

/* -------------------------------------------------------- legacy blocks -- */

/* y = d * q, q signed 8-bit */
typedef struct {
    uint8_t d[2];     /* fp16 scale */
    int8_t qs[QK];    /* quants */
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* y = d * (q - 8); byte j holds element j (low nibble) and j + 16 (high) */
typedef struct {
    uint8_t d[2];
    uint8_t qs[QK / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* y = d * q + m */
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qs[QK / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

/* y = d * (q - 16), q = 4 low bits from qs + bit 4 from qh (bit j of the LE u32) */
typedef struct {
    uint8_t d[2];
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

/* y = d * q + m, 5-bit q as in q5_0 */
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

void opc_dequant_q8_0(const void *src, float *dst, int64_t n);
void opc_dequant_q4_0(const void *src, float *dst, int64_t n);
void opc_dequant_q4_1(const void *src, float *dst, int64_t n);
void opc_dequant_q5_0(const void *src, float *dst, int64_t n);
void opc_dequant_q5_1(const void *src, float *dst, int64_t n);
void opc_dequant_q4_k(const void *src, float *dst, int64_t n);
void opc_dequant_q5_k(const void *src, float *dst, int64_t n);
void opc_dequant_q6_k(const void *src, float *dst, int64_t n);

void opc_dequant_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *x = src;
    for (int64_t b = 0; b < n / QK; b++, dst += QK) {
        const float d = le_f16(x[b].d);
        for (int j = 0; j < QK; j++) dst[j] = (float)x[b].qs[j] * d;
    }
}

void opc_dequant_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *x = src;
    for (int64_t b = 0; b < n / QK; b++, dst += QK) {
        const float d = le_f16(x[b].d);
        for (int j = 0; j < QK / 2; j++) {
            dst[j] = (float)((x[b].qs[j] & 0x0f) - 8) * d;
            dst[j + QK / 2] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void opc_dequant_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *x = src;
    for (int64_t b = 0; b < n / QK; b++, dst += QK) {
        const float d = le_f16(x[b].d), m = le_f16(x[b].m);
        for (int j = 0; j < QK / 2; j++) {
            dst[j] = (float)(x[b].qs[j] & 0x0f) * d + m;
            dst[j + QK / 2] = (float)(x[b].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t le_u32(const uint8_t b[4]) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

void opc_dequant_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *x = src;
    for (int64_t b = 0; b < n / QK; b++, dst += QK) {
        const float d = le_f16(x[b].d);
        const uint32_t qh = le_u32(x[b].qh);
        for (int j = 0; j < QK / 2; j++) {
            /* bit j of qh is bit 4 of element j, bit j+16 of element j+16 */
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            dst[j] = (float)(((x[b].qs[j] & 0x0f) | h0) - 16) * d;
            dst[j + QK / 2] = (float)(((x[b].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

void opc_dequant_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *x = src;
    for (int64_t b = 0; b < n / QK; b++, dst += QK) {
        const float d = le_f16(x[b].d), m = le_f16(x[b].m);
        const uint32_t qh = le_u32(x[b].qh);
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            dst[j] = (float)((x[b].qs[j] & 0x0f) | h0) * d + m;
            dst[j + QK / 2] = (float)((x[b].qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* ------------------------------------------------------------- k-quants -- */

/* 8 sub-blocks of 32; each has a 6-bit scale and a 6-bit min packed into
 * `scales`; y = d * sc * q - dmin * m */
typedef struct {
    uint8_t d[2];                    /* fp16 super-block scale for the scales */
    uint8_t dmin[2];                 /* fp16 super-block scale for the mins */
    uint8_t scales[K_SCALE_SIZE];    /* 8 x (6-bit scale, 6-bit min) */
    uint8_t qs[QK_K / 2];            /* 4-bit quants */
} block_q4_k;
_Static_assert(sizeof(block_q4_k) == 144, "block_q4_k size");

typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];            /* high (5th) bits */
    uint8_t qs[QK_K / 2];            /* low 4 bits */
} block_q5_k;
_Static_assert(sizeof(block_q5_k) == 176, "block_q5_k size");

/* 16 sub-blocks of 16 with signed 8-bit scales; y = d * sc * (q - 32) */
typedef struct {
    uint8_t ql[QK_K / 2];            /* low 4 bits */
    uint8_t qh[QK_K / 4];            /* high 2 bits */
    int8_t scales[QK_K / 16];
    uint8_t d[2];                    /* fp16 super-block scale */
} block_q6_k;
_Static_assert(sizeof(block_q6_k) == 210, "block_q6_k size");

/* Unpack the j-th (0..7) 6-bit scale and min of a q4_k/q5_k super-block:
 * the first four live in the low 6 bits of bytes 0..3 / 4..7; the last four
 * take their low 4 bits from bytes 8..11 and their top 2 bits from the spare
 * high bits of bytes 0..7. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void opc_dequant_q4_k(const void *src, float *dst, int64_t n) {
    const block_q4_k *x = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = le_f16(x[b].d), dmin = le_f16(x[b].dmin);
        const uint8_t *q = x[b].qs;
        /* 64 elements per step: 32 low nibbles (sub-block is), 32 high (is+1) */
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            scale_min_k4(is, x[b].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(is + 1, x[b].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void opc_dequant_q5_k(const void *src, float *dst, int64_t n) {
    const block_q5_k *x = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = le_f16(x[b].d), dmin = le_f16(x[b].dmin);
        const uint8_t *ql = x[b].qs, *qh = x[b].qh;
        /* the high bit of element l of 64-element step s is bit 2s (low half)
         * or 2s+1 (high half) of qh[l] */
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2)) {
            uint8_t sc, m;
            scale_min_k4(is, x[b].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(is + 1, x[b].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((ql[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

void opc_dequant_q6_k(const void *src, float *dst, int64_t n) {
    const block_q6_k *x = src;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = le_f16(x[b].d);
        const uint8_t *ql = x[b].ql, *qh = x[b].qh;
        const int8_t *sc = x[b].scales;
        /* two halves of 128; within a half, element l + 32k takes its low
         * nibble from ql[l] / ql[l+32] and its top 2 bits from qh[l] >> 2k */
        for (int half = 0; half < 2; half++, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * (float)sc[is + 0] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}
