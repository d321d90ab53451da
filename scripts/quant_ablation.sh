#!/usr/bin/env bash
# quant_ablation.sh — quantize a model with several settings and measure each
# with `opacc1ty perplexity` (PPL, and KLD against the unquantized model's
# saved distributions). Prints one markdown table row per setting; the raw
# logs go to $OUT_DIR. Used for the issue-4 tables in docs/RESULTS.md.
#
#   scripts/quant_ablation.sh BIN MODEL TEXT CTX CHUNKS OUT_DIR "label|quantize options" ...
#
# Example (stories260K, TinyStories):
#   scripts/quant_ablation.sh build/quant/opacc1ty ../shared/models/stories260K/stories260K.bin \
#     ../shared/data/tinystories/tinystories-valid-head.txt 512 0 /tmp/abl \
#     "rtn 2-bit|--method rtn --outliers 0" "k-means 2-bit|--calib-tokens 0 --outliers 0"
# CHUNKS 0 = every chunk. THREADS (env) = threads for both commands (default 2).
set -euo pipefail
bin=$1 model=$2 text=$3 ctx=$4 chunks=$5 out=$6
shift 6
threads=${THREADS:-2}
mkdir -p "$out"
ch=(); [ "$chunks" != 0 ] && ch=(--chunks "$chunks")
ref="$out/ref.logp"
if [ ! -f "$ref" ]; then
  "$bin" perplexity "$model" --text "$text" --ctx "$ctx" "${ch[@]}" --threads "$threads" --quiet \
    --save-logits "$ref" >"$out/ref.log" 2>&1
fi
ref_ppl=$(grep -o 'PPL = [0-9.]* +/- [0-9.]*' "$out/ref.log" | head -1)
echo "| reference (unquantized) | – | – | ${ref_ppl#PPL = } | 0 | 100 |"
i=0
for spec in "$@"; do
  i=$((i + 1))
  label=${spec%%|*}
  opts=${spec#*|}
  q="$out/q$i.bf2"
  # shellcheck disable=SC2086
  "$bin" quantize "$model" -o "$q" --quiet --threads "$threads" $opts >"$out/q$i.log" 2>&1
  "$bin" perplexity "$q" --text "$text" --ctx "$ctx" "${ch[@]}" --threads "$threads" --quiet \
    --kld "$ref" >"$out/p$i.log" 2>&1
  bpw=$(grep -o 'weights, [0-9.]* bpw all-in' "$out/q$i.log" | grep -o '[0-9.]* bpw' | cut -d' ' -f1)
  qt=$(grep -o 'time  *[0-9.]* s quantize + [0-9.]* s calibration' "$out/q$i.log" | sed 's/time  *//')
  ppl=$(grep -o 'PPL = [0-9.]* +/- [0-9.]*' "$out/p$i.log" | head -1)
  kld=$(grep -o 'KLD mean = [0-9.]* +/- [0-9.]*' "$out/p$i.log" | sed 's/KLD mean = //')
  top1=$(grep -o 'top-1 agreement = [0-9.]*' "$out/p$i.log" | grep -o '[0-9.]*$')
  echo "| $label (\`$opts\`) | $bpw | $qt | ${ppl#PPL = } | $kld | $top1 |"
  rm -f "$q"
done
