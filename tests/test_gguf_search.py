"""lowbit.gguf.quantize(..., search=True): the native search encoders (csrc/gguf/gguf_search.h)
== their NumPy twin (lowbit.reference.gguf_search) byte for byte on every ISA variant, no block
worse than llama.cpp's encoder's, and llama.cpp (ctypes on libggml-base.so, see ggml_oracle.py)
decodes the bytes as lowbit does. Only that last test needs the oracle (it must load in CI)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import lowbit
import lowbit.reference.gguf as ref
from ggml_oracle import require as oracle

KERNEL_FAMILIES = ("gguf",)  # the `isa` fixture runs each of their variants

F32 = np.float32
SEARCH_FORMATS = ["Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ4_NL"]
KINDS = ["random", "constant", "zero", "sign", "outlier", "tiny", "subnormal", "huge", "max", "mixed",
         "ties", "lowrank"]
IMATRICES = ["none", "random", "zeros", "allzero", "huge"]


def _seed(*parts) -> int:
    return zlib.crc32("/".join(parts).encode())


def rows_of(kind: str, rows: int, n: int, seed: int = 0) -> np.ndarray:
    """Row kinds: Gaussian at random scales, constant, zeros (with -0.0), signs only, one outlier
    per row, tiny (1e-20), subnormal, huge (1e30), near FLT_MAX, mixed sub-blocks, rounding ties,
    rank one."""
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
    if kind == "max":
        return (np.clip(g, -1, 1) * F32(3.4e38)).astype(F32)
    if kind == "mixed":
        x = g.copy()
        x[:, :32] = 0
        x[:, 32:64] = np.abs(x[:, 32:64])
        x[:, 64:96] = -np.abs(x[:, 64:96])
        x[:, 96:128] *= F32(1e-16)
        return x
    if kind == "ties":
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
    return 288 if fmt == "IQ4_NL" else 512


def assert_bytes_equal(got, want, what):
    if not np.array_equal(got, want):
        rows = np.flatnonzero((got != want).reshape(want.shape[0], -1).any(axis=1))
        r = rows[0]
        cols = np.flatnonzero(got[r] != want[r])
        raise AssertionError(f"{what}: {len(rows)} row(s) differ, first row {r} at bytes {cols[:8].tolist()}")


# ---- native == reference ------------------------------------------------------------

@pytest.mark.parametrize("fmt", SEARCH_FORMATS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("imat", IMATRICES)
def test_search_matches_reference(isa, fmt, kind, imat):
    n = n_for(fmt)
    x = rows_of(kind, 3, n, seed=_seed(fmt, kind, imat, "search"))
    qw = imatrix_of(imat, n)
    got = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True)
    assert_bytes_equal(got, ref.quantize(x, fmt, imatrix=qw, search=True), f"native {isa} vs reference")


@pytest.mark.parametrize("fmt", SEARCH_FORMATS)
def test_search_many_rows_threaded(isa, fmt):
    """Rows split over threads (pieces of rows included): the imatrix follows each row's columns."""
    n = 256 * 5 if fmt != "IQ4_NL" else 32 * 37
    x = rows_of("random", 24, n, seed=_seed(fmt, "threads"))
    for imat in ("none", "zeros"):
        qw = imatrix_of(imat, n)
        got = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True)
        assert_bytes_equal(got, ref.quantize(x, fmt, imatrix=qw, search=True), f"native {isa} {imat}")


def test_reference_search_is_a_search():
    """The twin is not a copy of ggml's encoder: it changes most Gaussian blocks, and a changed
    search parameter changes its bytes (so the native == reference checks above can fail)."""
    from lowbit.reference import gguf_search as S
    x = rows_of("random", 8, 512, seed=11)
    for fmt in SEARCH_FORMATS:
        a, b = ref.quantize(x, fmt, search=True), ref.quantize(x, fmt)
        bs = lowbit.gguf.FORMATS[fmt][1]
        assert (a != b).reshape(-1, bs).any(axis=1).mean() > 0.5, fmt
    full = ref.quantize(x, "Q4_K", search=True)
    rounds = S.ROUNDS
    try:
        S.ROUNDS = 1
        assert not np.array_equal(ref.quantize(x, "Q4_K", search=True), full)
    finally:
        S.ROUNDS = rounds


