#!/usr/bin/env bash
# h1_device.sh — the int8 GEMV (lab v8) on the device machine, one call:
#   lab    build the lab; validate v4 (library config) and v8 against the CPU
#          reference (errors side by side); bench the three issue-6 shapes at
#          batch 1..8: v4 configs, v8 configs, cuBLAS fp16 and the copy probe
#          in one process
#   lib    build the library; test_cuda and test_cuda_forward; 8B-shape decode
#          (synth llama3-8b --bits 2) with the int8 kernel (default) and with
#          OPC_CUDA_GEMV=slab (the old kernel), alternating, same machine
#   all    both (default)
#   fwd    test_cuda_forward (needs gpu_carry: stories260K, the 2-bit SmolLM2)
#          with the int8 kernel and with OPC_CUDA_GEMV=slab, and test_cuda
# Carry [".debs"] (fwd: [".debs","gpu_carry"]). Logs go to $OUT (h1_*.txt).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
ONLY=${ONLY:-v4_mt1_wk16_u1,v4_mt2_wk8_u1,v8}
B=build/gpu
L="$OUT/h1_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
source scripts/gpu_env.sh

if [ "$WHAT" = lab ] || [ "$WHAT" = all ]; then
  log build lab
  make -C bench/cuda BUILD=/tmp/opc-lab NVCC=nvcc > /tmp/opc_lab.txt 2>&1 || { tail -30 /tmp/opc_lab.txt | tee -a "$L"; exit 1; }
  grep -A2 "cbk_gemv_v8" /tmp/opc-lab/ptxas.txt | grep -E "registers|spill" | head -12 | tee -a "$L"
  log lab validate "($ONLY)"
  timeout 200 /tmp/opc-lab/cb_gemv_lab --validate --only "$ONLY" > "$OUT/h1_validate.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "FAIL" "$OUT/h1_validate.txt" | head -20 | tee -a "$L"
  grep -E "validation:|worst" "$OUT/h1_validate.txt" | tee -a "$L"
  log lab bench "($ONLY)"
  timeout 240 /tmp/opc-lab/cb_gemv_lab --bench --only "$ONLY" > "$OUT/h1_bench.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "device:|copy D2D" "$OUT/h1_bench.txt" | tee -a "$L"
  grep -E "^[0-9]+x[0-9]+ " "$OUT/h1_bench.txt" | grep -v "+gs" | tee -a "$L" > /dev/null
  tail -3 "$OUT/h1_bench.txt" | tee -a "$L"
fi

if [ "$WHAT" = lib ] || [ "$WHAT" = all ]; then
  log build library
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
  # one target at a time: another helper's unfinished edit must not hide the others
  for tg in test_cuda opacc1ty_cli bench_cuda_forward test_cuda_forward; do
    cmake --build $B -j16 --target $tg > /tmp/opc_build_$tg.txt 2>&1 && echo "built $tg" | tee -a "$L" ||
      { echo "BUILD FAILED: $tg" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_$tg.txt | head -20 | tee -a "$L"; }
  done
  for t in test_cuda test_cuda_forward; do
    log $t
    (cd $B && timeout 150 ./$t) > "$OUT/h1_$t.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL|off" "$OUT/h1_$t.txt" | tail -8 | tee -a "$L"
  done
  X=$B/opacc1ty
  log synth llama3-8b 2-bit
  rm -f /tmp/l8b.bf2; timeout 200 $X synth --shape llama3-8b --bits 2 -o /tmp/l8b.bf2 --quiet 2>&1 | tail -1 | tee -a "$L"
  # default (int8 kernel, 16 warps), its other compiled configurations, and
  # the old fp16 slab kernel; twice, alternating, on the same warm machine
  for k in w16 slab w8 w24 w16 slab; do
    case $k in
      slab) log "8B decode, OPC_CUDA_GEMV=slab (old kernel)"; export OPC_CUDA_GEMV=slab; unset OPC_CUDA_V8 ;;
      w16)  log "8B decode, int8 GEMV (default config)"; unset OPC_CUDA_GEMV OPC_CUDA_V8 ;;
      *)    log "8B decode, int8 GEMV, OPC_CUDA_V8=$k"; unset OPC_CUDA_GEMV; export OPC_CUDA_V8=$k ;;
    esac
    timeout 100 $B/bench_cuda_forward /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4 | grep -E "tg128|pp512"
  done
  unset OPC_CUDA_GEMV OPC_CUDA_V8
  rm -f /tmp/l8b.bf2
fi
if [ "$WHAT" = fwd ]; then # carry gpu_carry too: the forward-pass tests on real models
  log build library
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
  for tg in test_cuda test_cuda_forward; do
    cmake --build $B -j16 --target $tg > /tmp/opc_build_$tg.txt 2>&1 && echo "built $tg" | tee -a "$L" ||
      { echo "BUILD FAILED: $tg" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_$tg.txt | head -20 | tee -a "$L"; }
  done
  for t in test_cuda_forward test_cuda; do
    log $t
    (cd $B && timeout 150 ./$t) > "$OUT/h1_fwd_$t.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL|SKIP|off" "$OUT/h1_fwd_$t.txt" | tail -8 | tee -a "$L"
  done
  log test_cuda_forward with OPC_CUDA_GEMV=slab "(old kernel, for the max logit differences)"
  (cd $B && OPC_CUDA_GEMV=slab timeout 150 ./test_cuda_forward) > "$OUT/h1_fwd_slab.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" "$OUT/h1_fwd_slab.txt" | tail -3 | tee -a "$L"
fi
log done
