/*
 * vocab_hf.c — a Hugging Face tokenizer.json (+ tokenizer_config.json beside
 * it) as an opc_vocab.
 *
 * Supported: model.type "BPE" (vocab + merges as "a b" strings or [a, b]
 * pairs, byte_fallback, ignore_merges, unk_token), added_tokens (special ->
 * control, else user-defined), pre_tokenizer ByteLevel / Split(Regex|String,
 * Isolated) / Digits / Metaspace / Sequence of those, normalizer
 * Prepend("▁") / Replace(" " -> "▁") / NFC (input assumed NFC) / Sequence,
 * post_processor TemplateProcessing (a leading special token = BOS).
 * Anything else is UNSUPPORTED with the field named; malformed files are
 * CORRUPT. The finished vocabulary is built into a tokenizer once, so bad
 * merges or regexes are reported here, at load time.
 */
#include "pretok.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS (1 << 24)

typedef struct hf_ctx {
    const char *path;
    opc_vocab *v;
    int saw_bytelevel, saw_spm;
    int is_nfc;
} hf_ctx;

static const char *type_of(const cJSON *o) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Boolean field with a default; CORRUPT if present but not a bool. */
static opc_status get_bool(const hf_ctx *c, const cJSON *o, const char *where, const char *key, int def,
                           int *out) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!b || cJSON_IsNull(b)) {
        *out = def;
        return OPC_OK;
    }
    if (!cJSON_IsBool(b)) return opc_error(OPC_ERR_CORRUPT, "%s: %s.%s must be true or false", c->path, where, key);
    *out = cJSON_IsTrue(b);
    return OPC_OK;
}

static int is_int_id(const cJSON *n, int64_t max) {
    if (!cJSON_IsNumber(n)) return 0;
    double d = n->valuedouble;
    return d >= 0 && d < (double)max && d == (double)(int64_t)d;
}

static opc_status add_regex(hf_ctx *c, const char *pat, const char *where) {
    opc_vocab *v = c->v;
    if (v->n_pre_regex >= OPC_VOCAB_MAX_PRE_REGEX)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: more than %d split patterns", c->path, where,
                         OPC_VOCAB_MAX_PRE_REGEX);
    size_t n = strlen(pat);
    if (n >= sizeof v->pre_regex[0])
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: split pattern of %zu bytes (at most %zu)", c->path, where,
                         n, sizeof v->pre_regex[0] - 1);
    memcpy(v->pre_regex[v->n_pre_regex++], pat, n + 1);
    return OPC_OK;
}

static opc_status parse_pre(hf_ctx *c, const cJSON *p, const char *where, int depth) {
    if (!p || cJSON_IsNull(p)) return OPC_OK;
    if (depth > 4) return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: pre-tokenizers nested too deeply", c->path, where);
    const char *type = type_of(p);
    if (!cJSON_IsObject(p) || !type) return opc_error(OPC_ERR_CORRUPT, "%s: %s: not an object with a \"type\"", c->path, where);
    opc_status st;
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(arr)) return opc_error(OPC_ERR_CORRUPT, "%s: %s.pretokenizers must be an array", c->path, where);
        const cJSON *e;
        cJSON_ArrayForEach(e, arr) {
            if ((st = parse_pre(c, e, "pre_tokenizer.pretokenizers[]", depth + 1))) return st;
        }
        return OPC_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        int prefix = 0, use_regex = 1;
        if ((st = get_bool(c, p, where, "add_prefix_space", 0, &prefix)) ||
            (st = get_bool(c, p, where, "use_regex", 1, &use_regex)))
            return st;
        c->saw_bytelevel = 1;
        c->v->add_space_prefix = prefix;
        return use_regex ? add_regex(c, OPC_PRE_RE_GPT2, where) : OPC_OK;
    }
    if (!strcmp(type, "Digits")) {
        int individual = 0;
        if ((st = get_bool(c, p, where, "individual_digits", 0, &individual))) return st;
        return add_regex(c, individual ? OPC_PRE_RE_DIGIT : OPC_PRE_RE_DIGITS, where);
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
        int invert = 0;
        if ((st = get_bool(c, p, where, "invert", 0, &invert))) return st;
        if (!cJSON_IsObject(pat)) return opc_error(OPC_ERR_CORRUPT, "%s: %s.pattern must be an object", c->path, where);
        if (!cJSON_IsString(beh)) return opc_error(OPC_ERR_CORRUPT, "%s: %s.behavior must be a string", c->path, where);
        if (strcmp(beh->valuestring, "Isolated") != 0 || invert)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: Split behavior \"%s\"%s is not supported (only Isolated)",
                             c->path, where, beh->valuestring, invert ? " with invert" : "");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (cJSON_IsString(re)) return add_regex(c, re->valuestring, where);
        if (cJSON_IsString(lit)) {
            char buf[sizeof c->v->pre_regex[0]];
            if (strstr(lit->valuestring, "\\E") || strlen(lit->valuestring) + 5 > sizeof buf)
                return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: literal split pattern not supported", c->path, where);
            snprintf(buf, sizeof buf, "\\Q%s\\E", lit->valuestring);
            return add_regex(c, buf, where);
        }
        return opc_error(OPC_ERR_CORRUPT, "%s: %s.pattern needs a \"Regex\" or \"String\" string", c->path, where);
    }
    if (!strcmp(type, "Metaspace")) {
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(p, "replacement");
        const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(p, "prepend_scheme");
        if (rep && !(cJSON_IsString(rep) && !strcmp(rep->valuestring, "\xE2\x96\x81")))
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s.replacement must be \"\xE2\x96\x81\"", c->path, where);
        int prefix = 1, split = 1;
        if ((st = get_bool(c, p, where, "add_prefix_space", 1, &prefix)) ||
            (st = get_bool(c, p, where, "split", 1, &split)))
            return st;
        if (scheme) {
            if (!cJSON_IsString(scheme))
                return opc_error(OPC_ERR_CORRUPT, "%s: %s.prepend_scheme must be a string", c->path, where);
            prefix = strcmp(scheme->valuestring, "never") != 0;
        }
        c->saw_spm = 1;
        c->v->add_space_prefix = prefix;
        c->v->spm_split = split;
        return OPC_OK;
    }
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s: pre-tokenizer type \"%s\" is not supported", c->path, where, type);
}

