/*
 * test_hf.c — safetensors reader and Hugging Face folder reader
 * (src/format/safetensors.c, src/format/hf.c).
 *
 * Tiny synthetic folders are written here: config.json + safetensors with
 * F32/F16/BF16 tensors whose values k/64 are exact in every dtype, so what we
 * read back must equal what we wrote bit for bit. Then the bad cases: each
 * must return the right status and a message naming the file and field.
 * Last, when models/smollm2-hf exists (scripts/dev/make_hf_golden.py smollm2,
 * made by transformers from the GGUF), the HF folder and the GGUF must give
 * the same config and the same weights, which checks our GGUF Q/K
 * un-permutation against transformers'.
 */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include "core/half.h"
#include "format/hf.h"
#include "format/loaders.h"
#include "format/safetensors.h"
#include "model/model.h"

#include <stdint.h>
#include <sys/stat.h>

/* ------------------------------------------------------ safetensors writer -- */

typedef struct stb {
    char *hdr;
    size_t hlen, hcap;
    unsigned char *data;
    size_t dlen, dcap;
} stb;

static void stb_puts(stb *b, const char *s) {
    size_t n = strlen(s);
    if (b->hlen + n + 1 > b->hcap) {
        b->hcap = (b->hlen + n + 1) * 2;
        b->hdr = realloc(b->hdr, b->hcap);
    }
    memcpy(b->hdr + b->hlen, s, n + 1);
    b->hlen += n;
}

static void stb_init(stb *b) {
    memset(b, 0, sizeof *b);
    stb_puts(b, "{\"__metadata__\":{\"format\":\"pt\"}");
}

/* Append a tensor; `raw_json` (if not NULL) replaces the generated entry body. */
static void stb_add(stb *b, const char *name, const char *dtype, int nd, const int64_t *shape, const void *bytes,
                    size_t nbytes) {
    char buf[512];
    size_t o = (size_t)snprintf(buf, sizeof buf, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", name, dtype);
    for (int i = 0; i < nd; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    snprintf(buf + o, sizeof buf - o, "],\"data_offsets\":[%zu,%zu]}", b->dlen, b->dlen + nbytes);
    stb_puts(b, buf);
    if (b->dlen + nbytes > b->dcap) {
        b->dcap = (b->dlen + nbytes) * 2 + 64;
        b->data = realloc(b->data, b->dcap);
    }
    if (nbytes) memcpy(b->data + b->dlen, bytes, nbytes);
    b->dlen += nbytes;
}

/* The file image: u64 header length, header padded with spaces to 8, data. */
static unsigned char *stb_finish(stb *b, size_t *n) {
    stb_puts(b, "}");
    while (b->hlen % 8) stb_puts(b, " ");
    *n = 8 + b->hlen + b->dlen;
    unsigned char *img = malloc(*n);
    uint64_t h = b->hlen;
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)(h >> (8 * i));
    memcpy(img + 8, b->hdr, b->hlen);
    if (b->dlen) memcpy(img + 8 + b->hlen, b->data, b->dlen);
    free(b->hdr);
    free(b->data);
    memset(b, 0, sizeof *b);
    return img;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}
static int write_str(const char *path, const char *s) { return write_file(path, s, strlen(s)); }

/* ------------------------------------------------------------ test model -- */

/* Exact in F32, F16 and BF16: k/64 for |k| <= 64, from the name and index. */
static float tval(const char *name, int64_t i) {
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h = (h ^ (uint32_t)i) * 2654435761u;
    return (float)((int)(h >> 7) % 129 - 64) / 64.0f;
}

enum { DIM = 8, HID = 12, NL = 2, NH = 2, NKV = 1, HD = 4, VOC = 16 };

typedef struct spec {
    const char *arch;
    int tied, bias, shards;
    const char *omit;       /* HF name not written */
    const char *bad_shape;  /* HF name written with one row too many */
    const char *bad_dtype;  /* HF name written as I32 */
    const char *extra_cfg;  /* appended to config.json's object */
    int lm_head_when_tied;  /* write lm_head.weight even when tied (must be ignored) */
} spec;

typedef struct hft {
    char name[96];
    const char *dtype;
    int nd;
    int64_t shape[2];
} hft;

/* The HF tensors of the tiny model, in writing order. */
static int model_tensors(const spec *s, hft *out) {
    int n = 0;
#define T(nm, dt, r, c)                                                                  \
    do {                                                                                 \
        snprintf(out[n].name, sizeof out[n].name, "%s", nm);                             \
        out[n].dtype = dt;                                                               \
        out[n].nd = (c) ? 2 : 1;                                                         \
        out[n].shape[0] = r;                                                             \
        out[n].shape[1] = c;                                                             \
        n++;                                                                             \
    } while (0)
    T("model.embed_tokens.weight", "BF16", VOC, DIM);
    for (int l = 0; l < NL; l++) {
        char p[96];
#define L(suffix, dt, r, c)                                                              \
    do {                                                                                 \
        snprintf(p, sizeof p, "model.layers.%d.%s", l, suffix);                          \
        T(p, dt, r, c);                                                                  \
    } while (0)
        L("input_layernorm.weight", "F32", DIM, 0);
        L("self_attn.q_proj.weight", "F16", NH * HD, DIM);
        L("self_attn.k_proj.weight", "F16", NKV * HD, DIM);
        L("self_attn.v_proj.weight", "F32", NKV * HD, DIM);
        if (s->bias) {
            L("self_attn.q_proj.bias", "F32", NH * HD, 0);
            L("self_attn.k_proj.bias", "BF16", NKV * HD, 0);
            L("self_attn.v_proj.bias", "F16", NKV * HD, 0);
        }
        L("self_attn.o_proj.weight", "BF16", DIM, NH * HD);
        L("post_attention_layernorm.weight", "F32", DIM, 0);
        L("mlp.gate_proj.weight", "F32", HID, DIM);
        L("mlp.up_proj.weight", "F32", HID, DIM);
        L("mlp.down_proj.weight", "F16", DIM, HID);
#undef L
    }
    T("model.norm.weight", "F32", DIM, 0);
    if (!s->tied || s->lm_head_when_tied) T("lm_head.weight", "F32", VOC, DIM);
    T("model.rotary_emb.inv_freq", "F32", HD / 2, 0); /* old checkpoints carry it: ignored */
#undef T
    return n;
}

static void add_tensor(stb *b, const spec *s, const hft *t) {
    int64_t shape[2] = {t->shape[0], t->shape[1]};
    const char *dtype = t->dtype;
    if (s->bad_shape && !strcmp(s->bad_shape, t->name)) shape[0]++;
    if (s->bad_dtype && !strcmp(s->bad_dtype, t->name)) dtype = "I32";
    int64_t n = t->nd == 2 ? shape[0] * shape[1] : shape[0];
    size_t es = !strcmp(dtype, "F32") || !strcmp(dtype, "I32") ? 4 : 2;
    unsigned char *buf = malloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        float v = tval(t->name, i);
        if (es == 4) {
            memcpy(buf + 4 * i, &v, 4);
        } else {
            uint16_t h = !strcmp(dtype, "F16") ? opc_fp32_to_fp16(v) : opc_fp32_to_bf16(v);
            buf[2 * i] = (unsigned char)h;
            buf[2 * i + 1] = (unsigned char)(h >> 8);
        }
    }
    stb_add(b, t->name, dtype, t->nd, shape, buf, (size_t)n * es);
    free(buf);
}

