"""Bit packing (SPEC 6): b-bit codes, 2-bit and base-3 ternary, and packed QTensors.

Every layout is little-endian and LSB-first, each row (last axis) packed on its
own with its last byte zero-padded (lowbit.reference.packing spells them out).
Unpacking checks what it reads: a wrong ``n``, non-zero padding, a 2-bit
ternary field 3 or a base-3 byte >= 243 is a ValueError.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from . import _args, _C
from ._checks.packing import (bad_code_message, check_codes, check_n, check_out, check_packed, check_padding,
                              check_ternary_layout, find_bad, packed_length, range_text, ternary_packed_length)
from .qtensor import QTensor

__all__ = ["pack", "unpack", "pack_ternary", "unpack_ternary", "packed_length", "ternary_packed_length",
           "pack_qtensor", "unpack_qtensor", "unpack_qtensor_codes",
           "QTENSOR_LAYOUTS"]

_TERNARY_IDS = {"2bit": 0, "base3": 1}
# QTensor.packed names: "b1".."b8" (pack(codes, bits)), "ternary2" and "base3" (pack_ternary).
QTENSOR_LAYOUTS = tuple(f"b{b}" for b in range(1, 9)) + ("ternary2", "base3")


def _rows(shape):
    return math.prod(shape[:-1]), shape[-1]


def pack(codes, bits: int, *, signed: Optional[bool] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Pack integer codes at ``bits`` (1..8) bits each along the last axis -> uint8.

    ``signed`` defaults to True for int8, False for uint8 (for wider integer
    types: True iff a code is negative). Signed codes must lie in
    [-2^(bits-1), 2^(bits-1) - 1] and are stored as two's complement; with
    bits=1 they must be the binary codes {-1, +1} (stored as 0, 1). Unsigned
    codes must lie in [0, 2^bits - 1]. Anything else is a ValueError (checked
    in the same pass as the packing; ``out``, if given, is then left unspecified).
    """
    bits = _args.check_bits(bits, 1, 8)
    q, signed = check_codes(codes, bits, signed, check_range=False)
    rows, n = _rows(q.shape)
    shape = q.shape[:-1] + (packed_length(n, bits),)
    out = _alloc(out, shape, np.uint8)
    if q.size and not _C.pack_bits(q.reshape(-1), rows, n, bits, signed, out.reshape(-1)):
        raise ValueError(bad_code_message(q, find_bad(q, bits, signed), range_text(bits, signed)))
    return out


