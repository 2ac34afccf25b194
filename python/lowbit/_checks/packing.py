"""Argument checks for bit packing (SPEC 6), shared by lowbit.packing and lowbit.reference.packing."""
from __future__ import annotations

import numbers
from typing import Optional, Tuple

import numpy as np

from .. import _args

TERNARY_LAYOUTS = ("2bit", "base3")


def packed_length(n: int, bits: int) -> int:
    """Bytes per row of n codes at ``bits`` bits each."""
    return -(-n * bits // 8)


def ternary_packed_length(n: int, layout: str) -> int:
    return -(-n // 4) if layout == "2bit" else -(-n // 5)


def code_range(bits: int, signed: bool) -> Tuple[int, int]:
    """Allowed code values for ``pack(codes, bits)``. bits=1 signed means {-1, +1}."""
    if signed:
        return (-1, 1) if bits == 1 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return 0, (1 << bits) - 1


def check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int (the number of codes per row), got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return int(n)


def _as_int_array(codes, name: str) -> np.ndarray:
    codes = _args.as_array(codes, name)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array (int8/uint8 codes), got dtype {codes.dtype}")
    if codes.ndim == 0:
        raise ValueError(f"{name}: expected at least 1 dimension (rows are packed along the last axis)")
    return codes


def bad_code_message(q: np.ndarray, bad: np.ndarray, what: str) -> str:
    flat = int(np.flatnonzero(bad.reshape(-1))[0])
    idx = tuple(int(i) for i in np.unravel_index(flat, q.shape))
    return (f"codes: {int(np.count_nonzero(bad))} value(s) outside {what}; first at index {idx}: "
            f"{int(q.reshape(-1)[flat])}")


def range_text(bits: int, signed: bool, ternary: bool = False) -> str:
    if ternary:
        return "the ternary codes {-1, 0, +1}"
    if bits == 1 and signed:
        return "the binary codes {-1, +1}"
    lo, hi = code_range(bits, signed)
    return f"the {bits}-bit {'signed' if signed else 'unsigned'} range [{lo}, {hi}]"


def find_bad(q: np.ndarray, bits: int, signed: bool, ternary: bool = False) -> Optional[np.ndarray]:
    """Mask of codes that ``bits`` cannot hold, or None if all fit."""
    if ternary:
        lo, hi = -1, 1
    else:
        lo, hi = code_range(bits, signed)
    bad = (q < lo) | (q > hi)
    if bits == 1 and signed and not ternary:
        bad |= q == 0
    return bad if bad.any() else None


def check_codes(codes, bits: int, signed: Optional[bool], *, ternary: bool = False,
                check_range: bool = True) -> Tuple[np.ndarray, bool]:
    """C-contiguous int8 (signed) / uint8 (unsigned) codes. With check_range=False,
    int8/uint8 input of the right signedness is passed through unchecked (the
    kernel checks it); anything else is checked here."""
    q = _as_int_array(codes, "codes")
    if signed is None:  # int8 -> signed, uint8 -> unsigned; wider types: signed iff a value is negative
        if q.dtype in (np.int8, np.uint8) or q.dtype.kind == "u":
            signed = q.dtype.kind == "i"
        else:
            signed = bool(q.size) and int(q.min()) < 0
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed must be a bool or None, got {type(signed).__name__}")
    signed = bool(signed)
    target = np.dtype(np.int8 if signed else np.uint8)
    if check_range or q.dtype != target:
        bad = find_bad(q, bits, signed, ternary)
        if bad is not None:
            raise ValueError(bad_code_message(q, bad, range_text(bits, signed, ternary)))
    return np.ascontiguousarray(q, dtype=target), signed


def check_packed(packed, nbytes: int, n: int, what: str) -> np.ndarray:
    """C-contiguous uint8 packed rows whose last axis is ``nbytes`` long."""
    packed = _args.as_array(packed, "packed")
    if packed.dtype != np.uint8:
        raise TypeError(f"packed: expected a uint8 array, got dtype {packed.dtype}")
    if packed.ndim == 0:
        raise ValueError("packed: expected at least 1 dimension (rows along the last axis)")
    if packed.shape[-1] != nbytes:
        raise ValueError(f"packed: rows of {n} {what} take {nbytes} byte(s), but the last axis has "
                         f"{packed.shape[-1]}; is n right?")
    return np.ascontiguousarray(packed)


def check_out(out, shape, dtype, name: str = "out") -> Optional[np.ndarray]:
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}")
    return out


def check_ternary_layout(layout) -> str:
    if layout not in TERNARY_LAYOUTS:
        raise ValueError(f"ternary layout must be one of {TERNARY_LAYOUTS}, got {layout!r}")
    return layout


def check_padding(p: np.ndarray, used_bits: int) -> None:
    """Rows of ``used_bits`` bits: the bits after them in each row's last byte must be zero."""
    r = used_bits % 8
    if r and p.size and np.any(p[..., -1] >> r):
        raise ValueError(f"packed: the padding bits after the last code (bits {r}..7 of each row's last byte) "
                         "must be zero; is n right?")
