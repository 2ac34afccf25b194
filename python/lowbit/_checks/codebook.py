"""Non-uniform quantization (SPEC 9): the NF4 table and argument checks, shared by
lowbit.codebook and lowbit.reference.codebook."""
from __future__ import annotations

import numbers

import numpy as np

F32 = np.float32

# NF4 as in bitsandbytes: bitsandbytes/functional.py, get_4bit_type("nf4")
# (github.com/bitsandbytes-foundation/bitsandbytes), the float32 values of these literals.
NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
], dtype=F32)
NF4.setflags(write=False)
NF4_BLOCK = 64


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 2 <= int(k) <= 256:
        raise ValueError(f"k (number of centroids) must be in 2..256, got {k}")
    return int(k)


def check_codebook(codebook, *, scaled: bool) -> np.ndarray:
    cb = np.asarray(codebook)
    if cb.dtype.kind not in "fiu":
        raise TypeError(f"codebook must hold numbers, got dtype {cb.dtype}")
    cb = np.ascontiguousarray(cb, dtype=F32)
    if cb.ndim != 1 or not 1 <= cb.size <= 256:
        raise ValueError(f"codebook must be 1-D with 1..256 values, got shape {cb.shape}")
    if not np.isfinite(cb).all():
        raise ValueError("codebook must be finite (it holds NaN or Inf)")
    if (np.diff(cb) < 0).any():
        k = int(np.flatnonzero(np.diff(cb) < 0)[0])
        raise ValueError(f"codebook must be sorted ascending: codebook[{k}] = {cb[k]} > "
                         f"codebook[{k + 1}] = {cb[k + 1]}")
    if scaled and not np.abs(cb).max() > 0:
        raise ValueError("an absmax-scaled codebook (group_size given) needs a nonzero value")
    return cb


def check_scale_finite(scale: np.ndarray, cb: np.ndarray) -> None:
    """max|x_g| / max|code| overflowed float32 (a codebook of tiny values): refuse, never inf."""
    if np.isinf(scale).any():
        raise ValueError(f"the group scale max|w| / max|codebook| overflows float32 (max|codebook| = "
                         f"{float(np.abs(cb).max()):g} is too small for these weights); normalize the codebook")


def bits_for(k: int) -> int:
    """Bits of a code that indexes k entries."""
    return max(1, int(k - 1).bit_length())


def check_scheme_args(scheme: str, bits: int, axis, group_size, signed, narrow, clip, clip_param):
    """``quantize(..., scheme="nf4"|"kmeans")``: the arguments that scheme takes.
    Returns the keyword arguments for quantize_nf4 (``group_size``) or quantize_kmeans (``axis``)."""
    if signed is not None or narrow or clip not in (None, "none") or clip_param is not None:
        raise ValueError(f"scheme={scheme!r} takes no signed/narrow/clip arguments")
    if scheme == "nf4":
        if bits != 4:
            raise ValueError(f"scheme='nf4' is a 4-bit format, got bits={bits}")
        if axis is not None:
            raise ValueError("scheme='nf4' scales blocks along the last axis: give group_size (default 64), not axis")
        return {"group_size": NF4_BLOCK if group_size is None else group_size}
    if group_size is not None:
        raise ValueError("scheme='kmeans' learns one codebook per tensor or per channel (axis=); "
                         "group_size is not supported")
    return {"axis": axis}
