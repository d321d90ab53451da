/*
 * test_server.c — the HTTP server's layers with a deterministic fake engine:
 * OpenAI request validation (table), UTF-8 checks, stop sequences split
 * across tokens, and the real libmicrohttpd server over loopback sockets
 * (routes, auth, limits, streaming, queue-full, disconnect, shutdown).
 *
 * The fake engine lives only here: the CLI always serves a real model. The
 * end-to-end test with a real model and the official openai client is
 * tests/cli_server.sh.
 */
#define _GNU_SOURCE

#ifndef OPC_HAVE_SERVER
/* (harness.h is not included here: its unused statics would warn) */
#include <stdio.h>
int main(void) {
    fprintf(stderr, "built without libmicrohttpd: no server to test\n");
    return 77;
}
#else

#include "harness.h"

#include "model/forward.h"
#include "model/sampler.h"
#include "server/oai.h"
#include "server/sched.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ======================================================== fake engine ==== */

/* Output: the words below in a cycle, one per token. A prompt starting with
 * '!' ends (EOS) after three words. ids = the prompt's bytes. */
static const char *const k_words[] = {"alpha ", "beta ", "gamma ", "delta "};

typedef struct fake {
    opc_engine e;
    int no_chat;
    long step_ns; /* sleep per step, to make requests overlap */
    int32_t counter[8];
    int eos_after[8];
    int32_t unread[8]; /* prompt tokens still to "read", 8 per step (exercises `none`) */
    atomic_int begins, ends, active;
} fake;

static opc_status fk_encode(opc_engine *e, const char *text, size_t len, int32_t *ids, size_t cap,
                            size_t *n) {
    (void)e;
    *n = len;
    if (len > cap) return opc_error(OPC_ERR_INVALID_ARG, "fake: %zu tokens > %zu", len, cap);
    for (size_t i = 0; i < len; i++) ids[i] = (unsigned char)text[i];
    return OPC_OK;
}

static opc_status fk_chat(opc_engine *e, const opc_chat_msg *m, size_t nm, int32_t *ids,
                          size_t cap, size_t *n) {
    fake *f = (fake *)e;
    *n = 0;
    if (f->no_chat) return opc_error(OPC_ERR_NOT_FOUND, "fake: no chat template");
    for (size_t i = 0; i < nm; i++) {
        char line[256];
        int l = snprintf(line, sizeof line, "%s:%s\n", m[i].role, m[i].content);
        for (int k = 0; k < l && k < (int)sizeof line - 1; k++) {
            if (*n < cap) ids[*n] = (unsigned char)line[k];
            (*n)++;
        }
    }
    return *n > cap ? opc_error(OPC_ERR_INVALID_ARG, "fake: too long") : OPC_OK;
}

static opc_status fk_begin(opc_engine *e, int32_t slot, const int32_t *ids, size_t n,
                           const opc_srv_sampling *s) {
    fake *f = (fake *)e;
    (void)s;
    f->counter[slot] = 0;
    f->eos_after[slot] = n > 0 && ids[0] == '!' ? 3 : -1;
    f->unread[slot] = (int32_t)n;
    atomic_fetch_add(&f->begins, 1);
    atomic_fetch_add(&f->active, 1);
    return OPC_OK;
}

static opc_status fk_step(opc_engine *e, const int32_t *slots, int32_t n, opc_engine_out *out) {
    fake *f = (fake *)e;
    if (f->step_ns) {
        struct timespec ts = {0, f->step_ns};
        nanosleep(&ts, NULL);
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t s = slots[k];
        if (f->unread[s] > 8) { /* a long prompt takes several steps */
            f->unread[s] -= 8;
            memset(&out[k], 0, sizeof out[k]);
            out[k].none = 1;
            continue;
        }
        f->unread[s] = 0;
        int32_t c = f->counter[s]++;
        out[k].none = 0;
        out[k].token = c % 4;
        out[k].eog = f->eos_after[s] >= 0 && c >= f->eos_after[s];
        out[k].text = k_words[c % 4];
        out[k].len = strlen(k_words[c % 4]);
    }
    return OPC_OK;
}

static void fk_end(opc_engine *e, int32_t slot) {
    fake *f = (fake *)e;
    (void)slot;
    atomic_fetch_add(&f->ends, 1);
    atomic_fetch_sub(&f->active, 1);
}

static void fake_init(fake *f, int32_t slots, int32_t ctx) {
    memset(f, 0, sizeof *f);
    snprintf(f->e.model_id, sizeof f->e.model_id, "fake-model");
    f->e.impl = f;
    f->e.n_ctx = ctx;
    f->e.n_slots = slots;
    f->e.n_vocab = 256;
    f->e.encode = fk_encode;
    f->e.chat_encode = fk_chat;
    f->e.begin = fk_begin;
    f->e.step = fk_step;
    f->e.end = fk_end;
}

/* ========================================================= validation ==== */

typedef struct parse_case {
    const char *name;
    opc_oai_kind kind;
    const char *body;
    int http; /* 0: accepted */
    const char *param;
} parse_case;

