/*
 * hf.c — reader for Hugging Face model folders:
 *   config.json                        architecture + hyper-parameters (cJSON)
 *   model.safetensors                  weights, or
 *   model.safetensors.index.json       {"weight_map": {name: shard file}} + shards
 *   tokenizer.json (+ tokenizer_config.json)   read by src/tokenizer
 *
 * Tensors keep their safetensors dtype (F32/F16/BF16) and are views into the
 * shard mappings, which the model description owns. Hugging Face Q/K rows are
 * already in rotate-half order, so nothing is permuted here.
 */
#include "hf.h"

#include "loaders.h"
#include "safetensors.h"

#include "../tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ config == */

/* An optional integer key: absent or null -> def; otherwise an integral JSON
 * number in [lo, hi]. required: absent is NOT_FOUND. */
static opc_status cfg_int(const cJSON *o, const char *key, const char *what, int required, int64_t def,
                          int64_t lo, int64_t hi, int32_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return opc_error(OPC_ERR_NOT_FOUND, "%s: required key \"%s\" is missing", what, key);
        *out = (int32_t)def;
        return OPC_OK;
    }
    if (!cJSON_IsNumber(it))
        return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" must be an integer, not %s", what, key,
                         cJSON_IsString(it) ? "a string" : cJSON_IsBool(it) ? "a boolean"
                         : cJSON_IsArray(it) ? "an array" : "an object");
    double v = it->valuedouble;
    if (!(v >= (double)lo && v <= (double)hi) || (double)(int64_t)v != v)
        return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" = %g is not an integer in [%lld, %lld]", what, key, v,
                         (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return OPC_OK;
}

static opc_status cfg_float(const cJSON *o, const char *key, const char *what, int required, double def,
                            float *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return opc_error(OPC_ERR_NOT_FOUND, "%s: required key \"%s\" is missing", what, key);
        *out = (float)def;
        return OPC_OK;
    }
    if (!cJSON_IsNumber(it))
        return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" must be a number", what, key);
    double v = it->valuedouble;
    if (!(v > -3.4e38 && v < 3.4e38)) /* finite and representable as float */
        return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" = %g is out of range", what, key, v);
    *out = (float)v;
    return OPC_OK;
}

static opc_status cfg_bool(const cJSON *o, const char *key, const char *what, int def, int32_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return OPC_OK;
    }
    if (!cJSON_IsBool(it)) return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" must be true or false", what, key);
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return OPC_OK;
}

/* rope_scaling (transformers <= 4.x) or rope_parameters (5.x): null, or an
 * object whose "rope_type" (older: "type") picks the scheme. */
