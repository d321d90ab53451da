/*
 * test_quantize.c — the quantizer: planted outliers are found, exact
 * codebooks are recovered, RTN levels are uniform, importance shifts the
 * error to unimportant columns, results do not depend on the thread count,
 * quantize -> write -> read -> dequantize equals the in-memory result bit for
 * bit (synthetic model and stories260K), and an interrupted run leaves no
 * output and an existing output untouched.
 */
#include "harness.h"

#include "core/half.h"
#include "format/bf2.h"
#include "quant/quantize.h"

#include <dirent.h>
#include <stdint.h>

static uint64_t g_rng = 777;
static double urand(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) {
    double u = urand() + 1e-12, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static opc_qmatrix_params mparams(int32_t bits, int32_t k, double frac) {
    opc_qmatrix_params p;
    memset(&p, 0, sizeof p);
    p.index_bits = bits;
    p.k = k;
    p.method = OPC_QUANT_KMEANS;
    p.outlier_frac = frac;
    p.seed = 3;
    p.n_init = 3;
    return p;
}

static void test_bits_layout(void) {
    int32_t ib, k;
    CHECK(opc_quant_bits_layout(1.58f, &ib, &k) && ib == 2 && k == 3);
    CHECK(opc_quant_bits_layout(2.0f, &ib, &k) && ib == 2 && k == 4);
    CHECK(opc_quant_bits_layout(3.0f, &ib, &k) && ib == 4 && k == 8);
    CHECK(opc_quant_bits_layout(4.0f, &ib, &k) && ib == 4 && k == 16);
    CHECK(!opc_quant_bits_layout(5.0f, &ib, &k));
    CHECK(!opc_quant_bits_layout(1.0f, &ib, &k));
}

/* Rows made of exactly 4 levels, plus planted spikes: the codebook must be the
 * 4 levels, the outliers exactly the spikes, and the reconstruction exact up
 * to fp16 rounding of the deltas. */
static void test_planted_outliers(void) {
    enum { R = 24, C = 150, NOUT = 36 };
    static float W[R * C];
    static uint8_t planted[R * C];
    const float lv[4] = {-0.75f, -0.25f, 0.125f, 0.5f}; /* exact in fp16 */
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) W[r * C + c] = lv[(r * 7 + c * 3 + (c * c) % 5) % 4] * (1.0f + (float)r / 32.0f);
    int placed = 0;
    while (placed < NOUT) {
        int i = (int)(urand() * R * C);
        if (planted[i]) continue;
        planted[i] = 1;
        W[i] += (urand() < 0.5 ? -1.0f : 1.0f) * (float)(3.0 + 5.0 * urand());
        placed++;
    }
    opc_qmatrix_params p = mparams(2, 4, (double)NOUT / (R * C));
    opc_qmatrix q;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
    CHECK_EQ_INT(q.m.n_outliers, NOUT);
    int hits = 0;
    for (int r = 0; r < R; r++)
        for (uint32_t i = q.m.ol_rowptr[r]; i < q.m.ol_rowptr[r + 1]; i++) hits += planted[r * C + q.m.ol_col[i]];
    CHECK_EQ_INT(hits, NOUT);
    for (int r = 0; r < R && hits != NOUT; r++)
        for (int c = 0; c < C; c++) {
            if (!planted[r * C + c]) continue;
            int found = 0;
            for (uint32_t i = q.m.ol_rowptr[r]; i < q.m.ol_rowptr[r + 1]; i++) found |= q.m.ol_col[i] == c;
            if (!found) {
                fprintf(stderr, "  missed (%d,%d) = %g; row has %u outliers; codebook", r, c, W[r * C + c],
                        q.m.ol_rowptr[r + 1] - q.m.ol_rowptr[r]);
                for (int j = 0; j < 4; j++) fprintf(stderr, " %g", opc_fp16_to_fp32(q.codebook[r * 4 + j]));
                fprintf(stderr, "\n");
            }
        }
    float row[C];
    double maxerr = 0.0;
    for (int r = 0; r < R; r++) {
        opc_cb_dequant_row_ref(&q.m, r, row);
        for (int c = 0; c < C; c++) {
            double e = fabs((double)row[c] - (double)W[r * C + c]) / (fabs((double)W[r * C + c]) + 1e-3);
            if (e > maxerr) maxerr = e;
        }
    }
    CHECK_MSG(maxerr < 2e-3, "max relative error %g", maxerr);
    CHECK(q.err_num / q.err_den < 1e-6);
    opc_qmatrix_free(&q);
    /* without outliers the spikes pull codebook entries away: much worse */
    p.outlier_frac = 0.0;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
    CHECK(q.m.n_outliers == 0 && q.m.ol_rowptr == NULL);
    CHECK(q.err_num / q.err_den > 1e-3);
    opc_qmatrix_free(&q);
    opc_qmatrix_free(NULL);
}