static opc_status parse_normalizer(hf_ctx *c, const cJSON *n, int depth) {
    if (!n || cJSON_IsNull(n)) return OPC_OK;
    const char *type = type_of(n);
    if (!cJSON_IsObject(n) || !type || depth > 4)
        return opc_error(OPC_ERR_CORRUPT, "%s: normalizer: not an object with a \"type\"", c->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(arr)) return opc_error(OPC_ERR_CORRUPT, "%s: normalizer.normalizers must be an array", c->path);
        cJSON_ArrayForEach(e, arr) {
            opc_status st = parse_normalizer(c, e, depth + 1);
            if (st) return st;
        }
        return OPC_OK;
    }
    if (!strcmp(type, "Prepend")) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(n, "prepend");
        if (!cJSON_IsString(s) || strcmp(s->valuestring, "\xE2\x96\x81") != 0)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: normalizer Prepend: only \"\xE2\x96\x81\" is supported", c->path);
        c->saw_spm = 1;
        c->v->add_space_prefix = 1;
        return OPC_OK;
    }
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const cJSON *lit = cJSON_IsObject(pat) ? cJSON_GetObjectItemCaseSensitive(pat, "String") : NULL;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content");
        if (!cJSON_IsString(lit) || !cJSON_IsString(content) || strcmp(lit->valuestring, " ") != 0 ||
            strcmp(content->valuestring, "\xE2\x96\x81") != 0)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: normalizer Replace: only \" \" -> \"\xE2\x96\x81\" is supported",
                             c->path);
        c->saw_spm = 1;
        return OPC_OK;
    }
    if (!strcmp(type, "NFC")) {
        c->is_nfc = 1; /* Qwen2: we assume the input is already NFC (almost all text is) */
        return OPC_OK;
    }
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", c->path, type);
}

static int32_t find_token(const opc_vocab *v, const char *s) {
    size_t n = strlen(s);
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->tokens[i] && v->token_len[i] == n && memcmp(v->tokens[i], s, n) == 0) return i;
    return -1;
}

