#!/usr/bin/env bash
# Evaluate a trained model directory the way models/CARD.md reports it:
# validation exact-call accuracy and calibration (first 300 examples of
# val.jsonl), then every BFCL v4 category. Usage:
#   scripts/eval-model.sh MODEL_DIR VAL.jsonl BFCL_DIR OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$1"; VAL="$2"; BFCL="$3"; OUT="$4"
BIN=./target/release/retort
mkdir -p "$OUT"
"$BIN" train --val "$VAL" --init "$MODEL" --eval-only --limit-train 300 | tee "$OUT/val.txt"
"$BIN" eval bfcl --data "$BFCL" --model "$MODEL" --json "$OUT/bfcl.json" \
  --failures "$OUT/failures.jsonl" --chart "$OUT/bfcl.svg" 2>&1 | tee "$OUT/bfcl.txt"
