/*
 * http.c — libmicrohttpd front end: routing, API key, body limits, and the
 * two ways a generation is answered (one JSON body, or Server-Sent Events).
 *
 * MHD runs one thread per connection, so a handler may block: a non-stream
 * request waits for its job inside the access handler; a stream's content
 * reader waits for the next piece of text. Both wake at least every
 * WAIT_SLICE_S to look at the client's socket: a peer that closed its end
 * (recv(MSG_PEEK) == 0) gets its job cancelled, which frees its slot before
 * the scheduler's next decode step.
 */
#define _GNU_SOURCE /* MSG_DONTWAIT, getaddrinfo */
#include "server.h"

#include "oai.h"
#include "sched.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define WAIT_SLICE_S 0.2
/* A body this many times over the cap is not read to its end: the
 * connection is answered 413 at once (or dropped mid-upload). */
#define BODY_DRAIN_FACTOR 16
/* Requests parsed + tokenized at once. A parsed body can take many times its
 * size (a 1 MiB array of token ids is ~30 MiB of cJSON nodes), so this bounds
 * the transient memory of many simultaneous large requests. */
#define PARSE_SLOTS 4

struct opc_server {
    struct MHD_Daemon *d;
    opc_engine *e;
    opc_sched *sched;
    opc_server_opts o;
    char host[256];
    char api_key[256];
    int port;
    atomic_int stopping;
    atomic_ullong next_id;
    long long started;
    sem_t parse_sem; /* PARSE_SLOTS */
};

void opc_server_opts_default(opc_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->queue_cap = 64;
    o->max_body = (size_t)1 << 20;
    o->max_conns = 128;
    o->conn_timeout = 60;
}

int opc_server_port(const opc_server *s) { return s ? s->port : 0; }

/* ============================================================ helpers ==== */

typedef enum route { R_NONE = 0, R_HEALTH, R_MODELS, R_MODEL_ONE, R_COMPLETIONS, R_CHAT } route;

/* Per request (MHD's con_cls). */
typedef struct req_ctx {
    opc_server *srv;
    route r;
    char *body; /* (len) request body, NUL-terminated, at most max_body */
    size_t len, cap;
    uint64_t received; /* upload bytes seen, kept or not */
    int has_early;     /* answer decided before the body arrived */
    opc_oai_error early;
    int status; /* HTTP status sent, for the log line */
    int parse_held; /* holds one of srv->parse_sem */
    char method[8];
    char url[96];
    double t0;
} req_ctx;

/* True when the client has closed its end (EOF or a hard error). Data still
 * pending (a pipelined request) counts as alive. */
