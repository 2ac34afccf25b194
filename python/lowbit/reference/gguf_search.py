"""Reference ``search=True`` encoders (csrc/gguf/gguf_search.h), NumPy only.

The native search encoders write llama.cpp's formats (Q4_K, Q5_K, Q6_K, IQ4_XS,
IQ4_NL) with scales searched harder than ggml's heuristics; this is the same
algorithm written out in NumPy, vectorized over blocks, and its bytes are the
native bytes exactly (tests/test_gguf_search.py). Per block:

1. ggml's own encoding (``gguf_k``, byte-identical to ``ggml_quantize_chunk``);
2. coordinate descent on the stored integers from ggml's scales, and again from
   a continuous least-squares fit of every sub-block, the better of the two
   kept (the objective: sum w (x - y)^2, w the importance matrix or 1);
3. the candidate is decoded with the format's decoder and replaces ggml's block
   only if its error is strictly lower (never worse than llama.cpp's encoder).

Bit-exactness needs the C++'s arithmetic: float32 where the C++ computes in
float (no FMA: the native build has ``-ffp-contract=off``), float64 for the
error sums, every sum a left-to-right loop (``_seq``: ``np.add.accumulate``,
which is sequential), ``nearest_int``/``lrintf`` rounding (ties to even), and
the C++'s strict ``<`` scans: over a fixed candidate list, "the first candidate
strictly below the running best" is the first index of the minimum, when that
minimum is below the start (``_pick``; a NaN error never wins in C++, here it is
+Inf).

Functions take ``(nblocks, block)`` float32 (finite) and ``(nblocks, block)``
importance weights or None, and return ``(nblocks, bytes)`` uint8.
"""
from __future__ import annotations

import numpy as np

from . import gguf_k as K

F32 = np.float32
F64 = np.float64
ROUNDS = 2          # kRounds
BIG = 1e300         # the C++'s "no candidate yet" error
GRID = K.KVALUES_IQ4NL.astype(F32)
IQ4_MID = np.array([-115.5, -93.5, -74., -57., -42., -28.5, -16., -4.5, 7., 19., 31.5, 45.5, 61., 79., 101.], F32)


# ---- arithmetic as the C++ does it ---------------------------------------------------

def _f(v):
    return np.asarray(v).astype(F32)


def _seq(t):
    """``double e = 0; for (i...) e += t[i];`` along the last axis."""
    return np.add.accumulate(np.asarray(t, F64), axis=-1)[..., -1]


def _heavy(w):
    """The masks (G, 32) of the values weighing at least 1/4, 1/2 and 1 times their sub-block's mean
    weight, ``w[i] * 32 >= f * sum w`` in double (gguf_search.h's heavy; the fits' extra starts)."""
    w64 = w.astype(F64)
    swt = _seq(w64)
    return [w64 * 32.0 >= f * swt[:, None] for f in (0.25, 0.5, 1.0)]


def _round_i(v):
    """``static_cast<int>(std::lrintf(v))`` on x86-64: ties to even; NaN/Inf/out of range -> 0."""
    v = np.asarray(v, F32)
    ok = np.isfinite(v) & (np.abs(v) < F32(2.0 ** 31))
    return np.where(ok, np.rint(np.where(ok, v, 0)), 0).astype(np.int64)


def _inv(v):
    """``v != 0 ? 1.0f / v : 0.0f``."""
    v = np.asarray(v, F32)
    return np.where(v != 0, F32(1) / np.where(v != 0, v, F32(1)), F32(0)).astype(F32)


def _rcp(v):
    """``1.0f / v`` (Inf for 0, as in the C++'s fits, which do not test for it)."""
    return (F32(1) / np.asarray(v, F32)).astype(F32)


