/*
 * fuzz_bf2.c — libFuzzer target for the .bf2 reader (opc_bf2_load_mem).
 *
 * Random bytes almost never pass the header and metadata checksums, so each
 * input is parsed twice: as given (exercising the checksum checks), and with
 * the two hashes recomputed over the mutated bytes, so mutations reach the
 * structural parser (config, tokenizer, tensor directory, CSR validation).
 * The second parse alternates between verifying tensor hashes and the
 * skip-verify fast path.
 *
 * Build: CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *        cmake --build build/fuzz --target fuzz_bf2
 * Run:   build/fuzz/fuzz_bf2 fuzz/corpus/bf2
 * Seeds: fixture.bf2 (every tensor type, outliers), variants.bf2 (codebook
 * tflags: group scales and rotation; written by tests/test_bf2.c).
 */
#include "core/checksum.h"
#include "format/bf2.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void parse(const uint8_t *img, size_t n, uint32_t flags) {
    opc_model_desc *d = calloc(1, sizeof *d);
    if (!d) return;
    opc_status st = opc_bf2_load_mem(img, n, flags, "fuzz", d);
    /* on success, touch every codebook view through the reference dequantizer
     * and GEMV, the input rotated as the view says (group scales and rotation
     * blocks come from tflags); a failed load leaves a partial description
     * that only _free may touch */
    for (int32_t i = 0; st == OPC_OK && i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if ((t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) && t->cb.cols <= 4096 && t->cb.rows <= 64) {
            float row[4096], x[4096], y[64];
            for (int64_t r = 0; r < t->cb.rows; r++) opc_cb_dequant_row_ref(&t->cb, r, row);
            for (int64_t c = 0; c < t->cb.cols; c++) x[c] = (float)(c % 7) - 3.0f;
            opc_cb_rotate(x, t->cb.cols, t->cb.rot_log2);
            opc_cb_gemv_ref(&t->cb, x, y);
        }
    }
    opc_model_desc_free(d);
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the reader needs a 64-byte aligned image (views of u32/fp16 arrays) */
    uint8_t *img = aligned_alloc(64, (size + 64) & ~(size_t)63);
    if (!img) return 0;
    memcpy(img, data, size);
    parse(img, size, 0);
    if (size >= 64) {
        uint64_t meta_off = get64(img + 24), meta_size = get64(img + 32);
        if (meta_off <= size && meta_size <= size - meta_off)
            put64(img + 40, opc_xxh64(img + meta_off, (size_t)meta_size, 0));
        put64(img + 56, opc_xxh64(img, 56, 0));
        parse(img, size, (size & 1) ? OPC_BF2_SKIP_VERIFY : 0);
    }
    free(img);
    return 0;
}
