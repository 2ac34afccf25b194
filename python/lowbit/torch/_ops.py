"""lowbit's kernels as torch custom operators (``torch.ops.lowbit.*``).

Each operator takes only tensors and plain scalars, so ``torch.compile`` keeps
it in the graph (a fake implementation gives the output's shape and dtype
without running it) and ``torch.export`` records it as one node:

- ``lowbit::int8_linear(x, packed, scale, bias, input_scale, in_features, out_features, layout)``:
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

In plain eager mode the modules call the same implementations directly
(:func:`direct_call_ok`), which saves the dispatcher's Python round trip.

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

__all__ = ["as_numpy", "int8_linear", "bit_linear", "dequantize", "direct_call_ok"]

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def direct_call_ok(x) -> bool:
    """True in plain eager execution: the modules may then call the implementations below
    directly, skipping the dispatcher's round trip into Python (about 40 us per call, as
    much as a small matmul). Under torch.compile / export / jit tracing, with tensor
    subclasses (FakeTensor ...) or any torch function / dispatch mode active they go
    through ``torch.ops.lowbit.*`` so the operator is seen and recorded."""
    return (not torch.compiler.is_compiling() and type(x) is torch.Tensor
            and not torch.jit.is_tracing() and not torch._C._is_torch_function_mode_enabled()
            and torch._C._len_torch_dispatch_stack() == 0)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor's memory (no copy; the tensor must be contiguous)."""
    return t.detach().numpy()


def _input_numpy(x: torch.Tensor, K: int, op: str, input_scale: Optional[torch.Tensor] = None) -> np.ndarray:
    """x (..., K) as a float32 C-contiguous NumPy array (M, K): a view of x itself when x is
    contiguous float32 (and no input_scale), else one conversion pass."""
    if type(x) is not torch.Tensor and not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    dt = x.dtype
    if dt is not torch.float32 and dt is not torch.bfloat16 and dt is not torch.float16:
        raise TypeError(f"{op}: x must be float32, bfloat16 or float16, got {dt}")
    if x.device.type != "cpu":
        raise ValueError(f"{op}: lowbit runs on the CPU; x is on {x.device} (move the input with .cpu())")
    shape = x.shape
    if not shape or shape[-1] != K:
        raise ValueError(f"{op}: x must have shape (..., {K}) (in_features={K}), got {tuple(shape)}")
    if x.requires_grad:
        x = x.detach()
    if input_scale is not None:   # one pass: float32 product (bf16/fp16 * float32 promotes to float32)
        x = torch.mul(x, input_scale)
    elif dt is not torch.float32:
        x = x.to(torch.float32)   # one conversion
    if not x.is_contiguous():
        x = x.contiguous()
    return x.numpy().reshape(-1, K)


def _nonfinite(xn: np.ndarray, op: str) -> ValueError:
    return ValueError(f"{op}: " + _args.nonfinite_message(xn))


def _opt(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if t is None else as_numpy(t)


def _result(y: np.ndarray, x: torch.Tensor, N: int) -> torch.Tensor:
    out = torch.from_numpy(y.reshape(tuple(x.shape[:-1]) + (N,)))
    return out if x.dtype is torch.float32 else out.to(x.dtype)


# ---- int8 linear -----------------------------------------------------------------

def int8_linear_np(x: torch.Tensor, packed: np.ndarray, layout: str, scale: np.ndarray, bias: Optional[np.ndarray],
                   input_scale: Optional[torch.Tensor], K: int, N: int) -> torch.Tensor:
    """The work of ``lowbit::int8_linear`` with the weight arrays already viewed as NumPy."""
    xn = _input_numpy(x, K, "int8_linear", input_scale)
    M = xn.shape[0]
    if M == 0 or N == 0:
        return torch.zeros(tuple(x.shape[:-1]) + (N,), dtype=x.dtype)
    try:
        y = _C.int8_linear(xn.reshape(-1), M, K, packed, layout, N, scale, scale.size > 1, bias, True, False)[0]
    except _C.NonFiniteError:
        raise _nonfinite(xn, "int8_linear") from None
    return _result(y, x, N)


def int8_linear_impl(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                     input_scale: Optional[torch.Tensor], in_features: int, out_features: int,
                     layout: str) -> torch.Tensor:
    """Dynamic int8 linear on lowbit's kernel; ``packed`` is the active int8 variant's packing
    (named ``layout``) of the int8 weight codes, ``scale`` float32 (N,) or (1,),
    ``input_scale`` None or float32 (K,) multiplied into x first."""
    return int8_linear_np(x, as_numpy(packed), layout, as_numpy(scale), _opt(bias), input_scale, in_features,
                          out_features)


int8_linear = torch.library.custom_op("lowbit::int8_linear", int8_linear_impl, mutates_args=())


@int8_linear.register_fake
def _int8_linear_fake(x, packed, scale, bias, input_scale, in_features, out_features, layout):
    torch._check(x.shape[-1] == in_features)
    return x.new_empty(tuple(x.shape[:-1]) + (out_features,))


# ---- packed ternary / binary matmul ----------------------------------------------

def bit_linear_np(x: torch.Tensor, packed: np.ndarray, scale: np.ndarray, bias: Optional[np.ndarray],
                  K: int, N: int, bits: int) -> torch.Tensor:
    """The work of ``lowbit::bit_linear`` with the weight arrays already viewed as NumPy."""
    xn = _input_numpy(x, K, "bit_linear")
    M = xn.shape[0]
    out = np.empty((M, N), np.float32)
    if M and N:
        if K == 0:
            out[...] = 0 if bias is None else bias
        else:
            try:
                _C.tl_matmul_f32(xn, packed, N, K, bits, scale.reshape(-1), bias, out)
            except _C.NonFiniteError:
                raise _nonfinite(xn, "bit_linear") from None
    return _result(out, x, N)


def bit_linear_impl(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                    in_features: int, out_features: int, bits: int) -> torch.Tensor:
    """Packed ternary (bits=2) / binary (bits=1) matmul with per-token int8 activations;
    ``packed`` is the kernel layout of a TernaryWeight / BinaryWeight, ``scale`` (1, 1) or (N, 1)."""
    return bit_linear_np(x, as_numpy(packed), as_numpy(scale), _opt(bias), in_features, out_features, bits)


bit_linear = torch.library.custom_op("lowbit::bit_linear", bit_linear_impl, mutates_args=())


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


def dequantize_impl(codes: torch.Tensor, scale: torch.Tensor, zero_point: Optional[torch.Tensor],
               codebook: Optional[torch.Tensor], qmeta: str) -> torch.Tensor:
    """The float32 weight of the QTensor whose arrays are given and whose JSON record is ``qmeta``."""
    return torch.from_numpy(qtensor_from_tensors(codes, scale, zero_point, codebook, qmeta).dequantize())


dequantize = torch.library.custom_op("lowbit::dequantize", dequantize_impl, mutates_args=())


@dequantize.register_fake
def _dequantize_fake(codes, scale, zero_point, codebook, qmeta):
    return codes.new_empty(_qmeta(qmeta)["shape"], dtype=torch.float32)
