"""Reference clipping and calibration (SPEC 4) and bias quantization (SPEC 5), NumPy only.

Every definition here is the contract the native path in ``lowbit.calibration``
and csrc/calib/ matches:

- ``percentile(p)``: ``np.percentile(..., method="linear")`` of ``|x|`` (symmetric)
  or of ``x`` at ``100-p`` and ``p`` (asymmetric).
- ``mse(n)``: candidates ``c_i = float32(float64(a) * i / n)``, ``i = 1..n``; each
  candidate's objective is ``sum float64(x - x_hat)^2`` where ``x_hat`` is exactly
  what ``quantize(x, clip=candidate)`` would dequantize to. Asymmetric: ``lo`` and
  ``hi`` of the data (with 0 included) shrink together. Smallest objective wins,
  ties to the larger clip.
- ``kl``: the histogram of ``|x|`` has 2048 bins over ``[0, a]``, ``a = max|x|``;
  value ``v`` goes to bin ``min(floor(float64(v) * (2048 / float64(a))), 2047)``.
  For ``i = L .. 2048`` (``L = 2^(bits-1)``) the threshold's bins split into ``L``
  near-equal groups with edges ``floor(j * i / L)``; ``P``/``Q`` as SPEC 4 says;
  ``KL(P || Q)`` in float64 with ``Q = 0`` (where ``P > 0``) counted as
  ``KL_EPS``; the last minimum wins; ``c = float32((i + 0.5) * a / 2048)``.
  Asymmetric (minmax) clipping uses the same ``c`` on both sides, never widening
  the data range: ``(max(lo, -c), min(hi, c))``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _args
from .._checks.calibration import KL_BINS, check_bias_args, check_bias_fits, check_method_param
from .params import group_params, group_ranges

__all__ = ["calibrate", "clip_arrays", "quantize_bias", "group_values",
           "mse_objectives", "kl_histogram", "kl_divergences"]

F32, F64 = np.float32, np.float64
KL_EPS = 1e-10


def group_values(x: np.ndarray, lay: _args.Layout):
    """The values of each group, in the tensor's C order within the group (list of 1-D arrays)."""
    xf = x.reshape(-1)
    if lay.kind == "groups":
        R, L, g = lay.a, lay.b, lay.c
        x2 = xf.reshape(R, L)
        return [x2[r, s:s + g] for r in range(R) for s in range(0, L, g)] if L else [xf[:0]] * lay.n_groups
    outer, C, inner = (lay.a, lay.b, 1) if lay.kind == "cols" else (lay.a, lay.b, lay.c)
    x3 = xf.reshape(outer, C, inner)
    return [x3[:, c, :].reshape(-1) for c in range(C)]


# ---- percentile ---------------------------------------------------------------------------

def _percentile_range(v: np.ndarray, p: float, symmetric: bool):
    if v.size == 0:
        return F32(0), F32(0)
    if symmetric:
        c = F32(np.percentile(np.abs(v), p))
        return -c, c
    return F32(np.percentile(v, 100.0 - p)), F32(np.percentile(v, p))


# ---- mse ----------------------------------------------------------------------------------

def _candidates(lo: F32, hi: F32, scheme: str, n: int):
    """(lo_i, hi_i) float32 arrays, i = 1..n."""
    i = np.arange(1, n + 1, dtype=F64)
    if scheme == "absmax":
        a = max(abs(float(lo)), abs(float(hi)))
        c = (a * i / n).astype(F32)
        return -c, c
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    return (lo * i / n).astype(F32), (hi * i / n).astype(F32)


def mse_objectives(v: np.ndarray, scheme: str, g: _args.Grid, n: int) -> np.ndarray:
    """Objective (float64 sum of squared errors) of every candidate clip of one group."""
    if v.size == 0:
        return np.zeros(n, F64)
    clo, chi = _candidates(v.min(), v.max(), scheme, n)
    scale, inv, zp = group_params(clo, chi, scheme, g)
    out = np.empty(n, F64)
    for k in range(n):
        prod = (v * inv[k]).astype(F32)
        q = np.clip(np.rint(np.clip(prod, -2.0 ** 20, 2.0 ** 20)).astype(np.int64) + zp[k], g.qmin, g.qmax)
        xh = (scale[k] * (q - zp[k]).astype(F32)).astype(F32)
        e = (v - xh).astype(F32).astype(F64)
        out[k] = np.sum(e * e)
    return out


def _mse_range(v: np.ndarray, scheme: str, g: _args.Grid, n: int):
    if v.size == 0:
        return F32(0), F32(0)
    obj = mse_objectives(v, scheme, g, n)
    best = int(np.flatnonzero(obj == obj.min())[-1])     # ties go to the larger clip
    clo, chi = _candidates(v.min(), v.max(), scheme, n)
    return clo[best], chi[best]


# ---- kl -----------------------------------------------------------------------------------

