/*
 * loaders.h — one entry point per source format, each filling an
 * opc_model_desc (see model/model.h) that the caller has zero-initialised with
 * `path` set. On failure the caller frees the partial description with
 * opc_model_desc_free, so a loader may leave it half-filled.
 */
#ifndef OPC_LOADERS_H
#define OPC_LOADERS_H

#include "../model/model.h"

opc_status opc_load_gguf(const char *path, opc_model_desc *d);
opc_status opc_load_hf(const char *dir, opc_model_desc *d);
/* tokenizer_bin may be NULL: then tokenizer.bin or tok<vocab>.bin beside the checkpoint. */
opc_status opc_load_llama2c(const char *ckpt, const char *tokenizer_bin, opc_model_desc *d);
opc_status opc_load_bf2(const char *path, opc_model_desc *d);

#endif
