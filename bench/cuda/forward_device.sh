#!/usr/bin/env bash
# forward_device.sh — one device-machine session for the CUDA forward pass:
# build, tests/test_cuda_forward (plain and under compute-sanitizer memcheck),
# then speed (bench_cuda_forward: pp512, tg128) of SmolLM2 2-bit and of
# synthetic Llama-3-8B-shape models (2-bit with f16 head, 2-bit unfused,
# 2-bit with 2-bit head, f16), and a per-kernel time breakdown (ncu) of a
# 2-layer 8B-shape decode step.
# Run from the repository root on the GPU machine, with .debs and gpu_carry/
# carried (docs/RESULTS.md "CUDA forward pass"); logs go to $OUT.
#   bash bench/cuda/forward_device.sh [all|test|bench|h4]
# h4: only the 8B-shape GEMV/PDL/format comparisons (no tests).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$OUT/bench.txt"; }
B=build/gpu
BENCH="$B/bench_cuda_forward"

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda_forward test_cuda bench_cuda_forward > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" /tmp/opc_build.txt | head -30; exit 1; }
echo built

if [ "$WHAT" != bench ] && [ "$WHAT" != h4 ]; then
  log test_cuda_forward
  (cd $B && timeout 200 ./test_cuda_forward) > "$OUT/test.txt" 2>&1; echo "rc=$?"
  grep -vE "^\[ RUN" "$OUT/test.txt" | tail -40
  log test_cuda
  (cd $B && timeout 120 ./test_cuda) 2>&1 | grep -vE "^\[ +OK|^\[ RUN" | tail -15
  log memcheck
  (cd $B && OPC_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --leak-check full ./test_cuda_forward) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -12
fi
[ "$WHAT" = test ] && exit 0

synth() { # NAME ARGS...
  local f=/tmp/$1.bf2; shift
  rm -f /tmp/*.bf2
  timeout 200 $B/opacc1ty synth --shape llama3-8b -o $f --quiet "$@" 2>&1 | tail -2
}
bench() { # LABEL FILE [env assignments via env]
  log "$1"; shift
  timeout 150 "$@" --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
}
if [ "$WHAT" = h4 ]; then
  # GEMV/PDL comparisons on the 8B shape: plain 2-bit, then the new default
  # format (group scales + rotated inputs), with an f16 and a 2-bit head.
  synth l8b --bits 2
  bench "llama3-8b 2-bit, f16 head" $BENCH /tmp/l8b.bf2
  bench "llama3-8b 2-bit, f16 head, PDL off" env OPC_CUDA_PDL=0 $BENCH /tmp/l8b.bf2
  bench "llama3-8b 2-bit, f16 head, PDL on the small kernels too" env OPC_CUDA_PDL_OPS=1 $BENCH /tmp/l8b.bf2
  bench "llama3-8b 2-bit, f16 head, streaming GEMV (v7)" env OPC_CUDA_GEMV=stream $BENCH /tmp/l8b.bf2
  synth l8b --bits 2 --gscale --rotate
  bench "llama3-8b 2-bit gscale+rotate, f16 head" $BENCH /tmp/l8b.bf2
  synth l8b --bits 2 --gscale --rotate --head-bits 2
  bench "llama3-8b 2-bit gscale+rotate, 2-bit head" $BENCH /tmp/l8b.bf2
  bench "llama3-8b 2-bit gscale+rotate, 2-bit head, PDL off" env OPC_CUDA_PDL=0 $BENCH /tmp/l8b.bf2
  synth l8b --bits 2 --gscale --rotate --head-bits 4
  bench "llama3-8b 2-bit gscale+rotate, 4-bit head" $BENCH /tmp/l8b.bf2
  bench "SmolLM2 2-bit (.bf2 from quantize)" $BENCH gpu_carry/smollm2-2bit.bf2
  bench "SmolLM2 2-bit, PDL off" env OPC_CUDA_PDL=0 $BENCH gpu_carry/smollm2-2bit.bf2
  bench "SmolLM2 2-bit, PDL on the small kernels too" env OPC_CUDA_PDL_OPS=1 $BENCH gpu_carry/smollm2-2bit.bf2
  log ncu per-kernel times, 2-layer 8B shape, gscale+rotate, 2-bit head, one decode step
  synth l8b2 --bits 2 --gscale --rotate --head-bits 2 --layers 2
  timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv $BENCH /tmp/l8b2.bf2 --pp 16 --tg 3 --reps 1 > /tmp/ncu_l8b2.csv 2>/dev/null; echo "ncu rc=$?"
  python3 bench/cuda/ncu_step.py /tmp/ncu_l8b2.csv 2>&1 | tee "$OUT/ncu_summary.txt"
  rm -f /tmp/*.bf2
  exit 0
fi

log bench SmolLM2 2-bit
timeout 100 $BENCH gpu_carry/smollm2-2bit.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"

log llama3-8b 2-bit, f16 head
synth l8b --bits 2
timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log llama3-8b 2-bit, f16 head, QKV and gate/up not fused
OPC_CUDA_NO_FUSE=1 timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log llama3-8b 2-bit, 2-bit head
synth l8b --bits 2 --head-bits 2
timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log ncu per-kernel times, 2-layer 8B shape, 2-bit, one decode step
synth l8b2 --bits 2 --layers 2
timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv $BENCH /tmp/l8b2.bf2 --pp 16 --tg 3 --reps 1 > /tmp/ncu_l8b2.csv 2>/dev/null; echo "ncu rc=$?"
python3 bench/cuda/ncu_step.py /tmp/ncu_l8b2.csv 2>&1 | tee "$OUT/ncu_summary.txt"
log llama3-8b f16
synth l8b16 --bits 16
timeout 200 $BENCH /tmp/l8b16.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
rm -f /tmp/*.bf2
