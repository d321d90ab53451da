#!/usr/bin/env bash
# demo.sh — the main job on the default model, on a fresh machine:
# set-up (dependencies + SmolLM2-135M-Instruct GGUF), build, then
#   1. inspect the reference model (dequantized Q4_1 GGUF) and its tokenizer,
#   2. quantize it to 2 bits/weight with learned codebooks (.bf2), and to 4
#      bits for comparison,
#   3. compare the two: generation, perplexity on a slice of WikiText-2 and
#      KLD of the 2-bit model against the reference, decode/prefill speed.
# Everything printed is measured on this machine, now.
#   OPC_DEMO_CHUNKS   WikiText-2 chunks of 512 tokens to score (default 8)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc 2>/dev/null || echo 2)"
bin=build/release/opacc1ty
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
q2=models/SmolLM2-135M-Instruct.2bit.bf2
q4=models/SmolLM2-135M-Instruct.4bit.bf2
wiki=../shared/data/wikitext-2-raw/wiki.test.raw
chunks=${OPC_DEMO_CHUNKS:-8}
step() { printf '\n== %s\n' "$*"; }

step "opacc1ty info $model"
"$bin" info "$model"
step "opacc1ty tokenize (round trip)"
"$bin" tokenize "$model" --text "opacc1ty keeps weights 2-bit from memory to registers. Ünïcödé ✓"

step "opacc1ty quantize $model -o $q2 --bits 2"
"$bin" quantize "$model" -o "$q2" --bits 2
step "opacc1ty info $q2"
"$bin" info "$q2"
# 4-bit for comparison: where our quality is today (2 bits is not yet close to the reference)
step "opacc1ty quantize $model -o $q4 --bits 4 --quiet"
"$bin" quantize "$model" -o "$q4" --bits 4 --quiet

for m in "$model" "$q4" "$q2"; do
  step "opacc1ty generate $m --chat (greedy)"
  "$bin" generate "$m" --chat --prompt "What is the capital of France?" --max-tokens 48 --temp 0; echo
  step "opacc1ty generate $m (plain completion, greedy)"
  "$bin" generate "$m" --prompt "The history of the Roman Empire" --max-tokens 40 --temp 0; echo
done

if [ -f "$wiki" ]; then
  step "perplexity of the reference on $chunks chunks of WikiText-2 test (ctx 512), saving its logits"
  "$bin" perplexity "$model" --text "$wiki" --ctx 512 --chunks "$chunks" --save-logits models/ref.logits
  for m in "$q4" "$q2"; do
    step "perplexity + KLD of $m against the reference"
    "$bin" perplexity "$m" --text "$wiki" --ctx 512 --chunks "$chunks" --kld models/ref.logits
  done
fi

for m in "$model" "$q2"; do
  step "opacc1ty benchmark $m"
  "$bin" benchmark "$m" --max-tokens 64
done
