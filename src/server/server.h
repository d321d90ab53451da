/*
 * server.h — the OpenAI-compatible HTTP server behind `opacc1ty serve`.
 *
 *   GET  /health                 liveness + slot/queue counters (no API key needed)
 *   GET  /v1/models              the one loaded model
 *   GET  /v1/models/{id}
 *   POST /v1/completions         prompt -> text (stream: Server-Sent Events)
 *   POST /v1/chat/completions    messages -> assistant message (model's chat template)
 *
 * libmicrohttpd runs one thread per connection; requests become jobs of the
 * scheduler (sched.h), whose single worker thread owns the engine.
 */
#ifndef OPC_SERVER_H
#define OPC_SERVER_H

#include "engine.h"

#include <stddef.h>
#include <stdint.h>

typedef struct opc_server_opts {
    const char *host;     /* numeric address or name to bind; default "127.0.0.1" */
    int port;             /* 0: let the kernel pick (see opc_server_port) */
    const char *api_key;  /* NULL/"": no authentication */
    int32_t queue_cap;    /* requests waiting for a slot before 503; default 64 */
    size_t max_body;      /* request body cap in bytes; default 1 MiB */
    int32_t max_conns;    /* concurrent connections; default 128 */
    int32_t conn_timeout; /* idle connection timeout, seconds; default 60 */
} opc_server_opts;

void opc_server_opts_default(opc_server_opts *o);

typedef struct opc_server opc_server;

/* Bind and start serving with `engine` (borrowed; must outlive the server).
 * Errors: INVALID_ARG (bad host/port/options), IO (cannot bind), NOMEM. */
opc_status opc_server_start(const opc_server_opts *o, opc_engine *engine, opc_server **out);

/* The port actually bound (useful with port 0). */
int opc_server_port(const opc_server *s);

/* Graceful stop: refuse new requests (503), let running ones finish for up to
 * grace_s seconds, end the rest, close every connection, free. NULL-safe. */
void opc_server_stop(opc_server *s, double grace_s);

#endif /* OPC_SERVER_H */
