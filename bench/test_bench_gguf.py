"""GGUF block formats: lowbit (per ISA, 1 and 2 threads) vs the gguf package's NumPy code.

    python -m pytest bench/test_bench_gguf.py --benchmark-only --benchmark-group-by=group

Groups:
- ``kernel-L1-<fmt>``: the bare kernel on one thread, 4096 values (16 KiB, L1-resident),
  100 back-to-back calls per round through ``_C.gguf_time_kernel`` (no Python in the
  loop): the figure to set beside ggml's ``test-quantize-perf --size 4096``.
  ``extra_info["Gvalues_per_s"]`` is computed from the median of the rounds.
- ``kquant-encode-<fmt>`` / ``kquant-decode-<fmt>``: llama.cpp's super-block formats
  (Q4_K, Q6_K, IQ4_XS, ...), one thread, 64 Ki values: lowbit's kernel per ISA
  (byte-exact mode, and search=True) against llama.cpp's own ``ggml_quantize_chunk``
  / ``to_float`` called through ctypes on libggml-base.so (tests/ggml_oracle.py).
  ``extra_info["Mvalues_per_s"]`` from the median round.
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

FORMATS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"]  # the gguf-py formats
K_FORMATS = ["Q4_K", "Q6_K", "IQ4_XS", "Q5_K", "Q3_K", "Q2_K", "IQ4_NL"]
ISAS = lowbit.available_isas()
SIZES = {"L2": 256 * 1024, "RAM": 16 * 1024 * 1024}


def _rate(benchmark, key, values, unit, digits):
    """values / median time in `unit`s per second into extra_info (nothing under --benchmark-disable,
    where the function ran once untimed)."""
    if benchmark.stats is not None:
        benchmark.extra_info[key] = round(values / benchmark.stats.stats.median / unit, digits)


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
    _rate(benchmark, "Gvalues_per_s", x.size * inner, 1e9, 3)


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
    _rate(benchmark, "Gvalues_per_s", x.size, 1e9, 3)


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantize_gguf_numpy(benchmark, fmt, size):
    x = _data(SIZES[size])
    benchmark.group = f"quantize-{fmt}-{size}"
    benchmark.pedantic(gguf.quants.quantize, args=(x, GT[fmt]), rounds=3 if size == "RAM" else 10)
    _rate(benchmark, "Gvalues_per_s", x.size, 1e9, 3)


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
    _rate(benchmark, "Gvalues_per_s", x.size, 1e9, 3)


@pytest.mark.parametrize("size", ["L2"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_gguf_numpy(benchmark, fmt, size):
    x = _data(SIZES[size])
    blob = lowbit.gguf.quantize(x, fmt)
    benchmark.group = f"dequantize-{fmt}-{size}"
    benchmark.pedantic(gguf.quants.dequantize, args=(blob, GT[fmt]), rounds=10)
    _rate(benchmark, "Gvalues_per_s", x.size, 1e9, 3)


def _ggml():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import ggml_oracle
    o = ggml_oracle.load()
    if o is None:
        pytest.skip("llama.cpp's libggml-base.so not found (pip install llama-cpp-python==0.3.36)")
    return o


K_IMPLS = [f"lowbit-{i}" for i in ISAS] + ["lowbit-search", "llama.cpp"]


@pytest.mark.parametrize("impl", K_IMPLS)
@pytest.mark.parametrize("fmt", K_FORMATS)
def test_kquant_encode(benchmark, fmt, impl):
    x = _data(64 * 1024)
    benchmark.group = f"kquant-encode-{fmt}"
    if impl == "llama.cpp":
        o = _ggml()
        benchmark.pedantic(o.quantize, args=(x, fmt), rounds=5, warmup_rounds=1)
    elif impl == "lowbit-search":
        if fmt not in lowbit.gguf.SEARCH:
            pytest.skip("no search encoder")
        lowbit.set_num_threads(1)
        try:
            benchmark.pedantic(lowbit.gguf.quantize, args=(x, fmt), kwargs={"search": True}, rounds=3)
        finally:
            lowbit.set_num_threads(2)
    else:
        with lowbit.use_isa(impl.split("-")[1]):
            benchmark.pedantic(_C.gguf_time_kernel, args=(x.reshape(-1), fmt, True, 1, 1), rounds=5, warmup_rounds=1)
    _rate(benchmark, "Mvalues_per_s", x.size, 1e6, 2)


@pytest.mark.parametrize("impl", [f"lowbit-{i}" for i in ISAS] + ["llama.cpp"])
@pytest.mark.parametrize("fmt", K_FORMATS)
def test_kquant_decode(benchmark, fmt, impl):
    x = _data(64 * 1024)
    blob = lowbit.gguf.quantize(x, fmt).reshape(-1)
    benchmark.group = f"kquant-decode-{fmt}"
    inner = 20
    if impl == "llama.cpp":
        o = _ggml()

        def run():
            for _ in range(inner):
                o.dequantize(blob, fmt, x.size)
        benchmark.pedantic(run, rounds=20, warmup_rounds=2)
    else:
        with lowbit.use_isa(impl.split("-")[1]):
            benchmark.pedantic(_C.gguf_time_kernel, args=(blob, fmt, False, 1, inner), rounds=20, warmup_rounds=2)
    _rate(benchmark, "Gvalues_per_s", x.size * inner, 1e9, 3)
