/*
 * test_gguf.c — GGUF reader, dequantizers and GGUF -> model description.
 *
 *   golden:  tests/golden/gguf_quants.gguf written by gguf-py
 *            (scripts/dev/make_gguf_golden.py): every metadata value type and
 *            one tensor of each supported type; dequantized values must equal
 *            gguf-py's bit for bit.
 *   model:   a tiny llama/qwen2 GGUF built here byte by byte, loaded through
 *            opc_model_desc_open (config, vocab, shapes, RoPE un-permutation).
 *   corrupt: the same bytes truncated at every offset and with single fields
 *            broken; each must fail with the right status and a message
 *            naming the field.
 *   smollm2: the default model (skipped when absent) against gguf-py values.
 */
#include "harness.h"

#include "format/gguf.h"
#include "format/loaders.h"
#include "model/model.h"
#include "quant/types.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers --- */

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    void *p = malloc(sz > 0 ? (size_t)sz : 1);
    if (p && sz > 0 && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = sz > 0 ? (size_t)sz : 0;
    return p;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Compare floats bit for bit (NaN payloads and -0 included); returns the
 * number of mismatches and prints the first few. */
static int64_t bits_diff(const float *got, const float *want, int64_t n, const char *what) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b && bad++ < 5)
            fprintf(stderr, "  %s[%lld]: got %.9g (0x%08x) want %.9g (0x%08x)\n", what, (long long)i,
                    (double)got[i], a, (double)want[i], b);
    }
    return bad;
}

/* ------------------------------------------------------------ golden ---- */

static void test_golden_metadata(void) {
    char path[1024];
    harness_path(path, sizeof path, "tests/golden/gguf_quants.gguf");
    opc_gguf *g;
    opc_status st = opc_gguf_open(path, &g);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st) return;
    CHECK_EQ_INT(opc_gguf_version(g), 3);
    CHECK_EQ_INT(opc_gguf_alignment(g), 64);
    CHECK_EQ_INT(opc_gguf_data_offset(g) % 64, 0);
    int64_t v;
    double f;
    int b;
    const char *s;
    uint64_t n;
    CHECK(opc_gguf_get_int(g, "test.u8", &v) == OPC_OK && v == 200);
    CHECK(opc_gguf_get_int(g, "test.i8", &v) == OPC_OK && v == -100);
    CHECK(opc_gguf_get_int(g, "test.u16", &v) == OPC_OK && v == 60000);
    CHECK(opc_gguf_get_int(g, "test.i16", &v) == OPC_OK && v == -30000);
    CHECK(opc_gguf_get_int(g, "test.u32", &v) == OPC_OK && v == 4000000000LL);
    CHECK(opc_gguf_get_int(g, "test.i32", &v) == OPC_OK && v == -2000000000LL);
    CHECK(opc_gguf_get_int(g, "test.u64", &v) == OPC_OK && v == (1LL << 40));
    CHECK(opc_gguf_get_int(g, "test.i64", &v) == OPC_OK && v == -(1LL << 40));
    CHECK(opc_gguf_get_float(g, "test.f32", &f) == OPC_OK && f == 0.15625);
    CHECK(opc_gguf_get_float(g, "test.f64", &f) == OPC_OK && f == -2.5e-300);
    CHECK(opc_gguf_get_float(g, "test.u16", &f) == OPC_OK && f == 60000.0);
    CHECK(opc_gguf_get_bool(g, "test.bool", &b) == OPC_OK && b == 1);
    CHECK(opc_gguf_get_str(g, "test.str", &s, &n) == OPC_OK && n == 6 && !memcmp(s, "h\xc3\xa9llo", 6));
    CHECK(opc_gguf_get_str(g, "general.architecture", &s, &n) == OPC_OK && n == 10 &&
          !memcmp(s, "opc-golden", 10));
    /* type mismatches and absent keys */
    CHECK_EQ_INT(opc_gguf_get_str(g, "test.u8", &s, &n), OPC_ERR_CORRUPT);
    CHECK(contains(opc_last_error(), "test.u8"));
    CHECK_EQ_INT(opc_gguf_get_int(g, "test.str", &v), OPC_ERR_CORRUPT);
    CHECK_EQ_INT(opc_gguf_get_bool(g, "test.u8", &b), OPC_ERR_CORRUPT);
    CHECK_EQ_INT(opc_gguf_get_int(g, "no.such.key", &v), OPC_ERR_NOT_FOUND);
    CHECK(contains(opc_last_error(), "no.such.key") && contains(opc_last_error(), "gguf_quants.gguf"));
    CHECK_EQ_INT(opc_gguf_find_key(g, "no.such.key"), -1);
    CHECK_EQ_INT((int)opc_gguf_key_type(g, "no.such.key"), -1);
    CHECK_EQ_INT(opc_gguf_key_type(g, "test.f64"), OPC_GGUF_FLOAT64);

    /* arrays */
    opc_gguf_vtype et;
    CHECK(opc_gguf_get_arr_info(g, "test.arr_i32", &et, &n) == OPC_OK && et == OPC_GGUF_INT32 && n == 4);
    int32_t ia[4] = {0};
    CHECK(opc_gguf_get_arr_i32(g, "test.arr_i32", ia, 4) == OPC_OK);
    CHECK(ia[0] == 1 && ia[1] == -2 && ia[2] == 3 && ia[3] == 2147483647);
    CHECK_EQ_INT(opc_gguf_get_arr_i32(g, "test.arr_i32", ia, 3), OPC_ERR_INVALID_ARG);
    float fa[3] = {0};
    CHECK(opc_gguf_get_arr_f32(g, "test.arr_f32", fa, 3) == OPC_OK);
    CHECK(fa[0] == 0.5f && fa[1] == -1.25f && fa[2] == 3.0f);
    CHECK_EQ_INT(opc_gguf_get_arr_i32(g, "test.arr_f32", ia, 3), OPC_ERR_CORRUPT);
    CHECK(opc_gguf_get_arr_info(g, "test.arr_str", &et, &n) == OPC_OK && et == OPC_GGUF_STRING && n == 3);
    CHECK(opc_gguf_get_arr_str(g, "test.arr_str", 0, &s, &n) == OPC_OK && n == 1 && s[0] == 'a');
    CHECK(opc_gguf_get_arr_str(g, "test.arr_str", 1, &s, &n) == OPC_OK && n == 0);
    CHECK(opc_gguf_get_arr_str(g, "test.arr_str", 2, &s, &n) == OPC_OK && n == 3 && !memcmp(s, "xyz", 3));
    CHECK_EQ_INT(opc_gguf_get_arr_str(g, "test.arr_str", 3, &s, &n), OPC_ERR_INVALID_ARG);
    /* an array of arrays is parsed (and skipped) but not readable as numbers */
    CHECK(opc_gguf_get_arr_info(g, "test.arr_arr", &et, &n) == OPC_OK && et == OPC_GGUF_ARRAY && n == 3);
    CHECK_EQ_INT(opc_gguf_get_arr_i32(g, "test.arr_arr", ia, 3), OPC_ERR_CORRUPT);
    /* the entry after the nested array still reads: it is parsed in order */
    int64_t nkv = opc_gguf_n_kv(g);
    CHECK_EQ_INT(nkv, 18); /* general.architecture, general.alignment, 16 test.* */
    const char *key;
    uint64_t klen;
    opc_gguf_vtype kt;
    CHECK(opc_gguf_kv_at(g, nkv - 1, &key, &klen, &kt) == OPC_OK && klen == 12 &&
          !memcmp(key, "test.arr_arr", 12) && kt == OPC_GGUF_ARRAY);
    CHECK_EQ_INT(opc_gguf_kv_at(g, nkv, &key, &klen, &kt), OPC_ERR_INVALID_ARG);
    opc_gguf_close(g);
}

