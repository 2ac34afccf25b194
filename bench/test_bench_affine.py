"""Affine quantize/dequantize: lowbit (each ISA) vs the NumPy reference vs torch.

    python -m pytest bench/test_bench_affine.py --benchmark-only
    python bench/affine_report.py          # one table with memory-floor ratios
"""
import numpy as np
import pytest

import lowbit
from lowbit import reference as ref

SHAPES = [(4096, 4096), (11008, 4096)]
GRANS = {"channel": dict(axis=0), "group128": dict(group_size=128)}


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def weight(request):
    return np.random.default_rng(0).standard_normal(request.param).astype(np.float32)


@pytest.mark.parametrize("impl", ["lowbit-" + i for i in lowbit.available_isas()] + ["reference"])
@pytest.mark.parametrize("gran", list(GRANS))
@pytest.mark.parametrize("bits", [8, 4])
def test_quantize(benchmark, weight, impl, gran, bits, membw):
    benchmark.group = f"quantize {gran} int{bits} {weight.shape[0]}x{weight.shape[1]}"
    kw = dict(bits=bits, **GRANS[gran])
    if impl == "reference":
        benchmark.pedantic(ref.quantize, (weight,), kw, rounds=2, iterations=1)
        return
    with lowbit.use_isa(impl.split("-", 1)[1]):
        benchmark(lowbit.quantize, weight, **kw)
    floor = (weight.nbytes + weight.size) / membw
    benchmark.extra_info["memory_floor_ms"] = floor * 1e3


@pytest.mark.filterwarnings("ignore:.*deprecated:UserWarning")  # torch quantized tensors
def test_quantize_torch_per_channel(benchmark, weight):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(lowbit.get_num_threads())
    w = torch.from_numpy(weight)
    benchmark.group = f"quantize channel int8 {weight.shape[0]}x{weight.shape[1]}"

    def run():  # torch needs the scales first: include finding them, as lowbit does
        a = w.abs().amax(dim=1)
        s = (a / 127).clamp_min(2.0 ** -126)
        return torch.quantize_per_channel(w, s, torch.zeros_like(s, dtype=torch.int64), 0, torch.qint8)

    benchmark(run)


@pytest.mark.parametrize("impl", ["lowbit-" + i for i in lowbit.available_isas()] + ["reference"])
@pytest.mark.parametrize("gran", list(GRANS))
def test_dequantize(benchmark, weight, impl, gran, membw):
    benchmark.group = f"dequantize {gran} int8 {weight.shape[0]}x{weight.shape[1]}"
    qt = lowbit.quantize(weight, **GRANS[gran])
    if impl == "reference":
        benchmark.pedantic(ref.dequantize, (qt,), rounds=2, iterations=1)
        return
    with lowbit.use_isa(impl.split("-", 1)[1]):
        benchmark(qt.dequantize)
    benchmark.extra_info["memory_floor_ms"] = (weight.nbytes + weight.size) / membw * 1e3
