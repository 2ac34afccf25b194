"""Affine (uniform) quantization: absmax (symmetric) and minmax (zero-point). SPEC 1-3."""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _args, _C, calibration, codebook
from .qtensor import QTensor, scheme_rule

__all__ = ["quantize", "dequantize"]


def quantize(x, bits: Optional[int] = None, *, scheme: str = "absmax", axis: Optional[int] = None,
             group_size: Optional[int] = None, signed: Optional[bool] = None, narrow: bool = False,
             clip=None, clip_param=None) -> QTensor:
    """Quantize ``x`` to ``bits``-bit integer codes.

    ``bits`` defaults to 8 (4 for ``scheme="nf4"``).

    scheme: ``"absmax"`` (symmetric, zero point 0) or ``"minmax"`` (asymmetric,
    with a zero point). ``axis=k``: one scale per index along k (per-channel);
    ``group_size=g``: one scale per ``g`` consecutive values of the last axis;
    neither: one scale for the tensor. ``signed`` defaults to True for absmax and
    False for minmax; ``narrow`` drops the most negative signed code. ``clip``
    is None, a float ``c`` (range ``[-c, c]``) or a ``(lo, hi)`` pair.
    """
    if bits is None:  # the scheme's natural width: NF4 is 4-bit, everything else defaults to 8
        bits = 4 if scheme == "nf4" else 8
    if scheme in ("kmeans", "nf4"):  # non-uniform schemes (SPEC 9) live in the codebook family
        return codebook.quantize_scheme(x, bits, scheme=scheme, axis=axis, group_size=group_size, signed=signed,
                                        narrow=narrow, clip=clip, clip_param=clip_param)
    x = _args.as_float32(x)
    bits = _args.check_bits(bits)
    g = _args.grid(bits, scheme, signed, narrow)
    lay, axis, group_size = _args.layout(x.shape, axis, group_size)
    clip_lo, clip_hi = _resolve_clip(x, clip, clip_param, scheme, bits, lay, signed, narrow)
    if x.size == 0:  # every group is empty: its parameters are those of a group holding one 0 (SPEC 1-2)
        _, scale, zp = _C.affine_quantize(np.zeros(lay.n_groups, np.float32), "groups", lay.n_groups, 1, 1,
                                          scheme, g.qmin, g.qmax, g.absmax_qmax, clip_lo, clip_hi)
        codes = np.zeros(x.shape, np.int8 if g.signed else np.uint8)
    else:
        try:
            codes, scale, zp = _C.affine_quantize(x.reshape(-1), lay.kind, lay.a, lay.b, lay.c, scheme, g.qmin,
                                                  g.qmax, g.absmax_qmax, clip_lo, clip_hi)
        except _C.NonFiniteError:
            raise ValueError(_args.nonfinite_message(x)) from None
    return QTensor(codes=codes.reshape(x.shape), scale=scale.reshape(lay.param_shape),
                   zero_point=zp.reshape(lay.param_shape), shape=x.shape, bits=bits, scheme=scheme,
                   axis=axis, group_size=group_size, signed=g.signed, narrow=g.narrow)


def _resolve_clip(x, clip, clip_param, scheme, bits, lay, signed=None, narrow=False):
    if isinstance(clip, str) and clip != "none":
        return calibration.clip_arrays(x, clip, clip_param, scheme=scheme, bits=bits, layout=lay,
                                       signed=signed, narrow=narrow)
    if clip_param is not None:
        raise ValueError("clip_param is only used with a calibrated clip method (clip='percentile'|'mse'|'kl')")
    return _args.clip_arrays(None if clip == "none" else clip, scheme, lay.n_groups)


def dequantize(qt: QTensor, dtype=np.float32, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Float values of a QTensor, float32 unless ``dtype`` says otherwise."""
    if not isinstance(qt, QTensor):
        raise TypeError(f"dequantize expects a QTensor, got {type(qt).__name__}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != qt.shape \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be a writeable C-contiguous float32 array of shape {qt.shape}")
        if dtype != np.float32:
            raise ValueError("out= needs dtype float32")
    rule = scheme_rule(qt.scheme)
    codes = qt.unpacked_codes()
    if rule.dequantize is not None:
        y = rule.dequantize(qt, codes)
        if out is not None:
            out[...] = y
            return out
        return y if dtype == np.float32 else y.astype(dtype)
    lay = qt.layout()
    if qt.size == 0:
        y = np.zeros(qt.shape, np.float32) if out is None else out
        return y if dtype == np.float32 else y.astype(dtype)
    zp = qt.zero_point if qt.zero_point is not None else np.zeros(qt.scale.shape, np.int32)
    y = _C.affine_dequantize(np.ascontiguousarray(codes).reshape(-1), lay.kind, lay.a, lay.b, lay.c,
                             np.ascontiguousarray(qt.scale).reshape(-1), np.ascontiguousarray(zp).reshape(-1),
                             None if out is None else out.reshape(-1))
    y = y.reshape(qt.shape) if out is None else out
    return y if dtype == np.float32 else y.astype(dtype)
