#!/usr/bin/env bash
# cli_benchmark.sh BIN SRC — `opacc1ty benchmark` end to end.
#
# Usage errors exit 2 (no model, unknown option, --device other than cpu, a
# bad number), a missing model exits 1 naming the file. On stories260K
# (../shared; skipped, exit 77, when absent), as given (fp32) and quantized
# to 2 bits: --json parses, counts what was asked for, reports positive
# speeds and a probe, and the weight bytes per token equal what the shapes
# say (fp32: 4 bytes per weight of the 7 matrices per layer + the tied head;
# 2-bit: less, with the codebook part > 0). --int8-act either runs with the
# int8 kernel or, on a CPU without AVX-512 VNNI, exits 1 with a message.
set -u
bin=${1:?usage: cli_benchmark.sh BIN SRC}
src=${2:?usage: cli_benchmark.sh BIN SRC}
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

"$bin" benchmark >/dev/null 2>&1; check "no model exits 2" test $? -eq 2
"$bin" benchmark x.bf2 --bogus >/dev/null 2>&1; check "unknown option exits 2" test $? -eq 2
"$bin" benchmark x.bf2 --device tpu >/dev/null 2>&1; check "--device tpu exits 2" test $? -eq 2
"$bin" benchmark x.bf2 --max-tokens 0 >/dev/null 2>&1; check "--max-tokens 0 exits 2" test $? -eq 2
"$bin" benchmark x.bf2 --threads >/dev/null 2>&1; check "missing value exits 2" test $? -eq 2
err=$("$bin" benchmark /nonexistent/m.bf2 2>&1 >/dev/null); rc=$?
check "missing model exits 1" test $rc -eq 1
check "missing model is named" grep -q "/nonexistent/m.bf2" <<<"$err"

model="$src/../shared/models/stories260K/stories260K.bin"
if [ ! -f "$model" ]; then
  [ $fail -eq 0 ] || exit 1
  echo "SKIP: $model not present"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# json_check FILE EXPR...: every Python expression over the parsed object j is true
json_check() {
  local f=$1; shift
  python3 - "$f" "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
bad = [e for e in sys.argv[2:] if not eval(e, {"j": j})]
for e in bad: print("  false:", e, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# stories260K: dim 64, hidden 172, 5 layers, 8 heads / 4 kv heads of 8, vocab 512, tied head
per_layer=$((64*64 + 32*64 + 32*64 + 64*64 + 3*172*64))
f32_bytes=$(( (5*per_layer + 512*64) * 4 ))

"$bin" benchmark "$model" --max-tokens 5 --threads 1 --json >"$tmp/f32.json" 2>"$tmp/err"
check "fp32 run exits 0" test $? -eq 0
check "fp32 json" json_check "$tmp/f32.json" \
  "j['decode_tokens'] == 5" "j['threads'] == 1" "j['device'] == 'cpu'" \
  "j['prompt_tokens'] > 0" "j['prefill_tok_s'] > 0" "j['decode_tok_s'] > 0" \
  "j['ms_per_token'] > 0" "j['probe_read_gb_s'] > 0" "j['effective_gb_s'] > 0" \
  "j['weight_bytes_per_token'] == $f32_bytes" "j['codebook_bytes_per_token'] == 0"

"$bin" benchmark "$model" --max-tokens 3 --threads 1 --prompt-tokens 40 --compare-gemv --json \
  >"$tmp/gemv.json" 2>>"$tmp/err"
check "--prompt-tokens/--compare-gemv json" json_check "$tmp/gemv.json" \
  "j['prompt_tokens'] == 40" "j['prefill_gemv_loop_s'] > 0" "j['prefill_speedup_vs_gemv_loop'] > 0"

out=$("$bin" benchmark "$model" --max-tokens 2 --threads 1); rc=$?
check "text output exits 0" test $rc -eq 0
check "text output has the roofline line" grep -Eq '^bandwidth .* of the roofline$' <<<"$out"

if "$bin" quantize "$model" -o "$tmp/s2.bf2" --bits 2 --calib-tokens 0 --quiet >/dev/null 2>>"$tmp/err"; then
  "$bin" benchmark "$tmp/s2.bf2" --max-tokens 4 --threads 1 --json >"$tmp/cb.json" 2>>"$tmp/err"
  check "2-bit run exits 0" test $? -eq 0
  check "2-bit json" json_check "$tmp/cb.json" \
    "j['decode_tokens'] == 4" "0 < j['codebook_bytes_per_token'] <= j['weight_bytes_per_token']" \
    "j['weight_bytes_per_token'] < $f32_bytes" "j['cb_kernel'] in ('scalar', 'avx2', 'avx512')"
  "$bin" benchmark "$tmp/s2.bf2" --max-tokens 2 --threads 1 --int8-act --json >"$tmp/i8.json" 2>"$tmp/i8err"
  rc=$?
  if [ $rc -eq 0 ]; then
    check "--int8-act uses the int8 kernel" json_check "$tmp/i8.json" "j['cb_kernel'] == 'avx512-i8'"
  else
    check "--int8-act without VNNI exits 1 with a reason" \
      bash -c "[ $rc -eq 1 ] && grep -q 'AVX-512 VNNI' '$tmp/i8err'"
  fi
  # --device cuda: runs where there is a GPU, otherwise a clean error naming the reason
  "$bin" benchmark "$tmp/s2.bf2" --max-tokens 2 --device cuda --json >"$tmp/gpu.json" 2>"$tmp/gpuerr"
  rc=$?
  if [ $rc -eq 0 ]; then
    check "--device cuda json" json_check "$tmp/gpu.json" "j['device'] == 'cuda'" "j['probe_copy_gb_s'] > 0"
  else
    check "--device cuda without a GPU/CUDA build fails cleanly" \
      bash -c "[ $rc -eq 1 -o $rc -eq 2 ] && grep -qi 'cuda' '$tmp/gpuerr'"
  fi
  check "--device bogus is a usage error" bash -c "! '$bin' benchmark '$tmp/s2.bf2' --device tpu 2>/dev/null"
else
  echo "FAIL quantize stories260K to 2 bits"; cat "$tmp/err"; fail=1
fi

[ $fail -eq 0 ] || { echo "stderr of the runs:"; cat "$tmp/err"; exit 1; }
echo "all ok"
