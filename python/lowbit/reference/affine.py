"""Reference affine quantization (SPEC 1-3), NumPy only."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _args
from ..qtensor import QTensor
from . import calibration, codebook
from .packing import qtensor_codes
from .params import group_params, group_ranges

__all__ = ["quantize", "dequantize", "group_params", "group_ranges"]

F32, F64 = np.float32, np.float64


def _expand(p: np.ndarray, x_shape, lay: _args.Layout) -> np.ndarray:
    """Per-group values broadcast to every element (flat, C order)."""
    if lay.kind == "groups":
        R, L, g = lay.a, lay.b, lay.c
        return np.repeat(p.reshape(R, -1), g, axis=1)[:, :L].reshape(-1)
    outer, C, inner = (lay.a, lay.b, 1) if lay.kind == "cols" else (lay.a, lay.b, lay.c)
    return np.broadcast_to(p.reshape(1, C, 1), (outer, C, inner)).reshape(-1)


def quantize(x, bits: Optional[int] = None, *, scheme: str = "absmax", axis: Optional[int] = None,
             group_size: Optional[int] = None, signed: Optional[bool] = None, narrow: bool = False,
             clip=None, clip_param=None) -> QTensor:
    if bits is None:  # the scheme's natural width: NF4 is 4-bit, everything else defaults to 8
        bits = 4 if scheme == "nf4" else 8
    if scheme in ("kmeans", "nf4"):  # non-uniform schemes (SPEC 9): reference/codebook.py
        return codebook.quantize_scheme(x, bits, scheme=scheme, axis=axis, group_size=group_size, signed=signed,
                                        narrow=narrow, clip=clip, clip_param=clip_param)
    x = _args.as_float32(x)
    bits = _args.check_bits(bits)
    g = _args.grid(bits, scheme, signed, narrow)
    lay, axis, group_size = _args.layout(x.shape, axis, group_size)
    if isinstance(clip, str) and clip != "none":
        clip_lo, clip_hi = calibration.clip_arrays(x, clip, clip_param, scheme=scheme, bits=bits, layout=lay,
                                                   signed=signed, narrow=narrow)
    else:
        if clip_param is not None:
            raise ValueError("clip_param is only used with a calibrated clip method (clip='percentile'|'mse'|'kl')")
        clip_lo, clip_hi = _args.clip_arrays(None if clip == "none" else clip, scheme, lay.n_groups)
    _args.check_finite(x)
    if x.size == 0:
        lo = hi = np.zeros(lay.n_groups, F32)
    else:
        lo, hi = group_ranges(x, lay)
    if clip_lo is not None:
        lo, hi = clip_lo, clip_hi
    scale, inv, zp = group_params(lo, hi, scheme, g)
    if x.size == 0:
        codes = np.zeros(x.shape, np.int8 if g.signed else np.uint8)
        return QTensor(codes=codes, scale=scale.reshape(lay.param_shape), zero_point=zp.reshape(lay.param_shape),
                       shape=x.shape, bits=bits, scheme=scheme, axis=axis, group_size=group_size,
                       signed=g.signed, narrow=g.narrow)
    xf = x.reshape(-1)
    with np.errstate(over="ignore"):  # products beyond float32 saturate through the clamp
        prod = (xf * _expand(inv, x.shape, lay)).astype(F32)      # one float32 multiply
    q = np.clip(np.rint(prod), -2.0 ** 20, 2.0 ** 20).astype(np.int64) + _expand(zp, x.shape, lay)
    q = np.clip(q, g.qmin, g.qmax)
    codes = q.astype(np.int8 if g.signed else np.uint8).reshape(x.shape)
    return QTensor(codes=codes, scale=scale.reshape(lay.param_shape), zero_point=zp.reshape(lay.param_shape),
                   shape=x.shape, bits=bits, scheme=scheme, axis=axis, group_size=group_size,
                   signed=g.signed, narrow=g.narrow)


def dequantize(qt: QTensor, dtype=np.float32) -> np.ndarray:
    """``scale * float32(code - zero_point)``, one float32 multiply per value."""
    if qt.codebook is not None:  # non-uniform schemes (SPEC 9)
        return codebook.dequantize_codebook(qt).astype(dtype)
    codes = qtensor_codes(qt).astype(np.int32)
    lay = qt.layout()
    zp = qt.zero_point if qt.zero_point is not None else np.zeros(qt.scale.shape, np.int32)
    if qt.size == 0:
        return np.zeros(qt.shape, dtype)
    s = _expand(qt.scale.reshape(-1), qt.shape, lay)
    z = _expand(zp.reshape(-1), qt.shape, lay)
    with np.errstate(over="ignore"):  # |x| within 127 ulp of float32 max may round to +-inf
        y = (s * (codes.reshape(-1) - z).astype(F32)).astype(F32)
    return y.reshape(qt.shape).astype(dtype)
