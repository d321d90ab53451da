#!/usr/bin/env python3
"""make_tokenizer_golden.py — golden token ids for tests/test_tokenizer.c.

Dev-only (needs numpy, gguf, tokenizers; transformers optional). Writes:

  tests/golden/tok_smollm2_wikitext.txt  SmolLM2 ids for the whole WikiText-2 test file
                                          (CRLF -> LF): count, FNV-1a 64 hash, first 2000 ids
  tests/golden/tok_smollm2_cases.txt     SmolLM2 ids for tricky strings
  tests/golden/tok_stories260k.txt       stories260K (llama2.c tok512.bin) ids, computed by an
                                          independent Python re-implementation of llama2.c encode

and, for the tokenizer.json path of the C loader, models/SmolLM2-135M-Instruct.tokenizer/
(tokenizer.json + tokenizer_config.json, ignored by git).

Reference for SmolLM2: the Hugging Face `tokenizers` package, built from the GGUF's own
vocabulary, merges and token types. The pre-tokenizer is what SmolLM2's original
tokenizer.json and llama.cpp's "smollm" pre-type both specify: split every digit
(\\p{N}) into its own piece, then GPT-2 byte-level regex split (add_prefix_space=False).
transformers' GGUF converter (when installed) is used only to cross-check vocab/merges;
it maps every gpt2-model GGUF to a plain ByteLevel pre-tokenizer and ignores
tokenizer.ggml.pre, which would NOT reproduce SmolLM2 on e.g. "a  1".

Usage: python3 scripts/dev/make_tokenizer_golden.py   (from the repository root)
"""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
WIKI = os.path.join(ROOT, "..", "shared", "data", "wikitext-2-raw", "wiki.test.raw")
TINY = os.path.join(ROOT, "..", "shared", "data", "tinystories", "tinystories-valid-head.txt")
TOK512 = os.path.join(ROOT, "..", "shared", "models", "stories260K", "tok512.bin")
GOLD = os.path.join(ROOT, "tests", "golden")
N_HEAD = 2000
VARIANT_BYTES = 200000  # WikiText prefix for the pre-tokenizer variants
# Llama-3 and Qwen2 split patterns as their tokenizer.json files give them
RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
            r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
N_STORY_LINES = 80  # TinyStories lines for the stories260K bulk golden (O(n^2) Python: keep it short)


def fnv1a64_ids(ids):
    """FNV-1a 64 over the little-endian int32 bytes of the ids."""
    data = np.asarray(ids, dtype="<i4").tobytes()
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a64_pieces(pieces):
    """FNV-1a 64 over each piece as little-endian uint32 length + its bytes."""
    h = 0xCBF29CE484222325
    for p in pieces:
        for b in struct.pack("<I", len(p)) + p:
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


# ------------------------------------------------------------------ SmolLM2 --

