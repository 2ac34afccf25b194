"""lowbit.torch: modules on lowbit's kernels, quantize_model, save/load, custom ops under compile/export.

The oracle for every module is lowbit's own NumPy-facing layer (lowbit.Linear,
lowbit.BitLinear, QTensor.dequantize), itself tested against lowbit.reference:
outputs must match bit for bit. In CI (CI=true) torch must be installed: a
missing torch fails this module instead of skipping it.
"""
from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import lowbit

try:
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but torch is not installed: pip install torch==2.13.0", pytrace=False)
    pytest.skip("torch not installed (pip install 'lowbit[torch]')", allow_module_level=True)

import lowbit.torch as lt  # noqa: E402
from lowbit.torch import _ops  # noqa: E402

KERNEL_FAMILIES = ("int8", "ternary", "act", "affine")  # the `isa` fixture runs each of their variants


def _linear(K, N, bias=True, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(K, N, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(N, K, generator=g) / K ** 0.5)
        if bias:
            lin.bias.copy_(torch.randn(N, generator=g) * 0.1)
    return lin.to(dtype)


def _np(t):
    return None if t is None else t.detach().float().numpy()


def _x(*shape, seed=1, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ---- packaging -------------------------------------------------------------------

def test_import_lowbit_does_not_import_torch():
    code = ("import sys, lowbit, lowbit.cli, lowbit.checkpoint; "
            "assert 'torch' not in sys.modules, 'import lowbit pulled in torch'; "
            "import lowbit.torch; assert 'torch' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_import_shares_torchs_openmp_threads():
    """import lowbit.torch runs lowbit's kernel threads on torch's OpenMP runtime (its own
    libgomp copy), unless LOWBIT_THREAD_POOL=lowbit; a bad value is a clear error."""
    code = "import lowbit, lowbit.torch, torch; print(lowbit.thread_runtime()); print(torch.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "LOWBIT_THREAD_POOL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    runtime, torch_file = out.stdout.split()
    assert torch.backends.openmp.is_available()  # the CPU wheels CI installs are built with it
    assert "gomp" in os.path.basename(runtime) or "omp" in os.path.basename(runtime), runtime
    assert os.path.dirname(torch_file) in runtime, (runtime, torch_file)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(env, LOWBIT_THREAD_POOL="lowbit"))
    assert out.returncode == 0 and out.stdout.split()[0] == "lowbit", out.stderr
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(env, LOWBIT_THREAD_POOL="both"))
    assert out.returncode != 0 and "LOWBIT_THREAD_POOL must be 'openmp' or 'lowbit'" in out.stderr


def test_lowbits_thread_count_follows_torch_set_num_threads():
    """On torch's runtime lowbit uses torch's thread count (torch.set_num_threads) unless
    lowbit.set_num_threads was called."""
    code = ("import lowbit, lowbit.torch, torch\n"
            "torch.set_num_threads(1); a = lowbit.get_num_threads()\n"
            "torch.set_num_threads(3); b = lowbit.get_num_threads()\n"
            "lowbit.set_num_threads(2); torch.set_num_threads(1)\n"
            "print(a, b, lowbit.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LOWBIT_THREAD_POOL", "LOWBIT_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "3", "2"], out.stdout


def test_torch_threads_and_lowbits_give_the_same_outputs():
    """A quantized model's output is the same bits on torch's OpenMP team and on lowbit's pool,
    on one thread and on several."""
    model = torch.nn.Sequential(lt.Linear.from_linear(_linear(512, 384, seed=1)), torch.nn.GELU(),
                                lt.BitLinear.from_linear(_linear(384, 520, seed=2)))
    x = _x(77, 512)
    before, threads = lowbit.thread_runtime(), lowbit.get_num_threads()
    shared = lowbit.use_openmp_threads(os.path.dirname(torch.__file__))
    try:
        lowbit.set_num_threads(1)
        want = model(x)
        for n in (2, 3):
            lowbit.set_num_threads(n)
            torch.testing.assert_close(model(x), want, rtol=0, atol=0)
            lowbit.use_own_threads()
            torch.testing.assert_close(model(x), want, rtol=0, atol=0)
            lowbit.use_openmp_threads(shared)
    finally:
        lowbit.set_num_threads(threads)
        if before == "lowbit":
            lowbit.use_own_threads()
        else:
            lowbit.use_openmp_threads(before)


# ---- modules against lowbit's layers, bit for bit ----------------------------------

@pytest.mark.parametrize("bits", [8, 7])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_lowbit_linear(isa, bits, bias):
    lin = _linear(200, 72, bias=bias)
    m = lt.Linear.from_linear(lin, bits=bits)
    ref = lowbit.Linear(_np(lin.weight), _np(lin.bias), bits=bits)
    x = _x(3, 5, 200)
    y = m(x)
    assert y.dtype == torch.float32 and y.shape == (3, 5, 72)
    np.testing.assert_array_equal(y.numpy(), ref(x.numpy()))
    assert m.kernel == ref.layout
    assert f"kernel={m.kernel}" in repr(m)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("axis", [None, 0])
def test_bitlinear_matches_lowbit_bitlinear(isa, binary, axis):
    lin = _linear(300, 40)
    m = lt.BitLinear.from_linear(lin, binary=binary, axis=axis)
    ref = lowbit.BitLinear.from_float(_np(lin.weight), _np(lin.bias), binary=binary, axis=axis)
    x = _x(7, 300)
    np.testing.assert_array_equal(m(x).numpy(), ref(x.numpy()))
    assert ("binary" if binary else "ternary") in repr(m)


@pytest.mark.parametrize("scheme", ["int4", "uint4", "nf4", "kmeans4", "int8"])
def test_weight_only_dequantizes_on_the_fly(scheme):
    lin = _linear(256, 48)
    m = lt.WeightOnlyLinear.from_linear(lin, scheme)
    assert "dequantized to float32 on every forward" in repr(m)
    w = m.qweight.dequantize()
    np.testing.assert_array_equal(m.dequantized_weight().numpy(), w)
    x = _x(6, 256)
    expect = torch.nn.functional.linear(x, torch.from_numpy(w), lin.bias.detach())
    assert torch.equal(m(x), expect)
    # and it is a quantization of the float layer, not a copy of it
    err = (m(x) - lin(x)).abs().max().item()
    assert 0 < err < 0.5


def test_weight_only_rejects_gguf_and_unknown_schemes():
    lin = _linear(64, 8)
    with pytest.raises(ValueError, match="GGUF"):
        lt.WeightOnlyLinear.from_linear(lin, "gguf:Q4_0")
    with pytest.raises(ValueError, match="unknown scheme"):
        lt.quantize_model(torch.nn.Sequential(lin), "int3-nonsense")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["int8", "ternary", "nf4"])
def test_half_inputs_converted_once_and_returned_in_their_dtype(dtype, kind):
    model = lt.quantize_model(torch.nn.Sequential(_linear(128, 32)), kind)
    x = _x(4, 128, dtype=dtype)
    y = model(x)
    assert y.dtype == dtype
    y32 = model(x.float())   # bf16/fp16 -> float32 is exact, so the float32 path is the oracle
    if kind == "nf4":         # the weight-only module multiplies in the input's dtype
        assert torch.allclose(y.float(), y32, rtol=2e-2, atol=2e-2)
    else:
        assert torch.equal(y, y32.to(dtype))


def test_non_contiguous_and_grad_inputs():
    m = lt.Linear.from_linear(_linear(64, 16))
    x = _x(64, 10).t()          # (10, 64), not contiguous
    assert not x.is_contiguous()
    assert torch.equal(m(x), m(x.contiguous()))
    xg = x.contiguous().requires_grad_(True)
    assert torch.equal(m(xg), m(x.contiguous()))


def test_bad_inputs_raise_clear_errors():
    m = lt.Linear.from_linear(_linear(64, 16))
    b = lt.BitLinear.from_linear(_linear(64, 16))
    with pytest.raises(ValueError, match=r"\(\.\.\., 64\)"):
        m(_x(3, 63))
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        m(torch.ones(3, 64, dtype=torch.int32))
    x = _x(3, 64)
    x[1, 5] = float("nan")
    for mod in (m, b):
        with pytest.raises(ValueError, match="non-finite"):
            mod(x)
    assert m(_x(0, 64)).shape == (0, 16)
    assert b(_x(2, 0, 64)).shape == (2, 0, 16)


def test_modules_keep_their_buffers_under_to():
    m = lt.quantize_model(torch.nn.Sequential(_linear(64, 16), torch.nn.ReLU(), _linear(16, 8)), "int8")
    x = _x(5, 64)
    y = m(x)
    m.to(torch.bfloat16)
    assert m[0].weight_scale.dtype == torch.float32 and m[0].bias.dtype == torch.float32
    assert torch.equal(m(x), y)
    with pytest.raises(RuntimeError, match="CPU"):
        m.to("meta")


# ---- SmoothQuant-style smoothing ------------------------------------------------

def test_smoothing_is_the_stated_formula_and_helps_outliers():
    K, N, alpha = 96, 24, 0.5
    lin = _linear(K, N)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, K, generator=g)
    x[:, 7] *= 60.0                       # one outlier feature, as in a transformer's LayerNorm output
    amax = x.abs().amax(0)
    m = lt.Linear.from_linear(lin, input_absmax=amax, smoothing=alpha)
    w = _np(lin.weight).astype(np.float64)
    s = (amax.double().numpy() ** alpha / np.abs(w).max(0) ** (1 - alpha)).astype(np.float32)
    np.testing.assert_allclose(m.input_scale.numpy(), 1 / s, rtol=1e-6)
    # exactly lowbit.Linear on (W * s) applied to x * (1 / s)
    ref = lowbit.Linear((_np(lin.weight) * s).astype(np.float32), _np(lin.bias))
    np.testing.assert_array_equal(m(x).numpy(), ref((x.numpy() * m.input_scale.numpy()).astype(np.float32)))
    exact = lin(x).detach()
    err_plain = (lt.Linear.from_linear(lin)(x) - exact).pow(2).mean()
    err_smooth = (m(x) - exact).pow(2).mean()
    assert err_smooth < 0.5 * err_plain
    with pytest.raises(ValueError, match="smoothing"):
        lt.Linear.from_linear(lin, input_absmax=amax, smoothing=1.5)
    with pytest.raises(ValueError, match="input_absmax"):
        lt.Linear.from_linear(lin, input_absmax=amax[:-1])


