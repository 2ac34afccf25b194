"""llama.cpp's super-block formats (K-quants, IQ4_NL, IQ4_XS, Q8_K): lowbit's native
encoders and decoders == the NumPy reference == llama.cpp itself (ctypes on
libggml-base.so: ggml_quantize_chunk and the types' to_float), byte for byte.

Two halves: native == reference on every ISA variant (the `isa` fixture), which runs
everywhere (under qemu too, where there is no llama.cpp); and reference == llama.cpp
(plus the default variant == llama.cpp), which needs the oracle: skipped without it,
failed under CI=true (see ggml_oracle.py)."""
from __future__ import annotations

import functools
import zlib

import numpy as np
import pytest

import lowbit
import lowbit.reference.gguf as ref
from ggml_oracle import require as oracle

KERNEL_FAMILIES = ("gguf",)  # the `isa` fixture runs each of their variants

F32 = np.float32
K_FORMATS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ4_NL", "IQ4_XS"]
IMATRIX_FORMATS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
KINDS = ["random", "constant", "zero", "sign", "outlier", "tiny", "subnormal", "huge", "max", "mixed",
         "ties", "lowrank"]


def _seed(*parts) -> int:
    """A seed that is the same in every run (str hashes are randomized per process)."""
    return zlib.crc32("/".join(parts).encode())


