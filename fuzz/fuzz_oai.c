/*
 * fuzz_oai.c — libFuzzer target for the server's request validation
 * (opc_oai_parse): the bytes every HTTP client controls.
 *
 * Each input is parsed as a completions body and as a chat body. Accepted
 * requests must satisfy what http.c relies on (bounds, counts, non-NULL
 * strings), and the response builders must turn arbitrary bytes (here: the
 * input itself as "model output") into valid UTF-8 JSON.
 *
 * Build: CC=clang cmake -S . -B build/fuzz -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF
 *        cmake --build build/fuzz --target fuzz_oai
 * Run:   build/fuzz/fuzz_oai fuzz/corpus/oai
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef OPC_HAVE_SERVER
#include "core/core.h"
#include "server/oai.h"

#define FUZZ_CTX 128
#define FUZZ_VOCAB 512

static void check_req(const opc_oai_req *r) {
    if (r->has_max_tokens) OPC_ASSERT(r->max_tokens >= 1 && r->max_tokens <= FUZZ_CTX);
    OPC_ASSERT(r->temperature >= 0 && r->temperature <= 2);
    OPC_ASSERT(r->top_p >= 0 && r->top_p <= 1);
    OPC_ASSERT(r->n_stop >= 0 && r->n_stop <= OPC_SRV_MAX_STOP);
    for (int32_t i = 0; i < r->n_stop; i++)
        OPC_ASSERT(r->stop[i] && r->stop[i][0] && strlen(r->stop[i]) <= OPC_SRV_MAX_STOP_LEN);
    if (r->kind == OPC_OAI_COMPLETION) {
        OPC_ASSERT(r->prompt || r->prompt_ids);
        for (size_t i = 0; i < r->n_prompt_ids; i++)
            OPC_ASSERT(r->prompt_ids[i] >= 0 && r->prompt_ids[i] < FUZZ_VOCAB);
        if (r->prompt_ids) OPC_ASSERT(r->n_prompt_ids > 0 && r->n_prompt_ids < FUZZ_CTX);
    } else {
        OPC_ASSERT(r->n_msgs > 0 && r->msgs);
        for (size_t i = 0; i < r->n_msgs; i++) OPC_ASSERT(r->msgs[i].role && r->msgs[i].content);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int kind = 0; kind < 2; kind++) {
        opc_oai_req r;
        opc_oai_error err;
        memset(&err, 0, sizeof err);
        if (opc_oai_parse((opc_oai_kind)kind, (const char *)data, size, FUZZ_CTX, FUZZ_VOCAB, &r,
                          &err) == 0) {
            check_req(&r);
        } else {
            OPC_ASSERT(err.http >= 400 && err.http < 600 && err.message[0]);
            char *j = opc_oai_error_json(&err);
            OPC_ASSERT(!j || opc_utf8_valid(j, strlen(j), NULL));
            free(j);
        }
        opc_oai_req_free(&r);
    }
    opc_oai_meta m = {OPC_OAI_CHAT, "chatcmpl-fuzz", 0, "fuzz"};
    char *j = opc_oai_response_json(&m, (const char *)data, size, OPC_FINISH_STOP, 1, 1);
    OPC_ASSERT(!j || opc_utf8_valid(j, strlen(j), NULL));
    free(j);
    j = opc_oai_chunk_sse(&m, (const char *)data, size, 0);
    OPC_ASSERT(!j || opc_utf8_valid(j, strlen(j), NULL));
    free(j);
    return 0;
}

#else /* built without libmicrohttpd: nothing to fuzz */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)data;
    (void)size;
    return 0;
}
#endif
