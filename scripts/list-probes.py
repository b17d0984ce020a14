#!/usr/bin/env python3
"""Build the two list probes that chose next_item_bias and
next_call_item_bias (models/CARD.md, v0.3.7) from a data build's training
split: requests whose answer holds an array of two or more plain values
(arrays.jsonl), and requests that call one function two or more times
(repeats.jsonl). Composed examples are skipped; at most 3 variants of one
source example are kept, then the first 400 of a seeded shuffle.

  scripts/list-probes.py out/data2/train.jsonl OUT_DIR
  retort train --val OUT_DIR/arrays.jsonl --init models --eval-only --limit-train 939

These are examples the model was trained on: the probes measure what a
decoding rule changes on lists, not held-out accuracy (validation and
BFCL do that).
"""
import collections
import json
import os
import random
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, out = sys.argv[1], sys.argv[2]
    random.seed(7)
    arrays, repeats = [], []
    with open(src, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["id"].startswith("compose"):
                continue
            calls = d.get("calls") or []
            names = [c["name"] for c in calls]
            base = d["id"].split("~")[0]
            if any(
                isinstance(v, list)
                and len(v) >= 2
                and all(isinstance(x, (str, int, float)) for x in v)
                for c in calls
                for v in c.get("arguments", {}).values()
            ):
                arrays.append((base, line))
            if len(names) >= 2 and len(set(names)) < len(names):
                repeats.append((base, line))

    def pick(xs):
        random.shuffle(xs)
        seen = collections.Counter()
        kept = []
        for base, line in xs:
            if seen[base] < 3:
                seen[base] += 1
                kept.append(line)
        return kept[:400]

    os.makedirs(out, exist_ok=True)
    for name, xs in (("arrays", arrays), ("repeats", repeats)):
        kept = pick(xs)
        tmp = os.path.join(out, name + ".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, os.path.join(out, name + ".jsonl"))
        print(f"{name}: {len(kept)} of {len(xs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
