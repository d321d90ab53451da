/*
 * oai.c — OpenAI request validation and response JSON (see oai.h).
 *
 * Parsing is strict about what we use and lenient about what we do not:
 * known fields must have the documented type and range (else 400 naming the
 * field), unknown fields are ignored (clients send many), and features we do
 * not implement (n > 1, logprobs, echo, penalties, tools) are refused with a
 * 400 rather than silently ignored.
 */
#include "oai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_INVALID "invalid_request_error"

int opc_oai_fail(opc_oai_error *err, int http, const char *type, const char *code,
                 const char *param, const char *fmt, ...) {
    err->http = http;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ============================================================== UTF-8 ==== */

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if malformed
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

int opc_utf8_valid(const char *s, size_t n, size_t *bad_at) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (!l) {
            if (bad_at) *bad_at = i;
            return 0;
        }
        i += l;
    }
    return 1;
}

/* Copy s[0..n) with every malformed byte replaced by U+FFFD; NUL-terminated
 * heap string (the model may end a stream in the middle of a character). */
static char *utf8_sanitize(const char *s, size_t n) {
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (l) {
            memcpy(out + o, p + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

/* ============================================================= parsing ==== */

static int is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

static const char *type_name(const cJSON *v) {
    if (cJSON_IsBool(v)) return "boolean";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    return "null";
}

static int bad_type(opc_oai_error *err, const char *param, const char *want, const cJSON *v) {
    return opc_oai_fail(err, 400, T_INVALID, "invalid_type", param,
                        "'%s' must be %s, got %s", param, want, type_name(v));
}

/* An integer-valued JSON number within [lo, hi]. */
static int get_int(const cJSON *v, const char *param, double lo, double hi, int64_t *out,
                   opc_oai_error *err) {
    if (!cJSON_IsNumber(v)) return bad_type(err, param, "an integer", v);
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return opc_oai_fail(err, 400, T_INVALID, "invalid_type", param,
                            "'%s' must be an integer, got %g", param, d);
    if (d < lo || d > hi)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", param,
                            "'%s' must be between %.0f and %.0f, got %.0f", param, lo, hi, d);
    *out = (int64_t)d;
    return 0;
}

static int get_num(const cJSON *v, const char *param, double lo, double hi, double *out,
                   opc_oai_error *err) {
    if (!cJSON_IsNumber(v)) return bad_type(err, param, "a number", v);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", param,
                            "'%s' must be between %g and %g, got %g", param, lo, hi, d);
    *out = d;
    return 0;
}

static int get_bool(const cJSON *v, const char *param, int *out, opc_oai_error *err) {
    if (!cJSON_IsBool(v)) return bad_type(err, param, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int unsupported(opc_oai_error *err, const char *param, const char *what) {
    return opc_oai_fail(err, 400, T_INVALID, "unsupported_parameter", param,
                        "'%s' %s is not supported by this server", param, what);
}

static int parse_stop(const cJSON *v, opc_oai_req *r, opc_oai_error *err) {
    if (is_null(v)) return 0;
    if (cJSON_IsString(v)) {
        if (v->valuestring[0] == '\0') return 0; /* "" stops nothing, as in OpenAI */
        if (strlen(v->valuestring) > OPC_SRV_MAX_STOP_LEN)
            return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "stop",
                                "'stop' sequences are limited to %d bytes", OPC_SRV_MAX_STOP_LEN);
        r->stop[r->n_stop++] = v->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(v)) return bad_type(err, "stop", "a string or an array of strings", v);
    int n = cJSON_GetArraySize(v);
    if (n > OPC_SRV_MAX_STOP)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "stop",
                            "'stop' may hold at most %d sequences, got %d", OPC_SRV_MAX_STOP, n);
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsString(it)) return bad_type(err, "stop", "an array of strings", it);
        size_t l = strlen(it->valuestring);
        if (l == 0) continue;
        if (l > OPC_SRV_MAX_STOP_LEN)
            return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "stop",
                                "'stop' sequences are limited to %d bytes", OPC_SRV_MAX_STOP_LEN);
        r->stop[r->n_stop++] = it->valuestring;
    }
    return 0;
}

