#!/usr/bin/env bash
# cli_generate.sh BIN SRC — `opacc1ty generate` end to end.
#
# Golden: greedy decoding (--temp 0) of stories260K (../shared; skipped, exit
# 77, when absent) from "Zoo" prints the continuation that
# ../shared/models/stories260K/README.md gives (llama2.c's run.c output), on
# stdout, with the timing line on stderr only; the same with --threads 1 and
# with a prefill batch of 1 (token-by-token). Bad input: usage errors exit 2
# (unknown option, no --prompt, a bad number); a missing or truncated model
# exits nonzero with a message naming the file.
set -u
bin=${1:?usage: cli_generate.sh BIN SRC}
src=${2:?usage: cli_generate.sh BIN SRC}
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}

"$bin" generate x.bin --prompt Zoo --bogus >/dev/null 2>&1; check "unknown option exits 2" test $? -eq 2
"$bin" generate x.bin >/dev/null 2>&1; check "no --prompt exits 2" test $? -eq 2
"$bin" generate x.bin --prompt Zoo --temp abc >/dev/null 2>&1; check "bad --temp exits 2" test $? -eq 2
"$bin" generate x.bin --prompt Zoo --max-tokens >/dev/null 2>&1; check "missing value exits 2" test $? -eq 2
err=$("$bin" generate /nonexistent/m.bin --prompt Zoo 2>&1 >/dev/null); rc=$?
check "missing model exits nonzero" test $rc -ne 0 -a $rc -ne 2
check "missing model is named" grep -q "/nonexistent/m.bin" <<<"$err"

dir="$src/../shared/models/stories260K"
model="$dir/stories260K.bin"
if [ ! -f "$model" ] || [ ! -f "$dir/tok512.bin" ]; then
  [ $fail -eq 0 ] || exit 1
  echo "SKIP: $model not present"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The known continuation, as README.md states it (checked to be there, so the
# two cannot drift apart silently).
want='Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.'
check "README states the golden text" grep -qF "\"$want\"" "$dir/README.md"

for opts in "" "--threads 1" "--batch 1"; do
  # shellcheck disable=SC2086
  out=$("$bin" generate "$model" --prompt Zoo --temp 0 --max-tokens 40 $opts 2>"$tmp/err"); rc=$?
  check "greedy Zoo ${opts:-(defaults)} exits 0" test $rc -eq 0
  check "greedy Zoo ${opts:-(defaults)} prints the known text" test "${out:0:${#want}}" = "$want"
  check "timing goes to stderr ${opts}" grep -q "decode" "$tmp/err"
done

# a truncated copy of the model (and its tokenizer next to it) fails cleanly
head -c 100000 "$model" >"$tmp/stories260K.bin"
cp "$dir/tok512.bin" "$tmp/tok512.bin"
err=$("$bin" generate "$tmp/stories260K.bin" --prompt Zoo 2>&1 >/dev/null); rc=$?
check "truncated model exits nonzero" test $rc -ne 0 -a $rc -lt 128
check "truncated model is named" grep -q "$tmp/stories260K.bin" <<<"$err"

exit $fail
