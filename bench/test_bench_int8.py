"""int8 GEMM / dynamic int8 linear: lowbit vs torch's dynamic int8 nn.Linear (FBGEMM) vs float32
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
@pytest.mark.parametrize("isa", lowbit.available_isas())
@pytest.mark.parametrize("bits", [8, 7], ids=["w8-int16", "w7-u7"])
def test_lowbit_linear(benchmark, weight, M, isa, bits):
    """8-bit weights run the int16 kernel, 7-bit weights (Linear(w, bits=7)) the u7 kernel."""
    if isa == "scalar" and M > 1:
        pytest.skip("scalar path: M=1 only (minutes per call otherwise)")
    _group(benchmark, weight, M)
    layer = lowbit.Linear(weight, bits=bits)
    assert layer.fast == (bits == 7)
    x = activations(M, weight.shape[1])
    with lowbit.use_isa(isa):
        benchmark(layer, x)


@pytest.mark.parametrize("M", MS)
def test_torch_dynamic_int8(benchmark, weight, M):
    torch = pytest.importorskip("torch")
    import warnings
    torch.set_num_threads(2)  # as lowbit (the two_threads fixture)
    _group(benchmark, weight, M)
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(weight))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.from_numpy(activations(M, weight.shape[1]))

    def run():
        with torch.no_grad():
            return q(x)
    benchmark(run)


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
