#!/usr/bin/env bash
# h2_device.sh — GPU quantizer speed on the device machine (helper h2, issue 6).
# Runs binaries built on the development machine (same CUDA 13.0, sm_90) and
# carried in build-h2/ (bench_v1 = the quantizer before the rewrite, bench_v2 /
# test_v2 = after, opacc1ty = the CLI); says so when one cannot start there.
#   bash bench/cuda/h2_device.sh profile   v1 per-phase profile (bench_cuda_quant --profile)
#   bash bench/cuda/h2_device.sh final     test_v2 + memcheck + racecheck; v1 vs v2 on the
#                                          quantize defaults and on 2-bit + scales; 32 layers
#   bash bench/cuda/h2_device.sh e2e       synth an f16 8B-shape .bf2, `quantize --device cuda`
# Carry ["build-h2", ".debs"] (+ "gpu_carry/h6_smol_tensors.bin" for the real-tensor
# test). Logs go to $OUT; copies of them: bench/cuda/results/h200_2026-11-26_s3_quant_*.txt.
# The binaries are not in git: build bench_cuda_quant / test_cuda_quant / opacc1ty with
# -DCMAKE_CUDA_ARCHITECTURES=90 and copy them to build-h2/ (bench_v1 from the tree before).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-final}
L="$OUT/h2_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }
log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee -a "$L"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d $d ] && export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
if [ -d .debs ]; then # the CLI's cJSON / PCRE2 (docs/GPU.md)
  source scripts/gpu_env.sh
  export LD_LIBRARY_PATH=/tmp/opcdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
for b in build-h2/*; do
  if ldd "$b" | grep -q "not found"; then echo "$b: cannot start: $(ldd "$b" | grep 'not found' | head -2)" | tee -a "$L"; fi
done
export OMP_WAIT_POLICY=PASSIVE
# test_v2 looks for the real tensors under the development machine's path
for d in /work/main /tmp/h2/tree; do
  if [ -f gpu_carry/h6_smol_tensors.bin ] && [ ! -e $d/gpu_carry/h6_smol_tensors.bin ]; then
    mkdir -p $d/gpu_carry 2>/dev/null && ln -sf "$PWD/gpu_carry/h6_smol_tensors.bin" $d/gpu_carry/ 2>/dev/null
  fi
done
tests() {
  log "test_cuda_quant (v2)"
  (timeout 200 build-h2/test_v2) > "$OUT/h2_test.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "identical|real |passed|FAIL|fail" "$OUT/h2_test.txt" | tee -a "$L"
  log "memcheck, quick cases"
  (OPC_TEST_QUICK=1 timeout 120 compute-sanitizer --tool memcheck build-h2/test_v2) > "$OUT/h2_memcheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|passed|Invalid|Program hit" "$OUT/h2_memcheck.txt" | head -12 | tee -a "$L"
  log "racecheck, quick cases"
  (OPC_TEST_QUICK=2 timeout 120 compute-sanitizer --tool racecheck build-h2/test_v2) > "$OUT/h2_racecheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|hazard" "$OUT/h2_racecheck.txt" | head -12 | tee -a "$L"
}
case "$WHAT" in
final)
  tests
  log "before (v1): quantize defaults, 3 layers (4-bit, 2-bit, 4-bit)"
  timeout 60 build-h2/bench_v1 --defaults --layers 3 --cpu-layers 0 2>&1 | tee -a "$L"
  log "after (v2): quantize defaults, 3 layers (4-bit, 2-bit, 4-bit)"
  timeout 60 build-h2/bench_v2 --defaults --layers 3 --cpu-layers 0 2>&1 | tee -a "$L"
  log "before (v1): 2-bit + group scales + 1% outliers, 1 layer"
  timeout 60 build-h2/bench_v1 --gs 1 --rot 0 --layers 1 --cpu-layers 0 2>&1 | tee -a "$L"
  log "after (v2): 2-bit + group scales + 1% outliers, 1 layer"
  timeout 60 build-h2/bench_v2 --gs 1 --rot 0 --layers 1 --cpu-layers 0 2>&1 | tee -a "$L"
  log "after (v2): quantize defaults, 3 layers, fp16 host weights (opc_cuda_quantize_matrix_h16)"
  timeout 60 build-h2/bench_v2 --defaults --layers 3 --f16 1 --cpu-layers 0 2>&1 | tee -a "$L"
  log "after (v2): quantize defaults, all 32 layers, profiled"
  timeout 120 build-h2/bench_v2 --defaults --layers 32 --profile --cpu-layers 0 2>&1 | tee -a "$L"
  ;;
e2e)
  X=build-h2/opacc1ty
  log "synth llama3-8b f16"
  rm -f /tmp/f16.bf2 /tmp/q.bf2
  ( time timeout 250 $X synth --shape llama3-8b --bits 16 -o /tmp/f16.bf2 --quiet ) 2>&1 | tail -6 | tee -a "$L"
  ls -la /tmp/f16.bf2 | tee -a "$L"
  free -g | tee -a "$L"
  log "quantize --device cuda, default options"
  ( time timeout 300 $X quantize /tmp/f16.bf2 -o /tmp/q.bf2 --device cuda --verbose ) > "$OUT/h2_e2e_quantize.txt" 2>&1
  tail -14 "$OUT/h2_e2e_quantize.txt" | tee -a "$L"
  ls -la /tmp/q.bf2 | tee -a "$L"
  ;;
profile)
  log "v1, quantize defaults (2-bit, 4-bit edge layers, 0.5% outliers, no scales), 3 layers, profiled"
  timeout 200 build-h2/bench_v1 --defaults --layers 3 --profile --cpu-layers 0 2>&1 | tee -a "$L"
  log "v1, quantize defaults, 3 layers, not profiled"
  timeout 200 build-h2/bench_v1 --defaults --layers 3 --cpu-layers 0 2>&1 | tee -a "$L"
  log "v1, 2-bit + group scales + 1% outliers (the RESULTS.md configuration), 1 layer"
  timeout 100 build-h2/bench_v1 --gs 1 --rot 0 --layers 1 --cpu-layers 0 2>&1 | tee -a "$L"
  ;;
esac
