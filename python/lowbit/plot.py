"""Figures like the article's: a weight histogram with the quantization levels and
the clip range drawn over it, and the quantize-dequantize staircase.

Needs matplotlib (``pip install "lowbit[plot]"``); everything else in lowbit works without it.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Tuple

import numpy as np

from .qtensor import QTensor

__all__ = ["have_matplotlib", "plot_quantization", "plot_checkpoint_tensor", "selected_group"]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'lowbit[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def selected_group(qt: QTensor, ref: np.ndarray) -> Tuple[tuple, str]:
    """The index (a tuple of slices) of the scale group holding max |ref|, and a description.

    Per-tensor: the whole tensor. Per-channel: that channel. Per-group: that block of a row.
    """
    if qt.group_size is None and qt.axis is None:
        return (Ellipsis,), "whole tensor"
    flat = int(np.argmax(np.abs(ref))) if ref.size else 0
    idx = np.unravel_index(flat, qt.shape)
    if qt.group_size is not None:
        g = qt.group_size
        j = idx[-1] // g
        n = qt.scale.shape[-1]
        sl = tuple(int(i) for i in idx[:-1]) + (slice(j * g, (j + 1) * g),)
        row = ", ".join(str(int(i)) for i in idx[:-1])
        return sl, f"group {j + 1} of {n} in row {row} (group of size {g} holding max |w|)"
    a = qt.axis
    c = int(idx[a])
    sl = tuple(slice(None) if k != a else c for k in range(qt.ndim))
    return sl, f"channel {c} of {qt.shape[a]} along axis {a} (the one holding max |w|)"


def _group_levels(qt: QTensor, sl: tuple, w_hat_g: np.ndarray) -> Tuple[np.ndarray, bool]:
    """Every representable value of the selected group (affine: the full grid), and whether it is the full grid."""
    if qt.scheme in ("absmax", "minmax"):
        from . import _args
        g = _args.grid(qt.bits, qt.scheme, qt.signed, qt.narrow)
        if qt.group_size is None and qt.axis is None:
            s = qt.scale.reshape(-1)[0]
            z = 0 if qt.zero_point is None else int(qt.zero_point.reshape(-1)[0])
        else:
            # the parameters of the selected group
            if qt.group_size is not None:
                pidx = sl[:-1] + (sl[-1].start // qt.group_size,)
            else:
                pidx = tuple(0 if k != qt.axis else sl[k] for k in range(qt.ndim))
            s = qt.scale[pidx]
            z = 0 if qt.zero_point is None else int(qt.zero_point[pidx])
        q = np.arange(g.qmin, g.qmax + 1, dtype=np.int64)
        return (np.float32(s) * (q - z).astype(np.float32)).astype(np.float32), True
    if qt.codebook is not None and qt.codebook.ndim == 1 and qt.group_size is None and qt.axis is None:
        return np.sort(qt.scale.reshape(-1)[0] * qt.codebook), True
    return np.unique(w_hat_g), False


def plot_quantization(w: Optional[np.ndarray], qt: QTensor, out, *, title: str = "", force: bool = True,
                      bins: int = 160) -> str:
    """Write a PNG: histogram + levels + clip range (left), staircase w -> w_hat (right).

    ``w`` are the original weights (None when only the quantized tensor is known:
    then the histogram is of the dequantized values and there is no staircase).
    """
    from .io.safetensors import atomic_output
    plt = _pyplot()
    w_hat = qt.dequantize()
    ref = w_hat if w is None else np.asarray(w, np.float32).reshape(qt.shape)
    sl, where = selected_group(qt, ref)
    wg = ref[sl].reshape(-1)
    hg = w_hat[sl].reshape(-1)
    levels, full = _group_levels(qt, sl, hg)
    lo, hi = float(levels.min()), float(levels.max())

    ncols = 1 if w is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols if ncols > 1 else 8.0, 4.4), squeeze=False)
    ax = axes[0, 0]
    span = max(float(wg.max()) - float(wg.min()), hi - lo, 1e-30)
    xmin = min(float(wg.min()), lo) - 0.04 * span
    xmax = max(float(wg.max()), hi) + 0.04 * span
    ax.hist(wg, bins=bins, range=(xmin, xmax), color="#4c78a8", alpha=0.85,
            label="weights" if w is not None else "dequantized values")
    ax.set_yscale("log" if wg.size > 2000 else "linear")
    ax.axvspan(xmin, lo, color="#e45756", alpha=0.12)
    ax.axvspan(hi, xmax, color="#e45756", alpha=0.12)
    ax.axvline(lo, color="#e45756", lw=1.6, ls="--", label=f"clip range [{lo:.3g}, {hi:.3g}]")
    ax.axvline(hi, color="#e45756", lw=1.6, ls="--")
    alpha = 0.9 if len(levels) <= 32 else max(0.15, 16 / len(levels))
    for k, v in enumerate(levels):
        ax.axvline(float(v), color="#f58518", lw=0.8, alpha=alpha,
                   label=f"{len(levels)} quantization levels" if k == 0 else None)
    ax.set_xlim(xmin, xmax)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count" + (" (log)" if wg.size > 2000 else ""))
    n_out = int(np.count_nonzero((wg < lo) | (wg > hi))) if w is not None else 0
    ax.set_title(f"histogram: {where}" + (f"\n{n_out} of {wg.size} values beyond the clip range (saturate)"
                                          if w is not None else ""), fontsize=9)
    ax.legend(fontsize=8, loc="upper right")

    if w is not None:
        ax2 = axes[0, 1]
        ax2.plot([xmin, xmax], [xmin, xmax], color="0.6", lw=1, ls=":", label="identity (no error)")
        if full:
            # the exact rule of the grid (affine): nearest level, saturating at the ends
            xs = np.linspace(xmin, xmax, 4001, dtype=np.float32)
            k = np.clip(np.searchsorted((levels[1:] + levels[:-1]) / 2, xs), 0, len(levels) - 1)
            ax2.plot(xs, levels[k], color="#4c78a8", lw=1.4, label="dequantize(quantize(w))")
        else:
            order = np.argsort(wg, kind="stable")
            ax2.step(wg[order], hg[order], where="post", color="#4c78a8", lw=1.4, label="dequantize(quantize(w))")
        ax2.plot(wg, hg, ".", color="#f58518", ms=3, alpha=0.6, label=f"the {wg.size} weights")
        ax2.axvline(lo, color="#e45756", lw=1.2, ls="--")
        ax2.axvline(hi, color="#e45756", lw=1.2, ls="--", label="clip range")
        err = hg - wg
        sq = 10 * math.log10(float(np.dot(wg, wg)) / float(np.dot(err, err))) if np.dot(err, err) > 0 else math.inf
        ax2.set_xlabel("weight w")
        ax2.set_ylabel("w_hat")
        ax2.set_title(f"staircase ({'whole tensor' if where == 'whole tensor' else 'this group'}): max |err| {np.abs(err).max():.3g}, SQNR {sq:.1f} dB", fontsize=9)
        ax2.set_xlim(xmin, xmax)
        ax2.set_ylim(xmin, xmax)
        ax2.legend(fontsize=8, loc="upper left")
        ax2.grid(alpha=0.3)
    import textwrap
    fig.suptitle("\n".join(textwrap.wrap(title or f"{qt.scheme} {qt.bits}-bit {qt.granularity}", 60 * ncols)),
                 fontsize=11 if ncols > 1 else 10)
    fig.tight_layout()
    out = os.fspath(out)
    try:
        with atomic_output(out, force=force, suffix=".png-tmp") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return out


def plot_checkpoint_tensor(file, tensor: str, out, *, scheme: str = "int4", granularity: Optional[str] = None,
                           clip: str = "none", force: bool = False) -> str:
    """``lowbit plot``: quantize one tensor of ``file`` with ``scheme`` (or take the QTensor a
    lowbit file holds) and write the figure to ``out``."""
    from . import checkpoint as ck
    from .io.safetensors import atomic_output
    _pyplot()   # fail early, before any work, when matplotlib is missing
    atomic_output(out, force=force).check()
    with ck.Checkpoint(file) as c:
        lowbit_file = c.is_lowbit
        if not lowbit_file:
            if tensor not in c:
                raise ck.CheckpointError(f"{file}: no tensor named {tensor!r}")
            info = c.info(tensor)
            if not info.is_float or info.size == 0:
                raise ck.CheckpointError(f"{file}: tensor {tensor!r} is {info.dtype} {list(info.shape)}; "
                                         "plot needs a non-empty floating-point tensor")
            w = np.array(c.get(tensor, float32=True))
    if lowbit_file:
        tensors = ck.load(file)
        if tensor not in tensors:
            raise ck.CheckpointError(f"{file}: no tensor named {tensor!r}")
        v = tensors[tensor]
        if isinstance(v, QTensor):
            return plot_quantization(None, v, out, force=force,
                                     title=f"{tensor}: stored {v.scheme} {v.bits}-bit {v.granularity}")
        w = np.asarray(v, np.float32)
    spec, gran, clip_m, clip_p = ck.resolve_options(scheme, granularity, clip)
    if spec.output == "gguf":
        raise ck.CheckpointError(f"plot: scheme {spec.name!r} gives GGUF blocks; plot an int/uint, ternary, "
                                 "binary or codebook scheme")
    axis, gs = ck.axis_group(gran, w.ndim)
    qt = spec.build(w, axis, gs, clip_m, clip_p)
    cl = "" if clip_m is None else f", clip {clip}"
    return plot_quantization(w, qt, out, force=force,
                             title=f"{tensor}  {list(w.shape)}: {spec.name}, {ck.granularity_text(gran)}{cl}")
