/*
 * cmd_serve.c — `opacc1ty serve MODEL`: an OpenAI-compatible HTTP server.
 *
 * SIGINT and SIGTERM are blocked in every thread (the mask is set before the
 * server starts any) and collected here with sigwait(), so shutdown runs in
 * ordinary code, not in a signal handler.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#ifdef OPC_HAVE_SERVER

#include "../server/engine.h"
#include "../server/server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: opacc1ty serve MODEL [options]\n"
            "\n"
            "Serve MODEL (.gguf, .bf2, llama2.c .bin or a Hugging Face folder) over an\n"
            "OpenAI-compatible HTTP API: GET /health, GET /v1/models,\n"
            "POST /v1/completions, POST /v1/chat/completions (stream: true for SSE).\n"
            "\n"
            "options:\n"
            "  --host ADDR        address to bind (default 127.0.0.1: loopback only)\n"
            "  --port N           TCP port (default 8080; 0 picks a free one)\n"
            "  --api-key KEY      require 'Authorization: Bearer KEY' (or set OPACC1TY_API_KEY)\n"
            "  --ctx N            context per request, prompt + completion\n"
            "                     (default min(model's trained context, 2048))\n"
            "  --parallel N       requests decoded at once; each slot holds its own KV cache\n"
            "                     and weight copy (default 1)\n"
            "  --queue N          requests waiting for a slot before 503 (default 64)\n"
            "  --threads N        CPU threads per forward pass (default: all)\n"
            "  --max-body BYTES   request body limit (default 1048576)\n"
            "  --model-id NAME    the name clients pass as \"model\" (default: file stem)\n"
            "  --device cpu|cuda  forward pass on the CPU (default) or one CUDA GPU\n"
            "  -v, --verbose      log every request to stderr\n");
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "opacc1ty serve: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int opc_cmd_serve(int argc, char **argv) {
    const char *model = NULL;
    opc_server_opts so;
    opc_server_opts_default(&so);
    opc_engine_model_opts eo = {0, 1, 0, NULL, OPC_ENGINE_CPU};
    const char *env_key = getenv("OPACC1TY_API_KEY");
    if (env_key && *env_key) so.api_key = env_key;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            serve_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = 1;
            continue;
        }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) {
                fprintf(stderr, "opacc1ty serve: %s needs a value\n", a);
                return 2;
            }
            const char *val = argv[++i];
            if (!strcmp(a, "--host")) so.host = val;
            else if (!strcmp(a, "--api-key")) so.api_key = val;
            else if (!strcmp(a, "--model-id")) eo.model_id = val;
            else if (!strcmp(a, "--port")) {
                if (parse_int(a, val, 0, 65535, &v)) return 2;
                so.port = (int)v;
            } else if (!strcmp(a, "--ctx")) {
                if (parse_int(a, val, 2, 1 << 20, &v)) return 2;
                eo.n_ctx = (int32_t)v;
            } else if (!strcmp(a, "--parallel")) {
                if (parse_int(a, val, 1, 256, &v)) return 2;
                eo.n_slots = (int32_t)v;
            } else if (!strcmp(a, "--queue")) {
                if (parse_int(a, val, 1, 100000, &v)) return 2;
                so.queue_cap = (int32_t)v;
            } else if (!strcmp(a, "--threads")) {
                if (parse_int(a, val, 1, 1024, &v)) return 2;
                eo.n_threads = (int32_t)v;
            } else if (!strcmp(a, "--max-body")) {
                if (parse_int(a, val, 64, INT_MAX, &v)) return 2;
                so.max_body = (size_t)v;
            } else if (!strcmp(a, "--device")) {
                if (!strcmp(val, "cpu")) eo.device = OPC_ENGINE_CPU;
                else if (!strcmp(val, "cuda")) eo.device = OPC_ENGINE_CUDA;
                else {
                    fprintf(stderr, "opacc1ty serve: --device must be 'cpu' or 'cuda', got '%s'\n", val);
                    return 2;
                }
            } else {
                fprintf(stderr, "opacc1ty serve: unknown option %s\n\n", a);
                serve_usage(stderr);
                return 2;
            }
            continue;
        }
        if (model) {
            fprintf(stderr, "opacc1ty serve: more than one MODEL given ('%s', '%s')\n", model, a);
            return 2;
        }
        model = a;
    }
    if (!model) {
        serve_usage(stderr);
        return 2;
    }
    /* connections outnumber slots + queue a little, so /health still answers when busy */
    so.max_conns = so.queue_cap + eo.n_slots + 16;
    if (verbose) opc_set_log(NULL, NULL, OPC_LOG_INFO);

    /* Block the shutdown signals before any thread exists: every thread
     * inherits the mask and only sigwait() below receives them. */
    sigset_t sigs;
    /* A shell starts background jobs with SIGINT ignored, and an ignored
     * signal never becomes pending for sigwait(): restore the default first
     * (blocked, so the default action never runs). */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN); /* a vanished client is an error return, not a kill */

    opc_engine *engine = NULL;
    double t0 = opc_time_s();
    opc_status st = opc_engine_model_open(model, &eo, &engine);
    if (st != OPC_OK) return opc_cli_fail(st, model);
    opc_server *srv = NULL;
    st = opc_server_start(&so, engine, &srv);
    if (st != OPC_OK) {
        opc_engine_free(engine);
        return opc_cli_fail(st, "serve");
    }
    int colon = strchr(so.host, ':') != NULL; /* IPv6 literal */
    printf("opacc1ty serve: model '%s' (ctx %d, %d slot%s, %s) loaded in %.2f s\n",
           engine->model_id, (int)engine->n_ctx, (int)engine->n_slots,
           engine->n_slots == 1 ? "" : "s", eo.device == OPC_ENGINE_CUDA ? "cuda" : "cpu",
           opc_time_s() - t0);
    printf("opacc1ty serve: listening on http://%s%s%s:%d%s\n", colon ? "[" : "", so.host,
           colon ? "]" : "", opc_server_port(srv), so.api_key ? " (API key required)" : "");
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "opacc1ty serve: %s received, shutting down\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    opc_server_stop(srv, 5.0);
    opc_engine_free(engine);
    fprintf(stderr, "opacc1ty serve: stopped\n");
    return 0;
}

#endif /* OPC_HAVE_SERVER */
