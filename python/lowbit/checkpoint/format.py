"""The lowbit checkpoint format's names, and the one error every part of lowbit.checkpoint raises.

A quantized tensor ``NAME`` is stored as ``NAME:codes``, ``NAME:scale`` and, when
present, ``NAME:zero_point`` / ``NAME:codebook``; its JSON record sits in the
header's ``__metadata__`` under ``lowbit.qtensor:NAME``; ``__metadata__["format"]
= "lowbit"``.
"""
from __future__ import annotations

FORMAT = "lowbit"
QMETA_PREFIX = "lowbit.qtensor:"
PIECES = ("codes", "scale", "zero_point", "codebook")


class CheckpointError(ValueError):
    """A problem with a checkpoint or an option; the message is one line naming the file/option."""
