"""Reference super-block formats of llama.cpp (K-quants, IQ4_NL, IQ4_XS, Q8_K), NumPy only.

These are ggml's encoders as ``ggml_quantize_chunk`` runs them (``quantize_q4_K``
etc.: the ``*_ref`` path without an importance matrix, the ``*_impl`` path with
one) and the decoders of the types' ``to_float``, written out in NumPy,
vectorized over blocks and sub-blocks. Byte-exactness needs the same float32
operations in the same order as ggml's C:

- every sum is a left-to-right loop in C; here ``_acc`` (``np.add.accumulate``,
  which is sequential) or an explicit loop over the element index;
- products group as C groups them (``w*x*l`` is ``(w*x)*l``), ints convert to
  float32 where C converts them, nothing is fused;
- ``nearest_int`` is ggml's magic-number rounding (ties to even), bit for bit;
- "the first value of largest magnitude" and the other strict-comparison scans
  keep ggml's first-wins choice.

Functions take ``(nblocks, block)`` float32 (finite) and ``(nblocks, block)``
importance weights or None, and return ``(nblocks, bytes)`` uint8.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
I32 = np.int32
EPS = F32(1e-15)  # GROUP_MAX_EPS

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int64)


# ---- float16 as ggml's GGML_FP32_TO_FP16 / GGML_FP16_TO_FP32 ---------------------

def fp16_bits(d) -> np.ndarray:
    """Round to nearest even, overflow to +-Inf, NaN to a quiet NaN. -> uint16."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(d, F32).astype(np.float16).view(np.uint16)


def fp16_from_bits(h) -> np.ndarray:
    return np.asarray(h, np.uint16).view(np.float16).astype(F32)


def fp16_round(d) -> np.ndarray:
    """The float32 value of the stored float16 scale."""
    return fp16_from_bits(fp16_bits(d))


def u16_bytes(h) -> np.ndarray:
    """(...,) uint16 -> (..., 2) little-endian bytes."""
    h = np.asarray(h, np.uint16)
    return np.stack([h & 0xFF, h >> 8], axis=-1).astype(np.uint8)


# ---- ggml's arithmetic helpers ---------------------------------------------------

def nearest_int(v) -> np.ndarray:
    """ggml's nearest_int: add 1.5 * 2^23 and read the mantissa (ties to even)."""
    with np.errstate(over="ignore", invalid="ignore"):
        t = (np.asarray(v, F32) + F32(12582912.0)).astype(F32)
    return (t.view(I32).astype(np.int64) & 0x7FFFFF) - 0x400000


def _acc(a) -> np.ndarray:
    """C's ``s = 0; for (i...) s += a[i];`` along the last axis, in float32."""
    a = np.asarray(a, F32)
    z = np.zeros(a.shape[:-1] + (1,), F32)
    return np.add.accumulate(np.concatenate([z, a], axis=-1), axis=-1, dtype=F32)[..., -1]


def _acc_from_first(a) -> np.ndarray:
    """C's ``s = a[0]; for (i = 1...) s += a[i];``."""
    return np.add.accumulate(np.asarray(a, F32), axis=-1, dtype=F32)[..., -1]


def _f(v) -> np.ndarray:
    return np.asarray(v).astype(F32)


def _first_absmax(x):
    """ggml's ``if (ax > amax) { amax = ax; max = x[i]; }`` from amax = 0: (amax, max)."""
    ax = np.where(np.isnan(x), F32(-1), np.abs(x))  # NaN never wins in C
    i = ax.argmax(axis=-1)[..., None]
    amax = np.maximum(np.take_along_axis(ax, i, -1)[..., 0], F32(0))
    mx = np.take_along_axis(x, i, -1)[..., 0]
    return amax, np.where(amax > 0, mx, F32(0)).astype(F32)


def _first_extreme(x, fn):
    """C's ``m = x[0]; if (x[i] < m) m = x[i];`` (or >): the first of equal values wins."""
    m = fn(x, axis=-1, keepdims=True)
    i = (x == m).argmax(axis=-1)[..., None]
    return np.take_along_axis(x, i, -1)[..., 0]


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (np.asarray(a, F32) / np.asarray(b, F32)).astype(F32)


def _mul(a, b):
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.asarray(a, F32) * np.asarray(b, F32)).astype(F32)


# ---- sub-block searches (vectorized over groups: x (G, n)) -----------------------