def test_smoothed_product_reuses_one_scratch_buffer_and_threads_never_share_it():
    """x * input_scale goes into a reused scratch buffer (no fresh temporary per call), for inputs of
    every dtype and layout; calls from several threads at once get their own buffers and the same bits."""
    K, N = 96, 24
    lin = _linear(K, N)
    m = lt.Linear.from_linear(lin, input_absmax=torch.rand(K) * 4 + 0.1)
    ref = lowbit.Linear(m.layer.qweight, _np(lin.bias))   # the smoothed weight, as lowbit.Linear runs it
    s = m.input_scale.numpy()
    rows = _ops._SCRATCH_MIN // K + 1              # products this large use the scratch buffer
    xs = [_x(2, rows, K, seed=i) for i in range(8)]
    for x in xs:
        np.testing.assert_array_equal(m(x).numpy(), ref(x.numpy() * s))
    m(xs[0])
    ptrs = {b.data_ptr() for b in _ops._scratch}
    assert ptrs and len(_ops._scratch) <= _ops._SCRATCH_KEEP
    for x in xs:
        m(x)
        xt = x.transpose(0, 1)                     # non-contiguous input: converted into the buffer too
        np.testing.assert_array_equal(m(xt).numpy(), ref(xt.numpy() * s))
        xb = x.bfloat16()
        assert torch.equal(m(xb), torch.from_numpy(ref(xb.float().numpy() * s)).bfloat16())
    assert {b.data_ptr() for b in _ops._scratch} == ptrs     # no new buffer for inputs that fit
    small = _x(3, K, seed=4)                      # small products are plain temporaries
    np.testing.assert_array_equal(m(small).numpy(), ref(small.numpy() * s))
    assert {b.data_ptr() for b in _ops._scratch} == ptrs
    big = _x(4 * rows, K, seed=3)                 # a larger input grows the buffer once
    np.testing.assert_array_equal(m(big).numpy(), ref(big.numpy() * s))
    assert max(b.numel() for b in _ops._scratch) >= big.numel()

    import threading
    expect = [m(x) for x in xs]
    errors = []

    def worker(i):
        for _ in range(30):
            if not torch.equal(m(xs[i]), expect[i]):
                errors.append(i)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(_ops._scratch) <= _ops._SCRATCH_KEEP


