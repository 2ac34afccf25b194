"""One-run table for affine quantize/dequantize: times, ratios to the reference and
torch, and to the memory floor (bytes read + written over the copy bandwidth).

    python bench/affine_report.py [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import lowbit  # noqa: E402
from lowbit import reference as ref  # noqa: E402
from _util import copy_bandwidth, machine, median_time  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=lowbit.get_num_threads())
    args = ap.parse_args()
    lowbit.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    warnings.filterwarnings("ignore", message=".*deprecated", category=UserWarning)  # torch qint8
    bw = copy_bandwidth()
    print(f"machine: {machine()}; copy bandwidth {bw / 1e9:.1f} GB/s (read+write)\n")
    print("| op | shape | lowbit ms | floor ms | x floor | reference ms | x faster | torch ms | x faster |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in [(4096, 4096), (11008, 4096)]:
        w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        floor = (w.nbytes + w.size) / bw * 1e3
        for gran, kw in [("per-channel", dict(axis=0)), ("per-group(128)", dict(group_size=128))]:
            for bits in [8, 4]:
                t = median_time(lambda: lowbit.quantize(w, bits=bits, **kw)) * 1e3
                tr = median_time(lambda: ref.quantize(w, bits=bits, **kw), repeat=2, warmup=0) * 1e3
                tt = ""
                if torch is not None and gran == "per-channel" and bits == 8:
                    tw = torch.from_numpy(w)

                    def run():
                        s = (tw.abs().amax(dim=1) / 127).clamp_min(2.0 ** -126)
                        return torch.quantize_per_channel(tw, s, torch.zeros_like(s, dtype=torch.int64), 0,
                                                          torch.qint8)
                    tt = median_time(run, repeat=7) * 1e3
                row = (f"| quantize {gran} int{bits} | {shape[0]}x{shape[1]} | {t:.2f} | {floor:.2f} | "
                       f"{t / floor:.2f} | {tr:.0f} | {tr / t:.0f} | ")
                row += f"{tt:.1f} | {tt / t:.1f} |" if tt else "- | - |"
                print(row, flush=True)
            qt = lowbit.quantize(w, **kw)
            t = median_time(qt.dequantize) * 1e3
            tr = median_time(lambda: ref.dequantize(qt), repeat=2, warmup=0) * 1e3
            print(f"| dequantize {gran} int8 | {shape[0]}x{shape[1]} | {t:.2f} | {floor:.2f} | {t / floor:.2f} | "
                  f"{tr:.0f} | {tr / t:.0f} | - | - |", flush=True)


if __name__ == "__main__":
    main()
