#!/usr/bin/env python3
"""make_gguf_golden.py — golden files for tests/test_gguf.c (dev-only).

Writes, with the `gguf` Python package (gguf-py, llama.cpp's own reference
reader/writer) as the independent implementation:

  tests/golden/gguf_quants.gguf          one small tensor of every type we
      dequantize (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K), plus
      metadata of every value type incl. an array of arrays, and a
      non-default general.alignment (64)
  tests/golden/gguf_quants.expected.bin  float32 little-endian values of each
      tensor, dequantized by gguf.quants.dequantize, concatenated in tensor order
  tests/golden/gguf_smollm2_rows.bin     a few rows of the default model's
      blk.0.attn_q.weight (Q4_1) and token_embd.weight (Q8_0), dequantized by
      gguf-py (row lists below; the C test uses the same lists)
  tests/golden/gguf_smollm2_meta.txt     a few config/tokenizer facts of the
      default model as read by gguf-py

Legacy types are quantized from seeded random floats with gguf.quants.quantize.
gguf-py has no k-quant quantizer, so Q4_K/Q5_K/Q6_K blocks are seeded random
bytes with finite, moderate fp16 scales (every bit pattern of the quants and
packed 6-bit scales is valid), dequantized by gguf-py.

Run from the repository root:  python3 scripts/dev/make_gguf_golden.py
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLD = os.path.join(ROOT, "tests", "golden")
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

ATTN_Q_ROWS = [0, 1, 2, 33, 575]
EMBD_ROWS = [0, 1, 2, 49151]


def f16_bits(x):
    return np.asarray(x, dtype=np.float16).view(np.uint16)


def kquant_blocks(rng, qt, n_blocks):
    """Random k-quant super-blocks with finite fp16 scales at their offsets."""
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    if qt in (T.Q4_K, T.Q5_K):
        d = rng.uniform(1e-3, 5e-2, size=n_blocks).astype(np.float16)
        dmin = rng.uniform(1e-3, 5e-2, size=n_blocks).astype(np.float16)
        b[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
        b[:, 2:4] = dmin.view(np.uint8).reshape(n_blocks, 2)
    else:  # Q6_K: fp16 d is the last field
        d = rng.uniform(1e-4, 1e-2, size=n_blocks).astype(np.float16)
        b[:, ts - 2:ts] = d.view(np.uint8).reshape(n_blocks, 2)
    return b


def make_quants():
    rng = np.random.default_rng(20251126)
    path = os.path.join(GOLD, "gguf_quants.gguf")
    w = gguf.GGUFWriter(path, arch="opc-golden")
    w.add_custom_alignment(64)
    # one metadata entry of every value type
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo")
    w.add_uint64("test.u64", 1 << 40)
    w.add_int64("test.i64", -(1 << 40))
    w.add_float64("test.f64", -2.5e-300)
    w.add_array("test.arr_i32", [1, -2, 3, 2147483647])
    w.add_array("test.arr_f32", [0.5, -1.25, 3.0])
    w.add_array("test.arr_str", ["a", "", "xyz"])
    w.add_array("test.arr_arr", [[1, 2], [3], ["x", "yz"]])

    expected = []
    # plain floats, with the special values the converters must get right
    f32 = rng.standard_normal((2, 8)).astype(np.float32)
    f32[0, :4] = [np.inf, -np.inf, -0.0, 1e-40]
    w.add_tensor("t.f32", f32)
    expected.append(f32)
    f16 = rng.standard_normal((3, 8)).astype(np.float16)
    f16[0, :6] = [np.inf, -np.inf, -0.0, 6e-8, 65504, np.float16(1e-5)]
    w.add_tensor("t.f16", f16)
    expected.append(f16.astype(np.float32))
    bf = rng.standard_normal((2, 8)).astype(np.float32)
    bf[0, :3] = [np.inf, -0.0, 1e-39]
    bfq = quants.quantize(bf, T.BF16)
    w.add_tensor("t.bf16", bfq, raw_dtype=T.BF16)
    expected.append(quants.dequantize(bfq, T.BF16).astype(np.float32))
    # a 3-D tensor: numpy shape (2, 3, 4) is GGUF ne = [4, 3, 2]
    t3 = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w.add_tensor("t.f32_3d", t3)
    expected.append(t3)

    for qt in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        x = (rng.standard_normal((3, 64)) * rng.uniform(0.01, 2.0, size=(3, 1))).astype(np.float32)
        x[1] += 0.5  # give the min-offset formats a non-zero min
        q = quants.quantize(x, qt)
        w.add_tensor("t." + qt.name.lower(), q, raw_dtype=qt)
        expected.append(quants.dequantize(q, qt).astype(np.float32))
    for qt in (T.Q4_K, T.Q5_K, T.Q6_K):
        rows, blocks_per_row = 2, 2
        b = kquant_blocks(rng, qt, rows * blocks_per_row)
        q = b.reshape(rows, -1)
        w.add_tensor("t." + qt.name.lower(), q, raw_dtype=qt)
        expected.append(quants.dequantize(q, qt).astype(np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    exp = np.concatenate([e.reshape(-1) for e in expected]).astype("<f4")
    exp.tofile(os.path.join(GOLD, "gguf_quants.expected.bin"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and {exp.size} expected floats")


def make_smollm2():
    if not os.path.exists(MODEL):
        print(f"{MODEL} missing: skipping the SmolLM2 golden files", file=sys.stderr)
        return
    r = gguf.GGUFReader(MODEL)
    tensors = {t.name: t for t in r.tensors}
    out = []
    for name, rows in (("blk.0.attn_q.weight", ATTN_Q_ROWS), ("token_embd.weight", EMBD_ROWS)):
        t = tensors[name]
        # t.data is (rows, bytes per row) for quantized types
        full = quants.dequantize(np.asarray(t.data), t.tensor_type)
        for i in rows:
            out.append(full[i].astype("<f4"))
    np.concatenate(out).tofile(os.path.join(GOLD, "gguf_smollm2_rows.bin"))

    def field(k):
        return r.fields[k].contents()
    toks = field("tokenizer.ggml.tokens")
    merges = field("tokenizer.ggml.merges")
    lines = [
        f"n_tensors {len(r.tensors)}",
        f"n_kv {len(r.fields) - 3}",  # gguf-py lists the 3 header fields as fields too
        f"n_tokens {len(toks)}",
        f"n_merges {len(merges)}",
        f"dim {field('llama.embedding_length')}",
        f"hidden_dim {field('llama.feed_forward_length')}",
        f"n_layers {field('llama.block_count')}",
        f"n_heads {field('llama.attention.head_count')}",
        f"n_kv_heads {field('llama.attention.head_count_kv')}",
        f"max_seq_len {field('llama.context_length')}",
        f"bos {field('tokenizer.ggml.bos_token_id')}",
        f"eos {field('tokenizer.ggml.eos_token_id')}",
        f"params {sum(int(np.prod(t.shape)) for t in r.tensors)}",
        f"tensor_bytes {sum(int(t.n_bytes) for t in r.tensors)}",
    ]
    for i in (0, 1, 100, 256, 49151):
        lines.append(f"token {i} {toks[i].encode('utf-8').hex()}")
    for i in (0, 1, 48899):
        lines.append(f"merge {i} {merges[i].encode('utf-8').hex()}")
    with open(os.path.join(GOLD, "gguf_smollm2_meta.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote SmolLM2 golden rows and meta")


if __name__ == "__main__":
    os.makedirs(GOLD, exist_ok=True)
    make_quants()
    make_smollm2()