def test_smoothed_linear_compiles_with_the_product_outside_the_operator():
    """Traced, the input_scale product is an ordinary torch op in the graph (inductor can fuse it
    into the op producing x); the operator gets the product and no input_scale; same bits."""
    import torch._dynamo
    m = torch.nn.Sequential(torch.nn.LayerNorm(96),
                            lt.Linear.from_linear(_linear(96, 32), input_absmax=torch.rand(96) + 0.5))
    x = _x(7, 96)
    with torch.no_grad():
        eager = m(x)
        torch._dynamo.reset()
        assert torch.equal(torch.compile(m, fullgraph=True, backend="aot_eager")(x), eager)
        ep = torch.export.export(m, (x,))
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    op = next(n for n in nodes if str(n.target) == "lowbit.int8_linear.default")
    assert str(op.args[0].target) == "aten.mul.Tensor" and op.args[4] is None
    assert torch.equal(ep.module()(x), eager)
    mb = copy.deepcopy(m).bfloat16()
    xb = x.bfloat16()
    with torch.no_grad():
        torch._dynamo.reset()
        yb = torch.compile(mb, fullgraph=True, backend="aot_eager")(xb)
    assert yb.dtype == torch.bfloat16 and torch.equal(yb, mb(xb))


def test_quantize_model_calibrate():
    torch.manual_seed(0)
    model = torch.nn.Sequential(_linear(64, 64, seed=1), torch.nn.GELU(), _linear(64, 32, seed=2))
    seen = []
    calib = _x(16, 64, seed=9)

    def run(m):
        seen.append(type(m[0]).__name__)
        m(calib)
    lt.quantize_model(model, "int8", calibrate=run)
    assert seen == ["Linear"] and isinstance(model[0], lt.Linear)   # ran on the float model
    assert model[0].input_scale is not None and model[2].input_scale is not None
    with pytest.raises(ValueError, match="int8 schemes"):
        lt.quantize_model(torch.nn.Sequential(_linear(8, 8)), "ternary", calibrate=run)
    with pytest.raises(ValueError, match="never ran module '1'"):
        lt.quantize_model(torch.nn.Sequential(_linear(8, 8), _linear(8, 8)), "int8", calibrate=lambda m: m[0](_x(2, 8)))


