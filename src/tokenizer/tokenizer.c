/*
 * tokenizer.c — encode/decode for byte-level BPE and SentencePiece-style BPE.
 *
 * Layout of this file:
 *   tables     string -> id and (left id, right id) -> merge hash maps
 *   init       copy the vocabulary, build maps, decoded bytes per token,
 *              special-token index, pre-tokenizer regexes
 *   merge      one BPE merge loop (binary heap over adjacent pairs) shared by
 *              both kinds: priority is the merge rank, or minus the score of
 *              the concatenated piece for SentencePiece score vocabularies
 *   encode     special-token split -> per fragment: byte-level (regex
 *              pre-split, byte->unicode, merges) or SPM (prefix, escape
 *              spaces, merges, byte fallback)
 *   decode     per-token bytes, streaming UTF-8-safe detokenizer
 *
 * The tokenizer is immutable after init, so encode/decode may run on many
 * threads at once; per-call scratch memory is allocated inside each call.
 */
#include "tokenizer.h"
#include "pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ tables == */

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a 32 */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

typedef struct pair_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX when empty */
    int32_t rank;
    int32_t result;
} pair_slot;

struct opc_tokenizer {
    opc_vocab_kind kind;
    int32_t n_vocab;

    /* token text as stored in the vocabulary: (n_vocab) offsets into text */
    char *text;
    uint64_t *text_off;
    uint32_t *text_len;
    /* decoded bytes per token (byte-level unmapped, <0xNN> -> byte, "▁" -> " ") */
    char *dec;
    uint64_t *dec_off;
    uint32_t *dec_len;
    size_t max_dec_len;

    float *scores;  /* (n_vocab) */
    int32_t *types; /* (n_vocab) GGUF token types */

    int32_t *map; /* open addressing: token id or -1; map_cap slots */
    size_t map_cap;
    pair_slot *pairs; /* merge table; pair_cap slots (0 when no merges) */
    size_t pair_cap;
    int32_t n_merges;

    int32_t bos, eos, unk;
    int add_bos, add_space_prefix;
    int ignore_merges;
    int spm_space_raw; /* llama2.c: pieces hold ' ' instead of "▁" */
    int spm_split;     /* Metaspace split: each "▁" starts a new piece */

    int32_t byte_tok[256];   /* byte-level: token of the byte's unicode char; SPM: <0xNN> */
    uint32_t byte_cp[256];   /* GPT-2 bytes_to_unicode */
    int16_t cp_byte[324];    /* inverse for cp < 324, -1 elsewhere */

    /* special tokens matched verbatim: ids sorted by (first byte, length desc) */
    int32_t *special;
    int32_t n_special;
    int32_t special_start[257]; /* bucket [special_start[b], special_start[b+1]) */

    int n_re;
    pcre2_code *re[4];
};

static const char *tok_text(const opc_tokenizer *t, int32_t id, uint32_t *len) {
    *len = t->text_len[id];
    return t->text + t->text_off[id];
}

static int32_t map_find(const opc_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->map_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = t->map[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(t->text + t->text_off[id], s, n) == 0) return id;
    }
}

/* Later duplicates replace earlier ones (as llama.cpp's token_to_id does). */
static void map_insert(opc_tokenizer *t, int32_t id) {
    size_t mask = t->map_cap - 1;
    uint32_t n;
    const char *s = tok_text(t, id, &n);
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t cur = t->map[i];
        if (cur < 0 || (t->text_len[cur] == n && memcmp(t->text + t->text_off[cur], s, n) == 0)) {
            t->map[i] = id;
            return;
        }
    }
}

static const pair_slot *pair_find(const opc_tokenizer *t, int32_t a, int32_t b) {
    if (!t->pair_cap || a < 0 || b < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pairs[i].key == UINT64_MAX) return NULL;
        if (t->pairs[i].key == key) return &t->pairs[i];
    }
}

/* First (lowest-rank) occurrence of a pair wins. */
static void pair_insert(opc_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->pair_cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (t->pairs[i].key == key) return;
        if (t->pairs[i].key == UINT64_MAX) {
            t->pairs[i] = (pair_slot){key, rank, result};
            return;
        }
    }
}

/* ================================================================= utf8 == */

/* Length of the UTF-8 sequence starting with lead byte c (1 for invalid leads). */
static int utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

