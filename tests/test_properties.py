"""Property-based tests (hypothesis) for the public functions whose family tests
are example-based: calibration, codebooks, bias. Native == reference, or both
raise the same exception type."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from lowbit import reference as ref

from conftest import assert_qtensor_equal

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e4, 1e4, width=32)


def same_outcome(native, reference):
    """Both succeed with the same result, or both raise the same exception type."""
    try:
        want = reference()
    except (ValueError, TypeError) as e:
        with pytest.raises(type(e)):
            native()
        return None
    got = native()
    return got, want


@SETTINGS
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=80), elements=finite),
       p=st.sampled_from([90.0, 99.0, 99.9, 100.0]), scheme=st.sampled_from(["absmax", "minmax"]),
       gran=st.sampled_from(["tensor", "channel", "group"]))
def test_percentile_clip_matches_reference(x, p, scheme, gran):
    kw = dict(clip="percentile", clip_param=p, scheme=scheme, bits=4)
    if gran == "channel":
        kw["axis"] = 0
    elif gran == "group":
        kw["group_size"] = 16
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            r = same_outcome(lambda: lowbit.quantize(x, **kw), lambda: ref.quantize(x, **kw))
            if r:
                assert_qtensor_equal(*r)


@SETTINGS
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=200), elements=finite))
def test_nf4_matches_reference(x):
    r = same_outcome(lambda: lowbit.quantize(x, scheme="nf4"), lambda: ref.quantize(x, scheme="nf4"))
    if r:
        got, want = r
        np.testing.assert_array_equal(got.codes, want.codes)
        np.testing.assert_array_equal(got.scale, want.scale)
        np.testing.assert_array_equal(got.dequantize(), ref.dequantize(want))


@SETTINGS
@given(x=hnp.arrays(np.float32, st.integers(1, 300), elements=finite),
       book=st.lists(st.floats(-2, 2, width=32), min_size=1, max_size=20, unique=True),
       group=st.one_of(st.none(), st.integers(1, 64)))
def test_codebook_matches_reference(x, book, group):
    cb = np.sort(np.array(book, np.float32))
    r = same_outcome(lambda: lowbit.quantize_codebook(x, cb, group_size=group),
                     lambda: ref.quantize_codebook(x, cb, group_size=group))
    if r:
        got, want = r
        np.testing.assert_array_equal(got.codes, want.codes)
        np.testing.assert_array_equal(got.dequantize(), ref.dequantize(want))


@SETTINGS
@given(bias=hnp.arrays(np.float32, st.integers(0, 40), elements=st.floats(-1e3, 1e3, width=32)),
       ws=st.floats(1e-6, 1.0), xs=st.floats(1e-6, 1.0))
def test_quantize_bias_matches_reference(bias, ws, xs):
    r = same_outcome(lambda: lowbit.quantize_bias(bias, ws, xs), lambda: ref.quantize_bias(bias, ws, xs))
    if r:
        got, want = r
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


def test_absurd_allocation_is_memoryerror():
    # a 4 TiB logical tensor viewed through a zero-stride array: dequantizing must
    # fail with MemoryError, not crash
    n = 2 ** 42
    qt = lowbit.QTensor(codes=np.broadcast_to(np.int8(1), (n,)), scale=np.ones(1, np.float32),
                        zero_point=np.zeros(1, np.int32), shape=(n,), bits=8, scheme="absmax")
    with pytest.raises(MemoryError):
        qt.dequantize()