static opc_status parse_rope(const cJSON *rs, const char *key, const char *what, opc_config *c) {
    if (!rs || cJSON_IsNull(rs)) return OPC_OK;
    if (!cJSON_IsObject(rs)) return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" must be an object or null", what, key);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty || cJSON_IsNull(ty)) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (ty && !cJSON_IsNull(ty) && !cJSON_IsString(ty))
        return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s.rope_type\" must be a string", what, key);
    const char *t = ty && cJSON_IsString(ty) ? ty->valuestring : "default";
    char k[64];
    opc_status st;
    /* rope_parameters also carries rope_theta (transformers 5.x) */
    snprintf(k, sizeof k, "%s.rope_theta", key);
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(rs, "rope_theta");
    if (th && !cJSON_IsNull(th) && (st = cfg_float(rs, "rope_theta", what, 0, c->rope_theta, &c->rope_theta)))
        return opc_error(st, "%s: key \"%s\" must be a number", what, k);
    if (!strcmp(t, "default")) {
        c->rope_scaling = OPC_ROPE_SCALING_NONE;
        return OPC_OK;
    }
    if (!strcmp(t, "linear") || !strcmp(t, "llama3")) {
        int llama3 = !strcmp(t, "llama3");
        c->rope_scaling = llama3 ? OPC_ROPE_SCALING_LLAMA3 : OPC_ROPE_SCALING_LINEAR;
        static const char *keys[] = {"factor", "low_freq_factor", "high_freq_factor"};
        float *dst[] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
        for (int i = 0; i < (llama3 ? 3 : 1); i++) {
            snprintf(k, sizeof k, "%s.%s", key, keys[i]);
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(rs, keys[i]);
            if (!it) return opc_error(OPC_ERR_NOT_FOUND, "%s: required key \"%s\" is missing", what, k);
            if (!cJSON_IsNumber(it) || !(it->valuedouble > 0.0 && it->valuedouble < 1e6))
                return opc_error(OPC_ERR_CORRUPT, "%s: key \"%s\" must be a positive number", what, k);
            *dst[i] = (float)it->valuedouble;
        }
        if (llama3) {
            snprintf(k, sizeof k, "%s.original_max_position_embeddings", key);
            if ((st = cfg_int(rs, "original_max_position_embeddings", what, 1, 0, 1, INT32_MAX,
                              &c->rope_orig_max_pos)))
                return opc_error(st, "%s: key \"%s\" must be a positive integer", what, k);
            if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
                return opc_error(OPC_ERR_CORRUPT, "%s: %s.high_freq_factor must exceed low_freq_factor", what, key);
        }
        return OPC_OK;
    }
    return opc_error(OPC_ERR_UNSUPPORTED, "%s: %s type \"%.40s\" is not supported (default, linear, llama3)",
                     what, key, t);
}

