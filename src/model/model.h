/*
 * model.h — the in-memory model description shared by every reader and
 * every consumer (forward pass, quantizer, info).
 *
 * Nothing downstream knows which file a model came from: the GGUF, Hugging
 * Face and llama2.c readers all produce an opc_model_desc with
 *   - an opc_config (architecture hyper-parameters),
 *   - a vocabulary for the tokenizer,
 *   - tensors under canonical GGUF-style names (table below), each a typed
 *     view into a file mapping or into a buffer the description owns.
 *
 * One layout for attention weights: Q and K rows are in the Hugging Face
 * ("rotate-half", NeoX) order. llama.cpp's converter permutes llama-arch
 * Q/K rows into the interleaved-pairs order for GGUF, and llama2.c
 * checkpoints are interleaved natively; the loaders undo that (a pure row
 * permutation, so quantized rows move as whole rows) and the forward pass
 * implements only rotate-half RoPE.
 *
 * Canonical tensor names (shape outermost first, as in PyTorch):
 *   token_embd.weight          (vocab, dim)
 *   blk.N.attn_norm.weight     (dim)
 *   blk.N.attn_q.weight        (n_heads*head_dim, dim)       [+ .bias (n_heads*head_dim)]
 *   blk.N.attn_k.weight        (n_kv_heads*head_dim, dim)    [+ .bias]
 *   blk.N.attn_v.weight        (n_kv_heads*head_dim, dim)    [+ .bias]
 *   blk.N.attn_output.weight   (dim, n_heads*head_dim)
 *   blk.N.ffn_norm.weight      (dim)
 *   blk.N.ffn_gate.weight      (hidden_dim, dim)
 *   blk.N.ffn_up.weight        (hidden_dim, dim)
 *   blk.N.ffn_down.weight      (dim, hidden_dim)
 *   output_norm.weight         (dim)
 *   output.weight              (vocab, dim)   absent when tied_embeddings
 */
#ifndef OPC_MODEL_H
#define OPC_MODEL_H

#include "../core/core.h"
#include "../quant/cb.h"
#include "../quant/types.h"

#include <stdint.h>

typedef enum opc_arch {
    OPC_ARCH_LLAMA = 0, /* LlamaForCausalLM, GGUF "llama", llama2.c */
    OPC_ARCH_MISTRAL,   /* MistralForCausalLM (llama + sliding window, unused here) */
    OPC_ARCH_QWEN2      /* Qwen2ForCausalLM: bias on q/k/v */
} opc_arch;

const char *opc_arch_name(opc_arch a);

typedef enum opc_rope_scaling {
    OPC_ROPE_SCALING_NONE = 0,
    OPC_ROPE_SCALING_LINEAR,
    OPC_ROPE_SCALING_LLAMA3
} opc_rope_scaling;

typedef struct opc_config {
    opc_arch arch;
    int32_t dim;        /* hidden_size */
    int32_t hidden_dim; /* intermediate_size (SwiGLU width) */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;   /* usually dim / n_heads */
    int32_t vocab_size;
    int32_t max_seq_len; /* trained context length */
    float rms_eps;
    float rope_theta;
    opc_rope_scaling rope_scaling;
    float rope_factor;           /* linear and llama3 */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int32_t rope_orig_max_pos;   /* llama3: original_max_position_embeddings */
    int32_t tied_embeddings;     /* output head reuses token_embd */
    int32_t attn_bias;           /* q/k/v carry a bias (Qwen2) */
} opc_config;

/* Check a config for internal consistency (positive sizes, heads divide, ...).
 * `what` names the source for the message. */
opc_status opc_config_validate(const opc_config *c, const char *what);

#define OPC_MAX_DIMS 4
#define OPC_MAX_NAME 96

typedef struct opc_tensor {
    char name[OPC_MAX_NAME]; /* canonical name (see table above) */
    opc_type type;
    int32_t n_dims;
    int64_t shape[OPC_MAX_DIMS]; /* outermost first: a weight is {out_features, in_features} */
    const void *data;            /* view into a mapping, or into `owned` */
    uint64_t nbytes;
    void *owned; /* non-NULL when the description owns the bytes (freed with it) */
    opc_cb_matrix cb; /* valid when type is OPC_TYPE_CB2/CB4 (views into the .bf2 mapping);
                         data/nbytes then cover the packed indices only */
    float qerr;       /* stored quantization error (relative weighted MSE), < 0 if unknown */
} opc_tensor;