static void test_rtn_levels(void) {
    enum { C = 100 };
    float W[2 * C];
    for (int i = 0; i < 2 * C; i++) W[i] = (float)nrand();
    W[10] = -2.5f;
    W[20] = 3.5f;
    W[C + 5] = -1.0f;
    W[C + 6] = 1.0f;
    for (int i = C; i < 2 * C; i++) W[i] = W[i] > 1.0f ? 1.0f : (W[i] < -1.0f ? -1.0f : W[i]);
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    p.method = OPC_QUANT_RTN;
    opc_qmatrix q;
    CHECK(opc_quantize_matrix(W, 2, C, &p, &q) == OPC_OK);
    float mn = W[0], mx = W[0];
    for (int i = 0; i < C; i++) {
        mn = W[i] < mn ? W[i] : mn;
        mx = W[i] > mx ? W[i] : mx;
    }
    for (int j = 0; j < 4; j++) {
        CHECK(q.codebook[j] == opc_fp32_to_fp16(mn + (mx - mn) * (float)j / 3.0f));
        CHECK(q.codebook[4 + j] == opc_fp32_to_fp16(-1.0f + 2.0f * (float)j / 3.0f));
    }
    /* every weight maps to its nearest level */
    for (int c = 0; c < C; c++) {
        uint32_t ix = opc_cb_get_index(q.idx, 2, c);
        float v = opc_fp16_to_fp32(q.codebook[ix]);
        for (int j = 0; j < 4; j++) CHECK(fabsf(W[c] - v) <= fabsf(W[c] - opc_fp16_to_fp32(q.codebook[j])));
    }
    /* k-means beats the uniform grid on gaussian rows */
    opc_qmatrix qk;
    p.method = OPC_QUANT_KMEANS;
    CHECK(opc_quantize_matrix(W, 2, C, &p, &qk) == OPC_OK);
    CHECK(qk.err_num < q.err_num);
    opc_qmatrix_free(&q);
    opc_qmatrix_free(&qk);
}

/* Importance on a few columns: their error must drop, at the cost of the rest. */
static void test_importance(void) {
    enum { R = 16, C = 256 };
    static float W[R * C], imp[C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    for (int c = 0; c < C; c++) imp[c] = c % 8 == 0 ? 100.0f : 1.0f;
    opc_qmatrix q0, q1;
    opc_qmatrix_params p = mparams(2, 4, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q0) == OPC_OK);
    p.importance = imp;
    CHECK(opc_quantize_matrix(W, R, C, &p, &q1) == OPC_OK);
    double e_imp[2] = {0, 0}, e_rest[2] = {0, 0};
    float row[C];
    for (int v = 0; v < 2; v++) {
        const opc_qmatrix *q = v ? &q1 : &q0;
        for (int r = 0; r < R; r++) {
            opc_cb_dequant_row_ref(&q->m, r, row);
            for (int c = 0; c < C; c++) {
                double d = row[c] - W[r * C + c];
                if (c % 8 == 0)
                    e_imp[v] += d * d;
                else
                    e_rest[v] += d * d;
            }
        }
    }
    fprintf(stderr, "  important-column MSE %.4g -> %.4g, others %.4g -> %.4g\n", e_imp[0], e_imp[1], e_rest[0],
            e_rest[1]);
    /* with 32 important weights per row against 224 others, 4 entries cannot
     * fit them much better than the optimal Gaussian quantizer does; the
     * objective (importance-weighted error) must drop clearly */
    CHECK(e_imp[1] < 0.85 * e_imp[0]);
    CHECK(e_rest[1] > e_rest[0]);
    CHECK(q1.err_num < 0.85 * (100.0 * e_imp[0] + e_rest[0]) / (100.0 * 32 + 224) * (100.0 * 32 + 224) / 1.0);
    opc_qmatrix_free(&q0);
    opc_qmatrix_free(&q1);
}

