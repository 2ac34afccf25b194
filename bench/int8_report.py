"""One-run table for the int8 linear layer: lowbit vs torch dynamic int8 (FBGEMM) vs float32
NumPy/OpenBLAS, GOP/s and ratios, and M=1 against the memory floor (int8 weight bytes over
the read bandwidth measured in the same run). Best of `--rounds` medians (the machine is shared).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/int8_report.py [--threads 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import lowbit  # noqa: E402
from lowbit import _C  # noqa: E402
from _util import machine, median_time, min_time, settle  # noqa: E402


def cpu_time(fn, *args, repeat: int = 15, warmup: int = 2, threads: int = 2) -> float:
    """Fastest call in process CPU time (all threads) divided by the thread count: what the call
    would take on `threads` undisturbed cores. Threads that spin while waiting count as busy."""
    return min_time(fn, *args, repeat=repeat, warmup=warmup, clock=time.process_time) / threads


def read_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes read per second: a threaded AVX2 min/max pass over nbytes of float32 (> LLC)."""
    x = np.ones(nbytes // 4, np.float32)
    t = median_time(_C.affine_range, x, "groups", 1, x.size, x.size, repeat=9)
    return nbytes / t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ms", type=str, default="1,8,128,512")
    ap.add_argument("--shapes", type=str, default="4096x4096,11008x4096")
    ap.add_argument("--stat", choices=["median", "min", "cpu"], default="median",
                    help="per round: median of the calls (default), the fastest call, or the fastest call in "
                         "process CPU time / threads (robust to a loaded machine; spinning threads count)")
    args = ap.parse_args()
    lowbit.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    ms = [int(m) for m in args.ms.split(",")]
    bw = max(read_bandwidth() for _ in range(args.rounds))
    print(f"machine: {machine()}; read bandwidth {bw / 1e9:.1f} GB/s; best of {args.rounds} rounds of the {args.stat} call\n")
    print("| weight | M | lowbit 7-bit w ms | GOP/s | x torch | x numpy | x floor | lowbit 8-bit w ms | x torch "
          "| torch int8 ms | numpy f32 ms | floor ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    timer = {"median": median_time, "min": min_time,
             "cpu": lambda *a, **k: cpu_time(*a, threads=args.threads, **k)}[args.stat]
    shapes = [tuple(int(v) for v in sh.split("x")) for sh in args.shapes.split(",")]
    for N, K in shapes:
        w = np.random.default_rng(0).standard_normal((N, K)).astype(np.float32) * 0.02
        layer = lowbit.Linear(w)            # 8-bit weights: the int16 kernel
        layer7 = lowbit.Linear(w, bits=7)   # 7-bit weights: the u7 (vpmaddubsw) kernel
        assert layer7.fast and not layer.fast
        wt = np.ascontiguousarray(w.T)
        tq = None
        if torch is not None:
            lin = torch.nn.Linear(K, N, bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                            dtype=torch.qint8)
        for M in ms:
            x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
            rep = max(3, min(25, 400 // M))
            t_lb, t_l7, t_t, t_np = [], [], [], []
            for _ in range(args.rounds):  # settle(): no library's idle threads spin into the next one's time
                settle()
                t_l7.append(timer(layer7, x, repeat=rep))
                settle()
                t_lb.append(timer(layer, x, repeat=rep))
                if tq is not None:
                    tx = torch.from_numpy(x)
                    settle()
                    with torch.no_grad():
                        t_t.append(timer(tq, tx, repeat=rep))
                settle()
                t_np.append(timer(np.matmul, x, wt, repeat=rep))
            a8, a, c = min(t_lb), min(t_l7), min(t_np)
            b = min(t_t) if t_t else float("nan")
            gops = 2 * M * N * K / a / 1e9
            floor = N * K / bw if M == 1 else float("nan")
            xf = f"{a / floor:.2f}" if M == 1 else "-"
            fl = f"{floor * 1e3:.3f}" if M == 1 else "-"
            print(f"| {N}x{K} | {M} | {a * 1e3:.3f} | {gops:.0f} | {b / a:.2f} | {c / a:.2f} | {xf} | "
                  f"{a8 * 1e3:.3f} | {b / a8:.2f} | {b * 1e3:.3f} | {c * 1e3:.2f} | {fl} |", flush=True)

if __name__ == "__main__":
    main()