# ---- zero copy -------------------------------------------------------------------

def _ptr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_as_numpy_is_a_view():
    t = _x(8, 16)
    a = _ops.as_numpy(t)
    assert _ptr(a) == t.data_ptr()
    t2 = _x(8, 16).requires_grad_(True)
    assert _ptr(_ops.as_numpy(t2)) == t2.data_ptr()


def test_int8_linear_passes_tensors_without_copies(monkeypatch):
    m = lt.Linear.from_linear(_linear(64, 16))
    seen = {}
    real = lowbit._C.int8_linear

    def spy(x, M, K, packed, layout, N, sb, per_channel, bias, want_y, want_acc):
        seen.update(x=_ptr(x), packed=_ptr(packed), sb=_ptr(sb), bias=_ptr(bias))
        out = real(x, M, K, packed, layout, N, sb, per_channel, bias, want_y, want_acc)
        seen["y"] = _ptr(out[0])
        return out
    monkeypatch.setattr(lowbit._C, "int8_linear", spy)
    x = _x(2, 3, 64)
    y = m(x)
    assert seen["x"] == x.data_ptr()
    assert (seen["packed"], seen["sb"], seen["bias"]) == (m.packed.data_ptr(), m.weight_scale.data_ptr(),
                                                          m.bias.data_ptr())
    assert seen["y"] == y.data_ptr()     # the kernel's output array is the result tensor


