"""Bit packing (SPEC 6): layouts byte for byte (expected bytes built here, not by
the reference), round trips on every ISA, validation, packed QTensors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowbit
from lowbit import reference as ref

from conftest import assert_qtensor_equal

KERNEL_FAMILIES = ("pack",)  # the `isa` fixture runs each of their variants

SIZES = [0, 1, 7, 31, 33, 40, 127, 128, 129, 160, 176, 177, 4097, 81920 + 41]


def random_codes(rng, shape, bits, signed):
    if bits == 1 and signed:
        return np.where(rng.integers(0, 2, shape) == 1, 1, -1).astype(np.int8)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return rng.integers(lo, hi + 1, shape).astype(np.int8 if signed else np.uint8)


def expected_bits(codes, bits, signed):
    """SPEC 6 by hand: field per code, then an LSB-first bit stream per row (np.packbits little)."""
    q = codes.astype(np.int64)
    field = (q > 0).astype(np.int64) if (bits == 1 and signed) else q & ((1 << bits) - 1)
    stream = (field[..., None] >> np.arange(bits)) & 1
    stream = stream.reshape(codes.shape[:-1] + (codes.shape[-1] * bits,)).astype(np.uint8)
    return np.packbits(stream, axis=-1, bitorder="little")


def expected_ternary(codes, layout):
    rows = codes.reshape(int(np.prod(codes.shape[:-1])), codes.shape[-1]).astype(np.int64) + 1
    n = codes.shape[-1]
    per = 4 if layout == "2bit" else 5
    nb = -(-n // per)
    out = np.zeros((rows.shape[0], nb), np.int64)
    for j in range(n):  # an explicit loop over positions
        if layout == "2bit":
            out[:, j // 4] |= rows[:, j] << (2 * (j % 4))
        else:
            out[:, j // 5] += rows[:, j] * 3 ** (j % 5)
    return out.astype(np.uint8).reshape(codes.shape[:-1] + (nb,))


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
def test_pack_bytes_and_round_trip(isa, rng, bits, signed):
    for n in SIZES:
        rows = 1 if n > 5000 else 3
        q = random_codes(rng, (rows, n), bits, signed)
        p = lowbit.pack(q, bits)
        assert p.dtype == np.uint8 and p.shape == (rows, -(-n * bits // 8))
        np.testing.assert_array_equal(p, expected_bits(q, bits, signed))
        np.testing.assert_array_equal(lowbit.unpack(p, bits, n, signed=signed), q)
        np.testing.assert_array_equal(ref.pack(q, bits), p)
        np.testing.assert_array_equal(ref.unpack(p, bits, n, signed=signed), q)


@pytest.mark.parametrize("layout", ["2bit", "base3"])
def test_pack_ternary_bytes_and_round_trip(isa, rng, layout):
    for n in SIZES:
        rows = 1 if n > 5000 else 3
        q = rng.integers(-1, 2, (rows, n)).astype(np.int8)
        p = lowbit.pack_ternary(q, layout)
        np.testing.assert_array_equal(p, expected_ternary(q, layout))
        np.testing.assert_array_equal(lowbit.unpack_ternary(p, n, layout), q)
        np.testing.assert_array_equal(ref.pack_ternary(q, layout), p)
        np.testing.assert_array_equal(ref.unpack_ternary(p, n, layout), q)


def test_known_bytes(isa):
    assert lowbit.pack(np.array([1, -1, 1, 1, -1], np.int8), 1).tolist() == [0b01101]
    assert lowbit.pack(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], np.uint8), 1).tolist() == [0b00001101, 1]
    assert lowbit.pack(np.array([-8, 7, -1], np.int8), 4).tolist() == [0x78, 0x0F]
    assert lowbit.pack(np.array([5, 2, 7], np.uint8), 3).tolist() == [0b11010101, 0b1]
    assert lowbit.pack_ternary(np.array([-1, 0, 1, 1, 0], np.int8), "2bit").tolist() == [0b10100100, 0b01]
    # digits (q + 1) = 2, 1, 0, 2, 2 | 1  ->  2 + 3 + 0 + 54 + 162 = 221 | 1
    assert lowbit.pack_ternary(np.array([1, 0, -1, 1, 1, 0], np.int8), "base3").tolist() == [221, 1]


def test_every_base3_byte_decodes(isa):
    b = np.tile(np.arange(243, dtype=np.uint8), 7)[None]  # long enough for the vector path
    q = lowbit.unpack_ternary(b, b.size * 5, "base3")
    digits = (b[0, :, None].astype(np.int64) // 3 ** np.arange(5)) % 3 - 1
    np.testing.assert_array_equal(q[0], digits.reshape(-1))


def test_every_field_value_decodes(isa):
    for bits in (1, 2, 3, 4, 5, 8):
        f = np.arange(1 << bits, dtype=np.uint8)
        f = np.tile(f, 64 // len(f) + 8)[None]
        p = np.packbits(((f[..., None] >> np.arange(bits)) & 1).reshape(1, -1).astype(np.uint8), axis=-1,
                        bitorder="little")
        np.testing.assert_array_equal(lowbit.unpack(p, bits, f.size), f)
        signed = np.where(f >= (1 << (bits - 1)), f.astype(np.int16) - (1 << bits), f).astype(np.int8)
        if bits == 1:
            signed = (2 * f.astype(np.int8) - 1)
        np.testing.assert_array_equal(lowbit.unpack(p, bits, f.size, signed=True), signed)


def test_multi_dim_noncontiguous_and_out(isa, rng):
    q = rng.integers(-8, 8, (4, 5, 66)).astype(np.int8)
    p = lowbit.pack(q, 4)
    assert p.shape == (4, 5, 33)
    np.testing.assert_array_equal(p.reshape(20, 33), lowbit.pack(q.reshape(20, 66), 4))
    view = q[:, ::2, 1::2]
    np.testing.assert_array_equal(lowbit.pack(view, 4), expected_bits(np.ascontiguousarray(view), 4, True))
    out = np.empty((4, 5, 33), np.uint8)
    assert lowbit.pack(q, 4, out=out) is out
    np.testing.assert_array_equal(out, p)
    back = np.empty(q.shape, np.int8)
    assert lowbit.unpack(p, 4, 66, signed=True, out=back) is back
    np.testing.assert_array_equal(back, q)
    t = rng.integers(-1, 2, (3, 12)).astype(np.int8)
    out = np.empty((3, 3), np.uint8)
    assert lowbit.pack_ternary(t, "2bit", out=out) is out
    with pytest.raises(ValueError, match="out must be"):
        lowbit.pack(q, 4, out=np.empty((4, 5, 32), np.uint8))
    with pytest.raises(ValueError, match="out must be"):
        lowbit.unpack(p, 4, 66, out=np.empty(q.shape, np.int8))  # signed=False wants uint8


def test_wider_integer_dtypes_are_checked(rng):
    q = rng.integers(-4, 4, (2, 10))
    np.testing.assert_array_equal(lowbit.pack(q, 3), lowbit.pack(q.astype(np.int8), 3))
    np.testing.assert_array_equal(lowbit.pack(q + 4, 3), lowbit.pack((q + 4).astype(np.uint8), 3))
    with pytest.raises(ValueError, match=r"3-bit signed range \[-4, 3\]"):
        lowbit.pack(np.array([-1, 300]), 3)
    with pytest.raises(ValueError, match=r"3-bit unsigned range \[0, 7\]"):
        lowbit.pack(np.array([0, 300]), 3)
    np.testing.assert_array_equal(lowbit.pack([[1, 0, 1]], 1), [[0b101]])  # a list: int64, signed -> binary?


def test_bad_codes_are_errors(isa):
    for f in (lowbit, ref):
        with pytest.raises(ValueError, match=r"4-bit signed range \[-8, 7\]; first at index \(1, 2\): 8"):
            f.pack(np.array([[0, 1, 2], [3, 4, 8]], np.int8), 4)
        with pytest.raises(ValueError, match=r"2-bit unsigned range \[0, 3\].*: 4"):
            f.pack(np.array([4], np.uint8), 2)
        with pytest.raises(ValueError, match=r"binary codes \{-1, \+1\}.*: 0"):
            f.pack(np.array([1, -1, 0], np.int8), 1)
        with pytest.raises(ValueError, match=r"ternary codes \{-1, 0, \+1\}; first at index \(40,\): 2"):
            f.pack_ternary(np.r_[np.zeros(40, np.int8), np.int8(2)], "2bit")
        with pytest.raises(ValueError, match=r"ternary codes.*: -2"):
            f.pack_ternary(np.array([-2] + [0] * 300, np.int8), "base3")
    # a bad code deep in the vector path, on every width
    for bits in range(1, 9):
        q = np.ones((2, 300), np.int8)
        q[1, 257] = -128 if bits < 8 else 1
        if bits == 8:
            continue
        with pytest.raises(ValueError, match=r"first at index \(1, 257\)"):
            lowbit.pack(q, bits)


def test_bad_packed_input_is_an_error(isa):
    for f in (lowbit, ref):
        with pytest.raises(ValueError, match="take 2 byte"):
            f.unpack(np.zeros((2, 3), np.uint8), 4, 4)
        with pytest.raises(ValueError, match="padding bits"):
            f.unpack(np.array([0xFF], np.uint8), 4, 1)
        with pytest.raises(ValueError, match="field 3"):
            f.unpack_ternary(np.array([0b11] + [0] * 99, np.uint8), 400, "2bit")
        with pytest.raises(ValueError, match="padding bits"):
            f.unpack_ternary(np.array([0b110000], np.uint8), 2, "2bit")
        with pytest.raises(ValueError, match="< 243"):
            f.unpack_ternary(np.array([0] * 50 + [243] + [0] * 49, np.uint8), 500, "base3")
        with pytest.raises(ValueError, match="must be < 9"):
            f.unpack_ternary(np.array([9], np.uint8), 2, "base3")
        with pytest.raises(TypeError, match="uint8"):
            f.unpack(np.zeros(2, np.int8), 4, 4)
        with pytest.raises(TypeError, match="integer"):
            f.pack(np.zeros(4, np.float32), 4)
        with pytest.raises(TypeError, match="integer"):
            f.pack(np.zeros(4, bool), 1)
        with pytest.raises(ValueError, match="at least 1 dimension"):
            f.pack(np.int8(1), 4)
        with pytest.raises(ValueError, match="bits must be in 1..8"):
            f.pack(np.zeros(4, np.int8), 9)
        with pytest.raises(ValueError, match="bits must be in 1..8"):
            f.unpack(np.zeros(4, np.uint8), 0, 4)
        with pytest.raises(ValueError, match="n must be >= 0"):
            f.unpack(np.zeros(0, np.uint8), 4, -1)
        with pytest.raises(TypeError, match="n must be an int"):
            f.unpack_ternary(np.zeros(1, np.uint8), 2.0)
        with pytest.raises(ValueError, match="layout must be one of"):
            f.pack_ternary(np.zeros(4, np.int8), "3bit")


def test_empty_and_one_element(isa):
    for f in (lowbit, ref):
        assert f.pack(np.zeros((3, 0), np.int8), 3).shape == (3, 0)
        assert f.unpack(np.zeros((3, 0), np.uint8), 3, 0).shape == (3, 0)
        assert f.pack_ternary(np.zeros((0, 7), np.int8), "base3").shape == (0, 2)
        assert f.unpack_ternary(np.zeros((2, 0), np.uint8), 0, "base3").shape == (2, 0)
        assert f.pack(np.array([-1], np.int8), 1).tolist() == [0]
        assert f.unpack(np.array([1], np.uint8), 1, 1, signed=True).tolist() == [1]
        assert f.pack_ternary(np.array([1], np.int8), "base3").tolist() == [2]
        assert f.unpack_ternary(np.array([2], np.uint8), 1, "2bit").tolist() == [1]


# ---- packed QTensors -------------------------------------------------------

def qtensors(rng):
    w = rng.standard_normal((6, 45)).astype(np.float32)
    return [
        (lowbit.ternarize(w), "ternary2", 2.0),
        (lowbit.ternarize(w, "twn", group_size=16), "base3", 1.6),
        (lowbit.ternarize(w, axis=0), "b2", 2.0),
        (lowbit.binarize(w, "bitnet"), "b1", 1.0),
        (lowbit.quantize(w, 4, group_size=32), "b4", 4.0),
        (lowbit.quantize(w, 4, scheme="minmax", axis=0), "b4", 4.0),
        (lowbit.quantize(w, 3, narrow=True), "b3", 3.0),
        (lowbit.quantize(w, 8), "b8", 8.0),
    ]


def test_qtensor_pack_unpack_dequantize(isa, rng):
    for qt, layout, bpw in qtensors(rng):
        p = qt.pack(layout)
        assert p.packed == layout and p.codes.dtype == np.uint8
        np.testing.assert_array_equal(p.dequantize(), qt.dequantize())
        u = p.unpack()
        assert u.packed is None
        assert_qtensor_equal(u, qt)
        assert p.unpack().meta == qt.meta
        # the size the format promises: bits/weight per row of 45 (rounded up to whole bytes) + scales
        n_rows = 6
        per_row = {"ternary2": -(-45 // 4), "base3": -(-45 // 5)}.get(layout, -(-45 * qt.bits // 8))
        assert p.codes.nbytes == n_rows * per_row
        assert p.codes.nbytes * 8 <= bpw * qt.size + 8 * n_rows
        assert p.nbytes == p.codes.nbytes + qt.scale.nbytes + (0 if qt.zero_point is None else qt.zero_point.nbytes)


def test_default_layouts(rng):
    w = rng.standard_normal((4, 64)).astype(np.float32)
    assert lowbit.ternarize(w).pack().packed == "ternary2"
    assert lowbit.binarize(w).pack().packed == "b1"
    assert lowbit.quantize(w, 4).pack().packed == "b4"
    p = lowbit.ternarize(w).pack("base3")
    assert p.pack("base3") is p
    assert p.pack("ternary2").codes.tobytes() == lowbit.ternarize(w).pack().codes.tobytes()
    big = lowbit.ternarize(rng.standard_normal((4096, 4096)).astype(np.float32))
    assert abs(big.pack("base3").bits_per_weight - 1.6) < 0.01
    assert abs(big.pack().bits_per_weight - 2.0) < 0.01
    assert abs(lowbit.binarize(np.ones((256, 4096), np.float32)).pack().bits_per_weight - 1.0) < 0.01


def test_packed_qtensor_serializes(rng):
    for qt, layout, _ in qtensors(rng):
        p = qt.pack(layout)
        back = lowbit.QTensor.from_dict(p.to_dict())
        assert back.packed == layout
        np.testing.assert_array_equal(back.codes, p.codes)
        np.testing.assert_array_equal(back.dequantize(), qt.dequantize())


def test_packed_qtensor_from_untrusted_dict(rng):
    w = rng.standard_normal((3, 20)).astype(np.float32)
    d = lowbit.ternarize(w).pack("base3").to_dict()
    bad = dict(d, codes=np.full_like(d["codes"], 250))
    with pytest.raises(ValueError, match="243"):
        lowbit.QTensor.from_dict(bad)
    bad = dict(d, codes=d["codes"][:, :-1].copy())
    with pytest.raises(ValueError, match=r"must have shape \(3, 4\)"):
        lowbit.QTensor.from_dict(bad)
    d2 = lowbit.ternarize(w).pack("b2").to_dict()
    d2["codes"] = d2["codes"].copy()
    d2["codes"][0, 0] = 0b10  # two's complement -2: not a ternary code
    with pytest.raises(ValueError, match="ternary codes span"):
        lowbit.QTensor.from_dict(d2)
    d3 = lowbit.quantize(w, 4, narrow=True).pack().to_dict()
    d3["codes"] = d3["codes"].copy()
    d3["codes"][0, 0] = 0x08  # -8 is not on the narrow grid
    with pytest.raises(ValueError, match="outside the 4-bit grid"):
        lowbit.QTensor.from_dict(d3)
    with pytest.raises(ValueError, match="layout must be one of"):
        lowbit.QTensor.from_dict(dict(d, qmeta=_edit_meta(d["qmeta"], packed="b9")))


def _edit_meta(qmeta, **kw):
    import json
    m = json.loads(qmeta.tobytes().decode())
    m.update(kw)
    return np.frombuffer(json.dumps(m).encode(), np.uint8).copy()


def test_qtensor_layout_mismatch(rng):
    w = rng.standard_normal((3, 20)).astype(np.float32)
    with pytest.raises(ValueError, match="is for 4-bit codes"):
        lowbit.ternarize(w).pack("b4")
    with pytest.raises(ValueError, match="unsigned"):
        lowbit.quantize(w, 2, scheme="minmax").pack("ternary2")
    with pytest.raises(ValueError, match="ternary codes"):
        lowbit.quantize(w, 2, scheme="minmax", signed=True).pack("base3")  # -2: not ternary


def test_qtensor_edges(isa):
    one = lowbit.ternarize(np.array([0.5], np.float32))
    p = one.pack("base3")
    assert p.codes.shape == (1,)
    np.testing.assert_array_equal(p.dequantize(), one.dequantize())
    scalar = lowbit.ternarize(np.float32(-2.0))
    ps = scalar.pack("base3")
    assert ps.codes.shape == (1,) and ps.codes.tolist() == [0]
    np.testing.assert_array_equal(ps.dequantize(), scalar.dequantize())
    assert_qtensor_equal(ps.unpack(), scalar)
    empty = lowbit.binarize(np.zeros((3, 0), np.float32), axis=0)
    pe = empty.pack()
    assert pe.codes.shape == (3, 0)
    assert pe.dequantize().shape == (3, 0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hypothesis_round_trip(data):
    rows = data.draw(st.integers(0, 4))
    n = data.draw(st.integers(0, 700))
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    kind = data.draw(st.sampled_from(["bits", "2bit", "base3"]))
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            if kind == "bits":
                bits = data.draw(st.integers(1, 8))
                signed = data.draw(st.booleans())
                q = random_codes(rng, (rows, n), bits, signed)
                p = lowbit.pack(q, bits)
                np.testing.assert_array_equal(p, expected_bits(q, bits, signed))
                np.testing.assert_array_equal(lowbit.unpack(p, bits, n, signed=signed), q)
            else:
                q = rng.integers(-1, 2, (rows, n)).astype(np.int8)
                p = lowbit.pack_ternary(q, kind)
                np.testing.assert_array_equal(p, expected_ternary(q, kind))
                np.testing.assert_array_equal(lowbit.unpack_ternary(p, n, kind), q)


def test_threads_do_not_change_results(rng):
    q = rng.integers(-1, 2, (3, 300001)).astype(np.int8)
    prev = lowbit.get_num_threads()
    try:
        outs = []
        for nt in [1, 2, 5]:
            lowbit.set_num_threads(nt)
            outs.append([lowbit.pack_ternary(q, "base3"), lowbit.pack(q, 3), lowbit.pack_ternary(q, "2bit")])
        for o in outs[1:]:
            for a, b in zip(outs[0], o):
                np.testing.assert_array_equal(a, b)
    finally:
        lowbit.set_num_threads(prev)
