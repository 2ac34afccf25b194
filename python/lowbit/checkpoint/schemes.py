"""The schemes ``lowbit quantize --scheme`` names (int8, int4, ternary, nf4, gguf:Q8_0 ...),
and the --granularity / --clip options.

Every family is part of every build: a scheme's ``build`` calls lowbit directly.
A scheme may need a third-party package (``packages``, e.g. gguf to write .gguf
files); :meth:`Scheme.require` says so clearly before any work.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .. import gguf
from ..affine import quantize
from ..extreme import binarize, ternarize
from ..qtensor import QTensor
from .format import CheckpointError

__all__ = ["Scheme", "SCHEMES", "register_scheme", "get_scheme", "scheme_names", "parse_granularity",
           "parse_clip", "axis_group", "granularity_text"]


# ---------------------------------------------------------------------------
# options: granularity and clip

def parse_granularity(text: Optional[str]) -> Optional[Tuple[str, Optional[int]]]:
    """``tensor`` | ``channel`` | ``group:N`` (``group`` alone = 128) -> (kind, group_size); None = scheme default."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("tensor", "per-tensor"):
        return ("tensor", None)
    if t in ("channel", "per-channel"):
        return ("channel", None)
    m = re.fullmatch(r"(?:per-)?group(?::(\d+))?", t)
    if m:
        g = int(m.group(1)) if m.group(1) else 128
        if g < 1:
            raise CheckpointError(f"--granularity {text!r}: group size must be >= 1")
        return ("group", g)
    raise CheckpointError(f"--granularity {text!r}: expected tensor, channel or group:N")


def parse_clip(text) -> Tuple[Optional[str], Optional[float]]:
    """``none`` | ``percentile[:P]`` | ``mse`` | ``kl`` -> (method, param)."""
    if text is None:
        return (None, None)
    t = str(text).strip().lower()
    if t == "none":
        return (None, None)
    m = re.fullmatch(r"percentile(?::(.+))?", t)
    if m:
        p = 99.99
        if m.group(1) is not None:
            try:
                p = float(m.group(1))
            except ValueError:
                raise CheckpointError(f"--clip {text!r}: the percentile must be a number") from None
        if not 0 < p <= 100:
            raise CheckpointError(f"--clip {text!r}: the percentile must be in (0, 100]")
        return ("percentile", p)
    if t in ("mse", "kl"):
        return (t, None)
    raise CheckpointError(f"--clip {text!r}: expected none, percentile:P, mse or kl")



def axis_group(gran: Tuple[str, Optional[int]], ndim: int) -> Tuple[Optional[int], Optional[int]]:
    """``(axis, group_size)`` for a tensor of ``ndim`` dimensions at granularity ``gran``."""
    kind, g = gran
    if kind == "group" and ndim >= 1:
        return None, g
    if kind == "channel" and ndim >= 2:
        return 0, None
    return None, None



def granularity_text(gran: Tuple[str, Optional[int]]) -> str:
    return f"group:{gran[1]}" if gran[0] == "group" else gran[0]


# ---------------------------------------------------------------------------
# the scheme registry

@dataclass(frozen=True)
class Scheme:
    """One CLI scheme: ``build(w, axis, group_size, clip, clip_param)`` -> QTensor (or a GGUF blob)."""
    name: str
    description: str
    build: Callable
    default_granularity: str = "channel"
    clip: bool = False             # accepts --clip
    granularity: bool = True       # accepts --granularity
    gguf_type: Optional[str] = None
    block: int = 1                 # GGUF block size: rows must be a multiple
    packages: Tuple[str, ...] = ()  # third-party packages the scheme needs (e.g. gguf to write .gguf)

    @property
    def output(self) -> str:
        """The kind of file it writes: the key of its writer in lowbit.checkpoint.writers.WRITERS."""
        return "gguf" if self.gguf_type else "safetensors"

    def require(self) -> None:
        """Raise CheckpointError naming the missing third-party package, if any."""
        for pkg in self.packages:
            if importlib.util.find_spec(pkg) is None:
                raise CheckpointError(f"scheme {self.name!r} needs the {pkg!r} package: pip install 'lowbit[{pkg}]'")