static void test_threads_deterministic(void) {
    enum { R = 64, C = 200 };
    static float W[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)(nrand() * (1.0 + (i % 13 == 0) * 4.0));
    for (int method = 0; method < 2; method++) {
        opc_qmatrix a, b;
        opc_qmatrix_params p = mparams(4, 16, 0.02);
        p.method = method ? OPC_QUANT_LLOYD : OPC_QUANT_KMEANS;
        p.n_threads = 1;
        CHECK(opc_quantize_matrix(W, R, C, &p, &a) == OPC_OK);
        p.n_threads = 3;
        CHECK(opc_quantize_matrix(W, R, C, &p, &b) == OPC_OK);
        CHECK(a.m.n_outliers == b.m.n_outliers && a.m.n_outliers == (uint64_t)llround(0.02 * R * C));
        CHECK(!memcmp(a.idx, b.idx, (size_t)(R * a.m.row_bytes)));
        CHECK(!memcmp(a.codebook, b.codebook, (size_t)R * 16 * 2));
        CHECK(!memcmp(a.ol_rowptr, b.ol_rowptr, (R + 1) * 4));
        CHECK(!memcmp(a.ol_col, b.ol_col, a.m.n_outliers * 2) && !memcmp(a.ol_val, b.ol_val, a.m.n_outliers * 2));
        CHECK(opc_cb_validate(&a.m, "a") == OPC_OK);
        opc_qmatrix_free(&a);
        opc_qmatrix_free(&b);
    }
    /* bad arguments */
    opc_qmatrix q;
    opc_qmatrix_params p = mparams(2, 5, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p = mparams(3, 4, 0.0);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
    p = mparams(2, 4, 0.9);
    CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_ERR_INVALID_ARG);
}


/* GPTQ: with correlated inputs, error feedback must lower the output error
 * ||(W - Q) X^T||^2 that the plain per-weight fit ignores. */
static void test_gptq(void) {
    enum { R = 32, C = 128, N = 512 };
    static float W[R * C], X[N * C], H[C * C];
    for (int i = 0; i < R * C; i++) W[i] = (float)nrand();
    /* inputs with strong column correlations: x = z A, A random mixing */
    static float A[C * C];
    for (int i = 0; i < C * C; i++) A[i] = (float)(nrand() * (i % (C + 1) == 0 ? 3.0 : 0.3));
    for (int t = 0; t < N; t++) {
        float z[C];
        for (int c = 0; c < C; c++) z[c] = (float)nrand();
        for (int c = 0; c < C; c++) {
            double v = 0;
            for (int j = 0; j < C; j++) v += z[j] * A[j * C + c];
            X[t * C + c] = (float)v;
        }
    }
    float imp[C];
    for (int a = 0; a < C; a++)
        for (int b = 0; b < C; b++) {
            double v = 0;
            for (int t = 0; t < N; t++) v += (double)X[t * C + a] * X[t * C + b];
            H[a * C + b] = (float)v;
        }
    for (int c = 0; c < C; c++) imp[c] = H[c * C + c];
    double out_err[3];
    for (int v = 0; v < 3; v++) {
        opc_qmatrix_params p = mparams(2, 4, v == 2 ? 0.01 : 0.0);
        p.importance = imp;
        if (v >= 1) p.hessian = H;
        opc_qmatrix q;
        CHECK(opc_quantize_matrix(W, R, C, &p, &q) == OPC_OK);
        CHECK(opc_cb_validate(&q.m, "gptq") == OPC_OK);
        float row[C];
        double e = 0;
        for (int r = 0; r < R; r++) {
            opc_cb_dequant_row_ref(&q.m, r, row);
            for (int t = 0; t < N; t++) {
                double y = 0;
                for (int c = 0; c < C; c++) y += (double)(W[r * C + c] - row[c]) * X[t * C + c];
                e += y * y;
            }
        }
        out_err[v] = e;
        opc_qmatrix_free(&q);
    }
    fprintf(stderr, "  output error: plain %.4g, gptq %.4g, gptq + 1%% outliers %.4g\n", out_err[0], out_err[1],
            out_err[2]);
    CHECK(out_err[1] < 0.8 * out_err[0]);
    CHECK(out_err[2] < out_err[1]);
}

/* ------------------------------------------------- whole-model tests ---- */

typedef struct synth {
    opc_model_desc *d;
    float *bufs[8];
} synth;