def test_bit_linear_writes_into_the_result_tensor(monkeypatch):
    m = lt.BitLinear.from_linear(_linear(128, 16))
    seen = {}
    real = lowbit._C.tl_matmul_f32

    def spy(x, packed, N, K, bits, scale, bias, out):
        seen.update(x=_ptr(x), packed=_ptr(packed), out=_ptr(out))
        return real(x, packed, N, K, bits, scale, bias, out)
    monkeypatch.setattr(lowbit._C, "tl_matmul_f32", spy)
    x = _x(4, 128)
    y = m(x)
    assert seen == {"x": x.data_ptr(), "packed": m.packed.data_ptr(), "out": y.data_ptr()}


@pytest.mark.parametrize("kind", ["int8", "ternary"])
def test_gil_released_during_the_kernel(kind, monkeypatch):
    """The main thread runs Python while a module's native kernel works in another thread: it
    sees the kernel's "running" flag long before the kernel returns. (A kernel holding the GIL
    would let it look only after the return: a stand-in kernel doing sum(range(5_000_000)) fails.)"""
    import threading
    import time
    lin = _linear(2048, 2048)
    m = lt.Linear.from_linear(lin) if kind == "int8" else lt.BitLinear.from_linear(lin)
    name = "int8_linear" if kind == "int8" else "tl_matmul_f32"
    real = getattr(lowbit._C, name)
    state = {"flag": 0}

    def spy(*args):
        state["t0"] = time.perf_counter()
        state["flag"] = 1
        out = real(*args)
        state["t1"] = time.perf_counter()
        state["flag"] = 2
        return out
    monkeypatch.setattr(lowbit._C, name, spy)
    x = _x(1024, 2048)
    # the kernel on one thread, so a core is left for the main thread on a 2-core machine (with
    # the kernel on every core the main thread may only be scheduled after it returns)
    threads = lowbit.get_num_threads()
    lowbit.set_num_threads(1)
    try:
        t = threading.Thread(target=m, args=(x,))
        first = None
        t.start()
        while state["flag"] != 2 and t.is_alive():
            if state["flag"] == 1 and first is None:
                first = time.perf_counter()
        t.join()
    finally:
        lowbit.set_num_threads(threads)
    assert state["flag"] == 2 and first is not None
    assert first < state["t0"] + 0.5 * (state["t1"] - state["t0"]), (first, state)


# ---- custom operators: opcheck, compile, export ----------------------------------

def _three_kinds():
    return torch.nn.Sequential(
        lt.Linear.from_linear(_linear(96, 64, seed=1)), torch.nn.ReLU(),
        lt.BitLinear.from_linear(_linear(64, 64, seed=2)), torch.nn.ReLU(),
        lt.WeightOnlyLinear.from_linear(_linear(64, 32, seed=3), "int4", granularity="group:32"))


def test_eager_fast_path_equals_the_operator():
    """In plain eager mode the modules skip the dispatcher; the operator gives the same bits."""
    m = _three_kinds()
    x = _x(5, 96)
    assert _ops.direct_call_ok(x) and not _ops.direct_call_ok(torch.empty(2, device="meta").as_subclass(
        torch.nn.Parameter))
    y0 = torch.ops.lowbit.int8_linear(x, m[0].packed, m[0].weight_scale, m[0].bias, None, 96, 64, m[0].layout)
    assert torch.equal(m[0](x), y0)
    h = torch.relu(y0)
    assert torch.equal(m[2](h), torch.ops.lowbit.bit_linear(h, m[2].packed, m[2].weight_scale, m[2].bias, 64, 64, 2))
    w = torch.ops.lowbit.dequantize(m[4].codes, m[4].scale, m[4].zero_point, m[4].codebook, m[4].qmeta)
    assert torch.equal(m[4].dequantized_weight(), w)


def test_opcheck():
    m = _three_kinds()
    x = _x(5, 96)
    smooth = lt.Linear.from_linear(_linear(96, 8), input_absmax=torch.rand(96) + 0.1)
    cases = [
        (torch.ops.lowbit.int8_linear.default, (x, m[0].packed, m[0].weight_scale, m[0].bias, None, 96, 64,
                                                m[0].layout)),
        (torch.ops.lowbit.int8_linear.default, (x, smooth.packed, smooth.weight_scale, smooth.bias,
                                                smooth.input_scale, 96, 8, smooth.layout)),
        (torch.ops.lowbit.bit_linear.default, (_x(5, 64), m[2].packed, m[2].weight_scale, m[2].bias, 64, 64, 2)),
        (torch.ops.lowbit.dequantize.default, (m[4].codes, m[4].scale, m[4].zero_point, m[4].codebook, m[4].qmeta)),
    ]
    for op, args in cases:
        result = torch.library.opcheck(op, args)
        assert all(v == "SUCCESS" for v in result.values()), (op, result)