opc_status opc_hf_parse_config(const char *json, size_t len, const char *what, opc_config *c) {
    memset(c, 0, sizeof *c);
    cJSON *root = opc_json_parse(json, len, what);
    if (!root) return OPC_ERR_CORRUPT;
    opc_status st = OPC_OK;
    if (!cJSON_IsObject(root)) {
        st = opc_error(OPC_ERR_CORRUPT, "%s: top level is not a JSON object", what);
        goto done;
    }

    /* Architecture: architectures[0], else model_type. */
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const char *arch = NULL;
    if (archs && !cJSON_IsNull(archs)) {
        const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
        if (!cJSON_IsString(a0)) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: key \"architectures\" must be a non-empty array of strings", what);
            goto done;
        }
        arch = a0->valuestring;
    } else {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        if (!cJSON_IsString(mt)) {
            st = opc_error(OPC_ERR_NOT_FOUND, "%s: neither \"architectures\" nor \"model_type\" names the model",
                           what);
            goto done;
        }
        static const char *mts[][2] = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                       {"qwen2", "Qwen2ForCausalLM"}};
        arch = mt->valuestring;
        for (size_t i = 0; i < 3; i++)
            if (!strcmp(arch, mts[i][0])) arch = mts[i][1];
    }
    if (!strcmp(arch, "LlamaForCausalLM")) c->arch = OPC_ARCH_LLAMA;
    else if (!strcmp(arch, "MistralForCausalLM")) c->arch = OPC_ARCH_MISTRAL;
    else if (!strcmp(arch, "Qwen2ForCausalLM")) c->arch = OPC_ARCH_QWEN2;
    else {
        st = opc_error(OPC_ERR_UNSUPPORTED, "%s: architecture \"%.80s\" is not supported "
                       "(LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", what, arch);
        goto done;
    }

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act)) {
            st = opc_error(OPC_ERR_CORRUPT, "%s: key \"hidden_act\" must be a string", what);
            goto done;
        }
        if (strcmp(act->valuestring, "silu") != 0) {
            st = opc_error(OPC_ERR_UNSUPPORTED, "%s: hidden_act \"%.40s\" is not supported (silu)", what,
                           act->valuestring);
            goto done;
        }
    }

    if ((st = cfg_int(root, "hidden_size", what, 1, 0, 1, INT32_MAX, &c->dim)) ||
        (st = cfg_int(root, "intermediate_size", what, 1, 0, 1, INT32_MAX, &c->hidden_dim)) ||
        (st = cfg_int(root, "num_hidden_layers", what, 1, 0, 1, INT32_MAX, &c->n_layers)) ||
        (st = cfg_int(root, "num_attention_heads", what, 1, 0, 1, INT32_MAX, &c->n_heads)) ||
        (st = cfg_int(root, "num_key_value_heads", what, 0, c->n_heads, 1, INT32_MAX, &c->n_kv_heads)) ||
        (st = cfg_int(root, "head_dim", what, 0, c->dim / c->n_heads, 1, INT32_MAX, &c->head_dim)) ||
        (st = cfg_int(root, "vocab_size", what, 1, 0, 1, INT32_MAX, &c->vocab_size)) ||
        /* LlamaConfig's default context */
        (st = cfg_int(root, "max_position_embeddings", what, 0, 2048, 1, INT32_MAX, &c->max_seq_len)) ||
        /* all three architectures default to 1e-6 */
        (st = cfg_float(root, "rms_norm_eps", what, 0, 1e-6, &c->rms_eps)) ||
        (st = cfg_float(root, "rope_theta", what, 0, 10000.0, &c->rope_theta)) ||
        /* LlamaConfig, MistralConfig and Qwen2Config all default to untied */
        (st = cfg_bool(root, "tie_word_embeddings", what, 0, &c->tied_embeddings)))
        goto done;
    if (c->arch == OPC_ARCH_QWEN2) {
        c->attn_bias = 1; /* Qwen2 always has q/k/v biases (and no o bias) */
    } else if (c->arch == OPC_ARCH_LLAMA) {
        /* Llama's attention_bias also puts a bias on o_proj, which the model
         * description has no config bit for and the forward pass does not add:
         * refuse it rather than run a wrong model. Same for mlp_bias. */
        int32_t ab = 0, mb = 0;
        if ((st = cfg_bool(root, "attention_bias", what, 0, &ab)) || (st = cfg_bool(root, "mlp_bias", what, 0, &mb)))
            goto done;
        if (ab || mb) {
            st = opc_error(OPC_ERR_UNSUPPORTED, "%s: %s = true is not supported (bias on %s)", what,
                           ab ? "attention_bias" : "mlp_bias", ab ? "q/k/v/o projections" : "MLP projections");
            goto done;
        }
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        st = parse_rope(rs, "rope_scaling", what, c);
    } else {
        st = parse_rope(cJSON_GetObjectItemCaseSensitive(root, "rope_parameters"), "rope_parameters", what, c);
    }
done:
    cJSON_Delete(root);
    return st;
}

/* ================================================================ names === */

/* HF per-layer suffix -> canonical per-layer suffix. */
static const char *k_layer_names[][2] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

/* Returns 1 and the canonical name (and the layer, -1 for global tensors). */
static int map_name(const char *hf, char *out, size_t cap, long *layer) {
    *layer = -1;
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, cap, "token_embd.weight") > 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, cap, "output_norm.weight") > 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, cap, "output.weight") > 0;
    static const char pre[] = "model.layers.";
    if (strncmp(hf, pre, sizeof pre - 1) != 0) return 0;
    const char *p = hf + sizeof pre - 1;
    long n = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7) n = n * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.' || (digits > 1 && hf[sizeof pre - 1] == '0')) return 0;
    p++;
    for (size_t i = 0; i < sizeof k_layer_names / sizeof k_layer_names[0]; i++)
        if (!strcmp(p, k_layer_names[i][0])) {
            *layer = n;
            int w = snprintf(out, cap, "blk.%ld.%s", n, k_layer_names[i][1]);
            return w > 0 && (size_t)w < cap;
        }
    return 0;
}

int opc_hf_canonical_name(const char *hf_name, char *out, size_t cap) {
    long layer;
    return map_name(hf_name, out, cap, &layer);
}

/* ================================================================ weights = */

