#!/usr/bin/env bash
# forward_device.sh — one device-machine session for the CUDA forward pass:
# build, tests/test_cuda_forward (plain and under compute-sanitizer memcheck),
# then speed (bench_cuda_forward: pp512, tg128) of SmolLM2 2-bit and of
# synthetic Llama-3-8B-shape models (2-bit with f16 head, 2-bit unfused,
# 2-bit with 2-bit head, f16), and a per-kernel time breakdown (ncu) of a
# 2-layer 8B-shape decode step.
# Run from the repository root on the GPU machine, with .debs and gpu_carry/
# carried (docs/RESULTS.md "CUDA forward pass"); logs go to $OUT.
#   bash bench/cuda/forward_device.sh [all|test|bench]
set -uo pipefail
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
WHAT=${1:-all}
log() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" | tee -a "$OUT/bench.txt"; }
B=build/gpu
BENCH="$B/bench_cuda_forward"

log gpu
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv
log build
source scripts/gpu_env.sh
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DOPC_SERVER=OFF > /tmp/opc_cmake.txt 2>&1 || { tail -30 /tmp/opc_cmake.txt; exit 1; }
cmake --build $B -j16 --target opacc1ty_cli test_cuda_forward test_cuda bench_cuda_forward > /tmp/opc_build.txt 2>&1 || { grep -E "error|Error" /tmp/opc_build.txt | head -30; exit 1; }
echo built

if [ "$WHAT" != bench ]; then
  log test_cuda_forward
  (cd $B && timeout 200 ./test_cuda_forward) > "$OUT/test.txt" 2>&1; echo "rc=$?"
  grep -vE "^\[ RUN" "$OUT/test.txt" | tail -40
  log test_cuda
  (cd $B && timeout 120 ./test_cuda) 2>&1 | tail -1
  log memcheck
  (cd $B && OPC_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --leak-check full ./test_cuda_forward) > "$OUT/memcheck.txt" 2>&1; echo "rc=$?"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|passed|Invalid|Program hit" "$OUT/memcheck.txt" | head -12
fi
[ "$WHAT" = test ] && exit 0

synth() { # NAME ARGS...
  local f=/tmp/$1.bf2; shift
  rm -f /tmp/*.bf2
  timeout 200 $B/opacc1ty synth --shape llama3-8b -o $f --quiet "$@" 2>&1 | tail -2
}
log bench SmolLM2 2-bit
timeout 100 $BENCH gpu_carry/smollm2-2bit.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"

log llama3-8b 2-bit, f16 head
synth l8b --bits 2
timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log llama3-8b 2-bit, f16 head, QKV and gate/up not fused
OPC_CUDA_NO_FUSE=1 timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log llama3-8b 2-bit, 2-bit head
synth l8b --bits 2 --head-bits 2
timeout 150 $BENCH /tmp/l8b.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
log ncu per-kernel times, 2-layer 8B shape, 2-bit, one decode step
synth l8b2 --bits 2 --layers 2
timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --csv $BENCH /tmp/l8b2.bf2 --pp 16 --tg 3 --reps 1 > /tmp/ncu_l8b2.csv 2>/dev/null; echo "ncu rc=$?"
python3 - /tmp/ncu_l8b2.csv <<'PY' 2>&1 | tee "$OUT/ncu_summary.txt"
import csv, sys, collections
allr = list(csv.reader(open(sys.argv[1])))
hi = next(i for i, r in enumerate(allr) if "Kernel Name" in r)
h = allr[hi]; rows = [r for r in allr[hi + 1:] if len(r) == len(h)]
ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
scale = {"nsecond": 1.0, "usecond": 1e3, "msecond": 1e6, "second": 1e9}
seq = [(r[ki][:60], float(r[vi].replace(",", "")) * scale.get(r[ui], 1.0)) for r in rows]
# the last decode step: kernels after the last embedding launch
last = max(i for i, (k, _) in enumerate(seq) if k.startswith("opc_cudafwd::k_embed") or "k_embed" in k)
step = seq[last:]
tot = collections.OrderedDict()
for k, v in step:
    tot.setdefault(k, [0, 0.0]); tot[k][0] += 1; tot[k][1] += v
print("one decode step, 2 layers: %d kernels, %.1f us of kernel time" % (len(step), sum(v for _, v in step) / 1e3))
for k, (n, v) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print("%8.1f us  %3d x  %s" % (v / 1e3, n, k))
PY
log llama3-8b f16
synth l8b16 --bits 16
timeout 200 $BENCH /tmp/l8b16.bf2 --pp 512 --tg 128 --reps 3 2>&1 | tee -a "$OUT/bench.txt"
rm -f /tmp/*.bf2
