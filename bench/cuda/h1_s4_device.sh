#!/usr/bin/env bash
# h1_s4_device.sh — issue 6, session 4, helper h1: 8B-shape decode speed.
#   prof  build; lab bench of v8 (+1 % outliers); 8B-shape decode with and
#         without 0.85 % outliers (bench_cuda_forward); ncu per-launch
#         durations of one decode step of a 2-layer 8B shape (with and
#         without outliers) -> h1_s4_step.py tables
#   ab    build; test_cuda; lab validate v8; lab bench v8 (OPC_CUDA_V8_OLCAP=0
#         = no staging, OPC_CUDA_V8_L2PF, since removed); 8B decode with
#         outliers and without, switches alternating
#   ab2   the same for the octet outlier epilogue (OPC_CUDA_V8_OLEPI=warp: the
#         previous one; lab: OPC_CUDA_V8_MODE=0 warp, 1 octet, 8 no outlier
#         terms = the lower bound)
#   ab3   the in-loop outlier sums (OPC_CUDA_V8_OLEPI=inloop; lab MODE=5) and
#         the octet epilogue without outliers (OPC_CUDA_V8_RED=octet; MODE=3);
#         test_cuda_forward
#   final test_cuda, test_cuda_forward, lab validate + bench, 8B decode with
#         and without outliers alternating with the HEAD kernel (build/h1_old/,
#         carried), ncu per-launch step of the 2-layer model with outliers
#   final2  the short form: tests, lab validate + bench, 8B decode with outliers
#         new / previous epilogue (env) alternating
# Carry [".debs"]. Logs go to $OUT (h1s4_*.txt).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-prof}
B=build/gpu
L="$OUT/h1s4_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
source scripts/gpu_env.sh
log build lab + library "(in parallel)"
make -C bench/cuda BUILD=/tmp/opc-lab NVCC=nvcc > /tmp/opc_lab.txt 2>&1 &
pl=$!
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt | tee -a "$L"; exit 1; }
cmake --build $B -j16 --target test_cuda opacc1ty_cli bench_cuda_forward > /tmp/opc_build.txt 2>&1 ||
  { echo "BUILD FAILED" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build.txt | head -30 | tee -a "$L"; exit 1; }
wait $pl || { tail -30 /tmp/opc_lab.txt | tee -a "$L"; exit 1; }
grep -A3 "Compiling entry.*cbk_gemv_v8" /tmp/opc-lab/ptxas.txt | grep -oE "v8ILi[0-9]+ELi[0-9]ELi[0-9]|Used [0-9]+ registers|[0-9]+ bytes spill stores" | paste - - - | tee -a "$L"
X=$B/opacc1ty
BF=$B/bench_cuda_forward
synth() { rm -f /tmp/$1.bf2; shift_name=$1; shift; timeout 120 $X synth --shape llama3-8b --bits 2 -o /tmp/$shift_name.bf2 --quiet "$@" 2>&1 | tail -1 | tee -a "$L"; }
dec() { local name=$1; shift; log "decode $name"; timeout 60 env "$@" $BF /tmp/$name.bf2 --pp 64 --tg 128 --reps 3 2>&1 | tee -a "$L" | grep -E "tg128|weight bytes" ; }

if [ "$WHAT" = prof ]; then
  log lab bench v8
  timeout 100 /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > "$OUT/h1s4_lab_bench.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "device:|copy D2D|v8_w16_p2 |v8_w16_p2\+ol|cublas" "$OUT/h1s4_lab_bench.txt" | grep -v "+gs" | tee -a "$L"
  synth ol --outliers 0.0085
  synth pl
  for k in ol pl ol pl; do dec $k OPC_X=1; done
  dec ol OPC_CUDA_PDL=0
  synth ol2 --outliers 0.0085 --layers 2
  synth pl2 --layers 2
  for k in ol2 pl2; do
    log ncu $k
    timeout 90 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv $BF /tmp/$k.bf2 --pp 16 --tg 3 --reps 1 > "$OUT/h1s4_ncu_$k.csv" 2>/tmp/ncu_err.txt; echo "ncu rc=$?" | tee -a "$L"
    tail -3 /tmp/ncu_err.txt | tee -a "$L"
    python3 bench/cuda/h1_s4_step.py "$OUT/h1s4_ncu_$k.csv" 2>&1 | tee -a "$L"
  done
