/*
 * checksum.c — XXH64 (see checksum.h), from the public algorithm description:
 * four 64-bit lane accumulators over 32-byte stripes, then a merge, then the
 * tail in 8-, 4- and 1-byte steps, then an avalanche.
 */
#include "checksum.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* Little-endian loads regardless of host order or alignment. */
static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t lane_round(uint64_t acc, uint64_t input) {
    acc += input * P2;
    acc = rotl64(acc, 31);
    return acc * P1;
}

static inline uint64_t merge_round(uint64_t acc, uint64_t v) {
    acc ^= lane_round(0, v);
    return acc * P1 + P4;
}

static inline void stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = lane_round(v[0], rd64(p));
    v[1] = lane_round(v[1], rd64(p + 8));
    v[2] = lane_round(v[2], rd64(p + 16));
    v[3] = lane_round(v[3], rd64(p + 24));
}

/* Tail (< 32 bytes) and avalanche; h already holds the merged lanes + length. */
static uint64_t finish(uint64_t h, const uint8_t *p, size_t n) {
    while (n >= 8) {
        h ^= lane_round(0, rd64(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
        n -= 8;
    }
    if (n >= 4) {
        h ^= (uint64_t)rd32(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    while (n > 0) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
        n--;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static uint64_t merge_lanes(const uint64_t v[4]) {
    uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
    for (int i = 0; i < 4; i++) h = merge_round(h, v[i]);
    return h;
}

void opc_xxh64_init(opc_xxh64_state *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

void opc_xxh64_update(opc_xxh64_state *s, const void *data, size_t len) {
    const uint8_t *p = data;
    if (len == 0) return;
    s->total_len += len;
    if (s->buf_len) { /* complete a pending stripe first */
        size_t take = 32 - s->buf_len;
        if (take > len) take = len;
        memcpy(s->buf + s->buf_len, p, take);
        s->buf_len += (uint32_t)take;
        p += take;
        len -= take;
        if (s->buf_len < 32) return;
        stripe(s->v, s->buf);
        s->buf_len = 0;
    }
    while (len >= 32) {
        stripe(s->v, p);
        p += 32;
        len -= 32;
    }
    if (len) {
        memcpy(s->buf, p, len);
        s->buf_len = (uint32_t)len;
    }
}

uint64_t opc_xxh64_digest(const opc_xxh64_state *s) {
    uint64_t h = s->total_len >= 32 ? merge_lanes(s->v) : s->seed + P5;
    h += s->total_len;
    return finish(h, s->buf, s->buf_len);
}

uint64_t opc_xxh64(const void *data, size_t len, uint64_t seed) {
    opc_xxh64_state s;
    opc_xxh64_init(&s, seed);
    opc_xxh64_update(&s, data, len);
    return opc_xxh64_digest(&s);
}
