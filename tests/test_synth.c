/*
 * test_synth.c — `opacc1ty synth` models (src/quant/synth.h).
 *
 * The files are read back with the .bf2 reader (another module: it checks
 * every size, hash and CSR structure on its own), the config is compared with
 * the shape table, the codebook tensors are checked for the promised layout
 * (k, sorted finite codebooks, indices < k, zero padding, outlier fraction),
 * the output is compared byte for byte across runs, seeds and thread counts,
 * and the forward pass runs on the result. Everything uses the "tiny" shapes:
 * the whole test takes well under a second.
 */
#define _POSIX_C_SOURCE 200809L
#include "harness.h"

#include "core/half.h"
#include "format/bf2.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/cb.h"
#include "quant/synth.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/tmp_synth_%s.bf2", OPC_BINARY_DIR, name);
    return buf;
}

/* Whole file into memory (caller frees); NULL on failure. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && sz > 0 && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

static opc_status synth(const char *path, const char *shape, float bits, int layers, double outliers,
                        uint64_t seed, int threads) {
    opc_synth_params p = opc_synth_defaults();
    p.shape = shape;
    p.bits = bits;
    p.n_layers = layers;
    p.outlier_frac = outliers;
    p.seed = seed;
    p.n_threads = threads;
    return opc_synth_write(path, &p, NULL);
}

/* ---------------------------------------------------------------- shapes -- */

static void test_shapes(void) {
    /* the published configs the shapes stand for */
    struct {
        const char *name;
        int dim, hidden, layers, heads, kv, head_dim, vocab, tied;
        float theta;
    } want[] = {
        {"smollm2", 576, 1536, 30, 9, 3, 64, 49152, 1, 100000.0f},
        {"llama3.2-1b", 2048, 8192, 16, 32, 8, 64, 128256, 1, 500000.0f},
        {"llama3-8b", 4096, 14336, 32, 32, 8, 128, 128256, 0, 500000.0f},
        {"llama3-70b-layer", 8192, 28672, 1, 64, 8, 128, 128256, 0, 500000.0f},
        {"tiny", 128, 320, 2, 4, 2, 32, 512, 1, 10000.0f},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        opc_config c;
        CHECK_EQ_INT(opc_synth_config(want[i].name, 0, &c), OPC_OK);
        CHECK_EQ_INT(c.dim, want[i].dim);
        CHECK_EQ_INT(c.hidden_dim, want[i].hidden);
        CHECK_EQ_INT(c.n_layers, want[i].layers);
        CHECK_EQ_INT(c.n_heads, want[i].heads);
        CHECK_EQ_INT(c.n_kv_heads, want[i].kv);
        CHECK_EQ_INT(c.head_dim, want[i].head_dim);
        CHECK_EQ_INT(c.vocab_size, want[i].vocab);
        CHECK_EQ_INT(c.tied_embeddings, want[i].tied);
        CHECK_NEAR(c.rope_theta, want[i].theta, 0.5);
    }
    opc_config c;
    CHECK_EQ_INT(opc_synth_config("llama3.2-1b", 0, &c), OPC_OK);
    CHECK_EQ_INT(c.rope_scaling, OPC_ROPE_SCALING_LLAMA3);
    CHECK_NEAR(c.rope_factor, 32.0, 0);
    CHECK_NEAR(c.rope_low_freq_factor, 1.0, 0);
    CHECK_NEAR(c.rope_high_freq_factor, 4.0, 0);
    CHECK_EQ_INT(c.rope_orig_max_pos, 8192);
    CHECK_EQ_INT(opc_synth_config("llama3-8b", 2, &c), OPC_OK);
    CHECK_EQ_INT(c.n_layers, 2);
    CHECK_EQ_INT(opc_synth_config("llama3-9b", 0, &c), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "llama3-9b") && strstr(opc_last_error(), "smollm2"));
    CHECK_EQ_INT(opc_synth_config("tiny", -1, &c), OPC_ERR_INVALID_ARG);
    int n = 0;
    while (opc_synth_shape_name(n)) n++;
    CHECK(n >= 5);
}