def _pick(e, start):
    """The C++ scan ``for c in candidates: if (e[c] < best) {best = e[c]; pick = c}`` from ``best = start``:
    (picked?, index, best) over the last axis."""
    e = np.where(np.isnan(e), np.inf, e)
    i = np.argmin(e, axis=-1)
    m = np.take_along_axis(e, i[..., None], -1)[..., 0]
    better = m < start
    return better, i, np.where(better, m, start)


def _take(a, i):
    return np.take_along_axis(a, i[..., None], -1)[..., 0]


def _wterms(w, r):
    """``(w ? w[i] : 1) * r * r`` in double."""
    return r * r if w is None else (np.asarray(w, F64) * r) * r


def _half(v):
    return K.fp16_round(v)


def _weighted_error(x, w, y):
    r = x.astype(F64) - y.astype(F64)
    return _seq(_wterms(w, r))


# ---- Q4_K / Q5_K: y = (d*ls)*q - dmin*lm --------------------------------------------

def _qk45_err(x, w, d, dmin, ls, lm, nmax, codes=False):
    """qk45_sub_error: x (..., 32); d, dmin, ls, lm broadcast to x.shape[:-1]."""
    dl = _f(d) * _f(ls)
    ml = _f(dmin) * _f(lm)
    idl = _inv(dl)
    l = np.clip(K.nearest_int((x + ml[..., None]) * idl[..., None]), 0, nmax)
    y = dl[..., None] * _f(l) - ml[..., None]
    e = _seq(_wterms(w, x.astype(F64) - y.astype(F64)))
    return (e, l) if codes else e


def _sub_w(w, j):
    return None if w is None else w[:, j]


def _qk45_search(x, w, d, dmin, ls, lm, nmax):
    """qk45_search: x (B, 8, 32); d, dmin (B,) float32; ls, lm (B, 8) int64 (updated copies returned)."""
    ls, lm = ls.copy(), lm.copy()
    err = _qk45_err(x, w, d[:, None], dmin[:, None], ls, lm, nmax)
    a = np.repeat(np.arange(-2, 3), 5)
    b = np.tile(np.arange(-2, 3), 5)
    for _ in range(ROUNDS):
        for j in range(8):   # each sub-block's (scale, min) codes over a 5x5 window
            s = np.clip(ls[:, j, None] + a, 0, 63)
            m = np.clip(lm[:, j, None] + b, 0, 63)
            e = _qk45_err(x[:, j, None], None if w is None else w[:, j, None], d[:, None], dmin[:, None], s, m, nmax)
            ok, i, err[:, j] = _pick(e, err[:, j])
            ls[:, j] = np.where(ok, _take(s, i), ls[:, j])
            lm[:, j] = np.where(ok, _take(m, i), lm[:, j])
        for which in range(2):   # the super-block scale, then the min scale, codes rescaled
            base = d if which == 0 else dmin
            active = base != 0
            best_total = _seq(err)
            for k in range(-6, 7):
                if k == 0:
                    continue
                cand = _half(base * (F32(1) + F32(k) / F32(128)))
                valid = active & (cand != base) & np.isfinite(cand)
                cur = ls if which == 0 else lm
                c0 = _round_i(_f(cur) * base[:, None] / cand[:, None])
                c = np.clip(c0[..., None] + np.arange(-1, 2), 0, 63)              # (B, 8, 3)
                if which == 0:
                    e = _qk45_err(x[:, :, None], None if w is None else w[:, :, None], cand[:, None, None],
                                  dmin[:, None, None], c, lm[..., None], nmax)
                else:
                    e = _qk45_err(x[:, :, None], None if w is None else w[:, :, None], d[:, None, None],
                                  cand[:, None, None], ls[..., None], c, nmax)
                ok, i, e_j = _pick(e, np.full(e.shape[:-1], BIG))
                c_j = np.where(ok, _take(c, i), cur)
                total = _seq(e_j)
                acc = valid & (total < best_total)
                best_total = np.where(acc, total, best_total)
                if which == 0:
                    d = np.where(acc, cand, d).astype(F32)
                    ls = np.where(acc[:, None], c_j, ls)
                else:
                    dmin = np.where(acc, cand, dmin).astype(F32)
                    lm = np.where(acc[:, None], c_j, lm)
                err = np.where(acc[:, None], e_j, err)
    return d, dmin, ls, lm