def gguf_strings(r, key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def gguf_ints(r, key):
    f = r.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def build_smollm2():
    r = GGUFReader(GGUF)
    assert bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
    assert bytes(r.fields["tokenizer.ggml.pre"].parts[-1]).decode() == "smollm"
    tokens = gguf_strings(r, "tokenizer.ggml.tokens")
    types = gguf_ints(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in gguf_strings(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # GGUF control tokens (type 3) are HF special added tokens, user-defined (4) plain added.
    added = [AddedToken(tokens[i], special=(types[i] == 3), normalized=False)
             for i in range(len(tokens)) if types[i] in (3, 4)]
    tok.add_special_tokens([a for a in added if a.special])
    tok.add_tokens([a for a in added if not a.special])
    return tok, tokens, merges


def cross_check_transformers(tokens, merges):
    try:
        from transformers import AutoTokenizer
    except Exception as e:  # transformers is optional
        print("transformers not available (%s): skipping cross-check" % e)
        return None
    t = AutoTokenizer.from_pretrained(os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
    j = json.loads(t.backend_tokenizer.to_str())
    v = j["model"]["vocab"]
    assert all(v[tok] == i for i, tok in enumerate(tokens)), "vocab differs from transformers'"
    m = [tuple(x.split(" ", 1)) if isinstance(x, str) else tuple(x) for x in j["model"]["merges"]]
    assert m == merges, "merges differ from transformers'"
    print("transformers GGUF conversion: same vocab (%d) and merges (%d)" % (len(v), len(m)))
    return t


def write_ids(f, ids, per_line=20):
    for i in range(0, len(ids), per_line):
        f.write(" ".join(str(x) for x in ids[i:i + per_line]) + "\n")


SMOL_CASES = [
    "Hello world",
    "don't stop: I'm, you're, we've, they'll, she'd",
    "DON'T SHOUT",
    "  two leading spaces and trailing   ",
    "a  1 and b   22 and 333",
    "tabs\tand\t\ttabs\nnew\n\nlines\r\nCRLF",
    "3.14159 + 2,718 = 1e10; x_1 == 0x1F",
    "Unicode: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어",
    "Emoji: 😀👍🏽 🇫🇷 👨‍👩‍👧",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|im_end|>",
    "<|im_start|",
    "code: def f(x):\n    return x**2  # square\n",
    "\u00a0non-breaking\u2009thin\u3000ideographic\u0085nel",
    "....!!!???---___***",
    "",
    " ",
    "\n",
    "a",
    "Ġ is not a space; Ċ not a newline",
    "control\x04bytes\x06 absent\x7f from the vocab\x1b[0m",
    "(hello) [world]! \"quoted\" 'single' x\r\n\r\ny  \n  \nz \t\n",
    "1234567 12 1 \u0661\u0662\u0663 \u2167 \u00bd",
    "I'M YOU'RE HE'S WE'D ſ'S it'Ll",
    "end with spaces   ",
    "\n\n\n",
]


def smollm2_goldens():
    tok, tokens, merges = build_smollm2()
    cross_check_transformers(tokens, merges)

    raw = open(WIKI, "rb").read()
    text = raw.replace(b"\r\n", b"\n").decode("utf-8")
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids, skip_special_tokens=False) == text, "HF round trip failed"
    h = fnv1a64_ids(ids)
    with open(os.path.join(GOLD, "tok_smollm2_wikitext.txt"), "w") as f:
        f.write("# SmolLM2-135M-Instruct tokenizer (GGUF vocab + merges, pre-tokenizer smollm =\n"
                "# Digits(individual) + ByteLevel GPT-2 regex) on ../shared/data/wikitext-2-raw/wiki.test.raw\n"
                "# with CRLF -> LF, no BOS, special tokens parsed. Reference: Hugging Face tokenizers %s.\n"
                "# Generated by scripts/dev/make_tokenizer_golden.py. hash = FNV-1a 64 of the ids as\n"
                "# little-endian int32. Text bytes after normalization: %d.\n"
                % (__import__("tokenizers").__version__, len(text.encode("utf-8"))))
        f.write("count %d\n" % len(ids))
        f.write("fnv1a64 %016x\n" % h)
        f.write("head %d\n" % min(N_HEAD, len(ids)))
        write_ids(f, ids[:N_HEAD])
    print("wikitext: %d ids, fnv1a64 %016x" % (len(ids), h))

    # the plain-ByteLevel pre-tokenizer (what transformers' GGUF path builds) for comparison
    plain = Tokenizer.from_str(tok.to_str())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    pids = plain.encode(text, add_special_tokens=False).ids
    print("plain ByteLevel pre-tokenizer would give %d ids (%s)"
          % (len(pids), "identical" if pids == ids else "DIFFERENT"))

    with open(os.path.join(GOLD, "tok_smollm2_cases.txt"), "w") as f:
        f.write("# SmolLM2 tokenizer goldens from Hugging Face tokenizers (see tok_smollm2_wikitext.txt).\n"
                "# Per case: 'case <special> <hex of UTF-8 text>' then 'ids <n> <id>...'.\n"
                "# special=1: special tokens parsed (HF default); special=0: HF encode_special_tokens=True.\n"
                "# No BOS (SmolLM2 adds none).\n")
        for special in (1, 0):
            tok.encode_special_tokens = (special == 0)
            for s in SMOL_CASES:
                if special == 0 and "<|" not in s:
                    continue
                ids_s = tok.encode(s, add_special_tokens=False).ids
                f.write("case %d %s\n" % (special, s.encode("utf-8").hex() or "-"))
                f.write("ids %d %s\n" % (len(ids_s), " ".join(str(x) for x in ids_s)))
        tok.encode_special_tokens = False

    # The same vocabulary under the other pre-tokenizers the C code knows by GGUF name, to
    # check our PCRE2 versions of their regexes (and Llama-3's ignore_merges) against HF.
    variants = {
        "gpt2": (pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False),
        "llama-bpe": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(RE_LLAMA3), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True),
        "qwen2": (pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(RE_QWEN2), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), False),
    }
    head = text.encode("utf-8")[:VARIANT_BYTES].decode("utf-8")  # raises if cut inside a character
    with open(os.path.join(GOLD, "tok_pretok_variants.txt"), "w") as f:
        f.write("# SmolLM2's GGUF vocabulary + merges under other pre-tokenizers, encoded by Hugging Face\n"
                "# tokenizers (Split(regex, isolated) + ByteLevel(use_regex=false); llama-bpe also with\n"
                "# BPE ignore_merges=true). 'pre NAME' starts a block; cases as in tok_smollm2_cases.txt;\n"
                "# 'wiki BYTES count C fnv1a64 H': the first BYTES bytes of the CRLF->LF WikiText-2 test text.\n"
                "# 'split HEX PIECES': HF pre_tokenize_str pieces of a case (hex, comma-separated);\n"
                "# 'wikisplit BYTES count C fnv1a64 H': the pieces of that text (hash over uint32 LE\n"
                "# length + bytes of each piece).\n")
        variants["smollm"] = (tok.pre_tokenizer, False)
        for name, (pre, ignore) in variants.items():
            j = json.loads(tok.to_str())
            j["model"]["ignore_merges"] = ignore
            vt = Tokenizer.from_str(json.dumps(j))
            vt.pre_tokenizer = pre
            f.write("pre %s\n" % name)
            for s_ in SMOL_CASES:
                ids_s = vt.encode(s_, add_special_tokens=False).ids
                f.write("case 1 %s\n" % (s_.encode("utf-8").hex() or "-"))
                f.write("ids %d %s\n" % (len(ids_s), " ".join(str(x) for x in ids_s)))
            wids = vt.encode(head, add_special_tokens=False).ids
            f.write("wiki %d count %d fnv1a64 %016x\n" % (VARIANT_BYTES, len(wids), fnv1a64_ids(wids)))
            # the pre-tokens themselves: ids hide splits that merges would not cross
            for s_ in SMOL_CASES:
                if "<|" in s_:
                    continue
                pieces = [s_[a:b].encode("utf-8") for _, (a, b) in pre.pre_tokenize_str(s_)]
                f.write("split %s %s\n" % (s_.encode("utf-8").hex() or "-",
                                            ",".join(p.hex() for p in pieces) or "-"))
            pieces = [head[a:b].encode("utf-8") for _, (a, b) in pre.pre_tokenize_str(head)]
            f.write("wikisplit %d count %d fnv1a64 %016x\n" % (VARIANT_BYTES, len(pieces), fnv1a64_pieces(pieces)))
            print("variant %s: wiki head %d ids" % (name, len(wids)))

    # tokenizer.json for the C HF loader test (ignored folder)
    out = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.tokenizer")
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    r = GGUFReader(GGUF)
    tid = lambda k: int(r.fields[k].parts[-1][0])
    cfg = {"add_bos_token": False,  # SmolLM2 adds no BOS
           "bos_token": tokens[tid("tokenizer.ggml.bos_token_id")],
           "eos_token": tokens[tid("tokenizer.ggml.eos_token_id")],
           "chat_template": bytes(r.fields["tokenizer.chat_template"].parts[-1]).decode("utf-8")}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f)


