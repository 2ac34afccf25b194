"""The QTensor schemes lowbit itself defines, in one table, and the family functions
behind QTensor's methods.

``lowbit/__init__.py`` calls :func:`register_builtin_schemes` once; no module
registers a scheme as a side effect of being imported. Another package adds
its own with :func:`lowbit.qtensor.register_scheme`.
"""
from __future__ import annotations

from . import act, affine, codebook, packing
from .qtensor import install_ops, register_scheme

__all__ = ["register_builtin_schemes"]


def register_builtin_schemes() -> None:
    install_ops(dequantize=affine.dequantize, pack=packing.pack_qtensor, unpack=packing.unpack_qtensor,
                unpacked_codes=packing.unpack_qtensor_codes)
    # affine: value = scale * (code - zero_point) (SPEC 1-3)
    register_scheme("absmax")
    register_scheme("minmax")
    # ternary / binary (SPEC 5): value = scale * code, codes in {-1, 0, +1} / {-1, +1}
    register_scheme("ternary", code_range=(-1, 1))
    register_scheme("binary", code_range=(-1, 1))
    # per-token activations (SPEC 5): value = code / s
    register_scheme(act.SCHEME, act.dequantize)
    # non-uniform (SPEC 9): value = scale * codebook[code]
    for name in ("codebook", "kmeans", "nf4"):
        register_scheme(name, codebook.dequantize)