static void test_golden_dequant(void) {
    char path[1024], epath[1024];
    harness_path(path, sizeof path, "tests/golden/gguf_quants.gguf");
    harness_path(epath, sizeof epath, "tests/golden/gguf_quants.expected.bin");
    size_t en = 0;
    float *expected = read_all(epath, &en);
    CHECK(expected != NULL);
    opc_gguf *g;
    opc_status st = opc_gguf_open(path, &g);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (st || !expected) {
        free(expected);
        opc_gguf_close(g);
        return;
    }
    static const struct { const char *name; opc_type type; uint32_t n_dims; uint64_t ne[4]; } want[] = {
        {"t.f32", OPC_TYPE_F32, 2, {8, 2, 1, 1}},   {"t.f16", OPC_TYPE_F16, 2, {8, 3, 1, 1}},
        {"t.bf16", OPC_TYPE_BF16, 2, {8, 2, 1, 1}}, {"t.f32_3d", OPC_TYPE_F32, 3, {4, 3, 2, 1}},
        {"t.q8_0", OPC_TYPE_Q8_0, 2, {64, 3, 1, 1}}, {"t.q4_0", OPC_TYPE_Q4_0, 2, {64, 3, 1, 1}},
        {"t.q4_1", OPC_TYPE_Q4_1, 2, {64, 3, 1, 1}}, {"t.q5_0", OPC_TYPE_Q5_0, 2, {64, 3, 1, 1}},
        {"t.q5_1", OPC_TYPE_Q5_1, 2, {64, 3, 1, 1}}, {"t.q4_k", OPC_TYPE_Q4_K, 2, {512, 2, 1, 1}},
        {"t.q5_k", OPC_TYPE_Q5_K, 2, {512, 2, 1, 1}}, {"t.q6_k", OPC_TYPE_Q6_K, 2, {512, 2, 1, 1}},
    };
    const size_t nw = sizeof want / sizeof want[0];
    CHECK_EQ_INT(opc_gguf_n_tensors(g), (int64_t)nw);
    size_t off = 0;
    for (size_t i = 0; i < nw && (int64_t)i < opc_gguf_n_tensors(g); i++) {
        opc_gguf_tensor_info ti;
        CHECK(opc_gguf_tensor_at(g, (int64_t)i, &ti) == OPC_OK);
        CHECK_MSG(ti.name_len == strlen(want[i].name) && !memcmp(ti.name, want[i].name, ti.name_len),
                  "tensor %zu is %.*s", i, (int)ti.name_len, ti.name);
        CHECK_EQ_INT(opc_gguf_find_tensor(g, want[i].name), (int64_t)i);
        CHECK_EQ_INT(ti.type, want[i].type);
        CHECK_EQ_INT(ti.n_dims, want[i].n_dims);
        for (int k = 0; k < 4; k++) CHECK_EQ_INT(ti.ne[k], want[i].ne[k]);
        int64_t n = (int64_t)(ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3]);
        uint64_t rb;
        CHECK(opc_type_row_bytes(ti.type, n, &rb) == OPC_OK && rb == ti.nbytes);
        if (off + (size_t)n > en / 4) {
            CHECK_MSG(0, "expected file too short for %s", want[i].name);
            break;
        }
        float *got = malloc((size_t)n * sizeof *got);
        CHECK(opc_dequantize(ti.type, ti.data, got, n) == OPC_OK);
        int64_t bad = bits_diff(got, expected + off, n, want[i].name);
        CHECK_MSG(bad == 0, "%s: %lld of %lld values differ from gguf-py", want[i].name, (long long)bad,
                  (long long)n);
        /* row by row must give the same as all at once (no state across rows) */
        float *row = malloc((size_t)ti.ne[0] * sizeof *row);
        const uint64_t nrows = (uint64_t)n / ti.ne[0];
        for (uint64_t r = 0; r < nrows; r++) {
            CHECK(opc_dequantize(ti.type, (const uint8_t *)ti.data + r * (ti.nbytes / nrows), row,
                                 (int64_t)ti.ne[0]) == OPC_OK);
            CHECK(memcmp(row, got + r * ti.ne[0], (size_t)ti.ne[0] * 4) == 0);
        }
        free(row);
        free(got);
        off += (size_t)n;
    }
    CHECK_EQ_INT(off * 4, en);
    CHECK_EQ_INT(opc_gguf_find_tensor(g, "t.nope"), -1);
    opc_gguf_tensor_info ti;
    CHECK_EQ_INT(opc_gguf_tensor_at(g, 99, &ti), OPC_ERR_INVALID_ARG);
    /* a row that is not a whole number of blocks is refused by the type table */
    float tmp[64];
    CHECK_EQ_INT(opc_dequantize(OPC_TYPE_Q4_K, tmp, tmp, 32), OPC_ERR_INVALID_ARG);
    free(expected);
    opc_gguf_close(g);
}

/* Hand-made blocks whose values are known without any reference code. */
static void test_dequant_handmade(void) {
    /* q4_0: d = 1.0 (0x3c00); byte j = (hi << 4) | lo -> y[j] = lo - 8, y[j+16] = hi - 8 */
    uint8_t q40[18] = {0x00, 0x3c};
    for (int j = 0; j < 16; j++) q40[2 + j] = (uint8_t)((15 - j) << 4 | j);
    float y[256];
    CHECK(opc_dequantize(OPC_TYPE_Q4_0, q40, y, 32) == OPC_OK);
    int ok = 1;
    for (int j = 0; j < 16; j++) ok &= y[j] == (float)(j - 8) && y[j + 16] == (float)(7 - j);
    CHECK(ok);
    /* q8_0 with d = -2.0 (0xc000) */
    uint8_t q80[34] = {0x00, 0xc0};
    for (int j = 0; j < 32; j++) q80[2 + j] = (uint8_t)(int8_t)(j - 16);
    CHECK(opc_dequantize(OPC_TYPE_Q8_0, q80, y, 32) == OPC_OK);
    ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == -2.0f * (float)(j - 16);
    CHECK(ok);
    /* q5_0: qs all 0, qh bit j set for odd j -> element j = 16*(j odd) - 16 (d = 1) */
    uint8_t q50[22] = {0x00, 0x3c, 0xaa, 0xaa, 0xaa, 0xaa};
    CHECK(opc_dequantize(OPC_TYPE_Q5_0, q50, y, 32) == OPC_OK);
    ok = 1;
    for (int j = 0; j < 32; j++) ok &= y[j] == ((j & 1) ? 0.0f : -16.0f);
    CHECK(ok);
    /* q6_k: all quants 32 (zero after the -32 offset) except ql[0] low nibble
     * = 33 - 32 = 1 via qh: set element 0 to q = 33 -> y[0] = d * sc[0] * 1 */
    uint8_t q6[210];
    memset(q6, 0, sizeof q6);
    for (int i = 0; i < 64; i++) q6[128 + i] = 0xaa; /* high 2 bits = 2 -> q = 32 everywhere */
    q6[0] = 0x01;                                     /* element 0: 33 */
    for (int i = 0; i < 16; i++) q6[192 + i] = (uint8_t)(int8_t)(i + 1);
    q6[208] = 0x00;
    q6[209] = 0x40; /* d = 2.0 */
    CHECK(opc_dequantize(OPC_TYPE_Q6_K, q6, y, 256) == OPC_OK);
    ok = y[0] == 2.0f;
    for (int j = 1; j < 256; j++) ok &= y[j] == 0.0f;
    CHECK(ok);
}

