"""lowbit's kernels as torch custom operators (``torch.ops.lowbit.*``).

Each operator takes only tensors and plain scalars, so ``torch.compile`` keeps
it in the graph (a fake implementation gives the output's shape and dtype
without running it) and ``torch.export`` records it as one node:

- ``lowbit::int8_linear(x, packed, scale, bias, input_scale, in_features, out_features)``:
  dynamic int8 linear (per-token int8 activations, SPEC 5; exact int32 GEMM;
  ``y = (sa * sb) * acc + bias``), the kernel behind :class:`lowbit.Linear`;
  with ``input_scale`` (K,) the input is first multiplied by it per feature
  (SmoothQuant: the weight was multiplied by its inverse before quantization).
- ``lowbit::bit_linear(x, packed, scale, bias, in_features, out_features, bits)``:
  packed ternary (bits=2) or binary (bits=1) matmul, the kernel behind
  :class:`lowbit.BitLinear`.
- ``lowbit::dequantize(codes, scale, zero_point, codebook, qmeta)``: the float32
  weight of a :class:`lowbit.QTensor` (``qmeta`` is its JSON record).

Tensors cross without copies: a contiguous float32 CPU input is handed to the
kernel as a NumPy view of the tensor's memory, the weights are views of the
module's buffers, and the kernel's output array becomes the result tensor
(``torch.from_numpy``). bfloat16/float16 inputs are converted to float32 once
and the result is converted back to the input's dtype. The kernels release the
GIL while they run.

This is the only module of ``lowbit.torch`` that calls lowbit's native entry
points (``lowbit._C``) directly; the public layers it mirrors
(:class:`lowbit.Linear`, :func:`lowbit.ternary_matmul`) are its test oracle.
"""
from __future__ import annotations

import functools
import json
from typing import Optional

import numpy as np
import torch

from .. import _args, _C
from ..qtensor import QTensor

__all__ = ["as_numpy", "int8_linear", "bit_linear", "dequantize"]

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy; the tensor must be contiguous)."""
    return t.detach().numpy()


def _check_input(x: torch.Tensor, K: int, op: str, input_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type != "cpu":
        raise ValueError(f"{op}: lowbit runs on the CPU; x is on {x.device} (move the input with .cpu())")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{op}: x must be float32, bfloat16 or float16, got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != K:
        raise ValueError(f"{op}: x must have shape (..., {K}) (in_features={K}), got {tuple(x.shape)}")
    x = x.detach()
    if input_scale is not None:  # one pass: float32 product (bf16/fp16 * float32 promotes to float32)
        return torch.mul(x, input_scale).contiguous()
    # one conversion for bf16/fp16; a copy only when x is not contiguous
    return x.to(torch.float32).contiguous()


def _nonfinite(x32: torch.Tensor, op: str) -> ValueError:
    return ValueError(f"{op}: " + _args.nonfinite_message(as_numpy(x32)))


def _opt(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else as_numpy(t)


# ---- int8 linear -----------------------------------------------------------------

@torch.library.custom_op("lowbit::int8_linear", mutates_args=())
def int8_linear(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                input_scale: Optional[torch.Tensor], in_features: int, out_features: int) -> torch.Tensor:
    """Dynamic int8 linear on lowbit's kernel; ``packed`` is the kernel's packing of the
    int8 weight codes (int8: int16 path, uint8: u7 path), ``scale`` float32 (N,) or (1,),
    ``input_scale`` None or float32 (K,) multiplied into x first."""
    K, N = in_features, out_features
    x32 = _check_input(x, K, "int8_linear", input_scale)
    lead = tuple(x.shape[:-1])
    M = x32.numel() // K
    if M == 0 or N == 0:
        return torch.zeros(lead + (N,), dtype=x.dtype)
    try:
        y, _, _ = _C.int8_linear(as_numpy(x32).reshape(-1), M, K, as_numpy(packed), N, as_numpy(scale),
                                 scale.numel() > 1, _opt(bias), True, False)
    except _C.NonFiniteError:
        raise _nonfinite(x32, "int8_linear") from None
    out = torch.from_numpy(y).view(lead + (N,))
    return out if x.dtype == torch.float32 else out.to(x.dtype)


@int8_linear.register_fake
def _int8_linear_fake(x, packed, scale, bias, input_scale, in_features, out_features):
    torch._check(x.shape[-1] == in_features)
    return x.new_empty(tuple(x.shape[:-1]) + (out_features,))


# ---- packed ternary / binary matmul ----------------------------------------------

@torch.library.custom_op("lowbit::bit_linear", mutates_args=())
def bit_linear(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
               in_features: int, out_features: int, bits: int) -> torch.Tensor:
    """Packed ternary (bits=2) / binary (bits=1) matmul with per-token int8 activations;
    ``packed`` is the kernel layout of a TernaryWeight / BinaryWeight, ``scale`` (1, 1) or (N, 1)."""
    K, N = in_features, out_features
    x32 = _check_input(x, K, "bit_linear")
    lead = tuple(x.shape[:-1])
    M = x32.numel() // K
    out = torch.empty((M, N), dtype=torch.float32)
    if M and N:
        if K == 0:
            out.zero_() if bias is None else out.copy_(bias.expand(M, N))
        else:
            try:
                _C.tl_matmul_f32(as_numpy(x32).reshape(M, K), as_numpy(packed), N, K, bits,
                                 as_numpy(scale).reshape(-1), _opt(bias), as_numpy(out))
            except _C.NonFiniteError:
                raise _nonfinite(x32, "bit_linear") from None
    out = out.view(lead + (N,))
    return out if x.dtype == torch.float32 else out.to(x.dtype)


@bit_linear.register_fake
def _bit_linear_fake(x, packed, scale, bias, in_features, out_features, bits):
    torch._check(x.shape[-1] == in_features)
    return x.new_empty(tuple(x.shape[:-1]) + (out_features,))


# ---- weight-only: dequantize on the fly ------------------------------------------

@functools.lru_cache(maxsize=256)
def _qmeta(text: str) -> dict:
    meta = json.loads(text)
    meta["shape"] = tuple(meta["shape"])
    return meta


def qtensor_from_tensors(codes: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
                         codebook: Optional[torch.Tensor], qmeta: str) -> QTensor:
    """A QTensor viewing the module's buffers (no copy; validated when the module was built)."""
    m = _qmeta(qmeta)
    return QTensor(codes=as_numpy(codes), scale=as_numpy(scale), zero_point=_opt(zero_point), shape=m["shape"],
                   bits=m["bits"], scheme=m["scheme"], axis=m["axis"], group_size=m["group_size"],
                   signed=m["signed"], narrow=m["narrow"], packed=m["packed"], codebook=_opt(codebook),
                   meta=dict(m["meta"]))


@torch.library.custom_op("lowbit::dequantize", mutates_args=())
def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
               codebook: Optional[torch.Tensor], qmeta: str) -> torch.Tensor:
    """The float32 weight of the QTensor whose arrays are given and whose JSON record is ``qmeta``."""
    return torch.from_numpy(qtensor_from_tensors(codes, scale, zero_point, codebook, qmeta).dequantize())


@dequantize.register_fake
def _dequantize_fake(codes, scale, zero_point, codebook, qmeta):
    return codes.new_empty(_qmeta(qmeta)["shape"], dtype=torch.float32)
