/*
 * chat.c — chat-template families (see chat.h).
 */
#include "chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *opc_chat_family_name(opc_chat_family f) {
    switch (f) {
    case OPC_CHAT_CHATML: return "chatml";
    case OPC_CHAT_LLAMA3: return "llama3";
    case OPC_CHAT_LLAMA2: return "llama2";
    case OPC_CHAT_ZEPHYR: return "zephyr";
    case OPC_CHAT_UNKNOWN: break;
    }
    return "unknown";
}

opc_status opc_chat_detect(const char *tmpl, opc_chat_family *out) {
    *out = OPC_CHAT_UNKNOWN;
    if (!tmpl || !*tmpl)
        return opc_error(OPC_ERR_NOT_FOUND, "the model has no chat template (tokenizer.chat_template)");
    /* Marker tokens are specific to each family, so the order only matters
     * for templates that mention several (none of the common ones do). */
    if (strstr(tmpl, "<|im_start|>")) *out = OPC_CHAT_CHATML;
    else if (strstr(tmpl, "<|start_header_id|>")) *out = OPC_CHAT_LLAMA3;
    else if (strstr(tmpl, "<|user|>")) *out = OPC_CHAT_ZEPHYR;
    else if (strstr(tmpl, "[INST]")) *out = OPC_CHAT_LLAMA2;
    if (*out != OPC_CHAT_UNKNOWN) return OPC_OK;
    char head[81];
    size_t i = 0;
    for (; tmpl[i] && i < sizeof head - 1; i++) head[i] = (tmpl[i] == '\n' || tmpl[i] == '\r') ? ' ' : tmpl[i];
    head[i] = '\0';
    return opc_error(OPC_ERR_UNSUPPORTED,
                     "unknown chat template family (not ChatML, Llama-3, Llama-2/Mistral or "
                     "Zephyr): \"%s%s\"", head, tmpl[i] ? "..." : "");
}

const char *opc_chat_end_of_turn(opc_chat_family f) {
    switch (f) {
    case OPC_CHAT_CHATML: return "<|im_end|>";
    case OPC_CHAT_LLAMA3: return "<|eot_id|>";
    case OPC_CHAT_LLAMA2:
    case OPC_CHAT_ZEPHYR: return "</s>";
    case OPC_CHAT_UNKNOWN: break;
    }
    return NULL;
}

char *opc_chat_default_system(const char *tmpl) {
    /* SmolLM2 / Qwen2 templates contain a string literal
     *   '<|im_start|>system\n<default prompt><|im_end|>\n'
     * emitted when messages[0] is not a system message. Take the literal
     * text between the markers when it is plain text (no Jinja inside). */
    if (!tmpl) return NULL;
    static const char *const starts[] = {"<|im_start|>system\n", "<|im_start|>system\\n"};
    for (size_t s = 0; s < 2; s++) {
        const char *p = strstr(tmpl, starts[s]);
        if (!p) continue;
        p += strlen(starts[s]);
        const char *e = strstr(p, "<|im_end|>");
        if (!e || e == p) continue;
        size_t n = (size_t)(e - p);
        int plain = 1;
        for (size_t i = 0; i < n; i++)
            if (p[i] == '{' || p[i] == '}' || p[i] == '\'' || p[i] == '"' || p[i] == '+') plain = 0;
        if (!plain) continue;
        char *r = malloc(n + 1);
        if (!r) return NULL;
        memcpy(r, p, n);
        r[n] = '\0';
        return r;
    }
    return NULL;
}

/* Growing string buffer. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) OPC_PRINTF(2, 3);
static void sb_add(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + (size_t)n;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

opc_status opc_chat_render(opc_chat_family fam, const char *tmpl, const opc_chat_msg *msgs, int n,
                           int add_generation_prompt, char **out) {
    *out = NULL;
    if (n < 0 || (n > 0 && !msgs)) return opc_error(OPC_ERR_INVALID_ARG, "chat: bad message list");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return opc_error(OPC_ERR_INVALID_ARG, "chat: message %d has no role or content", i);
    sbuf b = {0};
    const int has_sys = n > 0 && !strcmp(msgs[0].role, "system");
    switch (fam) {
    case OPC_CHAT_CHATML: {
        char *def = has_sys ? NULL : opc_chat_default_system(tmpl);
        if (def) sb_add(&b, "<|im_start|>system\n%s<|im_end|>\n", def);
        free(def);
        for (int i = 0; i < n; i++)
            sb_add(&b, "<|im_start|>%s\n%s<|im_end|>\n", msgs[i].role, msgs[i].content);
        if (add_generation_prompt) sb_add(&b, "<|im_start|>assistant\n");
        break;
    }
    case OPC_CHAT_LLAMA3:
        sb_add(&b, "<|begin_of_text|>");
        for (int i = 0; i < n; i++)
            sb_add(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", msgs[i].role,
                   msgs[i].content);
        if (add_generation_prompt) sb_add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case OPC_CHAT_LLAMA2: {
        /* Llama-2 folds the system prompt into the first [INST] with <<SYS>>;
         * Mistral's template has no system slot, so it is prepended as text. */
        const int sys_tag = tmpl && strstr(tmpl, "<<SYS>>");
        const char *sys = has_sys ? msgs[0].content : NULL;
        int first_user = 1;
        for (int i = has_sys; i < n; i++) {
            if (!strcmp(msgs[i].role, "user")) {
                sb_add(&b, "<s>[INST] ");
                if (first_user && sys) {
                    if (sys_tag) sb_add(&b, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
                    else sb_add(&b, "%s\n\n", sys);
                }
                sb_add(&b, "%s [/INST]", msgs[i].content);
                first_user = 0;
            } else {
                sb_add(&b, " %s </s>", msgs[i].content);
            }
        }
        break;
    }
    case OPC_CHAT_ZEPHYR:
        for (int i = 0; i < n; i++) sb_add(&b, "<|%s|>\n%s</s>\n", msgs[i].role, msgs[i].content);
        if (add_generation_prompt) sb_add(&b, "<|assistant|>\n");
        break;
    case OPC_CHAT_UNKNOWN:
    default:
        free(b.p);
        return opc_error(OPC_ERR_UNSUPPORTED, "chat: unknown template family");
    }
    if (b.oom) {
        free(b.p);
        return opc_error(OPC_ERR_NOMEM, "chat: cannot allocate the rendered prompt");
    }
    if (!b.p) {
        b.p = calloc(1, 1);
        if (!b.p) return opc_error(OPC_ERR_NOMEM, "chat: cannot allocate the rendered prompt");
    }
    *out = b.p;
    return OPC_OK;
}