SCHEMES: Dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Add (or replace) a CLI scheme."""
    SCHEMES[scheme.name] = scheme
    return scheme


def _stored(qt: QTensor) -> QTensor:
    """How a QTensor is stored: sub-byte codes bit-packed (SPEC 6); an all-zero zero point
    (symmetric schemes) dropped, which dequantization does not need (32 bits per group:
    0.25 bits/weight at group:128)."""
    if qt.packed is None and qt.bits < 8:
        qt = qt.pack()
    if qt.zero_point is not None and not qt.zero_point.any():
        qt = dataclasses.replace(qt, zero_point=None)
    return qt


def _affine(bits: int, symmetric: bool):
    def build(w, axis, group_size, clip, clip_param):
        return _stored(quantize(w, bits, scheme="absmax" if symmetric else "minmax", axis=axis,
                                group_size=group_size, clip=clip, clip_param=clip_param))
    return build


def _extreme(fn: Callable, method: str):
    def build(w, axis, group_size, clip, clip_param):
        return _stored(fn(w, method=method, axis=axis, group_size=group_size))
    return build


def _codebook(scheme: str, bits: int):
    def build(w, axis, group_size, clip, clip_param):
        return _stored(quantize(w, bits, scheme=scheme, axis=axis, group_size=group_size))
    return build


def _gguf(qtype: str):
    def build(w, axis, group_size, clip, clip_param):
        return gguf.quantize(w, qtype)
    return build


for _b in range(2, 9):
    register_scheme(Scheme(f"int{_b}", f"{_b}-bit symmetric (absmax) integers", _affine(_b, True),
                           default_granularity="channel" if _b == 8 else "group:128", clip=True))
    register_scheme(Scheme(f"uint{_b}", f"{_b}-bit asymmetric (min-max, zero point) integers", _affine(_b, False),
                           default_granularity="channel" if _b == 8 else "group:128", clip=True))
for _m in ("absmean", "twn", "threshold"):
    register_scheme(Scheme("ternary" if _m == "absmean" else f"ternary:{_m}", f"ternary {{-1,0,+1}} ({_m})",
                           _extreme(ternarize, _m), default_granularity="tensor"))
for _m in ("sign", "bitnet"):
    register_scheme(Scheme("binary" if _m == "sign" else f"binary:{_m}", f"binary {{-1,+1}} ({_m})",
                           _extreme(binarize, _m), default_granularity="tensor"))
register_scheme(Scheme("nf4", "4-bit NormalFloat codebook (QLoRA), per-block absmax", _codebook("nf4", 4),
                       default_granularity="group:64"))
for _b in range(2, 9):
    register_scheme(Scheme(f"kmeans{_b}", f"{1 << _b}-entry k-means codebook", _codebook("kmeans", _b),
                           default_granularity="tensor"))
for _t, _blk in (("Q8_0", 32), ("Q4_0", 32), ("Q4_1", 32), ("Q5_0", 32), ("Q5_1", 32), ("TQ1_0", 256),
                 ("TQ2_0", 256)):
    register_scheme(Scheme(f"gguf:{_t}", f"GGUF {_t} blocks (llama.cpp)", _gguf(_t), default_granularity="tensor",
                           granularity=False, gguf_type=_t, block=_blk, packages=("gguf",)))


def scheme_names() -> List[str]:
    return list(SCHEMES)


def get_scheme(name: str) -> Scheme:
    """The registered scheme (raises CheckpointError listing the known ones)."""
    if isinstance(name, Scheme):
        return name
    s = SCHEMES.get(str(name)) or SCHEMES.get(str(name).lower())
    if s is None and str(name).lower().startswith("gguf:"):
        s = SCHEMES.get("gguf:" + str(name)[5:].upper())
    if s is None:
        raise CheckpointError(f"unknown scheme {name!r}; known: {', '.join(SCHEMES)}")
    return s

