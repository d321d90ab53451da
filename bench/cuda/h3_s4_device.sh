#!/usr/bin/env bash
# h3_s4_device.sh — GPU calibration (`quantize --device cuda`, calib_cuda.cu)
# on the device machine, in two calls on one warm machine:
#   bash bench/cuda/h3_s4_device.sh test   build; test_cuda_quant (GPU vs CPU
#                                          statistics on stories260K and the 2-bit
#                                          SmolLM2); memcheck on the quick cases;
#                                          stories260K quantized with CPU vs GPU
#                                          calibration (same GPU quantizer), PPL and
#                                          KLD on held-out TinyStories text
#   bash bench/cuda/h3_s4_device.sh e2e    8B-shape f16 .bf2 (synth), `quantize
#                                          --device cuda` with GPU calibration, then
#                                          with OPC_CUDA_CALIB=0 (the CPU's, as before)
#   bash bench/cuda/h3_s4_device.sh all    both (memcheck last, only if time is left)
#   bash bench/cuda/h3_s4_device.sh seeds  test_cuda_quant; racecheck (quick); stories260K
#                                          with sampled calibration for seeds 1-5, CPU vs
#                                          GPU (sampled text differs once the two part
#                                          ways: the seed spread is the yardstick); and
#                                          text calibration with --rotate
# Carry [".debs","gpu_carry"]; gpu_carry/ holds stories260K/, smollm2-2bit.bf2 and
# h3_ts_calib.txt / h3_ts_eval.txt (tinystories-valid-head.txt cut at the first
# story end after 40000 bytes: calibration text before, evaluation text after).
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-test}
T0=$(date +%s)
left() { echo $(( ${BUDGET:-290} - ($(date +%s) - T0) )); } # seconds left of this call
B=build/gpu
X=$B/opacc1ty
L="$OUT/h3_$WHAT.txt"
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$L"; }
export OMP_WAIT_POLICY=PASSIVE

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee -a "$L"
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF -DOPC_WERROR=ON > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda_quant > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" -A3 /tmp/opc_build.txt | head -40; exit 1; }
echo built | tee -a "$L"

if [ "$WHAT" = test ] || [ "$WHAT" = all ] || [ "$WHAT" = seeds ]; then
  log test_cuda_quant
  (cd $B && timeout 150 ./test_cuda_quant) > "$OUT/test_cuda_quant.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "calib|passed|FAIL|SKIP" "$OUT/test_cuda_quant.txt" | tee -a "$L"
fi

if [ "$WHAT" = test ] || [ "$WHAT" = all ]; then
  log stories260K: CPU vs GPU calibration, same GPU quantizer
  M=gpu_carry/stories260K/stories260K.bin
  E=gpu_carry/h3_ts_eval.txt
  C=gpu_carry/h3_ts_calib.txt
  $X perplexity $M --text $E --ctx 256 --save-logits /tmp/st_ref.logits 2>&1 | grep -E "^PPL" | sed 's/^/fp32 reference: /' | tee -a "$L"
  for cal in sampled text; do
    for gq in gptq nogptq; do
      for dev in cpu gpu; do
        args=(--bits 2 --device cuda)
        [ $cal = text ] && args+=(--calib $C)
        [ $gq = nogptq ] && args+=(--no-gptq)
        q=/tmp/st_${cal}_${gq}_${dev}.bf2
        if [ $dev = cpu ]; then
          OPC_CUDA_CALIB=0 $X quantize $M -o $q "${args[@]}" > /tmp/st_q.txt 2>&1
        else
          $X quantize $M -o $q "${args[@]}" > /tmp/st_q.txt 2>&1
        fi
        echo "--- calib $cal, $gq, calibration on $dev: rc=$? $(grep -E '^  calibration' /tmp/st_q.txt)" | tee -a "$L"
        $X perplexity $q --text $E --ctx 256 --kld /tmp/st_ref.logits 2>&1 | grep -E "^PPL|^KLD|^top-1" | tee -a "$L"
      done
      cmp -s /tmp/st_${cal}_${gq}_cpu.bf2 /tmp/st_${cal}_${gq}_gpu.bf2 && echo "files identical" | tee -a "$L"
    done
  done