static void clean_dir(const char *dir) {
    static const char *files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                  "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                  "tokenizer.json", "tokenizer_config.json"};
    char p[1200];
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        remove(p);
    }
}

/* Write the folder OPC_BINARY_DIR/tmp_hf_<tag>; returns its path in dir. */
static void make_model(const char *tag, const spec *s, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/tmp_hf_%s", OPC_BINARY_DIR, tag);
    clean_dir(dir);
    char p[1200], cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"%s\"], \"model_type\": \"x\", \"hidden_size\": %d, \"intermediate_size\": %d,"
             " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"
             " \"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-05,"
             " \"rope_theta\": 50000.0, \"tie_word_embeddings\": %s, \"hidden_act\": \"silu\","
             " \"torch_dtype\": \"bfloat16\", \"attention_bias\": %s%s}",
             s->arch ? s->arch : "LlamaForCausalLM", DIM, HID, NL, NH, NKV, VOC, s->tied ? "true" : "false",
             s->bias ? "true" : "false", s->extra_cfg ? s->extra_cfg : "");
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(write_str(p, cfg) == 0);

    hft ts[64];
    int n = model_tensors(s, ts);
    int shards = s->shards > 1 ? 2 : 1;
    char index[8192];
    size_t io = (size_t)snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int k = 0; k < shards; k++) {
        stb b;
        stb_init(&b);
        char fname[64];
        if (shards == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-0000%d-of-00002.safetensors", k + 1);
        for (int i = 0; i < n; i++) {
            /* shard 1: up to and including layer 0; shard 2: the rest */
            int in_second = strstr(ts[i].name, "layers.1.") || strstr(ts[i].name, "model.norm") ||
                            strstr(ts[i].name, "lm_head");
            if (shards == 2 && in_second != k) continue;
            if (s->omit && !strcmp(s->omit, ts[i].name)) continue;
            add_tensor(&b, s, &ts[i]);
            io += (size_t)snprintf(index + io, sizeof index - io, "%s\"%s\": \"%s\"", io > 60 ? ", " : "",
                                   ts[i].name, fname);
        }
        size_t len;
        unsigned char *img = stb_finish(&b, &len);
        snprintf(p, sizeof p, "%s/%s", dir, fname);
        CHECK(write_file(p, img, len) == 0);
        free(img);
    }
    if (shards == 2) {
        snprintf(index + io, sizeof index - io, "}}");
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        CHECK(write_str(p, index) == 0);
    }
}