# ------------------------------------------------------------- stories260K --

def read_llama2c_tok(path, vocab_size=512):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off = 4
    pieces, scores = [], []
    for _ in range(vocab_size):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + n])
        off += n
        scores.append(score)
    return pieces, scores


def llama2c_encode(pieces, scores, text, bos=True):
    """Independent re-implementation of llama2.c's encode(): BOS, dummy-prefix " ",
    one token per UTF-8 character (bytes of unknown characters as id byte+3), then
    repeatedly merge the adjacent pair whose concatenation has the best score
    (first such pair on ties)."""
    lookup = {p: i for i, p in enumerate(pieces)}
    out = [1] if bos else []
    raw = text.encode("utf-8")
    if raw:
        out.append(lookup[b" "])
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        ch = raw[i:j]
        if ch in lookup:
            out.append(lookup[ch])
        else:
            out.extend(b + 3 for b in ch)
        i = j
    while True:
        best, best_i = -1e10, -1
        for k in range(len(out) - 1):
            cand = pieces[out[k]] + pieces[out[k + 1]]
            if cand in lookup and scores[lookup[cand]] > best:
                best, best_i = scores[lookup[cand]], k
        if best_i < 0:
            break
        out[best_i:best_i + 2] = [lookup[pieces[out[best_i]] + pieces[out[best_i + 1]]]]
    return out


