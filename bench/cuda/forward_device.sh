#!/usr/bin/env bash
# forward_device.sh — one device-machine session for the CUDA forward pass:
# build, tests/test_cuda_forward (+ compute-sanitizer memcheck), then speed of
# SmolLM2 2-bit and of a synthetic Llama-3-8B-shape model.
# Run from the repository root on the GPU machine, with .debs and gpu_carry/
# carried (docs/RESULTS.md "CUDA forward pass"); logs go to $OUT.
#   bash bench/cuda/forward_device.sh [all|test|bench] [LAYERS] [BITS...]
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
LAYERS=${2:-32}
shift 2 2>/dev/null
BITS=${*:-2}
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
git rev-parse --short HEAD 2>/dev/null
log build
source scripts/gpu_env.sh
cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF > "$OUT/cmake.txt" 2>&1 || { tail -30 "$OUT/cmake.txt"; exit 1; }
cmake --build build/gpu -j16 --target opacc1ty_cli test_cuda_forward test_cuda bench_cuda_forward > "$OUT/build.txt" 2>&1 || { grep -E "error|Error" "$OUT/build.txt" | head -30; exit 1; }
echo built

if [ "$WHAT" != bench ]; then
  log test_cuda_forward
  (cd build/gpu && timeout 200 ./test_cuda_forward) > "$OUT/test.txt" 2>&1; echo "rc=$?"
  grep -vE "^\[ RUN" "$OUT/test.txt" | tail -40
  log test_cuda
  (cd build/gpu && timeout 120 ./test_cuda) 2>&1 | tail -3
  log memcheck
  (cd build/gpu && OPC_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --leak-check full ./test_cuda_forward) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -12
fi
if [ "$WHAT" != test ]; then
  log bench SmolLM2 2-bit
  timeout 120 build/gpu/bench_cuda_forward gpu_carry/smollm2-2bit.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee "$OUT/bench_smollm2.txt"
  for b in $BITS; do
    log synth llama3-8b bits $b layers $LAYERS
    rm -f /tmp/l8b.bf2
    timeout 200 build/gpu/opacc1ty synth --shape llama3-8b --bits $b --layers $LAYERS -o /tmp/l8b.bf2 --quiet 2>&1 | tail -3
    log bench llama3-8b bits $b layers $LAYERS
    timeout 150 build/gpu/bench_cuda_forward /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee "$OUT/bench_l8b_b$b.txt"
  done
fi
