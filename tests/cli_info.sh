#!/usr/bin/env bash
# cli_info.sh BIN SRC — `opacc1ty info` end to end.
#
# On the default SmolLM2 GGUF (skipped, exit 77, when it is absent): the
# config, tokenizer and size lines match what gguf-py reads from the file
# (tests/golden/gguf_smollm2_meta.txt), and --layers lists all 272 tensors.
# Error paths: no argument / unknown option -> exit 2; a missing file and a
# GGUF of an unsupported architecture -> exit 1 with a message naming the file.
# A synthetic .bf2 with group scales and rotation (no download needed): the
# codebook summary line, the per-tensor gscale / rot=B notes, and bytes and
# bits per weight that count the scale bytes (all-in).
set -u
bin=${1:?usage: cli_info.sh BIN SRC}
src=${2:?usage: cli_info.sh BIN SRC}
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

"$bin" info >/dev/null 2>&1; check "no argument exits 2" test $? -eq 2
"$bin" info --bogus x >/dev/null 2>&1; check "unknown option exits 2" test $? -eq 2
err=$("$bin" info /nonexistent/model.gguf 2>&1 >/dev/null); rc=$?
check "missing file exits 1" test $rc -eq 1
check "missing file is named" grep -q "/nonexistent/model.gguf" <<<"$err"
# the golden quant file is a valid GGUF of the made-up architecture "opc-golden"
err=$("$bin" info "$src/tests/golden/gguf_quants.gguf" 2>&1 >/dev/null); rc=$?
check "unsupported arch exits 1" test $rc -eq 1
check "unsupported arch is named" grep -q 'UNSUPPORTED.*opc-golden' <<<"$err"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if "$bin" synth --shape tiny-untied --bits 2 --head-bits 2 --gscale --rotate -o "$tmp/v.bf2" --quiet >/dev/null; then
  out=$("$bin" info "$tmp/v.bf2" --layers); rc=$?
  check "info on a scaled, rotated .bf2 exits 0" test $rc -eq 0
  has() { grep -Eq "$1" <<<"$out"; }
  # 15 codebook tensors: 7 per layer x 2 and the head; widths 96 (block 32) and 200 (block 8)
  check "codebook summary" has '^codebooks: +15 tensors, 15 with group scales, 15 rotated \(blocks of 8\.\.32\)$'
  # 96 x 96 CB2: indices 96*32 + codebooks 96*4*2 + scales 96*2 = 4032 bytes = 3.5 bits/weight
  check "attn_q: scale bytes in bytes and bpw, notes" \
    has '^blk\.0\.attn_q\.weight +96 x 96 +cb2 +4032 +3\.5000 +2-bit k=4 outliers=0\.000% gscale rot=32$'
  # 96 x 200 CB2: 96*64 + 96*8 + 96*4 = 7296 bytes
  check "ffn_down: rotation block 8" has '^blk\.1\.ffn_down\.weight +96 x 200 +cb2 +7296 +3\.0400 .* gscale rot=8$'
  check "embedding is not a codebook here" has '^token_embd\.weight +300 x 96 +f16 +57600 '
  "$bin" synth --shape tiny-untied --bits 2 --head-bits 2 -o "$tmp/p.bf2" --quiet >/dev/null
  out=$("$bin" info "$tmp/p.bf2" --layers)
  check "plain codebooks: no variant notes" has '^blk\.0\.attn_q\.weight +96 x 96 +cb2 +3840 +3\.3333 +2-bit k=4 outliers=0\.000%$'
  check "plain codebooks: summary" has '^codebooks: +15 tensors, 0 with group scales, 0 rotated$'
else
  check "synth for the variant checks" false
fi

model="$src/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$model" ]; then
  [ $fail -eq 0 ] || exit 1
  echo "SKIP: $model not present (run scripts/setup.sh)"; exit 77
fi
meta="$src/tests/golden/gguf_smollm2_meta.txt"
val() { awk -v k="$1" '$1 == k { print $2 }' "$meta"; }
out=$("$bin" info "$model"); rc=$?
check "info exits 0" test $rc -eq 0
has() { grep -Eq "$1" <<<"$out"; }
check "format" has '^format: +gguf v3$'
check "arch" has '^arch: +llama$'
check "dim" has "^  dim +$(val dim)\$"
check "hidden_dim" has "^  hidden_dim +$(val hidden_dim)\$"
check "n_layers" has "^  n_layers +$(val n_layers)\$"
check "n_heads" has "^  n_heads +$(val n_heads)\$"
check "n_kv_heads" has "^  n_kv_heads +$(val n_kv_heads)\$"
check "vocab" has "^  n_tokens +$(val n_tokens)\$"
check "merges" has "^  n_merges +$(val n_merges)\$"
check "bos" has "^  bos +$(val bos) "
check "chat template" has '^  chat_template +chatml$'
check "tensor count" has "^tensors: +$(val n_tensors) "
check "params" has "^params: +$(val params) "
check "tensor bytes" has "^tensor bytes: +$(val tensor_bytes) "
check "file size" has "^file size: +$(stat -c %s "$model") bytes"
layers=$("$bin" info "$model" --layers | awk '/^tensor +shape/ { on = 1; next } on && NF' | wc -l)
check "--layers lists every tensor" test "$layers" -eq "$(val n_tensors)"
exit $fail
