"""Binary and ternary quantization (SPEC 5): every ISA path against the reference, bit for bit."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from lowbit import reference as ref
from lowbit.reference import extreme as ref_extreme

from conftest import assert_qtensor_equal

KERNEL_FAMILIES = ("extreme",)  # the `isa` fixture runs each of their variants

TERNARY = ["absmean", "twn", "threshold"]
BINARY = ["sign", "bitnet"]
SHAPES = [(1,), (7,), (31,), (33,), (4097,), (5, 31), (3, 4, 9), (2, 9000), (64, 70)]


def granularities(shape):
    out = [{}, {"axis": 0}, {"axis": -1}, {"group_size": 16}, {"group_size": 5}]
    if len(shape) == 3:
        out.append({"axis": 1})
    return out


def both(x, method, **kw):
    if method in TERNARY:
        return lowbit.ternarize(x, method, **kw), ref.ternarize(x, method, **kw)
    return lowbit.binarize(x, method, **kw), ref.binarize(x, method, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(isa, rng, shape):
    x = (rng.standard_normal(shape) * rng.uniform(0.01, 10)).astype(np.float32)
    for gran in granularities(shape):
        for method in TERNARY + BINARY:
            a, b = both(x, method, **gran)
            assert_qtensor_equal(a, b)
            assert a.meta == b.meta == ({"method": method, "threshold": 0.5} if method == "threshold"
                                        else {"method": method})


def test_large_per_tensor_crosses_blocks_and_threads(isa, rng):
    # Several sum blocks (4096) and several threads' chunks; heavy-tailed values
    # make the float64 sum order matter.
    x = (rng.standard_cauchy(3 * 4096 * 8 + 77)).astype(np.float32)
    for method in TERNARY + BINARY:
        a, b = both(x, method)
        assert_qtensor_equal(a, b)
        a, b = both(x[:7 * 14000].reshape(7, -1), method, axis=0)
        assert_qtensor_equal(a, b)


def test_known_values(isa):
    x = np.array([0.1, -0.4, 2.0, 0.0], np.float32)
    m = np.float32(np.float64(np.abs(x).astype(np.float64).sum()) / 4)  # 0.625
    qt = lowbit.ternarize(x, "absmean")
    np.testing.assert_array_equal(qt.codes, [0, -1, 1, 0])
    assert qt.scale.item() == m
    qt = lowbit.ternarize(x, "twn")        # delta = 0.4375: only 2.0 kept
    np.testing.assert_array_equal(qt.codes, [0, 0, 1, 0])
    assert qt.scale.item() == 2.0
    qt = lowbit.ternarize(x, "threshold")  # a = 2: x / a = [0.05, -0.2, 1, 0]
    np.testing.assert_array_equal(qt.codes, [0, 0, 1, 0])
    assert qt.scale.item() == 2.0
    qt = lowbit.binarize(x, "sign")
    np.testing.assert_array_equal(qt.codes, [1, -1, 1, 1])
    assert qt.scale.item() == m
    qt = lowbit.binarize(x, "bitnet")      # mean = 0.425
    np.testing.assert_array_equal(qt.codes, [-1, -1, 1, -1])
    assert qt.scale.item() == m
    assert (qt.bits, qt.scheme, qt.zero_point) == (1, "binary", None)


def test_absmean_ties_round_half_even(isa):
    # mean|x| = 0.5, so x * (1/g) = [-0.5, 1.5, 0.5, -1.5]: rint gives [0, 2, 0, -2] -> clamp.
    x = np.array([-0.25, 0.75, 0.25, -0.75], np.float32)
    qt = lowbit.ternarize(x)
    np.testing.assert_array_equal(qt.codes, [0, 1, 0, -1])
    assert qt.scale.item() == 0.5


def test_threshold_is_strict_and_uses_t(isa):
    x = np.array([1.0, 0.5, -0.5, 0.51, -0.51, 0.2], np.float32)
    np.testing.assert_array_equal(lowbit.ternarize(x, "threshold").codes, [1, 0, 0, 1, -1, 0])
    np.testing.assert_array_equal(lowbit.ternarize(x, "threshold", threshold=0.1).codes, [1, 1, -1, 1, -1, 1])
    np.testing.assert_array_equal(lowbit.ternarize(x, "threshold", threshold=0.0).codes, [1, 1, -1, 1, -1, 1])


def test_zero_and_sign_edge_cases(isa):
    z = np.zeros((2, 40), np.float32)
    qt = lowbit.ternarize(z)
    assert not qt.codes.any() and qt.scale.item() == np.float32(1e-5)
    qt = lowbit.ternarize(z, "twn")
    assert not qt.codes.any() and qt.scale.item() == 0.0
    qt = lowbit.ternarize(z, "threshold")
    assert not qt.codes.any() and qt.scale.item() == np.float32(2.0 ** -126)
    for method in BINARY:
        qt = lowbit.binarize(z, method)
        assert (qt.codes == 1).all() and qt.scale.item() == 0.0
        np.testing.assert_array_equal(qt.dequantize(), z)
    neg0 = np.full(37, -0.0, np.float32)
    assert (lowbit.binarize(neg0).codes == 1).all()   # -0.0 >= 0


def test_extreme_magnitudes(isa):
    x = np.array([3.0e38, -3.0e38, 1e-45, -1e-45] * 9, np.float32)
    for method in TERNARY + BINARY:
        a, b = both(x, method)
        assert_qtensor_equal(a, b)
        assert np.isfinite(a.scale).all()


def test_dequantize_is_scale_times_code(isa, rng):
    x = rng.standard_normal((6, 50)).astype(np.float32)
    for method in TERNARY + BINARY:
        qt, _ = both(x, method, group_size=16)
        s = np.repeat(qt.scale, 16, axis=-1)[:, :50]
        np.testing.assert_array_equal(qt.dequantize(), (s * qt.codes.astype(np.float32)).astype(np.float32))
        qt, _ = both(x, method, axis=0)
        np.testing.assert_array_equal(qt.dequantize(), qt.scale * qt.codes.astype(np.float32))
        np.testing.assert_array_equal(qt.dequantize(), ref.dequantize(qt))


def test_scale_shapes_and_fields(rng):
    x = rng.standard_normal((4, 6, 10)).astype(np.float32)
    assert lowbit.ternarize(x).scale.shape == (1, 1, 1)
    assert lowbit.ternarize(x, axis=1).scale.shape == (1, 6, 1)
    assert lowbit.binarize(x, group_size=4).scale.shape == (4, 6, 3)
    qt = lowbit.ternarize(x, "twn", group_size=4)
    assert (qt.scheme, qt.bits, qt.codes.dtype, qt.zero_point, qt.group_size) == ("ternary", 2, np.int8, None, 4)
    assert set(np.unique(qt.codes)) <= {-1, 0, 1}
    assert set(np.unique(lowbit.binarize(x).codes)) == {-1, 1}


def test_inputs_converted(isa, rng):
    x = rng.standard_normal((9, 40))
    for method in TERNARY + BINARY:
        a, b = both(x, method)                       # float64
        assert_qtensor_equal(a, b)
        a, b = both(x.astype(np.float16), method, axis=0)
        assert_qtensor_equal(a, b)
        a, b = both(x[:, ::3], method, group_size=4)  # non-contiguous
        assert_qtensor_equal(a, b)
        assert_qtensor_equal(a, both(np.ascontiguousarray(x[:, ::3]), method, group_size=4)[0])


def test_empty_and_one_element():
    for method in TERNARY + BINARY:
        for shape, kw in [((0,), {}), ((3, 0), {"axis": 0}), ((0, 5), {"group_size": 2})]:
            a, b = both(np.zeros(shape, np.float32), method, **kw)
            assert_qtensor_equal(a, b)
            assert a.dequantize().shape == shape
        a, b = both(np.array([-2.5], np.float32), method)
        assert_qtensor_equal(a, b)
        assert a.codes.item() == (1 if method == "bitnet" else -1)  # bitnet: x - mean(x) = 0 -> +1
    a, b = both(np.float32(3.0), "absmean")
    assert_qtensor_equal(a, b)
    assert a.codes.shape == () and a.codes.item() == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_is_an_error(isa, bad):
    x = np.ones((3, 50), np.float32)
    x[2, 17] = bad
    for method in TERNARY + BINARY:
        for kw in [{}, {"axis": 0}, {"axis": 1}, {"group_size": 8}]:
            with pytest.raises(ValueError, match=r"w contains 1 non-finite.*\(2, 17\)"):
                both(x, method, **kw)[0]
            with pytest.raises(ValueError, match="non-finite"):
                both(x, method, **kw)[1]


def test_bad_arguments():
    x = np.ones(8, np.float32)
    for f in (lowbit.ternarize, ref.ternarize):
        with pytest.raises(ValueError, match="ternarize method"):
            f(x, "sign")
        with pytest.raises(TypeError, match="method must be a str"):
            f(x, 3)
        with pytest.raises(ValueError, match="threshold must be in"):
            f(x, "threshold", threshold=1.5)
        with pytest.raises(ValueError, match="threshold must be in"):
            f(x, "threshold", threshold=float("nan"))
        with pytest.raises(TypeError, match="threshold"):
            f(x, "threshold", threshold="0.5")
        with pytest.raises(TypeError, match="floating-point"):
            f(np.ones(8, np.int32))
        with pytest.raises(ValueError, match="not both"):
            f(np.ones((2, 8), np.float32), axis=0, group_size=4)
        with pytest.raises(ValueError, match="group_size"):
            f(x, group_size=0)
    for f in (lowbit.binarize, ref.binarize):
        with pytest.raises(ValueError, match="binarize method"):
            f(x, "absmean")
        with pytest.raises(ValueError, match="out of range"):
            f(x, axis=1)


def test_blocked_sum_order_is_the_documented_one(rng):
    # An explicit scalar loop of the order in reference/extreme.py's docstring.
    a = np.abs(rng.standard_cauchy(2 * 4096 + 123)).astype(np.float32).astype(np.float64)
    totals = []
    for b0 in range(0, a.size, 4096):
        blk = a[b0:b0 + 4096]
        lanes = [0.0] * 16
        for i, v in enumerate(blk):
            lanes[i % 16] += float(v)
        while len(lanes) > 1:
            h = len(lanes) // 2
            lanes = [lanes[j] + lanes[j + h] for j in range(h)]
        totals.append(lanes[0])
    expect = 0.0
    for t in totals:
        expect += t
    assert ref_extreme.blocked_sum(a[None])[0] == expect
    assert math.isclose(expect, math.fsum(a), rel_tol=1e-12)


def test_from_dict_checks_ternary_codes(rng):
    qt = lowbit.ternarize(rng.standard_normal((4, 9)).astype(np.float32))
    d = qt.to_dict()
    back = lowbit.QTensor.from_dict(d)
    assert_qtensor_equal(back, qt)
    assert back.meta == qt.meta
    d["codes"] = d["codes"].copy()
    d["codes"][0, 0] = 2
    with pytest.raises(ValueError, match="ternary codes span"):
        lowbit.QTensor.from_dict(d)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_matches_reference(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
    method = data.draw(st.sampled_from(TERNARY + BINARY))
    gran = data.draw(st.sampled_from(["tensor", "channel", "group"]))
    kw = {}
    if gran == "channel":
        kw["axis"] = data.draw(st.integers(-len(shape), len(shape) - 1))
    elif gran == "group":
        kw["group_size"] = data.draw(st.integers(1, 50))
    if method == "threshold":
        kw["threshold"] = data.draw(st.floats(0, 0.99))
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            a, b = both(x, method, **kw)
            assert_qtensor_equal(a, b)


def test_threads_do_not_change_results(rng):
    x = rng.standard_cauchy((67, 4099)).astype(np.float32)
    prev = lowbit.get_num_threads()
    try:
        results = []
        for n in [1, 2, 3, 8]:
            lowbit.set_num_threads(n)
            results.append([f(x, m, **kw) for f, m in [(lowbit.ternarize, "absmean"), (lowbit.ternarize, "twn"),
                                                       (lowbit.binarize, "bitnet")]
                            for kw in [{}, {"axis": 0}, {"axis": 1}, {"group_size": 64}]])
        for r in results[1:]:
            for a, b in zip(results[0], r):
                assert_qtensor_equal(a, b)
    finally:
        lowbit.set_num_threads(prev)
