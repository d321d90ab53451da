/* Placeholder until the hf loader lands: reports UNSUPPORTED honestly. */
#include "loaders.h"

opc_status opc_load_hf(const char *dir, opc_model_desc *d) {
    (void)d;
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: hf models are not supported yet", dir);
}
