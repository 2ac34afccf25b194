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


def _check_input(x, K: int, op: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    dt = x.dtype
    if dt is not torch.float32 and dt is not torch.bfloat16 and dt is not torch.float16:
        raise TypeError(f"{op}: x must be float32, bfloat16 or float16, got {dt}")
    if x.device.type != "cpu":
        raise ValueError(f"{op}: lowbit runs on the CPU; x is on {x.device} (move the input with .cpu())")
    shape = x.shape
    if not shape or shape[-1] != K:
        raise ValueError(f"{op}: x must have shape (..., {K}) (in_features={K}), got {tuple(shape)}")


def _plain(x: torch.Tensor, K: int) -> bool:
    """x can go to the kernel as it is: a contiguous, non-empty float32 CPU tensor (..., K) without grad."""
    return (x.dtype is torch.float32 and x.is_cpu and not x.requires_grad and x.is_contiguous() and x.dim() > 0
            and x.shape[-1] == K and x.numel() > 0)


# x * input_scale (SmoothQuant) goes into a reused float32 buffer: the product never leaves the
# call, and a fresh multi-megabyte temporary per call costs more in page faults (the allocator
# returns freed memory to the OS, the next call faults it in again) than the multiply itself.
# A list, so that threads never share a buffer (pop/append are atomic); two buffers at most kept,
# none larger than _SCRATCH_MAX_BYTES kept.
# Products under _SCRATCH_MIN elements (128 KiB: glibc's smallest mmap threshold) are plain
# temporaries: small blocks are recycled by malloc without faults, and slicing a buffer costs more.
_scratch: list = []
_SCRATCH_KEEP = 2
_SCRATCH_MIN = 32768
_SCRATCH_MAX_BYTES = 64 << 20


def _scaled(x: torch.Tensor, input_scale: torch.Tensor):
    """(x * input_scale as a contiguous float32 tensor, the scratch buffer holding it or None); give
    the buffer back with _release once the kernel has read the product."""
    n = x.numel()
    if n < _SCRATCH_MIN:
        return torch.mul(x, input_scale).contiguous(), None
    try:
        buf = _scratch.pop()
    except IndexError:
        buf = None
    if buf is None or buf.numel() < n:
        buf = torch.empty(n, dtype=torch.float32)
    out = buf[:n].view(x.shape)
    torch.mul(x, input_scale, out=out)   # bf16/fp16 * float32 promotes to float32: one pass
    return out, buf


def _release(buf: Optional[torch.Tensor]) -> None:
    if buf is not None and len(_scratch) < _SCRATCH_KEEP and buf.numel() * 4 <= _SCRATCH_MAX_BYTES:
        _scratch.append(buf)


def _input_numpy(x: torch.Tensor, K: int, op: str, input_scale: Optional[torch.Tensor] = None):
    """(x (..., K) as a float32 C-contiguous NumPy array (M, K), scratch buffer or None): a view of x
    itself when x is contiguous float32 (and no input_scale), else one conversion pass (into a
    scratch buffer for the input_scale product: hand it to _release after the kernel)."""
    _check_input(x, K, op)
    if x.requires_grad:
        x = x.detach()
    buf = None
    if input_scale is not None:
        x, buf = _scaled(x, input_scale)
    else:
        if x.dtype is not torch.float32:
            x = x.to(torch.float32)   # one conversion
        if not x.is_contiguous():
            x = x.contiguous()
    return x.numpy().reshape(-1, K), buf


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
    """The work of ``lowbit::int8_linear`` with the weight arrays already viewed as NumPy.

    The eager hot path: a plain float32 input (see _plain) without input_scale goes to the
    kernel with no conversion and no per-call checks beyond those (the weights were
    validated when the module was built; the kernel checks sizes)."""
    if input_scale is None and _plain(x, K):
        xn = x.numpy()
        try:
            y = _C.int8_linear(xn, x.numel() // K, K, packed, layout, N, scale, scale.size > 1, bias, True, False)[0]
        except _C.NonFiniteError:
            raise _nonfinite(xn, "int8_linear") from None
        y.shape = xn.shape[:-1] + (N,)
        return torch.from_numpy(y)
    xn, buf = _input_numpy(x, K, "int8_linear", input_scale)
    try:
        M = xn.shape[0]
        if M == 0 or N == 0:
            return torch.zeros(tuple(x.shape[:-1]) + (N,), dtype=x.dtype)
        try:
            y = _C.int8_linear(xn.reshape(-1), M, K, packed, layout, N, scale, scale.size > 1, bias, True, False)[0]
        except _C.NonFiniteError:
            raise _nonfinite(xn, "int8_linear") from None
    finally:
        _release(buf)
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
    """The work of ``lowbit::bit_linear`` with the weight arrays already viewed as NumPy
    (``scale`` flat: 1 or N values). Same hot path as :func:`int8_linear_np`."""
    if _plain(x, K) and N and K:
        xn = x.numpy().reshape(-1, K)
        out = np.empty((xn.shape[0], N), np.float32)
        try:
            _C.tl_matmul_f32(xn, packed, N, K, bits, scale, bias, out)
        except _C.NonFiniteError:
            raise _nonfinite(xn, "bit_linear") from None
        out.shape = x.shape[:-1] + (N,)
        return torch.from_numpy(out)
    xn, _ = _input_numpy(x, K, "bit_linear")
    M = xn.shape[0]
    out = np.empty((M, N), np.float32)
    if M and N:
        if K == 0:
            out[...] = 0 if bias is None else bias
        else:
            try:
                _C.tl_matmul_f32(xn, packed, N, K, bits, scale, bias, out)
            except _C.NonFiniteError:
                raise _nonfinite(xn, "bit_linear") from None
    return _result(out, x, N)


def bit_linear_impl(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor],
                    in_features: int, out_features: int, bits: int) -> torch.Tensor:
    """Packed ternary (bits=2) / binary (bits=1) matmul with per-token int8 activations;
    ``packed`` is the kernel layout of a TernaryWeight / BinaryWeight, ``scale`` (1, 1) or (N, 1)."""
    return bit_linear_np(x, as_numpy(packed), as_numpy(scale).reshape(-1), _opt(bias), in_features, out_features,
                         bits)


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