def test_compile_fullgraph_no_graph_breaks():
    import torch._dynamo
    m = _three_kinds()
    x = _x(5, 96)
    eager = m(x)
    explain = torch._dynamo.explain(m)(x)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager", dynamic=True)
    assert torch.equal(compiled(x), eager)
    assert torch.equal(compiled(_x(9, 96, seed=4)), m(_x(9, 96, seed=4)))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # torch's own inductor internals (torch.jit)
def test_compile_inductor_runs_the_lowbit_ops():
    import torch._dynamo
    torch._dynamo.reset()
    m = torch.nn.Sequential(lt.Linear.from_linear(_linear(96, 64, seed=1)), torch.nn.ReLU(),
                            lt.BitLinear.from_linear(_linear(64, 32, seed=2)))
    x = _x(5, 96)
    compiled = torch.compile(m, fullgraph=True)
    assert torch.equal(compiled(x), m(x))


def test_export_captures_the_ops():
    m = _three_kinds()
    x = _x(5, 96)
    ep = torch.export.export(m, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"lowbit.int8_linear.default", "lowbit.bit_linear.default", "lowbit.dequantize.default"} <= targets
    assert torch.equal(ep.module()(x), m(x))


# ---- quantize_model -------------------------------------------------------------

class Tiny(torch.nn.Module):
    """A toy LM: embedding, blocks with linear layers, a head tied to the embedding and an untied one."""

    def __init__(self, tie=True):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(50, 32)
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleDict({"q_proj": torch.nn.Linear(32, 32), "mlp": torch.nn.Linear(32, 64),
                                 "down": torch.nn.Linear(64, 32)}) for _ in range(2))
        self.norm = torch.nn.LayerNorm(32)
        self.lm_head = torch.nn.Linear(32, 50, bias=False)
        self.proj_out = torch.nn.Linear(32, 50, bias=False)
        if tie:
            self.proj_out.weight = self.embed_tokens.weight

    def forward(self, ids):
        h = self.embed_tokens(ids)
        for b in self.blocks:
            h = h + b["q_proj"](h)
            h = h + b["down"](torch.relu(b["mlp"](h)))
        h = self.norm(h)
        return self.lm_head(h) + self.proj_out(h)


def test_quantize_model_default_selection():
    torch.manual_seed(0)
    m = Tiny()
    ids = torch.randint(0, 50, (2, 7))
    ref = m(ids).detach()
    out = lt.quantize_model(m, "int8")
    assert out is m
    q = set(lt.quantized_modules(m))
    assert q == {f"blocks.{i}.{n}" for i in range(2) for n in ("q_proj", "mlp", "down")}
    assert type(m.lm_head) is torch.nn.Linear and type(m.proj_out) is torch.nn.Linear   # head, tied head
    y = m(ids)
    assert torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.999


def test_quantize_model_include_exclude():
    m = lt.quantize_model(Tiny(), "ternary", include=["blocks.*", "lm_head"], exclude="*.down")
    assert set(lt.quantized_modules(m)) == {"blocks.0.q_proj", "blocks.0.mlp", "blocks.1.q_proj",
                                            "blocks.1.mlp", "lm_head"}
    assert all(isinstance(v, lt.BitLinear) for v in lt.quantized_modules(m).values())
    with pytest.raises(ValueError, match=r"\['nope\.\*'\] match no nn.Linear"):
        lt.quantize_model(Tiny(), "int8", include=["blocks.*", "nope.*"])
    with pytest.raises(ValueError, match="no nn.Linear module selected"):
        lt.quantize_model(Tiny(), "int8", exclude="*")
    with pytest.raises(ValueError, match="cannot be replaced in place"):
        lt.quantize_model(torch.nn.Linear(4, 4), "int8")


