"""Reference packed ternary / binary matmul (SPEC 5, 7), NumPy only.

Same signatures as lowbit.ternary; the weight objects are lowbit's own
TernaryWeight / BinaryWeight (anything with their ``kind``, ``bits``, ``shape``,
``packed`` and ``scale``), whose kernel-layout bytes are read here with NumPy
(tl_unpack), never with native code.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _args
from .._checks.ternary import check_codes, check_float_input, check_int8_input, check_out, check_weight, tl_row_bytes
from .act import quantize_activations

__all__ = ["tl_pack", "tl_unpack", "ternary_matmul", "ternary_matmul_s32", "binary_matmul", "binary_matmul_s32"]

F32 = np.float32


def tl_pack(codes, bits: int) -> np.ndarray:
    """Kernel layout (csrc/ternary/ternary.h): per block of 32 * (8 / bits) values,
    byte j holds u(k = block_start + 32 i + j) at bits [bits*i, bits*(i+1)), with
    u = q + 1 (ternary) or (q + 1) / 2 (binary); padding u = 0."""
    c = check_codes(codes, bits)
    N, K = c.shape
    planes = 8 // bits
    Kp = tl_row_bytes(K, bits) * planes
    u = np.zeros((N, Kp), np.uint8)
    u[:, :K] = (c + 1) if bits == 2 else (c + 1) // 2
    u = u.reshape(N, Kp // (32 * planes), planes, 32)
    out = np.zeros((N, Kp // (32 * planes), 32), np.uint8)
    for i in range(planes):
        out |= u[:, :, i, :] << (bits * i)
    return out.reshape(N, -1)


def tl_unpack(packed: np.ndarray, K: int, bits: int) -> np.ndarray:
    """Codes (N, K) int8 from kernel-layout bytes."""
    p = np.asarray(packed, np.uint8)
    N = p.shape[0]
    planes = 8 // bits
    blocks = p.reshape(N, -1, 32)
    u = np.stack([(blocks >> (bits * i)) & ((1 << bits) - 1) for i in range(planes)], axis=2)
    u = u.reshape(N, -1)[:, :K].astype(np.int8)
    return (u - 1) if bits == 2 else (2 * u - 1)


def _acc(q2: np.ndarray, w) -> np.ndarray:
    N, K = w.shape
    t = tl_unpack(w.packed, K, w.bits).astype(np.int64)
    acc = q2.astype(np.int64) @ t.T
    assert np.abs(acc).max(initial=0) < 2 ** 31
    return acc.astype(np.int32)


def _matmul_f32(x, w, bias, out):
    N, K = w.shape
    a = check_float_input(x, K)
    b = _args.check_bias(bias, N)
    lead = a.shape[:-1]
    if out is not None:
        check_out(out, lead + (N,))
    M = int(np.prod(lead, dtype=np.int64))
    if M == 0 or N == 0 or K == 0:
        y = np.zeros((M, N), F32)
        if b is not None and M:
            y = (y + b).astype(F32)
    else:
        qt = quantize_activations(a.reshape(M, K))          # SPEC 5, per token
        acc = _acc(qt.codes, w)                             # exact int32
        s_x = qt.scale.reshape(M, 1)                        # the factor s (x_hat = q / s)
        y = (acc.astype(F32) * (w.scale.reshape(1, -1) / s_x).astype(F32)).astype(F32)
        if b is not None:
            y = (y + b).astype(F32)
    y = y.reshape(lead + (N,))
    if out is not None:
        out[...] = y
        return out
    return y


def _matmul_s32(qx, w):
    N, K = w.shape
    a = check_int8_input(qx, K)
    lead = a.shape[:-1]
    M = int(np.prod(lead, dtype=np.int64))
    if M == 0 or N == 0 or K == 0:
        return np.zeros(lead + (N,), np.int32)
    return _acc(a.reshape(M, K), w).reshape(lead + (N,))


def ternary_matmul(x, w, *, bias=None, out: Optional[np.ndarray] = None) -> np.ndarray:
    check_weight(w, "TernaryWeight")
    return _matmul_f32(x, w, bias, out)


def ternary_matmul_s32(qx, w) -> np.ndarray:
    check_weight(w, "TernaryWeight")
    return _matmul_s32(qx, w)


def binary_matmul(x, w, *, bias=None, out: Optional[np.ndarray] = None) -> np.ndarray:
    check_weight(w, "BinaryWeight")
    return _matmul_f32(x, w, bias, out)


def binary_matmul_s32(qx, w) -> np.ndarray:
    check_weight(w, "BinaryWeight")
    return _matmul_s32(qx, w)
