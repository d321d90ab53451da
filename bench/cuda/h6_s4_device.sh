#!/usr/bin/env bash
# h6_s4_device.sh — issue 6, session 4, helper h6: does a v8 GEMV that leaves
# room on each SM (fewer blocks per SM than the occupancy limit) let the next
# kernel's prologue overlap it under PDL, and does decode get faster?
# Configurations (env switches of src/cuda/cb_gemv.cu, all in one build):
#   C0  default: w16 (16 warps, 1 block/SM = the register limit)
#   C1  OPC_CUDA_V8=w8                     8 warps, 3 blocks/SM (the limit)
#   C2  OPC_CUDA_V8=w8   OPC_CUDA_V8_RES=2 2 of 3 slots: room for 1 block
#   C3  OPC_CUDA_V8=w8   OPC_CUDA_V8_RES=1 1 of 3 slots
#   C4  OPC_CUDA_V8=w8b2 OPC_CUDA_V8_RES=1 8 warps at w16's registers, 1 of 2 slots
#   C5  OPC_CUDA_V8=w8b2                   2 of 2 slots (no room)
# Modes:
#   run1  build; ptxas registers; test_cuda (C0, C4); 8B-shape decode without
#         outliers C0 C4 C2 C3 C5 C0, with 0.85 % outliers C0 C4 C2 C0; 2-layer
#         step time C0/C4 (and nsys, which the device lacked); lab validate w8
#         configs (RES 0/1); lab bench (w16, w8_b3 at RES 0/1/2, w8_b2 at RES 0/1)
#   run2  PDL off (OPC_CUDA_PDL=0): decode C0 vs C4 (whether the loss of C4 comes
#         from the early-resident blocks; run on run1's warm machine)
# Result (H200, bench/cuda/results/h200_2026-11-26_s4_h6_*): leaving room is
# SLOWER in decode. No outliers, graph on: C0 466 tok/s, C5 435, C2 358, C4 342,
# C3 263. With PDL off: C0 429, C4 388 (the lab's per-kernel cost of 8 warps).
# So under PDL the early-resident next-kernel blocks cost C4 another ~11 us per
# layer instead of saving the ~4 us per GEMV the hypothesis expected. The
# default (w16, one block per SM = the register limit) stays.
# Carry [".debs"]. Logs: $OUT/h6s4_*.txt
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-run1}
B=build/gpu
L="$OUT/h6s4_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }
declare -A C=([C0]="OPC_X=1" [C1]="OPC_CUDA_V8=w8" [C2]="OPC_CUDA_V8=w8 OPC_CUDA_V8_RES=2"
              [C3]="OPC_CUDA_V8=w8 OPC_CUDA_V8_RES=1" [C4]="OPC_CUDA_V8=w8b2 OPC_CUDA_V8_RES=1"
              [C5]="OPC_CUDA_V8=w8b2" [C6]="OPC_CUDA_V8=w8b2 OPC_CUDA_V8_RES=1 OPC_CUDA_PDL=0")

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
echo "nsys: ${NSYS:-none}" | tee -a "$L" # (none on the H200 machine of 2026-11-26: no timeline)
source scripts/gpu_env.sh
log build lab + library "(in parallel)"
make -C bench/cuda BUILD=/tmp/opc-lab NVCC=nvcc > /tmp/opc_lab.txt 2>&1 &
pl=$!
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
T="test_cuda opacc1ty_cli bench_cuda_forward"
cmake --build $B -j16 --target $T > /tmp/opc_build.txt 2>&1 ||
  { echo "BUILD FAILED" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build.txt | head -30 | tee -a "$L"; exit 1; }
wait $pl || { tail -30 /tmp/opc_lab.txt | tee -a "$L"; exit 1; }
grep -A3 "Compiling entry.*cbk_gemv_v8" /tmp/opc-lab/ptxas.txt | grep -oE "v8ILi[0-9]+ELi[0-9]ELi[0-9]|Used [0-9]+ registers|[0-9]+ bytes spill stores" | paste - - - | tee -a "$L"
X=$B/opacc1ty
BF=$B/bench_cuda_forward
synth() { local n=$1; shift; rm -f /tmp/$n.bf2; timeout 120 $X synth --shape llama3-8b --bits 2 -o /tmp/$n.bf2 --quiet "$@" 2>&1 | tail -1 | tee -a "$L"; }
dec() { local m=$1 c=$2; log "decode $m $c (${C[$c]})"; timeout 60 env ${C[$c]} $BF /tmp/$m.bf2 --pp 64 --tg 128 --reps 3 2>&1 | tee -a "$L" | grep -E "tg128" ; }

if [ "$WHAT" = run1 ]; then
  for c in C0 C4; do
    log "test_cuda $c"
    (cd $B && timeout 60 env ${C[$c]} ./test_cuda) > "$OUT/h6s4_test_cuda_$c.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL" "$OUT/h6s4_test_cuda_$c.txt" | tail -3 | tee -a "$L"
  done
  synth pl
  synth ol --outliers 0.0085
  for c in C0 C4 C2 C3 C5 C0; do dec pl $c; done
  for c in C0 C4 C2 C0; do dec ol $c; done
  synth pl2 --layers 2
  for c in C0 C4; do
    log "2-layer step $c"
    timeout 30 env ${C[$c]} $BF /tmp/pl2.bf2 --pp 16 --tg 64 --reps 3 2>&1 | grep -E "tg64" | tee -a "$L"
  done
  for r in 0 1; do
    log "lab validate v8_w8 (RES=$r)"
    timeout 60 env OPC_CUDA_V8_RES=$r /tmp/opc-lab/cb_gemv_lab --validate --only v8_w8_p2_b2,v8_w8_p2_b3 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
    grep -E "validation:|worst" /tmp/val.txt | tail -6 | tee -a "$L"
  done
  for r in "0 v8_w16_p2,v8_w8_p2_b3,v8_w8_p2_b2" "1 v8_w8_p2_b3,v8_w8_p2_b2" "2 v8_w8_p2_b3"; do
    set -- $r
    log "lab bench (OPC_CUDA_V8_RES=$1) $2"
    timeout 60 env OPC_CUDA_V8_RES=$1 /tmp/opc-lab/cb_gemv_lab --bench --only $2 > /tmp/bench.txt 2>&1; echo "rc=$?" | tee -a "$L"
    { echo "### OPC_CUDA_V8_RES=$1"; cat /tmp/bench.txt; } >> "$OUT/h6s4_run1_lab_bench.txt"
    grep -E "device:|copy D2D" /tmp/bench.txt | tee -a "$L"
    grep -E "v8_w" /tmp/bench.txt | grep -v "+gs" | awk '$3==1' | tee -a "$L"
  done
fi
if [ "$WHAT" = run2 ]; then
  synth pl
  for e in "OPC_CUDA_PDL=0" "OPC_CUDA_PDL=0 OPC_CUDA_V8=w8b2 OPC_CUDA_V8_RES=1"; do
    log "decode pl $e"
    timeout 30 env $e $BF /tmp/pl.bf2 --pp 16 --tg 128 --reps 3 2>&1 | grep tg128 | tee -a "$L"
  done
fi
log done
