#!/usr/bin/env bash
# cli_synth.sh BIN SRC — `opacc1ty synth` end to end on the tiny test shape.
#
# Usage errors exit 2 with a message naming the problem; an unwritable output
# exits 1 and leaves nothing behind; a synthetic model opens with `info`
# (config of the shape) and `generate` runs on it; same seed, same bytes;
# --gscale / --rotate make codebook variants (refused without codebooks).
set -u
bin=${1:?usage: cli_synth.sh BIN SRC}
src=${2:?usage: cli_synth.sh BIN SRC}
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" synth >/dev/null 2>&1; check "no argument exits 2" test $? -eq 2
"$bin" synth --shape tiny -o "$tmp/a.bf2" >/dev/null 2>&1; check "missing --bits exits 2" test $? -eq 2
err=$("$bin" synth --shape tiny --bits 2.5 -o "$tmp/a.bf2" 2>&1); rc=$?
check "--bits 2.5 exits 2" test $rc -eq 2
check "--bits error is named" grep -q -- "--bits" <<<"$err"
err=$("$bin" synth --shape llama9 --bits 2 -o "$tmp/a.bf2" 2>&1); rc=$?
check "unknown shape exits 2" test $rc -eq 2
check "unknown shape lists the known ones" grep -q "llama3-8b" <<<"$err"
"$bin" synth --shape tiny --bits 2 --outliers 0.9 -o "$tmp/a.bf2" >/dev/null 2>&1
check "--outliers 0.9 exits 2" test $? -eq 2
"$bin" synth --shape tiny --bits 16 --outliers 0.01 -o "$tmp/a.bf2" >/dev/null 2>&1
check "outliers with f16 exits 2" test $? -eq 2
"$bin" synth --shape tiny --bits 2 --layers 0 -o "$tmp/a.bf2" >/dev/null 2>&1
check "--layers 0 exits 2" test $? -eq 2
"$bin" synth --shape tiny --bits 2 --bogus -o "$tmp/a.bf2" >/dev/null 2>&1
check "unknown option exits 2" test $? -eq 2
err=$("$bin" synth --shape tiny --bits 2 -o /nonexistent-dir/a.bf2 2>&1); rc=$?
check "unwritable output exits 1" test $rc -eq 1
check "unwritable output is named" grep -q "/nonexistent-dir/a.bf2" <<<"$err"
check "nothing left behind" test -z "$(ls -A "$tmp")"

# Ctrl-C: the run stops with an error and neither the file nor a temporary remains
"$bin" synth --shape smollm2 --bits 2 -o "$tmp/int.bf2" --quiet >/dev/null 2>"$tmp/int.err" & pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
if [ $rc -eq 0 ]; then
  echo "note: synth finished before the interrupt; interrupt check not exercised"
  rm -f "$tmp/int.bf2"
else
  check "interrupted synth exits 1" test $rc -eq 1
  check "interrupt is reported" grep -q "INTERRUPTED" "$tmp/int.err"
  check "interrupt leaves nothing" test -z "$(ls -A "$tmp" | grep -v '^int.err$')"
fi
rm -f "$tmp/int.err"

out=$("$bin" synth --shape tiny --bits 2 --layers 3 --outliers 0.01 --seed 5 -o "$tmp/a.bf2" --quiet); rc=$?
check "synth exits 0" test $rc -eq 0
check "summary names the file" grep -q "wrote $tmp/a.bf2" <<<"$out"
"$bin" synth --shape tiny --bits 2 --layers 3 --outliers 0.01 --seed 5 --threads 1 -o "$tmp/b.bf2" --quiet >/dev/null
check "same seed, same bytes (1 vs default threads)" cmp -s "$tmp/a.bf2" "$tmp/b.bf2"
"$bin" synth --shape tiny --bits 2 --layers 3 --outliers 0.01 --seed 6 -o "$tmp/c.bf2" --quiet >/dev/null
check "another seed, other bytes" bash -c "! cmp -s '$tmp/a.bf2' '$tmp/c.bf2'"

info=$("$bin" info "$tmp/a.bf2"); rc=$?
check "info exits 0" test $rc -eq 0
has() { grep -Eq "$1" <<<"$info"; }
check "info: format" has '^format: +bf2'
check "info: dim" has '^  dim +128$'
check "info: layers" has '^  n_layers +3$'
check "info: vocab" has '^  n_tokens +512$'
check "info: tensors" has '^tensors: +29 '
gen=$("$bin" generate "$tmp/a.bf2" -p "Hello" -n 4 2>&1); rc=$?
check "generate runs on it" test $rc -eq 0
[ $rc -eq 0 ] || echo "$gen" | tail -5

# codebook variants
"$bin" synth --shape tiny --bits 16 --gscale -o "$tmp/v.bf2" >/dev/null 2>&1
check "--gscale with f16 weights exits 2" test $? -eq 2
err=$("$bin" synth --shape tiny --bits 16 --embd-bits 2 --rotate -o "$tmp/v.bf2" 2>&1); rc=$?
check "--rotate with nothing to rotate exits 2" test $rc -eq 2
check "--rotate error is named" grep -q -- "--rotate" <<<"$err"
check "refused variants leave nothing" test ! -e "$tmp/v.bf2"
out=$("$bin" synth --shape tiny --bits 2 --layers 2 --gscale --rotate --seed 5 -o "$tmp/v.bf2" --quiet); rc=$?
check "synth --gscale --rotate exits 0" test $rc -eq 0
check "summary names the variants" grep -q "group scales, rotated inputs" <<<"$out"
"$bin" synth --shape tiny --bits 2 --layers 2 --gscale --rotate --seed 5 --threads 1 -o "$tmp/w.bf2" --quiet >/dev/null
check "variants: same seed, same bytes" cmp -s "$tmp/v.bf2" "$tmp/w.bf2"
info=$("$bin" info "$tmp/v.bf2" --layers)
# tiny: 14 layer matrices, widths 128 (block 128) and 320 (block 64); the tied f16 embedding is untouched
check "info: variant summary" has '^codebooks: +14 tensors, 14 with group scales, 14 rotated \(blocks of 64\.\.128\)$'
check "info: name" has '^name: +synth-tiny-2bit-gscale-rot-seed5$'
gen=$("$bin" generate "$tmp/v.bf2" -p "Hello" -n 4 2>&1); rc=$?
check "generate runs on scaled, rotated weights" test $rc -eq 0
[ $rc -eq 0 ] || echo "$gen" | tail -5
exit $fail