/* A token-id array prompt: every element an integer in [0, n_vocab). */
static int parse_id_array(const cJSON *a, int32_t n_ctx, int32_t n_vocab, opc_oai_req *r,
                          opc_oai_error *err) {
    int n = cJSON_GetArraySize(a);
    if (n == 0)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "prompt",
                            "'prompt' must not be an empty array");
    if (n >= n_ctx)
        return opc_oai_fail(err, 400, T_INVALID, "context_length_exceeded", "prompt",
                            "this model's context is %d tokens, the prompt has %d", n_ctx, n);
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids)
        return opc_oai_fail(err, 500, "server_error", NULL, "", "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        int64_t id;
        if (get_int(it, "prompt", 0, (double)n_vocab - 1, &id, err)) return -1;
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)id;
    }
    return 0;
}

static int parse_prompt(const cJSON *v, int32_t n_ctx, int32_t n_vocab, opc_oai_req *r,
                        opc_oai_error *err) {
    if (is_null(v))
        return opc_oai_fail(err, 400, T_INVALID, "missing_required_parameter", "prompt",
                            "'prompt' is required");
    if (cJSON_IsString(v)) {
        r->prompt = v->valuestring;
        r->prompt_len = strlen(v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v))
        return bad_type(err, "prompt", "a string, an array of strings or an array of token ids", v);
    const cJSON *first = v->child;
    if (first && cJSON_IsString(first)) {
        if (cJSON_GetArraySize(v) != 1)
            return opc_oai_fail(err, 400, T_INVALID, "unsupported_value", "prompt",
                                "only one prompt per request is supported (got %d)",
                                cJSON_GetArraySize(v));
        r->prompt = first->valuestring;
        r->prompt_len = strlen(first->valuestring);
        return 0;
    }
    if (first && cJSON_IsArray(first)) {
        if (cJSON_GetArraySize(v) != 1)
            return opc_oai_fail(err, 400, T_INVALID, "unsupported_value", "prompt",
                                "only one prompt per request is supported (got %d)",
                                cJSON_GetArraySize(v));
        return parse_id_array(first, n_ctx, n_vocab, r, err);
    }
    return parse_id_array(v, n_ctx, n_vocab, r, err);
}

/* content: a string, or an array of {"type":"text","text":...} parts (joined). */
static int parse_content(const cJSON *c, size_t i, opc_oai_req *r, opc_oai_error *err,
                         const char **out) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (is_null(c)) {
        *out = "";
        return 0;
    }
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return 0;
    }
    if (!cJSON_IsArray(c)) return bad_type(err, param, "a string or an array of content parts", c);
    size_t total = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(ty))
            return bad_type(err, param, "an array of {\"type\", ...} objects", p);
        if (strcmp(ty->valuestring, "text") != 0)
            return opc_oai_fail(err, 400, T_INVALID, "unsupported_value", param,
                                "content part type '%.40s' is not supported (text only)",
                                ty->valuestring);
        if (!cJSON_IsString(tx)) return bad_type(err, param, "text parts with a string 'text'", tx);
        total += strlen(tx->valuestring);
    }
    char *s = malloc(total + 1);
    char **o = realloc(r->owned, (r->n_owned + 1) * sizeof *r->owned);
    if (o) r->owned = o;
    if (!s || !o) {
        free(s);
        return opc_oai_fail(err, 500, "server_error", NULL, "", "out of memory");
    }
    r->owned[r->n_owned++] = s;
    size_t at = 0;
    cJSON_ArrayForEach(p, c) {
        const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
        size_t l = strlen(t);
        memcpy(s + at, t, l);
        at += l;
    }
    s[at] = '\0';
    *out = s;
    return 0;
}

