"""Kernel families and their variants: choice per family, the ISA cap, forcing, errors."""
from __future__ import annotations

import ast
import os
import pathlib
import subprocess

import numpy as np
import pytest

import lowbit

from conftest import python_command

INFO = lowbit.cpu_info()
FAMILIES = lowbit.kernel_variants()


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **env)
    for k in ("LOWBIT_FORCE_ISA", "LOWBIT_FORCE_KERNELS"):
        if k not in env:
            full_env.pop(k, None)
    return subprocess.run(python_command() + ["-c", code], env=full_env, capture_output=True, text=True)


def test_every_family_is_listed_with_its_variants():
    assert set(INFO["kernels"]) == set(FAMILIES) == set(INFO["variants"])
    expected = {"act", "affine", "calib", "codebook", "extreme", "gguf", "int8", "pack", "ternary"}
    assert expected <= set(FAMILIES)
    for family, variants in FAMILIES.items():
        assert variants[0] == "scalar", family
        assert INFO["kernels"][family] in variants
        assert INFO["variants"][family]["scalar"] is True
        for v in variants:  # compiled variants are those of this architecture
            assert INFO["isas"][v]["built"], (family, v)
            assert INFO["variants"][family][v] == INFO["isas"][v]["supported"]


def test_each_family_runs_its_best_runnable_variant():
    order = list(INFO["isas"])
    if INFO["isa_cap"] is not None:
        pytest.skip("an ISA cap is set for this run")
    for family in FAMILIES:
        runnable = lowbit.kernel_variants(family, runnable=True)
        assert lowbit.get_kernel(family) == max(runnable, key=order.index)


def test_every_family_is_tested_on_every_variant():
    """Each family is named by some test module's KERNEL_FAMILIES, so the `isa` fixture runs
    every variant of it (a new variant file needs no test edit; a new family needs one word)."""
    named = set()
    for path in pathlib.Path(__file__).parent.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "KERNEL_FAMILIES" for t in node.targets):
                named.update(ast.literal_eval(node.value))
    assert set(FAMILIES) <= named


def test_cap_limits_every_family():
    for cap in lowbit.available_isas():
        with lowbit.use_isa(cap):
            assert lowbit.get_isa() == cap
            for family, variant in lowbit.cpu_info()["kernels"].items():
                assert variant in lowbit.kernel_variants(family, runnable=True)
                if cap == "scalar":
                    assert variant == "scalar"


def test_force_one_family_leaves_the_others():
    other = {f: lowbit.get_kernel(f) for f in FAMILIES}
    with lowbit.use_kernel("int8", "scalar"):
        assert lowbit.get_kernel("int8") == "scalar"
        for f in FAMILIES:
            if f != "int8":
                assert lowbit.get_kernel(f) == other[f]
        a = np.arange(-60, 60, dtype=np.int8).reshape(8, 15)
        assert lowbit.int8_matmul(a, a).dtype == np.int32
    assert lowbit.get_kernel("int8") == other["int8"]


def test_bad_names_and_unrunnable_variants_are_errors():
    with pytest.raises(ValueError, match="unknown ISA"):
        lowbit.set_isa("sse9")
    with pytest.raises(ValueError, match="unknown kernel family"):
        lowbit.set_kernel("int9", "scalar")
    with pytest.raises(TypeError):
        lowbit.set_kernel(8, "scalar")
    with pytest.raises(ValueError, match="unknown ISA"):
        lowbit.set_kernel("int8", "avx3")
    for isa, d in INFO["isas"].items():
        if not d["supported"]:
            with pytest.raises(ValueError, match="not available"):
                lowbit.set_isa(isa)
        for family in FAMILIES:
            if isa not in lowbit.kernel_variants(family, runnable=True) and isa not in FAMILIES[family]:
                with pytest.raises(ValueError, match="has no"):
                    lowbit.set_kernel(family, isa)
    assert lowbit.get_kernel("int8") in FAMILIES["int8"]  # still usable after the errors
    with pytest.raises(ValueError):
        lowbit.set_num_threads(0)
    with pytest.raises(TypeError):
        lowbit.set_num_threads(1.5)


def test_force_isa_env():
    out = run_python("import lowbit; print(lowbit.get_isa(), sorted(set(lowbit.cpu_info()['kernels'].values())))",
                     LOWBIT_FORCE_ISA="scalar")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scalar", "['scalar']"]
    out = run_python("import lowbit; lowbit.get_isa()", LOWBIT_FORCE_ISA="bogus")
    assert out.returncode != 0 and "LOWBIT_FORCE_ISA" in out.stderr and "unknown ISA" in out.stderr
    for isa, d in INFO["isas"].items():
        if not d["supported"]:  # a clear error, never SIGILL
            out = run_python("import lowbit; lowbit.cpu_info()", LOWBIT_FORCE_ISA=isa)
            assert out.returncode == 1 and "ValueError" in out.stderr and "LOWBIT_FORCE_ISA" in out.stderr, out.stderr
            break
    out = run_python("import lowbit; print(lowbit.get_num_threads())", LOWBIT_NUM_THREADS="3")
    assert out.stdout.strip() == "3"


def test_force_kernels_env():
    out = run_python("import lowbit; k = lowbit.cpu_info()['kernels']; print(k['int8'], k['affine'])",
                     LOWBIT_FORCE_KERNELS="int8=scalar")
    assert out.returncode == 0, out.stderr
    # the child runs without this process's ISA cap: each family's best the CPU supports
    int8_best, affine_best = (max((v for v, ok in INFO["variants"][f].items() if ok), key=list(INFO["isas"]).index)
                              for f in ("int8", "affine"))
    assert out.stdout.split() == ["scalar", affine_best]
    assert int8_best in FAMILIES["int8"]
    for bad, msg in [("int9=scalar", "unknown kernel family"), ("int8", "family=variant"),
                     ("int8=avx3", "unknown ISA")]:
        out = run_python("import lowbit; lowbit.cpu_info()", LOWBIT_FORCE_KERNELS=bad)
        assert out.returncode == 1 and msg in out.stderr, (bad, out.stderr)


def test_choice_is_per_thread_safe_and_reset_by_cap_changes():
    import threading
    errors = []
    x = np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)
    expected = lowbit.quantize(x, bits=8, axis=0).codes

    def work():
        try:
            for _ in range(50):
                np.testing.assert_array_equal(lowbit.quantize(x, bits=8, axis=0).codes, expected)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    previous = lowbit.cpu_info()["isa_cap"]
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(50):
            for cap in lowbit.available_isas():
                lowbit.set_isa(cap)
    finally:
        lowbit.set_isa(previous)
    for t in threads:
        t.join()
    assert not errors
