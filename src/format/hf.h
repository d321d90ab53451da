/*
 * hf.h — the Hugging Face folder reader's internal entry points (the public
 * one is opc_load_hf in loaders.h). Split so tests and fuzzers can reach the
 * config parser and the weight mapping without a tokenizer.
 */
#ifndef OPC_HF_H
#define OPC_HF_H

#include "../model/model.h"

#include <stddef.h>

/* Parse a config.json image (json[0..len), need not be NUL-terminated) into c.
 * `what` names the file in messages. Errors: CORRUPT (bad JSON, a key of the
 * wrong JSON type or out of range: the message names the key), UNSUPPORTED
 * (architecture, rope_scaling type, activation), NOT_FOUND (required key).
 * Does not call opc_config_validate. */
opc_status opc_hf_parse_config(const char *json, size_t len, const char *what, opc_config *c);

/* Canonical tensor name for a Hugging Face parameter name, or 0 when the
 * name is not one we use (lm_head.weight maps to output.weight). */
int opc_hf_canonical_name(const char *hf_name, char *out, size_t cap);

/* config.json + safetensors (single file or sharded index) into d, with
 * every required tensor checked for presence and shape; no tokenizer. */
opc_status opc_hf_load_weights(const char *dir, opc_model_desc *d);

#endif /* OPC_HF_H */
