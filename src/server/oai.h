/*
 * oai.h — the OpenAI wire format: validate request bodies of /v1/completions
 * and /v1/chat/completions, and build response, stream-chunk and error JSON.
 *
 * No HTTP here and no model: http.c moves bytes, the engine makes tokens.
 * Every rejection carries the HTTP status, OpenAI's error "type", a "code",
 * the offending "param" and a message that names the field and the rule.
 */
#ifndef OPC_SERVER_OAI_H
#define OPC_SERVER_OAI_H

#include "engine.h"
#include "sched.h"

#include <stddef.h>
#include <stdint.h>

typedef enum opc_oai_kind { OPC_OAI_COMPLETION = 0, OPC_OAI_CHAT } opc_oai_kind;

typedef struct opc_oai_error {
    int http;          /* 400, 401, 404, 405, 413, 500, 503 */
    const char *type;  /* "invalid_request_error", "server_error", ... */
    const char *code;  /* "invalid_type", "context_length_exceeded", ... or NULL */
    char param[64];    /* offending field, "" when none */
    char message[512];
} opc_oai_error;

/* Fill *err; returns -1 so validators can `return oai_fail(...)`. */
int opc_oai_fail(opc_oai_error *err, int http, const char *type, const char *code,
                 const char *param, const char *fmt, ...) OPC_PRINTF(6, 7);

/* A validated request. Strings point into the parsed JSON (owned by the
 * request) or into owned copies; everything is freed by opc_oai_req_free. */
typedef struct opc_oai_req {
    opc_oai_kind kind;
    void *json;        /* cJSON root */
    const char *model; /* NULL when absent */

    /* completions: the prompt as text, or as token ids */
    const char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids; /* (n_prompt_ids) owned, or NULL */
    size_t n_prompt_ids;

    /* chat */
    opc_chat_msg *msgs; /* (n_msgs) owned array */
    size_t n_msgs;
    char **owned; /* (n_owned) strings built from content-part arrays */
    size_t n_owned;

    int has_max_tokens;
    int32_t max_tokens;
    float temperature;
    float top_p;
    int has_seed;
    uint64_t seed;
    const char *stop[OPC_SRV_MAX_STOP];
    int32_t n_stop;
    int stream;
    int include_usage; /* stream_options.include_usage */
} opc_oai_req;

/* Limits applied while parsing (beyond the JSON rules). */
#define OPC_OAI_MAX_MESSAGES 1024

/* Parse and validate a request body. n_ctx and n_vocab bound max_tokens and
 * token-id prompts. Returns 0, or -1 with *err filled (req left freeable). */
int opc_oai_parse(opc_oai_kind kind, const char *body, size_t len, int32_t n_ctx,
                  int32_t n_vocab, opc_oai_req *req, opc_oai_error *err);
void opc_oai_req_free(opc_oai_req *req); /* NULL-safe; leaves *req zeroed */

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points above U+10FFFF). *bad_at: offset of the first bad byte. */
int opc_utf8_valid(const char *s, size_t n, size_t *bad_at);

/* ------------------------------------------------------------ output ---- */
/* All builders return a heap string (free()) or NULL when out of memory. Text
 * from the model is sanitised (invalid UTF-8 -> U+FFFD) before encoding. */

char *opc_oai_error_json(const opc_oai_error *err);

typedef struct opc_oai_meta {
    opc_oai_kind kind;
    const char *id;    /* "cmpl-..." / "chatcmpl-..." */
    long long created; /* unix seconds */
    const char *model;
} opc_oai_meta;

/* Non-stream response body. */
char *opc_oai_response_json(const opc_oai_meta *m, const char *text, size_t len,
                            opc_finish finish, int32_t n_prompt, int32_t n_gen);

/* One SSE event "data: {...}\n\n" carrying a text delta (role_only: the first
 * chat chunk, {"role":"assistant","content":""}). */
char *opc_oai_chunk_sse(const opc_oai_meta *m, const char *text, size_t len, int role_only);
/* The last content event: empty delta with finish_reason. */
char *opc_oai_final_sse(const opc_oai_meta *m, opc_finish finish);
/* stream_options.include_usage: "choices": [] and the usage object. */
char *opc_oai_usage_sse(const opc_oai_meta *m, int32_t n_prompt, int32_t n_gen);
/* An error inside a stream: "data: {"error": {...}}\n\n". */
char *opc_oai_error_sse(const opc_oai_error *err);

#endif /* OPC_SERVER_OAI_H */