/* A tiny llama-shaped description with f32 weights (one layer). */
static void synth_init(synth *s) {
    memset(s, 0, sizeof *s);
    opc_model_desc *d = calloc(1, sizeof *d);
    s->d = d;
    snprintf(d->path, sizeof d->path, "synthetic");
    snprintf(d->name, sizeof d->name, "synthetic");
    opc_config *c = &d->cfg;
    c->dim = 96;
    c->hidden_dim = 130;
    c->n_layers = 1;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 24;
    c->vocab_size = 50;
    c->max_seq_len = 64;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tied_embeddings = 1;
    d->vocab.bos_id = d->vocab.eos_id = d->vocab.unk_id = d->vocab.pad_id = -1;
    struct { const char *name; int64_t r, c; } t[] = {
        {"token_embd.weight", 50, 96}, {"blk.0.attn_norm.weight", 96, 0}, {"blk.0.attn_q.weight", 96, 96},
        {"blk.0.attn_v.weight", 48, 96}, {"blk.0.ffn_up.weight", 130, 96}, {"blk.0.ffn_down.weight", 96, 130},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    opc_model_desc_alloc_tensors(d, n);
    for (int i = 0; i < n; i++) {
        opc_tensor *x = &d->tensors[i];
        snprintf(x->name, OPC_MAX_NAME, "%s", t[i].name);
        x->type = OPC_TYPE_F32;
        x->n_dims = t[i].c ? 2 : 1;
        x->shape[0] = t[i].r;
        x->shape[1] = t[i].c;
        int64_t ne = t[i].r * (t[i].c ? t[i].c : 1);
        float *b = opc_aligned_alloc((size_t)ne * 4);
        for (int64_t j = 0; j < ne; j++) b[j] = (float)(0.05 * nrand() * (j % 37 == 0 ? 6.0 : 1.0));
        x->data = x->owned = b;
        x->nbytes = (uint64_t)ne * 4;
        x->qerr = -1.0f;
    }
}

static const char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/tmp_%s", OPC_BINARY_DIR, name);
    return buf;
}

/* Quantize `src` to a file, read it back, and compare every tensor with the
 * in-memory quantization of the same tensor: bytes and dequantized rows. */
