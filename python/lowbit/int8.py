"""int8 GEMM and the dynamic int8 linear layer (SPEC 7).

- ``int8_matmul(a, b)``: exact integer matmul of int8/uint8 ``a`` (M, K) with int8
  ``b`` (N, K) (weight layout), with scalar zero points, int32 result.
- ``linear(x, qweight, bias)``: per-token int8 activations (SPEC 5), the int8 GEMM,
  and ``y = (sa[m] * sb[n]) * float(acc) + bias[n]`` with ``sa = 1 / s`` (float32),
  all in one native call.
- ``Linear(weight, bias)``: quantizes (absmax, per output channel) and packs the
  weight once; calling it on activations only quantizes them and multiplies.

Exactness: every kernel variant's products cannot saturate (int16 pair sums of widened
operands on AVX2, vpmaddubsw with 7-bit weights, vpdpbusd on VNNI) and accumulate in
wrapping int32. Results are exact whenever the true values fit in int32; inputs for which
``K * max|a - za| * max|b - zb|`` could reach 2**31 are rejected with ValueError (for int8
without zero points that allows K up to 131072 for every value but the all -128 x -128
corner at K = 131072, whose true result 2**31 does not fit). Weights are packed in the
layout the active variant declares (``Linear.layout``), once, and again only if another
variant becomes active.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from . import _args, _C
from .act import check_activations
from .affine import quantize as _quantize
from .qtensor import _AFFINE_LIKE, QTensor

__all__ = ["int8_matmul", "linear", "Linear"]

INT32_LIMIT = 2 ** 31  # |acc| must stay below this


# ---- argument checks shared with the reference ------------------------------------

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


def check_qweight(qweight) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(codes (N, K) int8, sb float32 (N,) or (1,), per_channel) from an int8 weight QTensor."""
    if not isinstance(qweight, QTensor):
        raise TypeError(f"qweight must be a QTensor (see lowbit.quantize), got {type(qweight).__name__}")
    if qweight.ndim != 2:
        raise ValueError(f"qweight must be 2-D (N, K), got shape {qweight.shape}")
    if qweight.scheme not in _AFFINE_LIKE:
        raise ValueError(f"qweight has scheme {qweight.scheme!r}; the int8 linear needs an affine int8 weight "
                         "(scheme 'absmax')")
    if qweight.group_size is not None:
        raise ValueError(f"qweight is {qweight.granularity}; the int8 linear supports per-tensor or "
                         "per-output-channel (axis=0) scales: quantize with axis=0")
    if qweight.axis is not None and qweight.axis % 2 != 0:
        raise ValueError(f"qweight is per-channel along axis {qweight.axis}; the int8 linear needs the output "
                         "channel axis 0 of (N, K)")
    codes = qweight.unpacked_codes()
    if codes.dtype != np.int8 or not qweight.signed:
        raise ValueError(f"qweight codes must be signed int8, got {codes.dtype} (signed={qweight.signed}); "
                         "use scheme='absmax'")
    if qweight.zero_point is not None and np.any(qweight.zero_point != 0):
        raise ValueError("qweight has non-zero zero points; the int8 linear needs symmetric (absmax) weights")
    scale = np.ascontiguousarray(qweight.scale, dtype=np.float32).reshape(-1)
    if not np.isfinite(scale).all():
        raise ValueError("qweight scale holds NaN or Inf")
    return np.ascontiguousarray(codes), scale, qweight.axis is not None


def check_bias(bias, N: int) -> Optional[np.ndarray]:
    if bias is None:
        return None
    b = _args.as_float32(bias, "bias")
    if b.shape != (N,):
        raise ValueError(f"bias must have shape ({N},), got {b.shape}")
    _args.check_finite(b, "bias")
    return b


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


# ---- the native API ---------------------------------------------------------------

def as_qweight(weight, quantize, bits: int = 8) -> QTensor:
    """A weight QTensor as given, or a float (N, K) weight quantized absmax per output channel
    to ``bits`` (7 or 8)."""
    if isinstance(weight, QTensor):
        return weight
    if isinstance(bits, bool) or bits not in (7, 8):
        raise ValueError(f"bits must be 7 or 8, got {bits!r}")
    w = _args.as_float32(weight, "weight")
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (N, K), got shape {w.shape}")
    return quantize(w, bits, scheme="absmax", axis=0)