def test_search_arguments():
    x = rows_of("random", 2, 512)
    for q in (lowbit.gguf.quantize, ref.quantize):
        with pytest.raises(TypeError, match="search must be a bool"):
            q(x, "Q4_K", search=1)
        with pytest.raises(ValueError, match="search=True is available for"):
            q(x, "Q2_K", search=True)
        bad = x.copy()
        bad[1, 7] = np.nan
        with pytest.raises(ValueError, match=r"index \(1, 7\)"):
            q(bad, "Q4_K", search=True)
        e = q(np.zeros((0, 256), F32), "Q4_K", search=True)
        assert e.shape == (0, 144)
        b = q(x.reshape(2, 1, 512), "IQ4_XS", search=True)
        assert b.shape == (2, 1, 272)


# ---- llama.cpp reads the bytes; never worse than its encoder ------------------------

def _search_input(fmt, imat):
    n = n_for(fmt)
    kinds = ["random", "outlier", "mixed", "lowrank", "zero", "constant", "tiny", "sign", "huge"]
    x = np.concatenate([rows_of(k, 8 if k == "random" else 2, n, seed=_seed(fmt, k, "s")) for k in kinds])
    return x, imatrix_of(imat, n)


@pytest.mark.parametrize("fmt", SEARCH_FORMATS)
@pytest.mark.parametrize("imat", ["none", "zeros", "random"])
def test_search_is_never_worse(isa, fmt, imat):
    """search=True: every block the search changed has a weighted error <= that of llama.cpp's
    encoder (the reference's ggml bytes, == llama.cpp's by test_gguf_k) and decodes to finite
    values; the total on plain Gaussian rows is lower. Runs without the oracle (qemu included)."""
    x, qw = _search_input(fmt, imat)
    n = x.shape[1]
    base = ref.quantize(x, fmt, imatrix=qw)
    got = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True)
    assert got.shape == base.shape
    y0 = ref.dequantize(base, fmt, x.shape).astype(np.float64)
    y1 = ref.dequantize(got, fmt, x.shape).astype(np.float64)
    np.testing.assert_array_equal(lowbit.gguf.dequantize(got, fmt, x.shape).view(np.uint32),
                                  y1.astype(F32).view(np.uint32))
    w = np.ones(n) if qw is None else qw.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        e0 = w * (x.astype(np.float64) - y0) ** 2
        e1 = w * (x.astype(np.float64) - y1) ** 2
    bs = lowbit.gguf.FORMATS[fmt][0]
    b0, b1 = e0.reshape(-1, bs).sum(axis=1), e1.reshape(-1, bs).sum(axis=1)
    changed = (got != base).reshape(b0.size, -1).any(axis=1)   # unchanged blocks are llama.cpp's own
    assert (b1[changed] <= b0[changed]).all(), f"{int((b1[changed] > b0[changed]).sum())} block(s) worse"
    assert np.isfinite(y1.reshape(-1, bs)[changed]).all()
    # on plain Gaussian rows (the first eight) the search gains at least 3% (0.13 dB)
    r0, r1 = e0[:8].sum(), e1[:8].sum()
    assert r1 < 0.97 * r0


@pytest.mark.parametrize("fmt", SEARCH_FORMATS)
@pytest.mark.parametrize("imat", ["none", "zeros"])
def test_search_bytes_decode_in_llama_cpp(fmt, imat):
    """llama.cpp reads search=True's bytes as lowbit does (its to_float == ours, bit for bit)."""
    o = oracle()
    x, qw = _search_input(fmt, imat)
    got = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True)
    y = np.stack([o.dequantize(got[r], fmt, x.shape[1]) for r in range(x.shape[0])])
    np.testing.assert_array_equal(ref.dequantize(got, fmt, x.shape).view(np.uint32), y.view(np.uint32))
    np.testing.assert_array_equal(lowbit.gguf.dequantize(got, fmt, x.shape).view(np.uint32), y.view(np.uint32))


def test_search_same_on_every_isa():
    x = np.concatenate([rows_of(k, 2, 512, seed=5) for k in ("random", "outlier", "mixed")])
    qw = imatrix_of("zeros", 512)
    for fmt in SEARCH_FORMATS:
        outs = []
        for isa in lowbit.available_isas():
            with lowbit.use_isa(isa):
                outs.append(lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True))
        for o in outs[1:]:
            np.testing.assert_array_equal(o, outs[0])
