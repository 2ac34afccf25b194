"""Per-token (per-row) activation quantization for BitLinear / int8 linear layers: SPEC 5.

For each row ``x[r]`` of the last axis::

    s[r] = float32(qmax) / max(max|x[r]|, float32(1e-5))     # one float32 division, qmax = 127 for 8 bits
    q[r] = clamp(round_half_even(x[r] * s[r]), -2**(bits-1), qmax)
    x_hat[r] = q[r] / s[r]

The result is a QTensor with scheme ``"act_absmax"``. Unlike the affine schemes,
its ``scale`` field holds the SPEC 5 *factor* ``s`` (shape ``(..., 1)``, one per
row), not a step size: dequantization divides, ``x_hat = codes / scale``, which
is exact to SPEC 5 (multiplying by a rounded ``1/s`` would not be).
"""
from __future__ import annotations

import numpy as np

from . import _args, _C
from ._checks.act import SCHEME, act_qtensor, check_activations
from .qtensor import QTensor

__all__ = ["quantize_activations", "SCHEME", "dequantize"]


def dequantize(qt: QTensor, codes: np.ndarray) -> np.ndarray:
    """SPEC 5: x_hat = q / s (one float32 division per value); the scheme's rule for QTensor.dequantize."""
    return (codes.astype(np.float32) / qt.scale).astype(np.float32)


def quantize_activations(x, bits: int = 8) -> QTensor:
    """Quantize ``x`` of shape (..., K) per row (token) to signed ``bits``-bit codes (SPEC 5).

    Returns a QTensor (scheme ``"act_absmax"``) whose ``scale`` is the factor ``s``
    per row, shape (..., 1); ``qt.dequantize()`` gives ``codes / s``. NaN or Inf in
    ``x`` raise ValueError.
    """
    x, bits, M, K = check_activations(x, bits)
    try:
        codes, s = _C.act_quantize_rows(x.reshape(-1), M, K, bits)
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x)) from None
    return act_qtensor(codes, s, x.shape, bits)
