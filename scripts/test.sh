#!/usr/bin/env bash
# test.sh — the full test suite on a fresh machine: set-up, a warnings-as-errors
# build, all tests, then the same tests under ASan+UBSan, then a short libFuzzer
# run of each parser (when clang is available).
#
#   OPC_TEST_QUICK=1   skip the sanitizer build and fuzzing (local iteration)
#   OPC_FUZZ_SECONDS   seconds per fuzz target (default 30)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

OPC_SETUP_FUZZ=1 bash scripts/setup.sh

echo "== build (release, -Werror)"
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=Release -DOPC_WERROR=ON >/dev/null
cmake --build build/ci -j"$jobs"
echo "== tests (release)"
(cd build/ci && ctest --output-on-failure -j"$jobs")

if [ "${OPC_TEST_QUICK:-0}" != 1 ]; then
  echo "== build (ASan + UBSan)"
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DOPC_SANITIZE=ON -DOPC_WERROR=ON -DOPC_CUDA=OFF >/dev/null
  cmake --build build/asan -j"$jobs"
  echo "== tests (ASan + UBSan)"
  (cd build/asan && OPC_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$jobs")

  if command -v clang >/dev/null && ls fuzz/fuzz_*.c >/dev/null 2>&1; then
    echo "== fuzz (libFuzzer, ${OPC_FUZZ_SECONDS:-30}s per target)"
    CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DOPC_FUZZ=ON -DOPC_CUDA=OFF -DOPC_TESTS=OFF >/dev/null
    cmake --build build/fuzz -j"$jobs"
    for f in fuzz/fuzz_*.c; do
      name=$(basename "$f" .c)
      seeds="fuzz/corpus/${name#fuzz_}"
      work="build/fuzz/corpus-$name"; mkdir -p "$work"
      echo "-- $name"
      ./build/fuzz/"$name" -max_total_time="${OPC_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 \
        -print_final_stats=0 "$work" $( [ -d "$seeds" ] && echo "$seeds" ) 2>&1 | tail -n 3
    done
  fi
fi
echo "== all tests passed"
