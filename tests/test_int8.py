"""int8 GEMM and dynamic int8 linear (SPEC 7): exact int32 accumulators vs NumPy int64 on every
ISA path, including the inputs that saturate vpmaddubsw-style int16 pair sums."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import reference as ref

KERNEL_FAMILIES = ("int8", "act")  # the `isa` fixture runs each of their variants

F32 = np.float32
I8 = np.int8


def np_matmul(a, b, za=0, zb=0):
    return (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb).T


def check(a, b, za=0, zb=0):
    got = lowbit.int8_matmul(a, b, a_zero_point=za, b_zero_point=zb)
    assert got.dtype == np.int32 and got.shape == (a.shape[0], b.shape[0])
    np.testing.assert_array_equal(got, np_matmul(a, b, za, zb))
    np.testing.assert_array_equal(got, ref.int8_matmul(a, b, a_zero_point=za, b_zero_point=zb))
    return got


DIMS = [1, 2, 3, 17]
KS = [1, 2, 3, 15, 16, 17, 31, 33, 64, 127, 257]


@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("M", DIMS)
def test_random_shapes(isa, rng, M, K):
    for N in DIMS:
        check(rng.integers(-128, 128, (M, K), dtype=I8), rng.integers(-128, 128, (N, K), dtype=I8))


@pytest.mark.parametrize("M,N,K", [(4097, 3, 33), (2, 4097, 31), (17, 33, 4097)])
def test_big_dims(isa, rng, M, N, K):
    check(rng.integers(-128, 128, (M, K), dtype=I8), rng.integers(-128, 128, (N, K), dtype=I8))


@pytest.mark.parametrize("K", [1, 2, 7, 64, 1000, 4099])
def test_saturating_extremes(isa, K):
    # -128 * -128 + -128 * -128 = 32768 overflows an int16 pair sum (vpmaddubsw saturates)
    lo = np.full((5, K), -128, I8)
    hi = np.full((7, K), 127, I8)
    got = check(lo, lo[:3])
    assert (got == 16384 * K).all()
    check(lo, hi)
    check(hi, hi)
    alt = np.where(np.arange(K) % 2 == 0, -128, 127).astype(I8)
    alt2 = np.stack([alt, -1 - alt, np.roll(alt, 1), np.full(K, -128, I8)]).astype(I8)
    check(alt2, alt2)
    # uint8 255 against -128: the u8 x s8 pair sum 2 * 255 * -128 saturates int16 too
    u = np.full((3, K), 255, np.uint8)
    check(u, lo[:2])
    check(u, hi[:2])


@pytest.mark.parametrize("za,zb", [(0, 0), (3, 0), (0, -5), (-128, 127), (127, -128), (17, 9)])
def test_zero_points_int8(isa, rng, za, zb):
    a = rng.integers(-128, 128, (9, 45), dtype=I8)
    b = rng.integers(-128, 128, (19, 45), dtype=I8)
    check(a, b, za, zb)
    check(np.full((2, 45), -128, I8), np.full((3, 45), 127, I8), za, zb)


@pytest.mark.parametrize("za,zb", [(0, 0), (128, 0), (255, -128), (0, 127), (200, 3)])
def test_zero_points_uint8(isa, rng, za, zb):
    a = rng.integers(0, 256, (6, 77), dtype=np.uint8)
    b = rng.integers(-128, 128, (18, 77), dtype=I8)
    check(a, b, za, zb)
    check(np.zeros((2, 77), np.uint8), np.full((3, 77), -128, I8), za, zb)


def test_k_near_limit(isa, rng):
    K = 131072
    a = np.full((2, K), -128, I8)
    b = np.full((3, K), -128, I8)
    with pytest.raises(ValueError, match="int32"):  # true result 2**31 does not fit
        lowbit.int8_matmul(a, b)
    b = np.full((3, K), 127, I8)  # K * 16256 < 2**31: exact
    got = check(a, b)
    assert (got == -128 * 127 * K).all()
    r = rng.integers(-127, 128, (2, K), dtype=I8)
    check(r, rng.integers(-127, 128, (3, K), dtype=I8))
    check(np.full((1, K - 1), -128, I8), np.full((1, K - 1), -128, I8))  # 2**31 - 16384 fits


def test_empty_and_noncontiguous(isa, rng):
    assert lowbit.int8_matmul(np.zeros((0, 5), I8), np.zeros((3, 5), I8)).shape == (0, 3)
    assert lowbit.int8_matmul(np.zeros((2, 5), I8), np.zeros((0, 5), I8)).shape == (2, 0)
    np.testing.assert_array_equal(lowbit.int8_matmul(np.zeros((2, 0), I8), np.zeros((3, 0), I8)),
                                  np.zeros((2, 3), np.int32))
    a = rng.integers(-128, 128, (20, 40), dtype=I8)
    b = rng.integers(-128, 128, (40, 30), dtype=I8)
    check(a[::2, ::2], b.T[::3, :20])


def test_bad_input():
    a = np.zeros((2, 5), I8)
    with pytest.raises(ValueError, match="K differs"):
        lowbit.int8_matmul(a, np.zeros((3, 6), I8))
    with pytest.raises(TypeError, match="int8"):
        lowbit.int8_matmul(a.astype(F32), np.zeros((3, 5), I8))
    with pytest.raises(TypeError, match="int8"):
        lowbit.int8_matmul(a.astype(np.int16), np.zeros((3, 5), I8))
    with pytest.raises(TypeError, match="int8"):
        lowbit.int8_matmul(a, np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        lowbit.int8_matmul(a.reshape(-1), np.zeros((3, 5), I8))
    with pytest.raises(TypeError):
        lowbit.int8_matmul(a.tolist(), np.zeros((3, 5), I8))
    with pytest.raises(ValueError, match="range"):
        lowbit.int8_matmul(a, np.zeros((3, 5), I8), a_zero_point=200)
    with pytest.raises(TypeError, match="scalar"):
        lowbit.int8_matmul(a, np.zeros((3, 5), I8), b_zero_point=np.zeros(3, np.int32))


# ---- linear ---------------------------------------------------------------------

def rel_err(y, yr):
    return np.abs(y - yr).max() / max(np.abs(yr).max(), 1e-30)


def check_linear(x, qw, bias=None):
    L = lowbit.Linear(qw, bias)
    y = L(x)
    yr = ref.linear(x, qw, bias)
    assert y.dtype == F32 and y.shape == yr.shape
    acc, s = L.accumulators(x)
    accr, sr = ref.linear_accumulators(x, qw)
    np.testing.assert_array_equal(acc, accr)
    np.testing.assert_array_equal(s, sr)
    if y.size:
        assert rel_err(y, yr) <= 1e-6  # SPEC 7 (in fact the same float32 operations: bit-exact)
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(lowbit.linear(x, qw, bias), y)
    return y


@pytest.mark.parametrize("K", [1, 2, 17, 33, 256])
@pytest.mark.parametrize("M", [1, 2, 3, 7, 8, 17])
def test_linear_shapes(isa, rng, M, K):
    for N in [1, 3, 17, 40]:
        w = rng.standard_normal((N, K)).astype(F32)
        x = rng.standard_normal((M, K)).astype(F32)
        check_linear(x, lowbit.quantize(w, 8, axis=0), rng.standard_normal(N).astype(F32))
        check_linear(x, lowbit.quantize(w, 8))


def test_linear_big(isa, rng):
    w = rng.standard_normal((4097, 64)).astype(F32)
    x = rng.standard_normal((3, 64)).astype(F32)
    check_linear(x, lowbit.quantize(w, 8, axis=0))
    x = rng.standard_normal((130, 100)).astype(F32)
    check_linear(x, lowbit.quantize(rng.standard_normal((50, 100)).astype(F32), 8, axis=0))


def test_linear_batch_shapes_and_float_weight(isa, rng):
    w = rng.standard_normal((12, 20)).astype(F32)
    bias = rng.standard_normal(12).astype(np.float64)
    L = lowbit.Linear(w, bias)
    x = rng.standard_normal((2, 3, 20)).astype(F32)
    y = L(x)
    assert y.shape == (2, 3, 12)
    np.testing.assert_array_equal(y, ref.Linear(w, bias)(x))
    assert L(x[0, 0]).shape == (12,)
    np.testing.assert_array_equal(L(x[0, 0]), y[0, 0])
    # close to the float result
    yf = x @ w.T + bias.astype(F32)
    assert np.abs(y - yf).max() < 0.05 * np.abs(yf).max()
    # non-contiguous and float16/float64 activations
    xt = rng.standard_normal((20, 6)).T
    np.testing.assert_array_equal(L(xt), ref.Linear(w, bias)(xt))
    np.testing.assert_array_equal(L(x.astype(np.float16)), ref.Linear(w, bias)(x.astype(np.float16)))
    assert L(np.zeros((0, 20), F32)).shape == (0, 12)


def test_linear_extreme_weights(isa, rng):
    # a QTensor whose codes include -128 (hand-built): still exact
    codes = np.full((5, 40), -128, I8)
    codes[1] = 127
    qw = lowbit.QTensor(codes=codes, scale=np.full((5, 1), 0.5, F32), zero_point=np.zeros((5, 1), np.int32),
                        shape=(5, 40), bits=8, scheme="absmax", axis=0)
    x = np.where(np.arange(40) % 2 == 0, -1.0, 1.0).astype(F32)[None].repeat(3, 0)
    x[1] = -1.0
    check_linear(x, qw)


@pytest.mark.parametrize("bits", [7, 8])
def test_linear_empty_dims(isa, bits):
    """N = 0 output channels and M = 0 tokens give empty results on both kernels and the reference."""
    L, R = lowbit.Linear(np.ones((0, 5), F32), bits=bits), ref.Linear(np.ones((0, 5), F32), bits=bits)
    for x in (np.ones((2, 5), F32), np.ones((0, 5), F32), np.ones((3, 2, 5), F32)):
        y = L(x)
        assert y.shape == x.shape[:-1] + (0,)
        np.testing.assert_array_equal(y, R(x))
    L = lowbit.Linear(np.ones((4, 5), F32), bits=bits)
    assert L(np.ones((0, 5), F32)).shape == (0, 4)


def test_linear_bad_input(rng):
    w = rng.standard_normal((4, 8)).astype(F32)
    qw = lowbit.quantize(w, 8, axis=0)
    x = np.ones((2, 8), F32)
    with pytest.raises(ValueError, match="K=8"):
        lowbit.linear(np.ones((2, 9), F32), qw)
    with pytest.raises(TypeError, match="QTensor"):
        lowbit.linear(x, w)
    with pytest.raises(ValueError, match="per-group"):
        lowbit.linear(x, lowbit.quantize(w, 8, group_size=4))
    with pytest.raises(ValueError, match="axis 1"):
        lowbit.linear(x, lowbit.quantize(w, 8, axis=1))
    with pytest.raises(ValueError, match="int8"):
        lowbit.linear(x, lowbit.quantize(w, 8, scheme="minmax", axis=0))
    with pytest.raises(ValueError, match="scheme"):
        lowbit.linear(x, lowbit.quantize_activations(w))
    with pytest.raises(ValueError, match="2-D"):
        lowbit.Linear(np.ones(8, F32))
    with pytest.raises(ValueError, match="bias"):
        lowbit.linear(x, qw, np.ones(5, F32))
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.linear(x, qw, np.array([1, np.nan, 0, 0], F32))
    bad = x.copy()
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 3\)"):
        lowbit.linear(bad, qw)
    with pytest.raises(TypeError):
        lowbit.linear(x.astype(np.int32), qw)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(M=st.integers(1, 9), N=st.integers(1, 40), K=st.integers(1, 70), seed=st.integers(0, 2 ** 32 - 1),
       unsigned=st.booleans(), zps=st.tuples(st.integers(-128, 127), st.integers(-128, 127)),
       extreme=st.booleans())
def test_matmul_property(M, N, K, seed, unsigned, zps, extreme):
    r = np.random.default_rng(seed)
    if unsigned:
        a = r.choice(np.array([0, 255], np.uint8), (M, K)) if extreme else r.integers(0, 256, (M, K), dtype=np.uint8)
        za = min(255, abs(zps[0]) * 2)
    else:
        a = r.choice(np.array([-128, 127], I8), (M, K)) if extreme else r.integers(-128, 128, (M, K), dtype=I8)
        za = zps[0]
    b = r.choice(np.array([-128, 127], I8), (N, K)) if extreme else r.integers(-128, 128, (N, K), dtype=I8)
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            check(a, b, za, zps[1])


# ---- static int8 path (calibrated activation scale, int32 bias) -------------

@pytest.mark.parametrize("zp", [0, 1], ids=["symmetric", "asymmetric"])
def test_static_linear_matches_reference_and_float(isa, zp):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((33, 70)).astype(np.float32)
    x = rng.standard_normal((5, 70)).astype(np.float32)
    bias = rng.standard_normal(33).astype(np.float32)
    qw = lowbit.quantize(w, axis=0)
    obs = lowbit.Observer("minmax", symmetric=(zp == 0))
    obs.update(x)
    scale, obs_zp = obs.qparams()
    s = float(np.asarray(scale).reshape(-1)[0])
    zp = int(np.asarray(obs_zp).reshape(-1)[0])  # 0 for the symmetric observer
    y = lowbit.linear(x, qw, bias, activation_scale=s, activation_zero_point=zp)
    y_ref = lowbit.reference.linear(x, qw, bias, activation_scale=s, activation_zero_point=zp)
    np.testing.assert_array_equal(y, y_ref)
    # the int32 bias is added to exact accumulators: compare with float math on the codes
    qb = lowbit.quantize_bias(bias, qw.scale.reshape(-1), s)
    qmin, qmax = (-128, 127) if zp == 0 else (0, 255)
    qx = np.clip(np.rint(x * (np.float32(1) / np.float32(s))) + zp, qmin, qmax).astype(np.int64) - zp
    acc = qx @ qw.codes.astype(np.int64).T + qb
    expected = (np.float32(s) * qw.scale.reshape(-1))[None, :] * acc.astype(np.float32)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    dense = x @ w.T + bias
    assert np.abs(y - dense).max() < 0.05 * np.abs(dense).max()


def test_static_linear_bad_arguments():
    qw = lowbit.quantize(np.ones((4, 8), np.float32), axis=0)
    x = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.linear(x, qw, activation_scale=0.0)
    with pytest.raises(ValueError, match="activation_zero_point"):
        lowbit.linear(x, qw, activation_scale=0.1, activation_zero_point=300)
    with pytest.raises(ValueError, match="activation_zero_point needs"):
        lowbit.linear(x, qw, activation_zero_point=3)
    with pytest.raises(TypeError, match="activation_scale"):
        lowbit.linear(x, qw, activation_scale="big")
    with pytest.raises(ValueError, match="shape"):
        lowbit.linear(np.ones((2, 9), np.float32), qw, activation_scale=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.linear(np.full((2, 8), np.nan, np.float32), qw, activation_scale=0.1)


# ---- the u7 kernel: weight codes in [-64, 63] (7-bit weights) --------------------

def u7_codes(rng, N, K):
    return rng.integers(-64, 64, (N, K), dtype=I8)


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 7, 8, 127, 1000])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 6, 7, 8, 13, 17])
def test_u7_matmul_shapes(isa, rng, M, K):
    for N in [1, 15, 16, 17, 33]:
        a = rng.integers(-128, 128, (M, K), dtype=I8)
        check(a, u7_codes(rng, N, K))


@pytest.mark.parametrize("K", [1, 3, 4, 64, 1001, 40000])
def test_u7_saturation_traps(isa, K):
    """u = w + 64 reaches 127 and 0; vpmaddubsw pair sums reach 127 * -128 * 2 = -32512, the
    widest for the u7 layout; the correction -64 * rowsum is exact in wrapping int32."""
    lo, hi = np.full((4, K), -128, I8), np.full((3, K), 127, I8)
    wmax, wmin = np.full((3, K), 63, I8), np.full((2, K), -64, I8)
    alt = np.where(np.arange(K) % 2 == 0, 63, -64).astype(I8)[None]
    for a in (lo, hi, np.concatenate([lo[:1], hi[:1]])):
        for b in (wmax, wmin, alt, np.concatenate([wmax, wmin, alt])):
            check(a, b)
    assert (check(lo, wmax) == -128 * 63 * K).all() and (check(lo, wmin) == 8192 * K).all()


def test_u7_big_dims(isa, rng):
    check(rng.integers(-128, 128, (4097, 33), dtype=I8), u7_codes(rng, 3, 33))
    check(rng.integers(-128, 128, (3, 4099), dtype=I8), u7_codes(rng, 4097, 4099)[:70])
    check(rng.integers(-128, 128, (130, 257), dtype=I8), u7_codes(rng, 70, 257))


def test_u7_only_when_it_applies(isa, rng):
    """uint8 activations, zero points or a code outside [-64, 63] take the int16 kernel: still exact."""
    b = u7_codes(rng, 5, 40)
    b_out = b.copy()
    b_out[2, 7] = 64
    check(rng.integers(0, 256, (3, 40), dtype=np.uint8), b)
    check(rng.integers(-128, 128, (3, 40), dtype=I8), b, za=3)
    check(rng.integers(-128, 128, (3, 40), dtype=I8), b, zb=-2)
    check(rng.integers(-128, 128, (3, 40), dtype=I8), b_out)


@pytest.mark.parametrize("K", [1, 2, 3, 5, 33, 256, 1001])
@pytest.mark.parametrize("M", [1, 2, 5, 6, 7, 8, 17])
def test_u7_linear(isa, rng, M, K):
    for N in [1, 16, 17, 40]:
        w = rng.standard_normal((N, K)).astype(F32)
        x = rng.standard_normal((M, K)).astype(F32)
        qw = lowbit.quantize(w, 7, axis=0)
        assert lowbit.Linear(qw).fast
        check_linear(x, qw, rng.standard_normal(N).astype(F32))
        check_linear(x, lowbit.quantize(w, 7))


def test_linear_bits_option(rng):
    w = rng.standard_normal((24, 50)).astype(F32)
    x = rng.standard_normal((4, 50)).astype(F32)
    L7, L8 = lowbit.Linear(w, bits=7), lowbit.Linear(w)
    assert L7.fast and not L8.fast
    assert np.abs(L7.qweight.unpacked_codes()).max() == 63
    assert L7.layout in repr(L7) and L8.layout in repr(L8)
    with lowbit.use_kernel("int8", "avx2") if "avx2" in lowbit.kernel_variants("int8", runnable=True) \
            else lowbit.use_kernel("int8", "scalar"):
        assert (L7.layout, L8.layout) == ("u7x4.n16", "i16x2.n16")  # two kernels on AVX2 and scalar
    np.testing.assert_array_equal(L7(x), ref.Linear(w, bits=7)(x))
    # 7-bit weights: close to the float result, a little less close than 8-bit ones
    yf = x @ w.T
    e7, e8 = rel_err(L7(x), yf), rel_err(L8(x), yf)
    assert e8 < e7 < 0.05
    # an 8-bit QTensor whose codes happen to fit [-64, 63] runs on the u7 kernel too
    q8 = lowbit.quantize(w, 8, axis=0)
    small = lowbit.QTensor(codes=q8.unpacked_codes() // 2, scale=q8.scale, zero_point=q8.zero_point,
                           shape=q8.shape, bits=8, scheme="absmax", axis=0)
    assert lowbit.Linear(small).fast
    check_linear(x, small)
    for bad in (6, 9, True, "7"):
        with pytest.raises(ValueError, match="bits must be 7 or 8"):
            lowbit.Linear(w, bits=bad)


def test_packed_layout_checks(isa, rng):
    """Packing follows the active variant's declared layouts; a layout it does not read, a
    wrong size, dtype or code range is refused with a ValueError."""
    from lowbit import _C
    lay = _C.int8_layouts()
    assert lay["variant"] == lowbit.get_kernel("int8")  # isa, or the default if int8 has no such variant
    b = u7_codes(rng, 5, 9)
    for kind in ("wide", "narrow"):
        L = lay[kind]
        packed = _C.int8_pack_weights(b.reshape(-1), 5, 9, L["name"])
        nr, kg = L["nr"], L["kgroup"]
        assert packed.dtype == np.uint8 and packed.size == _C.int8_packed_bytes(L["name"], 5, 9) \
            == nr * -(-9 // kg) * kg
        # the documented layout (csrc/int8/int8.h): panel of nr channels, groups of kgroup inputs
        Kg = -(-9 // kg) * kg
        expect = np.full((nr, Kg), L["woffset"], np.int64)
        expect[:5, :9] += b
        expect = expect.reshape(nr, Kg // kg, kg).transpose(1, 0, 2).reshape(-1).astype(np.uint8)
        np.testing.assert_array_equal(packed, expect)
    narrow = lay["narrow"]
    if narrow["wmin"] > -128:
        bad = b.copy()
        bad[0, 0] = narrow["wmin"] - 1
        with pytest.raises(ValueError, match="outside the range"):
            _C.int8_pack_weights(bad.reshape(-1), 5, 9, narrow["name"])
    with pytest.raises(ValueError, match="layout"):
        _C.int8_pack_weights(b.reshape(-1), 5, 9, "no-such-layout")
    packed = _C.int8_pack_weights(b.reshape(-1), 5, 9, lay["wide"]["name"])
    x = np.ones(2 * 9, F32)
    sb = np.ones(1, F32)
    name = lay["wide"]["name"]
    with pytest.raises(ValueError, match="packed"):
        _C.int8_linear(x, 2, 9, packed[:-1], name, 5, sb, False, None, True, False)
    with pytest.raises(ValueError, match="packed"):
        _C.int8_linear(x, 2, 9, packed.view(np.int8), name, 5, sb, False, None, True, False)
    with pytest.raises(ValueError, match="repack"):
        _C.int8_linear(x, 2, 9, packed, "no-such-layout", 5, sb, False, None, True, False)


# ---- every variant's layout: sizes around its panel width, tile height and K grouping -------

def active_layouts():
    from lowbit import _C
    lay = _C.int8_layouts()
    return lay["wide"], lay["narrow"]


def test_layout_edges(isa, rng):
    """M around the tile height and the 96-row block, N around the panel width, K around the
    input grouping: 8-bit and 7-bit weights, int8 and uint8 activations, zero points."""
    wide, narrow = active_layouts()
    nr, mr, kg = wide["nr"], wide["mr"], wide["kgroup"]
    Ms = sorted({1, 2, mr - 1, mr, mr + 1, 2 * mr + 1, 95, 97})
    Ns = sorted({1, nr - 1, nr, nr + 1, 2 * nr + 3})
    Ks = sorted({1, kg - 1, kg, kg + 1, 4 * kg + 3, 67})
    for M in Ms:
        for N in Ns:
            for K in Ks:
                if K < 1:
                    continue
                a = rng.integers(-128, 128, (M, K), dtype=I8)
                check(a, rng.integers(-128, 128, (N, K), dtype=I8))
                check(a, u7_codes(rng, N, K))
        K = 4 * kg + 3
        au = rng.integers(0, 256, (M, K), dtype=np.uint8)
        check(au, rng.integers(-128, 128, (nr + 1, K), dtype=I8), 131, -7)
        check(a[:, :1], rng.integers(-128, 128, (nr + 1, 1), dtype=I8), -128, 127)


def test_layout_extremes_and_k_limit(isa):
    """-128 x -128 and 127 x -128 on every lane and the largest K for which they fit int32, at
    sizes that cut the panel and the input grouping."""
    wide, _ = active_layouts()
    nr = wide["nr"]
    for K in (3, 4 * wide["kgroup"] + 1, 131071):
        lo = np.full((3, K), -128, I8)
        got = check(lo, np.full((nr + 3, K), -128, I8))
        assert (got == 16384 * K).all()
        assert (check(np.full((2, K), 127, I8), np.full((nr - 1, K), -128, I8)) == -127 * 128 * K).all()
        if 255 * 128 * K < 2 ** 31:
            assert (check(np.full((2, K), 255, np.uint8), np.full((1, K), -128, I8)) == -255 * 128 * K).all()
    # uint8 activations with zero points at the ends: (0 - 255) * (-128 - 127) * K fits for K <= 33025
    K = 33025
    got = check(np.zeros((1, K), np.uint8), np.full((nr + 1, K), -128, I8), 255, 127)
    assert (got == 255 * 255 * K).all()


def test_linear_repacks_for_another_variant(rng):
    """A Linear packed once keeps working when another int8 variant is forced: it repacks for
    that variant's layout (and the result is the same bits); the raw packed bytes are refused
    by a variant that reads another layout."""
    from lowbit import _C
    variants = lowbit.kernel_variants("int8", runnable=True)
    w = rng.standard_normal((70, 45)).astype(F32)
    x = rng.standard_normal((13, 45)).astype(F32)
    for bits in (7, 8):
        L = lowbit.Linear(w, bits=bits)
        want = ref.Linear(w, bits=bits)(x)
        first = L.layout
        for v in variants + variants[::-1]:
            with lowbit.use_kernel("int8", v):
                np.testing.assert_array_equal(L(x), want)
                assert L.layout == _C.int8_pick_layout(*L._range)
        packed = _C.int8_pack_weights(L.qweight.unpacked_codes().reshape(-1), 70, 45, first)
        for v in variants:
            with lowbit.use_kernel("int8", v):
                lay = _C.int8_layouts()
                if first in (lay["wide"]["name"], lay["narrow"]["name"]):
                    continue
                with pytest.raises(ValueError, match=f"'{first}'.*active int8 variant.*repack"):
                    _C.int8_linear(x.reshape(-1), 13, 45, packed, first, 70, np.ones(1, F32), False, None, True,
                                   False)


# ---- one bias rule for every layer (lowbit._args.check_bias) -------------------

def test_bias_rule_is_the_same_for_every_layer(rng):
    """A bias holds float values: float16/32/64 and array-likes are taken; integer arrays
    (e.g. an int32 bias from quantize_bias, which as floats would be off by the bias scale),
    wrong shapes and NaN are refused alike by lowbit.Linear, lowbit.linear, BitLinear,
    ternary_matmul and their references."""
    w = rng.standard_normal((6, 16)).astype(F32)
    x = rng.standard_normal((3, 16)).astype(F32)
    qw = lowbit.quantize(w, 8, axis=0)
    tw = lowbit.TernaryWeight.from_float(w)
    layers = [lambda b: lowbit.Linear(w, b)(x), lambda b: lowbit.linear(x, qw, b),
              lambda b: lowbit.reference.linear(x, qw, b), lambda b: lowbit.reference.Linear(w, b)(x),
              lambda b: lowbit.BitLinear(tw, b)(x), lambda b: lowbit.ternary_matmul(x, tw, bias=b),
              lambda b: lowbit.reference.ternary_matmul(x, tw, bias=b)]
    good = rng.standard_normal(6)
    for run in layers:
        y = run(good.astype(np.float16))
        np.testing.assert_array_equal(run(good.astype(np.float16).tolist()), y)
        with pytest.raises(TypeError, match="bias: expected floating-point data"):
            run(np.arange(6, dtype=np.int32))
        with pytest.raises(ValueError, match=r"bias: expected shape \(6,\)"):
            run(good[:5])
        with pytest.raises(ValueError, match="bias contains 1 non-finite"):
            run(np.where(np.arange(6) == 2, np.nan, good))
