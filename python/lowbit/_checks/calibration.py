"""Clip calibration (SPEC 4) and bias quantization (SPEC 5): argument checks shared by
lowbit.calibration and lowbit.reference.calibration."""
from __future__ import annotations

import numbers

import numpy as np

from .. import _args

METHODS = ("percentile", "mse", "kl")
KL_BINS = 2048
DEFAULT_PERCENTILE = 99.9
DEFAULT_MSE_CANDIDATES = 100
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def check_method_param(method: str, clip_param):
    """Validate ``method`` / ``clip_param``; returns the resolved parameter."""
    if method not in METHODS:
        raise ValueError(f"clip method must be one of {METHODS}, got {method!r}")
    if method == "percentile":
        if clip_param is None:
            return DEFAULT_PERCENTILE
        if isinstance(clip_param, bool) or not isinstance(clip_param, numbers.Real):
            raise TypeError(f"percentile clip_param must be a number, got {type(clip_param).__name__}")
        p = float(clip_param)
        if not (0.0 < p <= 100.0):
            raise ValueError(f"percentile clip_param must be in (0, 100], got {clip_param!r}")
        return p
    if method == "mse":
        if clip_param is None:
            return DEFAULT_MSE_CANDIDATES
        if isinstance(clip_param, bool) or not isinstance(clip_param, numbers.Integral):
            raise TypeError(f"mse clip_param (number of candidates) must be an int, got {clip_param!r}")
        if not 1 <= int(clip_param) <= 100_000:
            raise ValueError(f"mse clip_param (number of candidates) must be in 1..100000, got {clip_param}")
        return int(clip_param)
    if clip_param is not None:
        raise ValueError(f"clip='kl' takes no clip_param (got {clip_param!r}); it always uses {KL_BINS} bins")
    return None


def check_bias_args(bias, weight_scale, activation_scale):
    """``quantize_bias`` arguments: bias (B,) float32 finite, weight scales (1 or B values) and
    the activation scale (one value), float32, finite and > 0."""
    b = _args.as_float32(bias, "bias")
    if b.ndim != 1:
        raise ValueError(f"bias must be 1-D, got shape {b.shape}")
    _args.check_finite(b, "bias")
    sw = _args.as_float32(weight_scale, "weight_scale").reshape(-1)
    sx = _args.as_float32(activation_scale, "activation_scale").reshape(-1)
    if sw.size not in (1, b.size):
        raise ValueError(f"weight_scale must be a scalar or have one value per bias entry ({b.size}), "
                         f"got {sw.size} values")
    if sx.size != 1:
        raise ValueError(f"activation_scale must be a scalar, got {sx.size} values")
    for name, s in (("weight_scale", sw), ("activation_scale", sx)):
        if not (np.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"{name} must be finite and > 0, got {s[~(np.isfinite(s) & (s > 0))][0]!r}")
    return b, sw, sx


def check_bias_fits(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The rounded quotients ``q`` (float64) as int32; ValueError naming the first that does not fit."""
    bad = (q < INT32_MIN) | (q > INT32_MAX)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"bias[{k}] = {b[k]!r} quantizes to {q[k]:.6g}, outside int32; "
                         f"the bias scale (weight_scale * activation_scale) is too small")
    return q.astype(np.int32)