/* ------------------------------------------------------ GGUF builder ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}
static void put_u64(buf *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_str(buf *b, const char *k, const char *v) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_STRING);
    put_str(b, v);
}
static void kv_u32(buf *b, const char *k, uint32_t v) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_UINT32);
    put_u32(b, v);
}
static void kv_f32(buf *b, const char *k, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_str(b, k);
    put_u32(b, OPC_GGUF_FLOAT32);
    put_u32(b, u);
}
static void kv_bool(buf *b, const char *k, int v) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_BOOL);
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}
static void kv_strs(buf *b, const char *k, const char *const *v, int n) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_ARRAY);
    put_u32(b, OPC_GGUF_STRING);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(b, v[i]);
}
static void kv_f32s(buf *b, const char *k, const float *v, int n) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_ARRAY);
    put_u32(b, OPC_GGUF_FLOAT32);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(b, u);
    }
}
static void kv_i32s(buf *b, const char *k, const int32_t *v, int n) {
    put_str(b, k);
    put_u32(b, OPC_GGUF_ARRAY);
    put_u32(b, OPC_GGUF_INT32);
    put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) put_u32(b, (uint32_t)v[i]);
}

/* The tiny model: dim 8, 2 heads of 4, 1 kv head, hidden 16, 1 layer, 6 tokens. */
enum { DIM = 8, NH = 2, HD = 4, NKV = 1, HID = 16, VOCAB = 6 };

typedef struct {
    const char *arch;       /* "llama" */
    const char *tok_model;  /* "gpt2" */
    uint32_t version;       /* 3 */
    const char *drop;       /* tensor name to leave out, or NULL */
    int bias;               /* add q/k/v biases */
    int tied;               /* leave out output.weight */
    int q_rows_bad;         /* give attn_q a wrong shape */
    uint32_t first_type;    /* ggml type id written for token_embd (data stays f32) */
    const char *rope_scaling; /* rope.scaling.type, or NULL */
    const float *rope_freqs;  /* HD/2 values for a rope_freqs.weight tensor, or NULL */
} model_opts;

/* Offsets of fields the corruption tests patch. */
typedef struct {
    size_t version, n_tensors, n_kv, name_len; /* name_len: general.name's string length */
    size_t ti0_ndims, ti0_ne0, ti0_type, ti0_offset; /* first tensor info */
    size_t data_start;
} model_offsets;

typedef struct {
    char name[64];
    uint64_t ne[2];
    uint32_t n_dims;
} tdesc;

static int build_tensors(tdesc *t, const model_opts *o) {
    int n = 0;
#define T1(nm, a) (snprintf(t[n].name, 64, "%s", nm), t[n].ne[0] = (a), t[n].ne[1] = 1, t[n].n_dims = 1, n++)
#define T2(nm, in, out) (snprintf(t[n].name, 64, "%s", nm), t[n].ne[0] = (in), t[n].ne[1] = (out), t[n].n_dims = 2, n++)
    T2("token_embd.weight", DIM, VOCAB);
    T1("output_norm.weight", DIM);
    if (!o->tied) T2("output.weight", DIM, VOCAB);
    T1("blk.0.attn_norm.weight", DIM);
    T2("blk.0.attn_q.weight", DIM, o->q_rows_bad ? NH * HD + 1 : NH * HD);
    T2("blk.0.attn_k.weight", DIM, NKV * HD);
    T2("blk.0.attn_v.weight", DIM, NKV * HD);
    T2("blk.0.attn_output.weight", NH * HD, DIM);
    T1("blk.0.ffn_norm.weight", DIM);
    T2("blk.0.ffn_gate.weight", DIM, HID);
    T2("blk.0.ffn_up.weight", DIM, HID);
    T2("blk.0.ffn_down.weight", HID, DIM);
    if (o->rope_freqs) T1("rope_freqs.weight", HD / 2);
    if (o->bias) {
        T1("blk.0.attn_q.bias", NH * HD);
        T1("blk.0.attn_k.bias", NKV * HD);
        T1("blk.0.attn_v.bias", NKV * HD);
    }
#undef T1
#undef T2
    if (o->drop) {
        for (int i = 0; i < n; i++)
            if (!strcmp(t[i].name, o->drop)) {
                memmove(&t[i], &t[i + 1], (size_t)(n - i - 1) * sizeof *t);
                n--;
                break;
            }
    }
    return n;
}

/* Tensor data: F32 with element (r, c) of tensor i = 1000 i + 100 r + c, so
 * rows can be identified after un-permutation. */
static buf build_model(const model_opts *o, model_offsets *off) {
    buf b = {0};
    model_offsets dummy;
    if (!off) off = &dummy;
    tdesc t[32];
    int nt = build_tensors(t, o);
    static const char *toks[VOCAB] = {"a", "b", "c", "ab", "<s>", "</s>"};
    static const char *merges[1] = {"a b"};
    static const float scores[VOCAB] = {-1, -2, -3, -4, 0, 0};
    static const int32_t types[VOCAB] = {1, 1, 1, 1, 3, 3};
    char key[96];

    put(&b, "GGUF", 4);
    off->version = b.n;
    put_u32(&b, o->version ? o->version : 3);
    off->n_tensors = b.n;
    put_u64(&b, (uint64_t)nt);
    off->n_kv = b.n;
    put_u64(&b, 0); /* patched below */
    uint64_t nkv = 0;
    kv_str(&b, "general.architecture", o->arch ? o->arch : "llama"), nkv++;
    off->name_len = b.n + 8 + strlen("general.name") + 4;
    kv_str(&b, "general.name", "tiny"), nkv++;
    const char *a = o->arch ? o->arch : "llama";
#define AK(s) (snprintf(key, sizeof key, "%s.%s", a, s), key)
    kv_u32(&b, AK("embedding_length"), DIM), nkv++;
    kv_u32(&b, AK("feed_forward_length"), HID), nkv++;
    kv_u32(&b, AK("block_count"), 1), nkv++;
    kv_u32(&b, AK("attention.head_count"), NH), nkv++;
    kv_u32(&b, AK("attention.head_count_kv"), NKV), nkv++;
    kv_u32(&b, AK("context_length"), 64), nkv++;
    kv_f32(&b, AK("attention.layer_norm_rms_epsilon"), 1e-5f), nkv++;
    kv_f32(&b, AK("rope.freq_base"), 500000.0f), nkv++;
    if (o->rope_scaling) {
        kv_str(&b, AK("rope.scaling.type"), o->rope_scaling), nkv++;
        kv_f32(&b, AK("rope.scaling.factor"), 4.0f), nkv++;
    }
#undef AK
    kv_str(&b, "tokenizer.ggml.model", o->tok_model ? o->tok_model : "gpt2"), nkv++;
    kv_str(&b, "tokenizer.ggml.pre", "smollm"), nkv++;
    kv_strs(&b, "tokenizer.ggml.tokens", toks, VOCAB), nkv++;
    kv_f32s(&b, "tokenizer.ggml.scores", scores, VOCAB), nkv++;
    kv_i32s(&b, "tokenizer.ggml.token_type", types, VOCAB), nkv++;
    kv_strs(&b, "tokenizer.ggml.merges", merges, 1), nkv++;
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 4), nkv++;
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 5), nkv++;
    kv_bool(&b, "tokenizer.ggml.add_bos_token", 1), nkv++;
    kv_str(&b, "tokenizer.chat_template", "{{ '<|im_start|>' }}"), nkv++;
    for (int i = 0; i < 8; i++) b.p[off->n_kv + (size_t)i] = (uint8_t)(nkv >> (8 * i));

    uint64_t doff = 0, sizes[32];
    for (int i = 0; i < nt; i++) {
        uint32_t type = (i == 0 && o->first_type) ? o->first_type : 0;
        sizes[i] = t[i].ne[0] * t[i].ne[1] * 4;
        put_str(&b, t[i].name);
        if (i == 0) off->ti0_ndims = b.n;
        put_u32(&b, t[i].n_dims);
        if (i == 0) off->ti0_ne0 = b.n;
        for (uint32_t d = 0; d < t[i].n_dims; d++) put_u64(&b, t[i].ne[d]);
        if (i == 0) off->ti0_type = b.n;
        put_u32(&b, type);
        if (i == 0) off->ti0_offset = b.n;
        put_u64(&b, doff);
        doff += (sizes[i] + 31) / 32 * 32;
    }
    while (b.n % 32) put(&b, "", 1);
    off->data_start = b.n;
    for (int i = 0; i < nt; i++) {
        uint64_t rows = t[i].ne[1], cols = t[i].ne[0];
        for (uint64_t r = 0; r < rows; r++)
            for (uint64_t c = 0; c < cols; c++) {
                float v = (float)(1000 * i + 100 * (int)r + (int)c);
                if (!strcmp(t[i].name, "rope_freqs.weight")) v = o->rope_freqs[c];
                uint32_t u;
                memcpy(&u, &v, 4);
                put_u32(&b, u);
            }
        while ((b.n - off->data_start) % 32) put(&b, "", 1);
    }
    return b;
}

