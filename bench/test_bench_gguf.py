"""GGUF block formats: lowbit (per ISA, 1 and 2 threads) vs the gguf package's NumPy code.

    python -m pytest bench/test_bench_gguf.py --benchmark-only --benchmark-group-by=group

Groups:
- ``kernel-L1-<fmt>``: the bare kernel on one thread, 4096 values (16 KiB, L1-resident),
  100 back-to-back calls per round through ``_C.gguf_time_kernel`` (no Python in the
  loop): the figure to set beside ggml's ``test-quantize-perf --size 4096``.
  ``extra_info["Gvalues_per_s"]`` is computed from the median of the rounds.
- ``quantize-<fmt>-<size>`` / ``dequantize-<fmt>-<size>``: the public API end to end
  (validation, allocation, threads) at an L2-sized (256 Ki values, 1 MiB) and a
  RAM-sized (16 Mi values, 64 MiB) input, against ``gguf.quants`` and the memory floor
  (``np.copyto`` of the same float32 bytes).
"""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import _C

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as GT  # noqa: E402

FORMATS = list(lowbit.gguf.FORMATS)
ISAS = lowbit.available_isas()
SIZES = {"L2": 256 * 1024, "RAM": 16 * 1024 * 1024}


def _data(n):
    return np.random.default_rng(0).standard_normal(n).astype(np.float32).reshape(-1, 4096)


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}t")
def threads(request):
    prev = lowbit.get_num_threads()
    lowbit.set_num_threads(request.param)
    yield request.param
    lowbit.set_num_threads(prev)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_kernel_l1(benchmark, fmt, isa):
    x = _data(4096).reshape(-1)
    inner = 100
    benchmark.group = f"kernel-L1-{fmt}"
    with lowbit.use_isa(isa):
        benchmark.pedantic(_C.gguf_time_kernel, args=(x, fmt, True, 1, inner), rounds=50, warmup_rounds=3)
    benchmark.extra_info["Gvalues_per_s"] = round(x.size * inner / benchmark.stats.stats.median / 1e9, 3)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_lowbit(benchmark, fmt, isa, size, threads):
    if isa == "scalar" and size == "RAM":
        pytest.skip("the scalar path at 64 MiB only repeats the L2 figure slowly")
    x = _data(SIZES[size])
    benchmark.group = f"quantize-{fmt}-{size}"
    with lowbit.use_isa(isa):
        benchmark(lowbit.gguf.quantize, x, fmt)
    benchmark.extra_info["Gvalues_per_s"] = round(x.size / benchmark.stats.stats.median / 1e9, 3)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_gguf_numpy(benchmark, fmt, size):
    x = _data(SIZES[size])
    benchmark.group = f"quantize-{fmt}-{size}"
    benchmark.pedantic(gguf.quants.quantize, args=(x, GT[fmt]), rounds=3 if size == "RAM" else 10)
    benchmark.extra_info["Gvalues_per_s"] = round(x.size / benchmark.stats.stats.median / 1e9, 3)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("fmt", ["Q8_0", "TQ2_0"])
def test_quantize_memory_floor(benchmark, fmt, size):
    x = _data(SIZES[size])
    dst = np.empty_like(x)
    benchmark.group = f"quantize-{fmt}-{size}"
    benchmark(np.copyto, dst, x)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_lowbit(benchmark, fmt, size, threads):
    x = _data(SIZES[size])
    blob = lowbit.gguf.quantize(x, fmt)
    benchmark.group = f"dequantize-{fmt}-{size}"
    benchmark(lowbit.gguf.dequantize, blob, fmt, x.shape)
    benchmark.extra_info["Gvalues_per_s"] = round(x.size / benchmark.stats.stats.median / 1e9, 3)


@pytest.mark.parametrize("size", ["L2"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_gguf_numpy(benchmark, fmt, size):
    x = _data(SIZES[size])
    blob = lowbit.gguf.quantize(x, fmt)
    benchmark.group = f"dequantize-{fmt}-{size}"
    benchmark.pedantic(gguf.quants.dequantize, args=(blob, GT[fmt]), rounds=10)
    benchmark.extra_info["Gvalues_per_s"] = round(x.size / benchmark.stats.stats.median / 1e9, 3)
