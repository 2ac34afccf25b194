"""Argument checking and normalization shared by the native API and the reference.

Everything here is validation and bookkeeping (grids, layouts, shapes): no
numerics. The reference and the native path both call it, so they accept and
reject exactly the same inputs.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Optional, Tuple

import numpy as np

FLT_MIN = np.float32(2.0 ** -126)
SCHEMES = ("absmax", "minmax")


def as_array(x, name: str) -> np.ndarray:
    """A NumPy view of ``x`` when possible (ndarray, DLPack, buffer protocol, __array__)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (TypeError, ValueError, RuntimeError, BufferError):
            pass  # e.g. a tensor that needs grad or lives on another device: try __array__
    try:
        return np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a type problem
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to a NumPy array ({e})") from None


def as_float32(x, name: str = "x") -> np.ndarray:
    """A C-contiguous float32 copy or view of ``x``; TypeError for non-float data."""
    if not isinstance(x, np.ndarray) and _is_torch_bfloat16(x):
        return _torch_bfloat16_as_float32(x)
    arr = x if isinstance(x, np.ndarray) else as_array(x, name)
    dt = arr.dtype
    if dt.kind == "f" or dt.name == "bfloat16":
        return np.asarray(arr, dtype=np.float32, order="C")
    raise TypeError(f"{name}: expected floating-point data (float16/bfloat16/float32/float64), got dtype {dt}")


def _is_torch_bfloat16(x) -> bool:
    return type(x).__module__.startswith("torch") and str(getattr(x, "dtype", "")) == "torch.bfloat16"


