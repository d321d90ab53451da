#!/usr/bin/env bash
# run_device.sh — one device-machine session for the CUDA codebook GEMV:
# build + validate + sanitize + bench the lab, then build and run tests/test_cuda.
# Run from the repository root on the GPU machine; logs go to $OUT (or ./out).
#   bash bench/cuda/run_device.sh [quick]
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
B=/tmp/opc-cuda
mkdir -p $B
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

{
  log gpu
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.max.mem,power.limit,driver_version --format=csv
  nvcc --version | tail -2
  log build lab
  make -C bench/cuda BUILD=$B NVCC=nvcc 2>&1
  grep -E "Used|spill" $B/ptxas.txt | sort | uniq -c | head -20
  log sass histogram of cbk_gemv_v7 MT=1 NW=4 CK=64 ST=3 (the library's STREAM kernel)
  cuobjdump -sass -fun '_ZN8opc_cuda11cbk_gemv_v7ILi1ELi4ELi64ELi3ELb0EEEvNS_6CbViewEPKfiPfi' $B/cb_gemv_lab > $B/v7.sass 2>&1
  grep -oE '^\s+/\*[0-9a-f]+\*/\s+(@!?U?P[0-9T] )?[A-Z0-9]+' $B/v7.sass | awk '{print $NF}' | sort | uniq -c | sort -rn | head -25
  cp $B/v7.sass "$OUT/v7.sass"
} > "$OUT/build.txt" 2>&1
cat "$OUT/build.txt" | tail -45

log validate; timeout 200 $B/cb_gemv_lab --validate 2>&1 | tee "$OUT/validate.txt" | tail -14
log memcheck; timeout 150 compute-sanitizer --tool memcheck $B/cb_gemv_lab --validate --quick > "$OUT/sanitizer.txt" 2>&1; echo "memcheck rc=$?" | tee -a "$OUT/sanitizer.txt"; tail -4 "$OUT/sanitizer.txt"
log racecheck; timeout 120 compute-sanitizer --tool racecheck $B/cb_gemv_lab --validate --quick >> "$OUT/sanitizer.txt" 2>&1; echo "racecheck rc=$?" | tee -a "$OUT/sanitizer.txt"; tail -3 "$OUT/sanitizer.txt"
log bench; timeout 300 $B/cb_gemv_lab --bench --only ${LAB_ONLY:-v4_mt1_wk16_u1,v4_mt2_wk8_u1,v7} 2>&1 | tee "$OUT/bench.txt" | tail -70

log ncu
timeout 120 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis -k regex:cbk_gemv_v7 -c 1 $B/cb_gemv_lab --one v7_mt1_w4_ck64_st3 14336 4096 1 > "$OUT/ncu.txt" 2>&1; echo "ncu rc=$?"
grep -E "Duration|Throughput|Issue Slots Busy|Active Warps|No Eligible|Executed Ipc|Registers|Block Limit|Stall|Pipe" "$OUT/ncu.txt" | head -40

log test_cuda
{
  # Only the files test_cuda needs (core, codebook reference, CUDA backend):
  # no cJSON/PCRE2 on this machine, and independent of other modules' state.
  nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -Iinclude -Isrc -c src/cuda/cb_gemv.cu -o $B/cb_gemv.o &&
  nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -Iinclude -Isrc -c src/cuda/ops.cu -o $B/ops.o &&
  gcc -O2 -g -std=c11 -Wall -Wextra -DOPC_HAVE_CUDA=1 -DOPC_SOURCE_DIR="\"$PWD\"" -DOPC_BINARY_DIR="\"$B\"" \
      -Iinclude -Isrc -Itests tests/test_cuda.c src/core/core.c src/quant/cb.c $B/cb_gemv.o $B/ops.o \
      -L/usr/local/cuda/lib64 -lcudart -lstdc++ -lm -o $B/test_cuda &&
  timeout 120 $B/test_cuda; echo "test_cuda rc=$?"
  timeout 150 compute-sanitizer --tool memcheck $B/test_cuda 2>&1 | tail -5; echo "memcheck(test_cuda) rc=$?"
} > "$OUT/test_cuda.txt" 2>&1
tail -20 "$OUT/test_cuda.txt"
log done
