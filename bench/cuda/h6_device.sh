#!/usr/bin/env bash
# h6_device.sh — issue 6: v8's outlier epilogue (rowptr staged before the grid
# wait, CSR entries prefetched to L2, x read from the staged int16 copy,
# several rows per warp in flight), before vs after, in one device call:
#   lab   build the lab from this tree and from the HEAD copies carried in
#         build/h6_old/ (src/cuda/cb_gemv_kernels.cuh, bench/cuda/{cb_gemv_lab.cu,
#         Makefile}); validate v8 (new); bench v8 (+ol1% variants, cuBLAS, copy)
#         new, old, new — same process kind, same warm machine
#   lib   build the library (test_cuda, CLI, bench_cuda_forward) and a second
#         bench_cuda_forward with the old kernel header; test_cuda; 8B-shape
#         decode with 0.85 % outliers (synth --outliers 0.0085): new, old,
#         OPC_CUDA_GEMV=slab, alternating twice; and without outliers, new/old
#   all   both (default)
# Carry [".debs","build/h6_old"]. Logs go to $OUT (h6_*.txt).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
B=build/gpu
BO=build/gpu_old
L="$OUT/h6_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
source scripts/gpu_env.sh

if [ "$WHAT" = lab ] || [ "$WHAT" = all ]; then
  log build labs "(new, old in parallel)"
  make -C bench/cuda BUILD=/tmp/opc-lab NVCC=nvcc > /tmp/opc_lab.txt 2>&1 &
  pn=$!
  make -C build/h6_old/bench/cuda BUILD=/tmp/opc-lab-old NVCC=nvcc > /tmp/opc_lab_old.txt 2>&1 &
  po=$!
  wait $pn || { tail -30 /tmp/opc_lab.txt | tee -a "$L"; exit 1; }
  wait $po || { tail -30 /tmp/opc_lab_old.txt | tee -a "$L"; exit 1; }
  for f in /tmp/opc-lab/ptxas.txt /tmp/opc-lab-old/ptxas.txt; do
    echo "$f:" | tee -a "$L"
    grep -A3 "Compiling entry.*cbk_gemv_v8" $f | grep -oE "v8ILi[0-9]+ELi[0-9]ELi[0-9]|Used [0-9]+ registers|[0-9]+ bytes spill stores" |
      paste - - - | tee -a "$L"
  done
  log lab validate v8 "(new)"
  timeout 200 /tmp/opc-lab/cb_gemv_lab --validate --only v8 > "$OUT/h6_validate.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "FAIL" "$OUT/h6_validate.txt" | head -20 | tee -a "$L"
  grep -E "validation:|worst" "$OUT/h6_validate.txt" | tee -a "$L"
  for k in new old new2; do
    log lab bench v8 "($k)"
    lab=/tmp/opc-lab/cb_gemv_lab; [ $k = old ] && lab=/tmp/opc-lab-old/cb_gemv_lab
    timeout 150 $lab --bench --only v8_w16_p2,v8_w8_p2_b3 > "$OUT/h6_bench_$k.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "device:|copy D2D" "$OUT/h6_bench_$k.txt" | tee -a "$L"
    grep -E "v8_w16_p2|cublas" "$OUT/h6_bench_$k.txt" | grep -v "+gs" | tee -a "$L"
  done
fi

if [ "$WHAT" = lib ] || [ "$WHAT" = all ]; then
  log build library "(new)"
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
  for tg in test_cuda opacc1ty_cli bench_cuda_forward; do
    cmake --build $B -j16 --target $tg > /tmp/opc_build_$tg.txt 2>&1 && echo "built $tg" | tee -a "$L" ||
      { echo "BUILD FAILED: $tg" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_$tg.txt | head -20 | tee -a "$L"; }
  done
  log test_cuda
  (cd $B && timeout 150 ./test_cuda) > "$OUT/h6_test_cuda.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL|off" "$OUT/h6_test_cuda.txt" | tail -8 | tee -a "$L"
  log build bench_cuda_forward "(old kernel header, this copy only)"
  cp build/h6_old/src/cuda/cb_gemv_kernels.cuh src/cuda/cb_gemv_kernels.cuh
  cmake -S . -B $BO -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake_old.txt 2>&1 &&
    cmake --build $BO -j16 --target bench_cuda_forward > /tmp/opc_build_old.txt 2>&1 && echo "built old bench_cuda_forward" | tee -a "$L" ||
    { echo "BUILD FAILED: old" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_old.txt | head -20 | tee -a "$L"; }
  X=$B/opacc1ty
  log synth llama3-8b 2-bit, outliers 0.0085
  rm -f /tmp/o.bf2; timeout 200 $X synth --shape llama3-8b --bits 2 --outliers 0.0085 -o /tmp/o.bf2 --quiet 2>&1 | tail -1 | tee -a "$L"
  ls -l /tmp/o.bf2 | tee -a "$L"
  for k in new old slab new old slab; do
    unset OPC_CUDA_GEMV
    bf=$B/bench_cuda_forward
    case $k in
      new)  log "8B+ol0.85% decode, int8 GEMV, new epilogue" ;;
      old)  log "8B+ol0.85% decode, int8 GEMV, old epilogue (HEAD header)"; bf=$BO/bench_cuda_forward ;;
      slab) log "8B+ol0.85% decode, OPC_CUDA_GEMV=slab (fp16 kernel)"; export OPC_CUDA_GEMV=slab ;;
    esac
    timeout 100 $bf /tmp/o.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4 | grep -E "tg128|pp512"
  done
  unset OPC_CUDA_GEMV
  rm -f /tmp/o.bf2
  log synth llama3-8b 2-bit, no outliers
  timeout 200 $X synth --shape llama3-8b --bits 2 -o /tmp/l8b.bf2 --quiet 2>&1 | tail -1 | tee -a "$L"
  for k in new old; do
    bf=$B/bench_cuda_forward; [ $k = old ] && bf=$BO/bench_cuda_forward
    log "8B (no outliers) decode, int8 GEMV, $k"
    timeout 100 $bf /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4 | grep -E "tg128|pp512"
  done
  rm -f /tmp/l8b.bf2
fi
log done
