/*
 * core.h — internal helpers shared by every module: error reporting, logging,
 * file mapping, aligned allocation, checked arithmetic, timing.
 */
#ifndef OPC_CORE_H
#define OPC_CORE_H

#include "opacc1ty.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define OPC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define OPC_UNUSED __attribute__((unused))
#else
#define OPC_PRINTF(f, a)
#define OPC_UNUSED
#endif

/* ------------------------------------------------------------ errors ---- */

/* Record a failure message for opc_last_error() and return st, so callers can
 * write `return opc_error(OPC_ERR_CORRUPT, "%s: tensor %s: offset out of range", path, name);`.
 * The message should name the file and the offending field. */
opc_status opc_error(opc_status st, const char *fmt, ...) OPC_PRINTF(2, 3);

/* Prefix the current error message with context ("loading %s: " + old). */
opc_status opc_error_wrap(opc_status st, const char *fmt, ...) OPC_PRINTF(2, 3);

/* Clear the thread's error message. */
void opc_error_clear(void);

void opc_log(opc_log_level level, const char *fmt, ...) OPC_PRINTF(2, 3);

/* Always-on assertion for invariants (not for input validation: inputs get a
 * status code). Prints file:line and aborts: reaching it is a bug. */
#define OPC_ASSERT(x)                                                                    \
    do {                                                                                 \
        if (!(x)) opc_assert_fail(#x, __FILE__, __LINE__);                               \
    } while (0)
void opc_assert_fail(const char *expr, const char *file, int line);

/* ------------------------------------------------------------ memory ---- */

/* 64-byte aligned allocation (cache line / AVX-512 width). NULL on failure
 * or when size == 0. Free with opc_aligned_free (NULL-safe). */
void *opc_aligned_alloc(size_t size);
void opc_aligned_free(void *p);

/* Checked size arithmetic: return false on overflow. */
static inline bool opc_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool opc_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
/* True when [off, off+len) lies inside [0, size). */
static inline bool opc_range_ok(uint64_t off, uint64_t len, uint64_t size) {
    return off <= size && len <= size - off;
}

/* ------------------------------------------------------------ files ----- */

/* A read-only memory map of a whole file. */
typedef struct opc_map {
    const uint8_t *data; /* (size) bytes; NULL when size == 0 */
    uint64_t size;
} opc_map;

/* Map `path` read-only. Errors: IO (naming the path and errno text). */
opc_status opc_map_open(const char *path, opc_map *m);
void opc_map_close(opc_map *m); /* NULL-safe, idempotent */

/* Read a whole (small) file into a NUL-terminated heap buffer. */
opc_status opc_read_file(const char *path, char **out, size_t *len);

bool opc_is_dir(const char *path);
bool opc_file_exists(const char *path);

/* ------------------------------------------------------------ time ------ */

double opc_time_s(void); /* monotonic seconds */

#endif /* OPC_CORE_H */
