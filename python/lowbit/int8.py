"""int8 GEMM and the dynamic int8 linear layer (SPEC 7).

- ``int8_matmul(a, b)``: exact integer matmul of int8/uint8 ``a`` (M, K) with int8
  ``b`` (N, K) (weight layout), with scalar zero points, int32 result.
- ``linear(x, qweight, bias)``: per-token int8 activations (SPEC 5), the int8 GEMM,
  and ``y = (sa[m] * sb[n]) * float(acc) + bias[n]`` with ``sa = 1 / s`` (float32),
  all in one native call.
- ``Linear(weight, bias)``: quantizes (absmax, per output channel) and packs the
  weight once; calling it on activations only quantizes them and multiplies.
  ``linear(x, qweight)`` packs a QTensor's weight on its first call and keeps the
  packing with the QTensor (:meth:`QTensor.derived`), so later calls do not repack.

Exactness: every kernel variant's products cannot saturate (int16 pair sums of widened
operands on AVX2, vpmaddubsw with 7-bit weights, vpdpbusd on VNNI) and accumulate in
wrapping int32. Results are exact whenever the true values fit in int32; inputs for which
``K * max|a - za| * max|b - zb|`` could reach 2**31 are rejected with ValueError (for int8
without zero points that allows K up to 131072 for every value but the all -128 x -128
corner at K = 131072, whose true result 2**31 does not fit). Weights are packed in the
layout the active int8 variant declares (``Linear.layout``), once, and again only if
another variant becomes active.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from . import _args, _C
from ._checks.int8 import (check_dynamic_zero_point, check_linear_x, check_matmul, check_qweight, check_static,
                           check_weight_bits, check_weight_fits)
from .affine import quantize as _quantize
from .calibration import quantize_bias
from .qtensor import QTensor

__all__ = ["int8_matmul", "linear", "Linear"]


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


class PreparedWeight:
    """An int8 weight QTensor prepared for the kernel: checked once, packed once for the
    layout of the active int8 variant, and again only if another variant becomes active
    (``lowbit.use_kernel("int8", ...)``, ``use_isa``)."""
    __slots__ = ("codes", "range", "sb", "per_channel", "_pack")

    def __init__(self, codes: np.ndarray, sb: np.ndarray, per_channel: bool):
        self.codes, self.sb, self.per_channel = codes, sb, per_channel
        self.range = code_range(codes)
        self._pack = pack_weight(codes, *self.range)  # (packed bytes, layout): one attribute, swapped whole

    def packed(self) -> Tuple[np.ndarray, str]:
        """(packed bytes, layout name) for the active int8 variant."""
        pack = self._pack
        if _C.int8_pick_layout(*self.range) != pack[1]:
            pack = self._pack = pack_weight(self.codes, *self.range)
        return pack


def _prepare(qweight: QTensor) -> PreparedWeight:
    codes, sb, per_channel = check_qweight(qweight, QTensor.unpacked_codes)
    check_weight_fits(codes)
    return PreparedWeight(codes, sb, per_channel)


def packed_weight(qweight: QTensor) -> PreparedWeight:
    """The weight checked and packed for the kernel, built on first use and kept with the QTensor."""
    return qweight.derived("int8.linear", _prepare)


def _run(x, w: PreparedWeight, N: int, K: int, bias, want_y: bool, want_acc: bool):
    x, M = check_linear_x(x, K)
    packed, layout = w.packed()
    try:
        y, acc, s = _C.int8_linear(x.reshape(-1), M, K, packed, layout, N, w.sb, w.per_channel, bias, want_y,
                                   want_acc)
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x)) from None
    lead = x.shape[:-1]
    return (None if y is None else y.reshape(lead + (N,)),
            None if acc is None else acc.reshape(lead + (N,)), s.reshape(lead + (1,)))


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
        if not isinstance(weight, QTensor):
            weight = _quantize(check_weight_bits(weight, bits), bits, scheme="absmax", axis=0)
        self._w = packed_weight(weight)
        self.qweight = weight
        self.out_features, self.in_features = weight.shape
        self.bias = _args.check_bias(bias, self.out_features)

    @property
    def fast(self) -> bool:
        """True if every weight code lies in [-64, 63] (7-bit weights): on AVX2 these run on the
        u7 kernel; the VNNI variants run every int8 weight at that speed."""
        lo, hi = self._w.range
        return -64 <= lo and hi <= 63

    @property
    def layout(self) -> str:
        """The packed layout the weight runs on with the active int8 variant (e.g. ``"u8x4.n32"``)."""
        return self._w.packed()[1]

    @property
    def _range(self) -> Tuple[int, int]:
        return self._w.range

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight={self.qweight.granularity} int8, "
                f"kernel={self.layout})")

    def __call__(self, x) -> np.ndarray:
        return _run(x, self._w, self.out_features, self.in_features, self.bias, True, False)[0]

    def accumulators(self, x) -> Tuple[np.ndarray, np.ndarray]:
        """The kernel's exact int32 accumulators (..., N) and the activation factors s (..., 1)."""
        _, acc, s = _run(x, self._w, self.out_features, self.in_features, None, False, True)
        return acc, s


