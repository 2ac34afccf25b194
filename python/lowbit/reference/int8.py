"""Reference int8 GEMM and dynamic int8 linear layer (SPEC 7), NumPy only."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from ..int8 import as_qweight, static_linear, check_bias, check_linear_x, check_matmul, check_qweight, check_weight_fits
from ..qtensor import QTensor
from .act import quantize_activations
from .affine import quantize as _quantize

__all__ = ["int8_matmul", "linear", "Linear", "linear_accumulators"]

F32 = np.float32


def int8_matmul(a, b, *, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    a, b, za, zb, M, N, K = check_matmul(a, b, a_zero_point, b_zero_point)
    acc = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb).T
    assert acc.size == 0 or np.abs(acc).max() < 2 ** 31
    return acc.astype(np.int32).reshape(M, N)


def linear_accumulators(x, qweight: QTensor) -> Tuple[np.ndarray, np.ndarray]:
    """int32 accumulators (..., N) and activation factors s (..., 1)."""
    codes, _, _ = check_qweight(qweight)
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
        from .calibration import quantize_bias
        return static_linear(x, qweight, bias, activation_scale, activation_zero_point, int8_matmul, quantize_bias)
    if activation_zero_point != 0:
        raise ValueError("activation_zero_point needs activation_scale (the static int8 path)")
    codes, sb, per_channel = check_qweight(qweight)
    N = codes.shape[0]
    b = check_bias(bias, N)
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


class Linear:
    """Reference twin of lowbit.Linear (no packing)."""

    def __init__(self, weight, bias=None, *, bits: int = 8):
        qweight = as_qweight(weight, _quantize, bits)
        codes, _, _ = check_qweight(qweight)
        check_weight_fits(codes)
        self.qweight = qweight
        self.out_features, self.in_features = qweight.shape
        self.bias = check_bias(bias, self.out_features)

    def __call__(self, x) -> np.ndarray:
        return linear(x, self.qweight, self.bias)

    def accumulators(self, x):
        return linear_accumulators(x, self.qweight)
