"""A/B of the ternary / binary matmul between two builds of lowbit's extension, in one process.

    cp build/_C*.so /tmp/old/            # before the change (any directory)
    ...rebuild...
    python bench/ternary_ab.py /tmp/old/_C.cpython-311-x86_64-linux-gnu.so [--threads 2,1] [--ms 1,2,...]
    LOWBIT_FORCE_ISA=scalar python bench/ternary_ab.py ...     # another path in both builds
    python bench/ternary_ab.py OLD.so --threads 1 --cpu-time ... # CPU time of the calling thread

Both builds are loaded side by side (the old one under another package name) and run
the same calls on the same packed weights, interleaved round by round (the order
alternating), so both see the same neighbours on a shared host. Each figure is the
fastest call of all rounds; the ratio is new / old time (below 1: the new build is faster).
With --cpu-time (one thread only) calls are timed by the CPU time of the calling thread
(time.thread_time), which other tenants of a shared machine barely move: large-M wall
times moved by up to 2x between runs on a loaded 2-vCPU host, thread CPU time by < 1 %.
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lowbit import _C as new  # noqa: E402
from _util import min_time  # noqa: E402


def load_so(path: str, package: str):
    loader = importlib.machinery.ExtensionFileLoader(f"{package}._C", path)
    spec = importlib.util.spec_from_file_location(f"{package}._C", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old_so")
    ap.add_argument("--new-so", default=None, help="another build as 'new' (default: the installed lowbit)")
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--ms", default="1,2,4,8,13,14,32,128")
    ap.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008")
    ap.add_argument("--bits", default="2")
    ap.add_argument("--kind", choices=["f32", "s32"], default="f32")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.15, help="per build per round")
    ap.add_argument("--cpu-time", action="store_true", help="time by thread CPU time (needs --threads 1)")
    args = ap.parse_args()
    if args.cpu_time and args.threads != "1":
        ap.error("--cpu-time measures the calling thread only: use it with --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    old = load_so(args.old_so, "lowbit_ab_old")
    mods = {"old": old, "new": load_so(args.new_so, "lowbit_ab_new") if args.new_so else new}
    def isa(m):
        return m.active_isa() if hasattr(m, "active_isa") else m.isa_cap()

    print(f"isa {isa(mods['new'])} / {isa(old)}; fastest call of {args.rounds} interleaved rounds "
          f"of >= {args.seconds} s each; {args.kind}; {'thread CPU time' if args.cpu_time else 'wall clock'}")
    print("| threads | bits | N x K | M | old ms | new ms | new/old |")
    print("|---|---|---|---|---|---|---|")
    for threads in [int(t) for t in args.threads.split(",")]:
        for m in mods.values():
            m.set_num_threads(threads)
        for bits in [int(b) for b in args.bits.split(",")]:
            for shape in args.shapes.split(","):
                N, K = (int(v) for v in shape.split("x"))
                rng = np.random.default_rng(0)
                lo = -1 if bits == 2 else 0
                codes = rng.integers(lo, 2, (N, K)).astype(np.int8)
                if bits == 1:
                    codes = np.where(codes > 0, 1, -1).astype(np.int8)
                packed = mods["new"].tl_pack(codes, bits)
                scale = np.array([0.01], np.float32)
                for M in [int(v) for v in args.ms.split(",")]:
                    x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
                    qx = np.random.default_rng(1).integers(-128, 128, (M, K)).astype(np.int8)
                    calls = {}
                    for name, mod in mods.items():
                        if args.kind == "f32":
                            calls[name] = (mod.tl_matmul_f32, x, packed, N, K, bits, scale)
                        else:
                            calls[name] = (mod.tl_matmul_s32, qx, packed, N, K, bits)
                    a = calls["old"][0](*calls["old"][1:])
                    b = calls["new"][0](*calls["new"][1:])
                    assert np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b).view(np.uint32)), "results differ"
                    best = {"old": float("inf"), "new": float("inf")}
                    for r in range(args.rounds):
                        order = ("old", "new") if r % 2 == 0 else ("new", "old")
                        for name in order:
                            time.sleep(0.002)  # the other build's workers stop spinning
                            fn, *fa = calls[name]
                            best[name] = min(best[name], min_time(fn, *fa, repeat=3, warmup=1, clock=clock,
                                                                  min_seconds=args.seconds))
                    print(f"| {threads} | {bits} | {N}x{K} | {M} | {best['old'] * 1e3:.3f} | {best['new'] * 1e3:.3f} | "
                          f"{best['new'] / best['old']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