fi
if [ "$WHAT" = ab ]; then
  for e in "" OPC_CUDA_V8_OLCAP=8 OPC_CUDA_V8_L2PF=1; do
    log "test_cuda ${e:-default}"
    (cd $B && timeout 100 env $e OPC_X=1 ./test_cuda) > "$OUT/h1s4_test_cuda${e:+_${e%%=*}}.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL" "$OUT/h1s4_test_cuda${e:+_${e%%=*}}.txt" | tail -5 | tee -a "$L"
  done
  for e in OPC_X=1 "OPC_CUDA_V8_OLCAP=8 OPC_CUDA_V8_L2PF=1"; do
    log "lab validate v8 ($e)"
    timeout 100 env $e /tmp/opc-lab/cb_gemv_lab --validate --only v8 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
    grep -E "validation:|worst" /tmp/val.txt | tee -a "$L"
  done
  for e in "OPC_CUDA_V8_OLCAP=0 OPC_CUDA_V8_L2PF=0" "OPC_CUDA_V8_L2PF=0" "OPC_CUDA_V8_L2PF=1" "OPC_CUDA_V8_OLCAP=0 OPC_CUDA_V8_L2PF=0" "OPC_CUDA_V8_L2PF=1"; do
    log "lab bench v8 ($e)"
    timeout 60 env $e /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > /tmp/bench.txt 2>&1; echo "rc=$?" | tee -a "$L"
    cat /tmp/bench.txt >> "$OUT/h1s4_lab_bench_ab.txt"
    grep -E "copy D2D" /tmp/bench.txt | tee -a "$L"
    grep -E "v8_w16_p2" /tmp/bench.txt | grep -v "+gs" | awk '$3==1 || $3==4' | tee -a "$L"
  done
  synth ol --outliers 0.0085
  synth pl
  OLD="OPC_CUDA_V8_OLCAP=0 OPC_CUDA_V8_L2PF=0"
  for r in 1 2; do
    dec ol $OLD; dec ol OPC_CUDA_V8_L2PF=0; dec ol OPC_CUDA_V8_L2PF=1
    dec pl OPC_CUDA_V8_L2PF=0; dec pl OPC_CUDA_V8_L2PF=1
  done
  synth ol2 --outliers 0.0085 --layers 2
  for e in "OPC_CUDA_V8_L2PF=0" "OPC_CUDA_V8_L2PF=1"; do
    log "ncu ol2 $e"
    timeout 60 env $e ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv $BF /tmp/ol2.bf2 --pp 16 --tg 3 --reps 1 > /tmp/ncu.csv 2>/tmp/ncu_err.txt; echo "ncu rc=$?" | tee -a "$L"
    python3 bench/cuda/h1_s4_step.py /tmp/ncu.csv 2>&1 | tee -a "$L"
  done
fi
if [ "$WHAT" = ab2 ]; then
  for e in OPC_X=1 OPC_CUDA_V8_OLEPI=warp OPC_CUDA_V8_OLCAP=8; do
    log "test_cuda $e"
    (cd $B && timeout 100 env $e ./test_cuda) > "$OUT/h1s4_test_cuda_${e%%=*}.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL" "$OUT/h1s4_test_cuda_${e%%=*}.txt" | tail -5 | tee -a "$L"
  done
  for e in OPC_X=1 "OPC_CUDA_V8_OLCAP=8" "OPC_CUDA_V8_MODE=0"; do
    log "lab validate v8_w16_p2 ($e)"
    timeout 100 env $e /tmp/opc-lab/cb_gemv_lab --validate --only v8_w16_p2 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
    grep -E "validation:|worst" /tmp/val.txt | tee -a "$L"
  done
  for e in OPC_CUDA_V8_MODE=1 OPC_CUDA_V8_MODE=0 OPC_CUDA_V8_MODE=8 "OPC_CUDA_V8_OLCAP=0 OPC_CUDA_V8_MODE=0" OPC_CUDA_V8_MODE=1 OPC_CUDA_V8_MODE=0; do
    log "lab bench v8 ($e)"
    timeout 60 env $e /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > /tmp/bench.txt 2>&1; echo "rc=$?" | tee -a "$L"
    echo "### $e" >> "$OUT/h1s4_lab_bench_ab2.txt"; cat /tmp/bench.txt >> "$OUT/h1s4_lab_bench_ab2.txt"
    grep -E "copy D2D" /tmp/bench.txt | tee -a "$L"
    grep -E "v8_w16_p2" /tmp/bench.txt | grep -v "+gs" | awk '$3==1 || $3==4' | tee -a "$L"
  done
  synth ol --outliers 0.0085
  for r in 1 2; do
    dec ol OPC_X=1; dec ol OPC_CUDA_V8_OLEPI=warp; dec ol OPC_CUDA_V8_OLEPI=warp OPC_CUDA_V8_OLCAP=0
  done
  synth ol2 --outliers 0.0085 --layers 2
  for e in OPC_X=1 OPC_CUDA_V8_OLEPI=warp; do
    log "ncu ol2 $e"
    timeout 60 env $e ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv $BF /tmp/ol2.bf2 --pp 16 --tg 3 --reps 1 > /tmp/ncu.csv 2>/tmp/ncu_err.txt; echo "ncu rc=$?" | tee -a "$L"
    python3 bench/cuda/h1_s4_step.py /tmp/ncu.csv 2>&1 | head -17 | tee -a "$L"
  done
  rm -f /tmp/ol2.bf2
  synth pl
  dec pl OPC_X=1
