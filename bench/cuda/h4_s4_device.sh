#!/usr/bin/env bash
# h4_s4_device.sh — sampling on the device (issue 6), one call on the device
# machine (carry [".debs","gpu_carry"]; logs to $OUT/h4s4_*.txt):
#   build   opacc1ty_cli, test_cuda_sample, test_cuda_forward
#   tests   test_cuda_sample (device sampler vs opc_sampler_sample; stories260K
#           sampled decoding vs host picks and vs the CPU pass)
#   cli     generate stories260K --temp 0.8 --seed 7: --device cuda (device
#           picks) vs OPC_CUDA_HOST_SAMPLE=1 (host picks of the same logits)
#           vs --device cpu
#   speed   generate --device cuda decode tok/s, 2-bit SmolLM2 .bf2 and the
#           llama3-8b shape (synth --bits 2): --temp 0 (greedy on the device),
#           --temp 0.8 with host picks (before) and device picks (after), for
#           top-k 40 / top-p 0.95 (defaults) and top-k 0 / top-p 0.9
#   then, while time is left: test_cuda_forward, racecheck + memcheck of
#   test_cuda_sample (OPC_TEST_QUICK=1)
# WHAT=speed skips the build and the tests (a warm machine's second call).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
B=build/gpu
WHAT=${1:-all}
L="$OUT/h4s4_$WHAT.txt"
T0=$(date +%s)
log() { printf '\n=== %s (%s, +%ss)\n' "$*" "$(date -u +%H:%M:%S)" "$(($(date +%s) - T0))" | tee -a "$L"; }
left() { [ $(($(date +%s) - T0)) -lt "$1" ]; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
source scripts/gpu_env.sh
X=$B/opacc1ty
if [ "$WHAT" != speed ]; then
  log build
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
  for tg in opacc1ty_cli test_cuda_sample test_cuda_forward; do
    cmake --build $B -j16 --target $tg > /tmp/opc_build_$tg.txt 2>&1 && echo "built $tg" | tee -a "$L" ||
      { echo "BUILD FAILED: $tg" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_$tg.txt | head -20 | tee -a "$L"; }
  done
  log test_cuda_sample
  (cd $B && timeout 100 ./test_cuda_sample) > "$OUT/h4s4_test_cuda_sample.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL|mismatch|picks|tokens|margin" "$OUT/h4s4_test_cuda_sample.txt" | head -30 | tee -a "$L"

  log "cli: stories260K --temp 0.8 --seed 7, 100 tokens"
  S=gpu_carry/stories260K/stories260K.bin
  g() { timeout 30 $X generate $S --prompt "Once upon a time" --temp 0.8 --seed 7 --max-tokens 100 "$@" 2>>"$L"; }
  g --device cuda > /tmp/s_dev.txt
  OPC_CUDA_HOST_SAMPLE=1 g --device cuda > /tmp/s_host.txt
  g --device cpu --threads 4 > /tmp/s_cpu.txt
  head -c 400 /tmp/s_dev.txt | tee -a "$L"; echo | tee -a "$L"
  cmp /tmp/s_dev.txt /tmp/s_host.txt && echo "cuda device picks == cuda host picks: identical text" | tee -a "$L"
  cmp /tmp/s_dev.txt /tmp/s_cpu.txt && echo "cuda device picks == cpu: identical text" | tee -a "$L"
fi

speed() { # model label max_tokens
  local m=$1 lab=$2 n=$3
  for cfg in "--top-k 40 --top-p 0.95" "--top-k 0 --top-p 0.9"; do
    for mode in greedy host device; do
      case $mode in
        greedy) [ "$cfg" = "--top-k 40 --top-p 0.95" ] || continue; args="--temp 0"; env="" ;;
        host) args="--temp 0.8 $cfg"; env="OPC_CUDA_HOST_SAMPLE=1" ;;
        device) args="--temp 0.8 $cfg"; env="" ;;
      esac
      r=$(env $env timeout 60 $X generate "$m" --prompt "Once upon a time" --max-tokens "$n" --seed 1 $args \
            --device cuda 2>&1 >/dev/null | grep -E "decode" | sed -E 's/.*generated/generated/')
      echo "$lab $mode ${env:-} $args: $r" | tee -a "$L"
    done
  done
}
if left 140; then
  log "speed: SmolLM2 2-bit (gpu_carry/smollm2-2bit.bf2), 512 tokens"
  speed gpu_carry/smollm2-2bit.bf2 smollm2 512
fi
if left 130; then
  log "speed: llama3-8b shape, synth --bits 2, 256 tokens"
  rm -f /tmp/l8b.bf2
  timeout 60 $X synth --shape llama3-8b --bits 2 -o /tmp/l8b.bf2 --quiet 2>&1 | tail -1 | tee -a "$L"
  speed /tmp/l8b.bf2 llama3-8b 256
  rm -f /tmp/l8b.bf2
fi
if [ "$WHAT" != speed ] && left 160; then
  log test_cuda_forward
  (cd $B && timeout 60 ./test_cuda_forward) > "$OUT/h4s4_test_cuda_forward.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" "$OUT/h4s4_test_cuda_forward.txt" | tail -6 | tee -a "$L"
fi
for tool in racecheck memcheck; do
  left 150 || break
  log "$tool test_cuda_sample quick"
  (cd $B && OPC_TEST_QUICK=1 timeout $((170 - $(date +%s) + T0)) compute-sanitizer --tool $tool ./test_cuda_sample) > "$OUT/h4s4_$tool.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|hazard|Invalid" "$OUT/h4s4_$tool.txt" | head -6 | tee -a "$L"
done
log done
