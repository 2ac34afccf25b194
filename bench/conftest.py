import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _util import copy_bandwidth  # noqa: E402


@pytest.fixture(scope="session")
def membw():
    """Copy bandwidth (bytes read + written per second), measured once per run."""
    return copy_bandwidth()