/* Decode one code point from s[0..n); returns its length (>= 1), cp = -1 if invalid. */
static int utf8_decode(const uint8_t *s, size_t n, int32_t *cp) {
    int len = utf8_len(s[0]);
    if (s[0] >= 0x80 && len == 1) {
        *cp = -1;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = -1;
        return 1;
    }
    int32_t v = len == 1 ? s[0] : len == 2 ? (s[0] & 0x1F) : len == 3 ? (s[0] & 0x0F) : (s[0] & 0x07);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

static int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char SPM_SPACE[] = "\xE2\x96\x81"; /* U+2581 "▁" */

/* "<0xNN>" -> NN, else -1 */
static int parse_byte_token(const char *s, uint32_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ============================================================= regexes == */

static const char RE_GPT2[] = OPC_PRE_RE_GPT2;
static const char RE_LLAMA3[] = OPC_PRE_RE_LLAMA3;
static const char RE_QWEN2[] = OPC_PRE_RE_QWEN2;
static const char RE_DIGIT[] = OPC_PRE_RE_DIGIT;

/* Patterns for a GGUF pre-tokenizer name; NULL list for unknown names. */
static int pre_patterns(const char *pre, const char *out[4]) {
    static const struct {
        const char *name;
        const char *re[2];
    } table[] = {
        {"gpt2", {RE_GPT2, NULL}},        {"default", {RE_GPT2, NULL}},
        {"mpt", {RE_GPT2, NULL}},         {"olmo", {RE_GPT2, NULL}},
        {"jais", {RE_GPT2, NULL}},        {"", {RE_GPT2, NULL}},
        {"smollm", {RE_DIGIT, RE_GPT2}},  {"starcoder", {RE_DIGIT, RE_GPT2}},
        {"refact", {RE_DIGIT, RE_GPT2}},  {"command-r", {RE_DIGIT, RE_GPT2}},
        {"codeshell", {RE_DIGIT, RE_GPT2}}, {"exaone", {RE_DIGIT, RE_GPT2}},
        {"llama-bpe", {RE_LLAMA3, NULL}}, {"llama3", {RE_LLAMA3, NULL}},
        {"llama-v3", {RE_LLAMA3, NULL}},  {"smaug-bpe", {RE_LLAMA3, NULL}},
        {"dbrx", {RE_LLAMA3, NULL}},      {"falcon3", {RE_LLAMA3, NULL}},
        {"qwen2", {RE_QWEN2, NULL}},      {"stablelm2", {RE_QWEN2, NULL}},
        {"deepseek-r1-qwen", {RE_QWEN2, NULL}},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(pre, table[i].name) == 0) {
            int n = 0;
            for (int k = 0; k < 2 && table[i].re[k]; k++) out[n++] = table[i].re[k];
            return n;
        }
    }
    return -1;
}

static opc_status compile_re(opc_tokenizer *t, const char *pat) {
    if (t->n_re >= 4) return opc_error(OPC_ERR_UNSUPPORTED, "tokenizer: more than 4 pre-tokenizer regexes");
    int err;
    PCRE2_SIZE eoff;
    /* MATCH_INVALID_UTF: invalid UTF-8 in the input never matches, so those
     * bytes fall into the gaps between matches and are byte-encoded as-is. */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &eoff,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return opc_error(OPC_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer regex /%s/ at offset %zu: %s",
                         pat, (size_t)eoff, (const char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreter fallback if JIT is unavailable */
    t->re[t->n_re++] = re;
    return OPC_OK;
}

/* ================================================================= init == */

void opc_tokenizer_free(opc_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->scores);
    free(t->types);
    free(t->map);
    free(t->pairs);
    free(t->special);
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t);
}

/* Tokens matched verbatim in the input: user-defined (4) always, control (3)
 * and unknown (2, e.g. "<unk>") only with parse_special, as llama.cpp does. */
static int is_special_type(int32_t type) { return type == 2 || type == 3 || type == 4; }

/* Decoded bytes of token id into out (room for the text length); returns length. */
static size_t decode_token_text(const opc_tokenizer *t, int32_t id, char *out) {
    uint32_t n;
    const char *s = tok_text(t, id, &n);
    if (is_special_type(t->types[id])) {
        memcpy(out, s, n);
        return n;
    }
    size_t o = 0;
    if (t->kind == OPC_VOCAB_BPE_BYTELEVEL) {
        for (uint32_t i = 0; i < n;) {
            int32_t cp;
            int l = utf8_decode((const uint8_t *)s + i, n - i, &cp);
            if (cp >= 0 && cp < 324 && t->cp_byte[cp] >= 0) {
                out[o++] = (char)t->cp_byte[cp];
            } else {
                memcpy(out + o, s + i, (size_t)l); /* not a byte-level char: keep as is */
                o += (size_t)l;
            }
            i += (uint32_t)l;
        }
        return o;
    }
    int b = parse_byte_token(s, n);
    if (b >= 0) {
        out[0] = (char)b;
        return 1;
    }
    for (uint32_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, SPM_SPACE, 3) == 0) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = s[i++];
        }
    }
    return o;
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