/* ------------------------------------------------------------ vocabulary -- */

static void test_vocab_tokenizer(void) {
    opc_vocab v;
    memset(&v, 0, sizeof v);
    CHECK_EQ_INT(opc_synth_vocab(100, "gpt2", &v), OPC_ERR_INVALID_ARG);
    CHECK_EQ_INT(opc_synth_vocab(49152, "smollm", &v), OPC_OK);
    opc_tokenizer *t = NULL;
    CHECK_EQ_INT(opc_tokenizer_init(&t, &v), OPC_OK);
    opc_vocab_free(&v);
    if (!t) return;
    CHECK_EQ_INT(opc_tokenizer_n_vocab(t), 49152);
    CHECK_EQ_INT(opc_tokenizer_bos(t), 256);
    CHECK_EQ_INT(opc_tokenizer_eos(t), 257);
    CHECK(opc_tokenizer_is_special(t, 256));
    /* no merges: every byte is one token, the byte's own id; BOS first */
    const char *text = "Hi \xc3\xa9\n";
    int32_t ids[16];
    size_t n = 0;
    opc_encode_opts o = {-1, 0};
    CHECK_EQ_INT(opc_tokenizer_encode(t, text, strlen(text), &o, ids, 16, &n), OPC_OK);
    CHECK_EQ_INT(n, 1 + strlen(text));
    CHECK_EQ_INT(ids[0], 256);
    for (size_t i = 1; i < n && i <= strlen(text); i++) CHECK_EQ_INT(ids[i], (uint8_t)text[i - 1]);
    char *back = NULL;
    size_t bl = 0;
    CHECK_EQ_INT(opc_tokenizer_decode(t, ids, n, 1, &back, &bl), OPC_OK);
    CHECK(back && bl == strlen(text) && memcmp(back, text, bl) == 0);
    free(back);
    /* filler tokens are unique and decodable */
    size_t l = 0;
    const char *s = opc_tokenizer_token_bytes(t, 40000, &l);
    CHECK(s && l == strlen("<synth_40000>") && memcmp(s, "<synth_40000>", l) == 0);
    CHECK_EQ_INT(opc_tokenizer_find(t, "<synth_300>"), 300);
    opc_tokenizer_free(t);
}

/* ------------------------------------------------------------ round trip -- */

