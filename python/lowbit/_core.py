"""CPU features, the active ISA path and the thread count."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from . import _C

__all__ = ["release_buffers", "cpu_info", "available_isas", "get_isa", "set_isa", "use_isa",
           "get_num_threads", "set_num_threads"]


def available_isas() -> list[str]:
    """The ISA paths this build contains and this CPU can run, best last."""
    return [n for n in _C.isa_names() if _C.isa_compiled(n) and _C.isa_supported(n)]


def get_isa() -> str:
    """The active path (resolves ``LOWBIT_FORCE_ISA`` on first use)."""
    try:
        return _C.active_isa()
    except ValueError as e:  # a bad LOWBIT_FORCE_ISA
        raise ValueError(str(e)) from None


def set_isa(name: str) -> None:
    """Force an ISA path for the whole process (``"scalar"``, ``"avx2"``, ...)."""
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
    if name not in _C.isa_names():
        raise ValueError(f"unknown ISA {name!r}; known: {', '.join(_C.isa_names())}")
    if name not in available_isas():
        raise ValueError(f"ISA {name!r} is not available here; available: {', '.join(available_isas())}")
    _C.set_active_isa(name)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[str]:
    """Run a block on one ISA path, then restore the previous one (not thread-local)."""
    previous = get_isa()
    set_isa(name)
    try:
        yield name
    finally:
        _C.set_active_isa(previous)


def get_num_threads() -> int:
    return _C.num_threads()


def set_num_threads(n: int) -> None:
    """Threads the kernels use (default: ``LOWBIT_NUM_THREADS``, else the CPUs this process may use)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    _C.set_num_threads(n)


def cpu_info() -> dict:
    """What the CPU has, which paths exist, and which one runs."""
    info = dict(_C.cpu_features())
    info["compiled_isas"] = [n for n in _C.isa_names() if _C.isa_compiled(n)]
    info["available_isas"] = available_isas()
    info["best_isa"] = _C.best_isa()
    info["active_isa"] = get_isa()
    info["num_threads"] = get_num_threads()
    return info


def release_buffers() -> None:
    """Return lowbit's cached output buffers to the OS.

    Outputs of 4 MiB and more are allocated from a small cache of freed buffers
    (at most 4 buffers and ``LOWBIT_BUFFER_CACHE_MB``, default 1024 MiB), so that
    repeated calls do not pay the kernel's zeroing of fresh pages.
    """
    _C.buffers_release()


def cache_aligned(a):
    """``a`` (C-contiguous) itself if it starts on a 64-byte cache line, else an aligned copy:
    the kernels read weights with 32-byte loads, and NumPy's large arrays start 16 bytes past
    a page boundary, which splits every other load across two lines."""
    if a.ctypes.data % 64 == 0:
        return a
    buf = np.empty(a.nbytes + 64, np.uint8)
    off = -buf.ctypes.data % 64
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out
