"""Affine quantization: native kernels vs the NumPy reference (bit-exact), on every ISA path."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from lowbit import reference as ref

from conftest import assert_qtensor_equal

KERNEL_FAMILIES = ("affine",)  # the `isa` fixture runs each of their variants

SIZES = [1, 7, 31, 32, 33, 64, 4097]
F32 = np.float32


def both(x, **kw):
    a = lowbit.quantize(x, **kw)
    b = ref.quantize(x, **kw)
    assert_qtensor_equal(a, b)
    ya, yb = a.dequantize(), ref.dequantize(b)
    np.testing.assert_array_equal(ya.view(np.uint32), yb.view(np.uint32))
    return a


@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("n", SIZES)
def test_per_tensor_sizes(isa, rng, scheme, bits, n):
    both(rng.standard_normal(n).astype(F32) * 3, bits=bits, scheme=scheme)


@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (33, 31), (17, 4097), (2, 3, 5), (4, 1, 9, 2)])
def test_per_channel_every_axis(isa, rng, scheme, shape):
    x = rng.standard_normal(shape).astype(F32)
    for axis in range(-len(shape), len(shape)):
        qt = both(x, axis=axis, scheme=scheme, bits=4)
        assert qt.scale.shape == tuple(s if i == axis % len(shape) else 1 for i, s in enumerate(shape))
        # keepdims-style parameters broadcast directly in NumPy
        np.testing.assert_array_equal(
            qt.dequantize(), (qt.scale * (qt.codes.astype(np.int32) - qt.zero_point).astype(F32)).astype(F32))


@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
@pytest.mark.parametrize("group_size", [1, 7, 32, 33, 128, 5000])
@pytest.mark.parametrize("shape", [(5, 128), (3, 100), (2, 3, 257), (4097,)])
def test_per_group(isa, rng, scheme, group_size, shape):
    x = rng.standard_normal(shape).astype(F32)
    qt = both(x, group_size=group_size, scheme=scheme, bits=4)
    assert qt.scale.shape == shape[:-1] + (-(-shape[-1] // group_size),)


def test_large_layouts_hit_every_driver_branch(isa, rng):
    # many rows in the column layout, a channels layout with many runs, one large group
    x = rng.standard_normal((300, 70, 5)).astype(F32)
    for kw in [dict(axis=1), dict(axis=2), dict(axis=0), dict(), dict(group_size=64)]:
        both(x, scheme="minmax", **kw)
    both(rng.standard_normal(200_001).astype(F32))


def test_ties_round_half_to_even(isa):
    # scale 1.0: absmax 127 -> scale exactly 1, so x*inv is x and halves are exact ties
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 126.5], F32)
    qt = both(x)
    assert qt.scale.item() == 1.0
    np.testing.assert_array_equal(qt.codes, [127, 0, 2, 2, 0, -2, -2, 4, -126, 126])


def test_special_values(isa):
    fmax = np.finfo(F32).max
    sub = np.float32(1e-40)
    cases = [
        np.zeros(37, F32),                                  # all-zero group
        np.full(37, -0.0, F32),                             # negative zeros
        np.full(37, 3.25, F32),                             # all equal
        np.full(37, -3.25, F32),
        np.array([sub, -sub, 0, sub * 3] * 9, F32),         # subnormals
        np.array([fmax, -fmax, 1.0, 0.0] * 9, F32),         # near float32 max
        np.array([fmax, fmax / 3, -1e30] * 11, F32),
    ]
    for x in cases:
        for scheme in ["absmax", "minmax"]:
            for bits in [2, 8]:
                qt = both(x, scheme=scheme, bits=bits)
                assert np.isfinite(qt.scale).all() and (qt.scale >= np.float32(2.0 ** -126)).all()
                # the one overflow SPEC allows: scale rounds up near float32 max, 127*scale -> inf
                y = qt.dequantize()
                assert (np.isfinite(y) | (np.abs(x) > np.finfo(F32).max / 2)).all()
    z = lowbit.quantize(np.zeros((3, 4), F32), scheme="minmax", axis=0)
    assert not z.dequantize().any()  # all-zero groups dequantize to exact zeros
    assert (z.codes == z.zero_point).all()


def test_zero_is_exact_in_minmax(isa, rng):
    x = (rng.random((8, 100)) * 5 + 1).astype(F32)  # all positive: 0 is still representable
    x[:, 3] = 0
    qt = both(x, scheme="minmax", axis=0)
    np.testing.assert_array_equal(qt.dequantize()[:, 3], 0)


@pytest.mark.parametrize("signed,narrow,lo,hi", [(True, False, -128, 127), (True, True, -127, 127),
                                                  (False, False, 0, 255)])
def test_grids_minmax(isa, rng, signed, narrow, lo, hi):
    x = rng.standard_normal(1000).astype(F32) * 10
    qt = both(x, scheme="minmax", signed=signed, narrow=narrow)
    assert qt.codes.min() == lo and qt.codes.max() == hi
    assert qt.codes.dtype == (np.int8 if signed else np.uint8)


def test_narrow_absmax_never_uses_most_negative(isa):
    x = np.array([-1.0, 1.0, -0.999], F32)
    qt = both(x, bits=3, narrow=True)
    assert qt.codes.min() == -3


@pytest.mark.parametrize("clip", [0.5, (-0.25, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
def test_fixed_clip_saturates(isa, rng, clip, scheme):
    x = rng.standard_normal((16, 64)).astype(F32) * 4
    qt = both(x, scheme=scheme, clip=clip, axis=0)
    g = qt.codes
    assert g.min() >= (-128 if qt.signed else 0)
    if scheme == "absmax":
        c = clip if isinstance(clip, float) else max(abs(clip[0]), abs(clip[1]))
        np.testing.assert_array_equal(qt.scale, np.float32(np.float64(np.float32(c)) / 127))


def test_huge_values_with_clip_saturate_correctly(isa):
    # x*inv far beyond int32: must clamp to the right end, not wrap
    x = np.array([3e38, -3e38, 1e20, -1e20, 0.25], F32)
    qt = both(x, clip=1.0)
    np.testing.assert_array_equal(qt.codes, [127, -128, 127, -128, 32])
    qt = both(x, clip=(0.0, 1.0), scheme="minmax")
    np.testing.assert_array_equal(qt.codes, [255, 0, 255, 0, 64])


def test_input_dtypes_and_noncontiguous(isa, rng):
    x = rng.standard_normal((40, 66))
    both(x, axis=1)                                # float64 rounds to nearest float32
    both(x.astype(np.float16), group_size=32)      # float16
    both(x[::3, ::2], axis=0)                      # strided
    both(np.asfortranarray(x), axis=0)             # Fortran order
    np.testing.assert_array_equal(lowbit.quantize(x, axis=0).codes,
                                  lowbit.quantize(x.astype(F32), axis=0).codes)
    both([0.5, -1.0, 2.0])                         # lists


def test_bfloat16_if_available(isa, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rng.standard_normal(100).astype(ml_dtypes.bfloat16)
    qt = both(x)
    assert qt.codes.dtype == np.int8


@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), (2, 0, 3)])
def test_empty(isa, shape):
    x = np.zeros(shape, F32)
    for kw in [dict(), dict(axis=0), dict(axis=-1), dict(group_size=4)]:
        qt = both(x, **kw)
        assert qt.codes.shape == shape
        assert qt.dequantize().shape == shape


def test_zero_dim_scalar(isa):
    qt = both(np.float32(2.5))
    assert qt.codes.shape == () and qt.dequantize() == np.float32(2.5)


def test_dequantize_out_and_dtype(isa, rng):
    qt = lowbit.quantize(rng.standard_normal((8, 9)).astype(F32), axis=0)
    out = np.empty((8, 9), F32)
    y = qt.dequantize(out=out)
    assert y is out
    np.testing.assert_array_equal(out, ref.dequantize(qt))
    assert qt.dequantize(np.float64).dtype == np.float64
    assert lowbit.dequantize(qt).dtype == np.float32


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_matches_reference(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32)))
    scheme = data.draw(st.sampled_from(["absmax", "minmax"]))
    bits = data.draw(st.integers(2, 8))
    gran = data.draw(st.sampled_from(["tensor", "channel", "group"]))
    kw = dict(bits=bits, scheme=scheme)
    if gran == "channel":
        kw["axis"] = data.draw(st.integers(-len(shape), len(shape) - 1))
    elif gran == "group":
        kw["group_size"] = data.draw(st.integers(1, 50))
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            both(x, **kw)


def test_threads_do_not_change_results(rng):
    x = rng.standard_normal((257, 1031)).astype(F32)
    prev = lowbit.get_num_threads()
    try:
        results = []
        for n in [1, 2, 3, 8]:
            lowbit.set_num_threads(n)
            results.append([lowbit.quantize(x, **kw) for kw in
                            [dict(), dict(axis=0), dict(axis=1), dict(group_size=64, scheme="minmax")]])
        for r in results[1:]:
            for a, b in zip(results[0], r):
                assert_qtensor_equal(a, b)
    finally:
        lowbit.set_num_threads(prev)


def test_to_dict_round_trip(rng):
    for kw in [dict(), dict(axis=0, scheme="minmax", bits=4), dict(group_size=16, narrow=True)]:
        qt = lowbit.quantize(rng.standard_normal((6, 40)).astype(F32), **kw)
        d = qt.to_dict()
        assert all(isinstance(v, np.ndarray) for v in d.values())
        back = lowbit.QTensor.from_dict(d)
        assert_qtensor_equal(qt, back)
        np.testing.assert_array_equal(back.dequantize(), qt.dequantize())
    assert "per-channel" in repr(lowbit.quantize(np.ones((2, 2), F32), axis=0))


# ---- bad input ----------------------------------------------------------

def test_nonfinite_is_an_error_naming_the_place(isa):
    x = np.zeros((4, 5), F32)
    x[2, 3] = np.nan
    for kw in [dict(), dict(axis=0), dict(axis=1), dict(group_size=2)]:
        with pytest.raises(ValueError, match=r"non-finite.*\(2, 3\)"):
            lowbit.quantize(x, **kw)
        with pytest.raises(ValueError, match=r"non-finite.*\(2, 3\)"):
            ref.quantize(x, **kw)
    x[2, 3] = -np.inf
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.quantize(x, clip=1.0)
    y = np.ones(100_000, F32)
    y[-1] = np.inf
    with pytest.raises(ValueError, match=r"\(99999,\)"):
        lowbit.quantize(y)


@pytest.mark.parametrize("fn", [lowbit.quantize, ref.quantize])
def test_bad_arguments(fn):
    x = np.ones((4, 6), F32)
    cases = [
        (dict(bits=1), ValueError, "bits"), (dict(bits=9), ValueError, "bits"),
        (dict(bits=4.0), TypeError, "bits"), (dict(group_size=0), ValueError, "group_size"),
        (dict(axis=2), ValueError, "axis"), (dict(axis=-3), ValueError, "axis"),
        (dict(axis=0, group_size=2), ValueError, "not both"), (dict(scheme="foo"), ValueError, "scheme"),
        (dict(scheme="absmax", signed=False), ValueError, "signed"),
        (dict(scheme="minmax", narrow=True), ValueError, "narrow"),
        (dict(clip=(1.0, 1.0)), ValueError, "empty"), (dict(clip=(2.0, -1.0)), ValueError, "empty"),
        (dict(clip=-1.0), ValueError, "clip"), (dict(clip=float("nan")), ValueError, "clip"),
        (dict(clip="bogus"), ValueError, "clip"), (dict(clip_param=3), ValueError, "clip_param"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn(x, **kw)
    for bad in [np.ones(4, np.int32), np.ones(4, np.complex64), np.ones(4, bool), ["a", "b"]]:
        with pytest.raises(TypeError, match="floating-point|convert"):
            fn(bad)


def test_from_dict_rejects_garbage(rng):
    d = lowbit.quantize(rng.standard_normal((4, 8)).astype(F32), axis=0).to_dict()
    bad = dict(d, codes=np.full((4, 8), 200, np.uint8))  # unsigned codes for a signed grid
    with pytest.raises(ValueError, match="codes"):
        lowbit.QTensor.from_dict(dict(bad, codes=bad["codes"].astype(np.int16)))
    with pytest.raises(ValueError):
        lowbit.QTensor.from_dict(dict(d, scale=np.ones((3, 1), F32)))
    with pytest.raises(ValueError, match="qmeta"):
        lowbit.QTensor.from_dict(dict(d, qmeta=np.frombuffer(b"{nope", np.uint8)))
    with pytest.raises(ValueError, match="missing"):
        lowbit.QTensor.from_dict({"codes": d["codes"]})
    with pytest.raises(ValueError, match="NaN"):
        lowbit.QTensor.from_dict(dict(d, scale=np.full((4, 1), np.nan, F32)))
    q = d["codes"].copy()
    q[0, 0] = -128
    d4 = lowbit.quantize(rng.standard_normal((4, 8)).astype(F32), bits=4, axis=0).to_dict()
    with pytest.raises(ValueError, match="outside"):
        lowbit.QTensor.from_dict(dict(d4, codes=q))


@pytest.mark.skipif(not hasattr(lowbit._C, "_set_mxcsr"), reason="x86 only: MXCSR")
def test_results_ignore_callers_ftz_daz(isa):
    # A caller with flush-to-zero / denormals-are-zero set (torch.set_flush_denormal
    # does this) must get the same codes for subnormal input.
    x = np.array([1e-38, -1e-38, 5e-39, 0.0, 6e-39] * 9, F32)
    expected = [ref.quantize(x), ref.quantize(x, scheme="minmax", group_size=5)]
    old = lowbit._C._set_mxcsr(0x1F80 | 0x8040)
    try:
        got = [lowbit.quantize(x), lowbit.quantize(x, scheme="minmax", group_size=5)]
    finally:
        lowbit._C._set_mxcsr(old)
    for a, b in zip(got, expected):
        assert_qtensor_equal(a, b)
    np.testing.assert_array_equal(expected[0].codes[:5], [1, -1, 0, 0, 1])


def test_to_dict_round_trip_zero_dim():
    qt = lowbit.quantize(np.float32(-1.5), scheme="minmax")
    back = lowbit.QTensor.from_dict(qt.to_dict())
    assert_qtensor_equal(qt, back)
    assert back.dequantize().shape == ()
