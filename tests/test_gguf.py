"""GGUF block formats: lowbit (every ISA) vs the NumPy reference vs the `gguf` package itself."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit
from lowbit import reference as ref

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as GT  # noqa: E402

KERNEL_FAMILIES = ("gguf",)  # the `isa` fixture runs each of their variants

F32 = np.float32
FORMATS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"]  # the gguf-py formats (test_gguf_k.py: the rest)
Q_FORMATS = [f for f in FORMATS if f.startswith("Q")]
TQ_FORMATS = [f for f in FORMATS if f.startswith("TQ")]


def gguf_quantize(x, fmt):
    # gguf-py warns (overflow in the float16 cast, Inf/NaN casts for tiny blocks); it is the oracle here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gguf.quants.quantize(np.asarray(x, F32), GT[fmt])


def gguf_dequantize(blob, fmt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gguf.quants.dequantize(blob, GT[fmt])


def bits(a):
    return np.ascontiguousarray(a, F32).view(np.uint32)


def check(x, fmt, *, vs_gguf=True):
    """lowbit == reference (== gguf-py) for quantize, and for dequantize of the same blob."""
    x = np.asarray(x, F32)
    blob = lowbit.gguf.quantize(x, fmt)
    bs, ts = lowbit.gguf.FORMATS[fmt]
    assert blob.dtype == np.uint8 and blob.shape == x.shape[:-1] + (x.shape[-1] // bs * ts,)
    np.testing.assert_array_equal(blob, ref.gguf.quantize(x, fmt))
    y = lowbit.gguf.dequantize(blob, fmt, x.shape)
    assert y.dtype == F32 and y.shape == x.shape
    np.testing.assert_array_equal(bits(y), bits(ref.gguf.dequantize(blob, fmt, x.shape)))
    if vs_gguf:
        np.testing.assert_array_equal(blob, gguf_quantize(x, fmt))
        np.testing.assert_array_equal(bits(y), bits(gguf_dequantize(blob, fmt)))
    return blob, y


def block(fmt):
    return lowbit.gguf.FORMATS[fmt][0]


# ---- random data ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rows", [1, 3, 7, 33])
def test_random_rows(isa, rng, fmt, rows):
    x = rng.standard_normal((rows, 2 * block(fmt))).astype(F32) * 2.5
    check(x, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape_blocks", [(1,), (5,), (2, 3, 4), (1, 17)])
def test_shapes(isa, rng, fmt, shape_blocks):
    shape = shape_blocks[:-1] + (shape_blocks[-1] * block(fmt),)
    check(rng.standard_normal(shape).astype(F32), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scale", [1e-30, 1e-6, 1e-3, 1.0, 1e3, 1e5, 1e30])
def test_magnitudes(isa, rng, fmt, scale):
    x = rng.standard_normal((3, block(fmt) * 4)) * scale
    x[1] *= rng.uniform(0, 1, x.shape[1]) ** 8  # heavy tails inside a block
    check(x.astype(F32), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_many_blocks_threaded(rng, fmt):
    x = rng.standard_normal((64, 8 * 256)).astype(F32)
    expect = gguf_quantize(x, fmt)
    prev = lowbit.get_num_threads()
    try:
        for n in (1, 2, 3):
            lowbit.set_num_threads(n)
            np.testing.assert_array_equal(lowbit.gguf.quantize(x, fmt), expect)
            np.testing.assert_array_equal(bits(lowbit.gguf.dequantize(expect, fmt, x.shape)),
                                          bits(gguf_dequantize(expect, fmt)))
    finally:
        lowbit.set_num_threads(prev)


def test_input_dtypes_and_layouts(rng):
    x64 = rng.standard_normal((4, 64))
    np.testing.assert_array_equal(lowbit.gguf.quantize(x64, "Q8_0"), gguf_quantize(x64.astype(F32), "Q8_0"))
    x16 = x64.astype(np.float16)
    np.testing.assert_array_equal(lowbit.gguf.quantize(x16, "Q4_0"), gguf_quantize(x16.astype(F32), "Q4_0"))
    big = rng.standard_normal((8, 128)).astype(F32)
    view = big[::2, ::2]  # non-contiguous
    np.testing.assert_array_equal(lowbit.gguf.quantize(view, "Q5_1"), gguf_quantize(np.ascontiguousarray(view), "Q5_1"))
    assert lowbit.gguf.quantize([[0.5] * 32], "q8_0").shape == (1, 34)  # lists, lower-case names


def test_dequantize_accepts_bytes_and_any_blob_shape(rng):
    x = rng.standard_normal((3, 256)).astype(F32)
    blob = lowbit.gguf.quantize(x, "TQ2_0")
    y = lowbit.gguf.dequantize(blob, "TQ2_0", x.shape)
    np.testing.assert_array_equal(lowbit.gguf.dequantize(blob.tobytes(), "TQ2_0", (3, 256)), y)
    np.testing.assert_array_equal(lowbit.gguf.dequantize(blob.reshape(-1), "TQ2_0", [3, 256]), y)
    np.testing.assert_array_equal(lowbit.gguf.dequantize(blob.view(np.int8), "TQ2_0", (3, 256)), y)
    np.testing.assert_array_equal(lowbit.gguf.dequantize(blob[:1], "TQ2_0", 256), y[0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty(fmt):
    for shape in [(0, block(fmt)), (3, 0)]:
        x = np.zeros(shape, F32)
        blob = lowbit.gguf.quantize(x, fmt)
        assert blob.shape == shape[:-1] + (shape[-1] // block(fmt) * lowbit.gguf.FORMATS[fmt][1],)
        assert lowbit.gguf.dequantize(blob, fmt, shape).shape == shape


# ---- edge cases ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_all_zero_blocks(isa, rng, fmt):
    n = block(fmt)
    x = rng.standard_normal((4, 3 * n)).astype(F32)
    x[0] = 0.0
    x[1, n:2 * n] = 0.0
    x[2, :n] = -0.0  # a block of negative zeros only
    blob, y = check(x, fmt)
    assert not y[0].any() and not y[1, n:2 * n].any()


def test_all_zero_block_bytes():
    z = np.zeros((1, 32), F32)
    assert lowbit.gguf.quantize(z, "Q8_0").tobytes() == bytes(34)
    assert lowbit.gguf.quantize(z, "Q4_0").tobytes() == bytes([0, 0x80]) + bytes([0x88] * 16)  # d = 0/-8 = -0.0
    assert lowbit.gguf.quantize(np.zeros((1, 256), F32), "TQ2_0").tobytes() == bytes([0x55] * 64) + bytes(2)
    # five zero trits: 121 = 11111 in base 3 -> ceil(121 * 256 / 243) = 128
    # qh bytes hold four trits, x3: 120 -> ceil(120 * 256 / 243) = 127
    assert lowbit.gguf.quantize(np.zeros((1, 256), F32), "TQ1_0").tobytes() == \
        bytes([128] * 48) + bytes([127] * 4) + bytes(2)


def test_ties_round_half_away_from_zero(isa):
    # Q8_0 with max|x| = 127: d = 1, id = 1, so the products are the inputs and .5 are exact ties
    x = np.zeros(32, F32)
    x[:12] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, -126.5, 126.5, 0.49999997, -0.49999997]
    blob, _ = check(x[None], "Q8_0")
    q = blob[0, 2:].view(np.int8)
    np.testing.assert_array_equal(q[:12], [127, 1, 2, 3, -1, -2, -3, 4, -127, 127, 0, 0])
    # TQ: d = max|x| = 1, products +-0.5 are ties -> +-1, just below -> 0
    t = np.zeros((1, 256), F32)
    t[0, :6] = [1.0, 0.5, -0.5, 0.49999997, -0.49999997, -1.0]
    for fmt in TQ_FORMATS:
        blob, y = check(t, fmt)
        np.testing.assert_array_equal(y[0, :6], [1, 1, -1, 0, 0, -1])
    # Q4_0 with max = -8: d = 1, q = trunc(x + 8.5): x = k + 0.5 goes up, away from -8
    x4 = np.zeros((1, 32), F32)
    x4[0, :6] = [-8, -7.5, -0.5, 0.5, 6.5, 7.4]
    blob, y = check(x4, "Q4_0")
    np.testing.assert_array_equal(y[0, :6], [-8, -7, 0, 1, 7, 7])


@pytest.mark.parametrize("fmt", ["Q4_0", "Q5_0"])
def test_largest_magnitude_negative(isa, rng, fmt):
    x = rng.uniform(-1, 1, (6, 32)).astype(F32)
    x[0, 7] = -3.0            # largest magnitude is negative: d = -3/-8 > 0, -3 -> code 0
    x[1, 3], x[1, 9] = 2.0, -2.0   # same magnitude, positive first: the first one wins
    x[2, 3], x[2, 9] = -2.0, 2.0   # negative first
    x[3, 31] = -5.0           # in the last lane
    x[4, 16] = -5.0           # first lane of the upper half
    blob, y = check(x, fmt)
    div = 8 if fmt == "Q4_0" else 16
    d = blob[:, :2].copy().view(np.float16).astype(F32).ravel()
    assert d[0] == np.float16(3.0 / div) and d[1] == np.float16(-2.0 / div) and d[2] == np.float16(2.0 / div)
    assert y[0, 7] == -3.0 and y[2, 3] == -2.0 and y[1, 3] == 2.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_near_and_beyond_float16_range(isa, rng, fmt):
    n = block(fmt)
    div = {"Q8_0": 127, "Q4_0": 8, "Q5_0": 16, "Q4_1": 15, "Q5_1": 31, "TQ1_0": 1, "TQ2_0": 1}[fmt]
    tops = [65504.0, 65519.0, 65520.0, 70000.0, 6.1e-5, 6e-8]  # d: max, rounds to max, Inf, Inf, normal, subnormal
    asym = fmt in ("Q4_1", "Q5_1")
    x = rng.uniform(0, 0.9, (len(tops), n)) * (1.0 if asym else rng.choice([-1.0, 1.0], n))
    x = x * (np.array(tops) * div)[:, None]
    x[:, 1] = 0.0  # Q4_1/Q5_1: min = 0, so d = max / div
    x[:, 0] = np.array(tops) * div * (-1.0 if fmt in ("Q4_0", "Q5_0") else 1.0)  # the largest magnitude
    x = x.astype(F32)
    blob, y = check(x, fmt)
    ts = lowbit.gguf.FORMATS[fmt][1]
    d_off = ts - 2 if fmt.startswith("TQ") else 0
    d = blob[:, d_off:d_off + 2].copy().view(np.float16).ravel()
    assert np.isinf(d[2:4]).all() and np.isfinite(d[:2]).all()  # overflow stores +-Inf, like gguf-py


@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_blocks_whose_inverse_overflows(isa, rng, fmt):
    n = block(fmt)
    x = rng.standard_normal((4, n)).astype(F32)
    x[0] *= F32(1e-39)   # 1/d overflows to Inf: codes as gguf-py gets them, d rounds to 0
    x[1] *= F32(1e-45)
    x[2] = 0
    x[2, 5] = np.float32(1.4e-45)  # the smallest subnormal
    blob, y = check(x, fmt)
    assert not y[:3].any()


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_finite_values(isa, fmt):
    n = block(fmt)
    fmax = np.finfo(F32).max
    x = np.zeros((3, n), F32)
    x[0, ::2], x[0, 1::2] = fmax, -fmax   # Q4_1: max - min overflows to Inf
    x[1, 0] = fmax
    x[2, :] = (np.linspace(-1.0, 1.0, n) * float(fmax)).astype(F32)
    with np.errstate(invalid="ignore", over="ignore"):
        check(x, fmt)


def test_float16_scale_rounding_every_exponent(isa, rng):
    # TQ2_0 stores d = max|x| itself: every float32 exponent, random mantissas, ties of float16 too
    e = np.arange(-149, 128)
    v = (np.ldexp(1.0, e)[:, None] * rng.uniform(1, 2, (e.size, 8))).astype(F32).ravel()
    ties = (np.arange(1, 2000, dtype=np.float64) * 2.0 ** -11 + 1 + 2.0 ** -12).astype(F32)  # halfway between halfs
    edges = [65504, 65519.996, 65520]
    v = np.concatenate([v[np.isfinite(v) & (v > 0)], ties, ties * F32(2.0 ** -20), edges]).astype(F32)
    x = np.zeros((v.size, 256), F32)
    x[:, 0] = v
    blob, _ = check(x, "TQ2_0")
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(blob[:, 64:].copy().view(np.float16).ravel(), v.astype(np.float16))


@pytest.mark.parametrize("fmt", TQ_FORMATS)
def test_ternary_inputs_round_trip(isa, rng, fmt):
    t = rng.integers(-1, 2, (5, 512)).astype(F32)
    a = F32(0.3125)  # exact in float16
    blob, y = check(t * a, fmt)
    np.testing.assert_array_equal(y, t * a)
    # layout independently: TQ2_0 byte 32g+m holds values 128g+m+32l at bits 2l as t+1
    if fmt == "TQ2_0":
        q = (t[0, :256].astype(np.int64) + 1).reshape(2, 4, 32)
        expect = (q[:, 0] | q[:, 1] << 2 | q[:, 2] << 4 | q[:, 3] << 6).ravel()
        np.testing.assert_array_equal(blob[0, :64], expect)


@pytest.mark.parametrize("fmt", ["Q4_1", "Q5_1"])
def test_asym_zero_extremes(isa, rng, fmt):
    # a zero minimum with both signs of zero in the block: lowbit stores -0.0 (documented; gguf-py's
    # NumPy reduction leaves that sign unspecified), so compare with the reference and values with gguf-py
    x = np.abs(rng.standard_normal((3, 32))).astype(F32)
    x[0, 3], x[0, 20] = 0.0, -0.0
    x[1, 3], x[1, 20] = -0.0, 0.0
    x[2] = -x[2]
    x[2, 4], x[2, 11] = -0.0, 0.0
    blob, y = check(x, fmt, vs_gguf=False)
    m = blob[:, 2:4].copy().view(np.float16).ravel()
    assert np.signbit(m[0]) and np.signbit(m[1])
    g = gguf_quantize(x, fmt)
    np.testing.assert_array_equal(np.delete(blob, [2, 3], axis=1), np.delete(g, [2, 3], axis=1))
    np.testing.assert_array_equal(y, gguf_dequantize(g, fmt))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 5), nblk=st.integers(1, 4), data=st.data())
def test_hypothesis_vs_gguf(isa, fmt, rows, nblk, data):
    # up to 20 blocks: the kernels' batches of 8 and their tails; few distinct values make
    # ties for the largest magnitude (max == -min) and constant blocks common
    n = block(fmt) * nblk
    few = st.sampled_from([0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.0, -2.0, 65504.0, 1e-40, -3.0, 3.0])
    elements = data.draw(st.sampled_from(["wide", "few"]))
    x = data.draw(hnp.arrays(F32, (rows, n), elements=few if elements == "few" else
                             st.floats(-1e6, 1e6, width=32) | few, fill=st.nothing()))
    if fmt in ("Q4_1", "Q5_1"):
        x = x + F32(0.0)  # -0.0 -> +0.0: the sign of a zero extreme is not specified by gguf-py
    check(x, fmt)


# ---- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_row_length_not_a_multiple(fmt):
    n = block(fmt)
    for bad in (1, n - 1, n + 1, 3 * n + 7):
        with pytest.raises(ValueError, match=f"not a multiple of {n}.*{fmt}"):
            lowbit.gguf.quantize(np.zeros((2, bad), F32), fmt)
        with pytest.raises(ValueError, match=f"multiple of {n}"):
            ref.gguf.quantize(np.zeros((2, bad), F32), fmt)
        with pytest.raises(ValueError, match=f"multiple of {n}"):
            lowbit.gguf.dequantize(np.zeros(100, np.uint8), fmt, (2, bad))
    with pytest.raises(ValueError, match="0-d"):
        lowbit.gguf.quantize(np.float32(1.0), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(isa, rng, fmt, bad):
    n = block(fmt)
    x = rng.standard_normal((3, 2 * n)).astype(F32)
    for pos in [(0, 0), (2, 2 * n - 1), (1, n + 5)]:
        y = x.copy()
        y[pos] = bad
        y[2, 2 * n - 1] = bad if pos == (1, n + 5) else y[2, 2 * n - 1]  # two bad values: the first is named
        with pytest.raises(ValueError, match=rf"first at index \({pos[0]}, {pos[1]}\)"):
            lowbit.gguf.quantize(y, fmt)
        with pytest.raises(ValueError, match=rf"first at index \({pos[0]}, {pos[1]}\)"):
            ref.gguf.quantize(y, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_blob_size_mismatch(fmt):
    bs, ts = lowbit.gguf.FORMATS[fmt]
    blob = np.zeros(3 * ts, np.uint8)
    for shape in [(2, bs), (4 * bs,), (3, 2 * bs)]:
        with pytest.raises(ValueError, match=f"blob has {3 * ts} bytes but shape"):
            lowbit.gguf.dequantize(blob, fmt, shape)
    with pytest.raises(ValueError, match="blob has"):
        lowbit.gguf.dequantize(blob[:-1], fmt, (3, bs))
    with pytest.raises(TypeError, match="uint8"):
        lowbit.gguf.dequantize(blob.astype(np.float32), fmt, (3, bs))
    with pytest.raises(TypeError, match="blob"):
        lowbit.gguf.dequantize("abc", fmt, (3, bs))
    with pytest.raises(ValueError, match="non-negative"):
        lowbit.gguf.dequantize(blob, fmt, (-3, bs))


def test_unknown_format():
    for bad in ["Q3_0", "q8", "", "IQ2_XXX"]:
        with pytest.raises(ValueError, match="known: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, TQ1_0, TQ2_0, Q2_K"):
            lowbit.gguf.quantize(np.zeros(32, F32), bad)
        with pytest.raises(ValueError, match="unknown GGUF block format"):
            lowbit.gguf.dequantize(np.zeros(34, np.uint8), bad, 32)
    for ro in ["IQ2_XXS", "mxfp4", "BF16"]:  # read-only formats
        with pytest.raises(ValueError, match="can be read .* but not written"):
            lowbit.gguf.quantize(np.zeros(256, F32), ro)
    with pytest.raises(TypeError, match="fmt"):
        lowbit.gguf.quantize(np.zeros(32, F32), 8)


def test_non_float_input():
    with pytest.raises(TypeError, match="floating-point"):
        lowbit.gguf.quantize(np.zeros((1, 32), np.int32), "Q8_0")


# ---- writer ----------------------------------------------------------------------------

def _tensor_bytes(t):
    return np.asarray(t.data).view(np.uint8).tobytes()


def test_write_read_back(tmp_path, rng):
    xs = {
        "blk.0.q8": rng.standard_normal((3, 64)).astype(F32),
        "blk.0.q4": rng.standard_normal((2, 3, 96)).astype(F32),
        "blk.0.q41": rng.standard_normal((5, 32)).astype(F32),
        "blk.0.q50": rng.standard_normal((1, 32)).astype(F32),
        "blk.0.q51": rng.standard_normal((7, 64)).astype(F32),
        "blk.0.tq1": rng.standard_normal((3, 256)).astype(F32),
        "blk.0.tq2": rng.standard_normal((2, 512)).astype(F32),
    }
    fmts = dict(zip(xs, ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"]))
    tensors = {k: (lowbit.gguf.quantize(x, fmts[k]), fmts[k], x.shape) for k, x in xs.items()}
    tensors["norm.f32"] = rng.standard_normal(17).astype(F32)
    tensors["emb.f16"] = rng.standard_normal((4, 6)).astype(np.float16)
    path = tmp_path / "model.gguf"
    lowbit.gguf.write(path, tensors, metadata={"lowbit.note": "test", "lowbit.count": 3})
    assert sorted(os.listdir(tmp_path)) == ["model.gguf"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~mask  # a normal file's mode, not mkstemp's 0600

    r = gguf.GGUFReader(path)
    got = {t.name: t for t in r.tensors}
    assert set(got) == set(tensors)
    for k, x in xs.items():
        t = got[k]
        assert t.tensor_type == GT[fmts[k]]
        assert tuple(int(s) for s in t.shape) == tuple(reversed(x.shape))  # ggml order
        assert _tensor_bytes(t) == tensors[k][0].tobytes()
        y = lowbit.gguf.dequantize(np.asarray(t.data), fmts[k], x.shape)
        np.testing.assert_array_equal(bits(y), bits(gguf_dequantize(tensors[k][0], fmts[k])))
    assert got["norm.f32"].tensor_type == GT.F32
    np.testing.assert_array_equal(np.asarray(got["norm.f32"].data), tensors["norm.f32"])
    assert got["emb.f16"].tensor_type == GT.F16
    np.testing.assert_array_equal(np.asarray(got["emb.f16"].data).reshape(4, 6), tensors["emb.f16"])
    field = r.get_field("lowbit.note")
    assert bytes(field.parts[field.data[0]]).decode() == "test"


def test_write_is_atomic(tmp_path, rng, monkeypatch):
    path = tmp_path / "m.gguf"
    x = rng.standard_normal((2, 32)).astype(F32)
    good = {"a": (lowbit.gguf.quantize(x, "Q8_0"), "Q8_0", x.shape)}
    lowbit.gguf.write(path, good)
    before = path.read_bytes()

    # bad input is caught before any file is touched
    with pytest.raises(ValueError, match="blob has"):
        lowbit.gguf.write(path, {"a": (np.zeros(5, np.uint8), "Q8_0", (2, 32))})
    with pytest.raises(ValueError, match="unknown GGUF block format"):
        lowbit.gguf.write(tmp_path / "new.gguf", {"a": (np.zeros(34, np.uint8), "Q9", (32,))})

    # an error in the middle of writing leaves the old file and no temporary behind
    def boom(self, *a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", boom)
    with pytest.raises(OSError, match="disk full"):
        lowbit.gguf.write(path, {"b": x})
    with pytest.raises(OSError, match="disk full"):
        lowbit.gguf.write(tmp_path / "other.gguf", {"b": x})
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]
    assert path.read_bytes() == before


def _special_blocks(fmt, rng):
    """Blocks that take the kernels' slow paths, for every format."""
    n = block(fmt)
    r = lambda: rng.standard_normal(n)  # noqa: E731
    out = [np.zeros(n), np.full(n, -0.0), r() * 1e-39, r() * 1e-45, r() * 1e6, r() * 3e37]
    tie = r()
    tie[3], tie[9] = 5.0, -5.0      # largest magnitude with both signs: the first one wins
    out.append(tie)
    tie2 = -tie
    out.append(tie2)
    neg = r()
    neg[n - 1] = -9.0               # largest magnitude negative, in the last lane
    out.append(neg)
    zmin = np.abs(r())
    zmin[4] = 0.0                   # min is +0.0
    out.append(zmin)
    out.append(-zmin)               # max is -0.0
    out.append(np.full(n, 2.5))     # constant block: max == min
    return [b.astype(F32) for b in out]