def _qk45_fit(x, w, nmax):
    """qk45_fit on sub-blocks x (G, 32): (scale, offset) float32 (G,) each. The starts: 25 steps over the
    sub-block's range and, with weights, over the range of the values weighing at least 1/4, 1/2 and 1
    times the mean (``w * 32 >= f * sum w`` in double), in that order (the C++'s loop order)."""
    G = x.shape[0]
    mn = x.min(axis=1)
    mx = x.max(axis=1)
    mn = np.where(mn > 0, F32(0), mn).astype(F32)
    t = np.arange(-16, 9)
    los, his, oks = [mn], [mx], [mx > mn]
    if w is not None:
        for sel in _heavy(w):
            any_ = sel.any(axis=1)
            lo = np.where(sel, x, np.inf).min(axis=1)
            hi = np.where(sel, x, -np.inf).max(axis=1)
            lo = np.where(any_, np.where(lo > 0, 0, lo), mn).astype(F32)
            hi = np.where(any_, hi, mx).astype(F32)
            los.append(lo)
            his.append(hi)
            oks.append((mx > mn) & any_ & (hi > lo))
    s = np.concatenate([((h - l)[:, None] / (F32(nmax) + F32(0.25) * _f(t))).astype(F32)
                        for l, h in zip(los, his)], axis=1)                         # (G, R*25)
    m = np.concatenate([np.repeat(l[:, None], t.size, axis=1) for l in los], axis=1)
    alive = np.concatenate([np.repeat(o[:, None], t.size, axis=1) for o in oks], axis=1)
    xg = x[:, None, :]
    x64 = xg.astype(F64)
    wi = np.ones((G, 1, 32)) if w is None else w[:, None, :].astype(F64)
    es, ss, ms = [], [], []
    for _ in range(3):
        L = np.clip(K.nearest_int((xg - m[..., None]) * _rcp(s)[..., None]), 0, nmax)
        r = (xg - (s[..., None] * _f(L) + m[..., None])).astype(F64)
        e = _seq((wi * r) * r)
        es.append(np.where(alive, e, np.inf))
        ss.append(s)
        ms.append(m)
        Ld = L.astype(F64)
        sw, sl, sl2 = _seq(np.broadcast_to(wi, r.shape)), _seq(wi * Ld), _seq((wi * Ld) * Ld)
        sx, sxl = _seq(wi * x64), _seq((wi * x64) * Ld)
        D = sw * sl2 - sl * sl
        alive = alive & (D > 0)
        Ds = np.where(D > 0, D, 1)
        ns, nm = (sw * sxl - sx * sl) / Ds, (sl2 * sx - sl * sxl) / Ds
        clip = nm > 0
        nm = np.where(clip, 0.0, nm)
        ns = np.where(clip, np.where(sl2 > 0, sxl / np.where(sl2 > 0, sl2, 1), 0.0), ns)
        alive = alive & (ns > 0)
        s, m = np.where(alive, ns, 1).astype(F32), np.where(alive, nm, 0).astype(F32)
    e = np.stack(es, axis=2).reshape(G, -1)   # (range, t, it) order, as the C++ loops
    ok, i, _ = _pick(e, np.full(G, BIG))
    s_out = np.where(ok, _take(np.stack(ss, axis=2).reshape(G, -1), i), F32(0)).astype(F32)
    m_out = np.where(ok, _take(np.stack(ms, axis=2).reshape(G, -1), i), mn).astype(F32)
    return s_out, m_out


