/* Placeholder until the llama2.c loader lands: reports UNSUPPORTED honestly. */
#include "loaders.h"

opc_status opc_load_llama2c(const char *ckpt, const char *tokenizer_bin, opc_model_desc *d) {
    (void)d;
    (void)tokenizer_bin;
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: unrecognised model file (not GGUF, .bf2 or llama2.c)", ckpt);
}