/* "bos_token": "<s>" or {"content": "<s>", ...} */
static const char *token_name(const cJSON *o, const char *key) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(e)) return e->valuestring;
    if (cJSON_IsObject(e)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* tokenizer_config.json (optional): add_bos_token, special token names, chat_template. */
static opc_status read_config(hf_ctx *c, const char *dir) {
    opc_vocab *v = c->v;
    char path[1200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (opc_file_exists(path)) {
        char *txt = NULL;
        size_t len = 0;
        opc_status st = opc_read_file(path, &txt, &len);
        if (st) return st;
        cJSON *root = cJSON_ParseWithLength(txt, len);
        free(txt);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return opc_error(OPC_ERR_CORRUPT, "%s: not a JSON object", path);
        }
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "add_bos_token");
        if (cJSON_IsBool(b)) v->add_bos = cJSON_IsTrue(b);
        b = cJSON_GetObjectItemCaseSensitive(root, "add_eos_token");
        if (cJSON_IsBool(b)) v->add_eos = cJSON_IsTrue(b);
        const char *name;
        int32_t id;
        if ((name = token_name(root, "bos_token")) && (id = find_token(v, name)) >= 0) v->bos_id = id;
        if ((name = token_name(root, "eos_token")) && (id = find_token(v, name)) >= 0) v->eos_id = id;
        if ((name = token_name(root, "unk_token")) && (id = find_token(v, name)) >= 0) v->unk_id = id;
        if ((name = token_name(root, "pad_token")) && (id = find_token(v, name)) >= 0) v->pad_id = id;
        const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
        const char *tsrc = NULL;
        if (cJSON_IsString(tpl)) {
            tsrc = tpl->valuestring;
        } else if (cJSON_IsArray(tpl)) { /* [{"name": "default", "template": "..."}] */
            const cJSON *e;
            cJSON_ArrayForEach(e, tpl) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
                const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (cJSON_IsString(tt) && (!tsrc || (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))))
                    tsrc = tt->valuestring;
            }
        }
        if (tsrc) {
            free(v->chat_template);
            v->chat_template = dup_str(tsrc);
            if (!v->chat_template) {
                cJSON_Delete(root);
                return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
            }
        }
        cJSON_Delete(root);
    }
    /* newer transformers save the template as its own file */
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (!v->chat_template && opc_file_exists(path)) {
        size_t len;
        opc_status st = opc_read_file(path, &v->chat_template, &len);
        if (st) return st;
    }
    return OPC_OK;
}

