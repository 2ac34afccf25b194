"""Reference bit packing (SPEC 6), NumPy only.

Layouts, all little-endian and LSB-first, each row (last axis) on its own and
its last byte zero-padded:

- ``pack(codes, bits)``: element j of a row occupies bits [j*bits, (j+1)*bits)
  of the row's bit stream. Signed codes are stored as two's complement within
  ``bits``; except bits=1 with signed codes, which are the binary codes {-1, +1}
  stored as -1 -> 0, +1 -> 1 (SPEC 6's 1-bit layout).
- ``pack_ternary(codes, "2bit")``: 2 bits per code, field q + 1 (3 is unused).
- ``pack_ternary(codes, "base3")``: 5 codes per byte, byte = sum (q_i + 1) * 3^i.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import _args
from .._checks.packing import (check_codes, check_n, check_packed, check_padding, check_ternary_layout, code_range,
                               packed_length, ternary_packed_length)

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary", "packed_length", "ternary_packed_length",
           "qtensor_codes"]


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _bitstream(fields: np.ndarray, width: int) -> np.ndarray:
    """(rows, n) fields < 2^width -> (rows, ceil(n*width/8)) bytes, LSB first."""
    rows, n = fields.shape
    bits = ((fields[:, :, None].astype(np.uint16) >> np.arange(width, dtype=np.uint16)) & 1).astype(np.uint8)
    return np.packbits(bits.reshape(rows, n * width), axis=1, bitorder="little")


def _fields(packed: np.ndarray, width: int, n: int) -> np.ndarray:
    rows = packed.shape[0]
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :n * width].reshape(rows, n, width)
    return (bits.astype(np.uint16) << np.arange(width, dtype=np.uint16)).sum(axis=2).astype(np.uint8)


def pack(codes, bits: int, *, signed: Optional[bool] = None) -> np.ndarray:
    bits = _args.check_bits(bits, 1, 8)
    q, signed = check_codes(codes, bits, signed)
    rows2 = _rows(q).astype(np.int16)
    if bits == 1 and signed:
        fields = (rows2 > 0).astype(np.uint8)
    else:
        fields = (rows2 & ((1 << bits) - 1)).astype(np.uint8)
    out = _bitstream(fields, bits)
    return out.reshape(q.shape[:-1] + (packed_length(q.shape[-1], bits),))


def unpack(packed, bits: int, n: int, *, signed: bool = False) -> np.ndarray:
    bits = _args.check_bits(bits, 1, 8)
    n = check_n(n)
    p = check_packed(packed, packed_length(n, bits), n, f"{bits}-bit codes")
    check_padding(p, n * bits)
    f = _fields(_rows(p), bits, n).astype(np.int16)
    if signed and bits == 1:
        f = 2 * f - 1
    elif signed:
        f = np.where(f >= 1 << (bits - 1), f - (1 << bits), f)
    return f.astype(np.int8 if signed else np.uint8).reshape(p.shape[:-1] + (n,))


def pack_ternary(codes, layout: str = "2bit") -> np.ndarray:
    layout = check_ternary_layout(layout)
    q, _ = check_codes(codes, 2, True, ternary=True)
    rows2 = _rows(q).astype(np.int16) + 1
    n = q.shape[-1]
    if layout == "2bit":
        out = _bitstream(rows2.astype(np.uint8), 2)
    else:
        nb = ternary_packed_length(n, "base3")
        d = np.zeros((rows2.shape[0], nb * 5), np.int16)
        d[:, :n] = rows2
        out = (d.reshape(rows2.shape[0], nb, 5) * np.array([1, 3, 9, 27, 81], np.int16)).sum(axis=2).astype(np.uint8)
    return out.reshape(q.shape[:-1] + (ternary_packed_length(n, layout),))


def unpack_ternary(packed, n: int, layout: str = "2bit") -> np.ndarray:
    layout = check_ternary_layout(layout)
    n = check_n(n)
    p = check_packed(packed, ternary_packed_length(n, layout), n, f"ternary {layout} codes")
    p2 = _rows(p)
    if layout == "2bit":
        check_padding(p, 2 * n)
        d = _fields(p2, 2, n).astype(np.int16)
        if np.any(d == 3):
            raise ValueError("packed: 2-bit ternary field 3 is not a code (fields are q + 1 in {0, 1, 2})")
    else:
        if np.any(p2 >= 243):
            raise ValueError("packed: a base-3 byte must be < 243 (5 trits)")
        r = n % 5
        if r and p2.size and np.any(p2[:, -1] >= 3 ** r):
            raise ValueError(f"packed: the last byte of a row holds {r} trit(s), so it must be < {3 ** r}; "
                             "is n right?")
        digits = (p2[:, :, None].astype(np.int16) // np.array([1, 3, 9, 27, 81], np.int16)) % 3
        d = digits.reshape(p2.shape[0], -1)[:, :n]
    return (d - 1).astype(np.int8).reshape(p.shape[:-1] + (n,))


def qtensor_codes(qt) -> np.ndarray:
    """A QTensor's codes shaped like the tensor, unpacked here (``qt.packed``: "b1".."b8",
    "ternary2", "base3"; see lowbit.packing.pack_qtensor) rather than by native code."""
    if qt.packed is None:
        return qt.codes
    n = qt.shape[-1] if qt.shape else 1
    rows = qt.codes if qt.shape else qt.codes.reshape(1, -1)
    if qt.packed in ("ternary2", "base3"):
        codes = unpack_ternary(rows, n, "2bit" if qt.packed == "ternary2" else "base3")
    elif qt.packed in tuple(f"b{b}" for b in range(1, 9)) and int(qt.packed[1:]) == qt.bits:
        codes = unpack(rows, qt.bits, n, signed=qt.signed)
    else:
        raise ValueError(f"packed layout {qt.packed!r} does not hold {qt.bits}-bit codes")
    return codes.reshape(qt.shape)


__all__ += ["code_range"]