def make_qx_quants(x, nmax, qw=None):
    """make_qx_quants with rmse_type 1: codes l + nmax in [0, 2 nmax), scale (G,)."""
    G, n = x.shape
    amax, mx = _first_absmax(x)
    zero = amax < EPS
    w = qw if qw is not None else _mul(x, x)
    wx = _mul(w, x)

    def codes(iscale):
        return np.clip(nearest_int(_mul(iscale[:, None], x)), -nmax, nmax - 1)

    def sums(l):
        fl = _f(l)
        return _acc(_mul(wx, fl)), _acc(_mul(_mul(w, fl), fl))

    iscale = _div(F32(-nmax), mx)
    L = codes(iscale)
    sumlx, suml2 = sums(L)
    scale = np.where(suml2 != 0, _div(sumlx, suml2), F32(0)).astype(F32)
    best = _mul(scale, sumlx)
    for i in range(-9, 10):
        if i == 0:
            continue
        iscale = _div(-(F32(nmax) + F32(0.1) * F32(i)), mx)
        l = codes(iscale)
        slx, sl2 = sums(l)
        with np.errstate(invalid="ignore", over="ignore"):
            better = (sl2 > 0) & (_mul(slx, slx) > _mul(best, sl2))
        L = np.where(better[:, None], l, L)
        scale = np.where(better, _div(slx, sl2), scale).astype(F32)
        best = np.where(better, _mul(scale, slx), best).astype(F32)
    L = np.where(zero[:, None], 0, L + nmax)
    return np.where(zero, F32(0), scale).astype(F32), L


def make_q3_quants(x, nmax):
    """make_q3_quants with do_rmse (w = x^2, 5 refining sweeps): codes in [0, 2 nmax), scale."""
    G, n = x.shape
    amax, mx = _first_absmax(x)
    zero = amax < EPS
    iscale = _div(F32(-nmax), mx)
    L = np.clip(nearest_int(_mul(iscale[:, None], x)), -nmax, nmax - 1)
    w = _mul(x, x)
    wx = _mul(w, x)
    fl = _f(L)
    sumlx = _acc(_mul(wx, fl))
    suml2 = _acc(_mul(_mul(w, fl), fl))
    with np.errstate(all="ignore"):
        for _ in range(5):  # a sweep with no change leaves the state, so no early exit is needed
            for i in range(n):
                li = _f(L[:, i])
                slx = (sumlx - wx[:, i] * li).astype(F32)
                ok = slx > 0
                sl2 = (suml2 - (w[:, i] * li).astype(F32) * li).astype(F32)
                new_l = np.clip(nearest_int(_div(_mul(x[:, i], sl2), slx)), -nmax, nmax - 1)
                ok &= new_l != L[:, i]
                fn = _f(new_l)
                slx2 = (slx + wx[:, i] * fn).astype(F32)
                sl22 = (sl2 + (w[:, i] * fn).astype(F32) * fn).astype(F32)
                ok &= (sl22 > 0) & (_mul(_mul(slx2, slx2), suml2) > _mul(_mul(sumlx, sumlx), sl22))
                L[:, i] = np.where(ok, new_l, L[:, i])
                sumlx = np.where(ok, slx2, sumlx).astype(F32)
                suml2 = np.where(ok, sl22, suml2).astype(F32)
    scale = np.where(suml2 > 0, _div(sumlx, suml2), F32(0)).astype(F32)
    L = np.where(zero[:, None], 0, L + nmax)
    return np.where(zero, F32(0), scale).astype(F32), L


def make_qkx_quants(x, w, nmax, rmin, rdelta, nstep, use_mad, x3):
    """make_qkx2_quants (x3 False) / make_qkx3_quants (x3 True): (scale, the_min, L)."""
    mn = _first_extreme(x, np.min)
    mx = _first_extreme(x, np.max)
    sum_w = _acc_from_first(w)
    sum_x = _acc_from_first(_mul(w, x))
    mn = np.where(mn > 0, F32(0), mn).astype(F32)
    degenerate = ~(mx > mn) if x3 else (mx == mn)
    mn0 = mn
    rng = (mx - mn).astype(F32)
    xm = (x - mn[:, None]).astype(F32)

    def error(scale, mn_, L):
        diff = ((_mul(scale[:, None], _f(L)) + mn_[:, None]).astype(F32) - x).astype(F32)
        diff = np.abs(diff) if use_mad else _mul(diff, diff)
        return _acc(_mul(w, diff))

    iscale = _div(F32(nmax), rng)
    scale = _div(F32(1), iscale)
    L = np.clip(nearest_int(_mul(iscale[:, None], xm)), 0, nmax)
    best = error(scale, mn, L)
    for i in range(nstep + 1):
        # ggml's loop reads `min` as updated by the previous candidates
        with np.errstate(over="ignore", invalid="ignore"):
            rng = (mx - mn).astype(F32)
            xm = (x - mn[:, None]).astype(F32)
        iscale = _div((F32(rmin) + F32(rdelta) * F32(i)).astype(F32) + F32(nmax), rng)
        la = np.clip(nearest_int(_mul(iscale[:, None], xm)), 0, nmax)
        fl = _f(la)
        wl = _mul(w, fl)
        sum_l = _acc(wl)
        sum_l2 = _acc(_mul(wl, fl))
        sum_xl = _acc(_mul(wl, x))
        D = (_mul(sum_w, sum_l2) - _mul(sum_l, sum_l)).astype(F32)
        with np.errstate(all="ignore"):
            ok = D > 0
            this_scale = _div((_mul(sum_w, sum_xl) - _mul(sum_x, sum_l)).astype(F32), D)
            this_min = _div((_mul(sum_l2, sum_x) - _mul(sum_l, sum_xl)).astype(F32), D)
            pos = this_min > 0
            this_min = np.where(pos, F32(0), this_min).astype(F32)
            this_scale = np.where(pos, _div(sum_xl, sum_l2), this_scale).astype(F32)
            cur = error(this_scale, this_min, la)
            better = ok & (cur < best)
        L = np.where(better[:, None], la, L)
        best = np.where(better, cur, best).astype(F32)
        scale = np.where(better, this_scale, scale).astype(F32)
        mn = np.where(better, this_min, mn).astype(F32)
    L = np.where(degenerate[:, None], 0, L)
    scale = np.where(degenerate, F32(0), scale).astype(F32)
    return scale, (-np.where(degenerate, mn0, mn)).astype(F32), L


