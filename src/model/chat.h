/*
 * chat.h — chat templates: recognise the family of a model's Jinja chat
 * template (vocab.chat_template) and render a conversation in that family's
 * format. We do not run Jinja: the common families have fixed shapes, and an
 * unknown template is refused with an error rather than silently ignored.
 *
 *   ChatML   <|im_start|>role\ncontent<|im_end|>\n        SmolLM2, Qwen2, ...
 *   Llama-3  <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
 *   Llama-2  <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]   (Mistral: no <<SYS>>)
 *   Zephyr   <|user|>\ncontent</s>\n<|assistant|>\n           TinyLlama-Chat, Zephyr
 */
#ifndef OPC_CHAT_H
#define OPC_CHAT_H

#include "../core/core.h"

typedef enum opc_chat_family {
    OPC_CHAT_UNKNOWN = 0,
    OPC_CHAT_CHATML,
    OPC_CHAT_LLAMA3,
    OPC_CHAT_LLAMA2, /* also Mistral's [INST] format */
    OPC_CHAT_ZEPHYR
} opc_chat_family;

const char *opc_chat_family_name(opc_chat_family f);

/* Errors: NOT_FOUND when tmpl is NULL/empty (the model has no template),
 * UNSUPPORTED (quoting the template's start) when no family matches. */
opc_status opc_chat_detect(const char *tmpl, opc_chat_family *out);

typedef struct opc_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} opc_chat_msg;

/* Render msgs[0..n) (+ the assistant header when add_generation_prompt) as
 * text containing the special-token strings; encode it with parse_special on
 * and add_bos off (the text carries BOS itself where the family wants it).
 * tmpl (may be NULL) is consulted for a default system prompt (SmolLM2's
 * template inserts one when the conversation has none).
 * *out is a heap string the caller frees. */
opc_status opc_chat_render(opc_chat_family fam, const char *tmpl, const opc_chat_msg *msgs, int n,
                           int add_generation_prompt, char **out);

/* The default system prompt a ChatML template inserts, or NULL (heap string). */
char *opc_chat_default_system(const char *tmpl);

/* Text of the token that ends an assistant turn: generation stops there
 * (besides the vocab's EOS). */
const char *opc_chat_end_of_turn(opc_chat_family f);

#endif /* OPC_CHAT_H */
