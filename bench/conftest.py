import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _util import copy_bandwidth, settle  # noqa: E402


@pytest.fixture(scope="module")
def two_threads():
    """Run a benchmark module's kernels on 2 threads (the machines here have 2 cores)."""
    import lowbit
    old = lowbit.get_num_threads()
    lowbit.set_num_threads(2)
    yield
    lowbit.set_num_threads(old)


@pytest.fixture(scope="session")
def membw():
    """Copy bandwidth (bytes read + written per second), measured once per run."""
    return copy_bandwidth()


@pytest.fixture(autouse=True)
def _settle():
    """Each benchmark starts after the previous one's idle threads (OpenBLAS, OpenMP) stop spinning."""
    settle()
