#!/usr/bin/env python3
"""Dev-only oracles for the model readers (never run by the tests or CI).

  make_hf_golden.py llama2c [ckpt]
      Reads a llama2.c checkpoint with numpy (an implementation independent of
      src/format/llama2c.c), applies the Q/K interleaved -> rotate-half row
      permutation the way Hugging Face's Llama conversion script does
      (view(heads, hd/2, 2, cols).transpose), and prints C table rows
      {canonical name, row, col, value} for tests/test_llama2c.c.

  make_hf_golden.py smollm2 [gguf] [outdir]
      Converts the default SmolLM2 GGUF into a Hugging Face folder
      (config.json, model.safetensors, tokenizer files) with transformers'
      GGUF reader, which dequantizes and undoes llama.cpp's Q/K permutation.
      tests/test_hf.c compares that folder against our GGUF reader when
      models/smollm2-hf exists. Needs torch + transformers.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_llama2c(path):
    hdr = np.fromfile(path, dtype="<i4", count=7)
    dim, hid, n_layers, n_heads, n_kv, vocab, seq = (int(x) for x in hdr)
    shared = vocab > 0
    vocab = abs(vocab)
    hd = dim // n_heads
    f = np.fromfile(path, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = f[pos:pos + n].reshape(shape)
        pos += n
        return a

    t = {}
    t["emb"] = take(vocab, dim)
    t["att"] = take(n_layers, dim)
    t["wq"] = take(n_layers, n_heads * hd, dim)
    t["wk"] = take(n_layers, n_kv * hd, dim)
    t["wv"] = take(n_layers, n_kv * hd, dim)
    t["wo"] = take(n_layers, dim, n_heads * hd)
    t["ffn"] = take(n_layers, dim)
    t["w1"] = take(n_layers, hid, dim)
    t["w2"] = take(n_layers, dim, hid)
    t["w3"] = take(n_layers, hid, dim)
    t["fin"] = take(dim)
    take(seq, hd)  # freq_cis real + imag
    if not shared:
        t["cls"] = take(vocab, dim)
    assert pos == f.size, (pos, f.size)
    cfg = dict(dim=dim, hid=hid, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq=seq, hd=hd, shared=shared)
    return cfg, t


def hf_permute(w, n_heads):
    """Interleaved pairs -> rotate-half, as HF's convert_llama_weights_to_hf does."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def cmd_llama2c(argv):
    path = argv[0] if argv else os.path.join(ROOT, "..", "shared", "models", "stories260K",
                                             "stories260K.bin")
    c, t = read_llama2c(path)
    print(f"/* config: dim {c['dim']} hidden {c['hid']} layers {c['n_layers']} heads {c['n_heads']} "
          f"kv {c['n_kv']} vocab {c['vocab']} seq {c['seq']} shared {c['shared']} */")
    picks = [
        ("token_embd.weight", t["emb"], 5, 3),
        ("token_embd.weight", t["emb"], 511, 63),
        ("blk.2.attn_norm.weight", t["att"][2], 7, None),
        ("blk.1.attn_q.weight", hf_permute(t["wq"][1], c["n_heads"]), 30, 0),
        ("blk.1.attn_q.weight", hf_permute(t["wq"][1], c["n_heads"]), 30, 3),
        ("blk.1.attn_q.weight", hf_permute(t["wq"][1], c["n_heads"]), 1, 17),
        ("blk.3.attn_k.weight", hf_permute(t["wk"][3], c["n_kv"]), 13, 60),
        ("blk.3.attn_k.weight", hf_permute(t["wk"][3], c["n_kv"]), 31, 2),
        ("blk.0.attn_v.weight", t["wv"][0], 31, 63),
        ("blk.4.attn_output.weight", t["wo"][4], 12, 34),
        ("blk.3.ffn_norm.weight", t["ffn"][3], 11, None),
        ("blk.0.ffn_gate.weight", t["w1"][0], 171, 5),
        ("blk.4.ffn_down.weight", t["w2"][4], 10, 100),
        ("blk.0.ffn_up.weight", t["w3"][0], 171, 63),
        ("output_norm.weight", t["fin"], 63, None),
    ]
    for name, a, r, col in picks:
        v = a[r] if col is None else a[r, col]
        print(f'    {{"{name}", {r}, {0 if col is None else col}, {float(v)!r}f}},')


def cmd_smollm2(argv):
    import torch  # noqa: F401  (transformers needs it)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = argv[0] if argv else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = argv[1] if len(argv) > 1 else os.path.join(ROOT, "models", "smollm2-hf")
    d, f = os.path.split(os.path.abspath(gguf))
    # fp32 so the safetensors hold the dequantized values exactly (no bf16 rounding).
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model, so write
    # the pieces ourselves: config.json and one model.safetensors.
    from safetensors.torch import save_file
    os.makedirs(out, exist_ok=True)
    model.config.save_pretrained(out)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)  # the same storage as the embedding
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    tok.save_pretrained(out)
    print(f"wrote {out}")


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("llama2c", "smollm2"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    {"llama2c": cmd_llama2c, "smollm2": cmd_smollm2}[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
