"""Reference int8 GEMM and dynamic int8 linear layer (SPEC 7), NumPy only."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .. import _args
from .._checks.int8 import (check_dynamic_zero_point, check_linear_x, check_matmul, check_qweight, check_static,
                            check_weight_bits, check_weight_fits)
from ..qtensor import QTensor
from .act import quantize_activations
from .affine import quantize as _quantize
from .calibration import quantize_bias
from .packing import qtensor_codes

__all__ = ["int8_matmul", "linear", "Linear", "linear_accumulators"]

F32 = np.float32


def int8_matmul(a, b, *, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    a, b, za, zb, M, N, K = check_matmul(a, b, a_zero_point, b_zero_point)
    acc = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb).T
    assert acc.size == 0 or np.abs(acc).max() < 2 ** 31
    return acc.astype(np.int32).reshape(M, N)


def linear_accumulators(x, qweight: QTensor) -> Tuple[np.ndarray, np.ndarray]:
    """int32 accumulators (..., N) and activation factors s (..., 1)."""
    codes, _, _ = check_qweight(qweight, qtensor_codes)
    check_weight_fits(codes)
    x, M = check_linear_x(x, codes.shape[1])
    qx = quantize_activations(x)
    acc = qx.codes.reshape(M, codes.shape[1]).astype(np.int64) @ codes.astype(np.int64).T
    lead = x.shape[:-1]
    return acc.astype(np.int32).reshape(lead + (codes.shape[0],)), qx.scale


def linear(x, qweight: QTensor, bias=None, *, activation_scale=None, activation_zero_point=0) -> np.ndarray:
    """SPEC 7: y = (sa[m] * sb[n]) * float32(acc) (+ bias[n]), sa = float32(1) / s (SPEC 5).
    With activation_scale: the static path of lowbit.linear (fixed activation parameters, int32 bias)."""
    if activation_scale is not None:
        return static_linear(x, qweight, bias, activation_scale, activation_zero_point)
    check_dynamic_zero_point(activation_zero_point)
    codes, sb, per_channel = check_qweight(qweight, qtensor_codes)
    N = codes.shape[0]
    b = _args.check_bias(bias, N)
    acc, s = linear_accumulators(x, qweight)
    lead = acc.shape[:-1]
    acc2 = acc.reshape(math.prod(lead), N)  # not (-1, N): N may be 0
    sa = (F32(1) / s.reshape(-1)).astype(F32)
    sbn = np.broadcast_to(sb if per_channel else sb[:1], (N,)).astype(F32)
    scale = (sa[:, None] * sbn[None, :]).astype(F32)
    y = (scale * acc2.astype(F32)).astype(F32)
    if b is not None:
        y = (y + b[None, :]).astype(F32)
    return y.reshape(lead + (N,))


def static_linear(x, qweight: QTensor, bias, activation_scale, activation_zero_point=0) -> np.ndarray:
    """The static path: SPEC 1 activation codes q = clamp(round(x * float32(1 / sx)) + zp) with the
    fixed step sx, acc = (q - zp) @ codes.T + quantize_bias(bias, sb, sx) in int64 (exact),
    y = float32(sx * sb[n]) * float32(acc)."""
    codes, sb, per_channel = check_qweight(qweight, qtensor_codes)
    N, K = codes.shape
    x, sx, zp = check_static(x, K, codes.shape, activation_scale, activation_zero_point)
    b = _args.check_bias(bias, N)
    qmin, qmax = (-128, 127) if zp == 0 else (0, 255)
    with np.errstate(over="ignore"):
        prod = (x.reshape(-1, K) * (F32(1) / sx)).astype(F32)               # one float32 multiply
    q = np.clip(np.rint(np.clip(prod, -2.0 ** 20, 2.0 ** 20)).astype(np.int64) + zp, qmin, qmax)
    acc = (q - zp) @ codes.astype(np.int64).T
    sbn = np.broadcast_to(sb if per_channel else sb[:1], (N,)).astype(F32)
    if b is not None:
        acc = acc + quantize_bias(b, sbn, float(sx)).astype(np.int64)
    y = ((sx * sbn).astype(F32)[None, :] * acc.astype(F32)).astype(F32)
    return y.reshape(x.shape[:-1] + (N,))


class Linear:
    """Reference twin of lowbit.Linear (no packing)."""

    def __init__(self, weight, bias=None, *, bits: int = 8):
        qweight = weight if isinstance(weight, QTensor) else _quantize(check_weight_bits(weight, bits), bits,
                                                                        scheme="absmax", axis=0)
        codes, _, _ = check_qweight(qweight, qtensor_codes)
        check_weight_fits(codes)
        self.qweight = qweight
        self.out_features, self.in_features = qweight.shape
        self.bias = _args.check_bias(bias, self.out_features)

    def __call__(self, x) -> np.ndarray:
        return linear(x, self.qweight, self.bias)

    def accumulators(self, x):
        return linear_accumulators(x, self.qweight)
