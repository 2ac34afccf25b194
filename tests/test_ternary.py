"""Packed ternary / binary matmul (SPEC 5, 7): exact int32 accumulators against NumPy
int64 on every ISA path, float results against lowbit.reference, layouts, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowbit
from lowbit import reference as ref

KERNEL_FAMILIES = ("ternary", "act")  # the `isa` fixture runs each of their variants

F32 = np.float32
KINDS = {2: (lowbit.TernaryWeight, lowbit.ternary_matmul, lowbit.ternary_matmul_s32,
             ref.ternary_matmul, ref.ternary_matmul_s32),
         1: (lowbit.BinaryWeight, lowbit.binary_matmul, lowbit.binary_matmul_s32,
             ref.binary_matmul, ref.binary_matmul_s32)}


def random_codes(rng, N, K, bits):
    if bits == 2:
        return rng.integers(-1, 2, (N, K)).astype(np.int8)
    return (2 * rng.integers(0, 2, (N, K)) - 1).astype(np.int8)


def int64_matmul(q, codes):
    return q.astype(np.int64) @ codes.astype(np.int64).T


def check_s32(rng, M, N, K, bits, fill=None, codes=None):
    W, _, mm32, _, rmm32 = KINDS[bits]
    c = random_codes(rng, N, K, bits) if codes is None else codes
    w = W.from_codes(c, 1.0)
    if fill is None:
        q = rng.integers(-128, 128, (M, K)).astype(np.int8)
    else:
        q = np.full((M, K), fill, np.int8)
    acc = mm32(q, w)
    assert acc.dtype == np.int32 and acc.shape == (M, N)
    np.testing.assert_array_equal(acc, int64_matmul(q, c))
    np.testing.assert_array_equal(rmm32(q, w), acc)
    return acc


# ---- exact int32 accumulators --------------------------------------------------

@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("K", [1, 7, 31, 32, 33, 127, 128, 129, 255, 256, 257, 300, 1000])
@pytest.mark.parametrize("M,N", [(1, 1), (1, 17), (2, 3), (3, 2), (17, 17), (5, 9)])
def test_s32_exact_sizes(isa, rng, bits, M, N, K):
    check_s32(rng, M, N, K, bits)


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("fill", [-128, 127])
@pytest.mark.parametrize("K", [64, 2047, 2048, 2049, 4096 + 129, 9000])
def test_s32_saturation_traps(isa, rng, bits, fill, K):
    """Extreme activations everywhere against all-equal codes: the 16-bit partial sums
    reach their widest (64 products of -512 or 508 before widening)."""
    for code in ([-1, 1] if bits == 1 else [-1, 0, 1]):
        c = np.full((3, K), code, np.int8)
        acc = check_s32(rng, 5, 3, K, bits, fill=fill, codes=c)
        assert acc[0, 0] == fill * code * K
    check_s32(rng, 6, 4, K, bits, fill=fill)


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("M,N,K", [(4097, 3, 33), (2, 4097, 129), (3, 5, 4097)])
def test_s32_large_dims(isa, rng, bits, M, N, K):
    check_s32(rng, M, N, K, bits)


@settings(max_examples=30, deadline=None)
@given(M=st.integers(1, 9), N=st.integers(1, 19), K=st.integers(1, 700), bits=st.sampled_from([1, 2]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_s32_hypothesis(M, N, K, bits, seed):
    rng = np.random.default_rng(seed)
    for isa in lowbit.available_isas():
        with lowbit.use_isa(isa):
            check_s32(rng, M, N, K, bits)


@pytest.mark.parametrize("M", [7, 40])  # register tiles; decoded panels
def test_threads_agree(rng, M):
    c = random_codes(rng, 301, 1000, 2)
    w = lowbit.TernaryWeight.from_codes(c, 0.5)
    x = rng.standard_normal((M, 1000)).astype(F32)
    before = lowbit.get_num_threads()
    try:
        lowbit.set_num_threads(1)
        a = lowbit.ternary_matmul(x, w)
        lowbit.set_num_threads(2)
        b = lowbit.ternary_matmul(x, w)
    finally:
        lowbit.set_num_threads(before)
    np.testing.assert_array_equal(a, b)


# ---- float results ---------------------------------------------------------------

def assert_close_spec7(y, yr):
    assert y.dtype == np.float32 and y.shape == yr.shape
    tol = 1e-6 * float(np.abs(yr).max(initial=0.0))
    np.testing.assert_allclose(y, yr, rtol=0, atol=tol)


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("axis", [None, 0])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (1, 64, 4096), (3, 17, 300), (17, 2, 129), (8, 33, 1000),
                                   (25, 77, 300)])
def test_float_matches_reference(isa, rng, bits, axis, M, N, K):
    W, mm, _, rmm, _ = KINDS[bits]
    w = W.from_float(rng.standard_normal((N, K)).astype(F32), axis=axis)
    assert w.axis == (0 if axis == 0 and N > 1 else None)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.01, 10, (M, 1))).astype(F32)
    assert_close_spec7(mm(x, w), rmm(x, w))
    bias = rng.standard_normal(N).astype(F32)
    assert_close_spec7(mm(x, w, bias=bias), rmm(x, w, bias=bias))


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("axis", [None, 0])
@pytest.mark.parametrize("M,N,K", [(5, 70, 384), (6, 70, 384), (20, 33, 1536), (37, 64, 4500), (608, 40, 384)])
def test_float_bit_exact_every_path(isa, rng, bits, axis, M, N, K):
    """Float results equal the reference's bit for bit (float32(acc) * (g_w / s_x), then
    + bias) on the register tiles and on the decoded panels, whose AVX-512 VNNI variant
    writes the floats straight from its tile: per-tensor and per-channel scales, with and
    without bias, channels past a 32-row panel masked (70 = 32 + 32 + 6, 33, 40), K in one
    chunk or several (4500: two of 4096 values on AVX-512 VNNI, three of 2048 on AVX2),
    row tiles 12 x 50 + 8 (608)."""
    W, mm, _, rmm, _ = KINDS[bits]
    w = W.from_float(rng.standard_normal((N, K)).astype(F32), axis=axis)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.01, 10, (M, 1))).astype(F32)
    for bias in (None, rng.standard_normal(N).astype(F32)):
        y, yr = mm(x, w, bias=bias), rmm(x, w, bias=bias)
        assert y.dtype == yr.dtype == np.float32
        np.testing.assert_array_equal(y.view(np.uint32), yr.view(np.uint32))


def test_float_formula_known_values(isa):
    """y = acc * (g_w / s_x) with s_x = 127 / max|x_row| (SPEC 5, 7), on hand-checked numbers."""
    codes = np.array([[1, 0, -1, 1], [-1, -1, 0, 1]], np.int8)
    w = lowbit.TernaryWeight.from_codes(codes, np.array([0.5, 2.0], F32))
    x = np.array([[1.0, 2.0, -0.5, 0.25], [0.0, 0.0, 0.0, 0.0]], F32)
    s = F32(127) / F32(2.0)
    q = np.clip(np.rint(x[0] * s), -128, 127)            # [64, 127, -32, 16]
    np.testing.assert_array_equal(q, [64, 127, -32, 16])
    acc = np.array([64 + 32 + 16, -64 - 127 + 16])
    want = acc.astype(F32) * (np.array([0.5, 2.0], F32) / s)
    y = lowbit.ternary_matmul(x, w)
    np.testing.assert_array_equal(y[0], want.astype(F32))
    np.testing.assert_array_equal(y[1], [0.0, 0.0])    # an all-zero token gives exact zeros


def test_extreme_activations_float(isa, rng):
    K = 5000
    c = random_codes(rng, 9, K, 2)
    w = lowbit.TernaryWeight.from_codes(c, 1.0)
    x = np.full((2, K), -3.0, F32)
    x[1, ::2] = 3.0
    assert_close_spec7(lowbit.ternary_matmul(x, w), ref.ternary_matmul(x, w))


def test_batch_shapes_and_noncontiguous(isa, rng):
    w = lowbit.TernaryWeight.from_float(rng.standard_normal((11, 70)).astype(F32))
    x = rng.standard_normal((2, 3, 70)).astype(F32)
    y = lowbit.ternary_matmul(x, w)
    assert y.shape == (2, 3, 11)
    assert_close_spec7(y, ref.ternary_matmul(x, w))
    assert lowbit.ternary_matmul(x[0, 0], w).shape == (11,)
    xs = rng.standard_normal((5, 140)).astype(F32)[:, ::2]     # strided view
    assert_close_spec7(lowbit.ternary_matmul(xs, w), ref.ternary_matmul(np.ascontiguousarray(xs), w))
    x64 = rng.standard_normal((4, 70))
    assert_close_spec7(lowbit.ternary_matmul(x64, w), ref.ternary_matmul(x64.astype(F32), w))
    q = rng.integers(-128, 128, (2, 2, 70)).astype(np.int8)
    assert lowbit.ternary_matmul_s32(q, w).shape == (2, 2, 11)


def test_out_argument(rng):
    w = lowbit.TernaryWeight.from_float(rng.standard_normal((6, 40)).astype(F32))
    x = rng.standard_normal((3, 40)).astype(F32)
    out = np.empty((3, 6), F32)
    assert lowbit.ternary_matmul(x, w, out=out) is out
    np.testing.assert_array_equal(out, lowbit.ternary_matmul(x, w))
    with pytest.raises(ValueError, match="out"):
        lowbit.ternary_matmul(x, w, out=np.empty((3, 5), F32))


def test_bitlinear(rng):
    wf = rng.standard_normal((13, 90)).astype(F32)
    bias = rng.standard_normal(13).astype(F32)
    layer = lowbit.BitLinear.from_float(wf, bias)
    x = rng.standard_normal((4, 90)).astype(F32)
    tw = lowbit.TernaryWeight.from_float(wf)
    np.testing.assert_array_equal(layer(x), lowbit.ternary_matmul(x, tw, bias=bias))
    assert (layer.in_features, layer.out_features) == (90, 13)
    blayer = lowbit.BitLinear.from_float(wf, binary=True, axis=0)
    bw = lowbit.BinaryWeight.from_float(wf, axis=0)
    np.testing.assert_array_equal(blayer(x), lowbit.binary_matmul(x, bw))
    with pytest.raises(TypeError):
        lowbit.BitLinear(wf)
    with pytest.raises(ValueError, match="bias"):
        lowbit.BitLinear(tw, bias[:3])


def test_torch_tensor_input(rng):
    torch = pytest.importorskip("torch")
    wf = rng.standard_normal((8, 64)).astype(F32)
    layer = lowbit.BitLinear.from_float(wf)
    xt = torch.randn(3, 64)
    np.testing.assert_array_equal(layer(xt), layer(xt.numpy()))


# ---- layouts and serialization -------------------------------------------------

@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("K", [1, 5, 128, 300])
def test_pack_matches_reference_and_roundtrips(rng, bits, K):
    W = KINDS[bits][0]
    c = random_codes(rng, 7, K, bits)
    w = W.from_codes(c, np.arange(1, 8, dtype=F32))
    np.testing.assert_array_equal(w.packed, ref.tl_pack(c, bits))
    np.testing.assert_array_equal(w.codes(), c)
    np.testing.assert_array_equal(ref.tl_unpack(w.packed, K, bits), c)
    np.testing.assert_array_equal(w.dequantize(), c * np.arange(1, 8, dtype=F32)[:, None])
    for layout in W._canonical:
        p = w.to_packed(layout)
        if layout == "1bit":
            np.testing.assert_array_equal(p, lowbit.pack(c, 1))
        else:
            np.testing.assert_array_equal(p, lowbit.pack_ternary(c, layout))
        w2 = W.from_packed(p, (7, K), w.scale, layout)
        np.testing.assert_array_equal(w2.packed, w.packed)
    for layout in ("kernel",) + W._canonical:
        w3 = W.from_dict(w.to_dict(layout))
        np.testing.assert_array_equal(w3.packed, w.packed)
        np.testing.assert_array_equal(w3.scale, w.scale)
    qt = w.to_qtensor()
    np.testing.assert_array_equal(qt.dequantize(), w.dequantize())
    np.testing.assert_array_equal(W.from_qtensor(qt).packed, w.packed)


def test_from_float_uses_ternarize(rng):
    wf = rng.standard_normal((9, 50)).astype(F32)
    for method in ("absmean", "twn", "threshold"):
        for axis in (None, 0):
            qt = lowbit.ternarize(wf, method, axis=axis)
            tw = lowbit.TernaryWeight.from_float(wf, method, axis=axis)
            np.testing.assert_array_equal(tw.codes(), qt.codes)
            np.testing.assert_array_equal(tw.scale.reshape(-1), qt.scale.reshape(-1))
    bw = lowbit.BinaryWeight.from_float(wf, "bitnet")
    np.testing.assert_array_equal(bw.codes(), lowbit.binarize(wf, "bitnet").codes)


def test_from_dict_rejects_bad_records(rng):
    w = lowbit.TernaryWeight.from_codes(random_codes(rng, 3, 10, 2), 1.0)
    d = w.to_dict()
    bad = dict(d, packed=d["packed"].copy())
    bad["packed"][0, 0] |= 3                             # field value 3: not a ternary code
    with pytest.raises(ValueError, match="invalid codes"):
        lowbit.TernaryWeight.from_dict(bad)
    pad = dict(d, packed=d["packed"].copy())
    pad["packed"][0, 20] = 1                             # k = 20 >= K: padding must stay zero
    with pytest.raises(ValueError, match="padding"):
        lowbit.TernaryWeight.from_dict(pad)
    with pytest.raises(ValueError, match="shape"):
        lowbit.TernaryWeight.from_dict(dict(d, packed=d["packed"][:, :16]))
    with pytest.raises(ValueError, match="qmeta"):
        lowbit.TernaryWeight.from_dict(dict(d, qmeta=np.frombuffer(b"{oops", np.uint8)))
    with pytest.raises(ValueError, match="TernaryWeight"):
        lowbit.BinaryWeight.from_dict(d)
    with pytest.raises(ValueError, match="missing"):
        lowbit.TernaryWeight.from_dict({"packed": d["packed"]})


# ---- bad and empty input ---------------------------------------------------------

def test_bad_codes_and_scales():
    with pytest.raises(ValueError, match=r"outside the ternary codes \{-1, 0, \+1\}.*\(1, 2\): 2"):
        lowbit.TernaryWeight.from_codes(np.array([[0, 1, 1], [1, 0, 2]]), 1.0)
    with pytest.raises(ValueError, match=r"outside the binary codes \{-1, \+1\}"):
        lowbit.BinaryWeight.from_codes(np.array([[0, 1]]), 1.0)
    with pytest.raises(TypeError, match="integer"):
        lowbit.TernaryWeight.from_codes(np.zeros((2, 2), F32), 1.0)
    with pytest.raises(ValueError, match="2-d"):
        lowbit.TernaryWeight.from_codes(np.zeros(4, np.int8), 1.0)
    with pytest.raises(ValueError, match="scale"):
        lowbit.TernaryWeight.from_codes(np.zeros((3, 4), np.int8), np.ones(2, F32))
    with pytest.raises(ValueError, match="NaN"):
        lowbit.TernaryWeight.from_codes(np.zeros((3, 4), np.int8), np.nan)
    with pytest.raises(ValueError, match="axis"):
        lowbit.TernaryWeight.from_float(np.ones((3, 4), F32), axis=1)
    with pytest.raises(ValueError, match="2-d"):
        lowbit.TernaryWeight.from_float(np.ones(4, F32))
    with pytest.raises(ValueError):
        lowbit.TernaryWeight.from_float(np.ones((3, 4), F32), "nope")


def test_bad_activations(rng):
    w = lowbit.TernaryWeight.from_codes(random_codes(rng, 4, 8, 2), 1.0)
    b = lowbit.BinaryWeight.from_codes(random_codes(rng, 4, 8, 1), 1.0)
    with pytest.raises(ValueError, match="K = 8"):
        lowbit.ternary_matmul(np.ones((2, 9), F32), w)
    with pytest.raises(ValueError, match="K = 8"):
        lowbit.ternary_matmul_s32(np.ones((2, 9), np.int8), w)
    with pytest.raises(TypeError, match="int8"):
        lowbit.ternary_matmul_s32(np.ones((2, 8), np.int16), w)
    with pytest.raises(TypeError, match="floating"):
        lowbit.ternary_matmul(np.ones((2, 8), np.int32), w)
    with pytest.raises(TypeError, match="TernaryWeight"):
        lowbit.ternary_matmul(np.ones((2, 8), F32), b)
    with pytest.raises(TypeError, match="BinaryWeight"):
        lowbit.binary_matmul_s32(np.ones((2, 8), np.int8), w)
    with pytest.raises(ValueError, match="0-d"):
        lowbit.ternary_matmul(np.float32(1.0), w)
    x = np.ones((3, 8), F32)
    x[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\(2, 5\)"):
        lowbit.ternary_matmul(x, w)
    x[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.binary_matmul(x, b)


def test_empty(isa, rng):
    w = lowbit.TernaryWeight.from_codes(random_codes(rng, 4, 8, 2), 2.0)
    assert lowbit.ternary_matmul(np.zeros((0, 8), F32), w).shape == (0, 4)
    assert lowbit.ternary_matmul_s32(np.zeros((0, 8), np.int8), w).shape == (0, 4)
    w0 = lowbit.TernaryWeight.from_codes(np.zeros((0, 8), np.int8), 1.0)
    assert lowbit.ternary_matmul(np.ones((3, 8), F32), w0).shape == (3, 0)
    wk = lowbit.TernaryWeight.from_codes(np.zeros((4, 0), np.int8), 1.0)
    np.testing.assert_array_equal(lowbit.ternary_matmul_s32(np.zeros((2, 0), np.int8), wk), np.zeros((2, 4)))
    bias = np.arange(4, dtype=F32)
    y = lowbit.ternary_matmul(np.zeros((2, 0), F32), wk, bias=bias)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, (2, 4)))
    np.testing.assert_array_equal(ref.ternary_matmul(np.zeros((2, 0), F32), wk, bias=bias), y)


def test_row_bytes_match_native():
    from lowbit import _C
    from lowbit.ternary import tl_row_bytes
    for K in (0, 1, 127, 128, 129, 255, 256, 257, 4097):
        for bits in (1, 2):
            assert tl_row_bytes(K, bits) == _C.tl_row_bytes(K, bits)


def test_k_limit():
    K = (1 << 22) + 1
    w = lowbit.TernaryWeight.from_codes(np.zeros((1, K), np.int8), 1.0)
    with pytest.raises(ValueError, match="limit for exact int32"):
        lowbit.ternary_matmul_s32(np.zeros((1, K), np.int8), w)


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("M", list(range(1, 31)))
def test_s32_every_row_tiling(isa, rng, bits, M):
    """Every split of M into the register tiles (1 x 4, 2..6 rows x 1, M < 14) and the
    large-M path's 6- and 4-row tiles and their remainders; K = 4500 spans several of the
    large-M path's 2048-value chunks and, for 6 rows, two K chunks of the register tiles."""
    check_s32(rng, M, 11, 1100, bits)
    check_s32(rng, M, 5, 4500, bits)
    check_s32(rng, M, 3, 300, bits, fill=-128)
    check_s32(rng, M, 45, 260, bits)  # the large-M path's 16-channel tiles: 16 + 16 + 13


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("M", [2, 3, 4, 6, 7, 13])
def test_s32_register_tiles_long_k(isa, rng, bits, M):
    """Rows too long to stay in L1 are cut into chunks of K (partial sums added in int32):
    random values, and the extremes (every code +1 against -128, -1 against 127)."""
    K = 20011
    check_s32(rng, M, 6, K, bits)
    check_s32(rng, M, 5, K, bits, fill=-128, codes=np.ones((5, K), np.int8))
    check_s32(rng, M, 5, K, bits, fill=127, codes=-np.ones((5, K), np.int8))


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("M", [2, 7, 13, 20])
def test_s32_strips_and_chunks(isa, rng, bits, M):
    """The driver hands the tiles strips of weight rows (hundreds of rows per register-tile
    call in the int32 path, 16 decoded rows per panel) over chunks of K: many strips, a
    remainder strip, several K chunks."""
    check_s32(rng, M, 1203, 9000, bits)