def code_range(codes: np.ndarray) -> Tuple[int, int]:
    """(min, max) of int8 codes ((0, 0) if empty): picks the layout a variant packs them in."""
    if codes.size == 0:
        return 0, 0
    return int(codes.min()), int(codes.max())


def pack_weight(codes: np.ndarray, lo: int, hi: int) -> Tuple[np.ndarray, str]:
    """The active int8 variant's packing of weight codes (N, K) whose values lie in [lo, hi]:
    (packed uint8 bytes, layout name). Each variant declares its layouts (``_C.int8_layouts()``);
    7-bit codes get a narrow one where a variant has one (the AVX2 u7 kernel)."""
    N, K = codes.shape
    layout = _C.int8_pick_layout(lo, hi)
    return _C.int8_pack_weights(codes.reshape(-1), N, K, layout), layout


def int8_matmul(a, b, *, a_zero_point=0, b_zero_point=0) -> np.ndarray:
    """``acc[m, n] = sum_k (a[m, k] - a_zero_point) * (b[n, k] - b_zero_point)`` exactly, as int32.

    ``a``: (M, K) int8 or uint8; ``b``: (N, K) int8 (the weight layout); zero points are
    int scalars within the operand's dtype range.
    """
    a, b, za, zb, M, N, K = check_matmul(a, b, a_zero_point, b_zero_point)
    if M == 0 or N == 0:
        return np.zeros((M, N), np.int32)
    acc = _C.int8_matmul(a.reshape(-1), M, K, za, b.reshape(-1), N, zb)
    return acc.reshape(M, N)


class Linear:
    """A dynamic int8 linear layer: ``y = x @ W.T + bias`` with int8 weights and activations.

    ``weight``: a float (N, K) array (quantized absmax per output channel to ``bits``)
    or an int8 weight QTensor (per-tensor or axis=0 absmax). The weight is packed
    once into the kernel's panel layout; each call quantizes ``x`` (..., K) per token
    (8 bits, SPEC 5) and returns float32 (..., N).

    ``bits=7`` quantizes the weight to [-63, 63]: weights whose codes all lie in
    [-64, 63] run on the fast kernel on AVX2 (vpmaddubsw: twice the products per
    instruction, still exact); an int8 QTensor whose codes happen to fit takes it too. On
    VNNI CPUs every int8 weight runs on one vpdpbusd kernel.
    """

    def __init__(self, weight, bias=None, *, bits: int = 8):
        qweight = as_qweight(weight, _quantize, bits)
        codes, sb, per_channel = check_qweight(qweight)
        check_weight_fits(codes)
        self.qweight = qweight
        self.out_features, self.in_features = qweight.shape
        self.bias = check_bias(bias, self.out_features)
        self._sb, self._per_channel = sb, per_channel
        self._codes = codes
        self._range = code_range(codes)
        self._pack = pack_weight(codes, *self._range)  # (packed bytes, layout): one attribute, swapped whole

    def _packed_for_active(self) -> Tuple[np.ndarray, str]:
        """The weight packed for the layout the active int8 variant wants: packed once, and
        again only if another variant becomes active (lowbit.use_kernel, use_isa)."""
        pack = self._pack
        if _C.int8_pick_layout(*self._range) != pack[1]:
            pack = self._pack = pack_weight(self._codes, *self._range)
        return pack

    @property
    def fast(self) -> bool:
        """True if every weight code lies in [-64, 63] (7-bit weights): on AVX2 these run on the
        u7 kernel; the VNNI variants run every int8 weight at that speed."""
        return -64 <= self._range[0] and self._range[1] <= 63

    @property
    def layout(self) -> str:
        """The packed layout the weight runs on with the active int8 variant (e.g. ``"u8x4.n32"``)."""
        return self._packed_for_active()[1]

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight={self.qweight.granularity} int8, "
                f"kernel={self.layout})")

    def _run(self, x, want_y: bool, want_acc: bool):
        x, M = check_linear_x(x, self.in_features)
        N = self.out_features
        try:
            packed, layout = self._packed_for_active()
            y, acc, s = _C.int8_linear(x.reshape(-1), M, self.in_features, packed, layout, N, self._sb,
                                       self._per_channel, self.bias, want_y, want_acc)
        except _C.NonFiniteError:
            raise ValueError(_args.nonfinite_message(x)) from None
        lead = x.shape[:-1]
        return (None if y is None else y.reshape(lead + (N,)),
                None if acc is None else acc.reshape(lead + (N,)), s.reshape(lead + (1,)))

    def __call__(self, x) -> np.ndarray:
        return self._run(x, True, False)[0]

    def accumulators(self, x) -> Tuple[np.ndarray, np.ndarray]:
        """The kernel's exact int32 accumulators (..., N) and the activation factors s (..., 1)."""
        _, acc, s = self._run(x, False, True)
        return acc, s