static opc_status open_model(const buf *b, const char *name, opc_model_desc **d) {
    char path[1024];
    if (harness_write_temp(path, sizeof path, name, b->p, b->n) != 0) return OPC_ERR_IO;
    return opc_model_desc_open(path, d);
}

/* ------------------------------------------------------- model loading -- */

static void test_tiny_llama(void) {
    model_opts o = {0};
    buf b = build_model(&o, NULL);
    opc_model_desc *d = NULL;
    opc_status st = open_model(&b, "gguf_tiny_llama.gguf", &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    free(b.p);
    if (st) return;
    const opc_config *c = &d->cfg;
    CHECK_EQ_INT(d->format, OPC_SRC_GGUF);
    CHECK_STR(d->name, "tiny");
    CHECK_EQ_INT(c->arch, OPC_ARCH_LLAMA);
    CHECK_EQ_INT(c->dim, DIM);
    CHECK_EQ_INT(c->hidden_dim, HID);
    CHECK_EQ_INT(c->n_layers, 1);
    CHECK_EQ_INT(c->n_heads, NH);
    CHECK_EQ_INT(c->n_kv_heads, NKV);
    CHECK_EQ_INT(c->head_dim, HD);
    CHECK_EQ_INT(c->vocab_size, VOCAB);
    CHECK_EQ_INT(c->max_seq_len, 64);
    CHECK(c->rms_eps == 1e-5f);
    CHECK(c->rope_theta == 500000.0f);
    CHECK_EQ_INT(c->rope_scaling, OPC_ROPE_SCALING_NONE);
    CHECK_EQ_INT(c->tied_embeddings, 0);
    CHECK_EQ_INT(c->attn_bias, 0);
    /* vocab */
    const opc_vocab *v = &d->vocab;
    CHECK_EQ_INT(v->kind, OPC_VOCAB_BPE_BYTELEVEL);
    CHECK_EQ_INT(v->n_tokens, VOCAB);
    CHECK(v->tokens && !strcmp(v->tokens[3], "ab") && v->token_len[3] == 2);
    CHECK(v->n_merges == 1 && !strcmp(v->merges[0], "a b"));
    CHECK(v->scores && v->scores[2] == -3.0f);
    CHECK(v->types && v->types[4] == 3);
    CHECK_STR(v->pre, "smollm");
    CHECK_EQ_INT(v->bos_id, 4);
    CHECK_EQ_INT(v->eos_id, 5);
    CHECK_EQ_INT(v->unk_id, -1);
    CHECK_EQ_INT(v->add_bos, 1);
    CHECK_EQ_INT(v->add_space_prefix, 0);
    CHECK(v->chat_template && contains(v->chat_template, "im_start"));
    /* shapes are outermost first */
    const opc_tensor *t = opc_model_desc_find(d, "blk.0.ffn_down.weight");
    CHECK(t && t->n_dims == 2 && t->shape[0] == DIM && t->shape[1] == HID && t->type == OPC_TYPE_F32);
    t = opc_model_desc_find(d, "token_embd.weight");
    CHECK(t && t->shape[0] == VOCAB && t->shape[1] == DIM && t->nbytes == VOCAB * DIM * 4);
    /* attn_q (tensor index 4): rotate-half row h*4 + j*2 + i comes from
     * interleaved row h*4 + 2i + j; value (r, c) was 4000 + 100 r + c */
    t = opc_model_desc_find(d, "blk.0.attn_q.weight");
    CHECK(t && t->owned != NULL);
    if (t) {
        const float *w = t->data;
        static const int src_of[8] = {0, 2, 1, 3, 4, 6, 5, 7};
        int ok = 1;
        for (int r = 0; r < 8; r++)
            for (int cc = 0; cc < DIM; cc++) ok &= w[r * DIM + cc] == (float)(4000 + 100 * src_of[r] + cc);
        CHECK(ok);
    }
    /* attn_k (index 5): one kv head */
    t = opc_model_desc_find(d, "blk.0.attn_k.weight");
    if (t) {
        const float *w = t->data;
        CHECK(w[1 * DIM] == 5000.0f + 100 * 2 && w[2 * DIM] == 5000.0f + 100 * 1);
    }
    /* attn_v is untouched and still a view into the mapping */
    t = opc_model_desc_find(d, "blk.0.attn_v.weight");
    CHECK(t && t->owned == NULL && ((const float *)t->data)[DIM] == 6100.0f);
    opc_model_desc_free(d);
}

static void test_tiny_variants(void) {
    /* qwen2 with biases, tied embeddings, SPM tokenizer: no un-permutation
     * for qwen2 */
    model_opts o = {.arch = "qwen2", .bias = 1, .tied = 1, .tok_model = "llama"};
    buf b = build_model(&o, NULL);
    opc_model_desc *d = NULL;
    opc_status st = open_model(&b, "gguf_tiny_qwen2.gguf", &d);
    free(b.p);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!st) {
        CHECK_EQ_INT(d->cfg.arch, OPC_ARCH_QWEN2);
        CHECK_EQ_INT(d->cfg.attn_bias, 1);
        CHECK_EQ_INT(d->cfg.tied_embeddings, 1);
        CHECK_EQ_INT(d->vocab.kind, OPC_VOCAB_SPM);
        CHECK_EQ_INT(d->vocab.n_merges, 0);
        CHECK_EQ_INT(d->vocab.add_space_prefix, 1);
        CHECK(opc_model_desc_find(d, "output.weight") == NULL);
        const opc_tensor *t = opc_model_desc_find(d, "blk.0.attn_q.weight");
        CHECK(t && t->owned == NULL && ((const float *)t->data)[DIM] == (float)(1000 * 3 + 100));
        t = opc_model_desc_find(d, "blk.0.attn_q.bias");
        CHECK(t && t->n_dims == 1 && t->shape[0] == NH * HD);
        opc_model_desc_free(d);
    }
    /* Llama 3 rope scaling arrives as a rope_freqs.weight divisor tensor.
     * Expected divisors from the published llama3 rule (factor 8, low 1,
     * high 4, original context 8192) for head_dim 4, theta 500000:
     * i = 0: wavelength 2*pi < 8192/4 -> 1; i = 1: wavelength
     * 2*pi*sqrt(500000) = 4442.9 lies between 2048 and 8192 -> smooth =
     * (8192/4442.9 - 1)/3 = 0.28128, divisor 1/((1-smooth)/8 + smooth) = 2.6945. */
    {
        const double wl = 2.0 * 3.14159265358979323846 * sqrt(500000.0);
        const double smooth = (8192.0 / wl - 1.0) / 3.0;
        const float freqs[2] = {1.0f, (float)(1.0 / ((1.0 - smooth) / 8.0 + smooth))};
        CHECK(freqs[1] > 2.69f && freqs[1] < 2.70f);
        model_opts r = {.rope_freqs = freqs};
        b = build_model(&r, NULL);
        st = open_model(&b, "gguf_tiny_rope3.gguf", &d);
        free(b.p);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (!st) {
            CHECK_EQ_INT(d->cfg.rope_scaling, OPC_ROPE_SCALING_LLAMA3);
            CHECK(fabsf(d->cfg.rope_factor - 8.0f) < 1e-4f && d->cfg.rope_low_freq_factor == 1.0f &&
                  d->cfg.rope_high_freq_factor == 4.0f && d->cfg.rope_orig_max_pos == 8192);
            opc_model_desc_free(d);
        }
        const float other[2] = {1.5f, freqs[1]}; /* high frequencies must stay unscaled */
        r.rope_freqs = other;
        b = build_model(&r, NULL);
        st = open_model(&b, "gguf_tiny_rope3.gguf", &d);
        free(b.p);
        CHECK_EQ_INT(st, OPC_ERR_UNSUPPORTED);
        CHECK(contains(opc_last_error(), "rope_freqs.weight"));
        const float ones[2] = {1.0f, 1.0f}; /* no scaling at all */
        r.rope_freqs = ones;
        b = build_model(&r, NULL);
        st = open_model(&b, "gguf_tiny_rope3.gguf", &d);
        free(b.p);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        if (!st) CHECK_EQ_INT(d->cfg.rope_scaling, OPC_ROPE_SCALING_NONE);
        opc_model_desc_free(st ? NULL : d);
    }
    /* mistral arch and linear rope scaling */
    model_opts m = {.arch = "mistral", .rope_scaling = "linear"};
    b = build_model(&m, NULL);
    st = open_model(&b, "gguf_tiny_mistral.gguf", &d);
    free(b.p);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!st) {
        CHECK_EQ_INT(d->cfg.arch, OPC_ARCH_MISTRAL);
        CHECK_EQ_INT(d->cfg.rope_scaling, OPC_ROPE_SCALING_LINEAR);
        CHECK(d->cfg.rope_factor == 4.0f);
        opc_model_desc_free(d);
    }
}

