#!/usr/bin/env bash
# h5_s4_device.sh — GPTQ on the GPU (quantize --device cuda, pass 4), one
# device call: build; tests/test_cuda_quant (GPTQ GPU vs CPU byte for byte);
# `quantize` of stories260K with GPTQ on, --device cuda vs cpu, files compared
# (with OPC_CUDA_CALIB=0 the calibration stays on the CPU, so only the
# quantizer differs; then with the GPU calibration too); the GPTQ timings
# (bench/cuda/h5_s4_gptq.c, copied to bench/ here so CMake builds it).
# Carry [".debs","gpu_carry"]; logs go to $OUT.
#   bash bench/cuda/h5_s4_device.sh [all|test|bench]
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
B=build/gpu
L="$OUT/h5_s4.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee -a "$L"
nproc | tee -a "$L"
log build
source scripts/gpu_env.sh
cp bench/cuda/h5_s4_gptq.c bench/bench_h5_s4_gptq.c
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda_quant bench_h5_s4_gptq > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" -A3 /tmp/opc_build.txt | head -40 | tee -a "$L"; exit 1; }
echo built | tee -a "$L"

if [ "$WHAT" != bench ]; then
  log test_cuda_quant
  (cd $B && timeout 100 ./test_cuda_quant) > "$OUT/test_cuda_quant.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "gptq|FAIL|passed" "$OUT/test_cuda_quant.txt" | tail -24 | tee -a "$L"

  X=$B/opacc1ty
  M=gpu_carry/stories260K/stories260K.bin
  q() { local o=$1; shift; /usr/bin/time -f "%e s wall" timeout 60 $X quantize $M -o $o --gptq on --quiet "$@" 2>&1 | tail -3 | tee -a "$L"; }
  log "quantize stories260K --gptq on: --device cpu (16 threads)"
  q /tmp/s_cpu.bf2 --device cpu
  log "quantize stories260K --gptq on: --device cuda, calibration on the CPU (OPC_CUDA_CALIB=0)"
  OPC_CUDA_CALIB=0 q /tmp/s_gpu.bf2 --device cuda
  cmp /tmp/s_cpu.bf2 /tmp/s_gpu.bf2 && echo "GPTQ quantize cuda == cpu: identical files" | tee -a "$L"
  log "quantize stories260K --gptq on: --device cuda (calibration on the GPU too)"
  q /tmp/s_gpu2.bf2 --device cuda
  cmp /tmp/s_cpu.bf2 /tmp/s_gpu2.bf2 && echo "cuda (GPU calibration) == cpu: identical files" | tee -a "$L"
  for f in s_cpu s_gpu s_gpu2; do
    echo "$f: $(timeout 60 $X perplexity /tmp/$f.bf2 --text gpu_carry/wiki.test.raw --chunks 20 --ctx 256 --quiet 2>&1 | tail -1)" | tee -a "$L"
  done
fi
if [ "$WHAT" != test ]; then
  log bench_h5_s4_gptq
  OMP_WAIT_POLICY=PASSIVE timeout ${BENCH_TIMEOUT:-150} $B/bench_h5_s4_gptq ${BENCH_ARGS:-} 2>&1 | tee -a "$L"
fi
rm -f bench/bench_h5_s4_gptq.c