def test_quantize_model_error_leaves_model_unchanged():
    m = Tiny()
    with torch.no_grad():
        m.blocks[1]["down"].weight[3, 3] = float("inf")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="module 'blocks.1.down'"):
        lt.quantize_model(m, "int8")
    assert not lt.quantized_modules(m)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_model_quantizes_and_runs(dtype):
    torch.manual_seed(0)
    m = Tiny().to(dtype)
    ids = torch.randint(0, 50, (2, 7))
    ref = copy.deepcopy(m).float()(ids).detach()
    # the weights are widened exactly, so quantizing the half model is quantizing its float32 twin
    twin = lt.quantize_model(copy.deepcopy(m).float(), "int8")
    lt.quantize_model(m, "int8")
    for name, mod in lt.quantized_modules(m).items():
        np.testing.assert_array_equal(mod.layer.qweight.codes, lt.quantized_modules(twin)[name].layer.qweight.codes)
    y = m(ids)
    assert y.dtype == dtype
    assert torch.nn.functional.cosine_similarity(y.float().flatten(), ref.flatten(), dim=0) > 0.99


# ---- lowbit.quantize on bfloat16 tensors ------------------------------------------

def test_quantize_accepts_bfloat16_tensors():
    g = torch.Generator().manual_seed(3)
    bits = torch.randint(-32768, 32767, (64, 40), generator=g, dtype=torch.int16)
    xb = bits.view(torch.bfloat16)
    xb = torch.where(torch.isfinite(xb), xb, torch.zeros((), dtype=torch.bfloat16))  # quantize rejects NaN/Inf
    xb[0, :4] = torch.tensor([0.0, -0.0, 1e-40, -3e38], dtype=torch.bfloat16)      # zeros, subnormal, near max
    widened = lowbit._args.as_float32(xb)
    assert widened.dtype == np.float32 and widened.shape == (64, 40)
    np.testing.assert_array_equal(widened.view(np.uint32), xb.float().numpy().view(np.uint32))
    for kw in ({"bits": 8}, {"bits": 4, "group_size": 8}, {"bits": 8, "axis": 0}):
        a = lowbit.quantize(xb, **kw)
        b = lowbit.quantize(xb.float().numpy(), **kw)
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.scale, b.scale)
    # non-contiguous, requiring grad
    xt = xb.t().requires_grad_(True)
    np.testing.assert_array_equal(lowbit.quantize(xt, 8).codes, lowbit.quantize(xb.float().t().numpy(), 8).codes)
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.quantize(torch.tensor([1.0, float("inf")], dtype=torch.bfloat16), 8)


# ---- save / load ------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["int8", "int8-u7", "ternary", "binary", "nf4", "int4"])
def test_save_load_round_trip_bit_identical(tmp_path, scheme):
    torch.manual_seed(0)
    m = Tiny()
    ids = torch.randint(0, 50, (3, 9))
    calib = (lambda mod: mod(torch.randint(0, 50, (4, 9)))) if scheme == "int8" else None
    lt.quantize_model(m, scheme, calibrate=calib)
    y = m(ids)
    path = tmp_path / "q.safetensors"
    lt.save_quantized(m, path)
    assert path.read_bytes()[:1] != b"\x80"          # not a pickle
    torch.manual_seed(123)
    skeleton = Tiny()                                  # different random weights
    assert not torch.equal(skeleton(ids), y)
    out = lt.load_quantized(skeleton, path)
    assert out is skeleton
    assert set(lt.quantized_modules(skeleton)) == set(lt.quantized_modules(m))
    assert torch.equal(skeleton(ids), y)
    assert skeleton.proj_out.weight is skeleton.embed_tokens.weight   # ties survive


def test_save_load_bfloat16_model(tmp_path):
    torch.manual_seed(0)
    m = Tiny().to(torch.bfloat16)
    lt.quantize_model(m, "int8")
    ids = torch.randint(0, 50, (2, 5))
    y = m(ids)
    lt.save_quantized(m, tmp_path / "q.safetensors")
    sk = Tiny().to(torch.bfloat16)
    lt.load_quantized(sk, tmp_path / "q.safetensors")
    assert torch.equal(sk(ids), y) and y.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="bfloat16 in the file, torch.float32 in the model"):
        lt.load_quantized(Tiny(), tmp_path / "q.safetensors")


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: type(mod) for n, mod in model.named_modules()})


