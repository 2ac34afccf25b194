"""One-run table for bit packing and binary/ternary quantization: times, the
memory floor (bytes read + written over the copy bandwidth measured in the same
run), and ratios to the NumPy reference and plain NumPy.

    python bench/extreme_report.py [--threads N] [--repeat R] [--runs K]

Each figure is the best of K medians of R timings (the machine is shared: the
best median is the least disturbed one); the bandwidths are the best of K too.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import lowbit  # noqa: E402
from lowbit import reference as ref  # noqa: E402
from _util import copy_bandwidth, machine  # noqa: E402
from _util import median_time as _median_time  # noqa: E402
from test_bench_extreme import N, OPS, QUANT, _ops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=lowbit.get_num_threads())
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    lowbit.set_num_threads(args.threads)

    def median_time(fn, *a, repeat=args.repeat, warmup=2):  # best of --runs medians
        return min(_median_time(fn, *a, repeat=repeat, warmup=warmup) for _ in range(args.runs))

    bw = max(copy_bandwidth() for _ in range(args.runs))
    # the same size as the codes: an in-cache yardstick
    bw16 = max(copy_bandwidth(16 << 20, repeat=args.repeat) for _ in range(args.runs))
    print(f"machine: {machine()}; copy bandwidth {bw / 1e9:.1f} GB/s (read+write, 256 MiB), "
          f"{bw16 / 1e9:.1f} GB/s (16 MiB)\n")
    print("| op | lowbit ms | floor ms | x floor | x 16 MiB floor | lowbit out= ms | x floor | numpy ms | reference ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    q = np.random.default_rng(0).integers(-1, 2, (N, N)).astype(np.int8)
    for op in OPS:
        codes, pk, upk, rpk, rupk, npk, nupk = _ops(q)[op]
        packed = pk(codes)
        floor = (codes.nbytes + packed.nbytes) / bw * 1e3
        for name, f, fo, arg, out, fr, fn in [("pack", pk, pk, codes, np.empty_like(packed), rpk, npk),
                                              ("unpack", upk, upk, packed, np.empty_like(codes), rupk, nupk)]:
            t = median_time(f, arg, repeat=args.repeat) * 1e3
            to = median_time(lambda: fo(arg, out=out), repeat=args.repeat) * 1e3
            tn = f"{_median_time(fn, arg, repeat=5) * 1e3:.1f}" if fn else "-"
            tr = _median_time(fr, arg, repeat=1, warmup=0) * 1e3
            floor16 = (codes.nbytes + packed.nbytes) / bw16 * 1e3
            print(f"| {name} {op} {N}x{N} | {t:.2f} | {floor:.2f} | {t / floor:.2f} | {t / floor16:.2f} | {to:.2f} | "
                  f"{to / floor:.2f} | {tn} | {tr:.0f} |", flush=True)
    print()
    print("| op | lowbit ms | floor ms | x floor | reference ms | x faster |")
    print("|---|---|---|---|---|---|")
    w = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    floor = (w.nbytes + w.size) / bw * 1e3
    for fn, method, kw in QUANT:
        t = median_time(lambda: getattr(lowbit, fn)(w, method, **kw), repeat=max(5, args.repeat // 3)) * 1e3
        tr = _median_time(lambda: getattr(ref, fn)(w, method, **kw), repeat=1, warmup=0) * 1e3
        print(f"| {fn} {method} {kw or 'per-tensor'} | {t:.2f} | {floor:.2f} | {t / floor:.2f} | {tr:.0f} | "
              f"{tr / t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