static opc_status build_specials(opc_tokenizer *t) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->types[i]) && t->text_len[i] > 0) n++;
    t->special = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!t->special) return opc_error(OPC_ERR_NOMEM, "tokenizer: cannot allocate special-token index");
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (is_special_type(t->types[i]) && t->text_len[i] > 0) t->special[n++] = i;
    t->n_special = n;
    /* order by (first byte, longer first, id) through one packed sort key */
    uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!keys) return opc_error(OPC_ERR_NOMEM, "tokenizer: cannot allocate special-token index");
    for (int32_t k = 0; k < n; k++) {
        int32_t id = t->special[k];
        uint64_t first = (uint8_t)t->text[t->text_off[id]];
        uint64_t len = t->text_len[id] < 0xFFFFFFu ? t->text_len[id] : 0xFFFFFFu;
        keys[k] = first << 56 | (0xFFFFFFu - len) << 32 | (uint32_t)id;
    }
    qsort(keys, (size_t)n, sizeof(uint64_t), cmp_u64);
    for (int32_t k = 0; k < n; k++) t->special[k] = (int32_t)(uint32_t)keys[k];
    free(keys);
    int32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < n && (uint8_t)t->text[t->text_off[t->special[k]]] < b) k++;
        t->special_start[b] = k;
    }
    t->special_start[256] = n;
    return OPC_OK;
}

/* Split a stored merge "left right" into two token ids. Byte-level tokens
 * never contain a space, but a vocabulary whose tokens do (merges stored from
 * [a, b] pairs) is ambiguous; take the first split whose halves both exist. */
static opc_status parse_merge(opc_tokenizer *t, const char *m, int32_t rank, char *scratch,
                              size_t scratch_cap) {
    size_t n = strlen(m);
    for (size_t i = 0; i < n; i++) {
        if (m[i] != ' ') continue;
        int32_t a = map_find(t, m, i), b = map_find(t, m + i + 1, n - i - 1);
        if (a < 0 || b < 0) continue;
        if (n - 1 > scratch_cap) break;
        memcpy(scratch, m, i);
        memcpy(scratch + i, m + i + 1, n - i - 1);
        int32_t r = map_find(t, scratch, n - 1);
        if (r < 0)
            return opc_error(OPC_ERR_CORRUPT,
                             "tokenizer: merge %d \"%.64s\": the merged token is not in the vocabulary",
                             rank, m);
        pair_insert(t, a, b, rank, r);
        return OPC_OK;
    }
    return opc_error(OPC_ERR_CORRUPT, "tokenizer: merge %d \"%.64s\" refers to unknown tokens", rank, m);
}

