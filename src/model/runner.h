/*
 * runner.h — one forward pass, on the CPU or the GPU, behind one interface.
 *
 * Tools that only need "logits for these tokens at these positions"
 * (perplexity, generate, benchmark, the server) take an opc_runner and stay
 * device-agnostic. Exactly one of cpu / cuda is set. Without CUDA support
 * compiled in, asking for "cuda" is UNSUPPORTED with a message saying so.
 */
#ifndef OPC_RUNNER_H
#define OPC_RUNNER_H

#include "forward.h"
#include "sampler.h"

struct opc_cuda_forward;

typedef struct opc_runner {
    opc_forward *cpu;
    struct opc_cuda_forward *cuda;
    int32_t max_batch; /* tokens per run() call */
} opc_runner;

/* device: "cpu" or "cuda". n_threads applies to the CPU (<= 0: all cores). */
opc_status opc_runner_init(opc_runner *r, const opc_model_desc *d, const char *device, int32_t ctx,
                           int32_t max_batch, int32_t n_threads);
void opc_runner_free(opc_runner *r); /* frees what init made; NULL-safe */

/* A runner over an existing CPU handle (not owned: do not call free on it). */
opc_runner opc_runner_cpu(opc_forward *f);

/* Same contract as opc_forward_run (logits in host memory). */
opc_status opc_runner_run(const opc_runner *r, const int32_t *tokens, int32_t n, int32_t pos,
                          float *logits, opc_logits_mode mode);

/* Greedy decoding without a host round trip per token (CUDA only:
 * opc_cuda_forward_greedy): n_steps steps from `tok` at position pos; out[i]
 * = the argmax pick after step i (the token for position pos + i + 1).
 * UNSUPPORTED on the CPU runner (callers loop run + opc_argmax there). */
opc_status opc_runner_greedy(const opc_runner *r, int32_t tok, int32_t pos, int32_t n_steps, int32_t *out);

/* Sampled decoding without a host round trip per token (CUDA only:
 * opc_cuda_forward_sample): as opc_runner_greedy, each pick being
 * opc_sampler_sample's choice for parameters p and PRNG state *rng (an
 * opc_sampler's .rng, advanced in place by one draw per step, so host and
 * device picks can alternate). UNSUPPORTED on the CPU runner. */
opc_status opc_runner_sample(const opc_runner *r, int32_t tok, int32_t pos, int32_t n_steps,
                             const opc_sampler_params *p, uint64_t *rng, int32_t *out);

const opc_config *opc_runner_config(const opc_runner *r);
int32_t opc_runner_ctx(const opc_runner *r);
const char *opc_runner_device(const opc_runner *r); /* "cpu" or "cuda" */

/* True when this build can run on CUDA (the device may still be missing). */
int opc_runner_have_cuda(void);

#endif /* OPC_RUNNER_H */
