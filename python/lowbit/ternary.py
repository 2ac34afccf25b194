"""Packed ternary (1.58-bit) and binary matmul: the BitNet inference kernel (SPEC 5, 7).

A :class:`TernaryWeight` (or :class:`BinaryWeight`) holds an (N, K) weight
(output channels by input features) quantized once and packed in the kernel's
own layout (csrc/ternary/ternary.h), with one scale per tensor or per output
channel. :func:`ternary_matmul` quantizes the activations per token (SPEC 5:
``s = 127 / max(max|x_row|, 1e-5)``, ``q = clamp(round(x s), -128, 127)``),
computes ``acc = q @ t.T`` exactly in int32 and returns
``y = float32(acc) * (g_w / s_x)`` (+ bias). :func:`ternary_matmul_s32` takes
int8 activations and returns ``acc`` itself.

The canonical packed layouts of SPEC 6 (``"2bit"``, ``"base3"``, 1-bit) stay
the interchange format: :meth:`TernaryWeight.to_packed` / :meth:`from_packed`
convert, and :meth:`to_dict` / :meth:`from_dict` store and load a weight
without going back to floats.
"""
from __future__ import annotations

import json
import math
from typing import Dict, Optional, Tuple

import numpy as np

from . import _args, _C
from ._checks.ternary import (check_axis, check_codes, check_float_input, check_int8_input, check_out, check_scale,
                              check_shape, check_weight, tl_row_bytes)
from ._core import cache_aligned
from . import extreme as _extreme
from . import packing as _packing
from .qtensor import QTensor

__all__ = ["TernaryWeight", "BinaryWeight", "BitLinear", "ternary_matmul", "ternary_matmul_s32",
           "binary_matmul", "binary_matmul_s32"]

F32 = np.float32
_FORMAT = "lowbit.packed_weight"


# ---- packed weights ----------------------------------------------------------

