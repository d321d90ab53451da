/*
 * synth.h — random-weight models with real shapes, written straight to .bf2.
 *
 * Speed work needs models of the right *shape* (bytes per token, matrix sizes,
 * layer count), not the right *values*: a synthetic Llama-3-8B at 2 bits reads
 * the same bytes per token as a quantized real one. Making it locally avoids a
 * 16 GB download and a multi-GB transfer to the GPU machine.
 *
 * What a synthetic model contains (docs/RESULTS.md "Synthetic models"):
 *   - the named shape's opc_config (dims, heads, rope, tied head);
 *   - attention and FFN weights as CB2/CB4 (bits 1.58/2/3/4: k = 3/4/8/16) with
 *     uniformly random packed indices and per-row fp16 codebooks placed at the
 *     Lloyd-Max levels of a Gaussian, scaled by a per-row std around 0.02
 *     (Llama's init), jittered and sorted; or plain f16 for bits = 16;
 *   - optional sparse outliers (CSR, sorted columns, fp16 deltas of 2..6 std);
 *   - optional per-group scales on every codebook tensor (q uniform in 0..15,
 *     group 0 of each row at q = 0) and optional input rotation on every
 *     codebook tensor but token_embd (block = the largest power of two that
 *     divides cols, at most 2^15), so kernels can be timed with the cb.h
 *     variants; the values stay random (nothing is actually rotated);
 *   - token_embd f16 random and an untied output head f16 (as `quantize` keeps
 *     them by default) unless embd_bits / head_bits say otherwise, norms f32
 *     near 1;
 *   - a synthetic byte-level vocabulary: the 256 GPT-2 byte tokens, BOS, EOS,
 *     then unique filler tokens up to vocab_size, no merges.
 *
 * Every value is a pure function of (seed, tensor name, row): the output is
 * the same for any thread count, and the first N layers of a model do not
 * depend on --layers. Tensors are generated and written one at a time, so
 * peak memory is about one tensor (the f16 embedding is the largest).
 */
#ifndef OPC_SYNTH_H
#define OPC_SYNTH_H

#include "../model/model.h"

#include <signal.h>
#include <stdint.h>

/* Progress of opc_synth_write, reported after every chunk of rows. */
typedef struct opc_synth_progress {
    uint64_t elems_done, elems_total; /* weight elements generated, of all tensors */
    int32_t tensor, n_tensors;        /* 1-based index of the current tensor */
    const char *name;                 /* current tensor */
} opc_synth_progress;

typedef struct opc_synth_params {
    const char *shape;   /* a name from opc_synth_shape_name() */
    float bits;          /* 1.58, 2, 3, 4 (codebooks) or 16 (plain f16) */
    float head_bits;     /* untied output.weight: 16 (default, like `quantize`) or 1.58/2/3/4 */
    float embd_bits;     /* token_embd.weight: 16 (default, like `quantize`) or 1.58/2/3/4; with a
                            tied head this decides how the head is read per token */
    int32_t n_layers;    /* > 0 overrides the shape's layer count */
    double outlier_frac; /* [0, 0.5]: fraction of each codebook tensor stored as outliers */
    int32_t gscale;      /* 1: per-group scales (cb.h gscale) on every codebook tensor */
    int32_t rotate;      /* 1: rotated inputs (cb.h rot_log2) on codebook tensors except token_embd */
    uint64_t seed;
    int32_t n_threads;   /* <= 0: OpenMP default */
    volatile sig_atomic_t *interrupt; /* polled between row chunks; set -> OPC_ERR_INTERRUPTED */
    void (*progress)(void *user, const opc_synth_progress *p); /* may be NULL */
    void *progress_user;
} opc_synth_params;

/* bits 2, head and embedding 16, no layer override, no outliers, no group
 * scales or rotation, seed 1, default threads. */
opc_synth_params opc_synth_defaults(void);

/* The known shapes, for usage text: index 0..n-1, NULL past the end.
 * "tiny" (dim 128, 2 layers, vocab 512, tied head) and "tiny-untied" are meant for tests. */
const char *opc_synth_shape_name(int i);

/* The config of a named shape, with n_layers overridden when > 0.
 * Errors: INVALID_ARG naming the shape and listing the known ones. */
opc_status opc_synth_config(const char *shape, int32_t n_layers, opc_config *cfg);

/* Fill v (zeroed by the caller; freed with opc_vocab_free) with the synthetic
 * byte-level vocabulary for `vocab_size` tokens (>= 258) and pre-tokenizer `pre`. */
opc_status opc_synth_vocab(int32_t vocab_size, const char *pre, opc_vocab *v);

typedef struct opc_synth_summary {
    int32_t n_tensors;
    uint64_t n_params;     /* weight elements */
    uint64_t tensor_bytes; /* sum of tensor data in the file (padding and metadata excluded) */
    uint64_t n_outliers;
    double seconds;
} opc_synth_summary;

/* Generate the model described by p and write it atomically to `path` (through
 * the .bf2 writer: nothing appears under `path` on failure or interruption).
 * summary may be NULL. Errors: INVALID_ARG (bad shape/bits/layers/outliers),
 * IO, NOMEM, INTERRUPTED. */
opc_status opc_synth_write(const char *path, const opc_synth_params *p, opc_synth_summary *summary);

#endif /* OPC_SYNTH_H */