static opc_status parse_root(hf_ctx *c, const cJSON *root) {
    opc_vocab *v = c->v;
    const char *path = c->path;
    opc_status st;
    if (!cJSON_IsObject(root)) return opc_error(OPC_ERR_CORRUPT, "%s: not a JSON object", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return opc_error(OPC_ERR_CORRUPT, "%s: missing \"model\" object", path);
    const char *mtype = type_of(model);
    if (mtype && strcmp(mtype, "BPE") != 0)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (only BPE)", path, mtype);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return opc_error(OPC_ERR_CORRUPT, "%s: model.vocab must be an object", path);
    if (merges && !cJSON_IsArray(merges)) return opc_error(OPC_ERR_CORRUPT, "%s: model.merges must be an array", path);
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return opc_error(OPC_ERR_CORRUPT, "%s: added_tokens must be an array", path);

    /* ---- size: the largest id in vocab and added_tokens */
    int64_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        if (!is_int_id(e, MAX_TOKENS))
            return opc_error(OPC_ERR_CORRUPT, "%s: model.vocab[\"%.40s\"]: id must be an integer in [0, %d)", path,
                             e->string, MAX_TOKENS);
        if ((int64_t)e->valuedouble + 1 > n) n = (int64_t)e->valuedouble + 1;
    }
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(e, added) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (!is_int_id(id, MAX_TOKENS) || !cJSON_IsString(content))
                return opc_error(OPC_ERR_CORRUPT, "%s: added_tokens[]: needs an integer \"id\" and a string \"content\"",
                                 path);
            if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
        }
    }
    if (n == 0) return opc_error(OPC_ERR_CORRUPT, "%s: model.vocab is empty", path);
    /* ids must be dense, so there cannot be more ids than entries (checked before allocating) */
    int64_t entries = (int64_t)cJSON_GetArraySize(vocab) + (cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0);
    if (n > entries)
        return opc_error(OPC_ERR_CORRUPT, "%s: token ids reach %lld but only %lld tokens are defined", path,
                         (long long)n - 1, (long long)entries);

    v->n_tokens = (int32_t)n;
    v->tokens = calloc((size_t)n, sizeof(char *));
    v->token_len = calloc((size_t)n, sizeof(uint32_t));
    v->types = calloc((size_t)n, sizeof(int32_t));
    if (!v->tokens || !v->token_len || !v->types) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
    cJSON_ArrayForEach(e, vocab) {
        int32_t id = (int32_t)e->valuedouble;
        if (v->tokens[id])
            return opc_error(OPC_ERR_CORRUPT, "%s: model.vocab: id %d is given to both \"%.40s\" and \"%.40s\"", path,
                             id, v->tokens[id], e->string);
        if (!(v->tokens[id] = dup_str(e->string))) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
        v->token_len[id] = (uint32_t)strlen(e->string);
        v->types[id] = 1;
    }
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(e, added) {
            int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(e, "id")->valuedouble;
            const char *content = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
            int special = 0;
            if ((st = get_bool(c, e, "added_tokens[]", "special", 0, &special))) return st;
            if (v->tokens[id] && strcmp(v->tokens[id], content) != 0)
                return opc_error(OPC_ERR_CORRUPT, "%s: added_tokens: id %d is \"%.40s\" but model.vocab has \"%.40s\"",
                                 path, id, content, v->tokens[id]);
            if (!v->tokens[id]) {
                if (!(v->tokens[id] = dup_str(content))) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
                v->token_len[id] = (uint32_t)strlen(content);
            }
            v->types[id] = special ? 3 : 4;
        }
    }
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (!v->tokens[i]) return opc_error(OPC_ERR_CORRUPT, "%s: no token has id %d (ids must be 0..%d)", path, i,
                                            v->n_tokens - 1);

    /* ---- merges */
    int nm = merges ? cJSON_GetArraySize(merges) : 0;
    if (nm > 0) {
        v->merges = calloc((size_t)nm, sizeof(char *));
        if (!v->merges) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
        v->n_merges = nm;
        int i = 0;
        cJSON_ArrayForEach(e, merges) {
            const char *a = NULL, *b = NULL;
            if (cJSON_IsString(e)) {
                v->merges[i] = dup_str(e->valuestring);
                if (!v->merges[i]) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
                if (!strchr(v->merges[i], ' '))
                    return opc_error(OPC_ERR_CORRUPT, "%s: model.merges[%d] \"%.40s\" is not \"left right\"", path, i,
                                     e->valuestring);
            } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                       cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
                a = cJSON_GetArrayItem(e, 0)->valuestring;
                b = cJSON_GetArrayItem(e, 1)->valuestring;
                size_t la = strlen(a), lb = strlen(b);
                v->merges[i] = malloc(la + lb + 2);
                if (!v->merges[i]) return opc_error(OPC_ERR_NOMEM, "%s: out of memory", path);
                memcpy(v->merges[i], a, la);
                v->merges[i][la] = ' ';
                memcpy(v->merges[i] + la + 1, b, lb + 1);
            } else {
                return opc_error(OPC_ERR_CORRUPT, "%s: model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", path, i);
            }
            i++;
        }
    }

    /* ---- model options */
    int byte_fallback = 0, ignore_merges = 0;
    if ((st = get_bool(c, model, "model", "byte_fallback", 0, &byte_fallback)) ||
        (st = get_bool(c, model, "model", "ignore_merges", 0, &ignore_merges)))
        return st;
    v->ignore_merges = ignore_merges;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) v->unk_id = find_token(v, unk->valuestring);
    if (byte_fallback) c->saw_spm = 1;

    /* ---- pipeline */
    if ((st = parse_normalizer(c, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0))) return st;
    if ((st = parse_pre(c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", 0))) return st;
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dtype = cJSON_IsObject(dec) ? type_of(dec) : NULL;
    if (dtype && !strcmp(dtype, "ByteLevel")) c->saw_bytelevel = 1;
    if (c->saw_bytelevel && c->saw_spm)
        return opc_error(OPC_ERR_UNSUPPORTED, "%s: mixes byte-level and SentencePiece-style (\"\xE2\x96\x81\") steps",
                         path);
    if (c->saw_bytelevel) {
        v->kind = OPC_VOCAB_BPE_BYTELEVEL;
        if (v->n_pre_regex == 0 && (st = add_regex(c, OPC_PRE_RE_ALL, "pre_tokenizer"))) return st;
    } else if (c->saw_spm) {
        v->kind = OPC_VOCAB_SPM;
        if (v->n_pre_regex > 0)
            return opc_error(OPC_ERR_UNSUPPORTED, "%s: pre_tokenizer: regex splits with a SentencePiece-style model", path);
    } else {
        return opc_error(OPC_ERR_UNSUPPORTED,
                         "%s: neither byte-level (ByteLevel) nor SentencePiece-style (Metaspace, \"\xE2\x96\x81\" "
                         "normalizer, byte_fallback) BPE",
                         path);
    }
    if (c->is_nfc) opc_log(OPC_LOG_INFO, "%s: NFC normalizer: input text is assumed to be NFC already", path);
    if (v->kind == OPC_VOCAB_SPM && nm == 0)
        return opc_error(OPC_ERR_CORRUPT, "%s: model.merges is empty (SentencePiece-style BPE needs merges)", path);

    /* name the split for `info`: the known patterns by their llama.cpp names */
    const char *pre = v->kind == OPC_VOCAB_SPM ? "default" : "hf";
    if (v->n_pre_regex == 1 && !strcmp(v->pre_regex[0], OPC_PRE_RE_GPT2)) pre = "gpt2";
    if (v->n_pre_regex == 1 && !strcmp(v->pre_regex[0], OPC_PRE_RE_LLAMA3)) pre = "llama-bpe";
    if (v->n_pre_regex == 1 && !strcmp(v->pre_regex[0], OPC_PRE_RE_QWEN2)) pre = "qwen2";
    if (v->n_pre_regex == 2 && !strcmp(v->pre_regex[0], OPC_PRE_RE_DIGIT) && !strcmp(v->pre_regex[1], OPC_PRE_RE_GPT2))
        pre = "smollm";
    snprintf(v->pre, sizeof v->pre, "%s", pre);

    /* ---- BOS from the post-processor: TemplateProcessing whose "single" starts with a special token */
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const char *ptype = cJSON_IsObject(post) ? type_of(post) : NULL;
    if (ptype && !strcmp(ptype, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(post, "single");
        const cJSON *first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
        const cJSON *sp = first ? cJSON_GetObjectItemCaseSensitive(first, "SpecialToken") : NULL;
        const cJSON *sid = sp ? cJSON_GetObjectItemCaseSensitive(sp, "id") : NULL;
        if (cJSON_IsString(sid)) {
            int32_t id = find_token(v, sid->valuestring);
            if (id >= 0) {
                v->bos_id = id;
                v->add_bos = 1;
            }
        }
    }
    if (v->kind == OPC_VOCAB_SPM) { /* SentencePiece conventions when nothing says otherwise */
        if (v->bos_id < 0) v->bos_id = find_token(v, "<s>");
        if (v->eos_id < 0) v->eos_id = find_token(v, "</s>");
    }
    return OPC_OK;
}

/* Parse tokenizer.json text into v (v is reset first). */
static opc_status parse_text(const char *json, size_t len, const char *name, opc_vocab *v, hf_ctx *c) {
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : 0;
        return opc_error(OPC_ERR_CORRUPT, "%s: not valid JSON (near byte %zu)", name, off);
    }
    opc_vocab_free(v);
    *c = (hf_ctx){name, v, 0, 0, 0};
    opc_status st = parse_root(c, root);
    cJSON_Delete(root);
    return st;
}

/* Build it once: bad merges and regexes are load errors, not first-encode errors. */
static opc_status validate(const char *name, const opc_vocab *v) {
    opc_tokenizer *t = NULL;
    opc_status st = opc_tokenizer_init(&t, v);
    opc_tokenizer_free(t);
    return st ? opc_error_wrap(st, "%s: ", name) : OPC_OK;
}

opc_status opc_vocab_from_hf_json_buffer(const char *json, size_t len, const char *name, opc_vocab *v) {
    if (!json || !v) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer.json: NULL argument");
    if (!name) name = "tokenizer.json";
    hf_ctx c;
    opc_status st = parse_text(json, len, name, v, &c);
    if (st == OPC_OK) st = validate(name, v);
    if (st) opc_vocab_free(v);
    return st;
}

opc_status opc_vocab_from_hf_json(const char *tokenizer_json_path, opc_vocab *v) {
    if (!tokenizer_json_path || !v) return opc_error(OPC_ERR_INVALID_ARG, "tokenizer.json: NULL argument");
    const char *path = tokenizer_json_path;
    char *txt = NULL;
    size_t len = 0;
    opc_status st = opc_read_file(path, &txt, &len);
    if (st) return st;
    hf_ctx c;
    st = parse_text(txt, len, path, v, &c);
    free(txt);
    if (st == OPC_OK) { /* tokenizer_config.json beside tokenizer.json */
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        st = read_config(&c, dir);
    }
    if (st == OPC_OK) st = validate(path, v);
    if (st) opc_vocab_free(v);
    return st;
}