fi

if [ "$WHAT" = e2e ] || [ "$WHAT" = all ]; then
  log synth llama3-8b f16
  [ -f /tmp/f16.bf2 ] || ( time timeout 120 $X synth --shape llama3-8b --bits 16 -o /tmp/f16.bf2 --quiet ) 2>&1 | tail -4 | tee -a "$L"
  ls -la /tmp/f16.bf2 | tee -a "$L"
  log "after: quantize --device cuda, default options (GPU calibration)"
  ( time timeout 120 $X quantize /tmp/f16.bf2 -o /tmp/q_gpu.bf2 --device cuda ) > "$OUT/h3_e2e_gpu.txt" 2>&1
  grep -vE "^(blk|token|output)" "$OUT/h3_e2e_gpu.txt" | tail -16 | tee -a "$L"
  rm -f /tmp/q_gpu.bf2
  log "before: the same with OPC_CUDA_CALIB=0 (calibration on the CPU)"
  ( time OPC_CUDA_CALIB=0 timeout $(( $(left) - 5 )) $X quantize /tmp/f16.bf2 -o /tmp/q_cpu.bf2 --device cuda ) > "$OUT/h3_e2e_cpu.txt" 2>&1
  grep -vE "^(blk|token|output)" "$OUT/h3_e2e_cpu.txt" | tail -16 | tee -a "$L"
  rm -f /tmp/q_cpu.bf2
fi

if [ "$WHAT" = seeds ]; then
  log racecheck test_cuda_quant quick
  (cd $B && OPC_TEST_QUICK=2 timeout 100 compute-sanitizer --tool racecheck ./test_cuda_quant) > "$OUT/racecheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|hazard" "$OUT/racecheck.txt" | head -8 | tee -a "$L"
  M=gpu_carry/stories260K/stories260K.bin
  E=gpu_carry/h3_ts_eval.txt
  C=gpu_carry/h3_ts_calib.txt
  $X perplexity $M --text $E --ctx 256 --save-logits /tmp/st_ref.logits > /dev/null 2>&1
  log stories260K, default 2-bit + GPTQ, sampled calibration, seeds 1-5
  for seed in 1 2 3 4 5; do
    for dev in cpu gpu; do
      q=/tmp/st_s${seed}_${dev}.bf2
      if [ $dev = cpu ]; then v=0; else v=1; fi
      OPC_CUDA_CALIB=$v $X quantize $M -o $q --bits 2 --device cuda --seed $seed > /tmp/st_q.txt 2>&1
      echo "seed $seed calibration on $dev: rc=$? $($X perplexity $q --text $E --ctx 256 --kld /tmp/st_ref.logits 2>&1 | grep -E '^PPL|^KLD' | cut -c1-60 | tr '\n' ' ')" | tee -a "$L"
    done
  done
  log "stories260K, text calibration, --rotate on (rotated sums and Hessians)"
  for dev in cpu gpu; do
    if [ $dev = cpu ]; then v=0; else v=1; fi
    OPC_CUDA_CALIB=$v $X quantize $M -o /tmp/st_rot_$dev.bf2 --bits 2 --device cuda --calib $C --rotate on > /tmp/st_q.txt 2>&1
    echo "rotate, calibration on $dev: rc=$? $(grep -E '^  calibration' /tmp/st_q.txt) $($X perplexity /tmp/st_rot_$dev.bf2 --text $E --ctx 256 --kld /tmp/st_ref.logits 2>&1 | grep -E '^PPL|^KLD' | cut -c1-60 | tr '\n' ' ')" | tee -a "$L"
  done
fi

if [ "$WHAT" = test ] || { [ "$WHAT" = all ] && [ "$(left)" -gt 40 ]; }; then
  log memcheck test_cuda_quant quick
  (cd $B && OPC_TEST_QUICK=1 timeout $(( $(left) - 5 )) compute-sanitizer --tool memcheck --leak-check full ./test_cuda_quant) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?" | tee -a "$L"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -8 | tee -a "$L"
fi
log done
