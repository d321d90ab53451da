/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors header parser.
 *
 * The parser source is compiled into this target (not only linked from the
 * library) so that libFuzzer's coverage instrumentation sees its branches:
 * the library itself is built without -fsanitize=fuzzer.
 *
 *   CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *   cmake --build build/fuzz --target fuzz_safetensors
 *   ./build/fuzz/fuzz_safetensors -max_total_time=60 fuzz/corpus/safetensors
 */
#include "format/safetensors.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opc_st_file *f = NULL;
    if (opc_st_open_mem(data, size, "fuzz.safetensors", &f) != OPC_OK) return 0;
    /* Everything open accepted must be safe to read in full. */
    float buf[64];
    for (int64_t i = 0; i < opc_st_count(f); i++) {
        const char *name = opc_st_name(f, i);
        if (opc_st_find(f, name) != i) __builtin_trap(); /* names are unique */
        opc_st_tensor t;
        if (opc_st_get(f, i, &t) != OPC_OK) continue;
        const uint8_t *p = t.data;
        if (t.nbytes && (p < data || p + t.nbytes > data + size)) __builtin_trap();
        uint64_t es = t.type == OPC_TYPE_F32 ? 4 : 2;
        int64_t n = (int64_t)(t.nbytes / es);
        for (int64_t k = 0; k < n; k += 64) opc_st_to_f32(&t, k, n - k < 64 ? n - k : 64, buf);
    }
    opc_st_close(f);
    return 0;
}