def _qk45_from_fit(x, w, nmax):
    B = x.shape[0]
    sc, m = _qk45_fit(x.reshape(-1, 32), None if w is None else w.reshape(-1, 32), nmax)
    sc, mi = sc.reshape(B, 8), (-m).reshape(B, 8)
    max_s = np.maximum(sc.max(axis=1), F32(0))
    max_m = np.maximum(mi.max(axis=1), F32(0))
    d = _half(max_s / F32(63))
    dmin = _half(max_m / F32(63))
    ls = np.where(d[:, None] > 0, np.clip(_round_i(sc / np.where(d > 0, d, 1)[:, None]), 0, 63), 0)
    lm = np.where(dmin[:, None] > 0, np.clip(_round_i(mi / np.where(dmin > 0, dmin, 1)[:, None]), 0, 63), 0)
    return d, dmin, ls, lm


def _qk45(x, qw, nmax):
    B = x.shape[0]
    base = (K.q4_k if nmax == 15 else K.q5_k)(x, qw)
    dec = K.dq4_k if nmax == 15 else K.dq5_k
    xs = x.reshape(B, 8, 32)
    ws = None if qw is None else qw.reshape(B, 8, 32)
    d = K.fp16_from_bits(base[:, 0:2].copy().view(np.uint16)[:, 0])
    dmin = K.fp16_from_bits(base[:, 2:4].copy().view(np.uint16)[:, 0])
    ls, lm = K._unpack_scale_min_k4(base[:, 4:16])
    live = np.isfinite(d) & np.isfinite(dmin)
    d, dmin = np.where(live, d, 0).astype(F32), np.where(live, dmin, 0).astype(F32)
    d, dmin, ls, lm = _qk45_search(xs, ws, d, dmin, ls, lm, nmax)
    d2, dmin2, ls2, lm2 = _qk45_from_fit(xs, ws, nmax)
    fit_ok = np.isfinite(d2) & np.isfinite(dmin2)
    d2, dmin2 = np.where(fit_ok, d2, 0).astype(F32), np.where(fit_ok, dmin2, 0).astype(F32)
    d2, dmin2, ls2, lm2 = _qk45_search(xs, ws, d2, dmin2, ls2, lm2, nmax)
    t1 = _seq(_qk45_err(xs, ws, d[:, None], dmin[:, None], ls, lm, nmax))
    t2 = _seq(_qk45_err(xs, ws, d2[:, None], dmin2[:, None], ls2, lm2, nmax))
    use2 = fit_ok & (t2 < t1)
    d, dmin = np.where(use2, d2, d).astype(F32), np.where(use2, dmin2, dmin).astype(F32)
    ls, lm = np.where(use2[:, None], ls2, ls), np.where(use2[:, None], lm2, lm)
    _, L = _qk45_err(xs, ws, d[:, None], dmin[:, None], ls, lm, nmax, codes=True)
    L = L.reshape(B, 256)
    q = L.reshape(B, 4, 2, 32)
    head = [K.u16_bytes(K.fp16_bits(d)), K.u16_bytes(K.fp16_bits(dmin)), K._pack_scale_min_k4(ls, lm)]
    if nmax == 15:
        body = [(q[:, :, 0] | (q[:, :, 1] << 4)).reshape(B, 128).astype(np.uint8)]
    else:
        qs = ((q[:, :, 0] & 0xF) | ((q[:, :, 1] & 0xF) << 4)).reshape(B, 128).astype(np.uint8)
        hi = (q >> 4) & 1
        qh = (hi.reshape(B, 8, 32) << np.arange(8).reshape(1, 8, 1)).sum(axis=1).astype(np.uint8)
        body = [qh, qs]
    cand = np.concatenate(head + body, axis=1)
    return _keep_better(x, qw, cand, base, dec, live)