def rows_of(kind: str, rows: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((rows, n)).astype(F32)
    if kind == "random":
        return (g * rng.uniform(1e-3, 10, (rows, 1))).astype(F32)
    if kind == "constant":
        return np.repeat(rng.uniform(-3, 3, (rows, 1)), n, axis=1).astype(F32)
    if kind == "zero":
        x = np.zeros((rows, n), F32)
        x[:, ::7] = -0.0
        return x
    if kind == "sign":
        return np.where(g >= 0, F32(1), F32(-1)).astype(F32)
    if kind == "outlier":
        x = g.copy()
        x[np.arange(rows), rng.integers(0, n, rows)] = rng.choice([-1e3, 1e3], rows)
        return x
    if kind == "tiny":
        return (g * F32(1e-20)).astype(F32)
    if kind == "subnormal":
        return (g * F32(1e-40)).astype(F32)
    if kind == "huge":
        return (g * F32(1e30)).astype(F32)
    if kind == "max":  # near FLT_MAX: sums of squares overflow to Inf inside the encoders
        return (np.clip(g, -1, 1) * F32(3.4e38)).astype(F32)
    if kind == "mixed":  # zero sub-blocks, positive-only and negative-only ones, tiny ones
        x = g.copy()
        x[:, :32] = 0
        x[:, 32:64] = np.abs(x[:, 32:64])
        x[:, 64:96] = -np.abs(x[:, 64:96])
        x[:, 96:128] *= F32(1e-16)
        return x
    if kind == "ties":  # small integers and halves: many exact rounding ties
        return (rng.integers(-8, 9, (rows, n)) * F32(0.5)).astype(F32)
    if kind == "lowrank":
        return (rng.standard_normal((rows, 1)) * rng.standard_normal((1, n))).astype(F32)
    raise AssertionError(kind)


def imatrix_of(kind: str, n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "random":
        return (rng.uniform(0, 3, n) ** 2).astype(F32)
    if kind == "zeros":  # some columns never active
        w = (rng.uniform(0, 3, n) ** 2).astype(F32)
        w[rng.random(n) < 0.3] = 0
        w[:40] = 0
        return w
    if kind == "allzero":
        return np.zeros(n, F32)
    if kind == "huge":
        return rng.uniform(0, 1e30, n).astype(F32)
    raise AssertionError(kind)


def n_for(fmt):
    # 17 blocks of 32 (SIMD batches of 8 and 16, and one left over); 7 super-blocks
    # (batches of 4 and 2, and one left over; test_every_batch_size has wider rows)
    return 32 * 17 if lowbit.gguf.FORMATS[fmt][0] == 32 else 256 * 7


def assert_bytes_equal(got, want, what):
    if not np.array_equal(got, want):
        rows = np.flatnonzero((got != want).reshape(want.shape[0], -1).any(axis=1))
        r = rows[0]
        cols = np.flatnonzero(got[r] != want[r])
        raise AssertionError(f"{what}: {len(rows)} row(s) differ, first row {r} at bytes {cols[:8].tolist()}")


def assert_floats_identical(got, want, what):
    g, w = got.view(np.uint32), want.view(np.uint32)
    if not np.array_equal(g, w):
        i = np.flatnonzero(g.reshape(-1) != w.reshape(-1))
        raise AssertionError(f"{what}: {len(i)} value(s) differ, first at {i[0]}: "
                             f"{got.reshape(-1)[i[0]]!r} vs {want.reshape(-1)[i[0]]!r}")


# ---- native == NumPy reference, on every ISA variant (no llama.cpp needed) ----------------
# The reference is computed once per input (it does not depend on the variant) and shared
# by the variants' runs: under qemu (the aarch64 job) it is the slow part.

@functools.lru_cache(maxsize=None)
def _ref_encode(fmt, kind, imat, rows):
    n = n_for(fmt)
    seed = _seed(fmt, kind) if imat == "none" else _seed(fmt, kind, imat)
    x = rows_of(kind, rows, n, seed=seed)
    qw = imatrix_of(imat, n)
    want = ref.quantize(x, fmt, imatrix=qw)
    want.setflags(write=False)
    return x, qw, want


@pytest.mark.parametrize("fmt", K_FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_encoders_match_reference(isa, fmt, kind):
    x, _, want = _ref_encode(fmt, kind, "none", 3)
    assert_bytes_equal(lowbit.gguf.quantize(x, fmt), want, f"native {isa} vs reference")
    # decoders on the same bytes
    assert_floats_identical(lowbit.gguf.dequantize(want, fmt, x.shape), ref.dequantize(want, fmt, x.shape),
                            f"native decode {isa} vs reference")


@pytest.mark.parametrize("fmt", IMATRIX_FORMATS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("imat", ["random", "zeros", "allzero", "huge"])
def test_encoders_with_imatrix_match_reference(isa, fmt, kind, imat):
    x, qw, want = _ref_encode(fmt, kind, imat, 2)
    assert_bytes_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), want, f"native {isa} vs reference")


@pytest.mark.parametrize("fmt", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ4_NL"])
@pytest.mark.parametrize("imat", ["none", "random", "zeros"])
def test_every_batch_size(isa, fmt, imat):
    """Rows wide enough for every batch the SIMD encoders take (8, 4, 2 super-blocks and
    one left over; 16 and 8 blocks of 32), with and without importance weights."""
    n = 256 * 15 if fmt != "IQ4_NL" else 32 * 25
    x = np.concatenate([rows_of(k, 1, n, seed=_seed(fmt, k, imat, "wide")) for k in ["random", "outlier", "mixed"]])
    qw = imatrix_of(imat, n)
    assert_bytes_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), ref.quantize(x, fmt, imatrix=qw),
                       f"native {isa} vs reference")


def _rows_input(fmt, rows, imat):
    n = 256 * 3 if fmt != "IQ4_NL" else 32 * 21
    x = rows_of("random", rows, n, seed=rows)
    qw = imatrix_of(imat, n) if fmt in IMATRIX_FORMATS else None
    return x, qw


@pytest.mark.parametrize("fmt", K_FORMATS)
@pytest.mark.parametrize("rows", [1, 5, 40])
@pytest.mark.parametrize("imat", ["none", "random"])
def test_row_counts_and_threads(isa, fmt, rows, imat):
    """Many rows (the driver splits them over threads, pieces of rows included): the same
    bytes as one row at a time, and as the reference (on the first rows)."""
    x, qw = _rows_input(fmt, rows, imat)
    got = lowbit.gguf.quantize(x, fmt, imatrix=qw)
    for r in range(rows):
        assert_bytes_equal(got[r:r + 1], lowbit.gguf.quantize(x[r:r + 1], fmt, imatrix=qw), f"native {isa} row {r}")
    k = min(rows, 5)
    assert_bytes_equal(got[:k], ref.quantize(x[:k], fmt, imatrix=qw), f"native {isa} vs reference")


def _threaded_input():
    return rows_of("random", 64, 256 * 5, seed=7), imatrix_of("zeros", 256 * 5)


def test_many_rows_threaded_imatrix(isa):
    """A tensor big enough for several threads: the importance weights follow each row's columns."""
    x, qw = _threaded_input()
    for fmt in ["Q4_K", "IQ4_XS"]:
        got = lowbit.gguf.quantize(x, fmt, imatrix=qw)
        for r in range(0, 64, 9):
            assert_bytes_equal(got[r:r + 1], ref.quantize(x[r:r + 1], fmt, imatrix=qw),
                               f"native {isa} {fmt} row {r} vs reference")
        for r in range(64):
            assert_bytes_equal(got[r:r + 1], lowbit.gguf.quantize(x[r:r + 1], fmt, imatrix=qw),
                               f"native {isa} {fmt} row {r} alone")


def _random_blob(fmt, rows=4, blocks=2, seed=3):
    ts = lowbit.gguf.FORMATS[fmt][1]
    return np.random.default_rng(seed).integers(0, 256, (rows, blocks * ts), dtype=np.uint8)


@pytest.mark.parametrize("fmt", K_FORMATS)
def test_decoders_on_random_bytes(isa, fmt):
    """Any bytes (scales of every float16 value, NaN/Inf included) decode as the reference decodes them."""
    bs = lowbit.gguf.FORMATS[fmt][0]
    blob = _random_blob(fmt)
    assert_floats_identical(lowbit.gguf.dequantize(blob, fmt, (4, 2 * bs)), ref.dequantize(blob, fmt, (4, 2 * bs)),
                            f"native {isa} vs reference")


# ---- the reference (and so every variant above) == llama.cpp: these need the oracle ---------

@pytest.mark.parametrize("fmt", K_FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_encoders_match_llama_cpp(fmt, kind):
    o = oracle()
    x, _, want_ref = _ref_encode(fmt, kind, "none", 3)
    want = o.quantize(x, fmt)
    assert_bytes_equal(want_ref, want, "reference vs llama.cpp")
    assert_bytes_equal(lowbit.gguf.quantize(x, fmt), want, f"native {lowbit.get_isa()} vs llama.cpp")
    # decoders: ggml's to_float on the same bytes
    y = np.stack([o.dequantize(want[r], fmt, x.shape[1]) for r in range(want.shape[0])])
    assert_floats_identical(ref.dequantize(want, fmt, x.shape), y, "reference decode vs llama.cpp")


@pytest.mark.parametrize("fmt", IMATRIX_FORMATS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("imat", ["random", "zeros", "allzero", "huge"])
def test_encoders_with_imatrix_match_llama_cpp(fmt, kind, imat):
    o = oracle()
    x, qw, want_ref = _ref_encode(fmt, kind, imat, 2)
    want = o.quantize(x, fmt, qw)
    assert_bytes_equal(want_ref, want, "reference vs llama.cpp")
    assert_bytes_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), want, f"native {lowbit.get_isa()} vs llama.cpp")


@pytest.mark.parametrize("fmt", K_FORMATS)
@pytest.mark.parametrize("imat", ["none", "random"])
def test_row_counts_match_llama_cpp(fmt, imat):
    for rows in (1, 5, 40):
        x, qw = _rows_input(fmt, rows, imat)
        assert_bytes_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), oracle().quantize(x, fmt, qw),
                           f"native {lowbit.get_isa()} vs llama.cpp, {rows} rows")


