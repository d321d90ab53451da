/*
 * tokenizer.h — text <-> token ids for every vocabulary kind in opc_vocab.
 *
 *   OPC_VOCAB_BPE_BYTELEVEL: GPT-2-style byte-level BPE with ranked merges and a
 *       regex pre-split (PCRE2) chosen by the vocab's pre-tokenizer name
 *       (gpt2, llama-bpe/llama3, qwen2, smollm, ...).
 *   OPC_VOCAB_SPM: SentencePiece-style BPE by piece scores with byte fallback
 *       (<0xNN> tokens, or llama2.c's byte+3 convention), dummy-prefix space.
 *
 * Special/added tokens (control, user-defined) are matched verbatim in the
 * input when parse_special is set, before pre-tokenization.
 */
#ifndef OPC_TOKENIZER_H
#define OPC_TOKENIZER_H

#include "../model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct opc_tokenizer opc_tokenizer;

/* Build a tokenizer from a vocabulary (copied; v may be freed afterwards). */
opc_status opc_tokenizer_init(opc_tokenizer **out, const opc_vocab *v);
void opc_tokenizer_free(opc_tokenizer *t); /* NULL-safe */

typedef struct opc_encode_opts {
    int add_bos;        /* -1: vocab default, 0: no, 1: yes */
    int parse_special;  /* recognise special-token text like "<|im_start|>" */
} opc_encode_opts;

/* Encode text[0..len). Writes at most cap ids; *n_out is the full count (if it
 * exceeds cap the call returns INVALID_ARG so the caller can retry larger). */
opc_status opc_tokenizer_encode(const opc_tokenizer *t, const char *text, size_t len,
                                const opc_encode_opts *opts, int32_t *ids, size_t cap,
                                size_t *n_out);

/* The raw bytes a token stands for (byte-level decoded; "<0x0A>" -> "\n";
 * SPM "▁" -> " "). Returns NULL for an invalid id. Special tokens return their text. */
const char *opc_tokenizer_token_bytes(const opc_tokenizer *t, int32_t id, size_t *len);

/* Encode into a heap array sized to fit (caller frees *ids). */
opc_status opc_tokenizer_encode_alloc(const opc_tokenizer *t, const char *text, size_t len,
                                      const opc_encode_opts *opts, int32_t **ids, size_t *n);

/* Byte-level vocabularies: call fn for every pre-token the regex split makes
 * of text (special tokens matched as in encode come as one piece each), in
 * order, without encoding them. For tests and tools; SPM returns UNSUPPORTED. */
typedef void (*opc_piece_fn)(const char *piece, size_t len, void *user);
opc_status opc_tokenizer_pretokenize(const opc_tokenizer *t, const char *text, size_t len, int parse_special,
                                     opc_piece_fn fn, void *user);

/* The token's text as stored in the vocabulary ("Ġthe", "▁the", "<0x0A>"); NULL for an invalid id. */
const char *opc_tokenizer_token_text(const opc_tokenizer *t, int32_t id, size_t *len);
/* Longest opc_tokenizer_token_bytes(): size opc_detok_push's buffer as this + 8. */
size_t opc_tokenizer_max_token_bytes(const opc_tokenizer *t);

int32_t opc_tokenizer_n_vocab(const opc_tokenizer *t);
int32_t opc_tokenizer_bos(const opc_tokenizer *t); /* -1 when none */
int32_t opc_tokenizer_eos(const opc_tokenizer *t);
int opc_tokenizer_is_special(const opc_tokenizer *t, int32_t id); /* control tokens */
int32_t opc_tokenizer_find(const opc_tokenizer *t, const char *token_text); /* -1 if absent */

/* Streaming decoder: feeds token ids, emits only complete UTF-8 sequences
 * (bytes of a partial multi-byte character are held until completed).
 * Handles SPM's leading-space strip after BOS. */
typedef struct opc_detok {
    const opc_tokenizer *tok;
    uint8_t pending[8];
    int n_pending;
    int at_start; /* strip the dummy-prefix space from the first piece (SPM) */
} opc_detok;

void opc_detok_init(opc_detok *d, const opc_tokenizer *t);
/* Write the text for `id` to out (cap bytes, at least
 * opc_tokenizer_max_token_bytes() + 8, else the excess is cut); returns the
 * number of bytes written (may be 0 while a character is incomplete).
 * skip_special: emit nothing for control tokens. Invalid UTF-8 (a byte
 * sequence that cannot complete) is passed through as raw bytes. */
size_t opc_detok_push(opc_detok *d, int32_t id, int skip_special, char *out, size_t cap);
/* Flush held bytes (invalid/incomplete UTF-8 at the end of the stream). */
size_t opc_detok_flush(opc_detok *d, char *out, size_t cap);

/* Decode a whole id sequence into a heap string (caller frees). */
opc_status opc_tokenizer_decode(const opc_tokenizer *t, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *out_len);

/* Vocabulary loaders that live with the tokenizer because they are pure
 * tokenizer files: HF tokenizer.json (+ optional tokenizer_config.json in the
 * same folder for add_bos/chat_template) and llama2.c tokenizer.bin. */
opc_status opc_vocab_from_hf_json(const char *tokenizer_json_path, opc_vocab *v);
/* The same from tokenizer.json text in memory (no tokenizer_config.json);
 * `name` stands for the file in messages. */
opc_status opc_vocab_from_hf_json_buffer(const char *json, size_t len, const char *name, opc_vocab *v);
opc_status opc_vocab_from_llama2c(const char *tokenizer_bin_path, int32_t vocab_size,
                                  opc_vocab *v);

#endif /* OPC_TOKENIZER_H */