static void round_trip(const opc_model_desc *src, const opc_quant_params *p, const char *fname) {
    char path[1024];
    tmp_path(path, sizeof path, fname);
    opc_quant_summary sum;
    opc_status st = opc_quantize_model(src, path, p, &sum);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    opc_model_desc *d = NULL;
    st = opc_model_desc_open(path, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    CHECK_EQ_INT(d->n_tensors, src->n_tensors);
    CHECK(!memcmp(&d->cfg, &src->cfg, sizeof d->cfg));
    int n_cb = 0;
    uint64_t q_bytes = 0;
    for (int32_t i = 0; i < d->n_tensors && d->n_tensors == src->n_tensors; i++) {
        const opc_tensor *got = &d->tensors[i];
        opc_tensor mem;
        opc_qmatrix qm;
        CHECK(opc_quantize_tensor(&src->tensors[i], i, p, &mem, &qm) == OPC_OK);
        CHECK_STR(got->name, mem.name);
        CHECK(got->type == mem.type && got->nbytes == mem.nbytes && !memcmp(got->data, mem.data, mem.nbytes));
        CHECK(got->qerr == mem.qerr);
        if (got->type == OPC_TYPE_CB2 || got->type == OPC_TYPE_CB4) {
            n_cb++;
            const opc_cb_matrix *a = &got->cb, *b = &mem.cb;
            q_bytes += opc_cb_matrix_bytes(a);
            CHECK(a->k == b->k && a->n_outliers == b->n_outliers);
            CHECK(!memcmp(a->codebook, b->codebook, (size_t)(a->rows * a->k * 2)));
            float *ra = malloc((size_t)a->cols * 4), *rb = malloc((size_t)a->cols * 4);
            int same = 1;
            for (int64_t r = 0; r < a->rows; r++) {
                opc_cb_dequant_row_ref(a, r, ra);
                opc_cb_dequant_row_ref(b, r, rb);
                same &= !memcmp(ra, rb, (size_t)a->cols * 4);
            }
            CHECK_MSG(same, "tensor %s: dequantized rows differ", got->name);
            free(ra);
            free(rb);
            CHECK_MSG(got->qerr >= 0.0f && got->qerr < (p->method == OPC_QUANT_RTN ? 1.0f : 0.25f), "%s qerr %g k %d",
                      got->name, (double)got->qerr, a->k);
        }
        opc_quant_tensor_free(&mem, &qm);
    }
    CHECK(n_cb > 0);
    CHECK(q_bytes == sum.q_bytes);
    fprintf(stderr, "  %s: %d codebook tensors, %.3f bpw all-in, file %llu bytes, %.2f s\n", fname, n_cb,
            8.0 * (double)sum.q_bytes / (double)sum.q_elems, (unsigned long long)sum.file_bytes, sum.seconds);
    opc_quant_summary_free(&sum);
    opc_model_desc_free(d);
    remove(path);
}

static void test_round_trip_synthetic(void) {
    synth s;
    synth_init(&s);
    opc_quant_params p = opc_quant_defaults();
    round_trip(s.d, &p, "q_synth2.bf2");
    p.bits = 4.0f;
    p.overrides = "attn_v=3,ffn_down=1.58";
    round_trip(s.d, &p, "q_synth4.bf2");
    p = opc_quant_defaults();
    p.method = OPC_QUANT_RTN;
    p.outlier_frac = 0.0;
    round_trip(s.d, &p, "q_synth_rtn.bf2");
    /* plan: defaults and overrides */
    opc_quant_choice ch;
    int32_t ib, k;
    p = opc_quant_defaults();
    CHECK(opc_quant_plan(&s.d->tensors[0], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F16);
    CHECK(opc_quant_plan(&s.d->tensors[1], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F32);
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 4);
    p.overrides = "token_embd.weight=4,blk.*.attn_?.weight=3";
    CHECK(opc_quant_plan(&s.d->tensors[0], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 16);
    CHECK(opc_quant_plan(&s.d->tensors[3], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_CB && k == 8);
    p.overrides = NULL;
    p.keep_fp16 = "*ffn_*";
    CHECK(opc_quant_plan(&s.d->tensors[4], &p, &ch, &ib, &k) == OPC_OK && ch == OPC_QC_F16);
    p.keep_fp16 = NULL;
    p.overrides = "attn_q";
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_ERR_INVALID_ARG);
    p.overrides = "attn_q=5";
    CHECK(opc_quant_plan(&s.d->tensors[2], &p, &ch, &ib, &k) == OPC_ERR_INVALID_ARG);
    char path[1024];
    tmp_path(path, sizeof path, "q_bad.bf2");
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INVALID_ARG);
    CHECK(!opc_file_exists(path));
    opc_model_desc_free(s.d);
}

static int count_temps(const char *base) {
    DIR *dir = opendir(OPC_BINARY_DIR);
    if (!dir) return -1;
    int n = 0;
    struct dirent *e;
    char prefix[256];
    snprintf(prefix, sizeof prefix, "tmp_%s.tmp.", base);
    while ((e = readdir(dir)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(dir);
    return n;
}

static volatile sig_atomic_t g_flag;
static void interrupt_at_3(void *user, const opc_quant_progress *pr) {
    (void)user;
    if (pr->tensor == 3) g_flag = 1; /* as the CLI's SIGINT handler would */
}

static void test_interrupt(void) {
    synth s;
    synth_init(&s);
    char path[1024];
    tmp_path(path, sizeof path, "q_int.bf2");
    remove(path);
    opc_quant_params p = opc_quant_defaults();
    p.interrupt = &g_flag;
    p.progress = interrupt_at_3;
    g_flag = 0;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    CHECK(!opc_file_exists(path));
    CHECK_EQ_INT(count_temps("q_int.bf2"), 0);
    /* an existing output is never clobbered */
    FILE *f = fopen(path, "wb");
    fputs("keep me", f);
    fclose(f);
    g_flag = 0;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    char *txt = NULL;
    size_t n = 0;
    CHECK(opc_read_file(path, &txt, &n) == OPC_OK && n == 7 && !memcmp(txt, "keep me", 7));
    free(txt);
    CHECK_EQ_INT(count_temps("q_int.bf2"), 0);
    /* flag already set: nothing happens at all */
    g_flag = 1;
    p.progress = NULL;
    CHECK(opc_quantize_model(s.d, path, &p, NULL) == OPC_ERR_INTERRUPTED);
    remove(path);
    opc_model_desc_free(s.d);
}

static void test_round_trip_stories260k(void) {
    char path[1024];
    SHARED_PATH(path, "models/stories260K/stories260K.bin");
    if (!opc_file_exists(path)) SKIP("%s not found", path);
    opc_model_desc *d = NULL;
    opc_status st = opc_model_desc_open(path, &d);
    if (st == OPC_ERR_UNSUPPORTED) SKIP("llama2.c loader not available: %s", opc_last_error());
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    opc_quant_params p = opc_quant_defaults();
    round_trip(d, &p, "q_st2.bf2");
    p.bits = 3.0f;
    p.outlier_frac = 0.005;
    round_trip(d, &p, "q_st3.bf2");
    opc_model_desc_free(d);
}

int main(void) {
    RUN(test_bits_layout);
    RUN(test_planted_outliers);
    RUN(test_rtn_levels);
    RUN(test_importance);
    RUN(test_threads_deterministic);
    RUN(test_gptq);
    RUN(test_round_trip_synthetic);
    RUN(test_interrupt);
    RUN(test_round_trip_stories260k);
    return harness_finish();
}
