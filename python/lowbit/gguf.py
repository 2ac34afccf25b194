"""GGUF block formats (SPEC 8): llama.cpp's tensor types.

``quantize(x, fmt, imatrix=None, search=False)`` returns the raw blocks exactly
as llama.cpp stores them (uint8, shape ``x.shape[:-1] + (bytes_per_row,)``):

- Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0: byte-identical to
  ``gguf.quants.quantize`` of the ``gguf`` package (ggml's ``quantize_row_*_ref``);
- Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS: byte-identical to
  llama.cpp's ``ggml_quantize_chunk`` (what ``llama-quantize`` runs), with or
  without an importance matrix ``imatrix`` (one value per column: the mean
  squared activation of that input feature, as ``llama-imatrix`` computes it).
  ``search=True`` (Q4_K, Q5_K, Q6_K, IQ4_XS, IQ4_NL) searches the scales harder
  than llama.cpp does: other bytes, the same format, lower weighted error.

``dequantize(blob, fmt, shape)`` gives the float32 values of ggml's ``to_float``
for every type above and for the read-only ones a llama.cpp model may hold
(IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, MXFP4, F16, BF16).
Rounding is ggml's, not SPEC 1's. ``write(path, tensors)`` saves tensors to a
``.gguf`` file through the ``gguf`` package (extra ``gguf``).

Where gguf-py has no defined answer, lowbit does this (the NumPy reference,
``lowbit.reference.gguf``, is the written-out definition):

- NaN/Inf input: ValueError naming the first bad index (gguf-py warns
  "invalid value encountered in cast" and writes unspecified bytes).
- A scale beyond float16's range (e.g. Q8_0 with max|x| > 127 * 65504) is
  stored as +-Inf, exactly as gguf-py and ggml do; dequantizing such a block
  gives +-Inf/NaN. Check ``np.isfinite`` on the result if your data can be that large.
- Blocks of tiny values (max|x| below about 1e-37) whose ``1/d`` overflows get
  the codes gguf-py produces on x86 (integer conversion of +-Inf/NaN gives 0);
  their float16 scale is 0 anyway, so they dequantize to zeros.
- Q4_1/Q5_1 blocks whose minimum (maximum) is a zero and that hold both +0.0
  and -0.0: the stored minimum is -0.0 (maximum +0.0). NumPy's reductions leave
  that sign unspecified, so gguf-py may store the other zero there (the values
  are equal; only that sign bit can differ).
"""
from __future__ import annotations

import math
import os
import tempfile
from typing import Mapping, Optional, Tuple, Union

import numpy as np

from . import _args, _C
from ._gguf_formats import (ENCODABLE, FORMATS, IMATRIX, SEARCH, as_blob, block_size,  # noqa: F401
                            check_format, check_imatrix, check_row_length, check_search, check_shape,
                            row_bytes, type_size)

__all__ = ["quantize", "dequantize", "write", "FORMATS", "ENCODABLE", "IMATRIX", "SEARCH", "block_size",
           "type_size", "row_bytes", "shape_bytes"]


