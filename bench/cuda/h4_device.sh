#!/usr/bin/env bash
# h4_device.sh — RMSNorm and SwiGLU fused into the 2-bit GEMV's x staging
# (issue 6), one call on the device machine:
#   build     test_cuda, test_cuda_forward, opacc1ty_cli, bench_cuda_forward
#   tests     test_cuda (opc_cuda_cb_gemv_xf vs the host), test_cuda_forward
#             (GPU vs CPU logits: stories260K with and without the fusion,
#             the 2-bit SmolLM2 .bf2 when gpu_carry/ is carried)
#   speed     8B-shape 2-bit decode (synth llama3-8b --bits 2), fused (default)
#             and OPC_CUDA_NO_PROLOGUE_FUSE=1, alternating, twice
#   memcheck  test_cuda_forward quick under compute-sanitizer
# Carry [".debs","gpu_carry"]. Logs go to $OUT (h4_*.txt).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
B=build/gpu
L="$OUT/h4_main.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
source scripts/gpu_env.sh
log build
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
# one target at a time: another helper's unfinished edit must not hide the others
for tg in test_cuda bench_cuda_forward opacc1ty_cli test_cuda_forward; do
  cmake --build $B -j16 --target $tg > /tmp/opc_build_$tg.txt 2>&1 && echo "built $tg" | tee -a "$L" ||
    { echo "BUILD FAILED: $tg" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_$tg.txt | head -20 | tee -a "$L"; }
done

for t in test_cuda test_cuda_forward; do
  log $t
  (cd $B && timeout 150 ./$t) > "$OUT/h4_$t.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL|off|differ" "$OUT/h4_$t.txt" | tail -8 | tee -a "$L"
done

X=$B/opacc1ty
log synth llama3-8b 2-bit
rm -f /tmp/l8b.bf2; timeout 200 $X synth --shape llama3-8b --bits 2 -o /tmp/l8b.bf2 --quiet 2>&1 | tail -1 | tee -a "$L"
for k in fused separate fused separate; do
  if [ $k = fused ]; then log "8B decode, norms + SwiGLU fused into the GEMV (default)"; unset OPC_CUDA_NO_PROLOGUE_FUSE
  else log "8B decode, OPC_CUDA_NO_PROLOGUE_FUSE=1 (separate kernels)"; export OPC_CUDA_NO_PROLOGUE_FUSE=1; fi
  timeout 100 $B/bench_cuda_forward /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4 | grep -E "tg128|pp512"
done
unset OPC_CUDA_NO_PROLOGUE_FUSE
rm -f /tmp/l8b.bf2

log memcheck test_cuda_forward quick
(cd $B && OPC_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck ./test_cuda_forward) > "$OUT/h4_memcheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
grep -E "ERROR SUMMARY|passed|Invalid|Program hit" "$OUT/h4_memcheck.txt" | head -8 | tee -a "$L"
log done