class PackedWeight:
    """Common part of TernaryWeight and BinaryWeight (do not instantiate directly)."""

    bits = 0           # 2: ternary {-1, 0, 1}; 1: binary {-1, 1}
    kind = ""          # the class's name, the tag lowbit._checks.ternary.check_weight looks for
    _canonical = ()    # SPEC 6 layouts this kind converts to

    def __init__(self, packed: np.ndarray, scale, shape: Tuple[int, int], method: Optional[str] = None):
        """Wrap bytes already in the kernel layout (checked: codes in the alphabet, zero padding);
        see :meth:`from_packed` for SPEC 6 layouts."""
        N, K = (int(v) for v in shape)
        if N < 0 or K < 0:
            raise ValueError(f"shape: must be non-negative, got {shape}")
        if not isinstance(packed, np.ndarray) or packed.dtype != np.uint8:
            raise TypeError("packed: expected a uint8 NumPy array in the kernel layout")
        if packed.shape != (N, tl_row_bytes(K, self.bits)):
            raise ValueError(f"packed: expected shape {(N, tl_row_bytes(K, self.bits))} for a {(N, K)} weight, "
                             f"got {packed.shape}")
        self._set(cache_aligned(np.ascontiguousarray(packed)), check_scale(scale, N), (N, K), method)
        self._validate_kernel_bytes()

    def _set(self, packed, scale, shape, method):
        self.packed, self.scale, self.shape, self.method = packed, scale, shape, method

    @classmethod
    def _wrap(cls, packed, scale, shape, method=None):
        """Bytes this module just packed: no re-validation."""
        out = cls.__new__(cls)
        out._set(packed, scale, tuple(shape), method)
        return out

    # -- construction --
    @classmethod
    def from_codes(cls, codes, scale) -> "PackedWeight":
        """From int codes (N, K) in the alphabet and a scale (one, or one per output channel)."""
        c = check_codes(codes, cls.bits)
        s = check_scale(scale, c.shape[0])
        return cls._wrap(_C.tl_pack(c, cls.bits), s, c.shape)

    @classmethod
    def from_qtensor(cls, qt: QTensor) -> "PackedWeight":
        """From a 2-d ternary/binary QTensor with a per-tensor or per-output-channel (axis=0) scale."""
        if not isinstance(qt, QTensor):
            raise TypeError(f"expected a QTensor, got {type(qt).__name__}")
        want = "ternary" if cls.bits == 2 else "binary"
        if qt.scheme != want or len(qt.shape) != 2:
            raise ValueError(f"expected a 2-d {want} QTensor, got scheme {qt.scheme!r} with shape {qt.shape}")
        if qt.group_size is not None or qt.axis not in (None, 0):
            raise ValueError("only per-tensor or per-output-channel (axis=0) scales are supported")
        w = cls.from_codes(qt.unpacked_codes(), qt.scale)
        w.method = qt.meta.get("method") if isinstance(qt.meta, dict) else None
        return w

    # -- views --
    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def axis(self) -> Optional[int]:
        """0 if there is one scale per output channel, None for one per tensor."""
        return 0 if self.scale.shape[0] > 1 else None

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes + self.scale.nbytes)

    def codes(self) -> np.ndarray:
        """The int8 codes (N, K)."""
        N, K = self.shape
        return _C.tl_unpack(self.packed, N, K, self.bits)

    def dequantize(self) -> np.ndarray:
        """float32 (N, K): scale * code."""
        return (self.codes().astype(F32) * self.scale).astype(F32)

    def to_qtensor(self) -> QTensor:
        scheme = "ternary" if self.bits == 2 else "binary"
        return QTensor(codes=self.codes(), scale=self.scale.copy(), zero_point=None, shape=self.shape,
                       bits=self.bits, scheme=scheme, axis=self.axis, signed=True,
                       narrow=self.bits == 2, meta={"method": self.method} if self.method else {})

    def __repr__(self) -> str:
        kind = "per-channel" if self.scale.shape[0] > 1 else "per-tensor"
        return f"{type(self).__name__}(shape={self.shape}, {kind} scale, method={self.method!r})"

    # -- canonical layouts (SPEC 6) --
    def to_packed(self, layout: Optional[str] = None) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def from_packed(cls, packed, shape, scale, layout: Optional[str] = None) -> "PackedWeight":
        raise NotImplementedError

    # -- serialization --
    def to_dict(self, layout: str = "kernel") -> Dict[str, np.ndarray]:
        """Plain NumPy arrays (safetensors-ready): ``packed``, ``scale`` and ``qmeta`` (UTF-8 JSON as uint8).

        ``layout="kernel"`` stores the kernel's own bytes (loading is a copy);
        a SPEC 6 layout name stores the interchange format (loading repacks codes,
        never floats).
        """
        if layout == "kernel":
            packed = self.packed
        else:
            packed = self.to_packed(layout)
        meta = {"format": _FORMAT, "version": 1, "kind": type(self).__name__, "bits": self.bits,
                "shape": list(self.shape), "layout": layout, "method": self.method}
        return {"packed": packed, "scale": self.scale,
                "qmeta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8).copy()}

    @classmethod
    def from_dict(cls, d: Dict[str, np.ndarray]) -> "PackedWeight":
        """Rebuild from :meth:`to_dict`; every field is checked (input may be untrusted)."""
        if not isinstance(d, dict):
            raise TypeError(f"from_dict expects a dict, got {type(d).__name__}")
        for key in ("packed", "scale", "qmeta"):
            if key not in d:
                raise ValueError(f"{cls.__name__} dict is missing {key!r}")
        try:
            meta = json.loads(np.asarray(d["qmeta"], dtype=np.uint8).tobytes().decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{cls.__name__} dict: qmeta is not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != 1:
            raise ValueError(f"{cls.__name__} dict: qmeta is not a version-1 {_FORMAT} record")
        if meta.get("kind") != cls.__name__ or meta.get("bits") != cls.bits:
            raise ValueError(f"{cls.__name__} dict: holds a {meta.get('kind')!r}")
        shape = meta.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape)):
            raise ValueError(f"{cls.__name__} dict: bad shape {shape!r}")
        method = meta.get("method")
        if method is not None and not isinstance(method, str):
            raise ValueError(f"{cls.__name__} dict: bad method {method!r}")
        packed = np.asarray(d["packed"])
        if packed.dtype != np.uint8:
            raise ValueError(f"{cls.__name__} dict: packed must be uint8, got {packed.dtype}")
        layout = meta.get("layout")
        if layout == "kernel":
            N, K = shape
            if packed.shape != (N, tl_row_bytes(K, cls.bits)):
                raise ValueError(f"{cls.__name__} dict: packed has shape {packed.shape}, expected "
                                 f"{(N, tl_row_bytes(K, cls.bits))}")
            return cls(np.array(packed, copy=True), d["scale"], tuple(shape), method)
        if layout not in cls._canonical:
            raise ValueError(f"{cls.__name__} dict: unknown layout {layout!r}")
        w = cls.from_packed(packed, tuple(shape), d["scale"], layout)
        w.method = method
        return w

    def _validate_kernel_bytes(self) -> None:
        """Untrusted kernel-layout bytes: no field outside the alphabet, zero padding."""
        N, K = self.shape
        try:
            ok = np.array_equal(_C.tl_pack(_C.tl_unpack(self.packed, N, K, self.bits), self.bits), self.packed)
        except ValueError:  # a 2-bit field 3
            ok = False
        if not ok:
            raise ValueError(f"{type(self).__name__}: packed bytes hold invalid codes or non-zero padding")


