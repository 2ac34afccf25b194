"""One-run table for the packed ternary / binary matmul: lowbit ternary and binary vs lowbit's int8
Linear and llama.cpp's TQ2_0 figures, and M=1 with weights larger than the LLC against the memory
floor (packed weight bytes over the read bandwidth measured in the same run). Best of `--rounds`
medians, or of the fastest calls with --stat min (the machine is shared with other jobs).

    python bench/ternary_report.py [--threads 2] [--rounds 3] [--stat min]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import lowbit  # noqa: E402
from lowbit import _C  # noqa: E402
from _util import machine, median_time, min_time  # noqa: E402

# llama.cpp TQ2_0, ggml d99724f, AVX2, 2 threads, 4096x4096, float activations (issue 5).
TQ2_0 = {1: 167e-6, 8: 1.24e-3, 128: 19.95e-3}


def read_bandwidth(nbytes: int = 256 << 20, stat: str = "median") -> float:
    """Bytes read per second: a threaded AVX2 min/max pass over nbytes of float32 (> LLC)."""
    x = np.ones(nbytes // 4, np.float32)
    t = (min_time if stat == "min" else median_time)(_C.affine_range, x, "groups", 1, x.size, x.size, repeat=9)
    return nbytes / t


def best(fn, *args, rounds=3, repeat=15, stat="median"):
    if stat == "min":  # the fastest of >= 0.3 s of calls per round
        return min(min_time(fn, *args, repeat=repeat, min_seconds=0.3) for _ in range(rounds))
    return min(median_time(fn, *args, repeat=repeat) for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ms", type=str, default="1,8,128")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="per round: the median call (default) or the fastest (a loaded, shared machine)")
    args = ap.parse_args()
    lowbit.set_num_threads(args.threads)
    ms = [int(m) for m in args.ms.split(",")]
    print(f"machine: {machine()}; best of {args.rounds} rounds of the {args.stat} call\n")
    print("| weight N x K | M | ternary ms | GOP/s | binary ms | int8 Linear 7-bit w ms | 8-bit w ms | x int8 (faster) "
          "| x TQ2_0 (4096^2 figures) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for N, K in [(4096, 4096), (11008, 4096), (4096, 11008)]:
        w = np.random.default_rng(0).standard_normal((N, K)).astype(np.float32) * 0.02
        tern = lowbit.BitLinear.from_float(w)
        bina = lowbit.BitLinear.from_float(w, binary=True)
        i8 = lowbit.Linear(w)
        i7 = lowbit.Linear(w, bits=7)  # the u7 kernel, lowbit's fastest int8 path
        for M in ms:
            x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
            rep = 15 if M < 128 else 7
            tt = best(tern, x, rounds=args.rounds, repeat=rep, stat=args.stat)
            tb = best(bina, x, rounds=args.rounds, repeat=rep, stat=args.stat)
            t8 = best(i8, x, rounds=args.rounds, repeat=rep, stat=args.stat)
            t7 = best(i7, x, rounds=args.rounds, repeat=rep, stat=args.stat)
            scale = N * K / (4096 * 4096)  # TQ2_0 figures scaled by weight size for the other shapes
            ref = TQ2_0.get(M)
            xtq = f"{ref * scale / tt:.2f}" if ref else "-"
            print(f"| {N}x{K} | {M} | {tt * 1e3:.3f} | {2 * M * N * K / tt / 1e9:.0f} | {tb * 1e3:.3f} | "
                  f"{t7 * 1e3:.3f} | {t8 * 1e3:.3f} | {min(t7, t8) / tt:.2f} | {xtq} |")
    N = K = 16384
    codes = np.random.default_rng(2).integers(-1, 2, (N, K)).astype(np.int8)
    x = np.random.default_rng(1).standard_normal((1, K)).astype(np.float32)
    print("\n| 16384x16384, M=1 | ms | weight MB | floor ms | x floor |")
    print("|---|---|---|---|---|")
    for kind in ("ternary", "binary"):
        if kind == "ternary":
            w = lowbit.TernaryWeight.from_codes(codes, 0.01)
            f = lowbit.ternary_matmul
        else:
            w = lowbit.BinaryWeight.from_codes(np.where(codes >= 0, 1, -1).astype(np.int8), 0.01)
            f = lowbit.binary_matmul
        # interleaved, round by round: the floor and the kernel see the same neighbours
        t, bw = float("inf"), 0.0
        for _ in range(args.rounds):
            bw = max(bw, read_bandwidth(stat=args.stat))
            t = min(t, best(f, x, w, rounds=1, repeat=9, stat=args.stat))
        floor = w.packed.nbytes / bw
        print(f"| {kind} | {t * 1e3:.2f} | {w.packed.nbytes / 2**20:.0f} | {floor * 1e3:.2f} "
              f"(read {bw / 1e9:.1f} GB/s) | {t / floor:.2f} |")


if __name__ == "__main__":
    main()