static opc_status load_weights(const char *dir, opc_model_desc **out) {
    opc_model_desc *d = calloc(1, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", dir);
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    opc_status st = opc_hf_load_weights(dir, d);
    if (st != OPC_OK) {
        opc_model_desc_free(d);
        d = NULL;
    }
    *out = d;
    return st;
}

static float elem(const opc_tensor *t, int64_t i) {
    if (t->type == OPC_TYPE_F32) return ((const float *)t->data)[i];
    uint16_t h = ((const uint16_t *)t->data)[i];
    return t->type == OPC_TYPE_F16 ? opc_fp16_to_fp32(h) : opc_bf16_to_fp32(h);
}

/* Every written tensor we use is present under its canonical name with its
 * dtype, shape and exact values. */
static void check_model(const opc_model_desc *d, const spec *s) {
    hft ts[64];
    int n = model_tensors(s, ts), used = 0;
    for (int i = 0; i < n; i++) {
        char canon[96];
        if (!opc_hf_canonical_name(ts[i].name, canon, sizeof canon)) {
            CHECK(strstr(ts[i].name, "rotary_emb") != NULL);
            continue;
        }
        const opc_tensor *t = opc_model_desc_find(d, canon);
        if (s->tied && !strcmp(canon, "output.weight")) {
            CHECK(t == NULL);
            continue;
        }
        used++;
        CHECK_MSG(t != NULL, "%s (%s) missing", canon, ts[i].name);
        if (!t) continue;
        opc_type want = !strcmp(ts[i].dtype, "F32") ? OPC_TYPE_F32 : !strcmp(ts[i].dtype, "F16") ? OPC_TYPE_F16 : OPC_TYPE_BF16;
        CHECK_EQ_INT(t->type, want);
        CHECK_EQ_INT(t->n_dims, ts[i].nd);
        CHECK_EQ_INT(t->shape[0], ts[i].shape[0]);
        if (ts[i].nd == 2) CHECK_EQ_INT(t->shape[1], ts[i].shape[1]);
        int64_t ne = opc_tensor_nelem(t), bad = 0;
        for (int64_t k = 0; k < ne; k++) bad += elem(t, k) != tval(ts[i].name, k);
        CHECK_MSG(bad == 0, "%s: %lld values differ", canon, (long long)bad);
    }
    CHECK_EQ_INT(d->n_tensors, used);
}

/* ----------------------------------------------------------------- tests -- */

static void test_llama_single_file(void) {
    char dir[1024];
    spec s = {.arch = "LlamaForCausalLM",
              .extra_cfg = ", \"_name_or_path\": \"tiny-llama\", \"rope_scaling\": {\"rope_type\": \"llama3\","
                           " \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                           " \"original_max_position_embeddings\": 8192}"};
    make_model("llama", &s, dir, sizeof dir);
    opc_model_desc *d;
    opc_status st = load_weights(dir, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    const opc_config *c = &d->cfg;
    CHECK_EQ_INT(d->format, OPC_SRC_HF);
    CHECK_EQ_INT(c->arch, OPC_ARCH_LLAMA);
    CHECK_EQ_INT(c->dim, DIM);
    CHECK_EQ_INT(c->hidden_dim, HID);
    CHECK_EQ_INT(c->n_layers, NL);
    CHECK_EQ_INT(c->n_heads, NH);
    CHECK_EQ_INT(c->n_kv_heads, NKV);
    CHECK_EQ_INT(c->head_dim, HD);
    CHECK_EQ_INT(c->vocab_size, VOC);
    CHECK_EQ_INT(c->max_seq_len, 64);
    CHECK_NEAR(c->rms_eps, 1e-5, 1e-12);
    CHECK_NEAR(c->rope_theta, 50000.0, 0);
    CHECK_EQ_INT(c->tied_embeddings, 0);
    CHECK_EQ_INT(c->attn_bias, 0);
    CHECK_EQ_INT(c->rope_scaling, OPC_ROPE_SCALING_LLAMA3);
    CHECK_NEAR(c->rope_factor, 8.0, 0);
    CHECK_NEAR(c->rope_low_freq_factor, 1.0, 0);
    CHECK_NEAR(c->rope_high_freq_factor, 4.0, 0);
    CHECK_EQ_INT(c->rope_orig_max_pos, 8192);
    CHECK_STR(d->name, "tiny-llama");
    check_model(d, &s);
    opc_model_desc_free(d);
}

static void test_qwen2_sharded_tied_bias(void) {
    char dir[1024];
    spec s = {.arch = "Qwen2ForCausalLM", .tied = 1, .bias = 1, .shards = 2, .lm_head_when_tied = 1,
              .extra_cfg = ", \"rope_scaling\": null"};
    make_model("qwen2", &s, dir, sizeof dir);
    opc_model_desc *d;
    opc_status st = load_weights(dir, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    CHECK_EQ_INT(d->cfg.arch, OPC_ARCH_QWEN2);
    CHECK_EQ_INT(d->cfg.attn_bias, 1);
    CHECK_EQ_INT(d->cfg.tied_embeddings, 1);
    CHECK_EQ_INT(d->cfg.rope_scaling, OPC_ROPE_SCALING_NONE);
    CHECK_EQ_INT(d->n_maps, 2);
    check_model(d, &s);
    opc_model_desc_free(d);
}

static void test_mistral_untied_sharded(void) {
    char dir[1024];
    spec s = {.arch = "MistralForCausalLM", .shards = 2,
              .extra_cfg = ", \"sliding_window\": 4096, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"};
    make_model("mistral", &s, dir, sizeof dir);
    opc_model_desc *d;
    opc_status st = load_weights(dir, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    CHECK_EQ_INT(d->cfg.arch, OPC_ARCH_MISTRAL);
    CHECK_EQ_INT(d->cfg.rope_scaling, OPC_ROPE_SCALING_LINEAR);
    CHECK_NEAR(d->cfg.rope_factor, 2.0, 0);
    check_model(d, &s);
    opc_model_desc_free(d);
}

/* ------------------------------------------------------------ config ------ */

#define BASE_CFG                                                                                     \
    "\"hidden_size\": 64, \"intermediate_size\": 172, \"num_hidden_layers\": 2, "                   \
    "\"num_attention_heads\": 8, \"vocab_size\": 100"

typedef struct cfg_case {
    const char *name, *json;
    opc_status st;
    const char *msg;
} cfg_case;

static void test_config_cases(void) {
    static const cfg_case cases[] = {
        {"minimal_defaults", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG "}", OPC_OK, NULL},
        {"model_type_only", "{\"model_type\": \"qwen2\", " BASE_CFG "}", OPC_OK, NULL},
        {"transformers5_rope_parameters",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG
         ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 100000.0}}", OPC_OK, NULL},
        {"bad_json", "{\"architectures\": [\"LlamaForCausalLM\"", OPC_ERR_CORRUPT, "not valid JSON"},
        {"not_object", "[1, 2]", OPC_ERR_CORRUPT, "not a JSON object"},
        {"empty", "", OPC_ERR_CORRUPT, "not valid JSON"},
        {"two_values", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG "} {}", OPC_ERR_CORRUPT, "trailing"},
        {"architectures_not_array", "{\"architectures\": \"LlamaForCausalLM\", " BASE_CFG "}", OPC_ERR_CORRUPT,
         "architectures"},
        {"architectures_empty", "{\"architectures\": [], " BASE_CFG "}", OPC_ERR_CORRUPT, "architectures"},
        {"unsupported_arch", "{\"architectures\": [\"GPT2LMHeadModel\"], " BASE_CFG "}", OPC_ERR_UNSUPPORTED,
         "GPT2LMHeadModel"},
        {"no_arch", "{" BASE_CFG "}", OPC_ERR_NOT_FOUND, "architectures"},
        {"hidden_size_string",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"64\", \"intermediate_size\": 172, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"vocab_size\": 100}", OPC_ERR_CORRUPT, "hidden_size"},
        {"hidden_size_fraction",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64.5, \"intermediate_size\": 172, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 8, \"vocab_size\": 100}", OPC_ERR_CORRUPT, "hidden_size"},
        {"heads_negative",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 172, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": -8, \"vocab_size\": 100}", OPC_ERR_CORRUPT,
         "num_attention_heads"},
        {"layers_huge",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 172, "
         "\"num_hidden_layers\": 1e30, \"num_attention_heads\": 8, \"vocab_size\": 100}", OPC_ERR_CORRUPT,
         "num_hidden_layers"},
        {"missing_vocab",
         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 172, "
         "\"num_hidden_layers\": 2, \"num_attention_heads\": 8}", OPC_ERR_NOT_FOUND, "vocab_size"},
        {"kv_heads_bool", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"num_key_value_heads\": true}",
         OPC_ERR_CORRUPT, "num_key_value_heads"},
        {"eps_string", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rms_norm_eps\": \"1e-5\"}",
         OPC_ERR_CORRUPT, "rms_norm_eps"},
        {"theta_array", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rope_theta\": [1]}",
         OPC_ERR_CORRUPT, "rope_theta"},
        {"tie_string", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"tie_word_embeddings\": \"true\"}",
         OPC_ERR_CORRUPT, "tie_word_embeddings"},
        {"bias_number", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"attention_bias\": 1}",
         OPC_ERR_CORRUPT, "attention_bias"},
        {"llama_attention_bias", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"attention_bias\": true}",
         OPC_ERR_UNSUPPORTED, "attention_bias"},
        {"llama_mlp_bias", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"mlp_bias\": true}",
         OPC_ERR_UNSUPPORTED, "mlp_bias"},
        {"act_gelu", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"hidden_act\": \"gelu\"}",
         OPC_ERR_UNSUPPORTED, "gelu"},
        {"act_number", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"hidden_act\": 3}",
         OPC_ERR_CORRUPT, "hidden_act"},
        {"rope_scaling_string", "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rope_scaling\": \"x\"}",
         OPC_ERR_CORRUPT, "rope_scaling"},
        {"rope_yarn",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}",
         OPC_ERR_UNSUPPORTED, "yarn"},
        {"rope_llama3_no_factor",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG
         ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
         "\"original_max_position_embeddings\": 8192}}", OPC_ERR_NOT_FOUND, "rope_scaling.factor"},
        {"rope_llama3_bad_orig",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG
         ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
         "\"high_freq_factor\": 4, \"original_max_position_embeddings\": \"8192\"}}", OPC_ERR_CORRUPT,
         "original_max_position_embeddings"},
        {"rope_linear_negative",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": -2}}",
         OPC_ERR_CORRUPT, "rope_scaling.factor"},
        {"rope_type_number",
         "{\"architectures\": [\"LlamaForCausalLM\"], " BASE_CFG ", \"rope_scaling\": {\"rope_type\": 3}}",
         OPC_ERR_CORRUPT, "rope_type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cfg_case *k = &cases[i];
        opc_config c;
        opc_status st = opc_hf_parse_config(k->json, strlen(k->json), "dir/config.json", &c);
        CHECK_MSG(st == k->st, "case %s: got %s (%s), want %s", k->name, opc_status_str(st), opc_last_error(),
                  opc_status_str(k->st));
        if (k->msg)
            CHECK_MSG(strstr(opc_last_error(), k->msg) && strstr(opc_last_error(), "dir/config.json"),
                      "case %s: message \"%s\" lacks \"%s\" or the file", k->name, opc_last_error(), k->msg);
        if (st == OPC_OK && !strcmp(k->name, "minimal_defaults")) {
            /* HF defaults: kv heads = heads, head_dim = hidden / heads, eps 1e-6,
             * theta 10000, untied, no bias, no scaling, 2048 positions */
            CHECK_EQ_INT(c.n_kv_heads, 8);
            CHECK_EQ_INT(c.head_dim, 8);
            CHECK_NEAR(c.rms_eps, 1e-6, 1e-12);
            CHECK_NEAR(c.rope_theta, 10000.0, 0);
            CHECK_EQ_INT(c.tied_embeddings, 0);
            CHECK_EQ_INT(c.attn_bias, 0);
            CHECK_EQ_INT(c.rope_scaling, OPC_ROPE_SCALING_NONE);
            CHECK_EQ_INT(c.max_seq_len, 2048);
            CHECK(opc_config_validate(&c, "x") == OPC_OK);
        }
        if (st == OPC_OK && !strcmp(k->name, "model_type_only")) {
            CHECK_EQ_INT(c.arch, OPC_ARCH_QWEN2);
            CHECK_EQ_INT(c.attn_bias, 1);
        }
        if (st == OPC_OK && !strcmp(k->name, "transformers5_rope_parameters"))
            CHECK_NEAR(c.rope_theta, 100000.0, 0);
    }
}

static void test_canonical_names(void) {
    static const char *map[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.17.self_attn.q_proj.bias", "blk.17.attn_q.bias"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
        {"model.layers.31.mlp.down_proj.weight", "blk.31.ffn_down.weight"},
        {"model.layers.31.mlp.gate_proj.weight", "blk.31.ffn_gate.weight"},
        {"model.layers.31.mlp.up_proj.weight", "blk.31.ffn_up.weight"},
    };
    char out[96];
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        CHECK_MSG(opc_hf_canonical_name(map[i][0], out, sizeof out) == 1, "%s", map[i][0]);
        CHECK_STR(out, map[i][1]);
    }
    static const char *unknown[] = {"model.rotary_emb.inv_freq", "model.layers.x.mlp.up_proj.weight",
                                    "model.layers.1.mlp.up_proj", "model.layers..mlp.up_proj.weight",
                                    "model.layers.01.mlp.up_proj.weight", "model.layers.99999999.mlp.up_proj.weight",
                                    "transformer.h.0.attn.c_attn.weight", ""};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        CHECK_MSG(opc_hf_canonical_name(unknown[i], out, sizeof out) == 0, "%s", unknown[i]);
}

/* -------------------------------------------------------- safetensors ---- */

static unsigned char *good_image(size_t *n) {
    stb b;
    stb_init(&b);
    float f[6] = {1, -2, 0.5f, 3, 4, -0.25f};
    uint16_t h[4] = {opc_fp32_to_fp16(1.5f), opc_fp32_to_fp16(-2), opc_fp32_to_fp16(0), opc_fp32_to_fp16(65504)};
    uint16_t bf[2] = {opc_fp32_to_bf16(-1), opc_fp32_to_bf16(256)};
    stb_add(&b, "a", "F32", 2, (int64_t[]){2, 3}, f, sizeof f);
    stb_add(&b, "b", "F16", 1, (int64_t[]){4}, h, sizeof h);
    stb_add(&b, "c", "BF16", 3, (int64_t[]){1, 1, 2}, bf, sizeof bf);
    stb_add(&b, "empty", "F32", 2, (int64_t[]){0, 5}, NULL, 0);
    stb_add(&b, "ids", "I64", 1, (int64_t[]){1}, "\x07\0\0\0\0\0\0\0", 8);
    return stb_finish(&b, n);
}

static void test_safetensors_good(void) {
    size_t n;
    unsigned char *img = good_image(&n);
    opc_st_file *f = NULL;
    opc_status st = opc_st_open_mem(img, n, "good.safetensors", &f);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!f) {
        free(img);
        return;
    }
    CHECK_EQ_INT(opc_st_count(f), 5); /* __metadata__ is not a tensor */
    CHECK_EQ_INT(opc_st_find(f, "__metadata__"), -1);
    CHECK_EQ_INT(opc_st_find(f, "zzz"), -1);
    opc_st_tensor t;
    float v[6];
    CHECK(opc_st_get(f, opc_st_find(f, "a"), &t) == OPC_OK);
    CHECK_EQ_INT(t.type, OPC_TYPE_F32);
    CHECK_EQ_INT(t.n_dims, 2);
    CHECK_EQ_INT(t.shape[0], 2);
    CHECK_EQ_INT(t.shape[1], 3);
    CHECK_EQ_INT(t.nbytes, 24);
    CHECK(opc_st_to_f32(&t, 0, 6, v) == OPC_OK);
    CHECK(v[0] == 1 && v[1] == -2 && v[5] == -0.25f);
    CHECK(opc_st_to_f32(&t, 4, 3, v) == OPC_ERR_INVALID_ARG);
    CHECK(opc_st_get(f, opc_st_find(f, "b"), &t) == OPC_OK);
    CHECK_EQ_INT(t.type, OPC_TYPE_F16);
    CHECK(opc_st_to_f32(&t, 0, 4, v) == OPC_OK);
    CHECK(v[0] == 1.5f && v[1] == -2 && v[2] == 0 && v[3] == 65504);
    CHECK(opc_st_get(f, opc_st_find(f, "c"), &t) == OPC_OK);
    CHECK_EQ_INT(t.type, OPC_TYPE_BF16);
    CHECK_EQ_INT(t.n_dims, 3);
    CHECK(opc_st_to_f32(&t, 0, 2, v) == OPC_OK);
    CHECK(v[0] == -1 && v[1] == 256);
    CHECK(opc_st_get(f, opc_st_find(f, "empty"), &t) == OPC_OK);
    CHECK_EQ_INT(t.nbytes, 0);
    st = opc_st_get(f, opc_st_find(f, "ids"), &t);
    CHECK_EQ_INT(st, OPC_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(opc_last_error(), "ids") && strstr(opc_last_error(), "I64") &&
              strstr(opc_last_error(), "good.safetensors"), "%s", opc_last_error());
    CHECK_EQ_INT(opc_st_get(f, 99, &t), OPC_ERR_INVALID_ARG);
    opc_st_close(f);
    opc_st_close(NULL);

    /* the same image through a real file and mmap */
    char path[1024];
    CHECK(harness_write_temp(path, sizeof path, "good.safetensors", img, n) == 0);
    CHECK(opc_st_open(path, &f) == OPC_OK);
    if (f) {
        CHECK_EQ_INT(opc_st_count(f), 5);
        CHECK_STR(opc_st_path(f), path);
    }
    opc_st_close(f);
    remove(path);
    free(img);
}

/* A hand-written header (padded by the helper) over `data_len` zero bytes. */
static unsigned char *raw_image(const char *header, size_t data_len, size_t *n) {
    size_t hl = strlen(header);
    *n = 8 + hl + data_len;
    unsigned char *img = calloc(1, *n);
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(img + 8, header, hl);
    return img;
}

typedef struct st_case {
    const char *name, *header;
    size_t data_len;
    opc_status st;
    const char *msg;
} st_case;

static void test_safetensors_bad(void) {
    static const st_case cases[] = {
        {"bad_json", "{\"a\": {\"dtype\": \"F32\", ", 0, OPC_ERR_CORRUPT, "not valid JSON"},
        {"not_object", "[1, 2, 3]", 0, OPC_ERR_CORRUPT, "not a JSON object"},
        {"trailing_garbage", "{}  x", 0, OPC_ERR_CORRUPT, "trailing"},
        {"padded_ok_but_empty_entry", "{\"a\": {}}   ", 0, OPC_ERR_CORRUPT, "dtype"},
        {"entry_not_object", "{\"a\": 3}", 0, OPC_ERR_CORRUPT, "\"a\""},
        {"no_dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, OPC_ERR_CORRUPT, "dtype"},
        {"dtype_number", "{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4, OPC_ERR_CORRUPT, "dtype"},
        {"unknown_dtype", "{\"a\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
         OPC_ERR_UNSUPPORTED, "Q4"},
        {"shape_string", "{\"a\": {\"dtype\": \"F32\", \"shape\": \"1\", \"data_offsets\": [0, 4]}}", 4,
         OPC_ERR_CORRUPT, "shape"},
        {"shape_negative", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
         OPC_ERR_CORRUPT, "shape[0]"},
        {"shape_fraction", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
         OPC_ERR_CORRUPT, "shape[0]"},
        {"shape_too_many_dims", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
         4, OPC_ERR_UNSUPPORTED, "dimensions"},
        {"shape_overflow",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4,
         OPC_ERR_CORRUPT, "overflow"},
        {"offsets_three", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
         OPC_ERR_CORRUPT, "data_offsets"},
        {"offsets_string", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", 4,
         OPC_ERR_CORRUPT, "data_offsets"},
        {"offsets_negative", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
         OPC_ERR_CORRUPT, "data_offsets"},
        {"offsets_reversed", "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", 4,
         OPC_ERR_CORRUPT, "end before"},
        {"offsets_past_end", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 4,
         OPC_ERR_CORRUPT, "past the data area"},
        {"offsets_huge", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [1e300, 1e300]}}", 4,
         OPC_ERR_CORRUPT, "data_offsets"},
        {"size_mismatch", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 12]}}", 16,
         OPC_ERR_CORRUPT, "needs 16"},
        {"size_mismatch_dtype", "{\"a\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         OPC_ERR_CORRUPT, "needs 8"},
        {"overlap",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, OPC_ERR_CORRUPT, "overlap"},
        {"duplicate",
         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, OPC_ERR_CORRUPT, "twice"},
        {"metadata_array", "{\"__metadata__\": [1]}", 0, OPC_ERR_CORRUPT, "__metadata__"},
        {"header_too_short", "{", 0, OPC_ERR_CORRUPT, "too short"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const st_case *k = &cases[i];
        size_t n;
        unsigned char *img = raw_image(k->header, k->data_len, &n);
        opc_st_file *f = NULL;
        opc_status st = opc_st_open_mem(img, n, "bad.safetensors", &f);
        CHECK_MSG(st == k->st, "case %s: got %s (%s), want %s", k->name, opc_status_str(st), opc_last_error(),
                  opc_status_str(k->st));
        CHECK_MSG(f == NULL, "case %s: handle returned on failure", k->name);
        CHECK_MSG(strstr(opc_last_error(), k->msg) && strstr(opc_last_error(), "bad.safetensors"),
                  "case %s: message \"%s\" lacks \"%s\" or the file", k->name, opc_last_error(), k->msg);
        opc_st_close(f);
        free(img);
    }

    /* Framing: truncation, header length past EOF, absurd header length, NUL. */
    size_t n;
    unsigned char *img = good_image(&n);
    opc_st_file *f = NULL;
    for (size_t cut = 0; cut < n; cut += (cut < 16 ? 1 : 7)) { /* every short prefix fails cleanly */
        opc_status st = opc_st_open_mem(img, cut, "cut.safetensors", &f);
        CHECK_MSG(st == OPC_ERR_CORRUPT, "truncated to %zu: %s", cut, opc_status_str(st));
        CHECK(f == NULL);
    }
    unsigned char *b = malloc(n);
    memcpy(b, img, n);
    b[0] = 0xff, b[1] = 0xff; /* header length 65535+... past EOF */
    CHECK_EQ_INT(opc_st_open_mem(b, n, "x.safetensors", &f), OPC_ERR_CORRUPT);
    CHECK(strstr(opc_last_error(), "past the end") != NULL);
    memset(b, 0xff, 8); /* 2^64-1 */
    CHECK_EQ_INT(opc_st_open_mem(b, n, "x.safetensors", &f), OPC_ERR_CORRUPT);
    CHECK(strstr(opc_last_error(), "limit") != NULL);
    memcpy(b, img, n);
    b[8 + 3] = 0;
    CHECK_EQ_INT(opc_st_open_mem(b, n, "x.safetensors", &f), OPC_ERR_CORRUPT);
    CHECK(strstr(opc_last_error(), "NUL") != NULL);
    free(b);

    /* truncated file on disk: data area shorter than the offsets claim */
    char path[1024];
    CHECK(harness_write_temp(path, sizeof path, "trunc.safetensors", img, n - 3) == 0);
    CHECK_EQ_INT(opc_st_open(path, &f), OPC_ERR_CORRUPT);
    CHECK_MSG(strstr(opc_last_error(), "trunc.safetensors") && strstr(opc_last_error(), "past the data area"), "%s",
              opc_last_error());
    remove(path);
    CHECK_EQ_INT(opc_st_open(OPC_BINARY_DIR "/no_such.safetensors", &f), OPC_ERR_IO);
    free(img);
}

