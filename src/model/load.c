/*
 * load.c — open any supported model file/folder as an opc_model_desc.
 * Format detection by magic bytes (GGUF, .bf2) or folder contents (HF);
 * anything else that is a plausible llama2.c header is tried as llama2.c.
 */
#include "model.h"

#include "../format/loaders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static opc_status sniff(const char *path, uint8_t magic[8]) {
    memset(magic, 0, 8);
    FILE *f = fopen(path, "rb");
    if (!f) return opc_error(OPC_ERR_IO, "%s: cannot open", path);
    size_t n = fread(magic, 1, 8, f);
    fclose(f);
    if (n < 8) return opc_error(OPC_ERR_CORRUPT, "%s: file too short (%zu bytes) to be a model", path, n);
    return OPC_OK;
}

opc_status opc_model_desc_open(const char *path, opc_model_desc **out) {
    *out = NULL;
    if (!path || !*path) return opc_error(OPC_ERR_INVALID_ARG, "no model path given");
    opc_model_desc *d = calloc(1, sizeof *d);
    if (!d) return opc_error(OPC_ERR_NOMEM, "cannot allocate model description");
    snprintf(d->path, sizeof d->path, "%s", path);
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    opc_status st;
    if (opc_is_dir(path)) {
        d->format = OPC_SRC_HF;
        st = opc_load_hf(path, d);
    } else {
        uint8_t m[8];
        st = sniff(path, m);
        if (st == OPC_OK) {
            if (!memcmp(m, "GGUF", 4)) {
                d->format = OPC_SRC_GGUF;
                st = opc_load_gguf(path, d);
            } else if (!memcmp(m, "OPCBF2\0", 7)) {
                d->format = OPC_SRC_BF2;
                st = opc_load_bf2(path, d);
            } else {
                d->format = OPC_SRC_LLAMA2C;
                st = opc_load_llama2c(path, NULL, d);
            }
        }
    }
    if (st == OPC_OK) st = opc_config_validate(&d->cfg, path);
    if (st != OPC_OK) {
        opc_model_desc_free(d);
        return st;
    }
    *out = d;
    return OPC_OK;
}
