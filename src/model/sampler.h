/*
 * sampler.h — next-token choice from a logits vector: greedy (temp 0),
 * temperature, top-k, top-p (nucleus), with a private deterministic PRNG so a
 * given seed gives the same tokens on every machine.
 */
#ifndef OPC_SAMPLER_H
#define OPC_SAMPLER_H

#include "../core/core.h"

#include <stdint.h>

typedef struct opc_sampler_params {
    float temp;    /* <= 0: greedy (argmax, lowest id on ties) */
    int32_t top_k; /* <= 0 or >= vocab: no top-k cut */
    float top_p;   /* >= 1 or <= 0: no nucleus cut */
    uint64_t seed;
} opc_sampler_params;

/* Defaults: greedy, top_k 40, top_p 0.95, seed 0 (used when temp > 0). */
opc_sampler_params opc_sampler_defaults(void);

typedef struct opc_prob_index {
    float p;
    int32_t id;
} opc_prob_index;

typedef struct opc_sampler {
    opc_sampler_params par;
    int32_t vocab;
    uint64_t rng;          /* xorshift64* state, never 0 */
    opc_prob_index *cand;  /* (vocab) scratch, allocated once */
} opc_sampler;

opc_status opc_sampler_init(opc_sampler *s, int32_t vocab, const opc_sampler_params *p);
void opc_sampler_free(opc_sampler *s); /* NULL-safe */

/* Choose the next token from logits (vocab). Does not modify logits and does
 * not allocate. */
int32_t opc_sampler_sample(opc_sampler *s, const float *logits);

/* Index of the largest logit (lowest index among equal maxima). */
int32_t opc_argmax(const float *x, int64_t n);

/* Uniform float in [0, 1) from the sampler's PRNG (exposed for tests). */
float opc_sampler_uniform(opc_sampler *s);

#endif /* OPC_SAMPLER_H */
