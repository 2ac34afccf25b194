"""torch.nn modules whose forward runs on lowbit's kernels (inference only).

- :class:`Linear`: int8 weights (absmax, one scale per output channel) and dynamic
  per-token int8 activations on lowbit's exact int8 GEMM; ``bits=7`` quantizes the
  weights to [-63, 63] so they run on the faster u7 kernel.
- :class:`BitLinear`: ternary {-1, 0, +1} or binary {-1, +1} weights, packed, on
  the ternary/binary matmul (BitNet).
- :class:`WeightOnlyLinear`: any other lowbit scheme (int4 per group, nf4,
  k-means, ...): no integer kernel exists for those, so the weight is
  **dequantized to float32 on every forward** and multiplied by torch
  (memory-saving storage, float compute).

The modules keep their kernel buffers in float32 on the CPU whatever
``module.to(dtype)`` asks: the stored weight never changes, inputs of any float
dtype are converted once and outputs come back in the input's dtype. Autograd
does not flow through them (inference only).
"""
from __future__ import annotations

import json
from typing import Dict, Optional

import numpy as np
import torch

from .. import _args
from ..int8 import Linear as _Int8Layer
from ..qtensor import QTensor
from ..ternary import BinaryWeight, PackedWeight, TernaryWeight
from . import _ops

__all__ = ["Linear", "BitLinear", "WeightOnlyLinear", "LowbitModule"]


