/*
 * checksum.h — XXH64, the 64-bit non-cryptographic hash .bf2 uses for its
 * header, metadata and per-tensor checksums (docs/FORMAT.md).
 *
 * Written from the public xxHash specification (XXH64, seed, little-endian
 * 8/4/1-byte lanes) and tested against the published vectors and against the
 * reference library (tests/test_bf2.c). The streaming form lets the writer
 * hash a tensor while writing it, and gives the same result as one-shot over
 * the concatenated input, however the input is split.
 */
#ifndef OPC_CHECKSUM_H
#define OPC_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* One-shot hash of data[0..len). */
uint64_t opc_xxh64(const void *data, size_t len, uint64_t seed);

/* Streaming state: init, update any number of times, digest (state unchanged). */
typedef struct opc_xxh64_state {
    uint64_t total_len;
    uint64_t v[4];       /* the four lane accumulators */
    uint8_t buf[32];     /* bytes of a stripe not yet consumed */
    uint32_t buf_len;
    uint64_t seed;
} opc_xxh64_state;

void opc_xxh64_init(opc_xxh64_state *s, uint64_t seed);
void opc_xxh64_update(opc_xxh64_state *s, const void *data, size_t len);
uint64_t opc_xxh64_digest(const opc_xxh64_state *s);

#endif /* OPC_CHECKSUM_H */
