"""int8 GEMM / dynamic int8 linear: lowbit (each int8 kernel variant this CPU runs) vs torch's
dynamic int8 nn.Linear on both quantized engines ("x86" = FBGEMM, "onednn") vs float32
NumPy/OpenBLAS, weights 4096x4096 and 11008x4096, M in {1, 8, 128, 512}, 2 threads.

    python -m pytest bench/test_bench_int8.py --benchmark-only
    # numpy/OpenBLAS at its best: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest ...
    python bench/int8_report.py            # one table: GOP/s, ratios, memory floor for M=1
"""
import numpy as np
import pytest

import lowbit
from _util import activations

SHAPES = [(4096, 4096), (11008, 4096)]
MS = [1, 8, 128, 512]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def weight(request):
    return np.random.default_rng(0).standard_normal(request.param).astype(np.float32) * 0.02


pytestmark = pytest.mark.usefixtures("two_threads")


def _group(benchmark, weight, M):
    N, K = weight.shape
    benchmark.group = f"linear {N}x{K} M={M}"
    benchmark.extra_info["gop"] = 2 * M * N * K / 1e9


@pytest.mark.parametrize("M", MS)
@pytest.mark.parametrize("variant", lowbit.kernel_variants("int8", runnable=True))
@pytest.mark.parametrize("bits", [8, 7], ids=["w8", "w7"])
def test_lowbit_linear(benchmark, weight, M, variant, bits):
    """Each int8 variant with 8-bit and 7-bit weights (Linear(w, bits=7)): on AVX2 7-bit weights
    take the u7 kernel, on VNNI every weight the vpdpbusd one (layouts in csrc/int8/int8.h)."""
    if variant == "scalar" and M > 1:
        pytest.skip("scalar path: M=1 only (minutes per call otherwise)")
    _group(benchmark, weight, M)
    layer = lowbit.Linear(weight, bits=bits)
    assert layer.fast == (bits == 7)
    x = activations(M, weight.shape[1])
    with lowbit.use_kernel("int8", variant):
        benchmark.extra_info["layout"] = layer.layout
        benchmark(layer, x)


@pytest.mark.parametrize("M", MS)
@pytest.mark.parametrize("engine", ["x86", "onednn"])
def test_torch_dynamic_int8(benchmark, weight, M, engine):
    """torch's dynamic int8 nn.Linear, prepacked and run under one quantized engine."""
    torch = pytest.importorskip("torch")
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"torch has no {engine} quantized engine here")
    from int8_report import torch_dynamic_linear
    torch.set_num_threads(2)  # as lowbit (the two_threads fixture)
    _group(benchmark, weight, M)
    run = torch_dynamic_linear(torch, weight, engine)
    x = torch.from_numpy(activations(M, weight.shape[1]))
    benchmark(run, x)


@pytest.mark.parametrize("M", MS)
def test_numpy_float32(benchmark, weight, M):
    _group(benchmark, weight, M)
    wt = np.ascontiguousarray(weight.T)
    x = activations(M, weight.shape[1])
    benchmark(np.matmul, x, wt)


@pytest.mark.parametrize("M", [1])
def test_memory_floor_read(benchmark, weight, M):
    """Reading the int8 weight bytes once (max of |x| over the same number of bytes as float32/4)."""
    _group(benchmark, weight, M)
    buf = np.ones(weight.size // 4, np.float32)  # weight.size bytes
    from lowbit import _C
    benchmark(_C.affine_range, buf, "groups", 1, buf.size, buf.size)