/* Check a loaded synthetic model against the shape and the promises of synth.h. */
static void check_model(const opc_model_desc *d, const char *shape, int layers, opc_type wtype, int k,
                        double outliers) {
    opc_config c;
    CHECK_EQ_INT(opc_synth_config(shape, layers, &c), OPC_OK);
    CHECK(memcmp(&d->cfg, &c, sizeof c) == 0);
    CHECK_EQ_INT(d->n_tensors, 1 + 9 * c.n_layers + 1 + (c.tied_embeddings ? 0 : 1));
    CHECK_EQ_INT(d->vocab.n_tokens, c.vocab_size);
    CHECK_EQ_INT(d->vocab.kind, OPC_VOCAB_BPE_BYTELEVEL);
    const opc_tensor *e = opc_model_desc_find(d, "token_embd.weight");
    CHECK(e && e->type == OPC_TYPE_F16 && e->shape[0] == c.vocab_size && e->shape[1] == c.dim);
    CHECK((opc_model_desc_find(d, "output.weight") != NULL) == !c.tied_embeddings);
    uint64_t ol_total = 0, elems_cb = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (t->n_dims == 1) { /* norms: f32 near 1 */
            CHECK_EQ_INT(t->type, OPC_TYPE_F32);
            const float *w = t->data;
            int64_t bad = 0;
            for (int64_t j = 0; j < t->shape[0]; j++) bad += !(w[j] > 0.8f && w[j] < 1.2f);
            CHECK_MSG(bad == 0, "%s: %lld values far from 1", t->name, (long long)bad);
            continue;
        }
        if (!strcmp(t->name, "token_embd.weight") || (!strcmp(t->name, "output.weight") && wtype != OPC_TYPE_F16))
            continue; /* f16 by default; the head's own bits are tested elsewhere */
        CHECK_MSG(t->type == wtype, "%s: type %d", t->name, (int)t->type);
        if (t->type == OPC_TYPE_F16) {
            /* values ~ N(0, ~0.02): finite, and the mean square says which scale */
            const uint16_t *h = t->data;
            double ss = 0;
            int64_t n = opc_tensor_nelem(t), bad = 0;
            for (int64_t j = 0; j < n; j++) {
                float f = opc_fp16_to_fp32(h[j]);
                bad += !(isfinite(f) && fabsf(f) < 0.5f);
                ss += (double)f * f;
            }
            CHECK_MSG(bad == 0, "%s: %lld values not finite or implausibly large", t->name, (long long)bad);
            double rms = sqrt(ss / (double)n);
            CHECK_MSG(rms > 0.012 && rms < 0.035, "%s: rms %g", t->name, rms);
            continue;
        }
        const opc_cb_matrix *m = &t->cb;
        CHECK_EQ_INT(opc_cb_validate(m, t->name), OPC_OK);
        CHECK_EQ_INT(m->k, k);
        CHECK(m->rows == t->shape[0] && m->cols == t->shape[1]);
        int64_t hist[16] = {0}, bad_cb = 0, unsorted = 0, bad_idx = 0, bad_pad = 0;
        for (int64_t r = 0; r < m->rows; r++) {
            const uint16_t *cb = m->codebook + r * m->k;
            for (int j = 0; j < m->k; j++) {
                float f = opc_fp16_to_fp32(cb[j]);
                bad_cb += !(isfinite(f) && fabsf(f) < 0.5f);
                if (j) unsorted += f < opc_fp16_to_fp32(cb[j - 1]);
            }
            const uint8_t *row = m->idx + (uint64_t)r * m->row_bytes;
            int64_t padded = (int64_t)(m->row_bytes / (m->bits == 2 ? 16 : 32)) * OPC_CB_GROUP;
            for (int64_t col = 0; col < padded; col++) {
                uint32_t ix = opc_cb_get_index(row, m->bits, col);
                if (col < m->cols) {
                    bad_idx += ix >= (uint32_t)m->k;
                    hist[ix & 15]++;
                } else {
                    bad_pad += ix != 0; /* padding columns carry index 0 */
                }
            }
        }
        CHECK_MSG(bad_cb == 0, "%s: %lld codebook entries not finite or too large", t->name, (long long)bad_cb);
        CHECK_MSG(unsorted == 0, "%s: %lld codebook rows out of order", t->name, (long long)unsorted);
        CHECK_MSG(bad_idx == 0, "%s: %lld indices >= k", t->name, (long long)bad_idx);
        CHECK_MSG(bad_pad == 0, "%s: %lld padding indices not 0", t->name, (long long)bad_pad);
        /* uniform indices: every level used about 1/k of the time */
        double n = (double)m->rows * (double)m->cols;
        for (int j = 0; j < m->k; j++)
            CHECK_MSG(fabs((double)hist[j] / n - 1.0 / m->k) < 0.25 / m->k, "%s: level %d used %lld of %g",
                      t->name, j, (long long)hist[j], n);
        ol_total += m->n_outliers;
        elems_cb += (uint64_t)m->rows * (uint64_t)m->cols;
        if (m->n_outliers) { /* deltas finite, a few row stds */
            int64_t bad = 0;
            for (uint64_t j = 0; j < m->n_outliers; j++) {
                float f = opc_fp16_to_fp32(m->ol_val[j]);
                bad += !(isfinite(f) && fabsf(f) > 0.0f && fabsf(f) < 1.0f);
            }
            CHECK_MSG(bad == 0, "%s: %lld implausible outlier deltas", t->name, (long long)bad);
        }
    }
    if (outliers > 0)
        CHECK_MSG(fabs((double)ol_total / (double)elems_cb - outliers) < 0.1 * outliers, "%llu outliers in %llu",
                  (unsigned long long)ol_total, (unsigned long long)elems_cb);
    else
        CHECK_EQ_INT(ol_total, 0);
}