fi
if [ "$WHAT" = ab3 ]; then
  cmake --build $B -j16 --target test_cuda_forward > /tmp/opc_build2.txt 2>&1 || { echo "BUILD FAILED test_cuda_forward" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build2.txt | head -20 | tee -a "$L"; }
  for e in OPC_X=1 OPC_CUDA_V8_OLEPI=inloop OPC_CUDA_V8_RED=octet "OPC_CUDA_V8_OLEPI=inloop OPC_CUDA_V8_RED=octet OPC_CUDA_V8_OLCAP=8"; do
    log "test_cuda $e"
    (cd $B && timeout 100 env $e ./test_cuda) > /tmp/tc.txt 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL" /tmp/tc.txt | tail -5 | tee -a "$L"
  done
  log "test_cuda_forward (default)"
  (cd $B && timeout 150 ./test_cuda_forward) > "$OUT/h1s4_test_cuda_forward.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" "$OUT/h1s4_test_cuda_forward.txt" | tail -5 | tee -a "$L"
  for e in OPC_CUDA_V8_MODE=5 OPC_CUDA_V8_MODE=3 "OPC_CUDA_V8_MODE=7 OPC_CUDA_V8_OLCAP=8"; do
    log "lab validate v8_w16_p2 ($e)"
    timeout 100 env $e /tmp/opc-lab/cb_gemv_lab --validate --only v8_w16_p2 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
    grep -E "validation:|worst" /tmp/val.txt | tee -a "$L"
  done
  for e in 1 5 3 7 0 1 5 3; do
    log "lab bench v8 (OPC_CUDA_V8_MODE=$e)"
    timeout 60 env OPC_CUDA_V8_MODE=$e /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > /tmp/bench.txt 2>&1; echo "rc=$?" | tee -a "$L"
    echo "### OPC_CUDA_V8_MODE=$e" >> "$OUT/h1s4_lab_bench_ab3.txt"; cat /tmp/bench.txt >> "$OUT/h1s4_lab_bench_ab3.txt"
    grep -E "copy D2D" /tmp/bench.txt | tee -a "$L"
    grep -E "v8_w16_p2" /tmp/bench.txt | grep -v "+gs" | awk '$3==1 || $3==4' | tee -a "$L"
  done
  synth ol --outliers 0.0085
  for r in 1 2; do
    dec ol OPC_X=1; dec ol OPC_CUDA_V8_OLEPI=inloop; dec ol OPC_CUDA_V8_OLEPI=warp OPC_CUDA_V8_OLCAP=0
  done
  dec ol OPC_CUDA_V8_OLEPI=inloop OPC_CUDA_V8_RED=octet
  rm -f /tmp/ol.bf2
  synth pl
  for r in 1 2; do dec pl OPC_X=1; dec pl OPC_CUDA_V8_RED=octet; done