static int parse_messages(const cJSON *v, opc_oai_req *r, opc_oai_error *err) {
    if (is_null(v))
        return opc_oai_fail(err, 400, T_INVALID, "missing_required_parameter", "messages",
                            "'messages' is required");
    if (!cJSON_IsArray(v)) return bad_type(err, "messages", "an array", v);
    int n = cJSON_GetArraySize(v);
    if (n == 0)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "messages",
                            "'messages' must contain at least one message");
    if (n > OPC_OAI_MAX_MESSAGES)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "messages",
                            "'messages' is limited to %d entries", OPC_OAI_MAX_MESSAGES);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return opc_oai_fail(err, 500, "server_error", NULL, "", "out of memory");
    const cJSON *m;
    size_t i = 0;
    cJSON_ArrayForEach(m, v) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!cJSON_IsObject(m)) return bad_type(err, param, "an object", m);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!cJSON_IsString(role)) return bad_type(err, param, "a string", role);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system"; /* OpenAI's newer name for system */
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return opc_oai_fail(err, 400, T_INVALID, "invalid_value", param,
                                "role must be 'system', 'user' or 'assistant', got '%.40s'", rs);
        r->msgs[i].role = rs;
        if (parse_content(cJSON_GetObjectItemCaseSensitive(m, "content"), i, r, err,
                          &r->msgs[i].content))
            return -1;
        i++;
    }
    r->n_msgs = i;
    return 0;
}

