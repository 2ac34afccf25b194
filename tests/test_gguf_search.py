"""lowbit.gguf.quantize(..., search=True): the native search encoders (csrc/gguf/gguf_search.h)
== their NumPy twin (lowbit.reference.gguf_search) byte for byte on every ISA variant, no block
worse than llama.cpp's encoder's, and llama.cpp (ctypes on libggml-base.so, see ggml_oracle.py)
decodes the bytes as lowbit does. Only that last test needs the oracle (it must load in CI)."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
import lowbit.reference.gguf as ref
from ggml_oracle import require as oracle
from test_gguf_k import KINDS, _seed, assert_bytes_equal, imatrix_of, rows_of  # the row kinds of the encoder tests

KERNEL_FAMILIES = ("gguf",)  # the `isa` fixture runs each of their variants

F32 = np.float32
SEARCH_FORMATS = ["Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "IQ4_NL"]
IMATRICES = ["none", "random", "zeros", "allzero", "huge"]


def n_for(fmt):
    return 288 if fmt == "IQ4_NL" else 512


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


def _light_outlier_rows():
    """Rows of 512 whose every 32-value sub-block is uniform in [-1, 1] but for one value of 12 at a
    column weighing 1e-6 (the imatrix), so the best weighted fit clips it."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (4, 512)).astype(F32)
    x[:, 3::32] = 12.0
    qw = np.ones(512, F32)
    qw[3::32] = 1e-6
    return x, qw


def test_search_fit_lets_light_values_clip():
    """With an imatrix the continuous sub-block fits (the descent's second start) also start from the
    range of the heavier values: a light outlier is clipped (step ~2/15 of the heavy range, IQ4 scale
    ~1/113) instead of spanning the grid (step ~13/15, as without weights or from the whole range)."""
    from lowbit.reference import gguf_search as S
    x, qw = _light_outlier_rows()
    sub, w = x.reshape(-1, 32), np.broadcast_to(qw, x.shape).reshape(-1, 32)
    s, m = S._qk45_fit(sub, w, 15)
    assert (s > 0).all() and (s < 0.2).all() and (m < 0).all()
    s0, _ = S._qk45_fit(sub, None, 15)
    assert (s0 > 0.7).all()
    d = S._iq4_fit(sub, w)
    assert (np.abs(d) > 0.005).all() and (np.abs(d) < 0.012).all()
    assert (np.abs(S._iq4_fit(sub, None)) > 0.08).all()


@pytest.mark.parametrize("fmt", SEARCH_FORMATS)
def test_search_light_outliers_match_reference(isa, fmt):
    """The weighted fit starts, natively == the reference; the fitted formats' weighted error far below
    llama.cpp's (about 1/40 measured; Q6_K, whose fit has no weighted starts, at most equal)."""
    x, qw = _light_outlier_rows()
    if fmt == "IQ4_NL":
        x, qw = x[:, :288], qw[:288]
    got = lowbit.gguf.quantize(x, fmt, imatrix=qw, search=True)
    assert_bytes_equal(got, ref.quantize(x, fmt, imatrix=qw, search=True), f"native {isa} vs reference")
    y0 = ref.dequantize(ref.quantize(x, fmt, imatrix=qw), fmt, x.shape).astype(np.float64)
    y1 = ref.dequantize(got, fmt, x.shape).astype(np.float64)
    e0, e1 = (qw * (x - y0) ** 2).sum(), (qw * (x - y1) ** 2).sum()
    assert e1 <= (e0 if fmt == "Q6_K" else 0.1 * e0)


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