#define HF_MAX_FILE 256

/* A shard name from the index must be a plain file in the folder. */
static int plain_file_name(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < HF_MAX_FILE && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

typedef struct hf_shards {
    int n;
    char file[OPC_MAX_MAPS][HF_MAX_FILE];
    opc_st_file *st[OPC_MAX_MAPS];
    cJSON *index; /* parsed index (weight_map checked against the shards), or NULL */
} hf_shards;

static opc_status read_index(const char *dir, const char *path, hf_shards *s, int max_shards) {
    char *text = NULL;
    size_t len = 0;
    opc_status st = opc_read_file(path, &text, &len);
    if (st) return st;
    s->index = opc_json_parse(text, len, path);
    free(text);
    if (!s->index) return OPC_ERR_CORRUPT;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(s->index, "weight_map");
    if (!cJSON_IsObject(wm)) return opc_error(OPC_ERR_CORRUPT, "%s: key \"weight_map\" must be an object", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || !plain_file_name(it->valuestring))
            return opc_error(OPC_ERR_CORRUPT, "%s: weight_map[\"%.80s\"] must be a file name in %s", path,
                             it->string, dir);
        int k = 0;
        while (k < s->n && strcmp(s->file[k], it->valuestring)) k++;
        if (k == s->n) {
            if (s->n >= max_shards)
                return opc_error(OPC_ERR_UNSUPPORTED, "%s: more than %d shards", path, max_shards);
            snprintf(s->file[s->n++], HF_MAX_FILE, "%s", it->valuestring);
        }
    }
    if (s->n == 0) return opc_error(OPC_ERR_CORRUPT, "%s: weight_map is empty", path);
    return OPC_OK;
}

/* Every tensor the index places in a shard must be in that shard. */
static opc_status check_index(const char *index_path, const hf_shards *s) {
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(s->index, "weight_map");
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        int k = 0;
        while (k < s->n && strcmp(s->file[k], it->valuestring)) k++;
        if (k == s->n || opc_st_find(s->st[k], it->string) < 0)
            return opc_error(OPC_ERR_CORRUPT, "%s: tensor %.120s is listed in shard %s but not found there",
                             index_path, it->string, it->valuestring);
    }
    return OPC_OK;
}

static size_t elem_size(opc_type t) { return t == OPC_TYPE_F32 ? 4 : 2; }

/* Check presence and shape of everything the forward pass reads; a missing
 * tensor is reported under both its HF and canonical names. */
static opc_status require_all(const opc_model_desc *d) {
    const opc_config *c = &d->cfg;
    const int64_t dim = c->dim, hid = c->hidden_dim, q = (int64_t)c->n_heads * c->head_dim,
                  kv = (int64_t)c->n_kv_heads * c->head_dim;
    const opc_tensor *t;
    struct req {
        const char *canon, *hf;
        int64_t rows, cols;
    };
    const struct req glob[] = {
        {"token_embd.weight", "model.embed_tokens.weight", c->vocab_size, dim},
        {"output_norm.weight", "model.norm.weight", dim, 0},
        {"output.weight", "lm_head.weight", c->vocab_size, dim},
    };
    const struct req layer[] = {
        {"attn_norm.weight", "input_layernorm.weight", dim, 0},
        {"attn_q.weight", "self_attn.q_proj.weight", q, dim},
        {"attn_k.weight", "self_attn.k_proj.weight", kv, dim},
        {"attn_v.weight", "self_attn.v_proj.weight", kv, dim},
        {"attn_output.weight", "self_attn.o_proj.weight", dim, q},
        {"ffn_norm.weight", "post_attention_layernorm.weight", dim, 0},
        {"ffn_gate.weight", "mlp.gate_proj.weight", hid, dim},
        {"ffn_up.weight", "mlp.up_proj.weight", hid, dim},
        {"ffn_down.weight", "mlp.down_proj.weight", dim, hid},
        {"attn_q.bias", "self_attn.q_proj.bias", q, 0},
        {"attn_k.bias", "self_attn.k_proj.bias", kv, 0},
        {"attn_v.bias", "self_attn.v_proj.bias", kv, 0},
    };
    opc_status st;
    for (int i = 0; i < (c->tied_embeddings ? 2 : 3); i++)
        if ((st = opc_model_desc_require(d, glob[i].canon, glob[i].rows, glob[i].cols, &t)) != OPC_OK)
            return st == OPC_ERR_NOT_FOUND
                       ? opc_error(st, "%s: missing tensor %s (%s)", d->path, glob[i].hf, glob[i].canon)
                       : st;
    int n_req = c->attn_bias ? 12 : 9;
    for (int32_t l = 0; l < c->n_layers; l++)
        for (int i = 0; i < n_req; i++) {
            char name[OPC_MAX_NAME];
            snprintf(name, sizeof name, "blk.%d.%s", l, layer[i].canon);
            if ((st = opc_model_desc_require(d, name, layer[i].rows, layer[i].cols, &t)) != OPC_OK)
                return st == OPC_ERR_NOT_FOUND
                           ? opc_error(st, "%s: missing tensor model.layers.%d.%s (%s)", d->path, l, layer[i].hf,
                                       name)
                           : st;
        }
    return OPC_OK;
}