static void test_parse_table(void) {
    static const parse_case cases[] = {
        {"minimal completion", OPC_OAI_COMPLETION, "{\"prompt\":\"hi\"}", 0, NULL},
        {"all fields", OPC_OAI_COMPLETION,
         "{\"model\":\"m\",\"prompt\":[\"hi\"],\"max_tokens\":5,\"temperature\":0.5,\"top_p\":0.9,"
         "\"seed\":-7,\"n\":1,\"stop\":[\"a\",\"b\"],\"stream\":true,\"stream_options\":"
         "{\"include_usage\":true},\"presence_penalty\":0,\"logprobs\":null,\"echo\":false,"
         "\"user\":\"x\",\"unknown_field\":[1,2]}",
         0, NULL},
        {"token-id prompt", OPC_OAI_COMPLETION, "{\"prompt\":[1,2,3]}", 0, NULL},
        {"nested token-id prompt", OPC_OAI_COMPLETION, "{\"prompt\":[[1,2,3]]}", 0, NULL},
        {"nulls are absent", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":null,\"stop\":null}", 0, NULL},
        {"empty body", OPC_OAI_COMPLETION, "", 400, ""},
        {"truncated", OPC_OAI_COMPLETION, "{\"prompt\":\"hi", 400, ""},
        {"trailing garbage", OPC_OAI_COMPLETION, "{\"prompt\":\"hi\"} x", 400, ""},
        {"not an object", OPC_OAI_COMPLETION, "[1,2]", 400, "body"},
        {"missing prompt", OPC_OAI_COMPLETION, "{}", 400, "prompt"},
        {"prompt wrong type", OPC_OAI_COMPLETION, "{\"prompt\":5}", 400, "prompt"},
        {"two prompts", OPC_OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
        {"token out of vocab", OPC_OAI_COMPLETION, "{\"prompt\":[1,999]}", 400, "prompt"},
        {"max_tokens negative", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":-1}", 400, "max_tokens"},
        {"max_tokens zero", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens"},
        {"max_tokens huge", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1e12}", 400, "max_tokens"},
        {"max_tokens fractional", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":2.5}", 400, "max_tokens"},
        {"max_tokens string", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"5\"}", 400, "max_tokens"},
        {"temperature high", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature"},
        {"temperature bool", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"temperature\":true}", 400, "temperature"},
        {"top_p negative", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"top_p\":-0.1}", 400, "top_p"},
        {"n=2", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"n\":2}", 400, "n"},
        {"stop number", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":3}", 400, "stop"},
        {"five stops", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop"},
        {"stream string", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream"},
        {"stream_options without stream", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":{}}", 400, "stream_options"},
        {"penalty unsupported", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"frequency_penalty\":1}", 400, "frequency_penalty"},
        {"logprobs unsupported", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":3}", 400, "logprobs"},
        {"echo unsupported", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", 400, "echo"},
        {"model wrong type", OPC_OAI_COMPLETION, "{\"prompt\":\"x\",\"model\":1}", 400, "model"},
        {"invalid utf-8", OPC_OAI_COMPLETION, "{\"prompt\":\"\xff\xfe\"}", 400, ""},
        {"overlong utf-8", OPC_OAI_COMPLETION, "{\"prompt\":\"\xc0\xaf\"}", 400, ""},
        {"lone surrogate escape", OPC_OAI_COMPLETION, "{\"prompt\":\"\\ud800\"}", 400, ""},
        {"chat minimal", OPC_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, NULL},
        {"chat content parts", OPC_OAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
         "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":3}",
         0, NULL},
        {"chat missing messages", OPC_OAI_CHAT, "{}", 400, "messages"},
        {"chat empty messages", OPC_OAI_CHAT, "{\"messages\":[]}", 400, "messages"},
        {"chat bad role", OPC_OAI_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0].role"},
        {"chat content number", OPC_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content"},
        {"chat image part", OPC_OAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
         "messages[0].content"},
        {"chat tools", OPC_OAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", 400, "tools"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const parse_case *c = &cases[i];
        opc_oai_req r;
        opc_oai_error err;
        memset(&err, 0, sizeof err);
        int rc = opc_oai_parse(c->kind, c->body, strlen(c->body), 64, 256, &r, &err);
        if (c->http == 0) {
            CHECK_MSG(rc == 0, "%s: rejected: %s", c->name, err.message);
        } else {
            CHECK_MSG(rc != 0 && err.http == c->http, "%s: rc %d http %d", c->name, rc, err.http);
            CHECK_MSG(!c->param || !strcmp(err.param, c->param), "%s: param '%s' != '%s'", c->name,
                      err.param, c->param);
            CHECK_MSG(err.message[0] != '\0', "%s: empty message", c->name);
        }
        opc_oai_req_free(&r);
    }
    /* values land in the struct */
    opc_oai_req r;
    opc_oai_error err;
    const char *b = "{\"prompt\":\"hey\",\"max_tokens\":7,\"temperature\":0,\"seed\":42,"
                    "\"stop\":\"\\n\",\"stream\":true}";
    CHECK(opc_oai_parse(OPC_OAI_COMPLETION, b, strlen(b), 64, 256, &r, &err) == 0);
    CHECK(r.has_max_tokens && r.max_tokens == 7);
    CHECK(r.temperature == 0.0f && r.has_seed && r.seed == 42);
    CHECK(r.n_stop == 1 && !strcmp(r.stop[0], "\n") && r.stream == 1);
    CHECK(r.prompt_len == 3 && !memcmp(r.prompt, "hey", 3));
    opc_oai_req_free(&r);
}

static void test_utf8(void) {
    static const struct {
        const char *s;
        int ok;
    } cases[] = {
        {"plain", 1},          {"caf\xc3\xa9", 1},     {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1}, {"\xc3", 0},          {"\xe2\x82", 0},
        {"\xed\xa0\x80", 0} /* surrogate */,          {"\xf4\x90\x80\x80", 0} /* > U+10FFFF */,
        {"\xe0\x80\xaf", 0} /* overlong */,           {"\x80", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_MSG(opc_utf8_valid(cases[i].s, strlen(cases[i].s), NULL) == cases[i].ok, "case %zu", i);
    /* output JSON is always valid UTF-8 even when the model's bytes are not */
    opc_oai_meta m = {OPC_OAI_COMPLETION, "cmpl-1", 0, "m"};
    char *j = opc_oai_response_json(&m, "a\xff" "b", 3, OPC_FINISH_STOP, 1, 1);
    CHECK(j && opc_utf8_valid(j, strlen(j), NULL) && strstr(j, "a\xef\xbf\xbd" "b"));
    free(j);
}

/* ======================================================== scheduler ==== */

/* Run one job to completion directly on the scheduler; returns its text. */
static char *run_job(opc_sched *s, const char *prompt, int32_t max_tokens, const char **stop,
                     int n_stop, opc_job_view *v) {
    int32_t ids[32];
    size_t n = strlen(prompt);
    for (size_t i = 0; i < n; i++) ids[i] = (unsigned char)prompt[i];
    opc_job_params p;
    memset(&p, 0, sizeof p);
    p.prompt = ids;
    p.n_prompt = n;
    p.max_tokens = max_tokens;
    for (int i = 0; i < n_stop; i++) p.stop[i] = stop[i];
    p.n_stop = n_stop;
    opc_srv_job *j = NULL;
    if (opc_sched_job_new(&p, &j) != OPC_OK || opc_sched_submit(s, j) != OPC_SUBMIT_OK) {
        opc_sched_job_release(NULL, j);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    double t0 = opc_time_s();
    do {
        opc_sched_wait(s, j, len, 0.5, v, &buf, &len, &cap);
    } while (!v->done && opc_time_s() - t0 < 10);
    opc_sched_job_release(s, j);
    if (!buf) buf = calloc(1, 1);
    return buf;
}

static void test_sched_stop(void) {
    fake f;
    fake_init(&f, 2, 64);
    opc_sched *s = NULL;
    CHECK(opc_sched_init(&s, &f.e, 4) == OPC_OK);
    if (!s) return;
    opc_job_view v;
    char *t = run_job(s, "x", 5, NULL, 0, &v);
    CHECK_STR(t, "alpha beta gamma delta alpha ");
    CHECK(v.finish == OPC_FINISH_LENGTH && v.n_gen == 5 && v.n_prompt == 1);
    free(t);
    /* a stop sequence spanning two tokens ("ga|mma d") */
    const char *st1[] = {"mma d"};
    t = run_job(s, "x", 10, st1, 1, &v);
    CHECK_STR(t, "alpha beta ga");
    CHECK(v.finish == OPC_FINISH_STOP);
    free(t);
    /* earliest of several stops wins; a stop that never occurs changes nothing */
    const char *st2[] = {"zzz", "delta", "beta"};
    t = run_job(s, "x", 10, st2, 3, &v);
    CHECK_STR(t, "alpha ");
    free(t);
    /* EOS after three words */
    t = run_job(s, "!x", 10, NULL, 0, &v);
    CHECK_STR(t, "alpha beta gamma ");
    CHECK(v.finish == OPC_FINISH_STOP && v.n_gen == 3);
    free(t);
    opc_sched_free(s);
    CHECK_EQ_INT(atomic_load(&f.begins), 4);
    CHECK_EQ_INT(atomic_load(&f.ends), 4);
}

/* ============================================================ HTTP ===== */

typedef struct http_resp {
    int status;
    char *head; /* status line + headers */
    char *body; /* de-chunked */
    size_t body_len;
} http_resp;

static void resp_free(http_resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {20, 0}; /* a hung server fails the test instead of hanging it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decode a chunked body in place; returns the decoded length. */
static size_t dechunk(char *b, size_t n) {
    size_t in = 0, out = 0;
    while (in < n) {
        char *end;
        unsigned long len = strtoul(b + in, &end, 16);
        char *crlf = strstr(end, "\r\n");
        if (!crlf) break;
        in = (size_t)(crlf - b) + 2;
        if (len == 0 || in + len > n) break;
        memmove(b + out, b + in, len);
        out += len;
        in += len + 2;
    }
    b[out] = '\0';
    return out;
}

/* One request with "Connection: close"; reads to EOF. extra: more header lines. */
static int http_req(int port, const char *method, const char *path, const char *extra,
                    const char *body, size_t body_len, http_resp *r) {
    memset(r, 0, sizeof *r);
    int fd = connect_to(port);
    if (fd < 0) return -1;
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, path, extra ? extra : "", body ? body_len : 0);
    if (send_all(fd, head, (size_t)hl) || (body && send_all(fd, body, body_len))) {
        close(fd);
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1024 > cap) buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    *sep = '\0';
    r->head = buf;
    size_t blen = len - (size_t)(sep + 4 - buf);
    r->body = malloc(blen + 1);
    memcpy(r->body, sep + 4, blen);
    r->body[blen] = '\0';
    r->body_len = blen;
    if (strcasestr(r->head, "transfer-encoding: chunked")) r->body_len = dechunk(r->body, blen);
    return 0;
}

static int post(int port, const char *path, const char *body, http_resp *r) {
    return http_req(port, "POST", path, NULL, body, strlen(body), r);
}

/* Concatenate the "text" or "content" deltas of an SSE body; counts events. */
static void sse_text(const char *body, char *out, size_t cap, int *n_events, int *done) {
    out[0] = '\0';
    *n_events = 0;
    *done = 0;
    const char *p = body;
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        if (!strncmp(p, "[DONE]", 6)) {
            *done = 1;
            break;
        }
        (*n_events)++;
        const char *k = strstr(p, "\"text\":\"");
        const char *kc = strstr(p, "\"content\":\"");
        const char *eol = strstr(p, "\n\n");
        if (kc && (!k || kc < k)) k = kc + 3;
        if (k && (!eol || k < eol)) {
            k += 8;
            const char *q = strchr(k, '"');
            size_t l = strlen(out);
            if (q && l + (size_t)(q - k) < cap) {
                memcpy(out + l, k, (size_t)(q - k));
                out[l + (size_t)(q - k)] = '\0';
            }
        }
    }
}

static long health_count(int port, const char *key) {
    http_resp r;
    long v = -1;
    if (http_req(port, "GET", "/health", NULL, NULL, 0, &r) == 0) {
        char pat[64];
        snprintf(pat, sizeof pat, "\"%s\":", key);
        const char *p = strstr(r.body, pat);
        if (p) v = strtol(p + strlen(pat), NULL, 10);
    }
    resp_free(&r);
    return v;
}

static opc_server *start(fake *f, const char *key, int32_t queue) {
    opc_server_opts o;
    opc_server_opts_default(&o);
    o.port = 0;
    o.api_key = key;
    o.queue_cap = queue;
    o.max_body = 4096;
    opc_server *s = NULL;
    opc_status st = opc_server_start(&o, &f->e, &s);
    CHECK_MSG(st == OPC_OK, "start: %s", opc_last_error());
    return s;
}

static void test_http_basic(void) {
    fake f;
    fake_init(&f, 2, 64);
    f.no_chat = 1;
    opc_server *s = start(&f, NULL, 8);
    if (!s) return;
    int port = opc_server_port(s);
    CHECK(port > 0);
    http_resp r;

    CHECK(http_req(port, "GET", "/health", NULL, NULL, 0, &r) == 0 && r.status == 200);
    CHECK(r.body && strstr(r.body, "\"status\":\"ok\""));
    resp_free(&r);
    CHECK(http_req(port, "GET", "/v1/models", NULL, NULL, 0, &r) == 0 && r.status == 200);
    CHECK(r.body && strstr(r.body, "\"id\":\"fake-model\"") && strstr(r.body, "\"object\":\"list\""));
    resp_free(&r);
    CHECK(http_req(port, "GET", "/v1/models/fake-model", NULL, NULL, 0, &r) == 0 && r.status == 200);
    resp_free(&r);
    CHECK(http_req(port, "GET", "/v1/models/other", NULL, NULL, 0, &r) == 0 && r.status == 404);
    CHECK(r.body && strstr(r.body, "model_not_found"));
    resp_free(&r);

    /* non-stream completion: exact text, usage, finish reason */
    CHECK(post(port, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":3}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body, "\"text\":\"alpha beta gamma \"") != NULL);
    CHECK(strstr(r.body, "\"finish_reason\":\"length\"") != NULL);
    CHECK(strstr(r.body, "\"prompt_tokens\":3,\"completion_tokens\":3,\"total_tokens\":6") != NULL);
    CHECK(strstr(r.body, "\"object\":\"text_completion\"") != NULL);
    resp_free(&r);

    /* stream: same text, SSE framing, [DONE], usage chunk */
    CHECK(post(port, "/v1/completions",
               "{\"prompt\":\"abc\",\"max_tokens\":3,\"stream\":true,"
               "\"stream_options\":{\"include_usage\":true}}",
               &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.head && strcasestr(r.head, "content-type: text/event-stream"));
    char text[512];
    int n_ev, done;
    sse_text(r.body, text, sizeof text, &n_ev, &done);
    CHECK_STR(text, "alpha beta gamma ");
    CHECK(done == 1 && n_ev >= 3);
    CHECK(strstr(r.body, "\"finish_reason\":\"length\"") && strstr(r.body, "\"completion_tokens\":3"));
    resp_free(&r);

    /* stream with a stop sequence that spans tokens: nothing past it leaks */
    CHECK(post(port, "/v1/completions",
               "{\"prompt\":\"abc\",\"max_tokens\":10,\"stream\":true,\"stop\":[\"mma d\"]}", &r) == 0);
    sse_text(r.body, text, sizeof text, &n_ev, &done);
    CHECK_STR(text, "alpha beta ga");
    CHECK(done && strstr(r.body, "\"finish_reason\":\"stop\""));
    resp_free(&r);

    /* a model without a chat template: documented 400 */
    CHECK(post(port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK(strstr(r.body, "chat_template_unsupported") != NULL);
    resp_free(&r);

    /* errors: shape and status */
    static const struct {
        const char *method, *path, *body;
        int status;
        const char *code;
    } errs[] = {
        {"GET", "/nope", NULL, 404, "unknown_url"},
        {"DELETE", "/health", NULL, 405, "method_not_allowed"},
        {"GET", "/v1/completions", NULL, 405, "method_not_allowed"},
        {"POST", "/v1/completions", "{\"prompt\":", 400, "invalid_json"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":-5}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":100000}", 400, "invalid_value"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":64}", 400, "context_length_exceeded"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404, "model_not_found"},
        {"POST", "/v1/completions", "{\"prompt\":\"\xc3\x28\"}", 400, "invalid_utf8"},
        {"POST", "/v1/completions", "{\"prompt\":\"x\",\"n\":3}", 400, "unsupported_value"},
        {"POST", "/v1/completions",
         "{\"prompt\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
         400, "context_length_exceeded"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        int rc = http_req(port, errs[i].method, errs[i].path, NULL, errs[i].body,
                          errs[i].body ? strlen(errs[i].body) : 0, &r);
        CHECK_MSG(rc == 0 && r.status == errs[i].status, "%s %s: status %d", errs[i].method,
                  errs[i].path, r.status);
        CHECK_MSG(r.body && strstr(r.body, "\"error\":{\"message\":") && strstr(r.body, errs[i].code),
                  "%s %s: body %s", errs[i].method, errs[i].path, r.body ? r.body : "(none)");
        resp_free(&r);
    }

    /* body limits: declared too big (answered at once), and sent too big */
    {
        char *big = malloc(6000);
        memset(big, ' ', 6000);
        big[0] = '{';
        big[5999] = '}';
        CHECK(http_req(port, "POST", "/v1/completions", NULL, big, 6000, &r) == 0);
        CHECK_EQ_INT(r.status, 413);
        CHECK(r.body && strstr(r.body, "request_too_large"));
        resp_free(&r);
        free(big);
        int fd = connect_to(port);
        const char *h = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n";
        CHECK(fd >= 0 && send_all(fd, h, strlen(h)) == 0);
        char buf[512] = "";
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        CHECK(n > 12 && !strncmp(buf + 9, "413", 3));
        close(fd);
    }
    /* the server is fine afterwards */
    CHECK(post(port, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":2}", &r) == 0 && r.status == 200);
    resp_free(&r);
    opc_server_stop(s, 1.0);
    CHECK_EQ_INT(atomic_load(&f.begins), atomic_load(&f.ends));
}

static void test_http_auth(void) {
    fake f;
    fake_init(&f, 1, 64);
    opc_server *s = start(&f, "sekret", 8);
    if (!s) return;
    int port = opc_server_port(s);
    http_resp r;
    const char *b = "{\"prompt\":\"a\",\"max_tokens\":1}";
    CHECK(post(port, "/v1/completions", b, &r) == 0 && r.status == 401);
    CHECK(r.body && strstr(r.body, "missing_api_key"));
    resp_free(&r);
    CHECK(http_req(port, "POST", "/v1/completions", "Authorization: Bearer wrong\r\n", b, strlen(b), &r) == 0);
    CHECK(r.status == 401 && strstr(r.body, "invalid_api_key"));
    resp_free(&r);
    CHECK(http_req(port, "POST", "/v1/completions", "Authorization: Bearer sekret\r\n", b, strlen(b), &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    CHECK(http_req(port, "GET", "/v1/models", NULL, NULL, 0, &r) == 0 && r.status == 401);
    resp_free(&r);
    CHECK(http_req(port, "GET", "/health", NULL, NULL, 0, &r) == 0 && r.status == 200);
    resp_free(&r);
    /* chat through the fake template */
    CHECK(http_req(port, "POST", "/v1/chat/completions", "Authorization: Bearer sekret\r\n",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}",
                   strlen("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}"),
                   &r) == 0);
    CHECK(r.status == 200 && strstr(r.body, "\"message\":{\"role\":\"assistant\",\"content\":\"alpha beta \"}"));
    resp_free(&r);
    opc_server_stop(s, 1.0);
}

/* Slow engine: a stream that the client abandons frees its slot; a full
 * queue answers 503; shutdown ends an open stream cleanly. */
static void test_http_disconnect_queue_shutdown(void) {
    fake f;
    fake_init(&f, 1, 64);
    f.step_ns = 30 * 1000 * 1000; /* 30 ms per token: a 60-token job lasts 1.8 s */
    opc_server *s = start(&f, NULL, 1);
    if (!s) return;
    int port = opc_server_port(s);

    /* 1. abandon a long stream after the first bytes */
    int fd = connect_to(port);
    const char *b = "{\"prompt\":\"a\",\"max_tokens\":60,\"stream\":true}";
    char req[512];
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen(b), b);
    CHECK(fd >= 0 && send_all(fd, req, strlen(req)) == 0);
    char buf[2048];
    CHECK(recv(fd, buf, sizeof buf, 0) > 0);
    close(fd);
    double t0 = opc_time_s();
    while (health_count(port, "cancelled") < 1 && opc_time_s() - t0 < 5) usleep(20000);
    CHECK_EQ_INT(health_count(port, "cancelled"), 1);
    /* counted as cancelled, not completed: it was stopped before its 60 tokens */
    CHECK_EQ_INT(health_count(port, "slots_busy"), 0);

    /* 2. a non-stream client that vanishes is cancelled too */
    fd = connect_to(port);
    b = "{\"prompt\":\"a\",\"max_tokens\":60}";
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen(b), b);
    CHECK(fd >= 0 && send_all(fd, req, strlen(req)) == 0);
    usleep(100000);
    close(fd);
    t0 = opc_time_s();
    while (health_count(port, "cancelled") < 2 && opc_time_s() - t0 < 5) usleep(20000);
    CHECK_EQ_INT(health_count(port, "cancelled"), 2);

    /* 3. one slot busy + one queued -> the third gets 503 */
    int fa = connect_to(port), fb = connect_to(port);
    b = "{\"prompt\":\"a\",\"max_tokens\":20}";
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(b), b);
    CHECK(send_all(fa, req, strlen(req)) == 0);
    t0 = opc_time_s();
    while (health_count(port, "slots_busy") < 1 && opc_time_s() - t0 < 5) usleep(5000);
    CHECK(send_all(fb, req, strlen(req)) == 0);
    while (health_count(port, "queued") < 1 && opc_time_s() - t0 < 5) usleep(5000);
    http_resp r;
    CHECK(post(port, "/v1/completions", b, &r) == 0);
    CHECK_EQ_INT(r.status, 503);
    CHECK(r.body && strstr(r.body, "server_busy"));
    resp_free(&r);
    /* both accepted requests complete */
    for (int k = 0; k < 2; k++) {
        int x = k ? fb : fa;
        size_t len = 0;
        ssize_t n;
        while ((n = recv(x, buf + len, sizeof buf - 1 - len, 0)) > 0) len += (size_t)n;
        buf[len] = '\0';
        CHECK_MSG(!strncmp(buf, "HTTP/1.1 200", 12), "queued request %d: %.40s", k, buf);
        close(x);
    }

    /* 4. shutdown with a stream open: the client sees the stream end */
    fd = connect_to(port);
    b = "{\"prompt\":\"a\",\"max_tokens\":60,\"stream\":true}";
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen(b), b);
    CHECK(send_all(fd, req, strlen(req)) == 0);
    CHECK(recv(fd, buf, sizeof buf, 0) > 0);
    t0 = opc_time_s();
    opc_server_stop(s, 0.0);
    CHECK(opc_time_s() - t0 < 3.0);
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    CHECK(n == 0 || n < 0); /* closed, not hung (SO_RCVTIMEO bounds it) */
    close(fd);
    CHECK_EQ_INT(atomic_load(&f.begins), atomic_load(&f.ends));
}

/* 16 clients at once on 4 slots: every request answered, text exact. */
typedef struct client_arg {
    int port, ok;
} client_arg;

static void *client_main(void *p) {
    client_arg *a = p;
    for (int i = 0; i < 5; i++) {
        http_resp r;
        int stream = i & 1;
        const char *b = stream ? "{\"prompt\":\"q\",\"max_tokens\":4,\"stream\":true}"
                               : "{\"prompt\":\"q\",\"max_tokens\":4}";
        if (post(a->port, "/v1/completions", b, &r) == 0 && r.status == 200) {
            char text[256];
            int n_ev, done;
            if (stream) sse_text(r.body, text, sizeof text, &n_ev, &done);
            if (stream ? (done && !strcmp(text, "alpha beta gamma delta "))
                       : strstr(r.body, "\"text\":\"alpha beta gamma delta \"") != NULL)
                a->ok++;
        }
        resp_free(&r);
    }
    return NULL;
}

static void test_http_concurrent(void) {
    fake f;
    fake_init(&f, 4, 64);
    f.step_ns = 1000 * 1000;
    opc_server *s = start(&f, NULL, 32);
    if (!s) return;
    enum { N = 16 };
    pthread_t th[N];
    client_arg a[N];
    for (int i = 0; i < N; i++) {
        a[i].port = opc_server_port(s);
        a[i].ok = 0;
        pthread_create(&th[i], NULL, client_main, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
    }
    CHECK_EQ_INT(ok, N * 5);
    CHECK_EQ_INT(health_count(opc_server_port(s), "completed"), N * 5);
    opc_server_stop(s, 1.0);
    CHECK_EQ_INT(atomic_load(&f.begins), N * 5);
    CHECK_EQ_INT(atomic_load(&f.ends), N * 5);
}

/* ===================================================== real engine ==== */

/* Greedy decoding written the plain way — whole prompt in one forward call,
 * every sampled token fed back at once — as the reference for the engine's
 * chunked prefill and deferred feeding. */
static char *greedy_reference(const char *model, const char *prompt, int max_tokens, int *n_gen) {
    opc_model_desc *d = NULL;
    opc_tokenizer *tok = NULL;
    opc_forward *f = NULL;
    char *out = calloc(1, 8192);
    float *logits = NULL;
    int32_t ids[256];
    size_t n = 0;
    *n_gen = 0;
    opc_encode_opts eo = {-1, 0};
    if (opc_model_desc_open(model, &d) || opc_tokenizer_init(&tok, &d->vocab) ||
        opc_tokenizer_encode(tok, prompt, strlen(prompt), &eo, ids, 256, &n) ||
        opc_forward_init(&f, d, 256, 256, 1)) {
        free(out);
        out = NULL;
        goto done;
    }
    logits = malloc((size_t)d->cfg.vocab_size * sizeof *logits);
    opc_detok dt;
    opc_detok_init(&dt, tok);
    dt.at_start = 0; /* a continuation: a leading "▁" is a real space */
    char piece[256];
    int32_t all[512];
    size_t n_all = n;
    memcpy(all, ids, n * sizeof *ids);
    size_t len = 0;
    int32_t pos = (int32_t)n;
    if (opc_forward_run(f, ids, (int32_t)n, 0, logits, OPC_LOGITS_LAST)) goto done;
    for (int i = 0; i < max_tokens; i++) {
        int32_t t = opc_argmax(logits, d->cfg.vocab_size);
        if (t == opc_tokenizer_eos(tok)) break;
        (*n_gen)++;
        if (n_all < 512) all[n_all++] = t;
        size_t k = opc_detok_push(&dt, t, 1, piece, sizeof piece);
        if (len + k < 8191) {
            memcpy(out + len, piece, k);
            len += k;
        }
        if (i + 1 < max_tokens && opc_forward_run(f, &t, 1, pos++, logits, OPC_LOGITS_LAST)) break;
    }
    {
        /* prompt + completion must read as the decoding of the whole sequence
         * (no space lost or added where the completion starts) */
        char *whole = NULL;
        size_t wl = 0;
        CHECK(opc_tokenizer_decode(tok, all, n_all, 1, &whole, &wl) == OPC_OK);
        char *joined = malloc(strlen(prompt) + len + 1);
        snprintf(joined, strlen(prompt) + len + 1, "%s%s", prompt, out);
        CHECK_MSG(whole && !strcmp(whole, joined), "decode(all) '%s' != prompt+text '%s'",
                  whole ? whole : "(null)", joined);
        free(joined);
        free(whole);
    }
done:
    free(logits);
    opc_forward_free(f);
    opc_tokenizer_free(tok);
    opc_model_desc_free(d);
    return out;
}

/* The model engine behind the scheduler: greedy text equals the plain
 * reference, with a prompt long enough for several prefill chunks, and with
 * three requests interleaved over two slots (no state leaks between slots). */
static void test_model_engine(void) {
    char model[1024];
    SHARED_PATH(model, "models/stories260K/stories260K.bin");
    if (!opc_file_exists(model)) SKIP("%s not found", model);
    opc_engine_model_opts eo = {256, 2, 1, NULL, OPC_ENGINE_CPU};
    opc_engine *e = NULL;
    opc_status st = opc_engine_model_open(model, &eo, &e);
    if (st != OPC_OK) SKIP("cannot load stories260K yet: %s", opc_last_error());
    CHECK_STR(e->model_id, "stories260K");
    CHECK(e->n_ctx == 256 && e->n_slots == 2 && e->n_vocab == 512);

    static const char *const prompts[] = {
        "Once upon a time",
        "Lily and Tom went to the park. They saw a big dog with a red ball. The dog was happy and "
        "wanted to play. Lily threw the ball and the dog ran after it. Tom laughed and said",
        "The sun was",
    };
    enum { NP = 3, MAXT = 40 };
    char *ref[NP];
    int ref_n[NP];
    for (int i = 0; i < NP; i++) {
        ref[i] = greedy_reference(model, prompts[i], MAXT, &ref_n[i]);
        CHECK(ref[i] && strlen(ref[i]) > 0);
    }
    int32_t ids[256];
    size_t n = 0;
    CHECK(e->encode(e, prompts[1], strlen(prompts[1]), ids, 256, &n) == OPC_OK);
    CHECK_MSG(n > 64, "long prompt has %zu tokens: want several prefill chunks", n);
    /* chat: stories260K has no template -> the documented refusal */
    opc_chat_msg m = {"user", "hi"};
    st = e->chat_encode(e, &m, 1, ids, 256, &n);
    CHECK(st == OPC_ERR_NOT_FOUND || st == OPC_ERR_UNSUPPORTED);

    opc_sched *s = NULL;
    CHECK(opc_sched_init(&s, e, 8) == OPC_OK);
    opc_srv_job *jobs[NP] = {0};
    for (int i = 0; i < NP && s; i++) {
        size_t np = 0;
        CHECK(e->encode(e, prompts[i], strlen(prompts[i]), ids, 256, &np) == OPC_OK);
        opc_job_params p;
        memset(&p, 0, sizeof p);
        p.prompt = ids;
        p.n_prompt = np;
        p.max_tokens = MAXT;
        p.sampling.temperature = 0;
        p.sampling.top_p = 1;
        CHECK(opc_sched_job_new(&p, &jobs[i]) == OPC_OK);
        CHECK(opc_sched_submit(s, jobs[i]) == OPC_SUBMIT_OK);
    }
    for (int i = 0; i < NP && s; i++) {
        char *buf = NULL;
        size_t len = 0, cap = 0;
        opc_job_view v;
        double t0 = opc_time_s();
        do {
            opc_sched_wait(s, jobs[i], len, 0.5, &v, &buf, &len, &cap);
        } while (!v.done && opc_time_s() - t0 < 30);
        CHECK_MSG(buf && ref[i] && !strcmp(buf, ref[i]), "prompt %d:\n  engine    %s\n  reference %s",
                  i, buf ? buf : "(null)", ref[i] ? ref[i] : "(null)");
        CHECK_EQ_INT(v.n_gen, ref_n[i]);
        CHECK(v.finish == (ref_n[i] == MAXT ? OPC_FINISH_LENGTH : OPC_FINISH_STOP));
        free(buf);
        opc_sched_job_release(s, jobs[i]);
    }

    /* KV reuse: a slot keeps its tokens after a request. The long prompt is
     * fully cached now; asking it again (and asking a prompt that extends the
     * first prompt's text, as a chat resending its history does) must give
     * exactly the reference text. */
    size_t n1 = 0;
    CHECK(e->encode(e, prompts[1], strlen(prompts[1]), ids, 256, &n1) == OPC_OK);
    int32_t best = 0;
    for (int32_t k = 0; k < e->n_slots; k++) {
        int32_t got = e->prefix(e, k, ids, n1);
        if (got > best) best = got;
    }
    CHECK_EQ_INT(best, (int64_t)n1);
    char ext[1024];
    snprintf(ext, sizeof ext, "%s%s And then", prompts[0], ref[0] ? ref[0] : "");
    const char *again[2] = {prompts[1], ext};
    for (int r = 0; r < 2 && s; r++) {
        int ref_gen;
        char *want = greedy_reference(model, again[r], MAXT, &ref_gen);
        size_t np = 0;
        CHECK(e->encode(e, again[r], strlen(again[r]), ids, 256, &np) == OPC_OK);
        opc_job_params p;
        memset(&p, 0, sizeof p);
        p.prompt = ids;
        p.n_prompt = np;
        p.max_tokens = MAXT;
        p.sampling.top_p = 1;
        opc_srv_job *j = NULL;
        CHECK(opc_sched_job_new(&p, &j) == OPC_OK && opc_sched_submit(s, j) == OPC_SUBMIT_OK);
        char *buf = NULL;
        size_t len = 0, cap = 0;
        opc_job_view v;
        double t0 = opc_time_s();
        do {
            opc_sched_wait(s, j, len, 0.5, &v, &buf, &len, &cap);
        } while (!v.done && opc_time_s() - t0 < 30);
        CHECK_MSG(buf && want && !strcmp(buf, want), "reuse %d:\n  engine    %s\n  reference %s", r,
                  buf ? buf : "(null)", want ? want : "(null)");
        CHECK_EQ_INT(v.n_gen, ref_gen);
        free(buf);
        free(want);
        opc_sched_job_release(s, j);
    }
    opc_sched_free(s);
    opc_engine_free(e);
    for (int i = 0; i < NP; i++) free(ref[i]);
}

int main(void) {
    RUN(test_parse_table);
    RUN(test_utf8);
    RUN(test_sched_stop);
    RUN(test_http_basic);
    RUN(test_http_auth);
    RUN(test_http_disconnect_queue_shutdown);
    RUN(test_http_concurrent);
    RUN(test_model_engine);
    return harness_finish();
}

#endif /* OPC_HAVE_SERVER */