def test_many_rows_threaded_imatrix_match_llama_cpp():
    o = oracle()
    x, qw = _threaded_input()
    for fmt in ["Q4_K", "IQ4_XS"]:
        assert_bytes_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), o.quantize(x, fmt, qw),
                           f"native {lowbit.get_isa()} {fmt} vs llama.cpp")


@pytest.mark.parametrize("fmt", K_FORMATS)
def test_decoders_on_random_bytes_match_llama_cpp(fmt):
    o = oracle()
    bs = lowbit.gguf.FORMATS[fmt][0]
    blob = _random_blob(fmt)
    y = np.stack([o.dequantize(blob[r], fmt, 2 * bs) for r in range(4)])
    assert_floats_identical(ref.dequantize(blob, fmt, (4, 2 * bs)), y, "reference vs llama.cpp")


def test_imatrix_ignored_where_llama_cpp_ignores_it():
    x = rows_of("random", 2, 512)
    qw = imatrix_of("random", 512)
    for fmt in ["Q8_0", "TQ2_0", "Q8_K"]:
        np.testing.assert_array_equal(lowbit.gguf.quantize(x, fmt, imatrix=qw), lowbit.gguf.quantize(x, fmt))


def test_bad_arguments():
    x = rows_of("random", 2, 512)
    with pytest.raises(ValueError, match="not a multiple of 256"):
        lowbit.gguf.quantize(x[:, :300], "Q4_K")
    with pytest.raises(ValueError, match=r"shape \(512,\)"):
        lowbit.gguf.quantize(x, "Q4_K", imatrix=np.ones(256, F32))
    with pytest.raises(ValueError, match=">= 0"):
        lowbit.gguf.quantize(x, "Q4_K", imatrix=-np.ones(512, F32))
    with pytest.raises(ValueError, match="non-finite"):
        bad = np.ones(512, F32)
        bad[3] = np.nan
        lowbit.gguf.quantize(x, "Q4_K", imatrix=bad)
    with pytest.raises(TypeError, match="floating-point"):
        lowbit.gguf.quantize(x, "Q4_K", imatrix=np.ones(512, np.int32))
    with pytest.raises(TypeError, match="search must be a bool"):
        lowbit.gguf.quantize(x, "Q4_K", search=1)
    with pytest.raises(ValueError, match="search=True is available for"):
        lowbit.gguf.quantize(x, "Q2_K", search=True)
    for fmt in K_FORMATS:
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[1, 300] = bad
            with pytest.raises(ValueError, match=r"index \(1, 300\)"):
                lowbit.gguf.quantize(y, fmt)
            with pytest.raises(ValueError, match=r"index \(1, 300\)"):
                ref.quantize(y, fmt)


