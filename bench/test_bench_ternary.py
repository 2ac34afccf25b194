"""Packed ternary / binary matmul: lowbit ternary and binary vs lowbit's int8 Linear vs float32
NumPy, weights 4096x4096, 11008x4096 and 4096x11008 (N x K), M in {1, 8, 128}, 2 threads; M=1 at
16384x16384 (weights larger than the LLC) against the memory floor measured in the same run.

    python -m pytest bench/test_bench_ternary.py --benchmark-only
    python bench/ternary_report.py        # one table: times, GOP/s, ratios to llama.cpp TQ2_0 and the floor

llama.cpp's TQ2_0 figures (ggml d99724f, AVX2, 2 threads, 4096x4096) quoted in issue 5:
M=1 167 us, M=8 1.24 ms, M=128 19.95 ms.
"""
import numpy as np
import pytest

import lowbit
from _util import activations

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]
MS = [1, 8, 128]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def weight(request):
    return np.random.default_rng(0).standard_normal(request.param).astype(np.float32) * 0.02


pytestmark = pytest.mark.usefixtures("two_threads")


def _group(benchmark, N, K, M):
    benchmark.group = f"ternary {N}x{K} M={M}"
    benchmark.extra_info["gop"] = 2 * M * N * K / 1e9


@pytest.mark.parametrize("M", MS)
@pytest.mark.parametrize("isa", lowbit.available_isas())
@pytest.mark.parametrize("kind", ["ternary", "binary"])
def test_lowbit(benchmark, weight, M, isa, kind):
    if isa == "scalar" and M > 1:
        pytest.skip("scalar path: M=1 only (seconds per call otherwise)")
    N, K = weight.shape
    _group(benchmark, N, K, M)
    layer = lowbit.BitLinear.from_float(weight, binary=kind == "binary")
    x = activations(M, K)
    with lowbit.use_isa(isa):
        benchmark(layer, x)


@pytest.mark.parametrize("M", MS)
def test_lowbit_int8_linear(benchmark, weight, M):
    N, K = weight.shape
    _group(benchmark, N, K, M)
    layer = lowbit.Linear(weight)
    benchmark(layer, activations(M, K))


@pytest.mark.parametrize("M", [1])
def test_reference(benchmark, weight, M):
    N, K = weight.shape
    if (N, K) != (4096, 4096):
        pytest.skip("the NumPy reference is timed at 4096x4096 only")
    _group(benchmark, N, K, M)
    tw = lowbit.TernaryWeight.from_float(weight)
    benchmark(lowbit.reference.ternary_matmul, activations(M, K), tw)


@pytest.mark.parametrize("M", MS)
def test_numpy_float32(benchmark, weight, M):
    N, K = weight.shape
    _group(benchmark, N, K, M)
    wt = np.ascontiguousarray(weight.T)
    benchmark(np.matmul, activations(M, K), wt)


# ---- weights larger than the LLC: M=1 against the memory floor ----------------

BIG = (16384, 16384)


@pytest.fixture(scope="module")
def big_codes():
    rng = np.random.default_rng(2)
    return rng.integers(-1, 2, BIG).astype(np.int8)


@pytest.mark.parametrize("kind", ["ternary", "binary", "floor-ternary", "floor-binary"])
def test_big_m1(benchmark, big_codes, kind):
    from lowbit import _C
    N, K = BIG
    benchmark.group = f"ternary {N}x{K} M=1 (weights > LLC)"
    if kind.startswith("floor"):
        # The memory floor: a threaded AVX2 read (min/max) of as many bytes as the packed weight.
        nbytes = N * (K // 4 if kind == "floor-ternary" else K // 8)
        buf = np.ones(nbytes // 4, np.float32)
        benchmark(_C.affine_range, buf, "groups", 1, buf.size, buf.size)
        return
    if kind == "ternary":
        w = lowbit.TernaryWeight.from_codes(big_codes, 0.01)
        f = lowbit.ternary_matmul
    else:
        w = lowbit.BinaryWeight.from_codes(np.where(big_codes >= 0, 1, -1).astype(np.int8), 0.01)
        f = lowbit.binary_matmul
    benchmark.extra_info["weight_bytes"] = int(w.packed.nbytes)
    benchmark(f, activations(1, K), w)