static void test_roundtrip(void) {
    struct {
        const char *shape;
        float bits;
        int layers;
        double outliers;
        opc_type type;
        int k;
    } cases[] = {
        {"tiny", 2.0f, 0, 0.0, OPC_TYPE_CB2, 4},     {"tiny", 2.0f, 1, 0.02, OPC_TYPE_CB2, 4},
        {"tiny", 1.58f, 1, 0.0, OPC_TYPE_CB2, 3},    {"tiny", 3.0f, 1, 0.01, OPC_TYPE_CB4, 8},
        {"tiny", 4.0f, 1, 0.0, OPC_TYPE_CB4, 16},    {"tiny", 16.0f, 1, 0.0, OPC_TYPE_F16, 0},
        {"tiny-untied", 2.0f, 3, 0.005, OPC_TYPE_CB2, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512], nm[32];
        snprintf(nm, sizeof nm, "rt%zu", i);
        tmp_path(path, sizeof path, nm);
        opc_synth_params p = opc_synth_defaults();
        p.shape = cases[i].shape;
        p.bits = cases[i].bits;
        p.n_layers = cases[i].layers;
        p.outlier_frac = cases[i].outliers;
        opc_synth_summary s;
        opc_status st = opc_synth_write(path, &p, &s);
        CHECK_MSG(st == OPC_OK, "case %zu: %s", i, opc_last_error());
        if (st) continue;
        opc_model_desc *d = NULL;
        st = opc_model_desc_open(path, &d); /* verifies every tensor hash */
        CHECK_MSG(st == OPC_OK, "case %zu: %s", i, opc_last_error());
        if (d) {
            CHECK_EQ_INT(d->format, OPC_SRC_BF2);
            check_model(d, cases[i].shape, cases[i].layers, cases[i].type, cases[i].k, cases[i].outliers);
            /* the summary describes what is in the file */
            CHECK_EQ_INT(s.n_tensors, d->n_tensors);
            uint64_t params = 0;
            for (int32_t j = 0; j < d->n_tensors; j++) params += (uint64_t)opc_tensor_nelem(&d->tensors[j]);
            CHECK_EQ_INT(s.n_params, params);
            size_t fsz = 0;
            unsigned char *b = slurp(path, &fsz);
            free(b);
            CHECK(s.tensor_bytes > 0 && s.tensor_bytes < fsz);
        }
        opc_model_desc_free(d);
        unlink(path);
    }
}

/* The untied head follows --head-bits: f16 by default, a codebook on request. */
static void test_head_bits(void) {
    char path[512];
    tmp_path(path, sizeof path, "head");
    opc_synth_params p = opc_synth_defaults();
    p.shape = "tiny-untied";
    p.n_layers = 1;
    p.head_bits = 4.0f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_OK);
    opc_model_desc *d = NULL;
    CHECK_EQ_INT(opc_model_desc_open(path, &d), OPC_OK);
    const opc_tensor *h = d ? opc_model_desc_find(d, "output.weight") : NULL;
    CHECK(h && h->type == OPC_TYPE_CB4 && h->cb.k == 16 && h->shape[0] == 300 && h->shape[1] == 96);
    opc_model_desc_free(d);
    d = NULL;
    p.head_bits = 16.0f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_OK);
    CHECK_EQ_INT(opc_model_desc_open(path, &d), OPC_OK);
    h = d ? opc_model_desc_find(d, "output.weight") : NULL;
    CHECK(h && h->type == OPC_TYPE_F16);
    opc_model_desc_free(d);
    d = NULL;

    /* --embd-bits: a codebook embedding, which a tied model also reads as its head */
    p = opc_synth_defaults();
    p.shape = "tiny";
    p.n_layers = 1;
    p.embd_bits = 2.0f;
    p.outlier_frac = 0.01;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_OK);
    CHECK_EQ_INT(opc_model_desc_open(path, &d), OPC_OK);
    const opc_tensor *e = d ? opc_model_desc_find(d, "token_embd.weight") : NULL;
    CHECK(e && e->type == OPC_TYPE_CB2 && e->cb.k == 4 && e->cb.n_outliers > 0 && e->shape[0] == 512);
    if (e) CHECK_EQ_INT(opc_cb_validate(&e->cb, e->name), OPC_OK);
    opc_forward *f = NULL;
    if (d) CHECK_EQ_INT(opc_forward_init(&f, d, 16, 4, 2), OPC_OK);
    if (f) {
        float logits[512];
        int32_t tok = 'a';
        CHECK_EQ_INT(opc_forward_run(f, &tok, 1, 0, logits, OPC_LOGITS_LAST), OPC_OK);
        int finite = 1;
        for (int i = 0; i < 512; i++) finite &= isfinite(logits[i]) != 0;
        CHECK(finite);
    }
    opc_forward_free(f);
    opc_model_desc_free(d);
    p.embd_bits = 5.0f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    unlink(path);
}

