"""Writing checkpoints: the lowbit safetensors format, GGUF files, and :func:`save`.

:func:`lowbit.quantize_checkpoint` writes through a writer chosen by the scheme's
``output`` (``"safetensors"`` or ``"gguf"``) from :data:`WRITERS`. A writer is a
context manager, opened as ``factory(out, force, scheme, checkpoint)``, with:

- ``dequantize(q, shape)``: the float32 values of what a scheme built (for the report);
- ``add_quantized(name, q, info) -> int``: store a quantized tensor, return its bytes;
- ``add_kept(name, checkpoint) -> (int, note)``: store a tensor as is (or drop it:
  bytes 0 and a note saying why);
- on a clean exit it completes ``out`` atomically; on an exception nothing is left.

Another file format plugs in with :func:`register_writer` (e.g. a GGUF model
writer: ``register_writer("gguf", GGUFModelWriter)``).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .. import gguf
from ..io.safetensors import RawTensor, SafetensorsWriter, TensorInfo, atomic_output
from ..qtensor import QTensor
from .format import FORMAT, PIECES, QMETA_PREFIX
from .reader import Checkpoint
from .schemes import Scheme

__all__ = ["LowbitWriter", "GGUFWriter", "WRITERS", "register_writer", "open_writer", "save"]


def _version() -> str:
    from .. import __version__
    return __version__


class LowbitWriter(SafetensorsWriter):
    """A safetensors writer that stores QTensors as pieces + a qmeta record in __metadata__."""

    @classmethod
    def for_checkpoint(cls, out, force: bool, spec: Scheme, ck: Checkpoint) -> "LowbitWriter":
        return cls(out, force=force, metadata={
            "format": FORMAT, "lowbit.version": _version(), "lowbit.scheme": spec.name,
            "lowbit.source_metadata": json.dumps(ck.metadata, sort_keys=True)})

    def dequantize(self, qt: QTensor, shape) -> np.ndarray:
        return qt.dequantize()

    def add_quantized(self, name: str, qt: QTensor, info: Optional[TensorInfo] = None) -> int:
        d = qt.to_dict()
        self.metadata[QMETA_PREFIX + name] = bytes(d.pop("qmeta")).decode()
        n = 0
        for piece, arr in d.items():
            self.add(f"{name}:{piece}", arr)
            n += arr.nbytes
        return n

    def add_kept(self, name: str, ck: Checkpoint) -> Tuple[int, Optional[str]]:
        self.add(name, ck.raw_tensor(name))
        return ck.info(name).nbytes, None


class GGUFWriter:
    """Collects GGUF blobs and kept float tensors, then writes one .gguf file with lowbit.gguf.write.

    GGUF holds the quantized blocks and float tensors (F16 stays F16, other floats
    become F32); integer tensors (e.g. position ids) cannot go through the writer
    and are dropped, which the report says. Memory: the quantized model plus the
    kept tensors (the gguf package writes from memory).
    """

    def __init__(self, out, force, spec: Scheme, ck: Checkpoint):
        self.out = atomic_output(out, force=force, suffix=".gguf-tmp")
        self.spec = spec
        self.source_metadata = dict(ck.metadata)
        self.tensors: Dict[str, object] = {}

    def __enter__(self):
        self.tmp = self.out.__enter__()
        return self

    def dequantize(self, blob, shape):
        return gguf.dequantize(blob, self.spec.gguf_type, tuple(shape))

    def add_quantized(self, name, blob, info) -> int:
        self.tensors[name] = (blob, self.spec.gguf_type, tuple(info.shape))
        return int(np.asarray(blob).nbytes)

    def add_kept(self, name, ck: Checkpoint) -> Tuple[int, Optional[str]]:
        info = ck.info(name)
        if not info.is_float:
            return 0, f"dropped: GGUF output holds float tensors only, not {info.dtype}"
        a = ck.get(name)
        a = a if a.dtype == np.float16 else np.asarray(a, np.float32)
        self.tensors[name] = a
        return a.nbytes, None

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                gguf.write(self.tmp, self.tensors, metadata={
                    "general.quantized_by": "lowbit", "lowbit.scheme": self.spec.name})
                try:   # the writer's own temporary file is 0600; give OUT the usual permissions
                    mask = os.umask(0)
                    os.umask(mask)
                    os.chmod(self.tmp, 0o666 & ~mask)
                except OSError:
                    pass
        except BaseException:
            self.out.__exit__(*sys.exc_info())
            raise
        return self.out.__exit__(exc_type, exc, tb)


#: output kind -> writer factory ``(out, force, scheme, checkpoint)``
WRITERS: Dict[str, Callable] = {"safetensors": LowbitWriter.for_checkpoint, "gguf": GGUFWriter}


def register_writer(output: str, factory: Callable) -> None:
    """Write schemes whose ``output`` is ``output`` with ``factory`` (see the module docstring)."""
    WRITERS[output] = factory


def open_writer(out, force: bool, spec: Scheme, ck: Checkpoint):
    return WRITERS[spec.output](out, force, spec, ck)


def save(path, tensors: Mapping[str, Union[QTensor, np.ndarray]], *, metadata: Optional[Mapping[str, str]] = None,
         force: bool = False) -> None:
    """Write QTensors and plain arrays to one safetensors file (atomically; ``force`` to overwrite)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of name -> QTensor or array, got {type(tensors).__name__}")
    md = {str(k): str(v) for k, v in (metadata or {}).items()}
    md.update({"format": FORMAT, "lowbit.version": _version()})
    names = set(tensors)
    for name, v in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
        if isinstance(v, QTensor):
            clash = [f"{name}:{p}" for p in PIECES if f"{name}:{p}" in names]
            if clash:
                raise ValueError(f"tensor name {clash[0]!r} clashes with the stored pieces of QTensor {name!r}")
    with LowbitWriter(path, force=force, metadata=md) as w:
        for name, v in tensors.items():
            if isinstance(v, QTensor):
                w.add_quantized(name, v)
            elif isinstance(v, RawTensor):
                w.add(name, v)
            else:
                arr = np.asarray(v)
                if arr.dtype == object:
                    raise TypeError(f"tensor {name!r}: expected a QTensor or a numeric array, got {type(v).__name__}")
                w.add(name, arr)