class TernaryWeight(PackedWeight):
    """Ternary weight {-1, 0, +1} (N, K), packed 2 bits per value for the matmul kernel."""

    bits = 2
    kind = "TernaryWeight"
    _canonical = ("2bit", "base3")

    @classmethod
    def from_float(cls, w, method: str = "absmean", *, axis: Optional[int] = None,
                   threshold: float = 0.5) -> "TernaryWeight":
        """Quantize (lowbit.ternarize: ``"absmean"`` (BitNet b1.58), ``"twn"``, ``"threshold"``) and pack once.

        ``axis=None``: one scale for the tensor (BitNet's choice); ``axis=0``: one
        per output channel.
        """
        arr = _args.as_array(w, "w")
        if arr.ndim != 2:
            raise ValueError(f"w: expected a 2-d (out_features, in_features) weight, got shape {arr.shape}")
        axis = check_axis(axis)
        qt = _extreme.ternarize(arr, method, threshold=threshold, axis=axis)
        out = cls.from_codes(qt.codes, qt.scale)
        out.method = method
        return out

    def to_packed(self, layout: str = "2bit") -> np.ndarray:
        """The codes in a SPEC 6 layout: ``"2bit"`` (4 per byte, field q + 1) or ``"base3"`` (5 per byte)."""
        if layout not in self._canonical:
            raise ValueError(f"layout must be one of {self._canonical}, got {layout!r}")
        return _packing.pack_ternary(self.codes(), layout)

    @classmethod
    def from_packed(cls, packed, shape, scale, layout: str = "2bit") -> "TernaryWeight":
        """From SPEC 6 packed bytes (N, ceil(K/4)) or (N, ceil(K/5)) for a weight of ``shape`` (N, K)."""
        if layout not in cls._canonical:
            raise ValueError(f"layout must be one of {cls._canonical}, got {layout!r}")
        N, K = check_shape(shape)
        p = _args.as_array(packed, "packed")
        if p.ndim != 2 or p.shape[0] != N:
            raise ValueError(f"packed: expected {N} rows, got shape {p.shape}")
        return cls.from_codes(_packing.unpack_ternary(p, K, layout), scale)


class BinaryWeight(PackedWeight):
    """Binary weight {-1, +1} (N, K), packed 1 bit per value for the matmul kernel."""

    bits = 1
    kind = "BinaryWeight"
    _canonical = ("1bit",)

    @classmethod
    def from_float(cls, w, method: str = "sign", *, axis: Optional[int] = None) -> "BinaryWeight":
        """Quantize (lowbit.binarize: ``"sign"`` or ``"bitnet"``) and pack once."""
        arr = _args.as_array(w, "w")
        if arr.ndim != 2:
            raise ValueError(f"w: expected a 2-d (out_features, in_features) weight, got shape {arr.shape}")
        axis = check_axis(axis)
        qt = _extreme.binarize(arr, method, axis=axis)
        out = cls.from_codes(qt.codes, qt.scale)
        out.method = method
        return out

    def to_packed(self, layout: str = "1bit") -> np.ndarray:
        """The codes in SPEC 6's 1-bit layout (+1 -> 1, -1 -> 0, 8 per byte, LSB first)."""
        if layout not in self._canonical:
            raise ValueError(f"layout must be one of {self._canonical}, got {layout!r}")
        return _packing.pack(self.codes(), 1)

    @classmethod
    def from_packed(cls, packed, shape, scale, layout: str = "1bit") -> "BinaryWeight":
        if layout not in cls._canonical:
            raise ValueError(f"layout must be one of {cls._canonical}, got {layout!r}")
        N, K = check_shape(shape)
        p = _args.as_array(packed, "packed")
        if p.ndim != 2 or p.shape[0] != N:
            raise ValueError(f"packed: expected {N} rows, got shape {p.shape}")
        return cls.from_codes(_packing.unpack(p, 1, K, signed=True), scale)


