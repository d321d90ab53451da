#!/usr/bin/env bash
# final_device.sh — the lead's end-of-session check on the device machine, in
# two calls on one warm machine (each under the 10-minute limit):
#   bash bench/cuda/final_device.sh test   build; test_cuda, test_cuda_forward,
#                                          test_cuda_quant; memcheck (quick forward)
#                                          and racecheck (quick quant)
#   bash bench/cuda/final_device.sh speed  perplexity GPU vs CPU on the default
#                                          2-bit SmolLM2 .bf2; quantize --device cuda
#                                          vs cpu (bytes compared), GPU calibration's PPL;
#                                          sampled generation; 8B-shape decode and prefill
#                                          with and without outliers
# Carry [".debs","gpu_carry"]; gpu_carry/ holds stories260K/, smollm2-2bit.bf2
# (`quantize` with the default options) and wiki.test.raw. Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-test}
B=build/gpu
L="$OUT/final_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv | tee -a "$L"
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda test_cuda_forward test_cuda_quant test_cuda_gemm test_cuda_sample bench_cuda_forward bench_cuda_quant > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" -A3 /tmp/opc_build.txt | head -40; exit 1; }
echo built | tee -a "$L"

if [ "$WHAT" = test ]; then
  for t in test_cuda test_cuda_forward test_cuda_quant test_cuda_gemm test_cuda_sample; do
    log $t
    (cd $B && timeout 150 ./$t) > "$OUT/$t.txt" 2>&1; echo "rc=$?" | tee -a "$L"
    grep -E "passed|FAIL" "$OUT/$t.txt" | tail -6 | tee -a "$L"
  done
  log memcheck test_cuda_forward quick
  (cd $B && OPC_TEST_QUICK=1 timeout 110 compute-sanitizer --tool memcheck --leak-check full ./test_cuda_forward) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -8 | tee -a "$L"
  log memcheck test_cuda quick
  (cd $B && OPC_TEST_QUICK=1 timeout 120 compute-sanitizer --tool memcheck --leak-check full ./test_cuda) > "$OUT/memcheck_gemv.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid" "$OUT/memcheck_gemv.txt" | head -6 | tee -a "$L"
  log memcheck test_cuda_gemm + test_cuda_sample quick
  (cd $B && OPC_TEST_QUICK=1 timeout 100 compute-sanitizer --tool memcheck --leak-check full ./test_cuda_gemm) > "$OUT/memcheck_gemm.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed" "$OUT/memcheck_gemm.txt" | head -4 | tee -a "$L"
  (cd $B && OPC_TEST_QUICK=1 timeout 60 compute-sanitizer --tool racecheck ./test_cuda_sample) > "$OUT/racecheck_sample.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "RACECHECK SUMMARY|passed" "$OUT/racecheck_sample.txt" | head -4 | tee -a "$L"
  log racecheck test_cuda_quant quick
  (cd $B && OPC_TEST_QUICK=2 timeout 120 compute-sanitizer --tool racecheck ./test_cuda_quant) > "$OUT/racecheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|hazard" "$OUT/racecheck.txt" | head -8 | tee -a "$L"
  exit 0
fi

X=$B/opacc1ty
W=gpu_carry/wiki.test.raw
log perplexity default 2-bit SmolLM2, 10 chunks, GPU
timeout 120 $X perplexity gpu_carry/smollm2-2bit.bf2 --text $W --chunks 10 --device cuda --quiet 2>&1 | tee -a "$L" | tail -3
log perplexity same, CPU 16 threads
OMP_WAIT_POLICY=PASSIVE timeout 200 $X perplexity gpu_carry/smollm2-2bit.bf2 --text $W --chunks 10 --threads 16 --quiet 2>&1 | tee -a "$L" | tail -3
log generate GPU
timeout 60 $X generate gpu_carry/smollm2-2bit.bf2 --chat --prompt "What is the capital of France?" --temp 0 --max-tokens 40 --device cuda 2>&1 | tee -a "$L" | tail -4
log "quantize stories260K with the defaults (GPTQ on at this width): cuda with CPU calibration vs cpu"
timeout 60 env OPC_CUDA_CALIB=0 $X quantize gpu_carry/stories260K/stories260K.bin -o /tmp/s_gpu.bf2 --device cuda --quiet 2>&1 | tail -3 | tee -a "$L"
timeout 60 $X quantize gpu_carry/stories260K/stories260K.bin -o /tmp/s_cpu.bf2 --device cpu --quiet 2>&1 | tail -3 | tee -a "$L"
cmp /tmp/s_gpu.bf2 /tmp/s_cpu.bf2 && echo "quantize cuda (GPTQ on the GPU) == cpu: identical files" | tee -a "$L"
log "quantize stories260K entirely on the GPU (calibration too): PPL vs the CPU file on held-out TinyStories"
timeout 60 $X quantize gpu_carry/stories260K/stories260K.bin -o /tmp/s_gpu2.bf2 --device cuda 2>&1 | grep -E "calib|whole|time" | tee -a "$L"
if [ -f gpu_carry/h3_ts_eval.txt ]; then
  for m in /tmp/s_cpu.bf2 /tmp/s_gpu2.bf2; do
    timeout 60 $X perplexity $m --text gpu_carry/h3_ts_eval.txt --ctx 256 --threads 16 --quiet 2>&1 | tail -1 | sed "s|^|$m: |" | tee -a "$L"
  done
fi
log "generate SmolLM2 2-bit on the GPU, sampled on the device"
timeout 60 $X generate gpu_carry/smollm2-2bit.bf2 --prompt "Once upon a time" --temp 0.8 --seed 1 --max-tokens 256 --device cuda 2>&1 | tail -1 | tee -a "$L"
synth() { rm -f /tmp/l8b.bf2; timeout 200 $X synth --shape llama3-8b -o /tmp/l8b.bf2 --quiet "$@" 2>&1 | tail -1; }
bench() { log "$1"; timeout 150 $B/bench_cuda_forward /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$L" | tail -4; }
synth --bits 2
bench "llama3-8b shape, 2-bit, no outliers, f16 head"
synth --bits 2 --outliers 0.0085
bench "llama3-8b shape, 2-bit, 0.85 % outliers (what quantize's defaults give an 8B model), f16 head"
rm -f /tmp/l8b.bf2