def _keep_better(x, qw, cand, base, dec, live, check_finite=True):
    """keep_better: the candidate where it decodes (finite) to a strictly lower weighted error."""
    y0, y1 = dec(base), dec(cand)
    better = _weighted_error(x, qw, y1) < _weighted_error(x, qw, y0)
    if check_finite:
        better &= np.isfinite(y1).all(axis=1)
    better &= live
    return np.where(better[:, None], cand, base)


def q4_k(x, qw):
    return _qk45(x, qw, 15)


def q5_k(x, qw):
    return _qk45(x, qw, 31)


# ---- Q6_K: y = (d*sc)*q --------------------------------------------------------------

def _q6_err(x, w, d, sc, codes=False):
    dl = _f(d) * _f(sc)
    idl = _inv(dl)
    l = np.clip(K.nearest_int(x * idl[..., None]), -32, 31)
    y = dl[..., None] * _f(l)
    e = _seq(_wterms(w, x.astype(F64) - y.astype(F64)))
    return (e, l) if codes else e


def _q6_descend(x, w, d, sc):
    """q6_descend: x (B, 16, 16), d (B,), sc (B, 16)."""
    sc = sc.copy()
    err = _q6_err(x, w, d[:, None], sc)
    a = np.arange(-3, 4)
    for _ in range(ROUNDS):
        for j in range(16):
            s = np.clip(sc[:, j, None] + a, -128, 127)
            e = _q6_err(x[:, j, None], None if w is None else w[:, j, None], d[:, None], s)
            ok, i, err[:, j] = _pick(e, err[:, j])
            sc[:, j] = np.where(ok, _take(s, i), sc[:, j])
        best_total = _seq(err)
        base = d
        for k in range(-8, 9):
            if k == 0:
                continue
            cand = _half(base * (F32(1) + F32(k) / F32(256)))
            valid = (cand != base) & np.isfinite(cand) & (cand != 0)
            c0 = _round_i(_f(sc) * base[:, None] / cand[:, None])
            c = np.clip(c0[..., None] + np.arange(-1, 2), -128, 127)
            e = _q6_err(x[:, :, None], None if w is None else w[:, :, None], cand[:, None, None], c)
            ok, i, e_j = _pick(e, np.full(e.shape[:-1], BIG))
            c_j = np.where(ok, _take(c, i), sc)
            total = _seq(e_j)
            acc = valid & (total < best_total)
            best_total = np.where(acc, total, best_total)
            d = np.where(acc, cand, d).astype(F32)
            sc = np.where(acc[:, None], c_j, sc)
            err = np.where(acc[:, None], e_j, err)
    return d, sc


def _q6_from_fit(x, w):
    """q6_from_fit: continuous per-16 scales, then d = max |scale| / 127 and the codes."""
    B = x.shape[0]
    xg = x.reshape(-1, 1, 16)
    G = xg.shape[0]
    wi = np.ones((G, 1, 16)) if w is None else w.reshape(-1, 1, 16).astype(F64)
    amax = np.abs(xg[:, 0]).max(axis=1)
    sgn = np.repeat([-1, 1], 29)
    t = np.tile(np.arange(29), 2)
    s = (_f(sgn) * amax[:, None] / (F32(20) + F32(0.5) * _f(t))).astype(F32)      # (G, 58)
    alive = np.repeat((amax != 0)[:, None], t.size, axis=1)
    x64 = xg.astype(F64)
    es, ss = [], []
    for _ in range(2):
        l = np.clip(K.nearest_int(xg * _rcp(s)[..., None]), -32, 31)
        r = (xg - s[..., None] * _f(l)).astype(F64)
        e = _seq((wi * r) * r)
        es.append(np.where(alive, e, np.inf))
        ss.append(s)
        ld = l.astype(F64)
        slx, sl2 = _seq((wi * x64) * ld), _seq((wi * ld) * ld)
        alive = alive & (sl2 > 0) & (slx != 0)
        s = np.where(alive, slx / np.where(sl2 > 0, sl2, 1), 1).astype(F32)
    e = np.stack(es, axis=2).reshape(G, -1)
    ok, i, _ = _pick(e, np.full(G, BIG))
    s_j = np.where(ok, _take(np.stack(ss, axis=2).reshape(G, -1), i), F32(0)).astype(F32).reshape(B, 16)
    amax_s = np.maximum(np.abs(s_j).max(axis=1), F32(0))
    d = _half(amax_s / F32(127))
    good = (d > 0) & np.isfinite(d)
    sc = np.clip(_round_i(s_j / np.where(good, d, 1)[:, None]), -128, 127)
    return good, np.where(good, d, 0).astype(F32), sc


