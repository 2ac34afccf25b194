"""Packed ternary / binary matmul (SPEC 5, 7): argument checks and the kernel layout's
size, shared by lowbit.ternary and lowbit.reference.ternary."""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from .. import _args
from . import packing

F32 = np.float32


def tl_row_bytes(K: int, bits: int) -> int:
    """Bytes per row of the kernel layout: K padded to blocks of 128 (ternary) / 256 (binary) values."""
    block = 128 if bits == 2 else 256
    return -(-K // block) * 32


def check_weight(w, kind: str) -> None:
    """``w`` is a lowbit TernaryWeight / BinaryWeight (``kind``): the classes carry that tag."""
    try:
        if w.kind == kind:
            return
    except AttributeError:
        pass
    raise TypeError(f"expected a {kind}, got {type(w).__name__}")


def check_scale(scale, N: int) -> np.ndarray:
    """Weight scale(s) as float32 of shape (1, 1) (per tensor) or (N, 1) (per output channel)."""
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool):
        s = np.array(scale, dtype=F32)
    else:
        s = _args.as_array(scale, "scale")
        if s.dtype.kind not in "fiu" or s.dtype == np.bool_:
            raise TypeError(f"scale: expected real numbers, got dtype {s.dtype}")
        s = s.astype(F32)
    if s.size == 1 and s.ndim <= 2:
        s = s.reshape(1, 1)
    elif s.shape in ((N,), (N, 1)):
        s = s.reshape(N, 1)
    else:
        raise ValueError(f"scale: need one value (per tensor) or {N} values (per output channel), "
                         f"got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scale: contains NaN or Inf")
    return np.ascontiguousarray(s)


def check_codes(codes, bits: int) -> np.ndarray:
    """Weight codes (N, K) as int8: ternary {-1, 0, +1} (bits=2) or binary {-1, +1} (bits=1)."""
    c = _args.as_array(codes, "codes")
    if c.dtype.kind in "iu" and c.ndim != 2:
        raise ValueError(f"codes: expected a 2-d (N, K) array, got shape {c.shape}")
    q, _ = packing.check_codes(c, bits, True, ternary=bits == 2)
    return q


def check_float_input(x, K: int, name: str = "x") -> np.ndarray:
    a = x if isinstance(x, np.ndarray) else _args.as_array(x, name)
    if a.ndim == 0:
        raise ValueError(f"{name}: expected shape (..., {K}), got a 0-d array")
    a = _args.as_float32(a, name)
    if a.shape[-1] != K:
        raise ValueError(f"{name}: last axis has {a.shape[-1]} features, the weight has K = {K}")
    return a


def check_int8_input(qx, K: int) -> np.ndarray:
    a = qx if isinstance(qx, np.ndarray) else _args.as_array(qx, "qx")
    if a.dtype != np.int8:
        raise TypeError(f"qx: expected int8 activations, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"qx: expected shape (..., {K}), got a 0-d array")
    if a.shape[-1] != K:
        raise ValueError(f"qx: last axis has {a.shape[-1]} features, the weight has K = {K}")
    return np.ascontiguousarray(a)


def check_out(out, shape) -> np.ndarray:
    if (not isinstance(out, np.ndarray) or out.dtype != F32 or out.shape != shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"out: need a writeable C-contiguous float32 array of shape {shape}")
    return out


def check_axis(axis) -> Optional[int]:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be None or 0, got {type(axis).__name__}")
    if int(axis) not in (0, -2):
        raise ValueError(f"axis must be None (per tensor) or 0 (per output channel), got {axis}")
    return 0


def check_shape(shape) -> Tuple[int, int]:
    try:
        N, K = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be a pair (N, K), got {shape!r}") from None
    if N < 0 or K < 0:
        raise ValueError(f"shape must be non-negative, got {shape!r}")
    return N, K
