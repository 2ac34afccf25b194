"""Calibration (SPEC 4) and codebooks (SPEC 9): lowbit (each ISA) vs the NumPy reference.

    python -m pytest bench/test_bench_calib.py --benchmark-only

The reference runs once per case (it takes tens of seconds for MSE on 16.8M
values); the exact k-means reference is not run at 16.8M values (a Python
dynamic program over ~16M distinct values), only at 65536.
"""
import numpy as np
import pytest

import lowbit
from lowbit import reference as ref

IMPLS = ["lowbit-" + i for i in lowbit.available_isas()] + ["reference"]


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(0).standard_normal((4096, 4096)).astype(np.float32)


def run(benchmark, impl, fn_native, fn_ref, *args, ref_rounds=1, **kw):
    if impl == "reference":
        benchmark.pedantic(fn_ref, args, kw, rounds=ref_rounds, iterations=1)
        return
    with lowbit.use_isa(impl.split("-", 1)[1]):
        benchmark.pedantic(fn_native, args, kw, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method", ["mse", "kl", "percentile"])
def test_calibrate_per_tensor(benchmark, weight, impl, method):
    benchmark.group = f"calibrate {method} per-tensor int8 4096x4096"
    run(benchmark, impl, lowbit.calibrate, ref.calibrate, weight, method, 8)


@pytest.mark.parametrize("impl", ["lowbit-" + i for i in lowbit.available_isas()])
@pytest.mark.parametrize("gran", ["channel", "group128"])
@pytest.mark.parametrize("method", ["mse", "percentile"])
def test_calibrate_granular(benchmark, weight, impl, gran, method):
    benchmark.group = f"calibrate {method} {gran} int8 4096x4096"
    kw = dict(axis=0) if gran == "channel" else dict(group_size=128)
    run(benchmark, impl, lowbit.calibrate, ref.calibrate, weight, method, 8, **kw)


@pytest.mark.parametrize("impl", ["lowbit-" + i for i in lowbit.available_isas()])
def test_kmeans16_16M(benchmark, weight, impl):
    benchmark.group = "kmeans k=16 4096x4096"
    run(benchmark, impl, lowbit.kmeans_codebook, None, weight, 16)


@pytest.mark.parametrize("impl", IMPLS)
def test_kmeans16_64K(benchmark, weight, impl):
    benchmark.group = "kmeans k=16 65536 values (exact path)"
    run(benchmark, impl, lowbit.kmeans_codebook, ref.kmeans_codebook, weight.reshape(-1)[:65536], 16)


@pytest.mark.parametrize("impl", IMPLS)
def test_nf4_quantize(benchmark, weight, impl):
    benchmark.group = "nf4 quantize 4096x4096"
    run(benchmark, impl, lowbit.quantize, ref.quantize, weight, 4, scheme="nf4", ref_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_nf4_dequantize(benchmark, weight, impl):
    benchmark.group = "nf4 dequantize 4096x4096"
    qt = lowbit.quantize(weight, 4, scheme="nf4")
    run(benchmark, impl, qt.dequantize, ref.dequantize, *(() if impl != "reference" else (qt,)))
