"""Reference per-token activation quantization (SPEC 5), NumPy only."""
from __future__ import annotations

import numpy as np

from .. import _args
from .._checks.act import act_qtensor, check_activations
from ..qtensor import QTensor

__all__ = ["quantize_activations", "dequantize_activations"]

F32 = np.float32


def quantize_activations(x, bits: int = 8) -> QTensor:
    x, bits, M, K = check_activations(x, bits)
    _args.check_finite(x)
    qmax = (1 << (bits - 1)) - 1
    x2 = x.reshape(M, K)
    amax = np.abs(x2).max(axis=1) if M else np.zeros(0, F32)
    s = (F32(qmax) / np.maximum(amax, F32(1e-5))).astype(F32)                 # one float32 division
    prod = (x2 * s[:, None]).astype(F32)                                         # one float32 multiply
    codes = np.clip(np.rint(prod), -(qmax + 1), qmax).astype(np.int8)
    return act_qtensor(codes, s, x.shape, bits)


def dequantize_activations(qt: QTensor) -> np.ndarray:
    """x_hat = q / s."""
    return (qt.codes.astype(F32) / qt.scale).astype(F32)
