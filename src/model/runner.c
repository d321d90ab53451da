/*
 * runner.c — dispatch of one forward call to the CPU or the CUDA pass.
 */
#include "runner.h"

#include <string.h>

#ifdef OPC_HAVE_CUDA
#include "../cuda/forward_cuda.h"
#endif

int opc_runner_have_cuda(void) {
#ifdef OPC_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

opc_status opc_runner_init(opc_runner *r, const opc_model_desc *d, const char *device, int32_t ctx,
                           int32_t max_batch, int32_t n_threads) {
    memset(r, 0, sizeof *r);
    if (!device || !strcmp(device, "cpu")) {
        opc_status st = opc_forward_init(&r->cpu, d, ctx, max_batch, n_threads);
        if (st == OPC_OK) r->max_batch = opc_forward_max_batch(r->cpu);
        return st;
    }
    if (strcmp(device, "cuda"))
        return opc_error(OPC_ERR_INVALID_ARG, "device must be cpu or cuda, got '%s'", device);
#ifdef OPC_HAVE_CUDA
    opc_status st = opc_cuda_forward_init(&r->cuda, d, ctx, max_batch);
    if (st == OPC_OK) r->max_batch = max_batch;
    return st;
#else
    return opc_error(OPC_ERR_UNSUPPORTED, "this build has no CUDA support (nvcc was not found)");
#endif
}

void opc_runner_free(opc_runner *r) {
    if (!r) return;
    opc_forward_free(r->cpu);
#ifdef OPC_HAVE_CUDA
    opc_cuda_forward_free(r->cuda);
#endif
    memset(r, 0, sizeof *r);
}

opc_runner opc_runner_cpu(opc_forward *f) {
    opc_runner r = {f, NULL, opc_forward_max_batch(f)};
    return r;
}

opc_status opc_runner_run(const opc_runner *r, const int32_t *tokens, int32_t n, int32_t pos,
                          float *logits, opc_logits_mode mode) {
#ifdef OPC_HAVE_CUDA
    if (r->cuda) return opc_cuda_forward_run(r->cuda, tokens, n, pos, logits, mode);
#endif
    return opc_forward_run(r->cpu, tokens, n, pos, logits, mode);
}

opc_status opc_runner_greedy(const opc_runner *r, int32_t tok, int32_t pos, int32_t n_steps, int32_t *out) {
#ifdef OPC_HAVE_CUDA
    if (r->cuda) return opc_cuda_forward_greedy(r->cuda, tok, pos, n_steps, out);
#endif
    (void)tok, (void)pos, (void)n_steps, (void)out;
    return opc_error(OPC_ERR_UNSUPPORTED, "greedy decoding on the device needs the cuda runner");
}

opc_status opc_runner_sample(const opc_runner *r, int32_t tok, int32_t pos, int32_t n_steps,
                             const opc_sampler_params *p, uint64_t *rng, int32_t *out) {
#ifdef OPC_HAVE_CUDA
    if (r->cuda) return opc_cuda_forward_sample(r->cuda, tok, pos, n_steps, p, rng, out);
#endif
    (void)tok, (void)pos, (void)n_steps, (void)p, (void)rng, (void)out;
    return opc_error(OPC_ERR_UNSUPPORTED, "sampling on the device needs the cuda runner");
}

const opc_config *opc_runner_config(const opc_runner *r) {
#ifdef OPC_HAVE_CUDA
    if (r->cuda) return opc_cuda_forward_config(r->cuda);
#endif
    return opc_forward_config(r->cpu);
}

int32_t opc_runner_ctx(const opc_runner *r) {
#ifdef OPC_HAVE_CUDA
    if (r->cuda) return opc_cuda_forward_ctx(r->cuda);
#endif
    return opc_forward_ctx(r->cpu);
}

const char *opc_runner_device(const opc_runner *r) { return r->cuda ? "cuda" : "cpu"; }
