"""Reference decoders (read-only formats) of llama.cpp: F16, BF16, MXFP4 and the
IQ1/IQ2/IQ3 families, bit-identical to ggml's ``to_float``. NumPy only.

Functions take ``(nblocks, bytes)`` uint8 and return ``(nblocks, block)`` float32.
"""
from __future__ import annotations

import numpy as np

from .gguf_iq_tables import grid

F32 = np.float32


def _fp16(b):
    """(n, 2) bytes -> (n,) float32 (exact)."""
    return np.ascontiguousarray(b).view(np.float16).astype(F32).reshape(-1)


def df16(b):
    """ggml's software GGML_FP16_TO_FP32, which quiets a signalling NaN (it multiplies by 2^-112)."""
    v = _fp16(b)
    bits = v.view(np.uint32)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, bits | 0x00400000, bits).astype(np.uint32).view(F32).reshape(-1, 1)


def _u16(b):
    return np.ascontiguousarray(b).view(np.uint16).astype(np.int64)


def _u32(b):
    return np.ascontiguousarray(b).view(np.uint32).astype(np.int64)


def _signs(bits7):
    """ksigns_iq2xs[i]: the 7 sign bits and their parity as the 8th -> (..., 8) of +-1.0."""
    bits7 = np.asarray(bits7, np.int64)
    par = np.zeros_like(bits7)
    for k in range(7):
        par ^= (bits7 >> k) & 1
    s = bits7 | (par << 7)
    return _sign_bits(s, 8)


def _sign_bits(s, n):
    """(...,) sign bytes -> (..., n) bools: value j is negated."""
    s = np.asarray(s, np.int64)
    return ((s[..., None] >> np.arange(n)) & 1).astype(bool)


def _neg(v, neg):
    """ggml's ``v * (neg ? -1.f : 1.f)`` as compiled: a sign flip (a NaN's sign flips too)."""
    return np.where(neg, -v, v).astype(F32)


def _mul(a, b):
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.asarray(a, F32) * np.asarray(b, F32)).astype(F32)


def _sub_scale(d, s, half):
    """d * (0.5f + s) * half (IQ2/IQ3_XXS sub-block scales)."""
    return _mul(_mul(d, (F32(0.5) + s.astype(F32)).astype(F32)), F32(half))