def q6_k(x, qw):
    B = x.shape[0]
    base = K.q6_k(x, qw)
    xs = x.reshape(B, 16, 16)
    ws = None if qw is None else qw.reshape(B, 16, 16)
    d = K.fp16_from_bits(base[:, 208:210].copy().view(np.uint16)[:, 0])
    live = np.isfinite(d) & (d != 0)
    d = np.where(live, d, 0).astype(F32)
    sc = base[:, 192:208].view(np.int8).astype(np.int64)
    d, sc = _q6_descend(xs, ws, d, sc)
    good, d2, sc2 = _q6_from_fit(xs, ws)
    d2, sc2 = _q6_descend(xs, ws, d2, sc2)
    use2 = good & (_seq(_q6_err(xs, ws, d2[:, None], sc2)) < _seq(_q6_err(xs, ws, d[:, None], sc)))
    d = np.where(use2, d2, d).astype(F32)
    sc = np.where(use2[:, None], sc2, sc)
    _, L = _q6_err(xs, ws, d[:, None], sc, codes=True)
    L = (L.reshape(B, 2, 4, 32) + 32)
    ql = np.concatenate([(L[:, :, 0] & 0xF) | ((L[:, :, 2] & 0xF) << 4),
                         (L[:, :, 1] & 0xF) | ((L[:, :, 3] & 0xF) << 4)], axis=2).reshape(B, 128)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) |
          ((L[:, :, 3] >> 4) << 6)).reshape(B, 64)
    cand = np.concatenate([ql.astype(np.uint8), qh.astype(np.uint8), (sc & 0xFF).astype(np.uint8),
                           K.u16_bytes(K.fp16_bits(d))], axis=1)
    return _keep_better(x, qw, cand, base, K.dq6_k, live)


# ---- IQ4_XS / IQ4_NL: y = (d*l)*kvalues[q] -------------------------------------------

def _iq4_nearest(v):
    """The grid index nearest to v: the count of grid midpoints strictly below v (NaN -> 0)."""
    v = np.asarray(v, F32)
    return np.where(np.isnan(v), 0, np.searchsorted(IQ4_MID, v, side="left"))


def _iq4_err(x, w, dl, codes=False):
    dl = _f(dl)
    k = _iq4_nearest(_inv(dl)[..., None] * x)
    y = dl[..., None] * GRID[k]
    e = _seq(_wterms(w, x.astype(F64) - y.astype(F64)))
    return (e, k) if codes else e


