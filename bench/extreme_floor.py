"""Packing 4096x4096 codes against a copy of the same size (16 MiB, in cache):
the stricter yardstick of bench/README.md. Best of 40 timings each.

    python bench/extreme_floor.py [--threads N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lowbit
from lowbit import _C

N = 4096


def best(fn, repeat: int = 40) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=lowbit.get_num_threads())
    lowbit.set_num_threads(ap.parse_args().threads)
    q = np.random.default_rng(0).integers(-1, 2, (N, N)).astype(np.int8)
    b = np.where(q >= 0, 1, -1).astype(np.int8)
    src, dst = np.ones(N * N, np.uint8), np.empty(N * N, np.uint8)
    t_copy = best(lambda: _C.parallel_copy(dst, src))
    bw = 2 * N * N / t_copy
    print(f"{lowbit.get_num_threads()} thread(s); 16 MiB copy {t_copy * 1e3:.3f} ms = {bw / 1e9:.1f} GB/s")
    cases = [
        ("1bit", b, lambda c, o: lowbit.pack(c, 1, out=o), lambda p, o: lowbit.unpack(p, 1, N, signed=True, out=o)),
        ("2bit", q, lambda c, o: lowbit.pack_ternary(c, "2bit", out=o),
         lambda p, o: lowbit.unpack_ternary(p, N, "2bit", out=o)),
        ("base3", q, lambda c, o: lowbit.pack_ternary(c, "base3", out=o),
         lambda p, o: lowbit.unpack_ternary(p, N, "base3", out=o)),
        ("4bit", q, lambda c, o: lowbit.pack(c, 4, out=o), lambda p, o: lowbit.unpack(p, 4, N, signed=True, out=o)),
        ("3bit", q, lambda c, o: lowbit.pack(c, 3, out=o), lambda p, o: lowbit.unpack(p, 3, N, signed=True, out=o)),
    ]
    for name, codes, pack, unpack in cases:
        packed = pack(codes, None)
        p_out, c_out = np.empty_like(packed), np.empty_like(codes)
        floor = (codes.nbytes + packed.nbytes) / bw
        tp = best(lambda: pack(codes, p_out))
        tu = best(lambda: unpack(packed, c_out))
        print(f"{name:6s} pack {tp * 1e3:.3f} ms ({tp / floor:.2f}x)  unpack {tu * 1e3:.3f} ms "
              f"({tu / floor:.2f}x)  floor {floor * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
