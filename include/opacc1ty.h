/*
 * opacc1ty.h — the one public header of the opacc1ty runtime.
 *
 * opacc1ty compresses Llama-family language models to ~2 bits per weight with
 * learned per-channel codebooks and runs them with kernels that keep the
 * weights packed from memory into registers.
 *
 * Conventions
 *   - Every fallible function returns an opc_status. OPC_OK is 0.
 *   - On failure a human-readable message naming the file/field/problem is
 *     available from opc_last_error() (thread-local, valid until the next
 *     failing call on the same thread).
 *   - Every *_open / *_init has exactly one *_close / *_free, and those are
 *     NULL-safe.
 *   - The library never calls exit() and never prints to stdout; diagnostics go
 *     through the log callback (stderr by default).
 */
#ifndef OPACC1TY_H
#define OPACC1TY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OPC_VERSION_MAJOR 0
#define OPC_VERSION_MINOR 1
#define OPC_VERSION_PATCH 0
#define OPC_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- status -- */

/* Result codes. Values are stable (append only). */
typedef enum opc_status {
    OPC_OK = 0,
    OPC_ERR_IO = 1,          /* open/read/write/mmap failed */
    OPC_ERR_CORRUPT = 2,     /* a file's contents are malformed or truncated */
    OPC_ERR_NOMEM = 3,       /* allocation failed */
    OPC_ERR_UNSUPPORTED = 4, /* valid input we do not handle (arch, dtype, version) */
    OPC_ERR_INVALID_ARG = 5, /* caller error: bad parameter, wrong shape */
    OPC_ERR_NOT_FOUND = 6,   /* a named key / tensor / file does not exist */
    OPC_ERR_CUDA = 7,        /* CUDA runtime or driver error, or no GPU */
    OPC_ERR_INTERRUPTED = 8, /* cancelled by the caller (e.g. SIGINT) */
    OPC_ERR_INTERNAL = 9     /* a broken invariant: a bug in opacc1ty */
} opc_status;

/* Static name of a status code, e.g. "CORRUPT". Never NULL. */
const char *opc_status_str(opc_status st);

/* Message describing the last failure on this thread ("" if none). */
const char *opc_last_error(void);

/* Log levels and callback. The default callback writes WARN and above to stderr. */
typedef enum opc_log_level {
    OPC_LOG_DEBUG = 0,
    OPC_LOG_INFO = 1,
    OPC_LOG_WARN = 2,
    OPC_LOG_ERROR = 3
} opc_log_level;

typedef void (*opc_log_fn)(opc_log_level level, const char *msg, void *user);

/* Replace the log callback (NULL restores the default) and its minimum level. */
void opc_set_log(opc_log_fn fn, void *user, opc_log_level min_level);

/* Library version string, e.g. "0.1.0". */
const char *opc_version(void);

#ifdef __cplusplus
}
#endif

#endif /* OPACC1TY_H */