def _iq4xs_descend(x, w, d, ls):
    """iq4xs_descend: x (B, 8, 32), d (B,), ls (B, 8) in [-32, 31]."""
    ls = ls.copy()
    err = _iq4_err(x, w, d[:, None] * _f(ls))
    a = np.arange(-2, 3)
    for _ in range(ROUNDS):
        for j in range(8):
            s = np.clip(ls[:, j, None] + a, -32, 31)
            e = _iq4_err(x[:, j, None], None if w is None else w[:, j, None], d[:, None] * _f(s))
            ok, i, err[:, j] = _pick(e, err[:, j])
            ls[:, j] = np.where(ok, _take(s, i), ls[:, j])
        best_total = _seq(err)
        base = d
        for k in range(-6, 7):
            if k == 0:
                continue
            cand = _half(base * (F32(1) + F32(k) / F32(128)))
            valid = (cand != base) & np.isfinite(cand) & (cand != 0)
            c0 = _round_i(_f(ls) * base[:, None] / cand[:, None])
            c = np.clip(c0[..., None] + np.arange(-1, 2), -32, 31)
            e = _iq4_err(x[:, :, None], None if w is None else w[:, :, None], cand[:, None, None] * _f(c))
            ok, i, e_j = _pick(e, np.full(e.shape[:-1], BIG))
            c_j = np.where(ok, _take(c, i), ls)
            total = _seq(e_j)   # the C++ stops summing once total >= best_total: the same decision
            acc = valid & (total < best_total)
            best_total = np.where(acc, total, best_total)
            d = np.where(acc, cand, d).astype(F32)
            ls = np.where(acc[:, None], c_j, ls)
            err = np.where(acc[:, None], e_j, err)
    return d, ls


def _iq4_fit(x, w):
    """iq4_fit on sub-blocks x (G, 32): the continuous scale on the IQ4 grid, float32 (G,). Starts from the
    signed absmax and, with weights, from that of the values weighing at least 1/4, 1/2 and 1 times the
    mean (``w * 32 >= f * sum w`` in double), in the C++'s loop order (range, end, ratio)."""
    G = x.shape[0]
    amax, mx = K._first_absmax(x)
    end = np.repeat([0, 1], 25)
    k = np.tile(np.arange(-8, 17), 2)
    v0 = np.where(end == 1, F32(-127), F32(113)).astype(F32)
    tops, oks = [mx], [amax != 0]
    if w is not None:
        for sel in _heavy(w):
            ra, top = K._first_absmax(np.where(sel, x, F32(0)).astype(F32))
            tops.append(top)
            oks.append((amax != 0) & (ra != 0))
    d = np.concatenate([(t[:, None] / (v0 * (F32(1) + _f(k) / F32(64)))).astype(F32) for t in tops], axis=1)
    alive = np.concatenate([np.repeat(o[:, None], k.size, axis=1) for o in oks], axis=1)   # (G, R*50)
    xg = x[:, None, :]
    x64 = xg.astype(F64)
    wi = np.ones((G, 1, 32)) if w is None else w[:, None, :].astype(F64)
    es, ds = [], []
    for _ in range(2):
        q = GRID[_iq4_nearest(xg * _rcp(d)[..., None])]
        r = (xg - d[..., None] * q).astype(F64)
        e = _seq((wi * r) * r)
        es.append(np.where(alive, e, np.inf))
        ds.append(d)
        q64 = q.astype(F64)
        sqx, sq2 = _seq((wi * q64) * x64), _seq((wi * q64) * q64)
        alive = alive & (sq2 > 0) & (sqx != 0)
        d = np.where(alive, sqx / np.where(sq2 > 0, sq2, 1), 1).astype(F32)
    e = np.stack(es, axis=2).reshape(G, -1)
    ok, i, _ = _pick(e, np.full(G, BIG))
    return np.where(ok, _take(np.stack(ds, axis=2).reshape(G, -1), i), F32(0)).astype(F32)