def _float32_numpy(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A float32 copy of a float weight/bias of any float dtype (bf16/fp16 widen exactly)."""
    if t is None:
        return None
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().copy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing the NumPy array's memory (buffers of the kernels; never written)."""
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only arrays
        a = a.copy()
    return torch.from_numpy(a)


def _int8_kernel_arrays(layer: _Int8Layer):
    """(packed weight, layout name, float32 scales) that a lowbit.Linear hands to its kernel for the
    active int8 variant: the one place that reads lowbit.Linear's ``PreparedWeight``."""
    packed, layout = layer._w.packed()
    return packed, layout, layer._w.sb


def smooth_weight(w: np.ndarray, input_absmax, alpha: float):
    """SmoothQuant: (W * s, 1 / s) with ``s[k] = a[k]**alpha / max|W[:, k]|**(1 - alpha)``; features
    never seen (a = 0) or with an all-zero weight column keep s = 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"smoothing must be a number in [0, 1], got {alpha!r}")
    a = _args.as_float32(input_absmax, "input_absmax").astype(np.float64)
    if a.shape != (w.shape[1],):
        raise ValueError(f"input_absmax: expected shape ({w.shape[1]},), got {a.shape}")
    if not (np.isfinite(a).all() and (a >= 0).all()):
        raise ValueError("input_absmax: needs finite non-negative values")
    wmax = np.abs(w).max(axis=0).astype(np.float64) if w.size else np.zeros(w.shape[1])
    ok = (a > 0) & (wmax > 0)
    s = np.ones(w.shape[1])
    s[ok] = a[ok] ** alpha / wmax[ok] ** (1.0 - alpha)
    s = np.clip(s, 1e-4, 1e4).astype(np.float32)
    inv = (np.float32(1) / s).astype(np.float32)
    return (w * s).astype(np.float32), inv


class LowbitModule(torch.nn.Module):
    """Common part of the lowbit modules: CPU only, buffers kept as built."""

    in_features: int
    out_features: int

    def _apply(self, fn, recurse=True):
        # .to(dtype) / .half() / .bfloat16() / .float() leave the quantized buffers alone: the
        # module computes in float32 and returns the input's dtype. Another device is an error.
        probe = fn(torch.zeros(1))
        if isinstance(probe, torch.Tensor) and probe.device.type != "cpu":
            raise RuntimeError(f"{type(self).__name__} runs on lowbit's CPU kernels; it cannot move to "
                               f"{probe.device}")
        return self

    def state(self) -> Dict[str, np.ndarray]:
        """The arrays that rebuild this module exactly (see :meth:`from_state`)."""
        raise NotImplementedError

    def kind_meta(self) -> dict:
        return {"kind": type(self).__name__, "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None}


class Linear(LowbitModule):
    """Dynamic int8 linear: ``y = x @ W.T + b`` with int8 weights and per-token int8 activations.

    Build with :meth:`from_linear` (an ``nn.Linear``; ``bits=8`` default, ``bits=7``
    for the u7 kernel) or :meth:`from_qtensor`. The forward is
    ``torch.ops.lowbit.int8_linear``: the same kernel and the same bits as
    :class:`lowbit.Linear`.
    """

    def __init__(self, layer: _Int8Layer, input_scale=None):
        super().__init__()
        if not isinstance(layer, _Int8Layer):
            raise TypeError(f"layer must be a lowbit.Linear, got {type(layer).__name__}")
        self.layer = layer
        self.out_features, self.in_features = layer.out_features, layer.in_features
        if input_scale is not None:
            input_scale = _args.as_float32(input_scale, "input_scale")
            if input_scale.shape != (self.in_features,):
                raise ValueError(f"input_scale: expected shape ({self.in_features},), got {input_scale.shape}")
            if not (np.isfinite(input_scale).all() and (input_scale > 0).all()):
                raise ValueError("input_scale: needs finite positive values")
        packed, self.layout, sb = _int8_kernel_arrays(layer)
        self.register_buffer("packed", _tensor(packed), persistent=False)
        self.register_buffer("weight_scale", _tensor(sb), persistent=False)
        self.register_buffer("bias", None if layer.bias is None else _tensor(layer.bias), persistent=False)
        self.register_buffer("input_scale", None if input_scale is None else _tensor(input_scale), persistent=False)
        # the buffers' memory as NumPy, for the eager fast path (no per-call conversions)
        self._np = tuple(None if t is None else _ops.as_numpy(t) for t in (self.packed, self.weight_scale, self.bias))
        self._input_scale = self.input_scale   # a plain attribute: the hot path skips Module.__getattr__

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, bits: int = 8, input_absmax=None,
                    smoothing: float = 0.5) -> "Linear":
        """Quantize an ``nn.Linear`` (any float dtype): absmax per output channel to ``bits`` (8 or 7).

        ``input_absmax``: max |x| per input feature (K,) measured on calibration data. With
        it, activation outliers are moved into the weight first (SmoothQuant, Xiao et al.
        2023): ``s = input_absmax**smoothing / max|W[:, k]|**(1 - smoothing)``, the weight
        ``W * s`` is quantized and each forward computes ``(x / s) @ (W * s).T``.
        """
        w = _float32_numpy(linear.weight)
        inv = None
        if input_absmax is not None:
            w, inv = smooth_weight(w, input_absmax, smoothing)
        return cls(_Int8Layer(w, _float32_numpy(linear.bias), bits=bits), inv)

    @classmethod
    def from_qtensor(cls, qweight: QTensor, bias=None, input_scale=None) -> "Linear":
        """From an int8 absmax weight QTensor (per tensor or per output channel): no requantization.
        ``input_scale`` (K,): multiply the input by it per feature first (see :meth:`from_linear`)."""
        return cls(_Int8Layer(qweight, bias), input_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ops.direct_call_ok(x):
            packed, layout = self.layer._w.packed()   # repacked if another int8 variant became active
            return _ops.int8_linear_np(x, packed, layout, self._np[1], self._np[2], self._input_scale,
                                       self.in_features, self.out_features)
        if self.input_scale is None:
            return torch.ops.lowbit.int8_linear(x, self.packed, self.weight_scale, self.bias, None,
                                                self.in_features, self.out_features, self.layout)
        # traced (torch.compile / export): the per-feature product stays outside the operator, where
        # inductor fuses it into the op that produces x instead of making an extra pass over x
        y = torch.ops.lowbit.int8_linear(torch.mul(x, self.input_scale), self.packed, self.weight_scale, self.bias,
                                         None, self.in_features, self.out_features, self.layout)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    @property
    def kernel(self) -> str:
        """The packed layout the active int8 variant runs (e.g. ``"u7"`` on AVX2 for 7-bit weights)."""
        return self.layer._w.packed()[1]

    def state(self) -> Dict[str, np.ndarray]:
        d = {"weight." + k: v for k, v in self.layer.qweight.to_dict().items()}
        if self.layer.bias is not None:
            d["bias"] = self.layer.bias
        if self.input_scale is not None:
            d["input_scale"] = _ops.as_numpy(self.input_scale)
        return d

    @classmethod
    def from_state(cls, d: Dict[str, np.ndarray]) -> "Linear":
        qt = QTensor.from_dict({k[7:]: v for k, v in d.items() if k.startswith("weight.")})
        return cls.from_qtensor(qt, d.get("bias"), d.get("input_scale"))

    def extra_repr(self) -> str:
        smooth = ", smoothed (input_scale)" if self.input_scale is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, weight=int{8 if self.layer.qweight.bits == 8 else 7} "
                f"{self.layer.qweight.granularity}, activations=int8 per token{smooth}, kernel={self.kernel}")


class BitLinear(LowbitModule):
    """Ternary / binary linear (BitNet): weights packed once, activations int8 per token.

    ``y = quant(x) @ W_q.T * (g_w / s_x) + bias`` on ``torch.ops.lowbit.bit_linear``,
    the kernel of :class:`lowbit.BitLinear`.
    """

    def __init__(self, weight: PackedWeight, bias=None):
        super().__init__()
        if not isinstance(weight, (TernaryWeight, BinaryWeight)):
            raise TypeError(f"weight must be a lowbit.TernaryWeight or BinaryWeight, got {type(weight).__name__}")
        self.weight = weight
        self.out_features, self.in_features = weight.shape
        self.bits = weight.bits
        b = None if bias is None else _args.as_float32(bias, "bias")
        if b is not None:
            if b.shape != (self.out_features,):
                raise ValueError(f"bias: expected shape ({self.out_features},), got {b.shape}")
            _args.check_finite(b, "bias")
        self.register_buffer("packed", _tensor(weight.packed), persistent=False)
        self.register_buffer("weight_scale", _tensor(weight.scale), persistent=False)
        self.register_buffer("bias", None if b is None else _tensor(b), persistent=False)
        # the buffers' memory as NumPy (the scale flat: 1 or N values), for the eager fast path
        self._np = (_ops.as_numpy(self.packed), _ops.as_numpy(self.weight_scale).reshape(-1),
                    None if self.bias is None else _ops.as_numpy(self.bias))

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, binary: bool = False, method: Optional[str] = None,
                    axis: Optional[int] = None) -> "BitLinear":
        """Quantize an ``nn.Linear``: ternary absmean (BitNet b1.58) or binary sign by default;
        ``axis=None`` one scale per tensor, ``axis=0`` one per output channel."""
        w = _float32_numpy(linear.weight)
        if binary:
            pw = BinaryWeight.from_float(w, method or "sign", axis=axis)
        else:
            pw = TernaryWeight.from_float(w, method or "absmean", axis=axis)
        return cls(pw, _float32_numpy(linear.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ops.direct_call_ok(x):
            return _ops.bit_linear_np(x, *self._np, self.in_features, self.out_features, self.bits)
        return torch.ops.lowbit.bit_linear(x, self.packed, self.weight_scale, self.bias, self.in_features,
                                           self.out_features, self.bits)

    def state(self) -> Dict[str, np.ndarray]:
        layout = "2bit" if self.bits == 2 else "1bit"  # the canonical SPEC 6 layout, not the kernel's
        d = {"weight." + k: v for k, v in self.weight.to_dict(layout).items()}
        if self.bias is not None:
            d["bias"] = _ops.as_numpy(self.bias)
        return d

    @classmethod
    def from_state(cls, d: Dict[str, np.ndarray], binary: bool) -> "BitLinear":
        wd = {k[7:]: v for k, v in d.items() if k.startswith("weight.")}
        pw = (BinaryWeight if binary else TernaryWeight).from_dict(wd)
        return cls(pw, d.get("bias"))

    def extra_repr(self) -> str:
        kind = "ternary" if self.bits == 2 else "binary"
        gran = "per-channel" if self.weight.scale.shape[0] > 1 else "per-tensor"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weight={kind} {gran} ({self.weight.method}), activations=int8 per token")


class WeightOnlyLinear(LowbitModule):
    """A linear layer whose weight is stored in any lowbit scheme and **dequantized on the fly**.

    No integer kernel exists for these schemes (int4 per group, nf4, k-means ...):
    each forward dequantizes the weight to float32 (``torch.ops.lowbit.dequantize``,
    lowbit's native dequantizer) and multiplies in torch, in the input's dtype.
    Storage is small; speed is that of a float linear plus the dequantization.
    """

    def __init__(self, qweight: QTensor, bias=None):
        super().__init__()
        if not isinstance(qweight, QTensor):
            raise TypeError(f"qweight must be a lowbit.QTensor, got {type(qweight).__name__}")
        if len(qweight.shape) != 2:
            raise ValueError(f"qweight must be 2-D (out_features, in_features), got shape {qweight.shape}")
        qweight.validate()
        self.qweight = qweight
        self.out_features, self.in_features = qweight.shape
        d = qweight.to_dict()
        self.qmeta = bytes(d["qmeta"]).decode()
        self._qmeta_obj = json.loads(self.qmeta)
        b = None if bias is None else _args.as_float32(bias, "bias")
        if b is not None:
            if b.shape != (self.out_features,):
                raise ValueError(f"bias: expected shape ({self.out_features},), got {b.shape}")
            _args.check_finite(b, "bias")
        for name in ("codes", "scale", "zero_point", "codebook"):
            self.register_buffer(name, _tensor(d[name]) if name in d else None, persistent=False)
        self.register_buffer("bias", None if b is None else _tensor(b), persistent=False)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, scheme: str = "int4", *, granularity: Optional[str] = None
                    ) -> "WeightOnlyLinear":
        """Quantize an ``nn.Linear`` with a scheme of ``lowbit quantize`` (``"int4"``, ``"nf4"``,
        ``"kmeans4"``, ``"uint4"`` ...) and its default granularity unless one is given
        (``"channel"``, ``"tensor"``, ``"group:128"``)."""
        from ..checkpoint import axis_group, get_scheme, parse_granularity
        spec = get_scheme(scheme)
        if spec.output != "safetensors":
            raise ValueError(f"scheme {spec.name!r} writes GGUF blocks; the weight-only module takes lowbit's own "
                             "schemes (int2..int8, uint2..uint8, nf4, kmeans2..kmeans8)")
        axis, gs = axis_group(parse_granularity(granularity or spec.default_granularity), 2)
        qt = spec.build(_float32_numpy(linear.weight), axis, gs, None, None)
        if not isinstance(qt, QTensor):
            raise ValueError(f"scheme {spec.name!r} did not give a QTensor")
        return cls(qt, _float32_numpy(linear.bias))

    def dequantized_weight(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        op = _ops.dequantize_impl if _ops.direct_call_ok(self.codes if x is None else x) else \
            torch.ops.lowbit.dequantize
        return op(self.codes, self.scale, self.zero_point, self.codebook, self.qmeta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight(x)
        if x.dtype != torch.float32:
            w = w.to(x.dtype)
        b = self.bias if self.bias is None or x.dtype == torch.float32 else self.bias.to(x.dtype)
        return torch.nn.functional.linear(x, w, b)

    def state(self) -> Dict[str, np.ndarray]:
        d = {"weight." + k: v for k, v in self.qweight.to_dict().items()}
        if self.bias is not None:
            d["bias"] = _ops.as_numpy(self.bias)
        return d

    @classmethod
    def from_state(cls, d: Dict[str, np.ndarray]) -> "WeightOnlyLinear":
        qt = QTensor.from_dict({k[7:]: v for k, v in d.items() if k.startswith("weight.")})
        return cls(qt, d.get("bias"))

    def extra_repr(self) -> str:
        q = self.qweight
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"weight={q.scheme} {q.bits}-bit {q.granularity} ({q.bits_per_weight:.3g} bits/weight), "
                "dequantized to float32 on every forward")