/* ----------------------------------------------------------- determinism -- */

static void test_determinism(void) {
    char a[512], b[512], c[512], e[512];
    tmp_path(a, sizeof a, "seed7a");
    tmp_path(b, sizeof b, "seed7b");
    tmp_path(c, sizeof c, "seed8");
    tmp_path(e, sizeof e, "seed7_1thread");
    CHECK_EQ_INT(synth(a, "tiny", 2.0f, 0, 0.01, 7, 2), OPC_OK);
    CHECK_EQ_INT(synth(b, "tiny", 2.0f, 0, 0.01, 7, 2), OPC_OK);
    CHECK_EQ_INT(synth(c, "tiny", 2.0f, 0, 0.01, 8, 2), OPC_OK);
    CHECK_EQ_INT(synth(e, "tiny", 2.0f, 0, 0.01, 7, 1), OPC_OK);
    CHECK(same_file(a, b));  /* same seed, same bytes */
    CHECK(!same_file(a, c)); /* another seed, another model */
    CHECK(same_file(a, e));  /* the thread count does not matter */

    /* seeds differ in every weight tensor, not just somewhere */
    opc_model_desc *da = NULL, *dc = NULL;
    CHECK_EQ_INT(opc_model_desc_open(a, &da), OPC_OK);
    CHECK_EQ_INT(opc_model_desc_open(c, &dc), OPC_OK);
    if (da && dc && da->n_tensors == dc->n_tensors) {
        for (int32_t i = 0; i < da->n_tensors; i++) {
            const opc_tensor *x = &da->tensors[i], *y = &dc->tensors[i];
            CHECK(x->nbytes == y->nbytes);
            if (x->nbytes == y->nbytes) CHECK_MSG(memcmp(x->data, y->data, x->nbytes) != 0, "%s", x->name);
        }
    }
    opc_model_desc_free(dc);

    /* a layer does not depend on how many layers follow it */
    char f[512];
    tmp_path(f, sizeof f, "seed7_3layers");
    CHECK_EQ_INT(synth(f, "tiny", 2.0f, 3, 0.01, 7, 2), OPC_OK);
    opc_model_desc *df = NULL;
    CHECK_EQ_INT(opc_model_desc_open(f, &df), OPC_OK);
    if (da && df) {
        CHECK_EQ_INT(df->cfg.n_layers, 3);
        const char *names[] = {"token_embd.weight", "blk.1.ffn_down.weight", "blk.0.attn_q.weight"};
        for (int i = 0; i < 3; i++) {
            const opc_tensor *x = opc_model_desc_find(da, names[i]), *y = opc_model_desc_find(df, names[i]);
            CHECK(x && y && x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0);
            if (x && y && x->type == OPC_TYPE_CB2)
                CHECK(x->cb.n_outliers == y->cb.n_outliers &&
                      memcmp(x->cb.codebook, y->cb.codebook, (size_t)x->cb.rows * (size_t)x->cb.k * 2) == 0);
        }
    }
    opc_model_desc_free(da);
    opc_model_desc_free(df);
    unlink(a);
    unlink(b);
    unlink(c);
    unlink(e);
    unlink(f);
}