static inline int64_t opc_tensor_nelem(const opc_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

/* Tokenizer vocabulary as stored by the source file (filled by readers,
 * consumed by src/tokenizer). All strings are owned by the vocab. */
typedef enum opc_vocab_kind {
    OPC_VOCAB_NONE = 0,
    OPC_VOCAB_BPE_BYTELEVEL, /* GPT-2 style byte-level BPE with merges (gguf "gpt2") */
    OPC_VOCAB_SPM            /* SentencePiece-style BPE by scores + byte fallback (gguf "llama", llama2.c) */
} opc_vocab_kind;

#define OPC_VOCAB_MAX_PRE_REGEX 4

typedef struct opc_vocab {
    opc_vocab_kind kind;
    int32_t n_tokens;
    char **tokens;      /* (n_tokens) NUL-terminated token strings as stored in the file */
    uint32_t *token_len;/* (n_tokens) byte length of each (strings may contain NUL in llama2.c) */
    float *scores;      /* (n_tokens) or NULL */
    int32_t *types;     /* (n_tokens) GGUF token types (1 normal, 2 unknown, 3 control, 4 user, 6 byte) or NULL */
    int32_t n_merges;
    char **merges;      /* (n_merges) "left right" strings, rank = index; BPE_BYTELEVEL only */
    char pre[64];       /* pre-tokenizer name: "gpt2", "llama-bpe", "qwen2", "smollm", "default", ... */
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 when absent */
    int32_t add_bos, add_eos, add_space_prefix;
    char *chat_template; /* Jinja source from the model, or NULL */
    /* Pre-tokenizer details only a tokenizer.json spells out (filled by
     * opc_vocab_from_hf_json; other readers leave them zero and the tokenizer
     * derives the split from `pre`). Fixed-size, so opc_vocab_free needn't know. */
    int32_t n_pre_regex;                                 /* 0: use the patterns named by `pre` */
    char pre_regex[OPC_VOCAB_MAX_PRE_REGEX][512];        /* PCRE2 patterns, each splitting the pieces of the one before */
    int32_t ignore_merges; /* BPE: a pre-token that is itself a token skips the merges (Llama-3) */
    int32_t spm_split;     /* SPM: Metaspace split, every "▁" starts a new piece */
} opc_vocab;

void opc_vocab_free(opc_vocab *v); /* frees the members, not v itself; NULL-safe */

typedef enum opc_source_format {
    OPC_SRC_GGUF = 0,
    OPC_SRC_HF,      /* Hugging Face folder: config.json + safetensors + tokenizer.json */
    OPC_SRC_LLAMA2C, /* llama2.c checkpoint (+ tokenizer.bin) */
    OPC_SRC_BF2      /* our own format */
} opc_source_format;

#define OPC_MAX_MAPS 64

typedef struct opc_model_desc {
    opc_source_format format;
    char path[1024];  /* what the user passed */
    char name[128];   /* human name if the file has one */
    opc_config cfg;
    opc_vocab vocab;
    int32_t n_tensors;
    opc_tensor *tensors; /* (n_tensors) */
    int32_t n_maps;
    opc_map maps[OPC_MAX_MAPS]; /* file mappings the tensor views point into */
    void *format_state;         /* reader-private (e.g. an opc_gguf handle); freed by format_free */
    void (*format_free)(void *);
} opc_model_desc;

/* Open any supported model: a .gguf file, a .bf2 file, a llama2.c .bin
 * checkpoint (tokenizer.bin / tok*.bin looked up beside it unless given with
 * opc_model_desc_open_llama2c), or a Hugging Face folder. Detects the format
 * from magic bytes / directory contents. */
opc_status opc_model_desc_open(const char *path, opc_model_desc **out);
void opc_model_desc_free(opc_model_desc *d); /* NULL-safe */

/* Find a tensor by canonical name; NULL if absent. */
const opc_tensor *opc_model_desc_find(const opc_model_desc *d, const char *name);

/* Like find but sets an error naming the tensor and the file when missing,
 * and checks the shape ({rows, cols}, or {n} with cols == 0). */
opc_status opc_model_desc_require(const opc_model_desc *d, const char *name, int64_t rows,
                                  int64_t cols, const opc_tensor **out);

/* Helpers for readers */
opc_status opc_model_desc_alloc_tensors(opc_model_desc *d, int32_t n);
/* Permute rows of a (rows, cols) tensor from llama.cpp/llama2.c interleaved
 * RoPE order to HF rotate-half order, per head of head_dim rows. The tensor's
 * bytes are copied into an owned buffer (row = whole blocks, so works for
 * quantized types). */
opc_status opc_tensor_unpermute_rope(opc_tensor *t, int32_t n_heads, int32_t head_dim);

#endif /* OPC_MODEL_H */
