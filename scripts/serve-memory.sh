#!/usr/bin/env bash
# Peak resident memory of a lone `retort serve` (the embedded model, or
# MODEL_DIR) while 64 concurrent curl clients send BFCL simple_python
# requests to /tool-call for 30 seconds. The clients run in their own
# processes, so the figure is the server's alone (VmHWM).
#
#   scripts/serve-memory.sh BFCL_DIR [MODEL_DIR]
#
# Needs a release build (cargo build --release), python3 and curl.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 BFCL_DIR [MODEL_DIR]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
bfcl=$1
model_args=()
if [ $# -ge 2 ]; then model_args=(--model "$2"); fi
port=${PORT:-8019}
work=$(mktemp -d)
./target/release/retort serve "${model_args[@]}" --addr "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
# BFCL's schema dialect to JSON Schema: "dict" -> "object", "float" ->
# "number", "tuple" -> "array", "any" -> no type; its "optional" flags go.
python3 - "$bfcl/BFCL_v4_simple_python.json" > "$work/bodies.txt" <<'PY'
import json, sys
TYPES = {"dict": "object", "float": "number", "tuple": "array"}
def fix(x):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "optional":
                continue
            if k == "type" and isinstance(v, str):
                if v == "any":
                    continue
                v = TYPES.get(v, v)
            out[k] = fix(v)
        return out
    if isinstance(x, list):
        return [fix(v) for v in x]
    return x
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    turn = d["question"][0]
    msg = turn[0] if isinstance(turn, list) else turn
    print(json.dumps({"prompt": msg["content"], "available_functions": fix(d["function"])}))
PY
n=$(wc -l < "$work/bodies.txt")
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.2
done
end=$((SECONDS + 30))
for c in $(seq 64); do
    (
        i=$c
        while [ $SECONDS -lt $end ]; do
            sed -n "$(( i % n + 1 ))p" "$work/bodies.txt" |
                curl -s -o /dev/null -w "%{http_code}\n" -H 'content-type: application/json' \
                    --data-binary @- "http://127.0.0.1:$port/tool-call" >> "$work/codes.$c"
            i=$((i + 64))
        done
    ) &
done
wait $(jobs -p | grep -v "^$pid$")
echo "responses by status:"
cat "$work"/codes.* | sort | uniq -c
grep -E "VmHWM|VmRSS" "/proc/$pid/status"
