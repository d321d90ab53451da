/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader and the GGUF model loader.
 *
 * Each input is parsed from memory with opc_gguf_open_memory, and everything
 * the handle offers is walked: every metadata entry through every typed
 * accessor, every string array element, every tensor's first row through its
 * dequantizer. Inputs that start with the GGUF magic are also loaded as a
 * model (config, vocab, tensors, RoPE un-permutation) through an in-memory
 * file (memfd), so opc_load_gguf sees a real path without touching the disk.
 *
 *   CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *   cmake --build build/fuzz --target fuzz_gguf
 *   ./build/fuzz/fuzz_gguf -max_total_time=60 corpus-dir fuzz/corpus/gguf
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "format/loaders.h"
#include "model/model.h"
#include "quant/types.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROW_CAP 65536
static float g_row[ROW_CAP];

static void walk(const opc_gguf *g) {
    volatile uint64_t sink = 0;
    for (int64_t i = 0; i < opc_gguf_n_kv(g); i++) {
        const char *key;
        uint64_t klen;
        opc_gguf_vtype t;
        if (opc_gguf_kv_at(g, i, &key, &klen, &t) != OPC_OK) continue;
        char k[256];
        if (klen >= sizeof k) continue;
        memcpy(k, key, (size_t)klen);
        k[klen] = '\0';
        int64_t iv;
        double fv;
        int bv;
        const char *s;
        uint64_t n;
        if (opc_gguf_get_int(g, k, &iv) == OPC_OK) sink += (uint64_t)iv;
        if (opc_gguf_get_float(g, k, &fv) == OPC_OK) sink += (uint64_t)(fv == fv);
        if (opc_gguf_get_bool(g, k, &bv) == OPC_OK) sink += (uint64_t)bv;
        if (opc_gguf_get_str(g, k, &s, &n) == OPC_OK && n) sink += (uint8_t)s[n - 1];
        opc_gguf_vtype et;
        if (opc_gguf_get_arr_info(g, k, &et, &n) == OPC_OK) {
            if (et == OPC_GGUF_STRING) {
                for (uint64_t j = 0; j < n; j++) {
                    const char *e;
                    uint64_t el;
                    if (opc_gguf_get_arr_str(g, k, j, &e, &el) == OPC_OK && el) sink += (uint8_t)e[el - 1];
                }
            } else if (n <= 4096) {
                int32_t ia[4096];
                float fa[4096];
                if (opc_gguf_get_arr_i32(g, k, ia, n) == OPC_OK && n) sink += (uint64_t)ia[n - 1];
                if (opc_gguf_get_arr_f32(g, k, fa, n) == OPC_OK && n) sink += (uint64_t)(fa[0] == fa[0]);
            }
        }
    }
    for (int64_t i = 0; i < opc_gguf_n_tensors(g); i++) {
        opc_gguf_tensor_info ti;
        if (opc_gguf_tensor_at(g, i, &ti) != OPC_OK) continue;
        if (ti.type == OPC_TYPE_COUNT || ti.ne[0] > ROW_CAP || ti.nbytes == 0) continue;
        /* the first row lies inside the tensor, which lies inside the buffer */
        if (opc_dequantize(ti.type, ti.data, g_row, (int64_t)ti.ne[0]) == OPC_OK && ti.ne[0])
            sink += (uint64_t)(g_row[ti.ne[0] - 1] == 0.0f);
    }
    (void)sink;
}

static int g_memfd = -1;

static void load_model(const uint8_t *data, size_t size) {
    if (g_memfd < 0) g_memfd = memfd_create("fuzz_gguf", 0);
    if (g_memfd < 0) return;
    if (ftruncate(g_memfd, 0) != 0 || pwrite(g_memfd, data, size, 0) != (ssize_t)size) return;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_memfd);
    opc_model_desc *d = calloc(1, sizeof *d);
    if (!d) return;
    snprintf(d->path, sizeof d->path, "%s", path);
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    if (opc_load_gguf(path, d) == OPC_OK) {
        /* touch every tensor's last byte and the vocab */
        volatile uint8_t sink = 0;
        for (int32_t i = 0; i < d->n_tensors; i++)
            if (d->tensors[i].nbytes) sink ^= ((const uint8_t *)d->tensors[i].data)[d->tensors[i].nbytes - 1];
        for (int32_t i = 0; i < d->vocab.n_tokens; i++)
            if (d->vocab.token_len[i]) sink ^= (uint8_t)d->vocab.tokens[i][d->vocab.token_len[i] - 1];
        (void)sink;
    }
    opc_model_desc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exactly-sized heap copy so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    opc_gguf *g = NULL;
    if (opc_gguf_open_memory(copy, size, "fuzz.gguf", &g) == OPC_OK) walk(g);
    opc_gguf_close(g);
    free(copy);
    if (size >= 4 && !memcmp(data, "GGUF", 4)) load_model(data, size);
    return 0;
}