@pytest.mark.parametrize("fmt", FORMATS)
def test_special_blocks_at_every_batch_position(isa, rng, fmt):
    # kernels work on batches of 8 blocks plus a tail: put each special block at several positions
    n = block(fmt)
    specials = _special_blocks(fmt, rng)
    nblk = 19  # two batches of 8 and a tail of 3
    for shift in range(0, nblk, 2):
        x = rng.standard_normal((nblk, n)).astype(F32)
        for k, s in enumerate(specials):
            x[(shift + 5 * k) % nblk] = s
        with np.errstate(over="ignore"):
            check(x.reshape(1, -1), fmt)


def test_format_given_as_gguf_enum(rng):
    x = rng.standard_normal((2, 64)).astype(F32)
    np.testing.assert_array_equal(lowbit.gguf.quantize(x, GT.Q4_0), lowbit.gguf.quantize(x, "Q4_0"))
    assert lowbit.gguf.type_size(GT.TQ1_0) == 54 and lowbit.gguf.block_size("tq1_0") == 256


def test_docs_examples():
    import doctest
    from pathlib import Path
    doc = Path(__file__).resolve().parent.parent / "docs" / "gguf.md"
    result = doctest.testfile(str(doc), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_large_sweep_vs_gguf(isa, fmt):
    # a few million values from several distributions, including heavy tails and
    # integer-valued (tie-rich) data, against gguf-py directly
    rng = np.random.default_rng(7)
    n = 1 << 20
    parts = [rng.standard_normal(n), rng.standard_cauchy(n), rng.uniform(-1, 1, n) ** 9,
             rng.integers(-8, 9, n).astype(np.float64), rng.integers(-1, 2, n) * 0.25,
             rng.standard_normal(n) * np.exp(rng.uniform(-40, 40, n))]
    for p in parts:
        x = np.clip(p, -3e38, 3e38).astype(F32).reshape(-1, 4096)
        if fmt in ("Q4_1", "Q5_1"):
            x = x + F32(0.0)
        check(x, fmt)


@pytest.mark.skipif(not hasattr(lowbit._C, "_set_mxcsr"), reason="x86 only: MXCSR")
@pytest.mark.parametrize("fmt", FORMATS)
def test_results_ignore_callers_ftz_daz(isa, rng, fmt):
    # subnormal float32 inputs and scales that are float16 subnormals: what FTZ/DAZ would change
    n = block(fmt)
    x = rng.standard_normal((20, n))
    x[:10] *= 1e-39
    x[10:] *= 1e-6
    x = x.astype(F32)
    expected = ref.gguf.quantize(x, fmt)
    y_expected = ref.gguf.dequantize(expected, fmt, x.shape)
    old = lowbit._C._set_mxcsr(0x1F80 | 0x8040)
    try:
        got = lowbit.gguf.quantize(x, fmt)
        y = lowbit.gguf.dequantize(expected, fmt, x.shape)
    finally:
        lowbit._C._set_mxcsr(old)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(bits(y), bits(y_expected))
