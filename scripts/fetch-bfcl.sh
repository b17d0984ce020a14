#!/usr/bin/env bash
# Fetch the BFCL v4 data set from its public source, the PyPI package
# bfcl-eval (Apache-2.0), and unpack its `bfcl_eval/data` folder into DEST.
#
#   scripts/fetch-bfcl.sh DEST
#   retort eval bfcl --data DEST --gold
#
# BFCL_EVAL_VERSION overrides the pinned version. Needs python3 with pip.
# BFCL is test data: never train on it (see the contamination rule).
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
dest=$1
version=${BFCL_EVAL_VERSION:-2026.3.23}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "downloading bfcl-eval==$version ..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "bfcl-eval==$version" -d "$tmp/dl"
wheel=$(find "$tmp/dl" -name 'bfcl_eval-*.whl' | head -n 1)
if [ -z "$wheel" ]; then
    echo "error: pip did not download a bfcl_eval wheel" >&2
    exit 1
fi

python3 - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("bfcl_eval/data/")]
    if not names:
        sys.exit("error: the wheel has no bfcl_eval/data folder")
    z.extractall(out, names)
PY

if [ ! -f "$tmp/x/bfcl_eval/data/BFCL_v4_simple_python.json" ]; then
    echo "error: BFCL_v4_simple_python.json missing from the wheel's data" >&2
    exit 1
fi

mkdir -p "$dest"
cp -R "$tmp/x/bfcl_eval/data/." "$dest/"
count=$(find "$dest" -maxdepth 1 -name 'BFCL_v4_*.json' | wc -l)
echo "BFCL v4 ($version): $count category files in $dest" >&2