def stories_goldens():
    pieces, scores = read_llama2c_tok(TOK512)
    lines = open(TINY, encoding="utf-8").read().split("\n")
    cases = ["Zoo", "Once upon a time", "Hello, world!", "naïve 😀", "a  b\tc\nd", ""] + \
            [l for l in lines if l and not l.startswith("<|")][:5]
    with open(os.path.join(GOLD, "tok_stories260k.txt"), "w") as f:
        f.write("# stories260K tok512.bin goldens, computed by an independent Python re-implementation\n"
                "# of llama2.c's encode() (scripts/dev/make_tokenizer_golden.py: BOS=1, dummy-prefix\n"
                "# space, per-character lookup with byte+3 fallback, best-score pair merges).\n"
                "# Per case: 'case 1 <hex of UTF-8 text>' then 'ids <n> <id>...' (BOS included).\n"
                "# 'lines N count C fnv1a64 H': the first N non-empty lines of\n"
                "# ../shared/data/tinystories/tinystories-valid-head.txt not starting with '<|', each\n"
                "# encoded with BOS, ids concatenated: C ids, FNV-1a 64 of them as little-endian int32.\n")
        for s in cases:
            ids = llama2c_encode(pieces, scores, s)
            f.write("case 1 %s\n" % (s.encode("utf-8").hex() or "-"))
            f.write("ids %d %s\n" % (len(ids), " ".join(str(x) for x in ids)))
        # many lines at once: BOS + ids of each line, concatenated; count and hash
        story = [l for l in lines if l and not l.startswith("<|")][:N_STORY_LINES]
        all_ids = []
        for l in story:
            all_ids += llama2c_encode(pieces, scores, l)
        f.write("lines %d count %d fnv1a64 %016x\n" % (len(story), len(all_ids), fnv1a64_ids(all_ids)))
    print("stories260K: Zoo ->", llama2c_encode(pieces, scores, "Zoo"))


def main():
    os.makedirs(GOLD, exist_ok=True)
    stories_goldens()
    if os.path.exists(GGUF):
        smollm2_goldens()
    else:
        print("no %s: run scripts/setup.sh first" % GGUF, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