typedef struct {
    const char *case_name;
    model_opts o;
    opc_status want;
    const char *msg1, *msg2;
} model_case;

static void test_model_errors(void) {
    static const model_case cases[] = {
        {"unknown arch", {.arch = "gptneox"}, OPC_ERR_UNSUPPORTED, "gptneox", "general.architecture"},
        {"missing tensor", {.drop = "blk.0.ffn_up.weight"}, OPC_ERR_NOT_FOUND, "blk.0.ffn_up.weight", "missing"},
        {"missing norm", {.drop = "output_norm.weight"}, OPC_ERR_NOT_FOUND, "output_norm.weight", ".gguf"},
        {"bad shape", {.q_rows_bad = 1}, OPC_ERR_CORRUPT, "blk.0.attn_q.weight", "shape"},
        {"bias missing", {.arch = "qwen2", .bias = 1, .drop = "blk.0.attn_v.bias"}, OPC_ERR_NOT_FOUND,
         "blk.0.attn_v.bias", ".gguf"},
        {"tokenizer", {.tok_model = "bert"}, OPC_ERR_UNSUPPORTED, "bert", "tokenizer.ggml.model"},
        {"rope scaling", {.rope_scaling = "yarn"}, OPC_ERR_UNSUPPORTED, "yarn", "rope.scaling.type"},
        {"v1", {.version = 1}, OPC_ERR_UNSUPPORTED, "v1", "version"},
        {"q2_k type", {.first_type = 10}, OPC_ERR_CORRUPT, "token_embd.weight", "Q2_K"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const model_case *mc = &cases[i];
        buf b = build_model(&mc->o, NULL);
        opc_model_desc *d = NULL;
        opc_status st = open_model(&b, "gguf_tiny_bad.gguf", &d);
        free(b.p);
        const char *e = opc_last_error();
        CHECK_MSG(st == mc->want, "%s: status %s, want %s (%s)", mc->case_name, opc_status_str(st),
                  opc_status_str(mc->want), e);
        CHECK_MSG(contains(e, mc->msg1) && contains(e, mc->msg2), "%s: message \"%s\" lacks %s/%s",
                  mc->case_name, e, mc->msg1, mc->msg2);
        CHECK(d == NULL);
        opc_model_desc_free(d);
    }
}

/* A q2_k tensor with a valid size is readable by the GGUF layer (sizes are
 * known for every ggml type) and refused by the model loader as UNSUPPORTED. */
static void test_unsupported_ggml_type(void) {
    model_opts o = {0};
    model_offsets off;
    buf b = build_model(&o, &off);
    /* token_embd: 6 rows of 8 f32 = 192 bytes; as q2_k that would need ne0 = 256:
     * make it a 1-D tensor of 256 elements: 84 bytes, fits in the 192 */
    b.p[off.ti0_ndims] = 1;
    /* shift: drop ne[1] by rebuilding is complex; instead set ne0 = 256, ne1 = 1 */
    uint64_t v = 256;
    memcpy(b.p + off.ti0_ne0, &v, 8);
    b.p[off.ti0_ndims] = 2;
    v = 1;
    memcpy(b.p + off.ti0_ne0 + 8, &v, 8);
    b.p[off.ti0_type] = 10;
    opc_gguf *g = NULL;
    opc_status st = opc_gguf_open_memory(b.p, b.n, "q2k.gguf", &g);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!st) {
        opc_gguf_tensor_info ti;
        CHECK(opc_gguf_tensor_at(g, 0, &ti) == OPC_OK && ti.type == OPC_TYPE_COUNT && ti.ggml_type == 10 &&
              ti.nbytes == 84);
    }
    opc_gguf_close(g);
    opc_model_desc *d = NULL;
    st = open_model(&b, "gguf_q2k.gguf", &d);
    CHECK_EQ_INT(st, OPC_ERR_UNSUPPORTED);
    CHECK(contains(opc_last_error(), "Q2_K") && contains(opc_last_error(), "token_embd.weight"));
    opc_model_desc_free(d);
    free(b.p);
}

