#!/usr/bin/env bash
# alloc_sensitivity.sh — measurement only: the per-tensor-group sensitivities
# behind the 2-bit allocation steps (src/quant/quantize.c, k_alloc_steps;
# numbers in docs/RESULTS.md). Quantizes the model uniformly at each setting
# once, then scores mixtures with scripts/dev/mix_eval.c (KLD to the source
# model on held-out tokens: ctx 512, 6 chunks after the first 40, all
# positions scored), so no mixture is re-quantized.
#
#   scripts/dev/alloc_sensitivity.sh BUILD MODEL TEXT OUT_DIR
# BUILD: a CPU release build folder (opacc1ty and libopacc1ty.a in it).
# THREADS (env): threads (default 2). Takes ~2 min of quantizing plus ~5 s
# per mixture on 2 quiet cores (~180 mixtures).
set -euo pipefail
build=$1 model=$2 text=$3 out=$4
threads=${THREADS:-2}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$out"
cc -O2 -std=c11 -fopenmp -I "$root/include" -I "$root/src" "$here/mix_eval.c" "$build/libopacc1ty.a" \
  -lm -lpcre2-8 -lcjson -o "$out/mix_eval"

# uniform files: name|options (--bpw-budget 0: no allocation)
for spec in "a2|--bits 2 --outliers 0.005" "a2o0|--bits 2 --outliers 0" "a2o1|--bits 2 --outliers 0.01" \
  "b4|--bits 4 --outliers 0" "b4o5|--bits 4 --outliers 0.005" "c3|--bits 3 --outliers 0"; do
  n=${spec%%|*}
  [ -f "$out/$n.bf2" ] && continue
  # shellcheck disable=SC2086
  "$build/opacc1ty" quantize "$model" -o "$out/$n.bf2" --quiet --threads "$threads" --bpw-budget 0 \
    --edge-bits 0 ${spec#*|} >"$out/$n.log" 2>&1
done

layers=$("$build/opacc1ty" info "$model" | awk '$1 == "n_layers" { print $2; exit }')
classes="attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down"
{
  echo "base a2"
  for l in $(seq 0 $((layers - 1))); do echo "block$l a2 blk.$l.*=b4"; done
  for c in $classes; do echo "class_$c a2 $c=b4"; done
  for c in $classes; do echo "no_outliers_$c a2 $c=a2o0"; echo "outliers1_$c a2 $c=a2o1"; done
  echo "v_only a2 attn_v=b4"
  for c in attn_q attn_k attn_output ffn_gate ffn_up ffn_down; do
    echo "first_$c a2 attn_v=b4 blk.0.$c=b4"
    echo "last_$c a2 attn_v=b4 blk.$((layers - 1)).$c=b4"
  done
  for c in ffn_down ffn_up ffn_gate; do
    for l in $(seq 0 $((layers - 1))); do echo "t${l}_$c a2 attn_v=b4 blk.$l.$c=b4"; done
  done
  echo "first_block_3bit a2 blk.0.*=c3"
  echo "first_block_4bit_outliers a2 blk.0.*=b4o5"
} >"$out/plan.txt"
OMP_WAIT_POLICY=PASSIVE "$out/mix_eval" "$model" "$text" --ctx 512 --skip 40 --chunks 6 --full --threads "$threads" \
  a2="$out/a2.bf2" a2o0="$out/a2o0.bf2" a2o1="$out/a2o1.bf2" b4="$out/b4.bf2" b4o5="$out/b4o5.bf2" c3="$out/c3.bf2" \
  <"$out/plan.txt" | tee "$out/sensitivity.txt"
