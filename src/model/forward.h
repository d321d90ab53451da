/*
 * forward.h — the CPU reference forward pass of a Llama-family decoder
 * (Llama 1/2/3, Mistral, SmolLM2, Qwen2) over an opc_model_desc.
 *
 * This is the yardstick every other number in the project is measured with:
 * fp32 activations, fp32 weights (every block-quantized type is dequantized
 * once at init), fp32 KV cache. Codebook tensors (CB2/CB4) stay packed and go
 * through opc_cb_matmul; F16 tensors (the tied head of a .bf2 file, synth/HF
 * f16 weights) are used in place and converted to fp32 inside the matmul, which
 * halves the bytes read for them per token. The environment variable
 * OPC_F16_AS_F32=1 restores the old fp32 expansion at init (for A/B timing).
 *
 * Usage:
 *   opc_forward *f;
 *   opc_forward_init(&f, desc, ctx, max_batch, n_threads);
 *   opc_forward(f, prompt, n_prompt, 0, logits, OPC_LOGITS_LAST);   // prefill
 *   opc_forward(f, &tok, 1, n_prompt, logits, OPC_LOGITS_LAST);      // decode
 *   opc_forward_free(f);
 *
 * All buffers (activations for max_batch tokens, KV cache for ctx positions,
 * attention scratch) are allocated by opc_forward_init: opc_forward itself
 * never allocates. A call with n > max_batch is processed in slices of
 * max_batch tokens.
 *
 * Threads: OpenMP, n_threads per parallel region (<= 0: OpenMP's default).
 * One opc_forward handle must not be used by two threads at once.
 */
#ifndef OPC_FORWARD_H
#define OPC_FORWARD_H

#include "model.h"

#include <stdint.h>

typedef struct opc_forward opc_forward;

/* Which logits opc_forward writes. */
typedef enum opc_logits_mode {
    OPC_LOGITS_NONE = 0, /* only fill the KV cache (logits_out may be NULL) */
    OPC_LOGITS_LAST = 1, /* logits_out: (vocab) for the last of the n tokens */
    OPC_LOGITS_ALL = 2   /* logits_out: (n, vocab), row i for token i */
} opc_logits_mode;

/* Prepare a forward pass for `d` with a KV cache of `ctx` positions and
 * batches of up to `max_batch` tokens per matrix-matrix step.
 * `d` must outlive the handle (codebook and f32 weights are used in place).
 * Errors: INVALID_ARG (ctx/max_batch <= 0), NOT_FOUND/CORRUPT (missing tensor
 * or wrong shape, naming it), UNSUPPORTED (a weight type without a
 * dequantizer), NOMEM. */
opc_status opc_forward_init(opc_forward **out, const opc_model_desc *d, int32_t ctx,
                            int32_t max_batch, int32_t n_threads);
void opc_forward_free(opc_forward *f); /* NULL-safe */

/* Run tokens[0..n) at positions pos..pos+n-1 (the KV cache keeps positions
 * < pos from earlier calls; calling with a smaller pos rewinds it).
 * Errors: INVALID_ARG (pos + n > ctx, a token id out of [0, vocab), n <= 0). */
opc_status opc_forward_run(opc_forward *f, const int32_t *tokens, int32_t n, int32_t pos,
                           float *logits_out, opc_logits_mode mode);

/* Accessors */
const opc_config *opc_forward_config(const opc_forward *f);
int32_t opc_forward_ctx(const opc_forward *f);
int32_t opc_forward_max_batch(const opc_forward *f);

/* Memory the handle owns, in bytes: dequantized fp32 weights, KV cache, and
 * activation/scratch buffers (for `generate --verbose` / info). */
typedef struct opc_forward_mem {
    uint64_t weights_f32;  /* weights dequantized to fp32 at init (owned copies) */
    uint64_t weights_view; /* weights used in place (f32 and f16 in the file,
                              codebook tensors; a tied embedding/head once) */
    uint64_t kv_cache;
    uint64_t scratch;
    uint64_t weights_f16;  /* the part of weights_view that is fp16, widened to fp32
                              inside the matmul (half the bytes of an fp32 copy) */
} opc_forward_mem;
opc_forward_mem opc_forward_memory(const opc_forward *f);

/* ------------------------------------------------- calibration hook ------ */

/* Called with the input activations X (n, cols) of a linear layer, just
 * before its matmul, for every linear weight of every layer:
 *   blk.N.attn_q/attn_k/attn_v.weight  (one call each, with the same X: the
 *                                        normed hidden state)
 *   blk.N.attn_output.weight           (attention output, n_heads*head_dim)
 *   blk.N.ffn_gate/ffn_up.weight       (one call each, same X)
 *   blk.N.ffn_down.weight              (silu(gate) * up, hidden_dim)
 *   output.weight                      (layer = n_layers; the final normed
 *                                        state; named "output.weight" even
 *                                        when the head is tied to token_embd)
 * The output head is only called for the rows whose logits are computed
 * (the last row in OPC_LOGITS_LAST, none in OPC_LOGITS_NONE).
 * X is only valid during the call. With a NULL hook nothing is called. */
typedef void (*opc_act_hook)(void *user, int layer, const char *tensor_name, const float *X,
                             int n, int cols);
void opc_forward_set_act_hook(opc_forward *f, opc_act_hook hook, void *user);

/* Inverse frequency of rotary pair i (0 <= i < head_dim/2) with the model's
 * rope scaling (HF's "default", "linear", "llama3"); the one definition the
 * CPU and CUDA passes both build their cos/sin tables from. */
double opc_rope_inv_freq(const opc_config *c, int i);

/* ------------------------------------------------- matmul dispatch ------- */

/* A weight as the forward pass uses it: fp32 rows, fp16 rows, or a packed
 * codebook. */
typedef struct opc_weight {
    opc_type type;       /* OPC_TYPE_F32, OPC_TYPE_F16, OPC_TYPE_CB2 or OPC_TYPE_CB4 */
    int64_t rows, cols;
    const float *f32;    /* (rows, cols) when type == F32 */
    const opc_cb_matrix *cb; /* when CB2/CB4 */
    const uint16_t *f16; /* (rows, cols) IEEE half bits when type == F16 */
} opc_weight;

/* Y (T, rows) = X (T, cols) · Wᵀ — ONE call for a whole batch of T
 * activation rows (prefill is matrix-matrix). The single place where the
 * forward pass multiplies by a weight: fp32 and fp16 go to a blocked,
 * OpenMP-parallel kernel (fp16 converted in registers: AVX2+F16C, or the
 * scalar half.h conversion); codebook weights go to opc_cb_matmul (src/cpu dispatches it). */
void opc_matmul(const opc_weight *w, const float *X, int64_t T, float *Y, int n_threads);

#endif /* OPC_FORWARD_H */