/* ---------------------------------------------------------- corruption -- */

static opc_status open_mem(const uint8_t *p, size_t n) {
    /* an exactly-sized copy, so a sanitizer build catches any over-read */
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, p, n);
    opc_gguf *g = NULL;
    opc_status st = opc_gguf_open_memory(copy, n, "corrupt.gguf", &g);
    if (st == OPC_OK) {
        /* walk everything the handle offers */
        for (int64_t i = 0; i < opc_gguf_n_tensors(g); i++) {
            opc_gguf_tensor_info ti;
            if (opc_gguf_tensor_at(g, i, &ti) == OPC_OK && ti.nbytes)
                (void)((volatile const uint8_t *)ti.data)[ti.nbytes - 1];
        }
    }
    opc_gguf_close(g);
    free(copy);
    return st;
}

static void test_truncation(void) {
    model_opts o = {0};
    buf b = build_model(&o, NULL);
    CHECK_EQ_INT(open_mem(b.p, b.n), OPC_OK);
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        opc_status st = open_mem(b.p, n);
        if (st != OPC_ERR_CORRUPT && bad++ < 5)
            fprintf(stderr, "  truncated at %zu: %s (%s)\n", n, opc_status_str(st), opc_last_error());
    }
    CHECK_MSG(bad == 0, "%d truncations were not reported as CORRUPT", bad);
    /* and through the file path */
    char path[1024];
    harness_write_temp(path, sizeof path, "gguf_trunc.gguf", b.p, b.n / 2);
    opc_gguf *g = NULL;
    CHECK_EQ_INT(opc_gguf_open(path, &g), OPC_ERR_CORRUPT);
    CHECK(contains(opc_last_error(), path));
    CHECK(g == NULL);
    CHECK_EQ_INT(opc_gguf_open("/nonexistent/x.gguf", &g), OPC_ERR_IO);
    free(b.p);
}

static void patch64(buf *b, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}
static void patch32(buf *b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void expect(const char *what, const buf *b, opc_status want, const char *m1, const char *m2) {
    opc_status st = open_mem(b->p, b->n);
    const char *e = opc_last_error();
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", what, opc_status_str(st), opc_status_str(want), e);
    CHECK_MSG(contains(e, "corrupt.gguf") && contains(e, m1) && (!m2 || contains(e, m2)),
              "%s: message \"%s\" lacks %s/%s", what, e, m1, m2 ? m2 : "");
}

static void test_corrupt_fields(void) {
    model_opts o = {0};
    model_offsets off;
    buf base = build_model(&o, &off), b = {0};
#define FRESH() (free(b.p), b.p = malloc(base.n), memcpy(b.p, base.p, base.n), b.n = base.n, b.cap = base.n)
    FRESH();
    memcpy(b.p, "GGUX", 4);
    expect("magic", &b, OPC_ERR_CORRUPT, "magic", NULL);
    FRESH();
    patch32(&b, off.version, 1);
    expect("v1", &b, OPC_ERR_UNSUPPORTED, "version", "v1");
    FRESH();
    patch32(&b, off.version, 4);
    expect("v4", &b, OPC_ERR_UNSUPPORTED, "version", "4");
    FRESH();
    patch32(&b, off.version, 0x03000000u);
    expect("big-endian", &b, OPC_ERR_UNSUPPORTED, "version", "big-endian");
    FRESH();
    patch64(&b, off.n_tensors, 1ull << 40);
    expect("huge n_tensors", &b, OPC_ERR_CORRUPT, "n_tensors", NULL);
    FRESH();
    patch64(&b, off.n_kv, UINT64_MAX);
    expect("huge n_kv", &b, OPC_ERR_CORRUPT, "n_kv", NULL);
    FRESH();
    patch64(&b, off.n_kv, 200); /* plausible count, but the entries run into tensor infos */
    {
        opc_status st = open_mem(b.p, b.n);
        CHECK_MSG(st == OPC_ERR_CORRUPT, "n_kv too big: %s", opc_status_str(st));
    }
    FRESH();
    patch64(&b, off.name_len, 1ull << 62);
    expect("string length", &b, OPC_ERR_CORRUPT, "general.name", "string length");
    FRESH();
    patch64(&b, off.name_len, b.n); /* fits in u64 math, still past EOF */
    expect("string length 2", &b, OPC_ERR_CORRUPT, "general.name", "past the end");
    FRESH();
    patch32(&b, off.name_len - 4, 13); /* value type of general.name */
    expect("value type", &b, OPC_ERR_CORRUPT, "general.name", "unknown value type");
    FRESH();
    patch32(&b, off.ti0_ndims, 5);
    expect("n_dims", &b, OPC_ERR_CORRUPT, "token_embd.weight", "n_dims");
    FRESH();
    patch32(&b, off.ti0_ndims, 0);
    expect("n_dims 0", &b, OPC_ERR_CORRUPT, "token_embd.weight", "n_dims");
    FRESH();
    patch64(&b, off.ti0_ne0, 1ull << 62); /* times ne1 = 6 overflows */
    expect("ne overflow", &b, OPC_ERR_CORRUPT, "token_embd.weight", "overflow");
    FRESH();
    patch64(&b, off.ti0_ne0, 1ull << 40); /* no overflow, but far past the file */
    expect("ne too big", &b, OPC_ERR_CORRUPT, "token_embd.weight", "outside the file");
    FRESH();
    patch64(&b, off.ti0_ne0 + 8, UINT64_MAX);
    expect("ne > INT64_MAX", &b, OPC_ERR_CORRUPT, "token_embd.weight", "ne[1]");
    FRESH();
    patch32(&b, off.ti0_type, 99);
    expect("ggml type", &b, OPC_ERR_UNSUPPORTED, "token_embd.weight", "unknown ggml type 99");
    FRESH();
    patch32(&b, off.ti0_type, 4); /* removed Q4_2 */
    expect("removed ggml type", &b, OPC_ERR_UNSUPPORTED, "token_embd.weight", "ggml type 4");
    FRESH();
    patch32(&b, off.ti0_type, 8); /* q8_0 with ne0 = 8: not whole blocks */
    expect("block size", &b, OPC_ERR_CORRUPT, "token_embd.weight", "block size");
    FRESH();
    patch64(&b, off.ti0_offset, 8);
    expect("misaligned", &b, OPC_ERR_CORRUPT, "token_embd.weight", "alignment");
    FRESH();
    patch64(&b, off.ti0_offset, 1ull << 20);
    expect("offset range", &b, OPC_ERR_CORRUPT, "token_embd.weight", "outside the file");
    FRESH();
    patch64(&b, off.ti0_offset, UINT64_MAX - 31);
    expect("offset overflow", &b, OPC_ERR_CORRUPT, "token_embd.weight", "outside the file");
    free(b.p);
    b.p = NULL;
    free(base.p);
#undef FRESH
}

/* Hand-built headers for the metadata cases the model builder cannot reach. */
static buf header(uint64_t n_tensors, uint64_t n_kv) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, n_tensors);
    put_u64(&b, n_kv);
    return b;
}

