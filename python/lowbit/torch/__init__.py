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
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError("lowbit.torch needs PyTorch: pip install 'lowbit[torch]' (or pip install torch)") from e

from . import _ops  # noqa: F401  (registers torch.ops.lowbit.*)
from .convert import (DEFAULT_EXCLUDE, SCHEMES, load_quantized, quantize_model, quantized_modules,  # noqa: F401
                      save_quantized, select_linears)
from .modules import BitLinear, Linear, LowbitModule, WeightOnlyLinear  # noqa: F401

__all__ = ["Linear", "BitLinear", "WeightOnlyLinear", "LowbitModule", "quantize_model", "save_quantized",
           "load_quantized", "select_linears", "quantized_modules", "DEFAULT_EXCLUDE", "SCHEMES"]