opc_status opc_tokenizer_init(opc_tokenizer **out, const opc_vocab *v) {
    if (!out || !v) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: NULL argument");
    *out = NULL;
    if (v->kind != OPC_VOCAB_BPE_BYTELEVEL && v->kind != OPC_VOCAB_SPM)
        return opc_error(OPC_ERR_UNSUPPORTED, "tokenizer: the model has no supported vocabulary (kind %d)",
                         (int)v->kind);
    if (v->n_tokens <= 0 || !v->tokens)
        return opc_error(OPC_ERR_CORRUPT, "tokenizer: empty vocabulary");
    if (v->n_merges < 0 || (v->n_merges > 0 && !v->merges))
        return opc_error(OPC_ERR_CORRUPT, "tokenizer: bad merge count %d", v->n_merges);
    if (v->kind == OPC_VOCAB_SPM && !v->scores && v->n_merges == 0)
        return opc_error(OPC_ERR_CORRUPT, "tokenizer: SentencePiece vocabulary without scores or merges");

    opc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory");
    opc_status st = OPC_OK;
    char *scratch = NULL;
    int32_t n = v->n_tokens;
    t->kind = v->kind;
    t->n_vocab = n;

    /* ---- token text */
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t len = v->token_len ? v->token_len[i] : (v->tokens[i] ? (uint32_t)strlen(v->tokens[i]) : 0);
        if (!v->tokens[i] && len) {
            st = opc_error(OPC_ERR_CORRUPT, "tokenizer: token %d has no text", i);
            goto fail;
        }
        total += len;
    }
    t->text = malloc(total + 1);
    t->text_off = malloc(sizeof(uint64_t) * (size_t)n);
    t->text_len = malloc(sizeof(uint32_t) * (size_t)n);
    t->scores = calloc((size_t)n, sizeof(float));
    t->types = malloc(sizeof(int32_t) * (size_t)n);
    t->map_cap = pow2_at_least((size_t)n * 2);
    t->map = malloc(sizeof(int32_t) * t->map_cap);
    if (!t->text || !t->text_off || !t->text_len || !t->scores || !t->types || !t->map) goto nomem;
    total = 0;
    size_t max_len = 0;
    for (int32_t i = 0; i < n; i++) {
        uint32_t len = v->token_len ? v->token_len[i] : (v->tokens[i] ? (uint32_t)strlen(v->tokens[i]) : 0);
        if (len) memcpy(t->text + total, v->tokens[i], len);
        t->text_off[i] = total;
        t->text_len[i] = len;
        total += len;
        if (len > max_len) max_len = len;
        if (v->scores) t->scores[i] = v->scores[i];
        t->types[i] = v->types ? v->types[i] : 1;
    }
    t->bos = v->bos_id >= 0 && v->bos_id < n ? v->bos_id : -1;
    t->eos = v->eos_id >= 0 && v->eos_id < n ? v->eos_id : -1;
    t->unk = v->unk_id >= 0 && v->unk_id < n ? v->unk_id : -1;
    if (!v->types) { /* no token types in the file: the declared ids are control tokens */
        if (t->bos >= 0) t->types[t->bos] = 3;
        if (t->eos >= 0) t->types[t->eos] = 3;
        if (t->unk >= 0) t->types[t->unk] = 2;
    }
    t->add_bos = v->add_bos != 0;
    t->add_space_prefix = v->add_space_prefix != 0;
    t->spm_split = v->spm_split != 0;
    memset(t->map, 0xFF, sizeof(int32_t) * t->map_cap);
    for (int32_t i = 0; i < n; i++) map_insert(t, i);

    /* ---- byte tables */
    {
        uint32_t extra = 0;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t->byte_cp[b] = printable ? (uint32_t)b : 256 + extra++;
        }
        for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
        for (int b = 0; b < 256; b++) t->cp_byte[t->byte_cp[b]] = (int16_t)b;
        for (int b = 0; b < 256; b++) {
            char buf[8];
            int l;
            if (t->kind == OPC_VOCAB_BPE_BYTELEVEL) {
                l = utf8_encode(t->byte_cp[b], buf);
            } else {
                l = snprintf(buf, sizeof buf, "<0x%02X>", b);
            }
            t->byte_tok[b] = map_find(t, buf, (size_t)l);
        }
    }
    if (t->kind == OPC_VOCAB_SPM)
        t->spm_space_raw = map_find(t, " ", 1) >= 0 && map_find(t, SPM_SPACE, 3) < 0;

    /* ---- decoded bytes */
    {
        t->dec = malloc(total + 1); /* decoding never lengthens a token */
        t->dec_off = malloc(sizeof(uint64_t) * (size_t)n);
        t->dec_len = malloc(sizeof(uint32_t) * (size_t)n);
        if (!t->dec || !t->dec_off || !t->dec_len) goto nomem;
        uint64_t o = 0;
        for (int32_t i = 0; i < n; i++) {
            size_t l = decode_token_text(t, i, t->dec + o);
            t->dec_off[i] = o;
            t->dec_len[i] = (uint32_t)l;
            if (l > t->max_dec_len) t->max_dec_len = l;
            o += l;
        }
    }

    /* ---- merges */
    if (v->n_merges > 0) {
        t->n_merges = v->n_merges;
        t->pair_cap = pow2_at_least((size_t)v->n_merges * 2);
        t->pairs = malloc(sizeof(pair_slot) * t->pair_cap);
        scratch = malloc(max_len * 2 + 2);
        if (!t->pairs || !scratch) goto nomem;
        memset(t->pairs, 0xFF, sizeof(pair_slot) * t->pair_cap);
        for (int32_t i = 0; i < v->n_merges; i++) {
            if (!v->merges[i]) {
                st = opc_error(OPC_ERR_CORRUPT, "tokenizer: merge %d is missing", i);
                goto fail;
            }
            st = parse_merge(t, v->merges[i], i, scratch, max_len * 2 + 1);
            if (st) goto fail;
        }
    }

    /* ---- pre-tokenizer */
    if (t->kind == OPC_VOCAB_BPE_BYTELEVEL) {
        if (v->n_pre_regex > 0) {
            if (v->n_pre_regex > OPC_VOCAB_MAX_PRE_REGEX) {
                st = opc_error(OPC_ERR_CORRUPT, "tokenizer: %d pre-tokenizer regexes", v->n_pre_regex);
                goto fail;
            }
            for (int32_t i = 0; i < v->n_pre_regex; i++) {
                st = compile_re(t, v->pre_regex[i]);
                if (st) goto fail;
            }
        } else {
            const char *pats[4];
            int np = pre_patterns(v->pre, pats);
            if (np < 0) {
                opc_log(OPC_LOG_WARN, "tokenizer: unknown pre-tokenizer '%s': using the GPT-2 split", v->pre);
                pats[0] = RE_GPT2;
                np = 1;
            }
            for (int i = 0; i < np; i++) {
                st = compile_re(t, pats[i]);
                if (st) goto fail;
            }
        }
        t->ignore_merges = v->ignore_merges || !strcmp(v->pre, "llama-bpe") || !strcmp(v->pre, "llama3") ||
                           !strcmp(v->pre, "llama-v3");
    }

    st = build_specials(t);
    if (st) goto fail;
    free(scratch);
    *out = t;
    return OPC_OK;

