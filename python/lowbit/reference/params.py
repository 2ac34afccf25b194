"""Reference per-group ranges and SPEC 1-2 parameters (scale, zero point), NumPy only:
what the affine quantizer (reference/affine.py) and the clip searches
(reference/calibration.py) both compute from."""
from __future__ import annotations

import numpy as np

from .. import _args

__all__ = ["group_ranges", "group_params"]

F32, F64 = np.float32, np.float64


def group_ranges(x: np.ndarray, lay: _args.Layout):
    """Per-group (lo, hi) as float32 arrays of shape (n_groups,)."""
    if lay.kind == "groups":
        R, L, g = lay.a, lay.b, lay.c
        x2 = x.reshape(R, L)
        ng = -(-L // g) if L else 0
        lo = np.zeros((R, ng), F32)
        hi = np.zeros((R, ng), F32)
        for j in range(ng):  # a loop over the group index, vectorized over rows
            blk = x2[:, j * g:(j + 1) * g]
            lo[:, j] = blk.min(axis=1)
            hi[:, j] = blk.max(axis=1)
        return lo.reshape(-1), hi.reshape(-1)
    outer, C, inner = (lay.a, lay.b, 1) if lay.kind == "cols" else (lay.a, lay.b, lay.c)
    x3 = x.reshape(outer, C, inner)
    return x3.min(axis=(0, 2)).astype(F32), x3.max(axis=(0, 2)).astype(F32)


def group_params(lo, hi, scheme: str, g: _args.Grid):
    """SPEC 1-2: scale, inv_scale (float32) and zero point (int32) per group."""
    lo = np.asarray(lo, F32)
    hi = np.asarray(hi, F32)
    if scheme == "absmax":
        a = np.maximum(np.abs(lo.astype(F64)), np.abs(hi.astype(F64)))
        scale = (a / g.absmax_qmax).astype(F32)
    else:
        lo = np.minimum(lo, F32(0))
        hi = np.maximum(hi, F32(0))
        scale = ((hi.astype(F64) - lo.astype(F64)) / (g.qmax - g.qmin)).astype(F32)
    scale = np.maximum(scale, _args.FLT_MIN)
    inv = (F32(1) / scale).astype(F32)
    if scheme == "absmax":
        zp = np.zeros(scale.shape, np.int32)
    else:
        prod = (lo * inv).astype(F32)
        zp = np.clip(g.qmin - np.rint(prod).astype(np.int64), g.qmin, g.qmax).astype(np.int32)
    return scale, inv, zp
