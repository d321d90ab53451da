/*
 * vocab_llama2c.c — llama2.c's tokenizer.bin as an opc_vocab.
 *
 * Layout (little-endian):  int32 max_token_length
 *                          vocab_size x { float32 score, int32 len, len bytes }
 * Pieces are raw bytes: spaces are ' ' (not SentencePiece's "▁"), bytes are
 * "<0xNN>" at id NN + 3, and ids 0/1/2 are <unk>, BOS, EOS ("\n<s>\n",
 * "\n</s>\n" in Karpathy's export).
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = rd_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int is_byte_piece(const uint8_t *s, uint32_t n) {
    return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

opc_status opc_vocab_from_llama2c(const char *path, int32_t vocab_size, opc_vocab *v) {
    if (!path || !v) return opc_error(OPC_ERR_INVALID_ARG, "llama2.c tokenizer: NULL argument");
    if (vocab_size < 0 || vocab_size > (1 << 24))
        return opc_error(OPC_ERR_INVALID_ARG, "%s: vocab_size %d out of range", path, vocab_size);
    opc_map m = {0};
    opc_status st = opc_map_open(path, &m);
    if (st) return st;
    const uint8_t *p = m.data;
    uint64_t size = m.size, off = 4;
    if (size < 4) {
        st = opc_error(OPC_ERR_CORRUPT, "%s: %llu bytes is too short for a llama2.c tokenizer header", path,
                       (unsigned long long)size);
        goto done;
    }
    int32_t max_len = (int32_t)rd_u32(p);
    if (max_len <= 0 || max_len > (1 << 20)) {
        st = opc_error(OPC_ERR_CORRUPT, "%s: max_token_length %d out of range (1..%d)", path, max_len, 1 << 20);
        goto done;
    }
    /* vocab_size 0: count the entries until the end of the file */
    int32_t n = vocab_size;
    if (n == 0) {
        for (uint64_t o = 4; o < size; n++) {
            if (!opc_range_ok(o, 8, size)) break;
            uint32_t len = rd_u32(p + o + 4);
            if (!opc_range_ok(o + 8, len, size)) break;
            o += 8 + (uint64_t)len;
            if (n >= (1 << 24)) break;
        }
        if (n == 0) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: no tokens", path);
            goto done;
        }
    }
    opc_vocab_free(v);
    v->kind = OPC_VOCAB_SPM;
    v->n_tokens = n;
    v->tokens = calloc((size_t)n, sizeof(char *));
    v->token_len = calloc((size_t)n, sizeof(uint32_t));
    v->scores = calloc((size_t)n, sizeof(float));
    v->types = calloc((size_t)n, sizeof(int32_t));
    if (!v->tokens || !v->token_len || !v->scores || !v->types) {
        st = opc_error(OPC_ERR_NOMEM, "%s: cannot allocate %d tokens", path, n);
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        if (!opc_range_ok(off, 8, size)) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: truncated at token %d of %d (offset %llu, file %llu bytes)",
                           path, i, n, (unsigned long long)off, (unsigned long long)size);
            goto done;
        }
        float score = rd_f32(p + off);
        int32_t len = (int32_t)rd_u32(p + off + 4);
        off += 8;
        if (len < 0 || len > max_len || !opc_range_ok(off, (uint64_t)len, size)) {
            st = opc_error(OPC_ERR_CORRUPT,
                           "%s: token %d: length %d is negative, above max_token_length %d or past the "
                           "end of the file (offset %llu, file %llu bytes)",
                           path, i, len, max_len, (unsigned long long)off, (unsigned long long)size);
            goto done;
        }
        if (score != score) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: token %d: score is NaN", path, i);
            goto done;
        }
        v->tokens[i] = malloc((size_t)len + 1);
        if (!v->tokens[i]) {
            st = opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(v->tokens[i], p + off, (size_t)len);
        v->tokens[i][len] = '\0';
        v->token_len[i] = (uint32_t)len;
        v->scores[i] = score;
        v->types[i] = i == 0 ? 2 : (i == 1 || i == 2) ? 3 : is_byte_piece(p + off, (uint32_t)len) ? 6 : 1;
        off += (uint64_t)len;
    }
    v->unk_id = 0;
    v->bos_id = n > 1 ? 1 : -1;
    v->eos_id = n > 2 ? 2 : -1;
    v->pad_id = -1;
    v->add_bos = 1;          /* llama2.c's run.c encodes prompts with BOS */
    v->add_space_prefix = 1; /* and a dummy-prefix space */
    snprintf(v->pre, sizeof v->pre, "%s", "llama2c");
    st = OPC_OK;
done:
    if (st) opc_vocab_free(v);
    opc_map_close(&m);
    return st;
}
