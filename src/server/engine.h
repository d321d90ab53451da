/*
 * engine.h — what the HTTP server needs from a model runtime.
 *
 * The server (http.c, sched.c) never touches the forward pass, the tokenizer
 * or the sampler directly: it talks to an opc_engine, a small table of
 * functions over a fixed number of "slots". A slot is one sequence in flight
 * (its own KV cache, sampler state and streaming detokenizer). The real engine
 * (engine_model.c) runs the model; the unit tests plug in a deterministic fake.
 *
 * Threading contract
 *   - encode / chat_encode may be called from any HTTP connection thread at any
 *     time, concurrently with each other and with the worker.
 *   - begin / step / end are called only from the scheduler's single worker
 *     thread, never concurrently.
 */
#ifndef OPC_SERVER_ENGINE_H
#define OPC_SERVER_ENGINE_H

#include "../core/core.h"
#include "../model/chat.h" /* opc_chat_msg {role, content}: borrowed for the call */

#include <stddef.h>
#include <stdint.h>

/* Sampling parameters of one request (already validated by the server). */
typedef struct opc_srv_sampling {
    float temperature; /* 0 = greedy */
    float top_p;       /* [0, 1]; 1 = no nucleus cut (a request's 0 arrives as temperature 0) */
    uint64_t seed;
} opc_srv_sampling;

/* Result of one decode step for one slot. `text` points into engine-owned
 * per-slot storage, valid until the next step() or end() of that slot. */
typedef struct opc_engine_out {
    int none;         /* no token this step: the slot is still reading its prompt */
    int32_t token;    /* sampled token id */
    int eog;          /* end of generation (EOS / end-of-turn): token is not output text */
    const char *text; /* complete UTF-8 bytes this token adds (may be empty) */
    size_t len;
} opc_engine_out;

typedef struct opc_engine opc_engine;

struct opc_engine {
    void *impl;
    char model_id[128]; /* the name clients pass as "model" */
    int32_t n_ctx;      /* positions per slot (prompt + completion) */
    int32_t n_slots;    /* sequences that can be in flight at once */
    int32_t n_vocab;    /* valid token ids are [0, n_vocab) */

    /* Tokenize a completion prompt (BOS added as the vocabulary asks). Writes at
     * most cap ids; *n is the full count. Returns INVALID_ARG when it exceeds
     * cap (so the caller can report "prompt too long" with the real length). */
    opc_status (*encode)(opc_engine *e, const char *text, size_t len, int32_t *ids, size_t cap,
                         size_t *n);

    /* Render chat messages with the model's chat template (generation prompt
     * appended) and tokenize the result; cap/n as for encode. Returns
     * NOT_FOUND (no template) or UNSUPPORTED (a template family we cannot
     * render) when the model cannot chat; the server answers those with 400. */
    opc_status (*chat_encode)(opc_engine *e, const opc_chat_msg *msgs, size_t n_msgs,
                              int32_t *ids, size_t cap, size_t *n);

    /* Worker thread only. Start a sequence in `slot`: reset its state and take
     * (a copy of) the prompt ids[0..n) (1 <= n < n_ctx). The engine may read the
     * prompt here or over the following steps (reporting `none`), so one long
     * prompt does not stall the other slots' streams. */
    opc_status (*begin)(opc_engine *e, int32_t slot, const int32_t *ids, size_t n,
                        const opc_srv_sampling *s);

    /* Worker thread only. Produce the next token for each of slots[0..n): out[i]
     * belongs to slots[i]. An engine may batch these into one forward pass or
     * run them one after another. A slot whose position reached n_ctx must not
     * be stepped (the scheduler guarantees prompt + max_tokens <= n_ctx). */
    opc_status (*step)(opc_engine *e, const int32_t *slots, int32_t n, opc_engine_out *out);

    /* Worker thread only. Release a slot (after finish, error or cancel). */
    void (*end)(opc_engine *e, int32_t slot);

    /* Optional (NULL: none). Worker thread only. How many leading tokens of
     * ids[0..n) the free `slot` still holds in its KV cache from its last
     * request; the scheduler gives a job the free slot with the longest match,
     * so a chat that resends its history skips re-reading it. */
    int32_t (*prefix)(opc_engine *e, int32_t slot, const int32_t *ids, size_t n);

    /* Free the engine and everything it owns (NULL-safe via opc_engine_free). */
    void (*destroy)(opc_engine *e);
};

static inline void opc_engine_free(opc_engine *e) {
    if (e && e->destroy) e->destroy(e);
}

/* ------------------------------------------------- the real engine ---- */

typedef enum opc_engine_device {
    OPC_ENGINE_CPU = 0, /* src/model/forward.h */
    OPC_ENGINE_CUDA     /* src/cuda/forward_cuda.h; only in builds with OPC_HAVE_CUDA */
} opc_engine_device;

/* The model engine: opc_model_desc + forward pass (CPU or CUDA) + sampler +
 * tokenizer + chat template (engine_model.c). Each slot owns a forward handle
 * (its own KV cache); slots are decoded one after another inside step(). */
typedef struct opc_engine_model_opts {
    int32_t n_ctx;     /* <= 0: min(model's trained context, 2048) */
    int32_t n_slots;   /* >= 1 */
    int32_t n_threads; /* CPU: <= 0 means OpenMP's default */
    const char *model_id; /* NULL: the file name without directory and extension */
    opc_engine_device device;
} opc_engine_model_opts;

opc_status opc_engine_model_open(const char *model_path, const opc_engine_model_opts *o,
                                 opc_engine **out);

#endif /* OPC_SERVER_ENGINE_H */
