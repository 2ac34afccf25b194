"""CPU features, the active ISA path and the thread count."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from . import _C

__all__ = ["release_buffers", "cpu_info", "available_isas", "get_isa", "set_isa", "use_isa",
           "kernel_variants", "get_kernel", "set_kernel", "use_kernel", "get_num_threads", "set_num_threads",
           "use_openmp_threads", "use_own_threads", "thread_runtime"]


def _isas() -> dict[str, tuple[str, bool, bool]]:
    """ISA name -> (what it needs, built for this architecture, this CPU and OS run it)."""
    return {name: (needs, built, ok) for name, needs, built, ok in _C.isas()}


def kernel_variants(family: str | None = None, *, runnable: bool = False):
    """The variants compiled into this build, per kernel family (``{"int8": ["scalar", "avx2"], ...}``),
    or one family's list. ``runnable=True`` keeps those this CPU can run within the ISA cap."""
    fams = dict(_C.families())
    if runnable:
        isas = _isas()
        cap = _C.isa_cap()
        allowed = None if cap is None else set(_cap_allows(cap))
        fams = {f: [v for v in vs if isas[v][2] and (allowed is None or v in allowed)] for f, vs in fams.items()}
    if family is None:
        return fams
    _check_family(family, fams)
    return fams[family]


def _cap_allows(cap: str) -> list[str]:
    """ISAs whose variants run under the cap: those needing no feature beyond the cap's."""
    return [n for n in _isas() if _C.isa_within(n, cap)]


def _check_family(family, fams=None) -> None:
    if not isinstance(family, str):
        raise TypeError(f"kernel family must be a str, got {type(family).__name__}")
    fams = fams if fams is not None else dict(_C.families())
    if family not in fams:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(fams)}")


def available_isas() -> list[str]:
    """The ISAs that some kernel family of this build has a variant for and that this CPU
    can run, in preference order (best last)."""
    compiled = {v for vs in _C.families() for v in vs[1]}
    return [n for n, (_, built, ok) in _isas().items() if built and ok and n in compiled]


def get_isa() -> str:
    """The ISA cap if one is set (``set_isa``, ``LOWBIT_FORCE_ISA``), else the best available ISA."""
    cap = _C.isa_cap()
    return cap if cap is not None else available_isas()[-1]


def set_isa(name: str | None) -> None:
    """Cap every kernel family at an ISA for the whole process (``"scalar"``, ``"avx2"``, ...):
    each family then runs its best variant that needs nothing beyond that ISA. ``None``
    lifts the cap."""
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
        if name not in _isas():
            raise ValueError(f"unknown ISA {name!r}; known: {', '.join(_isas())}")
        if name not in available_isas():
            raise ValueError(f"ISA {name!r} is not available here; available: {', '.join(available_isas())}")
    _C.set_isa_cap(name)


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[str]:
    """Run a block with every family capped at an ISA, then restore the previous cap (not thread-local)."""
    previous = _C.isa_cap()
    set_isa(name)
    try:
        yield name
    finally:
        _C.set_isa_cap(previous)


def get_kernel(family: str) -> str:
    """The variant a kernel family runs (chosen on first use)."""
    _check_family(family)
    return _C.family_active(family)


def set_kernel(family: str, variant: str | None) -> None:
    """Force one family's variant (for tests and bug reports; ``None`` lifts it). The same as
    ``LOWBIT_FORCE_KERNELS="family=variant,..."`` in the environment. A variant the family
    lacks or this CPU cannot run is a ValueError."""
    _check_family(family)
    if variant is not None and not isinstance(variant, str):
        raise TypeError(f"variant must be a str or None, got {type(variant).__name__}")
    _C.family_force(family, variant)


@contextlib.contextmanager
def use_kernel(family: str, variant: str) -> Iterator[str]:
    """Run a block with one family's variant forced, then restore the previous choice."""
    _check_family(family)
    previous = _C.family_forced(family)
    set_kernel(family, variant)
    try:
        yield variant
    finally:
        _C.family_force(family, previous)


def get_num_threads() -> int:
    """Threads a kernel call may use (see :func:`set_num_threads`)."""
    return _C.num_threads()


def set_num_threads(n: int) -> None:
    """Threads the kernels use. Default: ``LOWBIT_NUM_THREADS``, else on a shared OpenMP runtime
    (:func:`use_openmp_threads`, ``import lowbit.torch``) that runtime's own count
    (``torch.set_num_threads``, ``OMP_NUM_THREADS``), else the CPUs this process may use."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    _C.set_num_threads(n)


def use_openmp_threads(prefer: str = "") -> str:
    """Run the kernels' threads on the OpenMP runtime this process has already loaded (PyTorch's
    libgomp, LLVM's libomp, Intel's libiomp5) instead of lowbit's own thread pool; returns the
    runtime's path.

    Where another library's OpenMP operators run between lowbit's kernels (a torch model),
    its workers spin on the cores after each operator, and a second pool's threads wait for
    a core instead of working: on 2 cores that made lowbit's int8 layers in a torch model run
    at about one thread's speed. On the shared runtime lowbit's work runs on those same hot
    threads. ``import lowbit.torch`` does this for torch (``LOWBIT_THREAD_POOL=lowbit`` keeps
    lowbit's own). The thread count follows the runtime's (``torch.set_num_threads``) unless
    lowbit was given one (:func:`set_num_threads`, ``LOWBIT_NUM_THREADS``). ``prefer``: part of a
    path that picks one runtime when several are loaded. A child process made by ``fork``
    goes back to lowbit's pool. ValueError when no OpenMP runtime is loaded."""
    if not isinstance(prefer, str):
        raise TypeError(f"prefer must be a str, got {type(prefer).__name__}")
    path = _C.use_openmp_threads(prefer)
    if not path:
        raise ValueError("no OpenMP runtime (a loaded library exporting GOMP_parallel: libgomp, libomp, "
                         "libiomp5) is loaded in this process; lowbit keeps its own threads")
    return path


def use_own_threads() -> None:
    """Run the kernels' threads on lowbit's own pool again (the default; see :func:`use_openmp_threads`)."""
    _C.use_own_threads()


def thread_runtime() -> str:
    """Whose threads run the kernels: ``"lowbit"`` (its own pool) or the path of the OpenMP runtime in use."""
    return _C.openmp_runtime() or "lowbit"


def cpu_info() -> dict:
    """What the CPU has, which kernel variants this build holds, which of them this CPU can
    run, and which one each family runs."""
    info = dict(_C.cpu_features())
    isas = _isas()
    info["isas"] = {n: {"requires": needs, "built": built, "supported": ok} for n, (needs, built, ok) in isas.items()}
    info["variants"] = {f: {v: isas[v][2] for v in vs} for f, vs in _C.families()}
    info["kernels"] = {f: _C.family_active(f) for f, _ in _C.families()}
    info["compiled_isas"] = [n for n in isas if any(n in vs for _, vs in _C.families())]
    info["available_isas"] = available_isas()
    info["best_isa"] = available_isas()[-1]
    info["isa_cap"] = _C.isa_cap()
    info["active_isa"] = get_isa()
    info["num_threads"] = get_num_threads()
    info["thread_runtime"] = thread_runtime()
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
