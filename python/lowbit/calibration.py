"""Clipping and calibration (SPEC 4), activation observers, bias quantization (SPEC 5).

The definitions (candidate grids, histogram bins, the KL search) are written
out in ``lowbit.reference.calibration``, the NumPy twin; the work runs in
csrc/calib/.
``lowbit.quantize(x, clip="percentile"|"mse"|"kl", clip_param=...)`` reaches
this module through :func:`clip_arrays`.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from . import _args, _C
from ._checks.calibration import check_bias_args, check_bias_fits, check_method_param

__all__ = ["calibrate", "clip_arrays", "Observer", "quantize_bias"]

F32 = np.float32


def clip_arrays(x, method: str, clip_param=None, *, scheme: str, bits: int, layout: _args.Layout,
                signed: Optional[bool] = None, narrow: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Per-group float32 ``(lo, hi)`` chosen by ``method`` (the ``quantize(clip=...)`` hook)."""
    param = check_method_param(method, clip_param)
    x = _args.as_float32(x)
    g = _args.grid(bits, scheme, signed, narrow)
    if x.size == 0:
        z = np.zeros(layout.n_groups, F32)
        return z, z.copy()
    try:
        return _C.calib_clip(x.reshape(-1), layout.kind, layout.a, layout.b, layout.c, method, scheme, g.qmin,
                             g.qmax, g.absmax_qmax, bits,
                             param if method == "percentile" else 99.9,
                             param if method == "mse" else 100)
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x)) from None


def calibrate(x, method: str = "mse", bits: int = 8, *, scheme: str = "absmax", axis: Optional[int] = None,
              group_size: Optional[int] = None, signed: Optional[bool] = None, narrow: bool = False,
              clip_param=None) -> Tuple[np.ndarray, np.ndarray]:
    """The clip range alone, without quantizing.

    Returns float32 ``(lo, hi)`` shaped like the scales ``quantize(x, bits,
    scheme=..., axis=..., group_size=...)`` would have (``lo == -hi`` for the
    symmetric absmax scheme). ``method``: ``"percentile"`` (``clip_param`` = p in
    (0, 100], default 99.9), ``"mse"`` (``clip_param`` = number of candidates,
    default 100), ``"kl"``, or ``"minmax"`` (the data range itself).
    ``quantize(x, ..., clip=(lo, hi))`` per group gives the same codes as
    ``quantize(x, ..., clip=method)``.
    """
    x = _args.as_float32(x)
    bits = _args.check_bits(bits)
    _args.grid(bits, scheme, signed, narrow)
    lay, _, _ = _args.layout(x.shape, axis, group_size)
    if method in ("minmax", "none"):
        if clip_param is not None:
            raise ValueError(f"method={method!r} takes no clip_param")
        if x.size == 0:
            lo = hi = np.zeros(lay.n_groups, F32)
        else:
            try:
                lo, hi = _C.affine_range(x.reshape(-1), lay.kind, lay.a, lay.b, lay.c)
            except _C.NonFiniteError:
                raise ValueError(_args.nonfinite_message(x)) from None
        if scheme == "absmax":
            a = np.maximum(np.abs(lo), np.abs(hi)).astype(F32)
            lo, hi = -a, a
    else:
        lo, hi = clip_arrays(x, method, clip_param, scheme=scheme, bits=bits, layout=lay, signed=signed,
                             narrow=narrow)
    return lo.reshape(lay.param_shape), hi.reshape(lay.param_shape)


def quantize_bias(bias, weight_scale, activation_scale) -> np.ndarray:
    """SPEC 5: ``round_half_even(bias / (weight_scale * activation_scale))`` as int32, zero point 0.

    ``weight_scale``: a scalar or one scale per output channel (any shape with
    ``bias.size`` values, e.g. a per-channel QTensor's ``scale``);
    ``activation_scale``: a scalar. The scale product and the quotient are
    float64 (from float32 inputs). ValueError if a result does not fit int32.
    """
    b, sw, sx = check_bias_args(bias, weight_scale, activation_scale)
    return check_bias_fits(b, np.rint(b.astype(np.float64) / (sw.astype(np.float64) * sx.astype(np.float64))))