def linear(x, qweight: QTensor, bias=None, *, activation_scale=None, activation_zero_point=0) -> np.ndarray:
    """``y = (sa[m] * sb[n]) * float(acc[m, n]) (+ bias[n])`` for x (..., K) float and an int8
    weight QTensor (N, K); activations are quantized per token (SPEC 5), ``sa = 1 / s``.

    Static path: with ``activation_scale`` (a calibrated step size, e.g. from
    ``lowbit.Observer(...).qparams()``) and ``activation_zero_point`` (0: int8 codes;
    otherwise uint8 codes with that zero point), activations are quantized with those
    fixed parameters (SPEC 1), the bias is quantized to int32 with ``quantize_bias``
    and added to the accumulators, and ``y = (sa * sb[n]) * float(acc[m, n] + qbias[n])``.

    Packs the weight on every call: build a :class:`Linear` to pay that once.
    """
    if not isinstance(qweight, QTensor):
        raise TypeError(f"qweight must be a QTensor (see lowbit.quantize), got {type(qweight).__name__}")
    if activation_scale is not None:
        from .calibration import quantize_bias
        return static_linear(x, qweight, bias, activation_scale, activation_zero_point, int8_matmul, quantize_bias)
    if activation_zero_point != 0:
        raise ValueError("activation_zero_point needs activation_scale (the static int8 path)")
    return Linear(qweight, bias)(x)


def static_linear(x, qweight, bias, activation_scale, activation_zero_point, matmul, quantize_bias):
    """The static int8 path of :func:`linear`, shared with the reference (which passes its own
    ``matmul`` and ``quantize_bias``): activation codes with fixed parameters, exact int32
    accumulators plus the int32 bias, one float32 scale per output channel."""
    codes, sb, per_channel = check_qweight(qweight)
    N, K = codes.shape
    if isinstance(activation_scale, bool) or not isinstance(activation_scale, numbers.Real):
        raise TypeError(f"activation_scale must be a positive float, got {activation_scale!r}")
    sx = np.float32(activation_scale)
    if not (np.isfinite(sx) and sx > 0):
        raise ValueError(f"activation_scale must be a finite positive number, got {activation_scale!r}")
    if isinstance(activation_zero_point, bool) or not isinstance(activation_zero_point, numbers.Integral) \
            or not 0 <= activation_zero_point <= 255:
        raise ValueError(f"activation_zero_point must be an int in 0..255, got {activation_zero_point!r}")
    zp = int(activation_zero_point)
    x = _args.as_float32(x)
    if x.ndim < 1 or x.shape[-1] != K:
        raise ValueError(f"x must have shape (..., {K}) to match the weight (N, K) = {codes.shape}, got {x.shape}")
    _args.check_finite(x)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    qmin, qmax, dtype = (-128, 127, np.int8) if zp == 0 else (0, 255, np.uint8)
    inv = np.float32(1) / sx
    with np.errstate(over="ignore"):
        prod = (x2 * inv).astype(np.float32)
    q = np.clip(np.rint(np.clip(prod, -2.0 ** 20, 2.0 ** 20)).astype(np.int64) + zp, qmin, qmax).astype(dtype)
    acc = matmul(q, codes, a_zero_point=zp).astype(np.int64)
    if bias is not None:
        b = check_bias(bias, N)
        acc = acc + quantize_bias(b, sb if per_channel else np.float32(sb[0]), float(sx)).astype(np.int64)
    sbn = np.broadcast_to(sb if per_channel else sb[:1], (N,)).astype(np.float32)
    y = ((sx * sbn)[None, :].astype(np.float32) * acc.astype(np.float32)).astype(np.float32)
    return y.reshape(lead + (N,))
