#!/usr/bin/env bash
# cli_quantize.sh — `opacc1ty quantize` end to end on stories260K: the .bf2
# opens (info), with group scales and rotation too, GPTQ on / off, the size-budget allocation and its
# overrides, bad options exit 2 without creating output, and SIGINT
# during a run exits non-zero leaving no output and no temporary file.
#   usage: cli_quantize.sh BIN SOURCE_DIR     (exit 77 = skipped)
set -u
bin=$1 src=$2
model="$src/../shared/models/stories260K/stories260K.bin"
[ -f "$model" ] || { echo "skip: $model not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

out="$tmp/st.bf2"
"$bin" quantize "$model" -o "$out" --quiet --calib-tokens 64 --threads 1 >"$tmp/q.log" 2>&1
rc=$?
check "quantize exits 0" "[ $rc = 0 ]"
check "output exists" "[ -s '$out' ]"
check "summary has all-in bpw" "grep -q 'bpw all-in' '$tmp/q.log'"
check "info reads it" "'$bin' info '$out' >'$tmp/info.log' 2>&1 && grep -q 'cb2' '$tmp/info.log'"

# group scales + rotation: written, read back, counted in the all-in bpw
out2="$tmp/st_gsrot.bf2"
"$bin" quantize "$model" -o "$out2" --quiet --calib-tokens 64 --threads 1 --group-scales on --rotate on \
  --rotate-block 32 >"$tmp/q2.log" 2>&1
rc=$?
check "quantize --group-scales on --rotate on exits 0" "[ $rc = 0 ] && [ -s '$out2' ]"
check "summary counts the scales" "grep -q 'scales 0\.[0-9]*[1-9]' '$tmp/q2.log'"
check "summary names the rotation" "grep -q 'rotation on (blocks up to 32 columns)' '$tmp/q2.log'"
check "info reads it" "'$bin' info '$out2' >/dev/null 2>&1"
for bad in "--rotate-block 3" "--rotate-block 65536" "--rotate maybe" "--group-scales 1" "--scale-rounds 0" \
  "--gptq-damp 0" "--gptq-damp x" "--calib-tokens -5" "--gptq on --calib-tokens 0" "--gptq --method rtn"; do
  # shellcheck disable=SC2086
  "$bin" quantize "$model" -o "$tmp/bad.bf2" $bad >/dev/null 2>&1
  check "$bad is a usage error" "[ $? = 2 ] && [ ! -e '$tmp/bad.bf2' ]"
done

# GPTQ on / off: on says so in the summary and defaults to more calibration tokens; off has two
# spellings. The default at 2 bits is on for models whose matrices are at most 2048 wide (stories260K
# is): the first run above used it
"$bin" quantize "$model" -o "$tmp/g.bf2" --quiet --gptq on --calib-tokens 128 --threads 1 >"$tmp/g.log" 2>&1
check "--gptq on exits 0 and says GPTQ" "[ $? = 0 ] && grep -q 'GPTQ error feedback' '$tmp/g.log'"
"$bin" quantize "$model" -o "$tmp/g2.bf2" --quiet --gptq --threads 1 >"$tmp/g2.log" 2>&1
check "--gptq alone calibrates on 1024 tokens" "[ $? = 0 ] && grep -q 'calibration   1024 tokens' '$tmp/g2.log'"
"$bin" quantize "$model" -o "$tmp/n1.bf2" --quiet --no-gptq --calib-tokens 64 --threads 1 >/dev/null 2>&1 &&
  "$bin" quantize "$model" -o "$tmp/n2.bf2" --quiet --gptq off --calib-tokens 64 --threads 1 >/dev/null 2>&1
check "--no-gptq = --gptq off" "cmp -s '$tmp/n1.bf2' '$tmp/n2.bf2'"
check "2-bit default on a small model uses GPTQ" "grep -q 'GPTQ error feedback' '$tmp/q.log'"

"$bin" quantize "$model" -o "$tmp/bad.bf2" --bits 5 >/dev/null 2>&1
check "--bits 5 is a usage error" "[ $? = 2 ] && [ ! -e '$tmp/bad.bf2' ]"
"$bin" quantize "$model" -o "$tmp/bad.bf2" --override 'attn_q=7' --calib-tokens 0 >/dev/null 2>&1
check "bad --override fails without output" "[ $? != 0 ] && [ ! -e '$tmp/bad.bf2' ]"

# 2-bit default: mixed precision under --bpw-budget 2.5. stories260K's 64-wide rows make even uniform
# 2-bit larger than that (codebooks alone are 1 bpw), so the default promotes nothing and says so; a
# larger budget promotes the first block's FFN first (stories260K has 5 blocks), never what --override
# names; --edge-bits still sets the first and last blocks; --dry-run plans without writing
"$bin" quantize "$model" -o "$tmp/b0.bf2" --quiet --calib-tokens 0 >"$tmp/b0.log" 2>&1
"$bin" info "$tmp/b0.bf2" --layers >"$tmp/b0.txt" 2>&1
check "default: budget below uniform 2-bit, all cb2, a warning" "! grep -q ' cb4 ' '$tmp/b0.txt' && grep -q 'budget 2.5 is below' '$tmp/b0.log' && grep -q 'allocation    budget 2.5 bpw, from .*: no step fits' '$tmp/b0.log'"
"$bin" quantize "$model" -o "$tmp/b1.bf2" --quiet --calib-tokens 0 --bpw-budget 4.5 --override 'blk.0.ffn_up=2' >"$tmp/b1.log" 2>&1
"$bin" info "$tmp/b1.bf2" --layers >"$tmp/b1.txt" 2>&1
check "--bpw-budget 4.5: first block's ffn_down 4-bit, attn_q 2-bit" "grep -Eq '^blk.0.ffn_down.weight .* cb4 ' '$tmp/b1.txt' && grep -Eq '^blk.2.attn_q.weight .* cb2 ' '$tmp/b1.txt'"
check "--override wins over the allocation" "grep -Eq '^blk.0.ffn_up.weight .* cb2 ' '$tmp/b1.txt'"
bpw=$(grep -o '[0-9.]* bpw all-in' "$tmp/b1.log" | cut -d' ' -f1)
check "--bpw-budget 4.5 is kept ($bpw bpw)" "awk -v b='$bpw' 'BEGIN{exit !(b > 3 && b <= 4.5)}'"
"$bin" quantize "$model" --dry-run --bpw-budget 4.5 --override 'blk.0.ffn_up=2' >"$tmp/dry.txt" 2>&1
check "--dry-run predicts the same bpw, writes nothing" "grep -q \"$bpw bpw all-in\" '$tmp/dry.txt' && grep -Eq '^blk.0.ffn_down.weight +cb4 ' '$tmp/dry.txt'"
"$bin" quantize "$model" -o "$tmp/edge.bf2" --quiet --calib-tokens 0 --edge-bits 4 >/dev/null 2>&1
"$bin" info "$tmp/edge.bf2" --layers >"$tmp/edge.txt" 2>&1
check "--edge-bits 4: edge blocks 4-bit" "grep -Eq '^blk.0.attn_q.weight .* cb4 ' '$tmp/edge.txt' && grep -Eq '^blk.4.ffn_down.weight .* cb4 ' '$tmp/edge.txt'"
check "--edge-bits 4: middle blocks 2-bit" "grep -Eq '^blk.2.attn_q.weight .* cb2 ' '$tmp/edge.txt'"
"$bin" quantize "$model" -o "$tmp/ovedge.bf2" --quiet --calib-tokens 0 --edge-bits 4 --override 'blk.4.attn_v*=2' >/dev/null 2>&1
"$bin" info "$tmp/ovedge.bf2" --layers >"$tmp/ovedge.txt" 2>&1
check "--override wins on an edge block" "grep -Eq '^blk.4.attn_v.weight .* cb2 ' '$tmp/ovedge.txt' && grep -Eq '^blk.4.attn_q.weight .* cb4 ' '$tmp/ovedge.txt'"
"$bin" quantize "$model" -o "$tmp/ol.bf2" --quiet --calib-tokens 0 --bpw-budget 0 --override-outliers 'attn_q=0' >/dev/null 2>&1
"$bin" info "$tmp/ol.bf2" --layers >"$tmp/ol.txt" 2>&1
check "--override-outliers: attn_q without outliers" "grep -Eq '^blk.2.attn_q.weight .* outliers=0\.000%' '$tmp/ol.txt' && grep -Eq '^blk.2.attn_k.weight .* outliers=0\.[1-9]' '$tmp/ol.txt'"
for bad in "--edge-bits 5" "--bpw-budget -1" "--bpw-budget x"; do
  # shellcheck disable=SC2086
  "$bin" quantize "$model" -o "$tmp/bad.bf2" $bad >/dev/null 2>&1
  check "$bad is a usage error" "[ $? = 2 ] && [ ! -e '$tmp/bad.bf2' ]"
done
"$bin" quantize "$model" -o "$tmp/bad.bf2" --calib-tokens 0 --override-outliers 'attn_q=0.9' >/dev/null 2>&1
check "bad --override-outliers fails without output" "[ $? != 0 ] && [ ! -e '$tmp/bad.bf2' ]"

# SIGINT while calibrating/quantizing (long calibration so the signal lands mid-run)
echo "previous" >"$tmp/int.bf2"
"$bin" quantize "$model" -o "$tmp/int.bf2" --quiet --calib-tokens 200000 --threads 1 >/dev/null 2>&1 &
pid=$!
sleep 1
kill -INT $pid
wait $pid
rc=$?
check "SIGINT exits non-zero" "[ $rc != 0 ]"
check "existing output untouched" "[ \"\$(cat '$tmp/int.bf2')\" = previous ]"
check "no temporary file left" "! ls '$tmp'/int.bf2.tmp.* >/dev/null 2>&1"
exit $fail
