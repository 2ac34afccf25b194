"""Shared fixtures.

Every test that takes `isa` runs once per kernel variant this CPU can run (within the
ISA cap, e.g. LOWBIT_FORCE_ISA=scalar) of the kernel families its module names in
`KERNEL_FAMILIES`: with `isa == "avx2"`, each of those families runs its avx2 variant
(a family without one keeps its default). The variants come from the build itself
(lowbit.kernel_variants), so a new variant file is tested without editing any test.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import sys

import numpy as np
import pytest

import lowbit

ISAS = lowbit.available_isas()


def family_variants(families) -> list[str]:
    """The variants of these families this CPU can run, in preference order (best last)."""
    runnable = lowbit.kernel_variants(runnable=True)
    names = {v for f in families for v in runnable[f]}
    return [v for v in lowbit.cpu_info()["isas"] if v in names]


def pytest_generate_tests(metafunc):
    if "isa" not in metafunc.fixturenames:
        return
    families = getattr(metafunc.module, "KERNEL_FAMILIES", None)
    if not families:
        raise pytest.UsageError(f"{metafunc.module.__name__} uses the `isa` fixture: name the kernel "
                                "families it tests in KERNEL_FAMILIES")
    metafunc.parametrize("isa", family_variants(families), indirect=True)


@pytest.fixture
def isa(request):
    """Force the module's kernel families to one variant, then restore their choice."""
    variant = request.param
    runnable = lowbit.kernel_variants(runnable=True)
    with contextlib.ExitStack() as stack:
        for family in request.module.KERNEL_FAMILIES:
            if variant in runnable[family]:
                stack.enter_context(lowbit.use_kernel(family, variant))
        yield variant


def python_command() -> list[str]:
    """How to start this Python in a child process (LOWBIT_TEST_PYTHON names a launcher, e.g.
    an emulator command line, where sys.executable cannot be run directly)."""
    launcher = os.environ.get("LOWBIT_TEST_PYTHON")
    return shlex.split(launcher) if launcher else [sys.executable]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def assert_qtensor_equal(a: lowbit.QTensor, b: lowbit.QTensor) -> None:
    """Bit-identical codes and parameters, and the same metadata."""
    assert a.shape == b.shape
    assert a.codes.dtype == b.codes.dtype
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.scale.shape == b.scale.shape
    np.testing.assert_array_equal(a.scale.view(np.uint32), b.scale.view(np.uint32))
    if a.zero_point is None or b.zero_point is None:
        assert a.zero_point is None and b.zero_point is None
    else:
        np.testing.assert_array_equal(a.zero_point, b.zero_point)
    assert (a.bits, a.scheme, a.axis, a.group_size, a.signed, a.narrow) == \
        (b.bits, b.scheme, b.axis, b.group_size, b.signed, b.narrow)


# ---- hypothesis profiles (docs/reliability.md) ---------------------------------------
# "ci" (the default): derandomized, no example database: every run tests the same examples.
# "seeded": the same, but random, for --hypothesis-seed=N (which derandomize would ignore).
# "fuzz": long random fuzzing by hand: --hypothesis-profile=fuzz (or HYPOTHESIS_PROFILE=fuzz).
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, database=None, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("seeded", settings.get_profile("ci"), derandomize=False)
settings.register_profile("fuzz", settings.get_profile("seeded"), max_examples=20000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.hookimpl(trylast=True)  # after hypothesis' own plugin has read its options
def pytest_configure(config):
    if config.getoption("hypothesis_seed", None) is not None and settings.get_current_profile_name() == "ci":
        settings.load_profile("seeded")