fi
if [ "$WHAT" = final ]; then
  # the previous kernel (HEAD copies in build/h1_old/, carried) in a second build, for an A/B on one machine
  (mkdir -p /tmp/oldtree && tar --exclude=./build -cf - . | tar -xf - -C /tmp/oldtree && cp build/h1_old/src/cuda/cb_gemv.cu build/h1_old/src/cuda/cb_gemv_kernels.cuh /tmp/oldtree/src/cuda/ &&
   cd /tmp/oldtree && cmake -S . -B build/gpu_old -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake_old.txt 2>&1 &&
   cmake --build build/gpu_old -j16 --target bench_cuda_forward > /tmp/opc_build_old.txt 2>&1) &
  po=$!
  cmake --build $B -j16 --target test_cuda_forward > /tmp/opc_build2.txt 2>&1 || { echo "BUILD FAILED test_cuda_forward" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build2.txt | head -20 | tee -a "$L"; }
  log test_cuda
  (cd $B && timeout 100 ./test_cuda) > "$OUT/h1s4_final_test_cuda.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" "$OUT/h1s4_final_test_cuda.txt" | tail -5 | tee -a "$L"
  log test_cuda_forward
  (cd $B && timeout 100 ./test_cuda_forward) > /tmp/tcf.txt 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" /tmp/tcf.txt | tail -5 | tee -a "$L"
  log lab validate v8
  timeout 60 /tmp/opc-lab/cb_gemv_lab --validate --only v8 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
  grep -E "validation:|worst" /tmp/val.txt | tee -a "$L"
  wait $po && echo "built old bench_cuda_forward" | tee -a "$L" || { echo "OLD BUILD FAILED" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build_old.txt | head | tee -a "$L"; }
  for e in OPC_CUDA_V8_MODE=1 OPC_CUDA_V8_MODE=0; do
    log "lab bench v8 ($e)"
    timeout 60 env $e /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > /tmp/bench.txt 2>&1; echo "rc=$?" | tee -a "$L"
    echo "### $e" >> "$OUT/h1s4_final_lab_bench.txt"; cat /tmp/bench.txt >> "$OUT/h1s4_final_lab_bench.txt"
    grep -E "device:|copy D2D|v8_w16_p2|cublas" /tmp/bench.txt | grep -v "+gs" | awk '/copy|device/ || $3==1 || $3==4' | tee -a "$L"
  done
  BO=/tmp/oldtree/build/gpu_old/bench_cuda_forward
  synth ol --outliers 0.0085
  for r in 1 2; do dec ol OPC_X=1; log "(old kernel)"; timeout 60 $BO /tmp/ol.bf2 --pp 64 --tg 128 --reps 3 2>&1 | tee -a "$L" | grep -E "tg128"; done
  rm -f /tmp/ol.bf2
  synth pl
  for r in 1 2; do dec pl OPC_X=1; log "(old kernel)"; timeout 60 $BO /tmp/pl.bf2 --pp 64 --tg 128 --reps 3 2>&1 | tee -a "$L" | grep -E "tg128"; done
  rm -f /tmp/pl.bf2
  synth ol2 --outliers 0.0085 --layers 2
  log "ncu ol2"
  timeout 60 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv $BF /tmp/ol2.bf2 --pp 16 --tg 3 --reps 1 > "$OUT/h1s4_final_ncu_ol2.csv" 2>/tmp/ncu_err.txt; echo "ncu rc=$?" | tee -a "$L"
  python3 bench/cuda/h1_s4_step.py "$OUT/h1s4_final_ncu_ol2.csv" 2>&1 | tee -a "$L"
fi
if [ "$WHAT" = final2 ]; then
  cmake --build $B -j16 --target test_cuda_forward > /tmp/opc_build2.txt 2>&1 || { echo "BUILD FAILED test_cuda_forward" | tee -a "$L"; grep -E "error" -A3 /tmp/opc_build2.txt | head -20 | tee -a "$L"; }
  log test_cuda
  (cd $B && timeout 100 ./test_cuda) > "$OUT/h1s4_final_test_cuda.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" "$OUT/h1s4_final_test_cuda.txt" | tail -5 | tee -a "$L"
  log test_cuda_forward
  (cd $B && timeout 100 ./test_cuda_forward) > /tmp/tcf.txt 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "passed|FAIL" /tmp/tcf.txt | tail -5 | tee -a "$L"
  log lab validate v8_w16_p2
  timeout 60 /tmp/opc-lab/cb_gemv_lab --validate --only v8_w16_p2 > /tmp/val.txt 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "FAIL" /tmp/val.txt | head -10 | tee -a "$L"
  grep -E "validation:|worst" /tmp/val.txt | tee -a "$L"
  log "lab bench v8"
  timeout 60 /tmp/opc-lab/cb_gemv_lab --bench --only v8_w16_p2 > "$OUT/h1s4_final_lab_bench.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "device:|copy D2D|v8_w16_p2|cublas" "$OUT/h1s4_final_lab_bench.txt" | grep -v "+gs" | awk '/copy|device/ || $3==1 || $3==4' | tee -a "$L"
  synth ol --outliers 0.0085
  for r in 1 2; do dec ol OPC_X=1; dec ol OPC_CUDA_V8_OLEPI=warp OPC_CUDA_V8_OLCAP=0; done
fi
log done
