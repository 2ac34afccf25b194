"""parallel_for's task index and per-task scratch (csrc/core/parallel.h): every item runs
once, task indices stay below the bound and are never shared by two tasks running at once,
per-task scratch is never touched by another task; also for calls that run inline (nested
in a pool thread, a second Python thread while the pool is busy) and while
set_num_threads changes the pool. Every test runs on lowbit's own pool and on an OpenMP
runtime (the system's libgomp, as torch's would be: lowbit.use_openmp_threads)."""
from __future__ import annotations

import ctypes
import os
import subprocess
import threading

import numpy as np
import pytest

import lowbit
from conftest import python_command
from lowbit import _C

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def load_libgomp():
    """GNU's OpenMP runtime (every GCC install has it; the aarch64 sysroot too)."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        if IN_CI:
            raise
        pytest.skip("libgomp.so.1 is not installed")


def restore_runtime(previous):
    if previous == "lowbit":
        lowbit.use_own_threads()
    else:  # e.g. torch's, when lowbit.torch was imported by an earlier test module
        lowbit.use_openmp_threads(previous)


@pytest.fixture(params=["lowbit", "openmp"])
def runtime(request):
    previous = lowbit.thread_runtime()
    if request.param == "openmp":
        load_libgomp()
        assert "gomp" in lowbit.use_openmp_threads("libgomp.so")
    else:
        lowbit.use_own_threads()
    yield request.param
    restore_runtime(previous)


@pytest.fixture
def threads(runtime):
    before = lowbit.get_num_threads()
    yield lowbit.set_num_threads
    lowbit.set_num_threads(before)


def check(r, bound):
    assert r["covered_once"]
    assert r["bad_tid"] == 0 and r["overlaps"] == 0 and r["corrupt"] == 0 and r["nested_bad"] == 0
    assert 0 <= r["max_tid"] < bound
    if lowbit.thread_runtime() != "lowbit" and bound > 1 and r["max_tid"] > 0:
        assert r["openmp_chunks"] == r["chunks"]  # a parallel call ran on the runtime's team
    if lowbit.thread_runtime() == "lowbit":
        assert r["openmp_chunks"] == 0


@pytest.mark.parametrize("n,grain", [(1, 1), (7, 1), (1000, 1), (1000, 999), (1000, 1000), (100000, 64)])
def test_tids_bounded_and_unique(threads, n, grain):
    threads(4)
    r = _C._parallel_check(n, grain)
    check(r, 4)
    if n <= grain:
        assert r["max_tid"] == 0 and r["openmp_chunks"] == 0  # inline: one task
    elif lowbit.thread_runtime() != "lowbit":
        assert r["openmp_chunks"] == r["chunks"] > 0


def test_max_tasks_caps_the_tasks(threads):
    threads(4)
    for cap in (1, 2, 3):
        check(_C._parallel_check(5000, 1, max_tasks=cap), cap)
    threads(1)
    check(_C._parallel_check(5000, 1), 1)


def test_nested_calls_are_one_task(threads):
    threads(3)
    check(_C._parallel_check(200, 1, nested=True), 3)


def test_scratch_is_per_task(threads):
    threads(4)
    r = _C._parallel_check(400, 1, scratch_bytes=4096)
    check(r, 4)
    assert r["slots"] == 4


def test_concurrent_callers_and_set_num_threads(threads):
    """Python threads call at once (all but one run inline, tid 0) while another thread
    changes the thread count: a call keeps the pool it started on and its scratch's bound."""
    threads(2)
    errors, stop = [], threading.Event()

    def work(i):
        try:
            while not stop.is_set():
                r = _C._parallel_check(300, 1, scratch_bytes=1024 if i % 2 else 0)
                check(r, r["slots"] or 4)  # pools of at most 4 threads here
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    try:
        for k in range(40):
            lowbit.set_num_threads(1 + k % 4)
    finally:
        stop.set()
        for t in workers:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in workers)
    assert not errors, errors[0]


