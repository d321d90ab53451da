/*
 * test_llama2c.c — the llama2.c checkpoint reader (src/format/llama2c.c).
 *
 * Golden values: printed by `python3 scripts/dev/make_hf_golden.py llama2c`,
 * which reads stories260K.bin with numpy and applies the Q/K row permutation
 * the way Hugging Face's Llama conversion does (an implementation independent
 * of ours). Corrupt checkpoints are made here from the real file's bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include "format/loaders.h"
#include "model/model.h"

#include <stdint.h>
#include <sys/stat.h>


/* The whole checkpoint, read with stdio (not our mmap code). */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)len);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static opc_status open_l2c(const char *ckpt, const char *tok, opc_model_desc **out) {
    opc_model_desc *d = calloc(1, sizeof *d);
    snprintf(d->path, sizeof d->path, "%s", ckpt);
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    opc_status st = opc_load_llama2c(ckpt, tok, d);
    if (st != OPC_OK) {
        opc_model_desc_free(d);
        d = NULL;
    }
    *out = d;
    return st;
}

static float at(const opc_tensor *t, int64_t r, int64_t c) {
    const float *p = t->data;
    return t->n_dims == 1 ? p[r] : p[r * t->shape[1] + c];
}

static void test_stories_config(void) {
    char p[1024];
    SHARED_PATH(p, "models/stories260K/stories260K.bin");
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(p, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    const opc_config *c = &d->cfg;
    CHECK_EQ_INT(d->format, OPC_SRC_LLAMA2C);
    CHECK_EQ_INT(c->arch, OPC_ARCH_LLAMA);
    CHECK_EQ_INT(c->dim, 64);
    CHECK_EQ_INT(c->hidden_dim, 172);
    CHECK_EQ_INT(c->n_layers, 5);
    CHECK_EQ_INT(c->n_heads, 8);
    CHECK_EQ_INT(c->n_kv_heads, 4);
    CHECK_EQ_INT(c->head_dim, 8);
    CHECK_EQ_INT(c->vocab_size, 512);
    CHECK_EQ_INT(c->max_seq_len, 512);
    CHECK_EQ_INT(c->tied_embeddings, 1);
    CHECK_EQ_INT(c->attn_bias, 0);
    CHECK_EQ_INT(c->rope_scaling, OPC_ROPE_SCALING_NONE);
    CHECK_NEAR(c->rms_eps, 1e-5, 1e-12);
    CHECK_NEAR(c->rope_theta, 10000.0, 0);
    CHECK_STR(d->name, "stories260K");
    CHECK_EQ_INT(d->n_tensors, 1 + 9 * 5 + 1);
    CHECK(opc_model_desc_find(d, "output.weight") == NULL); /* tied */
    /* every tensor the forward pass needs, with its shape */
    const opc_tensor *t;
    CHECK(opc_model_desc_require(d, "token_embd.weight", 512, 64, &t) == OPC_OK);
    CHECK(opc_model_desc_require(d, "output_norm.weight", 64, 0, &t) == OPC_OK);
    for (int l = 0; l < 5; l++) {
        char n[64];
#define REQ(s, r, cc) snprintf(n, sizeof n, "blk.%d." s, l); CHECK_MSG(opc_model_desc_require(d, n, r, cc, &t) == OPC_OK, "%s", opc_last_error())
        REQ("attn_norm.weight", 64, 0);
        REQ("attn_q.weight", 64, 64);
        REQ("attn_k.weight", 32, 64);
        REQ("attn_v.weight", 32, 64);
        REQ("attn_output.weight", 64, 64);
        REQ("ffn_norm.weight", 64, 0);
        REQ("ffn_gate.weight", 172, 64);
        REQ("ffn_up.weight", 172, 64);
        REQ("ffn_down.weight", 64, 172);
#undef REQ
    }
    CHECK_EQ_INT(d->vocab.n_tokens, 512);
    CHECK_EQ_INT(d->vocab.kind, OPC_VOCAB_SPM);
    opc_model_desc_free(d);
}

/* {canonical name, row, col, value} from make_hf_golden.py llama2c. */
static const struct {
    const char *name;
    int row, col;
    float v;
} k_golden[] = {
    {"token_embd.weight", 5, 3, 0.3404855728149414f},
    {"token_embd.weight", 511, 63, -0.424032598733902f},
    {"blk.2.attn_norm.weight", 7, 0, 1.3530547618865967f},
    {"blk.1.attn_q.weight", 30, 0, -0.20970377326011658f},
    {"blk.1.attn_q.weight", 30, 3, 0.05246308818459511f},
    {"blk.1.attn_q.weight", 1, 17, -0.4130708873271942f},
    {"blk.3.attn_k.weight", 13, 60, -0.004028779454529285f},
    {"blk.3.attn_k.weight", 31, 2, 0.2610490918159485f},
    {"blk.0.attn_v.weight", 31, 63, 0.05898061394691467f},
    {"blk.4.attn_output.weight", 12, 34, -0.09392721205949783f},
    {"blk.3.ffn_norm.weight", 11, 0, 0.9833190441131592f},
    {"blk.0.ffn_gate.weight", 171, 5, 0.198552668094635f},
    {"blk.4.ffn_down.weight", 10, 100, 0.11132434010505676f},
    {"blk.0.ffn_up.weight", 171, 63, 0.15734216570854187f},
    {"output_norm.weight", 63, 0, 1.7077769041061401f},
};

static void test_stories_golden_values(void) {
    char p[1024], tp[1024];
    SHARED_PATH(p, "models/stories260K/stories260K.bin");
    SHARED_PATH(tp, "models/stories260K/tok512.bin");
    opc_model_desc *d = NULL;
    opc_status st = open_l2c(p, tp, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    for (size_t i = 0; i < sizeof k_golden / sizeof k_golden[0]; i++) {
        const opc_tensor *t = opc_model_desc_find(d, k_golden[i].name);
        CHECK_MSG(t != NULL, "missing %s", k_golden[i].name);
        if (!t) continue;
        CHECK_EQ_INT(t->type, OPC_TYPE_F32);
        /* exact: both sides are the same fp32 bits */
        CHECK_MSG(at(t, k_golden[i].row, k_golden[i].col) == k_golden[i].v, "%s[%d,%d] = %.9g, want %.9g",
                  k_golden[i].name, k_golden[i].row, k_golden[i].col,
                  (double)at(t, k_golden[i].row, k_golden[i].col), (double)k_golden[i].v);
    }
    opc_model_desc_free(d);
}

/* Every row of every layer's Q and K: rotate-half row h*hd + j*hd/2 + i must be
 * interleaved source row h*hd + 2i + j of the raw file; V and the rest untouched. */
static void test_stories_rope_permutation(void) {
    char p[1024], tp[1024];
    SHARED_PATH(p, "models/stories260K/stories260K.bin");
    SHARED_PATH(tp, "models/stories260K/tok512.bin");
    size_t n = 0;
    unsigned char *raw = read_all(p, &n);
    CHECK(raw != NULL && n == 1056540);
    opc_model_desc *d = NULL;
    opc_status st = open_l2c(p, tp, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d || !raw) {
        free(raw);
        opc_model_desc_free(d);
        return;
    }
    const int dim = 64, hid = 172, L = 5, H = 8, KV = 4, V = 512, hd = 8;
    const float *f = (const float *)(const void *)(raw + 28);
    size_t off_q = (size_t)V * dim + (size_t)L * dim;
    size_t off_k = off_q + (size_t)L * dim * dim;
    size_t off_v = off_k + (size_t)L * KV * hd * dim;
    /* after wv: wo, rms_ffn, w1, then w2 */
    size_t off_w2 = off_v + (size_t)L * KV * hd * dim + (size_t)L * dim * dim + (size_t)L * dim +
                    (size_t)L * hid * dim;
    int bad = 0;
    for (int l = 0; l < L; l++) {
        char nq[64], nk[64], nv[64], nd[64];
        snprintf(nq, sizeof nq, "blk.%d.attn_q.weight", l);
        snprintf(nk, sizeof nk, "blk.%d.attn_k.weight", l);
        snprintf(nv, sizeof nv, "blk.%d.attn_v.weight", l);
        snprintf(nd, sizeof nd, "blk.%d.ffn_down.weight", l);
        const opc_tensor *tq = opc_model_desc_find(d, nq), *tk = opc_model_desc_find(d, nk);
        const opc_tensor *tv = opc_model_desc_find(d, nv), *td = opc_model_desc_find(d, nd);
        if (!tq || !tk || !tv || !td) {
            CHECK(0);
            break;
        }
        for (int which = 0; which < 2; which++) {
            const opc_tensor *t = which ? tk : tq;
            int heads = which ? KV : H;
            const float *src = f + (which ? off_k + (size_t)l * KV * hd * dim : off_q + (size_t)l * dim * dim);
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < hd / 2; i++)
                    for (int j = 0; j < 2; j++) {
                        const float *got = (const float *)t->data + (size_t)(h * hd + j * hd / 2 + i) * dim;
                        const float *want = src + (size_t)(h * hd + 2 * i + j) * dim;
                        if (memcmp(got, want, (size_t)dim * 4)) bad++;
                    }
        }
        bad += memcmp(tv->data, f + off_v + (size_t)l * KV * hd * dim, (size_t)KV * hd * dim * 4) != 0;
        bad += memcmp(td->data, f + off_w2 + (size_t)l * dim * hid, (size_t)dim * hid * 4) != 0;
        /* the views point into the mapping, the permuted ones into owned copies */
        CHECK(tv->owned == NULL && tq->owned != NULL && tk->owned != NULL);
    }
    CHECK_EQ_INT(bad, 0);
    free(raw);
    opc_model_desc_free(d);
}

/* ------------------------------------------------------------ synthetic -- */

static void put_i32(unsigned char *p, int32_t v) { memcpy(p, &v, 4); }

/* A tiny llama2.c tokenizer.bin: max_len, then (score, len, bytes) per token. */
static int write_tokenizer(const char *path, int n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int32_t maxlen = 8;
    fwrite(&maxlen, 4, 1, f);
    for (int i = 0; i < n; i++) {
        char s[16];
        int len = snprintf(s, sizeof s, "t%d", i);
        float score = -(float)i;
        int32_t l32 = len;
        fwrite(&score, 4, 1, f);
        fwrite(&l32, 4, 1, f);
        fwrite(s, 1, (size_t)len, f);
    }
    fclose(f);
    return 0;
}

/* dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab -16 (unshared), seq 4;
 * float k holds the value k so every tensor's first element is its offset. */
static void test_unshared_classifier_and_tokenizer_lookup(void) {
    char dir[1024], ckpt[1100], tok[1100];
    snprintf(dir, sizeof dir, "%s/tmp_l2c_unshared", OPC_BINARY_DIR);
    mkdir(dir, 0755);
    snprintf(ckpt, sizeof ckpt, "%s/m.bin", dir);
    snprintf(tok, sizeof tok, "%s/tok16.bin", dir);
    remove(tok);
    const int32_t hdr[7] = {8, 12, 1, 2, 1, -16, 4};
    const int dim = 8, hid = 12, kvd = 4, V = 16, hd = 4, S = 4;
    size_t nf = (size_t)V * dim + dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hid * dim + dim +
                (size_t)S * hd + (size_t)V * dim;
    size_t nb = 28 + 4 * nf;
    unsigned char *b = calloc(1, nb);
    for (int i = 0; i < 7; i++) put_i32(b + 4 * i, hdr[i]);
    for (size_t k = 0; k < nf; k++) {
        float v = (float)k;
        memcpy(b + 28 + 4 * k, &v, 4);
    }
    FILE *f = fopen(ckpt, "wb");
    CHECK(f && fwrite(b, 1, nb, f) == nb);
    if (f) fclose(f);
    free(b);

    /* no tokenizer beside it: NOT_FOUND naming both candidates */
    opc_model_desc *d = NULL;
    opc_status st = open_l2c(ckpt, NULL, &d);
    CHECK_EQ_INT(st, OPC_ERR_NOT_FOUND);
    CHECK_MSG(strstr(opc_last_error(), "tokenizer.bin") && strstr(opc_last_error(), "tok16.bin"), "%s",
              opc_last_error());

    CHECK(write_tokenizer(tok, V) == 0);
    st = open_l2c(ckpt, NULL, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!d) return;
    CHECK_EQ_INT(d->cfg.tied_embeddings, 0);
    CHECK_EQ_INT(d->cfg.vocab_size, 16);
    CHECK_EQ_INT(d->cfg.head_dim, 4);
    CHECK_EQ_INT(d->n_tensors, 1 + 9 + 1 + 1);
    CHECK_EQ_INT(d->vocab.n_tokens, 16);
    const opc_tensor *t;
    CHECK(opc_model_desc_require(d, "output.weight", 16, 8, &t) == OPC_OK);
    size_t off_cls = nf - (size_t)V * dim;
    if (t) CHECK_EQ_INT(((const float *)t->data)[0], off_cls);
    CHECK(opc_model_desc_require(d, "output_norm.weight", 8, 0, &t) == OPC_OK);
    if (t) CHECK_EQ_INT(((const float *)t->data)[0], off_cls - S * hd - dim);
    /* Q: 2 heads of 4 rows; rotate-half row 1 (j=0, i=1) is source row 2 */
    CHECK(opc_model_desc_require(d, "blk.0.attn_q.weight", 8, 8, &t) == OPC_OK);
    size_t off_q = (size_t)V * dim + dim;
    if (t) {
        CHECK_EQ_INT(((const float *)t->data)[1 * dim], off_q + 2 * dim);
        CHECK_EQ_INT(((const float *)t->data)[2 * dim], off_q + 1 * dim);
        CHECK_EQ_INT(((const float *)t->data)[7 * dim], off_q + 7 * dim);
    }
    opc_model_desc_free(d);
    remove(tok);
    remove(ckpt);
}

/* --------------------------------------------------------------- corrupt -- */

typedef struct corrupt_case {
    const char *name;
    int field;      /* header int to overwrite, -1 none */
    int32_t value;
    long trunc;     /* bytes to drop from the end (negative: append) */
    const char *msg; /* substring the error must contain */
} corrupt_case;

static void test_corrupt_files(void) {
    char p[1024];
    SHARED_PATH(p, "models/stories260K/stories260K.bin");
    size_t n = 0;
    unsigned char *raw = read_all(p, &n);
    CHECK(raw != NULL);
    if (!raw) return;
    static const corrupt_case cases[] = {
        {"truncated", -1, 0, 4, "truncated"},
        {"truncated_half", -1, 0, 500000, "implies"},
        {"trailing_bytes", -1, 0, -8, "implies"},
        {"header_only_part", -1, 0, 1056540 - 20, "too short"},
        {"empty", -1, 0, 1056540, "too short"},
        {"negative_dim", 0, -64, 0, "dim"},
        {"zero_layers", 2, 0, 0, "n_layers"},
        {"negative_heads", 3, -8, 0, "n_heads"},
        {"heads_not_dividing_dim", 3, 7, 0, "does not divide dim"},
        {"kv_not_dividing_heads", 4, 3, 0, "n_kv_heads"},
        {"kv_more_than_heads", 4, 16, 0, "n_kv_heads"},
        {"odd_head_dim", 3, 64, 0, "even"},
        {"zero_vocab", 5, 0, 0, "vocab_size"},
        {"absurd_vocab", 5, INT32_MIN, 0, "vocab_size"},
        {"absurd_dim", 0, 1 << 30, 0, "dim"},
        {"absurd_seq_len", 6, INT32_MAX, 0, "seq_len"},
        /* plausible header, far more data than the file holds */
        {"big_layers", 2, 1000, 0, "implies"},
        {"big_hidden", 1, 200000, 0, "implies"},
        {"unshared_without_classifier", 5, -512, 0, "truncated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const corrupt_case *c = &cases[i];
        size_t len = n;
        unsigned char *b = malloc(n + 64);
        memcpy(b, raw, n);
        memset(b + n, 0, 64);
        if (c->field >= 0) put_i32(b + 4 * c->field, c->value);
        if (c->trunc > 0) len = n - (size_t)c->trunc;
        if (c->trunc < 0) len = n + (size_t)(-c->trunc);
        char path[1024], fname[128];
        snprintf(fname, sizeof fname, "l2c_%s.bin", c->name);
        CHECK(harness_write_temp(path, sizeof path, fname, b, len) == 0);
        free(b);
        opc_model_desc *d = NULL;
        opc_status st = open_l2c(path, NULL, &d);
        CHECK_MSG(st == OPC_ERR_CORRUPT, "case %s: got %s: %s", c->name, opc_status_str(st), opc_last_error());
        CHECK_MSG(strstr(opc_last_error(), c->msg) != NULL && strstr(opc_last_error(), fname) != NULL,
                  "case %s: message \"%s\" lacks \"%s\" or the file name", c->name, opc_last_error(), c->msg);
        opc_model_desc_free(d);
        remove(path);
    }
    free(raw);
}

static void test_missing_file(void) {
    opc_model_desc *d = NULL;
    opc_status st = open_l2c(OPC_BINARY_DIR "/no_such_checkpoint.bin", NULL, &d);
    CHECK_EQ_INT(st, OPC_ERR_IO);
    CHECK(strstr(opc_last_error(), "no_such_checkpoint.bin") != NULL);
}

int main(void) {
    RUN(test_stories_config);
    RUN(test_stories_golden_values);
    RUN(test_stories_rope_permutation);
    RUN(test_unshared_classifier_and_tokenizer_lookup);
    RUN(test_corrupt_files);
    RUN(test_missing_file);
    return harness_finish();
}
