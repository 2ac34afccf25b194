"""Non-uniform quantization (SPEC 9): codebooks, 1-D k-means, NF4.

Codes are uint8 indices into ``QTensor.codebook`` (unpacked; pack them with
the packing family, SPEC 6 "general b-bit codebook indices"). Definitions:
``lowbit.reference.codebook``; kernels: csrc/codebook/.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _args, _C
from .qtensor import QTensor
from ._checks.codebook import NF4, NF4_BLOCK, bits_for, check_codebook, check_k, check_scale_finite, check_scheme_args

__all__ = ["NF4", "quantize_codebook", "kmeans_codebook", "quantize_kmeans", "quantize_nf4"]

F32 = np.float32


def _native_quantize(x: np.ndarray, rows: int, length: int, group: int, cb: np.ndarray, per_group: bool,
                     scaled: bool, scale: Optional[np.ndarray]):
    try:
        return _C.codebook_quantize(x.reshape(-1), rows, length, group, cb.reshape(-1), per_group, scaled,
                                    float(np.abs(cb).max()) if scaled else 1.0, scale)
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x, name="w")) from None


def quantize_codebook(w, codebook, *, group_size: Optional[int] = None, scheme: str = "codebook") -> QTensor:
    """Nearest-code quantization: uint8 indices into ``codebook`` (sorted ascending, <= 256 finite values).

    ``group_size=None``: the codebook holds values (scale 1), e.g. the output of
    :func:`kmeans_codebook`. ``group_size=g``: each ``g`` consecutive values of the
    last axis get the scale ``max|x_g| / max|code|`` (a normalized codebook such
    as :data:`NF4`). Ties go to the lower index.
    """
    x = _args.as_float32(w, "w")
    cb = check_codebook(codebook, scaled=group_size is not None)
    lay, _, group_size = _args.layout(x.shape, None, group_size)
    scaled = group_size is not None
    scale = None if scaled else np.ones(lay.n_groups, F32)
    if x.size == 0:  # no values: no scaled groups (R * L == 0), or the one group of scale 1
        codes, scale = np.zeros(x.shape, np.uint8), np.ones(lay.n_groups, F32)
    else:
        codes, scale = _native_quantize(x, lay.a, lay.b, lay.c, cb, False, scaled, scale)
    if scaled:
        check_scale_finite(scale, cb)
    return QTensor(codes=codes.reshape(x.shape), scale=scale.reshape(lay.param_shape), zero_point=None,
                   shape=x.shape, bits=bits_for(cb.size), scheme=scheme, group_size=group_size, signed=False,
                   codebook=cb.copy())


def quantize_nf4(w, *, group_size: Optional[int] = NF4_BLOCK) -> QTensor:
    """QLoRA's NF4: absmax per block of ``group_size`` values along the last axis
    (64 by default; None: one block per row). Decodes like bitsandbytes' table."""
    if group_size is None:
        x = _args.as_float32(w, "w")
        group_size = max(x.shape[-1] if x.ndim else 1, 1)
    qt = quantize_codebook(w, NF4, group_size=group_size, scheme="nf4")
    qt.bits = 4
    return qt


def kmeans_codebook(w, k: int, *, axis: Optional[int] = None) -> np.ndarray:
    """k-means centroids (float32, sorted ascending) minimizing the sum of squared errors.

    ``axis=None``: one codebook of shape (k,); ``axis=a``: one per index of that
    axis, shape (C, k). Up to 65536 values per codebook the result is the exact
    optimum (dynamic programming, Wang & Song 2011); larger inputs start from the
    exact optimum over a 65536-bin histogram and take Lloyd steps on the values.
    Deterministic (independent of the thread count). k in 2..256.
    """
    x = _args.as_float32(w, "w")
    k = check_k(k)
    if axis is None:
        rows, length, xm = 1, x.size, x
    else:
        ax = _args.normalize_axis(axis, x.ndim)
        xm = np.ascontiguousarray(np.moveaxis(x, ax, 0))
        rows = x.shape[ax]
        length = x.size // rows if rows else 0
    if x.size == 0:
        return np.zeros((k,) if axis is None else (rows, k), F32)
    try:
        cb = _C.kmeans_1d(xm.reshape(-1), rows, length, k)
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x, name="w")) from None
    return cb if axis is None else cb.reshape(rows, k)


def quantize_kmeans(w, bits: int, *, axis: Optional[int] = None) -> QTensor:
    """``2**bits`` k-means centroids for the tensor (or one codebook per index of ``axis``)."""
    x = _args.as_float32(w, "w")
    bits = _args.check_bits(bits, 1, 8)
    k = 1 << bits
    cb = kmeans_codebook(x, k, axis=axis)
    if axis is None:
        qt = quantize_codebook(x, cb, scheme="kmeans")
        qt.bits = bits
        return qt
    ax = _args.normalize_axis(axis, x.ndim)
    lay = _args.layout(x.shape, ax, None)[0]
    xm = np.ascontiguousarray(np.moveaxis(x, ax, 0))
    rows = x.shape[ax]
    length = x.size // rows if rows else 0
    if x.size:
        codes, _ = _native_quantize(xm, rows, length, max(length, 1), cb, True, False, np.ones(rows, F32))
        codes = np.ascontiguousarray(np.moveaxis(codes.reshape(xm.shape), 0, ax))
    else:
        codes = np.zeros(x.shape, np.uint8)
    return QTensor(codes=codes, scale=np.ones(lay.param_shape, F32), zero_point=None, shape=x.shape, bits=bits,
                   scheme="kmeans", axis=ax, signed=False, codebook=cb)


def quantize_scheme(x, bits: int, *, scheme: str, axis=None, group_size=None, signed=None, narrow=False,
                    clip=None, clip_param=None) -> QTensor:
    """``lowbit.quantize(..., scheme="kmeans"|"nf4")``."""
    kw = check_scheme_args(scheme, bits, axis, group_size, signed, narrow, clip, clip_param)
    return quantize_nf4(x, **kw) if scheme == "nf4" else quantize_kmeans(x, bits, **kw)


def dequantize(qt: QTensor, codes: np.ndarray) -> np.ndarray:
    """Native table lookup ``scale * codebook[code]``: the scheme's rule for QTensor.dequantize."""
    if qt.codebook is None:
        raise ValueError(f"QTensor with scheme {qt.scheme!r} has no codebook")
    cb = np.ascontiguousarray(qt.codebook, dtype=F32)
    # (the native lookup checks every code against the codebook length)
    if qt.size == 0:
        return np.zeros(qt.shape, F32)
    if qt.axis is not None and cb.ndim == 2:
        ax = qt.axis
        cm = np.ascontiguousarray(np.moveaxis(codes, ax, 0))
        rows = qt.shape[ax]
        length = qt.size // rows
        if cb.shape[0] != rows:
            raise ValueError(f"codebook has {cb.shape[0]} rows, expected {rows}")
        scale = np.ascontiguousarray(qt.scale, dtype=F32).reshape(-1)
        y = _C.codebook_dequantize(cm.reshape(-1), rows, length, length, cb.reshape(-1), True, scale)
        return np.ascontiguousarray(np.moveaxis(y.reshape(cm.shape), 0, ax))
    lay = qt.layout()
    if lay.kind != "groups":
        raise ValueError("codebook QTensors are per-tensor, per-group or per-channel with a codebook per channel")
    y = _C.codebook_dequantize(np.ascontiguousarray(codes).reshape(-1), lay.a, lay.b, lay.c, cb.reshape(-1), False,
                               np.ascontiguousarray(qt.scale, dtype=F32).reshape(-1))
    return y.reshape(qt.shape)