int opc_oai_parse(opc_oai_kind kind, const char *body, size_t len, int32_t n_ctx,
                  int32_t n_vocab, opc_oai_req *r, opc_oai_error *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->temperature = 1.0f; /* OpenAI's defaults */
    r->top_p = 1.0f;
    size_t bad;
    if (len == 0)
        return opc_oai_fail(err, 400, T_INVALID, "invalid_json", "",
                            "the request body is empty; expected a JSON object");
    if (!opc_utf8_valid(body, len, &bad))
        return opc_oai_fail(err, 400, T_INVALID, "invalid_utf8", "",
                            "the request body is not valid UTF-8 (byte %zu)", bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        return opc_oai_fail(err, 400, T_INVALID, "invalid_json", "",
                            "the request body is not valid JSON (near byte %zu)", at);
    }
    r->json = root;
    for (const char *p = end; p && p < body + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '\0')
            return opc_oai_fail(err, 400, T_INVALID, "invalid_json", "",
                                "unexpected data after the JSON object (byte %zu)",
                                (size_t)(p - body));
    if (!cJSON_IsObject(root)) return bad_type(err, "body", "a JSON object", root);

    const cJSON *v;
    v = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!is_null(v)) {
        if (!cJSON_IsString(v)) return bad_type(err, "model", "a string", v);
        r->model = v->valuestring;
    }
    if (kind == OPC_OAI_COMPLETION) {
        if (parse_prompt(cJSON_GetObjectItemCaseSensitive(root, "prompt"), n_ctx, n_vocab, r, err))
            return -1;
    } else {
        if (parse_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"), r, err)) return -1;
    }

    int64_t iv;
    double dv;
    const char *mt = "max_tokens";
    v = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (is_null(v) && kind == OPC_OAI_CHAT) {
        v = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
        mt = "max_completion_tokens";
    }
    if (!is_null(v)) {
        if (get_int(v, mt, 1, (double)n_ctx, &iv, err)) return -1;
        r->has_max_tokens = 1;
        r->max_tokens = (int32_t)iv;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "temperature");
    if (!is_null(v)) {
        if (get_num(v, "temperature", 0, 2, &dv, err)) return -1;
        r->temperature = (float)dv;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "top_p");
    if (!is_null(v)) {
        if (get_num(v, "top_p", 0, 1, &dv, err)) return -1;
        r->top_p = (float)dv;
        if (dv == 0) r->temperature = 0; /* an empty nucleus means "the most likely token" */
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (!is_null(v)) {
        /* 2^63 bounds keep the double->int64 conversion defined */
        if (get_int(v, "seed", -9223372036854775808.0, 9223372036854774784.0, &iv, err)) return -1;
        r->has_seed = 1;
        r->seed = (uint64_t)iv;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "n");
    if (!is_null(v)) {
        if (get_int(v, "n", 1, 128, &iv, err)) return -1;
        if (iv != 1)
            return opc_oai_fail(err, 400, T_INVALID, "unsupported_value", "n",
                                "only n=1 is supported, got %lld", (long long)iv);
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "best_of");
    if (!is_null(v)) {
        if (get_int(v, "best_of", 1, 128, &iv, err)) return -1;
        if (iv != 1) return unsupported(err, "best_of", "other than 1");
    }
    if (parse_stop(cJSON_GetObjectItemCaseSensitive(root, "stop"), r, err)) return -1;
    v = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (!is_null(v) && get_bool(v, "stream", &r->stream, err)) return -1;
    v = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (!is_null(v)) {
        if (!cJSON_IsObject(v)) return bad_type(err, "stream_options", "an object", v);
        if (!r->stream)
            return opc_oai_fail(err, 400, T_INVALID, "invalid_value", "stream_options",
                                "'stream_options' is only allowed when 'stream' is true");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (!is_null(u) && get_bool(u, "stream_options.include_usage", &r->include_usage, err))
            return -1;
    }

    /* Accepted only at their neutral values: we do not implement them. */
    static const char *const zero_nums[] = {"presence_penalty", "frequency_penalty"};
    for (size_t k = 0; k < sizeof zero_nums / sizeof zero_nums[0]; k++) {
        v = cJSON_GetObjectItemCaseSensitive(root, zero_nums[k]);
        if (is_null(v)) continue;
        if (get_num(v, zero_nums[k], -2, 2, &dv, err)) return -1;
        if (dv != 0) return unsupported(err, zero_nums[k], "other than 0");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    if (!is_null(v) && !cJSON_IsFalse(v)) {
        if (!(cJSON_IsNumber(v) || cJSON_IsBool(v)))
            return bad_type(err, "logprobs", kind == OPC_OAI_CHAT ? "a boolean" : "an integer", v);
        if (!(cJSON_IsNumber(v) && v->valuedouble == 0)) return unsupported(err, "logprobs", "");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "echo");
    if (!is_null(v)) {
        int echo = 0;
        if (get_bool(v, "echo", &echo, err)) return -1;
        if (echo) return unsupported(err, "echo", "= true");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "suffix");
    if (!is_null(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
        return unsupported(err, "suffix", "");
    static const char *const no_tools[] = {"tools", "functions", "tool_choice", "function_call"};
    for (size_t k = 0; k < sizeof no_tools / sizeof no_tools[0]; k++) {
        v = cJSON_GetObjectItemCaseSensitive(root, no_tools[k]);
        if (!is_null(v) && !(cJSON_IsString(v) && !strcmp(v->valuestring, "none")))
            return unsupported(err, no_tools[k], "(tool calling)");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (!is_null(v)) {
        const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
        if (!cJSON_IsString(t)) return bad_type(err, "response_format", "{\"type\": ...}", v);
        if (strcmp(t->valuestring, "text")) return unsupported(err, "response_format", "other than text");
    }
    return 0;
}

void opc_oai_req_free(opc_oai_req *r) {
    if (!r) return;
    cJSON_Delete(r->json);
    free(r->prompt_ids);
    free(r->msgs);
    for (size_t i = 0; i < r->n_owned; i++) free(r->owned[i]);
    free(r->owned);
    memset(r, 0, sizeof *r);
}

/* ============================================================== output ==== */

static char *print_and_delete(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static cJSON *error_object(const opc_oai_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    if (!e) {
        cJSON_Delete(root);
        return NULL;
    }
    char *msg = utf8_sanitize(err->message, strlen(err->message));
    cJSON_AddStringToObject(e, "message", msg ? msg : "error");
    free(msg);
    cJSON_AddStringToObject(e, "type", err->type ? err->type : "server_error");
    if (err->param[0]) cJSON_AddStringToObject(e, "param", err->param);
    else cJSON_AddNullToObject(e, "param");
    if (err->code) cJSON_AddStringToObject(e, "code", err->code);
    else cJSON_AddNullToObject(e, "code");
    return root;
}

char *opc_oai_error_json(const opc_oai_error *err) { return print_and_delete(error_object(err)); }

static const char *finish_name(opc_finish f) {
    return f == OPC_FINISH_LENGTH ? "length" : "stop";
}

static cJSON *envelope(const opc_oai_meta *m, int chunk) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object",
                            m->kind == OPC_OAI_CHAT
                                ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)m->created);
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "opacc1ty-" OPC_VERSION_STRING);
    return o;
}

static void add_usage(cJSON *o, int32_t n_prompt, int32_t n_gen) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)n_prompt + n_gen);
}

