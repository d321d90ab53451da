#!/usr/bin/env bash
# demo.sh — the main job on the default model, on a fresh machine:
# set-up (dependencies + SmolLM2-135M-Instruct GGUF), build, then run the
# pipeline as far as it exists today.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"$(nproc 2>/dev/null || echo 2)"
bin=build/release/opacc1ty
model=models/SmolLM2-135M-Instruct.Q4_1.gguf

echo "== opacc1ty info $model"
"$bin" info "$model"
echo "== opacc1ty tokenize (round trip)"
"$bin" tokenize "$model" --text "opacc1ty keeps weights 2-bit from memory to registers. Ünïcödé ✓"
