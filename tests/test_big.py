"""Tensors past 2^31 elements: indexing must not overflow (needs ~11 GB of RAM)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import lowbit

N = 2**31 + 77


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


@pytest.mark.slow
def test_quantize_dequantize_past_2_31_elements():
    if _available_bytes() < 14 * 2**30:
        pytest.skip("needs 14 GiB of free memory")
    x = np.empty(N, np.float32)
    # a pattern whose last elements differ from the first, so a wrapped index shows
    x[: N // 2] = 0.5
    x[N // 2:] = -0.25
    x[-1] = 2.0
    qt = lowbit.quantize(x, group_size=64)
    del x
    assert qt.codes.shape == (N,)
    assert qt.scale.shape == (-(-N // 64),)
    assert qt.codes[0] == 127 and qt.codes[N // 2 + 100] == -127 and qt.codes[-1] == 127
    assert qt.codes[N - 2] == -16  # last group: scale 2/127, -0.25 -> round(-15.875)
    assert qt.scale[-1] == np.float32(2.0 / 127)
    y = qt.dequantize()
    assert y[-1] == np.float32(2.0 / 127) * 127 and y[0] == np.float32(0.5 / 127) * 127
    assert y[N // 2 + 100] == np.float32(np.float32(0.25 / 127) * np.float32(-127))
