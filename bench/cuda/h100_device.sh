#!/usr/bin/env bash
# h100_device.sh — the lead's one-call check on an H100 (or whatever card comes):
# build; racecheck of the GPU quantizer (quick); GEMV lab (v4, batch 1..8, vs
# cuBLAS fp16 and the copy probe); 8B-shape decode/prefill; and, on the host
# CPU pinned to 2 cores, the issue-5 CPU numbers (1B-shape 2-bit decode,
# SmolLM2-shape 2-bit vs f16 decode, 2-bit GEMV % of bandwidth).
# Carry [".debs","gpu_carry"]; logs go to $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
B=build/gpu
L="$OUT/h100.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }
log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$L"
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda_quant bench_cuda_forward bench_cpu_gemv > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" -A3 /tmp/opc_build.txt | head -40; exit 1; }
make -C bench/cuda BUILD=/tmp/opc-lab NVCC=nvcc > /tmp/opc_lab.txt 2>&1 || { tail -20 /tmp/opc_lab.txt; exit 1; }
echo built | tee -a "$L"
log racecheck test_cuda_quant quick
(cd $B && OPC_TEST_QUICK=2 timeout 70 compute-sanitizer --tool racecheck ./test_cuda_quant) > "$OUT/racecheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed" "$OUT/racecheck.txt" | head -5 | tee -a "$L"
log GEMV lab
timeout 150 /tmp/opc-lab/cb_gemv_lab --bench --only v4_mt1_wk16_u1,v4_mt2_wk8_u1 2>&1 | tee -a "$L" | tail -40
X=$B/opacc1ty
log 8B shape 2-bit f16 head
rm -f /tmp/l8b.bf2; timeout 200 $X synth --shape llama3-8b --bits 2 -o /tmp/l8b.bf2 --quiet 2>&1 | tail -1
timeout 150 $B/bench_cuda_forward /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4
rm -f /tmp/l8b.bf2
log CPU, 2 cores pinned: 1B-shape 2-bit decode
timeout 100 $X synth --shape llama3.2-1b --bits 2 -o /tmp/1b.bf2 --quiet 2>&1 | tail -1
OMP_WAIT_POLICY=PASSIVE timeout 120 taskset -c 0,1 $X benchmark /tmp/1b.bf2 --threads 2 --max-tokens 32 2>&1 | tee -a "$L" | tail -12
log "CPU, 2 cores pinned: SmolLM2 2-bit .bf2 with a 4-bit tied embedding and head"
OMP_WAIT_POLICY=PASSIVE timeout 120 taskset -c 0,1 $X benchmark gpu_carry/smollm2-2bit.bf2 --threads 2 --max-tokens 64 2>&1 | tee -a "$L" | tail -12
log CPU, 2 cores pinned: 2-bit GEMV
OMP_WAIT_POLICY=PASSIVE timeout 120 taskset -c 0,1 $B/bench_cpu_gemv --quick --bits 2 --T 1 --threads 2 --mem 1024 2>&1 | tee -a "$L" | tail -14