def test_the_kernels_give_the_same_bits_on_either_runtime():
    """int8 and ternary matmuls, activation and GGUF quantization split across threads: the
    OpenMP runtime's team gives exactly what lowbit's pool gives, whatever the thread count."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((96, 1000)).astype(np.float32)
    w = rng.standard_normal((520, 1000)).astype(np.float32)
    lin, bit = lowbit.Linear(w), lowbit.BitLinear(lowbit.TernaryWeight.from_float(w))
    g = rng.standard_normal((64, 4096)).astype(np.float32)

    def run():
        qa = lowbit.quantize_activations(x)
        return [lin(x), bit(x), qa.codes, qa.scale, lowbit.gguf.quantize(g, "Q4_K")]

    before, previous = lowbit.get_num_threads(), lowbit.thread_runtime()
    try:
        lowbit.use_own_threads()
        lowbit.set_num_threads(1)
        expected = run()
        load_libgomp()
        lowbit.use_openmp_threads("libgomp.so")
        for n in (2, 3):
            lowbit.set_num_threads(n)
            for got, want in zip(run(), expected):
                np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    finally:
        restore_runtime(previous)
        lowbit.set_num_threads(before)


def test_openmp_runtime_api(runtime):
    assert lowbit.cpu_info()["thread_runtime"] == lowbit.thread_runtime()
    with pytest.raises(TypeError, match="prefer"):
        lowbit.use_openmp_threads(1)
    if runtime == "openmp":
        assert "libgomp.so" in lowbit.thread_runtime()
        lowbit.use_own_threads()
        assert lowbit.thread_runtime() == "lowbit"


def test_no_runtime_loaded_is_a_value_error():
    code = ("import lowbit\n"
            "try:\n    lowbit.use_openmp_threads()\nexcept ValueError as e:\n    print('ValueError', e)\n"
            "print(lowbit.thread_runtime())\n")
    out = subprocess.run(python_command() + ["-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ValueError no OpenMP runtime" in out.stdout and out.stdout.split()[-1] == "lowbit"


def test_thread_count_follows_the_runtime_unless_set():
    """On a shared runtime lowbit's count is the runtime's (OMP_NUM_THREADS, omp_set_num_threads:
    what torch.set_num_threads calls) until lowbit is given one; LOWBIT_NUM_THREADS wins."""
    code = ("import ctypes, lowbit\n"
            "omp = ctypes.CDLL('libgomp.so.1')\n"
            "own = lowbit.get_num_threads()\n"
            "lowbit.use_openmp_threads('libgomp.so')\n"
            "a = lowbit.get_num_threads()\n"
            "omp.omp_set_num_threads(5)\n"
            "b = lowbit.get_num_threads()\n"
            "lowbit.set_num_threads(2)\n"
            "omp.omp_set_num_threads(6)\n"
            "print(own, a, b, lowbit.get_num_threads())\n")
    load_libgomp()  # (skips outside CI where it is missing)
    env = {k: v for k, v in os.environ.items() if k != "LOWBIT_NUM_THREADS"}
    out = subprocess.run(python_command() + ["-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(env, OMP_NUM_THREADS="3"))
    assert out.returncode == 0, out.stderr
    assert list(map(int, out.stdout.split()))[1:] == [3, 5, 2], out.stdout
    out = subprocess.run(python_command() + ["-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(env, OMP_NUM_THREADS="3", LOWBIT_NUM_THREADS="4"))
    assert out.returncode == 0, out.stderr
    assert list(map(int, out.stdout.split())) == [4, 4, 4, 2], out.stdout


FORK_CHILD = """
import ctypes, os, sys
import lowbit
from lowbit import _C
ctypes.CDLL("libgomp.so.1")
lowbit.set_num_threads(2)
if sys.argv[1] == "openmp":
    lowbit.use_openmp_threads("libgomp.so")
before = _C._parallel_check(500, 1)
assert before["covered_once"] and before["openmp_chunks"] == (before["chunks"] if sys.argv[1] == "openmp" else 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    ok = 0
    try:
        res = _C._parallel_check(500, 1)
        ok = int(lowbit.thread_runtime() == "lowbit" and res["covered_once"] and res["openmp_chunks"] == 0
                 and res["overlaps"] == 0 and res["bad_tid"] == 0)
    finally:
        os.write(w, bytes([ok]))
        os._exit(0)
os.close(w)
got = os.read(r, 1)
os.waitpid(pid, 0)
print(got == b"\\x01", lowbit.thread_runtime() != "lowbit")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("start", ["lowbit", "openmp"])
def test_a_forked_child_goes_back_to_lowbits_pool(start):
    """GNU libgomp's team does not survive fork: the child runs on lowbit's own pool and the
    parent keeps the runtime. (In a fresh interpreter: under qemu-user a fork taken with the
    many threads of a whole test session alive can crash the emulator in the child.)"""
    load_libgomp()  # (skips outside CI where it is missing)
    out = subprocess.run(python_command() + ["-c", FORK_CHILD, start], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    child_ok, parent_kept = out.stdout.split()
    assert child_ok == "True"
    assert parent_kept == ("True" if start == "openmp" else "False")
