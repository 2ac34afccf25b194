"""Reference GGUF block formats (SPEC 8), NumPy only.

The legacy blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0) are here; the
super-block formats (K-quants, IQ4_NL, IQ4_XS, Q8_K, and the legacy formats'
imatrix encoders) in ``gguf_k``, the read-only decoders (IQ1/IQ2/IQ3, MXFP4,
F16, BF16) in ``gguf_iq``: all byte-/bit-identical to llama.cpp's C code.

Each format is ggml's reference C code (``quantize_row_*_ref`` /
``dequantize_row_*`` in ggml-quants.c) written out in NumPy, one float32
operation per C operation, with ggml's rounding (``roundf``: half away from
zero) and truncating float->int conversions. The result is byte-identical to
``gguf.quants.quantize`` of the PyPI ``gguf`` package, with these documented
choices where that package has no defined answer (see docs in lowbit.gguf):

- NaN/Inf input is a ValueError (gguf-py writes unspecified bytes and warns).
- A block whose scale ``d`` is so small that ``1/d`` overflows (all values
  below about 1e-37 in magnitude) gets the codes gguf-py produces on x86:
  every product is then +-Inf or NaN, whose integer conversion is 0.
- Q4_1/Q5_1: when a block's minimum (maximum) is a zero and the block holds
  both +0.0 and -0.0, the minimum is -0.0 (the maximum +0.0). NumPy's min/max
  reductions leave that sign unspecified.
- A scale beyond float16's range is stored as +-Inf, as gguf-py does.
"""
from __future__ import annotations

import numpy as np

from .. import _args
from .._gguf_formats import (ENCODABLE, FORMATS, as_blob, block_size, check_format,  # noqa: F401
                             check_imatrix, check_row_length, check_search, check_shape, row_bytes, type_size)
from . import gguf_k, gguf_iq, gguf_search

__all__ = ["quantize", "dequantize", "FORMATS", "ENCODABLE", "block_size", "type_size", "row_bytes"]

F32 = np.float32


# ---- float16 and rounding, as ggml does them ------------------------------

def fp16_bytes(d: np.ndarray) -> np.ndarray:
    """GGML_FP32_TO_FP16: round to nearest even, overflow to +-Inf. (n,) -> (n, 2) bytes."""
    with np.errstate(over="ignore"):
        return d.astype(np.float16).view(np.uint8).reshape(-1, 2)


def fp16_value(b: np.ndarray) -> np.ndarray:
    """(n, 2) bytes -> (n, 1) float32."""
    return np.ascontiguousarray(b).view(np.float16).astype(F32).reshape(-1, 1)


def roundf(v: np.ndarray) -> np.ndarray:
    """C roundf: nearest integer, ties away from zero (exact in float32)."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= F32(0.5), np.sign(v), F32(0)).astype(F32)


def to_int(v: np.ndarray) -> np.ndarray:
    """C's (int) cast as x86 does it (cvttss2si): truncate; NaN/Inf/out of range -> INT_MIN."""
    ok = np.isfinite(v) & (np.abs(v) < F32(2.0 ** 31))
    return np.where(ok, np.trunc(np.where(ok, v, 0)), -2.0 ** 31).astype(np.int64)


