"""Per-token activation quantization (SPEC 5): native kernels vs the NumPy reference, bit-exact."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import reference as ref

from conftest import assert_qtensor_equal

KERNEL_FAMILIES = ("act",)  # the `isa` fixture runs each of their variants

F32 = np.float32


def both(x, **kw):
    a = lowbit.quantize_activations(x, **kw)
    b = ref.quantize_activations(x, **kw)
    assert_qtensor_equal(a, b)
    np.testing.assert_array_equal(a.dequantize().view(np.uint32), ref.dequantize_activations(b).view(np.uint32))
    return a


@pytest.mark.parametrize("K", [1, 7, 8, 31, 32, 33, 64, 4097])
@pytest.mark.parametrize("M", [1, 2, 3, 17])
def test_sizes(isa, rng, M, K):
    both((rng.standard_normal((M, K)) * rng.uniform(0.01, 100, (M, 1))).astype(F32))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_bits_and_batch_shapes(isa, rng, bits):
    qt = both(rng.standard_normal((2, 3, 45)).astype(F32), bits=bits)
    assert qt.scale.shape == (2, 3, 1) and qt.codes.shape == (2, 3, 45)
    assert qt.codes.max() <= (1 << (bits - 1)) - 1
    qt1 = both(rng.standard_normal(37).astype(F32), bits=bits)
    assert qt1.scale.shape == (1,)


def test_known_values(isa):
    x = np.array([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [2e-6, -4e-6, 1e-6, 0.0]], F32)
    qt = both(x)
    assert qt.scheme == "act_absmax"
    np.testing.assert_array_equal(qt.scale.ravel(), [F32(127) / F32(1), F32(127) / F32(1e-5), F32(127) / F32(1e-5)])
    # 127 * 0.5 = 63.5 -> 64 (half to even), 127 * 0.25 = 31.75 -> 32
    np.testing.assert_array_equal(qt.codes[0], [127, -64, 32, 0])
    np.testing.assert_array_equal(qt.codes[1], [0, 0, 0, 0])
    # below the 1e-5 floor: s = 127 / 1e-5, 2e-6 * s = 25.4 -> 25, -50.8 -> -51, 12.7 -> 13
    np.testing.assert_array_equal(qt.codes[2], [25, -51, 13, 0])


def test_ties_round_half_even(isa):
    # amax 127 -> s = 1 exactly: x * s = x, so x.5 values are exact ties
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5] * 5], F32)
    qt = both(x)
    np.testing.assert_array_equal(qt.codes[0, :8], [127, 0, 2, 2, 0, -2, -2, 126])


def test_extremes_and_denormals(isa, rng):
    big = np.array([[3.4e38, -3.4e38, 1.0, -1e38] * 9], F32)
    both(big)
    tiny = np.array([[1e-45, -1e-40, 0.0, -0.0] * 9], F32)
    both(tiny)
    neg0 = np.full((3, 40), -0.0, F32)
    qt = both(neg0)
    assert not qt.codes.any()


def test_noncontiguous_and_other_dtypes(isa, rng):
    x = rng.standard_normal((9, 70)).astype(np.float64)
    both(x[:, ::2])
    both(x.T)
    both(x.astype(np.float16))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises(isa, bad):
    x = np.ones((5, 40), F32)
    x[3, 37] = bad
    with pytest.raises(ValueError, match=r"non-finite.*\(3, 37\)"):
        lowbit.quantize_activations(x)
    with pytest.raises(ValueError, match="non-finite"):
        ref.quantize_activations(x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="0-d"):
        lowbit.quantize_activations(np.float32(1))
    with pytest.raises(ValueError, match="no features"):
        lowbit.quantize_activations(np.zeros((3, 0), F32))
    with pytest.raises(TypeError):
        lowbit.quantize_activations(np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError):
        lowbit.quantize_activations(np.zeros((3, 4), F32), bits=9)


def test_empty_rows(isa):
    qt = both(np.zeros((0, 5), F32))
    assert qt.codes.shape == (0, 5) and qt.scale.shape == (0, 1)


def test_roundtrip_serialization(rng):
    qt = lowbit.quantize_activations(rng.standard_normal((4, 9)).astype(F32))
    qt2 = lowbit.QTensor.from_dict(qt.to_dict())
    assert_qtensor_equal(qt, qt2)
    np.testing.assert_array_equal(qt2.dequantize(), qt.dequantize())


def test_many_rows_threads(isa, rng):
    both(rng.standard_normal((1000, 300)).astype(F32))