static void test_corrupt_metadata(void) {
    /* alignment: not a power of two, zero, wrong type */
    static const uint32_t bad_align[] = {48, 0, 3};
    for (size_t i = 0; i < 3; i++) {
        buf b = header(0, 1);
        kv_u32(&b, "general.alignment", bad_align[i]);
        expect("alignment", &b, OPC_ERR_CORRUPT, "general.alignment", "power of two");
        free(b.p);
    }
    {
        buf b = header(0, 1);
        kv_str(&b, "general.alignment", "32");
        expect("alignment type", &b, OPC_ERR_CORRUPT, "general.alignment", "type");
        free(b.p);
    }
    /* a valid file with no tensors and a valid alignment */
    {
        buf b = header(0, 1);
        kv_u32(&b, "general.alignment", 128);
        CHECK_EQ_INT(open_mem(b.p, b.n), OPC_OK);
        free(b.p);
    }
    /* unknown array element type */
    {
        buf b = header(0, 1);
        put_str(&b, "x.arr");
        put_u32(&b, OPC_GGUF_ARRAY);
        put_u32(&b, 42);
        put_u64(&b, 1);
        put_u32(&b, 0);
        expect("array elem type", &b, OPC_ERR_CORRUPT, "x.arr", "unknown array element type");
        free(b.p);
    }
    /* array count far beyond the file */
    {
        buf b = header(0, 1);
        put_str(&b, "x.arr");
        put_u32(&b, OPC_GGUF_ARRAY);
        put_u32(&b, OPC_GGUF_UINT64);
        put_u64(&b, 1ull << 61); /* * 8 overflows u64 */
        expect("array count", &b, OPC_ERR_CORRUPT, "x.arr", "array");
        free(b.p);
        b = header(0, 1);
        put_str(&b, "x.strs");
        put_u32(&b, OPC_GGUF_ARRAY);
        put_u32(&b, OPC_GGUF_STRING);
        put_u64(&b, 1000000);
        put_str(&b, "only one");
        expect("string array count", &b, OPC_ERR_CORRUPT, "x.strs", "count");
        free(b.p);
    }
    /* nested arrays: two levels fine, too deep refused */
    {
        buf b = header(0, 2);
        put_str(&b, "x.nest");
        put_u32(&b, OPC_GGUF_ARRAY);
        put_u32(&b, OPC_GGUF_ARRAY);
        put_u64(&b, 2);
        put_u32(&b, OPC_GGUF_STRING);
        put_u64(&b, 1);
        put_str(&b, "s");
        put_u32(&b, OPC_GGUF_UINT16);
        put_u64(&b, 2);
        put_u32(&b, 0x00020001);
        kv_u32(&b, "x.after", 7);
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        opc_gguf *g = NULL;
        opc_status st = opc_gguf_open_memory(copy, b.n, "nest.gguf", &g);
        CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
        int64_t v = 0;
        CHECK(g && opc_gguf_get_int(g, "x.after", &v) == OPC_OK && v == 7);
        opc_gguf_close(g);
        free(copy);
        free(b.p);

        b = header(0, 1);
        put_str(&b, "x.deep");
        put_u32(&b, OPC_GGUF_ARRAY);
        for (int i = 0; i < 20; i++) {
            put_u32(&b, OPC_GGUF_ARRAY);
            put_u64(&b, 1);
        }
        put_u32(&b, OPC_GGUF_UINT8);
        put_u64(&b, 0);
        expect("nesting", &b, OPC_ERR_CORRUPT, "x.deep", "nested");
        free(b.p);
    }
    /* duplicate key */
    {
        buf b = header(0, 2);
        kv_u32(&b, "x.k", 1);
        kv_u32(&b, "x.k", 2);
        expect("duplicate key", &b, OPC_ERR_CORRUPT, "x.k", "duplicate");
        free(b.p);
    }
    /* duplicate tensor name */
    {
        buf b = header(2, 0);
        for (int i = 0; i < 2; i++) {
            put_str(&b, "w");
            put_u32(&b, 1);
            put_u64(&b, 4);
            put_u32(&b, 0);
            put_u64(&b, 32 * (uint64_t)i);
        }
        while (b.n % 32) put(&b, "", 1);
        uint8_t zeros[64] = {0};
        put(&b, zeros, 64);
        expect("duplicate tensor", &b, OPC_ERR_CORRUPT, "'w'", "duplicate");
        free(b.p);
    }
    /* a bool value of 2 is still readable as true; a u64 beyond int64 is refused */
    {
        buf b = header(0, 1);
        put_str(&b, "x.big");
        put_u32(&b, OPC_GGUF_UINT64);
        put_u64(&b, UINT64_MAX);
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        opc_gguf *g = NULL;
        CHECK(opc_gguf_open_memory(copy, b.n, "big.gguf", &g) == OPC_OK);
        int64_t v;
        double f;
        CHECK(g && opc_gguf_get_int(g, "x.big", &v) == OPC_ERR_CORRUPT);
        CHECK(g && opc_gguf_get_float(g, "x.big", &f) == OPC_OK && f == 18446744073709551615.0);
        opc_gguf_close(g);
        free(copy);
        free(b.p);
    }
    /* a header shorter than 24 bytes */
    {
        buf b = header(0, 0);
        expect("short header", &(buf){b.p, 20, 20}, OPC_ERR_CORRUPT, "n_kv", "truncated");
        CHECK_EQ_INT(open_mem(b.p, b.n), OPC_OK);
        free(b.p);
    }
}

/* Flip single bytes of a valid file: never a crash, never a non-error
 * status other than OK/CORRUPT/UNSUPPORTED (a sanitizer build checks the
 * memory side). */
static void test_byte_flips(void) {
    model_opts o = {0};
    buf b = build_model(&o, NULL);
    uint32_t seed = 12345;
    int weird = 0;
    for (int it = 0; it < 3000; it++) {
        seed = seed * 1664525u + 1013904223u;
        size_t at = (seed >> 8) % (b.n < 900 ? b.n : 900); /* the header region */
        uint8_t old = b.p[at];
        seed = seed * 1664525u + 1013904223u;
        b.p[at] = (uint8_t)(seed >> 24);
        opc_status st = open_mem(b.p, b.n);
        if (st != OPC_OK && st != OPC_ERR_CORRUPT && st != OPC_ERR_UNSUPPORTED) weird++;
        b.p[at] = old;
    }
    CHECK_EQ_INT(weird, 0);
    free(b.p);
}

/* ---------------------------------------------------------- SmolLM2 ----- */

static int meta_get(const char *text, const char *key, long long *v) {
    char pat[48];
    snprintf(pat, sizeof pat, "\n%s ", key);
    const char *p = strstr(text, pat);
    if (!p && !strncmp(text, pat + 1, strlen(pat + 1))) p = text - 1;
    if (!p) return 0;
    *v = strtoll(p + strlen(pat), NULL, 10);
    return 1;
}

/* "token 100 74" -> the hex-decoded bytes */
static int meta_hex(const char *text, const char *kind, int idx, char *out, size_t cap) {
    char pat[48];
    snprintf(pat, sizeof pat, "\n%s %d ", kind, idx);
    const char *p = strstr(text, pat);
    if (!p) return 0;
    p += strlen(pat);
    size_t n = 0;
    while (p[0] && p[1] && p[0] != '\n' && n + 1 < cap) {
        unsigned x;
        if (sscanf(p, "%2x", &x) != 1) return 0;
        out[n++] = (char)x;
        p += 2;
    }
    out[n] = '\0';
    return 1;
}

