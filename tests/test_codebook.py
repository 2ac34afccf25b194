"""Non-uniform quantization (SPEC 9): codebook lookup, k-means, NF4 — native vs the NumPy reference."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import lowbit
from lowbit import reference as ref
from lowbit.codebook import quantize_nf4
from lowbit.reference import codebook as rcb

KERNEL_FAMILIES = ("codebook",)  # the `isa` fixture runs each of their variants

F32 = np.float32

# bitsandbytes/functional.py get_4bit_type("nf4"): the literals, typed independently here
BNB_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
           -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
           0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
           0.7229568362236023, 1.0]


def assert_same(a: lowbit.QTensor, b: lowbit.QTensor):
    assert a.shape == b.shape and a.scheme == b.scheme and a.bits == b.bits
    assert a.codes.dtype == np.uint8 == b.codes.dtype
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.scale.view(np.uint32), b.scale.view(np.uint32))
    np.testing.assert_array_equal(a.codebook, b.codebook)
    np.testing.assert_array_equal(a.dequantize().view(np.uint32), ref.dequantize(b).view(np.uint32))


# ---- codebook lookup ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 16, 17, 100, 256])
@pytest.mark.parametrize("n", [1, 7, 31, 33, 4097])
def test_quantize_codebook_matches_reference(isa, rng, k, n):
    x = rng.standard_normal(n).astype(F32)
    cb = np.sort(rng.standard_normal(k)).astype(F32)
    assert_same(lowbit.quantize_codebook(x, cb), ref.quantize_codebook(x, cb))
    cbn = cb / np.abs(cb).max()
    for g in (1, 7, 64, 5000):
        assert_same(lowbit.quantize_codebook(x, cbn, group_size=g), ref.quantize_codebook(x, cbn, group_size=g))


def test_codebook_ties_go_to_the_lower_index(isa):
    cb = np.array([-1, 0, 0, 1, 3], F32)  # a duplicate: the first copy wins
    x = np.array([-0.5, 0.5, 0, 2, 10, -10, 1e30, -1e30, 0.25], F32)
    for mod in (lowbit, ref):
        q = mod.quantize_codebook(x, cb).codes
        # +-1e30 minus any code rounds to +-1e30 in float32: every distance ties -> index 0
        np.testing.assert_array_equal(q, [0, 1, 1, 3, 4, 0, 0, 0, 1])
    # many codes at the same float32 distance from a huge value: argmin takes the first
    cb = np.array([0, 1e-3, 2e-3, 3e-3], F32)
    for mod in (lowbit, ref):
        assert mod.quantize_codebook(np.array([1e10], F32), cb).codes[0] == 0


def test_codebook_shapes_and_noncontiguous(isa, rng):
    x = rng.standard_normal((4, 6, 130)).astype(F32)[:, ::2, :]
    cb = np.linspace(-1, 1, 9).astype(F32)
    qt = lowbit.quantize_codebook(x, cb, group_size=64)
    assert qt.scale.shape == (4, 3, 3) and qt.bits == 4
    assert_same(qt, ref.quantize_codebook(x, cb, group_size=64))
    for x0 in (np.zeros(0, F32), np.zeros((2, 0), F32), np.float32(3.0)):
        assert_same(lowbit.quantize_codebook(x0, cb), ref.quantize_codebook(x0, cb))


def test_bad_codebooks():
    x = np.ones(8, F32)
    for mod in (lowbit, ref):
        with pytest.raises(ValueError, match="sorted"):
            mod.quantize_codebook(x, np.array([0, 2, 1], F32))
        with pytest.raises(ValueError, match="finite"):
            mod.quantize_codebook(x, np.array([0, np.nan], F32))
        with pytest.raises(ValueError, match="finite"):
            mod.quantize_codebook(x, np.array([0, np.inf], F32))
        with pytest.raises(ValueError, match="1-D"):
            mod.quantize_codebook(x, np.zeros((2, 2), F32))
        with pytest.raises(ValueError, match="1-D"):
            mod.quantize_codebook(x, np.arange(257, dtype=F32))
        with pytest.raises(ValueError, match="nonzero"):
            mod.quantize_codebook(x, np.zeros(4, F32), group_size=4)
        # a scaled codebook of tiny values: max|w| / max|code| would be inf (found by hypothesis)
        with pytest.raises(ValueError, match="overflows float32"):
            mod.quantize_codebook(np.array([4.0], F32), np.array([1.1754944e-38], F32), group_size=1)
        assert np.isfinite(mod.quantize_codebook(np.array([4.0], F32), np.array([1e-30], F32),
                                                 group_size=1).scale).all()
        with pytest.raises(ValueError, match="non-finite"):
            mod.quantize_codebook(np.array([1, np.nan], F32), np.array([0, 1], F32))
        with pytest.raises(TypeError):
            mod.quantize_codebook(x, np.array(["a", "b"]))


# ---- NF4 ---------------------------------------------------------------------------------

def test_nf4_table_is_bitsandbytes():
    np.testing.assert_array_equal(rcb.NF4, np.array(BNB_NF4, dtype=F32))
    assert rcb.NF4.size == 16 and (np.diff(rcb.NF4) > 0).all()


def test_nf4_decodes_like_bitsandbytes(isa, rng):
    # bitsandbytes dequantizes code q of a block as NF4[q] * absmax (float32)
    x = rng.standard_normal((8, 256)).astype(F32)
    qt = lowbit.quantize(x, 4, scheme="nf4")
    assert qt.group_size == 64 and qt.scale.shape == (8, 4) and qt.scheme == "nf4"
    absmax = np.abs(x.reshape(8, 4, 64)).max(axis=2)
    np.testing.assert_array_equal(qt.scale, absmax)
    expect = (np.array(BNB_NF4, F32)[qt.codes.reshape(8, 4, 64)] * absmax[..., None]).astype(F32)
    np.testing.assert_array_equal(qt.dequantize(), expect.reshape(8, 256))
    assert_same(qt, ref.quantize(x, 4, scheme="nf4"))
    # every table value times the block absmax is reproduced exactly
    vals = (np.array(BNB_NF4, F32) * F32(2.5)).astype(F32)
    q = quantize_nf4(np.tile(vals, 4))
    np.testing.assert_array_equal(q.codes, np.tile(np.arange(16), 4))


def test_nf4_options_and_serialization(isa, rng):
    x = rng.standard_normal((3, 100)).astype(F32)
    for g in (None, 1, 32, 100, 128):
        a = lowbit.quantize(x, 4, scheme="nf4", group_size=g)
        assert_same(a, ref.quantize(x, 4, scheme="nf4", group_size=g))
    qt = lowbit.quantize(x, 4, scheme="nf4")
    back = lowbit.QTensor.from_dict(qt.to_dict())
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())
    with pytest.raises(ValueError, match="4-bit"):
        lowbit.quantize(x, 3, scheme="nf4")
    with pytest.raises(ValueError, match="axis"):
        lowbit.quantize(x, 4, scheme="nf4", axis=0)
    with pytest.raises(ValueError, match="clip"):
        lowbit.quantize(x, 4, scheme="nf4", clip="mse")


# ---- k-means -----------------------------------------------------------------------------

def brute_force_sse(v: np.ndarray, k: int) -> float:
    """Exact optimum by trying every split of the sorted values into k contiguous clusters."""
    s = np.sort(v.astype(np.float64))
    best = np.inf
    for cuts in itertools.combinations(range(1, s.size), k - 1):
        parts = np.split(s, cuts)
        best = min(best, sum(float(((p - p.mean()) ** 2).sum()) for p in parts))
    return best


def test_kmeans_exact_on_tiny_inputs(rng):
    for trial in range(20):
        v = rng.standard_normal(9).astype(F32)
        for k in (2, 3, 4):
            opt = brute_force_sse(v, k)
            for mod in (lowbit, ref):
                sse = rcb.kmeans_sse(v, mod.kmeans_codebook(v, k))
                assert sse <= opt * (1 + 1e-6) + 1e-9


@pytest.mark.parametrize("k", [2, 8, 16, 24, pytest.param(64, marks=pytest.mark.slow)])
@pytest.mark.parametrize("dist", ["normal", "t", "uniform", "few"])
def test_kmeans_never_worse_than_exact_dp(rng, k, dist):  # the exact path uses no ISA kernel
    n = 3000
    v = {"normal": rng.standard_normal(n), "t": rng.standard_t(3, n), "uniform": rng.uniform(-1, 1, n),
         "few": rng.integers(0, 40, n) * 0.125}[dist].astype(F32)
    cb = lowbit.kmeans_codebook(v, k)
    rcb_ = ref.kmeans_codebook(v, k)
    assert cb.dtype == F32 and cb.shape == (k,) and (np.diff(cb) >= 0).all()
    assert rcb.kmeans_sse(v, cb) <= rcb.kmeans_sse(v, rcb_) * (1 + 1e-12) + 1e-12
    np.testing.assert_array_equal(cb, rcb_)  # the same dynamic program, operation for operation


def test_kmeans_more_centroids_than_values(isa):
    v = np.array([3, 1, 1, 2], F32)
    for mod in (lowbit, ref):
        cb = mod.kmeans_codebook(v, 8)
        np.testing.assert_array_equal(cb, [1, 2, 3, 3, 3, 3, 3, 3])
        assert rcb.kmeans_sse(v, cb) == 0


def test_kmeans_large_path(isa, rng):
    # > 65536 values: histogram + exact DP over bins + Lloyd; few distinct values keep the reference fast
    v = (rng.integers(-500, 500, 200_000) * 0.01 + rng.standard_normal(200_000).round(1)).astype(F32)
    cb = lowbit.kmeans_codebook(v, 16)
    opt = rcb.kmeans_sse(v, ref.kmeans_codebook(v, 16))
    assert rcb.kmeans_sse(v, cb) <= opt * 1.001
    # deterministic: the same codebook for every thread count and ISA
    before = lowbit.get_num_threads()
    try:
        for t in (1, 3):
            lowbit.set_num_threads(t)
            np.testing.assert_array_equal(lowbit.kmeans_codebook(v, 16), cb)
    finally:
        lowbit.set_num_threads(before)
    for other in lowbit.available_isas():
        with lowbit.use_isa(other):
            np.testing.assert_array_equal(lowbit.kmeans_codebook(v, 16), cb)


def test_kmeans_per_axis_and_quantize(isa, rng):
    x = rng.standard_normal((12, 50)).astype(F32)
    for axis in (0, 1, -1):
        cb = lowbit.kmeans_codebook(x, 4, axis=axis)
        np.testing.assert_array_equal(cb, ref.kmeans_codebook(x, 4, axis=axis))
        assert cb.shape == (x.shape[axis], 4)
    for bits in (1, 3, 4):
        for axis in (None, 0, 1):
            a = lowbit.quantize(x, bits, scheme="kmeans", axis=axis)
            assert_same(a, ref.quantize(x, bits, scheme="kmeans", axis=axis))
            assert int(a.codes.max()) < 2 ** bits
            back = lowbit.QTensor.from_dict(a.to_dict())
            np.testing.assert_array_equal(back.dequantize(), a.dequantize())
    with pytest.raises(ValueError, match="group_size"):
        lowbit.quantize(x, 4, scheme="kmeans", group_size=16)


@pytest.mark.parametrize("k", [0, 1, 257, 1000])
def test_bad_k(k):
    for mod in (lowbit, ref):
        with pytest.raises(ValueError, match="2..256"):
            mod.kmeans_codebook(np.ones(10, F32), k)
    with pytest.raises(TypeError):
        lowbit.kmeans_codebook(np.ones(10, F32), 4.0)


def test_kmeans_edges(isa):
    for mod in (lowbit, ref):
        np.testing.assert_array_equal(mod.kmeans_codebook(np.zeros(0, F32), 4), np.zeros(4, F32))
        np.testing.assert_array_equal(mod.kmeans_codebook(np.full(100_000, 2.5, F32), 4), np.full(4, 2.5, F32))
        with pytest.raises(ValueError, match="non-finite"):
            mod.kmeans_codebook(np.array([1, np.inf], F32), 2)
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.kmeans_codebook(np.concatenate([np.ones(70_000, F32), [np.nan]]), 2)


def test_codebook_qtensors_pack_at_b_bits(rng):
    from lowbit import packing
    x = rng.standard_normal((8, 100)).astype(F32)
    for qt, layout in ((lowbit.quantize(x, 3, scheme="kmeans"), "b3"), (lowbit.quantize(x, 4, scheme="nf4"), "b4"),
                       (lowbit.quantize(x, 2, scheme="kmeans", axis=0), "b2")):
        p = packing.pack_qtensor(qt)
        assert p.packed == layout and p.codes.shape == (8, -(-100 * qt.bits // 8))
        np.testing.assert_array_equal(p.dequantize(), qt.dequantize())
        np.testing.assert_array_equal(lowbit.QTensor.from_dict(p.to_dict()).dequantize(), qt.dequantize())


def test_codes_past_the_codebook_are_an_error(rng):
    x = rng.standard_normal((4, 64)).astype(F32)
    for qt in (lowbit.quantize(x, 3, scheme="kmeans"), lowbit.quantize(x, 2, scheme="kmeans", axis=0)):
        d = qt.to_dict()
        d["codes"] = d["codes"].copy()
        d["codes"][1, 3] = 8  # 8 >= k for both
        with pytest.raises(ValueError, match="past the codebook"):
            lowbit.QTensor.from_dict(d).dequantize()