def linear(x, qweight: QTensor, bias=None, *, activation_scale=None, activation_zero_point=0) -> np.ndarray:
    """``y = (sa[m] * sb[n]) * float(acc[m, n]) (+ bias[n])`` for x (..., K) float and an int8
    weight QTensor (N, K); activations are quantized per token (SPEC 5), ``sa = 1 / s``.

    Static path: with ``activation_scale`` (a calibrated step size, e.g. from
    ``lowbit.Observer(...).qparams()``) and ``activation_zero_point`` (0: int8 codes;
    otherwise uint8 codes with that zero point), activations are quantized with those
    fixed parameters (SPEC 1), the bias is quantized to int32 with ``quantize_bias``
    and added to the accumulators, and ``y = (sa * sb[n]) * float(acc[m, n] + qbias[n])``.

    The weight is packed on the first call and the packing kept with the QTensor
    (its arrays are read-only), so repeated calls cost what a :class:`Linear` costs.
    """
    if not isinstance(qweight, QTensor):
        raise TypeError(f"qweight must be a QTensor (see lowbit.quantize), got {type(qweight).__name__}")
    if activation_scale is not None:
        return _static_linear(x, qweight, bias, activation_scale, activation_zero_point)
    check_dynamic_zero_point(activation_zero_point)
    w = packed_weight(qweight)
    N, K = qweight.shape
    return _run(x, w, N, K, _args.check_bias(bias, N), True, False)[0]


def _static_linear(x, qweight: QTensor, bias, activation_scale, activation_zero_point) -> np.ndarray:
    """The static int8 path of :func:`linear`: activation codes with fixed parameters, exact
    int32 accumulators (native int8_matmul) plus the int32 bias, one float32 scale per output."""
    codes, sb, per_channel = check_qweight(qweight, QTensor.unpacked_codes)
    N, K = codes.shape
    x, sx, zp = check_static(x, K, codes.shape, activation_scale, activation_zero_point)
    b = _args.check_bias(bias, N)
    lead = x.shape[:-1]
    qmin, qmax, dtype = (-128, 127, np.int8) if zp == 0 else (0, 255, np.uint8)
    inv = np.float32(1) / sx
    with np.errstate(over="ignore"):
        prod = (x.reshape(-1, K) * inv).astype(np.float32)
    q = np.clip(np.rint(np.clip(prod, -2.0 ** 20, 2.0 ** 20)).astype(np.int64) + zp, qmin, qmax).astype(dtype)
    acc = int8_matmul(q, codes, a_zero_point=zp).astype(np.int64)
    if b is not None:
        acc = acc + quantize_bias(b, sb if per_channel else np.float32(sb[0]), float(sx)).astype(np.int64)
    sbn = np.broadcast_to(sb if per_channel else sb[:1], (N,)).astype(np.float32)
    y = ((sx * sbn)[None, :].astype(np.float32) * acc.astype(np.float32)).astype(np.float32)
    return y.reshape(lead + (N,))
