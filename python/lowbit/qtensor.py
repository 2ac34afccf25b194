"""QTensor: quantized codes plus everything needed to dequantize them."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from . import _args

__all__ = ["QTensor", "SchemeRule", "register_scheme", "scheme_rule", "is_affine_scheme", "install_ops"]


class SchemeRule(NamedTuple):
    """How a scheme's codes become values, and which codes it allows."""
    dequantize: Optional[Callable]           # fn(qt, unpacked codes) -> float32; None: scale * (code - zero_point)
    code_range: Optional[Tuple[int, int]]    # checked by QTensor.validate; None: no fixed range


# The registry of schemes QTensor knows. lowbit's own are registered once, explicitly,
# by lowbit.schemes.register_builtin_schemes() (called from lowbit/__init__.py).
_SCHEMES: Dict[str, SchemeRule] = {}


def register_scheme(name: str, dequantize: Optional[Callable] = None, *,
                    code_range: Optional[Tuple[int, int]] = None) -> None:
    """Declare a scheme. Without ``dequantize`` it is affine-like: scale * (code - zero_point).
    ``code_range=(lo, hi)``: the codes it allows, checked by :meth:`QTensor.validate`."""
    rng = None if code_range is None else (int(code_range[0]), int(code_range[1]))
    _SCHEMES[name] = SchemeRule(dequantize, rng)


def scheme_rule(name: str) -> SchemeRule:
    """The registered rule of scheme ``name``; ValueError if none is registered."""
    try:
        return _SCHEMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {name!r}") from None


# What QTensor's methods need from the families (dequantization, bit packing), installed
# by lowbit.schemes.register_builtin_schemes(): qtensor.py sits below the families it
# serves and imports none of them.
_OPS: Dict[str, Callable] = {}


def install_ops(*, dequantize: Callable, pack: Callable, unpack: Callable, unpacked_codes: Callable) -> None:
    """Set the functions behind :meth:`QTensor.dequantize`, ``pack``, ``unpack`` and ``unpacked_codes``."""
    _OPS.update(dequantize=dequantize, pack=pack, unpack=unpack, unpacked_codes=unpacked_codes)


def is_affine_scheme(name: str) -> bool:
    """True if ``name`` is registered with the affine rule ``scale * (code - zero_point)``."""
    rule = _SCHEMES.get(name) if isinstance(name, str) else None
    return rule is not None and rule.dequantize is None


