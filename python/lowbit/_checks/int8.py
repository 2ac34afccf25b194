"""int8 GEMM and linear layers (SPEC 7): argument checks shared by lowbit.int8 and
lowbit.reference.int8."""
from __future__ import annotations

import numbers
from typing import Callable, Tuple

import numpy as np

from .. import _args
from ..qtensor import QTensor, is_affine_scheme
from .act import check_activations

INT32_LIMIT = 2 ** 31  # |acc| must stay below this


def _code_matrix(v, name: str, dtypes) -> np.ndarray:
    if not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(v).__name__}")
    if v.dtype not in dtypes:
        allowed = " or ".join(str(np.dtype(d)) for d in dtypes)
        raise TypeError(f"{name} must hold integer codes of dtype {allowed}, got {v.dtype}")
    if v.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {v.shape}")
    return np.ascontiguousarray(v)


def _zero_point(z, name: str, dtype) -> int:
    if isinstance(z, np.ndarray) and z.ndim == 0:
        z = z.item()
    if isinstance(z, bool) or not isinstance(z, numbers.Integral):
        raise TypeError(f"{name} must be an int scalar (per-tensor zero point), got {type(z).__name__}")
    info = np.iinfo(dtype)
    if not info.min <= int(z) <= info.max:
        raise ValueError(f"{name}={z} is outside the {np.dtype(dtype)} range [{info.min}, {info.max}]")
    return int(z)


def check_matmul(a, b, a_zero_point, b_zero_point):
    """Validated (a, b, za, zb, M, N, K); raises ValueError if the exact result might not fit int32."""
    a = _code_matrix(a, "a", (np.int8, np.uint8))
    b = _code_matrix(b, "b", (np.int8,))
    za = _zero_point(a_zero_point, "a_zero_point", a.dtype)
    zb = _zero_point(b_zero_point, "b_zero_point", b.dtype)
    M, K = a.shape
    N, Kb = b.shape
    if K != Kb:
        raise ValueError(f"a is (M, K) = {a.shape} and b is (N, K) = {b.shape}: K differs ({K} != {Kb})")
    ia, ib = np.iinfo(a.dtype), np.iinfo(b.dtype)
    worst_a = max(abs(ia.min - za), abs(ia.max - za))
    worst_b = max(abs(ib.min - zb), abs(ib.max - zb))
    if K * worst_a * worst_b >= INT32_LIMIT and M and N:
        # the dtype bound is too loose to promise int32; look at the actual values
        ma = int(np.abs(a.astype(np.int32) - za).max())
        mb = int(np.abs(b.astype(np.int32) - zb).max())
        if K * ma * mb >= INT32_LIMIT:
            raise ValueError(f"int8_matmul: K={K} with max|a - a_zero_point|={ma} and max|b - b_zero_point|={mb} "
                             f"can give sums beyond int32 (K * {ma} * {mb} >= 2**31); split K and add in int64")
    return a, b, za, zb, M, N, K


def check_qweight(qweight, codes_of: Callable[[QTensor], np.ndarray]) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(codes (N, K) int8, sb float32 (N,) or (1,), per_channel) from an int8 weight QTensor;
    ``codes_of(qweight)`` unpacks its codes (native or NumPy, whoever checks)."""
    if not isinstance(qweight, QTensor):
        raise TypeError(f"qweight must be a QTensor (see lowbit.quantize), got {type(qweight).__name__}")
    if qweight.ndim != 2:
        raise ValueError(f"qweight must be 2-D (N, K), got shape {qweight.shape}")
    if not is_affine_scheme(qweight.scheme):
        raise ValueError(f"qweight has scheme {qweight.scheme!r}; the int8 linear needs an affine int8 weight "
                         "(scheme 'absmax')")
    if qweight.group_size is not None:
        raise ValueError(f"qweight is {qweight.granularity}; the int8 linear supports per-tensor or "
                         "per-output-channel (axis=0) scales: quantize with axis=0")
    if qweight.axis is not None and qweight.axis % 2 != 0:
        raise ValueError(f"qweight is per-channel along axis {qweight.axis}; the int8 linear needs the output "
                         "channel axis 0 of (N, K)")
    codes = codes_of(qweight)
    if codes.dtype != np.int8 or not qweight.signed:
        raise ValueError(f"qweight codes must be signed int8, got {codes.dtype} (signed={qweight.signed}); "
                         "use scheme='absmax'")
    if qweight.zero_point is not None and np.any(qweight.zero_point != 0):
        raise ValueError("qweight has non-zero zero points; the int8 linear needs symmetric (absmax) weights")
    scale = np.ascontiguousarray(qweight.scale, dtype=np.float32).reshape(-1)
    if not np.isfinite(scale).all():
        raise ValueError("qweight scale holds NaN or Inf")
    return np.ascontiguousarray(codes), scale, qweight.axis is not None


def check_linear_x(x, K: int):
    x, _, M, Kx = check_activations(x, 8)
    if Kx != K:
        raise ValueError(f"x has {Kx} features (last axis) but the weight is (N, K) with K={K}")
    return x, M


def check_weight_fits(codes: np.ndarray) -> None:
    """Activations are in [-127, 127]; reject weights for which K * 127 * max|w| could reach 2**31."""
    K = codes.shape[1]
    if K * 127 * 128 >= INT32_LIMIT and codes.size:
        mw = int(np.abs(codes.astype(np.int32)).max())
        if K * 127 * mw >= INT32_LIMIT:
            raise ValueError(f"K={K} is too large for exact int32 accumulation with max|w|={mw}")


def check_weight_bits(weight, bits: int):
    """A float (N, K) weight for ``Linear(weight, bits=)`` (7 or 8) as float32."""
    if isinstance(bits, bool) or bits not in (7, 8):
        raise ValueError(f"bits must be 7 or 8, got {bits!r}")
    w = _args.as_float32(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (N, K), got shape {w.shape}")
    return w


def check_static(x, K: int, shape, activation_scale, activation_zero_point):
    """The static path's arguments: (x float32 (..., K) finite, float32 step size, zero point 0..255)."""
    if isinstance(activation_scale, bool) or not isinstance(activation_scale, numbers.Real):
        raise TypeError(f"activation_scale must be a positive float, got {activation_scale!r}")
    sx = np.float32(activation_scale)
    if not (np.isfinite(sx) and sx > 0):
        raise ValueError(f"activation_scale must be a finite positive number, got {activation_scale!r}")
    if isinstance(activation_zero_point, bool) or not isinstance(activation_zero_point, numbers.Integral) \
            or not 0 <= activation_zero_point <= 255:
        raise ValueError(f"activation_zero_point must be an int in 0..255, got {activation_zero_point!r}")
    x = _args.as_float32(x)
    if x.ndim < 1 or x.shape[-1] != K:
        raise ValueError(f"x must have shape (..., {K}) to match the weight (N, K) = {tuple(shape)}, got {x.shape}")
    _args.check_finite(x)
    return x, sx, int(activation_zero_point)


def check_dynamic_zero_point(activation_zero_point) -> None:
    if activation_zero_point != 0:
        raise ValueError("activation_zero_point needs activation_scale (the static int8 path)")