opc_status opc_hf_load_weights(const char *dir, opc_model_desc *d) {
    char path[1400];
    hf_shards *s = calloc(1, sizeof *s);
    if (!s) return opc_error(OPC_ERR_NOMEM, "cannot allocate");
    opc_status st;
    d->format = OPC_SRC_HF;

    /* ---- config */
    snprintf(path, sizeof path, "%s/config.json", dir);
    {
        char *text = NULL;
        size_t len = 0;
        if (!opc_file_exists(path)) {
            st = opc_error(OPC_ERR_NOT_FOUND, "%s: no config.json in the folder", dir);
            goto done;
        }
        if ((st = opc_read_file(path, &text, &len))) goto done;
        st = opc_hf_parse_config(text, len, path, &d->cfg);
        if (st == OPC_OK) { /* a human name for `info` */
            cJSON *root = opc_json_parse(text, len, path);
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "_name_or_path");
            if (!cJSON_IsString(nm) || !nm->valuestring[0]) /* transformers 5.x from GGUF */
                nm = cJSON_GetObjectItemCaseSensitive(root, "_model_name_or_path");
            if (cJSON_IsString(nm) && nm->valuestring[0]) snprintf(d->name, sizeof d->name, "%s", nm->valuestring);
            cJSON_Delete(root);
        }
        free(text);
        if (st || (st = opc_config_validate(&d->cfg, path))) goto done;
        if (!d->name[0]) {
            const char *b = strrchr(dir, '/');
            snprintf(d->name, sizeof d->name, "%s", b && b[1] ? b + 1 : dir);
        }
    }

    /* ---- shard list */
    char index_path[1400];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int max_shards = OPC_MAX_MAPS - d->n_maps;
    if (opc_file_exists(path)) {
        s->n = 1;
        snprintf(s->file[0], HF_MAX_FILE, "model.safetensors");
    } else if (opc_file_exists(index_path)) {
        if ((st = read_index(dir, index_path, s, max_shards))) goto done;
    } else {
        st = opc_error(OPC_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
        goto done;
    }

    /* ---- map + parse each shard once; the description owns the mappings */
    int64_t n_use = 0;
    for (int k = 0; k < s->n; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, s->file[k]);
        opc_map *m = &d->maps[d->n_maps];
        if ((st = opc_map_open(path, m))) goto done;
        d->n_maps++;
        if ((st = opc_st_open_mem(m->data, m->size, path, &s->st[k]))) goto done;
        for (int64_t i = 0; i < opc_st_count(s->st[k]); i++) {
            char canon[OPC_MAX_NAME];
            long layer;
            const char *nm = opc_st_name(s->st[k], i);
            if (!map_name(nm, canon, sizeof canon, &layer)) {
                opc_log(OPC_LOG_DEBUG, "%s: ignoring tensor %s", path, nm);
                continue;
            }
            if (layer >= d->cfg.n_layers) {
                opc_log(OPC_LOG_WARN, "%s: ignoring tensor %s: config.json has %d layers", path, nm,
                        d->cfg.n_layers);
                continue;
            }
            if (d->cfg.tied_embeddings && !strcmp(canon, "output.weight")) {
                opc_log(OPC_LOG_DEBUG, "%s: ignoring %s: embeddings are tied", path, nm);
                continue;
            }
            n_use++;
        }
    }
    if (s->index && (st = check_index(index_path, s))) goto done;
    if (n_use > INT32_MAX) {
        st = opc_error(OPC_ERR_UNSUPPORTED, "%s: too many tensors", dir);
        goto done;
    }
    if ((st = opc_model_desc_alloc_tensors(d, (int32_t)n_use))) goto done;
    d->n_tensors = 0; /* grows as entries are filled, so lookups see only those */

    /* ---- views under canonical names */
    int32_t nt = 0;
    for (int k = 0; k < s->n; k++) {
        for (int64_t i = 0; i < opc_st_count(s->st[k]); i++) {
            char canon[OPC_MAX_NAME];
            long layer;
            const char *nm = opc_st_name(s->st[k], i);
            if (!map_name(nm, canon, sizeof canon, &layer) || layer >= d->cfg.n_layers ||
                (d->cfg.tied_embeddings && !strcmp(canon, "output.weight")))
                continue;
            opc_st_tensor info;
            if ((st = opc_st_get(s->st[k], i, &info))) goto done;
            if (info.n_dims > OPC_MAX_DIMS) {
                st = opc_error(OPC_ERR_UNSUPPORTED, "%s: tensor %s has %d dimensions", opc_st_path(s->st[k]), nm,
                               info.n_dims);
                goto done;
            }
            if (opc_model_desc_find(d, canon)) {
                st = opc_error(OPC_ERR_CORRUPT, "%s: tensor %s appears in more than one shard",
                               opc_st_path(s->st[k]), nm);
                goto done;
            }
            opc_tensor *t = &d->tensors[nt];
            snprintf(t->name, sizeof t->name, "%s", canon);
            t->type = info.type;
            t->n_dims = info.n_dims;
            for (int j = 0; j < info.n_dims; j++) t->shape[j] = info.shape[j];
            t->nbytes = info.nbytes;
            t->qerr = -1.0f;
            t->data = info.data;
            /* The format does not promise alignment: copy a misaligned tensor so
             * consumers can read it as float / uint16_t. */
            if (info.nbytes && ((uintptr_t)info.data % elem_size(info.type)) != 0) {
                t->owned = opc_aligned_alloc(info.nbytes);
                if (!t->owned) {
                    st = opc_error(OPC_ERR_NOMEM, "%s: cannot copy tensor %s", dir, nm);
                    goto done;
                }
                memcpy(t->owned, info.data, info.nbytes);
                t->data = t->owned;
            }
            nt++; /* counted only once filled, so a failure frees what is there */
            d->n_tensors = nt;
        }
    }
    d->n_tensors = nt;
    st = require_all(d);

done:
    for (int k = 0; k < s->n; k++) opc_st_close(s->st[k]);
    cJSON_Delete(s->index);
    free(s);
    return st;
}

opc_status opc_load_hf(const char *dir, opc_model_desc *d) {
    opc_status st = opc_hf_load_weights(dir, d);
    if (st) return st;
    char path[1400];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!opc_file_exists(path)) return opc_error(OPC_ERR_NOT_FOUND, "%s: no tokenizer.json in the folder", dir);
    return opc_vocab_from_hf_json(path, &d->vocab);
}
