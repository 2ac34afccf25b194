"""A/B of two lowbit builds on the int8 linear layer, 1 thread, thread CPU time.

Build the old version's package aside (a copy of python/lowbit with that build's
_C*.so inside it), then:

    python bench/int8_ab.py --old /tmp/old [--rounds 4] [--shapes 608x384x1536,1x4096x4096]

Each round runs the old and then the new build in fresh processes (interleaved, so load
drifts hit both); per shape (M x K x N) a process times `lowbit.Linear(w, bias)(x)` in
thread CPU time, fastest of 3 batches; the table is the fastest over the rounds (us per
call). The new build is whatever `import lowbit` gives in this environment.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SHAPES = "608x384x384,608x384x1536,608x1536x384,1x384x384,1x384x1536,1x1536x384,1x4096x4096,128x4096x4096"


def worker(which: str, shapes: str) -> None:
    if which != "new":  # import the package under `which`, not the editable install
        sys.meta_path[:] = [f for f in sys.meta_path if "ScikitBuild" not in type(f).__name__]
        sys.path.insert(0, which)
    import numpy as np
    import lowbit
    lowbit.set_num_threads(1)
    rng = np.random.default_rng(0)
    res = {}
    for shape in shapes.split(","):
        M, K, N = (int(v) for v in shape.split("x"))
        w = rng.standard_normal((N, K)).astype(np.float32)
        x = rng.standard_normal((M, K)).astype(np.float32)
        layer = lowbit.Linear(w, rng.standard_normal(N).astype(np.float32))
        n = min(2000, max(3, int(0.15e6 / (M * K * N / 2.5e6 + 3))))
        layer(x)
        best = float("inf")
        for _ in range(3):
            t = time.thread_time_ns()
            for _ in range(n):
                layer(x)
            best = min(best, (time.thread_time_ns() - t) / n)
        res[shape] = best / 1e3
    print(json.dumps({"file": lowbit._C.__file__, "us": res}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="folder holding the old build's lowbit package")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.shapes)
    best: dict = {"old": {}, "new": {}}
    files = {}
    for _ in range(args.rounds):
        for which, arg in (("old", args.old), ("new", "new")):
            out = subprocess.run([sys.executable, __file__, "--old", args.old, "--shapes", args.shapes, "--worker", arg],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            files[which] = r["file"]
            for k, v in r["us"].items():
                best[which][k] = min(best[which].get(k, float("inf")), v)
    if files["old"] == files["new"]:
        sys.exit(f"both runs imported {files['new']}: --old must hold another build")
    print(f"old: {files['old']}\nnew: {files['new']}\n")
    print("| M x K x N | old us | new us | new/old |\n|---|---:|---:|---:|")
    for k in best["old"]:
        o, n = best["old"][k], best["new"][k]
        print(f"| {k} | {o:.1f} | {n:.1f} | {n / o:.3f} |")


if __name__ == "__main__":
    main()