nomem:
    st = opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory for a %d-token vocabulary", n);
fail:
    free(scratch);
    opc_tokenizer_free(t);
    return st;
}

/* ============================================================== queries == */

int32_t opc_tokenizer_n_vocab(const opc_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t opc_tokenizer_bos(const opc_tokenizer *t) { return t ? t->bos : -1; }
int32_t opc_tokenizer_eos(const opc_tokenizer *t) { return t ? t->eos : -1; }
size_t opc_tokenizer_max_token_bytes(const opc_tokenizer *t) { return t ? t->max_dec_len : 0; }

int opc_tokenizer_is_special(const opc_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && t->types[id] == 3;
}

int32_t opc_tokenizer_find(const opc_tokenizer *t, const char *token_text) {
    if (!t || !token_text) return -1;
    return map_find(t, token_text, strlen(token_text));
}

const char *opc_tokenizer_token_bytes(const opc_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->dec_len[id];
    return t->dec + t->dec_off[id];
}

const char *opc_tokenizer_token_text(const opc_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->text_len[id];
    return t->text + t->text_off[id];
}

/* ================================================================ merge == */

typedef struct sym {
    int32_t id;         /* token id, or -1 for a span that is no token (SPM unknown char) */
    int32_t prev, next; /* neighbours in the live list, -1 at the ends */
    uint32_t start, len; /* span in the word's bytes (SPM score lookups) */
} sym;

typedef struct heap_ent {
    double key;   /* lower is better: merge rank, or -score */
    int32_t left; /* left symbol index; ties go to the leftmost pair */
    int32_t right;
    uint32_t len; /* left.len + right.len when pushed: detects stale entries */
    int32_t result;
} heap_ent;

/* Per-call scratch, grown as needed. */
typedef struct scratch {
    sym *syms;
    size_t syms_cap;
    heap_ent *heap;
    size_t heap_cap;
    char *buf; /* byte-level mapped word / normalized SPM text */
    size_t buf_cap;
    pcre2_match_data *md;
} scratch;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int heap_less(const heap_ent *a, const heap_ent *b) {
    if (a->key != b->key) return a->key < b->key;
    return a->left < b->left;
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Is the pair (l, r) mergeable, and with which key/result? `word` holds the
 * bytes the spans refer to (used for SPM score lookups). */
static int pair_candidate(const opc_tokenizer *t, const sym *s, int32_t l, int32_t r, const char *word,
                          heap_ent *e) {
    if (t->kind == OPC_VOCAB_BPE_BYTELEVEL || t->n_merges > 0) { /* ranked merges (maybe none) */
        const pair_slot *p = pair_find(t, s[l].id, s[r].id);
        if (!p) return 0;
        e->key = (double)p->rank;
        e->result = p->result;
    } else {
        int32_t id = map_find(t, word + s[l].start, s[l].len + s[r].len);
        if (id < 0) return 0;
        e->key = -(double)t->scores[id];
        e->result = id;
    }
    e->left = l;
    e->right = r;
    e->len = s[l].len + s[r].len;
    return 1;
}

/* Merge the n symbols in sc->syms (already linked) until no pair applies:
 * always the best pair, leftmost on ties — the order both Hugging Face BPE and
 * SentencePiece/llama.cpp use. O(n log n) with lazy deletion of stale pairs. */
static void merge_symbols(const opc_tokenizer *t, scratch *sc, int32_t n, const char *word) {
    sym *s = sc->syms;
    heap_ent *h = sc->heap;
    size_t hn = 0;
    heap_ent e;
    for (int32_t i = 0; i + 1 < n; i++)
        if (pair_candidate(t, s, i, i + 1, word, &e)) heap_push(h, &hn, e);
    while (hn > 0) {
        heap_ent top = heap_pop(h, &hn);
        sym *L = &s[top.left];
        if (L->len == 0 || L->next != top.right) continue; /* left merged away or changed */
        sym *R = &s[top.right];
        if (R->len == 0 || L->len + R->len != top.len) continue;
        L->id = top.result;
        L->len += R->len;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = top.left;
        R->len = 0;
        if (L->prev >= 0 && pair_candidate(t, s, L->prev, top.left, word, &e)) heap_push(h, &hn, e);
        if (L->next >= 0 && pair_candidate(t, s, top.left, L->next, word, &e)) heap_push(h, &hn, e);
    }
}

/* =============================================================== encode == */

typedef struct emitter {
    int32_t *ids;
    size_t cap, n;
    opc_piece_fn on_piece; /* opc_tokenizer_pretokenize: report pieces instead of encoding them */
    void *user;
} emitter;

static void emit(emitter *em, int32_t id) {
    if (em->n < em->cap) em->ids[em->n] = id;
    em->n++;
}

static int prepare(scratch *sc, size_t n_syms, size_t buf_bytes) {
    /* every merge pushes at most two pairs: n - 1 initial + 2 (n - 1) later */
    return grow((void **)&sc->syms, &sc->syms_cap, n_syms + 1, sizeof(sym)) &&
           grow((void **)&sc->heap, &sc->heap_cap, 3 * n_syms + 4, sizeof(heap_ent)) &&
           grow((void **)&sc->buf, &sc->buf_cap, buf_bytes + 8, 1);
}

/* One pre-token of byte-level BPE. */
static opc_status bpe_word(const opc_tokenizer *t, scratch *sc, const uint8_t *w, size_t n, emitter *em) {
    if (n == 0) return OPC_OK;
    if (!prepare(sc, n, n * 2)) return opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory");
    if (t->ignore_merges) { /* Llama-3: a pre-token that is a whole token is taken as is */
        size_t o = 0;
        for (size_t i = 0; i < n; i++) o += (size_t)utf8_encode(t->byte_cp[w[i]], sc->buf + o);
        int32_t id = map_find(t, sc->buf, o);
        if (id >= 0) {
            emit(em, id);
            return OPC_OK;
        }
    }
    sym *s = sc->syms;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[w[i]];
        /* A vocabulary without this byte's character (SmolLM2 lacks e.g. 0x04 and
         * 0xF5..0xFF): Hugging Face drops the byte unless the model has an unknown
         * token; a control token declared as "unknown" (an EOS) is not one. */
        if (id < 0 && t->unk >= 0 && t->types[t->unk] != 3) id = t->unk;
        if (id < 0) continue;
        s[m] = (sym){id, m - 1, m + 1, (uint32_t)i, 1};
        m++;
    }
    if (m == 0) return OPC_OK;
    s[m - 1].next = -1;
    merge_symbols(t, sc, m, NULL);
    for (int32_t i = 0; i >= 0; i = s[i].next) emit(em, s[i].id);
    return OPC_OK;
}

/* Apply pre-tokenizer regex `level` to text[0..n): every match and every gap
 * between matches becomes a piece (HF Split "Isolated"), passed on to the next
 * regex or, after the last one, to the BPE. */
static opc_status presplit(const opc_tokenizer *t, scratch *sc, int level, const uint8_t *text, size_t n,
                           emitter *em) {
    if (n == 0) return OPC_OK;
    if (level >= t->n_re) {
        if (em->on_piece) {
            em->on_piece((const char *)text, n, em->user);
            return OPC_OK;
        }
        return bpe_word(t, sc, text, n, em);
    }
    opc_status st;
    size_t pos = 0, last = 0;
    while (pos <= n) {
        int rc = pcre2_match(t->re[level], text, n, pos, 0, sc->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            /* e.g. a match limit hit by a pathological pattern from a tokenizer.json */
            return opc_error(OPC_ERR_UNSUPPORTED, "tokenizer: pre-tokenizer regex %d failed: %s", level,
                             (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step one character (no pattern here produces these) */
            pos = ms + (size_t)utf8_len(text[ms < n ? ms : n - 1]);
            if (ms >= n) break;
            continue;
        }
        if (ms > last && (st = presplit(t, sc, level + 1, text + last, ms - last, em))) return st;
        if ((st = presplit(t, sc, level + 1, text + ms, me - ms, em))) return st;
        last = pos = me;
    }
    if (last < n) return presplit(t, sc, level + 1, text + last, n - last, em);
    return OPC_OK;
}

/* SPM merges over one piece buf[0..n) (already prefixed/escaped). */
static opc_status spm_piece(const opc_tokenizer *t, scratch *sc, const char *buf, size_t n, emitter *em) {
    if (n == 0) return OPC_OK;
    sym *s = sc->syms;
    int32_t m = 0;
    for (size_t i = 0; i < n;) {
        /* one symbol per UTF-8 character (invalid bytes are one symbol each) */
        int32_t cp;
        int l = utf8_decode((const uint8_t *)buf + i, n - i, &cp);
        s[m] = (sym){map_find(t, buf + i, (size_t)l), m - 1, m + 1, (uint32_t)i, (uint32_t)l};
        m++;
        i += (size_t)l;
    }
    s[m - 1].next = -1;
    merge_symbols(t, sc, m, buf);
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        if (s[i].id >= 0) {
            emit(em, s[i].id);
            continue;
        }
        /* byte fallback: <0xNN> for every byte of the unknown character */
        for (uint32_t k = 0; k < s[i].len; k++) {
            int32_t id = t->byte_tok[(uint8_t)buf[s[i].start + k]];
            if (id < 0) id = t->unk;
            if (id >= 0) emit(em, id);
        }
    }
    return OPC_OK;
}

static opc_status spm_fragment(const opc_tokenizer *t, scratch *sc, const char *text, size_t n,
                               int prefix, emitter *em) {
    if (n == 0) return OPC_OK;
    /* prefix + every space -> "▁" (3 bytes), unless the vocabulary stores raw spaces */
    if (!prepare(sc, n + 1, n * 3 + 3)) return opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory");
    char *b = sc->buf;
    size_t o = 0;
    const char *sp = t->spm_space_raw ? " " : SPM_SPACE;
    size_t spn = t->spm_space_raw ? 1 : 3;
    if (prefix) {
        memcpy(b, sp, spn);
        o = spn;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(b + o, sp, spn);
            o += spn;
        } else {
            b[o++] = text[i];
        }
    }
    if (!t->spm_split) return spm_piece(t, sc, b, o, em);
    /* Metaspace split: a new piece begins at every "▁" */
    size_t start = 0;
    for (size_t i = 1; i + spn <= o; i++) {
        if (memcmp(b + i, sp, spn) == 0) {
            opc_status st = spm_piece(t, sc, b + start, i - start, em);
            if (st) return st;
            start = i;
        }
    }
    return spm_piece(t, sc, b + start, o - start, em);
}

/* Longest special token starting at text[i] that may be matched, or -1. */
static int32_t special_at(const opc_tokenizer *t, const char *text, size_t n, size_t i, int parse_special) {
    uint8_t c = (uint8_t)text[i];
    for (int32_t k = t->special_start[c]; k < t->special_start[c + 1]; k++) {
        int32_t id = t->special[k];
        if (t->types[id] != 4 && !parse_special) continue;
        uint32_t l = t->text_len[id];
        if (l <= n - i && memcmp(text + i, t->text + t->text_off[id], l) == 0) return id;
    }
    return -1;
}

static opc_status encode_into(const opc_tokenizer *t, const char *text, size_t len,
                              const opc_encode_opts *opts, emitter *em) {
    int add_bos = opts && opts->add_bos >= 0 ? opts->add_bos : t->add_bos;
    int parse_special = opts ? opts->parse_special : 0;
    opc_status st = OPC_OK;
    scratch sc = {0};
    if (t->n_re > 0) {
        sc.md = pcre2_match_data_create(4, NULL);
        if (!sc.md) return opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (add_bos && t->bos >= 0) emit(em, t->bos);
    /* llama.cpp: the SPM dummy prefix goes before the first text and after every special token */
    int prev_special = 1;
    size_t frag = 0;
    for (size_t i = 0; i <= len; i++) {
        int32_t sid = -1;
        if (i < len) {
            if (t->special_start[(uint8_t)text[i]] == t->special_start[(uint8_t)text[i] + 1]) continue;
            sid = special_at(t, text, len, i, parse_special);
            if (sid < 0) continue;
        }
        if (i > frag) {
            if (t->kind == OPC_VOCAB_BPE_BYTELEVEL) {
                if (t->add_space_prefix && frag == 0 && text[0] != ' ') { /* ByteLevel add_prefix_space */
                    char *tmp = malloc(i + 1);
                    if (!tmp) {
                        st = opc_error(OPC_ERR_NOMEM, "tokenizer: out of memory");
                        break;
                    }
                    tmp[0] = ' ';
                    memcpy(tmp + 1, text, i);
                    st = presplit(t, &sc, 0, (const uint8_t *)tmp, i + 1, em);
                    free(tmp);
                } else {
                    st = presplit(t, &sc, 0, (const uint8_t *)text + frag, i - frag, em);
                }
            } else {
                st = spm_fragment(t, &sc, text + frag, i - frag, t->add_space_prefix && prev_special, em);
            }
            if (st) break;
            prev_special = 0;
        }
        if (sid >= 0) {
            if (em->on_piece) em->on_piece(text + i, t->text_len[sid], em->user);
            emit(em, sid);
            prev_special = 1;
            i += t->text_len[sid] - 1;
            frag = i + 1;
        }
    }
    free(sc.syms);
    free(sc.heap);
    free(sc.buf);
    pcre2_match_data_free(sc.md);
    return st;
}

opc_status opc_tokenizer_encode(const opc_tokenizer *t, const char *text, size_t len,
                                const opc_encode_opts *opts, int32_t *ids, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || (!text && len) || (!ids && cap))
        return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: encode: NULL argument");
    emitter em = {ids, cap, 0, NULL, NULL};
    opc_status st = encode_into(t, text ? text : "", len, opts, &em);
    if (n_out) *n_out = em.n;
    if (st) return st;
    if (em.n > cap)
        return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: %zu tokens do not fit in a buffer of %zu", em.n, cap);
    return OPC_OK;
}

opc_status opc_tokenizer_pretokenize(const opc_tokenizer *t, const char *text, size_t len, int parse_special,
                                     opc_piece_fn fn, void *user) {
    if (!t || !fn || (!text && len)) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: pretokenize: NULL argument");
    if (t->kind != OPC_VOCAB_BPE_BYTELEVEL)
        return opc_error(OPC_ERR_UNSUPPORTED, "tokenizer: pretokenize: only byte-level vocabularies split text");
    emitter em = {NULL, 0, 0, fn, user};
    opc_encode_opts o = {0, parse_special};
    return encode_into(t, text ? text : "", len, &o, &em);
}

opc_status opc_tokenizer_encode_alloc(const opc_tokenizer *t, const char *text, size_t len,
                                      const opc_encode_opts *opts, int32_t **ids, size_t *n) {
    if (!ids || !n) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: encode: NULL argument");
    *ids = NULL;
    *n = 0;
    /* guess: most tokens span >= 2 bytes; retry once with the exact count */
    size_t cap = len / 2 + 16;
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *buf = malloc(sizeof(int32_t) * cap);
        if (!buf) return opc_error(OPC_ERR_NOMEM, "tokenizer: cannot allocate %zu ids", cap);
        size_t got = 0;
        opc_status st = opc_tokenizer_encode(t, text, len, opts, buf, cap, &got);
        if (st == OPC_OK) {
            *ids = buf;
            *n = got;
            return OPC_OK;
        }
        free(buf);
        if (st != OPC_ERR_INVALID_ARG || got <= cap) return st;
        cap = got;
    }
    return opc_error(OPC_ERR_INTERNAL, "tokenizer: encode produced a different count on retry");
}

