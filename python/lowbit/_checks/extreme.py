"""Binary and ternary quantization (SPEC 5): argument checks shared by lowbit.extreme and
lowbit.reference.extreme."""
from __future__ import annotations

import numbers
from typing import Tuple

import numpy as np

TERNARY_METHODS = ("absmean", "twn", "threshold")
BINARY_METHODS = ("sign", "bitnet")


def check_method(method, methods: Tuple[str, ...], what: str) -> str:
    if not isinstance(method, str):
        raise TypeError(f"{what} method must be a str, got {type(method).__name__}")
    if method not in methods:
        raise ValueError(f"{what} method must be one of {methods}, got {method!r}")
    return method


def check_threshold(threshold) -> np.float32:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (a fraction of max|w|), got {threshold!r}")
    return np.float32(t)
