"""lowbit for PyTorch: quantize a model's linear layers in place and run them on lowbit's kernels.

    pip install "lowbit[torch]"

    import lowbit.torch as lt
    model = lt.quantize_model(model, "int8")          # or "int8-u7", "ternary", "binary", "int4", "nf4" ...
    lt.save_quantized(model, "model.lowbit.safetensors")
    skeleton = lt.load_quantized(skeleton, "model.lowbit.safetensors")   # bit-identical, no requantization

The modules (:class:`Linear`, :class:`BitLinear`, :class:`WeightOnlyLinear`) call
lowbit's kernels through torch custom operators (``torch.ops.lowbit.*``), so
``torch.compile`` and ``torch.export`` keep them in the graph. ``import lowbit``
never imports torch; only ``import lowbit.torch`` does. See docs/torch.md.

Importing it also puts lowbit's kernel threads on torch's OpenMP runtime
(:func:`lowbit.use_openmp_threads`), so the two libraries share one set of threads
instead of taking turns on the cores; ``LOWBIT_THREAD_POOL=lowbit`` keeps lowbit's own pool.
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("lowbit.torch needs PyTorch: pip install 'lowbit[torch]' (or pip install torch)") from e

import os as _os

from .. import _core
from . import _ops  # noqa: F401  (registers torch.ops.lowbit.*)
from .convert import (DEFAULT_EXCLUDE, SCHEMES, load_quantized, quantize_model, quantized_modules,  # noqa: F401
                      save_quantized, select_linears)
from .modules import BitLinear, Linear, LowbitModule, WeightOnlyLinear  # noqa: F401

__all__ = ["Linear", "BitLinear", "WeightOnlyLinear", "LowbitModule", "quantize_model", "save_quantized",
           "load_quantized", "select_linears", "quantized_modules", "DEFAULT_EXCLUDE", "SCHEMES"]


def _share_torch_threads() -> None:
    choice = _os.environ.get("LOWBIT_THREAD_POOL", "openmp").strip().lower()
    if choice not in ("openmp", "lowbit"):
        raise ValueError(f"LOWBIT_THREAD_POOL must be 'openmp' or 'lowbit', got {choice!r}")
    if choice == "openmp" and _torch.backends.openmp.is_available():
        try:  # torch's own copy first (torch/lib/libgomp*.so), else the one it linked
            _core.use_openmp_threads(_os.path.dirname(_torch.__file__))
        except ValueError:  # built with OpenMP yet none is loaded: keep lowbit's pool
            pass


_share_torch_threads()
