/*
 * cmd_info.c — `opacc1ty info MODEL [--layers]`: what a model file holds.
 *
 * Works on whatever opc_model_desc_open returns (GGUF, HF folder, llama2.c,
 * .bf2): config, tokenizer summary, sizes, and bits per weight overall and for
 * the 2-D weight matrices alone (the part quantization acts on); --layers adds
 * one line per tensor.
 */
#include "cli.h"

#include "../format/bf2.h"
#include "../format/gguf.h"
#include "../model/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *format_name(opc_source_format f) {
    switch (f) {
    case OPC_SRC_GGUF: return "gguf";
    case OPC_SRC_HF: return "hf (safetensors folder)";
    case OPC_SRC_LLAMA2C: return "llama2.c";
    case OPC_SRC_BF2: return "bf2";
    }
    return "unknown";
}

static const char *vocab_kind_name(opc_vocab_kind k) {
    switch (k) {
    case OPC_VOCAB_NONE: return "none";
    case OPC_VOCAB_BPE_BYTELEVEL: return "byte-level BPE";
    case OPC_VOCAB_SPM: return "SentencePiece-style BPE";
    }
    return "unknown";
}

static const char *rope_scaling_name(opc_rope_scaling s) {
    switch (s) {
    case OPC_ROPE_SCALING_NONE: return "none";
    case OPC_ROPE_SCALING_LINEAR: return "linear";
    case OPC_ROPE_SCALING_LLAMA3: return "llama3";
    }
    return "unknown";
}

/* Recognise a chat template by the markers its family uses. */
static const char *chat_family(const char *tpl) {
    if (!tpl) return "none";
    if (strstr(tpl, "<|im_start|>")) return "chatml";
    if (strstr(tpl, "<|start_header_id|>")) return "llama3";
    if (strstr(tpl, "<start_of_turn>")) return "gemma";
    if (strstr(tpl, "[INST]")) return "llama2/mistral";
    if (strstr(tpl, "<|user|>")) return "zephyr/phi3";
    return "unrecognised";
}

/* Bytes a tensor occupies: for codebook types everything .bf2 stores for it
 * (packed indices, fp16 codebooks, group scales, CSR outliers), so the bits
 * per weight below are all-in. */
static uint64_t tensor_bytes(const opc_tensor *t) {
    if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) return opc_bf2_cb_bytes(&t->cb);
    return t->nbytes;
}

static void print_shape(const opc_tensor *t, char *buf, size_t cap) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < t->n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? " x " : "", (long long)t->shape[i]);
}

static void print_token(const opc_vocab *v, const char *label, int32_t id) {
    if (id < 0 || id >= v->n_tokens || !v->tokens) {
        printf("  %-14s %s\n", label, id < 0 ? "none" : "(out of range)");
        return;
    }
    printf("  %-14s %d \"", label, id);
    /* print the token bytes with control characters escaped */
    for (uint32_t i = 0; i < v->token_len[id] && i < 64; i++) {
        unsigned char ch = (unsigned char)v->tokens[id][i];
        if (ch < 0x20 || ch == '"' || ch == '\\') printf("\\x%02x", ch);
        else putchar(ch);
    }
    printf("\"\n");
}

static void usage(FILE *f) {
    fprintf(f, "usage: opacc1ty info MODEL [--layers]\n"
               "  MODEL     a .gguf or .bf2 file, a llama2.c checkpoint, or a Hugging Face folder\n"
               "  --layers  also list every tensor: name, shape, type, bytes, bits per weight (all-in:\n"
               "            codebooks, group scales and outliers counted); for codebook tensors the\n"
               "            index width, k, outlier share, group scales (gscale) and rotation block (rot=B)\n");
}