/* --------------------------------------------------------------- forward -- */

static void test_forward(void) {
    const float bits[] = {2.0f, 4.0f, 16.0f};
    for (int bi = 0; bi < 3; bi++) {
        char path[512];
        tmp_path(path, sizeof path, "fwd");
        CHECK_EQ_INT(synth(path, bi == 0 ? "tiny-untied" : "tiny", bits[bi], 0, bi == 0 ? 0.01 : 0.0, 3, 2), OPC_OK);
        opc_model_desc *d = NULL;
        opc_status st = opc_model_desc_open(path, &d);
        CHECK_EQ_INT(st, OPC_OK);
        opc_forward *f = NULL;
        if (d) {
            st = opc_forward_init(&f, d, 64, 8, 2);
            CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        }
        if (f) {
            int32_t V = d->cfg.vocab_size;
            float *logits = malloc(sizeof(float) * (size_t)V);
            int32_t tok = 256; /* BOS */
            CHECK_EQ_INT(opc_forward_run(f, &tok, 1, 0, logits, OPC_LOGITS_LAST), OPC_OK);
            int finite = 1;
            double lo = 1e30, hi = -1e30;
            for (int32_t i = 0; i < V; i++) {
                if (!isfinite(logits[i])) finite = 0;
                if (logits[i] < lo) lo = logits[i];
                if (logits[i] > hi) hi = logits[i];
            }
            CHECK(finite);
            CHECK_MSG(hi > lo, "logits all equal (%g)", lo); /* the weights do something */
            /* a short prefill and a decode step after it stay finite too */
            int32_t prompt[5] = {256, 'H', 'i', ' ', 'x'};
            CHECK_EQ_INT(opc_forward_run(f, prompt, 5, 0, logits, OPC_LOGITS_LAST), OPC_OK);
            CHECK_EQ_INT(opc_forward_run(f, &tok, 1, 5, logits, OPC_LOGITS_LAST), OPC_OK);
            for (int32_t i = 0; i < V; i++)
                if (!isfinite(logits[i])) finite = 0;
            CHECK(finite);
            free(logits);
        }
        opc_forward_free(f);
        opc_model_desc_free(d);
        unlink(path);
    }
}

/* ------------------------------------------------ codebook variants -- */

/* Bytes of a tensor as the .bf2 file stores it (what the summary counts). */
static uint64_t stored_bytes(const opc_tensor *t) {
    return t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4 ? opc_bf2_cb_bytes(&t->cb) : t->nbytes;
}

/* Which variants every codebook tensor of d carries; *n_cb counts them. */
static void check_variants(const opc_model_desc *d, int gscale, int rotate, int *n_cb) {
    *n_cb = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (t->type != OPC_TYPE_CB2 && t->type != OPC_TYPE_CB4) continue;
        const opc_cb_matrix *m = &t->cb;
        (*n_cb)++;
        CHECK_EQ_INT(opc_cb_validate(m, t->name), OPC_OK);
        CHECK_MSG((m->gscale != NULL) == gscale, "%s: gscale %p", t->name, (const void *)m->gscale);
        if (m->gscale) { /* q in 0..15, group 0 of each row at 0, and the values vary */
            int64_t groups = opc_cb_groups(m->cols), bad = 0, hist[16] = {0};
            for (int64_t r = 0; r < m->rows; r++) {
                const uint8_t *g = m->gscale + r * groups;
                bad += g[0] != 0;
                for (int64_t j = 0; j < groups; j++) {
                    bad += g[j] > 15;
                    hist[g[j] & 15]++;
                }
            }
            CHECK_MSG(bad == 0, "%s: %lld scale bytes out of the promised range", t->name, (long long)bad);
            int used = 0;
            for (int q = 0; q < 16; q++) used += hist[q] > 0;
            CHECK_MSG(m->rows * groups < 64 || used >= 12, "%s: only %d distinct scales", t->name, used);
        }
        /* the widest block the format allows: the largest power of two dividing cols */
        int want = 0;
        if (rotate && strcmp(t->name, "token_embd.weight") != 0)
            while (want < OPC_CB_ROT_MAX_LOG2 && m->cols % ((int64_t)2 << want) == 0) want++;
        CHECK_MSG(m->rot_log2 == want, "%s (%lld cols): rot_log2 %d, expected %d", t->name, (long long)m->cols,
                  m->rot_log2, want);
    }
}

