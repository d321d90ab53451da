/*
 * sample_cuda.h — next-token sampling on the GPU: the device twin of
 * opc_sampler_sample (src/model/sampler.c), so sampled decoding needs no
 * logits download or host pick per token (opc_cuda_forward_sample).
 *
 * Same choice as the CPU sampler for the same logits and the same PRNG state:
 * temperature -> softmax -> top-k -> top-p (with sampler.c's cutoff prefilter
 * and its renormalisations) -> draw with xorshift64* (one draw per pick, as
 * opc_sampler_uniform), ties by lowest id. The PRNG state and the parameters
 * live in device memory, so a captured CUDA graph replays picks with new
 * parameters. Rounding: exp is computed in double and rounded to float
 * (correctly rounded), where glibc's expf differs in the last bit for about
 * 0.06 % of arguments; sums and prefix sums are double in a parallel order.
 * A different pick needs one of those last-bit differences to move a
 * cumulative sum across the draw or the top-p threshold, or to swap two
 * candidates (test_cuda_sample measures how often).
 *
 * Cost: three kernels (block maxima; exp + block sums; one 1024-thread block
 * that selects and draws). Candidate sets of up to 16384 tokens are sorted
 * in shared memory; a larger set (top-k off and a near-flat distribution, or
 * huge top-k) is sorted in global memory by the same block: correct, but
 * milliseconds, like the CPU's qsort over the same set.
 */
#ifndef OPC_SAMPLE_CUDA_H
#define OPC_SAMPLE_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../model/sampler.h"
#include "cuda_api.h"

#include <stdint.h>

typedef struct opc_cuda_sampler opc_cuda_sampler;

/* Device workspace for a vocabulary of `vocab` logits (about 13 bytes per
 * token). Errors: INVALID_ARG, CUDA (no device, out of memory). */
opc_status opc_cuda_sampler_init(opc_cuda_sampler **out, int32_t vocab);
void opc_cuda_sampler_free(opc_cuda_sampler *s); /* NULL-safe */
uint64_t opc_cuda_sampler_bytes(const opc_cuda_sampler *s); /* device memory owned */

/* Queue the upload of the parameters and of the PRNG state `rng` (an
 * opc_sampler's .rng) on `stream`. Picks queued after it use them. */
opc_status opc_cuda_sampler_set(opc_cuda_sampler *s, const opc_sampler_params *p, uint64_t rng,
                                opc_cuda_stream stream);

/* Queue one pick from d_logits (device, vocab): advances the device PRNG and
 * publishes the token t. out (device) may be NULL; else out[step ? *step : 0]
 * = t. step (device) may be NULL; else *step += 1. io (device) may be NULL;
 * else io[0] += 1, io[1] = t (a decode step's position and token). No host
 * synchronisation, nothing allocated: may be captured in a CUDA graph. */
opc_status opc_cuda_sampler_pick(opc_cuda_sampler *s, const float *d_logits, int32_t *io, int32_t *out,
                                 int32_t *step, opc_cuda_stream stream);

/* Queue the download of the device PRNG state into *rng (host; pinned or
 * not): valid after the stream is synchronised. */
opc_status opc_cuda_sampler_get_rng(opc_cuda_sampler *s, uint64_t *rng, opc_cuda_stream stream);

/* Synchronous: one pick from host logits (vocab) with parameters p and PRNG
 * state *rng (in/out). What opc_sampler_sample returns for a sampler with
 * the same parameters and .rng (tests). */
opc_status opc_cuda_sample_host(opc_cuda_sampler *s, const float *logits, const opc_sampler_params *p,
                                uint64_t *rng, int32_t *tok);

#ifdef __cplusplus
}
#endif

#endif /* OPC_SAMPLE_CUDA_H */