def inverse(d: np.ndarray) -> np.ndarray:
    """ggml's ``id = d ? 1.0f/d : 0.0f`` in float32 (may be Inf for tiny d)."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d == 0, F32(0), F32(1) / d).astype(F32)


def signed_absmax(b: np.ndarray) -> np.ndarray:
    """The value of largest magnitude, the first one on ties (ggml: ``if (amax < fabsf(v))``)."""
    i = np.abs(b).argmax(axis=1)[:, None]
    return np.take_along_axis(b, i, axis=1)


def block_min_max(b: np.ndarray):
    """Per-block min and max; a zero extreme is -0.0 (min) / +0.0 (max) if the block has one."""
    mn = b.min(axis=1, keepdims=True)
    mx = b.max(axis=1, keepdims=True)
    bits = b.view(np.uint32)
    has_neg0 = (bits == 0x80000000).any(axis=1, keepdims=True)
    has_pos0 = (bits == 0).any(axis=1, keepdims=True)
    mn = np.where(mn == 0, np.where(has_neg0, F32(-0.0), F32(0.0)), mn).astype(F32)
    mx = np.where(mx == 0, np.where(has_pos0, F32(0.0), F32(-0.0)), mx).astype(F32)
    return mn, mx


def _products(b: np.ndarray, idv: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return (b * idv).astype(F32)


# ---- quantize: (n_blocks, block) float32 -> (n_blocks, bytes) uint8 --------

def _q8_0(b):
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = (amax / F32(127)).astype(F32)
    idv = inverse(d)
    v = _products(b, idv)
    q = np.where(np.isfinite(v), roundf(np.where(np.isfinite(v), v, 0)), 0).astype(np.int8)
    return np.concatenate([fp16_bytes(d), q.view(np.uint8)], axis=1)


def _sym_nibbles(b, div, bias, top):
    """Q4_0/Q5_0 codes: d = max / -div, q = min(top, (int8)(x*id + bias))."""
    mx = signed_absmax(b)
    d = (mx / F32(-div)).astype(F32)
    idv = inverse(d)
    with np.errstate(invalid="ignore", over="ignore"):
        v = (_products(b, idv) + F32(bias)).astype(F32)
    q = to_int(v).astype(np.int8).astype(np.int64)  # (int8_t) of the int conversion
    return d, np.minimum(q, top) & 0xFF


def _asym_nibbles(b, div, top):
    """Q4_1/Q5_1 codes: d = (max - min) / div, q = min(top, (int8)((x - min)*id + 0.5))."""
    mn, mx = block_min_max(b)
    with np.errstate(over="ignore"):
        d = ((mx - mn) / F32(div)).astype(F32)
        idv = inverse(d)
        diff = (b - mn).astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        v = (_products(diff, idv) + F32(0.5)).astype(F32)
    q = to_int(v).astype(np.int8).astype(np.int64)
    return d, mn, np.minimum(q, top) & 0xFF


def _pack_nibbles(q):
    lo, hi = q[:, :16], q[:, 16:]
    return ((lo & 0x0F) | ((hi & 0x0F) << 4)).astype(np.uint8)


def _pack_qh(q):
    bits = (q >> 4) & 1
    qh = (bits << np.arange(32)).sum(axis=1).astype(np.uint32)
    return qh.reshape(-1, 1).view(np.uint8)


def _q4_0(b):
    d, q = _sym_nibbles(b, 8, 8.5, 15)
    return np.concatenate([fp16_bytes(d), _pack_nibbles(q)], axis=1)


def _q5_0(b):
    d, q = _sym_nibbles(b, 16, 16.5, 31)
    return np.concatenate([fp16_bytes(d), _pack_qh(q), _pack_nibbles(q)], axis=1)


def _q4_1(b):
    d, m, q = _asym_nibbles(b, 15, 15)
    return np.concatenate([fp16_bytes(d), fp16_bytes(m), _pack_nibbles(q)], axis=1)


def _q5_1(b):
    d, m, q = _asym_nibbles(b, 31, 31)
    return np.concatenate([fp16_bytes(d), fp16_bytes(m), _pack_qh(q), _pack_nibbles(q)], axis=1)


def _ternary(b):
    """TQ codes in {0, 1, 2} (= q + 1) and d = max|x|."""
    d = np.abs(b).max(axis=1, keepdims=True)
    idv = inverse(d)
    v = _products(b, idv)
    q = np.where(np.isfinite(v), roundf(np.where(np.isfinite(v), v, 0)), 0).astype(np.int64)
    return d, q + 1


def _tq1_0(b):
    d, q = _ternary(b)
    n = b.shape[0]
    pw5 = np.array([81, 27, 9, 3, 1]).reshape(1, 5, 1)
    qs0 = (q[:, :160].reshape(n, 5, 32) * pw5).sum(axis=1)      # byte j: values j, j+32, ..., j+128
    qs1 = (q[:, 160:240].reshape(n, 5, 16) * pw5).sum(axis=1)   # byte j: values 160+j, 176+j, ...
    qh = (q[:, 240:].reshape(n, 4, 4) * pw5[:, :4] ).sum(axis=1)  # byte j: 240+j, 244+j, ... (x3)
    qs = np.concatenate([qs0, qs1, qh], axis=1)
    qs = (qs * 256 + 242) // 243                                 # ceil(qs * 256 / 243): trits as a fraction
    return np.concatenate([qs.astype(np.uint8), fp16_bytes(d)], axis=1)


def _tq2_0(b):
    d, q = _ternary(b)
    n = b.shape[0]
    q = q.reshape(n, 2, 4, 32)
    qs = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return np.concatenate([qs.reshape(n, 64).astype(np.uint8), fp16_bytes(d)], axis=1)


_QUANT = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1,
          "TQ1_0": _tq1_0, "TQ2_0": _tq2_0}


# ---- dequantize: (n_blocks, bytes) uint8 -> (n_blocks, block) float32 -------

def _nibbles(qs):
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def _high_bits(qh):
    bits = np.ascontiguousarray(qh).view(np.uint32).reshape(-1, 1)
    return (((bits >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.int32)


def _dq8_0(b):
    return (b[:, 2:].view(np.int8).astype(F32) * fp16_value(b[:, :2])).astype(F32)


def _dq4_0(b):
    return (fp16_value(b[:, :2]) * (_nibbles(b[:, 2:]) - 8).astype(F32)).astype(F32)


def _dq4_1(b):
    return ((fp16_value(b[:, :2]) * _nibbles(b[:, 4:]).astype(F32)).astype(F32) + fp16_value(b[:, 2:4])).astype(F32)


def _dq5_0(b):
    q = _nibbles(b[:, 6:]) | _high_bits(b[:, 2:6])
    return (fp16_value(b[:, :2]) * (q - 16).astype(F32)).astype(F32)


def _dq5_1(b):
    q = _nibbles(b[:, 8:]) | _high_bits(b[:, 4:8])
    return ((fp16_value(b[:, :2]) * q.astype(F32)).astype(F32) + fp16_value(b[:, 2:4])).astype(F32)


def _dtq1_0(b):
    n = b.shape[0]
    pw3 = np.array([1, 3, 9, 27, 81], dtype=np.int64).reshape(1, 5, 1)

    def trits(bytes_, k):  # byte * 3^i mod 256, then the top trit: (v * 3) >> 8
        v = (bytes_.astype(np.int64).reshape(n, 1, -1) * pw3[:, :k]) & 0xFF
        return ((v * 3) >> 8).reshape(n, -1)

    q = np.concatenate([trits(b[:, :32], 5), trits(b[:, 32:48], 5), trits(b[:, 48:52], 4)], axis=1)
    return (fp16_value(b[:, 52:54]) * (q - 1).astype(F32)).astype(F32)


def _dtq2_0(b):
    n = b.shape[0]
    qs = b[:, :64].astype(np.int32).reshape(n, 2, 1, 32)
    q = ((qs >> np.array([0, 2, 4, 6]).reshape(1, 1, 4, 1)) & 3).reshape(n, 256)
    return (fp16_value(b[:, 64:66]) * (q - 1).astype(F32)).astype(F32)


_DEQUANT = {"Q8_0": _dq8_0, "Q4_0": _dq4_0, "Q4_1": _dq4_1, "Q5_0": _dq5_0, "Q5_1": _dq5_1,
            "TQ1_0": _dtq1_0, "TQ2_0": _dtq2_0}


# ---- public ----------------------------------------------------------------

def quantize(x, fmt: str, *, imatrix=None, search: bool = False) -> np.ndarray:
    """Raw GGUF blocks of ``x``: uint8 of shape ``x.shape[:-1] + (row_bytes,)``.

    ``imatrix``: per-column importance (the rows' length), for the formats whose
    ggml encoder uses one. ``search=True``: lowbit's harder search for scales
    (Q4_K, Q5_K, Q6_K, IQ4_XS, IQ4_NL; ``gguf_search``), byte-identical to lowbit.gguf's.
    """
    fmt = check_format(fmt, encode=True)
    x = _args.as_float32(x)
    check_row_length(x.shape, fmt)
    qw = check_imatrix(imatrix, fmt, x.shape[-1])
    search = check_search(search, fmt)
    _args.check_finite(x)
    bs, ts = FORMATS[fmt]
    out_shape = x.shape[:-1] + (x.shape[-1] // bs * ts,)
    if x.size == 0:
        return np.zeros(out_shape, np.uint8)
    with np.errstate(all="ignore"):  # Inf scales (float16 overflow) and 1/d overflow are defined above
        if qw is not None and fmt in gguf_k._LEGACY:
            x2 = x.reshape(-1, x.shape[-1])
            return gguf_k.legacy_imatrix(x2, fmt, qw).reshape(out_shape)
        if fmt in gguf_k.QUANT:
            xb = x.reshape(-1, bs)
            w = None if qw is None else np.broadcast_to(qw.reshape(1, -1), x.reshape(-1, x.shape[-1]).shape)
            w = None if w is None else np.ascontiguousarray(w).reshape(-1, bs)
            if search:   # lowbit's search encoder (gguf_search.py, the twin of csrc/gguf/gguf_search.h)
                return gguf_search.encode(xb, w, fmt).reshape(out_shape)
            return gguf_k.QUANT[fmt](xb, w).reshape(out_shape)
        return _QUANT[fmt](x.reshape(-1, bs)).reshape(out_shape)


def dequantize(blob, fmt: str, shape) -> np.ndarray:
    """Float32 values of GGUF blocks ``blob`` holding a tensor of ``shape``."""
    fmt = check_format(fmt)
    shape = check_shape(shape, fmt)
    b = as_blob(blob, fmt, shape)
    bs, ts = FORMATS[fmt]
    if b.size == 0:
        return np.zeros(shape, F32)
    with np.errstate(all="ignore"):  # Inf * 0 -> NaN for blocks whose scale overflowed
        fn = _DEQUANT.get(fmt) or gguf_k.DEQUANT.get(fmt) or gguf_iq.DEQUANT[fmt]
        return fn(b.reshape(-1, ts)).reshape(shape)
