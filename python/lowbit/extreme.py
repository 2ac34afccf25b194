"""Binary and ternary quantization (SPEC 5): BitNet absmean, TWN, threshold, sign.

Codes are int8 in {-1, 0, +1} (scheme "ternary", bits=2) or {-1, +1} (scheme
"binary", bits=1), with one scale per tensor, channel (``axis=``) or group of
``group_size`` values along the last axis; ``x_hat = scale * code``. Mean-based
scales are summed in float64 in the fixed order of lowbit.reference.extreme, so
the kernels match the reference bit for bit.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import _args, _C
from .qtensor import QTensor
from ._checks.extreme import BINARY_METHODS, TERNARY_METHODS, check_method, check_threshold

__all__ = ["ternarize", "binarize"]

_METHOD_IDS = {"absmean": 0, "twn": 1, "threshold": 2, "sign": 3, "bitnet": 4}


def ternarize(w, method: str = "absmean", *, threshold: float = 0.5, axis: Optional[int] = None,
              group_size: Optional[int] = None) -> QTensor:
    """Ternary codes {-1, 0, +1} with their scale(s).

    method: ``"absmean"`` (BitNet b1.58: scale g = max(mean|w|, 1e-5),
    q = clamp(round(w / g), -1, 1)), ``"twn"`` (delta = 0.7 mean|w|, q = sign(w)
    where |w| > delta, scale = mean of the kept |w|) or ``"threshold"``
    (a = max|w|, q = sign(w) where |w/a| > threshold, scale = a).
    ``axis=k``: per channel along k; ``group_size=g``: per group along the last
    axis; neither: one scale for the tensor (BitNet's choice).
    """
    method = check_method(method, TERNARY_METHODS, "ternarize")
    t = check_threshold(threshold)
    return _quantize(w, method, float(t), axis, group_size, ternary=True)


def binarize(w, method: str = "sign", *, axis: Optional[int] = None,
             group_size: Optional[int] = None) -> QTensor:
    """Binary codes {-1, +1} with their scale(s).

    method: ``"sign"`` (q = +1 where w >= 0, scale = mean|w|) or ``"bitnet"``
    (q = sign(w - mean(w)) with 0 -> +1, scale = mean|w|).
    """
    method = check_method(method, BINARY_METHODS, "binarize")
    return _quantize(w, method, 0.0, axis, group_size, ternary=False)


def _quantize(w, method, t, axis, group_size, ternary):
    x = _args.as_float32(w, "w")
    lay, axis, group_size = _args.layout(x.shape, axis, group_size)
    if x.size == 0:  # every group is empty: its scale is that of a group holding one 0
        _, scale = _C.extreme_quantize(np.zeros(lay.n_groups, np.float32), "groups", lay.n_groups, 1, 1,
                                       _METHOD_IDS[method], t)
        codes = np.zeros(x.shape, np.int8)
    else:
        try:
            codes, scale = _C.extreme_quantize(x.reshape(-1), lay.kind, lay.a, lay.b, lay.c, _METHOD_IDS[method], t)
        except _C.NonFiniteError:
            raise ValueError(_args.nonfinite_message(x, name="w")) from None
    meta = {"method": method}
    if method == "threshold":
        meta["threshold"] = t
    return QTensor(codes=codes.reshape(x.shape), scale=scale.reshape(lay.param_shape), zero_point=None,
                   shape=x.shape, bits=2 if ternary else 1, scheme="ternary" if ternary else "binary",
                   axis=axis, group_size=group_size, signed=True, narrow=ternary, meta=meta)