def unpack(packed, bits: int, n: int, *, signed: bool = False, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Inverse of :func:`pack`: ``n`` codes per row, int8 if ``signed`` else uint8."""
    bits = _args.check_bits(bits, 1, 8)
    n = check_n(n)
    if not isinstance(signed, (bool, np.bool_)):
        raise TypeError(f"signed must be a bool, got {type(signed).__name__}")
    p = check_packed(packed, packed_length(n, bits), n, f"{bits}-bit codes")
    check_padding(p, n * bits)
    shape = p.shape[:-1] + (n,)
    out = _alloc(out, shape, np.int8 if signed else np.uint8)
    if out.size:
        _C.unpack_bits(p.reshape(-1), math.prod(shape[:-1]), n, bits, bool(signed), out.reshape(-1))
    return out


def pack_ternary(codes, layout: str = "2bit", *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Pack ternary codes {-1, 0, +1} along the last axis.

    ``"2bit"``: 4 codes per byte, field q + 1 at bits 2j..2j+1.
    ``"base3"``: 5 codes per byte (1.6 bits/weight), byte = sum (q_i + 1) 3^i.
    """
    lid = _layout_id(layout)
    q, _ = check_codes(codes, 2, True, ternary=True, check_range=False)
    rows, n = _rows(q.shape)
    out = _alloc(out, q.shape[:-1] + (ternary_packed_length(n, layout),), np.uint8)
    if q.size and not _C.pack_ternary(q.reshape(-1), rows, n, lid, out.reshape(-1)):
        raise ValueError(bad_code_message(q, find_bad(q, 2, True, ternary=True), range_text(2, True, True)))
    return out


def unpack_ternary(packed, n: int, layout: str = "2bit", *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Inverse of :func:`pack_ternary`: ``n`` int8 codes in {-1, 0, +1} per row."""
    lid = _layout_id(layout)
    n = check_n(n)
    p = check_packed(packed, ternary_packed_length(n, layout), n, f"ternary {layout} codes")
    if layout == "2bit":
        check_padding(p, 2 * n)
    elif n % 5 and p.size and np.any(p[..., -1] >= 3 ** (n % 5)):
        raise ValueError(f"packed: the last byte of a row holds {n % 5} trit(s), so it must be < {3 ** (n % 5)}; "
                         "is n right?")
    shape = p.shape[:-1] + (n,)
    out = _alloc(out, shape, np.int8)
    if out.size and not _C.unpack_ternary(p.reshape(-1), math.prod(shape[:-1]), n, lid, out.reshape(-1)):
        if layout == "2bit":
            raise ValueError("packed: 2-bit ternary field 3 is not a code (fields are q + 1 in {0, 1, 2})")
        raise ValueError("packed: a base-3 byte must be < 243 (5 trits)")
    return out


def _alloc(out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype)
    return check_out(out, shape, dtype)


def _layout_id(layout) -> int:
    return _TERNARY_IDS[check_ternary_layout(layout)]


# ---- QTensor integration ---------------------------------------------------

def _qt_rows(qt: QTensor):
    if qt.ndim == 0:
        return (), 1
    return qt.shape[:-1], qt.shape[-1]


def _packed_shape(qt: QTensor, layout: str):
    lead, n = _qt_rows(qt)
    if layout == "ternary2":
        nb = ternary_packed_length(n, "2bit")
    elif layout == "base3":
        nb = ternary_packed_length(n, "base3")
    else:
        nb = packed_length(n, int(layout[1:]))
    return lead + (nb,)


def _check_qt_layout(qt: QTensor, layout) -> str:
    if layout not in QTENSOR_LAYOUTS:
        raise ValueError(f"packed layout must be one of {QTENSOR_LAYOUTS}, got {layout!r}")
    if layout in ("ternary2", "base3"):
        if not qt.signed:
            raise ValueError(f"layout {layout!r} holds ternary codes {{-1, 0, +1}}; this QTensor's codes are unsigned")
    elif int(layout[1:]) != qt.bits:
        raise ValueError(f"layout {layout!r} is for {layout[1:]}-bit codes; this QTensor has bits={qt.bits}")
    return layout


def pack_qtensor(qt: QTensor, layout: Optional[str] = None) -> QTensor:
    """The same QTensor with bit-packed codes. Default layout: "ternary2" for
    ternary tensors, "b<bits>" otherwise (so binary -> "b1", 4-bit -> "b4")."""
    if not isinstance(qt, QTensor):
        raise TypeError(f"expected a QTensor, got {type(qt).__name__}")
    if layout is None:
        layout = "ternary2" if qt.scheme == "ternary" else f"b{qt.bits}"
    layout = _check_qt_layout(qt, layout)
    if qt.packed == layout:
        return qt
    codes = qt.unpacked_codes()
    rows = codes.reshape(_packed_shape(qt, "b8"))  # (..., n): 0-d becomes one row of one
    if layout == "ternary2":
        p = pack_ternary(rows, "2bit")
    elif layout == "base3":
        p = pack_ternary(rows, "base3")
    else:
        p = pack(rows, qt.bits, signed=qt.signed)
    return dataclasses.replace(qt, codes=p, packed=layout, meta=dict(qt.meta))


def unpack_qtensor(qt: QTensor) -> QTensor:
    """The same QTensor with plain int8/uint8 codes."""
    if not isinstance(qt, QTensor):
        raise TypeError(f"expected a QTensor, got {type(qt).__name__}")
    if qt.packed is None:
        return qt
    return dataclasses.replace(qt, codes=unpack_qtensor_codes(qt), packed=None, meta=dict(qt.meta))


def unpack_qtensor_codes(qt: QTensor) -> np.ndarray:
    """Codes of a packed QTensor, shaped like the tensor (int8 if signed else uint8)."""
    layout = _check_qt_layout(qt, qt.packed)
    _, n = _qt_rows(qt)
    expect = _packed_shape(qt, layout)
    if qt.codes.dtype != np.uint8:
        raise ValueError(f"packed codes must be uint8, got {qt.codes.dtype}")
    if qt.codes.shape != expect:
        raise ValueError(f"packed codes ({layout}) of a tensor of shape {qt.shape} must have shape {expect}, "
                         f"got {qt.codes.shape}")
    if layout == "ternary2":
        c = unpack_ternary(qt.codes, n, "2bit")
    elif layout == "base3":
        c = unpack_ternary(qt.codes, n, "base3")
    else:
        c = unpack(qt.codes, qt.bits, n, signed=qt.signed)
    return c.reshape(qt.shape)
