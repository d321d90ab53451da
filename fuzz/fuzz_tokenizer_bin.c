/*
 * fuzz_tokenizer_bin.c — libFuzzer target for the llama2.c tokenizer.bin reader
 * (opc_vocab_from_llama2c).
 *
 * The reader takes a path, so each input is written to an in-memory file
 * (memfd) and opened as /proc/self/fd/N: no disk, no temp-file races between
 * parallel fuzzer processes. Each input is read twice: with vocab_size 0 (count
 * the entries to the end of the file) and with a small explicit vocab_size
 * taken from the input's last byte (read exactly that many, ignore the rest).
 * A vocabulary that loads is touched (every piece's last byte) and, when it
 * builds a tokenizer, a fixed string is encoded and decoded with it.
 *
 *   CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *   cmake --build build/fuzz --target fuzz_tokenizer_bin
 *   ./build/fuzz/fuzz_tokenizer_bin -max_total_time=60 corpus-dir fuzz/corpus/tokenizer_bin
 */
#define _GNU_SOURCE
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int g_memfd = -1;

static void use_vocab(const opc_vocab *v) {
    volatile uint8_t sink = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (v->token_len[i]) sink ^= (uint8_t)v->tokens[i][v->token_len[i] - 1];
        sink ^= (uint8_t)(v->scores[i] == v->scores[i]);
    }
    opc_tokenizer *t = NULL;
    if (opc_tokenizer_init(&t, v) == OPC_OK) {
        static const char text[] = "Once upon a time, <0x0A> \xc3\xa9\xff!";
        int32_t *ids = NULL;
        size_t n = 0;
        if (opc_tokenizer_encode_alloc(t, text, sizeof text - 1, NULL, &ids, &n) == OPC_OK) {
            char *out = NULL;
            size_t out_len = 0;
            if (opc_tokenizer_decode(t, ids, n, 0, &out, &out_len) == OPC_OK && out_len)
                sink ^= (uint8_t)out[out_len - 1];
            free(out);
        }
        free(ids);
    }
    opc_tokenizer_free(t);
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_memfd < 0) g_memfd = memfd_create("fuzz_tokenizer_bin", 0);
    if (g_memfd < 0) return 0;
    if (ftruncate(g_memfd, 0) != 0 || (size && pwrite(g_memfd, data, size, 0) != (ssize_t)size)) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_memfd);
    const int32_t sizes[2] = {0, size ? (int32_t)(data[size - 1] % 64u) : 1};
    for (int k = 0; k < 2; k++) {
        opc_vocab v;
        memset(&v, 0, sizeof v);
        if (opc_vocab_from_llama2c(path, sizes[k], &v) == OPC_OK) use_vocab(&v);
        opc_vocab_free(&v);
    }
    return 0;
}