static int peer_closed(int fd) {
    if (fd < 0) return 0;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0) return 1;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1;
    return 0;
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static enum MHD_Result send_body(req_ctx *rq, struct MHD_Connection *c, unsigned status,
                                 const char *ctype, char *body /* heap; taken */) {
    static char fallback[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                             "\"param\":null,\"code\":null}}";
    struct MHD_Response *resp;
    if (body) {
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    } else {
        status = 500;
        resp = MHD_create_response_from_buffer(strlen(fallback), fallback, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (status == 405)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                rq->r == R_COMPLETIONS || rq->r == R_CHAT ? "POST" : "GET, HEAD");
    rq->status = (int)status;
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(req_ctx *rq, struct MHD_Connection *c, unsigned status,
                                 char *json) {
    return send_body(rq, c, status, "application/json", json);
}

static enum MHD_Result send_error(req_ctx *rq, struct MHD_Connection *c, const opc_oai_error *e) {
    return send_json(rq, c, (unsigned)e->http, opc_oai_error_json(e));
}

/* "prefix-" + 24 hex digits: a process-unique counter mixed with the start time. */
static void make_id(opc_server *s, const char *prefix, char *out, size_t cap) {
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    unsigned long long x = (n + 1) * 0x9E3779B97F4A7C15ull ^ (unsigned long long)s->started;
    snprintf(out, cap, "%s-%016llx%08llx", prefix, x, n & 0xffffffffull);
}

static uint64_t fresh_seed(opc_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                 (atomic_fetch_add(&s->next_id, 1) * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; /* splitmix64 finaliser */
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Constant-time comparison, so the key cannot be guessed byte by byte from timing. */
static int key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return d == 0 && la == lb;
}

/* ================================================================ GET ==== */

static char *model_object_json(opc_server *s, int list) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "id", s->e->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->started);
    cJSON_AddStringToObject(m, "owned_by", "opacc1ty");
    cJSON_AddNumberToObject(m, "context_length", s->e->n_ctx);
    cJSON *root = m;
    if (list) {
        root = cJSON_CreateObject();
        cJSON *data = root ? cJSON_AddArrayToObject(root, "data") : NULL;
        if (!data) {
            cJSON_Delete(root);
            cJSON_Delete(m);
            return NULL;
        }
        cJSON_AddStringToObject(root, "object", "list");
        cJSON_AddItemToArray(data, m);
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static enum MHD_Result handle_get(req_ctx *rq, struct MHD_Connection *c, const char *url) {
    opc_server *s = rq->srv;
    if (rq->r == R_HEALTH) {
        opc_sched_stats st;
        opc_sched_get_stats(s->sched, &st);
        int stopping = atomic_load(&s->stopping);
        char *b = malloc(512);
        if (b)
            snprintf(b, 512,
                     "{\"status\":\"%s\",\"slots\":%d,\"slots_busy\":%d,\"queued\":%d,"
                     "\"queue_capacity\":%d,\"completed\":%llu,\"cancelled\":%llu,"
                     "\"failed\":%llu,\"rejected\":%llu}",
                     stopping ? "shutting_down" : "ok", (int)st.n_slots, (int)st.active,
                     (int)st.queued, (int)st.queue_cap, (unsigned long long)st.completed,
                     (unsigned long long)st.cancelled, (unsigned long long)st.failed,
                     (unsigned long long)st.rejected);
        return send_json(rq, c, stopping ? 503 : 200, b);
    }
    if (rq->r == R_MODELS) return send_json(rq, c, 200, model_object_json(s, 1));
    /* R_MODEL_ONE */
    const char *id = url + strlen("/v1/models/");
    if (strcmp(id, s->e->model_id) != 0) {
        opc_oai_error err;
        opc_oai_fail(&err, 404, "invalid_request_error", "model_not_found", "model",
                     "the model '%.200s' does not exist (this server has '%s')", id,
                     s->e->model_id);
        return send_error(rq, c, &err);
    }
    return send_json(rq, c, 200, model_object_json(s, 0));
}

/* ============================================================= stream ==== */

enum { ST_ROLE = 0, ST_TEXT, ST_END };

typedef struct stream_ctx {
    opc_server *srv;
    opc_srv_job *job;
    opc_oai_meta meta;
    char id[64];
    int fd;
    int stage;
    int include_usage;
    size_t seen;       /* bytes of the job's text already sent */
    char *piece;       /* new text fetched from the job */
    size_t piece_len, piece_cap;
    char *out;         /* formatted SSE bytes not yet handed to MHD */
    size_t out_len, out_off, out_cap;
} stream_ctx;

static int out_add(stream_ctx *sc, char *s /* heap; taken */) {
    if (!s) return 0;
    size_t n = strlen(s);
    if (sc->out_len + n > sc->out_cap) {
        size_t cap = sc->out_cap ? sc->out_cap : 1024;
        while (cap < sc->out_len + n) cap *= 2;
        char *t = realloc(sc->out, cap);
        if (!t) {
            free(s);
            return 0;
        }
        sc->out = t;
        sc->out_cap = cap;
    }
    memcpy(sc->out + sc->out_len, s, n);
    sc->out_len += n;
    free(s);
    return 1;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Format the stream's closing events for a finished job. */
static int stream_finish(stream_ctx *sc, const opc_job_view *v) {
    int ok = 1;
    if (v->finish == OPC_FINISH_ERROR || v->finish == OPC_FINISH_CANCELLED) {
        opc_oai_error err;
        opc_oai_fail(&err, 500, "server_error", NULL, "", "generation failed: %s",
                     v->error[0] ? v->error : opc_finish_str(v->finish));
        ok = out_add(sc, opc_oai_error_sse(&err));
    } else {
        ok = out_add(sc, opc_oai_final_sse(&sc->meta, v->finish));
        if (ok && sc->include_usage)
            ok = out_add(sc, opc_oai_usage_sse(&sc->meta, v->n_prompt, v->n_gen));
    }
    return ok && out_add(sc, dup_str("data: [DONE]\n\n"));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *sc = cls;
    (void)pos;
    for (;;) {
        if (sc->out_off < sc->out_len) {
            size_t n = sc->out_len - sc->out_off;
            if (n > max) n = max;
            memcpy(buf, sc->out + sc->out_off, n);
            sc->out_off += n;
            return (ssize_t)n;
        }
        sc->out_off = sc->out_len = 0;
        if (sc->stage == ST_END) return MHD_CONTENT_READER_END_OF_STREAM;
        if (sc->stage == ST_ROLE) {
            sc->stage = ST_TEXT;
            if (sc->meta.kind == OPC_OAI_CHAT &&
                !out_add(sc, opc_oai_chunk_sse(&sc->meta, "", 0, 1)))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        opc_job_view v;
        sc->piece_len = 0;
        if (opc_sched_wait(sc->srv->sched, sc->job, sc->seen, WAIT_SLICE_S, &v, &sc->piece,
                           &sc->piece_len, &sc->piece_cap) != OPC_OK)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (sc->piece_len > 0) {
            sc->seen += sc->piece_len;
            if (!out_add(sc, opc_oai_chunk_sse(&sc->meta, sc->piece, sc->piece_len, 0)))
                return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (v.done && sc->seen >= v.n_ready) {
            if (!stream_finish(sc, &v)) return MHD_CONTENT_READER_END_WITH_ERROR;
            sc->stage = ST_END;
            continue;
        }
        if (sc->out_len == 0 && peer_closed(sc->fd)) {
            opc_sched_cancel(sc->srv->sched, sc->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

/* MHD is done with the response (sent, or the client went away). */
static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    opc_sched_cancel(sc->srv->sched, sc->job); /* no-op when already finished */
    opc_sched_job_release(sc->srv->sched, sc->job);
    free(sc->piece);
    free(sc->out);
    free(sc);
}

/* ========================================================= generation ==== */

static void parse_acquire(req_ctx *rq) {
    while (sem_wait(&rq->srv->parse_sem) != 0 && errno == EINTR) {
    }
    rq->parse_held = 1;
}

static void parse_release(req_ctx *rq) {
    if (!rq->parse_held) return;
    rq->parse_held = 0;
    sem_post(&rq->srv->parse_sem);
}

static enum MHD_Result fail(req_ctx *rq, struct MHD_Connection *c, opc_oai_req *r,
                            int32_t *ids, int http, const char *type, const char *code,
                            const char *param, const char *msg) {
    parse_release(rq);
    opc_oai_error err;
    opc_oai_fail(&err, http, type, code, param, "%s", msg);
    opc_oai_req_free(r);
    free(ids);
    return send_error(rq, c, &err);
}

static enum MHD_Result handle_generate(req_ctx *rq, struct MHD_Connection *c) {
    opc_server *s = rq->srv;
    opc_engine *e = s->e;
    opc_oai_kind kind = rq->r == R_CHAT ? OPC_OAI_CHAT : OPC_OAI_COMPLETION;
    opc_oai_req r;
    opc_oai_error err;
    char msg[512];
    parse_acquire(rq);
    if (opc_oai_parse(kind, rq->body ? rq->body : "", rq->len, e->n_ctx, e->n_vocab, &r, &err)) {
        opc_oai_req_free(&r);
        parse_release(rq);
        return send_error(rq, c, &err);
    }
    if (r.model && strcmp(r.model, e->model_id) != 0) {
        snprintf(msg, sizeof msg, "the model '%.200s' does not exist (this server has '%s')",
                 r.model, e->model_id);
        return fail(rq, c, &r, NULL, 404, "invalid_request_error", "model_not_found", "model", msg);
    }

    /* ---- prompt -> token ids (in this connection's thread) */
    size_t cap = (size_t)e->n_ctx;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return fail(rq, c, &r, NULL, 500, "server_error", NULL, "", "out of memory");
    size_t n = 0;
    opc_status st = OPC_OK;
    if (r.prompt_ids) {
        n = r.n_prompt_ids;
        memcpy(ids, r.prompt_ids, n * sizeof *ids);
    } else if (kind == OPC_OAI_COMPLETION) {
        st = e->encode(e, r.prompt, r.prompt_len, ids, cap, &n);
    } else {
        st = e->chat_encode(e, r.msgs, r.n_msgs, ids, cap, &n);
    }
    if (st == OPC_ERR_INVALID_ARG && n > cap) {
        snprintf(msg, sizeof msg,
                 "this model's context is %d tokens, but the prompt has %zu tokens",
                 (int)e->n_ctx, n);
        return fail(rq, c, &r, ids, 400, "invalid_request_error", "context_length_exceeded",
                    kind == OPC_OAI_CHAT ? "messages" : "prompt", msg);
    }
    if (st == OPC_ERR_UNSUPPORTED || st == OPC_ERR_NOT_FOUND) {
        snprintf(msg, sizeof msg, "this model cannot chat: %s", opc_last_error());
        return fail(rq, c, &r, ids, 400, "invalid_request_error", "chat_template_unsupported",
                    "messages", msg);
    }
    if (st != OPC_OK) {
        snprintf(msg, sizeof msg, "tokenization failed: %s: %s", opc_status_str(st),
                 opc_last_error());
        return fail(rq, c, &r, ids, st == OPC_ERR_INVALID_ARG ? 400 : 500,
                    st == OPC_ERR_INVALID_ARG ? "invalid_request_error" : "server_error", NULL,
                    "", msg);
    }
    if (n == 0)
        return fail(rq, c, &r, ids, 400, "invalid_request_error", "invalid_value", "prompt",
                    "the prompt is empty (no tokens) and this model has no BOS token");
    if (n >= (size_t)e->n_ctx) {
        snprintf(msg, sizeof msg,
                 "this model's context is %d tokens, but the prompt has %zu tokens (at least "
                 "one must be left for the completion)",
                 (int)e->n_ctx, n);
        return fail(rq, c, &r, ids, 400, "invalid_request_error", "context_length_exceeded",
                    kind == OPC_OAI_CHAT ? "messages" : "prompt", msg);
    }
    int32_t room = e->n_ctx - (int32_t)n;
    int32_t max_tokens;
    if (r.has_max_tokens) {
        if (r.max_tokens > room) {
            snprintf(msg, sizeof msg,
                     "this model's context is %d tokens, but %zu prompt tokens + %d for the "
                     "completion were requested",
                     (int)e->n_ctx, n, (int)r.max_tokens);
            return fail(rq, c, &r, ids, 400, "invalid_request_error", "context_length_exceeded",
                        "max_tokens", msg);
        }
        max_tokens = r.max_tokens;
    } else {
        /* OpenAI's defaults: 16 for completions, "until done" for chat */
        max_tokens = kind == OPC_OAI_COMPLETION ? (room < 16 ? room : 16) : room;
    }

    /* ---- queue the job */
    opc_job_params jp;
    memset(&jp, 0, sizeof jp);
    jp.prompt = ids;
    jp.n_prompt = n;
    jp.max_tokens = max_tokens;
    jp.sampling.temperature = r.temperature;
    jp.sampling.top_p = r.top_p;
    jp.sampling.seed = r.has_seed ? r.seed : fresh_seed(s);
    for (int32_t i = 0; i < r.n_stop; i++) jp.stop[i] = r.stop[i];
    jp.n_stop = r.n_stop;
    opc_srv_job *job = NULL;
    st = opc_sched_job_new(&jp, &job);
    free(ids);
    ids = NULL;
    int stream = r.stream, include_usage = r.include_usage;
    opc_oai_req_free(&r); /* the job holds copies of everything it needs */
    parse_release(rq);
    if (st != OPC_OK)
        return fail(rq, c, &r, NULL, 500, "server_error", NULL, "", opc_last_error());
    opc_submit_result sr = opc_sched_submit(s->sched, job);
    if (sr != OPC_SUBMIT_OK) {
        opc_sched_job_release(NULL, job);
        return fail(rq, c, &r, NULL, 503, "server_error",
                    sr == OPC_SUBMIT_QUEUE_FULL ? "server_busy" : "shutting_down", "",
                    sr == OPC_SUBMIT_QUEUE_FULL
                        ? "the server is busy: every slot and queue place is taken; retry later"
                        : "the server is shutting down");
    }

    char id[64];
    make_id(s, kind == OPC_OAI_CHAT ? "chatcmpl" : "cmpl", id, sizeof id);
    opc_oai_meta meta = {kind, NULL, (long long)time(NULL), e->model_id};

    if (stream) {
        stream_ctx *sc = calloc(1, sizeof *sc);
        if (!sc) {
            opc_sched_cancel(s->sched, job);
            opc_sched_job_release(s->sched, job);
            return fail(rq, c, &r, NULL, 500, "server_error", NULL, "", "out of memory");
        }
        sc->srv = s;
        sc->job = job;
        sc->meta = meta;
        snprintf(sc->id, sizeof sc->id, "%s", id);
        sc->meta.id = sc->id;
        sc->fd = conn_fd(c);
        sc->include_usage = include_usage;
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, sc, stream_free);
        if (!resp) {
            stream_free(sc);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        rq->status = 200;
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp); /* stream_free runs when MHD lets go of it */
        return ret;
    }

    /* ---- non-stream: wait here (thread per connection), watching the socket */
    int fd = conn_fd(c);
    char *text = NULL;
    size_t tlen = 0, tcap = 0;
    opc_job_view v;
    for (;;) {
        if (opc_sched_wait(s->sched, job, tlen, WAIT_SLICE_S, &v, &text, &tlen, &tcap) != OPC_OK) {
            opc_sched_cancel(s->sched, job);
            opc_sched_job_release(s->sched, job);
            free(text);
            return fail(rq, c, &r, NULL, 500, "server_error", NULL, "", "out of memory");
        }
        if (v.done) break;
        if (peer_closed(fd)) {
            opc_sched_cancel(s->sched, job);
            opc_sched_job_release(s->sched, job);
            free(text);
            rq->status = 499; /* nginx's "client closed request", for the log only */
            return MHD_NO;
        }
    }
    opc_sched_job_release(s->sched, job);
    if (v.finish == OPC_FINISH_ERROR || v.finish == OPC_FINISH_CANCELLED) {
        free(text);
        int down = atomic_load(&s->stopping);
        snprintf(msg, sizeof msg, "generation failed: %s", v.error[0] ? v.error : "cancelled");
        return fail(rq, c, &r, NULL, down ? 503 : 500, "server_error", down ? "shutting_down" : NULL,
                    "", msg);
    }
    meta.id = id;
    char *json = opc_oai_response_json(&meta, text, tlen, v.finish, v.n_prompt, v.n_gen);
    free(text);
    return send_json(rq, c, 200, json);
}

/* =========================================================== dispatch ==== */

static route classify(const char *url, const char *method, int *method_ok) {
    route r = R_NONE;
    if (!strcmp(url, "/health")) r = R_HEALTH;
    else if (!strcmp(url, "/v1/models")) r = R_MODELS;
    else if (!strncmp(url, "/v1/models/", 11) && url[11]) r = R_MODEL_ONE;
    else if (!strcmp(url, "/v1/completions")) r = R_COMPLETIONS;
    else if (!strcmp(url, "/v1/chat/completions")) r = R_CHAT;
    int post = !strcmp(method, "POST");
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    *method_ok = (r == R_COMPLETIONS || r == R_CHAT) ? post : get;
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    opc_server *s = cls;
    req_ctx *rq = *con_cls;
    (void)version;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        rq->srv = s;
        rq->t0 = opc_time_s();
        snprintf(rq->method, sizeof rq->method, "%s", method);
        snprintf(rq->url, sizeof rq->url, "%s", url);
        int method_ok = 0;
        rq->r = classify(url, method, &method_ok);
        if (rq->r == R_NONE) {
            rq->has_early = 1;
            opc_oai_fail(&rq->early, 404, "invalid_request_error", "unknown_url", "",
                         "unknown route: %.8s %.80s", method, url);
        } else if (!method_ok) {
            rq->has_early = 1;
            opc_oai_fail(&rq->early, 405, "invalid_request_error", "method_not_allowed", "",
                         "%.8s is not allowed on %.80s", method, url);
        } else if (s->api_key[0] && rq->r != R_HEALTH) {
            const char *auth =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
            if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
                rq->has_early = 1;
                opc_oai_fail(&rq->early, 401, "invalid_request_error", "missing_api_key", "",
                             "no API key: send 'Authorization: Bearer <key>'");
            } else if (!key_equal(auth + 7, s->api_key)) {
                rq->has_early = 1;
                opc_oai_fail(&rq->early, 401, "invalid_request_error", "invalid_api_key", "",
                             "incorrect API key");
            }
        }
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno == 0 && *end == '\0' && v > s->o.max_body) {
                opc_oai_fail(&rq->early, 413, "invalid_request_error", "request_too_large", "",
                             "the request body is %llu bytes; the limit is %zu", v,
                             s->o.max_body);
                rq->has_early = 1;
                /* far too big to drain: answer now; MHD closes the connection */
                if (v / BODY_DRAIN_FACTOR > s->o.max_body) return send_error(rq, c, &rq->early);
            }
        }
        return MHD_YES;
    }

    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        rq->received += n;
        if (rq->received > (uint64_t)s->o.max_body * BODY_DRAIN_FACTOR) return MHD_NO;
        if (rq->has_early) return MHD_YES; /* drain and discard */
        if (rq->len + n > s->o.max_body) {
            rq->has_early = 1;
            opc_oai_fail(&rq->early, 413, "invalid_request_error", "request_too_large", "",
                         "the request body exceeds the limit of %zu bytes", s->o.max_body);
            free(rq->body);
            rq->body = NULL;
            rq->len = rq->cap = 0;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1) cap *= 2;
            char *t = realloc(rq->body, cap);
            if (!t) return MHD_NO;
            rq->body = t;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }

    /* the whole request is here */
    if (rq->status) return MHD_YES; /* already answered (early 413) */
    if (rq->has_early) return send_error(rq, c, &rq->early);
    if (rq->r == R_COMPLETIONS || rq->r == R_CHAT) {
        if (atomic_load(&s->stopping)) {
            opc_oai_error err;
            opc_oai_fail(&err, 503, "server_error", "shutting_down", "", "the server is shutting down");
            return send_error(rq, c, &err);
        }
        return handle_generate(rq, c);
    }
    return handle_get(rq, c, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    req_ctx *rq = *con_cls;
    if (!rq) return;
    parse_release(rq);
    opc_log(OPC_LOG_INFO, "serve: %s %s -> %d%s (%.3f s)", rq->method, rq->url, rq->status,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)",
            opc_time_s() - rq->t0);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
    opc_log(OPC_LOG_DEBUG, "serve: libmicrohttpd: %s", buf);
}

/* ========================================================= start/stop ==== */

opc_status opc_server_start(const opc_server_opts *o, opc_engine *engine, opc_server **out) {
    *out = NULL;
    opc_server_opts def;
    opc_server_opts_default(&def);
    if (!o) o = &def;
    if (!engine) return opc_error(OPC_ERR_INVALID_ARG, "serve: no engine");
    if (o->port < 0 || o->port > 65535)
        return opc_error(OPC_ERR_INVALID_ARG, "serve: --port %d is outside 0..65535", o->port);
    if (o->queue_cap < 1 || o->max_conns < 1 || o->max_body < 64 || o->conn_timeout < 1)
        return opc_error(OPC_ERR_INVALID_ARG, "serve: queue, connection and body limits must be positive");
    if (o->api_key && strlen(o->api_key) >= sizeof(((opc_server *)0)->api_key))
        return opc_error(OPC_ERR_INVALID_ARG, "serve: --api-key is longer than 255 bytes");

    opc_server *s = calloc(1, sizeof *s);
    if (!s) return opc_error(OPC_ERR_NOMEM, "serve: out of memory");
    s->e = engine;
    s->o = *o;
    snprintf(s->host, sizeof s->host, "%s", o->host ? o->host : "127.0.0.1");
    s->o.host = s->host;
    snprintf(s->api_key, sizeof s->api_key, "%s", o->api_key ? o->api_key : "");
    s->o.api_key = s->api_key;
    s->started = (long long)time(NULL);
    if (sem_init(&s->parse_sem, 0, PARSE_SLOTS) != 0) {
        free(s);
        return opc_error(OPC_ERR_INTERNAL, "serve: sem_init failed");
    }

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(s->host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        sem_destroy(&s->parse_sem);
        free(s);
        return opc_error(OPC_ERR_INVALID_ARG, "serve: --host %s: %s", o->host ? o->host : "",
                         gai_strerror(gai));
    }

    opc_status st = opc_sched_init(&s->sched, engine, o->queue_cap);
    if (st != OPC_OK) {
        freeaddrinfo(ai);
        sem_destroy(&s->parse_sem);
        free(s);
        return st;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_conns,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        int err = errno;
        opc_sched_free(s->sched);
        opc_status e = opc_error(OPC_ERR_IO, "serve: cannot listen on %s:%d: %s", s->host,
                                 o->port, err ? strerror(err) : "libmicrohttpd refused");
        sem_destroy(&s->parse_sem);
        free(s);
        return e;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di && di->port ? di->port : o->port;
    *out = s;
    return OPC_OK;
}

void opc_server_stop(opc_server *s, double grace_s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    /* Let running jobs finish (new ones get 503), then end the rest: their
     * waiting connection threads see the jobs done and close their answers. */
    opc_sched_shutdown(s->sched, grace_s);
    MHD_stop_daemon(s->d); /* joins every connection thread */
    opc_sched_free(s->sched);
    sem_destroy(&s->parse_sem);
    free(s);
}
