/*
 * cmd_tokenize.c — `opacc1ty tokenize MODEL (--text TEXT | --file F) [--ids]
 * [--no-bos] [--bos] [--special]`: encode text with a model's tokenizer, show
 * the ids and pieces, decode them back and say whether the round trip gave
 * the input again.
 *
 * MODEL is anything opc_model_desc_open reads (GGUF, HF folder, llama2.c
 * checkpoint, .bf2), or a tokenizer file on its own: tokenizer.json, or a
 * llama2.c tokenizer.bin / tok*.bin.
 */
#include "cli.h"

#include "../model/model.h"
#include "../tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty tokenize MODEL (--text TEXT | --file F) [--ids] [--no-bos | --bos] [--special]\n"
            "\n"
            "  MODEL        .gguf, .bf2, llama2.c .bin, Hugging Face folder, or a bare tokenizer:\n"
            "               tokenizer.json, llama2.c tokenizer.bin / tok*.bin\n"
            "  --text TEXT  the text to encode\n"
            "  --file F     encode the bytes of file F (no newline conversion)\n"
            "  --ids        print only the ids (one line) and the round-trip verdict\n"
            "               (the encode time goes to stderr)\n"
            "  --no-bos     never add BOS; --bos always add it (default: the model's setting)\n"
            "  --special    match special-token text such as <|im_start|> as the special token\n");
}

/* Length of a complete, valid UTF-8 multi-byte sequence at s, else 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    size_t len = s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (!len || len > n) return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return len;
}

/* Print bytes as a C-style quoted string: printable ASCII and complete UTF-8
 * characters as they are, anything else (a piece holding part of a character) as \xNN. */
static void print_quoted(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t u = c >= 0x80 ? utf8_seq((const unsigned char *)s + i, n - i) : 0;
        if (u) {
            fwrite(s + i, 1, u, stdout);
            i += u - 1;
        } else if (c >= 0x80) printf("\\x%02x", c);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c == '\r') printf("\\r");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
}

static const char *kind_name(opc_vocab_kind k) {
    return k == OPC_VOCAB_BPE_BYTELEVEL ? "byte-level BPE" : k == OPC_VOCAB_SPM ? "SentencePiece-style BPE" : "none";
}

int opc_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    int ids_only = 0, special = 0, add_bos = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--text") && i + 1 < argc) {
            text = argv[++i];
        } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(argv[i], "--ids")) {
            ids_only = 1;
        } else if (!strcmp(argv[i], "--no-bos")) {
            add_bos = 0;
        } else if (!strcmp(argv[i], "--bos")) {
            add_bos = 1;
        } else if (!strcmp(argv[i], "--special")) {
            special = 1;
        } else if (argv[i][0] != '-' && !model) {
            model = argv[i];
        } else {
            fprintf(stderr, "opacc1ty tokenize: unknown or incomplete option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model || (!text) == (!file)) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    opc_model_desc *d = NULL;
    opc_vocab json_vocab = {0};
    const opc_vocab *v = NULL;
    opc_tokenizer *t = NULL;
    char *buf = NULL, *back = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0, blen = 0;
    opc_status st;

    size_t ml = strlen(model);
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    json_vocab.bos_id = json_vocab.eos_id = json_vocab.unk_id = json_vocab.pad_id = -1;
    if (ml >= 5 && !strcmp(model + ml - 5, ".json")) {
        if ((st = opc_vocab_from_hf_json(model, &json_vocab))) {
            rc = opc_cli_fail(st, model);
            goto done;
        }
        v = &json_vocab;
    } else if (!strncmp(base, "tok", 3) && ml >= 4 && !strcmp(model + ml - 4, ".bin")) {
        /* a bare llama2.c tokenizer.bin / tok512.bin (its size says how many tokens) */
        if ((st = opc_vocab_from_llama2c(model, 0, &json_vocab))) {
            rc = opc_cli_fail(st, model);
            goto done;
        }
        v = &json_vocab;
    } else {
        if ((st = opc_model_desc_open(model, &d))) {
            rc = opc_cli_fail(st, model);
            goto done;
        }
        v = &d->vocab;
    }
    if ((st = opc_tokenizer_init(&t, v))) {
        rc = opc_cli_fail(st, "tokenizer");
        goto done;
    }
    if (file) {
        if ((st = opc_read_file(file, &buf, &len))) {
            rc = opc_cli_fail(st, file);
            goto done;
        }
        text = buf;
    } else {
        len = strlen(text);
    }

    opc_encode_opts o = {add_bos, special};
    double t0 = opc_time_s();
    if ((st = opc_tokenizer_encode_alloc(t, text, len, &o, &ids, &n))) {
        rc = opc_cli_fail(st, "encode");
        goto done;
    }
    double t1 = opc_time_s();
    /* skip_special only for BOS we added ourselves; specials from the text come back as text */
    int bos_added = n > 0 && ids[0] == opc_tokenizer_bos(t) && (add_bos == 1 || (add_bos < 0 && v->add_bos));
    if ((st = opc_tokenizer_decode(t, ids + bos_added, n - (size_t)bos_added, 0, &back, &blen))) {
        rc = opc_cli_fail(st, "decode");
        goto done;
    }

    if (ids_only) {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        fprintf(stderr, "encode: %zu bytes -> %zu tokens in %.3f ms\n", len, n, (t1 - t0) * 1e3);
    } else {
        printf("tokenizer: %s, %d tokens, pre-tokenizer %s, BOS %d, EOS %d\n", kind_name(v->kind),
               opc_tokenizer_n_vocab(t), v->pre[0] ? v->pre : "-", opc_tokenizer_bos(t), opc_tokenizer_eos(t));
        printf("input: %zu bytes -> %zu tokens (%.3f ms)\n", len, n, (t1 - t0) * 1e3);
        for (size_t i = 0; i < n; i++) {
            size_t tl = 0, bl = 0;
            const char *tt = opc_tokenizer_token_text(t, ids[i], &tl);
            const char *bb = opc_tokenizer_token_bytes(t, ids[i], &bl);
            printf("%6zu %7d  ", i, ids[i]);
            print_quoted(tt, tl);
            printf("  ->  ");
            print_quoted(bb, bl);
            if (opc_tokenizer_is_special(t, ids[i])) printf("  [control]");
            printf("\n");
        }
        printf("decoded: ");
        print_quoted(back, blen);
        printf("\n");
    }
    if (blen == len && memcmp(back, text, len) == 0) {
        printf("round trip: OK\n");
    } else {
        size_t k = 0;
        while (k < len && k < blen && back[k] == text[k]) k++;
        printf("round trip: MISMATCH at byte %zu (input %zu bytes, decoded %zu)\n", k, len, blen);
    }
    rc = 0;
done:
    free(ids);
    free(back);
    free(buf);
    opc_tokenizer_free(t);
    opc_vocab_free(&json_vocab);
    opc_model_desc_free(d);
    return rc;
}
