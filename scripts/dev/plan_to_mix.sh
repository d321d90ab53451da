#!/usr/bin/env bash
# plan_to_mix.sh — turn `opacc1ty quantize --dry-run` output into one
# mix_eval.c plan line (measurement only): each codebook tensor is taken from
# the file quantized uniformly at its planned setting. Names the files by
# setting: a2 = 2-bit 0.5 % outliers (the base), a2o1 = 2-bit 1 %, a2o0 =
# 2-bit none, b4 = 4-bit none.
#   plan_to_mix.sh LABEL < DRY_RUN_OUTPUT
set -euo pipefail
awk -v label="$1" '
  $2 ~ /^cb/ {
    src = "";
    if ($2 == "cb4" && $3 == 16 && $6 == "0.000") src = "b4";
    else if ($2 == "cb2" && $3 == 4 && $6 == "1.000") src = "a2o1";
    else if ($2 == "cb2" && $3 == 4 && $6 == "0.000") src = "a2o0";
    else if (!($2 == "cb2" && $3 == 4 && $6 == "0.500")) { print "unsupported: " $0 > "/dev/stderr"; exit 1 }
    if (src != "") rules = rules " " $1 "=" src;
  }
  END { print label " a2" rules }'
