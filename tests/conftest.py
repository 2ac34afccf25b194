"""Shared fixtures: every test that takes `isa` runs once per ISA path this CPU has."""
from __future__ import annotations

import numpy as np
import pytest

import lowbit

ISAS = lowbit.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test on one ISA path (scalar, avx2, ...), then restore the active one."""
    with lowbit.use_isa(request.param):
        yield request.param


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