int opc_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int layers = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--layers")) layers = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "opacc1ty info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "opacc1ty info: more than one MODEL given ('%s')\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }

    opc_model_desc *d;
    opc_status st = opc_model_desc_open(path, &d);
    if (st) return opc_cli_fail(st, path);
    const opc_config *c = &d->cfg;
    const opc_vocab *v = &d->vocab;

    printf("file:            %s\n", d->path);
    printf("format:          %s", format_name(d->format));
    /* the GGUF loader keeps its opc_gguf handle as format_state */
    if (d->format == OPC_SRC_GGUF && d->format_state)
        printf(" v%u", opc_gguf_version((const opc_gguf *)d->format_state));
    printf("\n");
    printf("name:            %s\n", d->name[0] ? d->name : "(none)");
    printf("arch:            %s\n", opc_arch_name(c->arch));
    printf("config:\n");
    printf("  dim            %d\n", c->dim);
    printf("  hidden_dim     %d\n", c->hidden_dim);
    printf("  n_layers       %d\n", c->n_layers);
    printf("  n_heads        %d\n", c->n_heads);
    printf("  n_kv_heads     %d\n", c->n_kv_heads);
    printf("  head_dim       %d\n", c->head_dim);
    printf("  vocab_size     %d\n", c->vocab_size);
    printf("  max_seq_len    %d\n", c->max_seq_len);
    printf("  rms_eps        %g\n", (double)c->rms_eps);
    printf("  rope_theta     %g\n", (double)c->rope_theta);
    printf("  rope_scaling   %s", rope_scaling_name(c->rope_scaling));
    if (c->rope_scaling == OPC_ROPE_SCALING_LINEAR) printf(" (factor %g)", (double)c->rope_factor);
    if (c->rope_scaling == OPC_ROPE_SCALING_LLAMA3)
        printf(" (factor %g, low %g, high %g, original context %d)", (double)c->rope_factor,
               (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor, c->rope_orig_max_pos);
    printf("\n");
    printf("  tied_embed     %s\n", c->tied_embeddings ? "yes" : "no");
    printf("  attn_bias      %s\n", c->attn_bias ? "yes" : "no");

    printf("tokenizer:\n");
    printf("  kind           %s\n", vocab_kind_name(v->kind));
    if (v->kind != OPC_VOCAB_NONE) {
        printf("  pre            %s\n", v->pre[0] ? v->pre : "(none)");
        printf("  n_tokens       %d\n", v->n_tokens);
        printf("  n_merges       %d\n", v->n_merges);
        print_token(v, "bos", v->bos_id);
        print_token(v, "eos", v->eos_id);
        printf("  add_bos        %s\n", v->add_bos ? "yes" : "no");
        printf("  chat_template  %s\n", chat_family(v->chat_template));
    }

    /* sizes */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        printf("file size:       %lld bytes (%.2f MiB)\n", (long long)sb.st_size,
               (double)sb.st_size / (1024.0 * 1024.0));
    } else {
        uint64_t mapped = 0;
        for (int32_t i = 0; i < d->n_maps; i++) mapped += d->maps[i].size;
        printf("mapped size:     %llu bytes (%.2f MiB)\n", (unsigned long long)mapped,
               (double)mapped / (1024.0 * 1024.0));
    }
    uint64_t params = 0, bytes = 0, params2 = 0, bytes2 = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        uint64_t ne = (uint64_t)opc_tensor_nelem(t), nb = tensor_bytes(t);
        params += ne;
        bytes += nb;
        if (t->n_dims == 2) {
            params2 += ne;
            bytes2 += nb;
        }
    }
    printf("tensors:         %d (", d->n_tensors);
    int first = 1;
    for (int ty = 0; ty < OPC_TYPE_COUNT; ty++) {
        int cnt = 0;
        for (int32_t i = 0; i < d->n_tensors; i++) cnt += (int)d->tensors[i].type == ty;
        const opc_type_traits *tr = opc_type_get((opc_type)ty);
        if (cnt && tr) printf("%s%d %s", first ? "" : ", ", cnt, tr->name), first = 0;
    }
    printf(")\n");
    /* codebook variants (FORMAT.md "Codebook variants"): how many tensors use them */
    int n_cb = 0, n_gs = 0, n_rot = 0, rot_min = 0, rot_max = 0;
    for (int32_t i = 0; i < d->n_tensors; i++) {
        const opc_tensor *t = &d->tensors[i];
        if (t->type != OPC_TYPE_CB2 && t->type != OPC_TYPE_CB4) continue;
        n_cb++;
        n_gs += t->cb.gscale != NULL;
        if (t->cb.rot_log2 > 0) {
            int r = t->cb.rot_log2;
            rot_min = n_rot && rot_min < r ? rot_min : r;
            rot_max = rot_max > r ? rot_max : r;
            n_rot++;
        }
    }
    if (n_cb) {
        printf("codebooks:       %d tensors, %d with group scales, %d rotated", n_cb, n_gs, n_rot);
        if (n_rot && rot_min == rot_max) printf(" (blocks of %lld)", (long long)1 << rot_min);
        else if (n_rot) printf(" (blocks of %lld..%lld)", (long long)1 << rot_min, (long long)1 << rot_max);
        printf("\n");
    }
    printf("params:          %llu (%.2f M)\n", (unsigned long long)params, (double)params / 1e6);
    printf("tensor bytes:    %llu (%.2f MiB)\n", (unsigned long long)bytes,
           (double)bytes / (1024.0 * 1024.0));
    printf("bits per weight: %.4f overall, %.4f for 2-D weights (%llu params)\n",
           params ? 8.0 * (double)bytes / (double)params : 0.0,
           params2 ? 8.0 * (double)bytes2 / (double)params2 : 0.0, (unsigned long long)params2);

    if (layers) {
        printf("\n%-36s %-18s %-6s %12s %8s  %s\n", "tensor", "shape", "type", "bytes", "bpw", "notes");
        for (int32_t i = 0; i < d->n_tensors; i++) {
            const opc_tensor *t = &d->tensors[i];
            const opc_type_traits *tr = opc_type_get(t->type);
            char shape[96];
            print_shape(t, shape, sizeof shape);
            uint64_t ne = (uint64_t)opc_tensor_nelem(t), nb = tensor_bytes(t);
            printf("%-36s %-18s %-6s %12llu %8.4f", t->name, shape, tr ? tr->name : "?",
                   (unsigned long long)nb, ne ? 8.0 * (double)nb / (double)ne : 0.0);
            if (t->type == OPC_TYPE_CB2 || t->type == OPC_TYPE_CB4) {
                const opc_cb_matrix *m = &t->cb;
                double ol = ne ? 100.0 * (double)m->n_outliers / (double)ne : 0.0;
                printf("  %d-bit k=%d outliers=%.3f%%", m->bits, m->k, ol);
                if (m->gscale) printf(" gscale");
                if (m->rot_log2 > 0) printf(" rot=%lld", (long long)1 << m->rot_log2);
                if (t->qerr >= 0.0f) printf(" qerr=%.4g", (double)t->qerr);
            }
            printf("\n");
        }
    }
    opc_model_desc_free(d);
    return 0;
}