/* =============================================================== decode == */

void opc_detok_init(opc_detok *d, const opc_tokenizer *t) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->at_start = t && t->kind == OPC_VOCAB_SPM && t->add_space_prefix;
}

static size_t put(char *out, size_t cap, size_t o, const char *s, size_t n) {
    size_t k = n <= cap - o ? n : cap - o; /* callers size out by opc_tokenizer_max_token_bytes */
    memcpy(out + o, s, k);
    return o + k;
}

/* Feed bytes through the UTF-8 holder: complete characters go out, the bytes
 * of an unfinished one wait in d->pending, invalid bytes pass through raw. */
static size_t feed(opc_detok *d, const char *s, size_t n, char *out, size_t cap, size_t o) {
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (d->n_pending > 0) {
            if ((c & 0xC0) == 0x80) {
                d->pending[d->n_pending++] = c;
                if (d->n_pending == utf8_len(d->pending[0])) {
                    o = put(out, cap, o, (const char *)d->pending, (size_t)d->n_pending);
                    d->n_pending = 0;
                }
                continue;
            }
            o = put(out, cap, o, (const char *)d->pending, (size_t)d->n_pending); /* broken sequence */
            d->n_pending = 0;
        }
        if (c >= 0xC0 && utf8_len(c) > 1) {
            d->pending[d->n_pending++] = c;
        } else {
            o = put(out, cap, o, (const char *)&c, 1);
        }
    }
    return o;
}