def iq4_xs(x, qw):
    B = x.shape[0]
    base = K.iq4_xs(x, qw)
    xs = x.reshape(B, 8, 32)
    ws = None if qw is None else qw.reshape(B, 8, 32)
    d = K.fp16_from_bits(base[:, 0:2].copy().view(np.uint16)[:, 0])
    live = np.isfinite(d) & (d != 0)
    d = np.where(live, d, 0).astype(F32)
    sh = base[:, 2:4].copy().view(np.uint16)[:, 0].astype(np.int64)
    sl = base[:, 4:8].astype(np.int64)
    ib = np.arange(8)
    ls = (((sl[:, ib // 2] >> (4 * (ib % 2))) & 0xF) | (((sh[:, None] >> (2 * ib)) & 3) << 4)) - 32
    d, ls = _iq4xs_descend(xs, ws, d, ls)
    # the second start: fitted sub-block scales, d = -(the one of largest magnitude) / 32
    s_j = _iq4_fit(x.reshape(-1, 32), None if qw is None else qw.reshape(-1, 32)).reshape(B, 8)
    _, max_s = K._first_absmax(s_j)
    d2 = _half(-max_s / F32(32))
    good = (d2 != 0) & np.isfinite(d2)
    d2 = np.where(good, d2, F32(1)).astype(F32)
    ls2 = np.clip(_round_i(s_j / d2[:, None]), -32, 31)
    d2, ls2 = _iq4xs_descend(xs, ws, d2, ls2)
    t1 = _seq(_iq4_err(xs, ws, d[:, None] * _f(ls)))
    t2 = _seq(_iq4_err(xs, ws, d2[:, None] * _f(ls2)))
    use2 = good & (t2 < t1)
    d = np.where(use2, d2, d).astype(F32)
    ls = np.where(use2[:, None], ls2, ls)
    _, L = _iq4_err(xs, ws, d[:, None] * _f(ls), codes=True)
    l = ls + 32
    scales_l = ((l[:, 0::2] & 0xF) | ((l[:, 1::2] & 0xF) << 4)).astype(np.uint8)
    scales_h = ((l >> 4) << (2 * np.arange(8))).sum(axis=1).astype(np.uint16)
    cand = np.concatenate([K.u16_bytes(K.fp16_bits(d)), K.u16_bytes(scales_h), scales_l,
                           K._pack_iq4(L.reshape(B, 256))], axis=1)
    return _keep_better(x, qw, cand, base, K.diq4_xs, live)


def iq4_nl(x, qw):
    B = x.shape[0]
    base = K.iq4_nl(x, qw)
    d0 = K.fp16_from_bits(base[:, 0:2].copy().view(np.uint16)[:, 0])
    live = np.isfinite(d0) & (d0 != 0)
    d0 = np.where(live, d0, 0).astype(F32)
    best = _iq4_err(x, qw, d0)
    best_d = d0
    fit = _half(_iq4_fit(x, qw))
    e = _iq4_err(x, qw, fit)
    use = (fit != 0) & np.isfinite(fit) & (e < best)
    best = np.where(use, e, best)
    best_d = np.where(use, fit, best_d).astype(F32)
    base_d = best_d
    steps = F32(1) + _f(np.arange(-12, 13)) / F32(256)
    cands = np.concatenate([_half(base_d[:, None] * steps), _half(-base_d[:, None] * steps)], axis=1)   # (B, 50)
    e = _iq4_err(x[:, None], None if qw is None else qw[:, None], cands)
    e = np.where(np.isfinite(cands) & (cands != 0), e, np.inf)
    ok, i, best = _pick(e, best)
    best_d = np.where(ok, _take(cands, i), best_d).astype(F32)
    _, L = _iq4_err(x, qw, best_d, codes=True)
    cand = np.concatenate([K.u16_bytes(K.fp16_bits(best_d)), K._pack_iq4(L)], axis=1)
    return _keep_better(x, qw, cand, base, K.diq4_nl, live, check_finite=False)


QUANT = {"Q4_K": q4_k, "Q5_K": q5_k, "Q6_K": q6_k, "IQ4_XS": iq4_xs, "IQ4_NL": iq4_nl}


def encode(xb: np.ndarray, w, fmt: str) -> np.ndarray:
    """The search encoder of ``fmt`` on blocks ``xb`` (nblocks, block) with weights ``w`` (same shape) or None."""
    with np.errstate(all="ignore"):   # Inf/NaN inside the searches are defined by the C++ they mirror
        return QUANT[fmt](np.ascontiguousarray(xb, F32), None if w is None else np.ascontiguousarray(w, F32))