@pytest.mark.parametrize("bits", [2, 1])
def test_s32_max_k_extremes(isa, bits):
    """K at the exact-int32 limit (2^22) with every product at its extreme: the widest
    sums any tile keeps (the VNNI register tiles hold codes scaled by up to 64 in their
    int32 lanes over the whole row), against the closed form fill * code * K. M = 1 with
    12 outputs (the 1 x 8 and 1 x 4 tiles), 3 and 7 (MR x 4 and MR x 2 tiles) and 20
    (decoded panels) with 4."""
    K = 1 << 22
    W, _, mm32, _, _ = KINDS[bits]
    q = {fill: np.full((20, K), fill, np.int8) for fill in (-128, 127)}
    for code in (1, -1):  # the largest code (u = 2 or 1) and u = 0 (acc = -sum q)
        w12 = W.from_codes(np.full((12, K), code, np.int8), 1.0)
        w4 = W.from_codes(np.full((4, K), code, np.int8), 1.0)
        for M, w in ((1, w12), (3, w4), (7, w4), (20, w4)):
            for fill in (-128, 127):
                acc = mm32(q[fill][:M], w)
                assert acc.shape == (M, w.shape[0]) and (acc == fill * code * K).all(), (M, code, fill)


@pytest.mark.parametrize("bits", [2, 1])
@pytest.mark.parametrize("M,N", [(20, 31), (21, 33), (25, 63), (31, 65), (44, 100)])
def test_s32_decoded_panel_edges(isa, rng, bits, M, N):
    """Decoded-panel heights (16 rows on AVX2 and scalar, 32 on AVX-512 VNNI) and their
    remainders: panels cut in either half, one row past a panel, tiles of 12 + 8, 12 + 9,
    12 + 12 + 1, 12 + 12 + 7, 12 x 3 + 8 rows; K over two chunks with a short last one."""
    check_s32(rng, M, N, 2048 + 129, bits)
    check_s32(rng, M, N, 384, bits, fill=-128)


def test_constructor_checks_kernel_bytes(rng):
    w = lowbit.TernaryWeight.from_codes(random_codes(rng, 2, 130, 2), 1.0)
    again = lowbit.TernaryWeight(w.packed.copy(), w.scale, w.shape)
    np.testing.assert_array_equal(again.codes(), w.codes())
    bad = w.packed.copy()
    bad[1, 3] = 0xFF
    with pytest.raises(ValueError, match="invalid codes"):
        lowbit.TernaryWeight(bad, 1.0, w.shape)
    with pytest.raises(ValueError, match="expected shape"):
        lowbit.TernaryWeight(w.packed[:, :32], 1.0, w.shape)
