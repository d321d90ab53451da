/*
 * bf2.h — reader and writer of .bf2 files, opacc1ty's own model format
 * (docs/FORMAT.md is the normative byte-level spec).
 *
 * Reader: maps the file, validates every count, offset and size before use,
 * verifies the header/metadata checksums always and the per-tensor checksums
 * unless OPC_BF2_SKIP_VERIFY is given, and fills an opc_model_desc whose
 * tensors are views into the mapping (codebook tensors get t->cb, checked
 * with opc_cb_validate). Malformed input is CORRUPT, a newer version / unknown
 * type id / unknown flag is UNSUPPORTED; the message names the file and field.
 *
 * Writer: streams tensors one at a time into a temporary file beside the
 * destination, then writes the metadata and the header, fsyncs, renames over
 * the destination and fsyncs the folder. Closing a writer that was not
 * finished removes the temporary file, so the destination is never left
 * truncated or clobbered by a partial file.
 */
#ifndef OPC_BF2_H
#define OPC_BF2_H

#include "../model/model.h"

#include <stdint.h>

#define OPC_BF2_VERSION 1
#define OPC_BF2_ALIGN 64        /* alignment of every tensor part in the file */
#define OPC_BF2_HEADER_SIZE 64
#define OPC_BF2_CONFIG_SIZE 72  /* bytes of the config block written by version 1 */

/* On-disk tensor type ids: frozen, append-only, separate from opc_type. */
enum {
    OPC_BF2_TYPE_F32 = 0,
    OPC_BF2_TYPE_F16 = 1,
    OPC_BF2_TYPE_BF16 = 2,
    OPC_BF2_TYPE_CB2 = 3,
    OPC_BF2_TYPE_CB4 = 4
};

/* Tensor directory tflags (CB2/CB4 only; FORMAT.md "Codebook variants"). */
enum {
    OPC_BF2_TF_GSCALE = 1u << 0,     /* part 1 = codebooks, then rows x ceil(cols/64) scale bytes */
    OPC_BF2_TF_ROT_SHIFT = 8,        /* bits 8..11: rot_log2 (0 = no rotation) */
    OPC_BF2_TF_ROT_MASK = 15u << 8,
    OPC_BF2_TF_KNOWN = OPC_BF2_TF_GSCALE | OPC_BF2_TF_ROT_MASK /* any other bit: UNSUPPORTED */
};

/* Load flags */
enum {
    OPC_BF2_SKIP_VERIFY = 1u << 0 /* do not hash tensor data (structure is still checked) */
};

/* Map the on-disk id to opc_type and back; OPC_TYPE_COUNT / UINT32_MAX when there is none. */
opc_type opc_bf2_type_from_id(uint32_t id);
uint32_t opc_bf2_type_to_id(opc_type t);

/* Bytes of a codebook matrix's arrays as .bf2 stores them (parts 0..4,
 * padding excluded): indices, codebooks, group scales when present, and the
 * CSR outliers. The all-in size that bits-per-weight figures should use. */
uint64_t opc_bf2_cb_bytes(const opc_cb_matrix *m);

/* Load `path` into d (zero-initialised by the caller, path set; the caller frees
 * it with opc_model_desc_free on failure too). */
opc_status opc_bf2_load(const char *path, uint32_t flags, opc_model_desc *d);

/* Parse a .bf2 image already in memory: data (size bytes, 64-byte aligned,
 * must outlive d; not copied). `what` names the source in messages. Used by
 * opc_bf2_load and by the fuzzer. */
opc_status opc_bf2_load_mem(const uint8_t *data, uint64_t size, uint32_t flags, const char *what,
                            opc_model_desc *d);

/* ------------------------------------------------------------ writer ---- */

typedef struct opc_bf2_writer opc_bf2_writer;

/* Create a temporary file beside `path` (nothing under `path` is touched yet). */
opc_status opc_bf2_writer_open(opc_bf2_writer **out, const char *path);

/* Append one tensor: plain types (f32/f16/bf16: t->data, t->nbytes) or
 * codebook types (t->cb arrays). Name, shape and qerr come from t. */
opc_status opc_bf2_writer_add(opc_bf2_writer *w, const opc_tensor *t);

/* Write metadata + header, fsync, rename onto the destination, fsync the folder.
 * name may be NULL. On failure the temporary file is removed. */
opc_status opc_bf2_writer_finish(opc_bf2_writer *w, const char *name, const opc_config *cfg,
                                 const opc_vocab *vocab);

/* Free the writer; if finish did not succeed, remove the temporary file. NULL-safe. */
void opc_bf2_writer_close(opc_bf2_writer *w);

/* Write a whole description (every tensor must be f32/f16/bf16/cb2/cb4) to path. */
opc_status opc_bf2_write_model(const opc_model_desc *d, const char *path);

#endif /* OPC_BF2_H */
