"""The Python layers' house rules: which module may import which, the QTensor scheme
registry, read-only QTensor arrays and what is cached with them (lowbit.linear's packed
weight), native empty inputs."""
from __future__ import annotations

import ast
import dataclasses
import pathlib

import numpy as np
import pytest

import lowbit
import lowbit.int8
from lowbit import reference as ref
from lowbit.qtensor import QTensor, is_affine_scheme, register_scheme, scheme_rule

from conftest import assert_qtensor_equal

F32 = np.float32
KERNEL_FAMILIES = ("affine", "extreme", "codebook")  # the `isa` fixture runs each of their variants
PKG = pathlib.Path(lowbit.__file__).parent
# the modules that call kernels: what the reference must never import
NATIVE = {"_C", "_core", "act", "affine", "calibration", "codebook", "extreme", "gguf", "int8", "packing", "ternary",
          "schemes", "checkpoint", "cli", "demo", "plot"}


def imported_modules(path: pathlib.Path):
    """The lowbit modules a file imports, dotted under lowbit ("reference.affine", "_C", ...); for
    ``from M import a, b`` both M and M.a, M.b (a name may be a submodule)."""
    package = list(path.relative_to(PKG).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                mod = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "lowbit":
                mod = node.module.split(".")[1:]
            else:
                continue
            if mod:
                yield ".".join(mod)
            for alias in node.names:
                yield ".".join(mod + [alias.name])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lowbit" and "." in alias.name:
                    yield alias.name.split(".", 1)[1]


def test_import_walker_sees_relative_and_absolute_imports(tmp_path):
    mods = set(imported_modules(PKG / "reference" / "int8.py"))
    assert {"_args", "_checks.int8", "qtensor", "reference.act", "reference.calibration"} <= mods
    assert "_C" in set(imported_modules(PKG / "int8.py")) and "_checks.int8" in set(imported_modules(PKG / "int8.py"))


@pytest.mark.parametrize("path", sorted((PKG / "reference").glob("*.py")) + sorted((PKG / "_checks").glob("*.py")),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_the_oracle_and_the_checks_import_no_native_module(path):
    """lowbit.reference is the independent oracle, lowbit._checks what both sides share:
    neither imports a module that runs kernels (nor _C)."""
    bad = [m for m in imported_modules(path) if m.split(".")[0] in NATIVE]
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


# gguf.py still takes its checks from lowbit.reference.gguf: the gguf family's own change decouples it
NOT_YET = {"gguf.py"}


@pytest.mark.parametrize("path", [p for p in sorted(PKG.rglob("*.py")) if "reference" not in p.parts
                                  and p.relative_to(PKG).as_posix() not in NOT_YET | {"__init__.py"}],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_native_modules_import_nothing_from_the_reference(path):
    """No reference numerics on a production path (lowbit/__init__.py only re-exports lowbit.reference)."""
    bad = [m for m in imported_modules(path) if m.split(".")[0] == "reference"]
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


# ---- the scheme registry ---------------------------------------------------------------

def test_builtin_schemes_are_registered():
    for name in ("absmax", "minmax", "ternary", "binary"):
        assert is_affine_scheme(name) and scheme_rule(name).dequantize is None
    assert scheme_rule("ternary").code_range == (-1, 1)
    for name in ("act_absmax", "codebook", "kmeans", "nf4"):
        assert not is_affine_scheme(name) and callable(scheme_rule(name).dequantize)
    with pytest.raises(ValueError, match="unknown scheme 'nope'"):
        scheme_rule("nope")
    assert not is_affine_scheme("nope") and not is_affine_scheme(None)


def test_a_registered_scheme_dequantizes_and_loads(monkeypatch):
    import lowbit.qtensor as qtensor_module
    monkeypatch.setattr(qtensor_module, "_SCHEMES", dict(qtensor_module._SCHEMES))  # undone after the test
    codes = np.array([[0, 1, 2]], np.uint8)

    def square(qt, c):
        return (qt.scale * c.astype(F32) ** 2).astype(F32)
    register_scheme("square", square, code_range=(0, 2))
    qt = QTensor(codes=codes, scale=np.full((1, 1), 0.5, F32), zero_point=None, shape=(1, 3), bits=2,
                 scheme="square", signed=False)
    np.testing.assert_array_equal(qt.dequantize(), [[0.0, 0.5, 2.0]])
    back = QTensor.from_dict({k: np.array(v) for k, v in qt.to_dict().items()})
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())
    bad = {k: np.array(v) for k, v in qt.to_dict().items()}
    bad["codes"] = np.array([[0, 1, 3]], np.uint8)
    with pytest.raises(ValueError, match=r"square codes span \[0, 3\], outside \[0, 2\]"):
        QTensor.from_dict(bad)


def test_unknown_scheme_in_a_record_is_refused():
    d = {k: np.array(v) for k, v in lowbit.quantize(np.ones(4, F32)).to_dict().items()}
    d["qmeta"] = np.frombuffer(bytes(d["qmeta"]).replace(b'"absmax"', b'"absmin"'), np.uint8)
    with pytest.raises(ValueError, match="unknown scheme 'absmin'"):
        QTensor.from_dict(d)


# ---- read-only arrays and what is derived from them ------------------------------------

def test_qtensor_arrays_are_read_only(rng):
    qt = lowbit.quantize(rng.standard_normal((4, 8)).astype(F32), 4, scheme="minmax", group_size=4)
    for a in (qt.codes, qt.scale, qt.zero_point):
        assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        qt.codes[0, 0] = 1
    nf = lowbit.quantize(rng.standard_normal((4, 64)).astype(F32), scheme="nf4")
    assert not nf.codebook.flags.writeable


def test_derived_values_are_built_once_and_rebuilt_when_the_arrays_change(rng):
    qt = lowbit.quantize(rng.standard_normal((4, 8)).astype(F32), 8, axis=0)
    calls = []

    def build(q):
        calls.append(1)
        return int(q.codes.astype(np.int64).sum())
    first = qt.derived("sum", build)
    assert qt.derived("sum", build) == first and len(calls) == 1
    qt.codes = np.zeros_like(qt.codes)                   # a new array object: rebuilt
    assert qt.derived("sum", build) == 0 and len(calls) == 2
    qt.codes.setflags(write=True)                        # writeable again: never served from the cache
    qt.codes[0, 0] = 5
    assert qt.derived("sum", build) == 5 and len(calls) == 3
    qt.codes[0, 0] = 7
    assert qt.derived("sum", build) == 7 and len(calls) == 4
    qt.codes.setflags(write=False)
    qt.derived("sum", build)
    qt.axis = None                                       # a field reassigned: rebuilt
    qt.derived("sum", build)
    assert len(calls) == 6
    qt.axis = 0
    replaced = dataclasses.replace(qt)                   # a copy starts with an empty cache
    replaced.derived("sum", build)
    assert len(calls) == 7


def test_linear_packs_a_qtensor_weight_once(rng, monkeypatch):
    calls = []
    real = lowbit.int8.pack_weight

    def counting(codes, *args):
        calls.append(codes.shape)
        return real(codes, *args)
    monkeypatch.setattr(lowbit.int8, "pack_weight", counting)
    w = rng.standard_normal((24, 40)).astype(F32)
    x = rng.standard_normal((3, 40)).astype(F32)
    qw = lowbit.quantize(w, 8, axis=0)
    y = lowbit.linear(x, qw)
    for _ in range(3):
        np.testing.assert_array_equal(lowbit.linear(x, qw), y)
    np.testing.assert_array_equal(lowbit.Linear(qw)(x), y)      # a Linear of the same QTensor shares the packing
    assert calls == [(24, 40)]
    np.testing.assert_array_equal(y, ref.linear(x, qw))
    # new codes (a new array; the old one is read-only): packed again, and the result follows
    qw.codes = np.ascontiguousarray(qw.codes[::-1])
    np.testing.assert_array_equal(lowbit.linear(x, qw), ref.linear(x, qw))
    assert len(calls) == 2


# ---- native empty inputs (no reference on the production path) -------------------------

EMPTY = [((0,), {}), ((0, 3), {"axis": 1}), ((3, 0), {"axis": 0}), ((2, 0, 3), {"axis": 1}), ((0, 5), {"group_size": 2}),
         ((3, 0), {"group_size": 4}), ((0, 4), {})]


@pytest.mark.parametrize("shape, kw", EMPTY)
def test_empty_inputs_match_the_reference(isa, shape, kw):
    x = np.zeros(shape, F32)
    for scheme, bits, clip in (("absmax", 8, None), ("minmax", 4, None), ("absmax", 8, 0.5), ("minmax", 3, (-1, 2))):
        assert_qtensor_equal(lowbit.quantize(x, bits, scheme=scheme, clip=clip, **kw),
                             ref.quantize(x, bits, scheme=scheme, clip=clip, **kw))
    for method in ("absmean", "twn", "threshold"):
        assert_qtensor_equal(lowbit.ternarize(x, method, **kw), ref.ternarize(x, method, **kw))
    for method in ("sign", "bitnet"):
        assert_qtensor_equal(lowbit.binarize(x, method, **kw), ref.binarize(x, method, **kw))
    if "axis" not in kw:
        cb = np.array([-1, 0, 0.5, 1], F32)
        assert_qtensor_equal(lowbit.quantize_codebook(x, cb, group_size=kw.get("group_size")),
                             ref.quantize_codebook(x, cb, group_size=kw.get("group_size")))
