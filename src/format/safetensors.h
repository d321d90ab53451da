/*
 * safetensors.h — reader for Hugging Face .safetensors files.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   { "<name>": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {...} }
 * then the data area; offsets are relative to the start of the data area.
 *
 * Everything is validated at open time, before any tensor pointer is formed:
 * header length against the file size and a 100 MB cap, JSON types of every
 * field, shapes (non-negative integers, at most OPC_ST_MAX_DIMS), offsets
 * (begin <= end, inside the data area, end - begin == prod(shape) * dtype size,
 * no overflow, no two tensors overlapping), and duplicate names. Failures are
 * OPC_ERR_CORRUPT with a message naming the file and the tensor/field.
 *
 * Dtypes we compute with are F32, F16 and BF16. Tensors of other dtypes
 * defined by the format (I64, U8, F64, F8_*, ...) still open (their size is
 * validated), so that a model can carry buffers we never read; asking for one
 * with opc_st_get returns OPC_ERR_UNSUPPORTED naming the tensor and dtype.
 * An unknown dtype string is OPC_ERR_UNSUPPORTED at open time.
 */
#ifndef OPC_SAFETENSORS_H
#define OPC_SAFETENSORS_H

#include "../core/core.h"
#include "../quant/types.h"

#include <stddef.h>
#include <stdint.h>

#define OPC_ST_MAX_DIMS 8
#define OPC_ST_MAX_HEADER (100u * 1024u * 1024u) /* 100 MB of JSON is far beyond any real model */

typedef struct opc_st_file opc_st_file;

typedef struct opc_st_tensor {
    const char *name;  /* NUL-terminated, owned by the opc_st_file */
    const char *dtype; /* the file's dtype string, e.g. "BF16" (static) */
    opc_type type;     /* OPC_TYPE_F32/F16/BF16 */
    int32_t n_dims;
    int64_t shape[OPC_ST_MAX_DIMS]; /* outermost first, as in PyTorch */
    const void *data;               /* inside the mapping; alignment is whatever the file gives */
    uint64_t nbytes;
} opc_st_tensor;

/* Map and parse `path`. The handle owns the mapping: tensor data pointers are
 * valid until opc_st_close. Errors: IO, CORRUPT, UNSUPPORTED, NOMEM. */
opc_status opc_st_open(const char *path, opc_st_file **out);

/* Parse an in-memory image of a file (e.g. a mapping the caller owns, or a
 * fuzzer's buffer). `data` must outlive the handle and every tensor view;
 * `what` names the source in messages. */
opc_status opc_st_open_mem(const void *data, uint64_t size, const char *what, opc_st_file **out);

void opc_st_close(opc_st_file *f); /* NULL-safe */

const char *opc_st_path(const opc_st_file *f);
int64_t opc_st_count(const opc_st_file *f);
/* Index of a tensor by name, or -1 when absent (binary search). */
int64_t opc_st_find(const opc_st_file *f, const char *name);
/* Name of tensor i (file order) without checking its dtype; NULL if out of range. */
const char *opc_st_name(const opc_st_file *f, int64_t i);
/* Info for tensor i. INVALID_ARG for a bad index, UNSUPPORTED for a dtype we
 * do not compute with (message names the tensor, dtype and file). */
opc_status opc_st_get(const opc_st_file *f, int64_t i, opc_st_tensor *out);

/* Dequantize/copy a tensor's n-th..(n+count) elements to fp32 (handles
 * unaligned data; used by tests and converters, not the hot path). */
opc_status opc_st_to_f32(const opc_st_tensor *t, int64_t first, int64_t count, float *dst);

/* Strict JSON parsing shared with the HF config reader: text[0..len) need not
 * be NUL-terminated; only whitespace may follow the value; an embedded NUL is
 * an error. Returns a cJSON tree (free with cJSON_Delete) or NULL with a
 * CORRUPT message naming `what` and the byte offset of the problem. */
struct cJSON;
struct cJSON *opc_json_parse(const char *text, size_t len, const char *what);

#endif /* OPC_SAFETENSORS_H */