# ---- matmuls -----------------------------------------------------------------

def _matmul_f32(x, w: PackedWeight, bias, out) -> np.ndarray:
    N, K = w.shape
    a = check_float_input(x, K)
    b = _args.check_bias(bias, N)
    lead = a.shape[:-1]
    M = math.prod(lead)
    if out is not None:
        check_out(out, lead + (N,))
    if M == 0 or N == 0:
        y = np.zeros(lead + (N,), F32) if out is None else out
        return y
    if K == 0:  # acc = 0: y = 0 (+ bias)
        y = np.zeros((M, N), F32) if out is None else out.reshape(M, N)
        y[...] = 0 if b is None else b
        return y.reshape(lead + (N,))
    try:
        y = _C.tl_matmul_f32(a.reshape(M, K), w.packed, N, K, w.bits, w.scale.reshape(-1), b,
                             None if out is None else out.reshape(M, N))
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(a)) from None
    return out if out is not None else y.reshape(lead + (N,))


def _matmul_s32(qx, w: PackedWeight) -> np.ndarray:
    N, K = w.shape
    a = check_int8_input(qx, K)
    lead = a.shape[:-1]
    M = math.prod(lead)
    if M == 0 or N == 0 or K == 0:
        return np.zeros(lead + (N,), np.int32)
    return _C.tl_matmul_s32(a.reshape(M, K), w.packed, N, K, w.bits).reshape(lead + (N,))


def ternary_matmul(x, w: TernaryWeight, *, bias=None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """y = x @ W_hat.T with x quantized per token (SPEC 5, 7): float (..., K) -> float32 (..., N)."""
    check_weight(w, "TernaryWeight")
    return _matmul_f32(x, w, bias, out)


def ternary_matmul_s32(qx, w: TernaryWeight) -> np.ndarray:
    """Exact int32 ``qx @ codes.T`` for int8 activations qx (..., K) -> (..., N)."""
    check_weight(w, "TernaryWeight")
    return _matmul_s32(qx, w)


def binary_matmul(x, w: BinaryWeight, *, bias=None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Like :func:`ternary_matmul` for a binary weight."""
    check_weight(w, "BinaryWeight")
    return _matmul_f32(x, w, bias, out)


def binary_matmul_s32(qx, w: BinaryWeight) -> np.ndarray:
    """Like :func:`ternary_matmul_s32` for a binary weight."""
    check_weight(w, "BinaryWeight")
    return _matmul_s32(qx, w)


# ---- layer -------------------------------------------------------------------

class BitLinear:
    """A BitNet linear layer for inference: ``y = quant(x) @ W_q.T * (g_w / s_x) + bias``.

    The weight is quantized and packed once (``BitLinear.from_float``) or given
    as a TernaryWeight / BinaryWeight; calling the layer runs one native matmul.
    """

    def __init__(self, weight: PackedWeight, bias=None):
        if not isinstance(weight, PackedWeight) or type(weight) is PackedWeight:
            raise TypeError(f"weight must be a TernaryWeight or BinaryWeight, got {type(weight).__name__}")
        self.weight = weight
        self.bias = _args.check_bias(bias, weight.shape[0])

    @classmethod
    def from_float(cls, w, bias=None, *, binary: bool = False, method: Optional[str] = None,
                   axis: Optional[int] = None) -> "BitLinear":
        if binary:
            tw = BinaryWeight.from_float(w, method or "sign", axis=axis)
        else:
            tw = TernaryWeight.from_float(w, method or "absmean", axis=axis)
        return cls(tw, bias)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        return _matmul_f32(x, self.weight, self.bias, out)

    def __repr__(self) -> str:
        return (f"BitLinear(in_features={self.in_features}, out_features={self.out_features}, "
                f"weight={self.weight!r}, bias={self.bias is not None})")
