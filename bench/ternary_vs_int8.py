"""Ternary vs int8 linear layer at the same shapes, kernels called directly, one process.

    python bench/ternary_vs_int8.py [--old /tmp/old/_C....so] [--threads 1,2] [--shapes 608x384x384,...]

Per shape (M x K x N): lowbit's dynamic int8 layer (`_C.int8_linear`, float in, float
out, bias) and the ternary layer (`_C.tl_matmul_f32`, per-tensor scale, bias) of this
build, and of an older build's extension if --old is given (loaded beside it under
another package name). Calls are interleaved round by round; each figure is the fastest
call (us) of all rounds, timed by the calling thread's CPU time on 1 thread
(time.thread_time: barely moved by other tenants of a shared host) and by wall clock on
more threads.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lowbit import _C as new  # noqa: E402
from _util import min_time  # noqa: E402
from ternary_ab import load_so  # noqa: E402

SHAPES = "608x384x384,608x384x1536,608x1536x384,32x384x384,1x384x384"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", default=None, help="an older build's _C*.so (ternary only)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.1, help="per call kind per round")
    args = ap.parse_args()
    mods = {"new": new}
    if args.old:
        mods["old"] = load_so(args.old, "lowbit_vs_old")
    isa = new.active_isa() if hasattr(new, "active_isa") else new.isa_cap()
    cols = ["int8"] + (["ternary old"] if args.old else []) + ["ternary"]
    print(f"isa {isa}; fastest call of {args.rounds} interleaved rounds (us); 1 thread: thread CPU time, "
          "more: wall clock")
    print("| threads | M x K x N | " + " | ".join(cols) + " | ternary / int8 |")
    print("|---|---|" + "---:|" * (len(cols) + 1))
    for threads in [int(t) for t in args.threads.split(",")]:
        for m in mods.values():
            m.set_num_threads(threads)
        clock = time.thread_time if threads == 1 else time.perf_counter
        for shape in args.shapes.split(","):
            M, K, N = (int(v) for v in shape.split("x"))
            rng = np.random.default_rng(0)
            x = rng.standard_normal((M, K)).astype(np.float32)
            bias = rng.standard_normal(N).astype(np.float32)
            w8 = rng.integers(-127, 128, (N, K)).astype(np.int8)
            layout = new.int8_pick_layout(-127, 127)
            p8 = new.int8_pack_weights(w8.reshape(-1), N, K, layout)
            sb = np.full(N, 0.01, np.float32)
            t = rng.integers(-1, 2, (N, K)).astype(np.int8)
            pt = new.tl_pack(t, 2)
            gw = np.array([0.01], np.float32)
            out = {name: np.empty((M, N), np.float32) for name in mods}
            calls = {"int8": lambda: new.int8_linear(x.reshape(-1), M, K, p8, layout, N, sb, True, bias, True, False)}
            for name, mod in mods.items():
                calls["ternary" if name == "new" else "ternary old"] = (
                    lambda mod=mod, o=out[name]: mod.tl_matmul_f32(x, pt, N, K, 2, gw, bias, o))
            for c in calls.values():
                c()
            if args.old:
                assert np.array_equal(out["old"].view(np.uint32), out["new"].view(np.uint32)), "builds differ"
            best = {c: float("inf") for c in cols}
            for r in range(args.rounds):
                order = cols if r % 2 == 0 else cols[::-1]
                for c in order:
                    best[c] = min(best[c], min_time(calls[c], repeat=3, warmup=1, clock=clock,
                                                    min_seconds=args.seconds))
            print(f"| {threads} | {shape} | " + " | ".join(f"{best[c] * 1e6:.1f}" for c in cols)
                  + f" | {best['ternary'] / best['int8']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