static void test_variants(void) {
    /* tiny-untied: widths 96 (block 32) and 200 (block 8); every matrix a codebook */
    struct {
        int gscale, rotate;
    } cases[] = {{1, 1}, {1, 0}, {0, 1}, {0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        tmp_path(path, sizeof path, "var");
        opc_synth_params p = opc_synth_defaults();
        p.shape = "tiny-untied";
        p.head_bits = 2.0f;
        p.embd_bits = 4.0f;
        p.outlier_frac = 0.01;
        p.gscale = cases[i].gscale;
        p.rotate = cases[i].rotate;
        opc_synth_summary sum;
        CHECK_EQ_INT(opc_synth_write(path, &p, &sum), OPC_OK);
        opc_model_desc *d = NULL;
        CHECK_EQ_INT(opc_model_desc_open(path, &d), OPC_OK);
        if (!d) continue;
        int n_cb = 0;
        check_variants(d, cases[i].gscale, cases[i].rotate, &n_cb);
        CHECK_EQ_INT(n_cb, 1 + 7 * 2 + 1); /* embedding, 7 per layer, head */
        const opc_tensor *down = opc_model_desc_find(d, "blk.1.ffn_down.weight");
        CHECK(down && down->cb.rot_log2 == (cases[i].rotate ? 3 : 0)); /* 200 = 8 x 25 */
        /* the summary counts exactly what the file stores, scales included */
        uint64_t bytes = 0;
        for (int32_t j = 0; j < d->n_tensors; j++) bytes += stored_bytes(&d->tensors[j]);
        CHECK_EQ_INT(sum.tensor_bytes, bytes);
        /* the model name says which variants it has */
        CHECK_MSG((strstr(d->name, "gscale") != NULL) == cases[i].gscale &&
                      (strstr(d->name, "-rot") != NULL) == cases[i].rotate,
                  "name %s", d->name);
        opc_model_desc_free(d);
        unlink(path);
    }

    /* same seed, same bytes for any thread count; the options change the file */
    char a[512], b[512], c[512];
    tmp_path(a, sizeof a, "var_a");
    tmp_path(b, sizeof b, "var_b");
    tmp_path(c, sizeof c, "var_c");
    opc_synth_params p = opc_synth_defaults();
    p.shape = "tiny";
    p.n_layers = 1;
    p.gscale = p.rotate = 1;
    p.n_threads = 1;
    CHECK_EQ_INT(opc_synth_write(a, &p, NULL), OPC_OK);
    p.n_threads = 2;
    CHECK_EQ_INT(opc_synth_write(b, &p, NULL), OPC_OK);
    CHECK(same_file(a, b));
    p.gscale = p.rotate = 0;
    CHECK_EQ_INT(opc_synth_write(c, &p, NULL), OPC_OK);
    CHECK(!same_file(a, c));

    /* the forward pass runs on scaled, rotated weights (tiny: tied f16 head) */
    opc_model_desc *d = NULL;
    CHECK_EQ_INT(opc_model_desc_open(a, &d), OPC_OK);
    opc_forward *f = NULL;
    if (d) {
        opc_status st = opc_forward_init(&f, d, 16, 4, 2);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    }
    if (f) {
        float logits[512];
        int32_t prompt[4] = {256, 'H', 'i', '!'};
        CHECK_EQ_INT(opc_forward_run(f, prompt, 4, 0, logits, OPC_LOGITS_LAST), OPC_OK);
        int finite = 1;
        for (int j = 0; j < 512; j++) finite &= isfinite(logits[j]) != 0;
        CHECK(finite);
    }
    opc_forward_free(f);
    opc_model_desc_free(d);
    unlink(a);
    unlink(b);
    unlink(c);

    /* options that would do nothing are refused */
    p = opc_synth_defaults();
    p.shape = "tiny";
    p.bits = 16.0f;
    p.gscale = 1;
    CHECK_EQ_INT(opc_synth_write(a, &p, NULL), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "group scales") != NULL);
    p.gscale = 0;
    p.rotate = 1;
    p.embd_bits = 2.0f; /* a codebook embedding is never rotated: still nothing to rotate */
    CHECK_EQ_INT(opc_synth_write(a, &p, NULL), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "rotation") != NULL);
    CHECK(!opc_file_exists(a));
    p.shape = "tiny-untied"; /* ... but a codebook head is */
    p.head_bits = 2.0f;
    CHECK_EQ_INT(opc_synth_write(a, &p, NULL), OPC_OK);
    d = NULL;
    CHECK_EQ_INT(opc_model_desc_open(a, &d), OPC_OK);
    const opc_tensor *h = d ? opc_model_desc_find(d, "output.weight") : NULL;
    const opc_tensor *e = d ? opc_model_desc_find(d, "token_embd.weight") : NULL;
    CHECK(h && h->type == OPC_TYPE_CB2 && h->cb.rot_log2 == 5 && !h->cb.gscale); /* 96 = 32 x 3 */
    CHECK(e && e->type == OPC_TYPE_CB2 && e->cb.rot_log2 == 0);
    opc_model_desc_free(d);
    unlink(a);
}

