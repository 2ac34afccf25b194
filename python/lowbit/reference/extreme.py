"""Reference binary and ternary quantization (SPEC 5), NumPy only.

Mean-based scales need a sum, and a float64 sum depends on its order. SPEC 2
allows 2 ulp between reference and kernels; lowbit fixes one order instead, so
that kernels match this reference bit for bit (csrc/extreme/extreme.h):

    A group's values a_0 .. a_{n-1} (its elements in C order, as float64) are cut
    into blocks of SUM_BLOCK = 4096 consecutive values. In a block, lane j
    (0 <= j < 16) adds a_i for i = j, j + 16, j + 32, ... in that order,
    starting from 0.0. The block's value is the pairwise tree of its lanes:
    l[j] + l[j + 8], then + 4, + 2, + 1 apart. The group's sum adds the block
    values in order, starting from 0.0. A mean is float32(sum / n).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _args
from .._checks.extreme import BINARY_METHODS, TERNARY_METHODS, check_method, check_threshold
from ..qtensor import QTensor

__all__ = ["ternarize", "binarize", "blocked_sum", "group_matrix", "TERNARY_METHODS", "BINARY_METHODS"]

F32, F64 = np.float32, np.float64
SUM_LANES = 16
SUM_BLOCK = 4096
ABSMEAN_EPS = np.float32(1e-5)
TWN_FACTOR = 0.7


def group_matrix(x: np.ndarray, lay: _args.Layout) -> Tuple[np.ndarray, np.ndarray]:
    """Each group's elements in C order as one row of a (n_groups, m) float32
    matrix, zero-padded to the longest group, and each group's length."""
    if x.size == 0:  # every group is empty
        return np.zeros((lay.n_groups, 0), F32), np.zeros(lay.n_groups, np.int64)
    if lay.kind == "groups":
        R, L, g = lay.a, lay.b, lay.c
        ng = -(-L // g)
        x2 = np.zeros((R, ng * g), F32)
        x2[:, :L] = x.reshape(R, L)
        counts = np.full((R, ng), g, np.int64)
        if ng:
            counts[:, -1] = L - (ng - 1) * g
        return x2.reshape(R * ng, g), counts.reshape(-1)
    if lay.kind == "cols":
        rows, C = lay.a, lay.b
        return np.ascontiguousarray(x.reshape(rows, C).T), np.full(C, rows, np.int64)
    O, C, I = lay.a, lay.b, lay.c
    seq = x.reshape(O, C, I).transpose(1, 0, 2).reshape(C, O * I)
    return np.ascontiguousarray(seq), np.full(C, O * I, np.int64)


def scatter_groups(rows: np.ndarray, shape, lay: _args.Layout) -> np.ndarray:
    """Inverse of group_matrix for per-element results (codes)."""
    if rows.size == 0:
        return np.zeros(shape, rows.dtype)
    if lay.kind == "groups":
        R, L = lay.a, lay.b
        return rows.reshape(R, -1)[:, :L].reshape(shape)
    if lay.kind == "cols":
        return np.ascontiguousarray(rows.T).reshape(shape)
    O, C, I = lay.a, lay.b, lay.c
    return np.ascontiguousarray(rows.reshape(C, O, I).transpose(1, 0, 2)).reshape(shape)


def blocked_sum(a: np.ndarray) -> np.ndarray:
    """Row sums of a (G, m) array in float64, in the order the module docstring fixes.
    Zero padding after a group's end changes nothing (adding +0.0 is exact)."""
    a = np.asarray(a, F64)
    G, m = a.shape
    if m == 0:
        return np.zeros(G, F64)
    nb = -(-m // SUM_BLOCK)
    width = SUM_BLOCK if nb > 1 else -(-m // SUM_LANES) * SUM_LANES
    padded = np.zeros((G, nb * width), F64)
    padded[:, :m] = a
    blocks = padded.reshape(G, nb, width // SUM_LANES, SUM_LANES)
    lanes = np.zeros((G, nb, SUM_LANES), F64)
    for i in range(blocks.shape[2]):          # lane-wise, in element order
        lanes += blocks[:, :, i, :]
    while lanes.shape[-1] > 1:                # the pairwise tree over lanes
        h = lanes.shape[-1] // 2
        lanes = lanes[..., :h] + lanes[..., h:]
    bsum = lanes[..., 0]
    total = np.zeros(G, F64)
    for b in range(nb):                       # blocks in order
        total += bsum[:, b]
    return total


def _mean32(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return (total / np.maximum(counts, 1).astype(F64)).astype(F32)


def _prepare(w, axis, group_size):
    x = _args.as_float32(w, "w")
    lay, axis, group_size = _args.layout(x.shape, axis, group_size)
    return x, lay, axis, group_size


def ternarize(w, method: str = "absmean", *, threshold: float = 0.5, axis: Optional[int] = None,
              group_size: Optional[int] = None) -> QTensor:
    """Ternary codes {-1, 0, +1} and their scale (SPEC 5), per tensor / channel / group."""
    method = check_method(method, TERNARY_METHODS, "ternarize")
    t = check_threshold(threshold)
    x, lay, axis, group_size = _prepare(w, axis, group_size)
    _args.check_finite(x, "w")
    seq, counts = group_matrix(x, lay)
    a = np.abs(seq)
    if method == "absmean":
        g = np.maximum(_mean32(blocked_sum(a), counts), ABSMEAN_EPS)
        inv = (F32(1) / g).astype(F32)
        v = (seq * inv[:, None]).astype(F32)
        q = np.clip(np.rint(np.clip(v, F32(-2), F32(2))), -1, 1)
        scale = g
    elif method == "twn":
        delta = (TWN_FACTOR * (blocked_sum(a) / np.maximum(counts, 1).astype(F64))).astype(F32)
        keep = a > delta[:, None]
        q = np.where(keep, np.where(seq > 0, 1, -1), 0)
        kept = np.count_nonzero(keep, axis=1)
        scale = np.where(kept > 0, _mean32(blocked_sum(np.where(keep, a, F32(0))), kept), F32(0)).astype(F32)
    else:
        amax = a.max(axis=1) if a.shape[1] else np.zeros(a.shape[0], F32)
        scale = np.maximum(amax, _args.FLT_MIN).astype(F32)
        r = (seq / scale[:, None]).astype(F32)
        q = (r > t).astype(np.int8) - (r < -t).astype(np.int8)
    codes = scatter_groups(q.astype(np.int8), x.shape, lay)
    meta = {"method": method}
    if method == "threshold":
        meta["threshold"] = float(t)
    return QTensor(codes=codes, scale=scale.astype(F32).reshape(lay.param_shape), zero_point=None,
                   shape=x.shape, bits=2, scheme="ternary", axis=axis, group_size=group_size, signed=True,
                   narrow=True, meta=meta)


def binarize(w, method: str = "sign", *, axis: Optional[int] = None, group_size: Optional[int] = None) -> QTensor:
    """Binary codes {-1, +1} and their scale (SPEC 5), per tensor / channel / group."""
    method = check_method(method, BINARY_METHODS, "binarize")
    x, lay, axis, group_size = _prepare(w, axis, group_size)
    _args.check_finite(x, "w")
    seq, counts = group_matrix(x, lay)
    scale = _mean32(blocked_sum(np.abs(seq)), counts)
    if method == "sign":
        q = np.where(seq >= 0, 1, -1)
    else:
        mu = _mean32(blocked_sum(seq), counts)
        d = (seq - mu[:, None]).astype(F32)
        q = np.where(d >= 0, 1, -1)
    codes = scatter_groups(q.astype(np.int8), x.shape, lay)
    return QTensor(codes=codes, scale=scale.reshape(lay.param_shape), zero_point=None, shape=x.shape, bits=1,
                   scheme="binary", axis=axis, group_size=group_size, signed=True, narrow=False,
                   meta={"method": method})
