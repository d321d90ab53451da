/*
 * fuzz_tokenizer_json.c — libFuzzer target for the tokenizer.json loader
 * (opc_vocab_from_hf_json_buffer) and, when a file loads, the tokenizer built
 * from it: encode a fixed string and a slice of the input itself, decode the
 * ids, and stream them through the detokenizer.
 *
 * The tokenizer sources are compiled into this target so libFuzzer's
 * instrumentation covers them (the library itself is built without
 * -fsanitize=fuzzer).
 *
 *   ./build/fuzz/fuzz_tokenizer_json -max_total_time=60 fuzz/corpus/tokenizer_json
 */
#include "tokenizer/tokenizer.c"
#include "tokenizer/vocab_hf.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(const opc_tokenizer *t, const char *text, size_t len, int special) {
    opc_encode_opts o = {-1, special};
    int32_t *ids = NULL;
    size_t n = 0;
    if (opc_tokenizer_encode_alloc(t, text, len, &o, &ids, &n) != OPC_OK) return;
    char *back = NULL;
    if (opc_tokenizer_decode(t, ids, n, special, &back, NULL) == OPC_OK) free(back);
    opc_detok d;
    opc_detok_init(&d, t);
    size_t cap = opc_tokenizer_max_token_bytes(t) + 8;
    char *out = malloc(cap);
    if (out) {
        for (size_t i = 0; i < n; i++) (void)opc_detok_push(&d, ids[i], 0, out, cap);
        (void)opc_detok_flush(&d, out, cap);
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opc_vocab v;
    memset(&v, 0, sizeof v);
    if (opc_vocab_from_hf_json_buffer((const char *)data, size, "fuzz/tokenizer.json", &v) == OPC_OK) {
        opc_tokenizer *t = NULL;
        if (opc_tokenizer_init(&t, &v) == OPC_OK) {
            static const char s[] = "Hello w\xc3\xb6rld 123 <s> \xf0\x9f\x98\x80\n\tdon't  x\xff";
            exercise(t, s, sizeof s - 1, 1);
            exercise(t, s, sizeof s - 1, 0);
            exercise(t, (const char *)data, size < 256 ? size : 256, 1);
            opc_tokenizer_free(t);
        }
    }
    opc_vocab_free(&v);
    return 0;
}
