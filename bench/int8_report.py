"""One-run table for the int8 linear layer: lowbit (the int8 variant this CPU runs, and any
other variants asked for with --variants, e.g. avx2 for an A/B) vs torch's dynamic int8 Linear
on both quantized engines ("x86" = FBGEMM and "onednn") vs float32 NumPy/OpenBLAS, in the same
run, interleaved round by round; M=1 against the memory floor (int8 weight bytes over the read
bandwidth measured in the same run). Each cell is the best of `--rounds` rounds of the chosen
statistic (the machine is shared).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/int8_report.py [--threads 2] [--rounds 5] \
        [--stat min] [--variants avx2]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import lowbit  # noqa: E402
from lowbit import _C  # noqa: E402
from _util import machine, median_time, min_time, settle  # noqa: E402

TORCH_ENGINES = ("x86", "onednn")  # x86: FBGEMM (with oneDNN for some shapes); onednn: oneDNN (AMX where present)


def cpu_time(fn, *args, repeat: int = 15, warmup: int = 2, threads: int = 2) -> float:
    """Fastest call in process CPU time (all threads) divided by the thread count: what the call
    would take on `threads` undisturbed cores. Threads that spin while waiting count as busy."""
    return min_time(fn, *args, repeat=repeat, warmup=warmup, clock=time.process_time) / threads


def read_bandwidth(nbytes: int = 256 << 20) -> float:
    """Bytes read per second: a threaded min/max pass over nbytes of float32 (> LLC)."""
    x = np.ones(nbytes // 4, np.float32)
    t = median_time(_C.affine_range, x, "groups", 1, x.size, x.size, repeat=9)
    return nbytes / t


def torch_dynamic_linear(torch, w: np.ndarray, engine: str):
    """torch's dynamic int8 nn.Linear for weight w, quantized (prepacked) under `engine`; the
    returned callable runs it under that engine."""
    N, K = w.shape
    torch.backends.quantized.engine = engine
    lin = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)

    def run(x):
        torch.backends.quantized.engine = engine
        with torch.no_grad():
            return q(x)
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ms", type=str, default="1,8,128,512")
    ap.add_argument("--shapes", type=str, default="4096x4096,11008x4096")
    ap.add_argument("--variants", type=str, default="",
                    help="other int8 variants to time beside the active one (comma-separated, e.g. avx2)")
    ap.add_argument("--no-numpy", action="store_true", help="skip float32 NumPy/OpenBLAS")
    ap.add_argument("--min-seconds", type=float, default=0.0, help="with --stat min: time each cell at least this long")
    ap.add_argument("--stat", choices=["median", "min", "cpu"], default="median",
                    help="per round: median of the calls (default), the fastest call, or the fastest call in "
                         "process CPU time / threads (robust to a loaded machine; spinning threads count)")
    args = ap.parse_args()
    lowbit.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
        engines = [e for e in TORCH_ENGINES if e in torch.backends.quantized.supported_engines]
    except ImportError:
        torch, engines = None, []
    active = lowbit.get_kernel("int8")
    variants = [active] + [v for v in args.variants.split(",") if v and v != active]
    ms = [int(m) for m in args.ms.split(",")]
    bw = max(read_bandwidth() for _ in range(args.rounds))
    print(f"machine: {machine()}; int8 kernels: {', '.join(variants)} (active: {active}, layouts "
          f"{_C.int8_layouts()['wide']['name']}); torch {torch.__version__ if torch else 'absent'} engines "
          f"{', '.join(engines) or '-'}; read bandwidth {bw / 1e9:.1f} GB/s; best of {args.rounds} interleaved "
          f"rounds of the {args.stat} call\n")
    head = ["weight", "M"]
    for v in variants:
        head += [f"lowbit {v} w8 ms", f"{v} w7 ms"]
    head += [f"torch {e} ms" for e in engines] + (["numpy f32 ms"] if not args.no_numpy else [])
    head += ["w8 x best torch", "w8 GOP/s", "w8 x floor", "floor ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    timer = {"median": median_time,
             "min": lambda *a, **k: min_time(*a, min_seconds=args.min_seconds, **k),
             "cpu": lambda *a, **k: cpu_time(*a, threads=args.threads, **k)}[args.stat]
    shapes = [tuple(int(v) for v in sh.split("x")) for sh in args.shapes.split(",")]
    for N, K in shapes:
        w = np.random.default_rng(0).standard_normal((N, K)).astype(np.float32) * 0.02
        layer = lowbit.Linear(w)            # 8-bit weights
        layer7 = lowbit.Linear(w, bits=7)   # 7-bit weights (the u7 kernel on AVX2)
        wt = np.ascontiguousarray(w.T)
        tq = {e: torch_dynamic_linear(torch, w, e) for e in engines}
        for M in ms:
            x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
            tx = torch.from_numpy(x) if torch is not None else None
            rep = max(3, min(25, 400 // M))
            times: dict = {}

            def add(key, fn, *a):
                settle()  # no library's idle threads spin into the next one's time
                times.setdefault(key, []).append(timer(fn, *a, repeat=rep))

            for _ in range(args.rounds):
                for v in variants:
                    ctx = lowbit.use_kernel("int8", v) if v != active else contextlib.nullcontext()
                    with ctx:
                        layer(x), layer7(x)  # repack outside the timing if the variant changed
                        add((v, 8), layer, x)
                        add((v, 7), layer7, x)
                for e in engines:
                    add(e, tq[e], tx)
                if not args.no_numpy:
                    add("numpy", np.matmul, x, wt)
            best = {k: min(v) for k, v in times.items()}
            a8 = best[(active, 8)]
            bt = min((best[e] for e in engines), default=float("nan"))
            floor = N * K / bw
            row = [f"{N}x{K}", str(M)]
            for v in variants:
                row += [f"{best[(v, 8)] * 1e3:.3f}", f"{best[(v, 7)] * 1e3:.3f}"]
            row += [f"{best[e] * 1e3:.3f}" for e in engines] + ([f"{best['numpy'] * 1e3:.2f}"] if not args.no_numpy else [])
            row += [f"{bt / a8:.2f}", f"{2 * M * N * K / a8 / 1e9:.0f}",
                    f"{a8 / floor:.2f}" if M == 1 else "-", f"{floor * 1e3:.3f}" if M == 1 else "-"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
