"""GGUF block formats: the format table and the argument checks that both the
native layer (``lowbit.gguf``) and the NumPy reference (``lowbit.reference.gguf``)
use. Bookkeeping only (names, sizes, shapes): no numerics.
"""
from __future__ import annotations

import math

import numpy as np

from . import _args

# name -> (values per block, bytes per block), as ggml's type traits
FORMATS = {
    "Q8_0": (32, 34),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "TQ1_0": (256, 54),
    "TQ2_0": (256, 66),
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
    "Q8_K": (256, 292),
    "IQ4_NL": (32, 18),
    "IQ4_XS": (256, 136),
    "IQ2_XXS": (256, 66),
    "IQ2_XS": (256, 74),
    "IQ2_S": (256, 82),
    "IQ3_XXS": (256, 98),
    "IQ3_S": (256, 110),
    "IQ1_S": (256, 50),
    "IQ1_M": (256, 56),
    "MXFP4": (32, 17),
    "F16": (1, 2),
    "BF16": (1, 2),
}

# Formats lowbit can encode (the rest are read-only: dequantize only).
ENCODABLE = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0",
             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS")
# Formats whose encoder uses an importance matrix (ggml_quantize_chunk's quant_weights).
IMATRIX = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
# Formats whose ggml encoder ignores an importance matrix (accepted, unused).
IMATRIX_IGNORED = ("Q8_0", "TQ1_0", "TQ2_0", "Q8_K")
# Formats with a search=True encoder.
SEARCH = ("Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ4_NL")


def check_format(fmt, *, encode: bool = False) -> str:
    """The canonical name of a format given as a str (any case) or a gguf.GGMLQuantizationType."""
    if type(fmt).__name__ == "GGMLQuantizationType":
        fmt = fmt.name
    if not isinstance(fmt, str):
        raise TypeError(f"fmt must be a str naming a GGUF block format, got {type(fmt).__name__}")
    name = fmt.upper()
    if name not in FORMATS:
        raise ValueError(f"unknown GGUF block format {fmt!r}; known: {', '.join(FORMATS)}")
    if encode and name not in ENCODABLE:
        raise ValueError(f"GGUF format {name} can be read (dequantize) but not written; "
                         f"quantize supports {', '.join(ENCODABLE)}")
    return name


def block_size(fmt) -> int:
    return FORMATS[check_format(fmt)][0]


def type_size(fmt) -> int:
    return FORMATS[check_format(fmt)][1]


def row_bytes(n: int, fmt) -> int:
    bs, ts = FORMATS[check_format(fmt)]
    return n // bs * ts


def check_row_length(shape, fmt: str, name: str = "x") -> None:
    bs = FORMATS[fmt][0]
    if len(shape) == 0:
        raise ValueError(f"{name}: a 0-d array has no rows; {fmt} needs rows of a multiple of {bs} values")
    n = shape[-1]
    if n % bs:
        lo, hi = n // bs * bs, -(-n // bs) * bs
        raise ValueError(f"{name}: row length (last axis) {n} is not a multiple of {bs}, the {fmt} "
                         f"block size; pad or trim the rows (e.g. to {hi} or {lo})")


def check_shape(shape, fmt: str):
    """A dequantize target shape as a tuple of non-negative ints."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a tuple of ints, got {type(shape).__name__}") from None
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"shape must hold non-negative ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    check_row_length(shape, fmt, "shape")
    return shape


def as_blob(blob, fmt: str, shape) -> np.ndarray:
    """The blob as a flat C-contiguous uint8 array of the size ``shape`` needs."""
    if isinstance(blob, (bytes, bytearray, memoryview)):
        blob = np.frombuffer(blob, np.uint8)
    if not isinstance(blob, np.ndarray):
        raise TypeError(f"blob must be a uint8 NumPy array or bytes, got {type(blob).__name__}")
    if blob.dtype not in (np.uint8, np.int8):
        raise TypeError(f"blob must hold bytes (uint8), got dtype {blob.dtype}")
    need = math.prod(shape[:-1]) * row_bytes(shape[-1], fmt)
    if blob.size != need:
        raise ValueError(f"blob has {blob.size} bytes but shape {shape} in {fmt} needs {need} "
                         f"({math.prod(shape[:-1])} row(s) of {row_bytes(shape[-1], fmt)} bytes)")
    return np.ascontiguousarray(blob).view(np.uint8).reshape(-1)


def check_imatrix(imatrix, fmt: str, n_per_row: int):
    """None, or the importance matrix as float32 (n_per_row,): finite and >= 0."""
    if imatrix is None:
        return None
    if fmt not in IMATRIX and fmt not in IMATRIX_IGNORED:
        raise ValueError(f"an importance matrix is not supported for {fmt} (supported: {', '.join(IMATRIX)})")
    qw = _args.as_float32(imatrix, "imatrix")
    if qw.shape != (n_per_row,):
        raise ValueError(f"imatrix must have one value per column of the rows, shape ({n_per_row},); "
                         f"got shape {qw.shape}")
    _args.check_finite(qw, "imatrix")
    if (qw < 0).any():
        raise ValueError(f"imatrix values must be >= 0 (mean squared activations); "
                         f"first negative at index {int(np.flatnonzero(qw < 0)[0])}")
    if fmt in IMATRIX_IGNORED:
        return None  # ggml's encoder for this format does not use it
    return qw


def check_search(search, fmt: str) -> bool:
    if not isinstance(search, (bool, np.bool_)):
        raise TypeError(f"search must be a bool, got {type(search).__name__}")
    if search and fmt not in SEARCH:
        raise ValueError(f"search=True is available for {', '.join(SEARCH)}, not {fmt}")
    return bool(search)
