"""llama.cpp's own encoders and decoders through ctypes on libggml-base.so (the oracle).

Where the library comes from, first found wins:
- ``LOWBIT_GGML_LIB``: a path to libggml-base.so (``none``: no oracle, to see what runs
  without one, as under qemu);
- the ``llama_cpp`` package (``pip install llama-cpp-python==0.3.36``): ``llama_cpp/lib/``;
- a local llama.cpp build in /tmp/peers/llama-build/bin.

``load()`` returns an Oracle or None; ``require()`` returns one or, if none can be
loaded, fails under CI (env ``CI`` set to true) and skips elsewhere.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

# enum ggml_type (ggml.h)
TYPES = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q8_1": 9,
    "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15,
    "IQ2_XXS": 16, "IQ2_XS": 17, "IQ3_XXS": 18, "IQ1_S": 19, "IQ4_NL": 20, "IQ3_S": 21,
    "IQ2_S": 22, "IQ4_XS": 23, "IQ1_M": 29, "BF16": 30, "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39,
}

_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _Traits(ctypes.Structure):  # struct ggml_type_traits (ggml.h)
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


def _candidates():
    env = os.environ.get("LOWBIT_GGML_LIB")
    if env and env.lower() == "none":
        return
    if env:
        yield Path(env)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.origin:
        yield Path(spec.origin).parent / "lib" / "libggml-base.so"
    yield Path("/tmp/peers/llama-build/bin/libggml-base.so")


class Oracle:
    def __init__(self, path: Path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_Traits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        self.lib = lib

    def traits(self, fmt: str) -> _Traits:
        return self.lib.ggml_get_type_traits(TYPES[fmt]).contents

    def row_bytes(self, fmt: str, n: int) -> int:
        t = self.traits(fmt)
        return n // t.blck_size * t.type_size

    def quantize(self, x: np.ndarray, fmt: str, imatrix=None) -> np.ndarray:
        """ggml_quantize_chunk on the rows of x (float32, 2-D): uint8 (rows, row_bytes)."""
        x = np.ascontiguousarray(x, np.float32)
        rows, n = x.shape
        out = np.zeros((rows, self.row_bytes(fmt, n)), np.uint8)
        qw = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, np.float32)
            assert imatrix.shape == (n,)
            qw = imatrix.ctypes.data
        if fmt == "Q8_K":  # not a ggml_quantize_chunk type (no traits either): quantize_row_q8_K_ref
            self.lib.quantize_row_q8_K_ref(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(out.ctypes.data),
                                           ctypes.c_int64(x.size))
            return out
        got = self.lib.ggml_quantize_chunk(TYPES[fmt], x.ctypes.data, out.ctypes.data, 0, rows, n, qw)
        assert got == out.size
        return out

    def dequantize(self, blob: np.ndarray, fmt: str, n: int) -> np.ndarray:
        """The type's to_float on n values held in blob."""
        blob = np.ascontiguousarray(blob, np.uint8).reshape(-1)
        assert blob.size == self.row_bytes(fmt, n)
        out = np.empty(n, np.float32)
        if fmt == "Q8_K":
            self.lib.dequantize_row_q8_K(ctypes.c_void_p(blob.ctypes.data), ctypes.c_void_p(out.ctypes.data),
                                         ctypes.c_int64(n))
            return out
        _TO_FLOAT(self.traits(fmt).to_float)(blob.ctypes.data, out.ctypes.data, n)
        return out


_cached = []


def load():
    if not _cached:
        found = None
        for p in _candidates():
            if p.is_file():
                try:
                    found = Oracle(p)
                    break
                except OSError:
                    continue
        _cached.append(found)
    return _cached[0]


def require() -> Oracle:
    o = load()
    if o is None:
        msg = ("llama.cpp's libggml-base.so (the oracle) was not found: pip install llama-cpp-python==0.3.36 "
               "or set LOWBIT_GGML_LIB")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return o
