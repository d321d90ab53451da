/*
 * fuzz_hfconfig.c — libFuzzer target for the Hugging Face config.json parser
 * (opc_hf_parse_config) and the HF -> canonical tensor name mapping.
 *
 * hf.c and safetensors.c (its strict JSON helper) are compiled into this
 * target so libFuzzer's instrumentation covers them (the library itself is
 * built without -fsanitize=fuzzer).
 *
 *   ./build/fuzz/fuzz_hfconfig -max_total_time=60 fuzz/corpus/hfconfig
 */
#include "format/safetensors.c"
#include "format/hf.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    opc_config c;
    if (opc_hf_parse_config((const char *)data, size, "fuzz/config.json", &c) == OPC_OK)
        (void)opc_config_validate(&c, "fuzz/config.json");
    /* the same bytes as a tensor name */
    char name[256], out[OPC_MAX_NAME];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    (void)opc_hf_canonical_name(name, out, sizeof out);
    return 0;
}