def _torch_bfloat16_as_float32(x) -> np.ndarray:
    """A torch.bfloat16 tensor widened exactly to float32. NumPy has no bfloat16: read the
    16-bit patterns (a zero-copy int16 view of a contiguous CPU tensor) and shift them into
    the high half of a float32 (bfloat16 is float32's top 16 bits, so this is exact)."""
    import torch  # only reached for a torch tensor, so torch is already imported
    bits = x.detach().to("cpu").contiguous().view(torch.int16).numpy().view(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def check_finite(x: np.ndarray, name: str = "x") -> None:
    """Raise ValueError naming the first NaN/Inf in ``x``, if any."""
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(nonfinite_message(x, bad, name))


def nonfinite_message(x: np.ndarray, bad: Optional[np.ndarray] = None, name: str = "x") -> str:
    if bad is None:
        bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    flat = int(np.flatnonzero(bad.reshape(-1))[0])
    idx = np.unravel_index(flat, x.shape) if x.ndim else ()
    return (f"{name} contains {count} non-finite value(s) (NaN or Inf); first at index "
            f"{tuple(int(i) for i in idx)}: {x.reshape(-1)[flat]!r}")


def check_bias(bias, N: int) -> Optional[np.ndarray]:
    """A float bias of shape (N,) as finite float32, or None.

    One rule for every layer (int8 and ternary/binary): the bias holds float
    values, so integer arrays are refused (TypeError) like any other float input,
    an int32 bias already quantized with ``quantize_bias`` included: adding one
    as floats would be silently wrong by a factor of the bias scale.
    """
    if bias is None:
        return None
    b = as_float32(bias, "bias")
    if b.shape != (N,):
        raise ValueError(f"bias: expected shape ({N},), got {b.shape}")
    check_finite(b, "bias")
    return b


def check_bits(bits, lo: int = 2, hi: int = 8) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    bits = int(bits)
    if not lo <= bits <= hi:
        raise ValueError(f"bits must be in {lo}..{hi}, got {bits}")
    return bits


class Grid(NamedTuple):
    qmin: int
    qmax: int
    absmax_qmax: int  # qmax of the signed grid: the absmax divisor
    signed: bool
    narrow: bool


def _grid(bits: int, scheme: str, signed: Optional[bool], narrow: bool) -> Grid:
    """SPEC 1 integer grids. Defaults: absmax -> signed, minmax -> unsigned."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if signed is None:
        signed = scheme == "absmax"
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed must be a bool or None, got {type(signed).__name__}")
    if not isinstance(narrow, (bool, np.bool_)):
        raise TypeError(f"narrow must be a bool, got {type(narrow).__name__}")
    signed, narrow = bool(signed), bool(narrow)
    if scheme == "absmax" and not signed:
        raise ValueError("scheme='absmax' is symmetric and needs signed codes (signed=False given)")
    if narrow and not signed:
        raise ValueError("narrow=True drops the most negative signed code; it needs signed=True")
    half = 1 << (bits - 1)
    if signed:
        qmin, qmax = (-(half - 1) if narrow else -half), half - 1
    else:
        qmin, qmax = 0, (1 << bits) - 1
    return Grid(qmin, qmax, half - 1, signed, narrow)


class Layout(NamedTuple):
    """How a tensor splits into quantization groups (see csrc/affine/affine.h)."""
    kind: str          # "groups" | "cols" | "channels"
    a: int
    b: int
    c: int
    n_groups: int
    param_shape: Tuple[int, ...]


def normalize_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
    if ndim == 0:
        raise ValueError("axis given for a 0-d array; per-channel needs at least one dimension")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimension(s)")
    return int(axis) % ndim


def check_group_size(group_size) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, numbers.Integral):
        raise TypeError(f"group_size must be an int or None, got {type(group_size).__name__}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return int(group_size)


def _layout(shape: Tuple[int, ...], axis, group_size) -> Tuple[Layout, Optional[int], Optional[int]]:
    """Resolve granularity (SPEC 3). Returns the layout and the normalized axis / group size."""
    ndim = len(shape)
    n = math.prod(shape)
    if axis is not None and group_size is not None:
        raise ValueError("give axis (per-channel) or group_size (per-group along the last axis), not both")
    if group_size is not None:
        g = check_group_size(group_size)
        if ndim == 0:
            raise ValueError("group_size given for a 0-d array")
        L = shape[-1]
        R = math.prod(shape[:-1])
        ng = -(-L // g)
        return Layout("groups", R, L, g, R * ng, tuple(shape[:-1]) + (ng,)), None, g
    if axis is not None:
        k = normalize_axis(axis, ndim)
        outer, C, inner = math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])
        pshape = tuple(C if i == k else 1 for i in range(ndim))
        if inner == 1:
            lay = Layout("cols", outer, C, 0, C, pshape)
        elif outer == 1:
            lay = Layout("groups", C, inner, max(inner, 1), C, pshape)
        else:
            lay = Layout("channels", outer, C, inner, C, pshape)
        return lay, k, None
    return Layout("groups", 1, n, max(n, 1), 1, (1,) * ndim), None, None


# grid() and layout() are pure functions of small arguments and run on every call of the
# API (and again when a QTensor checks itself): their results are cached, keyed by value
# and type (True and 1 differ, so a bad type still raises). Arguments that cannot be keys
# (a list) go to the uncached function, which raises the usual error.
_grid_cached = functools.lru_cache(maxsize=256, typed=True)(_grid)
_layout_cached = functools.lru_cache(maxsize=1024, typed=True)(_layout)


def grid(bits: int, scheme: str, signed: Optional[bool], narrow: bool) -> Grid:
    """SPEC 1 integer grids. Defaults: absmax -> signed, minmax -> unsigned."""
    try:
        return _grid_cached(bits, scheme, signed, narrow)
    except TypeError:
        return _grid(bits, scheme, signed, narrow)


def layout(shape: Tuple[int, ...], axis, group_size) -> Tuple[Layout, Optional[int], Optional[int]]:
    """Resolve granularity (SPEC 3). Returns the layout and the normalized axis / group size."""
    try:
        return _layout_cached(tuple(shape), axis, group_size)
    except TypeError:
        return _layout(tuple(shape), axis, group_size)


def clip_arrays(clip, scheme: str, n_groups: int):
    """A fixed clip (c or (lo, hi)) as per-group float32 arrays, or (None, None)."""
    if clip is None:
        return None, None
    if isinstance(clip, str):
        raise ValueError(f"clip={clip!r}: calibrated clipping is chosen with clip='percentile'|'mse'|'kl' "
                         "when available; here give None, a float c or a (lo, hi) pair")
    if isinstance(clip, numbers.Real) and not isinstance(clip, bool):
        c = float(clip)
        if not math.isfinite(c) or c <= 0:
            raise ValueError(f"clip must be a finite positive number, got {clip!r}")
        lo, hi = -c, c
    else:
        try:
            lo, hi = (float(v) for v in clip)
        except (TypeError, ValueError):
            raise TypeError(f"clip must be None, a float or a (lo, hi) pair, got {clip!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"clip range must be finite, got ({lo}, {hi})")
        if not lo < hi:
            raise ValueError(f"clip range is empty: lo={lo} must be < hi={hi}")
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if not lo32 < hi32 and scheme == "minmax":
        raise ValueError(f"clip range ({lo}, {hi}) is empty in float32")
    return np.full(n_groups, lo32, np.float32), np.full(n_groups, hi32, np.float32)