def test_shapes_and_empty():
    for fmt in K_FORMATS:
        bs, ts = lowbit.gguf.FORMATS[fmt]
        x = rows_of("random", 6, 2 * bs).reshape(2, 3, 2 * bs)
        b = lowbit.gguf.quantize(x, fmt)
        assert b.shape == (2, 3, 2 * ts) and b.dtype == np.uint8
        np.testing.assert_array_equal(b, ref.quantize(x, fmt))
        assert lowbit.gguf.dequantize(b, fmt, x.shape).shape == x.shape
        e = lowbit.gguf.quantize(np.zeros((0, bs), F32), fmt)
        assert e.shape == (0, ts)
        assert lowbit.gguf.dequantize(e, fmt, (0, bs)).shape == (0, bs)


READ_ONLY = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "MXFP4", "F16", "BF16"]


def _read_only_blob(fmt):
    """Random bytes (every grid index, sign pattern and scale, NaN/Inf scales too); for F16
    every float16 bit pattern, NaNs (quiet and signalling) included."""
    bs, ts = lowbit.gguf.FORMATS[fmt]
    if fmt == "F16":
        return np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(2, -1), 32768 * bs
    nblk = 4096 if bs == 1 else 64
    rng = np.random.default_rng(zlib.crc32(fmt.encode()))
    return rng.integers(0, 256, (2, nblk * ts), dtype=np.uint8), nblk * bs


@pytest.mark.parametrize("fmt", READ_ONLY)
def test_read_only_decoders_match_reference(isa, fmt):
    blob, n = _read_only_blob(fmt)
    assert_floats_identical(lowbit.gguf.dequantize(blob, fmt, (2, n)), ref.dequantize(blob, fmt, (2, n)),
                            f"native {isa} vs reference")


@pytest.mark.parametrize("fmt", READ_ONLY)
def test_read_only_decoders_match_llama_cpp(fmt):
    o = oracle()
    blob, n = _read_only_blob(fmt)
    y = np.stack([o.dequantize(blob[r], fmt, n) for r in range(2)])
    assert_floats_identical(ref.dequantize(blob, fmt, (2, n)), y, "reference vs llama.cpp")


def test_read_only_formats_refuse_encoding():
    for fmt in READ_ONLY:
        with pytest.raises(ValueError, match="can be read"):
            lowbit.gguf.quantize(np.zeros((1, 256), F32), fmt)
        with pytest.raises(ValueError, match="can be read"):
            ref.quantize(np.zeros((1, 256), F32), fmt)