@dataclass(eq=False)
class QTensor:
    """Quantized tensor: ``x_hat = scale * (codes - zero_point)`` for affine schemes.

    ``scale`` / ``zero_point`` broadcast against ``codes`` for per-tensor and
    per-channel granularity (keepdims shape); per-group ones have shape
    ``(..., n_groups)``. ``packed`` names a bit-packed layout of ``codes``
    (SPEC 6) or is None; ``codebook`` holds the values of a non-uniform scheme.
    """

    codes: np.ndarray
    scale: np.ndarray
    zero_point: Optional[np.ndarray]
    shape: Tuple[int, ...]
    bits: int
    scheme: str
    axis: Optional[int] = None
    group_size: Optional[int] = None
    signed: bool = True
    narrow: bool = False
    packed: Optional[str] = None
    codebook: Optional[np.ndarray] = None
    meta: Dict[str, object] = field(default_factory=dict)
    _derived: Dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if not isinstance(self.codes, np.ndarray):
            raise TypeError("codes must be a NumPy array")
        if self.codes.dtype not in (np.int8, np.uint8):
            raise TypeError(f"codes must be int8 or uint8, got {self.codes.dtype}")
        if self.packed is None and self.codes.shape != self.shape:
            raise ValueError(f"codes shape {self.codes.shape} does not match shape {self.shape}")
        if not isinstance(self.scale, np.ndarray) or self.scale.dtype != np.float32:
            raise TypeError("scale must be a float32 NumPy array")
        if self.zero_point is not None:
            if not isinstance(self.zero_point, np.ndarray) or self.zero_point.dtype != np.int32:
                raise TypeError("zero_point must be an int32 NumPy array or None")
            if self.zero_point.shape != self.scale.shape:
                raise ValueError(f"zero_point shape {self.zero_point.shape} != scale shape {self.scale.shape}")
        if not 1 <= int(self.bits) <= 8:
            raise ValueError(f"bits must be in 1..8, got {self.bits}")
        lay = self.layout()
        if self.scale.shape != lay.param_shape:
            raise ValueError(f"scale shape {self.scale.shape} does not fit shape {self.shape} with "
                             f"{self.granularity}: expected {lay.param_shape}")
        # A QTensor's arrays are read-only from here on (the same array objects, not copies):
        # what is derived from them (a kernel's packed weight) can then be cached with them.
        self.codes.setflags(write=False)
        self.scale.setflags(write=False)
        if self.zero_point is not None:
            self.zero_point.setflags(write=False)
        if isinstance(self.codebook, np.ndarray):
            self.codebook.setflags(write=False)

    def derived(self, key: str, build: Callable[["QTensor"], Any]) -> Any:
        """``build(self)``, computed once and kept with this QTensor (e.g. a kernel's packed weight).

        The cached value is used again only while the QTensor holds the same array
        objects and fields it was built from and the arrays are still read-only;
        otherwise (a field reassigned, ``codes.flags.writeable`` set back to True)
        it is built afresh. A view's base changed behind the QTensor's back is not
        seen: a QTensor owns the arrays it is given.
        """
        arrays = (self.codes, self.scale, self.zero_point, self.codebook)
        stamp = (self.shape, self.bits, self.scheme, self.axis, self.group_size, self.signed, self.packed)
        hit = self._derived.get(key)
        if hit is not None and hit[1] == stamp and all(a is b for a, b in zip(hit[0], arrays)):
            return hit[2]
        value = build(self)
        if not any(a is not None and a.flags.writeable for a in arrays):
            self._derived[key] = (arrays, stamp, value)
        return value

    # ---- structure -------------------------------------------------------
    def layout(self) -> _args.Layout:
        return _args.layout(self.shape, self.axis, self.group_size)[0]

    @property
    def granularity(self) -> str:
        if self.group_size is not None:
            return f"per-group({self.group_size})"
        if self.axis is not None:
            return f"per-channel(axis={self.axis})"
        return "per-tensor"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        n = self.codes.nbytes + self.scale.nbytes
        if self.zero_point is not None:
            n += self.zero_point.nbytes
        if self.codebook is not None:
            n += self.codebook.nbytes
        return n

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / max(self.size, 1)

    def __repr__(self) -> str:
        zp = "" if self.zero_point is None or not self.zero_point.any() else ", zero_point"
        pk = f", packed={self.packed!r}" if self.packed else ""
        return (f"QTensor(shape={self.shape}, scheme={self.scheme!r}, bits={self.bits}, "
                f"{self.granularity}, codes={self.codes.dtype}{pk}, scale{tuple(self.scale.shape)}{zp}, "
                f"{self.nbytes} bytes = {self.bits_per_weight:.3g} bits/weight)")

    # ---- values ----------------------------------------------------------
    def unpacked_codes(self) -> np.ndarray:
        """The codes shaped like the tensor (unpacked if ``packed``)."""
        return self.codes if self.packed is None else _OPS["unpacked_codes"](self)

    def dequantize(self, dtype=np.float32, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Float values ``scale * (codes - zero_point)`` (or the scheme's own rule): lowbit.dequantize."""
        return _OPS["dequantize"](self, dtype=dtype, out=out)

    def pack(self, layout: Optional[str] = None) -> "QTensor":
        """A copy with bit-packed codes (SPEC 6); see :func:`lowbit.packing.pack_qtensor`."""
        return _OPS["pack"](self, layout)

    def unpack(self) -> "QTensor":
        """A copy with plain int8/uint8 codes (itself if not packed)."""
        return _OPS["unpack"](self)

    # ---- serialization ---------------------------------------------------
    def to_dict(self) -> Dict[str, np.ndarray]:
        """Plain NumPy arrays (safetensors-ready); ``qmeta`` is UTF-8 JSON as uint8."""
        d = {"codes": self.codes, "scale": self.scale}
        if self.zero_point is not None:
            d["zero_point"] = self.zero_point
        if self.codebook is not None:
            d["codebook"] = self.codebook
        meta = {"format": "lowbit.qtensor", "version": 1, "shape": list(self.shape), "bits": int(self.bits),
                "scheme": self.scheme, "axis": self.axis, "group_size": self.group_size,
                "signed": bool(self.signed), "narrow": bool(self.narrow), "packed": self.packed,
                "meta": self.meta}
        d["qmeta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8).copy()
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, np.ndarray]) -> "QTensor":
        """Rebuild from :meth:`to_dict` output; every field is checked (input may be untrusted)."""
        if not isinstance(d, dict):
            raise TypeError(f"from_dict expects a dict, got {type(d).__name__}")
        for key in ("codes", "scale", "qmeta"):
            if key not in d:
                raise ValueError(f"QTensor dict is missing {key!r}")
        try:
            meta = json.loads(np.asarray(d["qmeta"], dtype=np.uint8).tobytes().decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"QTensor dict: qmeta is not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != "lowbit.qtensor":
            raise ValueError("QTensor dict: qmeta is not a lowbit.qtensor record")
        if meta.get("version") != 1:
            raise ValueError(f"QTensor dict: unsupported version {meta.get('version')!r}")
        shape = meta.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in shape):
            raise ValueError(f"QTensor dict: bad shape {shape!r}")
        bits = meta.get("bits")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
            raise ValueError(f"QTensor dict: bad bits {bits!r}")
        scheme = meta.get("scheme")
        if not isinstance(scheme, str) or scheme not in _SCHEMES:
            raise ValueError(f"QTensor dict: unknown scheme {scheme!r}")
        for key in ("axis", "group_size"):
            v = meta.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"QTensor dict: bad {key} {v!r}")
        if not isinstance(meta.get("meta", {}), dict):
            raise ValueError("QTensor dict: bad meta")
        packed = meta.get("packed")
        if packed is not None and not isinstance(packed, str):
            raise ValueError(f"QTensor dict: bad packed {packed!r}")

        def arr(key, dtype):
            v = d.get(key)
            if v is None:
                return None
            v = np.asarray(v)
            if v.dtype != dtype:
                raise ValueError(f"QTensor dict: {key} must be {np.dtype(dtype)}, got {v.dtype}")
            return np.asarray(v, order="C")  # keeps 0-d arrays 0-d

        codes = np.asarray(d["codes"])
        if codes.dtype not in (np.int8, np.uint8):
            raise ValueError(f"QTensor dict: codes must be int8 or uint8, got {codes.dtype}")
        try:
            qt = cls(codes=np.asarray(codes, order="C"), scale=arr("scale", np.float32),
                     zero_point=arr("zero_point", np.int32), shape=tuple(shape), bits=bits, scheme=scheme,
                     axis=meta.get("axis"), group_size=meta.get("group_size"),
                     signed=bool(meta.get("signed", True)), narrow=bool(meta.get("narrow", False)),
                     packed=packed, codebook=arr("codebook", np.float32), meta=meta.get("meta", {}))
        except TypeError as e:
            raise ValueError(f"QTensor dict: {e}") from None
        qt.validate()
        return qt

    def validate(self) -> None:
        """Full check of values (codes within the grid, finite scales); raises ValueError."""
        if self.axis is not None:
            _args.normalize_axis(self.axis, self.ndim)
        if not np.isfinite(self.scale).all():
            raise ValueError("QTensor: scale holds NaN or Inf")
        codes = self.unpacked_codes()  # a packed layout (sizes, padding, fields) is checked as it unpacks
        if not codes.size:
            return
        lo, hi = int(codes.min()), int(codes.max())
        code_range = scheme_rule(self.scheme).code_range
        if code_range is not None and (lo < code_range[0] or hi > code_range[1]):
            raise ValueError(f"QTensor: {self.scheme} codes span [{lo}, {hi}], outside {list(code_range)}")
        if self.scheme in _args.SCHEMES:  # absmax, minmax: the grid of bits/signed/narrow (SPEC 1)
            g = _args.grid(self.bits, self.scheme, self.signed, self.narrow)
            if lo < g.qmin or hi > g.qmax:
                raise ValueError(f"QTensor: codes span [{lo}, {hi}], outside the {self.bits}-bit grid "
                                 f"[{g.qmin}, {g.qmax}]")
            if self.zero_point is not None and self.zero_point.size:
                zl, zh = int(self.zero_point.min()), int(self.zero_point.max())
                if zl < g.qmin or zh > g.qmax:
                    raise ValueError(f"QTensor: zero points span [{zl}, {zh}], outside [{g.qmin}, {g.qmax}]")
