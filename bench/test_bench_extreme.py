"""Binary/ternary quantization and bit packing: lowbit (each ISA) vs the NumPy
reference vs plain NumPy, with the memory floor (bytes read + written over the
copy bandwidth measured in the same run) in extra_info.

    python -m pytest bench/test_bench_extreme.py --benchmark-only
    python bench/extreme_report.py          # one table with memory-floor ratios
"""
import numpy as np
import pytest

import lowbit
from lowbit import reference as ref

N = 4096
IMPLS = ["lowbit-" + i for i in lowbit.available_isas()] + ["reference", "numpy"]


@pytest.fixture(scope="module")
def ternary_codes():
    return np.random.default_rng(0).integers(-1, 2, (N, N)).astype(np.int8)


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)


# Plain NumPy versions of the layouts, as someone would write them by hand.
def np_pack_2bit(q):
    f = (q + 1).astype(np.uint8).reshape(q.shape[0], -1, 4)
    return f[..., 0] | (f[..., 1] << 2) | (f[..., 2] << 4) | (f[..., 3] << 6)


def np_unpack_2bit(p, n):
    f = (p[..., None] >> np.array([0, 2, 4, 6], np.uint8)) & 3
    return (f.reshape(p.shape[0], -1)[:, :n].astype(np.int8) - 1)


def np_pack_base3(q):
    d = (q + 1).astype(np.uint8).reshape(q.shape[0], -1)
    pad = (-d.shape[1]) % 5
    d = np.pad(d, ((0, 0), (0, pad))).reshape(d.shape[0], -1, 5)
    return (d * np.array([1, 3, 9, 27, 81], np.uint8)).sum(-1, dtype=np.uint8)


def np_unpack_base3(p, n):
    d = (p[..., None] // np.array([1, 3, 9, 27, 81], np.uint8)) % 3
    return d.reshape(p.shape[0], -1)[:, :n].astype(np.int8) - 1


def np_pack_4bit(q):
    f = (q & 15).astype(np.uint8).reshape(q.shape[0], -1, 2)
    return f[..., 0] | (f[..., 1] << 4)


def np_unpack_4bit(p, n):
    f = np.stack([p & 15, p >> 4], axis=-1).reshape(p.shape[0], -1)[:, :n]
    return ((f ^ 8).astype(np.int8) - 8)


# op -> (codes maker, lowbit pack, lowbit unpack, reference pack, reference unpack, numpy pack, numpy unpack)
def _ops(q):
    b = np.where(q >= 0, 1, -1).astype(np.int8)
    q4 = (q * 5).astype(np.int8)
    q3 = (q * 3).astype(np.int8)
    return {
        "1bit": (b, lambda c, **k: lowbit.pack(c, 1, **k), lambda p, **k: lowbit.unpack(p, 1, N, signed=True, **k),
                 lambda c: ref.pack(c, 1), lambda p: ref.unpack(p, 1, N, signed=True),
                 lambda c: np.packbits(c > 0, axis=-1, bitorder="little"),
                 lambda p: np.unpackbits(p, axis=-1, count=N, bitorder="little").astype(np.int8) * 2 - 1),
        "ternary-2bit": (q, lambda c, **k: lowbit.pack_ternary(c, "2bit", **k),
                         lambda p, **k: lowbit.unpack_ternary(p, N, "2bit", **k),
                         lambda c: ref.pack_ternary(c, "2bit"), lambda p: ref.unpack_ternary(p, N, "2bit"),
                         np_pack_2bit, lambda p: np_unpack_2bit(p, N)),
        "ternary-base3": (q, lambda c, **k: lowbit.pack_ternary(c, "base3", **k),
                          lambda p, **k: lowbit.unpack_ternary(p, N, "base3", **k),
                          lambda c: ref.pack_ternary(c, "base3"), lambda p: ref.unpack_ternary(p, N, "base3"),
                          np_pack_base3, lambda p: np_unpack_base3(p, N)),
        "4bit": (q4, lambda c, **k: lowbit.pack(c, 4, **k), lambda p, **k: lowbit.unpack(p, 4, N, signed=True, **k),
                 lambda c: ref.pack(c, 4), lambda p: ref.unpack(p, 4, N, signed=True),
                 np_pack_4bit, lambda p: np_unpack_4bit(p, N)),
        "3bit": (q3, lambda c, **k: lowbit.pack(c, 3, **k), lambda p, **k: lowbit.unpack(p, 3, N, signed=True, **k),
                 lambda c: ref.pack(c, 3), lambda p: ref.unpack(p, 3, N, signed=True), None, None),
    }


OPS = ["1bit", "ternary-2bit", "ternary-base3", "4bit", "3bit"]


def _run(benchmark, impl, fn_lowbit, fn_ref, fn_np, arg):
    if impl == "reference":
        benchmark.pedantic(fn_ref, (arg,), rounds=3, iterations=1)
    elif impl == "numpy":
        if fn_np is None:
            pytest.skip("no plain NumPy version")
        benchmark(fn_np, arg)
    else:
        with lowbit.use_isa(impl.split("-", 1)[1]):
            benchmark(fn_lowbit, arg)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_pack(benchmark, ternary_codes, op, impl, membw):
    codes, pk, _, rpk, _, npk, _ = _ops(ternary_codes)[op]
    benchmark.group = f"pack {op} {N}x{N}"
    _run(benchmark, impl, pk, rpk, npk, codes)
    benchmark.extra_info["memory_floor_ms"] = (codes.nbytes + pk(codes).nbytes) / membw * 1e3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("op", OPS)
def test_unpack(benchmark, ternary_codes, op, impl, membw):
    codes, pk, upk, _, rupk, _, nupk = _ops(ternary_codes)[op]
    packed = pk(codes)
    np.testing.assert_array_equal(upk(packed), codes)
    benchmark.group = f"unpack {op} {N}x{N}"
    _run(benchmark, impl, upk, rupk, nupk, packed)
    benchmark.extra_info["memory_floor_ms"] = (codes.nbytes + packed.nbytes) / membw * 1e3


def test_copy_floor(benchmark, ternary_codes):
    """The yardstick itself: a threaded memcpy of the 16 MiB of codes."""
    from lowbit import _C
    dst = np.empty_like(ternary_codes)
    benchmark.group = "copy 16 MiB"
    benchmark(_C.parallel_copy, dst, ternary_codes)


QUANT = [("ternarize", "absmean", {}), ("ternarize", "absmean", {"group_size": 128}),
         ("ternarize", "twn", {}), ("ternarize", "threshold", {}), ("binarize", "sign", {}),
         ("binarize", "bitnet", {}), ("binarize", "bitnet", {"axis": 0})]


@pytest.mark.parametrize("impl", IMPLS[:-1])
@pytest.mark.parametrize("fn,method,kw", QUANT, ids=lambda v: v if isinstance(v, str) else
                         ("-".join(f"{k}{w}" for k, w in v.items()) or "tensor"))
def test_quantize(benchmark, weight, fn, method, kw, impl, membw):
    benchmark.group = f"{fn} {method} {kw or 'per-tensor'} {N}x{N}"
    if impl == "reference":
        benchmark.pedantic(getattr(ref, fn), (weight, method), kw, rounds=2, iterations=1)
        return
    with lowbit.use_isa(impl.split("-", 1)[1]):
        benchmark(getattr(lowbit, fn), weight, method, **kw)
    benchmark.extra_info["memory_floor_ms"] = (weight.nbytes + weight.size) / membw * 1e3
