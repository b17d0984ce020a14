#!/usr/bin/env python3
"""Measure each decoding setting of a model on validation, one at a time.

For a model directory whose config.json has a `decode` object, this scores
validation with every setting off ("none"), then with each setting alone at
its configured value, and with all of them ("all"). Each row gives the
exact-call count and a paired comparison with "none": the examples only the
setting gets right (gain), those only "none" gets right (loss), and
McNemar's chi-square with continuity correction (> 3.84: p < 0.05).

    python3 scripts/ablate-decode.py --model DIR --val VAL.jsonl --out OUTDIR \
        [--retort target/release/retort] [--keys a,b] [--extra KEY=VALUE ...]

Writes OUTDIR/ablation.md and OUTDIR/ablation.json (and one failures file
per row). Uses `retort eval val`.
"""

import argparse
import json
import math
import os
import subprocess
import sys


def off_value(v):
    if isinstance(v, bool):
        return "false"
    return "0"


def literal(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def run(args, name, settings, out):
    fails = os.path.join(out, f"failures-{name}.jsonl")
    js = os.path.join(out, f"eval-{name}.json")
    cmd = [args.retort, "eval", "val", "--data", args.val, "--model", args.model,
           "--json", js, "--failures", fails]
    for k, v in settings.items():
        cmd += ["--decode", f"{k}={v}"]
    for e in args.extra:
        cmd += ["--decode", e]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name}: retort failed ({r.returncode}): {r.stderr.strip()}")
    with open(js) as f:
        report = json.load(f)
    failed = set()
    with open(fails) as f:
        for line in f:
            line = line.strip()
            if line:
                failed.add(json.loads(line)["id"])
    return report, failed


def mcnemar(gain, loss):
    if gain + loss == 0:
        return 0.0
    return (abs(gain - loss) - 1) ** 2 / (gain + loss)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--retort", default="target/release/retort")
    p.add_argument("--keys", default="", help="only these settings (comma-separated)")
    p.add_argument("--extra", action="append", default=[], help="KEY=VALUE applied to every row")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.model, "config.json")) as f:
        decode = json.load(f).get("decode", {})
    keys = [k for k in decode if not args.keys or k in args.keys.split(",")]
    none = {k: off_value(v) for k, v in decode.items()}
    rows = []
    base, base_failed = run(args, "none", none, args.out)
    n = base["n"]
    rows.append(("none", base["exact"], 0, 0, 0.0))
    for k in keys:
        if off_value(decode[k]) == literal(decode[k]).lower() or decode[k] in (0, 0.0, False):
            continue
        s = dict(none)
        s[k] = literal(decode[k]).lower()
        rep, failed = run(args, k, s, args.out)
        gain = len(failed_set_diff(base_failed, failed))
        loss = len(failed_set_diff(failed, base_failed))
        rows.append((f"{k}={literal(decode[k]).lower()}", rep["exact"], gain, loss, mcnemar(gain, loss)))
        print(rows[-1], flush=True)
    rep, failed = run(args, "all", {}, args.out)
    gain = len(failed_set_diff(base_failed, failed))
    loss = len(failed_set_diff(failed, base_failed))
    rows.append(("all (config)", rep["exact"], gain, loss, mcnemar(gain, loss)))
    se = 100 * math.sqrt(max(base["exact"], 1) / n * (1 - base["exact"] / n) / n)
    lines = [f"Validation: {args.val}, {n} examples; model {args.model}.",
             f"Standard error of one accuracy near {100 * base['exact'] / n:.1f}%: {se:.2f} points.", "",
             "| setting | exact | % | gain vs none | loss vs none | McNemar chi2 |", "|---|---|---|---|---|---|"]
    for name, ex, g, l, chi in rows:
        lines.append(f"| {name} | {ex} | {100 * ex / n:.2f} | {g} | {l} | {chi:.2f} |")
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump([dict(setting=r[0], exact=r[1], gain=r[2], loss=r[3], chi2=r[4]) for r in rows], f, indent=1)
    print("\n".join(lines))


def failed_set_diff(a, b):
    """Ids failed in `a` but not in `b` (b gets them right)."""
    return a - b


if __name__ == "__main__":
    main()