def kl_histogram(v: np.ndarray) -> np.ndarray:
    """Counts (int64, 2048 bins) of |v| over [0, max|v|]; all zeros for an all-zero group."""
    a = np.abs(v)
    amax = float(a.max()) if a.size else 0.0
    if amax == 0.0:
        return np.zeros(KL_BINS, np.int64)
    idx = np.minimum((a.astype(F64) * (KL_BINS / amax)).astype(np.int64), KL_BINS - 1)
    return np.bincount(idx, minlength=KL_BINS).astype(np.int64)


def kl_divergences(hist: np.ndarray, bits: int) -> np.ndarray:
    """KL(P || Q) for every threshold i = L..2048 (index i - L), literally as SPEC 4 says."""
    L = 1 << (bits - 1)
    hist = np.asarray(hist, F64)
    out = np.empty(KL_BINS - L + 1, F64)
    for i in range(L, KL_BINS + 1):
        sliced = hist[:i]
        p = sliced.copy()
        p[i - 1] += hist[i:].sum()
        edges = (np.arange(L + 1) * i) // L
        grp = np.repeat(np.arange(L), np.diff(edges))            # group of every bin
        mass = np.bincount(grp, weights=sliced, minlength=L)
        nz = np.bincount(grp, weights=(sliced != 0).astype(F64), minlength=L)
        q = np.where(sliced != 0, mass[grp] / np.maximum(nz[grp], 1), 0.0)
        pn = p / p.sum()
        sq = q.sum()
        qn = q / sq if sq > 0 else q
        m = pn > 0
        qq = np.where(qn[m] > 0, qn[m], KL_EPS)
        out[i - L] = np.sum(pn[m] * np.log(pn[m] / qq))
    return out


def _kl_range(v: np.ndarray, scheme: str, bits: int):
    if v.size == 0:
        return F32(0), F32(0)
    amax = float(np.abs(v).max())
    if amax == 0.0:
        return F32(0), F32(0)
    kl = kl_divergences(kl_histogram(v), bits)
    i = int(np.flatnonzero(kl == kl.min())[-1]) + (1 << (bits - 1))      # last minimum
    c = F32((i + 0.5) * (amax / KL_BINS))
    if scheme == "absmax":
        return -c, c
    return max(F32(v.min()), -c), min(F32(v.max()), c)


# ---- public -------------------------------------------------------------------------------

def clip_arrays(x, method: str, clip_param=None, *, scheme: str, bits: int, layout: _args.Layout,
                signed: Optional[bool] = None, narrow: bool = False):
    """Per-group float32 ``(lo, hi)`` chosen by ``method`` (the ``quantize(clip=...)`` hook)."""
    param = check_method_param(method, clip_param)
    x = _args.as_float32(x)
    _args.check_finite(x)
    g = _args.grid(bits, scheme, signed, narrow)
    lo = np.zeros(layout.n_groups, F32)
    hi = np.zeros(layout.n_groups, F32)
    for k, v in enumerate(group_values(x, layout)):
        if method == "percentile":
            lo[k], hi[k] = _percentile_range(v, param, scheme == "absmax")
        elif method == "mse":
            lo[k], hi[k] = _mse_range(v, scheme, g, param)
        else:
            lo[k], hi[k] = _kl_range(v, scheme, bits)
    return lo, hi


def calibrate(x, method: str = "mse", bits: int = 8, *, scheme: str = "absmax", axis: Optional[int] = None,
              group_size: Optional[int] = None, signed: Optional[bool] = None, narrow: bool = False,
              clip_param=None):
    """The clip range alone: ``(lo, hi)`` float32 arrays shaped like the scales
    ``quantize(x, bits, scheme=..., axis=..., group_size=...)`` would have
    (``lo == -hi`` for absmax). ``method="minmax"`` returns the data range."""
    x = _args.as_float32(x)
    bits = _args.check_bits(bits)
    _args.grid(bits, scheme, signed, narrow)
    lay, _, _ = _args.layout(x.shape, axis, group_size)
    if method in ("minmax", "none"):
        if clip_param is not None:
            raise ValueError(f"method={method!r} takes no clip_param")
        _args.check_finite(x)
        lo, hi = group_ranges(x, lay) if x.size else (np.zeros(lay.n_groups, F32),) * 2
        if scheme == "absmax":
            a = np.maximum(np.abs(lo), np.abs(hi)).astype(F32)
            lo, hi = -a, a
    else:
        lo, hi = clip_arrays(x, method, clip_param, scheme=scheme, bits=bits, layout=lay, signed=signed,
                             narrow=narrow)
    return lo.reshape(lay.param_shape), hi.reshape(lay.param_shape)


def quantize_bias(bias, weight_scale, activation_scale) -> np.ndarray:
    """SPEC 5: ``round_half_even(bias / (weight_scale * activation_scale))`` as int32.

    The product of the scales and the quotient are computed in float64 from the
    float32 inputs. ``weight_scale`` is a scalar or one value per output (any
    keepdims shape with ``bias.size`` elements); ``activation_scale`` a scalar.
    """
    b, sw, sx = check_bias_args(bias, weight_scale, activation_scale)
    return check_bias_fits(b, np.rint(b.astype(F64) / (sw.astype(F64) * sx.astype(F64))))
