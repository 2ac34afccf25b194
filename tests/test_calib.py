"""Clipping and calibration (SPEC 4), observers, bias quantization: native vs the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import _args
from lowbit import reference as ref
from lowbit.reference import calibration as rc

from conftest import assert_qtensor_equal

KERNEL_FAMILIES = ("calib", "affine")  # the `isa` fixture runs each of their variants

F32 = np.float32
SIZES = [1, 7, 31, 33, 4097]
GRANULARITIES = [
    ((37, 29), {}),
    ((37, 29), dict(axis=0)),
    ((37, 29), dict(axis=1)),          # the "cols" layout
    ((3, 11, 5), dict(axis=1)),        # the "channels" layout
    ((4, 300), dict(group_size=128)),  # a short last group
]


def data(rng, shape, kind="t"):
    if kind == "t":  # heavy tails: clipping matters
        return (rng.standard_t(3, size=shape) * 0.7).astype(F32)
    return rng.standard_normal(shape).astype(F32)


def rel_tie(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-300


def check_against_reference(x, method, bits, scheme, clip_param=None, **kw):
    """The SPEC 4 rule: equal clips, or (mse/kl) clips whose reference objectives tie within 1e-6."""
    lo, hi = lowbit.calibrate(x, method, bits, scheme=scheme, clip_param=clip_param, **kw)
    rlo, rhi = ref.calibrate(x, method, bits, scheme=scheme, clip_param=clip_param, **kw)
    assert lo.shape == rlo.shape and lo.dtype == F32
    if method == "percentile":
        np.testing.assert_array_equal(lo, rlo)
        np.testing.assert_array_equal(hi, rhi)
        return lo, hi
    lay = _args.layout(x.shape, kw.get("axis"), kw.get("group_size"))[0]
    g = _args.grid(bits, scheme, None, False)
    groups = rc.group_values(x, lay)
    for k in np.flatnonzero((lo.reshape(-1) != rlo.reshape(-1)) | (hi.reshape(-1) != rhi.reshape(-1))):
        v = groups[k]
        if method == "mse":
            obj = rc.mse_objectives(v, scheme, g, clip_param or 100)
            clo, chi = rc._candidates(v.min(), v.max(), scheme, clip_param or 100)
            a = int(np.flatnonzero((clo == lo.reshape(-1)[k]) & (chi == hi.reshape(-1)[k]))[0])
            b = int(np.flatnonzero((clo == rlo.reshape(-1)[k]) & (chi == rhi.reshape(-1)[k]))[0])
        else:
            obj = rc.kl_divergences(rc.kl_histogram(v), bits)
            amax = float(np.abs(v).max())
            L = 1 << (bits - 1)
            cs = ((np.arange(L, 2049) + 0.5) * (amax / 2048)).astype(F32)
            a = int(np.flatnonzero(cs == hi.reshape(-1)[k])[0]) if scheme == "absmax" else None
            b = int(np.flatnonzero(cs == rhi.reshape(-1)[k])[0]) if scheme == "absmax" else None
            if a is None:  # asymmetric: the clip is min(range, c); compare through the symmetric choice
                sl, sh = lowbit.calibrate(v, "kl", bits)
                rl, rh = ref.calibrate(v, "kl", bits)
                a = int(np.flatnonzero(cs == sh.item())[0])
                b = int(np.flatnonzero(cs == rh.item())[0])
        assert rel_tie(obj[a], obj[b]), (method, k, a, b, obj[a], obj[b])
    return lo, hi


# ---- percentile --------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", [100.0, 99.99, 99.9, 95.0, 50.0, 37.3, 1e-3])
def test_percentile_is_numpy_percentile(isa, rng, n, p):
    x = data(rng, n)
    lo, hi = lowbit.calibrate(x, "percentile", clip_param=p)
    c = np.percentile(np.abs(x), p)  # method="linear" is NumPy's default
    assert hi.item() == F32(c) and lo.item() == -F32(c)
    lo, hi = lowbit.calibrate(x, "percentile", scheme="minmax", clip_param=p)
    assert lo.item() == F32(np.percentile(x, 100.0 - p)) and hi.item() == F32(np.percentile(x, p))


@pytest.mark.parametrize("kind", ["t", "dups", "tiny"])
def test_percentile_large_radix_select(isa, rng, kind):
    # >= 2^18 values per tensor take the parallel radix-select path
    n = 300_001
    x = {"t": data(rng, n), "dups": rng.integers(-3, 4, n).astype(F32) * F32(0.5),
         "tiny": (data(rng, n) * F32(1e-40)).astype(F32)}[kind]
    for p in (100.0, 99.999, 99.9, 50.0, 0.001, 1e-9):
        lo, hi = lowbit.calibrate(x, "percentile", clip_param=p)
        assert hi.item() == F32(np.percentile(np.abs(x), p))
        lo, hi = lowbit.calibrate(x, "percentile", scheme="minmax", clip_param=p)
        assert lo.item() == F32(np.percentile(x, 100.0 - p)) and hi.item() == F32(np.percentile(x, p))


@pytest.mark.parametrize("shape,kw", GRANULARITIES)
@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
def test_percentile_every_granularity(isa, rng, shape, kw, scheme):
    x = data(rng, shape)
    for p in (99.0, 90.0, 100):
        check_against_reference(x, "percentile", 8, scheme, clip_param=p, **kw)


def test_percentile_ties_and_duplicates(isa):
    x = np.array([1, 1, 1, 2, 2, 3, -3, 0, 0, 5], F32)
    for p in np.linspace(0.5, 100, 40):
        check_against_reference(x, "percentile", 8, "absmax", clip_param=float(p))
        check_against_reference(x, "percentile", 8, "minmax", clip_param=float(p))


# ---- mse ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,kw", GRANULARITIES)
@pytest.mark.parametrize("scheme", ["absmax", "minmax"])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_mse_matches_reference(isa, rng, shape, kw, scheme, bits):
    check_against_reference(data(rng, shape), "mse", bits, scheme, **kw)


@pytest.mark.parametrize("n", SIZES)
def test_mse_sizes_and_candidates(isa, rng, n):
    x = data(rng, n)
    for cands in (1, 7, 100, 333):
        check_against_reference(x, "mse", 4, "absmax", clip_param=cands)
        check_against_reference(x, "mse", 3, "minmax", clip_param=cands)


def test_mse_objectives_match_reference(isa, rng):
    x = data(rng, 5000)
    for scheme in ("absmax", "minmax"):
        g = _args.grid(4, scheme, None, False)
        a = lowbit._C.calib_mse_objectives(x, scheme, g.qmin, g.qmax, g.absmax_qmax, 50)
        b = rc.mse_objectives(x, scheme, g, 50)
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_mse_picks_the_known_optimum(isa):
    # 2-bit absmax (qmax 1), candidates c_i = i: scale = c. c = 1 keeps the ones exact and
    # saturates the outlier (error 99^2 = 9801); every c >= 2 rounds the ones to 0 (error 1 each).
    for n_ones, best in ((100_000, 1.0), (1000, 100.0)):
        x = np.concatenate([np.ones(n_ones, F32), [F32(100)]])
        lo, hi = lowbit.calibrate(x, "mse", 2, clip_param=100)
        assert hi.item() == best and lo.item() == -best


def test_mse_ties_go_to_the_larger_clip(isa):
    lo, hi = lowbit.calibrate(np.zeros(10, F32), "mse", 8)  # all objectives 0: the largest (0)
    assert hi.item() == 0.0
    # 2-bit, x = {0, 2}: c = 1 (scale 1) and c = 2 (scale 2) both reproduce x exactly... c = 1
    # saturates 2 -> 1, so only c = 2 is exact; with x = {0} plus tiny values both tie -> larger c
    x = np.array([0, 2], F32)
    assert lowbit.calibrate(x, "mse", 2, clip_param=2)[1].item() == 2.0
    x = np.array([0, 0, 4], F32)
    # candidates 1..4 (scale = c): errors (4-c)^2 for c < 4, 0 for c = 4 -> c = 4
    assert lowbit.calibrate(x, "mse", 2, clip_param=4)[1].item() == 4.0
    # equal objectives: x = {0.5}, 2-bit, candidates 0.25 and 0.5 (scales 0.25, 0.5):
    # 0.5/0.25 = 2 saturates to 1 -> x_hat 0.25; 0.5/0.5 = 1 -> exact. Make a true tie instead:
    # x = {3}, 8-bit, candidates c with scale c/127 all reproduce 3 when 3 lands on the grid.
    x = np.array([127.0, -127.0], F32)
    lo, hi = lowbit.calibrate(x, "mse", 8, clip_param=1)
    assert hi.item() == 127.0


def test_mse_signed_narrow_and_unsigned_grids(isa, rng):
    x = data(rng, (9, 40))
    for kw in (dict(narrow=True), dict(signed=True, scheme="minmax")):
        lo, hi = lowbit.calibrate(x, "mse", 4, axis=0, **kw)
        rlo, rhi = ref.calibrate(x, "mse", 4, axis=0, **kw)
        np.testing.assert_array_equal(hi, rhi)


# ---- kl ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 33, 4097, 100_000])
def test_kl_histogram_matches_reference(isa, rng, n):
    x = data(rng, n)
    np.testing.assert_array_equal(lowbit._C.calib_kl_histogram(x), rc.kl_histogram(x))
    assert lowbit._C.calib_kl_histogram(x).sum() == n


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_kl_divergences_match_reference(rng, bits):
    for x in (data(rng, 200_000), data(rng, 50), np.abs(data(rng, 3000, "n"))):
        h = rc.kl_histogram(x)
        a = lowbit._C.calib_kl_divergences(h.astype(np.uint64), bits)
        b = rc.kl_divergences(h, bits)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)


def test_kl_divergence_known_value():
    # L = 2 (2 bits), 2048 bins: threshold i = 2 with mass [3, 1] in bins 0, 1 and 4 beyond:
    # P = [3, 1 + 4] / 8; Q = bins merged into 2 groups of one bin each = [3, 1] / 4.
    h = np.zeros(2048, np.int64)
    h[0], h[1], h[2047] = 3, 1, 4
    p = np.array([3, 5]) / 8
    q = np.array([3, 1]) / 4
    expect = float(np.sum(p * np.log(p / q)))
    assert rc.kl_divergences(h, 2)[0] == pytest.approx(expect, rel=1e-15)
    assert lowbit._C.calib_kl_divergences(h.astype(np.uint64), 2)[0] == pytest.approx(expect, rel=1e-12)


# few groups: the reference KL search is a Python loop over 2048 thresholds per group
KL_GRANULARITIES = [
    ((6, 29), {}),
    ((6, 29), dict(axis=0)),
    ((40, 5), dict(axis=1)),
    ((3, 4, 5), dict(axis=1)),
    ((2, 300), dict(group_size=128)),
]


@pytest.mark.parametrize("shape,kw", KL_GRANULARITIES)
@pytest.mark.parametrize("bits,scheme", [(8, "absmax"), (4, "absmax"), (8, "minmax")])
def test_kl_matches_reference(rng, shape, kw, scheme, bits):  # ISAs differ only in the histogram, tested above
    check_against_reference(data(rng, shape), "kl", bits, scheme, **kw)


def test_kl_large_tensor(isa, rng):
    x = data(rng, (300, 700))
    lo, hi = check_against_reference(x, "kl", 8, "absmax")
    assert 0 < hi.item() < np.abs(x).max()  # heavy tails get clipped


# ---- quantize(clip=...) ------------------------------------------------------------------

@pytest.mark.parametrize("method", ["percentile", "mse", "kl"])
@pytest.mark.parametrize("shape,kw", KL_GRANULARITIES)
def test_quantize_with_calibrated_clip(isa, rng, method, shape, kw):
    x = data(rng, shape)
    for scheme in ("absmax", "minmax"):
        qt = lowbit.quantize(x, 4, scheme=scheme, clip=method, **kw)
        lo, hi = lowbit.calibrate(x, method, 4, scheme=scheme, **kw)
        # the same codes as the explicit per-group range through the reference
        lay = _args.layout(x.shape, kw.get("axis"), kw.get("group_size"))[0]
        rq = ref.quantize(x, 4, scheme=scheme, **kw)
        g = _args.grid(4, scheme, None, False)
        s, _, z = ref.group_params(lo.reshape(-1), hi.reshape(-1), scheme, g)
        np.testing.assert_array_equal(qt.scale.reshape(-1), s)
        np.testing.assert_array_equal(qt.zero_point.reshape(-1), z)
        assert rq.codes.shape == qt.codes.shape and lay.n_groups == s.size
        if method == "percentile":  # exact in every case: the reference must agree bit for bit
            assert_qtensor_equal(qt, ref.quantize(x, 4, scheme=scheme, clip=method, **kw))


def test_quantize_clip_reduces_error_on_heavy_tails(rng):
    x = (rng.standard_t(2, size=(64, 512))).astype(F32)
    # the last MSE candidate is the unclipped range, so the MSE clip can only do better
    for scheme in ("absmax", "minmax"):
        base = lowbit.quantize(x, 4, axis=0, scheme=scheme)
        qt = lowbit.quantize(x, 4, axis=0, scheme=scheme, clip="mse")
        err = ((qt.dequantize() - x).astype(np.float64) ** 2).sum(axis=1)
        err0 = ((base.dequantize() - x).astype(np.float64) ** 2).sum(axis=1)
        assert (err <= err0).all() and err.sum() < err0.sum()


def test_edges(isa, rng):
    for x in (np.zeros(0, F32), np.zeros((3, 0), F32)):
        for method in ("percentile", "mse", "kl"):
            lo, hi = lowbit.calibrate(x, method)
            assert not lo.any() and not hi.any()
            qt = lowbit.quantize(x, 8, clip=method)
            assert qt.codes.size == 0
    one = np.array([2.5], F32)
    for method in ("percentile", "mse", "kl"):
        check_against_reference(one, method, 8, "absmax")
        check_against_reference(one, method, 8, "minmax")
    z = np.zeros((4, 8), F32)
    for method in ("percentile", "mse", "kl"):
        qt = lowbit.quantize(z, 8, clip=method, axis=0)
        assert not qt.dequantize().any()
    # non-contiguous input and float64/float16 input
    x = data(rng, (40, 60))[:, ::3]
    for method in ("percentile", "mse", "kl"):
        np.testing.assert_array_equal(lowbit.calibrate(x, method)[1], lowbit.calibrate(x.copy(), method)[1])
    np.testing.assert_array_equal(lowbit.calibrate(x.astype(np.float16), "mse")[1],
                                  lowbit.calibrate(x.astype(np.float16).astype(F32), "mse")[1])


def test_thread_count_does_not_change_results(rng):
    x = data(rng, 300_000)
    before = lowbit.get_num_threads()
    try:
        res = []
        for t in (1, 2, 3):
            lowbit.set_num_threads(t)
            res.append([lowbit._C.calib_mse_objectives(x, "absmax", -128, 127, 127, 100)]
                       + [lowbit.calibrate(x, m)[1] for m in ("mse", "kl", "percentile")])
        for r in res[1:]:
            for a, b in zip(res[0], r):
                np.testing.assert_array_equal(a, b)
    finally:
        lowbit.set_num_threads(before)


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0, -1, 100.5, 1000, float("nan"), float("inf")])
def test_bad_percentile(p):
    x = np.ones(10, F32)
    for mod in (lowbit, ref):
        with pytest.raises(ValueError, match="percentile"):
            mod.calibrate(x, "percentile", clip_param=p)
        with pytest.raises(ValueError, match="percentile"):
            mod.quantize(x, 8, clip="percentile", clip_param=p)


def test_bad_arguments():
    x = np.ones(10, F32)
    for mod in (lowbit, ref):
        with pytest.raises(ValueError, match="clip method"):
            mod.calibrate(x, "entropy")
        with pytest.raises(ValueError, match="kl"):
            mod.calibrate(x, "kl", clip_param=5)
        with pytest.raises(ValueError, match="candidates"):
            mod.calibrate(x, "mse", clip_param=0)
        with pytest.raises(TypeError):
            mod.calibrate(x, "mse", clip_param=2.5)
        with pytest.raises(TypeError):
            mod.calibrate(x, "percentile", clip_param="99")
        with pytest.raises(ValueError, match="bits"):
            mod.calibrate(x, "mse", bits=1)


@pytest.mark.parametrize("method", ["percentile", "mse", "kl"])
def test_nonfinite_input(method):
    x = np.ones((4, 9), F32)
    x[2, 5] = np.nan
    for mod in (lowbit, ref):
        with pytest.raises(ValueError, match=r"non-finite.*\(2, 5\)"):
            mod.calibrate(x, method, axis=1)
        with pytest.raises(ValueError, match="non-finite"):
            mod.quantize(x, 8, clip=method)
    x[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.calibrate(x, method, group_size=4)


# ---- observers ---------------------------------------------------------------------------

def one_shot(batches, method, bits, symmetric):
    x = np.concatenate([np.asarray(b, F32).reshape(-1) for b in batches])
    scheme = "absmax" if symmetric else "minmax"
    qt = lowbit.quantize(x, bits, scheme=scheme, clip=None if method == "minmax" else method)
    return qt.scale.item(), qt.zero_point.item()


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse", "kl"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_observer_equals_one_pass(rng, method, symmetric):
    # batches whose range grows and shrinks: a histogram over the first batch's range would be wrong
    batches = [data(rng, (8, 100)) * s for s in (0.1, 1.0, 5.0, 0.5)] + [data(rng, 33) + 3]
    obs = lowbit.Observer(method, bits=8, symmetric=symmetric)
    for b in batches:
        obs.update(b)
        scale, zp = obs.qparams()
        assert scale.dtype == F32 and zp.dtype == np.int32
    assert (scale.item(), zp.item()) == one_shot(batches, method, 8, symmetric)
    obs4 = lowbit.Observer(method, bits=4, symmetric=symmetric)
    for b in batches:
        obs4.update(b)
    assert tuple(v.item() for v in obs4.qparams()) == one_shot(batches, method, 4, symmetric)


def test_observer_bad_use():
    obs = lowbit.Observer("kl")
    with pytest.raises(ValueError, match="before any update"):
        obs.qparams()
    obs.update(np.zeros(0, F32))
    with pytest.raises(ValueError, match="before any update"):
        obs.qparams()
    with pytest.raises(ValueError, match="non-finite"):
        obs.update(np.array([1.0, np.nan], F32))
    with pytest.raises(ValueError, match="method"):
        lowbit.Observer("histogram")
    with pytest.raises(ValueError, match="percentile"):
        lowbit.Observer("percentile", clip_param=0)


# ---- bias --------------------------------------------------------------------------------

def test_quantize_bias_known_values():
    bias = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.0, 0.0, 1.0], F32)
    for mod in (lowbit, ref):
        q = mod.quantize_bias(bias, F32(0.5), F32(2.0))  # bias scale exactly 1: halves are ties
        assert q.dtype == np.int32
        np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, 3, 0, 1])
    # per-channel weight scales (a keepdims scale array works as is)
    ws = np.array([[0.1], [0.2], [0.25], [1.0]], F32)
    b = np.array([1.0, 1.0, -1.0, 3.0], F32)
    q = lowbit.quantize_bias(b, ws, 0.5)
    expect = np.rint(b.astype(np.float64) / (ws.reshape(-1).astype(np.float64) * 0.5))
    np.testing.assert_array_equal(q, expect.astype(np.int32))
    np.testing.assert_array_equal(q, [20, 10, -8, 6])


def test_quantize_bias_errors():
    with pytest.raises(ValueError, match="outside int32"):
        lowbit.quantize_bias(np.array([1.0, 3e9], F32), 1.0, 1.0)
    assert lowbit.quantize_bias(np.array([2147483520.0], F32), 1.0, 1.0)[0] == 2147483520
    with pytest.raises(ValueError, match="weight_scale"):
        lowbit.quantize_bias(np.ones(3, F32), np.ones(2, F32), 1.0)
    with pytest.raises(ValueError, match="> 0"):
        lowbit.quantize_bias(np.ones(3, F32), 0.0, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.quantize_bias(np.array([np.nan], F32), 1.0, 1.0)
    with pytest.raises(ValueError, match="activation_scale"):
        lowbit.quantize_bias(np.ones(3, F32), 1.0, np.ones(2, F32))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_kl_pruned_search_equals_full_search(rng, bits):
    # The search skips thresholds whose KL provably exceeds the best one (an empty last bin
    # with mass beyond it). Compare with picking from every divergence, by the same tie rule.
    L = 1 << (bits - 1)
    for n in (1, 3, 17, 128, 1000):
        for _ in range(20):
            v = data(rng, n)
            kl = lowbit._C.calib_kl_divergences(rc.kl_histogram(v).astype(np.uint64), bits)
            m = kl.min()
            i = int(np.flatnonzero(kl <= m + (1e-10 * abs(m) + 1e-15))[-1]) + L
            c = F32((i + 0.5) * (float(np.abs(v).max()) / 2048))
            assert lowbit.calibrate(v, "kl", bits)[1].item() == (c if np.abs(v).max() > 0 else 0)