/* ---------------------------------------------------------------- errors -- */

/* Any file in OPC_BINARY_DIR whose name starts with prefix (a leftover temporary)? */
static int dir_has_prefix(const char *prefix) {
    DIR *dir = opendir(OPC_BINARY_DIR);
    if (!dir) return 0;
    int found = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL)
        if (!strncmp(de->d_name, prefix, strlen(prefix))) found = 1;
    closedir(dir);
    return found;
}

static void test_errors(void) {
    char path[512];
    tmp_path(path, sizeof path, "err");
    unlink(path);
    opc_synth_params p = opc_synth_defaults();
    p.shape = "tiny";
    p.bits = 2.5f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    CHECK(strstr(opc_last_error(), "bits") != NULL);
    p.bits = 2.0f;
    p.head_bits = 8.0f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    p.head_bits = 16.0f;
    p.outlier_frac = 0.6;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    p.outlier_frac = 0.01;
    p.bits = 16.0f;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG); /* outliers need codebooks */
    p.bits = 2.0f;
    p.outlier_frac = 0.0;
    p.shape = "gpt-5";
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    p.shape = "tiny";
    p.n_layers = 5000;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INVALID_ARG);
    p.n_layers = 0;
    CHECK_EQ_INT(opc_synth_write("", &p, NULL), OPC_ERR_INVALID_ARG);
    CHECK(!opc_file_exists(path));
    /* a folder that does not exist */
    CHECK_EQ_INT(opc_synth_write("/nonexistent-dir/x.bf2", &p, NULL), OPC_ERR_IO);

    /* interrupted: nothing under the name, no temporary file, an old file untouched */
    const char old[] = "previous contents";
    FILE *fo = fopen(path, "wb");
    if (fo) {
        fwrite(old, 1, sizeof old, fo);
        fclose(fo);
    }
    volatile sig_atomic_t flag = 1;
    p.interrupt = &flag;
    CHECK_EQ_INT(opc_synth_write(path, &p, NULL), OPC_ERR_INTERRUPTED);
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    CHECK(b && n == sizeof old && memcmp(b, old, n) == 0);
    free(b);
    CHECK(!dir_has_prefix("tmp_synth_err.bf2.tmp."));
    unlink(path);
}

int main(void) {
    RUN(test_shapes);
    RUN(test_vocab_tokenizer);
    RUN(test_roundtrip);
    RUN(test_head_bits);
    RUN(test_determinism);
    RUN(test_forward);
    RUN(test_variants);
    RUN(test_errors);
    return harness_finish();
}
