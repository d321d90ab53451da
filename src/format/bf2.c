/* Placeholder until the bf2 loader lands: reports UNSUPPORTED honestly. */
#include "loaders.h"

opc_status opc_load_bf2(const char *path, opc_model_desc *d) {
    (void)d;
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: bf2 models are not supported yet", path);
}