def _unchanged(model, snap):
    sd, types = snap
    return (all(torch.equal(sd[k], v) for k, v in model.state_dict().items()) and set(sd) == set(model.state_dict())
            and {n: type(mod) for n, mod in model.named_modules()} == types)


def _data_offset(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return 8 + n, header


def test_corrupted_file_names_the_module_and_leaves_model_unchanged(tmp_path):
    torch.manual_seed(0)
    m = lt.quantize_model(Tiny(), "int8")
    path = tmp_path / "q.safetensors"
    lt.save_quantized(m, path)
    off, header = _data_offset(path)
    raw = bytearray(path.read_bytes())
    begin, _ = header["q/blocks.1.mlp/weight.codes"]["data_offsets"]
    raw[off + begin + 17] ^= 0x01                       # one flipped bit in one weight code
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    sk = Tiny()
    snap = _snapshot(sk)
    with pytest.raises(ValueError, match=r"module 'blocks\.1\.mlp'.*checksum"):
        lt.load_quantized(sk, bad)
    assert _unchanged(sk, snap)
    # a float tensor corrupted
    raw = bytearray(path.read_bytes())
    begin, _ = header["f/norm.weight"]["data_offsets"]
    raw[off + begin] ^= 0x40
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"tensor 'norm\.weight'.*checksum"):
        lt.load_quantized(sk, bad)
    assert _unchanged(sk, snap)
    # truncated
    bad.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="bad.safetensors"):
        lt.load_quantized(sk, bad)
    assert _unchanged(sk, snap)
    # not a lowbit.torch file
    lowbit.io.safetensors.write(bad, {"a": np.zeros(3, np.float32)}, force=True)
    with pytest.raises(ValueError, match="not a lowbit.torch file"):
        lt.load_quantized(sk, bad)
    assert _unchanged(sk, snap)


def test_valid_checksum_but_invalid_codes_is_still_rejected(tmp_path):
    """A file whose header checksums were recomputed after editing: lowbit's own validation catches it."""
    m = lt.quantize_model(Tiny(), "ternary")
    path = tmp_path / "q.safetensors"
    lt.save_quantized(m, path)
    with lowbit.io.safetensors.SafetensorsFile(path) as f:
        tensors = {k: (f.raw_tensor(k)) for k in f.keys()}
        meta = json.loads(f.metadata["lowbit.torch"])
    key = "q/blocks.0.mlp/weight.packed"
    data = np.array(tensors[key].data)
    data[0] = 0xFF                                    # 2-bit fields of value 3: not a ternary code
    tensors[key] = tensors[key]._replace(data=data)
    from lowbit.torch.convert import _digest
    name = "blocks.0.mlp"
    meta["modules"][name]["sha256"] = _digest([(k.split("/", 2)[2], t) for k, t in tensors.items()
                                               if k.startswith(f"q/{name}/")])
    lowbit.io.safetensors.write(path, tensors, metadata={"lowbit.torch": json.dumps(meta)}, force=True)
    sk = Tiny()
    snap = _snapshot(sk)
    with pytest.raises(ValueError, match=r"module 'blocks\.0\.mlp': cannot rebuild"):
        lt.load_quantized(sk, path)
    assert _unchanged(sk, snap)


def test_mismatched_model_names_the_module(tmp_path):
    m = lt.quantize_model(Tiny(), "int8")
    path = tmp_path / "q.safetensors"
    lt.save_quantized(m, path)
    other = Tiny()
    other.blocks[1]["mlp"] = torch.nn.Linear(32, 48)    # a different architecture
    snap = _snapshot(other)
    with pytest.raises(ValueError, match=r"module 'blocks\.1\.mlp'.*\(32, 64, True\).*\(32, 48, True\)"):
        lt.load_quantized(other, path)
    assert _unchanged(other, snap)
    fewer = Tiny()
    del fewer.blocks[1]
    snap = _snapshot(fewer)
    with pytest.raises(ValueError, match=r"module 'blocks\.1\.\w+': the file has it but the model does not"):
        lt.load_quantized(fewer, path)
    assert _unchanged(fewer, snap)
    with pytest.raises(ValueError, match="no lowbit modules"):
        lt.save_quantized(Tiny(), tmp_path / "x.safetensors")