def diq2_xxs(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    q = b[:, 2:66].reshape(B, 8, 8)
    aux1 = _u32(q[:, :, 4:8]).reshape(B, 8)
    db = _sub_scale(d[:, None], aux1 >> 28, 0.25)                       # (B, 8)
    g = grid("iq2xxs_grid")[q[:, :, 0:4].astype(np.int64)].astype(F32)   # (B, 8, 4, 8)
    sg = _signs((aux1[:, :, None] >> (7 * np.arange(4))) & 127)          # (B, 8, 4, 8)
    return _neg(_mul(db[:, :, None, None], g), sg).reshape(B, 256)


def diq2_xs(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    q = _u16(b[:, 2:66]).reshape(B, 8, 4)
    sc = b[:, 66:74].astype(np.int64)
    db = np.stack([_sub_scale(d[:, None], sc & 0xF, 0.25), _sub_scale(d[:, None], sc >> 4, 0.25)], axis=2)
    dl = db[:, :, [0, 0, 1, 1]]                                           # (B, 8, 4)
    g = grid("iq2xs_grid")[q & 511].astype(F32)
    sg = _signs(q >> 9)
    return _neg(_mul(dl[..., None], g), sg).reshape(B, 256)


def diq2_s(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    qs = b[:, 2:34].astype(np.int64).reshape(B, 8, 4)
    signs = b[:, 34:66].astype(np.int64).reshape(B, 8, 4)
    qh = b[:, 66:74].astype(np.int64)
    sc = b[:, 74:82].astype(np.int64)
    db = np.stack([_sub_scale(d[:, None], sc & 0xF, 0.25), _sub_scale(d[:, None], sc >> 4, 0.25)], axis=2)
    dl = db[:, :, [0, 0, 1, 1]]
    l = np.arange(4)
    idx = qs | ((qh[:, :, None] << (8 - 2 * l)) & 0x300)
    g = grid("iq2s_grid")[idx].astype(F32)
    return _neg(_mul(dl[..., None], g), _sign_bits(signs, 8)).reshape(B, 256)


def diq3_xxs(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    qs = b[:, 2:66].astype(np.int64).reshape(B, 8, 8)
    aux = _u32(b[:, 66:98]).reshape(B, 8)
    db = _sub_scale(d[:, None], aux >> 28, 0.5)
    g = grid("iq3xxs_grid")[qs].astype(F32).reshape(B, 8, 4, 8)         # pairs of 4 -> 8 values
    sg = _signs((aux[:, :, None] >> (7 * np.arange(4))) & 127)
    return _neg(_mul(db[:, :, None, None], g), sg).reshape(B, 256)


def diq3_s(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    qs = b[:, 2:66].astype(np.int64).reshape(B, 8, 4, 2)                 # sub-block, l, (grid1, grid2)
    qh = b[:, 66:74].astype(np.int64)                                    # one byte per sub-block
    signs = b[:, 74:106].astype(np.int64).reshape(B, 8, 4)
    sc = b[:, 106:110].astype(np.int64)
    db = np.stack([_mul(d[:, None], (1 + 2 * (sc & 0xF)).astype(F32)),
                   _mul(d[:, None], (1 + 2 * (sc >> 4)).astype(F32))], axis=2).reshape(B, 8)
    l = np.arange(4)
    hi1 = (qh[:, :, None] << (8 - 2 * l)) & 256
    hi2 = (qh[:, :, None] << (7 - 2 * l)) & 256
    idx = np.stack([qs[..., 0] | hi1, qs[..., 1] | hi2], axis=3)         # (B, 8, 4, 2)
    g = grid("iq3s_grid")[idx].astype(F32).reshape(B, 8, 4, 8)
    return _neg(_mul(db[:, :, None, None], g), _sign_bits(signs, 8)).reshape(B, 256)


IQ1S_DELTA = F32(0.125)


def diq1_s(b):
    B = b.shape[0]
    d = _fp16(b[:, 0:2])
    qs = b[:, 2:34].astype(np.int64).reshape(B, 8, 4)
    qh = _u16(b[:, 34:50]).reshape(B, 8)
    dl = _mul(d[:, None], (2 * ((qh >> 12) & 7) + 1).astype(F32))
    delta = np.where(qh & 0x8000, -IQ1S_DELTA, IQ1S_DELTA).astype(F32)
    idx = qs | (((qh[:, :, None] >> (3 * np.arange(4))) & 7) << 8)
    g = grid("iq1s_grid")[idx].astype(F32)                               # (B, 8, 4, 8)
    v = (g + delta[:, :, None, None]).astype(F32)
    return _mul(dl[:, :, None, None], v).reshape(B, 256)


def diq1_m(b):
    B = b.shape[0]
    qs = b[:, 0:32].astype(np.int64).reshape(B, 8, 4)
    qh = b[:, 32:48].astype(np.int64).reshape(B, 8, 2)
    sc = _u16(b[:, 48:56]).reshape(B, 4)
    s16 = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000)
    d = s16.astype(np.uint16).view(np.float16).astype(F32)
    ib = np.arange(8)
    s = sc[:, ib // 2]
    dl1 = _mul(d[:, None], (2 * ((s >> (6 * (ib % 2))) & 7) + 1).astype(F32))
    dl2 = _mul(d[:, None], (2 * ((s >> (6 * (ib % 2) + 3)) & 7) + 1).astype(F32))
    idx = np.stack([qs[..., 0] | ((qh[..., 0] << 8) & 0x700), qs[..., 1] | ((qh[..., 0] << 4) & 0x700),
                    qs[..., 2] | ((qh[..., 1] << 8) & 0x700), qs[..., 3] | ((qh[..., 1] << 4) & 0x700)], axis=2)
    dbits = np.stack([qh[..., 0] & 0x08, qh[..., 0] & 0x80, qh[..., 1] & 0x08, qh[..., 1] & 0x80], axis=2)
    delta = np.where(dbits != 0, -IQ1S_DELTA, IQ1S_DELTA).astype(F32)
    g = grid("iq1s_grid")[idx].astype(F32)
    v = (g + delta[..., None]).astype(F32)
    dl = np.stack([dl1, dl1, dl2, dl2], axis=2)
    return _mul(dl[..., None], v).reshape(B, 256)


def dbf16(b):
    return (b.copy().view(np.uint16).astype(np.uint32) << 16).view(F32).reshape(-1, 1)


KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.int64)


def _e8m0_half(e):
    """ggml_e8m0_to_fp32_half: 2^(e - 128) as float32 (e < 2 gives a subnormal)."""
    e = e.astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - 1) << 23).astype(np.uint32)
    return bits.view(F32)


def dmxfp4(b):
    d = _e8m0_half(b[:, 0])
    qs = b[:, 1:17].astype(np.int64)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    return _mul(KVALUES_MXFP4[q].astype(F32), d[:, None])


DEQUANT = {"F16": df16, "BF16": dbf16, "MXFP4": dmxfp4, "IQ2_XXS": diq2_xxs, "IQ2_XS": diq2_xs,
           "IQ2_S": diq2_s, "IQ3_XXS": diq3_xxs, "IQ3_S": diq3_s, "IQ1_S": diq1_s, "IQ1_M": diq1_m}
