/* Placeholder until the gguf loader lands: reports UNSUPPORTED honestly. */
#include "loaders.h"

opc_status opc_load_gguf(const char *path, opc_model_desc *d) {
    (void)d;
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: gguf models are not supported yet", path);
}