def make_qp_quants(x, nmax, qw):
    """make_qp_quants: codes in [.., nmax] for non-negative x (scales or mins), weighted."""
    G, n = x.shape
    mx = np.zeros(G, F32)
    for i in range(n):
        mx = np.where(mx > x[:, i], mx, x[:, i]).astype(F32)
    zero = mx < EPS
    iscale = _div(F32(nmax), mx)
    L0 = nearest_int(_mul(iscale[:, None], x)) & 0xFF  # stored as uint8
    scale = _div(F32(1), iscale)

    def mse(scale_, L):
        diff = (x - _mul(scale_[:, None], _f(L))).astype(F32)
        return _acc(_mul(_mul(qw, diff), diff))

    best = mse(scale, L0)
    for i in range(-4, 5):
        if i == 0:
            continue
        iscale_is = _div((F32(0.1) * F32(i)).astype(F32) + F32(nmax), mx)
        scale_is = _div(F32(1), iscale_is)
        l = np.minimum(nearest_int(_mul(iscale_is[:, None], x)), nmax)
        m = mse(scale_is, l)
        with np.errstate(invalid="ignore"):
            better = m < best
        best = np.where(better, m, best).astype(F32)
        iscale = np.where(better, iscale_is, iscale).astype(F32)
    l = np.minimum(nearest_int(_mul(iscale[:, None], x)), nmax)
    L = l & 0xFF
    wx = _mul(qw, x)
    fl = _f(l)
    sumlx = _acc(_mul(wx, fl))
    suml2 = _acc(_mul(_mul(qw, fl), fl))
    with np.errstate(all="ignore"):
        for _ in range(5):
            for i in range(n):
                li = _f(L[:, i])
                slx = (sumlx - wx[:, i] * li).astype(F32)
                sl2 = (suml2 - (qw[:, i] * li).astype(F32) * li).astype(F32)
                ok = (slx > 0) & (sl2 > 0)
                new_l = np.minimum(nearest_int(_div(_mul(x[:, i], sl2), slx)), nmax)
                ok &= new_l != L[:, i]
                fn = _f(new_l)
                slx2 = (slx + wx[:, i] * fn).astype(F32)
                sl22 = (sl2 + (qw[:, i] * fn).astype(F32) * fn).astype(F32)
                ok &= _mul(_mul(slx2, slx2), suml2) > _mul(_mul(sumlx, sumlx), sl22)
                L[:, i] = np.where(ok, new_l & 0xFF, L[:, i])
                sumlx = np.where(ok, slx2, sumlx).astype(F32)
                suml2 = np.where(ok, sl22, suml2).astype(F32)
    scale = np.where(suml2 > 0, _div(sumlx, suml2), F32(0)).astype(F32)
    L = np.where(zero[:, None], 0, L)
    return np.where(zero, F32(0), scale).astype(F32), L


# ---- packing helpers -------------------------------------------------------------