class Observer:
    """Collects activation batches and produces per-tensor ``(scale, zero_point)``.

    ``method``: ``"minmax"`` (running min/max: O(1) state), or ``"percentile"``,
    ``"mse"``, ``"kl"`` (clip calibration, SPEC 4). ``symmetric=True`` gives the
    absmax scheme (signed codes, zero point 0), ``False`` the minmax scheme
    (unsigned codes with a zero point).

    Guarantee: after ``update(b1) ... update(bn)``, ``qparams()`` is bit-identical
    to the scale and zero point of ``lowbit.quantize(np.concatenate([b.ravel()
    for b in batches]), bits, scheme=..., clip=method)``, i.e. one calibration
    over all the data at once. For percentile/mse/kl this needs the values
    themselves: the percentile is an order statistic of all the data, and the
    MSE candidate grid and the KL histogram's bin edges depend on the final
    ``max|x|``, which a later batch can move (a histogram built over an earlier,
    smaller range cannot be re-binned exactly). So these observers keep every
    value (float32, 4 bytes each); histograms are built once, in ``qparams()``,
    over the final range. ``minmax`` keeps two floats.
    """

    METHODS = ("minmax", "percentile", "mse", "kl")

    def __init__(self, method: str = "minmax", bits: int = 8, *, symmetric: bool = True, clip_param=None,
                 narrow: bool = False):
        if method not in self.METHODS:
            raise ValueError(f"Observer method must be one of {self.METHODS}, got {method!r}")
        self.method = method
        self.bits = _args.check_bits(bits)
        if not isinstance(symmetric, (bool, np.bool_)):
            raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
        self.scheme = "absmax" if symmetric else "minmax"
        self.grid = _args.grid(self.bits, self.scheme, None, narrow)
        self.narrow = bool(narrow)
        if method == "minmax":
            if clip_param is not None:
                raise ValueError("method='minmax' takes no clip_param")
        else:
            check_method_param(method, clip_param)
        self.clip_param = clip_param
        self._lo = np.float32(np.inf)
        self._hi = np.float32(-np.inf)
        self._batches: List[np.ndarray] = []
        self.count = 0

    def update(self, batch) -> "Observer":
        """Add one batch of activations (any shape; NaN/Inf is a ValueError)."""
        x = _args.as_float32(batch, "batch")
        if x.size == 0:
            return self
        try:
            lo, hi = _C.affine_range(x.reshape(-1), "groups", 1, x.size, x.size)
        except _C.NonFiniteError:
            raise ValueError(_args.nonfinite_message(x, name="batch")) from None
        self._lo = min(self._lo, F32(lo[0]))
        self._hi = max(self._hi, F32(hi[0]))
        if self.method != "minmax":
            self._batches.append(np.array(x, dtype=F32, copy=True).reshape(-1))
        self.count += x.size
        return self

    def clip_range(self) -> Tuple[np.float32, np.float32]:
        """The calibrated ``(lo, hi)`` over everything seen so far."""
        if self.count == 0:
            raise ValueError("Observer.qparams()/clip_range() called before any update() with data")
        if self.method == "minmax":
            lo, hi = self._lo, self._hi
            if self.scheme == "absmax":
                a = max(abs(lo), abs(hi))
                lo, hi = -a, a
            return F32(lo), F32(hi)
        if len(self._batches) > 1:
            self._batches = [np.concatenate(self._batches)]
        x = self._batches[0]
        lay = _args.layout(x.shape, None, None)[0]
        lo, hi = clip_arrays(x, self.method, self.clip_param, scheme=self.scheme, bits=self.bits, layout=lay,
                             narrow=self.narrow)
        return lo[0], hi[0]

    def qparams(self) -> Tuple[np.float32, np.int32]:
        """``(scale, zero_point)`` as float32 / int32 scalars (SPEC 1-2 applied to the clip range)."""
        lo, hi = self.clip_range()
        # the affine kernel's parameters for one group clipped to (lo, hi): what quantize(..., clip=) gives
        g = self.grid
        _, scale, zp = _C.affine_quantize(np.zeros(1, F32), "groups", 1, 1, 1, self.scheme, g.qmin, g.qmax,
                                          g.absmax_qmax, np.array([lo], F32), np.array([hi], F32))
        return scale[0], zp[0]

    def __repr__(self) -> str:
        return (f"Observer(method={self.method!r}, bits={self.bits}, scheme={self.scheme!r}, "
                f"values={self.count})")
