"""Per-token activation quantization (SPEC 5): argument checks and the result's layout,
shared by lowbit.act and lowbit.reference.act."""
from __future__ import annotations

import numpy as np

from .. import _args
from ..qtensor import QTensor

SCHEME = "act_absmax"


def check_activations(x, bits) -> tuple:
    """float32 x (..., K), bits, rows M and features K."""
    ndim = np.ndim(x)
    x = _args.as_float32(x)
    bits = _args.check_bits(bits)
    if ndim == 0:
        raise ValueError("x must have at least one dimension (..., K); got a 0-d array")
    K = x.shape[-1]
    if K == 0:
        raise ValueError(f"x has no features: shape {x.shape} (the last axis K must be >= 1)")
    return x, bits, x.size // K, K


def act_qtensor(codes: np.ndarray, s: np.ndarray, shape, bits: int) -> QTensor:
    """The result: codes shaped like x, the factor s per row as ``scale`` (..., 1)."""
    return QTensor(codes=codes.reshape(shape), scale=s.reshape(tuple(shape[:-1]) + (1,)), zero_point=None,
                   shape=tuple(shape), bits=bits, scheme=SCHEME, group_size=shape[-1], signed=True)