def _pack_2bit(L):
    """(B, 256) codes 0..3 -> (B, 64): byte j/4 + l of half j holds L[j+l], +32, +64, +96."""
    B = L.shape[0]
    q = L.reshape(B, 2, 4, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(B, 64).astype(np.uint8)


def _pack_scale_min_k4(ls, lm):
    """(B, 8) 6-bit scales and mins -> (B, 12) bytes (get_scale_min_k4's layout)."""
    s = np.zeros((ls.shape[0], 12), np.int64)
    s[:, 0:4] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
    s[:, 4:8] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    s[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    return (s & 0xFF).astype(np.uint8)


def _unpack_scale_min_k4(s):
    s = s.astype(np.int64)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


def _pack_scales_q3(l):
    """(B, 16) 6-bit values 0..63 -> (B, 12) bytes (Q3_K's layout)."""
    B = l.shape[0]
    s = np.zeros((B, 12), np.int64)
    s[:, 0:8] = (l[:, 0:8] & 0xF) | ((l[:, 8:16] & 0xF) << 4)
    hi = (l >> 4) & 3
    for j in range(16):
        s[:, 8 + j % 4] |= hi[:, j] << (2 * (j // 4))
    return (s & 0xFF).astype(np.uint8)


def _unpack_scales_q3(s):
    """(B, 12) bytes -> (B, 16) signed scales (value - 32)."""
    s = s.astype(np.int64)
    lo = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)
    hi = np.stack([(s[:, 8 + j % 4] >> (2 * (j // 4))) & 3 for j in range(16)], axis=1)
    return (lo | (hi << 4)) - 32


def _sum_sq(x):
    return _acc(_mul(x, x))


def _sub(x, n):
    """(B, 256) -> (B * 256/n, n) sub-blocks."""
    return x.reshape(-1, n)


# ---- Q2_K ------------------------------------------------------------------------

def q2_k(x, qw):
    B = x.shape[0]
    xs = _sub(x, 16)
    if qw is None:
        scales, mins, L = make_qkx_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, True, False)
        scales, mins = scales.reshape(B, 16), mins.reshape(B, 16)
        max_scale = np.zeros(B, F32)
        max_min = np.zeros(B, F32)
        for j in range(16):
            max_scale = np.where(scales[:, j] > max_scale, scales[:, j], max_scale)
            max_min = np.where(mins[:, j] > max_min, mins[:, j], max_min)
        has_s, has_m = max_scale > 0, max_min > 0
        ls = nearest_int(_mul(_div(F32(15), max_scale)[:, None], scales)) & 0xFF
        ls = np.where(has_s[:, None], ls, 0)
        lm = (nearest_int(_mul(_div(F32(15), max_min)[:, None], mins)) << 4) & 0xFF
        sc = np.where(has_m[:, None], ls | lm, ls)
        d = np.where(has_s, fp16_bits(_div(max_scale, F32(15))), 0).astype(np.uint16)
        dmin = np.where(has_m, fp16_bits(_div(max_min, F32(15))), 0).astype(np.uint16)
    else:
        sigma2 = _div(_sum_sq(x), F32(256))
        xx = _mul(xs, xs)
        weight = _mul(qw.reshape(-1, 16), np.sqrt((np.repeat(sigma2, 16)[:, None] + xx).astype(F32)))
        sw = _acc(weight).reshape(B, 16)
        scales, mins, L = make_qkx_quants(xs, weight, 3, -0.9, 0.05, 36, False, True)
        dm, Ls = make_qp_quants(scales.reshape(B, 16), 15, sw)
        mm, Lm = make_qp_quants(mins.reshape(B, 16), 15, sw)
        d, dmin = fp16_bits(dm), fp16_bits(mm)
        sc = (Ls | (Lm << 4)) & 0xFF
    L = L.reshape(B, 256)
    dl = _mul(fp16_from_bits(d)[:, None], _f(sc & 0xF))
    ml = _mul(fp16_from_bits(dmin)[:, None], _f(sc >> 4))
    l = np.clip(nearest_int(_div((x.reshape(B, 16, 16) + ml[:, :, None]).astype(F32), dl[:, :, None])), 0, 3)
    L = np.where((dl != 0)[:, :, None], l, L.reshape(B, 16, 16)).reshape(B, 256)
    return np.concatenate([sc.astype(np.uint8), _pack_2bit(L), u16_bytes(d), u16_bytes(dmin)], axis=1)


def dq2_k(b):
    B = b.shape[0]
    sc = b[:, :16].astype(np.int64)
    qs = b[:, 16:80].astype(np.int64).reshape(B, 2, 1, 32)
    d = fp16_from_bits(b[:, 80:82].copy().view(np.uint16)[:, 0])
    dmin = fp16_from_bits(b[:, 82:84].copy().view(np.uint16)[:, 0])
    q = ((qs >> (2 * np.arange(4)).reshape(1, 1, 4, 1)) & 3).reshape(B, 16, 16)  # sub-block order
    dl = _mul(d[:, None], _f(sc & 0xF))
    ml = _mul(dmin[:, None], _f(sc >> 4))
    return (_mul(dl[:, :, None], _f(q)) - ml[:, :, None]).astype(F32).reshape(B, 256)


# ---- Q3_K ------------------------------------------------------------------------

def q3_k(x, qw):
    B = x.shape[0]
    xs = _sub(x, 16)
    if qw is None:
        scales, L = make_q3_quants(xs, 4)
        scales = scales.reshape(B, 16)
        amax = np.zeros(B, F32)
        max_scale = np.zeros(B, F32)
        for j in range(16):
            a = np.abs(scales[:, j])
            upd = a > amax
            amax = np.where(upd, a, amax)
            max_scale = np.where(upd, scales[:, j], max_scale).astype(F32)
        has = max_scale != 0
        iscale = _div(F32(-32), max_scale)
        l = nearest_int(_mul(iscale[:, None], scales))
        l = ((l + 128) & 0xFF) - 128  # (int8_t)
        l = np.clip(l, -32, 31) + 32
        packed = np.where(has[:, None], _pack_scales_q3(l), 0).astype(np.uint8)
        d = np.where(has, fp16_bits(_div(F32(1), iscale)), 0).astype(np.uint16)
    else:
        sigma2 = _div(_mul(F32(2), _sum_sq(x)), F32(256))
        xx = _mul(xs, xs)
        weight = _mul(qw.reshape(-1, 16), np.sqrt((np.repeat(sigma2, 16)[:, None] + xx).astype(F32)))
        sw = _acc(weight).reshape(B, 16)
        scales, L = make_qx_quants(xs, 4, weight)
        d_block, Ls = make_qx_quants(scales.reshape(B, 16), 32, sw)
        packed = _pack_scales_q3(Ls)
        d = fp16_bits(d_block)
    L = L.reshape(B, 16, 16)
    dj = _mul(fp16_from_bits(d)[:, None], _f(_unpack_scales_q3(packed)))
    l = np.clip(nearest_int(_div(x.reshape(B, 16, 16), dj[:, :, None])), -4, 3) + 4
    L = np.where((dj != 0)[:, :, None], l, L).reshape(B, 256)
    high = L > 3
    hmask = (high.reshape(B, 8, 32).astype(np.int64) << np.arange(8).reshape(1, 8, 1)).sum(axis=1)
    L = np.where(high, L - 4, L)
    return np.concatenate([hmask.astype(np.uint8), _pack_2bit(L), packed, u16_bytes(d)], axis=1)


def dq3_k(b):
    B = b.shape[0]
    hm = b[:, :32].astype(np.int64)
    qs = b[:, 32:96].astype(np.int64).reshape(B, 2, 1, 32)
    sc = _unpack_scales_q3(b[:, 96:108])
    d = fp16_from_bits(b[:, 108:110].copy().view(np.uint16)[:, 0])
    q = ((qs >> (2 * np.arange(4)).reshape(1, 1, 4, 1)) & 3).reshape(B, 256)
    h = ((hm[:, None, :] >> np.arange(8).reshape(1, 8, 1)) & 1).reshape(B, 256)
    q = q - np.where(h != 0, 0, 4)
    dl = _mul(d[:, None], _f(sc))
    return _mul(dl[:, :, None], _f(q).reshape(B, 16, 16)).reshape(B, 256)


# ---- Q4_K / Q5_K -----------------------------------------------------------------

def _qk45_scales(x, qw, nmax):
    """Sub-block codes, packed 6-bit scales/mins, d and dmin (uint16) of Q4_K/Q5_K."""
    B = x.shape[0]
    xs = _sub(x, 32)
    if qw is None:
        av_x = np.sqrt(_div(_sum_sq(xs), F32(32)))
        weights = (av_x[:, None] + np.abs(xs)).astype(F32)
        if nmax == 15:
            scales, mins, L = make_qkx_quants(xs, weights, 15, -1.0, 0.1, 20, False, False)
        else:
            scales, mins, L = make_qkx_quants(xs, weights, 31, -0.5, 0.1, 15, False, False)
        scales, mins = scales.reshape(B, 8), mins.reshape(B, 8)
        max_scale = np.zeros(B, F32)
        max_min = np.zeros(B, F32)
        for j in range(8):
            max_scale = np.where(scales[:, j] > max_scale, scales[:, j], max_scale)
            max_min = np.where(mins[:, j] > max_min, mins[:, j], max_min)
        inv_scale = np.where(max_scale > 0, _div(F32(63), max_scale), F32(0)).astype(F32)
        inv_min = np.where(max_min > 0, _div(F32(63), max_min), F32(0)).astype(F32)
        ls = np.minimum(nearest_int(_mul(inv_scale[:, None], scales)) & 0xFF, 63)
        lm = np.minimum(nearest_int(_mul(inv_min[:, None], mins)) & 0xFF, 63)
        d, dmin = fp16_bits(_div(max_scale, F32(63))), fp16_bits(_div(max_min, F32(63)))
    else:
        sigma2 = _div(_mul(F32(2), _sum_sq(x)), F32(256))
        xx = _mul(xs, xs)
        weights = _mul(qw.reshape(-1, 32), np.sqrt((np.repeat(sigma2, 8)[:, None] + xx).astype(F32)))
        sw = _acc(weights).reshape(B, 8)
        scales, mins, L = make_qkx_quants(xs, weights, nmax, -0.9, 0.05, 36, False, True)
        d_block, ls = make_qp_quants(scales.reshape(B, 8), 63, sw)
        m_block, lm = make_qp_quants(mins.reshape(B, 8), 63, sw)
        ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
        d, dmin = fp16_bits(d_block), fp16_bits(m_block)
    packed = _pack_scale_min_k4(ls, lm)
    sc, m = _unpack_scale_min_k4(packed)
    dj = _mul(fp16_from_bits(d)[:, None], _f(sc))
    dm = _mul(fp16_from_bits(dmin)[:, None], _f(m))
    l = np.clip(nearest_int(_div((x.reshape(B, 8, 32) + dm[:, :, None]).astype(F32), dj[:, :, None])), 0, nmax)
    L = np.where((dj != 0)[:, :, None], l, L.reshape(B, 8, 32)).reshape(B, 256)
    return L, packed, d, dmin


def q4_k(x, qw):
    B = x.shape[0]
    L, packed, d, dmin = _qk45_scales(x, qw, 15)
    q = L.reshape(B, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(B, 128).astype(np.uint8)
    return np.concatenate([u16_bytes(d), u16_bytes(dmin), packed, qs], axis=1)


def q5_k(x, qw):
    B = x.shape[0]
    L, packed, d, dmin = _qk45_scales(x, qw, 31)
    q = L.reshape(B, 4, 2, 32)
    qs = ((q[:, :, 0] & 0xF) | ((q[:, :, 1] & 0xF) << 4)).reshape(B, 128).astype(np.uint8)
    hi = (q >> 4) & 1  # (B, 4, 2, 32): bit 2*n + h of qh[j]
    qh = (hi.reshape(B, 8, 32) << np.arange(8).reshape(1, 8, 1)).sum(axis=1).astype(np.uint8)
    return np.concatenate([u16_bytes(d), u16_bytes(dmin), packed, qh, qs], axis=1)


def _dq45(b, five):
    B = b.shape[0]
    d = fp16_from_bits(b[:, 0:2].copy().view(np.uint16)[:, 0])
    dmin = fp16_from_bits(b[:, 2:4].copy().view(np.uint16)[:, 0])
    sc, m = _unpack_scale_min_k4(b[:, 4:16])
    qs = b[:, 48:176] if five else b[:, 16:144]
    qs = qs.astype(np.int64).reshape(B, 4, 1, 32)
    q = ((qs >> np.array([0, 4]).reshape(1, 1, 2, 1)) & 0xF).reshape(B, 8, 32)
    if five:
        qh = b[:, 16:48].astype(np.int64)
        q = q + (((qh[:, None, :] >> np.arange(8).reshape(1, 8, 1)) & 1) << 4)
    dl = _mul(d[:, None], _f(sc))
    ml = _mul(dmin[:, None], _f(m))
    return (_mul(dl[:, :, None], _f(q)) - ml[:, :, None]).astype(F32).reshape(B, 256)


def dq4_k(b):
    return _dq45(b, False)


def dq5_k(b):
    return _dq45(b, True)


# ---- Q6_K ------------------------------------------------------------------------

def q6_k(x, qw):
    B = x.shape[0]
    xs = _sub(x, 16)
    scales, L = make_qx_quants(xs, 32, None if qw is None else qw.reshape(-1, 16))
    scales = scales.reshape(B, 16)
    amax = np.zeros(B, F32)
    max_scale = np.zeros(B, F32)
    for j in range(16):
        a = np.abs(scales[:, j])
        upd = a > amax
        amax = np.where(upd, a, amax)
        max_scale = np.where(upd, scales[:, j], max_scale).astype(F32)
    zero = amax < EPS
    iscale = _div(F32(-128), max_scale)
    d = fp16_bits(_div(F32(1), iscale))
    sc = np.minimum(127, nearest_int(_mul(iscale[:, None], scales)))
    sc = ((sc + 128) & 0xFF) - 128  # (int8_t)
    dj = _mul(fp16_from_bits(d)[:, None], _f(sc))
    l = np.clip(nearest_int(_div(x.reshape(B, 16, 16), dj[:, :, None])), -32, 31) + 32
    L = np.where((dj != 0)[:, :, None], l, L.reshape(B, 16, 16)).reshape(B, 2, 4, 32)
    ql = np.concatenate([(L[:, :, 0] & 0xF) | ((L[:, :, 2] & 0xF) << 4),
                         (L[:, :, 1] & 0xF) | ((L[:, :, 3] & 0xF) << 4)], axis=2).reshape(B, 128)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) |
          ((L[:, :, 3] >> 4) << 6)).reshape(B, 64)
    out = np.concatenate([ql.astype(np.uint8), qh.astype(np.uint8), (sc & 0xFF).astype(np.uint8),
                          u16_bytes(d)], axis=1)
    out[zero] = 0
    return out


def dq6_k(b):
    B = b.shape[0]
    ql = b[:, :128].astype(np.int64).reshape(B, 2, 2, 32)   # [half][l+0 | l+32]
    qh = b[:, 128:192].astype(np.int64).reshape(B, 2, 1, 32)
    sc = b[:, 192:208].view(np.int8).astype(F32)
    d = fp16_from_bits(b[:, 208:210].copy().view(np.uint16)[:, 0])
    lo = np.concatenate([ql & 0xF, ql >> 4], axis=2)       # (B, 2, 4, 32): q1 q2 q3 q4
    hi = (qh >> (2 * np.arange(4)).reshape(1, 1, 4, 1)) & 3
    q = ((lo | (hi << 4)) - 32).reshape(B, 16, 16)
    return _mul(_mul(d[:, None], sc)[:, :, None], _f(q)).reshape(B, 256)


# ---- Q8_K ------------------------------------------------------------------------

def q8_k(x, qw):
    B = x.shape[0]
    amax, mx = _first_absmax(x)
    iscale = _div(F32(-127), mx)
    q = np.minimum(127, nearest_int(_mul(iscale[:, None], x)))
    zero = amax == 0
    q = np.where(zero[:, None], 0, q)
    bsums = q.reshape(B, 16, 16).sum(axis=2).astype(np.int16)
    d = np.where(zero, F32(0), _div(F32(1), iscale)).astype(F32)
    return np.concatenate([d.view(np.uint8).reshape(B, 4), q.astype(np.int8).view(np.uint8),
                           bsums.view(np.uint8).reshape(B, 32)], axis=1)


def dq8_k(b):
    B = b.shape[0]
    d = b[:, :4].copy().view(F32)
    return _mul(d, b[:, 4:260].view(np.int8).astype(F32))


# ---- IQ4_NL / IQ4_XS -------------------------------------------------------------

_IQ4_MID = ((KVALUES_IQ4NL[1:] + KVALUES_IQ4NL[:-1])).astype(np.int64)


def best_index_iq4nl(v):
    """best_index_int8(16, kvalues_iq4nl, v): the nearest grid value, ggml's binary search."""
    v = np.asarray(v, F32)
    vals = KVALUES_IQ4NL.astype(F32)
    with np.errstate(invalid="ignore"):
        # the binary search lands on mu with vals[mu-1] <= v < vals[mu] (NaN: mu = 15)
        mu = np.searchsorted(vals, v, side="right")
        mu = np.where(np.isnan(v), 15, np.clip(mu, 1, 15))
        lo, hi = vals[mu - 1], vals[mu]
        idx = np.where((v - lo).astype(F32) < (hi - v).astype(F32), mu - 1, mu)
        idx = np.where(v <= vals[0], 0, np.where(v >= vals[15], 15, idx))
    return idx


def _iq4_subblocks(xs, weight):
    """quantize_row_iq4_nl_impl's per-32 search (ntry = 7): scales (G,) and codes (G, 32)."""
    amax, mx = _first_absmax(xs)
    zero = amax < EPS
    vals = KVALUES_IQ4NL
    d = _div(-mx, F32(vals[0]))
    idv = _div(F32(1), d)

    def fit(idv_):
        L = best_index_iq4nl(_mul(idv_[:, None], xs))
        q = vals[L].astype(F32)
        wq = _mul(weight, q)
        return L, _acc(_mul(wq, xs)), _acc(_mul(wq, q))

    L, sumqx, sumq2 = fit(idv)
    with np.errstate(all="ignore"):
        d = np.where(sumq2 > 0, _div(sumqx, sumq2), F32(0)).astype(F32)
        best = _mul(d, sumqx)
        for itry in range(-7, 8):
            idv = _div(F32(itry + vals[0]), mx)
            _, sumqx, sumq2 = fit(idv)
            better = (sumq2 > 0) & (_mul(sumqx, sumqx) > _mul(best, sumq2))
            d = np.where(better, _div(sumqx, sumq2), d).astype(F32)
            best = np.where(better, _mul(d, sumqx), best).astype(F32)
    return np.where(zero, F32(0), d).astype(F32), L


def _iq4_weights(xs, qw, sigma2, per):
    xx = _mul(xs, xs)
    if qw is None:
        return xx
    return _mul(qw.reshape(-1, 32), np.sqrt((np.repeat(sigma2, per)[:, None] + xx).astype(F32)))


def _pack_iq4(L):
    B, n = L.shape
    q = L.reshape(B, n // 32, 2, 16)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(B, n // 2).astype(np.uint8)


def iq4_nl(x, qw):
    sigma2 = _mul(_sum_sq(x), F32(2.0 / 32))
    d, _ = _iq4_subblocks(x, _iq4_weights(x, qw, sigma2, 1))
    idv = np.where(d != 0, _div(F32(1), d), F32(0)).astype(F32)
    L = best_index_iq4nl(_mul(idv[:, None], x))
    return np.concatenate([u16_bytes(fp16_bits(d)), _pack_iq4(L)], axis=1)


def iq4_xs(x, qw):
    B = x.shape[0]
    xs = _sub(x, 32)
    sigma2 = _mul(_sum_sq(x), F32(2.0 / 256))
    scales, _ = _iq4_subblocks(xs, _iq4_weights(xs, qw, sigma2, 8))
    scales = scales.reshape(B, 8)
    amax = np.zeros(B, F32)
    max_scale = np.zeros(B, F32)
    for j in range(8):
        a = np.abs(scales[:, j])
        upd = a > amax
        amax = np.where(upd, a, amax)
        max_scale = np.where(upd, scales[:, j], max_scale).astype(F32)
    d = _div(-max_scale, F32(32))
    idv = np.where(d != 0, _div(F32(1), d), F32(0)).astype(F32)
    l = np.clip(nearest_int(_mul(idv[:, None], scales)), -32, 31)
    dl = _mul(d[:, None], _f(l))
    idl = np.where(dl != 0, _div(F32(1), dl), F32(0)).astype(F32)
    L = best_index_iq4nl(_mul(np.repeat(idl, 32, axis=1), x))
    l = l + 32
    scales_l = ((l[:, 0::2] & 0xF) | ((l[:, 1::2] & 0xF) << 4)).astype(np.uint8)
    scales_h = ((l >> 4) << (2 * np.arange(8))).sum(axis=1).astype(np.uint16)
    return np.concatenate([u16_bytes(fp16_bits(d)), u16_bytes(scales_h), scales_l, _pack_iq4(L)], axis=1)


def diq4_nl(b):
    d = fp16_from_bits(b[:, 0:2].copy().view(np.uint16)[:, 0])
    qs = b[:, 2:18].astype(np.int64)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
    return _mul(d[:, None], KVALUES_IQ4NL[q].astype(F32))


def diq4_xs(b):
    B = b.shape[0]
    d = fp16_from_bits(b[:, 0:2].copy().view(np.uint16)[:, 0])
    sh = b[:, 2:4].copy().view(np.uint16)[:, 0].astype(np.int64)
    sl = b[:, 4:8].astype(np.int64)
    ib = np.arange(8)
    ls = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 0xF) | (((sh[:, None] >> (2 * ib)) & 3) << 4)
    dl = _mul(d[:, None], _f(ls - 32))
    qs = b[:, 8:136].astype(np.int64).reshape(B, 8, 16)
    q = np.concatenate([qs & 0xF, qs >> 4], axis=2)
    return _mul(dl[:, :, None], KVALUES_IQ4NL[q].astype(F32)).reshape(B, 256)


QUANT = {"Q2_K": q2_k, "Q3_K": q3_k, "Q4_K": q4_k, "Q5_K": q5_k, "Q6_K": q6_k, "Q8_K": q8_k,
         "IQ4_NL": iq4_nl, "IQ4_XS": iq4_xs}
DEQUANT = {"Q2_K": dq2_k, "Q3_K": dq3_k, "Q4_K": dq4_k, "Q5_K": dq5_k, "Q6_K": dq6_k, "Q8_K": dq8_k,
           "IQ4_NL": diq4_nl, "IQ4_XS": diq4_xs}


# ---- Q4_0 / Q4_1 / Q5_0 / Q5_1 with an importance matrix (quantize_row_q4_0_impl ...) ----

_LEGACY = {"Q4_0": (8, False), "Q5_0": (16, False), "Q4_1": (15, True), "Q5_1": (31, True)}


def legacy_imatrix(x, fmt, qw):
    """x: (rows, n) float32, qw: (n,) -> (rows, n // 32 * bytes) uint8."""
    nmax, asym = _LEGACY[fmt]
    rows, n = x.shape
    sigma2 = _div(_sum_sq(x), F32(n))                                    # (rows,)
    xb = x.reshape(-1, 32)
    wb = np.broadcast_to(qw.reshape(1, -1), x.shape).reshape(-1, 32)
    sig = np.repeat(sigma2, n // 32)[:, None]
    weight = _mul(wb, np.sqrt((sig + _mul(xb, xb)).astype(F32)))
    if asym:
        d, the_min, L = make_qkx_quants(xb, weight, nmax, -0.9, 0.05, 36, False, True)
        head = [u16_bytes(fp16_bits(d)), u16_bytes(fp16_bits(-the_min))]
    else:
        d, L = make_qx_quants(xb, nmax, weight)
        head = [u16_bytes(fp16_bits(d))]
    L = L.astype(np.int64)
    qs = ((L[:, :16] & 0xF) | ((L[:, 16:] & 0xF) << 4)).astype(np.uint8)
    if nmax > 15:
        qh = (((L >> 4) & 1) << np.arange(32)).sum(axis=1).astype(np.uint32)
        head.append(qh.reshape(-1, 1).view(np.uint8))
    return np.concatenate(head + [qs], axis=1).reshape(rows, -1)
