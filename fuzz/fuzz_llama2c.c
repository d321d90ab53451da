/*
 * fuzz_llama2c.c — libFuzzer target for the llama2.c checkpoint reader
 * (opc_load_llama2c: header checks, exact-size check, tensor views, RoPE
 * un-permutation of Q/K).
 *
 * The loader takes paths, so each input is written to an in-memory file
 * (memfd) and opened as /proc/self/fd/N. The tokenizer is passed explicitly:
 * a valid tokenizer.bin with TOK_N one-byte pieces, written once at start-up
 * to a second memfd, so every checkpoint whose vocab_size is at most TOK_N can
 * load completely (the reader reads exactly vocab_size pieces and ignores the
 * rest). The tokenizer.bin reader itself is fuzzed by fuzz_tokenizer_bin.
 * After a load, every tensor's first and last float is read, successful or
 * not (a failed load may leave tensors half-set: only set ones are touched).
 *
 * With no magic, the loader rejects any file whose size is not exactly what
 * the header implies, so almost every mutation stops at that check. Each input
 * is therefore loaded a second time resized (truncated or zero-padded) to the
 * size its header implies, when that is at most FIT_MAX bytes: the fuzzer then
 * explores header combinations through the tensor views and the Q/K RoPE
 * un-permutation too. The size formula below mirrors the file layout in
 * src/format/llama2c.c; if it disagrees, the loader just rejects the input.
 *
 *   CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *   cmake --build build/fuzz --target fuzz_llama2c
 *   ./build/fuzz/fuzz_llama2c -max_total_time=60 corpus-dir fuzz/corpus/llama2c
 */
#define _GNU_SOURCE
#include "format/loaders.h"
#include "model/model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOK_N 4096
#define FIT_MAX (256u * 1024u)

static int g_ckpt_fd = -1;
static char g_tok_path[64];

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* tokenizer.bin: int32 max_len = 1, then TOK_N x {f32 score 0, int32 len 1, 1 byte} */
    static uint8_t tok[4 + TOK_N * 9];
    put_u32(tok, 1);
    for (uint32_t i = 0; i < TOK_N; i++) {
        uint8_t *e = tok + 4 + i * 9;
        put_u32(e, 0);     /* score 0.0f */
        put_u32(e + 4, 1); /* len */
        e[8] = (uint8_t)('a' + i % 26);
    }
    int fd = memfd_create("fuzz_llama2c_tok", 0);
    if (fd < 0 || pwrite(fd, tok, sizeof tok, 0) != (ssize_t)sizeof tok) {
        fprintf(stderr, "fuzz_llama2c: cannot write the tokenizer memfd\n");
        exit(1); /* the harness, not the library: nothing to fuzz without it */
    }
    snprintf(g_tok_path, sizeof g_tok_path, "/proc/self/fd/%d", fd);
    g_ckpt_fd = memfd_create("fuzz_llama2c_ckpt", 0);
    if (g_ckpt_fd < 0) {
        fprintf(stderr, "fuzz_llama2c: cannot create the checkpoint memfd\n");
        exit(1);
    }
    return 0;
}

static int32_t get_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/* Bytes the header implies (layout in src/format/llama2c.c), or 0 when a
 * field is out of the small range this harness resizes for. */
static uint64_t implied_size(const uint8_t *data) {
    int64_t f[7];
    for (int i = 0; i < 7; i++) f[i] = get_i32(data + 4 * i);
    for (int i = 0; i < 7; i++)
        if (i != 5 && (f[i] <= 0 || f[i] > 4096)) return 0;
    const int64_t vocab = f[5] < 0 ? -f[5] : f[5];
    if (vocab == 0 || vocab > 65536) return 0;
    const uint64_t dim = (uint64_t)f[0], hid = (uint64_t)f[1], nl = (uint64_t)f[2];
    const uint64_t hd = dim / (uint64_t)f[3], kv = (uint64_t)f[4] * hd, v = (uint64_t)vocab;
    /* every factor is at most 2^16, so no product below can overflow */
    uint64_t n = nl * (dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hid * dim);
    n += v * dim + dim + (uint64_t)f[6] * hd + (f[5] < 0 ? v * dim : 0);
    return 28u + 4u * n;
}

static void load(const uint8_t *data, size_t size) {
    if (ftruncate(g_ckpt_fd, 0) != 0 || (size && pwrite(g_ckpt_fd, data, size, 0) != (ssize_t)size)) return;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_ckpt_fd);
    opc_model_desc *d = calloc(1, sizeof *d);
    if (!d) return;
    snprintf(d->path, sizeof d->path, "%s", path);
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    const int ok = opc_load_llama2c(path, g_tok_path, d) == OPC_OK;
    volatile float sink = 0.0f;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (!t->data || t->nbytes < 4) continue;
        const float *f = (const float *)t->data;
        sink += f[0] + f[t->nbytes / 4 - 1];
    }
    if (ok) {
        volatile uint8_t s8 = 0;
        for (int32_t i = 0; i < d->vocab.n_tokens; i++)
            if (d->vocab.token_len[i]) s8 ^= (uint8_t)d->vocab.tokens[i][d->vocab.token_len[i] - 1];
        (void)s8;
    }
    (void)sink;
    opc_model_desc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load(data, size);
    if (size < 28) return 0;
    const uint64_t want = implied_size(data);
    if (want == 0 || want > FIT_MAX || want == size) return 0;
    uint8_t *fit = calloc(1, (size_t)want); /* zero padding past the input */
    if (!fit) return 0;
    memcpy(fit, data, size < want ? size : (size_t)want);
    load(fit, (size_t)want);
    free(fit);
    return 0;
}