/* One choice: text / message / delta + finish_reason (NULL: JSON null). */
static cJSON *choice(opc_oai_kind kind, int chunk, const char *text, int role,
                     const char *finish) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    cJSON_AddNumberToObject(c, "index", 0);
    if (kind == OPC_OAI_COMPLETION) {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    } else {
        cJSON *msg = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        if (msg && (role || !chunk)) cJSON_AddStringToObject(msg, "role", "assistant");
        if (msg && text) cJSON_AddStringToObject(msg, "content", text);
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (finish) cJSON_AddStringToObject(c, "finish_reason", finish);
    else cJSON_AddNullToObject(c, "finish_reason");
    return c;
}

static cJSON *with_choice(const opc_oai_meta *m, int chunk, cJSON *ch) {
    cJSON *o = envelope(m, chunk);
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    if (!arr || !ch) {
        cJSON_Delete(o);
        cJSON_Delete(ch);
        return NULL;
    }
    cJSON_AddItemToArray(arr, ch);
    return o;
}

char *opc_oai_response_json(const opc_oai_meta *m, const char *text, size_t len,
                            opc_finish finish, int32_t n_prompt, int32_t n_gen) {
    char *t = utf8_sanitize(text ? text : "", text ? len : 0);
    if (!t) return NULL;
    cJSON *o = with_choice(m, 0, choice(m->kind, 0, t, 1, finish_name(finish)));
    free(t);
    if (!o) return NULL;
    add_usage(o, n_prompt, n_gen);
    return print_and_delete(o);
}

/* "data: " + json + "\n\n" */
static char *sse(char *json) {
    if (!json) return NULL;
    size_t n = strlen(json);
    char *s = malloc(n + 9);
    if (s) {
        memcpy(s, "data: ", 6);
        memcpy(s + 6, json, n);
        memcpy(s + 6 + n, "\n\n", 3);
    }
    free(json);
    return s;
}

char *opc_oai_chunk_sse(const opc_oai_meta *m, const char *text, size_t len, int role_only) {
    char *t = utf8_sanitize(text ? text : "", text ? len : 0);
    if (!t) return NULL;
    cJSON *o = with_choice(m, 1, choice(m->kind, 1, t, role_only, NULL));
    free(t);
    return sse(print_and_delete(o));
}

char *opc_oai_final_sse(const opc_oai_meta *m, opc_finish finish) {
    cJSON *o = with_choice(m, 1, choice(m->kind, 1, m->kind == OPC_OAI_CHAT ? NULL : "", 0,
                                        finish_name(finish)));
    return sse(print_and_delete(o));
}

char *opc_oai_usage_sse(const opc_oai_meta *m, int32_t n_prompt, int32_t n_gen) {
    cJSON *o = envelope(m, 1);
    if (!o || !cJSON_AddArrayToObject(o, "choices")) {
        cJSON_Delete(o);
        return NULL;
    }
    add_usage(o, n_prompt, n_gen);
    return sse(print_and_delete(o));
}

char *opc_oai_error_sse(const opc_oai_error *err) { return sse(opc_oai_error_json(err)); }
