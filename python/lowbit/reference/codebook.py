"""Reference non-uniform quantization (SPEC 9), NumPy only.

- Codebook quantization: ``q = argmin_i |float32(x / scale) - code_i|`` (float32
  differences, the lowest index on ties); ``x_hat = scale * code_q`` (one float32
  multiply). With ``group_size`` the scale of a group is
  ``max(float32(float64(max|x_g|) / max|code|), FLT_MIN)`` (absmax scaling, as
  bitsandbytes' blockwise 4-bit formats); without, the codebook holds values and
  the scale is 1.
- ``kmeans(k)``: the exact 1-D optimum (Wang & Song 2011, dynamic programming on
  the sorted distinct values weighted by their counts, with the
  divide-and-conquer speed-up); centroids are float32, sorted.
- ``nf4``: QLoRA's NormalFloat4 codebook, absmax per block of 64 by default.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _args
from .._checks.codebook import NF4, NF4_BLOCK, bits_for, check_codebook, check_k, check_scale_finite, check_scheme_args
from ..qtensor import QTensor
from .packing import qtensor_codes

__all__ = ["NF4", "quantize_codebook", "kmeans_codebook", "quantize_kmeans", "quantize_nf4",
           "dequantize_codebook", "kmeans_sse", "check_codebook", "check_k"]

F32, F64 = np.float32, np.float64

def _nearest(v: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """argmin_i |v - cb[i]| in float32, the lowest index on ties (np.argmin's rule)."""
    best = np.abs((v - cb[0]).astype(F32))
    idx = np.zeros(v.shape, np.uint8)
    for i in range(1, cb.size):
        d = np.abs((v - cb[i]).astype(F32))
        lt = d < best
        best = np.where(lt, d, best)
        idx[lt] = i
    return idx


def _group_amax(x2: np.ndarray, g: int) -> np.ndarray:
    R, L = x2.shape
    ng = -(-L // g)
    a = np.zeros((R, ng), F32)
    for j in range(ng):
        blk = x2[:, j * g:(j + 1) * g]
        a[:, j] = np.abs(blk).max(axis=1)
    return a


def quantize_codebook(w, codebook, *, group_size: Optional[int] = None, scheme: str = "codebook") -> QTensor:
    """Nearest-code quantization: uint8 indices into ``codebook`` (sorted ascending).

    ``group_size=None``: the codebook holds values (scale 1, one per tensor).
    ``group_size=g``: each ``g`` consecutive values of the last axis get the
    scale ``max|x_g| / max|code|`` and the codebook is a normalized shape.
    """
    x = _args.as_float32(w, "w")
    cb = check_codebook(codebook, scaled=group_size is not None)
    _args.check_finite(x, "w")
    lay, _, group_size = _args.layout(x.shape, None, group_size)
    if group_size is None:
        scale = np.ones(lay.n_groups, F32)
    else:
        amax = _group_amax(x.reshape(lay.a, lay.b), lay.c).astype(F64)
        with np.errstate(over="ignore"):
            scale = np.maximum((amax / float(np.abs(cb).max())).astype(F32), _args.FLT_MIN).reshape(-1)
        check_scale_finite(scale, cb)
    s = _expand(scale, lay)
    v = (x.reshape(-1) / s).astype(F32)
    codes = _nearest(v, cb).reshape(x.shape)
    return QTensor(codes=codes, scale=scale.reshape(lay.param_shape), zero_point=None, shape=x.shape,
                   bits=bits_for(cb.size), scheme=scheme, group_size=group_size, signed=False,
                   codebook=cb.copy())


def _expand(p: np.ndarray, lay: _args.Layout) -> np.ndarray:
    if lay.kind == "groups":
        R, L, g = lay.a, lay.b, lay.c
        if R * L == 0:  # no values (an empty per-tensor layout still has its one group)
            return np.zeros(0, p.dtype)
        return np.repeat(p.reshape(R, -1), g, axis=1)[:, :L].reshape(-1)
    raise AssertionError("codebook quantization uses the groups layout")


def quantize_nf4(w, *, group_size: Optional[int] = NF4_BLOCK) -> QTensor:
    """NF4: absmax per block of ``group_size`` values (64 by default) along the last axis."""
    if group_size is None:
        x = _args.as_float32(w, "w")
        group_size = max(x.shape[-1] if x.ndim else 1, 1)
    qt = quantize_codebook(w, NF4, group_size=group_size, scheme="nf4")
    qt.bits = 4
    return qt


# ---- k-means ----------------------------------------------------------------------------------

def _dp_kmeans(p: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Exact weighted 1-D k-means on sorted distinct points; float64 centroids.
    Mirrors csrc/codebook/codebook.cpp operation by operation."""
    m = p.size
    if m <= k:
        return p[np.minimum(np.arange(k), m - 1)].astype(F64)
    center = (p[0] + p[m - 1]) / 2
    v = p - center
    S1 = np.concatenate(([0.0], np.cumsum(w * v)))
    S2 = np.concatenate(([0.0], np.cumsum(w * (v * v))))
    W = np.concatenate(([0.0], np.cumsum(w)))

    def cost(j, i):  # j may be an array; clusters j..i inclusive
        s1 = S1[i + 1] - S1[j]
        s2 = S2[i + 1] - S2[j]
        ww = W[i + 1] - W[j]
        c = s2 - s1 * s1 / ww
        return np.maximum(c, 0.0)

    prev = cost(np.zeros(m, np.int64), np.arange(m))
    args = np.zeros((k, m), np.int64)
    for q in range(1, k):
        cur = np.full(m, np.inf)
        stack = [(q, m - 1, q, m - 1)]
        while stack:
            ilo, ihi, jlo, jhi = stack.pop()
            if ilo > ihi:
                continue
            mid = (ilo + ihi) // 2
            js = np.arange(max(jlo, q), min(jhi, mid) + 1)
            vals = prev[js - 1] + cost(js, mid)
            t = int(np.argmin(vals))
            cur[mid] = vals[t]
            bj = int(js[t])
            args[q, mid] = bj
            stack.append((mid + 1, ihi, bj, jhi))
            stack.append((ilo, mid - 1, jlo, bj))
        prev = cur
    cent = np.zeros(k, F64)
    i = m - 1
    for q in range(k - 1, -1, -1):
        j = int(args[q, i]) if q else 0
        cent[q] = center + (S1[i + 1] - S1[j]) / (W[i + 1] - W[j])
        i = j - 1
    return cent


def _kmeans_row(v: np.ndarray, k: int) -> np.ndarray:
    if v.size == 0:
        return np.zeros(k, F32)
    p, c = np.unique(v, return_counts=True)
    cent = _dp_kmeans(p.astype(F64), c.astype(F64), k).astype(F32)
    return np.maximum.accumulate(cent)


def kmeans_codebook(w, k: int, *, axis: Optional[int] = None) -> np.ndarray:
    """Exact k-means centroids (float32, sorted): shape (k,), or (C, k) with one codebook per index of ``axis``."""
    x = _args.as_float32(w, "w")
    k = check_k(k)
    _args.check_finite(x, "w")
    if axis is None:
        return _kmeans_row(x.reshape(-1), k)
    ax = _args.normalize_axis(axis, x.ndim)
    xm = np.moveaxis(x, ax, 0).reshape(x.shape[ax], -1)
    return np.stack([_kmeans_row(r, k) for r in xm]) if xm.shape[0] else np.zeros((0, k), F32)


def kmeans_sse(w, codebook) -> float:
    """Sum of squared errors of nearest-code quantization with a value codebook (float64)."""
    x = _args.as_float32(w, "w").reshape(-1)
    cb = np.asarray(codebook, F32)
    q = _nearest(x, cb)
    e = (x - cb[q]).astype(F64)
    return float(np.sum(e * e))


def quantize_kmeans(w, bits: int, *, axis: Optional[int] = None) -> QTensor:
    """``2**bits`` k-means centroids per tensor (or per index of ``axis``); codes index them."""
    x = _args.as_float32(w, "w")
    bits = _args.check_bits(bits, 1, 8)
    k = 1 << bits
    cb = kmeans_codebook(x, max(k, 2), axis=axis)
    if axis is None:
        qt = quantize_codebook(x, cb, scheme="kmeans")
        qt.bits = bits
        return qt
    ax = _args.normalize_axis(axis, x.ndim)
    xm = np.moveaxis(x, ax, 0)
    codes = np.empty(xm.shape, np.uint8)
    for c in range(xm.shape[0]):
        codes[c] = _nearest(np.ascontiguousarray(xm[c]).reshape(-1), cb[c]).reshape(xm.shape[1:])
    lay = _args.layout(x.shape, ax, None)[0]
    return QTensor(codes=np.ascontiguousarray(np.moveaxis(codes, 0, ax)), scale=np.ones(lay.param_shape, F32),
                   zero_point=None, shape=x.shape, bits=bits, scheme="kmeans", axis=ax, signed=False, codebook=cb)


def dequantize_codebook(qt: QTensor) -> np.ndarray:
    """``scale * codebook[code]`` (one float32 multiply), per group / per channel."""
    codes = qtensor_codes(qt)
    cb = qt.codebook
    if qt.axis is not None and cb is not None and cb.ndim == 2:
        ax = qt.axis
        cm = np.moveaxis(codes, ax, 0)
        out = np.stack([cb[c][cm[c]] for c in range(cm.shape[0])]) if cm.shape[0] else np.zeros(cm.shape, F32)
        s = np.moveaxis(np.broadcast_to(qt.scale, qt.shape), ax, 0)
        return np.ascontiguousarray(np.moveaxis((s * out).astype(F32), 0, ax))
    lay = qt.layout()
    vals = cb[codes.reshape(-1)]
    return (_expand(qt.scale.reshape(-1), lay) * vals).astype(F32).reshape(qt.shape)


def quantize_scheme(x, bits: int, *, scheme: str, axis=None, group_size=None, signed=None, narrow=False,
                    clip=None, clip_param=None) -> QTensor:
    """``reference.quantize(..., scheme="kmeans"|"nf4")``: the same argument rules as the native API."""
    kw = check_scheme_args(scheme, bits, axis, group_size, signed, narrow, clip, clip_param)
    return quantize_nf4(x, **kw) if scheme == "nf4" else quantize_kmeans(x, bits, **kw)
