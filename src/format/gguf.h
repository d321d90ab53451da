/*
 * gguf.h — GGUF v2/v3 reader (metadata, tensor infos, tensor data views).
 *
 * The file is mmapped; every count, length and offset is validated before
 * use, and every failure is OPC_ERR_CORRUPT with a message naming the file and
 * the offending field. Strings in GGUF are length-prefixed, not NUL-terminated:
 * the accessors return pointer + length into the mapping.
 */
#ifndef OPC_GGUF_H
#define OPC_GGUF_H

#include "../core/core.h"
#include "../quant/types.h"

#include <stdint.h>

/* GGUF metadata value types (on-disk ids, frozen by the GGUF spec). */
typedef enum opc_gguf_vtype {
    OPC_GGUF_UINT8 = 0,
    OPC_GGUF_INT8 = 1,
    OPC_GGUF_UINT16 = 2,
    OPC_GGUF_INT16 = 3,
    OPC_GGUF_UINT32 = 4,
    OPC_GGUF_INT32 = 5,
    OPC_GGUF_FLOAT32 = 6,
    OPC_GGUF_BOOL = 7,
    OPC_GGUF_STRING = 8,
    OPC_GGUF_ARRAY = 9,
    OPC_GGUF_UINT64 = 10,
    OPC_GGUF_INT64 = 11,
    OPC_GGUF_FLOAT64 = 12
} opc_gguf_vtype;

typedef struct opc_gguf opc_gguf;

typedef struct opc_gguf_tensor_info {
    const char *name;      /* points into the mapping, NOT NUL-terminated */
    uint64_t name_len;
    uint32_t ggml_type;    /* on-disk ggml type id */
    opc_type type;         /* mapped in-memory type (OPC_TYPE_COUNT if unsupported) */
    uint32_t n_dims;
    uint64_t ne[4];        /* GGUF order: ne[0] is the innermost (contiguous) dimension */
    const void *data;      /* validated to lie inside the file */
    uint64_t nbytes;
} opc_gguf_tensor_info;

opc_status opc_gguf_open(const char *path, opc_gguf **out);
/* Parse a GGUF image already in memory (fuzzing, tests). The buffer is not
 * copied and must outlive the handle; `name` stands for the path in messages. */
opc_status opc_gguf_open_memory(const void *data, size_t size, const char *name, opc_gguf **out);
void opc_gguf_close(opc_gguf *g); /* NULL-safe */

uint32_t opc_gguf_version(const opc_gguf *g);
const char *opc_gguf_path(const opc_gguf *g);
uint64_t opc_gguf_alignment(const opc_gguf *g);   /* general.alignment or 32 */
uint64_t opc_gguf_data_offset(const opc_gguf *g); /* file offset of the tensor data section */
uint64_t opc_gguf_file_size(const opc_gguf *g);

/* Metadata. Lookups return OPC_ERR_NOT_FOUND (with a message naming the key and
 * file) when the key is absent, OPC_ERR_CORRUPT/UNSUPPORTED on a type mismatch. */
int64_t opc_gguf_n_kv(const opc_gguf *g);
int64_t opc_gguf_find_key(const opc_gguf *g, const char *key); /* index or -1 */
opc_status opc_gguf_kv_at(const opc_gguf *g, int64_t i, const char **key, uint64_t *key_len,
                          opc_gguf_vtype *type);
opc_gguf_vtype opc_gguf_key_type(const opc_gguf *g, const char *key); /* -1 cast if absent */

opc_status opc_gguf_get_int(const opc_gguf *g, const char *key, int64_t *out);  /* any int type or bool */
opc_status opc_gguf_get_float(const opc_gguf *g, const char *key, double *out); /* f32/f64/ints */
opc_status opc_gguf_get_bool(const opc_gguf *g, const char *key, int *out);
opc_status opc_gguf_get_str(const opc_gguf *g, const char *key, const char **s, uint64_t *len);

/* Arrays */
opc_status opc_gguf_get_arr_info(const opc_gguf *g, const char *key, opc_gguf_vtype *elem_type,
                                 uint64_t *n);
/* Element i of a string array. */
opc_status opc_gguf_get_arr_str(const opc_gguf *g, const char *key, uint64_t i, const char **s,
                                uint64_t *len);
/* Copy a numeric array, converting each element to the destination type;
 * n must equal the array's length. */
opc_status opc_gguf_get_arr_i32(const opc_gguf *g, const char *key, int32_t *dst, uint64_t n);
opc_status opc_gguf_get_arr_f32(const opc_gguf *g, const char *key, float *dst, uint64_t n);

/* Tensors */
int64_t opc_gguf_n_tensors(const opc_gguf *g);
opc_status opc_gguf_tensor_at(const opc_gguf *g, int64_t i, opc_gguf_tensor_info *out);
int64_t opc_gguf_find_tensor(const opc_gguf *g, const char *name); /* index or -1 */

/* Map a ggml on-disk type id to opc_type (OPC_TYPE_COUNT if unsupported). */
opc_type opc_type_from_ggml(uint32_t ggml_type);
/* ggml's name for an on-disk type id ("Q4_K"), "unknown" if not a ggml type. */
const char *opc_ggml_type_name(uint32_t ggml_type);

#endif /* OPC_GGUF_H */
