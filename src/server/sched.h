/*
 * sched.h — the request queue and decode loop behind the HTTP server.
 *
 * Requests become jobs. A bounded FIFO queue feeds the engine's slots; one
 * worker thread owns the engine and runs an iteration-level loop:
 *
 *     admit queued jobs into free slots (prefill) -> one decode step for every
 *     active slot -> append text, check stop strings / max_tokens / EOS /
 *     cancellation -> wake the connection threads waiting on those jobs.
 *
 * A job that finishes or is cancelled frees its slot before the next step,
 * so new requests join between tokens, not between requests.
 *
 * Ownership: a job is reference counted. opc_sched_job_new returns one ref for
 * the caller; a successful submit adds one held by the scheduler until the job
 * leaves its slot. The job is freed when the last ref is released.
 */
#ifndef OPC_SERVER_SCHED_H
#define OPC_SERVER_SCHED_H

#include "engine.h"

#include <stddef.h>
#include <stdint.h>

#define OPC_SRV_MAX_STOP 4       /* OpenAI allows up to 4 stop sequences */
#define OPC_SRV_MAX_STOP_LEN 256 /* bytes per stop sequence */

typedef enum opc_finish {
    OPC_FINISH_NONE = 0, /* still running */
    OPC_FINISH_STOP,     /* EOS / end-of-turn token or a stop sequence */
    OPC_FINISH_LENGTH,   /* max_tokens reached */
    OPC_FINISH_ERROR,    /* engine failure or shutdown: see the job's error text */
    OPC_FINISH_CANCELLED /* the client went away */
} opc_finish;

const char *opc_finish_str(opc_finish f); /* "stop", "length", ... */

typedef struct opc_sched opc_sched;
typedef struct opc_srv_job opc_srv_job;

/* What a request asks the worker to do (copied into the job). */
typedef struct opc_job_params {
    const int32_t *prompt; /* (n_prompt) token ids, 1 <= n_prompt, n_prompt + max_tokens <= n_ctx */
    size_t n_prompt;
    int32_t max_tokens; /* >= 1 */
    opc_srv_sampling sampling;
    const char *stop[OPC_SRV_MAX_STOP]; /* non-empty UTF-8 strings */
    int32_t n_stop;
} opc_job_params;

/* A consistent snapshot of a job, taken under the scheduler's lock. */
typedef struct opc_job_view {
    size_t n_ready;    /* bytes of output text that are final (no pending stop-prefix) */
    int done;          /* finished: n_ready covers the whole output */
    opc_finish finish; /* valid when done */
    int32_t n_prompt;
    int32_t n_gen; /* completion tokens produced so far (EOS not counted) */
    char error[256];
} opc_job_view;

/* Start the worker over `engine` (borrowed; must outlive the scheduler).
 * queue_cap: jobs that may wait for a slot (>= 1). */
opc_status opc_sched_init(opc_sched **out, opc_engine *engine, int32_t queue_cap);

/* Stop taking jobs; give running and queued jobs up to grace_s seconds to
 * finish, then end the rest with OPC_FINISH_ERROR ("server shutting down") and
 * join the worker. Waiters are woken. Idempotent. */
void opc_sched_shutdown(opc_sched *s, double grace_s);

/* Shut down (grace 0) and free. Every job must have been released. NULL-safe. */
void opc_sched_free(opc_sched *s);

/* A new job (one ref for the caller). NOMEM / INVALID_ARG on failure. */
opc_status opc_sched_job_new(const opc_job_params *p, opc_srv_job **out);
void opc_sched_job_release(opc_sched *s, opc_srv_job *j); /* drop one ref; NULL-safe */

typedef enum opc_submit_result {
    OPC_SUBMIT_OK = 0,
    OPC_SUBMIT_QUEUE_FULL,   /* -> HTTP 503 */
    OPC_SUBMIT_SHUTTING_DOWN /* -> HTTP 503 */
} opc_submit_result;

opc_submit_result opc_sched_submit(opc_sched *s, opc_srv_job *j);

/* Ask the worker to drop the job (client gone). Queued jobs leave the queue
 * at once; running ones free their slot before the next decode step. */
void opc_sched_cancel(opc_sched *s, opc_srv_job *j);

/* Wait until the job has more than `seen` ready bytes or is done, at most
 * timeout_s seconds. Fills *v; appends the new bytes text[seen..n_ready) to
 * *buf (growable heap buffer, *len bytes used of *cap). Returns NOMEM if the
 * buffer cannot grow. */
opc_status opc_sched_wait(opc_sched *s, opc_srv_job *j, size_t seen, double timeout_s,
                          opc_job_view *v, char **buf, size_t *len, size_t *cap);

/* Counters for /health and tests. */
typedef struct opc_sched_stats {
    int32_t queued, active, n_slots, queue_cap;
    uint64_t completed, cancelled, failed, rejected;
} opc_sched_stats;
void opc_sched_get_stats(opc_sched *s, opc_sched_stats *st);

#endif /* OPC_SERVER_SCHED_H */