def quantize(x, fmt: str, *, imatrix=None, search: bool = False) -> np.ndarray:
    """Raw GGUF blocks of ``x`` in format ``fmt`` (e.g. ``"Q4_K"``, ``"Q8_0"``, ``"IQ4_XS"``).

    The last axis is the row; its length must be a multiple of the block size
    (32 for Q*_0/Q*_1/IQ4_NL, 256 for the others). ``imatrix``: None or one
    non-negative value per column (``x.shape[-1]``), used as llama.cpp uses it
    (Q2_K..Q6_K, IQ4_NL, IQ4_XS, Q4_0, Q4_1, Q5_0, Q5_1; accepted and unused for
    Q8_0, TQ1_0, TQ2_0, Q8_K, as in llama.cpp). ``search``: see the module.
    Returns uint8 of shape ``x.shape[:-1] + (bytes_per_row,)``.
    """
    fmt = check_format(fmt, encode=True)
    x = _args.as_float32(x)
    check_row_length(x.shape, fmt)
    qw = check_imatrix(imatrix, fmt, x.shape[-1])
    search = check_search(search, fmt)
    bs, ts = FORMATS[fmt]
    out_shape = x.shape[:-1] + (x.shape[-1] // bs * ts,)
    if x.size == 0:
        return np.zeros(out_shape, np.uint8)
    try:
        if search:
            blob = _C.gguf_quantize_search(x.reshape(-1), fmt, qw, x.shape[-1])
        else:
            blob = _C.gguf_quantize(x.reshape(-1), fmt, qw, x.shape[-1])
    except _C.NonFiniteError:
        raise ValueError(_args.nonfinite_message(x)) from None
    return blob.reshape(out_shape)


def dequantize(blob, fmt: str, shape) -> np.ndarray:
    """Float32 values of the GGUF blocks ``blob`` holding a tensor of ``shape``.

    ``blob`` is a uint8 array (any shape) or bytes with exactly the size that
    ``shape`` needs in ``fmt``.
    """
    fmt = check_format(fmt)
    shape = check_shape(shape, fmt)
    b = as_blob(blob, fmt, shape)
    if b.size == 0:
        return np.zeros(shape, np.float32)
    return _C.gguf_dequantize(b, fmt).reshape(shape)


# ---- writing .gguf files ---------------------------------------------------------

TensorSpec = Union[np.ndarray, Tuple[np.ndarray, str, Tuple[int, ...]]]


def _import_gguf():
    import importlib
    try:
        return importlib.import_module("gguf")
    except ImportError:
        raise ImportError("lowbit.gguf.write needs the 'gguf' package: pip install 'lowbit[gguf]' "
                          "(or pip install gguf)") from None


def write(path, tensors: Mapping[str, TensorSpec], *, arch: str = "lowbit",
          metadata: Optional[Mapping[str, object]] = None) -> None:
    """Save ``tensors`` as a ``.gguf`` file through the ``gguf`` package's GGUFWriter.

    ``tensors`` maps a name to either a float array (float16 is stored as F16,
    any other float dtype as F32) or a ``(blob, fmt, shape)`` triple where
    ``blob = quantize(x, fmt)`` and ``shape = x.shape`` (the logical, row-major
    shape; GGUF stores it reversed, as ggml does, and GGUFReader reports it so).
    ``metadata`` adds key/value pairs (str, int, float, bool or list values).

    The file appears atomically: it is written to a temporary file in the same
    folder, flushed to disk and renamed over ``path``; on any error ``path`` is
    left as it was (absent, or the previous file) and the temporary is removed.
    """
    gguf = _import_gguf()
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of name -> array or (blob, fmt, shape), got {type(tensors).__name__}")
    prepared = [(name, *_prepare(gguf, name, spec)) for name, spec in tensors.items()]

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".gguf.tmp", dir=folder)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, arch)
        try:
            for key, value in (metadata or {}).items():
                _add_metadata(w, key, value)
            for name, data, raw_dtype in prepared:
                w.add_tensor(name, data, raw_dtype=raw_dtype)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
        finally:
            w.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _prepare(gguf, name, spec):
    if not isinstance(name, str) or not name:
        raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
    if isinstance(spec, tuple):
        if len(spec) != 3:
            raise ValueError(f"tensor {name!r}: expected (blob, fmt, shape), got a tuple of {len(spec)}")
        blob, fmt, shape = spec
        fmt = check_format(fmt)
        shape = check_shape(shape, fmt)
        if len(shape) == 0:
            raise ValueError(f"tensor {name!r}: shape must have at least one dimension")
        b = as_blob(blob, fmt, shape)
        byte_shape = shape[:-1] + (row_bytes(shape[-1], fmt),)
        return b.reshape(byte_shape), gguf.GGMLQuantizationType[fmt]
    arr = np.asarray(spec)
    if arr.dtype == np.float16:
        return np.ascontiguousarray(arr), None
    if arr.dtype.kind != "f" and arr.dtype.name != "bfloat16":
        raise TypeError(f"tensor {name!r}: expected a float array or (blob, fmt, shape), got dtype {arr.dtype}")
    arr = _args.as_float32(arr, name)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr, None


def _add_metadata(w, key, value):
    if not isinstance(key, str):
        raise TypeError(f"metadata keys must be str, got {type(key).__name__}")
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int) and 0 <= value < 2 ** 32:
        w.add_uint32(key, value)
    elif isinstance(value, int):
        w.add_int64(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        w.add_array(key, list(value))
    else:
        raise TypeError(f"metadata {key!r}: unsupported value type {type(value).__name__}")


def shape_bytes(shape, fmt: str) -> int:
    """Bytes that a tensor of ``shape`` takes in ``fmt``."""
    fmt = check_format(fmt)
    shape = check_shape(shape, fmt)
    return math.prod(shape[:-1]) * row_bytes(shape[-1], fmt)
