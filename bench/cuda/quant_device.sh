#!/usr/bin/env bash
# quant_device.sh — one device-machine session for the GPU quantizer:
# build, tests/test_cuda_quant (CPU vs GPU on synthetic and, with
# gpu_carry/h6_smol_tensors.bin from bench/cuda/extract_smol_tensors.c, real
# SmolLM2 tensors), compute-sanitizer memcheck and racecheck on the small
# cases, then the 8B-shape timing (bench_cuda_quant: every linear weight of
# LAYERS Llama-3-8B layers on the GPU with the quantize defaults, then with
# group scales + rotation, CPU_LAYERS of them on the CPU).
# Run from the repository root on the GPU machine with .debs and gpu_carry/
# carried; logs go to $OUT.
#   LAYERS=32 CPU_LAYERS=1 MEMCHECK=1 bash bench/cuda/quant_device.sh [all|test|bench]
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
LAYERS=${LAYERS:-32}
CPU_LAYERS=${CPU_LAYERS:-1}
MEMCHECK=${MEMCHECK:-1}
WHAT=${1:-all}
B=build/gpu
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$OUT/quant.txt"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee -a "$OUT/quant.txt"
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target test_cuda_quant bench_cuda_quant > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" -A3 /tmp/opc_build.txt | head -40; exit 1; }
echo built

if [ "$WHAT" != bench ]; then
  log test_cuda_quant
  (cd $B && timeout 150 ./test_cuda_quant) 2>&1 | tee -a "$OUT/quant.txt" | grep -vE "^\[ (RUN|  OK) "; echo "rc=${PIPESTATUS[0]}"
fi
if [ "$WHAT" != bench ] && [ "$MEMCHECK" = 1 ]; then
  log memcheck and racecheck, small cases
  (cd $B && OPC_TEST_QUICK=1 timeout 60 compute-sanitizer --tool memcheck ./test_cuda_quant) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?"
  grep -E "ERROR SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -12
  (cd $B && OPC_TEST_QUICK=2 timeout 90 compute-sanitizer --tool racecheck ./test_cuda_quant) > "$OUT/racecheck.txt" 2>&1; echo "rc=$?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|hazard" "$OUT/racecheck.txt" | head -12
fi
if [ "$WHAT" != test ]; then
  log bench 8B shapes, $LAYERS layers, the quantize defaults: 2-bit, first/last layer 4-bit, 0.5% outliers
  timeout 120 $B/bench_cuda_quant --defaults --layers "$LAYERS" --cpu-layers 0 2>&1 | tee -a "$OUT/quant.txt"
  log bench 8B shapes, $LAYERS layers, 2-bit + group scales + rotation + 1% outliers
  timeout 300 $B/bench_cuda_quant --layers "$LAYERS" --gs 1 --rot 1 --cpu-layers "$CPU_LAYERS" 2>&1 | tee -a "$OUT/quant.txt"
fi
