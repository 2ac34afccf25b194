"""One table: llama.cpp's K-quant/IQ4 encoders and decoders vs lowbit's, per thread, one run.

    python bench/gguf_kquant_report.py [--values 65536] [--rounds 7]

llama.cpp: ggml_quantize_chunk / the type's to_float from libggml-base.so through
ctypes (tests/ggml_oracle.py finds it: the llama_cpp package, LOWBIT_GGML_LIB, or
/tmp/peers/llama-build/bin), single-threaded C. lowbit: the bare kernel on the
calling thread (_C.gguf_time_kernel, active ISA), no thread pool. Both on the
same random N(0,1) float32 data; best of --rounds (noisy shared machine); the encoders
in calls of about 1 ms or less (llama.cpp's on a few rows, lowbit's on all the values),
each the best of 10 x --rounds calls.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

import lowbit
from lowbit import _C

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import ggml_oracle  # noqa: E402

FORMATS = ["Q4_K", "Q6_K", "IQ4_XS", "Q5_K", "Q3_K", "Q2_K", "IQ4_NL", "Q8_K"]


def best(fn, rounds):
    t = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--values", type=int, default=262144)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    o = ggml_oracle.load()
    if o is None:
        sys.exit("llama.cpp's libggml-base.so not found (pip install llama-cpp-python==0.3.36)")
    x = np.random.default_rng(0).standard_normal(a.values).astype(np.float32)
    x2 = x.reshape(-1, 4096)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{when}, load average {load}")
    print(f"{a.values} values, best of {a.rounds} (encoders: of {a.rounds * 10} calls), one thread, lowbit kernels "
          f"{lowbit.cpu_info()['kernels']['gguf']}, oracle {o.path}")
    print(f"{'format':7s} {'enc llama.cpp':>14s} {'enc lowbit':>11s} {'ratio':>6s}   "
          f"{'dec llama.cpp':>14s} {'dec lowbit':>11s} {'ratio':>6s}   (M values/s)")
    for fmt in FORMATS:
        # llama.cpp's encoders are slow: a call on all the values takes 10-80 ms, which on a
        # loaded machine is never one uninterrupted time slice, while lowbit's calls are
        # well under one. So llama.cpp is timed like lowbit: calls of about 1 ms (a few rows)
        # and the best of many.
        t1 = best(lambda: o.quantize(x2[:1], fmt), 3)
        rows = int(min(x2.shape[0], max(1, round(1e-3 / t1))))
        te0 = best(lambda: o.quantize(x2[:rows], fmt), a.rounds * 10) * (x2.shape[0] / rows)
        te1 = _C.gguf_time_kernel(x, fmt, True, a.rounds * 10, 1)  # as many calls as llama.cpp's
        blob = lowbit.gguf.quantize(x2, fmt)
        flat = blob.reshape(-1)
        inner = 20
        # to_float through a ready ctypes pointer into a preallocated buffer (a call costs ~1 us)
        fn = (o.lib.dequantize_row_q8_K if fmt == "Q8_K"
              else ggml_oracle._TO_FLOAT(o.traits(fmt).to_float))
        out = np.empty(x.size, np.float32)
        src, dst, n = ctypes.c_void_p(flat.ctypes.data), ctypes.c_void_p(out.ctypes.data), ctypes.c_int64(x.size)

        def ggml_decode():
            for _ in range(inner):
                fn(src, dst, n)
        td0 = best(ggml_decode, a.rounds) / inner
        td1 = _C.gguf_time_kernel(flat, fmt, False, a.rounds * 3, inner)
        m = a.values / 1e6
        print(f"{fmt:7s} {m / te0:14.1f} {m / te1:11.1f} {te0 / te1:6.1f}   {m / td0:14.0f} {m / td1:11.0f} {td0 / td1:6.2f}")


if __name__ == "__main__":
    main()