size_t opc_detok_push(opc_detok *d, int32_t id, int skip_special, char *out, size_t cap) {
    const opc_tokenizer *t = d->tok;
    if (!t || id < 0 || id >= t->n_vocab) return 0;
    int32_t type = t->types[id];
    if (type == 3) {
        if (skip_special) return 0;
        return feed(d, t->dec + t->dec_off[id], t->dec_len[id], out, cap, 0);
    }
    const char *s = t->dec + t->dec_off[id];
    size_t n = t->dec_len[id];
    if (d->at_start) { /* SPM: drop the dummy-prefix space of the first text piece */
        d->at_start = 0;
        if (n > 0 && s[0] == ' ') {
            s++;
            n--;
        }
    }
    return feed(d, s, n, out, cap, 0);
}

size_t opc_detok_flush(opc_detok *d, char *out, size_t cap) {
    size_t o = put(out, cap, 0, (const char *)d->pending, (size_t)d->n_pending);
    d->n_pending = 0;
    return o;
}

opc_status opc_tokenizer_decode(const opc_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                                char **out, size_t *out_len) {
    if (!t || !out || (!ids && n)) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: decode: NULL argument");
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t total = 8;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return opc_error(OPC_ERR_INVALID_ARG, "tokenizer: decode: id %d at position %zu is outside [0, %d)",
                             ids[i], i, t->n_vocab);
        total += t->dec_len[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf) return opc_error(OPC_ERR_NOMEM, "tokenizer: decode: cannot allocate %zu bytes", total);
    opc_detok d;
    opc_detok_init(&d, t);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += opc_detok_push(&d, ids[i], skip_special, buf + o, total - o);
    o += opc_detok_flush(&d, buf + o, total - o);
    buf[o] = '\0';
    *out = buf;
    if (out_len) *out_len = o;
    return OPC_OK;
}