/* -------------------------------------------------------- bad folders ---- */

typedef struct folder_case {
    const char *name;
    spec s;
    opc_status st;
    const char *msg;
} folder_case;

static void test_bad_folders(void) {
    static const folder_case cases[] = {
        {"missing_down", {.omit = "model.layers.1.mlp.down_proj.weight"}, OPC_ERR_NOT_FOUND,
         "model.layers.1.mlp.down_proj.weight"},
        {"missing_lm_head", {.omit = "lm_head.weight"}, OPC_ERR_NOT_FOUND, "lm_head.weight"},
        {"missing_embed_sharded", {.shards = 2, .omit = "model.embed_tokens.weight"}, OPC_ERR_NOT_FOUND,
         "model.embed_tokens.weight"},
        {"missing_bias", {.arch = "Qwen2ForCausalLM", .omit = "model.layers.0.self_attn.k_proj.bias", .bias = 1},
         OPC_ERR_NOT_FOUND, "model.layers.0.self_attn.k_proj.bias"},
        {"wrong_shape", {.bad_shape = "model.layers.0.self_attn.k_proj.weight"}, OPC_ERR_CORRUPT, "blk.0.attn_k.weight"},
        {"wrong_dtype", {.bad_dtype = "model.layers.0.mlp.up_proj.weight"}, OPC_ERR_UNSUPPORTED, "I32"},
        {"unsupported_arch", {.arch = "GPTNeoXForCausalLM"}, OPC_ERR_UNSUPPORTED, "GPTNeoXForCausalLM"},
        {"bad_config_type", {.extra_cfg = ", \"rope_scaling\": 5"}, OPC_ERR_CORRUPT, "rope_scaling"},
        {"inconsistent_config", {.extra_cfg = ", \"head_dim\": 3"}, OPC_ERR_CORRUPT, "head_dim"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const folder_case *k = &cases[i];
        char dir[1024], tag[64];
        snprintf(tag, sizeof tag, "bad_%s", k->name);
        spec s = k->s;
        if (!s.arch) s.arch = "LlamaForCausalLM";
        make_model(tag, &s, dir, sizeof dir);
        opc_model_desc *d = NULL;
        opc_status st = load_weights(dir, &d);
        CHECK_MSG(st == k->st, "case %s: got %s (%s), want %s", k->name, opc_status_str(st), opc_last_error(),
                  opc_status_str(k->st));
        CHECK_MSG(strstr(opc_last_error(), k->msg) && strstr(opc_last_error(), tag),
                  "case %s: message \"%s\" lacks \"%s\" or the folder", k->name, opc_last_error(), k->msg);
        opc_model_desc_free(d);
    }
}

/* Damage the files of a good sharded folder one way at a time. */
static void test_bad_files_in_folder(void) {
    char dir[1024], p[1200];
    spec s = {.arch = "LlamaForCausalLM", .shards = 2};
    opc_model_desc *d = NULL;

    make_model("f_noconfig", &s, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    CHECK_EQ_INT(load_weights(dir, &d), OPC_ERR_NOT_FOUND);
    CHECK(strstr(opc_last_error(), "config.json") != NULL);

    make_model("f_badjson", &s, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(write_str(p, "{\"architectures\": [") == 0);
    CHECK_EQ_INT(load_weights(dir, &d), OPC_ERR_CORRUPT);
    CHECK(strstr(opc_last_error(), "config.json") && strstr(opc_last_error(), "JSON"));

    make_model("f_noweights", &s, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    remove(p);
    CHECK_EQ_INT(load_weights(dir, &d), OPC_ERR_NOT_FOUND);
    CHECK(strstr(opc_last_error(), "model.safetensors") != NULL);

    make_model("f_noshard", &s, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    remove(p);
    CHECK_EQ_INT(load_weights(dir, &d), OPC_ERR_IO);
    CHECK(strstr(opc_last_error(), "model-00002-of-00002.safetensors") != NULL);

    make_model("f_truncshard", &s, dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    {
        size_t n = 0;
        FILE *f = fopen(p, "rb");
        unsigned char buf[8192];
        if (f) {
            n = fread(buf, 1, sizeof buf, f);
            fclose(f);
        }
        CHECK(n > 100 && n < sizeof buf);
        CHECK(write_file(p, buf, n - 10) == 0);
    }
    CHECK_EQ_INT(load_weights(dir, &d), OPC_ERR_CORRUPT);
    CHECK_MSG(strstr(opc_last_error(), "model-00002-of-00002.safetensors") &&
              strstr(opc_last_error(), "past the data area"), "%s", opc_last_error());

    static const struct {
        const char *tag, *index;
        opc_status st;
        const char *msg;
    } idx[] = {
        {"f_idx_traversal", "{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}", OPC_ERR_CORRUPT,
         "file name"},
        {"f_idx_notobj", "{\"weight_map\": [\"model.safetensors\"]}", OPC_ERR_CORRUPT, "weight_map"},
        {"f_idx_value_num", "{\"weight_map\": {\"model.norm.weight\": 3}}", OPC_ERR_CORRUPT, "model.norm.weight"},
        {"f_idx_empty", "{\"weight_map\": {}}", OPC_ERR_CORRUPT, "empty"},
        {"f_idx_badjson", "{\"weight_map\": {", OPC_ERR_CORRUPT, "JSON"},
        /* listed in shard 1 but stored in shard 2 */
        {"f_idx_wrong_shard",
         "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\", "
         "\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\"}}", OPC_ERR_CORRUPT, "not found there"},
    };
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++) {
        make_model(idx[i].tag, &s, dir, sizeof dir);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        CHECK(write_str(p, idx[i].index) == 0);
        opc_status st = load_weights(dir, &d);
        CHECK_MSG(st == idx[i].st, "case %s: got %s (%s)", idx[i].tag, opc_status_str(st), opc_last_error());
        CHECK_MSG(strstr(opc_last_error(), idx[i].msg) && strstr(opc_last_error(), "index.json"),
                  "case %s: \"%s\" lacks \"%s\"", idx[i].tag, opc_last_error(), idx[i].msg);
    }
    opc_model_desc_free(d);
}

/* ------------------------------------------------------ full open ------- */

/* A minimal byte-level BPE tokenizer.json with the 16 tokens the tiny model has. */
static const char k_tokenizer_json[] =
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 0, \"content\": \"<|endoftext|>\", \"single_word\": false,"
    " \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},"
    " \"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,"
    " \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,"
    " \"vocab\": {\"<|endoftext|>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5, \"\\u0120\": 6, \"ab\": 7,"
    " \"cd\": 8, \"abcd\": 9, \"\\u0120a\": 10, \"f\": 11, \"g\": 12, \"h\": 13, \"i\": 14, \"j\": 15},"
    " \"merges\": [\"a b\", \"c d\", \"ab cd\", \"\\u0120 a\"]}}";

static void test_full_open(void) {
    char dir[1024], p[1200];
    spec s = {.arch = "LlamaForCausalLM", .tied = 1};
    make_model("full", &s, dir, sizeof dir);
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(dir, &d);
    CHECK_EQ_INT(st, OPC_ERR_NOT_FOUND); /* no tokenizer.json yet */
    CHECK(strstr(opc_last_error(), "tokenizer.json") != NULL);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(write_str(p, k_tokenizer_json) == 0);
    st = opc_model_desc_open(dir, &d);
    if (st == OPC_ERR_UNSUPPORTED && strstr(opc_last_error(), "not built yet")) SKIP("%s", opc_last_error());
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    CHECK_EQ_INT(d->format, OPC_SRC_HF);
    CHECK_EQ_INT(d->vocab.n_tokens, 16);
    check_model(d, &s);
    opc_model_desc_free(d);
}

/* ----------------------------------------------- SmolLM2: HF vs GGUF ---- */

static void test_smollm2_hf_matches_gguf(void) {
    char hf[1024], gg[1024], p[1200];
    MODELS_PATH(hf, "smollm2-hf");
    MODELS_PATH(gg, SMOLLM2_GGUF);
    snprintf(p, sizeof p, "%s/config.json", hf);
    if (!opc_file_exists(p)) SKIP("%s absent (python3 scripts/dev/make_hf_golden.py smollm2)", hf);
    if (!opc_file_exists(gg)) SKIP("%s absent (scripts/setup.sh)", gg);
    opc_model_desc *h = NULL, *g = NULL;
    opc_status st = opc_model_desc_open(hf, &h); /* weights + tokenizer.json */
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    st = opc_model_desc_open(gg, &g);
    if (st == OPC_ERR_UNSUPPORTED && strstr(opc_last_error(), "not supported yet")) {
        opc_model_desc_free(h);
        SKIP("GGUF loader not ready: %s", opc_last_error());
    }
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!h || !g) {
        opc_model_desc_free(h);
        opc_model_desc_free(g);
        return;
    }
    const opc_config *a = &h->cfg, *b = &g->cfg;
    CHECK_EQ_INT(a->arch, b->arch);
    CHECK_EQ_INT(a->dim, b->dim);
    CHECK_EQ_INT(a->hidden_dim, b->hidden_dim);
    CHECK_EQ_INT(a->n_layers, b->n_layers);
    CHECK_EQ_INT(a->n_heads, b->n_heads);
    CHECK_EQ_INT(a->n_kv_heads, b->n_kv_heads);
    CHECK_EQ_INT(a->head_dim, b->head_dim);
    CHECK_EQ_INT(a->vocab_size, b->vocab_size);
    CHECK_EQ_INT(a->max_seq_len, b->max_seq_len);
    CHECK_EQ_INT(a->tied_embeddings, b->tied_embeddings);
    CHECK_NEAR(a->rms_eps, b->rms_eps, 1e-9);
    CHECK_NEAR(a->rope_theta, b->rope_theta, 1e-3);
    CHECK_EQ_INT(h->n_tensors, g->n_tensors);
    CHECK_EQ_INT(h->vocab.n_tokens, g->vocab.n_tokens);
    CHECK_EQ_INT(h->vocab.bos_id, g->vocab.bos_id);
    CHECK_EQ_INT(h->vocab.eos_id, g->vocab.eos_id);
    /* anchors read from model.safetensors with the safetensors package */
    const opc_tensor *tq = opc_model_desc_find(h, "blk.0.attn_q.weight");
    const opc_tensor *tk = opc_model_desc_find(h, "blk.29.attn_k.weight");
    CHECK(tq && tq->type == OPC_TYPE_F32 && tk && tk->type == OPC_TYPE_F32);
    if (tq && tk) {
        const float *q = (const float *)tq->data + 5 * 576, *k = (const float *)tk->data + 100 * 576 + 60;
        CHECK(q[0] == 0.0125732421875f && q[1] == 0.1724853515625f && q[2] == -0.227294921875f &&
              q[3] == -0.547119140625f);
        CHECK(k[0] == 0.2830810546875f && k[1] == -0.008056640625f && k[2] == -0.1051025390625f);
    }
    float *x = malloc(sizeof(float) << 20), *y = malloc(sizeof(float) << 20);
    int64_t total = 0;
    double worst = 0;
    for (int32_t i = 0; i < h->n_tensors; i++) {
        const opc_tensor *th = &h->tensors[i];
        const opc_tensor *tg = opc_model_desc_find(g, th->name);
        CHECK_MSG(tg != NULL, "GGUF lacks %s", th->name);
        if (!tg) continue;
        CHECK_MSG(tg->n_dims == th->n_dims && tg->shape[0] == th->shape[0] &&
                  (th->n_dims == 1 || tg->shape[1] == th->shape[1]), "%s: shapes differ", th->name);
        int64_t cols = th->n_dims == 2 ? th->shape[1] : th->shape[0];
        int64_t rows = th->n_dims == 2 ? th->shape[0] : 1;
        if (cols > (1 << 20) || tg->n_dims != th->n_dims) continue;
        uint64_t rb_h, rb_g;
        if (opc_type_row_bytes(th->type, cols, &rb_h) || opc_type_row_bytes(tg->type, cols, &rb_g)) {
            CHECK_MSG(0, "%s: row size", th->name);
            continue;
        }
        int64_t bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            opc_dequantize(th->type, (const uint8_t *)th->data + r * rb_h, x, cols);
            opc_dequantize(tg->type, (const uint8_t *)tg->data + r * rb_g, y, cols);
            for (int64_t c = 0; c < cols; c++) {
                /* transformers dequantizes in fp32 like we do; allow for a
                 * different association of d * q + m */
                double e = fabs((double)x[c] - (double)y[c]);
                double tol = 1e-6 + 1e-6 * fabs((double)y[c]);
                if (e > worst) worst = e;
                if (e > tol) bad++;
            }
        }
        total += rows * cols;
        CHECK_MSG(bad == 0, "%s: %lld of %lld values differ", th->name, (long long)bad, (long long)(rows * cols));
    }
    fprintf(stderr, "  compared %lld weights, max |hf - gguf| = %.3g\n", (long long)total, worst);
    free(x);
    free(y);
    opc_model_desc_free(h);
    opc_model_desc_free(g);
}

int main(void) {
    RUN(test_canonical_names);
    RUN(test_config_cases);
    RUN(test_safetensors_good);
    RUN(test_safetensors_bad);
    RUN(test_llama_single_file);
    RUN(test_qwen2_sharded_tied_bias);
    RUN(test_mistral_untied_sharded);
    RUN(test_bad_folders);
    RUN(test_bad_files_in_folder);
    RUN(test_full_open);
    RUN(test_smollm2_hf_matches_gguf);
    return harness_finish();
}
