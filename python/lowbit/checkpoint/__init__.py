"""Quantize whole checkpoints: read safetensors, quantize tensor by tensor, write, report.

One module per job:

- ``schemes``: the schemes the CLI names (``int8``, ``int4``, ``ternary``, ``nf4``,
  ``gguf:Q8_0`` ...) and the --granularity / --clip options;
- ``reader``: :class:`Checkpoint` (a file, a sharded or plain folder) and :func:`load`;
- ``writers``: the output formats (:data:`WRITERS`, :func:`register_writer`) and :func:`save`;
- ``report``: per-tensor error statistics and the :class:`Report`;
- ``driver``: :func:`quantize_checkpoint`, which ties them together;
- ``format``: the format's names and :class:`CheckpointError`.

Output format (a plain safetensors file other tools can list):
- a kept tensor ``NAME`` is stored as is (same dtype, same bytes);
- a quantized tensor ``NAME`` is stored as ``NAME:codes``, ``NAME:scale`` and,
  when present, ``NAME:zero_point`` / ``NAME:codebook`` (the arrays of
  ``QTensor.to_dict()``), and its JSON record (``qmeta``) sits in the header's
  ``__metadata__`` under ``lowbit.qtensor:NAME``;
- ``__metadata__["format"] = "lowbit"``.
``lowbit.load`` rebuilds the QTensors with ``QTensor.from_dict``, which checks
every field (the file may be hostile).
"""
from .driver import DEFAULT_KEEP, ProgressFn, quantize_checkpoint, resolve_options, select  # noqa: F401
from .format import FORMAT, PIECES, QMETA_PREFIX, CheckpointError  # noqa: F401
from .reader import Checkpoint, load  # noqa: F401
from .report import Report, format_size, tensor_error_stats  # noqa: F401
from .schemes import (SCHEMES, Scheme, axis_group, get_scheme, granularity_text, parse_clip,  # noqa: F401
                      parse_granularity, register_scheme, scheme_names)
from .writers import WRITERS, GGUFWriter, LowbitWriter, register_writer, save  # noqa: F401

__all__ = ["CheckpointError", "Checkpoint", "Scheme", "SCHEMES", "register_scheme", "get_scheme",
           "scheme_names", "parse_granularity", "parse_clip", "quantize_checkpoint", "load", "save",
           "Report", "tensor_error_stats", "DEFAULT_KEEP", "WRITERS", "register_writer"]