static void test_smollm2(void) {
    char path[1024], mpath[1024], rpath[1024];
    MODELS_PATH(path, SMOLLM2_GGUF);
    if (!opc_file_exists(path)) SKIP("%s not present (run scripts/setup.sh)", path);
    harness_path(mpath, sizeof mpath, "tests/golden/gguf_smollm2_meta.txt");
    harness_path(rpath, sizeof rpath, "tests/golden/gguf_smollm2_rows.bin");
    size_t mlen = 0, rlen = 0;
    char *meta = read_all(mpath, &mlen);
    float *rows = read_all(rpath, &rlen);
    CHECK(meta && rows && rlen == 9 * 576 * 4);
    if (!meta || !rows || rlen != 9 * 576 * 4) {
        free(meta);
        free(rows);
        return;
    }
    char *text = malloc(mlen + 2);
    text[0] = '\n';
    memcpy(text + 1, meta, mlen);
    text[mlen + 1] = '\0';
    free(meta);

    /* raw GGUF rows vs gguf-py */
    opc_gguf *g = NULL;
    opc_status st = opc_gguf_open(path, &g);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    static const int q_rows[5] = {0, 1, 2, 33, 575}, e_rows[4] = {0, 1, 2, 49151};
    float got[576];
    if (!st) {
        long long v;
        CHECK(meta_get(text, "n_tensors", &v) && v == opc_gguf_n_tensors(g));
        CHECK(meta_get(text, "n_kv", &v) && v == opc_gguf_n_kv(g));
        opc_gguf_tensor_info q, e;
        CHECK(opc_gguf_tensor_at(g, opc_gguf_find_tensor(g, "blk.0.attn_q.weight"), &q) == OPC_OK);
        CHECK(opc_gguf_tensor_at(g, opc_gguf_find_tensor(g, "token_embd.weight"), &e) == OPC_OK);
        CHECK(q.type == OPC_TYPE_Q4_1 && e.type == OPC_TYPE_Q8_0);
        uint64_t qrb = 576 / 32 * 20, erb = 576 / 32 * 34;
        for (int i = 0; i < 5; i++) {
            CHECK(opc_dequantize(q.type, (const uint8_t *)q.data + (uint64_t)q_rows[i] * qrb, got, 576) == OPC_OK);
            CHECK_EQ_INT(bits_diff(got, rows + i * 576, 576, "attn_q row"), 0);
        }
        for (int i = 0; i < 4; i++) {
            CHECK(opc_dequantize(e.type, (const uint8_t *)e.data + (uint64_t)e_rows[i] * erb, got, 576) == OPC_OK);
            CHECK_EQ_INT(bits_diff(got, rows + (5 + i) * 576, 576, "token_embd row"), 0);
        }
        long long params = 0, bytes = 0;
        for (int64_t i = 0; i < opc_gguf_n_tensors(g); i++) {
            opc_gguf_tensor_info ti;
            opc_gguf_tensor_at(g, i, &ti);
            params += (long long)(ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3]);
            bytes += (long long)ti.nbytes;
        }
        CHECK(meta_get(text, "params", &v) && v == params);
        CHECK(meta_get(text, "tensor_bytes", &v) && v == bytes);
    }
    opc_gguf_close(g);

    /* the model description */
    opc_model_desc *d = NULL;
    st = opc_model_desc_open(path, &d);
    CHECK_MSG(st == OPC_OK, "%s", opc_last_error());
    if (!st) {
        const opc_config *c = &d->cfg;
        long long v;
        CHECK(meta_get(text, "dim", &v) && v == c->dim);
        CHECK(meta_get(text, "hidden_dim", &v) && v == c->hidden_dim);
        CHECK(meta_get(text, "n_layers", &v) && v == c->n_layers);
        CHECK(meta_get(text, "n_heads", &v) && v == c->n_heads);
        CHECK(meta_get(text, "n_kv_heads", &v) && v == c->n_kv_heads);
        CHECK(meta_get(text, "max_seq_len", &v) && v == c->max_seq_len);
        CHECK(meta_get(text, "n_tokens", &v) && v == d->vocab.n_tokens && v == c->vocab_size);
        CHECK(meta_get(text, "n_merges", &v) && v == d->vocab.n_merges);
        CHECK(meta_get(text, "bos", &v) && v == d->vocab.bos_id);
        CHECK(meta_get(text, "eos", &v) && v == d->vocab.eos_id);
        CHECK_EQ_INT(c->head_dim, 64);
        CHECK(c->rope_theta == 100000.0f);
        CHECK(c->rms_eps == 1e-5f);
        CHECK_EQ_INT(c->tied_embeddings, 1);
        CHECK_EQ_INT(c->attn_bias, 0);
        CHECK_EQ_INT(d->vocab.kind, OPC_VOCAB_BPE_BYTELEVEL);
        CHECK_STR(d->vocab.pre, "smollm");
        CHECK_EQ_INT(d->vocab.add_bos, 0);
        CHECK(d->vocab.chat_template && contains(d->vocab.chat_template, "<|im_start|>"));
        char hex[128];
        static const int tok_ids[5] = {0, 1, 100, 256, 49151};
        for (int i = 0; i < 5; i++) {
            CHECK(meta_hex(text, "token", tok_ids[i], hex, sizeof hex));
            CHECK_MSG(!strcmp(d->vocab.tokens[tok_ids[i]], hex) &&
                          d->vocab.token_len[tok_ids[i]] == strlen(hex),
                      "token %d: \"%s\" vs \"%s\"", tok_ids[i], d->vocab.tokens[tok_ids[i]], hex);
        }
        static const int merge_ids[3] = {0, 1, 48899};
        for (int i = 0; i < 3; i++) {
            CHECK(meta_hex(text, "merge", merge_ids[i], hex, sizeof hex));
            CHECK(!strcmp(d->vocab.merges[merge_ids[i]], hex));
        }
        /* un-permuted attn_q: GGUF row s = h*64 + 2i + j is our row h*64 + 32j + i */
        const opc_tensor *q = opc_model_desc_find(d, "blk.0.attn_q.weight");
        CHECK(q && q->shape[0] == 576 && q->shape[1] == 576 && q->owned);
        for (int k = 0; q && k < 5; k++) {
            int s = q_rows[k], h = s / 64, i = (s % 64) / 2, j = s % 2;
            int r = h * 64 + 32 * j + i;
            CHECK(opc_dequantize(q->type, (const uint8_t *)q->data + (uint64_t)r * 360, got, 576) == OPC_OK);
            CHECK_MSG(bits_diff(got, rows + k * 576, 576, "unpermuted attn_q") == 0, "gguf row %d -> row %d", s, r);
        }
        opc_model_desc_free(d);
    }
    free(text);
    free(rows);
}

int main(void) {
    RUN(test_golden_metadata);
    RUN(test_golden_dequant);
    RUN(test_dequant_handmade);
    RUN(test_tiny_llama);
    RUN(test_tiny_variants);
    RUN(test_model_errors);
    RUN(test_unsupported_ggml_type);
    RUN(test_truncation);
    RUN(test_corrupt_fields);
    RUN(test_corrupt_metadata);
    RUN(test_byte_flips);
    RUN(test_smollm2);
    return harness_finish();
}
